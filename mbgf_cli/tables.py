"""Result tables in the seed's layout: a row per variant, a column per K, top-1 in %.

A cell is the mean over seeds (``± std`` with several seeds, the sample standard deviation);
a "+MBGF" row also shows its change against the same variant without MBGF, e.g. ``78.0 (+4.5)``;
the best mean of each column is bold. The numbers are shown rounded to one decimal and the
change is taken between the rounded means, so that a reader can check it from the table.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.table import Table

MBGF_SUFFIX = "+mbgf"
MISSING = "—"


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False
    mean: float | None = None  # top-1 in %, None when no run gave a number
    std: float | None = None  # only with several seeds
    delta: float | None = None  # against the same variant without MBGF (rounded means)
    runs: int = 0


@dataclass(frozen=True)
class ResultTable:
    title: str
    corner: str
    columns: list[str]  # "Q=2", "Q=4", ...
    rows: list[tuple[str, list[Cell]]]  # (row label, one cell per column)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and, with two or more values, the sample standard deviation (n - 1)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def base_variant(variant: str) -> str | None:
    """``clip+mbgf`` -> ``clip``; None for a variant without MBGF."""
    return variant[: -len(MBGF_SUFFIX)] if variant.endswith(MBGF_SUFFIX) else None


def variant_label(variant: str) -> str:
    """How a variant is written in the table: ``clip+mbgf`` -> ``CLIP +MBGF``."""
    names = {"clip": "CLIP", "actionclip": "ActionCLIP", "xclip": "X-CLIP"}
    base = base_variant(variant)
    if base is not None:
        return f"{names.get(base, base)} +MBGF"
    return names.get(variant, variant)


def shots_table(
    values: dict[tuple[str, int], list[float]],
    variants: Sequence[str],
    shots: Sequence[int],
    title: str = "K-shot top-1 (%)",
) -> ResultTable:
    """Build the table from ``{(variant, K): [top-1 % of each seed]}``.

    ``variants`` fixes the row order and ``shots`` the column order; a pair without numbers
    shows a dash.
    """
    means: dict[tuple[str, int], float] = {}
    stds: dict[tuple[str, int], float | None] = {}
    for key, vals in values.items():
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        if vals:
            means[key], stds[key] = mean_std(vals)

    best = {k: max((round(means[(v, k)], 1) for v in variants if (v, k) in means), default=None) for k in shots}
    rows = []
    for variant in variants:
        cells = []
        for k in shots:
            if (variant, k) not in means:
                cells.append(Cell(MISSING))
                continue
            mean, std = means[(variant, k)], stds[(variant, k)]
            text = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
            delta = None
            base = base_variant(variant)
            if base is not None and (base, k) in means:
                delta = round(round(mean, 1) - round(means[(base, k)], 1), 1) + 0.0  # no "-0.0"
                text += f" ({delta:+.1f})"
            cells.append(Cell(text, bold=round(mean, 1) == best[k], mean=mean, std=std, delta=delta,
                              runs=len(values[(variant, k)])))
        rows.append((variant_label(variant), cells))
    return ResultTable(title=title, corner="Method", columns=[f"Q={k}" for k in shots], rows=rows)


def to_rich(table: ResultTable) -> Table:
    out = Table(title=table.title)
    out.add_column(table.corner, style="bold")
    for column in table.columns:
        out.add_column(column, justify="right")
    for label, cells in table.rows:
        out.add_row(label, *[f"[bold]{c.text}[/bold]" if c.bold else c.text for c in cells])
    return out


def to_markdown(table: ResultTable) -> str:
    """The same table as GitHub markdown (bold as ``**...**``), for a README or a paper draft."""
    lines = [
        "| " + " | ".join([table.corner, *table.columns]) + " |",
        "|" + "---|" * (len(table.columns) + 1),
    ]
    for label, cells in table.rows:
        lines.append("| " + " | ".join([label, *[f"**{c.text}**" if c.bold else c.text for c in cells]]) + " |")
    return "\n".join(lines) + "\n"


def table_json(table: ResultTable) -> dict:
    return {
        "title": table.title,
        "columns": table.columns,
        "rows": [
            {"method": label, "cells": [_cell_json(c) for c in cells]} for label, cells in table.rows
        ],
    }


def _cell_json(cell: Cell) -> dict:
    return {"text": cell.text, "mean": cell.mean, "std": cell.std, "delta": cell.delta,
            "runs": cell.runs, "best": cell.bold}


def collect(rows: Iterable[tuple[str, int, float]]) -> dict[tuple[str, int], list[float]]:
    """``[(variant, K, top-1 %), ...]`` -> the ``values`` mapping of :func:`shots_table`."""
    values: dict[tuple[str, int], list[float]] = {}
    for variant, k, top1 in rows:
        values.setdefault((variant, k), []).append(top1)
    return values
