"""Where commands write: one policy for every output file and folder, checked before any work.

- An output **file** (``--csv``, ``--predictions``, an embeddings file, ``model.onnx``) must be
  writable as a file: not a folder, in a folder that exists or can be made, with write permission.
  ``check_output_file`` says so before the first video is decoded.
- An output **folder** (a run, a converted or exported checkpoint, a few-shot protocol, a plot
  folder) is mbgf's when it is absent, empty, or holds mbgf's marker (``.mbgf-output.json``) written
  by the same kind of command; the command then writes there (a run continues, a convert or export
  replaces what it wrote before). mbgf's marker lists every entry the command wrote.
- Any other non-empty folder is the user's (or another command's) and is refused, unless
  ``--overwrite``: then mbgf writes **beside** what is there and never touches it. A name mbgf is
  about to write that already exists and is not listed in the marker is refused even then (the
  user's ``config.json`` is never replaced), and so is a folder holding another command's output.
- ``--overwrite`` removes only what the marker lists (``remove_recorded``); the user's files beside
  it, and the source a command reads, are never deleted or changed.

Commands that write a whole folder at once stage it beside the target and call ``place_outputs``:
absent or empty target, one rename; otherwise entry by entry, each replacing only its own name.
Nothing here deletes a file that mbgf did not write.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_write_text, fsync_directory, give_user_permissions

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


def check_output_folder(path, option: str, kind: str, overwrite: bool = False, writes: Iterable[str] = ()) -> Path:
    """``path`` can be used as ``kind``'s output folder (before any work). ``writes``: the names the
    command will put there (checked against the user's files). See the module's rule."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    parent = _existing_ancestor(path if path.exists() else path.parent)
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {parent} (permission denied)")
    if not path.exists() or not any(path.iterdir()):
        return path
    recorded = read_marker(path)
    if (path / MARKER).exists() and recorded is None:
        raise UserError(f"{option} {path}: its {MARKER} is damaged, so what mbgf wrote there is unknown; "
                        "give another folder")
    if recorded is not None and recorded["kind"] != kind:
        raise UserError(f"{option} {path}: holds the output of `mbgf {recorded['kind']}`; give another folder "
                        "(nothing there is changed or deleted)")
    if recorded is None and not overwrite:
        raise UserError(f"{option} {path}: not empty and not written by `mbgf {kind}`; give an empty or new "
                        "folder, or add --overwrite to write beside its files (none of them is changed or deleted)")
    ours = set(recorded["written"]) if recorded else set()
    clashes = sorted(name for name in writes if name not in ours and (path / name).exists())
    if clashes:
        raise UserError(f"{option} {path}: {path / clashes[0]} is not mbgf's and would be replaced; give another "
                        "folder (nothing there is changed or deleted)")
    return path


def read_marker(folder) -> dict | None:
    """The marker of ``folder`` as ``{"kind": str, "written": [names]}``; None if absent or damaged."""
    try:
        recorded = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("kind"), str):
        return None
    written = recorded.get("written", [])
    if not isinstance(written, list) or not all(isinstance(name, str) for name in written):
        return None
    return {"kind": recorded["kind"], "written": written}


def record_outputs(folder, kind: str, names: Iterable[str]) -> None:
    """Add ``names`` (entries of ``folder``) to what the marker lists as written by ``kind``; ``folder`` is
    made if absent (names are recorded before they are written, so a kill leaves them known as mbgf's)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    recorded = read_marker(folder)
    previous = recorded["written"] if recorded and recorded["kind"] == kind else []
    _write_marker(Path(folder), kind, set(previous) | set(names))


def remove_recorded(folder) -> list[str]:
    """``--overwrite``: remove what the marker lists (and the marker), nothing else; returns the names."""
    folder = Path(folder)
    recorded = read_marker(folder) or {"written": []}
    removed = [name for name in recorded["written"] if _remove_entry(folder, name)]
    (folder / MARKER).unlink(missing_ok=True)
    return removed


def place_outputs(staging, folder, kind: str) -> list[str]:
    """Move every entry of ``staging`` (a finished output, written beside ``folder``) into ``folder`` as
    ``kind``'s output, then remove what ``kind`` recorded there before and did not write again. An
    absent or empty ``folder`` is replaced in one rename; otherwise each entry replaces only its own
    name, and a name that exists without being recorded as mbgf's is refused. Returns the names."""
    staging, folder = Path(staging), Path(folder)
    names = sorted(entry.name for entry in staging.iterdir() if entry.name != MARKER)
    give_user_permissions(staging)
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        _write_marker(staging, kind, names)
        if folder.exists():
            folder.rmdir()
        os.rename(staging, folder)
        fsync_directory(folder.parent)
        return names
    check_output_folder(folder, str(folder), kind, overwrite=True, writes=names)  # the folder may have changed
    recorded = read_marker(folder)
    previous = set(recorded["written"]) if recorded else set()
    _write_marker(folder, kind, previous | set(names))  # a crash mid-way leaves all of them known as mbgf's
    for name in names:
        _replace_entry(staging / name, folder / name)
    for name in sorted(previous - set(names)):
        _remove_entry(folder, name)
    _write_marker(folder, kind, names)
    shutil.rmtree(staging, ignore_errors=True)
    return names


def _write_marker(folder: Path, kind: str, names) -> None:
    text = json.dumps({"kind": kind, "written": sorted(set(names))}, indent=1) + "\n"
    atomic_write_text(folder / MARKER, text)


def _replace_entry(new: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():  # a folder of mbgf's own: swap it, then remove the old one
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, aside)
        os.rename(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, target)


def _remove_entry(folder: Path, name: str) -> bool:
    if Path(name).is_absolute() or ".." in Path(name).parts or name in ("", "."):
        return False  # a marker edited by hand never reaches outside its folder
    target = folder / name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    else:
        return False
    return True


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
