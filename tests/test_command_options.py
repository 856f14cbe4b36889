"""The options of `mbgf train`, `mbgf fewshot` and `mbgf eval`: declared once (TrainConfig's field
metadata), the same names on every command (--output/-o with --out, --val-list with --list), recipe
values in the help, and data problems reported before any model is built or weights downloaded."""

import re
from dataclasses import fields

import pytest

import clip.loading
from mbgf_cli import evaluation, presets, training
from mbgf_cli.errors import UserError
from mbgf_cli.train_config import TrainConfig
from tests.test_train_support import run_cli


def help_text(capsys, command: str) -> str:
    code, stdout, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    return stdout


def panels(text: str) -> dict[str, str]:
    """``{option flag: the help panel it is listed in}`` from rich's help output."""
    where, current = {}, None
    for line in text.splitlines():
        title = re.match(r"\s*╭─ (.+?) ─", line)
        option = re.match(r"\s*│ (--[a-z0-9-]+)", line)
        if title:
            current = title.group(1)
        elif option:
            where.setdefault(option.group(1), current)
    return where


@pytest.fixture
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one option per line


def test_train_and_fewshot_list_every_option_of_the_config_in_its_panel(capsys, wide_terminal):
    train_help, fewshot_help = help_text(capsys, "train"), help_text(capsys, "fewshot")
    in_train, in_fewshot = panels(train_help), panels(fewshot_help)
    for f in fields(TrainConfig):
        flags = f.metadata.get("flags")
        if not flags or f.metadata["hidden"]:
            continue
        name = flags[0].split("/")[0]
        assert in_train.get(name) == f.metadata["panel"], name
        if f.name not in ("variant", "mbgf", "seed", "resume", "eval_every", "plot"):  # set per run by fewshot
            assert in_fewshot.get(name) == ("Protocol" if f.name == "out" else f.metadata["panel"]), name
    assert "--inject-nan-at-step" not in train_help  # test hooks stay hidden


def test_help_shows_the_recipe_values_the_presets_hold(capsys, wide_terminal):
    train_line = next(line for line in help_text(capsys, "train").splitlines() if "--lr " in line)
    xclip, synthetic = presets.XCLIP_RECIPE["lr"], presets.SYNTHETIC_RECIPE["lr"]
    assert f"{xclip:g}; synthetic: {synthetic:g}" in train_line
    fewshot_line = next(line for line in help_text(capsys, "fewshot").splitlines() if "--epochs " in line)
    assert (f"{presets.FEWSHOT_RECIPE['epochs']}; synthetic: {presets.SYNTHETIC_FEWSHOT_RECIPE['epochs']}"
            in fewshot_line)


@pytest.fixture
def captured_train(monkeypatch):
    """`mbgf train` as far as the engine: the TrainConfig it was given."""
    given = []

    def fake_train(cfg):
        given.append(cfg)
        return {"best": None, "final": None, "epochs": 0, "checkpoints": {"last": "x/last", "best": "x/best"}}

    monkeypatch.setattr(training, "train", fake_train)
    return given


@pytest.mark.parametrize("flag", ["--output", "-o", "--out"])
def test_train_output_has_one_name_and_its_aliases(captured_train, tmp_path, capsys, flag):
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", flag, tmp_path / "run", "--lr", "1e-4",
                               "--json"], capsys)
    assert code == 0, stderr
    [cfg] = captured_train
    assert cfg.out == str(tmp_path / "run") and cfg.lr == 1e-4 and cfg.dataset == "synthetic" and cfg.root is None


def test_resume_refuses_an_output_folder_by_its_name(captured_train, tmp_path, capsys):
    code, _, stderr = run_cli(["train", "--resume", tmp_path / "last", "--out", tmp_path / "other"], capsys)
    assert code == 2 and "leave out --output" in " ".join(stderr.split())
    assert captured_train == []


@pytest.mark.parametrize("flag", ["--val-list", "--list"])
def test_eval_reads_its_list_under_trains_name(monkeypatch, tmp_path, capsys, flag):
    given = []

    def fake_evaluate(cfg):
        given.append(cfg)
        raise UserError("evaluated")

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    code, _, stderr = run_cli(["eval", "--checkpoint", tmp_path, "--root", tmp_path, flag, "test.txt"], capsys)
    assert code == 2 and "evaluated" in stderr
    assert given[0].list_file == "test.txt"


@pytest.fixture
def nothing_built(monkeypatch):
    """Building a model or reading CLIP weights fails the test: data problems must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the data was checked")

    monkeypatch.setattr(training, "build_model", refuse)
    monkeypatch.setattr(clip.loading, "load", refuse)


def test_a_preset_without_its_folder_is_reported_before_any_download(nothing_built, tmp_path, capsys):
    code, _, stderr = run_cli(["train", "--dataset", "k400", "--output", tmp_path / "run"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "--dataset k400 reads its videos from a folder: give the dataset folder with --root" in message
    assert not (tmp_path / "run").exists()  # nothing written either
    code, _, stderr = run_cli(["fewshot", "--dataset", "hmdb51", "--output", tmp_path / "fs"], capsys)
    assert code == 2 and "--dataset hmdb51 reads its videos from a folder" in " ".join(stderr.split())
    assert not (tmp_path / "fs").exists()


def test_missing_lists_and_labels_are_reported_before_the_model(nothing_built, toy_dataset, tmp_path, capsys):
    base = ["train", "--dataset", "synthetic", "--root", toy_dataset, "--output", tmp_path / "run"]
    code, _, stderr = run_cli([*base, "--val-list", "no_such_val.txt"], capsys)
    assert code == 2 and "no_such_val.txt: no such video list (give --val-list FILE)" in " ".join(stderr.split())
    code, _, stderr = run_cli([*base, "--labels", tmp_path / "labels.csv"], capsys)
    assert code == 2 and str(tmp_path / "labels.csv") in " ".join(stderr.split())
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 0\nb.mp4 99\n")
    code, _, stderr = run_cli([*base, "--train-list", bad], capsys)
    assert code == 2 and f"{bad}:2" in " ".join(stderr.split())
    assert not (tmp_path / "run").exists()


def test_options_are_declared_one_way():
    """Every option is a config field (mbgf_cli/settings.py builds the Typer options): no command module
    declares one of its own."""
    from pathlib import Path

    import mbgf_cli

    package = Path(mbgf_cli.__file__).parent
    declaring = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                       if "typer.Option(" in path.read_text() and path.name not in ("settings.py", "app.py"))
    assert declaring == []


@pytest.mark.parametrize("flag", ["--report-to", "--log"])
def test_the_tracker_option_has_a_name_torchrun_leaves_alone(captured_train, tmp_path, capsys, flag):
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", "-o", tmp_path / "run", flag, "none", "--json"],
                              capsys)
    assert code == 0, stderr
    assert captured_train[0].report_to == "none"


@pytest.mark.parametrize("args, message", [
    (["predict", "x.mp4", "-c", "x", "--top-k", "0"], "--top-k must be at least 1, not 0"),
    (["predict", "x.mp4", "-c", "x", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["embed", "x.mp4", "-c", "x", "-o", "e.st", "--shard-size", "0"], "--shard-size must be at least 1, not 0"),
    (["eval", "-c", "x", "--frames", "0"], "--frames must be at least 1, not 0"),
    (["search", "e.st", "a", "-k", "0"], "--top-k must be at least 1, not 0"),
    (["predict", "x.mp4", "-c", "x", "--amp", "fp8"], "--amp must be one of auto, bf16, fp16, off, not 'fp8'"),
    (["train", "--dataset", "synthetic", "--jitter", "2"], "--jitter must be in [0, 1], not 2"),
    (["prepare-data", "synthetic", "-o", "d", "--workers", "-1"], "--workers must be at least 0, not -1"),
])
def test_every_command_checks_the_declared_range_first(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(args, capsys)
    assert code == 2 and message in " ".join(stderr.split()), stderr
    assert list(tmp_path.iterdir()) == []  # nothing made
