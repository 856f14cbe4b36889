"""``mbgf base2novel``: ViFi-CLIP's base-to-novel protocol as one command (runs as ``mbgf fewshot``'s,
resumable); its output is the table of base, novel and harmonic-mean top-1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from mbgf_cli.commands.fewshot import HELP as FEWSHOT_HELP
from mbgf_cli.commands.fewshot import PER_RUN, RECIPES, run_announced
from mbgf_cli.commands.options import list_options_command
from mbgf_cli.console import console, err_console
from mbgf_cli.settings import AT_LEAST_0, AT_LEAST_1, PROTOCOL, command_options, narrow, option
from mbgf_cli.train_config import TrainConfig

HELP = {
    **FEWSHOT_HELP,
    "dataset": "k400, hmdb51, ucf101, ssv2 (the published base/novel halves and 16-shot lists) or synthetic (class "
               "set b in halves, the stand-in). Without --root: synthetic.",
    "out": "Folder for lists/, splits/, runs/, results.csv, base2novel.csv, table.md (default "
           "runs/base2novel-<dataset>). Rerun to resume.",
}


@dataclass
class Base2NovelCommand(TrainConfig):
    """``mbgf base2novel``'s options: every run's (``mbgf train``'s, less ``PER_RUN``) and the protocol's."""

    variants: list[str] | None = option(
        None, "--variants", panel=PROTOCOL,
        help="Rows of the table: clip, clip+mbgf, actionclip, actionclip+mbgf, xclip, xclip+mbgf (default: clip "
             "clip+mbgf).")
    seeds: list[int] = option([1, 2, 3], "--seeds", panel=PROTOCOL, range=AT_LEAST_0,
                              help="Seeds; 1, 2, 3 train on the published 16-shot lists (k400, hmdb51, ucf101, ssv2), "
                                   "other seeds on sampled ones.")
    shots: int = option(16, "--shots", panel=PROTOCOL, range=AT_LEAST_1,
                        help="K training videos per base class (16 in the protocol).")
    as_json: bool = option(False, "--json", panel=PROTOCOL, help="Print every run's numbers and the table as JSON.")


@command_options(Base2NovelCommand, exclude=PER_RUN, help=HELP, panels={"out": PROTOCOL}, recipes=RECIPES)
def base2novel(cfg: Base2NovelCommand):
    """Base-to-novel: train on the base half of the classes (K shots each), score the base and the novel
    half; a row per variant with base, novel and their harmonic mean (%), mean ± std over seeds."""
    from mbgf_cli import tables
    from mbgf_cli.protocols import base2novel as engine

    protocol, train_cfg = cfg, narrow(cfg, TrainConfig)
    out, train_cfg.out, train_cfg.plot = train_cfg.out, None, False
    overwrite, train_cfg.overwrite = train_cfg.overwrite, False  # the protocol's folder's, not each run's
    if train_cfg.dataset is None and train_cfg.root is None:
        train_cfg.dataset = "synthetic"
    name = train_cfg.dataset or Path(train_cfg.root).name
    cfg = engine.Base2NovelConfig(train=train_cfg, out=str(out or f"runs/base2novel-{name}"),
                                  variants=tuple(protocol.variants or ("clip", "clip+mbgf")),
                                  seeds=tuple(protocol.seeds), shots=protocol.shots,
                                  overwrite=overwrite)

    outcome = run_announced(engine.run_base2novel, cfg, cfg.out,
                            lambda spec: f"{spec.variant.name}, seed {spec.split.seed}")
    if protocol.as_json:
        import json

        console.print_json(json.dumps({
            "output": str(outcome.out), "start": outcome.start,
            "classes": {"base": outcome.classes[0], "novel": outcome.classes[1]},
            "runs": [{"variant": r.variant, "seed": r.seed, "base": r.base, "novel": r.novel, "hm": round(r.hm, 4),
                      "run_dir": r.run_dir} for r in outcome.runs],
            "table": tables.table_json(outcome.table),
        }))
        return
    console.print(tables.to_rich(outcome.table))
    err_console.print(f"{outcome.classes[0]} base and {outcome.classes[1]} novel classes; started from "
                      f"{outcome.start}; every run in {outcome.out / 'base2novel.csv'}, the table in "
                      f"{outcome.out / 'table.md'}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("base2novel", cls=list_options_command("--variants", "--seeds"))(base2novel)
