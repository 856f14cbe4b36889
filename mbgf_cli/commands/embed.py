"""``mbgf embed``: normalised video (and text) embeddings of your videos, in a safetensors file."""

from __future__ import annotations

import typer

from mbgf_cli.inference.configs import EMBED_TIMELINE_HELP, EmbedConfig
from mbgf_cli.settings import command_options


@command_options(EmbedConfig, help={"timeline": EMBED_TIMELINE_HELP})
def embed(cfg: EmbedConfig):
    """Embed videos: unit-norm video embeddings [N, E] with their paths (and text embeddings), for search."""
    from mbgf_cli import embeddings

    embeddings.print_embed_summary(embeddings.embed(cfg), cfg.as_json)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
