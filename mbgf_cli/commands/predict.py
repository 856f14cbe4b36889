"""``mbgf predict``: classify your own videos with a checkpoint's classes or free-text ones."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands import options
from mbgf_cli.commands.options import path_text
from mbgf_cli.errors import UserError

MODEL = "Model"
CLASSES = "Classes"
DATA = "Data"
OUTPUT = "Output"
TIMELINE = "Timeline"


def predict(
    paths: list[Path] = typer.Argument(..., show_default=False, metavar="PATH...",
                                       help="Video files, folders (searched recursively) or list files (.txt: a "
                                            "path a line, optionally a label)."),
    checkpoint: Optional[Path] = options.INFER_CHECKPOINT,
    pretrained: Optional[str] = options.INFER_PRETRAINED,
    model: Optional[str] = options.INFER_MODEL,
    frames: Optional[int] = options.INFER_FRAMES,
    input_size: Optional[int] = options.INFER_INPUT_SIZE,
    classes: Optional[str] = typer.Option(None, "--classes", show_default=False, rich_help_panel=CLASSES,
                                          help='Free-text classes, comma-separated: "juggling balls, riding a bike".'),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False, rich_help_panel=CLASSES,
                                          help="Classes from a file: id,name CSV (labels.csv) or one name a line."),
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False, rich_help_panel=CLASSES,
                                          help="all | one template per class (default: as the model was trained)."),
    top_k: int = typer.Option(5, "--top-k", "-k", rich_help_panel=OUTPUT, help="Classes shown per video."),
    views: str = options.INFER_VIEWS,
    batch_size: int = options.INFER_BATCH_SIZE,
    workers: Optional[int] = options.INFER_WORKERS,
    decoder: str = options.INFER_DECODER,
    strict: bool = options.INFER_STRICT,
    device: Optional[str] = options.INFER_DEVICE,
    amp: str = options.INFER_AMP,
    compile_model: bool = options.INFER_COMPILE_MODEL,
    explain: bool = typer.Option(False, "--explain", rich_help_panel=OUTPUT,
                                 help="MBGF's gate weights (appearance, temporal, motion) per video."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", show_default=False, rich_help_panel=OUTPUT,
                                            help="Also write video,rank,id,label,probability rows to this file."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT,
                                 help="Print one JSON object: {videos: [{video, top: [{id, label, probability}]}], "
                                      "skipped: [...]}."),
    timeline: bool = typer.Option(False, "--timeline", rich_help_panel=TIMELINE,
                                  help="Top classes per window of each video (JSON: windows: [{start, end, top}]; "
                                       "CSV: video,start,end,rank,id,label,probability). Decodes each video once."),
    window: Optional[float] = typer.Option(None, "--window", show_default=False, rich_help_panel=TIMELINE,
                                           help="--timeline: window length in seconds (default 2)."),
    stride: Optional[float] = typer.Option(None, "--stride", show_default=False, rich_help_panel=TIMELINE,
                                           help="--timeline: seconds from one window's start to the next (default 1)."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default=False, rich_help_panel=TIMELINE,
                                        help="--timeline: also draw class probability over time into this PNG."),
):
    """Classify videos: the top classes of each, with their probabilities."""
    from mbgf_cli import inference

    cfg = inference.PredictConfig(
        inputs=[str(p) for p in paths], checkpoint=path_text(checkpoint), pretrained=pretrained, model=model,
        frames=frames, input_size=input_size, labels=path_text(labels), classes=classes, prompts=prompts,
        top_k=top_k, views=views, batch_size=batch_size, workers=workers, device=device, decoder=decoder,
        strict=strict, amp=amp, compile=compile_model, explain=explain, csv=path_text(csv_file), as_json=as_json,
        timeline=timeline, window=window, stride=stride, plot=path_text(plot),
    )
    if timeline:
        from mbgf_cli import timeline as timelines
        from mbgf_cli import timeline_cli

        timelines.print_timelines(*timeline_cli.predict(cfg), cfg)
        return
    for option, value in (("--window", window), ("--stride", stride), ("--plot", plot)):
        if value is not None:
            raise UserError(f"{option} goes with --timeline")
    result, info = inference.predict(cfg)
    inference.print_predictions(result, info, cfg)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
