"""CLIP (ViT image encoder + causal text transformer) with OpenAI's state-dict names.

The module tree mirrors OpenAI's release, so that ``model.state_dict()`` keys are the published ones
(``visual.conv1.weight``, ``visual.transformer.resblocks.0.attn.in_proj_weight``, ``ln_final.weight``,
``text_projection``, ``logit_scale`` ...) and OpenAI, ActionCLIP and X-CLIP weights load unchanged.
Attention runs through ``torch.nn.functional.scaled_dot_product_attention``. Weights stay fp32; reduced
precision comes from autocast.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# State-dict entries that are not weights: the integers OpenAI's archives carry, and the causal mask
# (derived from the context length; TorchScript archives of this model store it as a buffer).
NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size", "causal_mask")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (as OpenAI's), returned in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation CLIP was trained with (not exact GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# The MLP activations a CLIP may use: OpenAI's QuickGELU, or exact GELU (OpenCLIP's larger models).
ACTIVATIONS = {"quick_gelu": QuickGELU, "gelu": nn.GELU}


class MultiheadAttention(nn.Module):
    """Self/cross attention with ``nn.MultiheadAttention``'s parameter names (in_proj_*, out_proj).

    Batch-first ``[N, L, D]``; the products QK^T and AV run in SDPA (fused kernels where available).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width, self.heads = width, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, lq, d = query.shape
        if key_value is None:  # self-attention: one fused projection
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            wq, wkv = self.in_proj_weight.split([d, 2 * d])
            bq, bkv = self.in_proj_bias.split([d, 2 * d])
            q = F.linear(query, wq, bq)
            k, v = F.linear(key_value, wkv, bkv).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2) for t in (q, k, v))
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, lq, d))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); the MLP is ``mlp_width``
    wide (default 4x) with QuickGELU (or ``activation`` "gelu")."""

    def __init__(self, width: int, heads: int, mlp_width: int | None = None, activation: str = "quick_gelu"):
        super().__init__()
        mlp_width = mlp_width or 4 * width
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, mlp_width)),
            ("gelu", ACTIVATIONS[activation]()),
            ("c_proj", nn.Linear(mlp_width, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask=attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks over batch-first ``[N, L, width]`` sequences."""

    def __init__(self, width: int, layers: int, heads: int, mlp_width: int | None = None,
                 activation: str = "quick_gelu"):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, mlp_width, activation)
                                         for _ in range(layers)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    """ViT image encoder: patches + class token + positions -> blocks -> ln_post(CLS) @ proj."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, mlp_width: int | None = None, activation: str = "quick_gelu"):
        super().__init__()
        self.input_resolution, self.patch_size, self.output_dim = input_resolution, patch_size, output_dim
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.grid_size = input_resolution // patch_size  # the patch grid the position embedding was trained on
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_width, activation)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def positions_for(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings for a grid_h x grid_w patch grid (bicubic resize of the trained grid)."""
        pos = self.positional_embedding
        trained = self.grid_size  # a plain int, so that torch.jit.trace can record this module
        if (grid_h, grid_w) == (trained, trained):
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, trained, trained, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.to(pos.dtype).permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> token sequence [N, 1 + grid_h*grid_w, width] after ln_pre."""
        x = self.conv1(images)
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positions_for(grid_h, grid_w).to(x.dtype)
        return self.ln_pre(x)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected embedding of the CLS token of the last block's output."""
        return self.ln_post(tokens[:, 0]) @ self.proj

    def forward(self, images: torch.Tensor, return_tokens: bool = False):
        """[N,3,H,W] -> [N, output_dim]; with ``return_tokens`` also the last block's patch tokens
        [N, grid*grid, width] (before ln_post, as X-CLIP's prompt generator consumes them)."""
        tokens = self.transformer(self.embed(images))
        embedding = self.head(tokens)
        return (embedding, tokens[:, 1:]) if return_tokens else embedding


@dataclass(frozen=True)
class CLIPConfig:
    """A ViT CLIP's architecture. OpenAI's models need only the first fields; the others (head counts,
    MLP widths, activation) have OpenAI's values by default (heads = width / 64, MLP 4x width,
    QuickGELU) and are normalised to numbers, so that equal architectures compare equal. The named
    architectures live in :mod:`clip.released` (OpenAI's files) and :mod:`fusion.config` (backbones)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12
    vision_heads: int | None = None           # None: vision_width / 64
    vision_mlp_width: int | None = None       # None: 4 x vision_width
    transformer_mlp_width: int | None = None  # None: 4 x transformer_width
    activation: str = "quick_gelu"            # or "gelu"

    def __post_init__(self):
        defaults = {"vision_heads": max(1, self.vision_width // 64), "vision_mlp_width": 4 * self.vision_width,
                    "transformer_mlp_width": 4 * self.transformer_width}
        for name, default in defaults.items():
            object.__setattr__(self, name, int(getattr(self, name) or default))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        for width, heads, what in ((self.vision_width, self.vision_heads, "vision"),
                                   (self.transformer_width, self.transformer_heads, "text")):
            if heads < 1 or width % heads:
                raise ValueError(f"{what} width {width} is not divisible by {heads} heads")
        if self.image_resolution < self.vision_patch_size or self.image_resolution % self.vision_patch_size:
            raise ValueError(f"image resolution {self.image_resolution} is not a multiple of the patch size "
                             f"{self.vision_patch_size}")


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.visual = VisionTransformer(config.image_resolution, config.vision_patch_size, config.vision_width,
                                        config.vision_layers, config.vision_heads, config.embed_dim,
                                        config.vision_mlp_width, config.activation)
        self.transformer = Transformer(config.transformer_width, config.transformer_layers, config.transformer_heads,
                                       config.transformer_mlp_width, config.activation)
        self.vocab_size = config.vocab_size
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.transformer_width))
        self.ln_final = LayerNorm(config.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(config.transformer_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * torch.log(torch.tensor(1 / 0.07)))
        self.register_buffer("causal_mask", self._causal_mask(config.context_length), persistent=False)
        self.initialize_parameters()

    @staticmethod
    def _causal_mask(length: int) -> torch.Tensor:
        # Additive mask: -inf above the diagonal so a token attends to itself and earlier tokens only.
        return torch.full((length, length), float("-inf")).triu(1)

    def initialize_parameters(self) -> None:
        """OpenAI's initialisation (matters only for models trained from scratch, e.g. `tiny`)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = (width ** -0.5) * ((2 * layers) ** -0.5)
        attn_std = width ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in the backward pass (less memory, ~30% more compute)."""
        self.visual.transformer.grad_checkpointing = enabled
        self.transformer.grad_checkpointing = enabled

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, images: torch.Tensor, return_tokens: bool = False):
        return self.visual(images.to(self.dtype), return_tokens=return_tokens)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, context] token ids -> [N, embed_dim]: the end-of-text token's features, projected."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.causal_mask[:length, :length])
        x = self.ln_final(x)
        # <|endoftext|> has the largest id in the vocabulary: argmax finds each sequence's end.
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(tokens), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def config_from_state_dict(state_dict: dict) -> CLIPConfig:
    """Every hyper-parameter of a ViT CLIP that its tensors' shapes tell (as OpenAI's build_model reads
    them; MLP widths too). Shapes cannot tell head counts or the activation: OpenAI's (width / 64,
    QuickGELU) are assumed."""
    if "visual.proj" not in state_dict:
        raise ValueError("not a ViT CLIP state dict (no 'visual.proj'); ResNet CLIP models are not supported")
    vision_width = state_dict["visual.conv1.weight"].shape[0]
    vision_layers = len({k.split(".")[3] for k in state_dict
                         if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight")})
    patch_size = state_dict["visual.conv1.weight"].shape[-1]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    transformer_width = state_dict["ln_final.weight"].shape[0]
    return CLIPConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch_size * grid,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=patch_size,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=transformer_width,
        transformer_heads=max(1, transformer_width // 64),
        transformer_layers=len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}),
        vision_mlp_width=_mlp_width(state_dict, "visual.transformer.resblocks."),
        transformer_mlp_width=_mlp_width(state_dict, "transformer.resblocks."),
    )


def _mlp_width(state_dict: dict, blocks: str) -> int | None:
    weight = state_dict.get(f"{blocks}0.mlp.c_fc.weight")
    return None if weight is None else int(weight.shape[0])


def build_model(state_dict: dict, strict: bool = True) -> CLIP:
    """A CLIP whose architecture is inferred from ``state_dict``, with those weights loaded in fp32.

    OpenAI's extra integer entries are ignored. With ``strict`` a missing or unexpected key is an error
    naming the first few of them.
    """
    state_dict = {k: v for k, v in state_dict.items() if k not in NON_PARAMETER_KEYS}
    try:
        config = config_from_state_dict(state_dict)
    except KeyError as e:
        raise ValueError(f"not a CLIP state dict: missing key {e.args[0]!r}") from None
    model = CLIP(config)
    load_weights(model, state_dict, strict=strict)
    return model.eval()


def load_weights(model: nn.Module, state_dict: dict, strict: bool = True) -> tuple[list[str], list[str]]:
    """Copy tensors into ``model`` (fp16 weights become fp32). Returns (missing, unexpected) keys; with
    ``strict`` raises ``KeyError``-free ``ValueError`` naming the first few of each."""
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()
                  if k not in NON_PARAMETER_KEYS}
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise ValueError(describe_key_mismatch(missing, unexpected))
    return missing, unexpected


def describe_key_mismatch(missing: list[str], unexpected: list[str], first: int = 5) -> str:
    parts = []
    for name, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (+{len(keys) - first} more)" if len(keys) > first else ""
            parts.append(f"{len(keys)} {name} key(s): {', '.join(keys[:first])}{more}")
    return "; ".join(parts)


def count_parameters(state_dict: dict) -> int:
    """Number of values in all tensors of a state dict, OpenAI's extra integer keys excluded."""
    return sum(v.numel() for k, v in state_dict.items() if k not in NON_PARAMETER_KEYS)
