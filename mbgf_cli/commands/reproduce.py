"""``mbgf reproduce TABLE``: check what a published table needs, print the plan and its cost, run or
resume every run, and print the table beside the published numbers."""

from __future__ import annotations

import typer
from rich.table import Table

from mbgf_cli.console import console, err_console
from mbgf_cli.protocols.configs import ReproduceConfig
from mbgf_cli.settings import command_options


@command_options(ReproduceConfig)
def reproduce(cfg: ReproduceConfig):
    """Reproduce a published table: the plan (every run, its recipe, its cost), the runs (resumable), and the
    table beside the published numbers with the difference."""
    from mbgf_cli import tables
    from mbgf_cli.errors import UserError
    from mbgf_cli.protocols import reproduce as engine

    table, as_json = cfg.table, cfg.as_json
    plan = engine.make_plan(cfg)
    report = {"table": table, "output": str(plan.out), "missing": plan.missing, "notes": plan.notes,
              "runs": [_run_json(r) for r in plan.runs]}
    if not as_json:
        _print_plan(plan)
    if cfg.dry_run:
        if as_json:
            console.print_json(data=report)
        return
    if plan.missing:
        raise UserError(f"the {table} table needs what is missing above: {plan.missing[0]}"
                        + (f" (and {len(plan.missing) - 1} more)" if len(plan.missing) > 1 else ""))
    engine.execute(plan, on_command=lambda run: err_console.rule(f"mbgf {' '.join(run.argv)}", style="dim"))
    result = engine.measured_table(plan)
    rows = engine.comparison(result, table)
    if as_json:
        console.print_json(data={**report, "table": tables.table_json(result),
                                 "comparison": [{"method": m, "what": w, "cells": c} for m, w, c in rows]})
        return
    _print_comparison(result, rows, engine.PUBLISHED[table][1])


def _run_json(run) -> dict:
    return {"name": run.name, "command": "mbgf " + " ".join(run.argv), "recipe": run.recipe,
            "train_clips": run.train_clips, "eval_clips": run.eval_clips, "gflops_per_clip": round(run.gflops, 3),
            "gpu_hours": round(run.gpu_hours, 4), "step_seconds": run.measured_s,
            "hours_here": None if run.measured_hours is None else round(run.measured_hours, 4),
            "done": bool(run.done is not None and run.done.is_file())}


def _print_plan(plan) -> None:
    from mbgf_cli.protocols.reproduce import ASSUMED_TFLOPS

    table = Table(title=f"mbgf reproduce {plan.table}: {len(plan.runs)} runs into {plan.out}", title_justify="left")
    for column in ("run", "recipe", "clips", "GFLOP", "GPU-h", "step s", "h here", "state"):
        table.add_column(column, justify="left" if column in ("run", "recipe", "state") else "right")
    for run in plan.runs:
        r = run.recipe
        recipe = f"{r['model']} {r['frames']}x{r['input_size'] or 224} {r['epochs']}ep lr{r['lr']:g} b{r['total_batch']}"
        measured = run.measured_hours
        table.add_row(run.name, recipe, f"{run.train_clips}+{run.eval_clips}", f"{run.gflops:.1f}",
                      f"{run.gpu_hours:.3f}", "—" if run.measured_s is None else f"{run.measured_s:.2f}",
                      "—" if measured is None else f"{measured:.2f}",
                      "done" if run.done is not None and run.done.is_file() else "to run")
    console.print(table)
    total = sum(r.gpu_hours for r in plan.runs)
    console.print(f"total: {total:.2f} GPU-hours at {ASSUMED_TFLOPS:g} TFLOP/s sustained (GFLOP: forward, per clip; "
                  "training counts 3x); clips: training + evaluation; step s: one training step of one clip here, "
                  "h here: every clip at that speed", highlight=False, soft_wrap=True)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for line in plan.missing:
        console.print(f"[red]missing:[/red] {line}", highlight=False, soft_wrap=True)


def _print_comparison(result, rows, source: str) -> None:
    table = Table(title=f"{result.title}, beside the published numbers", title_justify="left")
    table.add_column("Method", style="bold")
    table.add_column("")
    for column in result.columns:
        table.add_column(column, justify="right")
    for method, what, cells in rows:
        table.add_row(method, what, *cells)
    console.print(table)
    console.print(f"published: {source}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
