"""The training engine behind ``mbgf train``: one plain loop, readable top to bottom.

    config -> data (lists, labels, loaders) -> model -> text tokens -> optimiser (param groups)
    -> [resume] -> for each epoch: for each step: forward, loss, backward (accumulated), clip, step
       -> evaluate on val -> metrics.jsonl, last/ (and best/) checkpoints -> summary.json, curve

Runs alone or under ``torchrun`` (DistributedDataParallel; rank 0 prints and writes). A run
interrupted (Ctrl-C) writes a resumable ``last/`` with its position inside the epoch; ``--resume``
continues from it and gives the same numbers as a run that never stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from fusion.prompts import class_text_tokens
from mbgf_cli import checkpoint, distributed, presets
from mbgf_cli.console import console, err_console, progress
from mbgf_cli.errors import UserError
from mbgf_cli.precision import resolve_amp


@dataclass
class TrainConfig:
    """Everything a run depends on. ``None`` means "the dataset preset's recipe value"."""

    # data
    dataset: str | None = None  # k400 | ucf101 | hmdb51 | synthetic (or None: explicit paths)
    root: str | None = None  # the videos folder (or videos.tar / .zip)
    train_list: str | None = None
    val_list: str | None = None
    labels: str | None = None
    decoder: str = "auto"
    workers: int | None = None
    strict: bool = False
    flip: bool | None = None  # random horizontal flip (off for direction-sensitive data)
    crop: str | None = None  # multiscale | random_resized | center
    jitter: float | None = None  # probability of colour jitter
    gray: float | None = None  # probability of grayscale
    cache_decoded: bool | None = None  # hold decoded videos in memory (small datasets)
    # model
    model: str | None = None
    variant: str | None = None
    mbgf: bool = True
    frames: int | None = None
    input_size: int | None = None
    pretrained: str | None = None  # a CLIP name or path; None: the backbone's own weights
    init: str | None = None  # start from an mbgf checkpoint (e.g. K400 -> UCF101)
    freeze_text: bool | None = None
    prompts: str | None = None  # "all" templates per class, or "one"
    grad_checkpointing: bool = False
    # optimisation
    epochs: int | None = None
    warmup_epochs: float | None = None
    lr: float | None = None
    new_lr_mult: float | None = None
    min_lr_ratio: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None  # clips per process per forward
    total_batch: int | None = None  # clips per optimiser step over all processes (sets accumulation)
    clip_grad: float | None = None
    amp: str = "auto"  # auto | bf16 | fp16 | off
    label_smoothing: float | None = None
    loss: str = "ce"  # ce | ce+kl (adds ActionCLIP's symmetric KL over in-batch video-text logits)
    mixup: float | None = None  # mixup alpha (0: off)
    cutmix: float | None = None  # cutmix alpha (0: off)
    mixup_switch_prob: float = 0.5
    seed: int = 0
    # run
    out: str = "runs/train"
    resume: str | None = None
    eval_every: int = 1
    device: str | None = None
    plot: bool = True
    # hooks for tests (hidden CLI options)
    inject_nan_at_step: int | None = None  # make the loss NaN at this optimiser step
    stop_at_step: int | None = None  # behave as if Ctrl-C came after this optimiser step

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Options that may change when resuming: they do not change what is computed.
RESUME_OVERRIDABLE = ("workers", "decoder", "device", "plot", "strict")
TEST_HOOKS = ("inject_nan_at_step", "stop_at_step")  # never carried over into a resumed run


def check_resume_options(cfg: TrainConfig) -> None:
    """``--resume`` continues the saved run as it was: refuse options that would change what it computes."""
    changed = [key for key in asdict(cfg) if key not in (*RESUME_OVERRIDABLE, *TEST_HOOKS, "resume", "out")
               and getattr(cfg, key) != getattr(TrainConfig(), key)]
    if changed:
        raise UserError(f"--resume continues {cfg.resume} as it was saved, so it takes no "
                        f"{', '.join('--' + k.replace('_', '-') for k in changed)} (with --resume only "
                        f"{', '.join('--' + k for k in RESUME_OVERRIDABLE)} may be given)")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or ``stop_at_step``): a resumable ``last/`` was written before stopping."""

    def __init__(self, checkpoint_dir: Path):
        super().__init__(f"interrupted; resume with: mbgf train --resume {checkpoint_dir}")
        self.checkpoint_dir = checkpoint_dir


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the ``None`` fields from the dataset preset's recipe; check the combination."""
    recipe = presets.get_preset(cfg.dataset).recipe if cfg.dataset else presets.GENERIC_RECIPE
    values = cfg.to_dict()
    for key, value in recipe.items():
        if values.get(key) is None:
            values[key] = value
    cfg = TrainConfig.from_dict(values)
    if cfg.amp not in ("auto", "bf16", "fp16", "off"):
        raise UserError(f"--amp must be auto, bf16, fp16 or off, not {cfg.amp!r}")
    if cfg.loss not in ("ce", "ce+kl"):
        raise UserError(f"--loss must be 'ce' or 'ce+kl', not {cfg.loss!r}")
    if cfg.prompts not in ("all", "one"):
        raise UserError(f"--prompts must be 'all' or 'one', not {cfg.prompts!r}")
    for name in ("epochs", "batch_size", "total_batch", "frames", "input_size"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.lr <= 0:
        raise UserError("--lr must be positive")
    return cfg


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a run; returns the summary (also written to ``OUT/summary.json``)."""
    ctx = distributed.setup(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        distributed.cleanup()


def _train(cfg: TrainConfig, ctx: distributed.Context) -> dict:
    started = time.perf_counter()
    # ---- configuration: a resumed run is the saved run; only options that change nothing computed may differ
    resume_state = None
    if cfg.resume:
        resume_dir = checkpoint.resolve_directory(cfg.resume)
        resume_state = checkpoint.load_train_state(resume_dir)
        saved = TrainConfig.from_dict(resume_state["config"])
        for key in RESUME_OVERRIDABLE:
            if getattr(cfg, key) != getattr(TrainConfig(), key):
                setattr(saved, key, getattr(cfg, key))
        for key in TEST_HOOKS:
            setattr(saved, key, getattr(cfg, key))
        saved.resume, saved.out = str(resume_dir), str(resume_dir.parent)
        cfg = saved
    else:
        cfg = resolve_config(cfg)
    out = Path(cfg.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not cfg.resume and (out / "last").exists():
            raise UserError(f"{out}: holds a run already (last/); resume it with --resume {out / 'last'}, "
                            "or choose another --out")
        write_json(out / "config.json", cfg.to_dict())  # every setting of the run, presets filled in
    distributed.barrier()
    device = ctx.device

    # ---- randomness: the data's is a function of (seed, epoch, video index), whatever the number of
    # processes or workers; the model's (init, prompt choice) of the seed
    seed_everything(cfg.seed)

    # ---- model
    model = build_model(cfg, device)
    raw_model = model
    if cfg.grad_checkpointing:
        raw_model.set_grad_checkpointing(True)
    seed_everything(cfg.seed + ctx.rank)  # after init (identical on every process), per-process streams

    # ---- data (frames and input size as the model takes them)
    data = prepare_data(cfg, raw_model.config, ctx, out)
    class_names = data.class_names
    class_tokens = class_text_tokens(class_names, cfg.prompts).to(device)

    # ---- optimiser: AdamW over (CLIP | new) x (decay | no decay) groups; the lr is set every step below
    # (one fused kernel per step on GPUs, multi-tensor updates on CPUs: ~2x faster than a loop over tensors)
    optimizer = torch.optim.AdamW(make_param_groups(raw_model, cfg), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    amp_dtype = resolve_amp(cfg.amp, device)
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- schedule, in optimiser steps; each step accumulates accum_steps micro-batches per process
    accum_steps = accumulation_steps(cfg.total_batch, cfg.batch_size, ctx.world_size)
    steps_per_epoch = data.micro_batches_per_epoch // accum_steps
    if steps_per_epoch < 1:
        raise UserError(f"{data.train_set.list_file}: {len(data.train_set)} training videos make no step of "
                        f"{cfg.total_batch} clips; lower --total-batch / --batch-size")
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))

    # ---- where to start: at the beginning, or exactly where a saved run stopped
    start_epoch, start_step, iteration = 0, 0, 0
    history: list[dict] = []
    best = None  # the record of the best epoch so far
    sums = new_epoch_sums()
    if resume_state is not None:
        checkpoint.load_weights(raw_model, cfg.resume)
        optimizer.load_state_dict(resume_state["optimizer"])
        if resume_state["scaler"]:
            scaler.load_state_dict(resume_state["scaler"])
        position = resume_state["position"]
        start_epoch, start_step, iteration = position["epoch"], position["step"], position["iteration"]
        sums, history, best = position["sums"], resume_state["history"], resume_state["best"]
        set_rng_state(resume_state["rng"], ctx)
        if ctx.is_main:
            err_console.print(f"resuming {out} at epoch {start_epoch + 1}, step {start_step}/{steps_per_epoch}",
                              highlight=False)
    describe_run(cfg, ctx, data, raw_model, accum_steps, steps_per_epoch)

    stop = StopFlag()  # Ctrl-C: finish the step, save a resumable checkpoint, stop
    stop.install()
    table = EpochTable()
    log_lines = not err_console.is_terminal
    try:
        with progress() as bar:
            if cfg.cache_decoded:
                data.fill_caches(bar)
            for epoch in range(start_epoch, cfg.epochs):
                task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, completed=start_step,
                                    info="")
                data.train_loader.set_epoch(epoch, start_batch=start_step * accum_steps)
                with torch.random.fork_rng(devices=[]):  # starting the loader draws a seed: keep our stream
                    batches = iter(data.train_loader)
                model.train()
                clock = time.perf_counter()

                for step in range(start_step, steps_per_epoch):
                    # this iteration's lr: linear warm-up, then cosine down to min_lr_ratio x lr
                    lr_factor = lr_schedule(iteration, warmup_steps, total_steps, cfg.min_lr_ratio)
                    for group in optimizer.param_groups:
                        group["lr"] = cfg.lr * group["lr_mult"] * lr_factor

                    step_loss = torch.zeros((), device=device)
                    for micro_step in range(accum_steps):
                        try:
                            clips, labels, _ = next(batches)
                        except Exception:
                            if not stop.requested:
                                raise
                            # Ctrl-C from a terminal also reached the loader's workers: stop before this step
                            optimizer.zero_grad(set_to_none=True)
                            state = train_state(cfg, optimizer, scaler, ctx, (epoch, step, iteration), sums,
                                                history, best)
                            save_run_checkpoint(out / "last", raw_model, cfg, class_names, epoch, history, state,
                                                ctx)
                            raise TrainingInterrupted(out / "last") from None
                        clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                        clips, targets = mix_batch(clips, labels, len(class_names), cfg, iteration, ctx.rank)
                        # DDP all-reduces gradients on the last micro-batch of the step only
                        last_micro_step = micro_step == accum_steps - 1
                        with model.no_sync() if ctx.distributed and not last_micro_step else nullcontext():
                            with autocast:
                                if cfg.loss == "ce":
                                    logits, details = model(clips, class_tokens), None
                                else:
                                    logits, details = model(clips, class_tokens, return_details=True)
                            loss = compute_loss(logits, details, targets, labels, cfg)
                            if cfg.inject_nan_at_step == iteration + 1:  # test hook
                                loss = loss * float("nan")
                            scaler.scale(loss / accum_steps).backward()
                        step_loss += loss.detach() / accum_steps

                    # the global batch's loss (mean over processes) and the stop vote, in one all-reduce
                    shared = torch.stack([step_loss.float(), torch.tensor(float(stop.requested), device=device)])
                    shared = distributed.all_reduce_sum(shared.to(distributed.comm_device())).tolist()
                    loss_value = shared[0] / ctx.world_size
                    if not math.isfinite(loss_value):
                        raise TrainingDiverged(non_finite_message(loss_value, epoch, step, out))

                    if cfg.clip_grad:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    with torch.no_grad():  # CLIP's rule: the logit scale (a log) never multiplies by more than 100
                        raw_model.logit_scale.clamp_(0, math.log(100))
                    iteration += 1

                    now = time.perf_counter()
                    sums["loss"] += loss_value
                    sums["steps"] += 1
                    sums["clips"] += cfg.total_batch
                    sums["seconds"] += now - clock
                    clock = now
                    info = (f"loss {loss_value:.4f}  lr {cfg.lr * lr_factor:.2e}  "
                            f"{sums['clips'] / max(sums['seconds'], 1e-9):.1f} clips/s")
                    bar.update(task, advance=1, info=info)
                    if log_lines and ctx.is_main and (step + 1) % max(1, steps_per_epoch // 5) == 0:
                        # no live bar in a log file: a plain line five times per epoch instead
                        err_console.print(f"epoch {epoch + 1}/{cfg.epochs} step {step + 1}/{steps_per_epoch}  {info}",
                                          highlight=False)

                    if shared[1] > 0 or cfg.stop_at_step == iteration:  # interrupted: all processes stop here
                        state = train_state(cfg, optimizer, scaler, ctx, (epoch, step + 1, iteration), sums,
                                            history, best)
                        save_run_checkpoint(out / "last", raw_model, cfg, class_names, epoch, history, state, ctx)
                        raise TrainingInterrupted(out / "last")

                bar.remove_task(task)
                del batches

                # ---- end of epoch: evaluate, log, checkpoint
                record = {"epoch": epoch + 1, "iteration": iteration,
                          "train_loss": sums["loss"] / max(sums["steps"], 1),
                          "lr": cfg.lr * lr_schedule(iteration - 1, warmup_steps, total_steps, cfg.min_lr_ratio),
                          "clips_per_s": sums["clips"] / max(sums["seconds"], 1e-9),
                          "train_seconds": sums["seconds"]}
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                    from mbgf_cli.evaluation import evaluate_loader

                    result = evaluate_loader(model, data.val_loader, class_tokens, len(data.val_set),
                                             data.val_labels, device, autocast=autocast, bar=bar,
                                             description=f"val {epoch + 1}/{cfg.epochs}")
                    record.update(result.numbers())
                    if best is None or result.top1 > best["top1"]:
                        best = dict(record)
                        save_run_checkpoint(out / "best", raw_model, cfg, class_names, epoch + 1, history + [record],
                                            None, ctx)
                record["best_top1"] = best["top1"] if best else None
                record["skipped_train"] = len(data.train_set.failures())
                history.append(record)
                sums, start_step = new_epoch_sums(), 0
                state = train_state(cfg, optimizer, scaler, ctx, (epoch + 1, 0, iteration), sums, history, best)
                save_run_checkpoint(out / "last", raw_model, cfg, class_names, epoch + 1, history, state, ctx)
                if ctx.is_main:
                    with open(out / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                    table.add(record, cfg.epochs)
                    for dataset, name in ((data.train_set, "train"), (data.val_set, "val")):
                        line = dataset.skipped_summary(out / f"skipped_{name}.txt")
                        if line:
                            err_console.print(f"[yellow]{name}:[/yellow] {line}", highlight=False)
                if stop.requested:
                    raise TrainingInterrupted(out / "last")
    finally:
        stop.uninstall()

    summary = make_summary(history, best, out)
    summary["wall_seconds"] = time.perf_counter() - started  # this invocation, data preparation included
    if ctx.is_main:
        write_json(out / "summary.json", summary)
        if cfg.plot:
            from mbgf_cli import plots

            plots.training_curve(history, out / "training_curve.png")
    return summary


# ------------------------------------------------------------------------------------------------
# Pieces of the run (in the order the loop uses them)
# ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, device: torch.device):
    """The video model: from an mbgf checkpoint (``--init``), or built with CLIP weights (``--pretrained``:
    a CLIP name or file; none for ``tiny``, which trains from random init)."""
    import fusion

    if cfg.init:
        from mbgf_cli import interop  # an mbgf checkpoint, or a published one converted on the fly

        model, meta = interop.load_any_checkpoint(cfg.init)
        saved = meta["config"]
        if cfg.frames is not None and saved["frames"] != cfg.frames:
            raise UserError(f"{cfg.init}: the checkpoint's model takes {saved['frames']} frames, not --frames "
                            f"{cfg.frames}")
    else:
        pretrained = cfg.pretrained
        if pretrained is None:
            pretrained = fusion.BACKBONES[cfg.model].clip_name is not None  # the backbone's released weights
        try:
            model = fusion.build_video_model(model=cfg.model, variant=cfg.variant, mbgf=cfg.mbgf, frames=cfg.frames,
                                             input_size=cfg.input_size, pretrained=pretrained or None)
        except ValueError as e:
            raise UserError(str(e)) from None
    if cfg.freeze_text:
        model.freeze_text()  # X-CLIP's default; the class text features are then computed once
    return model.to(device)


@dataclass
class RunData:
    class_names: list[str]
    train_set: object
    val_set: object
    train_loader: object
    val_loader: object
    val_labels: list[int]
    micro_batches_per_epoch: int
    workers: int

    def fill_caches(self, bar) -> None:
        for dataset, name in ((self.train_set, "train"), (self.val_set, "val")):
            dataset.fill(workers=max(self.workers, 1) if self.workers else os.cpu_count() or 1, bar=bar,
                         description=f"decoding {name} videos")


def prepare_data(cfg: TrainConfig, model_config, ctx: distributed.Context, out: Path) -> RunData:
    """Labels, train/val datasets and loaders. ``--dataset synthetic`` alone generates its data into the cache."""
    from mbgf_cli.data import VideoDataset, build_loader, read_labels
    from mbgf_cli.frame_cache import CachedVideoDataset

    preset = presets.get_preset(cfg.dataset) if cfg.dataset else None
    if cfg.root:
        root = Path(cfg.root)
    elif cfg.dataset == "synthetic":
        root = presets.ensure_synthetic(quiet=not ctx.is_main)
    else:
        raise UserError("give the dataset folder with --root DIR (videos/ or videos.tar, train.txt, val.txt), "
                        "or --dataset synthetic")
    label_file = presets.resolve_label_file(root, cfg.labels, preset)
    class_names = read_labels(label_file)
    if preset is not None and preset.name != "synthetic" and len(class_names) != preset.num_classes:
        raise UserError(f"{label_file}: {len(class_names)} classes, but {preset.name} has {preset.num_classes}")

    dataset_class = CachedVideoDataset if cfg.cache_decoded else VideoDataset
    common = dict(frames=model_config.frames, input_size=model_config.input_size, decoder=cfg.decoder,
                  strict=cfg.strict, seed=cfg.seed, mean=model_config.input_mean, std=model_config.input_std)
    train_set = dataset_class(root, cfg.train_list or "train.txt", len(class_names), train=True, flip=cfg.flip,
                              crop=cfg.crop, jitter=cfg.jitter, gray=cfg.gray,
                              failures_dir=out / "skipped" / "train", **common)
    val_set = dataset_class(root, cfg.val_list or "val.txt", len(class_names), train=False, views=(1, 1),
                            failures_dir=out / "skipped" / "val", **common)
    workers = cfg.workers if cfg.workers is not None else 0
    train_loader = build_loader(train_set, batch_size=cfg.batch_size, workers=workers, shuffle=True, drop_last=True,
                                distributed=ctx.distributed, seed=cfg.seed)
    val_loader = build_loader(val_set, batch_size=cfg.batch_size, workers=workers, shuffle=False, drop_last=False,
                              distributed=ctx.distributed, seed=cfg.seed)
    micro_batches = train_loader.sampler.num_samples // cfg.batch_size
    return RunData(class_names, train_set, val_set, train_loader, val_loader, [label for _, label in val_set.samples],
                   micro_batches, workers)


def make_param_groups(model, cfg: TrainConfig) -> list[dict]:
    """CLIP weights at lr, new modules at lr x new_lr_mult; no weight decay on 1-D tensors (norms,
    biases, the logit scale) and embeddings (token, positions, class token)."""
    groups = {}
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_clip = model.is_clip_parameter(name) if hasattr(model, "is_clip_parameter") else True
        no_decay = (parameter.ndim < 2 or name.endswith(".bias") or "embedding" in name
                    or "pos_embed" in name or name in skip)
        key = ("clip" if is_clip else "new", "no_decay" if no_decay else "decay")
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr_mult": 1.0 if is_clip else cfg.new_lr_mult,
                           "weight_decay": 0.0 if no_decay else cfg.weight_decay, "group": "/".join(key)}
        groups[key]["params"].append(parameter)
        groups[key]["names"].append(name)
    if not groups:
        raise UserError("nothing to train: every parameter is frozen")
    ordered = [groups[k] for k in sorted(groups)]
    for group in ordered:
        group.pop("names")
    return ordered


def accumulation_steps(total_batch: int, batch_size: int, world_size: int) -> int:
    per_step = batch_size * world_size
    if total_batch % per_step:
        raise UserError(f"--total-batch {total_batch} is not a multiple of --batch-size {batch_size} x "
                        f"{world_size} process(es) = {per_step}")
    return total_batch // per_step


def lr_schedule(iteration: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the base lr: linear warm-up from 0, then cosine from 1 down to ``min_ratio``."""
    if iteration < warmup_steps:
        return (iteration + 1) / (warmup_steps + 1)
    progress_ = min(1.0, (iteration - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress_))


def mix_batch(clips: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: TrainConfig,
              iteration: int, rank: int):
    """Mixup / cutmix (fusion.mixup: one of them per batch) or plain class indices. The draws come from
    a generator seeded with (seed, iteration, rank), so a resumed run draws the same ones."""
    if not (cfg.mixup or cfg.cutmix):
        return clips, labels
    from fusion.mixup import mixup_cutmix

    rng = random.Random(f"mix:{cfg.seed}:{iteration}:{rank}")
    return mixup_cutmix(clips, labels, num_classes, mixup_alpha=cfg.mixup or 0.0, cutmix_alpha=cfg.cutmix or 0.0,
                        switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.label_smoothing or 0.0, rng=rng)


def compute_loss(logits: torch.Tensor, details: dict | None, targets: torch.Tensor, labels: torch.Tensor,
                 cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy over the class logits (label smoothing, or the soft targets of mixup/cutmix);
    ``--loss kl`` adds ActionCLIP's symmetric KL loss over the in-batch video-text logits."""
    from fusion import losses

    loss = losses.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing or 0.0)
    if cfg.loss == "ce+kl":
        loss = loss + losses.actionclip_loss(details, labels)
    return loss


def non_finite_message(loss: float, epoch: int, step: int, out: Path) -> str:
    last = out / "last"
    kept = (f"the last good checkpoint is {last}" if (last / checkpoint.MODEL_FILE).is_file()
            else "no checkpoint had been written yet")
    return (f"the training loss became {loss} at epoch {epoch + 1}, step {step + 1}; stopped ({kept}). "
            "Lower --lr, set --clip-grad, or use --amp bf16/off")


class StopFlag:
    """SIGINT sets ``requested``; the loop stops at the next step boundary after saving. A second
    SIGINT raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        err_console.print("[yellow]Ctrl-C: stopping after this step and saving a resumable checkpoint "
                          "(press again to stop at once)[/yellow]")

    def install(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(per_rank: list[dict], ctx: distributed.Context) -> None:
    if len(per_rank) != ctx.world_size:
        # Another number of processes than the saved run: the data order is unchanged (it depends on
        # the seed and epoch only); model randomness restarts from the seed.
        if ctx.is_main:
            err_console.print(f"[yellow]note: the run was saved with {len(per_rank)} process(es), resumed with "
                              f"{ctx.world_size}; random state re-seeded[/yellow]")
        return
    state = per_rank[ctx.rank]
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def new_epoch_sums() -> dict:
    return {"loss": 0.0, "steps": 0, "clips": 0, "seconds": 0.0}


def train_state(cfg, optimizer, scaler, ctx, position: tuple[int, int, int], sums: dict, history: list,
                best: dict | None) -> dict:
    """All that a resume needs besides the weights. ``position``: (epoch, steps done in it, iteration).
    Every process's RNG state is kept (they differ), gathered to the one that writes."""
    rng = get_rng_state()
    if ctx.distributed:
        import torch.distributed as dist

        gathered = [None] * ctx.world_size
        dist.all_gather_object(gathered, rng)  # between our own processes only; the file holds no pickle
        rng = gathered
    else:
        rng = [rng]
    epoch, step, iteration = position
    return {
        "config": cfg.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng,
        "position": {"epoch": epoch, "step": step, "iteration": iteration, "sums": dict(sums)},
        "history": history,
        "best": best,
    }


def save_run_checkpoint(directory: Path, model, cfg: TrainConfig, class_names, epochs_done: int, history: list,
                        state: dict | None, ctx: distributed.Context) -> None:
    """Rank 0 writes (atomically); the others wait so that nobody reads a checkpoint being written."""
    if ctx.is_main:
        meta = {
            "config": model.config.to_dict(),
            "class_names": list(class_names),
            "epoch": epochs_done,
            "metrics": history[-1] if history else {},
            "train": {"dataset": cfg.dataset, "seed": cfg.seed, "prompts": cfg.prompts},
        }
        if state is not None and state["position"]["step"]:
            meta["position"] = {"epoch": state["position"]["epoch"] + 1, "step": state["position"]["step"]}
        checkpoint.save_checkpoint(directory, model, meta, state)
    distributed.barrier()


def make_summary(history: list[dict], best: dict | None, out: Path) -> dict:
    def entry(record):
        if record is None:
            return None
        return {"epoch": record["epoch"], "top1": record.get("top1"), "top5": record.get("top5"),
                "mean_class": record.get("mean_class"), "videos": record.get("videos"),
                "train_loss": record.get("train_loss")}

    evaluated = [r for r in history if "top1" in r]
    return {"best": entry(best), "final": entry(evaluated[-1] if evaluated else None),
            "epochs": len(history), "checkpoints": {"last": str(out / "last"), "best": str(out / "best")}}


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class EpochTable:
    """One row per epoch as it ends (the header once), columns of fixed width so the rows line up."""

    COLUMNS = (("epoch", 7), ("train loss", 10), ("val top-1", 9), ("val top-5", 9), ("mean class", 10),
               ("best", 6), ("lr", 7), ("clips/s", 7))

    def __init__(self):
        self.rows = 0

    def add(self, record: dict, epochs: int) -> None:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, show_header=self.rows == 0, show_edge=False, pad_edge=False,
                      padding=(0, 0, 0, 1))
        for name, width in self.COLUMNS:
            table.add_column(name, justify="right", min_width=width, max_width=width, no_wrap=True)

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}"

        table.add_row(f"{record['epoch']}/{epochs}", f"{record['train_loss']:.4f}", pct(record.get("top1")),
                      pct(record.get("top5")), pct(record.get("mean_class")), pct(record.get("best_top1")),
                      f"{record['lr']:.1e}", f"{record['clips_per_s']:.1f}")
        console.print(table)
        self.rows += 1


def default_out_dir(cfg: TrainConfig) -> str:
    """``runs/<dataset>-<model>-<variant>[-mbgf]``, numbered (-2, -3, ...) when that one holds a run."""
    recipe = presets.get_preset(cfg.dataset).recipe if cfg.dataset else presets.GENERIC_RECIPE
    model, variant = cfg.model or recipe["model"], cfg.variant or recipe["variant"]
    base = f"runs/{cfg.dataset or Path(cfg.root or 'train').name}-{model}-{variant}{'-mbgf' if cfg.mbgf else ''}"
    candidate, number = base, 1
    while Path(candidate).exists() and any(Path(candidate).iterdir()):
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title="summary", title_justify="left")
    for column in ("", "epoch", "top-1 (%)", "top-5 (%)", "mean class (%)", "videos"):
        table.add_column(column, justify="right")
    for name in ("best", "final"):
        entry = summary.get(name)
        if entry:
            table.add_row(name, str(entry["epoch"]), f"{100 * entry['top1']:.2f}", f"{100 * entry['top5']:.2f}",
                          f"{100 * entry['mean_class']:.2f}", str(entry["videos"]))
    console.print(table)
    err_console.print(f"checkpoints: {summary['checkpoints']['best']}, {summary['checkpoints']['last']}; "
                      f"metrics.jsonl, summary.json in {Path(summary['checkpoints']['last']).parent}", highlight=False)


def describe_run(cfg, ctx, data, model, accum_steps, steps_per_epoch) -> None:
    if not ctx.is_main:
        return
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    err_console.print(
        f"{model.config.name}, {model.config.frames}x{model.config.input_size}: {params / 1e6:.2f}M parameters "
        f"({trained / 1e6:.2f}M trained); {len(data.train_set)} train / {len(data.val_set)} val videos, "
        f"{len(data.class_names)} classes; {ctx.world_size} process(es) on {ctx.device.type}; batch "
        f"{cfg.batch_size} x {ctx.world_size} x {accum_steps} accumulated = {cfg.total_batch}; "
        f"{steps_per_epoch} steps/epoch, {cfg.epochs} epochs -> {cfg.out}", highlight=False)
