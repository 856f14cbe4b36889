"""Options that ``mbgf train`` and ``mbgf fewshot`` declare alike (fewshot takes train's options), and
the small conversions every command needs. A typer ``Option`` may be the default of several commands."""

from __future__ import annotations

import typer

DATA = "Data"
MODEL = "Model"
RUN = "Run"

ROOT = typer.Option(None, "--root", rich_help_panel=DATA, show_default=False,
                    help="Dataset folder: videos/ (or videos.tar/.zip), train.txt, val.txt, labels.csv.")
LABELS = typer.Option(None, "--labels", rich_help_panel=DATA, show_default=False,
                      help="id,name CSV (default ROOT/labels.csv, else the preset's).")
DECODER = typer.Option("auto", "--decoder", rich_help_panel=DATA, help="auto | decord | pyav.")
STRICT = typer.Option(False, "--strict", rich_help_panel=DATA,
                      help="Stop at the first unreadable video instead of skipping it.")
FLIP = typer.Option(None, "--flip/--no-flip", rich_help_panel=DATA, show_default=False,
                    help="Random horizontal flip (off for direction-sensitive data).")
GRAD_CHECKPOINTING = typer.Option(False, "--grad-checkpointing", rich_help_panel=MODEL,
                                  help="Recompute activations in the backward pass (less memory).")
DEVICE = typer.Option(None, "--device", rich_help_panel=RUN, show_default=False,
                      help="cpu or cuda (default: cuda when available).")


def path_text(path) -> str | None:
    """A path option as the engines' configs hold it (text), ``None`` left alone."""
    return None if path is None else str(path)
