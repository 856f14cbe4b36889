"""Kinetics-600 zero-shot (X-CLIP's protocol): a model that never saw them scores the 220 Kinetics-600
classes Kinetics-400 lacks, on three splits of 160 of them; top-1 and top-5, mean ± std over splits.

The splits are the published ones (``labels/protocols/k600_zeroshot``). On the synthetic stand-in,
class set b plays the 220 new classes (set a, what the tiny model trained on, plays Kinetics-400):
three splits of 9 of its 12 classes (the protocol's 160/220), drawn with seeds 0, 1, 2.
Each split's list and labels are written to ``OUT/split{N}.txt`` and ``OUT/split{N}_labels.csv`` (``OUT``: empty,
new, or this command's own, as :mod:`mbgf_cli.outputs` has it).
"""

from __future__ import annotations

from pathlib import Path

from mbgf_cli import presets, tables
from mbgf_cli.errors import UserError
from mbgf_cli.eval_splits import METRICS, SplitResult, SplitsSummary
from mbgf_cli.outputs import check_output_folder, record_outputs
from mbgf_cli.protocols import classes, scoring
from mbgf_cli.protocols.configs import K600Config

STAND_IN_SEEDS = (0, 1, 2)
OUTPUT_KIND = "k600-zeroshot"  # the marker of an --output folder (mbgf_cli/outputs.py)


def split_classes(dataset: str, class_names: list[str]) -> list[list[int]]:
    """The class ids (in the dataset's labels) of each split."""
    if dataset == "synthetic":
        size = round(len(class_names) * classes.K600_SPLIT_SIZE / len(classes.k600_zeroshot_classes()))
        named = classes.seeded_splits(class_names, size, STAND_IN_SEEDS)
    elif dataset == "k600":
        named = classes.k600_published_splits()
    else:
        raise UserError(f"--dataset {dataset}: the Kinetics-600 zero-shot protocol runs on k600 (or its synthetic "
                        "stand-in, synthetic)")
    return [classes.match_names(names, class_names, f"Kinetics-600 zero-shot split {n}")
            for n, names in enumerate(named, start=1)]


def run_k600_zeroshot(cfg: K600Config) -> SplitsSummary:
    """Score the model on each split (one model, loaded once); the mean and sample standard deviation
    over splits. Every check a user can fail comes before the model is loaded."""
    from mbgf_cli import inference
    from mbgf_cli.data import read_labels, read_video_list
    from mbgf_cli.resources import resolve_device

    if bool(cfg.checkpoint) == bool(cfg.pretrained):
        raise UserError("give the model with --checkpoint DIR or --pretrained NAME (one of them)")
    generation = presets.SYNTHETIC_B_GENERATION if cfg.dataset == "synthetic" else None
    if cfg.root is None and cfg.dataset != "synthetic":
        raise UserError("give the Kinetics-600 folder (`mbgf prepare-data k600 ... -o DIR`) with --root DIR")
    source = inference.ModelSource.of(cfg)
    resolve_device(cfg.device)  # a device that is not here: one line, before any work
    out = Path(cfg.out or f"runs/k600-zeroshot-{cfg.dataset}")
    check_output_folder(out, "--output", OUTPUT_KIND, writes=[name for n in range(1, len(STAND_IN_SEEDS) + 1)
                                                              for name in (f"split{n}.txt", f"split{n}_labels.csv")])
    views = inference.parse_views(cfg.views or "1x1")
    root = presets.dataset_root(cfg.root, cfg.dataset, generation=generation)
    list_file = presets.resolve_list(root, cfg.list_file, "val.txt", "--val-list")
    class_names = read_labels(root / "labels.csv")
    entries = read_video_list(list_file, len(class_names))
    split_ids = split_classes(cfg.dataset, class_names)
    predictor = inference.Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    results = []
    for number, ids in enumerate(split_ids, start=1):
        split_list, split_labels, count = scoring.write_subset(out, f"split{number}", entries, ids, class_names)
        record_outputs(out, OUTPUT_KIND, [split_list.name, split_labels.name])
        if count == 0:
            raise UserError(f"{list_file}: no video of split {number}'s classes")
        numbers = scoring.score(predictor, root, split_list, split_labels, views, cfg)
        results.append(SplitResult(split=number, root=str(root), list=str(split_list), numbers=numbers))
    mean, std = {}, {}
    for metric in METRICS:
        mean[metric], std[metric] = tables.mean_std([r.numbers[metric] for r in results])
    model = cfg.checkpoint or cfg.pretrained
    return SplitsSummary(model=str(model), views=f"{views[0]}x{views[1]}", splits=results, mean=mean, std=std)
