"""``mbgf prepare-data``: write a dataset in the seed layout (lists, labels, videos) into ``--output``.

Thin: parse the options, call ``mbgf_cli.data.prepare``, print the summary as tables (or JSON).
Subcommands: synthetic, ucf101, hmdb51, k400, k600, ssv2, folder.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import typer
from rich.table import Table

from mbgf_cli.console import console
from mbgf_cli.data import prepare
from mbgf_cli.resources import available_cpus, check_memory, check_workers
from mbgf_cli.settings import AT_LEAST_0, AT_LEAST_1, PROBABILITY, command_options, option

app = typer.Typer(
    help="Write train.txt, val.txt, labels.csv (and videos) in the seed layout from official annotations, "
    "a folder per class, or the generated synthetic dataset.",
    no_args_is_help=True,
)


@dataclass
class PrepareOptions:
    """What every subcommand takes."""

    out: str = option(..., "--output", "-o", "--out", path=True,
                      help="Folder to write the dataset into (created); nothing of yours in it is changed or deleted.")
    check: bool = option(False, "--check",
                         help="Decode every listed video in parallel; list only readable ones, write rejected.txt.")
    pack: str | None = option(None, "--pack", metavar="tar", choices=("tar",),
                              help="Also write videos.tar (uncompressed, read in place); the videos/ this command "
                                   "made (a link, re-encoded or generated videos) is then removed, yours never.")
    workers: int | None = option(None, "--workers", range=AT_LEAST_0, check=check_workers, none="all cores",
                                 help="Parallel processes for --check/--resize/generation.")
    decoder: str = option("auto", "--decoder", choices=("auto", "decord", "pyav"),
                          help="Decoder for --check: auto (decord, PyAV fallback), decord, pyav.")
    as_json: bool = option(False, "--json", help="Print the summary as JSON.")


@dataclass
class ResizeOptions(PrepareOptions):
    resize: int | None = option(None, "--resize", metavar="N", range=AT_LEAST_1,
                                help="Re-encode every video to short side N px (H.264, fast to seek).")


def _folder(help: str):
    return option(..., "--videos", path=True, help=help)


@dataclass
class SyntheticOptions(PrepareOptions):
    class_set: str = option("a", "--class-set", choices=("a", "b"), help="a or b: two disjoint sets of 12 motion classes.")
    videos_per_class: int = option(125, "--videos-per-class", range=AT_LEAST_1, help="Videos per class (train + val).")
    frames: int = option(32, "--frames", range=AT_LEAST_1, help="Frames per video.")
    size: int = option(112, "--size", range=AT_LEAST_1, help="Frame side in pixels (even).")
    fps: int = option(16, "--fps", range=AT_LEAST_1, help="Frames per second of the written videos.")
    seed: int = option(0, "--seed", range=AT_LEAST_0, help="Same seed, same lists and same decoded frames.")
    val_fraction: float = option(0.2, "--val-fraction", range=PROBABILITY, help="Share of each class's videos in val.txt.")
    overwrite: bool = option(False, "--overwrite",
                             help="Regenerate when --output holds a synthetic dataset with other options.")


@dataclass
class UCF101Options(ResizeOptions):
    splits: str = option(..., "--splits", path=True, help="Folder with classInd.txt, trainlist0N.txt, testlist0N.txt.")
    videos: str = _folder("Folder of the UCF101 videos (class folders or flat).")
    split: int = option(1, "--split", choices=(1, 2, 3), help="Official split 1, 2 or 3 (its test list becomes val.txt).")


@dataclass
class HMDB51Options(ResizeOptions):
    splits: str = option(..., "--splits", path=True, help="Folder with the <class>_test_splitN.txt files.")
    videos: str = _folder("Folder of the HMDB51 videos (class folders or flat).")
    split: int = option(1, "--split", choices=(1, 2, 3),
                        help="Official split 1, 2 or 3 (1 = train, 2 = test -> val.txt, 0 = unused).")


@dataclass
class K400Options(ResizeOptions):
    annotations: str = option(..., "--annotations", path=True,
                              help="Folder with the official CSVs (train.csv, validate.csv).")
    videos: str = _folder("Folder of the videos, named <youtube_id>_<start>_<end>.mp4.")


@dataclass
class SSV2Options(ResizeOptions):
    annotations: str = option(..., "--annotations", path=True,
                              help="Folder with labels.json, train.json, validation.json.")
    videos: str = _folder("Folder of the videos, named <id>.webm.")


@dataclass
class FolderOptions(ResizeOptions):
    videos: str = _folder("Folder with one sub-folder of videos per class.")
    val_fraction: float = option(0.2, "--val-fraction", range=PROBABILITY, help="Share of each class's videos in val.txt.")
    seed: int = option(0, "--seed", range=AT_LEAST_0, help="Seed of the per-class split (same seed, same split).")


PATHS = ("out", "splits", "videos", "annotations")  # the engine takes these as paths


def _engine_arguments(cfg: PrepareOptions) -> dict:
    """The options as the engine (``mbgf_cli.data.prepare``) takes them: paths as ``Path``."""
    return {k: Path(v) if k in PATHS else v for k, v in asdict(cfg).items() if k != "as_json"}


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    _print(summary)


def _check_video_memory(cfg: SyntheticOptions) -> None:
    """--frames x --size: each generating process draws a whole video in float32 (and keeps its uint8
    copy), so the processes' videos together must fit in memory, checked before anything is written."""
    processes = cfg.workers if cfg.workers else available_cpus()
    per_video = cfg.frames * cfg.size * cfg.size * 3 * (4 + 1)
    check_memory(per_video * max(1, processes),
                 f"--frames {cfg.frames} x --size {cfg.size} (each video as it is drawn, in {processes} processes)")


def _print(summary: dict):
    table = Table(title=f"prepare-data {summary['dataset']}: {summary['out']}", title_justify="left")
    table.add_column("split")
    table.add_column("videos listed", justify="right")
    table.add_column("annotated but missing", justify="right")
    for split in ("train", "val"):
        table.add_row(split, str(summary[split]), str(summary["missing"][split]))
    console.print(table)
    if summary["rejected_by_reason"]:
        failures = Table(title=f"{summary['rejected']} videos rejected (rejected.txt)", title_justify="left")
        failures.add_column("reason")
        failures.add_column("videos", justify="right")
        failures.add_column("example")
        for reason, count in summary["rejected_by_reason"].items():
            failures.add_row(reason, str(count), summary["rejected_examples"][reason])
        console.print(failures)
    missing = summary["missing"]["train"] + summary["missing"]["val"]
    out = Path(summary["out"])
    console.print(
        f"{summary['classes']} classes; lists in {out / 'train.txt'} and {out / 'val.txt'}, labels in "
        f"{out / 'labels.csv'}, videos in {summary['videos']}"
        + (f"; {missing} missing videos listed in {out / 'missing.txt'}" if missing else ""),
        highlight=False,
        soft_wrap=True,
    )
    for note in summary["notes"]:
        console.print(f"note: {note}", highlight=False)


def _synthetic(cfg: SyntheticOptions):
    _check_video_memory(cfg)
    return prepare.prepare_synthetic(**_engine_arguments(cfg))


# name, options, what it does (the help's first line), the engine
SUBCOMMANDS = (
    ("synthetic", SyntheticOptions,
     "Generate the synthetic motion dataset (temporal class pairs no single frame tells apart).", _synthetic),
    ("ucf101", UCF101Options, "UCF101 from the official split files.", "prepare_ucf101"),
    ("hmdb51", HMDB51Options, "HMDB51 from the official split files.", "prepare_hmdb51"),
    ("k400", K400Options, "Kinetics-400 from the official CSVs; reports how many annotated videos are missing.",
     "prepare_k400"),
    ("k600", K400Options, "Kinetics-600 from the official CSVs; reports how many annotated videos are missing.",
     "prepare_k600"),
    ("ssv2", SSV2Options, "Something-Something v2 from its JSON files (validation.json becomes val.txt).",
     "prepare_ssv2"),
    ("folder", FolderOptions,
     "Any dataset stored as one folder per class (the folder name is the class, '_' read as space).",
     "prepare_folder"),
)


def _subcommand(name: str, options, doc: str, engine):
    def command(cfg):
        summary = engine(cfg) if callable(engine) else getattr(prepare, engine)(**_engine_arguments(cfg))
        _report(summary, cfg.as_json)

    command.__name__, command.__doc__ = name, doc
    app.command(name)(command_options(options)(command))


for _entry in SUBCOMMANDS:
    _subcommand(*_entry)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="prepare-data")
