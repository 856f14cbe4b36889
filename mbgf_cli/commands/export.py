"""``mbgf export``: an mbgf checkpoint (or any checkpoint ``mbgf convert`` reads) in another library's
layout; ``--format hf`` writes a transformers XCLIPModel/CLIPModel directory."""

from dataclasses import dataclass
from pathlib import Path

import typer

from mbgf_cli.console import console
from mbgf_cli.settings import argument, command_options, option


@dataclass
class ExportConfig:
    checkpoint: str = argument(..., path=True, help="An mbgf checkpoint directory (e.g. runs/x/best), or a published "
                                                    "checkpoint, converted on the fly.")
    format: str = option("hf", "--format", choices=("hf",),
                         help="hf: a Hugging Face transformers model directory (XCLIPModel for xclip models, CLIPModel "
                              "for clip ones; models with MBGF have no counterpart).")
    output: str = option(..., "--output", "-o", "--out", path=True,
                         help="The directory to write (new, empty, or a previous export's).")
    overwrite: bool = option(False, "--overwrite",
                             help="Write into a non-empty OUTPUT beside its files (only what mbgf wrote there before "
                                  "is replaced).")
    pretrained: str | None = option(None, "--pretrained",
                                    help="CLIP weights for what a published file lacks (as in mbgf convert).")


@command_options(ExportConfig)
def export(cfg: ExportConfig):
    """Write a checkpoint in another library's layout: transformers' from_pretrained(OUTPUT) loads it."""
    from mbgf_cli.interop import export_checkpoint  # torch, transformers and the models only when it runs

    checkpoint = cfg.checkpoint
    directory, written = export_checkpoint(Path(checkpoint), Path(cfg.output), cfg.format, cfg.overwrite,
                                           cfg.pretrained)
    console.print(f"{checkpoint} -> {directory} (transformers {written}: {written}.from_pretrained({str(directory)!r}))",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
