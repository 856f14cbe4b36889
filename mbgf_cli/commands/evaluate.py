"""``mbgf eval``: test a checkpoint (or zero-shot CLIP) on a video list with multi-view testing; with
``--splits``, zero-shot over official splits."""

from __future__ import annotations

import typer

from mbgf_cli.commands.options import list_options_command
from mbgf_cli.console import console
from mbgf_cli.inference.configs import EvalConfig
from mbgf_cli.settings import command_options


@command_options(EvalConfig)
def evaluate(cfg: EvalConfig):
    """Evaluate: top-1, top-5, mean class accuracy over multi-view predictions."""
    from mbgf_cli import evaluation

    if cfg.splits:
        return zero_shot_splits(cfg, cfg.splits)
    result, info = evaluation.evaluate(cfg)
    evaluation.print_result(result, info, cfg)


def zero_shot_splits(cfg, splits: list[int]) -> None:
    """A row per split and the mean ± std (``--json``: every split's numbers, the mean and std, as
    fractions like ``mbgf eval --json``)."""
    from mbgf_cli import eval_splits

    summary = eval_splits.zero_shot_over_splits(cfg, splits)
    if cfg.as_json:
        import json

        console.print_json(json.dumps(summary.to_json()))
        return
    console.print(eval_splits.splits_table(summary))


def register(app: typer.Typer) -> None:
    app.command("eval", cls=list_options_command("--splits"))(evaluate)
