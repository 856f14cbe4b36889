"""What the machine has, and the bounds every command's counts and sizes are checked against before
any work: the device asked for, loader processes, and memory for frames and views.

- ``resolve_device``: one message everywhere for a device that is not here, naming the ones that are.
- ``check_workers`` / ``max_workers``: one bound for ``--workers`` on every command: a few processes per
  CPU this process may use, no more than memory holds (a decoding process takes a few hundred MB), and
  no more than a share of the per-user process limit.
- ``check_memory`` / ``check_input_memory``: a size (``--frames``, ``--input-size``, ``--batch-size``,
  ``--views``) whose tensors alone would take more than half the available memory is refused before it
  is allocated.
"""

from __future__ import annotations

import os

from mbgf_cli.errors import UserError

WORKERS_PER_CPU = 4
WORKER_MEMORY = 512 * 2**20  # bytes a decoding loader process may take
PROCESS_LIMIT_SHARE = 4  # the loaders take at most a quarter of the per-user process limit


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu`` and ``cuda:N`` for each GPU (``mps`` on a Mac that has it)."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | None, option: str = "--device"):
    """``--device`` as a ``torch.device`` (None: cuda when available, else cpu). A name torch does not
    know, or a device this machine does not have, is one line naming what was asked and what exists."""
    import torch

    here = available_devices()
    if device is None:
        return torch.device("cuda" if any(d.startswith("cuda") for d in here) else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{option} {device!r}: not a device name; this machine has {', '.join(here)}") from None
    if resolved.type == "cpu":
        return resolved
    name = f"cuda:{resolved.index or 0}" if resolved.type == "cuda" else resolved.type
    if name not in here:
        raise UserError(f"{option} {device}: this machine has no such device; it has {', '.join(here)}")
    return resolved


def process_limit() -> int | None:
    """The per-user process limit (``ulimit -u``), None where there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def max_workers() -> int:
    """The most loader processes any command starts (see the module's rule); at least 1."""
    bound = WORKERS_PER_CPU * available_cpus()
    limit = process_limit()
    if limit is not None:
        bound = min(bound, limit // PROCESS_LIMIT_SHARE)
    available = available_memory()
    if available is not None:
        bound = min(bound, available // WORKER_MEMORY)
    return max(1, bound)


def check_workers(workers: int | None, option: str = "--workers") -> int | None:
    """``--workers`` against what the machine has (None: the command's default), before any process starts."""
    if workers is None:
        return None
    if workers < 0:
        raise UserError(f"{option} must be at least 0, not {workers}")
    bound = max_workers()
    if workers > bound:
        limit = process_limit()
        raise UserError(f"{option} {workers}: this machine runs at most {bound} loader processes "
                        f"({available_cpus()} CPUs, {_gib(available_memory())} available"
                        f"{f', a limit of {limit} processes' if limit is not None else ''}); give {bound} or fewer")
    return workers


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable: free plus reclaimable cache), None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, fraction: float = 0.5) -> None:
    """Refuse, before allocating, ``what`` needing more than ``fraction`` of the available memory."""
    available = available_memory()
    if available is not None and nbytes > fraction * available:
        raise UserError(f"{what} needs {_gib(nbytes)}, more than {fraction:.0%} of the {_gib(available)} "
                        "available; lower it")


def input_bytes(batch: int, frames: int, size: int, views: int = 1, bytes_per_value: int = 4) -> int:
    """The bytes of one batch of decoded clips as the model takes them: ``[batch x views, frames, 3, size, size]``."""
    return batch * views * frames * 3 * size * size * bytes_per_value


def check_input_memory(batch: int, frames: int, size: int, views: int = 1, what: str | None = None) -> None:
    """``--batch-size`` x ``--views`` x ``--frames`` x ``--input-size``: the decoded batch alone must fit
    in half the available memory (the model's activations come on top), checked before decoding."""
    what = what or (f"--batch-size {batch} x --views {views} x --frames {frames} at --input-size {size} "
                    "(the decoded batch)")
    check_memory(input_bytes(batch, frames, size, views), what)


def _gib(nbytes) -> str:
    return "unknown memory" if nbytes is None else f"{nbytes / 2**30:.1f} GiB"
