"""What the commands share: options built from an engine config's field metadata, the parser of options
that take several values, and the small conversions every command needs.

An engine config (``TrainConfig``) declares each of its options once, as field metadata (flags, help,
panel; see ``mbgf_cli/train_config.py``). :func:`config_options` turns those fields into the command's
Typer options, so ``mbgf train`` and ``mbgf fewshot`` take the very same ones, and shows the recipe
values a ``None`` default stands for, read from the recipes themselves.
"""

from __future__ import annotations

import functools
import inspect
import types
from dataclasses import Field, fields
from pathlib import Path
from typing import Optional, Union, get_args, get_origin, get_type_hints

import typer
from typer.core import TyperCommand

from mbgf_cli.train_config import DATA, MODEL, TrainConfig

# Help panels of options that are not a config's.
PROTOCOL = "Protocol"
OUTPUT = "Output"


def path_text(path) -> str | None:
    """A path option as the engines' configs hold it (text), ``None`` left alone."""
    return None if path is None else str(path)


# ------------------------------------------------------------------------------------------------
# Options from config fields
# ------------------------------------------------------------------------------------------------


def config_options(config_cls=TrainConfig, *, exclude=(), help: dict | None = None, panels: dict | None = None,
                   recipes=(), own_first: bool = False):
    """Decorator: the command takes, besides its own parameters, every option of ``config_cls`` (the
    fields with flags, less ``exclude``) as keyword arguments named like the fields; path options arrive
    as text. ``help``/``panels``: per-field wording or panel where the command means something more
    specific; ``recipes``: ``(label, recipe)`` pairs whose values the help shows for ``None`` defaults
    (the first unlabelled); ``own_first``: the command's own options before the config's in the help."""

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
        taken = [f for f in fields(config_cls) if f.metadata.get("flags") and f.name not in exclude]
        hints = get_type_hints(config_cls)
        borrowed = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation(f, hints[f.name]),
                                      default=option_of(f, (help or {}).get(f.name), (panels or {}).get(f.name),
                                                        recipes))
                    for f in taken]
        paths = {f.name for f in taken if f.metadata["path"]}

        @functools.wraps(command)
        def run_command(**values):
            return command(**{k: path_text(v) if k in paths else v for k, v in values.items()})

        keyword_only = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        run_command.__signature__ = inspect.Signature(keyword_only + borrowed if own_first else borrowed + keyword_only)
        return run_command

    return decorate


def config_option(name: str, config_cls=TrainConfig, **changes) -> typer.models.OptionInfo:
    """One option of ``config_cls`` for a command that takes only a few of them (``mbgf eval``)."""
    [f] = [f for f in fields(config_cls) if f.name == name]
    return option_of(f, changes.get("help"), changes.get("panel"), ())


def option_of(f: Field, help: str | None, panel: str | None, recipes) -> typer.models.OptionInfo:
    meta = f.metadata
    shown = recipe_default(f, recipes) if f.default is None else None
    return typer.Option(f.default, *meta["flags"], help=help or meta["help"], rich_help_panel=panel or meta["panel"],
                        hidden=meta["hidden"], show_default=shown if shown else f.default is not None)


def annotation(f: Field, hint):
    """The type Typer reads the option as: paths as ``Path``; ``X | None`` as ``Optional[X]``."""
    if f.metadata["path"]:
        return Optional[Path]
    if get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint):
        [inner] = [a for a in get_args(hint) if a is not type(None)]
        return Optional[inner]
    return hint


def recipe_default(f: Field, recipes) -> str | None:
    """What a ``None`` default stands for in each recipe: ``8e-06; synthetic: 0.002``."""
    values = [(label, describe_value(f, recipe[f.name])) for label, recipe in recipes if f.name in recipe]
    if not values:
        return None
    first = values[0][1]
    return "; ".join([first, *(f"{label}: {text}" for label, text in values[1:] if text != first)])


def describe_value(f: Field, value) -> str:
    if value is None:
        return f.metadata["none"] or "none"
    if isinstance(value, bool):  # a switch: the name of the side that is on
        on, _, off = f.metadata["flags"][0].partition("/")
        return (on if value else off).lstrip("-")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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


# ------------------------------------------------------------------------------------------------
# Options of the commands that run a model over videos (predict, embed): declared once here
# ------------------------------------------------------------------------------------------------

INFER_CHECKPOINT = typer.Option(None, "--checkpoint", "-c", show_default=False, rich_help_panel=MODEL,
                                help="An mbgf checkpoint folder, or any file `mbgf convert` reads.")
INFER_PRETRAINED = typer.Option(None, "--pretrained", show_default=False, rich_help_panel=MODEL,
                                help="Zero-shot CLIP instead: a name (ViT-B/16) or an OpenAI-format file.")
INFER_MODEL = typer.Option(None, "--model", show_default=False, rich_help_panel=MODEL,
                           help="Zero-shot: the backbone, when the weights do not tell.")
INFER_FRAMES = typer.Option(None, "--frames", show_default=False, rich_help_panel=MODEL,
                            help="Zero-shot: frames per view (default 8).")
INFER_INPUT_SIZE = typer.Option(None, "--input-size", show_default=False, rich_help_panel=MODEL,
                                help="Zero-shot: frame size (default the backbone's).")
INFER_VIEWS = typer.Option("1x1", "--views", rich_help_panel=DATA,
                           help="CLIPSxCROPS per video, as in mbgf eval (e.g. 4x3; the views are averaged).")
INFER_BATCH_SIZE = typer.Option(8, "--batch-size", "-b", rich_help_panel=DATA,
                                help="Videos per forward pass (x views).")
INFER_WORKERS = typer.Option(None, "--workers", show_default=False, rich_help_panel=DATA,
                             help="Decoding processes (default: up to 4; half the cores when the model runs on the CPU).")
INFER_DECODER = typer.Option("auto", "--decoder", rich_help_panel=DATA, help="auto | decord | pyav.")
INFER_STRICT = typer.Option(False, "--strict", rich_help_panel=DATA,
                            help="Stop at the first unreadable video instead of skipping it.")
INFER_DEVICE = typer.Option(None, "--device", show_default=False, rich_help_panel=MODEL,
                            help="cpu or cuda (default: cuda when available).")
INFER_AMP = typer.Option("auto", "--amp", rich_help_panel=MODEL, help="bf16 | fp16 | off | auto.")
INFER_COMPILE_MODEL = typer.Option(False, "--compile", rich_help_panel=MODEL,
                                   help="torch.compile the video encoder (a warning, and no compiling, where no "
                                        "compiler works).")
