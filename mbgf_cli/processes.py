"""Worker processes that die with the process that started them.

Every process pool mbgf starts comes from ``process_pool``. A worker of a plain pool outlives a
SIGKILL of its parent: it finishes its task, then waits for the next one forever, holding its
memory. Here each worker first asks the kernel to kill it when its parent dies (Linux's
parent-death signal); where that is not available, a thread in the worker watches the parent.

The parent-death signal follows the thread that started the worker, so a pool must be used in the
thread that made it (as ``with process_pool(...) as pool:`` is).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def process_pool(max_workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers die with this process (then run ``initializer``)."""
    return ProcessPoolExecutor(max_workers=max_workers, initializer=_start_worker,
                               initargs=(os.getpid(), initializer, initargs))


def _start_worker(owner: int, initializer, initargs: tuple) -> None:
    die_with_parent(owner)
    if initializer is not None:
        initializer(*initargs)


def die_with_parent(owner: int) -> None:
    """End this process when its parent ends; ``owner`` is the process that asked for it."""
    parent = os.getppid()
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
    # The parent (or the owner, when a fork server stands between them) may have died before the
    # signal was asked for, and then it never comes.
    if os.getppid() != parent or not _alive(owner):
        os._exit(1)


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
