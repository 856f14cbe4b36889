"""One way to declare a command-line option: a field of a config dataclass.

A field declared with :func:`option` (or :func:`argument` for a positional one) carries its flags, help,
help panel, accepted range or choices and any machine bound as metadata. :func:`command_options` turns a
config class's fields into a command's Typer options and hands the command one constructed, checked
config object::

    @dataclass
    class PredictConfig(ModelSourceOptions, LoadingOptions, RuntimeOptions):
        top_k: int = option(5, "--top-k", "-k", panel=OUTPUT, help="Classes shown per video.", range=AT_LEAST_1)

    @command_options(PredictConfig)
    def predict(cfg: PredictConfig): ...

Options that several commands share are declared once, in a group per concern (:class:`ModelSourceOptions`,
:class:`LoadingOptions`, :class:`RuntimeOptions`), and composed by inheritance, so a config stays flat
(``config.json`` of a run is one level). The same flag means the same thing, with the same default, on
every command. Light on purpose (no torch): ``--help`` reads it.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Optional, Union, get_args, get_origin, get_type_hints

from mbgf_cli.errors import UserError
from mbgf_cli.resources import check_workers

# Help panels.
DATA = "Data"
MODEL = "Model"
OPTIM = "Optimisation"
RUN = "Run"
OUTPUT = "Output"
CLASSES = "Classes"
PROTOCOL = "Protocol"
TIMELINE = "Timeline"


@dataclass(frozen=True)
class Range:
    """The numbers an option accepts: ``low``/``high`` bounds (None: unbounded), each closed unless
    ``*_open``. Every accepted number is finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def accepts(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"{'below' if self.high_open else 'at most'} {self.high:g}"


AT_LEAST_0, AT_LEAST_1, ABOVE_0 = Range(0), Range(1), Range(0, low_open=True)
PROBABILITY = Range(0, 1)


def option(default, *flags: str, help: str = "", panel: str | None = None, hidden: bool = False,
           path: bool = False, none: str | None = None, range: Range | None = None,
           choices: tuple | None = None, check=None, metavar: str | None = None):
    """A config field that is also a command-line option. ``flags``: the option's names (the first is
    its name in messages; "--a/--b" for a switch); ``path``: given as a path on the command line (the
    config holds text); ``none``: what a ``None`` default means, for the help ("the backbone's");
    ``range``/``choices``: the values it accepts; ``check(value, flag)``: a further bound (the machine's,
    e.g. :func:`mbgf_cli.resources.check_workers`). All are checked by :func:`check_options` before any
    work. A list default is copied for each config."""
    return _field(default, {"flags": flags, "help": help, "panel": panel, "hidden": hidden, "path": path,
                            "none": none, "range": range, "choices": choices, "check": check, "metavar": metavar})


def argument(default=..., help: str = "", metavar: str | None = None, path: bool = False):
    """A positional command-line argument (``...``: required)."""
    return _field(default, {"argument": True, "help": help, "metavar": metavar, "path": path, "flags": (),
                            "hidden": False, "none": None, "range": None, "choices": None, "check": None})


def _field(default, metadata: dict):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    if default is ...:
        return field(default=None, metadata={**metadata, "required": True})
    return field(default=default, metadata=metadata)


def narrow(cfg, config_cls):
    """The ``config_cls`` part of ``cfg`` (a command's config that extends it): its fields' values."""
    return config_cls(**{f.name: getattr(cfg, f.name) for f in fields(config_cls)})


def is_option(f: Field) -> bool:
    return bool(f.metadata.get("flags")) or bool(f.metadata.get("argument"))


def flag(config, name: str) -> str:
    """A field's option name as messages show it: ``out`` -> ``--output``."""
    [f] = [f for f in fields(config) if f.name == name]
    flags = f.metadata.get("flags")
    return flags[0].split("/")[0] if flags else name.upper()


def check_options(cfg) -> None:
    """Every value given, against what its declaration accepts: one line naming the option."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is None or not f.metadata.get("flags"):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            _check_value(f, item, flag(cfg, f.name))


def _check_value(f: Field, value, name: str) -> None:
    allowed, choices, check = f.metadata.get("range"), f.metadata.get("choices"), f.metadata.get("check")
    if allowed is not None and not isinstance(value, bool) and not allowed.accepts(value):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise UserError(f"{name} must be {allowed.describe()}, not {shown}")
    if choices is not None and value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    if check is not None:
        check(value, name)


# ------------------------------------------------------------------------------------------------
# Config fields -> Typer options
# ------------------------------------------------------------------------------------------------


def command_options(config_cls, *, exclude=(), help: dict | None = None, panels: dict | None = None,
                    recipes=(), name: str = "cfg"):
    """Decorator: the command takes every option of ``config_cls`` (its fields declared with
    :func:`option` or :func:`argument`, less ``exclude``) and receives, as its parameter ``name``, one
    ``config_cls`` built from them and checked (:func:`check_options`); the command's other parameters
    (``typer.Context``) are passed as they are. ``help``/``panels``: per-field wording or panel where the
    command means something more specific; ``recipes``: ``(label, recipe)`` pairs whose values the help
    shows for ``None`` defaults (the first unlabelled)."""

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != name]
        hints = get_type_hints(config_cls)
        taken = [f for f in fields(config_cls) if is_option(f) and f.name not in exclude]
        params = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(f, hints[f.name]),
                                    default=_typer_param(f, (help or {}).get(f.name), (panels or {}).get(f.name),
                                                         recipes))
                  for f in taken]

        @functools.wraps(command)
        def run_command(**values):
            given = {p.name: values.pop(p.name) for p in own if p.name in values}
            cfg = config_cls(**{f.name: _from_command_line(f, values[f.name]) for f in taken})
            check_options(cfg)
            return command(**given, **{name: cfg})

        run_command.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + params)
        return run_command

    return decorate


def _from_command_line(f: Field, value):
    if not f.metadata.get("path") or value is None:
        return value
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)


def _typer_param(f: Field, help: str | None, panel: str | None, recipes):
    import typer

    meta = f.metadata
    default = f.default if f.default is not MISSING else f.default_factory()
    if meta.get("argument"):
        return typer.Argument(... if meta.get("required") else default, help=help or meta["help"],
                              metavar=meta["metavar"], show_default=False)
    if meta.get("required"):
        return typer.Option(..., *meta["flags"], help=help or meta["help"], rich_help_panel=panel or meta["panel"],
                            metavar=meta["metavar"], show_default=False)
    shown = recipe_default(f, recipes) if default is None else None
    return typer.Option(default, *meta["flags"], help=help or meta["help"], rich_help_panel=panel or meta["panel"],
                        hidden=meta["hidden"], metavar=meta["metavar"],
                        show_default=shown if shown else (default is not None and default != []))


def _annotation(f: Field, hint):
    """The type Typer reads the option as: paths as ``Path``; ``X | None`` as ``Optional[X]``."""
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    if optional:
        [hint] = [a for a in get_args(hint) if a is not type(None)]
    if f.metadata.get("path"):
        hint = list[Path] if get_origin(hint) is list else Path
    return Optional[hint] if optional else hint


def recipe_default(f: Field, recipes) -> str | None:
    """What a ``None`` default stands for in each recipe: ``8e-06; synthetic: 0.002``."""
    values = [(label, describe_value(f, recipe[f.name])) for label, recipe in recipes if f.name in recipe]
    if not values:
        return f.metadata.get("none")
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
# Groups of options that several commands share (composed by inheritance)
# ------------------------------------------------------------------------------------------------

AMP_HELP = ("Mixed precision: bf16, fp16, off; auto: bf16 where the device computes it natively (GPUs with bf16, "
            "CPUs with AMX or AVX-512 BF16), else off. The run says which and why.")


@dataclass
class ModelSourceOptions:
    """Which model: an mbgf checkpoint (or a run folder: its best/), any file `mbgf convert` reads, or
    zero-shot CLIP."""

    checkpoint: str | None = option(None, "--checkpoint", "-c", path=True, panel=MODEL,
                                    help="An mbgf checkpoint folder (a run folder: its best/), or any file "
                                         "`mbgf convert` reads.")
    pretrained: str | None = option(None, "--pretrained", panel=MODEL,
                                    help="Zero-shot CLIP instead: a name (ViT-B/16) or an OpenAI-format file.")
    model: str | None = option(None, "--model", "-m", panel=MODEL,
                               help="Zero-shot: the backbone, when the weights do not tell.")
    frames: int | None = option(None, "--frames", panel=MODEL, range=AT_LEAST_1, none="the checkpoint's; zero-shot 8",
                                help="Frames per view.")
    input_size: int | None = option(None, "--input-size", panel=MODEL, range=AT_LEAST_1,
                                    help="Zero-shot: frame size in pixels (default: the backbone's).")
    prompts: str | None = option(None, "--prompts", panel=MODEL, choices=("all", "one"),
                                 help="all | one template per class (default: as the model was trained).")


@dataclass
class LoadingOptions:
    """How videos are read and cut into views."""

    views: str | None = option(None, "--views", panel=DATA, none="the dataset preset's protocol, else 1x1",
                               help="CLIPSxCROPS per video (e.g. 4x3; the views' scores are averaged).")
    batch_size: int = option(8, "--batch-size", "-b", panel=DATA, range=AT_LEAST_1,
                             help="Videos per forward pass (x views).")
    workers: int | None = option(None, "--workers", panel=DATA, range=AT_LEAST_0, check=check_workers,
                                 none="up to 4; half the cores when the model runs on the CPU",
                                 help="Decoding processes.")
    decoder: str = option("auto", "--decoder", panel=DATA, choices=("auto", "decord", "pyav"),
                          help="auto | decord | pyav.")
    strict: bool = option(False, "--strict", panel=DATA,
                          help="Stop at the first unreadable video instead of skipping it.")


@dataclass
class RuntimeOptions:
    """Where and how the model runs."""

    device: str | None = option(None, "--device", panel=RUN, none="cuda when available",
                                help="cpu, cuda or cuda:N.")
    amp: str = option("auto", "--amp", panel=RUN, choices=("auto", "bf16", "fp16", "off"), help=AMP_HELP)
    compile: bool = option(False, "--compile", panel=RUN,
                           help="torch.compile the video encoder (a warning, and no compiling, where no compiler "
                                "works).")


@dataclass
class ClassOptions:
    """Which classes a model scores: free text or a labels file (default: the checkpoint's own)."""

    classes: str | None = option(None, "--classes", panel=CLASSES,
                                 help='Free-text classes, comma-separated: "juggling balls, riding a bike".')
    labels: str | None = option(None, "--labels", panel=CLASSES, path=True,
                                help="Classes from a file: id,name CSV (labels.csv) or one name a line.")
