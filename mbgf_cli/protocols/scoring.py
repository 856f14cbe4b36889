"""A model scored on a subset of a dataset's classes: its videos of those classes, relabelled
0..K-1, against the text classifier of those K names (how zero-shot and novel-class accuracy are
measured). The checkpoint's own class names are not required to match: that is the point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

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


def score(source, root, list_file, label_file, views: tuple[int, int] = (1, 1), batch_size: int = 8,
          workers: int = 0, device: str | None = None, decoder: str = "auto", prompts: str | None = None) -> dict:
    """top1, top5, mean_class (fractions), videos, skipped of ``source`` (an ``inference.ModelSource``)
    on ``list_file`` with the classes of ``label_file``."""
    from fusion.prompts import class_text_tokens
    from mbgf_cli import inference
    from mbgf_cli.console import progress
    from mbgf_cli.data import VideoDataset, build_loader, read_labels
    from mbgf_cli.evaluation import evaluate_loader
    from mbgf_cli.precision import choose_amp
    from mbgf_cli.resources import resolve_device

    device = resolve_device(device)
    class_names = read_labels(label_file)
    loaded = inference.load_model(source, prompts)
    model = loaded.model.to(device).eval()
    config = model.config
    dataset = VideoDataset(root, list_file, len(class_names), frames=config.frames, input_size=config.input_size,
                           train=False, views=views, decoder=decoder, mean=config.input_mean, std=config.input_std)
    if len(dataset) == 0:
        raise UserError(f"{list_file}: no videos to score")
    loader = build_loader(dataset, batch_size=batch_size, workers=workers, shuffle=False, drop_last=False)
    tokens = class_text_tokens(class_names, loaded.prompts, loaded.templates).to(device)
    amp_dtype, _ = choose_amp("auto", device, config.model)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else None
    with progress(transient=True) as bar:
        result = evaluate_loader(model, loader, tokens, len(dataset), [label for _, label in dataset.samples],
                                 device, autocast=autocast, bar=bar, description=f"scoring {Path(list_file).name}")
    return result.numbers()
