"""End to end through the CLI: train two epochs on generated videos, then evaluate the saved checkpoint."""

import json

import pytest

from mbgf_cli.checkpoint import load_checkpoint, read_meta
from tests.test_train_support import TINY_RUN, read_metrics, run_cli


@pytest.mark.slow
def test_train_then_eval_gives_the_last_epochs_val_top1(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN, "--plot", "--out", out]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr

    # The run's files: one metrics line per epoch, the summary, checkpoints, the curve.
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["videos"] == 12 and r["skipped"] == 0 for r in records)
    assert records[1]["iteration"] == 2 * (48 // 8)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["epoch"] == 2 and summary["final"]["top1"] == records[1]["top1"]
    best = max(records, key=lambda r: r["top1"])
    assert summary["best"]["top1"] == best["top1"]
    assert set(summary["final"]) >= {"epoch", "top1", "top5", "mean_class"}
    assert (out / "training_curve.png").stat().st_size > 1000
    assert "epoch" in stdout and "val" in stdout  # the per-epoch table

    # Checkpoints: safetensors with the metadata docs/DESIGN.md lists.
    meta = read_meta(out / "last")
    assert meta["epoch"] == 2 and meta["config"]["model"] == "tiny" and meta["config"]["mbgf"] is True
    assert len(meta["class_names"]) == 12 and meta["metrics"]["top1"] == records[1]["top1"]
    assert read_meta(out / "best")["epoch"] == best["epoch"]
    model, _ = load_checkpoint(out / "last")
    assert model.config.frames == 4 and model.config.input_size == 32

    # Evaluating the last checkpoint on the same list reproduces the last epoch's val numbers.
    code, stdout, stderr = run_cli(["eval", "--checkpoint", out / "last", "--root", toy_dataset, "--workers", "0",
                                    "--json"], capsys)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["videos"] == 12 and result["skipped"] == 0
    assert result["top1"] == pytest.approx(records[1]["top1"], abs=1e-9)
    assert result["top5"] == pytest.approx(records[1]["top5"], abs=1e-9)
    assert result["mean_class"] == pytest.approx(records[1]["mean_class"], abs=1e-9)


def test_a_folder_that_is_not_a_run_is_refused_and_left_as_it_was(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "last").mkdir(parents=True)  # no mbgf marker: the user's, whatever its names
    for extra in ([], ["--overwrite"]):
        code, _, stderr = run_cli(["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN, "--out", out,
                                   *extra], capsys)
        assert code == 2
        said = " ".join(stderr.split())
        assert (f"--output {out}: not empty and not written by `mbgf train`" in said if not extra
                else f"--output {out}: {out / 'last'} is not mbgf's and would be replaced" in said), said
        assert [p.name for p in out.iterdir()] == ["last"]


def test_no_dataset_is_a_one_line_error(capsys):
    code, _, stderr = run_cli(["train"], capsys)
    assert code == 2 and "--dataset synthetic" in stderr and "Traceback" not in stderr
