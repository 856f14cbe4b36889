"""VideoCLIP: a CLIP image encoder over the frames of a clip, a temporal head, optionally MBGF, and
CLIP's text encoder for the class prompts.

State-dict names: CLIP's own keys sit unprefixed at the top level (``visual.*``, ``transformer.*``,
``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``, ``text_projection``,
``logit_scale``), exactly as in X-CLIP's checkpoints; the variant's parts use the papers' names
(``fusion_model.*`` for ActionCLIP's head; ``visual.transformer.resblocks.N.message_*``, ``mit.*``,
``prompts_visual_ln.*``, ``prompts_visual_proj``, ``prompts_generator.*`` for X-CLIP); MBGF is under
``mbgf.*``. :meth:`VideoCLIP.is_clip_parameter` tells CLIP's weights from the new ones.

Class prompts: ``class_tokens`` is ``[K, 77]`` (one prompt per class) or ``[K, P, 77]`` (P templates
per class). In training each video draws one template at random (ActionCLIP's recipe), for every
variant. In evaluation the templates are combined as ``config.template_eval`` says:
``"mean_text"`` averages the class text features over templates (the CLIP prompt-ensemble way; the
raw features are averaged, which keeps X-CLIP's prompt generator at the scale it was trained on), and
``"mean_softmax"`` scores every template separately, takes the softmax over classes per template and
averages it over templates (ActionCLIP's test); the logits returned are then the log of that
average, so ``logits.softmax(-1)`` is ActionCLIP's score. ``config.test_logit_scale`` replaces
``logit_scale.exp()`` in evaluation (ActionCLIP tests at a fixed 100).
"""

import torch
import torch.nn.functional as F
from torch import nn

from clip.model import CLIP, LayerNorm, Transformer
from fusion.config import VideoModelConfig
from fusion.heads import ActionCLIPTransformerHead, init_new_weights
from fusion.mbgf import MBGF
from fusion.xclip import (
    CrossFrameTransformer,
    CrossFrameVisionTransformer,
    MultiframeIntegrationTransformer,
    VideoSpecificPrompt,
)

TEXT_MODULES = ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection")


class VideoCLIP(nn.Module):
    """A video classifier on CLIP. Build it with :func:`fusion.build_video_model`.

    The CLIP's parameters are adopted, not copied: ``clip_model`` and the video model share them.
    """

    def __init__(self, clip_model: CLIP, config: VideoModelConfig):
        super().__init__()
        self.config = config
        self.clip_config = clip_model.config
        embed_dim, width = clip_model.config.embed_dim, clip_model.config.vision_width
        variant = config.variant

        # CLIP, under its own names.
        self.visual = CrossFrameVisionTransformer(clip_model.visual) if variant == "xclip" else clip_model.visual
        self.transformer = clip_model.transformer
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.logit_scale = clip_model.logit_scale
        self.register_buffer("causal_mask", clip_model.causal_mask, persistent=False)
        self._clip_parameter_names = frozenset(name for name, _ in clip_model.named_parameters())

        # The variant's temporal head and text side.
        self.fusion_model = None
        self.mit = None
        self.prompts_generator = None
        if variant == "actionclip":
            self.fusion_model = ActionCLIPTransformerHead(embed_dim, config.actionclip_layers,
                                                          clip_model.config.context_length,
                                                          config.actionclip_layer_norm_eps)
        elif variant == "xclip":
            self.mit = MultiframeIntegrationTransformer(embed_dim, config.frames, config.xclip_mit_layers)
            self.prompts_visual_ln = LayerNorm(width)
            self.prompts_visual_proj = nn.Parameter(torch.empty(width, embed_dim))
            self.prompts_generator = VideoSpecificPrompt(embed_dim, config.xclip_prompt_layers,
                                                         config.xclip_prompt_alpha)
            init_new_weights(self.prompts_visual_ln)
            nn.init.trunc_normal_(self.prompts_visual_proj, std=0.02)

        self.mbgf = MBGF(embed_dim, width, config.frames, own_temporal_branch=variant == "clip",
                         temporal_layers=config.mbgf_temporal_layers, motion_reduction=config.mbgf_motion_reduction,
                         motion_kernel=config.mbgf_motion_kernel) if config.mbgf else None

        self.to(clip_model.visual.conv1.weight.device)  # the new parts, where CLIP's weights are
        self.train(clip_model.training)
        self._text_cache = None

    # ------------------------------------------------------------------ parameters

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def is_clip_parameter(self, name: str) -> bool:
        """Whether ``name`` (as in ``named_parameters()``) is one of CLIP's weights (train at lr) rather
        than a part this model adds: X-CLIP's message layers, MIT and prompts, ActionCLIP's head, MBGF
        (train at lr x 10, as both papers do)."""
        return name in self._clip_parameter_names

    def text_parameters(self) -> list[nn.Parameter]:
        """The text encoder's parameters (``transformer.*``, token and position embeddings, ln_final,
        text_projection)."""
        return [p for name, p in self.named_parameters() if name.split(".")[0] in TEXT_MODULES]

    def freeze_text(self, frozen: bool = True) -> None:
        """Stop (or restart) training the text encoder; frozen text features are cached."""
        for p in self.text_parameters():
            p.requires_grad_(not frozen)
        self._text_cache = None

    def no_weight_decay(self) -> set[str]:
        """The parameters kept out of weight decay (the one rule; the optimiser's groups follow it): every
        tensor of fewer than 2 dimensions (norms, biases, the logit scale, X-CLIP's alpha), embeddings
        and positions (token, class, frame and patch positions)."""
        return {name for name, p in self.named_parameters()
                if p.ndim < 2 or "embedding" in name or name.endswith(("alpha", "logit_scale"))}

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute every transformer block in the backward pass (less memory, ~30% more compute)."""
        for module in self.modules():
            if isinstance(module, (Transformer, CrossFrameTransformer)):
                module.grad_checkpointing = enabled

    # ------------------------------------------------------------------ video

    def encode_frames(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, 3, H, W]`` -> frame embeddings ``[B, T, E]`` (projected CLS) and the last block's
        patch tokens ``[B, T, N, W]`` (before ln_post; a view, not a copy)."""
        b, t = clips.shape[:2]
        images = clips.flatten(0, 1).to(self.dtype)
        if self.config.variant == "xclip":
            embeddings, patches = self.visual(images, frames=t, return_tokens=True)
        else:
            embeddings, patches = self.visual(images, return_tokens=True)
        return embeddings.view(b, t, -1), patches.unflatten(0, (b, t))

    def encode_video(self, clips: torch.Tensor, return_details: bool = False):
        """``[B, T, 3, H, W]`` -> video embeddings ``[B, E]`` (not normalised). With ``return_details``
        also a dict: ``frame_features [B,T,E]``, ``patch_tokens [B,T,N,W]``, and with MBGF ``gates [B,3]``
        (appearance, temporal, motion; rows sum to 1) and the branch outputs ``appearance``,
        ``temporal``, ``motion`` ``[B,E]``."""
        frame_features, patch_tokens = self.encode_frames(clips)
        details = {"frame_features": frame_features, "patch_tokens": patch_tokens}
        temporal = None
        if self.fusion_model is not None:
            video = temporal = self.fusion_model(frame_features)
        elif self.mit is not None:
            video = temporal = self.mit(frame_features)
        else:
            video = frame_features.mean(dim=1)
        if self.mbgf is not None:
            video, parts = self.mbgf(video, frame_features, patch_tokens, temporal)
            details.update(parts)
        details["video_features"] = video
        return (video, details) if return_details else video

    # ------------------------------------------------------------------ text

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[..., L]`` (e.g. ``[K, 77]`` or ``[K, P, 77]``) -> text embeddings ``[..., E]``.

        Cached while the text encoder cannot change: it is frozen, or gradients are off; the cache is
        keyed by the tokens and the text weights' versions, so an optimiser step or a weight load
        invalidates it."""
        lead, flat = tokens.shape[:-1], tokens.reshape(-1, tokens.shape[-1])
        params = self.text_parameters()
        if flat.device.type == "meta" or (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            return self._encode_text(flat).reshape(*lead, -1)
        key = (tuple(p._version for p in params), flat.device, torch.is_autocast_enabled(flat.device.type))
        cache = self._text_cache
        if cache is None or cache[0] != key or cache[1].shape != flat.shape or not torch.equal(cache[1], flat):
            with torch.no_grad():
                cache = self._text_cache = (key, flat.clone(), self._encode_text(flat))
        return cache[2].reshape(*lead, -1)

    # CLIP's own text encoder, run on the text tensors VideoCLIP holds under CLIP's names.
    _encode_text = CLIP.encode_text

    # ------------------------------------------------------------------ classification

    def forward(self, clips: torch.Tensor, class_tokens: torch.Tensor, return_details: bool = False):
        """Class logits ``[B, K]`` for clips ``[B, T, 3, H, W]`` and class prompts ``[K, 77]`` or
        ``[K, P, 77]``: ``scale * normalize(video) @ normalize(text).T`` (X-CLIP: per-video text).

        With ``return_details``: ``(logits, details)``, details as :meth:`encode_video`'s plus
        ``video_features [B,E]``, ``text_features`` (the unnormalised text the logits were computed
        from: ``[K,E]``, or ``[B,K,E]`` when per video (a template drawn per video in training, or
        X-CLIP's prompts), with a template axis before E under ``mean_softmax``) and ``logit_scale``.
        """
        video, details = self.encode_video(clips, return_details=True)
        text = self.encode_text(class_tokens)                           # [K, E] or [K, P, E]
        per_video = per_template = False
        if class_tokens.dim() == 3:
            if self.training:  # one random template per video
                choice = torch.randint(text.shape[1], (video.shape[0],), device=text.device)
                text, per_video = text[:, choice].transpose(0, 1), True  # [B, K, E]
            elif self.config.template_eval == "mean_text":
                text = text.mean(dim=1)                                 # [K, E]
            else:                                                       # "mean_softmax": [K, P, E]
                per_template = True
        if self.prompts_generator is not None:
            if not per_video:
                text = text.expand(video.shape[0], *text.shape)
            text, per_video = self.video_specific_text(text, details["patch_tokens"]), True
        if not self.training and self.config.test_logit_scale is not None:
            scale = torch.tensor(float(self.config.test_logit_scale), device=video.device)
        else:
            scale = self.logit_scale.exp()
        logits = scale * similarity(video, text, per_video)             # [B, K] or [B, K, P]
        if per_template:
            logits = logits.float().softmax(dim=1).mean(dim=2).log()
        if not return_details:
            return logits
        details.update(text_features=text, logit_scale=scale)
        return logits, details

    def video_specific_text(self, text: torch.Tensor, patch_tokens: torch.Tensor) -> torch.Tensor:
        """X-CLIP: per-video class text ``[B, K, ..., E]`` plus the prompt generator's offset computed
        from the video's patch tokens ``[B, T, N, W]``; same shape out."""
        # ln, mean over frames, then project: X-CLIP projects before the mean; the projection is
        # linear, so this is the same result at 1/T of the cost.
        visual = self.prompts_visual_ln(patch_tokens).mean(dim=1) @ self.prompts_visual_proj.to(patch_tokens.dtype)
        queries = text.reshape(text.shape[0], -1, text.shape[-1])       # [B, K*P, E]
        return (queries + self.prompts_generator(queries, visual)).view(text.shape)


def similarity(video: torch.Tensor, text: torch.Tensor, per_video: bool) -> torch.Tensor:
    """Cosine similarity of ``video [B,E]`` with shared text ``[K,...,E]`` or per-video text
    ``[B,K,...,E]`` -> ``[B,K,...]``."""
    video, text = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
    if per_video:
        return torch.einsum("be,bk...e->bk...", video, text.to(video.dtype))
    return torch.einsum("be,k...e->bk...", video, text.to(video.dtype))
