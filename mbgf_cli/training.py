"""The training engine behind ``mbgf train``, readable top to bottom:

    train(cfg):  settle (the options, resolved once)  ->  start_run  ->
                 for each epoch: train_epoch -> end_epoch  ->  finish_run

``settle`` resolves the options once into a read-only config (the dataset preset's recipe filled in,
every value checked) and refuses an output folder that is not a run's, before any work. ``start_run``
checks the data (before any weights are read or downloaded), takes the run folder, builds the model,
loaders, optimiser (param groups) and schedule into the :class:`~mbgf_cli.run_state.Run` (the one
owner of the run's state), fresh or restored from a checkpoint. ``train_epoch`` runs optimiser steps
(forward, loss, backward accumulated over micro-batches, clip, step) to the end of the epoch or until
a stop is agreed; ``end_epoch`` evaluates on val, saves best/ and last/ and logs the epoch.

The loop calls a :class:`Callbacks` object at fixed points (each micro-batch's loss, each step's end);
the hidden test options (``--inject-nan-at-step``, ``--stop-at-step``, ``--kill-at-step``) build a
:class:`FaultInjection` from outside the loop.

Runs alone or under ``torchrun`` (DistributedDataParallel, one machine or several; rank 0 prints and
writes). The run folder is the unit (``mbgf_cli/run_folder.py``): rank 0 locks it for the run, and a
start into a folder holding a run of the same configuration continues it from its newest checkpoint
(``last/`` at epoch ends, ``step/`` every ``--save-every`` steps), so torchrun's ``--max-restarts``
makes a run survive a lost worker. A stop (Ctrl-C, SIGTERM, SIGUSR1) saves a resumable ``last/`` with
its position inside the epoch and raises :class:`TrainingInterrupted`; the resumed run gives the same
numbers, bit for bit, as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fusion.config import BRANCHES
from fusion.prompts import class_text_tokens
from mbgf_cli import checkpoint, distributed, presets, run_folder, tracking
from mbgf_cli.compilation import compile_video_model
from mbgf_cli.console import err_console, progress
from mbgf_cli.data import VideoDataset, build_loader, read_labels, read_video_list
from mbgf_cli.errors import UserError
from mbgf_cli.evaluation import evaluate_loader
from mbgf_cli.fileio import atomic_write_json
from mbgf_cli.frame_cache import CachedVideoDataset
from mbgf_cli.precision import autocast_context, choose_amp
from mbgf_cli.run_folder import Start
from mbgf_cli.run_state import EXIT_INTERRUPTED, Run, seed_everything
from mbgf_cli.train_config import (
    ResolvedConfig,
    TrainConfig,
    explicit_resume,
    flag,
    resolve_config,
    resumed_config,
)
from mbgf_cli.train_display import Display, describe_run, show_epoch, show_step


class TrainingInterrupted(KeyboardInterrupt):
    """A stop (a signal, or a test's stop): a resumable ``last/`` was written before stopping.
    ``exit_code``: 130 after Ctrl-C, 75 after SIGTERM/SIGUSR1 (preempted: run the same command again)."""

    def __init__(self, run_dir: Path, exit_code: int = EXIT_INTERRUPTED, cause: str = "interrupted"):
        super().__init__(f"{cause}; resume with: mbgf train --resume {run_dir} (or the same command again)")
        self.checkpoint_dir = run_dir / "last"
        self.exit_code = exit_code


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------------
# Callbacks: what the loop calls at fixed points
# ------------------------------------------------------------------------------------------------


class Callbacks:
    """The loop's hooks; this base does nothing. ``on_loss``: each micro-batch's loss, before its
    backward (returns the loss to use); ``on_step_end``: after each optimiser step is counted and its
    step checkpoint, if any, saved."""

    def on_loss(self, run: Run, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_step_end(self, run: Run) -> None:
        pass


@dataclass(frozen=True)
class FaultInjection(Callbacks):
    """Faults for tests, at optimiser step N (counted from 1 over the run): ``nan_at`` makes its loss NaN;
    ``stop_at`` asks for a stop while it runs, as a Ctrl-C would (the step completes, all its
    micro-batches, then the run stops); ``kill_at`` SIGKILLs the last process after it, as a lost worker
    dies, on torchrun's first attempt only (so that the restarted group runs through)."""

    nan_at: int | None = None
    stop_at: int | None = None
    kill_at: int | None = None

    def on_loss(self, run: Run, loss: torch.Tensor) -> torch.Tensor:
        step = run.progress.iteration + 1
        if step == self.stop_at:
            run.stop.request()
        return loss * float("nan") if step == self.nan_at else loss

    def on_step_end(self, run: Run) -> None:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if run.progress.iteration == self.kill_at and first_attempt and run.ctx.rank == run.ctx.world_size - 1:
            os.kill(os.getpid(), signal.SIGKILL)


def faults_from_options(cfg: TrainConfig) -> Callbacks:
    """The hidden test options as callbacks (none given: callbacks that do nothing)."""
    if cfg.inject_nan_at_step is None and cfg.stop_at_step is None and cfg.kill_at_step is None:
        return Callbacks()
    return FaultInjection(cfg.inject_nan_at_step, cfg.stop_at_step, cfg.kill_at_step)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, callbacks: Callbacks | None = None) -> dict:
    """Train (or resume) a run; returns the summary (also written to ``OUT/summary.json``)."""
    cfg, start = settle(cfg)
    callbacks = callbacks if callbacks is not None else faults_from_options(cfg)
    ctx = distributed.setup(cfg.device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock and the tracker, released on any exit
            run = start_run(cfg, start, ctx, held, callbacks)
            with run.stop, progress() as bar, run_folder.disk_full_advice(run.out):
                if cfg.cache_decoded:
                    run.data.fill_caches(bar)
                while run.progress.epoch < cfg.epochs:
                    train_epoch(run, bar)
                    if not run.stopping:
                        end_epoch(run, bar)
                    if run.stopping or run.stop.requested:
                        interrupt(run)
                return finish_run(run)
    finally:
        distributed.cleanup()


def settle(cfg: TrainConfig) -> tuple[ResolvedConfig, Start | None]:
    """The options, resolved once (``--resume PATH``: the saved run's, with what a resume may change), and
    the output folder checked: a folder that is not a run's is refused before any work."""
    if explicit_resume(cfg):
        _, directory = run_folder.resolve_resume(cfg.resume)
        saved = checkpoint.load_train_state(directory)
        return resumed_config(cfg, saved["config"], directory), Start(directory, saved)
    cfg = resolve_config(cfg)
    if cfg.out is None:  # chosen before the processes meet: every one picks the same folder
        cfg = replace(cfg, out=run_folder.default_out_dir(cfg))
    run_folder.check_run_folder(cfg.out, cfg.overwrite)
    return cfg, None


def start_run(cfg: ResolvedConfig, start: Start | None, ctx: distributed.Context, held: contextlib.ExitStack,
              callbacks: Callbacks) -> Run:
    """Everything before the first step, in the order that makes a run repeatable."""
    backends = tracking.parse_backends(cfg.report_to)
    tracking.check_available(backends)
    accumulation_steps(cfg.total_batch, cfg.batch_size, ctx.world_size)  # refused before the folder is taken
    files = find_data(cfg, ctx)  # data problems surface here, before any weights are read
    start = run_folder.open_run_folder(cfg, ctx, start, held)  # --resume auto: the run the folder holds, if any
    out, device = Path(cfg.out), ctx.device

    # Randomness: the data's is a function of (seed, epoch, video index), whatever the number of
    # processes or workers; the model's (init, prompt choice) of the seed.
    seed_everything(cfg.seed)
    model = build_model(cfg, device)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    seed_everything(cfg.seed + ctx.rank)  # after init (identical on every process), per-process streams

    data = load_data(cfg, files, model.config, ctx, out)  # frames and input size as the model takes them
    class_tokens = class_text_tokens(files.class_names, cfg.prompts).to(device)

    # AdamW over (CLIP | new) x (decay | no decay) groups; the lr is set every step. One fused kernel per
    # step on GPUs, multi-tensor updates on CPUs.
    optimizer = torch.optim.AdamW(make_param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    amp_dtype, precision = choose_amp(cfg.amp, device, model.config.model, training=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if cfg.compile:
        compile_video_model(model)  # in place: the checkpoints hold the same keys as without
    step_model = model
    if ctx.distributed:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    run = Run(cfg, ctx, out, model, step_model, data, class_tokens, optimizer, scaler,
              autocast_context(amp_dtype, device), make_schedule(cfg, data, ctx), tracker=None,
              callbacks=callbacks, precision=precision, display=Display())

    # Where to start: at the beginning, or exactly where a saved run stopped.
    if start is not None:
        run.restore(start.directory, start.saved)
        if ctx.is_main:
            err_console.print(f"resuming {out} at epoch {run.progress.epoch + 1}, step {run.progress.step}/"
                              f"{run.schedule.steps_per_epoch}", highlight=False)
    run.tracker = tracking.open_tracker(out, backends, cfg.to_dict(), history=run.progress.history,
                                        iteration=run.progress.iteration, is_main=ctx.is_main)
    held.callback(run.tracker.close)
    describe_run(run)
    return run


def train_epoch(run: Run, bar) -> None:
    """Optimiser steps from the run's position to the end of the epoch, or until every process agrees
    to stop (``run.stopping``)."""
    cfg, progress_, schedule = run.cfg, run.progress, run.schedule
    task = bar.add_task(f"epoch {progress_.epoch + 1}/{cfg.epochs}", total=schedule.steps_per_epoch,
                        completed=progress_.step, info="")
    run.data.train_loader.set_epoch(progress_.epoch, start_batch=progress_.step * schedule.accum_steps)
    batches = iter(run.data.train_loader)
    run.step_model.train()
    clock = time.perf_counter()

    while progress_.step < schedule.steps_per_epoch:
        lr = schedule.lr(progress_.iteration)  # linear warm-up, then cosine down to min_lr_ratio x lr
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]

        step_loss = accumulate_gradients(run, batches)
        if step_loss is None:  # Ctrl-C from a terminal also reached the loader's workers: stop before this step
            run.stopping = True
            break
        loss_value, stop_votes = all_reduce_step(run, step_loss)
        if not math.isfinite(loss_value):
            raise TrainingDiverged(non_finite_message(loss_value, progress_.epoch, progress_.step, run.out))
        optimizer_step(run)

        now = time.perf_counter()
        progress_.step_done(loss_value, cfg.total_batch, now - clock)
        clock = now
        show_step(run, bar, task, loss_value, lr)
        run.tracker.log_step(progress_.iteration, loss=loss_value, lr=lr, clips_per_s=progress_.clips_per_s)
        if cfg.save_every and progress_.iteration % cfg.save_every == 0 and progress_.step < schedule.steps_per_epoch:
            run.save("step")  # inside the epoch (its end saves last/)
        run.callbacks.on_step_end(run)
        if stop_votes > 0:  # a stop was asked for on some process: all stop here
            run.stopping = True
            break
    bar.remove_task(task)


def accumulate_gradients(run: Run, batches) -> torch.Tensor | None:
    """Forward and backward over one step's micro-batches, gradients summed; returns the step's loss (on
    this process), or None when the loader stopped because of a Ctrl-C."""
    ctx, accum_steps = run.ctx, run.schedule.accum_steps
    step_loss = torch.zeros((), device=ctx.device)
    for micro_step in range(accum_steps):
        try:
            clips, labels, _ = next_batch(batches)
        except Exception:
            if not run.stop.requested:
                raise
            run.optimizer.zero_grad(set_to_none=True)
            return None
        clips, labels = clips.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
        clips, targets = mix_batch(clips, labels, len(run.class_names), run.cfg, run.progress.iteration, ctx.rank)
        # DDP all-reduces gradients on the last micro-batch of the step only
        last_micro_step = micro_step == accum_steps - 1
        with run.step_model.no_sync() if ctx.distributed and not last_micro_step else nullcontext():
            loss = run.callbacks.on_loss(run, forward_loss(run, clips, targets, labels))
            run.scaler.scale(loss / accum_steps).backward()
        step_loss += loss.detach() / accum_steps
    return step_loss


def next_batch(batches):
    """The next micro-batch, drawn without touching the model's random stream: the loader starts
    lazily (its first batch draws a seed from torch's global generator), and a resumed epoch starts at
    another step than an uninterrupted one, so a draw here would shift every model draw after it."""
    with torch.random.fork_rng(devices=[]):
        return next(batches)


def forward_loss(run: Run, clips: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with run.autocast:
        if run.cfg.loss == "ce":
            logits, details = run.step_model(clips, run.class_tokens), None
        else:
            logits, details = run.step_model(clips, run.class_tokens, return_details=True)
    return compute_loss(logits, details, targets, labels, run.cfg)


def all_reduce_step(run: Run, step_loss: torch.Tensor) -> tuple[float, float]:
    """The global batch's loss (the mean over processes) and the number of processes asked to stop, in
    one all-reduce."""
    stop = torch.tensor(float(run.stop.requested), device=run.ctx.device)
    shared = torch.stack([step_loss.float(), stop]).to(distributed.comm_device())
    loss_sum, stop_votes = distributed.all_reduce_sum(shared).tolist()
    return loss_sum / run.ctx.world_size, stop_votes


def optimizer_step(run: Run) -> None:
    model = run.model
    if run.cfg.clip_grad:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.cfg.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # CLIP's rule: the logit scale (a log) never multiplies by more than 100
        model.logit_scale.clamp_(0, math.log(100))


def end_epoch(run: Run, bar) -> None:
    """Evaluate on val (every ``--eval-every`` epochs and after the last), log the epoch, checkpoint
    best/ (when it improved) and last/. The epoch's metrics.jsonl row is on disk before last/ moves on,
    so a kill at any moment leaves a row for every checkpointed epoch (a resume rewrites the file from
    the checkpoint's history, dropping a row that no checkpoint holds)."""
    cfg, progress_, data = run.cfg, run.progress, run.data
    epoch = progress_.epoch + 1
    record = progress_.epoch_record(lr=run.schedule.lr(progress_.iteration - 1))
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        has_gates = getattr(run.model, "mbgf", None) is not None
        result = evaluate_loader(run.step_model, data.val_loader, run.class_tokens, len(data.val_set),
                                 data.val_labels, run.ctx.device, autocast=run.autocast, explain=has_gates, bar=bar,
                                 description=f"val {epoch}/{cfg.epochs}")
        record.update(result.numbers())
        if result.gates is not None and result.videos:  # MBGF's mean gate weight per branch
            record["gates"] = {branch: float(g) for branch, g in
                               zip(BRANCHES, result.gates[result.evaluated].double().mean(dim=0), strict=True)}
        run.last_result = result
    improved = progress_.end_epoch(record, skipped_train=len(data.train_set.failures()))
    run.tracker.log_epoch(record)
    if improved:
        run.save("best")
    run.save("last")
    show_epoch(run, record)


def interrupt(run: Run):
    """The one way a run stops early: a resumable last/ at the position reached, then TrainingInterrupted."""
    if run.progress.saved_at != run.progress.position:
        run.save("last")
    received = run.stop.signal
    cause = "interrupted" if received in (None, signal.SIGINT) else f"stopped by {received.name}"
    raise TrainingInterrupted(run.out, run.stop.exit_code, cause)


def finish_run(run: Run) -> dict:
    if run.last_result is not None:
        run.tracker.log_confusion(run.last_result.confusion(), run.class_names, run.progress.iteration)
    summary = run.summary()  # wall_seconds: this invocation, data preparation included
    if run.ctx.is_main:
        atomic_write_json(run.out / "summary.json", summary)
        if run.cfg.plot:
            from mbgf_cli import plots  # matplotlib: slow to import, only when a curve is asked for

            plots.training_curve(run.progress.history, run.out / "training_curve.png")
    return summary


# ------------------------------------------------------------------------------------------------
# Pieces of the run (in the order start_run uses them)
# ------------------------------------------------------------------------------------------------


@dataclass
class DataFiles:
    root: Path
    train_list: Path
    val_list: Path
    label_file: Path
    class_names: list[str]


def find_data(cfg: TrainConfig, ctx: distributed.Context) -> DataFiles:
    """The dataset's folder, label file and lists, read and checked: every data problem is reported
    before a model is built or weights downloaded. ``--dataset synthetic`` alone generates its data
    into the cache."""
    preset = presets.get_preset(cfg.dataset) if cfg.dataset else None
    root = presets.dataset_root(cfg.root, cfg.dataset, quiet=not ctx.is_main)
    label_file = presets.resolve_label_file(root, cfg.labels, preset)
    class_names = read_labels(label_file)
    if preset is not None and preset.name != "synthetic" and len(class_names) != preset.num_classes:
        raise UserError(f"{label_file}: {len(class_names)} classes, but {preset.name} has {preset.num_classes}")
    lists = [presets.resolve_list(root, getattr(cfg, name), default, flag(name))
             for name, default in (("train_list", "train.txt"), ("val_list", "val.txt"))]
    for path in lists:
        read_video_list(path, len(class_names))  # labels in range, lines well formed
    return DataFiles(root, *lists, label_file, class_names)


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
        pretrained, backbone, clip_model = cfg.pretrained, cfg.model, None
        if backbone == fusion.CUSTOM:  # the file's CLIP, of any size: its tensors' shapes give the architecture
            import clip.loading

            try:
                clip_model = clip.loading.load(cfg.pretrained)
            except ValueError as e:
                raise UserError(f"--pretrained {cfg.pretrained}: {e}") from None
            backbone, pretrained = None, None
        elif pretrained is None:
            pretrained = fusion.BACKBONES[cfg.model].clip_name is not None  # the backbone's released weights
        try:
            model = fusion.build_video_model(model=backbone, variant=cfg.variant, mbgf=cfg.mbgf, frames=cfg.frames,
                                             input_size=cfg.input_size, pretrained=pretrained or None,
                                             clip_model=clip_model)
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


def load_data(cfg: TrainConfig, files: DataFiles, model_config, ctx: distributed.Context, out: Path) -> RunData:
    """The train/val datasets and loaders, at the frames, input size and normalisation of the model."""
    dataset_class = CachedVideoDataset if cfg.cache_decoded else VideoDataset
    num_classes = len(files.class_names)
    common = dict(frames=model_config.frames, input_size=model_config.input_size, decoder=cfg.decoder,
                  strict=cfg.strict, seed=cfg.seed, mean=model_config.input_mean, std=model_config.input_std)
    train_set = dataset_class(files.root, files.train_list, num_classes, train=True, flip=cfg.flip, crop=cfg.crop,
                              jitter=cfg.jitter, gray=cfg.gray, failures_dir=out / "skipped" / "train", **common)
    val_set = dataset_class(files.root, files.val_list, num_classes, train=False, views=(1, 1),
                            failures_dir=out / "skipped" / "val", **common)
    workers = cfg.workers if cfg.workers is not None else 0
    train_loader = build_loader(train_set, batch_size=cfg.batch_size, workers=workers, shuffle=True, drop_last=True,
                                distributed=ctx.distributed, seed=cfg.seed)
    val_loader = build_loader(val_set, batch_size=cfg.batch_size, workers=workers, shuffle=False, drop_last=False,
                              distributed=ctx.distributed, seed=cfg.seed)
    micro_batches = train_loader.sampler.num_samples // cfg.batch_size
    return RunData(files.class_names, train_set, val_set, train_loader, val_loader,
                   [label for _, label in val_set.samples], micro_batches, workers)


def make_param_groups(model, cfg: TrainConfig) -> list[dict]:
    """CLIP weights at lr, new modules at lr x new_lr_mult; no weight decay on what the model names in
    ``no_weight_decay()`` (norms, biases, the logit scale, embeddings and positions)."""
    groups = {}
    no_decay_names = set(model.no_weight_decay())
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_clip = model.is_clip_parameter(name)
        no_decay = name in no_decay_names
        key = ("clip" if is_clip else "new", "no_decay" if no_decay else "decay")
        if key not in groups:
            groups[key] = {"params": [], "lr_mult": 1.0 if is_clip else cfg.new_lr_mult,
                           "weight_decay": 0.0 if no_decay else cfg.weight_decay, "group": "/".join(key)}
        groups[key]["params"].append(parameter)
    if not groups:
        raise UserError("nothing to train: every parameter is frozen")
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class Schedule:
    """Optimiser steps per epoch (each accumulates ``accum_steps`` micro-batches per process) and the
    base lr of each step (each param group multiplies it by its ``lr_mult``)."""

    accum_steps: int
    steps_per_epoch: int
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float
    peak_lr: float

    def lr(self, iteration: int) -> float:
        return self.peak_lr * lr_schedule(iteration, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def make_schedule(cfg: TrainConfig, data: RunData, ctx: distributed.Context) -> Schedule:
    accum_steps = accumulation_steps(cfg.total_batch, cfg.batch_size, ctx.world_size)
    steps_per_epoch = data.micro_batches_per_epoch // accum_steps
    if steps_per_epoch < 1:
        raise UserError(f"{data.train_set.list_file}: {len(data.train_set)} training videos make no step of "
                        f"{cfg.total_batch} clips; lower --total-batch / --batch-size")
    return Schedule(accum_steps, steps_per_epoch, warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
                    total_steps=cfg.epochs * steps_per_epoch, min_lr_ratio=cfg.min_lr_ratio, peak_lr=cfg.lr)


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
    ``--loss ce+kl`` adds ActionCLIP's symmetric KL loss over the in-batch video-text logits."""
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
