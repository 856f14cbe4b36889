"""The one home of the video models' constants and their configuration: the backbones, the variants,
CLIP's input normalisation, MBGF's branch names and :class:`VideoModelConfig`.

Plain data only: this module builds nothing (the builders are in :mod:`fusion.registry`), so the model
(:mod:`fusion.video_model`), the registry and the application all read it without importing each other.
"""

from dataclasses import asdict, dataclass, fields, replace

from clip.model import CONFIGS, CLIPConfig

# Input normalisation on the 0-1 pixel scale. X-CLIP writes ImageNet's on the 0-255 scale
# (mean 123.675, 116.28, 103.53; std 58.395, 57.12, 57.375): the very same numbers divided by 255.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# MBGF's branches, in the order of its gate weights.
BRANCHES = ("appearance", "temporal", "motion")


@dataclass(frozen=True)
class Backbone:
    label: str               # as in table names: CLIP-B/16
    clip_name: str | None    # the released CLIP weights (a clip.load name); None: random init only
    clip_config: CLIPConfig  # the architecture, at the resolution its weights were trained at


BACKBONES = {
    "b32": Backbone("B/32", "ViT-B/32", CONFIGS["ViT-B/32"]),
    "b16": Backbone("B/16", "ViT-B/16", CONFIGS["ViT-B/16"]),
    "l14": Backbone("L/14", "ViT-L/14", CONFIGS["ViT-L/14"]),
    "tiny": Backbone("tiny", None, CONFIGS["tiny"]),  # random init, for CPU demos and tests
}
VARIANTS = {"clip": "CLIP", "actionclip": "ActionCLIP", "xclip": "X-CLIP"}
TEMPLATE_EVAL = ("mean_text", "mean_softmax")


@dataclass(frozen=True)
class VideoModelConfig:
    """Everything that determines a video model's architecture and how to feed it; JSON-able through
    :meth:`to_dict`, and ``fusion.build_video_model(**config.to_dict())`` (or
    ``fusion.build_from_config(config)``) rebuilds the same model."""

    model: str = "b16"            # the backbone: b32, b16, l14, tiny
    variant: str = "clip"         # clip, actionclip, xclip
    mbgf: bool = True
    frames: int = 8
    input_size: int | None = None  # None: the backbone's resolution (224; tiny 112)
    input_mean: tuple[float, float, float] = CLIP_MEAN  # on the 0-1 pixel scale
    input_std: tuple[float, float, float] = CLIP_STD
    # ActionCLIP's "Transf" head
    actionclip_layers: int = 6
    actionclip_layer_norm_eps: float = 1e-12  # ActionCLIP's "TF style"; mmaction2's port: 1e-5
    # X-CLIP
    xclip_mit_layers: int = 1
    xclip_prompt_layers: int = 2
    xclip_prompt_alpha: float = 0.1
    # MBGF
    mbgf_temporal_layers: int = 1  # MBGF's own temporal branch (clip variant only)
    mbgf_motion_reduction: int = 4  # motion branch channels: W / this
    mbgf_motion_kernel: int = 3     # depthwise temporal convolution over the differences
    # Evaluation with several templates per class: "mean_text" or "mean_softmax" (ActionCLIP's test)
    template_eval: str = "mean_text"
    test_logit_scale: float | None = None  # None: logit_scale.exp(); ActionCLIP tests at 100

    def __post_init__(self):
        if self.model not in BACKBONES:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(BACKBONES)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose from {', '.join(VARIANTS)}")
        if self.template_eval not in TEMPLATE_EVAL:
            raise ValueError(f"unknown template_eval {self.template_eval!r}; choose from {', '.join(TEMPLATE_EVAL)}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, not {self.frames}")
        size = self.input_size if self.input_size is not None else self.backbone.clip_config.image_resolution
        patch = self.backbone.clip_config.vision_patch_size
        if size < patch or size % patch:
            raise ValueError(f"input size {size} is not a multiple of {self.model}'s patch size {patch}")
        object.__setattr__(self, "input_size", int(size))
        for name in ("input_mean", "input_std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} needs 3 values (R, G, B), not {len(value)}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "mbgf", bool(self.mbgf))

    @property
    def backbone(self) -> Backbone:
        return BACKBONES[self.model]

    @property
    def name(self) -> str:
        """As in the tables: ``CLIP-B/16``, ``X-CLIP-B/16+MBGF``."""
        return f"{VARIANTS[self.variant]}-{self.backbone.label}" + ("+MBGF" if self.mbgf else "")

    @property
    def clip_config(self) -> CLIPConfig:
        """The CLIP architecture to build. Pretrained backbones keep the resolution of their weights
        (other input sizes interpolate the position embedding on the fly); ``tiny`` is built at the
        input size."""
        config = self.backbone.clip_config
        return replace(config, image_resolution=self.input_size) if self.backbone.clip_name is None else config

    def to_dict(self) -> dict:
        """Plain JSON types; the keys are :func:`fusion.build_video_model`'s arguments."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "VideoModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown video model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)
