"""Published checkpoints as mbgf models: OpenAI's CLIP archives, ActionCLIP's and X-CLIP's model-zoo files.

Files are read with :mod:`clip.safe_pickle` (no code from the file runs). The format is told by
the keys (``../shared/interop/README.md`` gives the layouts):

- ``openai``: a name -> tensor dict with CLIP's names (a TorchScript archive, a state dict or
  safetensors); becomes the ``clip`` variant (mean over frames).
- ``actionclip``: ``{epoch, model_state_dict, fusion_model_state_dict, optimizer_state_dict}``; the
  "Transf" head's keys (``module.``-prefixed by DataParallel) go under ``fusion_model.``; the config
  asks for ActionCLIP's test recipe (fixed logit scale 100, softmax averaged over templates).
- ``xclip``: ``{model, optimizer, lr_scheduler, max_accuracy, epoch, config}``; ``model`` already has
  the video model's names; inputs are normalised with ImageNet's mean/std (recorded in the config's
  ``input_mean``/``input_std``, on the 0-1 scale), not CLIP's.

VideoCLIP's state dict uses the papers' key names, so conversion renames nothing but prefixes. fp16
tensors become fp32. Temporal position tables with more rows than the requested frames are sliced;
asking for more frames than a table has is refused. Missing and unexpected keys are named; with
``strict=False`` they are reported in the metadata (``conversion``) instead of failing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import fusion
from clip import safe_pickle
from clip.model import NON_PARAMETER_KEYS, config_from_state_dict, describe_key_mismatch
from mbgf_cli.checkpoint import load_checkpoint, model_file, read_meta, save_checkpoint
from mbgf_cli.errors import UserError

FORMATS = ("openai", "actionclip", "xclip")
DEFAULT_FRAMES = 8  # when the file does not say (OpenAI's and ActionCLIP's files do not)
ACTIONCLIP_TEST_LOGIT_SCALE = 100.0

# The prompts each published test used (data of their recipes, so that an evaluation can reproduce
# their numbers): ActionCLIP averages over 16 templates (utils/Text_Prompt.py); X-CLIP prompts with
# the class name alone (utils/tools.py generate_text).
PUBLISHED_PROMPTS = {
    "actionclip": ["a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action",
                   "{} this is an action", "{}, a video of action", "Playing action of {}", "{}",
                   "Playing a kind of action, {}", "Doing a kind of action, {}", "Look, the human is {}",
                   "Can you recognize the action of {}?", "Video classification of {}", "A video of {}",
                   "The man is {}", "The woman is {}"],
    "xclip": ["{}"],
}

# Learned temporal position tables and the axis that indexes frames. ActionCLIP's table is an
# embedding over the text context length (77 rows, rows 0..T-1 used), so T up to 77 works there.
ACTIONCLIP_TABLE = "fusion_model.frame_position_embeddings.weight"
TEMPORAL_POSITIONS = {
    "mit.positional_embedding": 1,            # X-CLIP's MIT [1, T, E]
    "mbgf.temporal.positional_embedding": 0,  # MBGF's own temporal branch [T, E]
    ACTIONCLIP_TABLE: 0,                      # ActionCLIP [77, E]
}


# --------------------------------------------------------------------------------------------------
# Reading and telling formats apart
# --------------------------------------------------------------------------------------------------


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """Keys without DataParallel's ``module.`` prefix (where every key has it)."""
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _weights_of(content: Any) -> dict | None:
    """The name -> tensor dict in a file's content: the content itself, or under ``model`` /
    ``state_dict`` (common wrappers)."""
    if not isinstance(content, dict):
        return None
    for candidate in (content, content.get("model"), content.get("state_dict")):
        if isinstance(candidate, dict) and any(isinstance(v, torch.Tensor) for v in candidate.values()):
            return strip_prefix(candidate)
    return None


def detect_format(content: Any) -> str | None:
    """``openai``, ``actionclip`` or ``xclip`` from the keys of a file's content; None if none fits."""
    if isinstance(content, dict) and "model_state_dict" in content and "fusion_model_state_dict" in content:
        return "actionclip"
    weights = _weights_of(content)
    if weights is None:
        return None
    if any(k.startswith(("mit.", "prompts_generator.")) or ".message_attn." in k for k in weights):
        return "xclip"
    if "visual.proj" in weights and "text_projection" in weights:
        return "openai"
    return None


def describe_content(content: Any) -> str:
    if isinstance(content, dict):
        keys = [str(k) for k in list(content)[:6]]
        return f"top-level keys: {', '.join(keys)}{', ...' if len(content) > 6 else ''}"
    return f"a {type(content).__name__}"


# --------------------------------------------------------------------------------------------------
# Conversion: (state_dict, config, meta)
# --------------------------------------------------------------------------------------------------


def read_weights_file(path: Path) -> Any:
    """:func:`clip.safe_pickle.load_file`, its errors as the CLI's one-line user errors."""
    try:
        return safe_pickle.load_file(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def convert(source, format: str = "auto", frames: int | None = None):
    """Read a foreign checkpoint file and return ``(state_dict, config, meta)``:

    - ``state_dict``: fp32 tensors under :class:`fusion.VideoCLIP`'s names,
    - ``config``: the :class:`fusion.VideoModelConfig` that builds the matching model (``mbgf=False``),
    - ``meta``: what :func:`mbgf_cli.checkpoint.save_checkpoint` stores (``config`` as a dict,
      ``class_names`` (empty: these files do not carry them), ``epoch``, ``metrics``, ``source``, and
      ``prompt_templates``: the templates the published test used, for ``fusion.prompts.class_tokens``).
    """
    path = Path(source).expanduser()
    content = read_weights_file(path)
    detected = detect_format(content)
    if format == "auto":
        if detected is None:
            raise UserError(f"{path}: not an OpenAI CLIP, ActionCLIP or X-CLIP checkpoint ({describe_content(content)})")
        format = detected
    elif format not in FORMATS:
        raise UserError(f"unknown format {format!r}; choose from auto, {', '.join(FORMATS)}")
    elif detected != format:
        found = f"it looks like {detected}" if detected else describe_content(content)
        raise UserError(f"{path}: not an {format} checkpoint ({found})")

    source_meta: dict[str, Any] = {"format": format, "file": str(path)}
    trained_frames = None
    if format == "actionclip":
        state, head = _tensors(content["model_state_dict"], path), _tensors(content["fusion_model_state_dict"], path)
        state.update({f"fusion_model.{k}": v for k, v in head.items()})
        trained_frames = _pad_short_actionclip_table(state, frames, path)
        epoch, metrics = content.get("epoch"), {}
    else:
        state = _tensors(_weights_of(content), path)
        trained_frames = _stored_frames(state)
        epoch = content.get("epoch") if format == "xclip" else None
        metrics = {"max_accuracy": content["max_accuracy"]} if format == "xclip" and "max_accuracy" in content else {}
        if format == "xclip" and "config" in content:
            source_meta["config"] = safe_pickle.plain(content["config"])

    config = _config_for(format, state, trained_frames or DEFAULT_FRAMES, path)
    state, config = fit_frames(state, config, frames, path)
    meta = {
        "config": config.to_dict(),
        "class_names": [],
        "epoch": epoch if isinstance(epoch, int) else None,
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "source": source_meta,
    }
    if format in PUBLISHED_PROMPTS:
        meta["prompt_templates"] = PUBLISHED_PROMPTS[format]
    return state, config, meta


def _pad_short_actionclip_table(state: dict, frames: int | None, path: Path) -> int | None:
    """ActionCLIP's table has a row per text position (77); a port that stores only the T trained rows
    (mmaction2's) is padded with zero rows to that size, which clips of up to T frames never read."""
    key = ACTIONCLIP_TABLE
    table, context = state.get(key), state.get("positional_embedding")
    if table is None or context is None or table.shape[0] >= context.shape[0]:
        return None
    if frames is not None and frames > table.shape[0]:
        raise UserError(f"{path}: frame_position_embeddings holds temporal positions for {table.shape[0]} "
                        f"frames; cannot use {frames} frames (use --frames {table.shape[0]} or fewer)")
    state[key] = torch.cat([table, table.new_zeros(context.shape[0] - table.shape[0], table.shape[1])])
    return table.shape[0]


def _tensors(weights: dict | None, path: Path) -> dict[str, torch.Tensor]:
    """Floating tensors as fp32; OpenAI's integer entries dropped; anything else is an error."""
    if not isinstance(weights, dict):
        raise UserError(f"{path}: expected a dict of tensors")
    result = {}
    for key, value in strip_prefix(weights).items():
        if key in NON_PARAMETER_KEYS:
            continue
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: {key!r} is a {type(value).__name__}, not a tensor")
        result[key] = value.float() if value.is_floating_point() else value
    return result


def _config_for(format: str, state: dict, frames: int, path: Path):
    try:
        clip_config = config_from_state_dict(state)
    except KeyError as e:
        raise UserError(f"{path}: no CLIP weights found (missing {e.args[0]!r})") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    backbone = _backbone_name(clip_config, path)
    options: dict[str, Any] = {}
    if format == "actionclip":
        options.update(actionclip_layers=_count_blocks(state, "fusion_model.transformer.resblocks."),
                       template_eval="mean_softmax", test_logit_scale=ACTIONCLIP_TEST_LOGIT_SCALE)
    elif format == "xclip":
        options.update(xclip_mit_layers=_count_blocks(state, "mit.resblocks."),
                       xclip_prompt_layers=_count_blocks(state, "prompts_generator.decoder."),
                       input_mean=fusion.IMAGENET_MEAN, input_std=fusion.IMAGENET_STD)
    return fusion.VideoModelConfig(model=backbone, variant={"openai": "clip"}.get(format, format), mbgf=False,
                                   frames=frames, input_size=clip_config.image_resolution, **options)


def _backbone_name(clip_config, path: Path) -> str:
    """The mbgf backbone with this CLIP architecture (the resolution must match too, except for ``tiny``
    which is built at any input size)."""
    for name, backbone in fusion.BACKBONES.items():
        if replace(backbone.clip_config, image_resolution=clip_config.image_resolution) == clip_config:
            if backbone.clip_name is None or backbone.clip_config.image_resolution == clip_config.image_resolution:
                return name
    c = clip_config
    raise UserError(f"{path}: its CLIP (ViT width {c.vision_width}, {c.vision_layers} layers, patch "
                    f"{c.vision_patch_size}, {c.image_resolution} px, embed {c.embed_dim}) is none of mbgf's "
                    f"backbones ({', '.join(fusion.BACKBONES)})")


def _count_blocks(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _stored_frames(state: dict) -> int | None:
    """The frame count a checkpoint was built for, where a temporal table tells (not ActionCLIP's
    77-row table, which is sized by the text context)."""
    for key in ("mit.positional_embedding", "mbgf.temporal.positional_embedding"):
        if key in state:
            return int(state[key].shape[TEMPORAL_POSITIONS[key]])
    return None


def _position_rows(key: str, table: torch.Tensor, axis: int) -> int:
    """How many frames a temporal table holds positions for. ActionCLIP's zero rows at the end are the
    padding of a shorter (T-row) table: a learned or initialised row is never exactly zero."""
    if key != ACTIONCLIP_TABLE:
        return table.shape[axis]
    used = (table != 0).any(dim=1).nonzero()
    return int(used.max()) + 1 if len(used) else table.shape[0]


def fit_frames(state: dict, config, frames: int | None, path: Path):
    """``(state, config)`` for clips of ``frames`` frames: temporal position tables sliced to the first
    ``frames`` rows; more frames than a table has is a UserError."""
    if frames is None or frames == config.frames:
        return state, config
    if frames < 1:
        raise UserError(f"--frames must be at least 1, not {frames}")
    state = dict(state)
    for key, axis in TEMPORAL_POSITIONS.items():
        if key not in state:
            continue
        rows = _position_rows(key, state[key], axis)
        if frames > rows:
            raise UserError(f"{path}: {key} holds temporal positions for {rows} frames; cannot use {frames} "
                            f"frames (use --frames {rows} or fewer)")
        if key != ACTIONCLIP_TABLE:  # ActionCLIP's keeps its 77 rows
            state[key] = state[key].narrow(axis, 0, frames).clone()
    return state, replace(config, frames=frames)


# --------------------------------------------------------------------------------------------------
# Models and checkpoints
# --------------------------------------------------------------------------------------------------


def build_model(state: dict, config, strict: bool = True, source: str | Path = "checkpoint"):
    """The model ``config`` describes with ``state``'s weights. Returns ``(model, missing, unexpected)``;
    with ``strict`` any missing or unexpected key is a UserError naming the first few. A shape mismatch
    is always an error."""
    model = fusion.build_from_config(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {list(state[k].shape)} (model: {list(expected[k].shape)})"
                   for k in state if k in expected and state[k].shape != expected[k].shape]
    if wrong_shape:
        raise UserError(f"{source}: weights of the wrong shape for {config.name}: {'; '.join(wrong_shape[:3])}"
                        f"{' ...' if len(wrong_shape) > 3 else ''}")
    if strict and (missing or unexpected):
        raise UserError(f"{source}: the weights do not fit {config.name}: {describe_key_mismatch(missing, unexpected)}"
                        " (--no-strict loads the rest)")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model.eval(), missing, unexpected


def load_foreign(source, format: str = "auto", frames: int | None = None, strict: bool = True):
    """A foreign file as ``(model, meta)``; with ``strict=False`` ``meta["conversion"]`` lists the
    missing (left at initialisation) and unexpected (not loaded) keys."""
    state, config, meta = convert(source, format, frames)
    model, missing, unexpected = build_model(state, config, strict, source)
    if missing or unexpected:
        meta["conversion"] = {"missing": missing, "unexpected": unexpected}
    return model, meta


def convert_checkpoint(source, output, format: str = "auto", frames: int | None = None, strict: bool = True):
    """``mbgf convert``: write ``source`` as an mbgf checkpoint directory. Returns ``(output, meta)``."""
    model, meta = load_foreign(source, format, frames, strict)
    return save_checkpoint(output, model, meta), meta


def is_mbgf_checkpoint(path) -> bool:
    path = Path(path)
    return (path / "model.safetensors").is_file() or (path.name == "model.safetensors" and path.is_file())


def load_any_checkpoint(path, frames: int | None = None, strict: bool = True):
    """``(model, meta)`` from an mbgf checkpoint directory (or its ``model.safetensors``), or from any
    OpenAI / ActionCLIP / X-CLIP file, converted on the fly. ``frames`` fewer than the checkpoint's
    temporal tables hold slices them; more is a UserError."""
    if not is_mbgf_checkpoint(path):
        if Path(path).is_dir():
            raise UserError(f"{path}: not a checkpoint (no model.safetensors)")
        return load_foreign(path, "auto", frames, strict)
    meta = read_meta(path)
    config = fusion.VideoModelConfig.from_dict(meta["config"])
    if frames is None or frames == config.frames:
        return load_checkpoint(path, strict=strict)
    weights = model_file(path)
    try:
        state = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors has its own error types for a damaged file
        raise UserError(f"{weights}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    state, config = fit_frames(state, config, frames, weights)
    model, missing, unexpected = build_model(state, config, strict, weights)
    meta = {**meta, "config": config.to_dict()}
    if missing or unexpected:
        meta["conversion"] = {"missing": missing, "unexpected": unexpected}
    return model, meta
