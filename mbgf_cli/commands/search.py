"""``mbgf search``: rank the videos of an embeddings file by a text or by a video."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands.options import path_text


def search(
    embeddings_file: Path = typer.Argument(..., show_default=False, metavar="EMBEDDINGS",
                                           help="A file written by `mbgf embed`."),
    query: Optional[str] = typer.Argument(None, show_default=False, metavar="QUERY",
                                          help='What to look for, in words: "someone juggling".'),
    like: Optional[Path] = typer.Option(None, "--like", show_default=False,
                                        help="Rank by similarity to this video instead (one of the file's, or any "
                                             "video file, embedded with the file's model)."),
    top_k: int = typer.Option(10, "--top-k", "-k", help="Videos shown."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", show_default=False,
                                              help="The model the file was made with, if it has moved since."),
    device: Optional[str] = typer.Option(None, "--device", show_default=False, help="cpu or cuda."),
    amp: str = typer.Option("auto", "--amp", help="bf16 | fp16 | off | auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as one JSON object."),
):
    """Search embedded videos: text-to-video (cosine similarity to the text's embedding) or --like a video."""
    from mbgf_cli import embeddings

    cfg = embeddings.SearchConfig(embeddings=str(embeddings_file), query=query, like=path_text(like), top_k=top_k,
                                  checkpoint=path_text(checkpoint), device=device, amp=amp, as_json=as_json)
    embeddings.print_search(embeddings.search(cfg), as_json)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
