"""``mbgf export``: an mbgf checkpoint (or any checkpoint ``mbgf convert`` reads) in another library's
layout; ``--format hf`` writes a transformers XCLIPModel/CLIPModel directory."""

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.console import console


class TargetFormat(str, Enum):
    hf = "hf"


def export(
    checkpoint: Path = typer.Argument(..., help="An mbgf checkpoint directory (e.g. runs/x/best), or a published "
                                                "checkpoint, converted on the fly."),
    format: TargetFormat = typer.Option(TargetFormat.hf, "--format",
                                        help="hf: a Hugging Face transformers model directory (XCLIPModel for xclip "
                                             "models, CLIPModel for clip ones; models with MBGF have no counterpart)."),
    output: Path = typer.Option(..., "--output", "-o", "--out", help="The directory to write (must not exist, or be "
                                                                      "empty)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUTPUT."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False,
                                             help="CLIP weights for what a published file lacks (as in mbgf convert)."),
):
    """Write a checkpoint in another library's layout: transformers' from_pretrained(OUTPUT) loads it."""
    from mbgf_cli.interop import export_checkpoint  # torch, transformers and the models only when it runs

    directory, written = export_checkpoint(checkpoint, output, format.value, overwrite, pretrained)
    console.print(f"{checkpoint} -> {directory} (transformers {written}: {written}.from_pretrained({str(directory)!r}))",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
