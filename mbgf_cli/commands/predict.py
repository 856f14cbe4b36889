"""``mbgf predict``: classify your own videos with a checkpoint's classes or free-text ones."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands.options import path_text

MODEL = "Model"
CLASSES = "Classes"
DATA = "Data"
OUTPUT = "Output"


def predict(
    paths: list[Path] = typer.Argument(..., show_default=False, metavar="PATH...",
                                       help="Video files, folders (searched recursively) or list files (.txt: a "
                                            "path a line, optionally a label)."),
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
    classes: Optional[str] = typer.Option(None, "--classes", show_default=False, rich_help_panel=CLASSES,
                                          help='Free-text classes, comma-separated: "juggling balls, riding a bike".'),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False, rich_help_panel=CLASSES,
                                          help="Classes from a file: id,name CSV (labels.csv) or one name a line."),
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False, rich_help_panel=CLASSES,
                                          help="all | one template per class (default: as the model was trained)."),
    top_k: int = typer.Option(5, "--top-k", "-k", rich_help_panel=OUTPUT, help="Classes shown per video."),
    views: str = typer.Option("1x1", "--views", rich_help_panel=DATA,
                              help="CLIPSxCROPS per video, as in mbgf eval (e.g. 4x3)."),
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
    explain: bool = typer.Option(False, "--explain", rich_help_panel=OUTPUT,
                                 help="MBGF's gate weights (appearance, temporal, motion) per video."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", show_default=False, rich_help_panel=OUTPUT,
                                            help="Also write video,rank,id,label,probability rows to this file."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT,
                                 help="Print one JSON object: {videos: [{video, top: [{id, label, probability}]}], "
                                      "skipped: [...]}."),
):
    """Classify videos: the top classes of each, with their probabilities."""
    from mbgf_cli import inference

    cfg = inference.PredictConfig(
        inputs=[str(p) for p in paths], checkpoint=path_text(checkpoint), pretrained=pretrained, model=model,
        frames=frames, input_size=input_size, labels=path_text(labels), classes=classes, prompts=prompts,
        top_k=top_k, views=views, batch_size=batch_size, workers=workers, device=device, decoder=decoder,
        strict=strict, amp=amp, compile=compile_model, explain=explain, csv=path_text(csv_file), as_json=as_json,
    )
    result, info = inference.predict(cfg)
    inference.print_predictions(result, info, cfg)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
