"""The K-shot protocol: nested split sampling, one training run per (variant, K, seed), the table.

Splits. For each class, its training videos are ranked by ``sha256(f"{seed}:{path}")`` and the K
first are taken. The rank does not depend on K, so the K=2 set is inside the K=4 set and so on;
it does not depend on the order of the train list either, and anyone can rebuild a split from
the list and the seed without this code. Splits are written as ``DIR/splits/K{K}_seed{S}.txt``
in the seed's list format (``relative/path.mp4 <label>``), so a run can be repeated or published,
and ``--split-file`` reads such files back instead of sampling.

Runs. Each (variant, K, seed) trains with the training engine from the same starting weights
into ``DIR/runs/<variant>_K<K>_seed<S>/`` and is evaluated on the full val list. A run whose
``summary.json`` exists is read back and skipped; one with a ``last/`` checkpoint and no summary
was interrupted and resumes from it. ``fewshot_run.json`` in each run records what the run was
made from, so that a second invocation with other settings into the same folder is refused
instead of mixing numbers. ``DIR/results.csv`` holds every finished run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mbgf_cli import tables
from mbgf_cli.errors import UserError

VARIANTS = ("clip", "clip+mbgf", "actionclip", "actionclip+mbgf", "xclip", "xclip+mbgf")
DEFAULT_VARIANTS = ("clip", "clip+mbgf", "actionclip", "actionclip+mbgf", "xclip")
SPLIT_NAME = re.compile(r"^K(\d+)_seed(.+)\.txt$")
RESULT_FIELDS = ("variant", "shots", "seed", "top1", "top5", "mean_class", "epoch", "videos",
                 "split_file", "run_dir")

Entry = tuple[str, int]  # (relative path, label), what read_video_list returns


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    name: str  # "actionclip+mbgf"
    variant: str  # "actionclip": the temporal head
    mbgf: bool


def parse_variant(name: str) -> Variant:
    key = name.strip().lower()
    if key not in VARIANTS:
        raise UserError(f"--variants: unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    base = tables.base_variant(key)
    return Variant(name=key, variant=base or key, mbgf=base is not None)


# --------------------------------------------------------------------------- splits


def shot_rank(seed: int | str, path: str) -> str:
    """The sort key of a video in the K-shot ranking: a hash of the seed and the video's path."""
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def check_enough_videos(
    entries: Sequence[Entry], shots: int, num_classes: int, class_names: Sequence[str] | None = None,
    source: str | os.PathLike = "train list",
) -> None:
    """A class with fewer than ``shots`` training videos is an error naming every such class."""
    counts = [0] * num_classes
    for _, label in entries:
        counts[label] += 1
    short = [c for c in range(num_classes) if counts[c] < shots]
    if not short:
        return
    def name(c: int) -> str:
        return repr(class_names[c]) if class_names is not None else f"class {c}"
    listed = ", ".join(f"{name(c)} ({counts[c]})" for c in short[:20])
    more = f" and {len(short) - 20} more" if len(short) > 20 else ""
    raise UserError(
        f"{source}: {len(short)} class{'es' if len(short) > 1 else ''} "
        f"{'have' if len(short) > 1 else 'has'} fewer than K={shots} training videos: {listed}{more}"
    )


def sample_shots(
    entries: Sequence[Entry], shots: Sequence[int], seed: int | str, num_classes: int,
    class_names: Sequence[str] | None = None, source: str | os.PathLike = "train list",
) -> dict[int, list[Entry]]:
    """``{K: K videos per class}`` for every K in ``shots``, nested, deterministic from ``seed``.

    Each list is ordered by class, then by rank. Duplicate lines in the train list count once.
    """
    unique = sorted(set(entries))
    check_enough_videos(unique, max(shots), num_classes, class_names, source)
    ranked: dict[int, list[str]] = {c: [] for c in range(num_classes)}
    for path, label in unique:
        ranked[label].append(path)
    for label in ranked:
        ranked[label].sort(key=lambda p: shot_rank(seed, p))
    return {k: [(p, c) for c in range(num_classes) for p in ranked[c][:k]] for k in shots}


def split_path(out_dir: str | os.PathLike, shots: int, seed: int | str) -> Path:
    return Path(out_dir) / "splits" / f"K{shots}_seed{seed}.txt"


def write_video_list(path: str | os.PathLike, entries: Iterable[Entry]) -> Path:
    """Write a list in the seed's format, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rel, label in entries:
            f.write(f"{rel} {label}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class ShotSplit:
    shots: int
    seed: str
    path: Path


def write_splits(
    out_dir: str | os.PathLike, entries: Sequence[Entry], shots: Sequence[int], seeds: Sequence[int],
    num_classes: int, class_names: Sequence[str] | None = None, source: str | os.PathLike = "train list",
) -> list[ShotSplit]:
    """Sample and write ``DIR/splits/K{K}_seed{S}.txt`` for every K and seed.

    An existing split file with other content is refused: its runs were trained on it.
    """
    splits = []
    for seed in seeds:
        for k, chosen in sample_shots(entries, shots, seed, num_classes, class_names, source).items():
            path = split_path(out_dir, k, seed)
            text = "".join(f"{rel} {label}\n" for rel, label in chosen)
            if path.exists() and path.read_text(encoding="utf-8") != text:
                raise UserError(
                    f"{path}: exists with another K-shot sample (another train list?); "
                    "use another --output, or --split-file to train on it"
                )
            if not path.exists():
                write_video_list(path, chosen)
            splits.append(ShotSplit(shots=k, seed=str(seed), path=path))
    return splits


def read_split_files(
    paths: Sequence[str | os.PathLike], num_classes: int,
    read_list: Callable[[Path, int], list[Entry]] | None = None,
) -> list[ShotSplit]:
    """Given K-shot lists: K and the seed come from a ``K{K}_seed{S}.txt`` name; for any other name,
    K is the number of videos per class (the same for every class) and the seed is the file's stem.
    """
    if read_list is None:
        from mbgf_cli.data import read_video_list as read_list
    splits = []
    for raw in paths:
        path = Path(raw)
        entries = read_list(path, num_classes)
        counts = [0] * num_classes
        for _, label in entries:
            counts[label] += 1
        sizes = sorted(set(counts))
        match = SPLIT_NAME.match(path.name)
        if match:
            shots, seed = int(match.group(1)), match.group(2)
            if sizes != [shots]:
                raise UserError(f"{path}: named for K={shots} but holds {_describe_counts(counts)}")
        else:
            if len(sizes) != 1 or sizes[0] == 0:
                raise UserError(f"{path}: a K-shot list holds the same number of videos for every "
                                f"class; this one holds {_describe_counts(counts)}")
            shots, seed = sizes[0], path.stem
        splits.append(ShotSplit(shots=shots, seed=seed, path=path))
    keys = [(s.shots, s.seed) for s in splits]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UserError(f"--split-file: several files give K={dup[0][0]} seed {dup[0][1]}")
    return splits


def _describe_counts(counts: Sequence[int]) -> str:
    sizes = sorted(set(counts))
    if len(sizes) == 1:
        return f"{sizes[0]} videos in every class"
    return f"between {sizes[0]} and {sizes[-1]} videos per class"


# --------------------------------------------------------------------------- runs and results


def run_name(variant: str, shots: int, seed: int | str) -> str:
    return f"{variant}_K{shots}_seed{seed}"


def run_dir_for(out_dir: str | os.PathLike, variant: str, shots: int, seed: int | str) -> Path:
    return Path(out_dir) / "runs" / run_name(variant, shots, seed)


RUN_RECORD = "fewshot_run.json"


def file_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_state(run_dir: str | os.PathLike) -> str:
    """``done`` (summary.json written), ``interrupted`` (a last/ checkpoint only) or ``new``."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return "done"
    if (run_dir / "last").is_dir():
        return "interrupted"
    return "new"


def check_run_record(run_dir: str | os.PathLike, record: dict) -> None:
    """Write the run's record, or compare it with the one there: a run is only resumed or reused
    with the settings that made it."""
    path = Path(run_dir) / RUN_RECORD
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: unreadable ({e}); delete the run folder to redo the run") from e
        differing = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if differing:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {record.get(k)!r}" for k in differing[:4])
            raise UserError(
                f"{path}: this run was made with other settings ({shown}); "
                "use another --output, or delete the run folder to redo it"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunResult:
    variant: str
    shots: int
    seed: str
    top1: float  # %
    top5: float | None = None  # %
    mean_class: float | None = None  # %
    epoch: int | None = None
    videos: int | None = None
    split_file: str = ""
    run_dir: str = ""

    def row(self) -> dict:
        return {f: getattr(self, f) for f in RESULT_FIELDS}


def percent(value) -> float | None:
    """The engine's summary holds accuracies as fractions in [0, 1]; tables show %."""
    return None if value is None else 100.0 * float(value)


def read_run_result(run_dir: str | os.PathLike, variant: str, shots: int, seed: int | str,
                    split_file: str | os.PathLike = "", report: str = "final") -> RunResult:
    """A finished run's numbers from its ``summary.json`` (``report``: ``final`` or ``best``)."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        entry = summary[report]
        top1 = percent(entry["top1"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a finished training summary ({type(e).__name__}: {e})") from e
    return RunResult(
        variant=variant, shots=shots, seed=str(seed), top1=top1,
        top5=percent(entry.get("top5")), mean_class=percent(entry.get("mean_class")),
        epoch=entry.get("epoch"), videos=entry.get("videos", entry.get("num_videos")),
        split_file=str(split_file), run_dir=str(run_dir),
    )


def write_results_csv(path: str | os.PathLike, results: Sequence[RunResult]) -> Path:
    """Every run's numbers, one row per (variant, K, seed); accuracies in %."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow({k: ("" if v is None else (round(v, 4) if isinstance(v, float) else v))
                             for k, v in r.row().items()})
    os.replace(tmp, path)
    return path


def read_results_csv(path: str | os.PathLike) -> list[RunResult]:
    def num(text: str, kind=float):
        return None if text == "" else kind(text)
    with open(path, newline="", encoding="utf-8") as f:
        return [
            RunResult(variant=r["variant"], shots=int(r["shots"]), seed=r["seed"], top1=float(r["top1"]),
                      top5=num(r["top5"]), mean_class=num(r["mean_class"]), epoch=num(r["epoch"], int),
                      videos=num(r["videos"], int), split_file=r["split_file"], run_dir=r["run_dir"])
            for r in csv.DictReader(f)
        ]


def results_table(results: Sequence[RunResult], variants: Sequence[str], shots: Sequence[int],
                  title: str = "K-shot top-1 (%)") -> tables.ResultTable:
    return tables.shots_table(tables.collect((r.variant, r.shots, r.top1) for r in results),
                              variants, shots, title=title)


# --------------------------------------------------------------------------- the protocol


@dataclass(frozen=True)
class RunSpec:
    """One training run of the protocol."""

    variant: Variant
    split: ShotSplit
    run_dir: Path
    resume: bool  # an interrupted run: continue from run_dir/last


def plan_runs(out_dir: str | os.PathLike, variants: Sequence[Variant], splits: Sequence[ShotSplit]) -> list[RunSpec]:
    """Every (variant, K, seed), K-major so that the table fills column by column."""
    order = sorted(splits, key=lambda s: (s.shots, _seed_key(s.seed)))
    return [
        RunSpec(variant=v, split=s, run_dir=(d := run_dir_for(out_dir, v.name, s.shots, s.seed)),
                resume=run_state(d) == "interrupted")
        for s in order for v in variants
    ]


def _seed_key(seed: str):
    return (0, int(seed), "") if seed.isdigit() else (1, 0, seed)


def run_protocol(
    out_dir: str | os.PathLike,
    runs: Sequence[RunSpec],
    train_one: Callable[[RunSpec], None],
    settings: dict,
    report: str = "final",
    on_run: Callable[[int, int, RunSpec, str], None] | None = None,
) -> list[RunResult]:
    """Train (or read back) every run, writing ``DIR/results.csv`` after each one.

    ``train_one(spec)`` trains one run into ``spec.run_dir`` (resuming when ``spec.resume``) and
    leaves its ``summary.json`` there; ``settings`` is everything else a run depends on (JSON-able),
    recorded per run. ``on_run(i, n, spec, state)`` is told before each run (state: done /
    interrupted / new).
    """
    out_dir = Path(out_dir)
    csv_path = out_dir / "results.csv"
    # Runs of earlier invocations into the same folder (other variants, K or seeds) stay listed.
    earlier = {}
    if csv_path.is_file():
        try:
            earlier = {(r.variant, r.shots, r.seed): r for r in read_results_csv(csv_path)}
        except (OSError, ValueError, KeyError, TypeError):
            earlier = {}  # rewritten below from the runs themselves
    results: list[RunResult] = []
    for i, spec in enumerate(runs):
        record = {**settings, "variant": spec.variant.name, "shots": spec.split.shots,
                  "seed": spec.split.seed, "split_sha256": file_digest(spec.split.path)}
        state = run_state(spec.run_dir)
        check_run_record(spec.run_dir, record)
        if on_run is not None:
            on_run(i, len(runs), spec, state)
        if state != "done":
            train_one(RunSpec(spec.variant, spec.split, spec.run_dir, resume=state == "interrupted"))
            if run_state(spec.run_dir) != "done":
                raise UserError(f"{spec.run_dir}: training ended without writing summary.json")
        results.append(read_run_result(spec.run_dir, spec.variant.name, spec.split.shots, spec.split.seed,
                                       spec.split.path, report=report))
        earlier.pop((spec.variant.name, spec.split.shots, spec.split.seed), None)
        write_results_csv(csv_path, [*earlier.values(), *results])
    return results
