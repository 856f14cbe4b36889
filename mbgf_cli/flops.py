"""FLOPs of a model's forward pass, counted on meta tensors: no weights, no memory, no compute.

Convention (docs/DESIGN.md, the fvcore convention of the ActionCLIP/X-CLIP tables): one multiply-add is
one FLOP, per view (batch 1), and every matrix product counts, including attention's QK^T and AV.
Element-wise work (norms, activations, softmax, additions) is not counted.

The counter is a ``TorchDispatchMode``: it sees each aten op the forward runs and adds the
multiply-adds of the matrix-product ones. Fused attention kernels are counted by their own formula
(PyTorch's own flop counter misses some of them), so it does not matter whether
``scaled_dot_product_attention`` runs as a fused kernel or as its math fallback (bmm, softmax, bmm).
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import fusion
from clip.model import CLIP

# --- multiply-add formulas, one per aten op -------------------------------------------------------

def _matmul(a: torch.Tensor, b: torch.Tensor) -> int:
    # [..., m, k] @ [..., k, n]: batch * m * k * n (a vector operand counts as one row/column).
    m = a.shape[-2] if a.dim() > 1 else 1
    n = b.shape[-1] if b.dim() > 1 else 1
    batch = prod(a.shape[:-2]) if a.dim() > 2 else 1
    return batch * m * a.shape[-1] * n


def _mm(args, kwargs, out) -> int:  # mm(a, b), bmm(a, b), mv(a, v), dot(a, b)
    return _matmul(args[0], args[1])


def _add_mm(args, kwargs, out) -> int:  # addmm(bias, a, b), baddbmm(...), addmv(...), addbmm(...)
    return _matmul(args[1], args[2])


def _convolution(args, kwargs, out) -> int:
    # Every output value sums (in_channels / groups) * kernel products; a transposed convolution
    # scatters every input value the same way, so there it is the input that is counted.
    x, weight, transposed = args[0], args[1], args[6]
    per_value = weight.shape[1] * prod(weight.shape[2:])
    return (x.numel() if transposed else out.numel()) * per_value


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads_dim: int) -> int:
    """QK^T and AV of one attention call. ``heads_dim`` is where the sequence axis is not: the layouts
    are [B, H, L, D] for the scaled_dot_product ops and [B, L, H, D] for the lower-level kernels."""
    if heads_dim == 1:  # [..., L, D]
        batch, q_len, k_len = prod(query.shape[:-2]), query.shape[-2], key.shape[-2]
    else:  # [B, L, H, D] (a packed varlen [total, H, D] query is counted as one sequence)
        batch = prod(query.shape[:-3]) * query.shape[-2] if query.dim() > 3 else query.shape[-2]
        q_len, k_len = query.shape[-3], key.shape[-3]
    return batch * q_len * k_len * (query.shape[-1] + value.shape[-1])


def _sdpa(args, kwargs, out) -> int:
    return _attention(args[0], args[1], args[2], heads_dim=1)


def _sdpa_blhd(args, kwargs, out) -> int:
    return _attention(args[0], args[1], args[2], heads_dim=2)


def _native_multi_head_attention(args, kwargs, out) -> int:
    # nn.MultiheadAttention's inference fast path: in-projections, QK^T, AV and out-projection in one op.
    query, key, embed_dim = args[0], args[1], args[3]
    if query.dim() == 3:
        batch, q_len, k_len = query.shape[0], query.shape[1], key.shape[1]
    else:
        batch, q_len, k_len = 1, query.shape[0], key.shape[0]
    projections = (2 * q_len + 2 * k_len) * embed_dim * embed_dim  # q and output; k and v
    return batch * (projections + 2 * q_len * k_len * embed_dim)


def _transformer_encoder_layer(args, kwargs, out) -> int:
    # nn.TransformerEncoderLayer's inference fast path: attention (as above) and the feed-forward.
    src, embed_dim, ffn_in, ffn_out = args[0], args[1], args[14], args[16]
    batch, length = (src.shape[0], src.shape[1]) if src.dim() == 3 else (1, src.shape[0])
    attention = 4 * length * embed_dim * embed_dim + 2 * length * length * embed_dim
    feed_forward = length * (ffn_in.numel() + ffn_out.numel())
    return batch * (attention + feed_forward)


_FORMULAS_BY_NAME = {
    "mm": _mm, "bmm": _mm, "mv": _mm, "dot": _mm, "vdot": _mm,
    "addmm": _add_mm, "baddbmm": _add_mm, "addbmm": _add_mm, "addmv": _add_mm,
    "convolution": _convolution, "_convolution": _convolution,
    "scaled_dot_product_attention": _sdpa,
    "_scaled_dot_product_attention_math": _sdpa,
    "_scaled_dot_product_attention_math_for_mps": _sdpa,
    "_scaled_dot_product_flash_attention": _sdpa,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa,
    "_scaled_dot_product_efficient_attention": _sdpa,
    "_scaled_dot_product_cudnn_attention": _sdpa,
    "_scaled_dot_product_fused_attention_overrideable": _sdpa,
    "_flash_attention_forward": _sdpa_blhd,
    "_flash_attention_forward_no_dropout_inplace": _sdpa_blhd,
    "_efficient_attention_forward": _sdpa_blhd,
    "_native_multi_head_attention": _native_multi_head_attention,
    "_transformer_encoder_layer_fwd": _transformer_encoder_layer,
}


def _resolve_formulas() -> dict:
    # Ops this PyTorch build does not have are skipped (the list covers several versions and backends).
    formulas = {}
    for name, formula in _FORMULAS_BY_NAME.items():
        try:
            formulas[getattr(torch.ops.aten, name)] = formula
        except (AttributeError, RuntimeError):
            continue
    return formulas


FORMULAS = _resolve_formulas()


class FlopCounter(TorchDispatchMode):
    """Counts multiply-adds of the matrix products run inside it, and which parameters were read.

    Composite ops (``linear``, ``matmul``, ``einsum``, ``scaled_dot_product_attention``) reach the mode
    as the ops they decompose into, so each product is counted exactly once.
    """

    def __init__(self, parameters: dict[int, nn.Parameter] | None = None):
        super().__init__()
        self.flops = 0
        self.by_op: Counter[str] = Counter()
        self._watched = parameters or {}
        self.parameters_read: dict[int, nn.Parameter] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FORMULAS.get(func.overloadpacket)
        if formula is not None:
            flops = formula(args, kwargs, out)
            self.flops += flops
            self.by_op[func.overloadpacket.__name__] += flops
        for leaf in tree_leaves((args, kwargs)):
            if id(leaf) in self._watched:
                self.parameters_read[id(leaf)] = leaf
        return out


@dataclass(frozen=True)
class Cost:
    flops: int  # multiply-adds
    params: int  # parameters the forward read
    by_op: dict[str, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def count(forward: Callable[[], object], model: nn.Module) -> Cost:
    """Multiply-adds of ``forward()`` and the number of ``model``'s parameters it reads.

    Run it on meta tensors (a model built under ``torch.device("meta")``, meta inputs) to count without
    memory. Parameters are counted by use, so a model's parts that the forward skips (the text encoder
    of a video model's ``encode_video``) are not in the count.
    """
    watched = {id(p): p for p in model.parameters()}
    with torch.no_grad(), FlopCounter(watched) as counter:
        forward()
    params = sum(p.numel() for p in counter.parameters_read.values())
    return Cost(counter.flops, params, dict(counter.by_op))


# --- CLIP and video models ------------------------------------------------------------------------

def _meta_clip(backbone: str) -> CLIP:
    if backbone not in fusion.BACKBONES:
        raise ValueError(f"unknown model {backbone!r}; choose from {', '.join(fusion.BACKBONES)}")
    with torch.device("meta"):
        return CLIP(fusion.BACKBONES[backbone].clip_config)


def text_encoder_cost(backbone: str) -> Cost:
    """One class text (the whole 77-token context) through the CLIP text encoder."""
    model = _meta_clip(backbone)
    tokens = torch.zeros(1, model.context_length, dtype=torch.long, device="meta")
    return count(lambda: model.encode_text(tokens), model)


def video_model_cost(config: fusion.VideoModelConfig, classes: int = 1) -> Cost:
    """One clip through the video encoder of the model ``config`` describes (built on meta).

    The video side is ``encode_video`` (frames, temporal head, MBGF) and, for X-CLIP, the
    video-specific prompt generator for ``classes`` class texts: it runs per video, so X-CLIP's own
    tables count it with the video; the class texts themselves are the text encoder's cost.
    """
    with torch.device("meta"):
        model = fusion.build_from_config(config)
    clips = torch.empty(1, config.frames, 3, config.input_size, config.input_size, device="meta")

    def forward():
        video, details = model.encode_video(clips, return_details=True)
        if model.prompts_generator is not None:
            text = torch.empty(1, classes, video.shape[-1], device="meta")
            model.video_specific_text(text, details["patch_tokens"])

    return count(forward, model)


def prompt_cost_per_class(config: fusion.VideoModelConfig) -> Cost:
    """What one more class adds to an X-CLIP model's video side (its prompt generator); zero otherwise."""
    one, two = video_model_cost(config, classes=1), video_model_cost(config, classes=2)
    return Cost(two.flops - one.flops, 0, {})


@dataclass(frozen=True)
class FlopsRow:
    """One line of ``mbgf flops``: a video model per view, or (variant ``text``) the text encoder per class."""

    name: str
    model: str
    variant: str
    mbgf: bool
    frames: int  # 0 for the text encoder
    input_size: int  # pixels; the text encoder's context length for the text row
    gflops: float
    params_m: float
    overhead_gflops: float | None = None  # +MBGF rows: what MBGF adds to the same model without it
    config: fusion.VideoModelConfig | None = None  # the video model counted (None for the text row)

    @property
    def input(self) -> str:
        return f"{self.input_size} tokens" if self.variant == "text" else f"{self.frames}x{self.input_size}"

    @property
    def overhead_percent(self) -> float | None:
        if self.overhead_gflops is None:
            return None
        return 100 * self.overhead_gflops / (self.gflops - self.overhead_gflops)

    def to_json(self) -> dict:
        return {"name": self.name, "model": self.model, "variant": self.variant, "mbgf": self.mbgf,
                "frames": self.frames, "input_size": self.input_size, "gflops": round(self.gflops, 6),
                "params_m": round(self.params_m, 6)}


def flops_rows(backbone: str = "b16", variants=tuple(fusion.VARIANTS), frames=(8,), input_size: int | None = None,
               classes: int = 400) -> Iterator[FlopsRow]:
    """Every variant without and with MBGF at every frame count, then the text encoder per class
    (``2 * len(variants) * len(frames) + 1`` rows, yielded as they are counted).

    ``classes`` is the number of class texts X-CLIP's prompt generator runs on per video.
    Raises ``ValueError`` for an unknown backbone or variant, or an input size the patches do not tile,
    before counting anything.
    """
    if classes < 1:
        raise ValueError(f"classes must be at least 1, not {classes}")
    configs = [[fusion.VideoModelConfig(model=backbone, variant=variant, mbgf=mbgf, frames=n, input_size=input_size)
                for mbgf in (False, True)] for variant in variants for n in frames]
    for plain, with_mbgf in configs:
        base, fused = video_model_cost(plain, classes), video_model_cost(with_mbgf, classes)
        for config, cost in ((plain, base), (with_mbgf, fused)):
            yield FlopsRow(config.name, backbone, config.variant, config.mbgf, config.frames, config.input_size,
                           cost.gflops, cost.params_m,
                           overhead_gflops=fused.gflops - base.gflops if config.mbgf else None, config=config)
    text = text_encoder_cost(backbone)
    clip_backbone = fusion.BACKBONES[backbone]
    yield FlopsRow(f"CLIP-{clip_backbone.label} text (per class)", backbone, "text", False, 0,
                   clip_backbone.clip_config.context_length, text.gflops, text.params_m)
