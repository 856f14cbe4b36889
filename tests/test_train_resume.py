"""A run stopped (Ctrl-C or a NaN) and resumed gives what a run that never stopped gives."""

import json

import pytest
import torch

from mbgf_cli.checkpoint import load_checkpoint, load_train_state, read_meta
from tests.test_train_support import (
    TINY_RUN,
    make_dataset,
    read_metrics,
    run_cli,
    without_timing,
)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory)


STEPS_PER_EPOCH = 48 // 8


def _train(root, out, *extra, capsys=None):
    # mixup/cutmix and label smoothing on: their random draws must resume exactly too
    args = ["train", "--dataset", "synthetic", "--root", root, *TINY_RUN, "--mixup", "0.8", "--cutmix", "1.0",
            "--label-smoothing", "0.1", "--out", out, *extra]
    return run_cli(args, capsys)


@pytest.fixture(scope="module")
def uninterrupted(toy_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    code, _, _ = _train(toy_dataset, out)
    assert code == 0
    return out


def _weights(run_dir):
    model, _ = load_checkpoint(run_dir / "last")
    return model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [STEPS_PER_EPOCH // 2, STEPS_PER_EPOCH], ids=["mid-epoch", "epoch-end"])
def test_stopped_and_resumed_equals_uninterrupted(toy_dataset, tmp_path, uninterrupted, stop_at, capsys):
    out = tmp_path / "run"
    code, _, stderr = _train(toy_dataset, out, "--stop-at-step", stop_at, capsys=capsys)
    assert code == 130, stderr
    assert f"--resume {out / 'last'}" in stderr
    state = load_train_state(out / "last")
    position = state["position"]
    assert (position["epoch"], position["step"], position["iteration"]) == (0, stop_at, stop_at)
    assert not (out / "summary.json").exists()

    code, _, stderr = run_cli(["train", "--resume", out / "last", "--workers", "0"], capsys)
    assert code == 0, stderr
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(uninterrupted))
    resumed, reference = _weights(out), _weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] == json.loads((uninterrupted / "summary.json").read_text())["final"]


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    nan_step = STEPS_PER_EPOCH + 2  # in the second epoch
    code, _, stderr = _train(toy_dataset, out, "--inject-nan-at-step", nan_step, capsys=capsys)
    assert code == 2
    message = " ".join(stderr.split())
    assert "loss became nan at epoch 2, step 2" in message and "Traceback" not in stderr
    assert f"last good checkpoint is {out / 'last'}" in message
    assert not (out / "summary.json").exists()
    # The epoch-1 checkpoint is intact: it loads, and says so.
    assert read_meta(out / "last")["epoch"] == 1
    model, _ = load_checkpoint(out / "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_train_state(out / "last")["position"]["iteration"] == STEPS_PER_EPOCH
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_resume_without_a_training_state_is_refused(toy_dataset, tmp_path, capsys):
    missing = tmp_path / "nothing" / "last"
    code, _, stderr = run_cli(["train", "--resume", missing], capsys)
    assert code == 2 and "no such checkpoint directory" in stderr
