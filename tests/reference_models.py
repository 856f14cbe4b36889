"""From-scratch reference computations of the published forward passes, and random tiny weights in the
published key layouts.

Everything here reads the *foreign* state dicts directly (OpenAI / ActionCLIP / X-CLIP / ViFi-CLIP /
mmaction2 key names) and computes with plain tensor operations: attention is written out (q k^T,
softmax, v), layer norms are written out, nothing comes from ``clip/`` or ``fusion/``. The math follows
the published code of OpenAI CLIP, sallymmx/ActionCLIP (``modules/Visual_Prompt.py`` "Transf",
``test.py``), microsoft/VideoX X-CLIP (``models/xclip.py``, ``cct.py``, ``mit.py``, ``prompt.py``),
muzairkhattak/ViFi-CLIP (``trainers/vificlip.py``) and open-mmlab/mmaction2 ``projects/actionclip``
(``models/actionclip.py``, ``adapter.py``), so that a converted mbgf model can be checked against what
the original code computes with the same weights. All computation is fp32 (fp16 weights are upcast,
as a CPU run of the original code does).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def layer_norm(x, weight, bias, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance). ActionCLIP's
    "TF style" LayerNorm is this formula with eps = 1e-12."""
    x = x.float()
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight.float() + bias.float()


def linear(x, weight, bias=None):
    y = x @ weight.float().t()
    return y if bias is None else y + bias.float()


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def attention(q, k, v, heads, mask=None):
    """Multi-head scaled dot-product attention on already projected q [N,Lq,D], k and v [N,Lk,D]."""
    n, lq, d = q.shape
    lk = k.shape[1]
    head = d // heads
    q = q.reshape(n, lq, heads, head).transpose(1, 2)
    k = k.reshape(n, lk, heads, head).transpose(1, 2)
    v = v.reshape(n, lk, heads, head).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(head)
    if mask is not None:
        scores = scores + mask
    out = scores.softmax(-1) @ v
    return out.transpose(1, 2).reshape(n, lq, d)


def mha(sd, p, x, heads, mask=None):
    """nn.MultiheadAttention's math with its parameters (``in_proj_weight`` [3D, D] holds W_q, W_k, W_v
    stacked), self-attention over x [N, L, D] (N is the batch; the published code is sequence-first,
    which is a layout, not different math)."""
    d = x.shape[-1]
    w, b = sd[p + "in_proj_weight"].float(), sd[p + "in_proj_bias"].float()
    q = linear(x, w[:d], b[:d])
    k = linear(x, w[d:2 * d], b[d:2 * d])
    v = linear(x, w[2 * d:], b[2 * d:])
    return linear(attention(q, k, v, heads, mask), sd[p + "out_proj.weight"], sd[p + "out_proj.bias"])


def residual_block(sd, p, x, heads, mask=None, eps=1e-5):
    """CLIP's pre-LN block: x + attn(ln_1(x)); x + c_proj(QuickGELU(c_fc(ln_2(x))))."""
    x = x + mha(sd, p + "attn.", layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], eps), heads, mask)
    h = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], eps)
    h = linear(quick_gelu(linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])),
               sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return x + h


def block_indices(sd, prefix):
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})


def heads_of(width):
    return max(1, width // 64)


# --------------------------------------------------------------------------------------------------
# OpenAI CLIP
# --------------------------------------------------------------------------------------------------


def patch_tokens(sd, images):
    """conv1 patches + class token + positions, then ln_pre: [N, 1 + grid^2, W]."""
    w = sd["visual.conv1.weight"].float()
    patch = w.shape[-1]
    x = torch.nn.functional.conv2d(images.float(), w, stride=patch)
    x = x.flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].float().expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"].float()
    return layer_norm(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])


def image_head(sd, tokens):
    return layer_norm(tokens[:, 0], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"]) @ sd["visual.proj"].float()


def clip_image(sd, images):
    """OpenAI's ViT encode_image: [N, 3, H, W] -> [N, E]."""
    x = patch_tokens(sd, images)
    heads = heads_of(x.shape[-1])
    for i in block_indices(sd, "visual.transformer.resblocks."):
        x = residual_block(sd, f"visual.transformer.resblocks.{i}.", x, heads)
    return image_head(sd, x)


def clip_text(sd, tokens):
    """OpenAI's encode_text: causal transformer, features of the end-of-text token (the largest id)."""
    x = sd["token_embedding.weight"].float()[tokens] + sd["positional_embedding"].float()[: tokens.shape[1]]
    length = tokens.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1)
    heads = heads_of(x.shape[-1])
    for i in block_indices(sd, "transformer.resblocks."):
        x = residual_block(sd, f"transformer.resblocks.{i}.", x, heads, mask)
    x = layer_norm(x, sd["ln_final.weight"], sd["ln_final.bias"])
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ sd["text_projection"].float()


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def clip_mean_pool_logits(sd, clips, tokens):
    """The CLIP baseline on video: frame embeddings averaged over T, CLIP's own logit scale."""
    b, t = clips.shape[:2]
    video = clip_image(sd, clips.flatten(0, 1)).view(b, t, -1).mean(1)
    return sd["logit_scale"].float().exp() * normalize(video) @ normalize(clip_text(sd, tokens)).t()


# --------------------------------------------------------------------------------------------------
# ActionCLIP (sallymmx/ActionCLIP)
# --------------------------------------------------------------------------------------------------

ACTIONCLIP_EPS = 1e-12  # Visual_Prompt.LayerNorm: "TF style", eps 1e-12


def actionclip_transf(head, frames, eps=ACTIONCLIP_EPS):
    """The "Transf" head on frame embeddings [B, T, E]: x + blocks(x + pos[0:T]), mean over T.
    ``head`` holds the fusion model's keys without DataParallel's ``module.`` prefix."""
    t, e = frames.shape[1], frames.shape[2]
    x = frames + head["frame_position_embeddings.weight"].float()[:t]
    for i in block_indices(head, "transformer.resblocks."):
        x = residual_block(head, f"transformer.resblocks.{i}.", x, heads_of(e), eps=eps)
    return (x + frames).mean(1)


def actionclip_test_scores(clip_sd, head, clips, template_tokens, eps=ACTIONCLIP_EPS):
    """test.py's scores: template_tokens [n_templates, K, L] (ActionCLIP tokenises template-major:
    all classes of template 0, then template 1 ...). similarity = 100 * v @ t^T, viewed as
    [B, n_templates, K], softmax over classes, mean over templates -> [B, K] (probabilities)."""
    b, t = clips.shape[:2]
    n_templates, k = template_tokens.shape[:2]
    frames = clip_image(clip_sd, clips.flatten(0, 1)).view(b, t, -1)
    video = normalize(actionclip_transf(head, frames, eps))
    text = normalize(clip_text(clip_sd, template_tokens.reshape(n_templates * k, -1)))
    similarity = 100.0 * video @ text.t()
    return similarity.view(b, n_templates, k).softmax(-1).mean(1)


def actionclip_video_embedding(clip_sd, head, clips, eps=ACTIONCLIP_EPS):
    b, t = clips.shape[:2]
    return actionclip_transf(head, clip_image(clip_sd, clips.flatten(0, 1)).view(b, t, -1), eps)


# --------------------------------------------------------------------------------------------------
# X-CLIP (microsoft/VideoX)
# --------------------------------------------------------------------------------------------------


def xclip_cross_frame_block(sd, p, x, frames, heads, with_messages=True):
    """cct.CrossFramelAttentionBlock on x [B*T, L, W] (frames of a video consecutive):
    each frame's CLS token -> message_fc -> message token; the T messages of a video attend to each
    other (pre-LN, residual); each frame's message is appended to that frame's tokens for the block's
    self-attention and dropped before the MLP."""
    bt, length, width = x.shape
    b = bt // frames
    if with_messages:
        msg = linear(x.view(b, frames, length, width)[:, :, 0], sd[p + "message_fc.weight"], sd[p + "message_fc.bias"])
        msg = msg + mha(sd, p + "message_attn.", layer_norm(msg, sd[p + "message_ln.weight"], sd[p + "message_ln.bias"]),
                        heads)
        x = torch.cat([x, msg.reshape(bt, 1, width)], dim=1)
    x = x + mha(sd, p + "attn.", layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]), heads)
    x = x[:, :length]
    h = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
    h = linear(quick_gelu(linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])),
               sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return x + h


def xclip_image(sd, images, frames, with_messages=True):
    """cct.CrossFrameCommunicationTransformer: (projected CLS [B*T, E], last block's tokens [B*T, N, W])."""
    x = patch_tokens(sd, images)
    heads = heads_of(x.shape[-1])
    for i in block_indices(sd, "visual.transformer.resblocks."):
        x = xclip_cross_frame_block(sd, f"visual.transformer.resblocks.{i}.", x, frames, heads, with_messages)
    return image_head(sd, x), x[:, 1:]


def xclip_mit(sd, frames_embedding):
    """mit.MultiframeIntegrationTransformer: x + blocks(x + pos), mean over T (nn.LayerNorm, eps 1e-5)."""
    t, e = frames_embedding.shape[1:]
    x = frames_embedding + sd["mit.positional_embedding"].float()[:, :t]
    for i in block_indices(sd, "mit.resblocks."):
        x = residual_block(sd, f"mit.resblocks.{i}.", x, heads_of(e))
    return (x + frames_embedding).mean(1)


def xclip_prompt(sd, text, visual):
    """prompt.VideoSpecificPrompt: text [B, K, E] attends to the video's patch features [B, N, E]
    through the decoder layers (q from norm1(text); k, v from norm(visual); no q/k/v bias), then a
    norm3 + MLP residual; the result is scaled per channel by alpha."""
    p = "prompts_generator."
    visual = layer_norm(visual, sd[p + "norm.weight"], sd[p + "norm.bias"])
    heads = heads_of(text.shape[-1])
    for i in block_indices(sd, p + "decoder."):
        q = f"{p}decoder.{i}."
        h = layer_norm(text, sd[q + "norm1.weight"], sd[q + "norm1.bias"])
        attended = attention(linear(h, sd[q + "cross_attn.q_proj.weight"]),
                             linear(visual, sd[q + "cross_attn.k_proj.weight"]),
                             linear(visual, sd[q + "cross_attn.v_proj.weight"]), heads)
        text = text + linear(attended, sd[q + "cross_attn.proj.weight"], sd[q + "cross_attn.proj.bias"])
        h = layer_norm(text, sd[q + "norm3.weight"], sd[q + "norm3.bias"])
        text = text + linear(quick_gelu(linear(h, sd[q + "mlp.0.weight"], sd[q + "mlp.0.bias"])),
                             sd[q + "mlp.3.weight"], sd[q + "mlp.3.bias"])
    return sd[p + "alpha"].float() * text


def xclip_logits(sd, clips, tokens, with_messages=True):
    """xclip.XCLIP.forward: [B, T, 3, H, W] clips (already normalised), [K, L] tokens -> [B, K]."""
    b, t = clips.shape[:2]
    cls, patches = xclip_image(sd, clips.flatten(0, 1), t, with_messages)
    patches = layer_norm(patches, sd["prompts_visual_ln.weight"], sd["prompts_visual_ln.bias"])
    patches = (patches @ sd["prompts_visual_proj"].float()).view(b, t, patches.shape[1], -1)
    video = xclip_mit(sd, cls.view(b, t, -1))
    text = clip_text(sd, tokens).unsqueeze(0).expand(b, -1, -1)
    text = text + xclip_prompt(sd, text, patches.mean(1))
    return torch.einsum("bd,bkd->bk", normalize(video), sd["logit_scale"].float().exp() * normalize(text))


# --------------------------------------------------------------------------------------------------
# ViFi-CLIP (muzairkhattak/ViFi-CLIP)
# --------------------------------------------------------------------------------------------------


def under(sd, prefix, new_prefix=""):
    """The entries of ``sd`` under ``prefix``, with ``new_prefix`` in its place (a view of a sub-module)."""
    return {new_prefix + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def vificlip_logits(model_sd, token_embedding, clips, tokens):
    """trainers/vificlip.py ViFiCLIP.forward on ``model.state_dict()`` (DistributedDataParallel's
    ``module.`` prefix): CLIP's image encoder on every frame (``module.image_encoder.*``), frame features
    averaged over T; the text encoder (``module.text_encoder.*``) on the prompts embedded with the
    original CLIP's ``token_embedding`` (the table the file does not hold); logit_scale.exp() x cosine."""
    b, t = clips.shape[:2]
    visual = under(model_sd, "module.image_encoder.", "visual.")
    video = clip_image(visual, clips.flatten(0, 1)).view(b, t, -1).mean(1)
    text_sd = under(model_sd, "module.text_encoder.")
    text_sd["token_embedding.weight"] = token_embedding
    text = clip_text(text_sd, tokens)
    return model_sd["module.logit_scale"].float().exp() * normalize(video) @ normalize(text).t()


# --------------------------------------------------------------------------------------------------
# mmaction2's ActionCLIP (open-mmlab/mmaction2 projects/actionclip)
# --------------------------------------------------------------------------------------------------

MMACTION2_ADAPTER_EPS = 1e-5  # the adapter is OpenAI's clip.model.Transformer: nn.LayerNorm's default eps


def mmaction2_video_embedding(sd, clips, eps=MMACTION2_ADAPTER_EPS):
    """ActionClip.encode_video on ``state_dict`` (``clip.*``, ``adapter.*``): CLIP's frame embeddings
    through TransformerAdapter (x + pos(arange(T)), blocks, + x, mean over T)."""
    return actionclip_video_embedding(under(sd, "clip."), under(sd, "adapter."), clips, eps)


def mmaction2_test_scores(sd, clips, template_tokens, eps=MMACTION2_ADAPTER_EPS):
    """ActionClip.forward(mode="predict"), one view: 100 x cosine against the prompts (tokenised
    template-major, as text_prompt does), softmax over classes, mean over templates -> [B, K]."""
    return actionclip_test_scores(under(sd, "clip."), under(sd, "adapter."), clips, template_tokens, eps)


# --------------------------------------------------------------------------------------------------
# Random tiny weights with the published key names
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyDims:
    """mbgf's ``tiny`` backbone (so a converted checkpoint rebuilds from its config), at 48 px."""

    embed: int = 128          # E; heads of the temporal heads and prompts: E / 64
    vision_width: int = 128
    vision_layers: int = 4
    patch: int = 16
    image: int = 48           # 3x3 patches
    text_width: int = 128
    text_layers: int = 2
    context: int = 77
    vocab: int = 49408


class _Init:
    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=self.gen) * std + mean

    def linear(self, sd, p, out_features, in_features, bias=True):
        sd[p + "weight"] = self.normal(out_features, in_features, std=in_features ** -0.5)
        if bias:
            sd[p + "bias"] = self.normal(out_features, std=0.1)

    def norm(self, sd, p, width):
        sd[p + "weight"] = self.normal(width, std=0.1, mean=1.0)
        sd[p + "bias"] = self.normal(width, std=0.1)

    def block(self, sd, p, width):
        sd[p + "attn.in_proj_weight"] = self.normal(3 * width, width, std=width ** -0.5)
        sd[p + "attn.in_proj_bias"] = self.normal(3 * width, std=0.1)
        self.linear(sd, p + "attn.out_proj.", width, width)
        self.norm(sd, p + "ln_1.", width)
        self.linear(sd, p + "mlp.c_fc.", 4 * width, width)
        self.linear(sd, p + "mlp.c_proj.", width, 4 * width)
        self.norm(sd, p + "ln_2.", width)


def random_clip_state_dict(dims: TinyDims = TinyDims(), seed: int = 0, embedding_std: float = 1.0,
                           cross_frame: bool = False) -> dict:
    """A ViT CLIP state dict with OpenAI's names (``cross_frame``: with X-CLIP's message_* parameters
    in every vision block). ``embedding_std`` scales visual.proj, and so the frame embeddings' size."""
    init = _Init(seed)
    sd = {}
    w, grid = dims.vision_width, dims.image // dims.patch
    sd["visual.class_embedding"] = init.normal(w, std=w ** -0.5)
    sd["visual.positional_embedding"] = init.normal(grid * grid + 1, w, std=w ** -0.5)
    sd["visual.proj"] = init.normal(w, dims.embed, std=w ** -0.5 * embedding_std)
    sd["visual.conv1.weight"] = init.normal(w, 3, dims.patch, dims.patch, std=(3 * dims.patch ** 2) ** -0.5)
    init.norm(sd, "visual.ln_pre.", w)
    for i in range(dims.vision_layers):
        p = f"visual.transformer.resblocks.{i}."
        if cross_frame:
            init.linear(sd, p + "message_fc.", w, w)
            init.norm(sd, p + "message_ln.", w)
            sd[p + "message_attn.in_proj_weight"] = init.normal(3 * w, w, std=w ** -0.5)
            sd[p + "message_attn.in_proj_bias"] = init.normal(3 * w, std=0.1)
            init.linear(sd, p + "message_attn.out_proj.", w, w)
        init.block(sd, p, w)
    init.norm(sd, "visual.ln_post.", w)
    d = dims.text_width
    sd["positional_embedding"] = init.normal(dims.context, d, std=0.1)
    sd["text_projection"] = init.normal(d, dims.embed, std=d ** -0.5)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07)) + init.normal(1, std=0.1)[0]
    sd["token_embedding.weight"] = init.normal(dims.vocab, d, std=0.5)
    for i in range(dims.text_layers):
        init.block(sd, f"transformer.resblocks.{i}.", d)
    init.norm(sd, "ln_final.", d)
    return sd


def random_actionclip_head(dims: TinyDims = TinyDims(), seed: int = 1, position_rows: int = 77,
                           position_std: float = 0.02, layers: int = 6) -> dict:
    """ActionCLIP's "Transf" fusion model keys (without ``module.``): a frame position table of
    ``position_rows`` rows (an nn.Embedding over the context length: 77) and 6 blocks of width E."""
    init = _Init(seed)
    e = dims.embed
    sd = {"frame_position_embeddings.weight": init.normal(position_rows, e, std=position_std)}
    for i in range(layers):
        init.block(sd, f"transformer.resblocks.{i}.", e)
    return sd


def random_xclip_state_dict(dims: TinyDims = TinyDims(), frames: int = 8, seed: int = 2) -> dict:
    """X-CLIP's ``model`` state dict: CLIP with cross-frame message parameters, ``mit.*`` (one block),
    ``prompts_visual_ln``/``prompts_visual_proj`` and ``prompts_generator.*`` (two decoder layers)."""
    init = _Init(seed + 100)
    sd = random_clip_state_dict(dims, seed=seed, cross_frame=True)
    e, w = dims.embed, dims.vision_width
    sd["mit.positional_embedding"] = init.normal(1, frames, e, std=0.5)
    init.block(sd, "mit.resblocks.0.", e)
    init.norm(sd, "prompts_visual_ln.", w)
    sd["prompts_visual_proj"] = init.normal(w, e, std=w ** -0.5)
    p = "prompts_generator."
    sd[p + "alpha"] = init.normal(e, std=0.1, mean=0.5)  # trained alphas; 0.1 at initialisation
    init.norm(sd, p + "norm.", e)
    for i in range(2):
        q = f"{p}decoder.{i}."
        for name in ("q_proj", "k_proj", "v_proj"):
            init.linear(sd, f"{q}cross_attn.{name}.", e, e, bias=False)
        init.linear(sd, q + "cross_attn.proj.", e, e)
        init.norm(sd, q + "norm1.", e)
        init.norm(sd, q + "norm3.", e)
        init.linear(sd, q + "mlp.0.", 4 * e, e)
        init.linear(sd, q + "mlp.3.", e, 4 * e)
    return sd


def random_tokens(count: int, dims: TinyDims = TinyDims(), seed: int = 3, length: int | None = None):
    """Token sequences shaped like tokenize()'s output: start token, some words, end-of-text (the
    largest id, which encode_text's argmax finds), zero padding."""
    gen = torch.Generator().manual_seed(seed)
    length = length or dims.context
    sot, eot = dims.vocab - 2, dims.vocab - 1
    tokens = torch.zeros(count, length, dtype=torch.long)
    for row in range(count):
        n = int(torch.randint(1, 8, (1,), generator=gen))
        tokens[row, 0] = sot
        tokens[row, 1:1 + n] = torch.randint(1, sot, (n,), generator=gen)
        tokens[row, 1 + n] = eot
    return tokens


def random_clips(batch: int, frames: int, dims: TinyDims = TinyDims(), seed: int = 4):
    """Already-normalised input clips [B, T, 3, H, W]."""
    return torch.randn(batch, frames, 3, dims.image, dims.image, generator=torch.Generator().manual_seed(seed))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return float((actual.float() - expected.float()).abs().max() / expected.float().abs().max())


# --------------------------------------------------------------------------------------------------
# OpenAI's file format: a TorchScript archive of the CLIP module
# --------------------------------------------------------------------------------------------------

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class _ModuleTree(torch.nn.Module):
    """A module holding tensors at dotted names, so that a TorchScript archive of it has exactly the
    state dict given (OpenAI's archive is the CLIP module; only its tensors matter here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_torchscript_archive(state_dict: dict, path, extra_attributes: dict | None = None) -> None:
    """Script a module tree with ``state_dict`` as its parameters (OpenAI's three integer entries as
    buffers, as in their archives) and save it. ``extra_attributes``: plain tensor attributes
    (``{"transformer.resblocks.0.attn_mask": ...}``) that are in the archive but not in the state dict."""
    root = _ModuleTree()

    def owner(key):
        *path_, name = key.split(".")
        module = root
        for part in path_:
            if not hasattr(module, part):
                module.add_module(part, _ModuleTree())
            module = getattr(module, part)
        return module, name

    for key, value in state_dict.items():
        module, name = owner(key)
        if key in OPENAI_EXTRA_KEYS:
            module.register_buffer(name, value)
        else:
            module.register_parameter(name, torch.nn.Parameter(value, requires_grad=False))
    for key, value in (extra_attributes or {}).items():
        module, name = owner(key)
        setattr(module, name, value)
    with warnings.catch_warnings():  # torch.jit.script is deprecated; OpenAI's files are TorchScript still
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(root).save(str(path))


def openai_archive_state_dict(dims: TinyDims = TinyDims(), seed: int = 0) -> dict:
    """What OpenAI's archives hold: CLIP in fp16 (LayerNorms and embeddings included) plus the
    three integer entries."""
    sd = {k: v.half() for k, v in random_clip_state_dict(dims, seed).items()}
    sd["input_resolution"] = torch.tensor(dims.image)
    sd["context_length"] = torch.tensor(dims.context)
    sd["vocab_size"] = torch.tensor(dims.vocab)
    return sd


def random_vificlip_model_state(dims: TinyDims = TinyDims(), seed: int = 30, class_tokens=None):
    """ViFi-CLIP's ``model.state_dict()`` under DistributedDataParallel, and the original CLIP it was
    fine-tuned from (OpenAI's archive content: fp16, with the integer entries). The fine-tuned weights
    differ from the original's everywhere, except the token embedding, which ViFi-CLIP does not hold: it
    embedded ``class_tokens`` [K, 77] with it once (``prompt_learner.complete_text_embeddings``)."""
    original = openai_archive_state_dict(dims, seed)
    tuned = random_clip_state_dict(dims, seed + 1)
    table = original["token_embedding.weight"]
    sd = {f"module.image_encoder.{k[len('visual.'):]}": v for k, v in tuned.items() if k.startswith("visual.")}
    for k, v in tuned.items():
        if k.startswith(("transformer.", "ln_final.")) or k in ("positional_embedding", "text_projection"):
            sd[f"module.text_encoder.{k}"] = v
    sd["module.logit_scale"] = tuned["logit_scale"]
    tokens = class_tokens if class_tokens is not None else random_tokens(4, dims, seed=seed)
    sd["module.prompt_learner.complete_text_embeddings"] = table[tokens].float()  # model.float() after building
    return sd, original


def random_mmaction2_state_dict(dims: TinyDims = TinyDims(), frames: int = 8, seed: int = 40,
                                embedding_std: float = 1.0, position_std: float = 0.02) -> dict:
    """ActionClip's ``state_dict()`` (mmaction2): CLIP (OpenAI's names, no integer entries) under
    ``clip.``, the TransformerAdapter under ``adapter.`` with a T-row frame position table."""
    clip_sd = random_clip_state_dict(dims, seed, embedding_std=embedding_std)
    head = random_actionclip_head(dims, seed + 1, position_rows=frames, position_std=position_std)
    return {**{f"clip.{k}": v for k, v in clip_sd.items()}, **{f"adapter.{k}": v for k, v in head.items()}}


def randomized(model, seed):
    """Every parameter of a transformers (or clip/) model drawn at random: transformers leaves LayerNorms at
    identity and biases at zero, which would hide a misplaced one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name == "logit_scale":
                p.copy_(math.log(1 / 0.07) + 0.1 * noise)
            elif name.endswith("alpha"):
                p.copy_(0.5 + 0.1 * noise)
            elif p.ndim == 1:
                p.copy_((1.0 if ("norm" in name or "ln_" in name) and name.endswith("weight") else 0.0) + 0.1 * noise)
            else:
                p.copy_(noise * p[0].numel() ** -0.5)
    return model.eval()
