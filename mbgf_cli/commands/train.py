"""``mbgf train``: the options of TrainConfig, the training engine, where the results are."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from mbgf_cli import presets
from mbgf_cli.console import console, err_console
from mbgf_cli.errors import UserError
from mbgf_cli.settings import RUN, check_options, command_options, narrow, option
from mbgf_cli.train_config import (
    TrainConfig,
    check_resume_options,
    explicit_resume,
    replay_config,
)

# The defaults the help shows for options the preset's recipe sets.
RECIPES = (("X-CLIP's", presets.XCLIP_RECIPE), ("synthetic", presets.SYNTHETIC_RECIPE))


@dataclass
class TrainCommand(TrainConfig):
    """``mbgf train``'s options: a run's configuration, and how to start it and report it."""

    config: str | None = option(None, "--config", panel=RUN, path=True,
                                help="Replay a run's recorded configuration (RUN/config.json); options given on the "
                                     "line override it.")
    as_json: bool = option(False, "--json", panel=RUN, help="Print the summary as JSON.")


@command_options(TrainCommand, recipes=RECIPES)
def train(context: typer.Context, cfg: TrainCommand):
    """Train a video model (also under torchrun --nproc-per-node N -m mbgf_cli train ...).

    Options the dataset preset sets show its value as their default (k400, ucf101, hmdb51: X-CLIP's
    recipe; synthetic: a recipe for 2 CPU cores); any option given wins over the preset.
    """
    from mbgf_cli import training

    command, cfg = cfg, narrow(cfg, TrainConfig)
    if command.config is not None:
        # the options typed on the line (a default, even one equal to the recorded value, replays nothing)
        given = [name for name in cfg.to_dict()
                 if getattr(context.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        cfg, differences = replay_config(command.config, cfg, given)
        from mbgf_cli.run_folder import describe_differences

        err_console.print(f"replaying {command.config}" + (
            f"; differs from the recorded: {describe_differences(differences)}" if differences else ", as recorded"),
            highlight=False)
    check_options(cfg)  # --config's recorded values too, before any work
    if explicit_resume(cfg):
        check_resume_options(cfg)
    elif cfg.dataset is None and cfg.root is None:
        raise UserError("give --dataset (k400, ucf101, hmdb51, synthetic) or --root DIR; "
                        "try: mbgf train --dataset synthetic")
    try:
        summary = training.train(cfg)
    except training.TrainingInterrupted as e:
        err_console.print(f"[yellow]{e}[/yellow]", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None
    if command.as_json:
        import json

        console.print_json(json.dumps(summary))
    else:
        from mbgf_cli.train_display import print_summary

        print_summary(summary)


def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=False)(train)
