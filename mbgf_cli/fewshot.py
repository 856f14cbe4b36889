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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fusion.config import VARIANTS as MODEL_VARIANTS
from mbgf_cli import presets, tables
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_output, atomic_write_json, atomic_write_text

VARIANTS = tuple(f"{variant}{mbgf}" for variant in MODEL_VARIANTS for mbgf in ("", "+mbgf"))  # the registry's
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
    from mbgf_cli.data import read_video_list, write_video_list

    splits = []
    for seed in seeds:
        for k, chosen in sample_shots(entries, shots, seed, num_classes, class_names, source).items():
            path = split_path(out_dir, k, seed)
            if path.exists() and read_video_list(path, num_classes) != chosen:
                raise UserError(
                    f"{path}: exists with another K-shot sample (another train list?); "
                    "use another --output, or --split-file to train on it"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video_list(path, chosen)  # unchanged files are left alone
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
    from mbgf_cli import outputs, run_folder

    run_folder.claim(path.parent)  # a training run's folder, holding the few-shot record beside the run
    outputs.record_outputs(path.parent, run_folder.KIND, [RUN_RECORD])
    atomic_write_json(path, record, sort_keys=True)


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
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else (round(v, 4) if isinstance(v, float) else v))
                          for k, v in r.row().items()} for r in results)
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
    with atomic_output(out_path) as tmp:
        save_file(state, str(tmp), metadata={"source": str(checkpoint_dir)})
    return out_path


# --------------------------------------------------------------------------- the command's engine

KIND = "fewshot"  # the output folder's marker (mbgf_cli.outputs)
WRITES = ("splits", "runs", "results.csv", "table.md")  # beside a start_clip-*.safetensors with --init


# Fields of a run's TrainConfig that do not change its numbers (or are set per run).
_NOT_RECORDED = ("out", "resume", "train_list", "variant", "mbgf", "init", "pretrained", "workers", "decoder",
                 "device", "plot", "strict", "inject_nan_at_step", "stop_at_step", "eval_every", "seed")


@dataclass
class FewShotConfig:
    """``mbgf fewshot``: the protocol's choices plus a TrainConfig template shared by every run
    (its ``None`` fields take the few-shot recipe, then the dataset preset's)."""

    train: object  # mbgf_cli.train_config.TrainConfig; variant, mbgf, train_list and out are set per run
    out: str = "runs/fewshot"
    shots: tuple[int, ...] = (2, 4, 8, 16)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    seeds: tuple[int, ...] = (0,)
    split_files: tuple[str, ...] = ()
    overwrite: bool = False  # write beside the files of a folder that is not a previous protocol's
    kind: str = KIND  # the command whose output ``out`` is (base2novel shares the starting weights)


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


def fill_recipe(train_cfg):
    """The TrainConfig template with the few-shot recipe in its unset fields."""
    recipe = presets.SYNTHETIC_FEWSHOT_RECIPE if train_cfg.dataset == "synthetic" else presets.FEWSHOT_RECIPE
    return replace(train_cfg, **{k: v for k, v in recipe.items() if getattr(train_cfg, k) is None})


def dataset_paths(train_cfg) -> tuple[Path, Path, Path, Path]:
    """(root, train list, val list, label file) of the template; ``synthetic`` is class set b, generated
    once into the cache."""
    preset = presets.get_preset(train_cfg.dataset) if train_cfg.dataset else None
    root = presets.dataset_root(train_cfg.root, train_cfg.dataset, generation=presets.SYNTHETIC_B_GENERATION)
    train_list = presets.resolve_list(root, train_cfg.train_list, "train.txt", "--train-list")
    val_list = presets.resolve_list(root, train_cfg.val_list, "val.txt", "--val-list")
    label_file = presets.resolve_label_file(root, train_cfg.labels, preset)
    return root, train_list, val_list, label_file


def synthetic_start(train_cfg) -> Path:
    """The starting model of the synthetic demonstration: what ``mbgf train --dataset synthetic`` wrote
    (``runs/synthetic-tiny-clip-mbgf/best``), else, for the embedded data, the one in the cache, trained
    there first (or its interrupted training resumed) when there is none."""
    from mbgf_cli import training

    written = default_synthetic_init()
    if (written / "model.safetensors").is_file():
        return written
    if train_cfg.root is not None:
        raise UserError(
            f"{written}: no starting model; the synthetic few-shot demonstration starts from the tiny model "
            "trained on class set a: run `mbgf train --dataset synthetic` first, or give --init CHECKPOINT")
    run_dir = presets.synthetic_start_dir()
    if not (run_dir / "summary.json").is_file():
        from mbgf_cli.console import err_console

        err_console.print(f"no starting model in the cache: training it first on class set a (`mbgf train --dataset "
                          f"synthetic`) into {run_dir}", highlight=False, soft_wrap=True)
        resume = str(run_dir / "last") if (run_dir / "last").is_dir() else None
        training.train(training.TrainConfig(dataset="synthetic", out=None if resume else str(run_dir), resume=resume,
                                            device=train_cfg.device, plot=False))
    return run_dir / "best"


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
        init = str(synthetic_start(train_cfg))
    if init is None:
        name = train_cfg.pretrained or "the backbone's released CLIP weights"
        return ({v.name: {"pretrained": train_cfg.pretrained} for v in variants},
                f"CLIP ({name})", {"start": train_cfg.pretrained})

    from mbgf_cli import checkpoint, outputs

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
            clip_file = Path(cfg.out) / f"start_clip-{digest[:12]}.safetensors"
            outputs.record_outputs(cfg.out, cfg.kind, [clip_file.name])  # before it is written: known as mbgf's
            clip_file = clip_weights_from_checkpoint(init_dir, clip_file)
            per_variant[v.name] = {"pretrained": str(clip_file.resolve())}
    words = (f"{init_dir} ({held.name}; other variants from its CLIP weights)"
             if any("pretrained" in p for p in per_variant.values()) else str(init_dir))
    record = {"start": str(init_dir.resolve()), "start_sha256": digest,
              "start_model": config["model"], "start_frames": config.get("frames"),
              "start_input_size": config.get("input_size")}
    return per_variant, words, record


def run_fewshot(cfg: FewShotConfig, on_run: Callable[[int, int, RunSpec, str], None] | None = None) -> FewShotOutcome:
    """The whole protocol: splits, every (variant, K, seed) run (resumable), results.csv, the table."""
    from mbgf_cli import outputs, training
    from mbgf_cli.data import read_labels, read_video_list

    out = outputs.check_output_folder(cfg.out, "--output", cfg.kind, cfg.overwrite, writes=WRITES)
    variants = [parse_variant(v) for v in dict.fromkeys(cfg.variants)]
    if not variants:
        raise UserError("--variants: give at least one variant")
    template = fill_recipe(cfg.train)
    root, train_list, val_list, label_file = dataset_paths(template)  # data problems first
    class_names = read_labels(label_file)
    outputs.record_outputs(out, cfg.kind, WRITES)  # before they are written: a kill leaves them known as mbgf's
    per_variant, start_words, start_record = starting_weights(cfg, variants)

    if cfg.split_files:
        # ViFi-CLIP's published lists are rewritten in the dataset's paths first.
        from mbgf_cli.protocols.published import dataset_split_files

        splits = read_split_files(dataset_split_files(cfg.split_files, train_list, len(class_names), out),
                                  len(class_names))
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
                       pretrained=None, val_list=str(val_list.resolve()),
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
    atomic_write_text(out / "table.md", tables.to_markdown(table))
    return FewShotOutcome(results=results, table=table, out=out, splits=splits, start=start_words)
