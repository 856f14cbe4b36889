"""The one owner of a training run's state, how it is saved and restored, and how a run is asked to stop.

:class:`Run` holds everything a run is: its resolved settings, the model, optimiser, grad scaler,
schedule, data, tracker, and its :class:`Progress` (epoch, step, iteration, the epoch's running sums,
the history of finished epochs, the best one). :meth:`Run.save` is the one checkpoint call of the
engine and :meth:`Run.restore` its inverse, so a resumed run continues bit for bit. A resumable
checkpoint (``last/``, ``step/``) is taken only between optimiser steps, so no half-accumulated
gradient is ever pending; it carries the weights, the optimiser's and grad scaler's state, every
process's random state (torch, NumPy, Python, CUDA) and the position. The rest is a function of the
position: the data order and augmentation (seed, epoch, video), the loader's skip into the epoch
(step x accumulation micro-batches), the lr (the schedule at the iteration) and mixup's draws (seed,
iteration, rank). :class:`StopFlag` is the one place signals are handled.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mbgf_cli import checkpoint, distributed
from mbgf_cli.console import err_console
from mbgf_cli.train_config import ResolvedConfig


def new_epoch_sums() -> dict:
    return {"loss": 0.0, "steps": 0, "clips": 0, "seconds": 0.0}


@dataclass
class Progress:
    """Where a run is. ``epoch``: epochs finished (so also the index of the one in progress); ``step``:
    optimiser steps done in that epoch; ``iteration``: optimiser steps done in the run; ``sums``: the
    epoch's running loss, clips and seconds; ``history``: one record per finished epoch (the lines of
    metrics.jsonl); ``best``: the record of the best evaluated epoch so far; ``saved_at``: the position
    ``last/`` holds."""

    epoch: int = 0
    step: int = 0
    iteration: int = 0
    sums: dict = field(default_factory=new_epoch_sums)
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    saved_at: tuple[int, int, int] | None = None

    @property
    def position(self) -> tuple[int, int, int]:
        return self.epoch, self.step, self.iteration

    def step_done(self, loss: float, clips: int, seconds: float) -> None:
        self.step += 1
        self.iteration += 1
        self.sums["loss"] += loss
        self.sums["steps"] += 1
        self.sums["clips"] += clips
        self.sums["seconds"] += seconds

    @property
    def clips_per_s(self) -> float:
        return self.sums["clips"] / max(self.sums["seconds"], 1e-9)

    def epoch_record(self, lr: float) -> dict:
        """The finished epoch's training numbers; evaluation adds its own."""
        sums = self.sums
        return {"epoch": self.epoch + 1, "iteration": self.iteration, "train_loss": sums["loss"] / max(sums["steps"], 1),
                "lr": lr, "clips_per_s": self.clips_per_s, "train_seconds": sums["seconds"]}

    def end_epoch(self, record: dict, skipped_train: int) -> bool:
        """Close the epoch with its record (completed here: best top-1, skipped videos) and move to the
        next one; True when the epoch is the best so far."""
        improved = "top1" in record and (self.best is None or record["top1"] > self.best["top1"])
        if improved:
            self.best = dict(record)
        record["best_top1"] = self.best["top1"] if self.best else None
        record["skipped_train"] = skipped_train
        self.history.append(record)
        self.epoch, self.step, self.sums = self.epoch + 1, 0, new_epoch_sums()
        return improved

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "iteration": self.iteration, "sums": dict(self.sums)}


@dataclass
class Run:
    """Everything a run is, built once by ``training.start_run``; the loop reads and advances it."""

    cfg: ResolvedConfig  # every setting, recipe values filled in; read-only
    ctx: distributed.Context
    out: Path
    model: torch.nn.Module  # the bare model: what is saved and restored
    step_model: torch.nn.Module  # what the steps call (DistributedDataParallel under torchrun, else model)
    data: object  # training.RunData
    class_tokens: torch.Tensor
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: object  # a torch.autocast, or a null context
    schedule: object  # training.Schedule
    tracker: object  # tracking.Tracker: metrics.jsonl, TensorBoard / W&B (rank 0; a no-op elsewhere)
    callbacks: object  # training.Callbacks
    precision: str  # what --amp chose and why, for the header
    display: object = None  # train_display.Display: the epoch table, plain lines in logs
    progress: Progress = field(default_factory=Progress)
    started: float = field(default_factory=time.perf_counter)  # when this invocation began
    stop: StopFlag = field(default_factory=lambda: StopFlag())
    stopping: bool = False  # every process agreed to stop inside the epoch
    last_result: object = None  # the latest evaluation (its confusion matrix goes to the tracker at the end)

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    # ------------------------------------------------------------------------------------------ files

    def save(self, kind: str = "last") -> Path:
        """Checkpoint the run into ``OUT/<kind>``: ``last`` (epoch ends, stops) and ``step`` (every
        ``--save-every`` steps) hold the weights and everything a resume needs, ``best`` the weights and
        metrics. Every process calls it (each holds its own random state); rank 0 writes, atomically, and
        the others wait so that nobody reads a half-written one."""
        directory, progress = self.out / kind, self.progress
        state = self.train_state() if kind in ("last", "step") else None
        if self.ctx.is_main:
            meta = {
                "config": self.model.config.to_dict(),
                "class_names": list(self.class_names),
                "epoch": progress.epoch,
                "metrics": progress.history[-1] if progress.history else {},
                "train": {"dataset": self.cfg.dataset, "seed": self.cfg.seed, "prompts": self.cfg.prompts},
            }
            if progress.step:  # saved inside an epoch: which one, and how far into it
                meta["position"] = {"epoch": progress.epoch + 1, "step": progress.step}
            checkpoint.save_checkpoint(directory, self.model, meta, state)
        distributed.barrier()
        if kind == "last":
            progress.saved_at = progress.position
        return directory

    def train_state(self) -> dict:
        """All that a resume needs besides the weights. Every process's RNG state is kept (they
        differ), gathered to the one that writes."""
        rng = get_rng_state()
        if self.ctx.distributed:
            import torch.distributed as dist

            gathered = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, rng)  # between our own processes only; the file holds no pickle
            rng = gathered
        else:
            rng = [rng]
        return {
            "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng,
            "position": self.progress.to_dict(),
            "history": self.progress.history,
            "best": self.progress.best,
        }

    def restore(self, directory: Path, saved: dict) -> None:
        """Continue the run saved in ``directory`` (``saved``: its training state) exactly where it stopped."""
        checkpoint.load_weights(self.model, directory)
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        position = saved["position"]
        self.progress = Progress(position["epoch"], position["step"], position["iteration"], position["sums"],
                                 saved["history"], saved["best"])
        set_rng_state(saved["rng"], self.ctx)
        self.progress.saved_at = self.progress.position

    def summary(self) -> dict:
        def entry(record):
            if record is None:
                return None
            return {"epoch": record["epoch"], "top1": record.get("top1"), "top5": record.get("top5"),
                    "mean_class": record.get("mean_class"), "videos": record.get("videos"),
                    "train_loss": record.get("train_loss")}

        history = self.progress.history
        evaluated = [r for r in history if "top1" in r]
        return {"best": entry(self.progress.best), "final": entry(evaluated[-1] if evaluated else None),
                "epochs": len(history), "wall_seconds": time.perf_counter() - self.started,
                "checkpoints": {"last": str(self.out / "last"), "best": str(self.out / "best")}}


# ------------------------------------------------------------------------------------------------
# Random state
# ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(per_rank: list[dict], ctx: distributed.Context) -> None:
    if len(per_rank) != ctx.world_size:
        # Another number of processes than the saved run: the data order is unchanged (it depends on
        # the seed and epoch only); model randomness restarts from the seed.
        if ctx.is_main:
            err_console.print(f"[yellow]note: the run was saved with {len(per_rank)} process(es), resumed with "
                              f"{ctx.world_size}; random state re-seeded[/yellow]")
        return
    state = per_rank[ctx.rank]
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------------------------
# Stopping
# ------------------------------------------------------------------------------------------------


# How a run stopped by a signal exits: Ctrl-C as shells expect (128 + SIGINT); a preemption (SIGTERM from
# SLURM, Kubernetes or torchrun, SIGUSR1 ahead of a time limit) with EX_TEMPFAIL, which a requeue script
# tests: a resumable checkpoint was written, run the same command again.
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 75


class StopFlag:
    """``with StopFlag() as stop:`` a signal in ``SIGNALS`` sets ``stop.requested`` (and ``stop.signal``);
    the run stops at the next step boundary after saving a resumable checkpoint. A second one raises
    KeyboardInterrupt at once. Outside the main thread signals are left alone."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.requested = False
        self.signal: signal.Signals | None = None
        self._previous: dict = {}

    def request(self) -> None:
        """Stop as after Ctrl-C, without a signal (a test's fault injection)."""
        self.requested = True

    @property
    def exit_code(self) -> int:
        return EXIT_PREEMPTED if self.signal in (signal.SIGTERM, signal.SIGUSR1) else EXIT_INTERRUPTED

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signal.Signals(signum)
        if self.signal == signal.SIGINT:
            err_console.print("[yellow]Ctrl-C: stopping after this step and saving a resumable checkpoint "
                              "(press again to stop at once)[/yellow]")
        else:
            err_console.print(f"[yellow]{self.signal.name}: stopping after this step and saving a resumable "
                              "checkpoint[/yellow]", highlight=False)

    def __enter__(self) -> StopFlag:
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:  # None: the handler was not installed from Python
                signal.signal(signum, previous)
        self._previous = {}
