"""Worker processes die with their parent: a SIGKILL of `prepare-data` or `train` while its process
pool works leaves no worker behind (issue 15, item 6).

Each test starts the real command on small generated data, waits until its pool's workers run,
kills the command with SIGKILL and checks that every process it had started is gone. Processes are
found through /proc (each worker is a forked copy of the command, with the same command line).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from videos import write_video


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead orphan waits to be reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def kill_while_workers_run(command: list, workers: int = 2, patience: float = 120) -> tuple[set[int], set[int]]:
    """Start ``command``, SIGKILL it once ``workers`` forked workers run; returns (workers seen, processes
    still running a while after the kill)."""
    proc = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    everyone: set[int] = set()
    try:
        deadline = time.monotonic() + patience
        seen: set[int] = set()
        while len(seen) < workers:
            assert proc.poll() is None, f"{command[3:5]} ended before {workers} workers were seen"
            assert time.monotonic() < deadline, f"no {workers} workers within {patience} s"
            own = cmdline(proc.pid)
            seen = {pid for pid in descendants(proc.pid) if cmdline(pid) == own}
            time.sleep(0.02)
        everyone = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # A worker told of its parent's death ends at once; give the kernel a moment to deliver it.
        deadline = time.monotonic() + 20
        left = {pid for pid in everyone if running(pid)}
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = {pid for pid in left if running(pid)}
        return seen, left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in everyone:  # the processes this test started, should any have survived
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def mbgf(*args) -> list:
    return [sys.executable, "-m", "mbgf_cli", *args]


@pytest.fixture
def many_videos(tmp_path):
    """Two class folders of 150 copies of one 64-frame video: minutes of work for two workers."""
    one = write_video(tmp_path / "one.mp4", num_frames=64, size=(64, 64))
    videos = tmp_path / "videos"
    for cls in ("a", "b"):
        (videos / cls).mkdir(parents=True)
        for i in range(150):
            shutil.copyfile(one, videos / cls / f"{i:03d}.mp4")
    return videos


def test_prepare_data_synthetic_workers_die_with_it(tmp_path):
    seen, left = kill_while_workers_run(mbgf("prepare-data", "synthetic", "--out", tmp_path / "syn",
                                             "--videos-per-class", 100, "--size", 64, "--workers", 2))
    assert len(seen) >= 2 and left == set()


def test_prepare_data_resize_workers_die_with_it(tmp_path, many_videos):
    seen, left = kill_while_workers_run(mbgf("prepare-data", "folder", "--videos", many_videos, "--out",
                                             tmp_path / "out", "--resize", 48, "--workers", 2))
    assert len(seen) >= 2 and left == set()


def test_train_frame_cache_workers_die_with_it(tmp_path, many_videos):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "videos").symlink_to(many_videos, target_is_directory=True)
    names = sorted(p.relative_to(many_videos).as_posix() for p in many_videos.rglob("*.mp4"))
    (root / "train.txt").write_text("".join(f"{n} {int(n.startswith('b'))}\n" for n in names))
    (root / "val.txt").write_text("".join(f"{n} {int(n.startswith('b'))}\n" for n in names[::10]))
    (root / "labels.csv").write_text("id,name\n0,a\n1,b\n")
    seen, left = kill_while_workers_run(mbgf("train", "--root", root, "--model", "tiny", "--variant", "clip",
                                             "--frames", 4, "--input-size", 32, "--batch-size", 8, "--epochs", 1,
                                             "--cache-decoded", "--workers", 2, "--no-plot", "--out", tmp_path / "run"))
    assert len(seen) >= 2 and left == set()
