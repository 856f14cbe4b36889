"""``mbgf eval``: test a checkpoint (or zero-shot CLIP) on a video list with multi-view testing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands.options import path_text


def evaluate(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", show_default=False,
                                              help="A checkpoint folder (e.g. runs/x/best)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", show_default=False,
                                          help="Preset (k400, ucf101, hmdb51, synthetic): labels and test views."),
    root: Optional[Path] = typer.Option(None, "--root", show_default=False,
                                        help="Dataset folder: videos/ (or videos.tar/.zip), lists, labels.csv."),
    list_file: Optional[str] = typer.Option(None, "--list", show_default=False,
                                            help="The list to evaluate (default ROOT/val.txt)."),
    labels: Optional[Path] = typer.Option(None, "--labels", show_default=False,
                                          help="id,name CSV (default ROOT/labels.csv, else the preset's)."),
    views: Optional[str] = typer.Option(None, "--views", show_default=False,
                                        help="CLIPSxCROPS, e.g. 4x3 (default: the preset's protocol, else 1x1)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Videos per forward pass (x views)."),
    workers: Optional[int] = typer.Option(None, "--workers", show_default=False, help="Loader processes."),
    decoder: str = typer.Option("auto", "--decoder", help="auto | decord | pyav."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable video."),
    cache_decoded: bool = typer.Option(False, "--cache-decoded", help="Decode every video once, up front."),
    amp: str = typer.Option("auto", "--amp", help="bf16 | fp16 | off | auto (bf16 on GPUs that have it)."),
    device: Optional[str] = typer.Option(None, "--device", show_default=False, help="cpu or cuda."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="CLIP with no training (needs --pretrained)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", show_default=False,
                                             help="Zero-shot: CLIP weights (ViT-B/16 or a file)."),
    model: Optional[str] = typer.Option(None, "--model", show_default=False,
                                        help="Zero-shot: the backbone, when the weights do not tell."),
    frames: int = typer.Option(8, "--frames", help="Zero-shot: frames per view."),
    input_size: Optional[int] = typer.Option(None, "--input-size", show_default=False,
                                             help="Zero-shot: frame size (default the backbone's)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", show_default=False,
                                          help="all | one (default: as the checkpoint was trained)."),
    per_class: bool = typer.Option(False, "--per-class", help="Top-1 of every class."),
    explain: bool = typer.Option(False, "--explain", help="MBGF: mean gate weight of each branch per class."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", show_default=False,
                                               help="Write one CSV row per video."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default=False,
                                        help="Write confusion_matrix.png and per_class_accuracy.png here."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as one JSON object."),
    splits: Optional[list[int]] = typer.Option(
        None, "--splits", show_default=False,
        help="Zero-shot over official splits, e.g. --splits 1 2 3: each split's test list (ROOT/splitN/val.txt, "
             "or {split} in --root/--list), then the mean and std."),
):
    """Evaluate: top-1, top-5, mean class accuracy over multi-view predictions."""
    from mbgf_cli import evaluation

    cfg = evaluation.EvalConfig(
        checkpoint=path_text(checkpoint), dataset=dataset, root=path_text(root), list_file=list_file,
        labels=path_text(labels), views=views, batch_size=batch_size, workers=workers, decoder=decoder, strict=strict,
        cache_decoded=cache_decoded, amp=amp, device=device, zero_shot=zero_shot, pretrained=pretrained, model=model,
        frames=frames, input_size=input_size, prompts=prompts, explain=explain, per_class=per_class,
        predictions=path_text(predictions), plot=path_text(plot), as_json=as_json,
    )
    if splits:
        from mbgf_cli.commands.fewshot import zero_shot_splits

        return zero_shot_splits(cfg, splits)
    result, info = evaluation.evaluate(cfg)
    evaluation.print_result(result, info, cfg)



def register(app: typer.Typer) -> None:
    from mbgf_cli.commands.fewshot import EvalSplitsCommand

    app.command("eval", cls=EvalSplitsCommand)(evaluate)
