"""Experiment tracking behind one small interface: ``metrics.jsonl`` always, TensorBoard and W&B on request.

    tracker = open_tracker(run_dir, ("tensorboard",), config, history=resumed_history, iteration=resumed_at)
    tracker.log_step(iteration, loss=..., lr=..., clips_per_s=...)   # after each optimiser step
    tracker.log_epoch(record)            # before the epoch's last/ checkpoint is swapped in
    tracker.log_confusion(matrix, class_names, iteration)            # once, at the end
    tracker.close()

``metrics.jsonl`` is the record a run is judged by: each epoch's row is on disk (fsynced) before that
epoch's ``last/`` replaces the previous one, and a resumed run first rewrites the file from the
checkpoint's own history. So every checkpointed epoch has its row whatever moment a SIGKILL came, and no
row survives for an epoch that no checkpoint holds (the resumed run computes it again).

Every scalar is logged against the optimiser step (``iteration``), the one axis that a resumed run
shares with the run it continues; TensorBoard purges what a killed run logged past its checkpoint.
Only the process that writes (rank 0) tracks; the others get a tracker that does nothing.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path

import numpy as np

from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_write_text

BACKENDS = ("tensorboard", "wandb")
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "mbgf-run-id"  # inside WANDB_DIR: a resumed run continues the same W&B run


def parse_backends(values) -> tuple[str, ...]:
    """``--report-to tensorboard``, ``--report-to tensorboard,wandb``, ``--report-to none`` -> the backends,
    checked."""
    if values is None:
        return ()
    names = []
    for value in [values] if isinstance(values, str) else values:
        names += [n.strip().lower() for n in str(value).split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise UserError(f"--report-to {unknown[0]}: not a tracker; choose tensorboard, wandb (or both) or none")
    return tuple(dict.fromkeys(names))


def check_available(backends) -> None:
    """Refuse, before any work, a tracker whose package is not installed (one line: what to install)."""
    for name in backends:
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError:
                raise UserError("--report-to tensorboard needs the tensorboard package: pip install 'mbgf[log]' "
                                "(or pip install tensorboard)") from None
        elif name == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise UserError("--report-to wandb needs the wandb package: pip install wandb") from None


# --------------------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------------------


class MetricsLog:
    """``metrics.jsonl``: one JSON object per finished epoch."""

    def __init__(self, path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        """Add the epoch's row and make it durable before returning (the caller checkpoints next)."""
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"{self.path}: no space left on the device while adding epoch "
                                f"{record.get('epoch')}'s row (the rows before it are intact)") from None
            raise

    def rewrite(self, history: list[dict]) -> None:
        """The rows of a resumed run: exactly its checkpoint's history (atomically; no file for none)."""
        if history:
            atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in history))
        else:
            self.path.unlink(missing_ok=True)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------------


EPOCH_SCALARS = {"train_loss": "epoch/train_loss", "top1": "val/top1", "top5": "val/top5",
                 "mean_class": "val/mean_class", "best_top1": "val/best_top1"}


def epoch_scalars(record: dict) -> dict[str, float]:
    """What a dashboard shows of an epoch's row: its losses and accuracies, and the mean MBGF gate weight
    of each branch (``record["gates"]``: branch -> weight) when the model has MBGF."""
    scalars = {tag: float(record[key]) for key, tag in EPOCH_SCALARS.items() if record.get(key) is not None}
    for branch, weight in (record.get("gates") or {}).items():
        scalars[f"gate/{branch}"] = float(weight)
    return scalars


class Tracker:
    """Writes a run's numbers to ``metrics.jsonl`` and to each chosen backend."""

    def __init__(self, run_dir, backends=(), config: dict | None = None, history: list[dict] | None = None,
                 iteration: int = 0):
        self.run_dir = Path(run_dir)
        self.metrics = MetricsLog(self.run_dir / METRICS_FILE)
        if history is not None:  # the rows are the checkpoint's, no more, no fewer
            self.metrics.rewrite(history)
        self.backends = [_BACKEND_CLASSES[name](self.run_dir, config or {}, iteration) for name in backends]

    def log_step(self, iteration: int, **values: float) -> None:
        scalars = {f"train/{key}": float(value) for key, value in values.items() if value is not None}
        for backend in self.backends:
            backend.scalars(scalars, iteration)

    def log_epoch(self, record: dict) -> None:
        """The epoch's row: durable in metrics.jsonl first, then on the dashboards."""
        self.metrics.append(record)
        scalars = epoch_scalars(record)
        for backend in self.backends:
            backend.scalars(scalars, int(record["iteration"]))
            backend.flush()

    def log_confusion(self, matrix, class_names, iteration: int) -> None:
        for backend in self.backends:
            backend.confusion(np.asarray(matrix), list(class_names), iteration)

    def notes(self) -> list[str]:
        """Lines worth printing once (where the dashboards are, how to open them)."""
        return [note for backend in self.backends for note in backend.notes()]

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []


class NullTracker(Tracker):
    """What the processes that do not write (rank > 0) get: every call does nothing."""

    def __init__(self):
        self.backends = []

    def log_epoch(self, record: dict) -> None:
        pass


def open_tracker(run_dir, backends=(), config: dict | None = None, history: list[dict] | None = None,
                 iteration: int = 0, is_main: bool = True) -> Tracker:
    """The run's tracker (rank 0), or one that does nothing (the other ranks)."""
    if not is_main:
        return NullTracker()
    check_available(backends)
    return Tracker(run_dir, backends, config, history, iteration)


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


class TensorBoardBackend:
    """Event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN``)."""

    def __init__(self, run_dir: Path, config: dict, iteration: int):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = run_dir / TENSORBOARD_DIR
        # A resumed run logs again from iteration + 1: drop what a killed run logged past its checkpoint.
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=iteration + 1 if iteration else None)
        if not iteration and config:
            self.writer.add_text("config", "\n".join(f"    {k}: {json.dumps(v)}" for k, v in config.items()), 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def confusion(self, matrix: np.ndarray, class_names: list[str], step: int) -> None:
        self.writer.add_image("val/confusion_matrix", confusion_image(matrix), step, dataformats="HWC")
        self.writer.add_text("val/confusion_matrix", confusion_markdown(matrix, class_names), step)
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def notes(self) -> list[str]:
        return [f"TensorBoard: tensorboard --logdir {self.log_dir}"]

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    """A W&B run kept in ``RUN/wandb``. Online when W&B credentials are set up (or WANDB_MODE says so),
    else offline: a batch job never stops at a login prompt, and ``wandb sync`` uploads it later."""

    def __init__(self, run_dir: Path, config: dict, iteration: int):
        import wandb

        directory = run_dir / WANDB_DIR
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / WANDB_ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            atomic_write_text(id_file, run_id + "\n")
        self.mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_credentials() else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "mbgf"), name=run_dir.name, dir=str(run_dir),
                              id=run_id, resume="allow", config=config, mode=self.mode,
                              settings=wandb.Settings(console="off", silent=True))
        self._wandb = wandb

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def confusion(self, matrix: np.ndarray, class_names: list[str], step: int) -> None:
        rows = [[class_names[t], class_names[p], int(matrix[t, p])]
                for t in range(matrix.shape[0]) for p in range(matrix.shape[1]) if matrix[t, p]]
        self.run.log({"val/confusion_matrix": self._wandb.Table(columns=["true", "predicted", "videos"], data=rows)},
                     step=step)

    def flush(self) -> None:
        pass

    def notes(self) -> list[str]:
        if self.mode == "offline":
            return [f"W&B: offline; upload with: wandb sync {Path(self.run.dir).parent}"]
        return [f"W&B: {self.run.url}" if getattr(self.run, "url", None) else "W&B: logging"]

    def close(self) -> None:
        self.run.finish()


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


_BACKEND_CLASSES = {"tensorboard": TensorBoardBackend, "wandb": WandbBackend}


# --------------------------------------------------------------------------------------------------
# The confusion matrix, for dashboards
# --------------------------------------------------------------------------------------------------


def confusion_image(matrix: np.ndarray, max_side: int = 800) -> np.ndarray:
    """``[H, W, 3]`` uint8: row-normalised counts (true class down, predicted across), dark = many."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    cell = max(1, min(16, max_side // max(1, matrix.shape[0])))
    shade = np.kron(share, np.ones((cell, cell)))
    white_to_blue = np.array([255.0, 255.0, 255.0]) - shade[..., None] * np.array([255.0, 180.0, 60.0])
    return white_to_blue.round().astype(np.uint8)


def confusion_markdown(matrix: np.ndarray, class_names: list[str], max_classes: int = 30) -> str:
    """The matrix as a markdown table (small label sets), else each class's most frequent confusion."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if len(class_names) <= max_classes:
        head = "| true \\ predicted | " + " | ".join(str(i) for i in range(len(class_names))) + " |"
        rule = "|---" * (len(class_names) + 1) + "|"
        body = [f"| {i} {name} | " + " | ".join(str(v) for v in row) + " |"
                for i, (name, row) in enumerate(zip(class_names, matrix, strict=True))]
        return "\n".join([head, rule, *body])
    lines = ["| true | most often predicted instead | videos |", "|---|---|---|"]
    for t, name in enumerate(class_names):
        others = matrix[t].copy()
        others[t] = 0
        if others.max() > 0:
            lines.append(f"| {name} | {class_names[int(others.argmax())]} | {int(others.max())} |")
    return "\n".join(lines)
