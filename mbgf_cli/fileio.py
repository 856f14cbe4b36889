"""Atomic file writes: the one helper every writer of text, JSON and lists uses.

A reader (or a run killed mid-write) sees either the previous file or the new one, never a part:
the content goes to a temporary sibling, is flushed to disk, then renamed over the target, and the
directory entry is flushed too. A full disk names the file, says whether the previous one is intact
and how much space is left. The file gets the permissions the user's umask gives a new file, whatever
mode the writer created the temporary with.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from mbgf_cli.errors import UserError


def fsync_directory(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this writer; ``is_stale_temporary`` recognises it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")


def staging_sibling(folder) -> Path:
    """Where a whole output folder is written before it is put in place: ``.NAME.tmp-XXXXXXXX`` beside it.
    A writer killed mid-save leaves it behind; ``mbgf_cli.run_folder`` removes a run's own leftovers."""
    folder = Path(folder).expanduser()
    return folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"


def is_stale_temporary(path: Path, target_name: str) -> bool:
    return path.name.startswith(f".{target_name}.tmp-")


def user_file_mode() -> int:
    """The permissions a file the user creates gets (0o666 less the umask), read without changing the
    umask (``os.umask`` sets it, which another thread could observe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def give_user_permissions(root: str | os.PathLike) -> None:
    """Every file under ``root`` (and ``root``) gets the permissions the user's umask gives a new one:
    libraries that write through a private temporary file (safetensors, ``mkstemp``) leave 0600."""
    file_mode = user_file_mode()
    folder_mode = file_mode | ((file_mode & 0o444) >> 2)  # x wherever r: 0644 -> 0755
    for folder, _, files in os.walk(root):
        os.chmod(folder, folder_mode)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, file_mode)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_output(p) as tmp:`` write ``tmp`` (any way: open, a library's save); on a clean
    exit it gets the user's usual permissions (a library may create it private, as ``mkstemp`` does),
    is fsynced and renamed over ``p``; on an error it is removed and ``p`` is untouched."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.chmod(tmp, user_file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(full_disk_message(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def full_disk_message(path: Path) -> str:
    """A full disk while writing ``path``: what is intact, the space left, and what to do."""
    kept = "the previous version is intact" if path.exists() else "nothing was written"
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    return (f"{path}: no space left on the device while writing it ({kept}; {free}); free some space, then run "
            "the same command again")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj, *, sort_keys: bool = False) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")
