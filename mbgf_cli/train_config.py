"""What a training run depends on: :class:`TrainConfig`, its recipe defaults and the resume rules.

Every field that is a command-line option carries its flags, help and help panel as field metadata
(see :func:`mbgf_cli.settings.option`); ``mbgf train`` and ``mbgf fewshot`` build their options from it
(:func:`mbgf_cli.settings.command_options`), so an option is declared here once. ``None`` means "the dataset
preset's recipe value" (``mbgf_cli/presets.py``), filled in by :func:`resolve_config`.

Light on purpose (no torch): the command line reads it to build ``--help``.
"""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, asdict, dataclass, fields
from pathlib import Path

from mbgf_cli import presets
from mbgf_cli.errors import UserError
from mbgf_cli.resources import check_workers
from mbgf_cli.settings import (
    ABOVE_0,
    AT_LEAST_0,
    AT_LEAST_1,
    DATA,
    MODEL,
    OPTIM,
    PROBABILITY,
    RUN,
    Range,
    check_options,
    option,
)


@dataclass
class TrainConfig:
    """Everything a run depends on. ``None`` means "the dataset preset's recipe value"."""

    # data
    dataset: str | None = option(
        None, "--dataset", "-d", panel=DATA,
        help="Preset: k400, ucf101, hmdb51 (label list, class count, X-CLIP's recipe) or synthetic (generated on "
             "first use, no download).")
    root: str | None = option(None, "--root", panel=DATA, path=True,
                              help="Dataset folder: videos/ (or videos.tar/.zip), train.txt, val.txt, labels.csv.")
    train_list: str | None = option(None, "--train-list", panel=DATA, help="Train list (default ROOT/train.txt).")
    val_list: str | None = option(None, "--val-list", panel=DATA, help="Val list (default ROOT/val.txt).")
    labels: str | None = option(None, "--labels", panel=DATA, path=True,
                                help="id,name CSV (default ROOT/labels.csv, else the preset's).")
    decoder: str = option("auto", "--decoder", panel=DATA, choices=("auto", "decord", "pyav"), help="auto | decord | pyav.")
    workers: int | None = option(None, "--workers", panel=DATA, help="Loader processes per training process.",
                                 range=AT_LEAST_0, check=check_workers)
    strict: bool = option(False, "--strict", panel=DATA,
                          help="Stop at the first unreadable video instead of skipping it.")
    flip: bool | None = option(None, "--flip/--no-flip", panel=DATA,
                               help="Random horizontal flip (off for direction-sensitive data).")
    crop: str | None = option(None, "--crop", panel=DATA, help="Train crop: multiscale | random_resized | center.")
    jitter: float | None = option(None, "--jitter", panel=DATA, help="Probability of colour jitter.",
                                  range=PROBABILITY)
    gray: float | None = option(None, "--gray", panel=DATA, help="Probability of grayscale.", range=PROBABILITY)
    cache_decoded: bool | None = option(
        None, "--cache-decoded/--no-cache-decoded", panel=DATA,
        help="Decode every video once and keep the frames in memory (small datasets).")
    # model
    # the help names fusion.BACKBONES by hand (the registry imports torch, --help does not); a test keeps them equal
    model: str | None = option(None, "--model", "-m", panel=MODEL, check=lambda value, name: check_model(value, name, with_weights=True),
                               help="Backbone: b32, b16, l14, l14-336, tiny (random init).")
    variant: str | None = option(None, "--variant", panel=MODEL, help="clip (mean pooling), actionclip, xclip.")
    mbgf: bool = option(True, "--mbgf/--no-mbgf", panel=MODEL, help="Multi-Branch Gated Fusion.")
    frames: int | None = option(None, "--frames", panel=MODEL, help="Frames per clip.", range=AT_LEAST_1)
    input_size: int | None = option(None, "--input-size", panel=MODEL, help="Frame size in pixels.",
                                    none="the backbone's", range=AT_LEAST_1)
    pretrained: str | None = option(
        None, "--pretrained", panel=MODEL,
        help="CLIP weights: a name (ViT-B/16) or file (default: the backbone's; tiny has none).")
    init: str | None = option(None, "--init", panel=MODEL, path=True,
                              help="Start from an mbgf checkpoint (e.g. K400 -> UCF101 transfer).")
    freeze_text: bool | None = option(None, "--freeze-text/--train-text", panel=MODEL,
                                      help="Freeze the text encoder (class features cached).")
    prompts: str | None = option(
        None, "--prompts", panel=MODEL, choices=("all", "one"),
        help="Templates per class: all (one drawn per video in training, averaged at test) or one.")
    grad_checkpointing: bool = option(False, "--grad-checkpointing", panel=MODEL,
                                      help="Recompute activations in the backward pass (less memory).")
    # optimisation
    epochs: int | None = option(None, "--epochs", panel=OPTIM, help="Passes over the train list.", range=AT_LEAST_1)
    warmup_epochs: float | None = option(None, "--warmup-epochs", panel=OPTIM,
                                         help="Epochs of linear warm-up before the cosine decay.", range=AT_LEAST_0)
    lr: float | None = option(None, "--lr", panel=OPTIM, help="Peak learning rate of the CLIP weights.",
                              range=ABOVE_0)
    new_lr_mult: float | None = option(None, "--new-lr-mult", panel=OPTIM,
                                       help="Learning-rate factor of new modules (heads, X-CLIP parts, MBGF).",
                                       range=AT_LEAST_0)
    min_lr_ratio: float | None = option(None, "--min-lr-ratio", panel=OPTIM, help="Cosine end as a fraction of --lr.",
                                        range=Range(0, 1))
    weight_decay: float | None = option(None, "--weight-decay", "--wd", panel=OPTIM,
                                        help="AdamW weight decay (none on norms, biases, embeddings).",
                                        range=AT_LEAST_0)
    batch_size: int | None = option(None, "--batch-size", "-b", panel=OPTIM,
                                    help="Clips per process per forward pass.", range=AT_LEAST_1)
    total_batch: int | None = option(
        None, "--total-batch", panel=OPTIM,
        help="Clips per optimiser step over all processes (gradient accumulation makes up the rest).",
        range=AT_LEAST_1)
    clip_grad: float | None = option(None, "--clip-grad", panel=OPTIM, help="Clip the gradient norm (0: off).",
                                     none="off", range=AT_LEAST_0)
    amp: str = option("auto", "--amp", panel=OPTIM, choices=("auto", "bf16", "fp16", "off"),
                      help="Mixed precision: bf16, fp16 (with a grad scaler), off; auto: bf16 where the device "
                           "computes it natively (GPUs with bf16, CPUs with AMX or AVX-512 BF16; the tiny model "
                           "stays fp32 on a CPU), else off. The run's header says which and why.")
    label_smoothing: float | None = option(None, "--label-smoothing", panel=OPTIM,
                                           help="Label smoothing of the cross-entropy.", range=Range(0, 1, high_open=True))
    loss: str = option("ce", "--loss", panel=OPTIM, choices=("ce", "ce+kl"), help="ce, or ce+kl (adds ActionCLIP's in-batch KL loss).")
    mixup: float | None = option(None, "--mixup", panel=OPTIM, help="Mixup alpha (0: off).", range=AT_LEAST_0)
    cutmix: float | None = option(None, "--cutmix", panel=OPTIM, help="Cutmix alpha (0: off).", range=AT_LEAST_0)
    mixup_switch_prob: float = 0.5  # of a batch mixed, the chance it is cutmix (both on)
    seed: int = option(0, "--seed", panel=OPTIM, help="Makes the run repeatable.", range=AT_LEAST_0)
    # run
    out: str | None = option(None, "--output", "-o", "--out", path=True, panel=RUN,
                             help="Output folder (default runs/<dataset>-<model>-<variant>[-mbgf]).")
    resume: str | None = option(
        "auto", "--resume", path=True, panel=RUN,
        help="auto: a run whose folder (--output) holds a run of this configuration continues it from its newest "
             "checkpoint (another configuration is refused); or a run folder (or its last/ or step/) to continue.")
    overwrite: bool = option(False, "--overwrite", panel=RUN,
                             help="Start again where --output holds a run: delete that run's own files first "
                                  "(checkpoints, records, logs; nothing else).")
    save_every: int | None = option(None, "--save-every", none="off", panel=RUN, range=AT_LEAST_1,
                                    help="Also checkpoint every N optimiser steps inside epochs (step/, the newest "
                                         "kept): a killed run loses at most N steps.")
    # --report-to: torchrun's own parser takes --log for --log-dir; --log stays for plain `mbgf`
    report_to: str | None = option(None, "--report-to", "--log", panel=RUN, none="metrics.jsonl only",
                                   help="Live view besides metrics.jsonl: tensorboard, wandb, or tensorboard,wandb.")
    eval_every: int = option(1, "--eval-every", panel=RUN, help="Validate every N epochs.", range=AT_LEAST_1)
    device: str | None = option(None, "--device", panel=RUN, none="cuda when available", help="cpu, cuda or cuda:N.")
    compile: bool = option(False, "--compile", panel=RUN,
                           help="torch.compile the video encoder: faster steps after compiling at the start (a "
                                "warning, and no compiling, where no compiler works). Checkpoints are the same.")
    plot: bool = option(True, "--plot/--no-plot", panel=RUN, help="Write training_curve.png.")
    # hooks for tests (hidden options)
    inject_nan_at_step: int | None = option(None, "--inject-nan-at-step", hidden=True)  # a NaN loss at this step
    stop_at_step: int | None = option(None, "--stop-at-step", hidden=True)  # as if Ctrl-C came after this step
    # SIGKILL the last process after this step, on torchrun's first attempt only (elastic restart tests)
    kill_at_step: int | None = option(None, "--kill-at-step", hidden=True)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        if "log" in d and "report_to" not in d:  # runs recorded before --log became --report-to
            d = {**d, "report_to": d["log"]}
        return cls(**{k: v for k, v in d.items() if k in known})


def flag(name: str) -> str:
    """A field's option name as messages show it: ``out`` -> ``--output``."""
    return next(f.metadata["flags"][0].split("/")[0] for f in fields(TrainConfig) if f.name == name)


class ResolvedConfig(TrainConfig):
    """A :class:`TrainConfig` with the recipe's values filled in and every value checked
    (:func:`resolve_config`), read-only: the engine resolves the options once and reads only this.
    ``dataclasses.replace`` gives another (also read-only) one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name, value):
        if getattr(self, "_sealed", False):
            raise FrozenInstanceError(f"cannot assign to {name!r}: a resolved training config is read-only")
        object.__setattr__(self, name, value)


# Options that may change when resuming: they do not change what is computed.
RESUME_OVERRIDABLE = ("workers", "decoder", "device", "plot", "strict", "report_to", "save_every", "compile")
TEST_HOOKS = ("inject_nan_at_step", "stop_at_step", "kill_at_step")  # never carried over into a resumed run
# Keys that runs of earlier versions recorded under another name: read as the field they became.
RENAMED_KEYS = {"log": "report_to"}
# What two configurations of one run may differ in: where it runs and what it writes besides its results.
NOT_COMPARED = (*RESUME_OVERRIDABLE, *TEST_HOOKS, *RENAMED_KEYS, "resume", "out", "overwrite")


def explicit_resume(cfg: TrainConfig) -> bool:
    """``--resume PATH`` (rather than the default ``auto``)."""
    return cfg.resume not in (None, "auto")


def check_resume_options(cfg: TrainConfig) -> None:
    """``--resume PATH`` continues the saved run as it was: refuse options that would change what it computes."""
    if cfg.out is not None:
        raise UserError(f"--resume {cfg.resume} writes into that run's folder; leave out {flag('out')}")
    changed = [key for key in asdict(cfg) if key not in (*RESUME_OVERRIDABLE, *TEST_HOOKS, "resume", "out")
               and getattr(cfg, key) != getattr(TrainConfig(), key)]
    if changed:
        raise UserError(f"--resume continues {cfg.resume} as it was saved, so it takes no "
                        f"{', '.join(flag(k) for k in changed)} (with --resume only "
                        f"{', '.join(flag(k) for k in RESUME_OVERRIDABLE)} may be given)")


def recorded_settings(recorded: dict) -> dict:
    """A recorded configuration (config.json, a checkpoint's) with renamed keys read as today's fields."""
    settings = dict(recorded)
    for old, new in RENAMED_KEYS.items():
        if old in settings:
            value = settings.pop(old)
            settings.setdefault(new, value)
    return settings


_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}


def check_recorded_types(recorded: dict, source: str) -> None:
    """Each key a field, each value of its field's type: one line naming the key."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    for key, value in recorded.items():
        if key not in types:
            raise UserError(f"{source}: {key!r} is not a training setting (see mbgf train --help for the options)")
        names = [t.strip() for t in str(types[key]).split("|")]
        accepted = tuple(t for name in names for t in _JSON_TYPES.get(name, (object,)))
        if not isinstance(value, accepted) or (isinstance(value, bool) and "bool" not in names):
            wanted = " or ".join("null" if n == "None" else "a number" if n == "float" else
                                 {"str": "a string", "int": "an integer", "bool": "true/false"}.get(n, n) for n in names)
            raise UserError(f"{source}: {key!r} must be {wanted}, not {json.dumps(value)}")


def replay_config(path, cfg: TrainConfig, given) -> tuple[TrainConfig, list]:
    """``--config RUN/config.json``: the recorded configuration, with the options in ``given`` (the names
    of those given on the command line) taken from ``cfg``. Returns it and the ``(name, recorded, given)``
    differences. Where it runs (--output, --resume) and test hooks are not replayed. An unknown key or a
    value of the wrong type is refused, naming the key."""
    path = Path(path)
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not a run's config.json (not UTF-8 text)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--config {path}: not a run's config.json ({' '.join(str(e).split())})") from None
    if not isinstance(recorded, dict):
        raise UserError(f"--config {path}: not a run's config.json (a JSON object of training settings)")
    recorded = recorded_settings(recorded)
    check_recorded_types(recorded, f"--config {path}")
    recorded = {k: v for k, v in recorded.items() if k not in ("out", "resume", "overwrite", *TEST_HOOKS)}
    values = {**cfg.to_dict(), **recorded, **{k: getattr(cfg, k) for k in given}}
    differences = config_differences({k: recorded[k] for k in given if k in recorded},
                                                {k: values[k] for k in given if k in recorded})
    return TrainConfig.from_dict(values), differences


def resumed_config(cfg: TrainConfig, saved: dict, resume_dir: Path) -> ResolvedConfig:
    """The saved run's config, with the options a resume may change taken from ``cfg``."""
    values = recorded_settings(saved)
    default = TrainConfig()
    values.update({key: getattr(cfg, key) for key in RESUME_OVERRIDABLE if getattr(cfg, key) != getattr(default, key)})
    values.update({key: getattr(cfg, key) for key in TEST_HOOKS})
    values.update(resume=str(resume_dir), out=str(resume_dir.parent))
    return check_choices(ResolvedConfig.from_dict(machine_workers(values, given=cfg.workers)))


def recipe_of(dataset: str | None) -> dict:
    return presets.get_preset(dataset).recipe if dataset else presets.GENERIC_RECIPE


def resolve_config(cfg: TrainConfig) -> ResolvedConfig:
    """The one resolution of a run's options: the ``None`` fields from the dataset preset's recipe, every
    value checked. A ``--workers`` given is bounded by the machine (refused above it); the recipe's is
    lowered to what the machine runs."""
    values = cfg.to_dict()
    for key, value in recipe_of(cfg.dataset).items():
        if values.get(key) is None:
            values[key] = value
    return check_choices(ResolvedConfig.from_dict(machine_workers(values, given=cfg.workers)))


def machine_workers(values: dict, given: int | None) -> dict:
    """``--workers`` given is checked against the machine by its declaration (refused above it); a value
    not given here (the recipe's, or the one a resumed run recorded on another machine) is lowered to
    what this machine runs."""
    from mbgf_cli import resources

    if given is None:
        values["workers"] = min(values.get("workers") or 0, resources.max_workers())
    return values


def check_choices(cfg: ResolvedConfig) -> ResolvedConfig:
    """Every value, the recipe's too, against its declaration (ranges, choices, machine bounds), then
    what depends on several of them."""
    check_options(cfg)
    check_model(cfg.model, flag("model"), with_weights=bool(cfg.init or cfg.pretrained))
    check_batch_memory(cfg)
    return cfg


def check_model(model: str | None, name: str = "--model", with_weights: bool = False) -> None:
    """``--model`` names a backbone of the registry; ``custom`` (a CLIP of any size) only comes with weights
    whose shapes give its architecture: an ``--init`` checkpoint or a ``--pretrained`` file."""
    if model is None:
        return
    import fusion

    if model == fusion.CUSTOM:
        if not with_weights:
            raise UserError(f"{name} custom is a CLIP of any size, read from its weights: give --init CHECKPOINT or "
                            f"--pretrained FILE, or choose a backbone: {', '.join(fusion.BACKBONES)}")
        return
    if model not in fusion.BACKBONES:
        raise UserError(f"{name} {model!r}: no such backbone; choose from {', '.join(fusion.BACKBONES)}")


def check_batch_memory(cfg: ResolvedConfig) -> None:
    """``--batch-size`` x ``--frames`` x ``--input-size``: the decoded batch fits in memory, checked before
    the model or the loaders are built (an unset size is the backbone's)."""
    from mbgf_cli import resources

    if cfg.frames is None or cfg.batch_size is None:
        return
    size = cfg.input_size
    if size is None:
        import fusion

        backbone = fusion.BACKBONES.get(cfg.model or "")
        size = backbone.clip_config.image_resolution if backbone is not None else 224
    resources.check_input_memory(cfg.batch_size, cfg.frames, size, what=(
        f"{flag('batch_size')} {cfg.batch_size} x {flag('frames')} {cfg.frames} at {flag('input_size')} {size} "
        "(the decoded batch)"))


def config_differences(recorded: dict, current: dict, ignore=()) -> list[tuple[str, object, object]]:
    """``(name, recorded value, current value)`` for each setting that differs, in ``current``'s order.

    Numbers compare by value (a JSON round trip turns 1e-3 into 0.001 and 2 into 2.0 alike); a key
    only one side has counts as a difference unless its value there is None (an option added later).
    """
    differences = []
    for key in [*current, *(k for k in recorded if k not in current)]:
        if key in ignore:
            continue
        there, here = recorded.get(key), current.get(key)
        if not _same(there, here):
            differences.append((key, there, here))
    return differences


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
