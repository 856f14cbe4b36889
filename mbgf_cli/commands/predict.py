"""``mbgf predict``: classify your own videos with a checkpoint's classes or free-text ones."""

from __future__ import annotations

import typer

from mbgf_cli.inference.configs import PREDICT_TIMELINE_HELP, PredictConfig
from mbgf_cli.settings import command_options


@command_options(PredictConfig, help={"timeline": PREDICT_TIMELINE_HELP})
def predict(cfg: PredictConfig):
    """Classify videos: the top classes of each, with their probabilities."""
    from mbgf_cli import inference

    if cfg.timeline:
        from mbgf_cli.inference import timeline

        timeline.print_timelines(*inference.predict_timeline(cfg), cfg)
        return
    result, info = inference.predict(cfg)
    inference.print_predictions(result, info, cfg)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
