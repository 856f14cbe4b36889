"""The model registry: the one place that turns names (``--model``, ``--variant``, ``--mbgf``,
``--frames``, ``--input-size``) or a :class:`~fusion.config.VideoModelConfig` (what a checkpoint's
metadata holds) into a configured :class:`~fusion.video_model.VideoCLIP`, and that lists the models
(:func:`list_models`, what ``mbgf models`` prints). The names themselves are data in
:mod:`fusion.config` (backbones, variants) and :mod:`clip.released` (OpenAI's files).

Building never reads a file unless ``pretrained`` names CLIP weights, so a model builds under
``with torch.device("meta"):`` (how FLOPs are counted) and from a checkpoint's config alone.
"""

import fnmatch
from dataclasses import fields
from pathlib import Path

import torch

from clip.model import CLIP, CLIPConfig
from fusion.config import BACKBONES, VARIANTS, VideoModelConfig, backbone_for
from fusion.video_model import VideoCLIP


def build_video_model(model: str | None = "b16", variant: str = "clip", mbgf: bool = True, frames: int = 8,
                      input_size: int | None = None, clip_model: CLIP | None = None,
                      pretrained: str | Path | bool | None = None, **options) -> VideoCLIP:
    """A video model, in eval mode.

    CLIP's weights come from ``clip_model`` (adopted, not copied), or ``pretrained`` (a ``clip.load``
    name or path; ``True`` = the backbone's released weights, e.g. ``ViT-B/16``), or else random
    init (no file is read). ``model=None`` with a ``clip_model``: the backbone that CLIP is (a named
    one, or ``custom`` with its architecture). ``options`` are :class:`VideoModelConfig`'s other fields.
    """
    if model is None:
        if clip_model is None:
            raise ValueError("model=None needs the clip_model whose backbone it is")
        model, architecture = backbone_for(clip_model.config)
        if architecture is not None:
            options["architecture"] = architecture
    config = VideoModelConfig.from_dict(dict(model=model, variant=variant, mbgf=mbgf, frames=frames,
                                             input_size=input_size, **options))
    return build_from_config(config, clip_model=clip_model, pretrained=pretrained)


def build_from_config(config: VideoModelConfig, clip_model: CLIP | None = None,
                      pretrained: str | Path | bool | None = None) -> VideoCLIP:
    """The model ``config`` describes (CLIP weights as in :func:`build_video_model`), in eval mode."""
    if clip_model is not None and pretrained:
        raise ValueError("give clip_model or pretrained, not both")
    if clip_model is None:
        if pretrained:
            name = config.backbone.clip_name if pretrained is True else pretrained
            if name is None:
                raise ValueError(f"{config.model} has no pretrained CLIP weights (random init, or weights from a "
                                 "checkpoint)")
            import clip.loading  # only here: building otherwise never touches files

            clip_model = clip.loading.load(name)
        else:
            clip_model = CLIP(config.clip_config)
    check_backbone(clip_model.config, config)
    return VideoCLIP(clip_model, config).eval()



def check_backbone(clip_config: CLIPConfig, config: VideoModelConfig) -> None:
    """A given CLIP must be the backbone the config names (any resolution: positions are resized)."""
    expected = config.clip_config
    wrong = [f"{f.name} {getattr(clip_config, f.name)} (expected {getattr(expected, f.name)})"
             for f in fields(CLIPConfig)
             if f.name != "image_resolution" and getattr(clip_config, f.name) != getattr(expected, f.name)]
    if wrong:
        raise ValueError(f"the CLIP model is not the {config.model} backbone: {'; '.join(wrong)}")


def model_id(config: VideoModelConfig) -> str:
    """The registry's id of a model: backbone, variant, and ``-mbgf`` with MBGF (``b16-xclip-mbgf``)."""
    return f"{config.model}-{config.variant}" + ("-mbgf" if config.mbgf else "")


def list_models(pattern: str = "*") -> list[VideoModelConfig]:
    """Every named model (each backbone, variant, without and with MBGF, at its defaults) whose id
    (:func:`model_id`) or table name (``X-CLIP-B/16+MBGF``) matches the shell-style ``pattern``
    (case-insensitive), like timm's ``list_models``."""
    pattern = pattern.lower()
    configs = [VideoModelConfig(model=backbone, variant=variant, mbgf=mbgf)
               for backbone in BACKBONES for variant in VARIANTS for mbgf in (False, True)]
    return [c for c in configs
            if fnmatch.fnmatchcase(model_id(c).lower(), pattern) or fnmatch.fnmatchcase(c.name.lower(), pattern)]


def parameter_count(config: VideoModelConfig) -> int:
    """The number of parameters of the model ``config`` describes, counted on a model built on the meta
    device (no memory, no weights read)."""
    with torch.device("meta"):
        model = build_from_config(config)
    return sum(p.numel() for p in model.parameters())
