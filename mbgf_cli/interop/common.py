"""What the foreign formats share: :class:`Foreign` (what a reader found, in mbgf's terms), tensors as
fp32 under VideoCLIP's names, the backbone a CLIP's architecture is (a named one, or ``custom``: a CLIP
of any size, recorded in the config), the temporal position tables that tie a model to its frame count,
and building the model with the weights."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import fusion
from clip.model import NON_PARAMETER_KEYS, CLIPConfig, config_from_state_dict, describe_key_mismatch
from mbgf_cli.errors import UserError

DEFAULT_FRAMES = 8  # when the file does not say (OpenAI's, ActionCLIP's and CLIPModel's do not)
ACTIONCLIP_TEST_LOGIT_SCALE = 100.0

# The prompts each published test used (data of their recipes, so that an evaluation can reproduce
# their numbers): ActionCLIP averages over 16 templates (utils/Text_Prompt.py; mmaction2's port has the
# same list); X-CLIP prompts with the class name alone (utils/tools.py generate_text).
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


@dataclass
class Foreign:
    """A foreign checkpoint, read: VideoCLIP's weights and what the file says about using them."""

    format: str                  # the reader's name: openai, actionclip, mmaction2, xclip, vificlip, hf
    description: str             # what was found, printed as "detected: ..."
    state: dict                  # fp32 tensors under VideoCLIP's names
    variant: str                 # clip, actionclip or xclip
    frames: int | None = None    # the frames the file was made for, where it says
    options: dict = field(default_factory=dict)  # further VideoModelConfig fields (normalisation, ...)
    epoch: int | None = None
    metrics: dict = field(default_factory=dict)
    prompt_templates: list[str] | None = None    # the published test's prompts
    source: dict = field(default_factory=dict)   # more facts for meta["source"] (the file's own config)
    clip_config: CLIPConfig | None = None        # the CLIP's architecture where the file says (else: shapes)


# --------------------------------------------------------------------------------------------------
# Keys and tensors
# --------------------------------------------------------------------------------------------------


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """Keys without DataParallel's ``module.`` prefix (where every key has it)."""
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def weights_of(content: Any) -> dict | None:
    """The name -> tensor dict in a file's content: the content itself, or under ``model`` /
    ``state_dict`` (common wrappers), without a ``module.`` prefix."""
    if not isinstance(content, dict):
        return None
    for candidate in (content, content.get("model"), content.get("state_dict")):
        if isinstance(candidate, dict) and any(isinstance(v, torch.Tensor) for v in candidate.values()):
            return strip_prefix(candidate)
    return None


def renamed(state: dict, prefixes: dict[str, str]) -> dict:
    """Keys with the first matching old prefix replaced by its new one; other keys as they are."""
    result = {}
    for key, value in state.items():
        old = next((p for p in prefixes if key.startswith(p)), None)
        result[key if old is None else prefixes[old] + key[len(old):]] = value
    return result


def float_tensors(weights: dict | None, path: Path) -> dict[str, torch.Tensor]:
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


def count_blocks(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def describe_content(content: Any, shown: int = 6) -> str:
    """The top-level keys of a file (and of the weights in it, if any), for "cannot tell" messages."""
    if not isinstance(content, dict):
        return f"a {type(content).__name__}"

    def first(keys):
        keys = [str(k) for k in keys]
        return ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")

    text = f"top-level keys: {first(content)}"
    weights = next((v for v in content.values() if isinstance(v, dict)
                    and any(isinstance(t, torch.Tensor) for t in v.values())), None)
    if weights is not None:
        text += f"; weights such as {first(weights)}"
    return text


# --------------------------------------------------------------------------------------------------
# The model a foreign checkpoint becomes
# --------------------------------------------------------------------------------------------------


def video_config(foreign: Foreign, path: Path):
    """The :class:`fusion.VideoModelConfig` (without MBGF) that ``foreign``'s weights fit: on a named
    backbone where the CLIP is one, else on a ``custom`` backbone carrying the CLIP's architecture."""
    state = foreign.state
    clip_config = foreign.clip_config or clip_config_of(state, path)
    options = dict(foreign.options)
    if foreign.variant == "actionclip":
        options.setdefault("actionclip_layers", count_blocks(state, "fusion_model.transformer.resblocks."))
    elif foreign.variant == "xclip":
        options.setdefault("xclip_mit_layers", count_blocks(state, "mit.resblocks."))
        options.setdefault("xclip_prompt_layers", count_blocks(state, "prompts_generator.decoder."))
    frames = stored_frames(state) or foreign.frames or DEFAULT_FRAMES
    model, architecture = fusion.backbone_for(clip_config)
    try:
        return fusion.VideoModelConfig(model=model, architecture=architecture, variant=foreign.variant, mbgf=False,
                                       frames=frames, input_size=clip_config.image_resolution, **options)
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None


def clip_config_of(state: dict, path: Path) -> CLIPConfig:
    """The CLIP architecture the tensors' shapes tell (head counts and activation: OpenAI's)."""
    try:
        return config_from_state_dict(state)
    except KeyError as e:
        raise UserError(f"{path}: no CLIP weights found (missing {e.args[0]!r})") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None


def stored_frames(state: dict) -> int | None:
    """The frame count a checkpoint was built for, where a temporal table tells (not ActionCLIP's
    77-row table, which is sized by the text context)."""
    for key in ("mit.positional_embedding", "mbgf.temporal.positional_embedding"):
        if key in state:
            return int(state[key].shape[TEMPORAL_POSITIONS[key]])
    return None


def pad_short_actionclip_table(state: dict, frames: int | None, path: Path) -> int | None:
    """ActionCLIP's table has a row per text position (77); a port that stores only the T trained rows
    (mmaction2's) is padded with zero rows to that size, which clips of up to T frames never read.
    Returns T for such a table."""
    table, context = state.get(ACTIONCLIP_TABLE), state.get("positional_embedding")
    if table is None or context is None or table.shape[0] >= context.shape[0]:
        return None
    if frames is not None and frames > table.shape[0]:
        raise UserError(f"{path}: frame_position_embeddings holds temporal positions for {table.shape[0]} "
                        f"frames; cannot use {frames} frames (use --frames {table.shape[0]} or fewer)")
    state[ACTIONCLIP_TABLE] = torch.cat([table, table.new_zeros(context.shape[0] - table.shape[0], table.shape[1])])
    return table.shape[0]


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
