"""The engines of ``mbgf prepare-data``: official annotations -> the seed layout.

Every subcommand ends in the same place, ``--out DIR``:
    DIR/train.txt, DIR/val.txt      ``relative/path.mp4 <label>`` (paths relative to DIR/videos)
    DIR/labels.csv                  ``id,name``
    DIR/videos                      the videos: a link to ``--videos``, or the re-encoded (``--resize``)
                                    or generated (synthetic) files; with ``--pack tar``, DIR/videos.tar
    DIR/missing.txt                 annotated videos not found under ``--videos`` (file:line, name)
    DIR/rejected.txt                (``--check``, ``--resize``) videos that failed, with the reason

A reader (``ucf101``, ``hmdb51``, ``k400``, ``folder``, ``synthetic``) turns annotations into a
``Plan``: classes, train/val entries relative to the source videos folder, missing videos. Then
``finish`` does the options shared by all: ``--check`` (decode every listed video in parallel,
keep the readable ones), ``--resize N`` (re-encode to short side N, in parallel), writing the lists,
``--pack tar``. Re-running is idempotent and resumes: check results are cached in
``DIR/.check.json``, re-encoded videos that exist are kept (each is written under a temporary name
and renamed), lists are only rewritten when they change, and a complete tar is not rewritten.
"""

import io
import json
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

import labels
from mbgf_cli.console import progress
from mbgf_cli.data.annotations import check_relative, read_labels, write_labels, write_video_list
from mbgf_cli.data.readers import DECODERS, VideoError, probe
from mbgf_cli.data.sources import FolderSource, open_source
from mbgf_cli.errors import UserError, at
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


# ---------------------------------------------------------------------------------------------
# Finding annotated videos on disk


class VideoIndex:
    """Every file under a folder, found by exact relative path, case-insensitive path, file name or stem.

    Official lists and the files people have on disk disagree in small ways (UCF101's
    ``HandstandPushups/v_HandStandPushups_...``, class folders or none, .mp4 or .mkv for Kinetics).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: no such videos folder")
        self.by_path: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for dirpath, _, files in os.walk(self.folder, followlinks=True):
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


def read_ucf101(splits: Path, videos: Path, split: int = 1) -> Plan:
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
    index = VideoIndex(videos)
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
            _add(plan, part, index.find(rel), label, f"{at(list_file, number)} {rel}")
    return plan


def read_hmdb51(splits: Path, videos: Path, split: int = 1) -> Plan:
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
    index = VideoIndex(videos)
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
            _add(plan, "train" if fields[1] == "1" else "val", found, label, f"{at(split_file, number)} {rel}")
    return plan


def read_k400(annotations: Path, videos: Path) -> Plan:
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
                rows.append(("train" if split == "train" else "val", label, stem, f"{at(csv_file, number)} {stem}"))
    if not rows:
        raise UserError(f"{annotations}: no labelled rows in the Kinetics CSVs")
    names = sorted({_norm(label) for _, label, _, _ in rows})
    shipped = _shipped_order(names, "k400")
    classes = shipped if shipped is not None else sorted({label.replace("_", " ") for _, label, _, _ in rows})
    ids = {_norm(n): i for i, n in enumerate(classes)}
    index = VideoIndex(videos)
    plan = Plan(classes, videos, [], [])
    if shipped is not None:
        plan.notes.append("class ids: the shipped Kinetics-400 list")
    for part, label, stem, where in rows:
        _add(plan, part, index.find_stem(stem), ids[_norm(label)], where)
    return plan


def _split_from_name(csv_file: Path) -> str:
    name = csv_file.stem.lower()
    for split in ("train", "validate", "val", "test"):
        if split in name:
            return split
    raise UserError(f"{csv_file}: no 'split' column and the file name says no split (train/validate/test)")


def read_folder(videos: Path, val_fraction: float = 0.2, seed: int = 0) -> Plan:
    """One sub-folder per class (the folder name is the class, '_' read as a space); every video
    under it is split into train/val per class: ``round(n * val_fraction)`` to val (at least one
    when the class has two or more), chosen by a shuffle seeded with ``seed`` and the class."""
    videos = Path(videos)
    if not videos.is_dir():
        raise UserError(f"{videos}: no such videos folder")
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    folders = sorted(p for p in videos.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{videos}: no class sub-folders (expected one folder of videos per class)")
    classes = [f.name.replace("_", " ").strip() for f in folders]
    duplicates = [n for n, c in Counter(classes).items() if c > 1]
    if duplicates:
        raise UserError(f"{videos}: folders {duplicates} give the same class name")
    plan = Plan(classes, videos, [], [])
    for label, folder in enumerate(folders):
        files = sorted(
            p.relative_to(videos).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        )
        if not files:
            plan.notes.append(f"class folder {folder.name} holds no videos")
            continue
        n_val = int(round(len(files) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(files) >= 2:
            n_val = 1
        # The class name (not its position) seeds the shuffle: adding a class leaves the others' split alone.
        rng = np.random.default_rng([seed & 0xFFFFFFFF, *folder.name.encode("utf-8")])
        order = rng.permutation(len(files))
        val_set = set(order[:n_val].tolist())
        for k, rel in enumerate(files):
            (plan.val if k in val_set else plan.train).append((rel, label))
    return plan


def _check_split(split: int):
    if split not in (1, 2, 3):
        raise UserError(f"--split must be 1, 2 or 3, got {split}")


def _add(plan: Plan, part: str, found: str | None, label: int, where: str):
    if found is None:
        plan.missing[part].append(where)
    else:
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
        _write_json(cache_file, cache)
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
    every frame kept, no audio, a keyframe every ``gop`` frames (cheap seeking), no B-frames."""
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
                               "threads": "1"}
                try:
                    for frame in source.decode(stream):
                        image = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
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
                for packet in out.encode():
                    sink.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=0, sort_keys=True))
    tmp.replace(path)


def _link_videos(out: Path, videos: Path) -> None:
    """Make ``out/videos`` the source folder: nothing to do when it is already, else a symlink."""
    link = out / "videos"
    if link.exists() or link.is_symlink():
        if link.resolve() == videos.resolve():
            return
        if link.is_symlink():
            link.unlink()
        else:
            raise UserError(f"{link}: already exists and is not {videos}; choose another --out")
    link.symlink_to(videos.resolve(), target_is_directory=True)


def pack_tar(out: Path, rels: list[str], source) -> bool:
    """Write ``out/videos.tar``: uncompressed, members named by list path, sorted, with zeroed owner
    and time (the same videos give the same tar). Skipped when a tar with exactly these members
    exists. ``source`` may be the previous tar itself. Returns whether a tar was written."""
    target = out / "videos.tar"
    wanted = sorted(set(rels))
    if target.is_file() and open_source(target).names() == wanted:
        return False
    tmp = out / "videos.tar.part"
    with progress() as bar, tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        task = bar.add_task("packing videos.tar", total=len(wanted), info="")
        for rel in wanted:
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = source.size(rel), 0, 0o644
            path = source.local_path(rel)
            with open(path, "rb") if path else io.BytesIO(source.read(rel)) as f:
                tar.addfile(info, f)
            bar.advance(task)
    os.replace(tmp, target)
    return True


def finish(
    plan: Plan,
    out,
    check: bool = False,
    resize: int | None = None,
    pack: str | None = None,
    workers: int | None = None,
    decoder: str = "auto",
    dataset: str = "",
) -> dict:
    """Make the videos available under ``out``, check them, write the lists and labels, pack.

    1. the working copy: ``out/videos.tar`` when a previous run packed it with the same ``--resize``
       (and removed ``videos/``); else ``out/videos`` holding the re-encoded (``--resize``) or generated
       videos; else ``out/videos`` as a link to the source folder.
    2. ``--check``: decode every listed video of the working copy (what training will read).
    3. lists without the rejected videos, labels, missing.txt, rejected.txt.
    4. ``--pack tar``: ``out/videos.tar`` from the working copy; ``videos/`` (the link, or what this
       command wrote) is removed, so that the folder is option 2 of the seed layout.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    if pack not in (None, "tar"):
        raise UserError(f"--pack must be 'tar', got {pack!r}")
    if decoder not in DECODERS:
        raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if resize is not None and resize < 16:
        raise UserError(f"--resize must be at least 16 pixels, got {resize}")
    videos_dir, tar_path, state_file = out / "videos", out / "videos.tar", out / ".prepare.json"
    generated = plan.videos.resolve() == videos_dir.resolve()
    if generated and resize:
        raise UserError("--resize: generated videos are written at their size already (use --size)")
    state = {"resize": resize, "source": str(plan.videos.resolve())}
    previous = json.loads(state_file.read_text()) if state_file.is_file() else None

    listed = sorted({rel for rel, _ in plan.train + plan.val})
    rejected: dict[str, str] = {}
    rename = {rel: rel for rel in listed}
    if resize:
        rename = {rel: str(Path(rel).with_suffix(".mp4")) for rel in listed}
        clash = Counter(rename.values())
        rename = {rel: (new if clash[new] == 1 else rel + ".mp4") for rel, new in rename.items()}

    same_videos = previous is not None and all(previous.get(k) == v for k, v in state.items())
    reuse_tar = pack == "tar" and tar_path.is_file() and not videos_dir.exists() and same_videos
    if reuse_tar:
        source = open_source(tar_path)
        missing_from_tar = [rel for rel in listed if rename[rel] not in source]
        # Videos absent from the tar were rejected by the run that packed it: say so again.
        old = _read_rejected(out / "rejected.txt")
        rejected.update({rel: old.get(rel, "missing (not in videos.tar)") for rel in missing_from_tar})
    elif resize:
        if videos_dir.is_symlink():
            videos_dir.unlink()
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
        if not generated:
            _link_videos(out, plan.videos)
        source = FolderSource(videos_dir)
    if check and not (reuse_tar and previous.get("checked")):  # a packed tar was checked before packing
        readable = [rel for rel in listed if rel not in rejected]
        failures = check_videos(source, [rename[rel] for rel in readable], out, workers, decoder)
        back = {new: rel for rel, new in rename.items()}
        rejected.update({back[new]: reason for new, reason in failures.items()})
    _write_json(state_file, {**state, "checked": bool(check) or bool(reuse_tar and previous.get("checked"))})

    def final(entries):
        return [(rename[rel], label) for rel, label in entries if rel not in rejected]

    train, val = final(plan.train), final(plan.val)
    if not train and not val:
        raise UserError(f"{out}: no readable videos to list (see {out / 'rejected.txt'})" if rejected
                        else f"{plan.videos}: none of the annotated videos were found")
    write_video_list(out / "train.txt", train)
    write_video_list(out / "val.txt", val)
    write_labels(out / "labels.csv", plan.classes)
    _write_lines(out / "missing.txt", plan.missing["train"] + plan.missing["val"])
    if check or resize or reuse_tar:
        _write_lines(out / "rejected.txt", [f"{rel}\t{reason}" for rel, reason in sorted(rejected.items())],
                     always=True)

    packed_now = False
    if pack == "tar":
        packed_now = pack_tar(out, [rel for rel, _ in train + val], source)
        if videos_dir.is_symlink():
            videos_dir.unlink()
        elif videos_dir.is_dir() and (resize or generated):
            import shutil

            shutil.rmtree(videos_dir)  # only what this command wrote; the tar holds it now

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
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# One function per subcommand


def prepare_ucf101(splits, videos, out, split: int = 1, **options) -> dict:
    return finish(read_ucf101(Path(splits), Path(videos), split), out, dataset="ucf101", **options)


def prepare_hmdb51(splits, videos, out, split: int = 1, **options) -> dict:
    return finish(read_hmdb51(Path(splits), Path(videos), split), out, dataset="hmdb51", **options)


def prepare_k400(annotations, videos, out, **options) -> dict:
    return finish(read_k400(Path(annotations), Path(videos)), out, dataset="k400", **options)


def prepare_folder(videos, out, val_fraction: float = 0.2, seed: int = 0, **options) -> dict:
    return finish(read_folder(Path(videos), val_fraction, seed), out, dataset="folder", **options)


def prepare_synthetic(out, class_set: str = "a", videos_per_class: int = 125, frames: int = 32, size: int = 112,
                      seed: int = 0, val_fraction: float = 0.2, fps: int = 16, overwrite: bool = False,
                      **options) -> dict:
    """Generate the synthetic dataset into ``out`` (skipped for videos already there or in the tar)."""
    from mbgf_cli.data import synthetic

    out = Path(out)
    summary = synthetic.generate(out, class_set=class_set, videos_per_class=videos_per_class, frames=frames,
                                 size=size, seed=seed, val_fraction=val_fraction, fps=fps,
                                 workers=options.get("workers"), overwrite=overwrite)
    train, val = synthetic.plan(synthetic.SyntheticOptions(class_set, videos_per_class, frames, size, fps, seed,
                                                            val_fraction))
    plan = Plan(synthetic.class_names(class_set), out / "videos", train, val)
    result = finish(plan, out, dataset="synthetic", **options)
    result["generated"] = summary["generated"]
    return result
