"""What a training run shows: its header, a progress line per step, the epoch table and the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mbgf_cli.console import console, err_console
from mbgf_cli.run_state import Run


@dataclass
class Display:
    """The epoch table (its header printed once) and whether plain lines stand in for the live bar."""

    table: EpochTable = field(default_factory=lambda: EpochTable())
    log_lines: bool = field(default_factory=lambda: not err_console.is_terminal)  # no live bar: print lines


def show_step(run: Run, bar, task, loss_value: float, lr: float) -> None:
    progress, steps = run.progress, run.schedule.steps_per_epoch
    info = f"loss {loss_value:.4f}  lr {lr:.2e}  {progress.clips_per_s:.1f} clips/s"
    bar.update(task, advance=1, info=info)
    if run.display.log_lines and run.ctx.is_main and progress.step % max(1, steps // 5) == 0:
        # no live bar in a log file: a plain line five times per epoch instead
        err_console.print(f"epoch {progress.epoch + 1}/{run.cfg.epochs} step {progress.step}/{steps}  {info}",
                          highlight=False)


def show_epoch(run: Run, record: dict) -> None:
    """An epoch's row of the table, and what was skipped (rank 0)."""
    if not run.ctx.is_main:
        return
    run.display.table.add(record, run.cfg.epochs)
    for dataset, name in ((run.data.train_set, "train"), (run.data.val_set, "val")):
        line = dataset.skipped_summary(run.out / f"skipped_{name}.txt")
        if line:
            err_console.print(f"[yellow]{name}:[/yellow] {line}", highlight=False)


class EpochTable:
    """One row per epoch as it ends (the header once), columns of fixed width so the rows line up."""

    COLUMNS = (("epoch", 7), ("train loss", 10), ("val top-1", 9), ("val top-5", 9), ("mean class", 10),
               ("best", 6), ("lr", 7), ("clips/s", 7))

    def __init__(self):
        self.rows = 0

    def add(self, record: dict, epochs: int) -> None:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, show_header=self.rows == 0, show_edge=False, pad_edge=False,
                      padding=(0, 0, 0, 1))
        for name, width in self.COLUMNS:
            table.add_column(name, justify="right", min_width=width, max_width=width, no_wrap=True)
        table.add_row(f"{record['epoch']}/{epochs}", f"{record['train_loss']:.4f}", _pct(record.get("top1")),
                      _pct(record.get("top5")), _pct(record.get("mean_class")), _pct(record.get("best_top1")),
                      f"{record['lr']:.1e}", f"{record['clips_per_s']:.1f}")
        console.print(table)
        self.rows += 1


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title="summary", title_justify="left")
    for column in ("", "epoch", "top-1 (%)", "top-5 (%)", "mean class (%)", "videos"):
        table.add_column(column, justify="right")
    for name in ("best", "final"):
        entry = summary.get(name)
        if entry:
            table.add_row(name, str(entry["epoch"]), f"{100 * entry['top1']:.2f}", f"{100 * entry['top5']:.2f}",
                          f"{100 * entry['mean_class']:.2f}", str(entry["videos"]))
    console.print(table)
    err_console.print(f"checkpoints: {summary['checkpoints']['best']}, {summary['checkpoints']['last']}; "
                      f"metrics.jsonl, summary.json in {Path(summary['checkpoints']['last']).parent}", highlight=False)


def describe_run(run: Run) -> None:
    """The run's header (rank 0): model, data, processes, batch, steps, precision, trackers."""
    cfg, ctx, data, schedule, model = run.cfg, run.ctx, run.data, run.schedule, run.model
    if not ctx.is_main:
        return
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    err_console.print(
        f"{model.config.name}, {model.config.frames}x{model.config.input_size}: {params / 1e6:.2f}M parameters "
        f"({trained / 1e6:.2f}M trained); {len(data.train_set)} train / {len(data.val_set)} val videos, "
        f"{len(data.class_names)} classes; {ctx.world_size} process(es) on {ctx.device.type}; batch "
        f"{cfg.batch_size} x {ctx.world_size} x {schedule.accum_steps} accumulated = {cfg.total_batch}; "
        f"{schedule.steps_per_epoch} steps/epoch, {cfg.epochs} epochs -> {cfg.out}", highlight=False)
    compiled = "; --compile: the video encoder is compiled at its first use" if cfg.compile else ""
    err_console.print(f"precision: {run.precision}{compiled}", highlight=False, soft_wrap=True)
    for note in run.tracker.notes():
        err_console.print(note, highlight=False)
