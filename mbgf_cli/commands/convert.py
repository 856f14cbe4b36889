"""``mbgf convert``: an OpenAI CLIP, ActionCLIP or X-CLIP checkpoint file -> an mbgf checkpoint directory."""

from enum import Enum
from pathlib import Path

import typer

from mbgf_cli.console import console, err_console


class SourceFormat(str, Enum):
    auto = "auto"
    openai = "openai"
    actionclip = "actionclip"
    xclip = "xclip"


def convert(
    source: Path = typer.Argument(..., help="The checkpoint file (.pt/.pth; TorchScript, torch.save or safetensors)."),
    format: SourceFormat = typer.Option(SourceFormat.auto, "--format", help="The file's format; auto tells it from the keys."),
    frames: int = typer.Option(None, "--frames", min=1, help="Frames per clip (default: the file's, else 8); "
                               "fewer than the stored temporal positions slices them, more is refused."),
    output: Path = typer.Option(..., "--output", "-o", help="The mbgf checkpoint directory to write."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Fail on missing or unexpected weights "
                                "(--no-strict loads the rest and lists them)."),
):
    """Convert a published checkpoint into an mbgf checkpoint (model.safetensors with its config)."""
    from mbgf_cli.interop import convert_checkpoint  # torch and the models only when the command runs

    directory, meta = convert_checkpoint(source, output, format.value, frames, strict)
    config, mismatch = meta["config"], meta.get("conversion")
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
