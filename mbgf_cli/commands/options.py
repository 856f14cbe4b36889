"""What the commands share besides their options (declared as config fields, :mod:`mbgf_cli.settings`):
the parser of options that take several values."""

from __future__ import annotations

from typer.core import TyperCommand

# ------------------------------------------------------------------------------------------------
# Options with several values
# ------------------------------------------------------------------------------------------------


class ListOptionsCommand(TyperCommand):
    """Lets a list option take several values after one flag, as the usage shows:
    ``--frames 8 16 32`` is read as ``--frames 8 --frames 16 --frames 32``."""

    list_options: tuple[str, ...] = ()  # options taking several values

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        expanded, current, has_value = [], None, False
        for arg in args:
            if arg.startswith("-"):
                flag = arg.split("=", 1)[0]
                current = flag if flag in self.list_options else None
                has_value = "=" in arg
            elif current is not None:
                if has_value:  # a further value of the same option: repeat the flag for it
                    expanded.append(current)
                has_value = True
            expanded.append(arg)
        return super().parse_args(ctx, expanded)


def list_options_command(*flags: str) -> type[ListOptionsCommand]:
    """The command class (``app.command(cls=...)``) for a command whose ``flags`` take several values."""
    return type("ListOptionsCommand", (ListOptionsCommand,), {"list_options": flags})
