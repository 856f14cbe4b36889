"""``mbgf prepare-data``: write a dataset in the seed layout (lists, labels, videos) into ``--output``.

Thin: parse the options, call ``mbgf_cli.data.prepare``, print the summary as tables (or JSON).
Subcommands: synthetic, ucf101, hmdb51, k400, k600, ssv2, folder.
"""

import json
from pathlib import Path

import typer
from rich.table import Table

from mbgf_cli.console import console
from mbgf_cli.data import prepare

app = typer.Typer(
    help="Write train.txt, val.txt, labels.csv (and videos) in the seed layout from official annotations, "
    "a folder per class, or the generated synthetic dataset.",
    no_args_is_help=True,
)

# Options shared by every subcommand (Typer has no option groups; each command lists them).
OUT = typer.Option(..., "--output", "-o", "--out", help="Folder to write the dataset into (created); nothing of "
                   "yours in it is changed or deleted.")
CHECK = typer.Option(False, "--check", help="Decode every listed video in parallel; list only readable ones, write rejected.txt.")
RESIZE = typer.Option(None, "--resize", metavar="N", help="Re-encode every video to short side N px (H.264, fast to seek).")
PACK = typer.Option(None, "--pack", metavar="tar", help="Also write videos.tar (uncompressed, read in place); the "
                    "videos/ this command made (a link, re-encoded or generated videos) is then removed, yours never.")
WORKERS = typer.Option(None, "--workers", help="Parallel processes for --check/--resize/generation (default: all cores).")
DECODER = typer.Option("auto", "--decoder", help="Decoder for --check: auto (decord, PyAV fallback), decord, pyav.")
JSON = typer.Option(False, "--json", help="Print the summary as JSON.")


def _run(engine, as_json: bool, **kwargs):
    summary = engine(**kwargs)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    _print(summary)


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


@app.command()
def synthetic(
    out: Path = OUT,
    class_set: str = typer.Option("a", "--class-set", help="a or b: two disjoint sets of 12 motion classes."),
    videos_per_class: int = typer.Option(125, "--videos-per-class", help="Videos per class (train + val)."),
    frames: int = typer.Option(32, "--frames", help="Frames per video."),
    size: int = typer.Option(112, "--size", help="Frame side in pixels (even)."),
    fps: int = typer.Option(16, "--fps"),
    seed: int = typer.Option(0, "--seed", help="Same seed, same lists and same decoded frames."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of each class's videos in val.txt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Regenerate when --output holds a synthetic dataset with other options."),
    check: bool = CHECK,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """Generate the synthetic motion dataset (temporal class pairs no single frame tells apart)."""
    _run(prepare.prepare_synthetic, as_json, out=out, class_set=class_set, videos_per_class=videos_per_class,
         frames=frames, size=size, fps=fps, seed=seed, val_fraction=val_fraction, overwrite=overwrite,
         check=check, pack=pack, workers=workers, decoder=decoder)


@app.command()
def ucf101(
    splits: Path = typer.Option(..., "--splits", help="Folder with classInd.txt, trainlist0N.txt, testlist0N.txt."),
    videos: Path = typer.Option(..., "--videos", help="Folder of the UCF101 videos (class folders or flat)."),
    split: int = typer.Option(1, "--split", help="Official split 1, 2 or 3 (its test list becomes val.txt)."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """UCF101 from the official split files."""
    _run(prepare.prepare_ucf101, as_json, splits=splits, videos=videos, split=split, out=out, check=check,
         resize=resize, pack=pack, workers=workers, decoder=decoder)


@app.command()
def hmdb51(
    splits: Path = typer.Option(..., "--splits", help="Folder with the <class>_test_splitN.txt files."),
    videos: Path = typer.Option(..., "--videos", help="Folder of the HMDB51 videos (class folders or flat)."),
    split: int = typer.Option(1, "--split", help="Official split 1, 2 or 3 (1 = train, 2 = test -> val.txt, 0 = unused)."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """HMDB51 from the official split files."""
    _run(prepare.prepare_hmdb51, as_json, splits=splits, videos=videos, split=split, out=out, check=check,
         resize=resize, pack=pack, workers=workers, decoder=decoder)


@app.command()
def k400(
    annotations: Path = typer.Option(..., "--annotations", help="Folder with the official CSVs (train.csv, validate.csv)."),
    videos: Path = typer.Option(..., "--videos", help="Folder of the videos, named <youtube_id>_<start>_<end>.mp4."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """Kinetics-400 from the official CSVs; reports how many annotated videos are missing."""
    _run(prepare.prepare_k400, as_json, annotations=annotations, videos=videos, out=out, check=check,
         resize=resize, pack=pack, workers=workers, decoder=decoder)


@app.command()
def k600(
    annotations: Path = typer.Option(..., "--annotations", help="Folder with the official CSVs (train.csv, validate.csv)."),
    videos: Path = typer.Option(..., "--videos", help="Folder of the videos, named <youtube_id>_<start>_<end>.mp4."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """Kinetics-600 from the official CSVs; reports how many annotated videos are missing."""
    _run(prepare.prepare_k600, as_json, annotations=annotations, videos=videos, out=out, check=check,
         resize=resize, pack=pack, workers=workers, decoder=decoder)


@app.command()
def ssv2(
    annotations: Path = typer.Option(..., "--annotations", help="Folder with labels.json, train.json, validation.json."),
    videos: Path = typer.Option(..., "--videos", help="Folder of the videos, named <id>.webm."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """Something-Something v2 from its JSON files (validation.json becomes val.txt)."""
    _run(prepare.prepare_ssv2, as_json, annotations=annotations, videos=videos, out=out, check=check,
         resize=resize, pack=pack, workers=workers, decoder=decoder)


@app.command()
def folder(
    videos: Path = typer.Option(..., "--videos", help="Folder with one sub-folder of videos per class."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of each class's videos in val.txt."),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-class split (same seed, same split)."),
    out: Path = OUT,
    check: bool = CHECK,
    resize: int = RESIZE,
    pack: str = PACK,
    workers: int = WORKERS,
    decoder: str = DECODER,
    as_json: bool = JSON,
):
    """Any dataset stored as one folder per class (the folder name is the class, '_' read as space)."""
    _run(prepare.prepare_folder, as_json, videos=videos, val_fraction=val_fraction, seed=seed, out=out,
         check=check, resize=resize, pack=pack, workers=workers, decoder=decoder)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="prepare-data")
