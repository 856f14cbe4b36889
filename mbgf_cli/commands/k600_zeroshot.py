"""``mbgf k600-zeroshot``: X-CLIP's Kinetics-600 zero-shot protocol (the 220 classes Kinetics-400 lacks,
three published splits of 160), top-1 and top-5 mean ± std over the splits, as ``mbgf eval --splits``
prints them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.console import console


def k600_zeroshot(
    dataset: str = typer.Option("k600", "--dataset", "-d", help="k600 (--root as `mbgf prepare-data k600` wrote it) "
                                "or synthetic (the stand-in: class set b, three seeded splits of 9 of 12)."),
    root: Optional[Path] = typer.Option(None, "--root", show_default=False, help="The dataset folder."),
    val_list: Optional[Path] = typer.Option(None, "--val-list", show_default=False,
                                            help="The list the splits are drawn from (default ROOT/val.txt)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", show_default=False,
                                             help="An mbgf checkpoint (trained on Kinetics-400), or any file "
                                                  "`mbgf convert` reads."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False,
                                             help="Or CLIP weights: a name (ViT-B/16) or a file."),
    model: Optional[str] = typer.Option(None, "--model", show_default=False,
                                        help="With --pretrained: the backbone, when the weights do not say."),
    frames: int = typer.Option(8, "--frames", help="With --pretrained: frames per view."),
    input_size: Optional[int] = typer.Option(None, "--input-size", show_default=False,
                                             help="With --pretrained: frame size."),
    views: Optional[str] = typer.Option(None, "--views", show_default=False, help="CLIPSxCROPS (default 1x1)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Videos per batch."),
    workers: int = typer.Option(0, "--workers", help="Decoding processes."),
    device: Optional[str] = typer.Option(None, "--device", show_default=False, help="cpu, cuda, cuda:1 ..."),
    decoder: str = typer.Option("auto", "--decoder", help="auto (decord, PyAV fallback), decord, pyav."),
    out: Optional[Path] = typer.Option(None, "--output", "-o", show_default=False,
                                       help="Folder for each split's list and labels (default "
                                            "runs/k600-zeroshot-<dataset>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
):
    """Kinetics-600 zero-shot: a row per split (160 new classes each), then the mean ± std."""
    from mbgf_cli.eval_splits import splits_table
    from mbgf_cli.protocols.k600 import K600Config, run_k600_zeroshot
    from mbgf_cli.resources import check_workers

    check_workers(workers)
    cfg = K600Config(root=str(root) if root else None, dataset=dataset, list_file=str(val_list) if val_list else None,
                     checkpoint=checkpoint, pretrained=pretrained, model=model, frames=frames, input_size=input_size,
                     views=views, batch_size=batch_size, workers=workers, device=device, decoder=decoder,
                     out=str(out) if out else None)
    summary = run_k600_zeroshot(cfg)
    if as_json:
        import json

        console.print_json(json.dumps(summary.to_json()))
        return
    console.print(splits_table(summary))


def register(app: typer.Typer) -> None:
    app.command("k600-zeroshot")(k600_zeroshot)
