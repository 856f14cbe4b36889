"""The ``mbgf`` command line: a thin Typer app. Each command parses, calls the engine, prints."""

import sys
import traceback

import typer
from rich.markup import escape

from mbgf_cli import __version__
from mbgf_cli.console import err_console
from mbgf_cli.errors import UserError

app = typer.Typer(
    name="mbgf",
    help="Video action recognition with CLIP, ActionCLIP and X-CLIP, with or without MBGF.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"mbgf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors (any position works)."),
):
    """mbgf: train, evaluate, few-shot and cost CLIP-based video models."""


# Commands: one module each under mbgf_cli/commands, registered here.
from mbgf_cli.commands import register_all  # noqa: E402

register_all(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line for user errors, a traceback only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]  # accepted in any position, not only before the command
    try:
        # standalone mode: Typer itself reports usage errors (exit 2) and handles Exit/Abort.
        app(args=args, prog_name="mbgf")
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the one place errors become messages
        if debug:
            traceback.print_exc()
        if isinstance(e, (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            err_console.print(f"[bold red]error:[/bold red] {escape(_one_line(e))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        err_console.print(
            f"[bold red]error:[/bold red] {type(e).__name__}: {escape(_one_line(e))} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return " ".join(text.split())
