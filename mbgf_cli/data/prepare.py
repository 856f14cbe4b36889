"""The engines of ``mbgf prepare-data``: official annotations -> the seed layout.

Every subcommand ends in the same place, ``--output DIR``:
    DIR/train.txt, DIR/val.txt      ``relative/path.mp4 <label>`` (paths relative to DIR/videos)
    DIR/labels.csv                  ``id,name``
    DIR/videos                      the videos: a link to ``--videos`` (or ``--videos`` itself when it is
                                    DIR/videos), or the re-encoded (``--resize``) or generated (synthetic)
                                    files; with ``--pack tar``, DIR/videos.tar as well
    DIR/missing.txt                 annotated videos not found under ``--videos`` (file:line, name)
    DIR/rejected.txt                (``--check``, ``--resize``) videos that failed, with the reason
    DIR/.prepare.json               what this command made there (the state a re-run resumes from)

A reader (``ucf101``, ``hmdb51``, ``k400``, ``folder``, ``synthetic``) turns annotations into a
``Plan``: classes, train/val entries relative to the source videos folder, missing videos. Then
``finish`` does the options shared by all: ``--check`` (decode every listed video in parallel,
keep the readable ones), ``--resize N`` (re-encode to short side N, in parallel), writing the lists,
``--pack tar``. Re-running is idempotent and resumes: check results are cached in
``DIR/.check.json``, re-encoded videos that exist are kept (each is written under a temporary name
and renamed), lists are only rewritten when they change, and a complete tar is not rewritten.

Nothing the user made is deleted or changed: the source videos are only read; ``DIR/videos`` is
replaced or removed (after packing) only when this command made it, as ``.prepare.json`` records;
files of the layout that are in DIR already but were not written by prepare-data are refused.
A folder prepared into itself (``--videos D --output D``) does not find its own ``videos`` as a class.
"""

import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

import labels
from mbgf_cli.console import progress
from mbgf_cli.data.annotations import (
    check_listable,
    check_relative,
    read_labels,
    write_labels,
    write_video_list,
)
from mbgf_cli.data.readers import DECODERS, VideoError, probe
from mbgf_cli.data.sources import FolderSource, open_source
from mbgf_cli.errors import UserError, at
from mbgf_cli.fileio import atomic_output, atomic_write_json, atomic_write_text, is_stale_temporary
from mbgf_cli.processes import process_pool

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
        for dirpath, _, files in _walk(self.folder, skip):
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


def _walk(folder: Path, skip=()):
    """``os.walk`` that follows links to folders, except into ``skip`` (what the output made inside
    the source) and into a folder met before (a link to a parent would loop)."""
    skip = {os.path.abspath(p) for p in skip}
    visited = set()
    for dirpath, dirs, files in os.walk(folder, followlinks=True):
        visited.add(os.path.realpath(dirpath))
        dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(dirpath, d)) not in skip
                         and os.path.realpath(os.path.join(dirpath, d)) not in visited)
        yield dirpath, dirs, files


def _lines(path: Path):
    """(line number, stripped text) of the non-blank, non-comment lines of a text file."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text


def _shipped_order(names: list[str], dataset: str) -> list[str] | None:
    """The shipped label list of ``dataset`` when it holds every name (compared without case, '_' = ' ')."""
    shipped = read_labels(labels.label_file(dataset))
    key = {_norm(n): n for n in shipped}
    if all(_norm(n) in key for n in names):
        return shipped
    return None


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


# ---------------------------------------------------------------------------------------------
# Readers of the official annotation formats


def read_ucf101(splits: Path, videos: Path, split: int = 1, skip=()) -> Plan:
    """UCF101: ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("Class/v_....avi 1"),
    ``testlist0N.txt`` ("Class/v_....avi"; the label is the class folder). Test -> val.txt."""
    splits, videos = Path(splits), Path(videos)
    _check_split(split)
    class_file = splits / "classInd.txt"
    folders: dict[str, int] = {}  # lower-case folder name -> 0-based id
    classes: list[str] = []
    for number, text in _lines(class_file):
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
        for number, text in _lines(list_file):
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
            _add(plan, part, index.find(rel), label, at(list_file, number), rel)
    return plan


def read_hmdb51(splits: Path, videos: Path, split: int = 1, skip=()) -> Plan:
    """HMDB51: one ``<class>_test_split<N>.txt`` per class, lines "<video>.avi <0|1|2>"
    (1 = train, 2 = test -> val.txt, 0 = unused)."""
    splits, videos = Path(splits), Path(videos)
    _check_split(split)
    files = sorted(splits.glob(f"*_test_split{split}.txt"))
    if not files:
        raise UserError(f"{splits}: no '<class>_test_split{split}.txt' files (the official HMDB51 split folder)")
    folder_names = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    spaced = [n.replace("_", " ") for n in folder_names]
    shipped = _shipped_order(spaced, "hmdb51")
    classes = shipped if shipped is not None and len(shipped) == len(spaced) else sorted(spaced)
    ids = {_norm(n): i for i, n in enumerate(classes)}
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    for split_file, folder in zip(files, folder_names, strict=True):
        label = ids[_norm(folder)]
        for number, text in _lines(split_file):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise UserError(f"{at(split_file, number)}: expected '<video>.avi <0|1|2>', got {text!r}")
            if fields[1] == "0":
                continue
            rel = check_relative(fields[0], at(split_file, number))
            found = index.find(f"{folder}/{rel}") or index.find(rel)
            _add(plan, "train" if fields[1] == "1" else "val", found, label, at(split_file, number), rel)
    return plan


def read_k400(annotations: Path, videos: Path, skip=()) -> Plan:
    """Kinetics-400: the official CSVs (``label,youtube_id,time_start,time_end,split``), videos named
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ``videos``. Rows of split ``train``
    go to train.txt, ``val``/``validate`` to val.txt; ``test`` rows (no labels) are ignored."""
    import csv

    annotations, videos = Path(annotations), Path(videos)
    files = sorted(annotations.glob("*.csv")) if annotations.is_dir() else [annotations]
    if not files or not all(f.is_file() for f in files):
        raise UserError(f"{annotations}: no Kinetics CSV files (train.csv, validate.csv)")
    rows = []  # (part, label name, stem, where)
    for csv_file in files:
        with open(csv_file, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            needed = ["label", "youtube_id", "time_start", "time_end"]
            if not all(h in header for h in needed):
                if "youtube_id" in header:  # test.csv has no labels: nothing to list
                    continue
                raise UserError(f"{at(csv_file, 1)}: expected the header 'label,youtube_id,time_start,time_end,split'")
            col = {h: header.index(h) for h in header}
            for number, row in enumerate(reader, start=2):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) < len(header):
                    raise UserError(f"{at(csv_file, number)}: {len(row)} fields, the header has {len(header)}")
                try:
                    start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
                except ValueError:
                    raise UserError(f"{at(csv_file, number)}: time_start/time_end must be numbers") from None
                split = row[col["split"]].strip().lower() if "split" in col else _split_from_name(csv_file)
                if split == "test":
                    continue
                if split not in ("train", "val", "validate"):
                    raise UserError(f"{at(csv_file, number)}: unknown split {split!r} (train, val, validate, test)")
                label = row[col["label"]].strip().strip('"')
                if not label:
                    raise UserError(f"{at(csv_file, number)}: empty label")
                stem = f"{row[col['youtube_id']].strip()}_{start:06d}_{end:06d}"
                rows.append(("train" if split == "train" else "val", label, stem, at(csv_file, number)))
    if not rows:
        raise UserError(f"{annotations}: no labelled rows in the Kinetics CSVs")
    names = sorted({_norm(label) for _, label, _, _ in rows})
    shipped = _shipped_order(names, "k400")
    classes = shipped if shipped is not None else sorted({label.replace("_", " ") for _, label, _, _ in rows})
    ids = {_norm(n): i for i, n in enumerate(classes)}
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    if shipped is not None:
        plan.notes.append("class ids: the shipped Kinetics-400 list")
    for part, label, stem, where in rows:
        _add(plan, part, index.find_stem(stem), ids[_norm(label)], where, stem)
    return plan


def _split_from_name(csv_file: Path) -> str:
    name = csv_file.stem.lower()
    for split in ("train", "validate", "val", "test"):
        if split in name:
            return split
    raise UserError(f"{csv_file}: no 'split' column and the file name says no split (train/validate/test)")


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
                 for dirpath, _, names in _walk(folder, skip) for name in names
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


def _check_split(split: int):
    if split not in (1, 2, 3):
        raise UserError(f"--split must be 1, 2 or 3, got {split}")


def _add(plan: Plan, part: str, found: str | None, label: int, where: str, name: str):
    """One annotation (at ``where``, file:line) of video ``name``, ``found`` on disk or not."""
    if found is None:
        plan.missing[part].append(f"{where} {name}")
    elif found in plan.seen:
        # Listed once: a repeated annotation would count the video twice (or put it in train and val).
        plan.notes.append(f"{where} repeats {plan.seen[found]} ({found}); listed once")
    else:
        plan.seen[found] = where
        (plan.train if part == "train" else plan.val).append((found, label))


# ---------------------------------------------------------------------------------------------
# The shared steps: link or re-encode, check, write, pack


def _parallel(fn, jobs: list, workers: int, description: str):
    """``fn`` over ``jobs`` in a process pool (in order), with a progress bar."""
    results = []
    with progress() as bar:
        task = bar.add_task(description, total=len(jobs), info="")
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.advance(task)
        else:
            with process_pool(min(workers, len(jobs))) as pool:
                for result in pool.map(fn, jobs, chunksize=4):
                    results.append(result)
                    bar.advance(task)
    return results


_SOURCES: dict[str, object] = {}  # per worker process: a tar is indexed once, not once per video


def _source(root: str):
    if root not in _SOURCES:
        _SOURCES[root] = open_source(root)
    return _SOURCES[root]


def _probe_job(job) -> tuple[bool, str, str]:
    root, rel, decoder = job
    try:
        probe(_source(root), rel, decoder)
        return True, "", ""
    except VideoError as e:
        return False, e.reason, e.detail


def check_videos(source, rels: list[str], out: Path, workers: int, decoder: str = "auto") -> dict[str, str]:
    """Decode every listed video of ``source`` in parallel; ``{rel: reason}`` of the failures.

    Results are cached in ``out/.check.json`` by path, size and modification time (member offset for
    archives), so an interrupted or repeated check resumes where it stopped.
    """
    cache_file = out / ".check.json"
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (json.JSONDecodeError, OSError):
        cache = {}
    if isinstance(source, FolderSource):
        root = str(source.root)

        def stamp(rel):
            try:
                st = (source.root / rel).stat()
                return f"{st.st_size}:{st.st_mtime_ns}:{decoder}"
            except OSError:
                return "missing"
    else:
        root = str(source.path)
        archive_time = source.path.stat().st_mtime_ns

        def stamp(rel):
            return f"{source.members[rel]}:{archive_time}:{decoder}" if rel in source else "missing"

    stamps = {rel: stamp(rel) for rel in rels}
    todo = [rel for rel in rels if cache.get(rel, {}).get("stamp") != stamps[rel]]
    # Saved every 256 videos, so that an interruption loses little.
    for start in range(0, len(todo), 256):
        chunk = todo[start : start + 256]
        label = "checking videos" if len(todo) <= 256 else f"checking videos {start + 1}-{start + len(chunk)} of {len(todo)}"
        results = _parallel(_probe_job, [(root, rel, decoder) for rel in chunk], workers, label)
        for rel, (ok, reason, detail) in zip(chunk, results, strict=True):
            cache[rel] = {"stamp": stamps[rel], "ok": ok, "reason": reason, "detail": detail}
        atomic_write_json(cache_file, cache, sort_keys=True)
    return {rel: _reason_text(cache[rel]) for rel in rels if not cache[rel]["ok"]}


def _reason_text(entry: dict) -> str:
    return f"{entry['reason']} ({entry['detail']})" if entry.get("detail") else entry["reason"]


def _resize_job(job) -> tuple[bool, str]:
    src, dst, short_side = job
    try:
        resize_video(src, dst, short_side)
        return True, ""
    except VideoError as e:
        return False, str(e)


def resize_video(src, dst, short_side: int, gop: int = 16) -> None:
    """Re-encode ``src`` to an H.264 mp4 at ``dst`` whose shorter side is ``short_side`` (even sizes),
    every frame kept, no audio, a keyframe every ``gop`` frames (cheap seeking), no B-frames.
    The same source gives the same bytes, whatever the process did before and however many cores."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    try:
        source = av.open(str(src))
    except Exception as e:
        raise VideoError("cannot open", getattr(e, "strerror", None) or str(e)) from None
    try:
        with source:
            if not source.streams.video:
                raise VideoError("no video stream")
            stream = source.streams.video[0]
            if source.format.name == "image2" or source.format.name.endswith("_pipe"):
                raise VideoError("still image", f"{stream.codec_context.name} image")
            stream.thread_count = 1  # one process per video already keeps every core busy
            h, w = stream.codec_context.height, stream.codec_context.width
            if not h or not w:
                raise VideoError("cannot open", "no frame size")
            scale = short_side / min(h, w)
            out_w, out_h = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
            rate = stream.average_rate or stream.guessed_rate or 25
            frames = 0
            with av.open(str(tmp), mode="w", format="mp4") as sink:
                out = sink.add_stream("libx264", rate=rate)
                out.width, out.height, out.pix_fmt = out_w, out_h, "yuv420p"
                out.options = {"preset": "veryfast", "tune": "fastdecode", "crf": "23", "g": str(gop), "bf": "0",
                               "threads": "1", "x264-params": X264_REPRODUCIBLE}
                try:
                    for frame in source.decode(stream):
                        image = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA",
                                               threads=1)
                        # Renumbered 0, 1, 2, ... at the source's average rate: every frame kept, in order.
                        image.pts, image.time_base = frames, 1 / Fraction(rate)
                        for packet in out.encode(image):
                            sink.mux(packet)
                        frames += 1
                except av.error.EOFError:
                    pass
                except Exception as e:
                    raise VideoError("decode error", getattr(e, "strerror", None) or str(e)) from None
                if frames == 0:
                    raise VideoError("no frames")
                if frames == 1:
                    raise VideoError("still image", "1 frame")
                for packet in out.encode():
                    sink.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


# x264's lookahead (behind mb-tree rate control and scene-cut detection) reads memory that earlier
# work of the process left behind, so a video came out differently from one run to the next. Without
# it the bytes depend on the input alone; keyframes still come every ``gop`` frames.
X264_REPRODUCIBLE = "rc-lookahead=0:mbtree=0:scenecut=0"


# ---------------------------------------------------------------------------------------------
# What the output folder holds, and what of it this command made

STATE_FILE = ".prepare.json"
LAYOUT_FILES = ("train.txt", "val.txt", "labels.csv", "missing.txt", "rejected.txt", "videos.tar")
MADE_VIDEOS = ("link", "resized", "generated")  # DIR/videos kinds this command made ("source": the user's)


def _read_state(out: Path) -> dict | None:
    """The state a previous run left in ``out`` (None: prepare-data never wrote there)."""
    path = out / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _previous_videos_kind(out: Path, state: dict | None) -> str | None:
    kind = (state or {}).get("videos")
    if kind is None and state is not None:
        # Written before the state said so: prepare-data only ever made a link there, or the copies of --resize.
        if (out / "videos").is_symlink():
            kind = "link"
        elif state.get("resize") and (out / "videos").is_dir():
            kind = "resized"
    return kind


def output_artefacts(out) -> list[Path]:
    """Folders under ``out`` that prepare-data made (its ``videos`` link or copies): never a class or a
    source of videos, should ``out`` lie inside the videos folder."""
    out = Path(out)
    videos = out / "videos"
    kind = _previous_videos_kind(out, _read_state(out))
    return [videos] if kind in MADE_VIDEOS and (videos.exists() or videos.is_symlink()) else []


def _skip_under(videos: Path, out: Path) -> list[Path]:
    """What finding videos under ``videos`` must not enter: the output's own folders, or the whole output
    when it is a folder inside ``videos``."""
    skip = output_artefacts(out)
    videos, out = Path(videos).resolve(), Path(out).resolve()
    if out != videos and videos in out.parents:
        skip.append(out)
    return skip


def _videos_kind(out: Path, source: Path, resize: int | None, generated: bool, state: dict | None) -> str:
    """What ``out/videos`` will be: made here ("link", "resized", "generated") or the user's ("source").
    Raises before any work when it would have to replace something the user made."""
    videos_dir = out / "videos"
    previous = _previous_videos_kind(out, state)
    present = videos_dir.exists() or videos_dir.is_symlink()
    our_link = previous == "link" and videos_dir.is_symlink()
    is_source = videos_dir.exists() and videos_dir.resolve() == source.resolve()
    if generated:
        return "generated"
    if resize:
        if not present or our_link:
            return "resized"
        if previous == "resized" and not videos_dir.is_symlink():
            if state.get("resize") != resize or state.get("source") != str(source.resolve()):
                raise UserError(
                    f"{videos_dir}: holds videos re-encoded to {state.get('resize')} px from {state.get('source')} by "
                    f"an earlier run; remove it (prepare-data made it) or choose another --output"
                )
            return "resized"
        if is_source:
            raise UserError(f"--resize would write the re-encoded videos into {videos_dir}, the folder of the videos "
                            f"it reads; choose another --output")
        raise UserError(f"{videos_dir}: already exists and was not made by prepare-data; choose another --output")
    if is_source:
        return "link" if our_link else "source"
    if not present or our_link:
        return "link"
    if previous == "resized":
        raise UserError(f"{videos_dir}: holds the videos an earlier run re-encoded (--resize {state.get('resize')}); "
                        f"give the same --resize, remove it (prepare-data made it), or choose another --output")
    raise UserError(f"{videos_dir}: already exists and is not {source}; choose another --output")


def _refuse_foreign_files(out: Path, state: dict | None, generated: bool) -> None:
    """Files of the layout that are in ``out`` although prepare-data never wrote there are the user's."""
    if state is not None or generated:
        return
    for name in LAYOUT_FILES:
        if (out / name).exists():
            raise UserError(f"{out / name}: already there and not written by prepare-data (no {out / STATE_FILE}); "
                            f"choose another --output")


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of this command's writers left by a run that was killed (never another's)."""
    names = (*LAYOUT_FILES, ".check.json", STATE_FILE)
    for path in out.iterdir() if out.is_dir() else []:
        stale = any(is_stale_temporary(path, name) for name in names) and not _writer_alive(path.name)
        # Names of earlier versions' writers.
        stale = stale or path.name in ("videos.tar.part", *(f"{name}.tmp" for name in names))
        if stale and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def _writer_alive(temporary_name: str) -> bool:
    # ".<name>.tmp-<pid>-<random>": a writer still running (another prepare-data) keeps its file.
    try:
        pid = int(temporary_name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _link_videos(out: Path, videos: Path) -> None:
    """Make ``out/videos`` (absent, or a link made by prepare-data) a link to the source folder."""
    link = out / "videos"
    if link.is_symlink():
        if link.resolve() == videos.resolve():
            return
        link.unlink()
    link.symlink_to(videos.resolve(), target_is_directory=True)


def _remove_made_videos(videos_dir: Path, kind: str, rels: list[str]) -> None:
    """After packing: remove what this command made under ``videos_dir`` (the tar holds it now), and
    nothing else: the link, or the files it wrote and the folders they leave empty."""
    if kind == "link":
        if videos_dir.is_symlink():
            videos_dir.unlink()
        return
    if kind not in ("resized", "generated") or videos_dir.is_symlink() or not videos_dir.is_dir():
        return
    folders = set()
    for rel in rels:
        (videos_dir / rel).unlink(missing_ok=True)
        folders.update(p for p in (videos_dir / rel).parents if videos_dir in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True) + [videos_dir]:
        try:
            folder.rmdir()  # only when empty: anything else put there stays
        except OSError:
            pass


def pack_tar(out: Path, rels: list[str], source) -> bool:
    """Write ``out/videos.tar``: uncompressed, members named by list path, sorted, with zeroed owner
    and time (the same videos give the same tar). Skipped when a tar with exactly these members, of
    the same sizes, exists. ``source`` may be the previous tar itself. Returns whether a tar was written."""
    target = out / "videos.tar"
    wanted = sorted(set(rels))
    if target.is_file():
        try:
            existing = open_source(target)
        except UserError:
            existing = None  # a damaged tar this command wrote: written again
        if existing is not None and existing.names() == wanted and all(
                existing.size(rel) == source.size(rel) for rel in wanted):
            return False
    with progress() as bar, atomic_output(target) as tmp, tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        task = bar.add_task("packing videos.tar", total=len(wanted), info="")
        for rel in wanted:
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = source.size(rel), 0, 0o644
            path = source.local_path(rel)
            with open(path, "rb") if path else io.BytesIO(source.read(rel)) as f:
                tar.addfile(info, f)
            bar.advance(task)
    return True


def refuse_empty_plan(plan: Plan, out: Path) -> None:
    """Before any work: a plan whose train list (or val list, when one was asked for) is empty."""
    if not plan.train and not plan.val:
        raise UserError(f"{plan.videos}: none of the annotated videos were found")
    if not plan.train:
        raise UserError(f"{Path(out) / 'train.txt'} would list no videos: the annotations' train videos are all missing")
    if _val_asked(plan) and not plan.val:
        raise UserError(f"{Path(out) / 'val.txt'} would list no videos: {_val_asked(plan)}")


def _val_asked(plan: Plan) -> str | None:
    """Why an empty val list is wrong for this plan (None when it is not)."""
    if plan.empty_val is None and plan.split is None and (plan.val or plan.missing["val"]):
        return "the annotations' val videos are all missing or rejected"
    return plan.empty_val


def finish(
    plan: Plan,
    out,
    check: bool = False,
    resize: int | None = None,
    pack: str | None = None,
    workers: int | None = None,
    decoder: str = "auto",
    dataset: str = "",
    generated: bool = False,
) -> dict:
    """Make the videos available under ``out``, check them, write the lists and labels, pack.

    0. before any work: options, every listed name (one a list can hold), what ``out`` holds already.
    1. the working copy: ``out/videos.tar`` when a previous run packed it with the same ``--resize``;
       else ``out/videos`` holding the re-encoded (``--resize``) or ``generated`` videos; else the
       source folder itself when it is ``out/videos``; else ``out/videos`` as a link to it.
    2. ``--check``: decode every listed video of the working copy (what training will read).
    3. the train/val split of what is left (readers that split, like ``folder``, split again); an
       empty train or val list (when val was asked for) is refused. Then the lists, labels,
       missing.txt, rejected.txt.
    4. ``--pack tar``: ``out/videos.tar`` from the working copy; what this command made under
       ``out/videos`` (the link, or the files it wrote) is removed, so that the folder is option 2
       of the seed layout. The user's own videos folder stays as it is, the tar beside it.
    """
    out = Path(out)
    workers = workers or os.cpu_count() or 1
    if pack not in (None, "tar"):
        raise UserError(f"--pack must be 'tar', got {pack!r}")
    if decoder not in DECODERS:
        raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if resize is not None and resize < 16:
        raise UserError(f"--resize must be at least 16 pixels, got {resize}")
    if generated and resize:
        raise UserError("--resize: generated videos are written at their size already (use --size)")
    refuse_empty_plan(plan, out)
    listed = sorted({rel for rel, _ in plan.train + plan.val})
    for rel in listed:
        check_listable(rel, plan.videos)
    videos_dir, tar_path = out / "videos", out / "videos.tar"
    state = _read_state(out)
    _refuse_foreign_files(out, state, generated)
    kind = _videos_kind(out, plan.videos, resize, generated, state)

    rename = {rel: rel for rel in listed}
    if resize:
        rename = {rel: str(Path(rel).with_suffix(".mp4")) for rel in listed}
        clash = Counter(rename.values())
        rename = {rel: (new if clash[new] == 1 else rel + ".mp4") for rel, new in rename.items()}
    made = {"videos": kind, "resize": resize, "source": str(plan.videos.resolve())}
    same_videos = state is not None and all(state.get(k) == v for k, v in made.items() if k != "videos")
    reuse_tar = pack == "tar" and tar_path.is_file() and not videos_dir.exists() and same_videos
    checked_before = bool(reuse_tar and state.get("checked"))  # a packed tar was checked before packing
    # The record of what is made here goes first, so that a run killed part-way knows them as its own.
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    atomic_write_json(out / STATE_FILE, {**made, "checked": checked_before}, sort_keys=True)

    rejected: dict[str, str] = {}
    if reuse_tar:
        source = open_source(tar_path)
        missing_from_tar = [rel for rel in listed if rename[rel] not in source]
        # Videos absent from the tar were rejected by the run that packed it: say so again.
        old = _read_rejected(out / "rejected.txt")
        rejected.update({rel: old.get(rel, "missing (not in videos.tar)") for rel in missing_from_tar})
    elif kind == "resized":
        if videos_dir.is_symlink():
            videos_dir.unlink()  # the link an earlier run made
        jobs = [(str(plan.videos / rel), str(videos_dir / new), resize) for rel, new in rename.items()
                if not (videos_dir / new).is_file()]
        if jobs:
            results = _parallel(_resize_job, jobs, workers, f"resizing to {resize}px")
            for (src, _, _), (ok, reason) in zip(jobs, results, strict=True):
                if not ok:
                    rejected[Path(src).relative_to(plan.videos).as_posix()] = reason
        source = FolderSource(videos_dir)
        rejected.update({rel: "resize failed (earlier run)" for rel, new in rename.items()
                         if rel not in rejected and new not in source})
    else:
        if kind == "link":
            _link_videos(out, plan.videos)
        source = FolderSource(videos_dir)
    if check and not checked_before:
        readable = [rel for rel in listed if rel not in rejected]
        failures = check_videos(source, [rename[rel] for rel in readable], out, workers, decoder)
        back = {new: rel for rel, new in rename.items()}
        rejected.update({back[new]: reason for new, reason in failures.items()})
    atomic_write_json(out / STATE_FILE, {**made, "checked": bool(check) or checked_before}, sort_keys=True)

    kept = [(rel, label) for rel, label in plan.train + plan.val if rel not in rejected]
    if plan.split is not None:
        train, val = plan.split(kept)  # the split is made of what --check left
    else:
        train, val = [e for e in plan.train if e[0] not in rejected], [e for e in plan.val if e[0] not in rejected]
    _write_lines(out / "missing.txt", plan.missing["train"] + plan.missing["val"])
    if check or resize or reuse_tar:
        _write_lines(out / "rejected.txt", [f"{rel}\t{reason}" for rel, reason in sorted(rejected.items())],
                     always=True)
    dropped = f"; {len(rejected)} videos rejected (see {out / 'rejected.txt'})" if rejected else ""
    if not train:
        raise UserError(f"{out / 'train.txt'} would list no videos: none of its videos is readable{dropped}")
    if _val_asked(plan) and not val:
        raise UserError(f"{out / 'val.txt'} would list no videos: {_val_asked(plan)}{dropped}")
    train = [(rename[rel], label) for rel, label in train]
    val = [(rename[rel], label) for rel, label in val]
    write_video_list(out / "train.txt", train)
    write_video_list(out / "val.txt", val)
    write_labels(out / "labels.csv", plan.classes)

    packed_now = False
    if pack == "tar":
        packed_now = pack_tar(out, [rel for rel, _ in train + val], source)
        _remove_made_videos(videos_dir, kind, [rename[rel] for rel in listed])
        if kind == "source":
            plan.notes.append(f"videos.tar written beside {videos_dir}, which is left as it is")

    reasons = Counter(reason.split(" (")[0] for reason in rejected.values())
    examples = {}
    for rel, reason in sorted(rejected.items()):
        examples.setdefault(reason.split(" (")[0], rel)
    return {
        "dataset": dataset,
        "out": str(out),
        "classes": len(plan.classes),
        "train": len(train),
        "val": len(val),
        "missing": {"train": len(plan.missing["train"]), "val": len(plan.missing["val"])},
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "rejected_examples": examples,
        "videos": str(tar_path if pack == "tar" else videos_dir),
        "packed": packed_now,
        "notes": plan.notes,
    }


def _read_rejected(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return {rel: reason for rel, reason in pairs}


def _write_lines(path: Path, lines: list[str], always: bool = False) -> None:
    """Write lines; an empty list writes an empty file only if ``always`` or the file exists (stale)."""
    text = "".join(f"{line}\n" for line in lines)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    if not lines and not always and not path.exists():
        return
    atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------
# One function per subcommand


def prepare_ucf101(splits, videos, out, split: int = 1, **options) -> dict:
    plan = read_ucf101(Path(splits), Path(videos), split, skip=_skip_under(videos, out))
    return finish(plan, out, dataset="ucf101", **options)


def prepare_hmdb51(splits, videos, out, split: int = 1, **options) -> dict:
    plan = read_hmdb51(Path(splits), Path(videos), split, skip=_skip_under(videos, out))
    return finish(plan, out, dataset="hmdb51", **options)


def prepare_k400(annotations, videos, out, **options) -> dict:
    plan = read_k400(Path(annotations), Path(videos), skip=_skip_under(videos, out))
    return finish(plan, out, dataset="k400", **options)


def prepare_folder(videos, out, val_fraction: float = 0.2, seed: int = 0, **options) -> dict:
    plan = read_folder(Path(videos), val_fraction, seed, skip=_skip_under(videos, out))
    return finish(plan, out, dataset="folder", **options)


def prepare_synthetic(out, class_set: str = "a", videos_per_class: int = 125, frames: int = 32, size: int = 112,
                      seed: int = 0, val_fraction: float = 0.2, fps: int = 16, overwrite: bool = False,
                      **options) -> dict:
    """Generate the synthetic dataset into ``out`` (skipped for videos already there or in the tar)."""
    from mbgf_cli.data import synthetic

    out = Path(out)
    train, val = synthetic.plan(synthetic.SyntheticOptions(class_set, videos_per_class, frames, size, fps, seed,
                                                            val_fraction))
    plan = Plan(synthetic.class_names(class_set), out / "videos", train, val,
                empty_val=f"--val-fraction {val_fraction} gives no val video of {videos_per_class} per class"
                if val_fraction > 0 else None)
    refuse_empty_plan(plan, out)
    summary = synthetic.generate(out, class_set=class_set, videos_per_class=videos_per_class, frames=frames,
                                 size=size, seed=seed, val_fraction=val_fraction, fps=fps,
                                 workers=options.get("workers"), overwrite=overwrite)
    result = finish(plan, out, dataset="synthetic", generated=True, **options)
    result["generated"] = summary["generated"]
    return result
