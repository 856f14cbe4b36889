"""Distributed data parallel through torchrun: process group setup, reductions, and gathering
predictions so that every video is counted exactly once.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them everything here
degrades to a single process (no process group, reductions are identities).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from mbgf_cli.resources import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_main() -> bool:
    return not active() or dist.get_rank() == 0


def setup(device: str | None = None) -> Context:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU) and pick this rank's device.

    ``device``: "cpu", "cuda", "cuda:N" or None (CUDA when available); under torchrun each process takes
    the GPU of its local rank. A device that is not here is one line naming it and those that are.
    """

    asked = resolve_device(device)
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch_device = asked
    if asked.type == "cuda":
        index = local_rank if world_size > 1 or asked.index is None else asked.index
        torch_device = resolve_device(f"cuda:{index}")
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        timeout = timedelta(minutes=30)
        dist.init_process_group(backend=backend, timeout=timeout, **attempt_store(rank, world_size, timeout),
                                **({"device_id": torch_device} if torch_device.type == "cuda" else {}))
    return Context(rank, world_size, local_rank, torch_device)


def attempt_store(rank: int, world_size: int, timeout: timedelta) -> dict:
    """Under torchrun, the key-value store the processes meet through, with a key prefix of its own for
    each attempt. torchrun keeps one store across the restarts of a group (``--max-restarts``), and the
    keys a process group publishes (each process's address) outlive the processes that wrote them: a
    restarted group would read its dead predecessors' addresses and fail to connect."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return {}  # not torchrun: the default env:// rendezvous
    hosted_by_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=not hosted_by_agent and rank == 0, timeout=timeout,
                          **({} if hosted_by_agent else {"multi_tenant": True}))
    return {"store": dist.PrefixStore(f"mbgf/attempt-{attempt}", store), "rank": rank, "world_size": world_size}


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def comm_device() -> torch.device:
    """Where tensors must live for collectives: the current GPU under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place, and returned); the identity in a single process."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s value of a small picklable-free object (str, int, ...) on every rank."""
    if not active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_predictions(indices: torch.Tensor, values: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble per-video rows computed on different processes: ``([total, ...] rows, [total] seen)``
    on every process.

    ``indices`` [n] are the dataset indices this process evaluated and ``values`` [n, ...] their rows.
    A distributed sampler pads the dataset so that every process gets the same number of videos; the
    padding repeats videos that some process also has, so placing rows by index counts each video
    exactly once. An index no process produced (a video that could not be decoded) is left unseen.
    """
    device = comm_device()
    indices = indices.to(device=device, dtype=torch.long)
    values = values.to(device=device, dtype=torch.float32)
    if active():
        # Processes may hold different numbers of rows (a sampler without padding): pad to the longest.
        world = dist.get_world_size()
        count = torch.tensor([indices.numel()], dtype=torch.long, device=device)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        padded_indices = torch.full((longest,), -1, dtype=torch.long, device=device)
        padded_indices[: indices.numel()] = indices
        padded_values = torch.zeros((longest, *values.shape[1:]), dtype=values.dtype, device=device)
        padded_values[: values.shape[0]] = values
        all_indices = [torch.empty_like(padded_indices) for _ in range(world)]
        all_values = [torch.empty_like(padded_values) for _ in range(world)]
        dist.all_gather(all_indices, padded_indices)
        dist.all_gather(all_values, padded_values)
        indices = torch.cat(all_indices)
        values = torch.cat(all_values)
        keep = indices >= 0
        indices, values = indices[keep], values[keep]
    indices, values = indices.cpu(), values.cpu()
    result = torch.zeros((total, *values.shape[1:]), dtype=values.dtype)
    seen = torch.zeros(total, dtype=torch.bool)
    result[indices] = values
    seen[indices] = True
    return result, seen
