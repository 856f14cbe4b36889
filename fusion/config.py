"""The one home of the video models' constants and their configuration: the backbones, the variants,
CLIP's input normalisation, MBGF's branch names and :class:`VideoModelConfig`.

The backbones are the model registry's names: one per OpenAI release (from :data:`clip.RELEASED`, under
its short name: b32, b16, l14, l14-336), ``tiny`` (random init), and ``custom``, a CLIP of any size
whose architecture the config carries (what a converted checkpoint of an unnamed size records).

Plain data only: this module builds nothing (the builders are in :mod:`fusion.registry`), so the model
(:mod:`fusion.video_model`), the registry and the application all read it without importing each other.
"""

from dataclasses import asdict, dataclass, fields, replace

from clip.model import CLIPConfig
from clip.released import RELEASED

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
    clip_config: CLIPConfig  # the architecture, at the resolution its weights were trained at
    clip_name: str | None = None     # the released CLIP weights (a clip.load name); None: none released
    follows_input_size: bool = False  # random init only: built at the input size, not at clip_config's
    small: bool = False  # matrices too small for bf16 kernels to win back the backward pass's casts on a CPU


BACKBONES = {
    **{m.short_name: Backbone(m.name.removeprefix("ViT-"), m.config, m.name) for m in RELEASED.values()},
    # random init, for CPU demos and tests
    "tiny": Backbone("tiny", CLIPConfig(128, 112, 4, 128, 16, transformer_width=128, transformer_heads=2,
                                        transformer_layers=2), follows_input_size=True, small=True),
}
CUSTOM = "custom"  # a backbone of any size: VideoModelConfig.architecture holds its CLIP


def backbone_for(clip_config: CLIPConfig) -> tuple[str, CLIPConfig | None]:
    """``(model, architecture)`` for a CLIP of this architecture: the named backbone that is this CLIP
    (``tiny`` at any resolution), else ``("custom", clip_config)``."""
    wanted = asdict(clip_config)
    for name, backbone in BACKBONES.items():
        candidate = asdict(backbone.clip_config)
        if backbone.follows_input_size:
            candidate["image_resolution"] = wanted["image_resolution"]
        if candidate == wanted:
            return name, None
    return CUSTOM, clip_config


def architecture_label(c: CLIPConfig) -> str:
    """A custom backbone's name in tables: vision width, layers, patch and resolution (``W128-L2/16@64``)."""
    return f"W{c.vision_width}-L{c.vision_layers}/{c.vision_patch_size}@{c.image_resolution}"


VARIANTS = {"clip": "CLIP", "actionclip": "ActionCLIP", "xclip": "X-CLIP"}
TEMPLATE_EVAL = ("mean_text", "mean_softmax")


@dataclass(frozen=True)
class VideoModelConfig:
    """Everything that determines a video model's architecture and how to feed it; JSON-able through
    :meth:`to_dict`, and ``fusion.build_video_model(**config.to_dict())`` (or
    ``fusion.build_from_config(config)``) rebuilds the same model."""

    model: str = "b16"            # the backbone: a name of BACKBONES, or "custom" (with architecture)
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
    # The CLIP of a "custom" backbone (any size; a dict in JSON); None for the named backbones
    architecture: CLIPConfig | None = None

    def __post_init__(self):
        self._check_backbone()
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

    def _check_backbone(self) -> None:
        if isinstance(self.architecture, dict):
            try:
                object.__setattr__(self, "architecture", CLIPConfig(**self.architecture))
            except TypeError as e:  # an unknown or missing key
                raise ValueError(f"architecture: {e}") from None
        if self.model == CUSTOM:
            if not isinstance(self.architecture, CLIPConfig):
                raise ValueError("model 'custom' needs its architecture (a CLIP configuration)")
        elif self.model not in BACKBONES:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(BACKBONES)}")
        elif self.architecture is not None:
            raise ValueError(f"an architecture is given with model {self.model!r}; it is for model 'custom' only")

    @property
    def backbone(self) -> Backbone:
        if self.model == CUSTOM:
            return Backbone(architecture_label(self.architecture), self.architecture)
        return BACKBONES[self.model]

    @property
    def name(self) -> str:
        """As in the tables: ``CLIP-B/16``, ``X-CLIP-B/16+MBGF``."""
        return f"{VARIANTS[self.variant]}-{self.backbone.label}" + ("+MBGF" if self.mbgf else "")

    @property
    def clip_config(self) -> CLIPConfig:
        """The CLIP architecture to build. Backbones with weights (released or custom) keep the resolution
        of their weights (other input sizes interpolate the position embedding on the fly); ``tiny`` is
        built at the input size."""
        backbone = self.backbone
        return replace(backbone.clip_config, image_resolution=self.input_size) if backbone.follows_input_size \
            else backbone.clip_config

    def to_dict(self) -> dict:
        """Plain JSON types; the keys are :func:`fusion.build_video_model`'s arguments (``architecture``
        only for a custom backbone)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if values["architecture"] is None:
            del values["architecture"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "VideoModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown video model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)
