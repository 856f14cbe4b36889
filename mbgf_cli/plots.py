"""PNG charts with matplotlib, an optional extra (``pip install mbgf[plot]``): the training curve,
the confusion matrix, per-class accuracy and class probability over a video's timeline. Without
matplotlib each function prints a note and returns None instead of failing the run that asked for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbgf_cli.console import err_console

_noted = False


def _pyplot():
    global _noted
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        if not _noted:
            err_console.print("note: matplotlib is not installed, so no PNG charts were written "
                              "(pip install 'mbgf[plot]')", markup=False)  # [plot] is no markup tag
            _noted = True
        return None
    return plt


def training_curve(history: list[dict], path) -> Path | None:
    """Train loss and val top-1/top-5 per epoch."""
    plt = _pyplot()
    if plt is None or not history:
        return None
    path = Path(path)
    epochs = [r["epoch"] for r in history]
    fig, loss_ax = plt.subplots(figsize=(7, 4), dpi=110)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], color="tab:blue", marker=".", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss", color="tab:blue")
    acc_ax = loss_ax.twinx()
    evaluated = [r for r in history if r.get("top1") is not None]
    if evaluated:
        acc_ax.plot([r["epoch"] for r in evaluated], [100 * r["top1"] for r in evaluated], color="tab:red",
                    marker=".", label="val top-1")
        acc_ax.plot([r["epoch"] for r in evaluated], [100 * r["top5"] for r in evaluated], color="tab:orange",
                    linestyle="--", label="val top-5")
    acc_ax.set_ylabel("val accuracy (%)", color="tab:red")
    acc_ax.set_ylim(0, 100)
    lines = loss_ax.get_legend_handles_labels()[0] + acc_ax.get_legend_handles_labels()[0]
    loss_ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    fig.tight_layout()
    return _save(fig, plt, path)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], path) -> Path | None:
    """Rows: true class, columns: predicted class, coloured by the row's fraction."""
    plt = _pyplot()
    if plt is None:
        return None
    k = len(class_names)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.35 * k, 40)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 60:  # beyond that names are unreadable anyway
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, plt, Path(path))


def per_class_accuracy(accuracy: np.ndarray, class_names: list[str], path) -> Path | None:
    """Horizontal bars, sorted from worst to best class."""
    plt = _pyplot()
    if plt is None:
        return None
    order = np.argsort(accuracy)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(7, min(2 + 0.22 * k, 80)), dpi=100)
    ax.barh(range(k), 100 * accuracy[order], color="tab:blue")
    ax.set_yticks(range(k), [class_names[i] for i in order], fontsize=7)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.5, k - 0.5)
    fig.tight_layout()
    return _save(fig, plt, Path(path))


def plot_timelines(timelines, path, top_k: int) -> Path | None:
    """``mbgf predict --timeline --plot``: class probability over time, a panel per video
    (``mbgf_cli.inference.timeline.VideoTimeline``s): its ``top_k`` classes (by their highest probability
    in any window) as lines through the windows' centres."""
    plt = _pyplot()
    if plt is None or not timelines:
        return None
    fig, axes = plt.subplots(len(timelines), 1, figsize=(8, 2.8 * len(timelines)), dpi=100, squeeze=False)
    for ax, timeline in zip(axes[:, 0], timelines, strict=True):
        centres = [(start + end) / 2 for start, end in timeline.spans]
        k = min(top_k, len(timeline.class_names))
        for class_id in timeline.probs.max(dim=0).values.topk(k).indices.tolist():
            ax.plot(centres, timeline.probs[:, class_id].tolist(), marker="." if len(centres) < 60 else None,
                    label=timeline.class_names[class_id])
        ax.set_title(timeline.video, fontsize=9)
        ax.set_xlabel("time (s, window centre)")
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, plt, Path(path))


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
