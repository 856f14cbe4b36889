"""The README's "Deploy without PyTorch: ONNX" lines, each run as written in the folder the README
assumes (tests/readme_support.py: ``new_videos`` from the README's own prepare-data line, a tiny
CLIP+MBGF at ``runs/synthetic-tiny-clip-mbgf/best``, ``my_videos/``): the exports write their files, and
each predict through an ONNX file gives predict's JSON through the checkpoint at ``--amp off``."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from mbgf_cli.data.synthetic import class_names
from tests.readme_support import CHECKPOINT, readme_layout, readme_words
from tests.test_onnx import assert_same_predictions
from tests.test_train_support import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EXPORT = "mbgf export runs/synthetic-tiny-clip-mbgf/best --format onnx -o model.onnx"
PREDICT_LIST = "mbgf predict new_videos/val.txt --checkpoint model.onnx --top-k 2"
PREDICT_EXPLAIN = "mbgf predict my_videos/ --checkpoint model.onnx --views 2x3 --explain"
EXPORT_FREE_TEXT = "mbgf export runs/synthetic-tiny-clip-mbgf/best --format onnx -o free-text.onnx --free-text"
PREDICT_FREE_TEXT = ("mbgf predict new_videos/videos/moving_something_up new_videos/videos/something_getting_darker "
                     "--checkpoint free-text.onnx --classes \"moving something up, something getting darker, "
                     "a dog barking\"")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The layout with both README exports run in it, once: {"root": root, line: (exit code, stdout, stderr)}."""
    root = readme_layout(tmp_path_factory.mktemp("readme-onnx"))
    results = {"root": root}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for line in (EXPORT, EXPORT_FREE_TEXT):
            results[line] = run_captured(readme_words(line))
    return results


def run_captured(words) -> tuple[int, str, str]:
    """``run_cli`` outside a test's capsys (a module fixture has none)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code, _, _ = run_cli(words)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def in_layout(exported, monkeypatch) -> Path:
    monkeypatch.chdir(exported["root"])
    return exported["root"]


def predict_json(capsys, words: list[str]) -> dict:
    code, stdout, stderr = run_cli([*words, "--json"], capsys)
    assert code == 0, stderr
    return json.loads(stdout)


def through_checkpoint(words: list[str], onnx_file: str) -> list[str]:
    """The same predict through the torch checkpoint, at fp32 as the ONNX file runs."""
    return [CHECKPOINT if word == onnx_file else word for word in words] + ["--amp", "off"]


def test_readme_export_writes_the_onnx_file_with_the_12_classes(exported, in_layout):
    code, stdout, stderr = exported[EXPORT]
    assert code == 0, stderr
    message = " ".join(stdout.split())
    assert f"{CHECKPOINT} -> model.onnx (ONNX, CLIP-tiny+MBGF, 12 classes" in message
    assert (in_layout / "model.onnx").is_file()


def test_readme_predict_over_the_list_through_onnx_gives_the_checkpoints_predictions(in_layout, capsys):
    words = readme_words(PREDICT_LIST)
    code, stdout, stderr = run_cli(words, capsys)
    assert code == 0, stderr
    assert "CLIP-tiny+MBGF from model.onnx (ONNX, onnxruntime; epoch 19) (1x1 views): top-2 of 12 classes" in \
        " ".join(stdout.split())
    assert "top-1 against the list's labels:" in stderr and "of 12)" in stderr
    by_onnx = predict_json(capsys, words)
    assert len(by_onnx["videos"]) == 12 and all(len(row["top"]) == 2 for row in by_onnx["videos"])
    assert {row["top"][0]["label"] for row in by_onnx["videos"]} <= set(class_names("a"))
    assert_same_predictions(by_onnx, predict_json(capsys, through_checkpoint(words, "model.onnx")))


def test_readme_predict_with_views_and_explain_through_onnx_gives_the_checkpoints_gates(in_layout, capsys):
    words = readme_words(PREDICT_EXPLAIN)
    code, stdout, stderr = run_cli(words, capsys)
    assert code == 0, stderr
    assert "(2x3 views)" in " ".join(stdout.split()) and "temporal" in stdout
    by_onnx = predict_json(capsys, words)
    assert sorted(Path(row["video"]).name for row in by_onnx["videos"]) == ["a.mp4", "b.mp4"]
    gates = [row["gates"] for row in by_onnx["videos"]]
    assert all(set(g) == {"appearance", "temporal", "motion"} and sum(g.values()) == pytest.approx(1, abs=1e-4)
               for g in gates)
    assert_same_predictions(by_onnx, predict_json(capsys, through_checkpoint(words, "model.onnx")))


def test_readme_free_text_export_writes_the_video_and_text_files(exported, in_layout):
    code, stdout, stderr = exported[EXPORT_FREE_TEXT]
    assert code == 0, stderr
    assert "free-text.onnx and free-text.text.onnx" in " ".join(stdout.split())
    assert (in_layout / "free-text.onnx").is_file() and (in_layout / "free-text.text.onnx").is_file()


def test_readme_free_text_predict_ranks_the_given_classes_as_the_checkpoint_does(in_layout, capsys):
    words = readme_words(PREDICT_FREE_TEXT)
    code, stdout, stderr = run_cli(words, capsys)
    assert code == 0, stderr
    assert "(ONNX, onnxruntime; epoch 19) (1x1 views): top-3 of 3 classes" in " ".join(stdout.split())
    by_onnx = predict_json(capsys, words)
    given = {"moving something up", "something getting darker", "a dog barking"}
    assert len(by_onnx["videos"]) == 4
    for row in by_onnx["videos"]:
        assert {r["label"] for r in row["top"]} == given
        probabilities = [r["probability"] for r in row["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, 1e-4)
    assert_same_predictions(by_onnx, predict_json(capsys, through_checkpoint(words, "free-text.onnx")))
