"""``mbgf demo``: a local web page to try a model on a video (needs the ``demo`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands import options
from mbgf_cli.commands.options import path_text
from mbgf_cli.errors import UserError

CLASSES = "Classes"
SERVER = "Server"


def demo(
    checkpoint: Optional[Path] = options.INFER_CHECKPOINT,
    pretrained: Optional[str] = options.INFER_PRETRAINED,
    model: Optional[str] = options.INFER_MODEL,
    frames: Optional[int] = options.INFER_FRAMES,
    input_size: Optional[int] = options.INFER_INPUT_SIZE,
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False, rich_help_panel=CLASSES,
                                          help="all | one template per class (default: as the model was trained)."),
    top_k: int = typer.Option(5, "--top-k", "-k", rich_help_panel=CLASSES, help="Classes shown per video."),
    window: float = typer.Option(2.0, "--window", rich_help_panel=CLASSES,
                                 help="Timeline of a long video: seconds per window."),
    stride: float = typer.Option(1.0, "--stride", rich_help_panel=CLASSES,
                                 help="Timeline of a long video: seconds between window starts."),
    device: Optional[str] = options.INFER_DEVICE,
    amp: str = options.INFER_AMP,
    host: Optional[str] = typer.Option(None, "--host", show_default=False, rich_help_panel=SERVER,
                                       help="Address to serve on (default 127.0.0.1, this machine only). Another "
                                            "one lets other machines use the page, which has no login."),
    port: int = typer.Option(7860, "--port", rich_help_panel=SERVER, help="Port (0: any free one)."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", rich_help_panel=SERVER,
                                        help="The largest video file the page accepts, in MB."),
):
    """Serve a page to try the model: drop a video, type classes, see the top classes (and MBGF's gate)."""
    try:
        from mbgf_cli.demo import server
    except ImportError as e:
        missing = (e.name or "a package").split(".")[0]
        raise UserError(f"mbgf demo needs the demo extra ({missing} is not installed): pip install 'mbgf[demo]'") \
            from None

    choice = server.ModelChoice(path_text(checkpoint), pretrained, model, frames, input_size, prompts, device, amp)
    settings = server.DemoSettings(top_k=top_k, max_upload_mb=max_upload_mb, window=window, stride=stride)
    server.run_demo(choice, settings, host=host if host is not None else server.LOOPBACK, port=port,
                    allow_remote=host is not None)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
