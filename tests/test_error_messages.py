"""Hostile inputs through the real CLI: every refusal is one sentence on one line, with the exit code of
bad input (2), no traceback, no Python exception name and no ``[Errno N]``."""

import errno
import re
import sys
from pathlib import Path

import pytest
import typer

import fusion
from mbgf_cli import app as app_module
from mbgf_cli.checkpoint import save_checkpoint
from tests.test_train_support import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from videos import write_dataset  # noqa: E402

EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b|\[Errno|Traceback")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A tiny dataset, a tiny checkpoint, and the hostile files."""
    root = tmp_path_factory.mktemp("hostile")
    write_dataset(root / "data", num_classes=2, videos_per_class=2)
    model = fusion.build_video_model(model="tiny", variant="clip", mbgf=False, frames=4, input_size=32)
    save_checkpoint(root / "ckpt", model, {"config": model.config.to_dict(), "class_names": ["a", "b"], "epoch": 1,
                                           "metrics": {}})
    (root / "latin1.csv").write_bytes("id,name\n0,caf\xe9\n1,th\xe9\n".encode("latin-1"))
    (root / "binary.json").write_bytes(b"\xff\xfe\x00not json")
    (root / "afile").write_text("x")
    return root


def run(capsys, *args):
    code, _, err = run_cli(args, capsys)
    return code, err


def one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    [line] = lines
    assert line.startswith("error: ") and not EXCEPTION_NAME.search(line), line
    return line


def cases(p: Path):
    """(arguments, what the line must say) for each hostile input."""
    video = p / "data" / "videos" / "c0" / "v0.mp4"
    return [
        (["predict", video, "-c", p / "ckpt", "--labels", p / "latin1.csv"], "latin1.csv: not UTF-8 text"),
        (["predict", video, "-c", p / "ckpt", "--csv", p / "data"], "is a folder"),
        (["predict", video, "-c", p / "afile"], "afile"),
        (["predict", video, "-c", p / "ckpt", "--device", "cuda:99"], "--device cuda:99: this machine has no such "
                                                                     "device; it has cpu"),
        (["eval", "-c", p / "ckpt", "--root", p / "data", "--device", "cuda:99"], "this machine has no such device"),
        (["train", "--root", p / "data", "--model", "tiny", "--device", "cuda:99", "-o", p / "run"],
         "this machine has no such device"),
        (["train", "--root", p / "data", "--model", "tiny", "--config", p / "binary.json", "-o", p / "run"],
         "not UTF-8 text"),
        (["train", "--root", p / "data", "--model", "tiny", "--epochs", "1", "-o", p / "afile" / "run"], "afile"),
        (["embed", video, "-c", p / "ckpt", "-o", p / "afile" / "e.safetensors"], "afile"),
        (["convert", p / "latin1.csv", "-o", p / "converted"], "latin1.csv"),
        (["convert", p / "ckpt", "-o", p / "converted"], "already an mbgf checkpoint"),
        (["export", p / "ckpt", "-o", p / "afile"], "is a file, not a folder"),
        (["export", p / "ckpt", "-o", p / "ckpt"], "is the checkpoint being exported"),
    ]


@pytest.mark.parametrize("index", range(13))
def test_a_hostile_input_is_one_sentence_and_exit_2(place, capsys, index):
    args, expected = cases(place)[index]
    code, err = run(capsys, *args)
    line = one_sentence(err)
    assert code == 2 and expected in line, (args, line)
    assert not (place / "run").exists() and not (place / "converted").exists()  # refused before any output
    assert (place / "afile").read_text() == "x"


@pytest.fixture
def failing(monkeypatch):
    """A command failing the ways library code fails underneath a command."""
    app = typer.Typer()

    @app.command()
    def broken(kind: str):
        if kind == "type":
            raise TypeError("must be real number, not str")
        if kind == "exists":
            raise FileExistsError(errno.EEXIST, "File exists", "/tmp")
        if kind == "full":
            raise OSError(errno.ENOSPC, "No space left on device", "/data/run/results.csv")
        if kind == "decode":
            b"\xff".decode("utf-8")
        raise MemoryError()

    @app.command()
    def other():
        pass

    monkeypatch.setattr(app_module, "app", app)


@pytest.mark.parametrize("kind, code, expected", [
    ("type", 1, "mbgf stopped on a problem it does not describe yet (must be real number, not str); run the same "
                "command with --debug"),
    ("exists", 2, "/tmp: already exists"),
    ("full", 2, "/data/run/results.csv: no space left on the device; free some space, then run the same command "
                "again"),
    ("decode", 2, "a file given is not UTF-8 text (byte b'\\xff' at position 0 is not valid UTF-8)"),
    ("memory", 1, "out of memory; lower --batch-size"),
])
def test_library_errors_become_sentences(failing, capsys, kind, code, expected):
    got, err = run(capsys, "broken", kind)
    assert got == code and expected in one_sentence(err)


def test_a_full_disk_in_epoch_1_gives_advice_that_works(toy_dataset, tmp_path, capsys, monkeypatch):
    """The first checkpoint cannot be written (a fake ENOSPC); doing what the message says (the same
    command again, once there is room) trains the run."""
    from mbgf_cli import checkpoint
    from tests.test_train_support import TINY_RUN

    real_write = checkpoint._write_file

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    args = ["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN, "--epochs", "1", "--out",
            tmp_path / "run"]
    monkeypatch.setattr(checkpoint, "_write_file", full)
    code, err = run(capsys, *args)
    line = one_sentence(err.split("\n\n")[-1])  # after the progress lines
    assert code == 2 and "no space left on the device" in line, line
    assert line.endswith("no resumable checkpoint was written yet: free some space, then run the same command again "
                         "with --overwrite"), line
    monkeypatch.setattr(checkpoint, "_write_file", real_write)
    code, err = run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert checkpoint.read_meta(tmp_path / "run" / "last")["epoch"] == 1
