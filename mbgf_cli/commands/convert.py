"""``mbgf convert``: a published checkpoint (OpenAI CLIP, ActionCLIP, mmaction2's ActionCLIP, X-CLIP,
ViFi-CLIP file, or a Hugging Face XCLIPModel/CLIPModel directory) -> an mbgf checkpoint directory."""

from dataclasses import dataclass
from pathlib import Path

import typer

from mbgf_cli.console import console, err_console
from mbgf_cli.settings import AT_LEAST_1, argument, command_options, option

FORMATS = ("auto", "openai", "actionclip", "mmaction2", "xclip", "vificlip", "hf")


@dataclass
class ConvertConfig:
    source: str = argument(..., path=True, help="The checkpoint: a file (.pt/.pth/.bin/.safetensors) or a Hugging "
                                                "Face model directory (config.json beside the weights).")
    format: str = option("auto", "--format", choices=FORMATS,
                         help=f"The source's format ({', '.join(FORMATS)}); auto tells it from the keys and says which.")
    frames: int | None = option(None, "--frames", range=AT_LEAST_1, none="the file's, else 8",
                                help="Frames per clip; fewer than the stored temporal positions slices them, more is "
                                     "refused.")
    output: str = option(..., "--output", "-o", "--out", path=True, help="The mbgf checkpoint directory to write.")
    overwrite: bool = option(False, "--overwrite",
                             help="Write into a non-empty OUTPUT beside its files (only what mbgf wrote there before "
                                  "is replaced).")
    strict: bool = option(True, "--strict/--no-strict",
                          help="Fail on missing or unexpected weights (--no-strict loads the rest and lists them).")
    pretrained: str | None = option(None, "--pretrained",
                                    help="CLIP weights (ViT-B/16 or a file) for what a file lacks: ViFi-CLIP stores no "
                                         "token embedding (default: the release its config names).")


@command_options(ConvertConfig)
def convert(cfg: ConvertConfig):
    """Convert a published checkpoint into an mbgf checkpoint (model.safetensors with its config)."""
    from mbgf_cli.interop import convert_checkpoint  # torch and the models only when the command runs

    directory, meta = convert_checkpoint(Path(cfg.source), Path(cfg.output), cfg.format, cfg.frames, cfg.strict,
                                         cfg.pretrained, cfg.overwrite)
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
