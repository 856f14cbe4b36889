"""``mbgf embed``: normalised video (and text) embeddings of your videos, in a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands import options
from mbgf_cli.commands.options import path_text
from mbgf_cli.errors import UserError

MODEL = "Model"
DATA = "Data"
OUTPUT = "Output"
TIMELINE = "Timeline"


def embed(
    paths: list[Path] = typer.Argument(..., show_default=False, metavar="PATH...",
                                       help="Video files, folders (searched recursively) or list files (.txt)."),
    output: Path = typer.Option(..., "--output", "-o", "--out", show_default=False, rich_help_panel=OUTPUT,
                                help="The embeddings file to write (e.g. videos.safetensors)."),
    checkpoint: Optional[Path] = options.INFER_CHECKPOINT,
    pretrained: Optional[str] = options.INFER_PRETRAINED,
    model: Optional[str] = options.INFER_MODEL,
    frames: Optional[int] = options.INFER_FRAMES,
    input_size: Optional[int] = options.INFER_INPUT_SIZE,
    texts: Optional[str] = typer.Option(None, "--texts", show_default=False, rich_help_panel=OUTPUT,
                                        help='Also embed these texts, comma-separated: "juggling, riding a bike".'),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False, rich_help_panel=OUTPUT,
                                          help="Also embed the class names of this file (labels.csv or a name a line)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False, rich_help_panel=MODEL,
                                          help="all | one template per text (default: as the model was trained)."),
    views: str = options.INFER_VIEWS,
    batch_size: int = options.INFER_BATCH_SIZE,
    workers: Optional[int] = options.INFER_WORKERS,
    decoder: str = options.INFER_DECODER,
    strict: bool = options.INFER_STRICT,
    device: Optional[str] = options.INFER_DEVICE,
    amp: str = options.INFER_AMP,
    compile_model: bool = options.INFER_COMPILE_MODEL,
    shard_size: int = typer.Option(1000, "--shard-size", rich_help_panel=OUTPUT,
                                   help="Videos per shard (OUTPUT.parts/): a rerun resumes from the finished ones."),
    overwrite: bool = typer.Option(False, "--overwrite", rich_help_panel=OUTPUT,
                                   help="Replace an OUTPUT made from other videos or another model."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT, help="Print the summary as JSON."),
    stop_after_shards: Optional[int] = typer.Option(None, "--stop-after-shards", hidden=True),
    timeline: bool = typer.Option(False, "--timeline", rich_help_panel=TIMELINE,
                                  help="An embedding per window of each video (with its start and end), so that "
                                       "mbgf search finds the moment. Decodes each video once."),
    window: Optional[float] = typer.Option(None, "--window", show_default=False, rich_help_panel=TIMELINE,
                                           help="--timeline: window length in seconds (default 2)."),
    stride: Optional[float] = typer.Option(None, "--stride", show_default=False, rich_help_panel=TIMELINE,
                                           help="--timeline: seconds from one window's start to the next (default 1)."),
):
    """Embed videos: unit-norm video embeddings [N, E] with their paths (and text embeddings), for search."""
    from mbgf_cli import embeddings

    cfg = embeddings.EmbedConfig(
        inputs=[str(p) for p in paths], output=str(output), checkpoint=path_text(checkpoint), pretrained=pretrained,
        model=model, frames=frames, input_size=input_size, prompts=prompts, texts=texts, labels=path_text(labels),
        views=views, batch_size=batch_size, workers=workers, device=device, decoder=decoder, strict=strict, amp=amp,
        compile=compile_model, shard_size=shard_size, overwrite=overwrite, stop_after_shards=stop_after_shards,
        timeline=timeline, window=window, stride=stride,
    )
    if timeline:
        from mbgf_cli import timeline_cli

        embeddings.print_embed_summary(timeline_cli.embed(cfg), as_json)
        return
    for option, value in (("--window", window), ("--stride", stride)):
        if value is not None:
            raise UserError(f"{option} goes with --timeline")
    embeddings.print_embed_summary(embeddings.embed(cfg), as_json)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
