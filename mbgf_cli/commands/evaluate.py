"""``mbgf eval``: test a checkpoint (or zero-shot CLIP) on a video list with multi-view testing; with
``--splits``, zero-shot over official splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands.options import OUTPUT, config_option, list_options_command, path_text
from mbgf_cli.console import console
from mbgf_cli.train_config import DATA, MODEL, RUN


def evaluate(
    # model
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", rich_help_panel=MODEL, show_default=False,
                                              help="A checkpoint folder (e.g. runs/x/best) or a published file."),
    zero_shot: bool = typer.Option(False, "--zero-shot", rich_help_panel=MODEL,
                                   help="CLIP with no training (needs --pretrained)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", rich_help_panel=MODEL, show_default=False,
                                             help="Zero-shot: CLIP weights (ViT-B/16 or a file)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", rich_help_panel=MODEL, show_default=False,
                                        help="Zero-shot: the backbone, when the weights do not tell."),
    frames: int = typer.Option(8, "--frames", rich_help_panel=MODEL, help="Zero-shot: frames per view."),
    input_size: Optional[int] = typer.Option(None, "--input-size", rich_help_panel=MODEL, show_default=False,
                                             help="Zero-shot: frame size (default the backbone's)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", rich_help_panel=MODEL, show_default=False,
                                          help="all | one (default: as the checkpoint was trained)."),
    # data
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", rich_help_panel=DATA, show_default=False,
                                          help="Preset (k400, ucf101, hmdb51, synthetic): labels and test views."),
    root: Optional[Path] = config_option("root"),
    list_file: Optional[str] = typer.Option(None, "--val-list", "--list", rich_help_panel=DATA, show_default=False,
                                            help="The list to evaluate (default ROOT/val.txt)."),
    labels: Optional[Path] = config_option("labels"),
    views: Optional[str] = typer.Option(None, "--views", rich_help_panel=DATA, show_default=False,
                                        help="CLIPSxCROPS, e.g. 4x3 (default: the preset's protocol, else 1x1)."),
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel=DATA, show_default=False,
                                          help="Decoding processes (default: up to 4; half the cores when the model runs on the CPU)."),
    decoder: str = config_option("decoder"),
    strict: bool = config_option("strict"),
    cache_decoded: bool = typer.Option(False, "--cache-decoded", rich_help_panel=DATA,
                                       help="Decode every video once, up front."),
    # run
    batch_size: int = typer.Option(8, "--batch-size", "-b", rich_help_panel=RUN,
                                   help="Videos per forward pass (x views)."),
    amp: str = config_option("amp", panel=RUN, help="Mixed precision: bf16, fp16, off; auto: bf16 where the device "
                                                    "computes it natively (GPUs with bf16, CPUs with AMX or AVX-512 "
                                                    "BF16; tiny stays fp32 on a CPU), else off."),
    device: Optional[str] = config_option("device"),
    compile_model: bool = config_option("compile", help="torch.compile the video encoder (a warning, and no "
                                                        "compiling, where no compiler works)."),
    splits: Optional[list[int]] = typer.Option(
        None, "--splits", rich_help_panel=RUN, show_default=False,
        help="Zero-shot over official splits, e.g. --splits 1 2 3: each split's test list (ROOT/splitN/val.txt, "
             "or {split} in --root/--val-list), then the mean and std."),
    # output
    per_class: bool = typer.Option(False, "--per-class", rich_help_panel=OUTPUT, help="Top-1 of every class."),
    explain: bool = typer.Option(False, "--explain", rich_help_panel=OUTPUT,
                                 help="MBGF: mean gate weight of each branch per class."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", rich_help_panel=OUTPUT, show_default=False,
                                               help="Write one CSV row per video."),
    plot: Optional[Path] = typer.Option(None, "--plot", rich_help_panel=OUTPUT, show_default=False,
                                        help="Write confusion_matrix.png and per_class_accuracy.png here."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT, help="Print the numbers as one JSON object."),
):
    """Evaluate: top-1, top-5, mean class accuracy over multi-view predictions."""
    from mbgf_cli import evaluation

    cfg = evaluation.EvalConfig(
        checkpoint=path_text(checkpoint), dataset=dataset, root=path_text(root), list_file=list_file,
        labels=path_text(labels), views=views, batch_size=batch_size, workers=workers, decoder=decoder, strict=strict,
        cache_decoded=cache_decoded, amp=amp, device=device, compile=compile_model, zero_shot=zero_shot,
        pretrained=pretrained, model=model,
        frames=frames, input_size=input_size, prompts=prompts, explain=explain, per_class=per_class,
        predictions=path_text(predictions), plot=path_text(plot), as_json=as_json,
    )
    if splits:
        return zero_shot_splits(cfg, splits)
    result, info = evaluation.evaluate(cfg)
    evaluation.print_result(result, info, cfg)


def zero_shot_splits(cfg, splits: list[int]) -> None:
    """A row per split and the mean ± std (``--json``: every split's numbers, the mean and std, as
    fractions like ``mbgf eval --json``)."""
    from mbgf_cli import eval_splits

    summary = eval_splits.zero_shot_over_splits(cfg, splits)
    if cfg.as_json:
        import json

        console.print_json(json.dumps(summary.to_json()))
        return
    console.print(eval_splits.splits_table(summary))


def register(app: typer.Typer) -> None:
    app.command("eval", cls=list_options_command("--splits"))(evaluate)
