"""Which videos and which classes: video files, folders and list files; class names from a file, free
text or the model; ``--views``. No torch here."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mbgf_cli.data.annotations import read_text
from mbgf_cli.errors import UserError, at

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
LIST_EXTENSIONS = (".txt",)


# --------------------------------------------------------------------------------------------------
# Which videos: files, folders, list files
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoInputs:
    """The videos to run on, in order: each as the user will see it (the path given, or folder/relative
    path), with its label where a list file gave one."""

    videos: list[str] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)


def collect_videos(inputs: Iterable, strict: bool = False) -> VideoInputs:
    """Expand ``inputs`` into videos: a folder gives every file with a video extension under it
    (recursively, sorted, hidden names skipped); a ``.txt`` file is a list (one path a line, an optional
    integer label after it; relative paths are looked up next to the list, then in its ``videos/``
    folder, the seed layout); anything else is a video. A path that does not exist is kept (and reported
    as missing when read), or refused with ``strict``. The same file twice is kept once."""
    collected = VideoInputs()
    seen: set[str] = set()

    def add(video: str, label: int | None):
        key = os.path.abspath(video)
        if key not in seen:
            seen.add(key)
            collected.videos.append(video)
            collected.labels.append(label)

    given = [str(item) for item in inputs]
    if not given:
        raise UserError("give one or more videos, folders or list files")
    for item in given:
        path = Path(item)
        if path.is_dir():
            for found in _videos_under(path):
                add(str(found), None)
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            for video, label in read_path_list(path):
                if strict and not Path(video).is_file():
                    raise UserError(f"{path}: lists {video}, which does not exist")
                add(video, label)
        else:
            if strict and not path.is_file():
                raise UserError(f"{item}: no such file or folder")
            add(item, None)
    if not collected.videos:
        raise UserError(f"no videos found in {', '.join(given)} (looked for {' '.join(VIDEO_EXTENSIONS)})")
    if not any(os.path.exists(video) for video in collected.videos):
        named = ", ".join(collected.videos[:3]) + (" ..." if len(collected.videos) > 3 else "")
        raise UserError(f"{named}: no such file{'s' if len(collected.videos) > 1 else ''} (nothing to run on)")
    return collected


def _videos_under(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if path.suffix.lower() in VIDEO_EXTENSIONS and not any(part.startswith(".") for part in relative) \
                and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_path_list(path: Path) -> list[tuple[str, int | None]]:
    """``[(video, label or None), ...]`` from a list file: ``path/to/video.mp4 [label]`` per line."""
    text = read_text(path)
    entries = []
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.rsplit(None, 1)
        label = None
        if len(fields) == 2 and re.fullmatch(r"[+-]?\d+", fields[1]):
            stripped, label = fields[0], int(fields[1])
            if label < 0:
                raise UserError(f"{at(path, line)}: label {label} is negative")
        video = Path(stripped)
        if not video.is_absolute():
            beside, in_videos = path.parent / video, path.parent / "videos" / video
            video = in_videos if not beside.exists() and in_videos.exists() else beside
        entries.append((str(video), label))
    if not entries:
        raise UserError(f"{path}: no videos listed (one path a line, optionally followed by a label)")
    return entries


# --------------------------------------------------------------------------------------------------
# Class names: the checkpoint's, a file, or free text
# --------------------------------------------------------------------------------------------------


def parse_classes(text: str, option: str = "--classes") -> list[str]:
    """Comma-separated names (``"juggling balls, riding a bike"``) as a list; blanks dropped."""
    names = [name.strip() for name in str(text).split(",")]
    names = [name for name in names if name]
    if not names:
        raise UserError(f"{option}: no names given (separate them with commas: \"juggling balls, riding a bike\")")
    return _unique(names, option)


def read_class_names(path) -> list[str]:
    """Class names from a labels file: ``id,name`` CSV (labels.csv), or one name a line."""
    from mbgf_cli.data import read_labels

    text = read_text(path)
    lines = [line.strip() for line in text.splitlines()]
    first = next((line for line in lines if line and not line.startswith("#")), None)
    if first is None:
        raise UserError(f"{path}: no class names")
    if first.replace(" ", "").lower() == "id,name" or re.match(r"\d+\s*,", first):
        return read_labels(path)
    names = []
    for number, line in enumerate(lines, start=1):
        if line and not line.startswith("#"):
            if line in names:
                raise UserError(f"{at(path, number)}: duplicate class name {line!r}")
            names.append(line)
    return names


def _unique(names: list[str], where: str) -> list[str]:
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"{where}: {name!r} is given twice")
        seen.add(name)
    return names


def resolve_classes(classes: str | Sequence[str] | None, labels_file, model_classes: list[str],
                    model_name: str) -> list[str]:
    """The classes to score against: free text (``--classes``), a labels file (``--labels``), else the
    model's own."""
    if classes is not None and labels_file is not None:
        raise UserError("give either --classes or --labels, not both")
    if classes is not None:
        return parse_classes(classes) if isinstance(classes, str) else _unique([str(c) for c in classes], "classes")
    if labels_file is not None:
        return read_class_names(labels_file)
    if model_classes:
        return list(model_classes)
    raise UserError(f"{model_name} carries no class names: give --classes \"a, b, ...\" or --labels FILE")


def parse_views(text: str) -> tuple[int, int]:
    """``--views CLIPSxCROPS`` (``4x3``: 4 temporal clips x 3 spatial crops) as ``(clips, crops)``."""
    try:
        clips, crops = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--views {text!r}: expected CLIPSxCROPS, e.g. 1x1 or 4x3") from None
    if clips < 1 or crops not in (1, 3):
        raise UserError(f"--views {text!r}: clips must be at least 1 and crops 1 or 3")
    return clips, crops


