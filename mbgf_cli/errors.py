"""The one kind of error a user should see as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input: a path, an option value, a file's content. The message names the file (and line)."""


def at(path, line: int | None = None) -> str:
    """``path:line`` prefix for messages about a place in a file."""
    return f"{path}:{line}" if line is not None else f"{path}"
