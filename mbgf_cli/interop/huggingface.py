"""Hugging Face transformers' ``XCLIPModel`` and ``CLIPModel``, both ways.

A model saved by ``save_pretrained`` is a directory: ``config.json`` (the architecture) beside
``model.safetensors`` (or ``pytorch_model.bin``, or shards listed in ``*.index.json``), and, from the
Hub, ``preprocessor_config.json`` (the frames' normalisation). Reading needs no transformers: the
config is JSON and the weights are read like any other file (safetensors, or the restricted unpickler).
Writing (:func:`export`) uses transformers' own config and image-processor classes.

The names differ from OpenAI's (which VideoCLIP keeps; facts from transformers' modeling_clip.py,
modeling_x_clip.py and convert_x_clip_original_pytorch_to_hf.py):

- attention: OpenAI's fused ``attn.in_proj_weight`` [3W, W] (q, k, v stacked) is transformers'
  ``self_attn.{q,k,v}_proj.weight`` (biases alike); ``ln_1/ln_2`` -> ``layer_norm1/2``, ``mlp.c_fc/c_proj``
  -> ``mlp.fc1/fc2``; X-CLIP's per-block ``message_fc``, ``message_ln``, ``message_attn`` keep their names;
- ``visual.proj`` [W, E] and ``text_projection`` [D, E] are ``nn.Linear`` weights there, stored
  transposed (``visual_projection.weight`` [E, W], ``text_projection.weight`` [E, D]);
- ``visual.ln_pre`` is ``vision_model.pre_layrnorm`` in CLIPModel (sic) but ``pre_layernorm`` in XCLIPModel;
- X-CLIP: ``mit.positional_embedding`` -> ``mit.position_embedding``, ``mit.resblocks`` ->
  ``mit.encoder.layers``, ``prompts_visual_ln/proj`` -> ``prompts_visual_layernorm/projection``
  (not transposed), ``prompts_generator.norm`` -> ``prompts_generator.layernorm``.

The CLIP's architecture is read from the config at any size (widths, depths, heads, MLP widths, patch,
resolution, GELU or QuickGELU): a size mbgf has no name for becomes a ``custom`` backbone, recorded in
the checkpoint's config. What a config can say that mbgf cannot compute (another LayerNorm epsilon,
different activations in the two towers; X-CLIP's MIT or prompt generator at other widths or head
counts) is refused naming the config key.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

import fusion
from clip import safe_pickle
from clip.model import CLIPConfig
from mbgf_cli.errors import UserError
from mbgf_cli.interop.common import PUBLISHED_PROMPTS, Foreign

NAME = "hf"
CLASSES = {"xclip": "XCLIPModel", "clip": "CLIPModel"}  # model_type -> the transformers class
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
PROCESSOR_FILE = "preprocessor_config.json"

# --------------------------------------------------------------------------------------------------
# Key names: VideoCLIP's (OpenAI's) <-> transformers'
# --------------------------------------------------------------------------------------------------

BLOCK_STACKS = {  # VideoCLIP's block prefix -> transformers'
    "transformer.resblocks.": "text_model.encoder.layers.",
    "visual.transformer.resblocks.": "vision_model.encoder.layers.",
    "mit.resblocks.": "mit.encoder.layers.",
}
FUSED_ATTENTION = {"attn.": "self_attn.", "message_attn.": "message_attn."}  # in_proj_* <-> {q,k,v}_proj.*
IN_BLOCK = {  # names inside one block
    "attn.out_proj.": "self_attn.out_proj.",
    "message_attn.out_proj.": "message_attn.out_proj.",
    "ln_1.": "layer_norm1.",
    "ln_2.": "layer_norm2.",
    "mlp.c_fc.": "mlp.fc1.",
    "mlp.c_proj.": "mlp.fc2.",
    "message_fc.": "message_fc.",
    "message_ln.": "message_ln.",
}
TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}


def top_level_names(model_type: str) -> dict[str, str]:
    """Names outside the block stacks (prefixes end with a dot; others are whole keys)."""
    names = {
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.": "text_model.final_layer_norm.",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.ln_pre.": "vision_model.pre_layrnorm." if model_type == "clip" else "vision_model.pre_layernorm.",
        "visual.ln_post.": "vision_model.post_layernorm.",
        "logit_scale": "logit_scale",
    }
    if model_type == "xclip":
        names.update({
            "prompts_visual_ln.": "prompts_visual_layernorm.",
            "prompts_visual_proj": "prompts_visual_projection",
            "mit.positional_embedding": "mit.position_embedding",
            "prompts_generator.norm.": "prompts_generator.layernorm.",
            "prompts_generator.decoder.": "prompts_generator.decoder.",
            "prompts_generator.alpha": "prompts_generator.alpha",
        })
    return names


def _rename(key: str, names: dict[str, str]) -> str | None:
    for old, new in names.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):]
    return None


def to_hf(state: dict, model_type: str) -> dict[str, torch.Tensor]:
    """VideoCLIP's state dict (``clip`` or ``xclip`` variant, no MBGF) under transformers' names."""
    top = top_level_names(model_type)
    result = {}
    for key, value in state.items():
        if key in TRANSPOSED:
            result[TRANSPOSED[key]] = value.t()
            continue
        stack = next((s for s in BLOCK_STACKS if key.startswith(s)), None)
        if stack is None:
            new = _rename(key, top)
            if new is None:
                raise ValueError(f"{key} has no counterpart in transformers' {CLASSES[model_type]}")
            result[new] = value
            continue
        index, rest = key[len(stack):].split(".", 1)
        prefix = f"{BLOCK_STACKS[stack]}{index}."
        fused = next((f for f in FUSED_ATTENTION if rest in (f + "in_proj_weight", f + "in_proj_bias")), None)
        if fused is not None:
            kind = rest.rsplit("_", 1)[1]  # weight or bias
            for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                result[f"{prefix}{FUSED_ATTENTION[fused]}{name}_proj.{kind}"] = part
            continue
        new = _rename(rest, IN_BLOCK)
        if new is None:
            raise ValueError(f"{key} has no counterpart in transformers' {CLASSES[model_type]}")
        result[prefix + new] = value
    return {k: v.contiguous().clone() for k, v in result.items()}  # safetensors wants owned, dense tensors


def from_hf(weights: dict, model_type: str) -> dict[str, torch.Tensor]:
    """transformers' state dict under VideoCLIP's names (q/k/v concatenated, projections transposed);
    ``position_ids`` buffers (stored by transformers before 4.31) dropped; unknown keys kept as they
    are, so that building the model names them."""
    top = {new: old for old, new in top_level_names(model_type).items()}
    stacks = {new: old for old, new in BLOCK_STACKS.items()}
    in_block = {new: old for old, new in IN_BLOCK.items()}
    fused_names = {new: old for old, new in FUSED_ATTENTION.items()}
    transposed = {new: old for old, new in TRANSPOSED.items()}
    result, pieces = {}, {}
    for key, value in weights.items():
        if key.endswith("position_ids"):
            continue
        if key in transposed:
            result[transposed[key]] = value.t().contiguous()
            continue
        stack = next((s for s in stacks if key.startswith(s)), None)
        if stack is None:
            result[_rename(key, top) or key] = value
            continue
        index, rest = key[len(stack):].split(".", 1)
        prefix = f"{stacks[stack]}{index}."
        fused = next((f for f in fused_names if rest.startswith(f) and rest[len(f):len(f) + 7] in
                      ("q_proj.", "k_proj.", "v_proj.")), None)
        if fused is not None:
            which, kind = rest[len(fused)], rest.rsplit(".", 1)[1]
            pieces.setdefault(f"{prefix}{fused_names[fused]}in_proj_{kind}", {})[which] = value
            continue
        result[prefix + (_rename(rest, in_block) or rest)] = value
    for key, parts in pieces.items():
        if set(parts) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(parts))
            raise UserError(f"the weights hold only part of an attention layer: {key} lacks {', '.join(missing)}_proj")
        result[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return result


# --------------------------------------------------------------------------------------------------
# Reading a directory
# --------------------------------------------------------------------------------------------------


def read_config(directory: Path) -> dict | None:
    """``config.json`` when it describes a transformers model (has ``model_type``), else None."""
    file = directory / "config.json"
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("model_type"), str) else None


def directory_of(path: Path) -> Path | None:
    """The transformers model directory ``path`` is, or holds the weights of; None if it is not one."""
    if path.is_dir():
        return path if read_config(path) is not None else None
    if path.is_file() and (path.name in WEIGHT_FILES or path.suffix in (".safetensors", ".bin")):
        return path.parent if read_config(path.parent) is not None else None
    return None


def read_weights(directory: Path) -> tuple[dict, str]:
    """The tensors of a saved model (one file, or the shards an index lists) and the file name read."""
    for name in WEIGHT_FILES:
        file = directory / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return _load(file), name
        try:
            shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise UserError(f"{file}: not a transformers shard index (no weight_map)") from None
        weights = {}
        for shard in shards:
            weights.update(_load(directory / shard))
        return weights, f"{name} ({len(shards)} shards)"
    raise UserError(f"{directory}: no weights beside config.json ({', '.join(WEIGHT_FILES)})")


def _load(file: Path) -> dict:
    try:
        content = safe_pickle.load_file(file)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if not isinstance(content, dict):
        raise UserError(f"{file}: holds a {type(content).__name__}, not a state dict")
    return content


# transformers' defaults for what a saved config.json leaves out (CLIPTextConfig, CLIPVisionConfig; the
# X-CLIP configs share them), as (key, default) per CLIPConfig field.
TEXT_KEYS = {"transformer_width": ("hidden_size", 512), "transformer_layers": ("num_hidden_layers", 12),
             "transformer_heads": ("num_attention_heads", 8), "transformer_mlp_width": ("intermediate_size", 2048),
             "context_length": ("max_position_embeddings", 77), "vocab_size": ("vocab_size", 49408)}
VISION_KEYS = {"vision_width": ("hidden_size", 768), "vision_layers": ("num_hidden_layers", 12),
               "vision_heads": ("num_attention_heads", 12), "vision_mlp_width": ("intermediate_size", 3072),
               "image_resolution": ("image_size", 224), "vision_patch_size": ("patch_size", 32)}


def clip_architecture(config: dict, path: Path) -> CLIPConfig:
    """The CLIP a transformers config describes, at any size (widths, depths, heads, MLP widths,
    patch, resolution, activation)."""
    text, vision = config.get("text_config") or {}, config.get("vision_config") or {}
    values = {field: text.get(key, default) for field, (key, default) in TEXT_KEYS.items()}
    values.update({field: vision.get(key, default) for field, (key, default) in VISION_KEYS.items()})
    try:
        return CLIPConfig(embed_dim=config.get("projection_dim", 512), activation=vision.get("hidden_act", "quick_gelu"),
                          **values)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path / 'config.json'}: not a CLIP architecture mbgf can build ({e})") from None


def check_config(config: dict, path: Path) -> None:
    """Refuse, naming the key, what mbgf's CLIP (one activation for both towers, LayerNorm eps 1e-5,
    pooling at the highest token id) and X-CLIP parts (MIT and prompt generator at the projection width,
    heads = width / 64, QuickGELU) cannot compute."""
    model_type = config["model_type"]
    text, vision = config.get("text_config") or {}, config.get("vision_config") or {}
    embed = config.get("projection_dim", 512)
    activation = vision.get("hidden_act", "quick_gelu")
    checks = [("text_config.hidden_act", text.get("hidden_act", "quick_gelu"), activation)]
    for section, values in (("text_config", text), ("vision_config", vision)):
        checks.append((f"{section}.layer_norm_eps", values.get("layer_norm_eps", 1e-5), 1e-5))
    if model_type == "xclip":
        checks += [("vision_config.hidden_act", activation, "quick_gelu"),
                   ("vision_config.mit_hidden_size", vision.get("mit_hidden_size", 512), embed),
                   ("vision_config.mit_intermediate_size", vision.get("mit_intermediate_size", 2048), 4 * embed),
                   ("vision_config.mit_num_attention_heads", vision.get("mit_num_attention_heads", 8), max(1, embed // 64)),
                   ("prompt_num_attention_heads", config.get("prompt_num_attention_heads", 8), max(1, embed // 64)),
                   ("prompt_hidden_act", config.get("prompt_hidden_act", "quick_gelu"), "quick_gelu")]
    else:  # CLIPModel pools the first eos_token_id (2: the highest id); mbgf the highest id
        vocab = text.get("vocab_size", 49408)
        eos = text.get("eos_token_id", 49407)
        if eos not in (2, vocab - 1):
            checks.append(("text_config.eos_token_id", eos, vocab - 1))
    for key, value, required in checks:
        same = math.isclose(value, required, rel_tol=1e-6) if isinstance(required, float) else value == required
        if not same:
            raise UserError(f"{path / 'config.json'}: {key} is {value!r}; mbgf's models compute with {required!r} "
                            f"there, so they cannot represent this {CLASSES[model_type]}")


def processor_normalisation(directory: Path, model_type: str) -> tuple[tuple, tuple, str]:
    """The mean/std (0-1 scale) the directory's image processor normalises frames with, and where it came
    from. Without ``preprocessor_config.json``: what the weights were trained with (X-CLIP: ImageNet's,
    CLIP: CLIP's)."""
    file = directory / PROCESSOR_FILE
    if not file.is_file():
        if model_type == "xclip":
            return fusion.IMAGENET_MEAN, fusion.IMAGENET_STD, f"no {PROCESSOR_FILE}: X-CLIP's ImageNet mean/std"
        return fusion.CLIP_MEAN, fusion.CLIP_STD, f"no {PROCESSOR_FILE}: CLIP's mean/std"
    try:
        processor = json.loads(file.read_text())
        if not processor.get("do_normalize", True):
            return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), f"{PROCESSOR_FILE} (no normalisation)"
        mean, std = processor["image_mean"], processor["image_std"]
        # Normalisation follows rescaling (x * rescale_factor): mean/std are on that scale.
        scale = 255.0 * float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 255.0
        mean = tuple(float(m) / scale for m in (mean if isinstance(mean, list) else [mean] * 3))
        std = tuple(float(s) / scale for s in (std if isinstance(std, list) else [std] * 3))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{file}: not an image processor config (image_mean, image_std)") from None
    return mean, std, PROCESSOR_FILE


def read_directory(directory: Path) -> Foreign:
    """A transformers ``XCLIPModel`` / ``CLIPModel`` directory as an mbgf ``xclip`` / ``clip`` model."""
    config = read_config(directory)
    model_type = config.get("model_type") if config else None
    if model_type not in CLASSES:
        raise UserError(f"{directory / 'config.json'}: model_type {model_type!r}; mbgf reads transformers' "
                        f"{' and '.join(CLASSES.values())} (model_type {' or '.join(CLASSES)})")
    check_config(config, directory)
    weights, weights_name = read_weights(directory)
    state = {k: v.float() if v.is_floating_point() else v for k, v in from_hf(weights, model_type).items()}
    mean, std, normalisation = processor_normalisation(directory, model_type)
    frames = (config.get("vision_config") or {}).get("num_frames", 8) if model_type == "xclip" else None
    details = f"config.json, {weights_name}{f', {frames} frames' if frames else ''}; normalisation: {normalisation}"
    return Foreign(NAME, f"Hugging Face {CLASSES[model_type]} directory ({details})", state,
                   "xclip" if model_type == "xclip" else "clip", frames=frames,
                   clip_config=clip_architecture(config, directory),
                   options={"input_mean": mean, "input_std": std},
                   prompt_templates=PUBLISHED_PROMPTS["xclip"] if model_type == "xclip" else None,
                   source={"config": config, "transformers_class": CLASSES[model_type]})


# --------------------------------------------------------------------------------------------------
# Writing a directory
# --------------------------------------------------------------------------------------------------


def transformers_config(config, clip_config):
    """transformers' config class for an mbgf ``clip`` / ``xclip`` model config (no MBGF)."""
    import transformers

    c = clip_config
    text = dict(vocab_size=c.vocab_size, hidden_size=c.transformer_width, intermediate_size=c.transformer_mlp_width,
                num_hidden_layers=c.transformer_layers, num_attention_heads=c.transformer_heads,
                max_position_embeddings=c.context_length, hidden_act=c.activation, layer_norm_eps=1e-5)
    vision = dict(hidden_size=c.vision_width, intermediate_size=c.vision_mlp_width, num_hidden_layers=c.vision_layers,
                  num_attention_heads=c.vision_heads, image_size=c.image_resolution, patch_size=c.vision_patch_size,
                  hidden_act=c.activation, layer_norm_eps=1e-5)
    if config.variant == "clip":
        text["eos_token_id"] = c.vocab_size - 1  # pools the end-of-text token, the highest id, like mbgf
        return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=c.embed_dim)
    if c.activation != "quick_gelu":  # XCLIPModel's MIT takes the vision tower's activation; mbgf's is QuickGELU
        raise UserError(f"transformers' XCLIPModel cannot hold an X-CLIP on a CLIP with {c.activation} (its MIT would "
                        "compute with it too)")
    heads = max(1, c.embed_dim // 64)
    vision.update(num_frames=config.frames, mit_hidden_size=c.embed_dim, mit_intermediate_size=4 * c.embed_dim,
                  mit_num_hidden_layers=config.xclip_mit_layers, mit_num_attention_heads=heads)
    return transformers.XCLIPConfig(text_config=text, vision_config=vision, projection_dim=c.embed_dim,
                                    prompt_layers=config.xclip_prompt_layers, prompt_alpha=config.xclip_prompt_alpha,
                                    prompt_num_attention_heads=heads, prompt_hidden_act="quick_gelu")


def image_processor(config):
    """The image processor transformers pairs with the model (CLIP's; VideoMAE's for X-CLIP), with the
    model's normalisation and input size."""
    import transformers

    size = config.input_size
    options = dict(image_mean=list(config.input_mean), image_std=list(config.input_std),
                   size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    if config.variant == "xclip":
        cls = getattr(transformers, "VideoMAEImageProcessorPil", None) or transformers.VideoMAEImageProcessor
    else:
        cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(**options)


def export(model, source: str, output: Path) -> str:
    """Write ``model`` (a VideoCLIP without MBGF, ``clip`` or ``xclip`` variant) as a transformers model
    directory into the fresh folder ``output``: ``config.json``, ``model.safetensors``,
    ``preprocessor_config.json`` (``interop.export_checkpoint`` stages it and puts it in place under the
    one output policy). Returns the class name."""
    config = model.config
    if config.mbgf:
        raise UserError(f"{source}: {config.name} has MBGF weights, and transformers has no MBGF model "
                        "(XCLIPModel and CLIPModel hold the variants without it)")
    if config.variant not in CLASSES:
        raise UserError(f"{source}: transformers has no {fusion.VARIANTS[config.variant]} model "
                        f"(it has {' and '.join(CLASSES.values())}: export a clip or xclip model)")
    try:
        import transformers
        from safetensors.torch import save_file
    except ImportError:
        raise UserError("writing Hugging Face models needs transformers: pip install 'mbgf[hf]'") from None

    weights = to_hf(model.state_dict(), config.variant)
    hf_config = transformers_config(config, model.clip_config)
    _check_keys(weights, hf_config)

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    hf_config.save_pretrained(output)
    save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the processor notes which image backend it uses
    try:
        image_processor(config).save_pretrained(output)
    finally:
        transformers.logging.set_verbosity(verbosity)
    for file in output.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    return CLASSES[config.variant]


def _check_keys(weights: dict, hf_config) -> None:
    """The keys written are exactly those the installed transformers' class loads (checked on the meta
    device: shapes only, no memory, no initialisation)."""
    import transformers

    cls = getattr(transformers, CLASSES[hf_config.model_type])
    with torch.device("meta"):
        expected = cls(hf_config).state_dict()
    missing = sorted(set(expected) - set(weights) - {k for k in expected if k.endswith("position_ids")})
    unexpected = sorted(set(weights) - set(expected))
    wrong = [k for k in weights if k in expected and tuple(expected[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or wrong:
        raise UserError(f"transformers {transformers.__version__}'s {cls.__name__} does not take mbgf's layout "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
