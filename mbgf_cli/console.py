"""Rich console output shared by the commands: results on stdout, progress and messages on stderr.

Under torchrun only rank 0 prints.
"""

import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


console = Console(quiet=not is_main_process())
err_console = Console(stderr=True, quiet=not is_main_process())


def progress(transient: bool = False) -> Progress:
    """A progress bar with what every long task shows: description, bar, count, info, elapsed, ETA.

    Add tasks with ``info=""`` and update ``info`` to show live numbers (loss, clips/s, ...).
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not is_main_process(),
    )
