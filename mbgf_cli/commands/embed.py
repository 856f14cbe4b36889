"""``mbgf embed``: normalised video (and text) embeddings of your videos, in a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands.options import path_text

MODEL = "Model"
DATA = "Data"
OUTPUT = "Output"


def embed(
    paths: list[Path] = typer.Argument(..., show_default=False, metavar="PATH...",
                                       help="Video files, folders (searched recursively) or list files (.txt)."),
    output: Path = typer.Option(..., "--output", "-o", "--out", show_default=False, rich_help_panel=OUTPUT,
                                help="The embeddings file to write (e.g. videos.safetensors)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", show_default=False, rich_help_panel=MODEL,
                                              help="An mbgf checkpoint folder, or any file `mbgf convert` reads."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False, rich_help_panel=MODEL,
                                             help="Zero-shot CLIP instead: a name (ViT-B/16) or an OpenAI-format file."),
    model: Optional[str] = typer.Option(None, "--model", show_default=False, rich_help_panel=MODEL,
                                        help="Zero-shot: the backbone, when the weights do not tell."),
    frames: Optional[int] = typer.Option(None, "--frames", show_default=False, rich_help_panel=MODEL,
                                         help="Zero-shot: frames per view (default 8)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", show_default=False, rich_help_panel=MODEL,
                                             help="Zero-shot: frame size (default the backbone's)."),
    texts: Optional[str] = typer.Option(None, "--texts", show_default=False, rich_help_panel=OUTPUT,
                                        help='Also embed these texts, comma-separated: "juggling, riding a bike".'),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False, rich_help_panel=OUTPUT,
                                          help="Also embed the class names of this file (labels.csv or a name a line)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False, rich_help_panel=MODEL,
                                          help="all | one template per text (default: as the model was trained)."),
    views: str = typer.Option("1x1", "--views", rich_help_panel=DATA,
                              help="CLIPSxCROPS per video, as in mbgf eval (the views' embeddings are averaged)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", rich_help_panel=DATA,
                                   help="Videos per forward pass (x views)."),
    workers: Optional[int] = typer.Option(None, "--workers", show_default=False, rich_help_panel=DATA,
                                          help="Decoding processes (default: min(4, CPU threads))."),
    decoder: str = typer.Option("auto", "--decoder", rich_help_panel=DATA, help="auto | decord | pyav."),
    strict: bool = typer.Option(False, "--strict", rich_help_panel=DATA,
                                help="Stop at the first unreadable video instead of skipping it."),
    device: Optional[str] = typer.Option(None, "--device", show_default=False, rich_help_panel=MODEL,
                                         help="cpu or cuda (default: cuda when available)."),
    amp: str = typer.Option("auto", "--amp", rich_help_panel=MODEL, help="bf16 | fp16 | off | auto."),
    compile_model: bool = typer.Option(False, "--compile", rich_help_panel=MODEL,
                                       help="torch.compile the video encoder (a warning, and no compiling, where no "
                                            "compiler works)."),
    shard_size: int = typer.Option(1000, "--shard-size", rich_help_panel=OUTPUT,
                                   help="Videos per shard (OUTPUT.parts/): a rerun resumes from the finished ones."),
    overwrite: bool = typer.Option(False, "--overwrite", rich_help_panel=OUTPUT,
                                   help="Replace an OUTPUT made from other videos or another model."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT, help="Print the summary as JSON."),
    stop_after_shards: Optional[int] = typer.Option(None, "--stop-after-shards", hidden=True),
):
    """Embed videos: unit-norm video embeddings [N, E] with their paths (and text embeddings), for search."""
    from mbgf_cli import embeddings

    cfg = embeddings.EmbedConfig(
        inputs=[str(p) for p in paths], output=str(output), checkpoint=path_text(checkpoint), pretrained=pretrained,
        model=model, frames=frames, input_size=input_size, prompts=prompts, texts=texts, labels=path_text(labels),
        views=views, batch_size=batch_size, workers=workers, device=device, decoder=decoder, strict=strict, amp=amp,
        compile=compile_model, shard_size=shard_size, overwrite=overwrite, stop_after_shards=stop_after_shards,
    )
    embeddings.print_embed_summary(embeddings.embed(cfg), as_json)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
