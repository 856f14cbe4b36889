"""``mbgf train``: parse the options, run the training engine, print where the results are."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mbgf_cli.commands import options
from mbgf_cli.commands.options import DATA, MODEL, RUN, path_text
from mbgf_cli.console import console, err_console

OPTIM = "Optimisation"


def train(
    # data
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", rich_help_panel=DATA,
        help="Preset: k400, ucf101, hmdb51 (label list, class count, X-CLIP's recipe) or synthetic (generated on "
             "first use, no download).", show_default=False),
    root: Optional[Path] = options.ROOT,
    train_list: Optional[str] = typer.Option(None, "--train-list", rich_help_panel=DATA, show_default=False,
                                             help="Train list (default ROOT/train.txt)."),
    val_list: Optional[str] = typer.Option(None, "--val-list", rich_help_panel=DATA, show_default=False,
                                           help="Val list (default ROOT/val.txt)."),
    labels: Optional[Path] = options.LABELS,
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel=DATA, show_default=False,
                                          help="Loader processes per training process (preset's default)."),
    decoder: str = options.DECODER,
    strict: bool = options.STRICT,
    cache_decoded: Optional[bool] = typer.Option(
        None, "--cache-decoded/--no-cache-decoded", rich_help_panel=DATA, show_default=False,
        help="Decode every video once and keep the frames in memory (small datasets; synthetic's default)."),
    flip: Optional[bool] = options.FLIP,
    crop: Optional[str] = typer.Option(None, "--crop", rich_help_panel=DATA, show_default=False,
                                       help="Train crop: multiscale | random_resized | center."),
    jitter: Optional[float] = typer.Option(None, "--jitter", rich_help_panel=DATA, show_default=False,
                                           help="Probability of colour jitter."),
    gray: Optional[float] = typer.Option(None, "--gray", rich_help_panel=DATA, show_default=False,
                                         help="Probability of grayscale."),
    # model
    model: Optional[str] = typer.Option(None, "--model", "-m", rich_help_panel=MODEL, show_default=False,
                                        help="Backbone: b32, b16, l14, tiny (random init)."),
    variant: Optional[str] = typer.Option(None, "--variant", rich_help_panel=MODEL, show_default=False,
                                          help="clip (mean pooling), actionclip, xclip."),
    mbgf: bool = typer.Option(True, "--mbgf/--no-mbgf", rich_help_panel=MODEL, help="Multi-Branch Gated Fusion."),
    frames: Optional[int] = typer.Option(None, "--frames", rich_help_panel=MODEL, show_default=False,
                                         help="Frames per clip."),
    input_size: Optional[int] = typer.Option(None, "--input-size", rich_help_panel=MODEL, show_default=False,
                                             help="Frame size in pixels (default: the backbone's)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", rich_help_panel=MODEL, show_default=False,
                                             help="CLIP weights: a name (ViT-B/16) or file (default: the "
                                                  "backbone's; tiny has none)."),
    init: Optional[Path] = typer.Option(None, "--init", rich_help_panel=MODEL, show_default=False,
                                        help="Start from an mbgf checkpoint (e.g. K400 -> UCF101 transfer)."),
    freeze_text: Optional[bool] = typer.Option(None, "--freeze-text/--train-text", rich_help_panel=MODEL,
                                               show_default=False,
                                               help="Freeze the text encoder (class features cached)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", rich_help_panel=MODEL, show_default=False,
                                          help="Templates per class: all (one drawn per video in training, "
                                               "averaged at test) or one."),
    grad_checkpointing: bool = options.GRAD_CHECKPOINTING,
    # optimisation
    epochs: Optional[int] = typer.Option(None, "--epochs", rich_help_panel=OPTIM, show_default=False),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", rich_help_panel=OPTIM,
                                                  show_default=False),
    lr: Optional[float] = typer.Option(None, "--lr", rich_help_panel=OPTIM, show_default=False,
                                       help="Peak learning rate of the CLIP weights."),
    new_lr_mult: Optional[float] = typer.Option(None, "--new-lr-mult", rich_help_panel=OPTIM, show_default=False,
                                                help="Learning-rate factor of new modules (heads, X-CLIP parts, "
                                                     "MBGF)."),
    min_lr_ratio: Optional[float] = typer.Option(None, "--min-lr-ratio", rich_help_panel=OPTIM,
                                                 show_default=False, help="Cosine end as a fraction of --lr."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", "--wd", rich_help_panel=OPTIM,
                                                 show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", rich_help_panel=OPTIM,
                                             show_default=False, help="Clips per process per forward pass."),
    total_batch: Optional[int] = typer.Option(None, "--total-batch", rich_help_panel=OPTIM, show_default=False,
                                              help="Clips per optimiser step over all processes "
                                                   "(gradient accumulation makes up the rest)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", rich_help_panel=OPTIM, show_default=False,
                                              help="Clip the gradient norm (0: off)."),
    amp: str = typer.Option("auto", "--amp", rich_help_panel=OPTIM,
                            help="Mixed precision: bf16, fp16 (with a grad scaler), off; auto = bf16 on GPUs "
                                 "that have it, off on CPUs."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", rich_help_panel=OPTIM,
                                                    show_default=False),
    mixup: Optional[float] = typer.Option(None, "--mixup", rich_help_panel=OPTIM, show_default=False,
                                          help="Mixup alpha (0: off)."),
    cutmix: Optional[float] = typer.Option(None, "--cutmix", rich_help_panel=OPTIM, show_default=False,
                                           help="Cutmix alpha (0: off)."),
    loss: str = typer.Option("ce", "--loss", rich_help_panel=OPTIM,
                             help="ce, or ce+kl (adds ActionCLIP's in-batch KL loss)."),
    seed: int = typer.Option(0, "--seed", rich_help_panel=OPTIM, help="Makes the run repeatable."),
    # run
    out: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel=RUN, show_default=False,
                                       help="Output folder (default runs/<dataset>-<model>-<variant>[-mbgf])."),
    resume: Optional[Path] = typer.Option(None, "--resume", rich_help_panel=RUN, show_default=False,
                                          help="Continue a run exactly from its last/ checkpoint."),
    eval_every: int = typer.Option(1, "--eval-every", rich_help_panel=RUN, help="Validate every N epochs."),
    device: Optional[str] = options.DEVICE,
    plot: bool = typer.Option(True, "--plot/--no-plot", rich_help_panel=RUN, help="Write training_curve.png."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=RUN, help="Print the summary as JSON."),
    inject_nan_at_step: Optional[int] = typer.Option(None, "--inject-nan-at-step", hidden=True),
    stop_at_step: Optional[int] = typer.Option(None, "--stop-at-step", hidden=True),
):
    """Train a video model (also under torchrun --nproc-per-node N -m mbgf_cli train ...)."""
    from mbgf_cli import training

    if resume is not None and out is not None:
        from mbgf_cli.errors import UserError

        raise UserError("--resume writes into the resumed run's folder; leave out --out")
    if resume is None and dataset is None and root is None:
        from mbgf_cli.errors import UserError

        raise UserError("give --dataset (k400, ucf101, hmdb51, synthetic) or --root DIR; "
                        "try: mbgf train --dataset synthetic")
    cfg = training.TrainConfig(
        dataset=dataset, root=path_text(root), train_list=train_list, val_list=val_list, labels=path_text(labels),
        decoder=decoder, workers=workers, strict=strict, flip=flip, crop=crop, jitter=jitter, gray=gray,
        cache_decoded=cache_decoded, model=model, variant=variant, mbgf=mbgf, frames=frames, input_size=input_size,
        pretrained=pretrained, init=path_text(init), freeze_text=freeze_text, prompts=prompts,
        grad_checkpointing=grad_checkpointing, epochs=epochs, warmup_epochs=warmup_epochs, lr=lr,
        new_lr_mult=new_lr_mult, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay, batch_size=batch_size,
        total_batch=total_batch, clip_grad=clip_grad, amp=amp, label_smoothing=label_smoothing, mixup=mixup,
        cutmix=cutmix, loss=loss, seed=seed, resume=path_text(resume), eval_every=eval_every, device=device,
        plot=plot, inject_nan_at_step=inject_nan_at_step, stop_at_step=stop_at_step,
    )
    if resume is None:
        cfg.out = str(out) if out is not None else training.default_out_dir(cfg)
    else:
        training.check_resume_options(cfg)
    try:
        summary = training.train(cfg)
    except training.TrainingInterrupted as e:
        err_console.print(f"[yellow]{e}[/yellow]", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if as_json:
        import json

        console.print_json(json.dumps(summary))
    else:
        training.print_summary(summary)



def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=False)(train)
