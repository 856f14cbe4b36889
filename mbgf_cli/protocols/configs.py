"""The options of ``mbgf k600-zeroshot`` and ``mbgf reproduce``, config dataclasses composed from the
shared groups of :mod:`mbgf_cli.settings` (``mbgf base2novel`` takes ``mbgf train``'s, as ``mbgf
fewshot`` does). Light (no torch): the command line reads them to build ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

from mbgf_cli.settings import (
    AT_LEAST_1,
    DATA,
    OUTPUT,
    PROTOCOL,
    RUN,
    LoadingOptions,
    ModelSourceOptions,
    RuntimeOptions,
    argument,
    option,
)


@dataclass
class K600Config(ModelSourceOptions, LoadingOptions, RuntimeOptions):
    """``mbgf k600-zeroshot``: the dataset (``--root`` as ``mbgf prepare-data k600`` wrote it, or the
    synthetic stand-in) and the model (``--checkpoint``, or CLIP ``--pretrained``), scored as ``mbgf
    eval`` scores (the same loading and runtime options)."""

    dataset: str = option("k600", "--dataset", "-d", panel=DATA,
                          help="k600 (--root as `mbgf prepare-data k600` wrote it) or synthetic (the stand-in: class "
                               "set b, three seeded splits of 9 of 12).")
    root: str | None = option(None, "--root", panel=DATA, path=True, help="The dataset folder.")
    list_file: str | None = option(None, "--val-list", "--list", panel=DATA,
                                   help="The list the splits are drawn from (default ROOT/val.txt).")
    out: str | None = option(None, "--output", "-o", "--out", panel=OUTPUT, path=True,
                             none="runs/k600-zeroshot-<dataset>", help="Folder for each split's list and labels.")
    as_json: bool = option(False, "--json", panel=OUTPUT, help="Print the numbers as JSON (as `mbgf eval --splits`).")


@dataclass
class ReproduceConfig:
    """``mbgf reproduce TABLE``: which table, where its data is, where its runs go."""

    table: str = argument(..., metavar="TABLE",
                          help="k400, transfer, fewshot-hmdb51, fewshot-ucf101, or synthetic (the stand-in that runs "
                               "on a CPU).")
    data: str = option("data", "--data", panel=DATA, path=True,
                       help="Folder holding k400/, ucf101/, hmdb51/ as `mbgf prepare-data` writes them.")
    root: str | None = option(None, "--root", panel=DATA, path=True,
                              help="The dataset folder of a one-dataset table (fewshot-*, synthetic).")
    out: str | None = option(None, "--output", "-o", "--out", panel=OUTPUT, path=True,
                             none="runs/reproduce-TABLE", help="Folder of every run. Rerun to resume.")
    epochs: int | None = option(None, "--epochs", panel=PROTOCOL, range=AT_LEAST_1, none="the recipe's",
                                help="Every run's epochs (a quick pass, not the published recipe).")
    overwrite: bool = option(False, "--overwrite", panel=OUTPUT,
                             help="Write into an --output folder that holds files of yours, beside them (none of "
                                  "them is changed or deleted).")
    dry_run: bool = option(False, "--dry-run", panel=PROTOCOL, help="Print the plan only.")
    measure: bool | None = option(None, "--measure/--no-measure", panel=PROTOCOL, none="on a GPU, or for the tiny model",
                                  help="Time one training step of each model here for the plan.")
    device: str | None = option(None, "--device", panel=RUN, none="cuda when available", help="cpu, cuda or cuda:N.")
    as_json: bool = option(False, "--json", panel=OUTPUT, help="Print the plan (and the table) as JSON.")
    seeds: tuple[int, ...] = (0,)  # the published tables' one seed (not an option)
