"""What inference returns (:class:`Predictions`, :class:`VideoEmbeddings`) and how ``mbgf predict``
shows it: a rich table, CSV rows, JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from fusion.config import BRANCHES
from mbgf_cli.console import console, err_console

if TYPE_CHECKING:
    from mbgf_cli.inference.configs import PredictConfig


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


class Ranked(NamedTuple):
    id: int
    label: str
    probability: float


def top_classes(probs: torch.Tensor, class_names: list[str], k: int) -> list[list[Ranked]]:
    """The ``k`` most probable classes of each row of ``probs [N, K]`` (at least 1, at most K), best first."""
    k = max(1, min(k, len(class_names)))
    values, indices = probs.topk(k, dim=1) if len(probs) else (torch.zeros(0, k), torch.zeros(0, k))
    return [[Ranked(int(i), class_names[int(i)], float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values, indices.long(), strict=True)]


@dataclass
class Predictions:
    """What ``Predictor.predict`` returns. Rows follow ``videos`` (the videos that could be read, in
    input order); ``skipped`` lists the others with the reason."""

    videos: list[str]
    class_names: list[str]
    probs: torch.Tensor        # [N, K] softmax over the classes, averaged over views (eval's score)
    logits: torch.Tensor       # [N, K] logits averaged over views
    skipped: list[tuple[str, str]]
    labels: list[int | None]   # from a list file, where it gave them
    gates: torch.Tensor | None = None  # [N, 3] MBGF gate weights (appearance, temporal, motion)

    @classmethod
    def gather(cls, inputs, names: list[str], rows: dict, failed: dict, explain: bool) -> Predictions:
        """The rows scored (``{index: scores with probs, logits, gates}``) in input order."""
        order = sorted(rows)
        k = len(names)

        def stacked(key: str, width: int):
            return torch.stack([getattr(rows[i], key) for i in order]) if order else torch.zeros(0, width)

        return cls(videos=[inputs.videos[i] for i in order], class_names=names, probs=stacked("probs", k),
                   logits=stacked("logits", k), skipped=[(inputs.videos[i], failed[i]) for i in sorted(failed)],
                   labels=[inputs.labels[i] for i in order], gates=stacked("gates", 3) if explain else None)

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def top(self, k: int = 5) -> list[list[Ranked]]:
        return top_classes(self.probs, self.class_names, k)

    def accuracy(self) -> tuple[int, int] | None:
        """(correct top-1, labelled videos) when every scored video has a label in range, else None."""
        if not self.videos or any(label is None or label >= len(self.class_names) for label in self.labels):
            return None
        correct = sum(int(p) == label for p, label in zip(self.predictions.tolist(), self.labels, strict=True))
        return correct, len(self.videos)

    def to_json(self, k: int = 5) -> dict:
        videos = []
        for i, (video, top) in enumerate(zip(self.videos, self.top(k), strict=True)):
            row = {"video": video, "top": [{"id": r.id, "label": r.label, "probability": round(r.probability, 6)}
                                           for r in top]}
            if self.gates is not None:
                row["gates"] = {branch: round(float(g), 6) for branch, g in zip(BRANCHES, self.gates[i], strict=True)}
            videos.append(row)
        return {"videos": videos, "skipped": [video for video, _ in self.skipped]}

    def csv_text(self, k: int = 5) -> str:
        """``video,rank,id,label,probability``: one row per video and rank."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["video", "rank", "id", "label", "probability"])
        for video, top in zip(self.videos, self.top(k), strict=True):
            for rank, r in enumerate(top, start=1):
                writer.writerow([video, rank, r.id, r.label, f"{r.probability:.6f}"])
        return buffer.getvalue()


@dataclass
class VideoEmbeddings:
    videos: list[str]              # the videos that could be read, in input order
    vectors: torch.Tensor          # [N, E] unit-norm video embeddings
    skipped: list[tuple[str, str]]  # (video, reason)


def print_predictions(result: Predictions, info: dict, cfg: PredictConfig) -> None:
    from rich.markup import escape
    from rich.table import Table

    if cfg.as_json:
        console.print_json(json.dumps(result.to_json(cfg.top_k)))
        return
    k = min(cfg.top_k, len(result.class_names))
    table = Table(title=f"{info['model']} ({info['views']} views): top-{k} of {len(result.class_names)} classes",
                  title_justify="left", show_lines=k > 1)
    table.add_column("video", overflow="fold")
    table.add_column("class")
    table.add_column("probability", justify="right")
    if result.gates is not None:
        for branch in BRANCHES:
            table.add_column(branch, justify="right")
    for i, (video, top) in enumerate(zip(result.videos, result.top(k), strict=True)):
        row = [escape(video), "\n".join(escape(r.label) for r in top), "\n".join(f"{r.probability:.3f}" for r in top)]
        if result.gates is not None:
            row += [f"{float(g):.3f}" for g in result.gates[i]]
        table.add_row(*row)
    console.print(table)
    accuracy = result.accuracy()
    if accuracy is not None:
        correct, total = accuracy
        err_console.print(f"top-1 against the list's labels: {100 * correct / total:.1f}% ({correct} of {total})",
                          highlight=False)
    print_skipped(result.skipped)
    if cfg.csv:
        err_console.print(f"predictions written to {cfg.csv}", highlight=False)


def print_skipped(skipped) -> None:
    """The videos that could not be read, ``(video, reason)``: the first five named, on stderr."""
    from rich.markup import escape

    if not skipped:
        return
    named = ", ".join(f"{video} ({reason})" for video, reason in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    err_console.print(f"[yellow]{len(skipped)} video(s) skipped (not readable):[/yellow] {escape(named)}{more}",
                      highlight=False, soft_wrap=True)
