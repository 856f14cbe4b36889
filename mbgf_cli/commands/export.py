"""``mbgf export``: an mbgf checkpoint (or any checkpoint ``mbgf convert`` reads) in another library's
layout; ``--format hf`` writes a transformers XCLIPModel/CLIPModel directory, ``--format onnx`` an ONNX
file for onnxruntime (``mbgf_cli.interop.onnx``)."""

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.console import console, err_console
from mbgf_cli.errors import UserError


class TargetFormat(str, Enum):
    hf = "hf"
    onnx = "onnx"


def export(
    checkpoint: Path = typer.Argument(..., help="An mbgf checkpoint directory (e.g. runs/x/best), or a published "
                                                "checkpoint, converted on the fly."),
    format: TargetFormat = typer.Option(TargetFormat.hf, "--format",
                                        help="hf: a Hugging Face transformers model directory (XCLIPModel for xclip "
                                             "models, CLIPModel for clip ones; models with MBGF have no counterpart); "
                                             "onnx: an ONNX file of the video model with MBGF and the classes' text "
                                             "(mbgf predict --checkpoint FILE.onnx runs it with onnxruntime)."),
    output: Path = typer.Option(..., "--output", "-o", "--out", help="hf: the directory to write (must not exist, or "
                                                                      "be empty); onnx: the file to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what mbgf wrote there before (never a file "
                                                              "of yours)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False,
                                             help="CLIP weights for what a published file lacks (as in mbgf convert)."),
    free_text: bool = typer.Option(False, "--free-text", help="onnx: any classes at run time: the video file takes "
                                                              "the classes' text features, and OUTPUT's .text.onnx "
                                                              "beside it is the text encoder."),
    classes: Optional[str] = typer.Option(None, "--classes", show_default=False,
                                          help='onnx: the classes to bake in, comma-separated (default: the '
                                               'checkpoint\'s).'),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False,
                                          help="onnx: the classes to bake in, from a file (labels.csv or a name a line)."),
):
    """Write a checkpoint in another library's layout: transformers' from_pretrained(OUTPUT) loads it; or an
    ONNX file that onnxruntime runs (mbgf predict --checkpoint OUTPUT)."""
    if format == TargetFormat.onnx:
        return export_onnx(checkpoint, output, overwrite, pretrained, free_text, classes, labels)
    if free_text or classes is not None or labels is not None:
        raise UserError("--free-text, --classes and --labels are options of --format onnx")
    from mbgf_cli.interop import export_checkpoint  # torch, transformers and the models only when it runs

    directory, written = export_checkpoint(checkpoint, output, format.value, overwrite, pretrained)
    console.print(f"{checkpoint} -> {directory} (transformers {written}: {written}.from_pretrained({str(directory)!r}))",
                  highlight=False, soft_wrap=True)


def export_onnx(checkpoint: Path, output: Path, overwrite: bool, pretrained: Optional[str], free_text: bool,
                classes: Optional[str], labels: Optional[Path]) -> None:
    from mbgf_cli.inference import parse_classes, read_class_names
    from mbgf_cli.interop.onnx import export_onnx

    if free_text and (classes is not None or labels is not None):
        raise UserError("--free-text takes its classes at run time: give it without --classes or --labels")
    if classes is not None and labels is not None:
        raise UserError("give either --classes or --labels, not both")
    names = parse_classes(classes) if classes is not None else read_class_names(labels) if labels else None
    with err_console.status("exporting") as status:
        exported = export_onnx(checkpoint, output, overwrite, free_text, names, pretrained,
                               lambda text: status.update(text))
    files = f"{exported.video} and {exported.text}" if exported.text else f"{exported.video}"
    what = "free-text classes" if exported.text else f"{len(exported.class_names)} classes"
    console.print(f"{checkpoint} -> {files} (ONNX, {exported.name}, {what}: mbgf predict VIDEOS --checkpoint "
                  f"{exported.video})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
