"""Video models on top of ``clip``: temporal heads (mean, ActionCLIP's transformer, X-CLIP's cross-frame
communication + MIT + video-specific prompts), MBGF, the model registry and the losses.
Knows nothing about files or the command line.

    import fusion
    model = fusion.build_video_model(model="b16", variant="xclip", mbgf=True, frames=8, pretrained=True)
    logits = model(clips, class_tokens)       # [B, T, 3, H, W], [K, 77] or [K, P, 77] -> [B, K]
    logits, details = model(clips, class_tokens, return_details=True)   # details["gates"]: [B, 3]

Modules: ``config`` (VideoModelConfig, backbones, constants), ``registry`` (names -> models, the list),
``video_model`` (VideoCLIP), ``heads`` (ActionCLIP), ``xclip`` (X-CLIP), ``mbgf`` (MBGF), ``prompts``,
``losses``, ``mixup``.
"""

from fusion import losses, mixup, prompts
from fusion.config import (
    BACKBONES,
    CLIP_MEAN,
    CLIP_STD,
    CUSTOM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    Backbone,
    VideoModelConfig,
    backbone_for,
)
from fusion.registry import build_from_config, build_video_model, list_models, model_id, parameter_count
from fusion.video_model import VideoCLIP

__all__ = [
    "BACKBONES",
    "CLIP_MEAN",
    "CLIP_STD",
    "CUSTOM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VARIANTS",
    "Backbone",
    "VideoCLIP",
    "VideoModelConfig",
    "backbone_for",
    "build_from_config",
    "build_video_model",
    "list_models",
    "losses",
    "mixup",
    "model_id",
    "parameter_count",
    "prompts",
]
