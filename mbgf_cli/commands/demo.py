"""``mbgf demo``: a local web page to try a model on a video (needs the ``demo`` extra)."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from mbgf_cli.errors import UserError
from mbgf_cli.inference.configs import WindowOptions
from mbgf_cli.settings import (
    ABOVE_0,
    AT_LEAST_1,
    CLASSES,
    ModelSourceOptions,
    Range,
    RuntimeOptions,
    command_options,
    option,
)

SERVER = "Server"


@dataclass
class DemoConfig(WindowOptions, ModelSourceOptions, RuntimeOptions):
    top_k: int = option(5, "--top-k", "-k", panel=CLASSES, range=AT_LEAST_1, help="Classes shown per video.")
    host: str | None = option(None, "--host", panel=SERVER, none="127.0.0.1, this machine only",
                              help="Address to serve on. Another one lets other machines use the page, which has no "
                                   "login.")
    port: int = option(7860, "--port", panel=SERVER, range=Range(0, 65535), help="Port (0: any free one).")
    max_upload_mb: float = option(200.0, "--max-upload-mb", panel=SERVER, range=ABOVE_0,
                                  help="The largest video file the page accepts, in MB.")


@command_options(DemoConfig, exclude=("compile",))  # one video at a time: nothing worth compiling for
def demo(cfg: DemoConfig):
    """Serve a page to try the model: drop a video, type classes, see the top classes (and MBGF's gate)."""
    try:
        from mbgf_cli.demo import server
    except ImportError as e:
        missing = (e.name or "a package").split(".")[0]
        raise UserError(f"mbgf demo needs the demo extra ({missing} is not installed): pip install 'mbgf[demo]'") \
            from None

    choice = server.ModelChoice(cfg.checkpoint, cfg.pretrained, cfg.model, cfg.frames, cfg.input_size, cfg.prompts,
                                cfg.device, cfg.amp)
    from mbgf_cli.inference.timeline import window_and_stride

    window, stride = window_and_stride(cfg)
    settings = server.DemoSettings(top_k=cfg.top_k, max_upload_mb=cfg.max_upload_mb, window=window, stride=stride)
    server.run_demo(choice, settings, host=cfg.host if cfg.host is not None else server.LOOPBACK, port=cfg.port,
                    allow_remote=cfg.host is not None)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
