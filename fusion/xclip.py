"""X-CLIP's video parts (Ni et al., "Expanding Language-Image Pretrained Models for General Video
Recognition", ECCV 2022), with the key names of X-CLIP's released checkpoints.

- :class:`CrossFrameVisionTransformer` (``visual.*``): CLIP's ViT in which every block first builds one
  *message token* per frame from its CLS token (``message_fc``), lets the T messages of a video attend
  to each other (``message_ln``, ``message_attn``, residual), appends each frame's message to that
  frame's tokens for the block's self-attention, and drops it again before the MLP.
- :class:`MultiframeIntegrationTransformer` (``mit.*``): temporal positions, pre-LN blocks over the T
  frame embeddings, a residual around them, mean over frames.
- :class:`VideoSpecificPrompt` (``prompts_generator.*``): the class text features attend to the
  video's patch features (``prompts_visual_ln``, ``prompts_visual_proj`` live on the video model) in
  two cross-attention blocks; the result, scaled per channel by ``alpha`` (0.1 at init), is added to
  the text features, so every video gets its own class text features.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clip.model import (
    LayerNorm,
    MultiheadAttention,
    QuickGELU,
    ResidualAttentionBlock,
    Transformer,
    VisionTransformer,
)
from fusion.heads import check_frames, init_new_weights


class CrossFrameAttentionBlock(nn.Module):
    """A CLIP block with X-CLIP's cross-frame communication; input ``[B*T, L, W]``, frames grouped by
    video. Built around a CLIP block, whose layers it adopts (shared, not copied)."""

    def __init__(self, block: ResidualAttentionBlock):
        super().__init__()
        width, heads = block.attn.width, block.attn.heads
        self.message_fc = nn.Linear(width, width)
        self.message_ln = LayerNorm(width)
        self.message_attn = MultiheadAttention(width, heads)
        init_new_weights(self)  # before adopting CLIP's layers: only the message layers are new
        self.attn, self.ln_1, self.mlp, self.ln_2 = block.attn, block.ln_1, block.mlp, block.ln_2

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, length, width = x.shape
        # One message per frame from its CLS token; messages of the same video attend to each other.
        message = self.message_fc(x[:, 0]).view(bt // frames, frames, width)
        message = message + self.message_attn(self.message_ln(message))
        # Each frame attends over its own tokens plus its message, which is then dropped.
        x = torch.cat([x, message.reshape(bt, 1, width)], dim=1)
        x = x + self.attn(self.ln_1(x))
        x = x[:, :length]
        return x + self.mlp(self.ln_2(x))


class CrossFrameTransformer(nn.Module):
    """The block stack of :class:`CrossFrameVisionTransformer` (``visual.transformer.resblocks.N``)."""

    def __init__(self, transformer: Transformer):
        super().__init__()
        self.width, self.layers = transformer.width, transformer.layers
        self.resblocks = nn.Sequential(*[CrossFrameAttentionBlock(block) for block in transformer.resblocks])
        self.grad_checkpointing = transformer.grad_checkpointing

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if x.shape[0] % frames:
            raise ValueError(f"{x.shape[0]} images are not whole clips of {frames} frames")
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, frames, use_reentrant=False)
            else:
                x = block(x, frames)
        return x


class CrossFrameVisionTransformer(nn.Module):
    """X-CLIP's image encoder around a CLIP ViT: the ViT's layers and tensors are adopted (shared, not
    copied; the ViT itself is left as it was), each block gains message layers. Keys: CLIP's, plus
    ``transformer.resblocks.N.message_*``."""

    # CLIP's patch embedding, position resizing and output head, unchanged, on the adopted tensors.
    embed = VisionTransformer.embed
    head = VisionTransformer.head
    positions_for = VisionTransformer.positions_for

    def __init__(self, visual: VisionTransformer):
        super().__init__()
        self.input_resolution, self.patch_size, self.output_dim = \
            visual.input_resolution, visual.patch_size, visual.output_dim
        self.grid_size = visual.grid_size
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.transformer = CrossFrameTransformer(visual.transformer)
        self.ln_post = visual.ln_post
        self.proj = visual.proj

    def forward(self, images: torch.Tensor, frames: int, return_tokens: bool = False):
        """``[B*T, 3, H, W]`` (T consecutive frames per clip) -> ``[B*T, output_dim]``; with
        ``return_tokens`` also the last block's patch tokens (before ln_post)."""
        tokens = self.transformer(self.embed(images), frames)
        embedding = self.head(tokens)
        return (embedding, tokens[:, 1:]) if return_tokens else embedding


class MultiframeIntegrationTransformer(Transformer):
    """X-CLIP's MIT (``mit.*``): ``mean_t(x + blocks(x + pos[:, :T]))`` over frame embeddings ``[B, T, E]``."""

    def __init__(self, embed_dim: int, frames: int, layers: int = 1):
        super().__init__(embed_dim, layers, max(1, embed_dim // 64))
        self.positional_embedding = nn.Parameter(torch.empty(1, frames, embed_dim))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        init_new_weights(self)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        check_frames(t, self.positional_embedding.shape[1], "X-CLIP's MIT")
        x = super().forward(frames + self.positional_embedding[:, :t].to(frames.dtype))
        return (x + frames).mean(dim=1)


class PromptCrossAttention(nn.Module):
    """Multi-head attention from queries to a separate memory; X-CLIP's names (q/k/v_proj without
    bias, ``proj``)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query ``[B, K, C]``, memory ``[B, M, C]`` -> ``[B, K, C]``."""
        def split(t):
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(query)), split(self.k_proj(memory)),
                                             split(self.v_proj(memory)))
        return self.proj(out.transpose(1, 2).flatten(2))


class PromptGeneratorLayer(nn.Module):
    """``x + cross_attn(norm1(x), visual)``, then ``x + mlp(norm3(x))`` (QuickGELU MLP 4x)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.cross_attn = PromptCrossAttention(dim, heads)
        self.norm1 = LayerNorm(dim)
        self.norm3 = LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict([
            ("0", nn.Linear(dim, dim * 4)),
            ("1", QuickGELU()),
            ("2", nn.Identity()),  # X-CLIP's dropout slot (rate 0): keeps the linear layers at 0 and 3
            ("3", nn.Linear(dim * 4, dim)),
        ]))

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), visual)
        return x + self.mlp(self.norm3(x))


class VideoSpecificPrompt(nn.Module):
    """``alpha * decoder(text, norm(visual))``: the per-video offset added to the class text features."""

    def __init__(self, embed_dim: int, layers: int = 2, alpha: float = 0.1):
        super().__init__()
        self.norm = LayerNorm(embed_dim)
        self.decoder = nn.ModuleList([PromptGeneratorLayer(embed_dim, max(1, embed_dim // 64))
                                      for _ in range(layers)])
        self.alpha = nn.Parameter(torch.full((embed_dim,), float(alpha)))
        init_new_weights(self)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """text ``[B, K, E]``, visual ``[B, N, E]`` -> ``[B, K, E]``."""
        visual = self.norm(visual)
        for layer in self.decoder:
            text = layer(text, visual)
        return self.alpha * text
