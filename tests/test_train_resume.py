"""A run stopped (Ctrl-C or a NaN) and resumed gives what a run that never stopped gives."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from mbgf_cli.checkpoint import load_checkpoint, load_train_state, read_meta
from tests.test_train_support import (
    TINY_RUN,
    env_without_torchrun,
    read_metrics,
    run_cli,
    without_timing,
)

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
    assert f"--resume {out} " in stderr
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


def test_resume_refuses_a_missing_checkpoint_and_options_that_would_change_the_run(tmp_path, capsys):
    missing = tmp_path / "nothing" / "last"
    code, _, stderr = run_cli(["train", "--resume", missing], capsys)
    assert code == 2 and "no such run folder or checkpoint" in stderr
    code, _, stderr = run_cli(["train", "--resume", missing, "--lr", "1e-2", "--workers", "2"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "takes no --lr" in message and "--workers" not in message.split("(")[0]


@pytest.mark.slow
def test_ctrl_c_writes_a_resumable_checkpoint_and_stops(toy_dataset, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--root", str(toy_dataset), *TINY_RUN, "--epochs", "500",
            "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "mbgf_cli", *map(str, args)], env=env_without_torchrun(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Interrupt once the first epoch is logged, i.e. somewhere inside a later one.
        while not (out / "metrics.jsonl").is_file() and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    message = " ".join(stderr.split())
    assert "Ctrl-C" in message and f"--resume {out} " in message
    state = load_train_state(out / "last")
    position = state["position"]
    assert position["epoch"] >= 1 and position["iteration"] == position["epoch"] * STEPS_PER_EPOCH + position["step"]
    assert read_meta(out / "last")["class_names"] == load_checkpoint(out / "last")[1]["class_names"]


# ------------------------------------------------------------------------------------------------
# Exact resume at every kind of boundary (issue 21). One prompt template is drawn per video from the
# model's random stream, so a draw the resumed run makes and the uninterrupted one does not (the
# loader's lazy start once drew from it) moves every later weight.
# ------------------------------------------------------------------------------------------------

BOUNDARY_RUN = ["--prompts", "all", "--no-cache-decoded"]
ACCUMULATED = ["--batch-size", "4", "--total-batch", "8"]  # two micro-batches per optimiser step


def _boundary_args(root, out, *extra):
    return ["train", "--dataset", "synthetic", "--root", root, *TINY_RUN, *BOUNDARY_RUN, "--out", out,
            *map(str, extra)]


@pytest.fixture(scope="module")
def boundary_references(toy_dataset, tmp_path_factory):
    """The uninterrupted runs: one micro-batch per step, and two."""
    references = {}
    for name, extra in (("plain", []), ("accumulated", ACCUMULATED)):
        out = tmp_path_factory.mktemp(f"reference-{name}") / "run"
        assert run_cli(_boundary_args(toy_dataset, out, *extra))[0] == 0
        references[name] = out
    return references


@pytest.mark.slow
@pytest.mark.parametrize("boundary, reference, first, again", [
    ("epoch-end", "plain", ["--stop-at-step", STEPS_PER_EPOCH], []),
    ("mid-epoch", "plain", ["--stop-at-step", STEPS_PER_EPOCH + 3], []),
    ("accumulation-mid-way", "accumulated", [*ACCUMULATED, "--stop-at-step", 3], ACCUMULATED),
    ("two-workers", "plain", ["--workers", 2, "--stop-at-step", STEPS_PER_EPOCH + 3], ["--workers", 2]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_stopped_at_a_boundary_and_run_again_ends_bit_for_bit_like_the_uninterrupted_run(
        toy_dataset, tmp_path, boundary_references, boundary, reference, first, again, capsys):
    out = tmp_path / "run"
    code, _, stderr = run_cli(_boundary_args(toy_dataset, out, *first), capsys)
    assert code == 130, stderr
    code, _, stderr = run_cli(_boundary_args(toy_dataset, out, *again), capsys)  # the same command again
    assert code == 0 and "resuming" in stderr, stderr
    resumed, expected = _weights(out), _weights(boundary_references[reference])
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(boundary_references[reference]))


@pytest.mark.slow
def test_killed_after_a_step_checkpoint_the_same_command_continues_from_it_bit_for_bit(toy_dataset, tmp_path,
                                                                                        boundary_references):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mbgf_cli", *map(str, _boundary_args(toy_dataset, out, "--save-every", 2))]
    killed = subprocess.run([*args, "--kill-at-step", str(STEPS_PER_EPOCH + 3)], env=env_without_torchrun(),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert load_train_state(out / "step")["position"]["iteration"] == STEPS_PER_EPOCH + 2
    again = subprocess.run(args, env=env_without_torchrun(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"at epoch 2, step 2/{STEPS_PER_EPOCH}" in " ".join(again.stderr.split())
    resumed, expected = _weights(out), _weights(boundary_references["plain"])
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_a_callback_sees_every_micro_batch_loss_and_every_step_end(toy_dataset, tmp_path):
    """The loop's hooks: two micro-batches per step, each loss handed over before its backward."""
    from mbgf_cli import training
    from mbgf_cli.train_config import TrainConfig

    class Recorder(training.Callbacks):
        def __init__(self):
            self.events = []

        def on_loss(self, run, loss):
            self.events.append(("loss", run.progress.iteration))
            return loss

        def on_step_end(self, run):
            self.events.append(("step", run.progress.iteration))

    recorder = Recorder()
    cfg = TrainConfig(dataset="synthetic", root=str(toy_dataset), model="tiny", variant="clip", frames=4,
                      input_size=32, batch_size=8, total_batch=16, epochs=1, workers=0, plot=False,
                      out=str(tmp_path / "run"))
    training.train(cfg, callbacks=recorder)
    steps = 48 // 16
    assert recorder.events == [e for i in range(steps) for e in (("loss", i), ("loss", i), ("step", i + 1))]
