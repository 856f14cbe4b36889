"""Readers of annotation formats that list videos by path: UCF101, HMDB51, one folder per class.

A reader turns annotations into a ``Plan`` (classes, train/val entries relative to the source videos
folder, the annotated videos missing on disk); ``mbgf_cli.data.prepare.finish`` does the rest.
``VideoIndex`` finds an annotated video on disk despite the small ways lists and files disagree.
"""

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

import labels
from mbgf_cli.data.annotations import check_relative, read_labels
from mbgf_cli.errors import UserError, at

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}


@dataclass
class Plan:
    """What a reader found: class names, train/val entries relative to ``videos``, and the misses."""

    classes: list[str]
    videos: Path
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    missing: dict[str, list[str]] = field(default_factory=lambda: {"train": [], "val": []})  # "file:line name"
    notes: list[str] = field(default_factory=list)
    # Splits the videos left after --check into (train, val) again; None: the annotations fixed the split.
    split: Callable[[list[tuple[str, int]]], tuple[list, list]] | None = None
    # Why val.txt would be empty although a val split was asked for (None: the annotations' val part,
    # if they have one, is all missing or rejected).
    empty_val: str | None = None
    seen: dict[str, str] = field(default_factory=dict)  # video -> the annotation line that listed it first


# ---------------------------------------------------------------------------------------------
# Finding annotated videos on disk


class VideoIndex:
    """Every file under a folder, found by exact relative path, case-insensitive path, file name or stem.

    Official lists and the files people have on disk disagree in small ways (UCF101's
    ``HandstandPushups/v_HandStandPushups_...``, class folders or none, .mp4 or .mkv for Kinetics).
    """

    def __init__(self, folder, skip=()):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: no such videos folder")
        self.by_path: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for dirpath, _, files in walk_videos(self.folder, skip):
            for name in files:
                rel = Path(dirpath, name).relative_to(self.folder).as_posix()
                self.by_path[rel.lower()] = rel
                self.by_name.setdefault(name.lower(), []).append(rel)
                if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    self.by_stem.setdefault(Path(name).stem.lower(), []).append(rel)

    def find(self, rel: str) -> str | None:
        """The file for an annotated relative path (or bare file name), or None."""
        rel = rel.replace("\\", "/").strip("/")
        hit = self.by_path.get(rel.lower())
        if hit is None:
            candidates = self.by_name.get(rel.rsplit("/", 1)[-1].lower(), [])
            hit = sorted(candidates)[0] if candidates else None
        return hit

    def find_stem(self, stem: str) -> str | None:
        """A video whose name without extension is ``stem`` (any video extension)."""
        candidates = self.by_stem.get(stem.lower(), [])
        return sorted(candidates)[0] if candidates else None


def walk_videos(folder: Path, skip=()):
    """``os.walk`` that follows links to folders, except into ``skip`` (what the output made inside
    the source) and into a folder met before (a link to a parent would loop)."""
    skip = {os.path.abspath(p) for p in skip}
    visited = set()
    for dirpath, dirs, files in os.walk(folder, followlinks=True):
        visited.add(os.path.realpath(dirpath))
        dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(dirpath, d)) not in skip
                         and os.path.realpath(os.path.join(dirpath, d)) not in visited)
        yield dirpath, dirs, files


def annotation_lines(path: Path, comments: bool = True):
    """(line number, stripped text) of the non-blank lines of a text file, less ``#`` comments when
    ``comments`` (HMDB51's split files have none, and video names that start with ``#``)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        text = raw.strip()
        if text and not (comments and text.startswith("#")):
            yield number, text


def shipped_order(names: list[str], dataset: str) -> list[str] | None:
    """The shipped label list of ``dataset`` when it holds every name (compared without case, '_' = ' ')."""
    shipped = read_labels(labels.label_file(dataset))
    key = {norm_name(n): n for n in shipped}
    if all(norm_name(n) in key for n in names):
        return shipped
    return None


def norm_name(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


# ---------------------------------------------------------------------------------------------
# Readers of the official annotation formats


def read_ucf101(splits: Path, videos: Path, split: int = 1, skip=()) -> Plan:
    """UCF101: ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("Class/v_....avi 1"),
    ``testlist0N.txt`` ("Class/v_....avi"; the label is the class folder). Test -> val.txt."""
    splits, videos = Path(splits), Path(videos)
    check_split(split)
    class_file = splits / "classInd.txt"
    folders: dict[str, int] = {}  # lower-case folder name -> 0-based id
    classes: list[str] = []
    for number, text in annotation_lines(class_file):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise UserError(f"{at(class_file, number)}: expected '<id> <ClassName>', got {text!r}")
        class_id = int(fields[0]) - 1
        if class_id != len(classes):
            raise UserError(f"{at(class_file, number)}: class ids must run 1, 2, 3, ...; got {fields[0]} after {len(classes)}")
        folders[fields[1].lower()] = class_id
        # CamelCase to words, as the shipped label list spells them: "ApplyEyeMakeup" -> "Apply Eye Makeup".
        classes.append(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", fields[1]))
    if not classes:
        raise UserError(f"{class_file}: no classes")
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    for part, name in (("train", f"trainlist{split:02d}.txt"), ("val", f"testlist{split:02d}.txt")):
        list_file = splits / name
        for number, text in annotation_lines(list_file):
            fields = text.split()
            rel = check_relative(fields[0], at(list_file, number))
            folder = rel.split("/")[0].lower() if "/" in rel else None
            if folder not in folders:
                raise UserError(f"{at(list_file, number)}: {rel!r} is not under a class folder of {class_file.name}")
            label = folders[folder]
            if len(fields) >= 2:
                if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(classes):
                    raise UserError(f"{at(list_file, number)}: label {fields[1]!r} out of range 1..{len(classes)}")
                if int(fields[1]) - 1 != label:
                    raise UserError(f"{at(list_file, number)}: label {fields[1]} disagrees with the folder {rel.split('/')[0]}")
            add_entry(plan, part, index.find(rel), label, at(list_file, number), rel)
    return plan


def read_hmdb51(splits: Path, videos: Path, split: int = 1, skip=()) -> Plan:
    """HMDB51: one ``<class>_test_split<N>.txt`` per class, lines "<video>.avi <0|1|2>"
    (1 = train, 2 = test -> val.txt, 0 = unused)."""
    splits, videos = Path(splits), Path(videos)
    check_split(split)
    files = sorted(splits.glob(f"*_test_split{split}.txt"))
    if not files:
        raise UserError(f"{splits}: no '<class>_test_split{split}.txt' files (the official HMDB51 split folder)")
    folder_names = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    spaced = [n.replace("_", " ") for n in folder_names]
    shipped = shipped_order(spaced, "hmdb51")
    classes = shipped if shipped is not None and len(shipped) == len(spaced) else sorted(spaced)
    ids = {norm_name(n): i for i, n in enumerate(classes)}
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    for split_file, folder in zip(files, folder_names, strict=True):
        label = ids[norm_name(folder)]
        for number, text in annotation_lines(split_file, comments=False):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise UserError(f"{at(split_file, number)}: expected '<video>.avi <0|1|2>', got {text!r}")
            if fields[1] == "0":
                continue
            rel = check_relative(fields[0], at(split_file, number))
            found = index.find(f"{folder}/{rel}") or index.find(rel)
            add_entry(plan, "train" if fields[1] == "1" else "val", found, label, at(split_file, number), rel)
    return plan


def read_folder(videos: Path, val_fraction: float = 0.2, seed: int = 0, skip=()) -> Plan:
    """One sub-folder per class (the folder name is the class, '_' read as a space); every video
    under it is split into train/val per class: ``round(n * val_fraction)`` to val (at least one
    when the class has two or more), chosen by a shuffle seeded with ``seed`` and the class.
    ``skip``: folders that are not classes (what an output inside ``videos`` made there).

    The plan's ``split`` makes the same split of what is left after ``--check``."""
    videos = Path(videos)
    if not videos.is_dir():
        raise UserError(f"{videos}: no such videos folder")
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    skipped = {os.path.abspath(p) for p in skip}
    folders = sorted(p for p in videos.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and os.path.abspath(p) not in skipped)
    if not folders:
        raise UserError(f"{videos}: no class sub-folders (expected one folder of videos per class)")
    classes = [f.name.replace("_", " ").strip() for f in folders]
    duplicates = [n for n, c in Counter(classes).items() if c > 1]
    if duplicates:
        raise UserError(f"{videos}: folders {duplicates} give the same class name")
    plan = Plan(classes, videos, [], [])
    entries = []
    for label, folder in enumerate(folders):
        files = [Path(dirpath, name).relative_to(videos).as_posix()
                 for dirpath, _, names in walk_videos(folder, skip) for name in names
                 if Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")]
        if not files:
            plan.notes.append(f"class folder {folder.name} holds no videos")
        entries += [(rel, label) for rel in files]
    plan.split = partial(_split_per_class, [f.name for f in folders], val_fraction, seed)
    plan.train, plan.val = plan.split(entries)
    plan.empty_val = (f"--val-fraction {val_fraction} leaves no class with the two readable videos a split needs "
                      f"(--val-fraction 0 lists every video in train.txt)") if val_fraction > 0 else None
    return plan


def _split_per_class(folder_names: list[str], val_fraction: float, seed: int, entries):
    """(train, val) of ``[(relative path, label)]``: per class, ``round(n * val_fraction)`` videos
    (at least one of two or more) to val, chosen by a shuffle seeded with ``seed`` and the folder name."""
    by_class: dict[int, list[str]] = {}
    for rel, label in entries:
        by_class.setdefault(label, []).append(rel)
    train, val = [], []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        n_val = int(round(len(files) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(files) >= 2:
            n_val = 1
        # The class name (not its position) seeds the shuffle: adding a class leaves the others' split alone.
        rng = np.random.default_rng([seed & 0xFFFFFFFF, *folder_names[label].encode("utf-8")])
        val_set = set(rng.permutation(len(files))[:n_val].tolist())
        for k, rel in enumerate(files):
            (val if k in val_set else train).append((rel, label))
    return train, val


def check_split(split: int):
    if split not in (1, 2, 3):
        raise UserError(f"--split must be 1, 2 or 3, got {split}")


def add_entry(plan: Plan, part: str, found: str | None, label: int, where: str, name: str):
    """One annotation (at ``where``, file:line) of video ``name``, ``found`` on disk or not."""
    if found is None:
        plan.missing[part].append(f"{where} {name}")
    elif found in plan.seen:
        # Listed once: a repeated annotation would count the video twice (or put it in train and val).
        plan.notes.append(f"{where} repeats {plan.seen[found]} ({found}); listed once")
    else:
        plan.seen[found] = where
        (plan.train if part == "train" else plan.val).append((found, label))
