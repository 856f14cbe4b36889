"""The CLI shell: version, help, and the one error path (one line, no traceback; --debug shows it)."""

import subprocess
import sys

import pytest
import typer

import mbgf_cli
from mbgf_cli import app as app_module
from mbgf_cli.errors import UserError


def run_mbgf(*args):
    return subprocess.run([sys.executable, "-m", "mbgf_cli", *args], capture_output=True, text=True)


def test_version_prints_the_package_version():
    result = run_mbgf("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mbgf {mbgf_cli.__version__}"


def test_help_lists_the_commands():
    result = run_mbgf("--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_unknown_command_is_a_usage_error():
    result = run_mbgf("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.fixture
def failing_app(monkeypatch):
    app = typer.Typer()

    @app.command()
    def broken(kind: str = "user"):
        if kind == "user":
            raise UserError("data/train.txt:3: label 7 is out of range [0, 4]")
        if kind == "missing":
            open("/no/such/file.mp4", "rb")
        raise RuntimeError("something internal")

    @app.command()
    def other():
        pass

    monkeypatch.setattr(app_module, "app", app)


def test_user_error_is_one_line_without_traceback(failing_app, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["broken"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "error: data/train.txt:3: label 7 is out of range [0, 4]"
    ]


def test_missing_file_names_the_file(failing_app, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["broken", "--kind", "missing"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "/no/such/file.mp4" in err and "Traceback" not in err


def test_debug_anywhere_shows_the_traceback(failing_app, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["broken", "--kind", "internal", "--debug"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "Traceback" in err and "RuntimeError: something internal" in err
