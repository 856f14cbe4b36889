"""``mbgf fewshot``: the K-shot protocol as one command whose output is the seed's table."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands import options
from mbgf_cli.commands.flops import ListOptionsCommand
from mbgf_cli.commands.options import DATA, MODEL, path_text
from mbgf_cli.console import console, err_console

PROTOCOL = "Protocol"
OPTIM = "Optimisation (default: X-CLIP's few-shot recipe; synthetic: a 2-core CPU recipe)"


class FewShotCommand(ListOptionsCommand):
    list_options = ("--shots", "-k", "--variants", "--seeds", "--split-file")


def fewshot(
    # protocol
    shots: list[int] = typer.Option([2, 4, 8, 16], "--shots", "-k", rich_help_panel=PROTOCOL,
                                    help="K training videos per class; several: --shots 2 4 8 16."),
    variants: Optional[list[str]] = typer.Option(
        None, "--variants", rich_help_panel=PROTOCOL, show_default=False,
        help="Rows of the table: clip, clip+mbgf, actionclip, actionclip+mbgf, xclip, xclip+mbgf (default: the "
             "first five; synthetic: clip clip+mbgf)."),
    seeds: list[int] = typer.Option([0], "--seeds", rich_help_panel=PROTOCOL,
                                    help="Seeds of the K-shot samples (and of training); several: --seeds 0 1 2."),
    split_file: list[Path] = typer.Option(
        [], "--split-file", rich_help_panel=PROTOCOL, show_default=False,
        help="Train on these K-shot lists instead of sampling (K and seed from a K{K}_seed{S}.txt name, "
             "else K from the content); several allowed."),
    output: Optional[Path] = typer.Option(None, "--output", "--out", "-o", rich_help_panel=PROTOCOL,
                                          show_default=False,
                                          help="Folder for splits/, runs/, results.csv, table.md "
                                               "(default runs/fewshot-<dataset>). Rerun to resume."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=PROTOCOL,
                                 help="Print every run's numbers and the table as JSON."),
    # data
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", rich_help_panel=DATA, show_default=False,
        help="hmdb51, ucf101, k400 (label list, class count) or synthetic (class set b, generated on first "
             "use; starts from the `mbgf train --dataset synthetic` model)."),
    root: Optional[Path] = options.ROOT,
    train_list: Optional[str] = typer.Option(None, "--train-list", rich_help_panel=DATA, show_default=False,
                                             help="The list K-shot samples are drawn from (default ROOT/train.txt)."),
    val_list: Optional[str] = typer.Option(None, "--val-list", rich_help_panel=DATA, show_default=False,
                                           help="The full list every run is evaluated on (default ROOT/val.txt)."),
    labels: Optional[Path] = options.LABELS,
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel=DATA, show_default=False,
                                          help="Loader processes (preset's default)."),
    decoder: str = options.DECODER,
    strict: bool = options.STRICT,
    cache_decoded: Optional[bool] = typer.Option(
        None, "--cache-decoded/--no-cache-decoded", rich_help_panel=DATA, show_default=False,
        help="Keep decoded videos in memory (small datasets; synthetic's default)."),
    flip: Optional[bool] = options.FLIP,
    # model
    model: Optional[str] = typer.Option(None, "--model", "-m", rich_help_panel=MODEL, show_default=False,
                                        help="Backbone: b32, b16 (default), l14, tiny."),
    frames: Optional[int] = typer.Option(None, "--frames", rich_help_panel=MODEL, show_default=False,
                                         help="Frames per clip (default 32; synthetic 8)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", rich_help_panel=MODEL, show_default=False,
                                             help="Frame size in pixels (default 224; synthetic 48)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", rich_help_panel=MODEL, show_default=False,
                                             help="CLIP weights every run starts from: a name (ViT-B/16) or file "
                                                  "(default: the backbone's)."),
    init: Optional[Path] = typer.Option(None, "--init", rich_help_panel=MODEL, show_default=False,
                                        help="Start from an mbgf checkpoint instead: its own variant from all of "
                                             "it, the other variants from its CLIP weights."),
    freeze_text: Optional[bool] = typer.Option(None, "--freeze-text/--train-text", rich_help_panel=MODEL,
                                               show_default=False, help="Freeze the text encoder."),
    prompts: Optional[str] = typer.Option(None, "--prompts", rich_help_panel=MODEL, show_default=False,
                                          help="Templates per class: all or one."),
    grad_checkpointing: bool = options.GRAD_CHECKPOINTING,
    # optimisation
    epochs: Optional[int] = typer.Option(None, "--epochs", rich_help_panel=OPTIM, show_default=False,
                                         help="Epochs per run (50)."),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", rich_help_panel=OPTIM,
                                                  show_default=False, help="(5)"),
    lr: Optional[float] = typer.Option(None, "--lr", rich_help_panel=OPTIM, show_default=False,
                                       help="Peak learning rate of the CLIP weights (2e-6)."),
    new_lr_mult: Optional[float] = typer.Option(None, "--new-lr-mult", rich_help_panel=OPTIM, show_default=False,
                                                help="Factor of new modules' learning rate (10)."),
    min_lr_ratio: Optional[float] = typer.Option(None, "--min-lr-ratio", rich_help_panel=OPTIM,
                                                 show_default=False, help="Cosine end as a fraction of --lr (0.01)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", "--wd", rich_help_panel=OPTIM,
                                                 show_default=False, help="(0.001)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", rich_help_panel=OPTIM,
                                             show_default=False, help="Clips per process per forward pass (4)."),
    total_batch: Optional[int] = typer.Option(None, "--total-batch", rich_help_panel=OPTIM, show_default=False,
                                              help="Clips per optimiser step over all processes (64: X-CLIP's "
                                                   "8 GPUs x 4 x accumulation 2)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", rich_help_panel=OPTIM, show_default=False,
                                              help="Clip the gradient norm (0: off)."),
    amp: str = typer.Option("auto", "--amp", rich_help_panel=OPTIM, help="bf16, fp16, off; auto: bf16 on GPUs."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", rich_help_panel=OPTIM,
                                                    show_default=False, help="(0.1)"),
    mixup: Optional[float] = typer.Option(None, "--mixup", rich_help_panel=OPTIM, show_default=False,
                                          help="Mixup alpha, 0: off (0.8)."),
    cutmix: Optional[float] = typer.Option(None, "--cutmix", rich_help_panel=OPTIM, show_default=False,
                                           help="Cutmix alpha, 0: off (1.0)."),
    # run
    device: Optional[str] = options.DEVICE,
    stop_at_step: Optional[int] = typer.Option(None, "--stop-at-step", hidden=True),
):
    """K-shot training and evaluation: a row per variant, a column per K, top-1 (%) over seeds."""
    from mbgf_cli import fewshot as engine
    from mbgf_cli import tables, training

    train_cfg = training.TrainConfig(
        dataset=dataset, root=path_text(root), train_list=train_list, val_list=val_list, labels=path_text(labels),
        decoder=decoder, workers=workers, strict=strict, flip=flip, cache_decoded=cache_decoded, model=model,
        frames=frames, input_size=input_size, pretrained=pretrained, init=path_text(init), freeze_text=freeze_text,
        prompts=prompts, grad_checkpointing=grad_checkpointing, epochs=epochs, warmup_epochs=warmup_epochs, lr=lr,
        new_lr_mult=new_lr_mult, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay, batch_size=batch_size,
        total_batch=total_batch, clip_grad=clip_grad, amp=amp, label_smoothing=label_smoothing, mixup=mixup,
        cutmix=cutmix, device=device, plot=False, stop_at_step=stop_at_step,
    )
    out = output if output is not None else Path(f"runs/fewshot-{dataset or (root.name if root else 'data')}")
    cfg = engine.FewShotConfig(train=train_cfg, out=str(out), shots=tuple(shots), variants=tuple(variants or engine.default_variants(dataset)),
                               seeds=tuple(seeds), split_files=tuple(str(p) for p in split_file))

    def announce(i: int, n: int, spec, state: str) -> None:
        what = {"done": "finished, read back", "interrupted": "resuming", "new": "training"}[state]
        err_console.rule(f"[{i + 1}/{n}] {spec.variant.name}, K={spec.split.shots}, seed {spec.split.seed}: {what}",
                         style="dim")

    try:
        with _results_to_stderr():  # each run's epoch tables are progress here; stdout is the table (or JSON)
            outcome = engine.run_fewshot(cfg, on_run=announce)
    except training.TrainingInterrupted:
        err_console.print(f"[yellow]interrupted; run the same command again to resume ({out})[/yellow]",
                          highlight=False)
        raise typer.Exit(130) from None

    if as_json:
        import json

        console.print_json(json.dumps({
            "output": str(outcome.out), "start": outcome.start,
            "runs": [r.row() for r in outcome.results],
            "table": tables.table_json(outcome.table),
        }))
        return
    console.print(tables.to_rich(outcome.table))
    err_console.print(f"started from {outcome.start}; every run in {outcome.out / 'results.csv'}, the table as "
                      f"markdown in {outcome.out / 'table.md'}, the K-shot lists in {outcome.out / 'splits'}",
                      highlight=False, soft_wrap=True)


@contextmanager
def _results_to_stderr():
    previous = getattr(console, "_file", None)  # None: follows sys.stdout
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = previous



def register(app: typer.Typer) -> None:
    app.command("fewshot", cls=FewShotCommand)(fewshot)


# ---------------------------------------------------------------- `mbgf eval --zero-shot ... --splits 1 2 3`


class EvalSplitsCommand(ListOptionsCommand):
    """``mbgf eval``'s class: ``--splits 1 2 3`` takes several values after one flag."""

    list_options = ("--splits",)


def zero_shot_splits(cfg, splits: list[int]) -> None:
    """Evaluate ``cfg`` (an EvalConfig) zero-shot on each split's test list; print a row per split and the
    mean ± std (``--json``: every split's numbers, the mean and std, as fractions like ``mbgf eval --json``)."""
    from mbgf_cli import fewshot as engine

    summary = engine.zero_shot_over_splits(cfg, splits)
    if cfg.as_json:
        import json

        console.print_json(json.dumps(summary.to_json()))
        return
    console.print(engine.splits_table(summary))
