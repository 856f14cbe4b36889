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

A reader (``ucf101``, ``hmdb51``, ``folder`` in ``official``; ``k400``, ``k600``, ``ssv2`` in
``kinetics``; ``synthetic``) turns annotations into a ``Plan``: classes, train/val entries relative to the source videos folder, missing videos. Then
``finish`` does the options shared by all: ``--check`` (decode every listed video in parallel,
keep the readable ones), ``--resize N`` (re-encode to short side N, in parallel), writing the lists,
``--pack tar``. Re-running is idempotent and resumes: check results are cached in
``DIR/.check.json``, re-encoded videos that exist are kept (each is written under a temporary name
and renamed), lists are only rewritten when they change, and a complete tar is not rewritten.

Nothing the user made is deleted or changed: the source videos are only read; ``DIR/videos`` is
replaced or removed (after packing) only when this command made it, as ``.prepare.json`` records;
files of the layout that are in DIR already but were not written by prepare-data are refused.
A folder prepared into itself (``--videos D --output D``) does not find its own ``videos`` as a class.
The parallel video work (``--check``, ``--resize``) is in ``video_jobs``.
"""

import io
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mbgf_cli.console import progress
from mbgf_cli.data.annotations import check_listable, write_labels, write_video_list
from mbgf_cli.data.kinetics import read_kinetics, read_ssv2
from mbgf_cli.data.official import Plan, read_folder, read_hmdb51, read_ucf101
from mbgf_cli.data.readers import DECODERS
from mbgf_cli.data.sources import FolderSource, open_source
from mbgf_cli.data.video_jobs import check_videos, parallel, resize_job
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_output, atomic_write_json, atomic_write_text, is_stale_temporary

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
    _check_finish_options(plan, out, pack, decoder, resize, generated)
    work = _start(plan, out, resize, pack, generated)
    _make_working_copy(work, resize, workers)
    if check and not work.checked_before:
        readable = [rel for rel in work.listed if rel not in work.rejected]
        failures = check_videos(work.source, [work.rename[rel] for rel in readable], out, workers, decoder)
        back = {new: rel for rel, new in work.rename.items()}
        work.rejected.update({back[new]: reason for new, reason in failures.items()})
    atomic_write_json(out / STATE_FILE, {**work.made, "checked": bool(check) or work.checked_before}, sort_keys=True)
    train, val = _write_layout(work, write_rejected=bool(check or resize or work.reuse_tar))
    packed_now = False
    if pack == "tar":
        packed_now = pack_tar(out, [rel for rel, _ in train + val], work.source)
        _remove_made_videos(out / "videos", work.kind, [work.rename[rel] for rel in work.listed])
        if work.kind == "source":
            plan.notes.append(f"videos.tar written beside {out / 'videos'}, which is left as it is")
    return _summary(work, dataset, train, val, pack, packed_now)


@dataclass
class _Work:
    """What ``finish`` works on: the plan, the output, its working copy of the videos, the rejects."""

    plan: Plan
    out: Path
    kind: str  # what out/videos is: "link", "resized", "generated" (made here) or "source" (the user's)
    made: dict
    listed: list[str]
    rename: dict[str, str]  # listed path -> its path in the working copy
    reuse_tar: bool = False
    checked_before: bool = False
    source: object = None
    rejected: dict[str, str] = field(default_factory=dict)


def _check_finish_options(plan: Plan, out: Path, pack, decoder: str, resize, generated: bool) -> None:
    if pack not in (None, "tar"):
        raise UserError(f"--pack must be 'tar', got {pack!r}")
    if decoder not in DECODERS:
        raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if resize is not None and resize < 16:
        raise UserError(f"--resize must be at least 16 pixels, got {resize}")
    if generated and resize:
        raise UserError("--resize: generated videos are written at their size already (use --size)")
    refuse_empty_plan(plan, out)


def _start(plan: Plan, out: Path, resize, pack, generated: bool) -> _Work:
    """Step 0 and the record of what will be made here (written first, so that a run killed part-way
    knows them as its own)."""
    listed = sorted({rel for rel, _ in plan.train + plan.val})
    for rel in listed:
        check_listable(rel, plan.videos)
    state = _read_state(out)
    _refuse_foreign_files(out, state, generated)
    kind = _videos_kind(out, plan.videos, resize, generated, state)
    rename = {rel: rel for rel in listed}
    if resize:
        rename = {rel: str(Path(rel).with_suffix(".mp4")) for rel in listed}
        clash = Counter(rename.values())
        rename = {rel: (new if clash[new] == 1 else rel + ".mp4") for rel, new in rename.items()}
    made = {"videos": kind, "resize": resize, "source": str(plan.videos.resolve())}
    work = _Work(plan, out, kind, made, listed, rename)
    same_videos = state is not None and all(state.get(k) == v for k, v in made.items() if k != "videos")
    work.reuse_tar = (pack == "tar" and (out / "videos.tar").is_file() and not (out / "videos").exists()
                      and same_videos)
    work.checked_before = bool(work.reuse_tar and state.get("checked"))  # a packed tar was checked before packing
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    atomic_write_json(out / STATE_FILE, {**made, "checked": work.checked_before}, sort_keys=True)
    return work


def _make_working_copy(work: _Work, resize, workers: int) -> None:
    """Step 1: ``work.source`` is the videos training will read; what could not be made is rejected."""
    videos_dir, plan = work.out / "videos", work.plan
    if work.reuse_tar:
        work.source = open_source(work.out / "videos.tar")
        # Videos absent from the tar were rejected by the run that packed it: say so again.
        old = _read_rejected(work.out / "rejected.txt")
        work.rejected.update({rel: old.get(rel, "missing (not in videos.tar)") for rel in work.listed
                              if work.rename[rel] not in work.source})
        return
    if work.kind == "resized":
        if videos_dir.is_symlink():
            videos_dir.unlink()  # the link an earlier run made
        jobs = [(str(plan.videos / rel), str(videos_dir / new), resize) for rel, new in work.rename.items()
                if not (videos_dir / new).is_file()]
        results = parallel(resize_job, jobs, workers, f"resizing to {resize}px") if jobs else []
        for (src, _, _), (ok, reason) in zip(jobs, results, strict=True):
            if not ok:
                work.rejected[Path(src).relative_to(plan.videos).as_posix()] = reason
        work.source = FolderSource(videos_dir)
        work.rejected.update({rel: "resize failed (earlier run)" for rel, new in work.rename.items()
                              if rel not in work.rejected and new not in work.source})
        return
    if work.kind == "link":
        _link_videos(work.out, plan.videos)
    work.source = FolderSource(videos_dir)


def _write_layout(work: _Work, write_rejected: bool) -> tuple[list, list]:
    """Step 3: the split of what is left, refused when empty; then the lists, labels and reports."""
    plan, out, rejected = work.plan, work.out, work.rejected
    kept = [(rel, label) for rel, label in plan.train + plan.val if rel not in rejected]
    if plan.split is not None:
        train, val = plan.split(kept)  # the split is made of what --check left
    else:
        train, val = [e for e in plan.train if e[0] not in rejected], [e for e in plan.val if e[0] not in rejected]
    _write_lines(out / "missing.txt", plan.missing["train"] + plan.missing["val"])
    if write_rejected:
        _write_lines(out / "rejected.txt", [f"{rel}\t{reason}" for rel, reason in sorted(rejected.items())],
                     always=True)
    dropped = f"; {len(rejected)} videos rejected (see {out / 'rejected.txt'})" if rejected else ""
    if not train:
        raise UserError(f"{out / 'train.txt'} would list no videos: none of its videos is readable{dropped}")
    if _val_asked(plan) and not val:
        raise UserError(f"{out / 'val.txt'} would list no videos: {_val_asked(plan)}{dropped}")
    train = [(work.rename[rel], label) for rel, label in train]
    val = [(work.rename[rel], label) for rel, label in val]
    write_video_list(out / "train.txt", train)
    write_video_list(out / "val.txt", val)
    write_labels(out / "labels.csv", plan.classes)
    return train, val


def _summary(work: _Work, dataset: str, train: list, val: list, pack, packed_now: bool) -> dict:
    rejected, plan = work.rejected, work.plan
    reasons = Counter(reason.split(" (")[0] for reason in rejected.values())
    examples = {}
    for rel, reason in sorted(rejected.items()):
        examples.setdefault(reason.split(" (")[0], rel)
    return {
        "dataset": dataset,
        "out": str(work.out),
        "classes": len(plan.classes),
        "train": len(train),
        "val": len(val),
        "missing": {"train": len(plan.missing["train"]), "val": len(plan.missing["val"])},
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "rejected_examples": examples,
        "videos": str(work.out / "videos.tar" if pack == "tar" else work.out / "videos"),
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
    plan = read_kinetics(Path(annotations), Path(videos), "k400", skip=_skip_under(videos, out))
    return finish(plan, out, dataset="k400", **options)


def prepare_k600(annotations, videos, out, **options) -> dict:
    plan = read_kinetics(Path(annotations), Path(videos), "k600", skip=_skip_under(videos, out))
    return finish(plan, out, dataset="k600", **options)


def prepare_ssv2(annotations, videos, out, **options) -> dict:
    plan = read_ssv2(Path(annotations), Path(videos), skip=_skip_under(videos, out))
    return finish(plan, out, dataset="ssv2", **options)


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
