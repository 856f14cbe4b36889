"""A run folder is the unit of a training run (issue 14; issue 15 items 2, 3, 4, 7, 9): a start into a
folder holding the same run continues it, another configuration is refused by name, two starts never
share a folder, a run stopped by SIGTERM (or killed at any moment) ends as if never stopped, every
numeric option is range-checked before any work, and a recorded configuration can be replayed."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mbgf_cli.checkpoint import load_checkpoint, read_meta
from tests.test_train_support import TINY_RUN, env_without_torchrun, read_metrics, run_cli, without_timing

PREEMPTED = 75  # the documented exit code of a run stopped by SIGTERM/SIGUSR1 (resumable)


def _args(root, out, *extra):
    # one prompt template drawn per video: model randomness that a resume must continue exactly
    return ["train", "--dataset", "synthetic", "--root", str(root), *TINY_RUN, "--prompts", "all",
            "--output", str(out), *map(str, extra)]


def _weights(checkpoint_dir):
    return load_checkpoint(checkpoint_dir)[0].state_dict()


def _max_difference(a_dir, b_dir) -> float:
    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _same_run(run, reference):
    """Same rows (timing aside), same summary, bit-identical weights."""
    assert without_timing(read_metrics(run)) == without_timing(read_metrics(reference))
    assert json.loads((run / "summary.json").read_text())["final"] == \
        json.loads((reference / "summary.json").read_text())["final"]
    assert _max_difference(run / "last", reference / "last") == 0.0


@pytest.fixture(scope="module")
def reference(toy_dataset, tmp_path_factory):
    """The uninterrupted run every interrupted one must end equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    code, _, _ = run_cli(_args(toy_dataset, out, "--log", "tensorboard"))
    assert code == 0
    return out


def _cli(args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mbgf_cli", *map(str, args)], env=env_without_torchrun(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# ------------------------------------------------------------------------------------------------
# Item 2 and automatic resume
# ------------------------------------------------------------------------------------------------


def test_a_folder_without_last_is_still_that_run_and_is_neither_overwritten_nor_appended_to(toy_dataset, tmp_path,
                                                                                            reference, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "last")
    best, metrics = (run / "best" / "model.safetensors").read_bytes(), (run / "metrics.jsonl").read_text()
    code, _, stderr = run_cli(_args(toy_dataset, run), capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Traceback" not in stderr
    assert f"{run} holds a run already (best/, metrics.jsonl, config.json, summary.json)" in message
    assert "--overwrite" in message
    assert (run / "best" / "model.safetensors").read_bytes() == best
    assert (run / "metrics.jsonl").read_text() == metrics
    # another configuration is refused by name, whatever the folder holds
    code, _, stderr = run_cli(_args(toy_dataset, run, "--lr", "2e-3", "--seed", "1"), capsys)
    message = " ".join(stderr.split())
    assert code == 2
    assert f"{run} holds a run of another configuration (--lr 0.001 there, 0.002 here; --seed 0 there, 1 here)" \
        in message
    assert (run / "metrics.jsonl").read_text() == metrics
    # --overwrite starts again, deleting only the run's own files
    (run / "notes.txt").write_text("mine")
    code, _, stderr = run_cli(_args(toy_dataset, run, "--overwrite", "--report-to", "tensorboard"), capsys)
    assert code == 0, stderr
    assert (run / "notes.txt").read_text() == "mine"
    _same_run(run, reference)


@pytest.mark.slow
def test_the_same_command_again_continues_the_run_and_resume_takes_the_run_folder(toy_dataset, tmp_path, reference,
                                                                                 capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    stray = run / ".last.tmp-0badc0de"  # what a writer killed mid-save leaves behind (item 8)
    code, _, stderr = run_cli(_args(toy_dataset, run, "--stop-at-step", 3, "--log", "tensorboard"), capsys)
    assert code == 130, stderr
    assert f"resume with: mbgf train --resume {run}" in " ".join(stderr.split())
    stray.mkdir()
    # README: `mbgf train --resume runs/k400-b16-xclip-mbgf` (item 9): the folder, as written
    code, _, stderr = run_cli(["train", "--resume", run, "--stop-at-step", 8, "--workers", "0"], capsys)
    assert code == 130, stderr
    assert not stray.exists()
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    # the very command that started it continues it (--resume auto, the default)
    code, _, stderr = run_cli(_args(toy_dataset, run, "--log", "tensorboard"), capsys)
    assert code == 0, stderr
    assert f"resuming {run} at epoch 2, step 2/6" in " ".join(stderr.split())
    _same_run(run, reference)

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    reference_loss = {r["iteration"]: r["train_loss"] for r in read_metrics(reference)}
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))  # each step once
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("epoch/train_loss")] == \
        [(i, pytest.approx(v)) for i, v in reference_loss.items()]
    assert [e.step for e in events.Scalars("gate/motion")] == [6, 12]
    assert [e.step for e in events.Images("val/confusion_matrix")] == [12]


# ------------------------------------------------------------------------------------------------
# Item 3: one run per folder
# ------------------------------------------------------------------------------------------------


def test_two_starts_into_one_folder_at_once_one_runs_the_other_is_refused_with_its_pid(toy_dataset, tmp_path):
    run = tmp_path / "run"
    starts = [_cli(_args(toy_dataset, run, "--epochs", 50)) for _ in range(2)]
    try:
        while all(p.poll() is None for p in starts) and not (run / "last").exists():
            time.sleep(0.1)
        stopped = [p for p in starts if p.poll() is not None]
        assert len(stopped) == 1, "both ran" if not stopped else "both stopped"
        refused = stopped[0]
        running = next(p for p in starts if p is not refused)
        _, stderr = refused.communicate(timeout=60)
        assert running.poll() is None  # the other one is training
        assert refused.returncode == 2, stderr[-2000:]
        assert f"{run}: in use by another run (PID {running.pid})" in " ".join(stderr.split())
        assert json.loads((run / "config.json").read_text())["epochs"] == 50  # written by the one that runs
    finally:
        for p in starts:
            p.kill()
            p.communicate()


# ------------------------------------------------------------------------------------------------
# Preemption, and SIGKILL around the checkpoint (item 7)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_sigterm_and_sigusr1_checkpoint_and_exit_75_and_the_run_resumes_to_the_uninterrupted_result(
        toy_dataset, tmp_path, reference, signum):
    run = tmp_path / "run"
    process = _cli(_args(toy_dataset, run, "--save-every", 2))
    try:
        while not (run / "step").exists() and process.poll() is None:  # inside the first epoch
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == PREEMPTED, stderr[-2000:]
    message = " ".join(stderr.split())
    assert signal.Signals(signum).name in message and f"mbgf train --resume {run}" in message
    code, _, stderr = run_cli(_args(toy_dataset, run))
    assert code == 0
    _same_run(run, reference)


KILL_AROUND_SAVE = textwrap.dedent("""
    import os, signal, sys
    from mbgf_cli import checkpoint
    from mbgf_cli.app import main

    save, where, epoch = checkpoint.save_checkpoint, sys.argv[1], int(sys.argv[2])

    def save_then_die(directory, model, meta, train_state=None):
        # SIGKILL right before or right after the epoch's last/ is swapped in
        here = os.path.basename(str(directory)) == "last" and meta["epoch"] == epoch and not meta.get("position")
        if here and where == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = save(directory, model, meta, train_state)
        if here and where == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    checkpoint.save_checkpoint = save_then_die
    main(sys.argv[3:])
""")


@pytest.mark.slow
def test_every_checkpointed_epoch_keeps_its_metrics_row_whenever_a_sigkill_comes(toy_dataset, tmp_path, reference):
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILL_AROUND_SAVE, "after", "1", *_args(toy_dataset, run)],
                            env=env_without_torchrun(), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_meta(run / "last")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # the checkpointed epoch has its row

    killed = subprocess.run([sys.executable, "-c", KILL_AROUND_SAVE, "before", "2", *_args(toy_dataset, run)],
                            env=env_without_torchrun(), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_meta(run / "last")["epoch"] == 1  # epoch 2 never reached a checkpoint ...
    code, _, stderr = run_cli(_args(toy_dataset, run))
    assert code == 0
    _same_run(run, reference)  # ... so its row was computed again, once


# ------------------------------------------------------------------------------------------------
# Item 4: every numeric option range-checked before any work
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [
    ("--clip-grad", "-1"), ("--warmup-epochs", "-1"), ("--label-smoothing", "1"), ("--label-smoothing", "-0.1"),
    ("--workers", "-1"), ("--lr", "0"), ("--lr", "-0.001"), ("--lr", "nan"), ("--lr", "inf"), ("--eval-every", "0"),
    ("--epochs", "0"), ("--batch-size", "0"), ("--total-batch", "-8"), ("--frames", "0"), ("--input-size", "0"),
    ("--new-lr-mult", "-1"), ("--min-lr-ratio", "1.5"), ("--weight-decay", "-0.1"), ("--mixup", "-1"),
    ("--cutmix", "-0.5"), ("--jitter", "1.5"), ("--gray", "-0.2"), ("--save-every", "0"),
])
def test_an_out_of_range_option_is_refused_before_any_work(tmp_path, option, value, capsys):
    root = tmp_path / "no-dataset-needed"  # refused before the data is even looked at
    code, _, stderr = run_cli(["train", "--root", root, option, value, "--output", tmp_path / "run"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Traceback" not in stderr
    assert message.startswith(f"error: {option} must be") and value.lstrip("-") in message
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_too_many_views_for_the_memory_are_refused_before_any_work(toy_dataset, tmp_path, reference, capsys):
    code, _, stderr = run_cli(["eval", "--checkpoint", reference / "last", "--root", toy_dataset, "--views",
                               "100000x3", "--batch-size", "64"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and message.startswith("error: --views 100000x3") and "memory" in message


# ------------------------------------------------------------------------------------------------
# Replaying a recorded configuration
# ------------------------------------------------------------------------------------------------


def test_config_replays_a_recorded_run_with_the_options_given_on_the_line(toy_dataset, tmp_path, reference, capsys):
    replay = tmp_path / "replay"
    code, _, stderr = run_cli(["train", "--config", reference / "config.json", "--seed", "3", "--output", replay,
                               "--stop-at-step", 1], capsys)
    assert code == 130, stderr
    message = " ".join(stderr.split())
    assert f"replaying {reference / 'config.json'}" in message and "--seed 0 there, 3 here" in message
    recorded = json.loads((reference / "config.json").read_text())
    replayed = json.loads((replay / "config.json").read_text())
    different = {k for k in recorded if recorded[k] != replayed[k]}
    assert different <= {"seed", "out", "resume", "stop_at_step", "report_to"} and replayed["seed"] == 3
    code, _, stderr = run_cli(["train", "--config", tmp_path / "absent.json"], capsys)
    assert code == 2 and "absent.json" in stderr


# ------------------------------------------------------------------------------------------------
# Elastic: torchrun restarts the group after a worker is SIGKILLed, and the run ends as if never stopped
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_under_torchrun_max_restarts_ends_with_the_uninterrupted_weights(toy_dataset,
                                                                                                   tmp_path):
    env = {**env_without_torchrun(), "OMP_NUM_THREADS": "1"}
    train = ["-m", "mbgf_cli", *_args(toy_dataset, tmp_path / "x")[:-2], "--batch-size", "4", "--total-batch", "8"]

    def torchrun(out, *launcher, extra=()):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               *launcher, *train, "--output", str(out), *extra], env=env, capture_output=True,
                              text=True, timeout=900)

    uninterrupted = torchrun(tmp_path / "uninterrupted")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    # rank 1 SIGKILLs itself after step 9 (the middle of epoch 2) on the first attempt only; the step
    # checkpoint of step 8 is the newest then
    elastic = torchrun(tmp_path / "elastic", "--max-restarts", "1", extra=("--save-every", "2", "--kill-at-step", "9"))
    assert elastic.returncode == 0, elastic.stderr[-3000:]
    assert "failed (exitcode: -9) local_rank: 1" in elastic.stderr  # torchrun saw the worker die by SIGKILL
    assert "resuming" in elastic.stderr and "at epoch 2, step 2/6" in " ".join(elastic.stderr.split())
    assert without_timing(read_metrics(tmp_path / "elastic")) == without_timing(read_metrics(tmp_path / "uninterrupted"))
    assert _max_difference(tmp_path / "elastic" / "last", tmp_path / "uninterrupted" / "last") == 0.0


def test_the_default_output_folder_is_the_one_holding_this_run_else_the_next_free_one(tmp_path, monkeypatch):
    from mbgf_cli import run_folder
    from mbgf_cli.run_folder import default_out_dir
    from mbgf_cli.train_config import TrainConfig, resolve_config

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(TrainConfig(dataset="synthetic", model="tiny", variant="clip", epochs=3))
    base = "runs/synthetic-tiny-clip-mbgf"
    assert default_out_dir(cfg) == base  # nothing there yet
    run_folder.claim(tmp_path / base)
    (tmp_path / base / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert default_out_dir(cfg) == base  # `mbgf train --dataset synthetic` again continues its run
    other = resolve_config(TrainConfig(dataset="synthetic", model="tiny", variant="clip", epochs=4))
    assert default_out_dir(other) == base + "-2"
    (tmp_path / (base + "-2")).mkdir()
    (tmp_path / (base + "-2") / "config.json").write_text(json.dumps(other.to_dict()))  # not mbgf's: passed over
    assert default_out_dir(other) == base + "-3"
