"""``mbgf k600-zeroshot``: X-CLIP's Kinetics-600 zero-shot protocol (the 220 classes Kinetics-400 lacks,
three published splits of 160), top-1 and top-5 mean ± std over the splits, as ``mbgf eval --splits``
prints them."""

from __future__ import annotations

import typer

from mbgf_cli.console import console
from mbgf_cli.protocols.configs import K600Config
from mbgf_cli.settings import command_options

# What an option means here where it says more than in `mbgf eval`.
HELP = {
    "checkpoint": "An mbgf checkpoint (trained on Kinetics-400; a run folder: its best/), or any file `mbgf convert` "
                  "reads.",
}


@command_options(K600Config, help=HELP)
def k600_zeroshot(cfg: K600Config):
    """Kinetics-600 zero-shot: a row per split (160 new classes each), then the mean ± std."""
    from mbgf_cli.eval_splits import splits_table
    from mbgf_cli.protocols.k600 import run_k600_zeroshot

    summary = run_k600_zeroshot(cfg)
    if cfg.as_json:
        import json

        console.print_json(json.dumps(summary.to_json()))
        return
    console.print(splits_table(summary))


def register(app: typer.Typer) -> None:
    app.command("k600-zeroshot")(k600_zeroshot)
