"""The ``mbgf`` command line: a thin Typer app. Each command parses, calls the engine, prints."""

import errno
import os
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
        message, code = describe(e)
        err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(code)


# What the operating system said, as the end of a sentence about the path it names.
OS_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EROFS: "on a read-only file system",
    errno.ENOSPC: "no space left on the device; free some space, then run the same command again",
    errno.EDQUOT: "over the disk quota; free some space, then run the same command again",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
}


def describe(e: BaseException) -> tuple[str, int]:
    """``(one sentence, exit code)`` for an error: 2 for bad input (a UserError, a path the system
    refused, a file that is not text), 1 for anything else; never a Python exception's name."""
    if isinstance(e, UserError):
        return _one_line(e), 2
    if isinstance(e, OSError) and e.errno is not None:
        reason = OS_REASONS.get(e.errno) or (e.strerror or "").lower() or "the system refused it"
        if e.errno == errno.EEXIST and e.filename is not None and os.path.isfile(e.filename):
            reason = "is a file, where a folder is needed"
        where = e.filename if e.filename is not None else "a file"
        return _one_line(f"{where}: {reason}"), 2
    if isinstance(e, UnicodeDecodeError):
        return (f"a file given is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at position {e.start} is "
                "not valid UTF-8); save it as UTF-8"), 2
    if isinstance(e, MemoryError):
        return "out of memory; lower --batch-size, --frames, --input-size or --workers", 1
    detail = _one_line(e) if str(e).strip() else "no detail given"
    return (f"mbgf stopped on a problem it does not describe yet ({detail}); run the same command with --debug "
            "for where it happened, and report it"), 1


def _one_line(e: BaseException | str) -> str:
    text = str(e).strip()
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return " ".join(text.split()) or "no detail given"
