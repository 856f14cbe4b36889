"""Zero-shot over official splits, ``mbgf eval --zero-shot ... --splits 1 2 3``: evaluate on each split's
test list, then the mean and standard deviation over splits (the X-CLIP zero-shot protocol)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mbgf_cli import tables
from mbgf_cli.errors import UserError

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
    """Where split N's test list is: ``{split}`` in ``--root`` or ``--val-list`` is replaced by N; else
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
                        "{split} in --root or --val-list")
    return str(folder), list_file


def zero_shot_over_splits(cfg, splits: Sequence[int],
                          evaluate: Callable | None = None) -> SplitsSummary:
    """``mbgf eval --zero-shot ... --splits 1 2 3``: evaluate on each split's test list and take the mean
    and standard deviation over splits (the X-CLIP zero-shot protocol). ``cfg`` is an
    :class:`mbgf_cli.evaluation.EvalConfig`; ``evaluate`` defaults to the evaluation engine."""
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
