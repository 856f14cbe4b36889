"""A model scored on a subset of a dataset's classes: its videos of those classes, relabelled
0..K-1, against the text classifier of those K names (how zero-shot and novel-class accuracy are
measured). The checkpoint's own class names are not required to match: that is the point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mbgf_cli.errors import UserError


def subset_entries(entries: Sequence[tuple[str, int]], class_ids: Sequence[int]) -> list[tuple[str, int]]:
    """The entries whose label is in ``class_ids``, relabelled by position in ``class_ids``."""
    position = {c: i for i, c in enumerate(class_ids)}
    return [(path, position[label]) for path, label in entries if label in position]


def write_subset(folder: Path, name: str, entries, class_ids: Sequence[int], class_names: Sequence[str]):
    """``folder/<name>.txt`` and ``folder/<name>_labels.csv``: the subset as a list and label file
    (written each time; they are derived, and show what was scored). Returns (list, labels, count)."""
    from mbgf_cli.data import write_labels, write_video_list

    chosen = subset_entries(entries, class_ids)
    folder.mkdir(parents=True, exist_ok=True)
    list_file, label_file = folder / f"{name}.txt", folder / f"{name}_labels.csv"
    write_video_list(list_file, chosen)
    write_labels(label_file, [class_names[c] for c in class_ids])
    return list_file, label_file, len(chosen)


def score(predictor, root, list_file, label_file, views: tuple[int, int], loading) -> dict:
    """top1, top5, mean_class (fractions), videos, skipped of ``predictor`` (an ``inference.Predictor``)
    on ``list_file`` with the classes of ``label_file``, scored as ``mbgf eval`` scores a list (its
    loader, views and multi-view rule). ``loading``: ``batch_size``, ``workers``, ``decoder``,
    ``strict`` (a command's ``LoadingOptions``, or a training config's)."""
    from mbgf_cli import distributed, evaluation
    from mbgf_cli.data import read_labels
    from mbgf_cli.inference.configs import EvalConfig

    class_names = read_labels(label_file)
    batch_size = loading.batch_size or EvalConfig.batch_size
    predictor.check_views(views, batch_size)
    cfg = EvalConfig(batch_size=batch_size, workers=loading.workers, decoder=loading.decoder, strict=loading.strict)
    single = distributed.Context(rank=0, world_size=1, local_rank=0, device=predictor.device)
    result, dataset = evaluation.score_list(predictor, cfg, single, root, list_file, class_names, views)
    if not result.videos:
        raise UserError(f"none of the {len(dataset)} videos of {list_file} could be read; "
                        f"{evaluation.skipped_line(dataset, cfg)}")
    return result.numbers()
