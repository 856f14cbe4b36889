"""Published checkpoints as mbgf models, and mbgf models as transformers ones.

Read (``mbgf convert``, and on the fly ``mbgf eval --checkpoint`` / ``mbgf train --init``), one module
per source, each recognising its files by their keys (no code from a file ever runs: weights files are
read with :mod:`clip.safe_pickle`):

- :mod:`.openai`: OpenAI's CLIP (TorchScript archive, state dict, safetensors) -> ``clip`` (mean over frames);
- :mod:`.actionclip`: ActionCLIP's own files -> ``actionclip`` with its test recipe;
- :mod:`.mmaction2`: mmaction2's port of ActionCLIP -> ``actionclip`` as mmaction2 computes it;
- :mod:`.xclip`: X-CLIP's own files (with their yacs config) -> ``xclip``, ImageNet normalisation;
- :mod:`.vificlip`: ViFi-CLIP (a fully fine-tuned CLIP) -> ``clip``;
- :mod:`.huggingface`: transformers' ``XCLIPModel`` / ``CLIPModel`` directories -> ``xclip`` / ``clip``,
  and back (:func:`export_checkpoint`, ``mbgf export --format hf``).

VideoCLIP's state dict uses the papers' (OpenAI's) key names, so most conversions rename prefixes only.
fp16 tensors become fp32. Temporal position tables with more rows than the requested frames are
sliced; asking for more frames than a table has is refused. Missing and unexpected keys are named;
with ``strict=False`` they are reported in the metadata (``conversion``) instead of failing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file

import fusion
from clip import safe_pickle
from mbgf_cli.checkpoint import (
    CHECKPOINT_FILES,
    FORMAT,
    MODEL_FILE,
    load_checkpoint,
    model_file,
    read_meta,
    save_checkpoint,
)
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import staging_sibling
from mbgf_cli.interop import actionclip, huggingface, mmaction2, openai, vificlip, xclip
from mbgf_cli.interop.common import (
    ACTIONCLIP_TABLE,
    ACTIONCLIP_TEST_LOGIT_SCALE,
    DEFAULT_FRAMES,
    PUBLISHED_PROMPTS,
    TEMPORAL_POSITIONS,
    Foreign,
    build_model,
    describe_content,
    fit_frames,
    strip_prefix,
    video_config,
    weights_of,
)
from mbgf_cli.outputs import check_output_folder, place_outputs, read_marker, record_outputs

# File formats, in the order they are tried (X-CLIP's, ViFi-CLIP's and mmaction2's files hold OpenAI's
# keys too, so OpenAI's comes last).
FILE_READERS = {reader.NAME: reader for reader in (actionclip, mmaction2, vificlip, xclip, openai)}
FORMATS = (*FILE_READERS, huggingface.NAME)
CONVERT, EXPORT = "convert", "export"  # their output folders' kinds (mbgf_cli.outputs)
EXPORT_FILES = ("config.json", MODEL_FILE, "preprocessor_config.json")
TITLES = {**{name: reader.TITLE for name, reader in FILE_READERS.items()},
          huggingface.NAME: "Hugging Face XCLIPModel/CLIPModel directory"}

__all__ = [
    "ACTIONCLIP_TABLE", "ACTIONCLIP_TEST_LOGIT_SCALE", "DEFAULT_FRAMES", "FORMATS", "PUBLISHED_PROMPTS",
    "TEMPORAL_POSITIONS", "Foreign", "build_model", "convert", "convert_checkpoint", "describe_content",
    "detect_format", "export_checkpoint", "fit_frames", "is_mbgf_checkpoint", "load_any_checkpoint",
    "load_foreign", "read_foreign", "read_weights_file", "strip_prefix",
]


# --------------------------------------------------------------------------------------------------
# Telling formats apart
# --------------------------------------------------------------------------------------------------


def detect_format(content: Any) -> str | None:
    """The format of a weights file's content, from its keys; None if none fits. (Hugging Face weights
    are told by their ``text_model.``/``vision_model.`` keys, but are read from their directory.)"""
    weights = weights_of(content)
    if weights is not None and any(k.startswith(("text_model.", "vision_model.")) for k in weights):
        return huggingface.NAME
    return next((name for name, reader in FILE_READERS.items() if reader.matches(content, weights)), None)


def unknown_format(path: Path, seen: str) -> UserError:
    return UserError(f"{path}: cannot tell its format; mbgf reads {', '.join(TITLES.values())} and its own "
                     f"checkpoints ({seen})")


def read_weights_file(path: Path) -> Any:
    """:func:`clip.safe_pickle.load_file`, its errors as the CLI's one-line user errors."""
    try:
        return safe_pickle.load_file(path)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None


def read_foreign(source, format: str = "auto", frames: int | None = None, pretrained=None) -> Foreign:
    """Read a foreign checkpoint (a file, or a transformers model directory) as :class:`Foreign`.
    ``format`` ``auto`` tells it from the content; another is checked against it. ``pretrained``: the
    CLIP weights for what a file lacks (ViFi-CLIP's token embedding)."""
    path = Path(source).expanduser()
    if format != "auto" and format not in FORMATS:
        raise UserError(f"unknown format {format!r}; choose from auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    directory = huggingface.directory_of(path)
    if directory is not None:
        if format not in ("auto", huggingface.NAME):
            raise UserError(f"{path}: not in the {format} format (found: a Hugging Face model directory)")
        return huggingface.read_directory(directory)
    if is_mbgf_checkpoint(path):
        raise UserError(f"{path}: already an mbgf checkpoint (nothing to convert)")
    if path.is_dir():
        entries = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "empty"
        raise unknown_format(path, f"a directory without config.json or an mbgf model.safetensors: {entries}")
    content = read_weights_file(path)
    detected = detect_format(content)
    if detected == huggingface.NAME:
        raise UserError(f"{path}: Hugging Face weights without their config.json; give the model's directory "
                        "(config.json beside the weights)")
    if format == "auto":
        if detected is None:
            raise unknown_format(path, describe_content(content))
        format = detected
    elif format == huggingface.NAME or detected != format:
        found = TITLES[detected] if detected else describe_content(content)
        raise UserError(f"{path}: not in the {format} format (found: {found})")
    return FILE_READERS[format].read(content, path, pretrained=pretrained, frames=frames)


# --------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------


def convert(source, format: str = "auto", frames: int | None = None, pretrained=None):
    """Read a foreign checkpoint and return ``(state_dict, config, meta)``:

    - ``state_dict``: fp32 tensors under :class:`fusion.VideoCLIP`'s names,
    - ``config``: the :class:`fusion.VideoModelConfig` that builds the matching model (``mbgf=False``),
    - ``meta``: what :func:`mbgf_cli.checkpoint.save_checkpoint` stores (``config`` as a dict,
      ``class_names`` (empty: these files do not carry them), ``epoch``, ``metrics``, ``source`` (the
      format, the file, ``detected``: what was found, and the file's own config where it has one), and
      ``prompt_templates``: the templates the published test used, for ``fusion.prompts``).
    """
    path = Path(source).expanduser()
    foreign = read_foreign(path, format, frames, pretrained)
    config = video_config(foreign, path)
    state, config = fit_frames(foreign.state, config, frames, path)
    meta = {
        "config": config.to_dict(),
        "class_names": [],
        "epoch": foreign.epoch,
        "metrics": {k: float(v) for k, v in foreign.metrics.items() if isinstance(v, (int, float))},
        "source": {"format": foreign.format, "file": str(path), "detected": foreign.description, **foreign.source},
    }
    if foreign.prompt_templates:
        meta["prompt_templates"] = list(foreign.prompt_templates)
    return state, config, meta


def load_foreign(source, format: str = "auto", frames: int | None = None, strict: bool = True, pretrained=None):
    """A foreign checkpoint as ``(model, meta)``; with ``strict=False`` ``meta["conversion"]`` lists the
    missing (left at initialisation) and unexpected (not loaded) keys."""
    state, config, meta = convert(source, format, frames, pretrained)
    model, missing, unexpected = build_model(state, config, strict, source)
    if missing or unexpected:
        meta["conversion"] = {"missing": missing, "unexpected": unexpected}
    return model, meta


def convert_checkpoint(source, output, format: str = "auto", frames: int | None = None, strict: bool = True,
                       pretrained=None, overwrite: bool = False):
    """``mbgf convert``: write ``source`` as an mbgf checkpoint directory. Returns ``(output, meta)``.
    ``output`` follows :mod:`mbgf_cli.outputs` (checked before any work): a non-empty folder that is not
    a previous convert's is refused unless ``overwrite``, which writes beside the files there."""
    output = Path(output).expanduser()
    unmarked = _unmarked_checkpoint(output)
    check_output_folder(output, "--output", CONVERT, overwrite, writes=[] if unmarked else [MODEL_FILE])
    model, meta = load_foreign(source, format, frames, strict, pretrained)
    if unmarked:  # written by mbgf before folders had a marker: its checkpoint files are mbgf's own
        record_outputs(output, CONVERT, unmarked)
    _write_staged(output, CONVERT, lambda staging: save_checkpoint(staging, model, meta))
    return output, meta


def _unmarked_checkpoint(folder: Path) -> list[str]:
    """The checkpoint files of a folder mbgf wrote before output markers existed (nothing else in it but
    a checkpoint mbgf's metadata identifies); empty for any other folder."""
    if not folder.is_dir() or read_marker(folder) is not None or not (folder / MODEL_FILE).is_file():
        return []
    try:
        read_meta(folder)  # its metadata says mbgf wrote it (a damaged or foreign file does not)
    except UserError:
        return []
    names = sorted(p.name for p in folder.iterdir())
    return names if set(names) <= CHECKPOINT_FILES else []


def _write_staged(output: Path, kind: str, write):
    """``write(staging)`` a whole output beside ``output``, then put it in place as ``kind``'s; returns
    what ``write`` returned."""
    staging = staging_sibling(output)
    try:
        written = write(staging)
        place_outputs(staging, output, kind)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return written


def is_mbgf_checkpoint(path) -> bool:
    """A directory with mbgf's ``model.safetensors`` (or that file): told by its metadata, since a
    transformers directory holds a ``model.safetensors`` too."""
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if file.name != "model.safetensors" or not file.is_file():
        return False
    try:
        with safe_open(str(file), framework="pt") as f:
            return (f.metadata() or {}).get("format") == json.dumps(FORMAT)
    except Exception:  # noqa: BLE001 - a damaged file is not recognised here; reading it reports why
        return huggingface.directory_of(path) is None


def load_any_checkpoint(path, frames: int | None = None, strict: bool = True, pretrained=None):
    """``(model, meta)`` from an mbgf checkpoint directory (or its ``model.safetensors``), or from any
    foreign checkpoint this package reads, converted on the fly. ``frames`` fewer than the checkpoint's
    temporal tables hold slices them; more is a UserError."""
    if not is_mbgf_checkpoint(path):
        return load_foreign(path, "auto", frames, strict, pretrained)
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


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def export_checkpoint(source, output, format: str = "hf", overwrite: bool = False, pretrained=None) -> tuple[Path, str]:
    """``mbgf export``: write ``source`` (an mbgf checkpoint, or any foreign checkpoint this package
    reads) in another library's layout. Only ``hf`` (transformers) exists. Returns ``(output, what)``.
    ``output`` follows :mod:`mbgf_cli.outputs`, and is never the source or a folder holding it."""
    if format != huggingface.NAME:
        raise UserError(f"unknown export format {format!r}; choose from {huggingface.NAME}")
    output, source_path = Path(output).expanduser(), Path(source).expanduser()
    if source_path.exists() and (output.resolve() == source_path.resolve()
                                 or output.resolve() in source_path.resolve().parents):
        raise UserError(f"--output {output}: is the checkpoint being exported or holds it ({source}); give another "
                        "folder")
    check_output_folder(output, "--output", EXPORT, overwrite, writes=EXPORT_FILES)  # before any work
    model, _ = load_any_checkpoint(source, pretrained=pretrained)
    written = _write_staged(output, EXPORT, lambda staging: huggingface.export(model, str(source), staging))
    return output, written
