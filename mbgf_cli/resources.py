"""What the machine has, and the bounds every command's counts and sizes are checked against before
any work: the device asked for, loader processes, and memory for frames and views.

One message everywhere for a device that is not here; one bound for ``--workers`` on every command.
"""

from __future__ import annotations

import os

from mbgf_cli.errors import UserError


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_devices() -> list[str]:
    import torch

    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0))]


def resolve_device(device: str | None, option: str = "--device"):
    """``--device`` as a ``torch.device`` (None: cuda when available, else cpu); a device that is not
    here is one line naming it and the ones that exist."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"{option} {device!r}: expected cpu, cuda or cuda:N "
                        f"(here: {', '.join(available_devices())})") from None
    if resolved.type == "cpu":
        return resolved
    here = available_devices()
    index = resolved.index or 0
    if resolved.type != "cuda" or f"cuda:{index}" not in here:
        raise UserError(f"{option} {device}: no such device here (available: {', '.join(here)})")
    return resolved


def max_workers() -> int:
    """The most loader processes any command starts: a few per core, and never more than the process
    limit or memory (a decoding process takes a few hundred MB) allow."""
    cores = available_cpus()
    bound = 4 * cores
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft != resource.RLIM_INFINITY:
            bound = min(bound, max(1, soft // 4))
    except (ImportError, OSError, ValueError):
        pass
    available = available_memory()
    if available is not None:
        bound = min(bound, max(1, available // (512 * 2**20)))
    return max(1, bound)


def check_workers(workers: int | None, option: str = "--workers") -> int | None:
    """``--workers`` against what the machine has (None: the command's default)."""
    if workers is None:
        return None
    if workers < 0:
        raise UserError(f"{option} must be at least 0, not {workers}")
    bound = max_workers()
    if workers > bound:
        raise UserError(f"{option} {workers}: this machine runs at most {bound} loader processes "
                        f"({available_cpus()} CPUs, {_gib(available_memory())} available)")
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


def _gib(nbytes) -> str:
    return "unknown memory" if nbytes is None else f"{nbytes / 2**30:.1f} GiB"
