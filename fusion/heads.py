"""Temporal heads: frame embeddings ``[B, T, E]`` -> one video embedding ``[B, E]``.

- mean pooling (the ``clip`` variant) needs no module: ``frames.mean(1)``;
- :class:`ActionCLIPTransformerHead`: ActionCLIP's "Transf" head, under ActionCLIP's names
  (registered as ``fusion_model``, so its keys are ``fusion_model.frame_position_embeddings.weight``
  and ``fusion_model.transformer.resblocks.N.*``, as in ActionCLIP's ``fusion_model_state_dict``).

X-CLIP's multi-frame integration transformer lives in :mod:`fusion.xclip`, MBGF's own temporal branch
in :mod:`fusion.mbgf`.
"""

import torch
from torch import nn

from clip.model import MultiheadAttention, Transformer

# ActionCLIP's head normalises "TF style": epsilon inside the square root, 1e-12 instead of 1e-5.
# That is exactly layer_norm with eps=1e-12, so CLIP's LayerNorm is reused with that epsilon.
TF_LAYER_NORM_EPS = 1e-12


def init_new_weights(module: nn.Module) -> None:
    """Initialise layers that CLIP does not provide, as ActionCLIP and X-CLIP do: truncated normal
    (std 0.02) linear and embedding weights, zero biases, LayerNorm at identity, and the fused
    attention input projection Xavier-uniform (``nn.MultiheadAttention``'s own default, which both
    papers keep)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, MultiheadAttention):
            nn.init.xavier_uniform_(m.in_proj_weight)
            nn.init.zeros_(m.in_proj_bias)


def check_frames(frames: int, available: int, what: str) -> None:
    """Learned temporal positions cover ``available`` frames: fewer are sliced, more are refused."""
    if frames > available:
        raise ValueError(f"{what} has temporal positions for {available} frames; got clips of {frames} frames")


class ActionCLIPTransformerHead(nn.Module):
    """ActionCLIP's "Transf" visual prompt: ``mean_t(x + blocks(x + pos[:T]))``.

    A learned frame-position embedding with one row per text context position (77, of which rows
    0..T-1 are used), then ``layers`` pre-LN residual attention blocks of width E (heads E/64,
    QuickGELU MLP 4x, LayerNorm eps 1e-12), a residual around the whole stack, and the mean over frames.
    ``layer_norm_eps``: mmaction2's port of the head computes its LayerNorms at torch's 1e-5.
    """

    def __init__(self, embed_dim: int, layers: int = 6, context_length: int = 77,
                 layer_norm_eps: float = TF_LAYER_NORM_EPS):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(context_length, embed_dim)
        self.transformer = Transformer(embed_dim, layers, max(1, embed_dim // 64))
        for block in self.transformer.resblocks:
            block.ln_1.eps = block.ln_2.eps = layer_norm_eps
        init_new_weights(self)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        check_frames(t, self.frame_position_embeddings.num_embeddings, "ActionCLIP's head")
        x = frames + self.frame_position_embeddings.weight[:t].to(frames.dtype)
        return (self.transformer(x) + frames).mean(dim=1)
