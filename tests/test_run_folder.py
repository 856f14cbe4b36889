"""A run folder's lifecycle (mbgf_cli.run_folder): the lock a killed holder never leaves stuck, what
counts as a run, what --overwrite deletes (the run's own files only), how configurations are compared,
and what --resume PATH accepts."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from mbgf_cli import run_folder
from mbgf_cli.checkpoint import save_checkpoint
from mbgf_cli.errors import UserError
from mbgf_cli.run_folder import RunFolderBusy, RunLock

HOLDER = textwrap.dedent("""
    import os, sys, time
    from mbgf_cli.run_folder import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    child = os.fork() if len(sys.argv) > 2 else None
    if child == 0:  # a forked helper (a loader worker) that outlives its parent
        os.write(1, b"helper\\n")  # fork's after-in-child hooks have run once fork has returned here
        time.sleep(120)
        os._exit(0)
    os.write(1, f"{child or 0}\\n".encode())  # one write each: the two lines never interleave
    time.sleep(120)
""")


def _start_holder(folder, fork=False):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), *(["fork"] if fork else [])],
                               stdout=subprocess.PIPE, text=True)
    # The lock is held once the holder's line is written; with a helper, wait for its line too (on a busy
    # machine the helper may not have run yet when the holder has written its own).
    lines = [process.stdout.readline() for _ in range(2 if fork else 1)]
    child = next(int(line) for line in lines if line.strip() != "helper")
    return process, child


def test_a_second_start_is_refused_with_the_holders_pid_and_a_killed_holder_frees_the_folder(tmp_path):
    holder, _ = _start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusy) as refused:
            RunLock(tmp_path / "run").acquire()
        assert f"PID {holder.pid}" in str(refused.value) and str(tmp_path / "run") in str(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path / "run") as lock:  # the kernel dropped the dead holder's lock
        assert lock.held
        with pytest.raises(RunFolderBusy, match=f"PID {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()  # another open file of the same process is refused too
    assert not lock.held
    RunLock(tmp_path / "run").acquire().release()


def test_a_forked_helper_that_outlives_its_killed_parent_does_not_keep_the_folder(tmp_path):
    holder, child = _start_holder(tmp_path / "run", fork=True)
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the helper is still alive
        RunLock(tmp_path / "run").acquire().release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_any_trace_of_a_run_makes_the_folder_a_run(tmp_path):
    assert run_folder.traces(tmp_path / "absent") == []
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / run_folder.LOCK_FILE).write_text("")
    assert run_folder.traces(folder) == []
    (folder / "best").mkdir()
    (folder / "metrics.jsonl").write_text("{}\n")
    assert run_folder.traces(folder) == ["best", "metrics.jsonl"]


def test_overwrite_deletes_the_runs_own_files_and_nothing_else(tmp_path):
    folder = tmp_path / "run"
    for name in ("last", "best", "step", "skipped/train", "tensorboard", "data", ".last.tmp-0123abcd"):
        (folder / name).mkdir(parents=True)
    for name in ("metrics.jsonl", "config.json", "summary.json", "training_curve.png", "skipped_train.txt",
                 "notes.txt", "data/videos.txt", "last/model.safetensors", ".config.json.tmp-12-abcdef",
                 ".metrics.jsonl.bak"):
        (folder / name).write_text("x")
    run_folder.claim(folder)  # what a run does to its folder when it starts
    removed = run_folder.overwrite(folder)
    assert set(removed) == {"last", "best", "step", "metrics.jsonl", "config.json", "summary.json",
                            "training_curve.png", "skipped", "skipped_train.txt", "tensorboard"}
    assert sorted(p.name for p in folder.iterdir()) == [".metrics.jsonl.bak", "data", "notes.txt"]
    assert (folder / "data" / "videos.txt").read_text() == "x"


def test_configurations_differ_by_value_and_the_message_names_each_option(tmp_path):
    recorded = {"lr": 0.001, "epochs": 30, "mbgf": True, "workers": 8, "frames": 8, "crop": "center"}
    current = {"lr": 2e-3, "epochs": 30.0, "mbgf": False, "workers": 2, "frames": 8, "crop": "center",
               "new_option": None}
    differences = run_folder.config_differences(recorded, current, ignore=("workers",))
    assert differences == [("lr", 0.001, 0.002), ("mbgf", True, False)]
    message = str(run_folder.refuse_other_configuration(tmp_path, differences))
    assert message == (f"{tmp_path} holds a run of another configuration (--lr 0.001 there, 0.002 here; --mbgf on "
                       "there, off here); resume it with the same options, or --overwrite, or another --output")
    assert run_folder.config_differences({"views": [4, 3]}, {"views": [4, 3]}) == []
    assert run_folder.config_differences({"amp": "off"}, {"amp": "off", "seed": 1}) == [("seed", None, 1)]


def _checkpoint(directory, iteration, state=True):
    model = torch.nn.Linear(2, 2)
    train_state = {"position": {"epoch": 0, "step": iteration, "iteration": iteration}} if state else None
    save_checkpoint(directory, model, {"config": {}, "epoch": 0}, train_state)


def test_the_newest_checkpoint_is_the_one_that_stopped_later_last_on_a_tie(tmp_path):
    folder = tmp_path / "run"
    _checkpoint(folder / "best", 50, state=False)
    assert run_folder.newest_checkpoint(folder) is None
    _checkpoint(folder / "last", 12)
    assert run_folder.newest_checkpoint(folder) == folder / "last"
    _checkpoint(folder / "step", 15)
    assert run_folder.newest_checkpoint(folder) == folder / "step"
    _checkpoint(folder / "last", 15)
    assert run_folder.newest_checkpoint(folder) == folder / "last"


def test_resume_takes_the_run_folder_and_its_checkpoints_but_not_best(tmp_path):
    folder = tmp_path / "runs" / "k400-b16-xclip-mbgf"
    _checkpoint(folder / "last", 6)
    _checkpoint(folder / "step", 8)
    _checkpoint(folder / "best", 6, state=False)
    assert run_folder.resolve_resume(folder) == (folder, folder / "step")
    assert run_folder.resolve_resume(folder / "last") == (folder, folder / "last")
    assert run_folder.resolve_resume(folder / "last" / "model.safetensors") == (folder, folder / "last")
    with pytest.raises(UserError, match="holds weights only, no training state; resume the run folder"):
        run_folder.resolve_resume(folder / "best")
    with pytest.raises(UserError, match="no such run folder or checkpoint"):
        run_folder.resolve_resume(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no last/ or step/ checkpoint to resume from \(not a run folder\)"):
        run_folder.resolve_resume(tmp_path / "empty")


def test_only_a_folder_mbgf_marked_as_a_run_is_a_run_and_the_users_own_config_and_best_are_never_touched(tmp_path):
    """Issue 21 item 6: a folder with a config.json of the user's is not a run; --overwrite does not change that."""
    users = tmp_path / "mine"
    (users / "best").mkdir(parents=True)
    (users / "config.json").write_text('{"learning_rate": 0.1}')
    (users / "best" / "weights.bin").write_text("mine")
    assert not run_folder.is_run(users)
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not written by `mbgf train`|is not mbgf's and would be replaced"):
            run_folder.check_run_folder(users, overwrite)
    assert sorted(p.name for p in users.iterdir()) == ["best", "config.json"]
    assert (users / "config.json").read_text() == '{"learning_rate": 0.1}'

    fresh = tmp_path / "fresh"
    run_folder.claim(fresh)
    assert run_folder.is_run(fresh) and run_folder.check_run_folder(fresh) == fresh


def test_a_run_folder_of_the_previous_version_is_recognised_by_its_config_and_checkpoint(tmp_path):
    """No marker (written before it existed): a run's config.json (its ``log`` key included) and an mbgf
    checkpoint in last/ make it a run, which --overwrite then adopts and clears."""
    import json

    from mbgf_cli.train_config import TrainConfig, resolve_config

    old = tmp_path / "old-run"
    recorded = resolve_config(TrainConfig(dataset="synthetic")).to_dict()
    recorded["log"] = recorded.pop("report_to")
    old.mkdir()
    (old / "config.json").write_text(json.dumps(recorded))
    assert not run_folder.legacy_run(old)  # a config alone is not enough: it needs an mbgf checkpoint
    _checkpoint(old / "last", 6)
    (old / "notes.txt").write_text("mine")
    assert run_folder.legacy_run(old) and run_folder.is_run(old)
    assert run_folder.check_run_folder(old, overwrite=True) == old
    assert set(run_folder.overwrite(old)) == {"last", "config.json"}
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"]
