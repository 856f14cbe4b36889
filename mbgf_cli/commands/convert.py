"""``mbgf convert``: a published checkpoint (OpenAI CLIP, ActionCLIP, mmaction2's ActionCLIP, X-CLIP,
ViFi-CLIP file, or a Hugging Face XCLIPModel/CLIPModel directory) -> an mbgf checkpoint directory."""

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.console import console, err_console

SourceFormat = Enum("SourceFormat", {name: name for name in
                                     ("auto", "openai", "actionclip", "mmaction2", "xclip", "vificlip", "hf")}, type=str)


def convert(
    source: Path = typer.Argument(..., help="The checkpoint: a file (.pt/.pth/.bin/.safetensors) or a Hugging "
                                            "Face model directory (config.json beside the weights)."),
    format: SourceFormat = typer.Option(SourceFormat.auto, "--format",
                                        help="The source's format; auto tells it from the keys and says which."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, show_default=False,
                                         help="Frames per clip (default: the file's, else 8); fewer than the stored "
                                              "temporal positions slices them, more is refused."),
    output: Path = typer.Option(..., "--output", "-o", "--out", help="The mbgf checkpoint directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty OUTPUT beside its files "
                                   "(only what mbgf wrote there before is replaced)."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Fail on missing or unexpected weights "
                                "(--no-strict loads the rest and lists them)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False,
                                             help="CLIP weights (ViT-B/16 or a file) for what a file lacks: ViFi-CLIP "
                                                  "stores no token embedding (default: the release its config names)."),
):
    """Convert a published checkpoint into an mbgf checkpoint (model.safetensors with its config)."""
    from mbgf_cli.interop import convert_checkpoint  # torch and the models only when the command runs

    directory, meta = convert_checkpoint(source, output, format.value, frames, strict, pretrained, overwrite)
    config, mismatch = meta["config"], meta.get("conversion")
    console.print(f"detected: {meta['source']['detected']}", highlight=False, soft_wrap=True)
    if mismatch:
        for kind in ("missing", "unexpected"):
            if mismatch[kind]:
                shown = ", ".join(mismatch[kind][:5]) + (" ..." if len(mismatch[kind]) > 5 else "")
                err_console.print(f"[yellow]warning:[/yellow] {len(mismatch[kind])} {kind} weight(s) "
                                  f"{'left at initialisation' if kind == 'missing' else 'not loaded'}: {shown}",
                                  highlight=False, soft_wrap=True)
    console.print(f"{meta['source']['format']} -> {directory} ({config['variant']}, {config['model']}, "
                  f"{config['frames']}x{config['input_size']}, input mean {tuple(config['input_mean'])})",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
