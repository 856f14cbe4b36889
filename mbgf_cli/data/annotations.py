"""Annotation files: the labels CSV and the video lists of the seed layout.

labels.csv      ``id,name`` with a header line; ids 0..K-1, each once; names non-empty and unique.
train.txt etc.  one video per line, ``relative/path.mp4 <label>``. The label is the last
                whitespace-separated field, so paths may contain spaces. Blank lines and lines
                starting with ``#`` are skipped. Paths are relative to the videos folder (or archive).
                A video listed twice with the same label is kept once (one warning names the
                repeated lines); with two different labels it is an error.

Every problem is a ``UserError`` naming ``file:line``. ``write_labels`` and ``write_video_list`` are
the package's writers of these files: atomic (``mbgf_cli.fileio``), and an unchanged file is not
rewritten, so re-running a command that writes them leaves them as they were.
"""

import csv
import io
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from mbgf_cli.console import err_console
from mbgf_cli.errors import UserError, at
from mbgf_cli.fileio import atomic_write_text


class ListEntry(NamedTuple):
    """One line of a video list: the video's path (relative, '/'-separated), its label, its line."""

    path: str
    label: int
    line: int


def read_text(path) -> str:
    """A text file a user gave (list, labels): UTF-8, a missing or non-text file as one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        # utf-8-sig: a spreadsheet-saved CSV starts with a byte-order mark that is not part of the header.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_labels(path) -> list[str]:
    """Class names in id order from an ``id,name`` CSV (header line ``id,name`` optional)."""
    text = read_text(path)
    rows = list(csv.reader(io.StringIO(text)))
    names: dict[int, tuple[str, int]] = {}  # id -> (name, line)
    seen_names: dict[str, int] = {}
    for line, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and [c.strip().lower() for c in row] == ["id", "name"]:
            continue
        if len(row) != 2:
            raise UserError(f"{at(path, line)}: expected 2 fields 'id,name', got {len(row)}: {','.join(row)!r}")
        raw_id, name = row[0].strip(), row[1].strip()
        try:
            class_id = int(raw_id)
        except ValueError:
            raise UserError(f"{at(path, line)}: class id {raw_id!r} is not an integer") from None
        if class_id < 0:
            raise UserError(f"{at(path, line)}: class id {class_id} is negative")
        if not name:
            raise UserError(f"{at(path, line)}: class {class_id} has an empty name")
        if class_id in names:
            raise UserError(f"{at(path, line)}: duplicate class id {class_id} (first on line {names[class_id][1]})")
        if name in seen_names:
            raise UserError(f"{at(path, line)}: duplicate class name {name!r} (first on line {seen_names[name]})")
        names[class_id] = (name, line)
        seen_names[name] = line
    if not names:
        raise UserError(f"{path}: no classes (expected lines 'id,name')")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        beyond = max(names)
        raise UserError(
            f"{at(path, names[beyond][1])}: class ids must be 0..{len(names) - 1} for {len(names)} classes, "
            f"got id {beyond}; missing {_short_list(missing)}"
        )
    return [names[i][0] for i in range(len(names))]


def write_labels(path, names: list[str]) -> None:
    """Write ``id,name`` CSV (quoted where a name needs it)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "name"])
    for i, name in enumerate(names):
        writer.writerow([i, name])
    _write_if_changed(path, buf.getvalue())


def check_relative(path: str, where: str) -> str:
    """A list or archive path as a clean relative POSIX path; absolute paths and '..' are refused."""
    p = path.replace("\\", "/")
    pure = PurePosixPath(p)
    if pure.is_absolute() or (len(p) > 1 and p[1] == ":"):
        raise UserError(f"{where}: absolute path {path!r} (paths are relative to the videos folder)")
    if ".." in pure.parts:
        raise UserError(f"{where}: path {path!r} leaves the videos folder ('..')")
    parts = [part for part in pure.parts if part != "."]
    if not parts:
        raise UserError(f"{where}: empty path")
    return "/".join(parts)


def read_video_list_entries(path, num_classes: int) -> list[ListEntry]:
    """Like ``read_video_list`` but each entry keeps its line number (for messages)."""
    text = read_text(path)
    entries = []
    first_line: dict[str, ListEntry] = {}  # path -> its first entry
    repeats: list[str] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.rsplit(None, 1)
        if len(fields) != 2:
            raise UserError(f"{at(path, line)}: expected 'relative/path.mp4 <label>', got {stripped!r}")
        video, raw_label = fields[0].strip(), fields[1]
        try:
            label = int(raw_label)
        except ValueError:
            raise UserError(
                f"{at(path, line)}: label {raw_label!r} is not an integer (expected 'relative/path.mp4 <label>')"
            ) from None
        if not 0 <= label < num_classes:
            raise UserError(f"{at(path, line)}: label {label} out of range 0..{num_classes - 1} ({num_classes} classes)")
        entry = ListEntry(check_relative(video, at(path, line)), label, line)
        first = first_line.get(entry.path)
        if first is None:
            first_line[entry.path] = entry
            entries.append(entry)
        elif first.label != label:
            raise UserError(f"{at(path, line)}: {entry.path} has label {label} here and {first.label} on line {first.line}")
        else:
            repeats.append(f"{at(path, line)} repeats line {first.line}")
    if not entries:
        raise UserError(f"{path}: no videos listed (expected lines 'relative/path.mp4 <label>')")
    if repeats:
        # Counted once: a repeated line would weigh a video twice in training and in the accuracy.
        err_console.print(f"[yellow]warning:[/yellow] {len(repeats)} duplicate line{'s' if len(repeats) > 1 else ''} "
                          f"ignored: {_short_list(repeats, 5)}", highlight=False, soft_wrap=True)
    return entries


def read_video_list(path, num_classes: int) -> list[tuple[str, int]]:
    """``[(relative path, label), ...]`` from a video list; labels checked against ``num_classes``."""
    return [(e.path, e.label) for e in read_video_list_entries(path, num_classes)]


def write_video_list(path, entries) -> None:
    """Write ``path label`` lines (entries: ``(path, label)`` pairs), atomically; an unchanged file is
    not rewritten. Every path is checked before anything is written: one that would not read back as
    itself (a line break, spaces at either end, empty) is refused, naming it."""
    lines = []
    for video, label in entries:
        check_listable(video, path)
        lines.append(f"{video} {int(label)}\n")
    _write_if_changed(path, "".join(lines))


def check_listable(video: str, where) -> None:
    """Refuse a path that a list cannot hold: it must read back as itself from one line."""
    # str.splitlines breaks at \r, \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029 as well as \n.
    if not video or video.splitlines() != [video] or video != video.strip():
        raise UserError(f"{where}: {video!r} cannot be listed: a listed path holds no line break, is not empty "
                        f"and has no spaces at either end (rename the file)")


def missing_entries_message(list_path, missing: list[ListEntry], where: str, limit: int = 5) -> str:
    """One line naming every missing video by ``file:line`` (the first ``limit``, then a count)."""
    shown = "; ".join(f"{at(list_path, e.line)}: {e.path}" for e in missing[:limit])
    more = f"; and {len(missing) - limit} more" if len(missing) > limit else ""
    return f"{len(missing)} listed video(s) not found in {where}: {shown}{more}"


def _short_list(values, limit: int = 8) -> str:
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _write_if_changed(path, text: str) -> None:
    # Re-running prepare-data must leave identical files untouched (same bytes, same mtime).
    path = Path(path)
    try:
        if path.is_file() and path.read_bytes() == text.encode("utf-8"):
            return
    except OSError:
        pass
    atomic_write_text(path, text)
