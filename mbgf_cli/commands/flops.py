"""``mbgf flops``: FLOPs and parameters of the video models, as in the papers' tables."""

import json
from dataclasses import dataclass

import typer
from rich.table import Table

from fusion.config import BACKBONES, VARIANTS
from mbgf_cli.commands.options import list_options_command
from mbgf_cli.console import console, progress
from mbgf_cli.errors import UserError
from mbgf_cli.settings import AT_LEAST_1, command_options, option

MODELS = tuple(BACKBONES)  # the registry's names (fusion.config)


@dataclass
class FlopsConfig:
    model: str = option("b16", "--model", "-m", choices=MODELS, help=f"Backbone: {', '.join(MODELS)}.")
    frames: list[int] = option([8], "--frames", range=AT_LEAST_1, help="Frames per view; several: --frames 8 16 32.")
    variant: list[str] = option(list(VARIANTS), "--variant", choices=VARIANTS,
                                help=f"Variants; several: --variant {' '.join(VARIANTS)}.")
    input_size: int | None = option(None, "--input-size", range=AT_LEAST_1, none="the backbone's, 224",
                                    help="Frame size in pixels.")
    classes: int = option(400, "--num-classes", range=AT_LEAST_1,
                          help="Class texts X-CLIP's prompt generator runs on per video.")
    as_json: bool = option(False, "--json", help="Print a JSON list instead of the table (the text encoder is the "
                                                 "row with variant \"text\").")


@command_options(FlopsConfig)
def flops(cfg: FlopsConfig):
    """FLOPs (1 multiply-add = 1 FLOP, per view) and parameters of each variant with and without MBGF."""
    # torch and the models load only when the command runs, not for every `mbgf --help`
    from mbgf_cli.flops import flops_rows, prompt_cost_per_class

    variants, frames, classes = list(dict.fromkeys(cfg.variant)), list(dict.fromkeys(cfg.frames)), cfg.classes
    try:
        counting = flops_rows(cfg.model, variants, frames, cfg.input_size, classes)
        rows = []
        with progress(transient=True) as bar:
            task = bar.add_task("counting FLOPs", total=2 * len(variants) * len(frames) + 1, info="")
            for row in counting:
                rows.append(row)
                bar.update(task, advance=1, info=row.name)
        xclip = next((row for row in rows if row.variant == "xclip"), None)
        per_class = prompt_cost_per_class(xclip.config).gflops if xclip else None
    except ValueError as e:  # an input size the patches do not tile, --classes 0, ...
        raise UserError(str(e)) from None

    if cfg.as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], indent=2))
        return
    console.print(flops_table(rows, classes, per_class))


def flops_table(rows, classes: int, prompt_gflops_per_class: float | None) -> Table:
    """The seed's layout: Model | FLOPs(G) | Params(M) | Input | MBGF overhead."""
    caption = ("Per view, 1 multiply-add = 1 FLOP, every matrix product counted (attention's QK^T and AV too). "
               "Video rows: frame encoder, temporal head, MBGF")
    if prompt_gflops_per_class is not None:
        caption += (f"; X-CLIP rows include its video-specific prompt generator for {classes} classes "
                    f"({prompt_gflops_per_class * 1e3:.2f} MFLOPs per class, --num-classes)")
    caption += ". The text encoder runs once per class text and is listed separately; params: those the forward uses."
    table = Table(title=f"FLOPs and parameters, {rows[-1].name.split()[0]} backbone", caption=caption,
                  caption_justify="left")
    table.add_column("Model")
    table.add_column("FLOPs(G)", justify="right")
    table.add_column("Params(M)", justify="right")
    table.add_column("Input", justify="right")
    table.add_column("MBGF overhead", justify="right")
    for i, row in enumerate(rows):
        overhead = "—" if row.overhead_gflops is None else \
            f"+{_amount(row.overhead_gflops)} G (+{row.overhead_percent:.2f}%)"
        last_video_row = i + 1 < len(rows) and rows[i + 1].variant == "text"
        table.add_row(row.name, _amount(row.gflops), _amount(row.params_m), row.input, overhead,
                      end_section=last_video_row)
    return table


def _amount(value: float) -> str:
    """Two decimals, or three significant digits below 1 (tiny models: 0.0712 G, not 0.07)."""
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def register(app: typer.Typer) -> None:
    app.command("flops", cls=list_options_command("--frames", "--variant"))(flops)
