"""MBGF — Multi-Branch Gated Fusion (this project's module; docs/DESIGN.md defines it).

Inputs: frame embeddings ``z [B, T, E]``, the last vision block's patch tokens ``p [B, T, N, W]``, and
the video embedding of the variant without MBGF, the *base* ``b [B, E]``.

- appearance ``a = mean_t z`` (parameter-free: the CLIP mean-pooling embedding);
- temporal ``s``: the variant's own temporal head when it has one (ActionCLIP's Transf head, X-CLIP's
  MIT), otherwise :class:`TemporalBranch`, a small pre-LN transformer over ``z`` + learned temporal
  positions, mean over T;
- motion ``m`` (:class:`MotionBranch`): ``p`` normalised and projected W -> W/4, temporal differences
  ``p[t+1] - p[t]``, a depthwise temporal convolution, GELU, mean over the T-1 steps, six spatial
  moments over the patch grid (mean, x, y, x^2, y^2, xy: where the change happens, not only how much),
  linear to E;
- gate ``g = softmax(MLP([â; ŝ; m̂]))`` (x̂ = x/|x|) in R^{B x 3} (appearance, temporal, motion);
- output ``v = b + g_s P_s(ŝ) + g_m P_m(m̂)`` with P_s, P_m linear maps initialised to zero.

What the base is, and why: MBGF at initialisation must equal the variant without MBGF, same weights.
For ``clip`` the base is ``a`` itself, which is docs/DESIGN.md's formula word for word. For ``actionclip``
and ``xclip`` the variant's embedding is its head's output, which already holds ``a`` as its residual
(``head(z) = mean_t z + mean_t blocks(z + pos)``); so the base is that output (= ``s``), and MBGF adds
gated, zero-initialised corrections on top of it. With P_s = P_m = 0 the output is the base exactly
(adding exact zeros), while the appearance still feeds the gate.

The gate's last layer starts at zero (gates exactly 1/3 each). Gradients at step 0: only P_s and P_m
(and their biases) receive gradient, since the zero maps block the path to the gate and the branch
internals; one optimiser step later everything trains (the usual zero-initialised residual). The
gate and P_s, P_m read unit vectors (see :meth:`MBGF.forward` for why).

Cost on ViT-B/16, 8x224 (multiply-adds): +0.26 G on 140.5 G for CLIP (+0.18%), +0.23 G (+0.17%) for
ActionCLIP and X-CLIP; the W -> W/4 projection of 8 x 196 patch tokens is most of it.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from clip.model import LayerNorm, Transformer
from fusion.config import BRANCHES
from fusion.heads import check_frames, init_new_weights


class TemporalBranch(Transformer):
    """MBGF's own temporal branch (for variants without a temporal head): ``mean_t(blocks(z + pos[:T]))``."""

    def __init__(self, embed_dim: int, frames: int, layers: int = 1):
        super().__init__(embed_dim, layers, max(1, embed_dim // 64))
        self.positional_embedding = nn.Parameter(torch.empty(frames, embed_dim))
        init_new_weights(self)
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        check_frames(t, self.positional_embedding.shape[0], "MBGF's temporal branch")
        return super().forward(frames + self.positional_embedding[:t].to(frames.dtype)).mean(dim=1)


# Spatial moments the motion branch pools with: where on the patch grid the motion happens, not only
# how much. A plain spatial mean hardly tells "left to right" from "right to left" (the same patches
# change, in the other order); weighting by the patch's x and y (and their second moments) keeps
# where things appear and vanish at each step, which is what direction is made of.
SPATIAL_MOMENTS = ("1", "x", "y", "xx", "yy", "xy")


def spatial_moment_weights(grid_h: int, grid_w: int, device=None, dtype=None) -> torch.Tensor:
    """``[N, 6]`` pooling weights over an ``grid_h x grid_w`` patch grid (row-major), coordinates in
    [-1, 1]: 1, x, y, and the centred x^2, y^2 and x*y."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, grid_h, device=device, dtype=dtype),
                          torch.linspace(-1, 1, grid_w, device=device, dtype=dtype), indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    xx, yy = x * x, y * y
    return torch.stack([torch.ones_like(x), x, y, xx - xx.mean(), yy - yy.mean(), x * y], dim=1)


class MotionBranch(nn.Module):
    """Motion from patch-token differences between consecutive frames: ``[B, T, N, W] -> [B, E]``."""

    def __init__(self, width: int, embed_dim: int, reduction: int = 4, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"the motion branch's temporal kernel must be odd, not {kernel_size}")
        channels = max(1, width // reduction)
        self.ln = LayerNorm(width)  # the residual stream before ln_post: normalise before projecting
        self.reduce = nn.Linear(width, channels)
        self.temporal_conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
                                       groups=channels)
        self.proj = nn.Linear(len(SPATIAL_MOMENTS) * channels, embed_dim)
        init_new_weights(self)
        # The temporal convolution starts as the identity on the differences (plus small noise).
        nn.init.trunc_normal_(self.temporal_conv.weight, std=0.02)
        with torch.no_grad():
            self.temporal_conv.weight[:, 0, kernel_size // 2] += 1.0
        nn.init.zeros_(self.temporal_conv.bias)

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = patch_tokens.shape
        if t < 2:  # a single frame has no motion
            return patch_tokens.new_zeros(b, self.proj.out_features)
        grid = round(n ** 0.5)
        if grid * grid != n:
            raise ValueError(f"the motion branch needs a square patch grid, got {n} patches")
        x = self.reduce(self.ln(patch_tokens))                     # [B, T, N, C]
        x = x[:, 1:] - x[:, :-1]                                   # [B, T-1, N, C]
        c = x.shape[-1]
        x = x.permute(0, 2, 3, 1).reshape(b * n, c, t - 1)         # each patch's C-channel time series
        x = F.gelu(self.temporal_conv(x))
        x = x.view(b, n, c, t - 1).mean(dim=3)                     # mean over steps: [B, N, C]
        weights = spatial_moment_weights(grid, grid, x.device, x.dtype)
        moments = torch.einsum("bnc,nm->bmc", x, weights) / n      # spatial moments: [B, 6, C]
        return self.proj(moments.flatten(1))


class MBGF(nn.Module):
    """Gated fusion of appearance, temporal and motion branches (module docstring has the definition)."""

    def __init__(self, embed_dim: int, width: int, frames: int, own_temporal_branch: bool,
                 temporal_layers: int = 1, motion_reduction: int = 4, motion_kernel: int = 3):
        super().__init__()
        self.temporal = TemporalBranch(embed_dim, frames, temporal_layers) if own_temporal_branch else None
        self.motion = MotionBranch(width, embed_dim, motion_reduction, motion_kernel)
        hidden = max(16, embed_dim // 4)
        self.gate = nn.Sequential(OrderedDict([
            ("fc", nn.Linear(3 * embed_dim, hidden)),
            ("gelu", nn.GELU()),
            ("out", nn.Linear(hidden, len(BRANCHES))),
        ]))
        self.temporal_proj = nn.Linear(embed_dim, embed_dim)  # P_s
        self.motion_proj = nn.Linear(embed_dim, embed_dim)    # P_m
        init_new_weights(self.gate)
        nn.init.zeros_(self.gate.out.weight)  # the gate starts uniform (1/3 each)
        for proj in (self.temporal_proj, self.motion_proj):  # zero: MBGF starts as the base exactly
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, base: torch.Tensor, frames: torch.Tensor, patch_tokens: torch.Tensor,
                temporal: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``base [B,E]``, frame embeddings ``[B,T,E]``, patch tokens ``[B,T,N,W]``, and the variant's
        temporal head output ``[B,E]`` (``None``: MBGF's own temporal branch) -> ``(v [B,E], parts)``
        where ``parts`` holds ``gates [B,3]`` and the three branch outputs."""
        appearance = frames.mean(dim=1)
        if temporal is None:
            temporal = self.temporal(frames)
        motion = self.motion(patch_tokens)
        # The gate and P_s, P_m see unit vectors. The branches' scales differ by orders of magnitude,
        # and with unit-norm inputs an optimiser step moves a layer's output by about lr * sqrt(E), a
        # small part of the embedding: with unit-variance inputs (LayerNorm), one Adam step at lr 1e-2
        # already rivals the whole embedding, and the gate saturates within a few steps, shutting a
        # branch for good.
        a, s, m = (F.normalize(x.float(), dim=-1) for x in (appearance, temporal, motion))
        gates = self.gate(torch.cat([a, s, m], dim=-1).to(appearance.dtype)).float().softmax(dim=-1)
        video = (base + gates[:, 1:2].to(base.dtype) * self.temporal_proj(s.to(base.dtype))
                 + gates[:, 2:3].to(base.dtype) * self.motion_proj(m.to(base.dtype)))
        return video, {"gates": gates, "appearance": appearance, "temporal": temporal, "motion": motion}
