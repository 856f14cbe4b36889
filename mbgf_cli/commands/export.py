"""``mbgf export``: an mbgf checkpoint (or any checkpoint ``mbgf convert`` reads) in another library's
layout; ``--format hf`` writes a transformers XCLIPModel/CLIPModel directory, ``--format onnx`` an ONNX
file for onnxruntime (``mbgf_cli.interop.onnx``)."""

from dataclasses import dataclass
from pathlib import Path

import typer

from mbgf_cli.console import console, err_console
from mbgf_cli.errors import UserError
from mbgf_cli.settings import ClassOptions, argument, command_options, option


@dataclass
class ExportConfig(ClassOptions):
    checkpoint: str = argument(..., path=True, help="An mbgf checkpoint directory (e.g. runs/x/best), or a published "
                                                    "checkpoint, converted on the fly.")
    format: str = option("hf", "--format", choices=("hf", "onnx"),
                         help="hf: a Hugging Face transformers model directory (XCLIPModel for xclip models, CLIPModel "
                              "for clip ones; models with MBGF have no counterpart); onnx: an ONNX file of the video "
                              "model with MBGF and the classes' text (mbgf predict --checkpoint FILE.onnx runs it "
                              "with onnxruntime).")
    output: str = option(..., "--output", "-o", "--out", path=True,
                         help="hf: the directory to write (new, empty, or a previous export's); onnx: the file.")
    overwrite: bool = option(False, "--overwrite",
                             help="Replace what mbgf wrote there before (never a file of yours; hf: written beside "
                                  "your files).")
    pretrained: str | None = option(None, "--pretrained",
                                    help="CLIP weights for what a published file lacks (as in mbgf convert).")
    free_text: bool = option(False, "--free-text",
                             help="onnx: any classes at run time: the video file takes the classes' text features, "
                                  "and OUTPUT's .text.onnx beside it is the text encoder.")


@command_options(ExportConfig)
def export(cfg: ExportConfig):
    """Write a checkpoint in another library's layout: transformers' from_pretrained(OUTPUT) loads it; or an
    ONNX file that onnxruntime runs (mbgf predict --checkpoint OUTPUT)."""
    if cfg.format == "onnx":
        return export_onnx(Path(cfg.checkpoint), Path(cfg.output), cfg.overwrite, cfg.pretrained, cfg.free_text,
                           cfg.classes, None if cfg.labels is None else Path(cfg.labels))
    if cfg.free_text or cfg.classes is not None or cfg.labels is not None:
        raise UserError("--free-text, --classes and --labels are options of --format onnx")
    from mbgf_cli.interop import export_checkpoint  # torch, transformers and the models only when it runs

    checkpoint = cfg.checkpoint
    directory, written = export_checkpoint(Path(checkpoint), Path(cfg.output), cfg.format, cfg.overwrite,
                                           cfg.pretrained)
    console.print(f"{checkpoint} -> {directory} (transformers {written}: {written}.from_pretrained({str(directory)!r}))",
                  highlight=False, soft_wrap=True)


def export_onnx(checkpoint: Path, output: Path, overwrite: bool, pretrained: str | None, free_text: bool,
                classes: str | None, labels: Path | None) -> None:
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
