"""``mbgf search``: rank the videos of an embeddings file by a text or by a video."""

from __future__ import annotations

import typer

from mbgf_cli.inference.configs import SearchConfig
from mbgf_cli.settings import command_options


@command_options(SearchConfig, exclude=("compile",))  # text and one --like video: nothing to compile for
def search(cfg: SearchConfig):
    """Search embedded videos: text-to-video (cosine similarity to the text's embedding) or --like a video."""
    from mbgf_cli import embeddings

    embeddings.print_search(embeddings.search(cfg), cfg.as_json)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
