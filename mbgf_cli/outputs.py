"""Where commands write: one policy for every output file and folder, checked before any work.

- An output **file** (``--csv``, ``--predictions``, an embeddings file, ``model.onnx``) must be
  writable as a file: not a folder, in a folder that exists or can be made, with write permission.
  ``check_output_file`` says so before the first video is decoded.
- An output **folder** (a run, a converted or exported checkpoint, a few-shot protocol, a plot
  folder) is mbgf's when it is absent, empty, or holds mbgf's marker (``.mbgf-output.json``) written
  by the same kind of command. Anything else is the user's and is refused. ``--overwrite`` replaces
  only what the marker lists as mbgf's own; the user's files beside it are never touched.

Nothing here deletes a file that mbgf did not write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from mbgf_cli.errors import UserError

MARKER = ".mbgf-output.json"


def check_output_file(path, option: str) -> Path:
    """``path`` can be written as a file (before any work): refused, naming ``option``, when it is a
    folder, when its parent is a file, or when its folder cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder (give a file name)")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {parent} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path}: the file is read-only")
    return path


def check_output_folder(path, option: str, kind: str, overwrite: bool = False) -> Path:
    """``path`` can be used as ``kind``'s output folder (before any work). Absent or empty: fine. Holding
    mbgf's marker for ``kind``: fine (the command continues or, with ``overwrite``, replaces what it
    wrote). Anything else is the user's: refused."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    parent = _existing_ancestor(path if path.exists() else path.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {parent} (permission denied)")
    if not path.exists() or not any(path.iterdir()):
        return path
    recorded = read_marker(path)
    if recorded is None or recorded.get("kind") != kind:
        what = "files mbgf did not write" if recorded is None else f"the output of another command ({recorded.get('kind')})"
        raise UserError(f"{option} {path}: holds {what}; give an empty or new folder (nothing of yours is "
                        "changed or deleted)")
    return path


def read_marker(folder) -> dict | None:
    try:
        recorded = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def record_outputs(folder, kind: str, names: Iterable[str]) -> None:
    """Add ``names`` (entries of ``folder``) to what the marker lists as written by ``kind``."""
    from mbgf_cli.fileio import atomic_write_text

    folder = Path(folder)
    recorded = read_marker(folder) or {"kind": kind, "written": []}
    written = sorted(set(recorded.get("written", [])) | set(names))
    atomic_write_text(folder / MARKER, json.dumps({"kind": kind, "written": written}, indent=1) + "\n")


def remove_recorded(folder) -> list[str]:
    """``--overwrite``: remove what the marker lists (and the marker), nothing else; returns the names."""
    folder = Path(folder)
    recorded = read_marker(folder) or {}
    removed = []
    for name in recorded.get("written", []):
        target = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            continue  # a marker edited by hand never reaches outside its folder
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        else:
            continue
        removed.append(name)
    (folder / MARKER).unlink(missing_ok=True)
    return removed


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
