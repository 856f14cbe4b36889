"""The rules of thumb the commands apply on their own, in one place, each with a switch to turn it off.

=====================  ===============================  ==============================================
rule                   where                            switch (environment variable set to ``0``)
=====================  ===============================  ==============================================
thread sharing         eval, predict, embed on a CPU    ``MBGF_THREAD_SHARE=0``: the model keeps every
                       with loader processes            intra-op thread torch gives it
tiny model trains      ``--amp auto`` when training     ``MBGF_TINY_FP32=0``: tiny trains in bf16 like
in fp32                the tiny backbone on a CPU       the other backbones where the CPU has bf16 units
views memory bound     eval, predict, embed before      ``MBGF_VIEWS_MEMORY_BOUND=0``: no refusal (the
                       the first video                  run may then exhaust the machine's memory)
=====================  ===============================  ==============================================

Each rule says in its docstring why it exists.
"""

from __future__ import annotations

import os

from mbgf_cli.errors import UserError
from mbgf_cli.resources import available_cpus, check_memory

THREAD_SHARE = "MBGF_THREAD_SHARE"
TINY_FP32 = "MBGF_TINY_FP32"
VIEWS_MEMORY_BOUND = "MBGF_VIEWS_MEMORY_BOUND"


def enabled(switch: str) -> bool:
    """A rule is on unless its environment variable says 0 (or off, false, no)."""
    return os.environ.get(switch, "1").strip().lower() not in ("0", "off", "false", "no")


def trains_in_fp32_on_cpu(model: str | None) -> bool:
    """A small backbone (``Backbone.small`` in the registry: tiny) trains in fp32 on a CPU even where bf16
    units exist: its matrices are too small for the bf16 kernels to win back what the backward pass adds in casts (its inference still gains)."""
    if not enabled(TINY_FP32) or model is None:
        return False
    import fusion

    backbone = fusion.BACKBONES.get(model)
    return backbone is not None and backbone.small  # the registry's flag (benchmarks/train_step.py measures it)


def check_views_memory(views: tuple[int, int], batch_size: int, frames: int, input_size: int,
                       text: str | None = None) -> None:
    """Refuse, before any decoding, views whose input batch alone (float32 frames) would take more than
    half the memory available now: such a run would only end when the machine runs out of memory."""
    if not enabled(VIEWS_MEMORY_BOUND):
        return
    clips, crops = views
    need = batch_size * clips * crops * frames * 3 * input_size * input_size * 4
    try:
        check_memory(need, f"the input of {clips * crops} views of {frames}x{input_size}x{input_size} frames x "
                           f"--batch-size {batch_size}")
    except UserError as e:
        raise UserError(f"--views {text or f'{clips}x{crops}'}: not enough memory: {e} (fewer views or a smaller --batch-size; "
                        f"{VIEWS_MEMORY_BOUND}=0 turns this check off)") from None


class ThreadShare:
    """The model's intra-op threads on a CPU whose cores the loader's decoding processes share.

    While the model waits for its batches, the decoders are the bottleneck and keep their cores busy:
    the model takes the cores they leave (at least one), since an intra-op thread that waits for a busy
    core holds up all the others. While every batch is ready when the model asks for it, the decoders
    sit on a full queue most of the time: the model takes every core. ``update`` after each batch
    moves between the two, with a gap between the thresholds so that it does not flap.
    ``MBGF_THREAD_SHARE=0``: the model keeps torch's threads throughout.
    """

    AHEAD = 0.02   # waited under 2% of the model's time: the decoders are ahead
    BEHIND = 0.10  # waited over 10%: the decoders are the bottleneck

    def __init__(self, workers: int):
        import torch

        self.on = enabled(THREAD_SHARE)
        self.original = torch.get_num_threads()
        self.shared = max(1, min(self.original, available_cpus() - workers)) if self.on else self.original
        self.threads = self.shared
        torch.set_num_threads(self.threads)

    def update(self, waited: float, worked: float) -> None:
        import torch

        if waited < self.AHEAD * worked:
            wanted = self.original
        elif waited > self.BEHIND * worked:
            wanted = self.shared
        else:
            return
        if wanted != self.threads:
            self.threads = wanted
            torch.set_num_threads(wanted)

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.original)
