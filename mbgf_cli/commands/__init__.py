"""CLI commands, one module each. A module adds its command(s) to the app in ``register``."""

import typer


def register_all(app: typer.Typer) -> None:
    # Each line registers one command module (kept explicit so a broken import fails loudly).
    pass
