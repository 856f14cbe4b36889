"""Checkpoints: a directory with safetensors weights and a JSON-described training state. No pickle.

Layout of a checkpoint directory (docs/DESIGN.md, "Checkpoints"):

    model.safetensors        weights; header metadata (JSON strings): model config, class names, epoch, metrics
    train_state.safetensors  the tensors of the training state (optimiser moments, RNG states, ...)
    train_state.json         everything else of the training state, with references to those tensors

Writes are atomic: the files go into a temporary sibling directory (each file fsync'ed), which then
replaces the target in one rename (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, and a
reader finds the previous copy under ``.NAME.old`` if a crash fell between them). A reader never
sees a half-written ``last/``. Only a folder holding nothing but a checkpoint's files is ever replaced
(``check_replaceable``): a save never removes anything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from mbgf_cli.errors import UserError
from mbgf_cli.fileio import fsync_directory, staging_sibling

MODEL_FILE = "model.safetensors"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"
CHECKPOINT_FILES = frozenset({MODEL_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE})
FORMAT = "mbgf-checkpoint"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def save_checkpoint(directory, model: torch.nn.Module, meta: dict, train_state: dict | None = None) -> Path:
    """Write ``model``'s weights, ``meta`` and optionally a training state to ``directory``, atomically.

    ``meta`` holds JSON-serialisable values; by convention ``config`` (the model config as a dict),
    ``class_names`` (list), ``epoch`` (int) and ``metrics`` (dict). ``train_state`` is any nesting of
    dicts, lists, tuples, numbers, strings, tensors and numpy arrays (an optimiser's ``state_dict()``,
    RNG states, ...); it comes back from :func:`load_train_state` with the same types.
    """
    directory = Path(directory)
    check_replaceable(directory)  # before any work: only a checkpoint of mbgf's own is ever replaced
    directory.parent.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    header = {key: json.dumps(value) for key, value in header.items()}

    staging = staging_sibling(directory)
    writing = staging
    try:
        staging.mkdir()
        writing = directory / MODEL_FILE
        _write_file(staging / MODEL_FILE, save_safetensors_bytes(_own_storage(model.state_dict()), header))
        if train_state is not None:
            tensors: dict[str, torch.Tensor] = {}
            described = _describe(train_state, tensors, "s")
            writing = directory / STATE_TENSORS_FILE
            _write_file(staging / STATE_TENSORS_FILE, save_safetensors_bytes(tensors))
            writing = directory / STATE_JSON_FILE
            _write_file(staging / STATE_JSON_FILE, json.dumps(described, indent=1).encode())
        writing = directory
        fsync_directory(staging)
        _replace_directory(staging, directory)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(full_disk_message(writing, directory, "the checkpoint")) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def check_replaceable(directory) -> None:
    """``directory`` may be written by :func:`save_checkpoint`: absent, or a folder holding nothing but a
    checkpoint's files (the save replaces the whole folder, so anything else there would be lost)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: is a file; a checkpoint is a folder (nothing was written)")
    if directory.is_dir():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in CHECKPOINT_FILES)
        if foreign:
            raise UserError(f"{directory}: holds {', '.join(foreign[:3])}, not only a checkpoint's files; a "
                            "checkpoint replaces its whole folder, so give another one (nothing was changed)")


def full_disk_message(writing: Path, directory: Path, what: str) -> str:
    """The advice for a disk that filled while saving: what is intact, how much space there is, and the
    command that goes on once there is room: the same one, which continues from the last checkpoint
    beside ``directory``, or, where none was written yet, the same one with --overwrite (it starts again)."""
    kept = (f"the previous {directory.name}/ checkpoint is intact" if (directory / MODEL_FILE).is_file()
            else f"no {directory.name}/ checkpoint was written yet")
    checkpointed = directory.parent.is_dir() and any((p / MODEL_FILE).is_file() for p in directory.parent.iterdir())
    then = ("run the same command again: it continues from the last checkpoint" if checkpointed else
            "run the same command again with --overwrite: nothing was checkpointed yet, so it starts again")
    return (f"{writing}: no space left on the device while writing {what} ({kept}; "
            f"{free_space(directory.parent)} free there); free some space, then {then}")


def free_space(folder) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB"
    except OSError:
        return "unknown space"


def read_meta(directory) -> dict:
    """The metadata of a checkpoint (config, class names, epoch, metrics, ...) without loading weights."""
    path = model_file(directory)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise UserError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    try:
        meta = {key: json.loads(value) for key, value in header.items()}
    except json.JSONDecodeError:
        raise UserError(f"{path}: metadata is not mbgf's (values are not JSON)") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not an mbgf checkpoint (no 'format: {FORMAT}' in its metadata)")
    if "config" not in meta:
        raise UserError(f"{path}: the checkpoint's metadata has no model config")
    return meta


def load_checkpoint(directory, device: str | torch.device = "cpu", strict: bool = True):
    """Rebuild the video model a checkpoint describes and load its weights. Returns ``(model, meta)``.

    ``directory`` is a checkpoint directory (or its ``model.safetensors``). The model is built from
    the metadata's config alone; no CLIP weights are read (the checkpoint holds all of them).
    """
    import fusion

    meta = read_meta(directory)
    try:
        config = fusion.VideoModelConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{model_file(directory)}: the model config in its metadata is not valid: {e}") from None
    try:
        model = fusion.build_from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"{model_file(directory)}: the model config in its metadata is not valid: "
                        f"{_one_line(e)[:300]}") from None
    load_weights(model, directory, strict=strict)
    return model.to(device), meta


def load_weights(model: torch.nn.Module, directory, strict: bool = True) -> None:
    """Copy a checkpoint's weights into an existing model (same architecture)."""
    path = model_file(directory)
    state = _read_tensors(path)
    expected = unwrap(model).state_dict()
    for key, wanted in expected.items():  # torch would list every mismatch in one enormous message: name the first
        if key in state and state[key].shape != wanted.shape:
            raise UserError(f"{path}: weight {key} has shape {_shape(state[key])} in the file, but the model its "
                            f"settings describe expects {_shape(wanted)} (were the settings in its metadata "
                            "edited?)")
    result = unwrap(model).load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _is_derived_key(k)]
    if strict and (missing or result.unexpected_keys):
        parts = []
        for name, keys in (("missing", missing), ("unexpected", list(result.unexpected_keys))):
            if keys:
                parts.append(f"{len(keys)} {name} weight(s) such as {', '.join(keys[:3])}")
        raise UserError(f"{path}: the weights do not fit the model its config describes: {'; '.join(parts)}")


def has_train_state(directory) -> bool:
    directory = resolve_directory(directory)
    return (directory / STATE_JSON_FILE).is_file() and (directory / STATE_TENSORS_FILE).is_file()


def load_train_state(directory) -> dict:
    """The training state saved with a checkpoint (same nesting and types as given to save)."""
    directory = resolve_directory(directory)
    if not has_train_state(directory):
        raise UserError(f"{directory}: no training state ({STATE_JSON_FILE}) to resume from; "
                        "a best/ checkpoint holds weights only, resume from last/")
    tensors = _read_tensors(directory / STATE_TENSORS_FILE)
    try:
        described = json.loads((directory / STATE_JSON_FILE).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{directory / STATE_JSON_FILE}: damaged ({e})") from None
    return _restore(described, tensors)


def resolve_directory(directory) -> Path:
    """A checkpoint directory, accepting its model file's path too, and recovering ``.NAME.old`` left by
    a crash between the two renames of a non-Linux save."""
    directory = Path(directory)
    if directory.name == MODEL_FILE and directory.is_file():
        return directory.parent
    if not directory.exists():
        previous = directory.parent / f".{directory.name}.old"
        if (previous / MODEL_FILE).is_file():
            return previous
        raise UserError(f"{directory}: no such checkpoint directory")
    if not directory.is_dir():
        raise UserError(f"{directory}: a checkpoint is a directory holding {MODEL_FILE}")
    return directory


def model_file(directory) -> Path:
    path = resolve_directory(directory) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path.parent}: not a checkpoint (no {MODEL_FILE})")
    return path


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where that is not available."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _replace_directory(staging: Path, target: Path) -> None:
    if target.exists():
        if _exchange(staging, target):  # staging now holds the previous copy
            shutil.rmtree(staging, ignore_errors=True)
        else:
            previous = target.parent / f".{target.name}.old"
            if previous.exists():
                check_replaceable(previous)  # a crash's leftover copy: a checkpoint, never anything else
                shutil.rmtree(previous)
            os.rename(target, previous)
            os.rename(staging, target)
            shutil.rmtree(previous, ignore_errors=True)
    else:
        os.rename(staging, target)
    fsync_directory(target.parent)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors_bytes(Path(path).read_bytes())
    except FileNotFoundError:
        raise
    except Exception as e:
        raise UserError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None


def _own_storage(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights, views): give each its own copy."""
    seen: set[tuple[int, int]] = set()
    result = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if ident in seen or not tensor.is_contiguous() or tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.contiguous().clone()
        seen.add(ident)
        result[key] = tensor
    return result


def _is_derived_key(key: str) -> bool:
    # Buffers recomputed at construction (e.g. cached text features) may be absent from a checkpoint.
    return key.endswith("_cache") or ".cache" in key


# --------------------------------------------------------------------------------------------------
# Nested state <-> (JSON, tensors)
# --------------------------------------------------------------------------------------------------
# JSON has no tensors, tuples or integer keys; each is written as a one-key object so that the round
# trip gives back exactly what was saved (an optimiser's state dict needs its integer keys back).


def _describe(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"  # numbered, so no two paths can collide
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__numpy__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_describe(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_describe(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _describe(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if all(isinstance(k, int) for k in obj):
            return {"__intkeys__": {str(k): _describe(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        raise TypeError(f"cannot save a dict with keys of mixed types at {path}")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} at {path}")


def _restore(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_restore(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            (marker, value), = obj.items()
            if marker == "__tensor__":
                return tensors[value]
            if marker == "__numpy__":
                return tensors[value].numpy()
            if marker == "__tuple__":
                return tuple(_restore(v, tensors) for v in value)
            if marker == "__intkeys__":
                return {int(k): _restore(v, tensors) for k, v in value.items()}
            if marker == "__float__":
                return float(value)
        return {k: _restore(v, tensors) for k, v in obj.items()}
    return obj


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, tensor.shape)) + "]"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
