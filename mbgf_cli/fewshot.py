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


def read_split_files(paths: Sequence[str | os.PathLike], num_classes: int) -> list[ShotSplit]:
    """Given K-shot lists: K and the seed come from a ``K{K}_seed{S}.txt`` name; for any other name,
    K is the number of videos per class (the same for every class) and the seed is the file's stem.
    """
    from mbgf_cli.data import read_video_list

    splits = []
    for raw in paths:
        path = Path(raw)
        entries = read_video_list(path, num_classes)
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
        row = {f: getattr(self, f) for f in RESULT_FIELDS}
        if self.seed.isdigit():  # a sampled split's seed; a --split-file's may be any name
            row["seed"] = int(self.seed)
        return row


def percent(value) -> float | None:
    """The engine's summary holds accuracies as fractions in [0, 1]; tables show %."""
    return None if value is None else round(100.0 * float(value), 4)  # a count over videos: 4 places hold it


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


# --------------------------------------------------------------------------- starting weights


def clip_weights_from_checkpoint(checkpoint_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Save the CLIP part of an mbgf checkpoint as a CLIP safetensors file (OpenAI's key names), the
    ``--pretrained`` of the variants whose architecture differs from the checkpoint's.

    Written once (atomically); the file is what every such run starts from.
    """
    out_path = Path(out_path)
    if out_path.is_file():
        return out_path
    from safetensors.torch import save_file

    import clip
    from mbgf_cli import checkpoint

    model, _ = checkpoint.load_checkpoint(checkpoint_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if model.is_clip_parameter(k)}
    try:
        clip.build_model(state, strict=True)  # what --pretrained will read back
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{checkpoint_dir}: its CLIP weights cannot be taken apart from the video model ({e}); "
                        "few-shot the checkpoint's own variant only") from e
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    save_file(state, str(tmp), metadata={"source": str(checkpoint_dir)})
    os.replace(tmp, out_path)
    return out_path


# --------------------------------------------------------------------------- the command's engine

# X-CLIP's few-shot recipe (configs/hmdb51/16_32.yaml, configs/ucf101/16_32.yaml on top of its
# defaults), as TrainConfig fields: ViT-B/16 from CLIP, 32 frames at 224, 50 epochs with 5 of warm-up,
# lr 2e-6 (new modules x10), cosine to lr/100, weight decay 0.001, label smoothing 0.1, mixup/cutmix,
# text frozen, and batch 4 x accumulation 2 on each of its 8 GPUs: a total batch of 64.
PUBLISHED_RECIPE = dict(
    model="b16", frames=32, input_size=224, epochs=50, warmup_epochs=5, lr=2e-6, new_lr_mult=10.0,
    min_lr_ratio=0.01, weight_decay=0.001, batch_size=4, total_batch=64, label_smoothing=0.1, mixup=0.8,
    cutmix=1.0, freeze_text=True, prompts="all", flip=True,
)

# The synthetic demonstration: fine-tune the tiny model trained on class set a (`mbgf train --dataset
# synthetic`) on K videos per class of set b. Batches of 8 so that K=2 (24 clips) still makes steps;
# 60 epochs at the preset's lr (measured at K=4/16 with MBGF on 120 val videos: 30 epochs at lr 1e-3 gave
# 28/47%, 60 at 2e-3 30/71%, 100 at 1e-3 28/68%; lr 3e-4 or less was worse); the rest (no flip: direction is the label; frames in
# memory; ...) is the synthetic preset's recipe.
SYNTHETIC_RECIPE = dict(epochs=60, warmup_epochs=3, lr=2e-3, batch_size=8, total_batch=8)

# Set b of the synthetic generator, in the cache: 100 train and 25 val videos per class (300 val videos,
# so a K-shot result moves in steps of 0.33%).
SYNTHETIC_B_GENERATION = dict(class_set="b", videos_per_class=125)

# Fields of a run's TrainConfig that do not change its numbers (or are set per run).
_NOT_RECORDED = ("out", "resume", "train_list", "variant", "mbgf", "init", "pretrained", "workers", "decoder",
                 "device", "plot", "strict", "inject_nan_at_step", "stop_at_step", "eval_every", "seed")


@dataclass
class FewShotConfig:
    """``mbgf fewshot``: the protocol's choices plus a TrainConfig template shared by every run
    (its ``None`` fields take the few-shot recipe, then the dataset preset's)."""

    train: object  # mbgf_cli.training.TrainConfig; variant, mbgf, train_list and out are set per run
    out: str = "runs/fewshot"
    shots: tuple[int, ...] = (2, 4, 8, 16)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    seeds: tuple[int, ...] = (0,)
    split_files: tuple[str, ...] = ()


@dataclass
class FewShotOutcome:
    results: list[RunResult]
    table: tables.ResultTable
    out: Path
    splits: list[ShotSplit]
    start: str  # what the runs started from, in words


def default_variants(dataset: str | None) -> tuple[str, ...]:
    return ("clip", "clip+mbgf") if dataset == "synthetic" else DEFAULT_VARIANTS


def default_synthetic_init() -> Path:
    """The run ``mbgf train --dataset synthetic`` writes (its default output folder), ``best/``."""
    return Path("runs/synthetic-tiny-clip-mbgf") / "best"


def recipe_for(dataset: str | None) -> dict:
    return SYNTHETIC_RECIPE if dataset == "synthetic" else PUBLISHED_RECIPE


def fill_recipe(train_cfg, dataset: str | None):
    """The TrainConfig template with the few-shot recipe in its unset fields."""
    from dataclasses import replace

    values = {k: v for k, v in recipe_for(dataset).items() if getattr(train_cfg, k) is None}
    return replace(train_cfg, **values)


def resolve_list(root: Path, name: str | None, default: str) -> Path:
    """As the training engine reads lists: a path as given when it exists, else under the root."""
    if name is None:
        return root / default
    path = Path(name)
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        return root / path
    return path


def dataset_paths(train_cfg) -> tuple[Path, Path, Path]:
    """(root, train list, label file) of the template; ``synthetic`` is class set b, generated once."""
    from mbgf_cli import presets

    preset = presets.get_preset(train_cfg.dataset) if train_cfg.dataset else None
    if train_cfg.root:
        root = Path(train_cfg.root)
    elif train_cfg.dataset == "synthetic":
        root = presets.ensure_synthetic(SYNTHETIC_B_GENERATION)
    else:
        raise UserError("give the dataset folder with --root DIR (videos/ or videos.tar, train.txt, val.txt), "
                        "or --dataset synthetic")
    train_list = resolve_list(root, train_cfg.train_list, "train.txt")
    if not train_list.is_file():
        raise UserError(f"{train_list}: no such train list (give --train-list)")
    label_file = presets.resolve_label_file(root, train_cfg.labels, preset)
    return root, train_list, label_file


def starting_weights(cfg: FewShotConfig, variants: Sequence[Variant]) -> tuple[dict[str, dict], str, dict]:
    """Per variant, the TrainConfig fields that say where it starts; a sentence saying the same;
    and what the run record keeps of it.

    ``--init CHECKPOINT``: the variant the checkpoint holds starts from the whole checkpoint; every other
    variant from the checkpoint's CLIP weights (new modules freshly initialised), so all runs share every
    weight their architectures have in common. Otherwise every variant starts from ``--pretrained`` CLIP
    (default: the backbone's released weights).
    """
    train_cfg = cfg.train
    init = train_cfg.init
    if init is None and train_cfg.dataset == "synthetic" and train_cfg.pretrained is None:
        init = str(default_synthetic_init())
        if not (Path(init) / "model.safetensors").is_file():
            raise UserError(
                f"{init}: no starting model; the synthetic few-shot demonstration starts from the tiny model "
                "trained on class set a: run `mbgf train --dataset synthetic` first, or give --init CHECKPOINT")
    if init is None:
        name = train_cfg.pretrained or "the backbone's released CLIP weights"
        return ({v.name: {"pretrained": train_cfg.pretrained} for v in variants},
                f"CLIP ({name})", {"start": train_cfg.pretrained})

    from mbgf_cli import checkpoint

    init_dir = checkpoint.resolve_directory(init)
    config = checkpoint.read_meta(init_dir)["config"]
    held = Variant(name=config["variant"] + ("+mbgf" if config.get("mbgf") else ""), variant=config["variant"],
                   mbgf=bool(config.get("mbgf")))
    digest = file_digest(checkpoint.model_file(init_dir))
    per_variant = {}
    for v in variants:
        if (v.variant, v.mbgf) == (held.variant, held.mbgf):
            per_variant[v.name] = {"init": str(init_dir)}
        else:  # named by the checkpoint's digest: a retrained checkpoint never meets an old extract
            clip_file = clip_weights_from_checkpoint(init_dir, Path(cfg.out) / f"start_clip-{digest[:12]}.safetensors")
            per_variant[v.name] = {"pretrained": str(clip_file.resolve())}
    words = (f"{init_dir} ({held.name}; other variants from its CLIP weights)"
             if any("pretrained" in p for p in per_variant.values()) else str(init_dir))
    record = {"start": str(init_dir.resolve()), "start_sha256": digest,
              "start_model": config["model"], "start_frames": config.get("frames"),
              "start_input_size": config.get("input_size")}
    return per_variant, words, record


def run_fewshot(cfg: FewShotConfig, on_run: Callable[[int, int, RunSpec, str], None] | None = None) -> FewShotOutcome:
    """The whole protocol: splits, every (variant, K, seed) run (resumable), results.csv, the table."""
    from dataclasses import replace

    from mbgf_cli import training
    from mbgf_cli.data import read_labels, read_video_list

    out = Path(cfg.out)
    variants = [parse_variant(v) for v in dict.fromkeys(cfg.variants)]
    if not variants:
        raise UserError("--variants: give at least one variant")
    template = fill_recipe(cfg.train, cfg.train.dataset)
    root, train_list, label_file = dataset_paths(template)
    class_names = read_labels(label_file)
    per_variant, start_words, start_record = starting_weights(cfg, variants)

    if cfg.split_files:
        splits = read_split_files(cfg.split_files, len(class_names))
    else:
        if not cfg.shots or any(k < 1 for k in cfg.shots):
            raise UserError("--shots: give one or more K of at least 1")
        entries = read_video_list(train_list, len(class_names))
        splits = write_splits(out, entries, sorted(set(cfg.shots)), list(dict.fromkeys(cfg.seeds)),
                              len(class_names), class_names, source=train_list)

    if "start_model" in start_record:
        # Runs from a checkpoint take its backbone, frames and input size (frames and size: unless told).
        if cfg.train.model not in (None, start_record["start_model"]):
            raise UserError(f"--model {cfg.train.model}: the --init checkpoint {start_record['start']} is a "
                            f"{start_record['start_model']} model")
        template = replace(template, model=start_record["start_model"],
                           frames=cfg.train.frames or start_record["start_frames"],
                           input_size=cfg.train.input_size or start_record["start_input_size"])
    template = replace(template, root=str(root.resolve()), labels=str(label_file.resolve()), init=None,
                       pretrained=None, val_list=str(resolve_list(root, template.val_list, "val.txt").resolve()),
                       eval_every=max(template.epochs, 1))  # the full val list once, after the last epoch
    settings = {k: v for k, v in template.to_dict().items() if k not in _NOT_RECORDED}
    settings.update(start_record)

    def train_one(spec: RunSpec) -> None:
        if spec.resume:
            run_cfg = replace(template, resume=str(spec.run_dir / "last"))
        else:
            seed = int(spec.split.seed) if spec.split.seed.isdigit() else template.seed
            run_cfg = replace(template, variant=spec.variant.variant, mbgf=spec.variant.mbgf,
                              train_list=str(spec.split.path.resolve()), out=str(spec.run_dir), seed=seed,
                              **per_variant[spec.variant.name])
        training.train(run_cfg)

    runs = plan_runs(out, variants, splits)
    results = run_protocol(out, runs, train_one, settings, on_run=on_run)
    shots = sorted({s.shots for s in splits})
    table = results_table(results, [v.name for v in variants], shots,
                          title=f"{template.dataset or root.name}: K-shot top-1 (%), "
                                f"{len({s.seed for s in splits})} seed(s)")
    (out / "table.md").write_text(tables.to_markdown(table), encoding="utf-8")
    return FewShotOutcome(results=results, table=table, out=out, splits=splits, start=start_words)


# --------------------------------------------------------------------------- zero-shot over splits

SPLIT_PLACEHOLDER = "{split}"
METRICS = ("top1", "top5", "mean_class")


@dataclass
class SplitResult:
    split: int
    root: str
    list: str
    numbers: dict  # as `mbgf eval --json`: top1, top5, mean_class (fractions), videos, skipped


@dataclass
class SplitsSummary:
    model: str
    views: str
    splits: list[SplitResult]
    mean: dict  # per metric, fractions
    std: dict  # per metric, sample standard deviation (n - 1); None with one split

    def to_json(self) -> dict:
        return {"model": self.model, "views": self.views,
                "splits": [{"split": s.split, "root": s.root, "list": s.list, **s.numbers} for s in self.splits],
                "mean": self.mean, "std": self.std}


def split_data(root: str | None, list_file: str | None, split: int) -> tuple[str, str | None]:
    """Where split N's test list is: ``{split}`` in ``--root`` or ``--list`` is replaced by N; else
    ``ROOT/split{N}/`` is the dataset folder of split N, as ``mbgf prepare-data ucf101 --split N --out
    ROOT/split{N}`` writes it (its val.txt is the split's test list)."""
    if root is None:
        raise UserError("--splits: give the dataset folder with --root DIR (with split1/, split2/, ... in it, "
                        "or {split} in the path)")
    if SPLIT_PLACEHOLDER in root or (list_file and SPLIT_PLACEHOLDER in list_file):
        return root.replace(SPLIT_PLACEHOLDER, str(split)), (list_file.replace(SPLIT_PLACEHOLDER, str(split))
                                                              if list_file else None)
    folder = Path(root) / f"split{split}"
    if not folder.is_dir():
        raise UserError(f"{root}: no split{split}/ folder for --splits {split}; write each split with "
                        f"`mbgf prepare-data ucf101|hmdb51 --split N --out {Path(root) / 'splitN'}`, or put "
                        "{split} in --root or --list")
    return str(folder), list_file


def zero_shot_over_splits(cfg, splits: Sequence[int],
                          evaluate: Callable | None = None) -> SplitsSummary:
    """``mbgf eval --zero-shot ... --splits 1 2 3``: evaluate on each split's test list and take the mean
    and standard deviation over splits (the X-CLIP zero-shot protocol). ``cfg`` is an
    :class:`mbgf_cli.evaluation.EvalConfig`; ``evaluate`` defaults to the evaluation engine."""
    from dataclasses import replace

    if evaluate is None:
        from mbgf_cli.evaluation import evaluate
    splits = list(dict.fromkeys(splits))
    if not splits:
        raise UserError("--splits: give one or more split numbers, e.g. --splits 1 2 3")
    if not cfg.zero_shot:
        raise UserError("--splits evaluates zero-shot over official splits: add --zero-shot --pretrained NAME")
    if cfg.predictions or cfg.plot:
        raise UserError("--splits: --predictions and --plot describe one list; evaluate a single split for them")
    results, model, views = [], "", ""
    for split in splits:
        root, list_file = split_data(cfg.root, cfg.list_file, split)
        result, info = evaluate(replace(cfg, root=root, list_file=list_file))
        results.append(SplitResult(split=split, root=root, list=str(info["list"]), numbers=result.numbers()))
        model, views = info["model"], info["views"]
    mean, std = {}, {}
    for metric in METRICS:
        values = [r.numbers[metric] for r in results]
        mean[metric], std[metric] = tables.mean_std(values)
    return SplitsSummary(model=model, views=views, splits=results, mean=mean, std=std)


def splits_table(summary: SplitsSummary):
    """A row per split, then the mean (± std), in %."""
    from rich.table import Table

    table = Table(title=f"{summary.model}, zero-shot over {len(summary.splits)} split(s) ({summary.views} views)",
                  title_justify="left")
    for column in ("split", "top-1 (%)", "top-5 (%)", "mean class (%)", "videos", "skipped", "list"):
        table.add_column(column, justify="left" if column == "list" else "right")
    for s in summary.splits:
        table.add_row(str(s.split), *[f"{100 * s.numbers[m]:.2f}" for m in METRICS], str(s.numbers["videos"]),
                      str(s.numbers["skipped"]), s.list)
    table.add_row("[bold]mean[/bold]", *[
        f"[bold]{100 * summary.mean[m]:.2f}" + ("" if summary.std[m] is None else f" ± {100 * summary.std[m]:.2f}")
        + "[/bold]" for m in METRICS], str(sum(s.numbers["videos"] for s in summary.splits)),
        str(sum(s.numbers["skipped"] for s in summary.splits)), "", end_section=False)
    return table
