"""CLI commands, one module each. A module adds its command(s) to the app in ``register``."""

import typer

from mbgf_cli.commands import convert, flops


def register_all(app: typer.Typer) -> None:
    # Each line registers one command module (kept explicit so a broken import fails loudly).
    flops.register(app)
    convert.register(app)
    from mbgf_cli.commands import export; export.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import prepare_data; prepare_data.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import train; train.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import evaluate; evaluate.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import fewshot; fewshot.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import predict; predict.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import embed; embed.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import search; search.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import models; models.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import base2novel; base2novel.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import k600_zeroshot; k600_zeroshot.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import reproduce; reproduce.register(app)  # noqa: E702, I001 - one line per command
    from mbgf_cli.commands import demo; demo.register(app)  # noqa: E702, I001 - one line per command
