"""Base-to-novel (ViFi-CLIP's protocol): a dataset's classes in two halves, the published base and novel
lists; each run trains on 16 videos per base class (one list per seed, 1 2 3) and is scored on the val
videos of the base classes and, with the novel class names as its classifier, of the novel ones.
Reported: base, novel and their harmonic mean, mean ± std over seeds.

Built on ``mbgf fewshot``'s machinery (``mbgf_cli.fewshot``): the same recipe and starting weights, run
folders ``OUT/runs/<variant>_K16_seed<S>/`` with their record of settings, resume and read-back, and
``OUT/results.csv`` (base accuracy as top1). Added here: the class halves as lists and labels in
``OUT/lists/``, the training lists in ``OUT/splits/`` (the published ones in the dataset's paths for
k400, hmdb51, ucf101, ssv2 at seeds 1-3; sampled otherwise), and each run's novel score, kept in the
run folder as ``novel.json`` so that a rerun does not score it again. ``OUT/base2novel.csv`` holds every
run's three numbers. On the synthetic stand-in, class set b's first six classes are base, the last six
novel (whole temporal pairs on each side).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import labels
from mbgf_cli import fewshot, tables
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_output, atomic_write_json, atomic_write_text
from mbgf_cli.protocols import classes, published, scoring

COLUMNS = ("base", "novel", "HM")
KIND = "base2novel"  # the output folder's marker (mbgf_cli.outputs)
WRITES = ("lists", "splits", "runs", "results.csv", "base2novel.csv", "table.md")


@dataclass
class Base2NovelConfig:
    train: object  # TrainConfig template, as mbgf fewshot's
    out: str
    variants: tuple[str, ...] = ("clip", "clip+mbgf")
    seeds: tuple[int, ...] = (1, 2, 3)
    shots: int = 16
    overwrite: bool = False  # write beside the files of a folder that is not a previous base2novel's


@dataclass
class Base2NovelRun:
    variant: str
    seed: str
    base: float  # %
    novel: float  # %
    run_dir: str

    @property
    def hm(self) -> float:
        return harmonic_mean(self.base, self.novel)


@dataclass
class Base2NovelOutcome:
    runs: list[Base2NovelRun]
    table: tables.ResultTable
    out: Path
    start: str
    classes: tuple[int, int]  # base, novel


def harmonic_mean(base: float, novel: float) -> float:
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def _halves(out: Path, dataset: str, class_names, val_entries):
    base_ids, novel_ids = classes.base_novel(dataset, class_names)
    lists = out / "lists"
    base_val, base_labels, n_base = scoring.write_subset(lists, "base_val", val_entries, base_ids, class_names)
    novel_val, novel_labels, n_novel = scoring.write_subset(lists, "novel_val", val_entries, novel_ids, class_names)
    if not n_base or not n_novel:
        raise UserError(f"{lists}: the val list has no video of the {'base' if not n_base else 'novel'} classes")
    return base_ids, (base_val, base_labels), (novel_val, novel_labels)


def training_lists(cfg: Base2NovelConfig, dataset: str, train_list: Path, class_names, base_ids) -> list:
    """One base-class training list per seed (labels 0..len(base)-1), as fewshot ShotSplits."""
    from mbgf_cli.data import read_video_list, write_video_list

    train = read_video_list(train_list, len(class_names))
    base_train = scoring.subset_entries(train, base_ids)
    splits = []
    for seed in dict.fromkeys(cfg.seeds):
        path = Path(cfg.out) / "splits" / f"K{cfg.shots}_seed{seed}.txt"
        if dataset in classes.BASE2NOVEL_FILES and cfg.shots == 16 and seed in (1, 2, 3):
            stem = classes.BASE2NOVEL_FILES[dataset][1]
            source = labels.protocol_file(f"base2novel/{stem}_fs_base_s{seed}_train.txt")
            chosen = published.read_published_list(source, train, base_ids, known_source=str(train_list))
        else:
            names = [class_names[c] for c in base_ids]
            chosen = fewshot.sample_shots(base_train, [cfg.shots], seed, len(base_ids), names, train_list)[cfg.shots]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video_list(path, chosen)
        splits.append(fewshot.ShotSplit(shots=cfg.shots, seed=str(seed), path=path))
    return splits


def _template(cfg: Base2NovelConfig, variants):
    """The TrainConfig every run shares, and where the runs start (as mbgf fewshot's)."""
    template = fewshot.fill_recipe(cfg.train)
    start = fewshot.FewShotConfig(train=cfg.train, out=cfg.out, kind=KIND)
    per_variant, words, record = fewshot.starting_weights(start, variants)
    if "start_model" in record:
        if cfg.train.model not in (None, record["start_model"]):
            raise UserError(f"--model {cfg.train.model}: the --init checkpoint {record['start']} is a "
                            f"{record['start_model']} model")
        template = replace(template, model=record["start_model"], frames=cfg.train.frames or record["start_frames"],
                           input_size=cfg.train.input_size or record["start_input_size"])
    return template, per_variant, words, record


def run_base2novel(cfg: Base2NovelConfig, on_run: Callable | None = None) -> Base2NovelOutcome:
    """The whole protocol; a rerun resumes (finished runs are read back, their novel scores too)."""
    from mbgf_cli import outputs, presets, training
    from mbgf_cli.data import read_labels, read_video_list

    out = outputs.check_output_folder(cfg.out, "--output", KIND, cfg.overwrite, writes=WRITES)
    dataset = cfg.train.dataset
    if dataset not in classes.BASE2NOVEL_DATASETS:
        raise UserError(f"--dataset: base-to-novel needs one of {', '.join(classes.BASE2NOVEL_DATASETS)} "
                        "(the published class halves)")
    if dataset not in presets.PRESETS:  # ssv2: no training preset; its runs take the generic recipe
        cfg = replace(cfg, train=replace(cfg.train, dataset=None))
    variants = [fewshot.parse_variant(v) for v in dict.fromkeys(cfg.variants)]
    if not variants:
        raise UserError("--variants: give at least one variant")
    if cfg.shots < 1 or not cfg.seeds:
        raise UserError("--shots must be at least 1 and --seeds must name a seed")
    root, train_list, val_list, label_file = fewshot.dataset_paths(fewshot.fill_recipe(cfg.train))
    class_names = read_labels(label_file)
    outputs.record_outputs(out, KIND, WRITES)  # before they are written: a kill leaves them known as mbgf's
    base_ids, (base_val, base_labels), (novel_val, novel_labels) = _halves(
        out, dataset, class_names, read_video_list(val_list, len(class_names)))
    splits = training_lists(cfg, dataset, train_list, class_names, base_ids)
    template, per_variant, start_words, start_record = _template(cfg, variants)
    # The runs train on the base half: no preset's class count applies, so the preset's recipe is
    # filled in here rather than by the training engine.
    if cfg.train.dataset in presets.PRESETS:
        recipe = presets.get_preset(cfg.train.dataset).recipe
        template = replace(template, **{k: v for k, v in recipe.items() if getattr(template, k) is None})
    template = replace(template, dataset=None, root=str(root.resolve()), labels=str(base_labels.resolve()), init=None,
                       pretrained=None, val_list=str(base_val.resolve()), eval_every=max(template.epochs, 1))
    settings = {k: v for k, v in template.to_dict().items() if k not in fewshot._NOT_RECORDED}
    settings.update(start_record, protocol="base2novel")

    def train_one(spec: fewshot.RunSpec) -> None:
        if spec.resume:
            training.train(replace(template, resume=str(spec.run_dir / "last")))
            return
        seed = int(spec.split.seed) if spec.split.seed.isdigit() else template.seed
        training.train(replace(template, variant=spec.variant.variant, mbgf=spec.variant.mbgf,
                               train_list=str(spec.split.path.resolve()), out=str(spec.run_dir), seed=seed,
                               **per_variant[spec.variant.name]))

    results = fewshot.run_protocol(out, fewshot.plan_runs(out, variants, splits), train_one, settings, on_run=on_run)
    runs = []
    for result in results:
        novel = _novel_score(Path(result.run_dir), root, novel_val, novel_labels, template)
        runs.append(Base2NovelRun(result.variant, result.seed, result.top1, novel, result.run_dir))
    _write_csv(out / "base2novel.csv", runs)
    table = base2novel_table(runs, [v.name for v in variants],
                             f"{dataset}: base-to-novel top-1 (%), {len(splits)} seed(s), {cfg.shots} shots per base class")
    atomic_write_text(out / "table.md", tables.to_markdown(table))
    return Base2NovelOutcome(runs, table, out, start_words, (len(base_ids), len(class_names) - len(base_ids)))


def _novel_score(run_dir: Path, root, novel_val, novel_labels, template) -> float:
    """The run's final weights on the novel classes (%), scored once and kept in ``novel.json``."""
    record = run_dir / "novel.json"
    weights, listed = fewshot.file_digest(run_dir / "last" / "model.safetensors"), fewshot.file_digest(novel_val)
    if record.is_file():
        kept = json.loads(record.read_text(encoding="utf-8"))
        if kept.get("weights_sha256") == weights and kept.get("list_sha256") == listed:
            return kept["top1"]
    numbers = scoring.score(_predictor(run_dir / "last", template), root, novel_val, novel_labels, (1, 1), template)
    top1 = fewshot.percent(numbers["top1"])
    atomic_write_json(record, {"top1": top1, "top5": fewshot.percent(numbers["top5"]), "videos": numbers["videos"],
                               "weights_sha256": weights, "list_sha256": listed}, sort_keys=True)
    return top1


def _predictor(checkpoint: Path, template):
    """The run's weights as the runs were trained: their prompts, device and precision."""
    from mbgf_cli import inference

    return inference.Predictor.from_checkpoint(checkpoint, template.device, template.amp)


def _write_csv(path: Path, runs: Sequence[Base2NovelRun]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", "base", "novel", "hm", "run_dir"])
        for r in runs:
            writer.writerow([r.variant, r.seed, f"{r.base:.4f}", f"{r.novel:.4f}", f"{r.hm:.4f}", r.run_dir])


def base2novel_table(runs: Sequence[Base2NovelRun], variants: Sequence[str], title: str) -> tables.ResultTable:
    """A row per variant; base, novel, HM (mean over seeds, ± std with several); +MBGF rows with their change."""
    numbers = {}
    for r in runs:
        for column, value in zip(COLUMNS, (r.base, r.novel, r.hm), strict=True):
            numbers.setdefault((r.variant, column), []).append(value)
    # tables.shots_table lays out (row, column) -> values; its columns are numbers, so index them.
    indexed = {(variant, COLUMNS.index(column)): values for (variant, column), values in numbers.items()}
    table = tables.shots_table(indexed, variants, list(range(len(COLUMNS))), title=title)
    return replace(table, columns=list(COLUMNS))
