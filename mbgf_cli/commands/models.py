"""``mbgf models``: every model of the registry (backbone x variant x MBGF), like timm's ``list_models``,
with its parameters (counted on a model built on the meta device: nothing downloaded), input and
where its weights come from."""

import json
from dataclasses import dataclass

import typer
from rich.table import Table

from mbgf_cli.console import console, progress
from mbgf_cli.errors import UserError
from mbgf_cli.settings import argument, command_options, option


@dataclass
class ModelsConfig:
    pattern: str = argument("*", help="Shell-style filter on the id (b16-xclip-mbgf) or the name "
                                      "(X-CLIP-B/16+MBGF), case-insensitive: 'b16*', '*xclip*', '*+MBGF'.")
    as_json: bool = option(False, "--json", help="Print a JSON list instead of the table.")


@command_options(ModelsConfig)
def models(cfg: ModelsConfig):
    """List the models: backbones (OpenAI's releases, tiny) with each variant, without and with MBGF."""
    import fusion  # torch and the models only when the command runs

    pattern, as_json = cfg.pattern, cfg.as_json
    configs = fusion.list_models(pattern)
    if not configs:
        raise UserError(f"no model matches {pattern!r}; ids look like b16-xclip-mbgf "
                        f"(backbones: {', '.join(fusion.BACKBONES)}; variants: {', '.join(fusion.VARIANTS)})")
    rows = []
    with progress(transient=True) as bar:
        task = bar.add_task("counting parameters", total=len(configs), info="")
        for config in configs:
            rows.append(model_row(config, fusion.parameter_count(config)))
            bar.update(task, advance=1, info=rows[-1]["id"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    console.print(models_table(rows))


def weights_source(config) -> dict:
    """Where the CLIP weights of a model built from nothing but its name come from."""
    from clip.loading import model_url
    from clip.released import RELEASED

    name = config.backbone.clip_name
    if name is None:
        return {"kind": "random", "clip": None, "file": None, "url": None}
    return {"kind": "openai", "clip": name, "file": RELEASED[name].filename, "url": model_url(name)}


def model_row(config, parameters: int) -> dict:
    """One model as the JSON (and the table) shows it."""
    import fusion

    clip_config = config.clip_config
    return {"id": fusion.model_id(config), "name": config.name, "model": config.model, "variant": config.variant,
            "mbgf": config.mbgf, "parameters": parameters, "frames": config.frames, "input_size": config.input_size,
            "patch_size": clip_config.vision_patch_size, "embed_dim": clip_config.embed_dim,
            "weights": weights_source(config)}


def models_table(rows: list[dict]) -> Table:
    table = Table(title="mbgf models", caption="Parameters counted on a model built on the meta device (all of "
                  "them, the text encoder's included); input: frames x pixels by default (--frames, --input-size); "
                  "the parts CLIP lacks (temporal heads, MBGF) start from random init. --json adds weight files "
                  "and URLs. A checkpoint of any other CLIP size converts to a custom backbone (mbgf convert).", caption_justify="left")
    table.add_column("Id", no_wrap=True)
    table.add_column("Model", overflow="fold")
    table.add_column("Params(M)", justify="right")
    table.add_column("Input", justify="right")
    table.add_column("CLIP weights", overflow="fold")
    for i, row in enumerate(rows):
        weights = row["weights"]
        source = "random init" if weights["kind"] == "random" else f"OpenAI {weights['clip']}"
        last_of_backbone = i + 1 < len(rows) and rows[i + 1]["model"] != row["model"]
        table.add_row(row["id"], row["name"], f"{row['parameters'] / 1e6:.2f}",
                      f"{row['frames']}x{row['input_size']}", source,
                      end_section=last_of_backbone)
    return table


def register(app: typer.Typer) -> None:
    app.command("models")(models)
