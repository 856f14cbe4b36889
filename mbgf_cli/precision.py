"""Numeric precision of a run: which autocast dtype ``--amp`` means on a device (train, eval, predict).

``--amp auto`` runs in bf16 where the device multiplies bf16 matrices natively and in full precision
elsewhere: CUDA GPUs with native bf16 (Ampere and later), CPUs with AMX-BF16 or AVX-512 BF16 units
(where oneDNN's bf16 kernels beat fp32 ones); older CPUs emulate bf16 and would only slow down. One
exception: the tiny backbone trains in fp32 on a CPU even so (a rule of thumb kept with the others in
:mod:`mbgf_cli.heuristics`, where ``MBGF_TINY_FP32=0`` turns it off).
``choose_amp`` also says why, for the run's header.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from mbgf_cli.heuristics import trains_in_fp32_on_cpu

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def cpu_bf16_units() -> str | None:
    """The bf16 matrix units of this CPU as torch's oneDNN kernels see them ("AMX-BF16", "AVX-512 BF16"),
    or None. Asked through torch (``torch.cpu``), so it answers for the build that will run the math."""
    def supported(name: str) -> bool:
        query = getattr(torch.cpu, name, None)  # private helpers: absent from some builds
        try:
            return bool(query()) if query is not None else False
        except Exception:
            return False

    if not torch.backends.mkldnn.is_available():
        return None
    if supported("_is_amx_tile_supported"):
        return "AMX-BF16"
    if supported("_is_avx512_bf16_supported"):
        return "AVX-512 BF16"
    return None


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether this GPU multiplies bf16 natively (compute capability 8.0 and later), not by emulation."""
    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def choose_amp(amp: str, device: torch.device, model: str | None = None,
               training: bool = False) -> tuple[torch.dtype | None, str]:
    """``--amp`` on ``device`` for the backbone ``model`` (b16, tiny, ...; None: not known), to train it
    or to run it, as (autocast dtype or ``None`` for full precision, the reason in words), e.g.
    ``(torch.bfloat16, "bf16 (CPU has AVX-512 BF16)")``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, not {amp!r}")
    if amp == "off":
        return None, "fp32 (--amp off)"
    if amp == "bf16":
        return torch.bfloat16, "bf16 (--amp bf16)"
    if amp == "fp16":
        return torch.float16, "fp16 (--amp fp16)"
    device = torch.device(device)
    if device.type == "cuda":
        if cuda_native_bf16(device):
            return torch.bfloat16, "bf16 (GPU has native bf16)"
        return None, "fp32 (GPU without native bf16; --amp fp16 to force half precision)"
    if device.type == "cpu":
        units = cpu_bf16_units()
        if units and training and trains_in_fp32_on_cpu(model):
            return None, f"fp32 (CPU has {units}, but the {model} model trains faster in fp32)"
        if units:
            return torch.bfloat16, f"bf16 (CPU has {units})"
        return None, "fp32 (CPU without AMX or AVX-512 BF16: bf16 would be emulated, slower)"
    return None, f"fp32 (no bf16 rule for {device.type})"


def autocast_context(dtype: torch.dtype | None, device: torch.device):
    """``torch.autocast`` for ``dtype`` on the device's type, or a context that does nothing."""
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()
