"""Numeric precision of a run: which autocast dtype ``--amp`` means on a device (train, eval, predict)."""

from __future__ import annotations

import torch


def resolve_amp(amp: str, device: torch.device):
    """``--amp`` as an autocast dtype, or ``None`` for full precision."""
    if amp == "auto":  # bf16 where the GPU has it; full precision on CPUs (bf16 matmuls are slow there)
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
