"""``mbgf fewshot``: the K-shot protocol as one command whose output is the seed's table. Each run takes
``mbgf train``'s options (TrainConfig's), less those the protocol sets per run."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

from mbgf_cli import presets
from mbgf_cli.commands.options import list_options_command
from mbgf_cli.console import console, err_console
from mbgf_cli.settings import AT_LEAST_0, AT_LEAST_1, PROTOCOL, command_options, narrow, option
from mbgf_cli.train_config import TrainConfig

# The defaults the help shows: X-CLIP's few-shot recipe over its full one; the synthetic demonstration's.
RECIPES = (("X-CLIP's few-shot", {**presets.XCLIP_RECIPE, **presets.FEWSHOT_RECIPE}),
           ("synthetic", {**presets.SYNTHETIC_RECIPE, **presets.SYNTHETIC_FEWSHOT_RECIPE}))

# Set by the protocol for each run (--variants, --seeds; resumed and evaluated by the protocol).
PER_RUN = ("variant", "mbgf", "seed", "resume", "eval_every", "plot", "inject_nan_at_step")

# What an option means here where it says more than in `mbgf train`.
HELP = {
    "dataset": "hmdb51, ucf101, k400 (label list, class count) or synthetic (class set b, generated on first use; "
               "starts from the tiny model trained on set a). Without --root: synthetic, the embedded "
               "demonstration.",
    "train_list": "The list K-shot samples are drawn from (default ROOT/train.txt).",
    "val_list": "The full list every run is evaluated on (default ROOT/val.txt).",
    "pretrained": "CLIP weights every run starts from: a name (ViT-B/16) or file (default: the backbone's).",
    "init": "Start from an mbgf checkpoint instead: its own variant from all of it, the other variants from its "
            "CLIP weights.",
    "out": "Folder for splits/, runs/, results.csv, table.md (default runs/fewshot-<dataset>). Rerun to resume.",
    "overwrite": "Write into an --output folder that holds files of yours, beside them (none of them is changed or "
                 "deleted; a name it would write that is yours is refused).",
}


@dataclass
class FewShotCommand(TrainConfig):
    """``mbgf fewshot``'s options: every run's (``mbgf train``'s, less ``PER_RUN``) and the protocol's."""

    shots: list[int] = option([2, 4, 8, 16], "--shots", panel=PROTOCOL, range=AT_LEAST_1,
                              help="K training videos per class; several: --shots 2 4 8 16.")
    variants: list[str] | None = option(
        None, "--variants", panel=PROTOCOL,
        help="Rows of the table: clip, clip+mbgf, actionclip, actionclip+mbgf, xclip, xclip+mbgf (default: the "
             "first five; synthetic: clip clip+mbgf).")
    seeds: list[int] = option([0], "--seeds", panel=PROTOCOL, range=AT_LEAST_0,
                              help="Seeds of the K-shot samples (and of training); several: --seeds 0 1 2.")
    split_file: list[str] = option(
        [], "--split-file", panel=PROTOCOL, path=True,
        help="Train on these K-shot lists instead of sampling (K and seed from a K{K}_seed{S}.txt name, else K from "
             "the content); several allowed.")
    as_json: bool = option(False, "--json", panel=PROTOCOL, help="Print every run's numbers and the table as JSON.")


@command_options(FewShotCommand, exclude=PER_RUN, help=HELP, panels={"out": PROTOCOL}, recipes=RECIPES)
def fewshot(cfg: FewShotCommand):
    """K-shot training and evaluation: a row per variant, a column per K, top-1 (%) over seeds. With no
    --dataset or --root it runs the embedded demonstration (synthetic class set b).

    Options the recipe sets show its value as their default (k400, ucf101, hmdb51: X-CLIP's few-shot
    recipe; synthetic: the demonstration's, for 2 CPU cores).
    """
    from mbgf_cli import fewshot as engine
    from mbgf_cli import tables

    protocol, train_cfg = cfg, narrow(cfg, TrainConfig)
    out, train_cfg.out, train_cfg.plot = train_cfg.out, None, False
    overwrite, train_cfg.overwrite = train_cfg.overwrite, False  # the protocol's folder's, not each run's
    if train_cfg.dataset is None and train_cfg.root is None:
        train_cfg.dataset = "synthetic"  # the embedded demonstration
    dataset = train_cfg.dataset
    out = Path(out or f"runs/fewshot-{dataset or Path(train_cfg.root).name}")
    cfg = engine.FewShotConfig(train=train_cfg, out=str(out), shots=tuple(protocol.shots),
                               variants=tuple(protocol.variants or engine.default_variants(dataset)),
                               seeds=tuple(protocol.seeds), split_files=tuple(protocol.split_file),
                               overwrite=overwrite)

    outcome = run_announced(engine.run_fewshot, cfg, out,
                            lambda spec: f"{spec.variant.name}, K={spec.split.shots}, seed {spec.split.seed}")

    if protocol.as_json:
        import json

        console.print_json(json.dumps({
            "output": str(outcome.out), "start": outcome.start,
            "runs": [r.row() for r in outcome.results],
            "table": tables.table_json(outcome.table),
        }))
        return
    console.print(tables.to_rich(outcome.table))
    err_console.print(f"started from {outcome.start}; every run in {outcome.out / 'results.csv'}, the table as "
                      f"markdown in {outcome.out / 'table.md'}, the K-shot lists in {outcome.out / 'splits'}",
                      highlight=False, soft_wrap=True)


def run_announced(run, cfg, out, label):
    """``run(cfg, on_run=...)`` (a protocol's runs), each run announced on stderr as ``label(spec)``: its
    epoch tables are progress here (stdout is the table, or JSON); Ctrl-C says how to resume."""
    from mbgf_cli import training

    def announce(i: int, n: int, spec, state: str) -> None:
        what = {"done": "finished, read back", "interrupted": "resuming", "new": "training"}[state]
        err_console.rule(f"[{i + 1}/{n}] {label(spec)}: {what}", style="dim")

    try:
        with _results_to_stderr():
            return run(cfg, on_run=announce)
    except training.TrainingInterrupted as e:
        err_console.print(f"[yellow]interrupted; run the same command again to resume ({out})[/yellow]",
                          highlight=False)
        raise typer.Exit(e.exit_code) from None


@contextmanager
def _results_to_stderr():
    previous = getattr(console, "_file", None)  # None: follows sys.stdout
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = previous


def register(app: typer.Typer) -> None:
    app.command("fewshot", cls=list_options_command("--shots", "--variants", "--seeds", "--split-file"))(fewshot)
