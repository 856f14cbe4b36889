"""The training engine behind ``mbgf train``: a run is a few named steps, readable top to bottom.

    train(cfg):  start_run  ->  for each epoch: train_epoch -> end_epoch  ->  finish_run

``start_run`` checks the data (before any weights are read or downloaded), builds the model, the
loaders, the optimiser (param groups) and the schedule, and the run's :class:`RunState`, fresh or
restored from ``--resume``. ``train_epoch`` runs optimiser steps (forward, loss, backward accumulated
over micro-batches, clip, step) to the end of the epoch or until a stop is agreed; ``end_epoch``
evaluates on val, saves best/ and last/ and logs the epoch (metrics.jsonl, the table).

Runs alone or under ``torchrun`` (DistributedDataParallel, one machine or several; rank 0 prints and
writes). The run folder is the unit (``mbgf_cli/run_folder.py``): rank 0 locks it for the run, and a
start into a folder holding a run of the same configuration continues it from its newest checkpoint
(``last/`` at epoch ends, ``step/`` every ``--save-every`` steps), so torchrun's ``--max-restarts``
makes a run survive a lost worker. A stop (Ctrl-C, SIGTERM, SIGUSR1, ``--stop-at-step``) saves a
resumable ``last/`` with its position inside the epoch and raises :class:`TrainingInterrupted`; the
resumed run gives the same numbers as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fusion.config import BRANCHES
from fusion.prompts import class_text_tokens
from mbgf_cli import checkpoint, distributed, presets, run_folder, tracking
from mbgf_cli.compilation import compile_video_model
from mbgf_cli.console import console, err_console, progress
from mbgf_cli.data import VideoDataset, build_loader, read_labels, read_video_list
from mbgf_cli.errors import UserError
from mbgf_cli.evaluation import evaluate_loader
from mbgf_cli.fileio import atomic_write_json
from mbgf_cli.frame_cache import CachedVideoDataset
from mbgf_cli.precision import autocast_context, choose_amp
from mbgf_cli.run_state import EXIT_INTERRUPTED, RunState, StopFlag, seed_everything
from mbgf_cli.train_config import (
    NOT_COMPARED,
    TrainConfig,
    default_out_dir,
    explicit_resume,
    flag,
    resolve_config,
    resumed_config,
)


class TrainingInterrupted(KeyboardInterrupt):
    """A stop (a signal, or ``stop_at_step``): a resumable ``last/`` was written before stopping.
    ``exit_code``: 130 after Ctrl-C, 75 after SIGTERM/SIGUSR1 (preempted: run the same command again)."""

    def __init__(self, run_dir: Path, exit_code: int = EXIT_INTERRUPTED, cause: str = "interrupted"):
        super().__init__(f"{cause}; resume with: mbgf train --resume {run_dir} (or the same command again)")
        self.checkpoint_dir = run_dir / "last"
        self.exit_code = exit_code


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a run; returns the summary (also written to ``OUT/summary.json``)."""
    if cfg.out is None and not explicit_resume(cfg):
        # chosen before the processes meet (setup waits for all of them): every one picks the same folder
        cfg = replace(cfg, out=default_out_dir(cfg))
    ctx = distributed.setup(cfg.device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock and the tracker, released on any exit
            run = start_run(cfg, ctx, held)
            with run.stop, progress() as bar:
                if run.cfg.cache_decoded:
                    run.data.fill_caches(bar)
                for _ in range(run.state.epoch, run.cfg.epochs):
                    train_epoch(run, bar)
                    if not run.stopping:
                        end_epoch(run, bar)
                    if run.stopping or run.stop.requested:
                        interrupt(run)
            return finish_run(run)
    finally:
        distributed.cleanup()


@dataclass
class Run:
    """What ``start_run`` builds: the run's fixed parts and its state."""

    cfg: TrainConfig  # every setting, recipe values filled in
    ctx: distributed.Context
    out: Path
    model: torch.nn.Module  # what the steps call (DistributedDataParallel under torchrun)
    data: RunData
    class_tokens: torch.Tensor
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: object  # a torch.autocast, or a null context
    schedule: Schedule
    state: RunState
    started: float  # time.perf_counter() when the invocation began
    tracker: tracking.Tracker  # metrics.jsonl, and TensorBoard / W&B with --log (rank 0; a no-op elsewhere)
    last_result: object = None  # the latest evaluation (its confusion matrix goes to the tracker at the end)
    stop: StopFlag = field(default_factory=StopFlag)
    table: EpochTable = field(default_factory=lambda: EpochTable())
    log_lines: bool = field(default_factory=lambda: not err_console.is_terminal)  # no live bar: print lines
    stopping: bool = False  # every process agreed to stop inside the epoch
    precision: str = ""  # what --amp chose and why, for the header


def start_run(cfg: TrainConfig, ctx: distributed.Context, held: contextlib.ExitStack) -> Run:
    """Everything before the first step, in the order that makes a run repeatable."""
    started = time.perf_counter()
    # --resume PATH: the saved run; only options that change nothing computed may differ.
    saved = None
    if explicit_resume(cfg):
        _, resume_dir = run_folder.resolve_resume(cfg.resume)
        saved = checkpoint.load_train_state(resume_dir)
        cfg = resumed_config(cfg, saved["config"], resume_dir)
    else:
        cfg = resolve_config(cfg)
    backends = tracking.parse_backends(cfg.report_to)
    tracking.check_available(backends)
    files = find_data(cfg, ctx)  # data problems surface here, before any weights are read
    cfg, saved = open_run_folder(cfg, ctx, saved, held)  # --resume auto: the run the folder holds, if any
    out = Path(cfg.out)
    device = ctx.device

    # Randomness: the data's is a function of (seed, epoch, video index), whatever the number of
    # processes or workers; the model's (init, prompt choice) of the seed.
    seed_everything(cfg.seed)
    raw_model = build_model(cfg, device)
    if cfg.grad_checkpointing:
        raw_model.set_grad_checkpointing(True)
    seed_everything(cfg.seed + ctx.rank)  # after init (identical on every process), per-process streams

    data = load_data(cfg, files, raw_model.config, ctx, out)  # frames and input size as the model takes them
    class_tokens = class_text_tokens(files.class_names, cfg.prompts).to(device)

    # AdamW over (CLIP | new) x (decay | no decay) groups; the lr is set every step. One fused kernel per
    # step on GPUs, multi-tensor updates on CPUs.
    optimizer = torch.optim.AdamW(make_param_groups(raw_model, cfg), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    amp_dtype, precision = choose_amp(cfg.amp, device, raw_model.config.model, training=True)
    autocast = autocast_context(amp_dtype, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if cfg.compile:
        compile_video_model(raw_model)  # in place: the checkpoints hold the same keys as without
    model = raw_model
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    schedule = make_schedule(cfg, data, ctx)

    # Where to start: at the beginning, or exactly where a saved run stopped.
    state = RunState(out, cfg, ctx, raw_model, optimizer, scaler, files.class_names)
    if saved is not None:
        state.restore(saved)
        if ctx.is_main:
            err_console.print(f"resuming {out} at epoch {state.epoch + 1}, step {state.step}/"
                              f"{schedule.steps_per_epoch}", highlight=False)
    tracker = tracking.open_tracker(out, backends, cfg.to_dict(), history=state.history, iteration=state.iteration,
                                    is_main=ctx.is_main)
    held.callback(tracker.close)
    run = Run(cfg, ctx, out, model, data, class_tokens, optimizer, scaler, autocast, schedule, state, started,
              tracker)
    run.precision = precision
    describe_run(run)
    return run


def train_epoch(run: Run, bar) -> None:
    """Optimiser steps from the state's position to the end of the epoch, or until every process agrees
    to stop (``run.stopping``)."""
    cfg, state, schedule = run.cfg, run.state, run.schedule
    task = bar.add_task(f"epoch {state.epoch + 1}/{cfg.epochs}", total=schedule.steps_per_epoch,
                        completed=state.step, info="")
    run.data.train_loader.set_epoch(state.epoch, start_batch=state.step * schedule.accum_steps)
    with torch.random.fork_rng(devices=[]):  # starting the loader draws a seed: keep our stream
        batches = iter(run.data.train_loader)
    run.model.train()
    clock = time.perf_counter()

    while state.step < schedule.steps_per_epoch:
        # this step's lr: linear warm-up, then cosine down to min_lr_ratio x lr
        lr_factor = schedule.lr_factor(state.iteration)
        for group in run.optimizer.param_groups:
            group["lr"] = cfg.lr * group["lr_mult"] * lr_factor

        step_loss = accumulate_gradients(run, batches)
        if step_loss is None:  # Ctrl-C from a terminal also reached the loader's workers: stop before this step
            run.stopping = True
            break
        loss_value, stop_votes = all_reduce_step(run, step_loss)
        if not math.isfinite(loss_value):
            raise TrainingDiverged(non_finite_message(loss_value, state.epoch, state.step, run.out))
        optimizer_step(run)

        now = time.perf_counter()
        state.step_done(loss_value, cfg.total_batch, now - clock)
        clock = now
        show_step(run, bar, task, loss_value, lr_factor)
        run.tracker.log_step(state.iteration, loss=loss_value, lr=cfg.lr * lr_factor,
                             clips_per_s=state.sums["clips"] / max(state.sums["seconds"], 1e-9))
        if cfg.save_every and state.iteration % cfg.save_every == 0 and state.step < schedule.steps_per_epoch:
            state.save("step")  # inside the epoch (its end saves last/)
        if cfg.kill_at_step == state.iteration:
            kill_for_test(run)
        if stop_votes > 0 or cfg.stop_at_step == state.iteration:  # interrupted: all processes stop here
            run.stopping = True
            break
    bar.remove_task(task)


def accumulate_gradients(run: Run, batches) -> torch.Tensor | None:
    """Forward and backward over one step's micro-batches, gradients summed; returns the step's loss (on
    this process), or None when the loader stopped because of a Ctrl-C."""
    cfg, ctx, accum_steps = run.cfg, run.ctx, run.schedule.accum_steps
    step_loss = torch.zeros((), device=ctx.device)
    for micro_step in range(accum_steps):
        try:
            clips, labels, _ = next(batches)
        except Exception:
            if not run.stop.requested:
                raise
            run.optimizer.zero_grad(set_to_none=True)
            return None
        clips, labels = clips.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
        clips, targets = mix_batch(clips, labels, len(run.state.class_names), cfg, run.state.iteration, ctx.rank)
        # DDP all-reduces gradients on the last micro-batch of the step only
        last_micro_step = micro_step == accum_steps - 1
        with run.model.no_sync() if ctx.distributed and not last_micro_step else nullcontext():
            loss = forward_loss(run, clips, targets, labels)
            run.scaler.scale(loss / accum_steps).backward()
        step_loss += loss.detach() / accum_steps
    return step_loss


def forward_loss(run: Run, clips: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    cfg = run.cfg
    with run.autocast:
        if cfg.loss == "ce":
            logits, details = run.model(clips, run.class_tokens), None
        else:
            logits, details = run.model(clips, run.class_tokens, return_details=True)
    loss = compute_loss(logits, details, targets, labels, cfg)
    if cfg.inject_nan_at_step == run.state.iteration + 1:  # test hook
        loss = loss * float("nan")
    return loss


def all_reduce_step(run: Run, step_loss: torch.Tensor) -> tuple[float, float]:
    """The global batch's loss (the mean over processes) and the number of processes asked to stop, in
    one all-reduce."""
    stop = torch.tensor(float(run.stop.requested), device=run.ctx.device)
    shared = torch.stack([step_loss.float(), stop]).to(distributed.comm_device())
    loss_sum, stop_votes = distributed.all_reduce_sum(shared).tolist()
    return loss_sum / run.ctx.world_size, stop_votes


def optimizer_step(run: Run) -> None:
    model = run.state.model
    if run.cfg.clip_grad:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.cfg.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # CLIP's rule: the logit scale (a log) never multiplies by more than 100
        model.logit_scale.clamp_(0, math.log(100))


def show_step(run: Run, bar, task, loss_value: float, lr_factor: float) -> None:
    state, steps = run.state, run.schedule.steps_per_epoch
    info = (f"loss {loss_value:.4f}  lr {run.cfg.lr * lr_factor:.2e}  "
            f"{state.sums['clips'] / max(state.sums['seconds'], 1e-9):.1f} clips/s")
    bar.update(task, advance=1, info=info)
    if run.log_lines and run.ctx.is_main and state.step % max(1, steps // 5) == 0:
        # no live bar in a log file: a plain line five times per epoch instead
        err_console.print(f"epoch {state.epoch + 1}/{run.cfg.epochs} step {state.step}/{steps}  {info}",
                          highlight=False)


def end_epoch(run: Run, bar) -> None:
    """Evaluate on val (every ``--eval-every`` epochs and after the last), log the epoch, checkpoint
    best/ (when it improved) and last/. The epoch's metrics.jsonl row is on disk before last/ moves on,
    so a kill at any moment leaves a row for every checkpointed epoch (a resume rewrites the file from
    the checkpoint's history, dropping a row that no checkpoint holds)."""
    cfg, state, data = run.cfg, run.state, run.data
    epoch = state.epoch + 1
    record = state.epoch_record(lr=cfg.lr * run.schedule.lr_factor(state.iteration - 1))
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        has_gates = getattr(state.model, "mbgf", None) is not None
        result = evaluate_loader(run.model, data.val_loader, run.class_tokens, len(data.val_set), data.val_labels,
                                 run.ctx.device, autocast=run.autocast, explain=has_gates, bar=bar,
                                 description=f"val {epoch}/{cfg.epochs}")
        record.update(result.numbers())
        if result.gates is not None and result.videos:  # MBGF's mean gate weight per branch
            record["gates"] = {branch: float(g) for branch, g in
                               zip(BRANCHES, result.gates[result.evaluated].double().mean(dim=0), strict=True)}
        run.last_result = result
    improved = state.end_epoch(record, skipped_train=len(data.train_set.failures()))
    run.tracker.log_epoch(record)
    if improved:
        state.save("best")
    state.save("last")
    show_epoch(run, record)


def show_epoch(run: Run, record: dict) -> None:
    """An epoch's row of the table, and what was skipped (rank 0)."""
    if not run.ctx.is_main:
        return
    run.table.add(record, run.cfg.epochs)
    for dataset, name in ((run.data.train_set, "train"), (run.data.val_set, "val")):
        line = dataset.skipped_summary(run.out / f"skipped_{name}.txt")
        if line:
            err_console.print(f"[yellow]{name}:[/yellow] {line}", highlight=False)


def interrupt(run: Run):
    """The one way a run stops early: a resumable last/ at the position reached, then TrainingInterrupted."""
    if run.state.saved_at != run.state.position:
        run.state.save("last")
    received = run.stop.signal
    cause = "interrupted" if received in (None, signal.SIGINT) else f"stopped by {received.name}"
    raise TrainingInterrupted(run.out, run.stop.exit_code, cause)


def kill_for_test(run: Run) -> None:
    """``--kill-at-step``: the last process dies by SIGKILL, as a lost worker does, on torchrun's first
    attempt only (so that the restarted group runs through)."""
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" and run.ctx.rank == run.ctx.world_size - 1:
        os.kill(os.getpid(), signal.SIGKILL)


def finish_run(run: Run) -> dict:
    if run.last_result is not None:
        run.tracker.log_confusion(run.last_result.confusion(), run.state.class_names, run.state.iteration)
    summary = run.state.summary()
    summary["wall_seconds"] = time.perf_counter() - run.started  # this invocation, data preparation included
    if run.ctx.is_main:
        atomic_write_json(run.out / "summary.json", summary)
        if run.cfg.plot:
            from mbgf_cli import plots  # matplotlib: slow to import, only when a curve is asked for

            plots.training_curve(run.state.history, run.out / "training_curve.png")
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


def open_run_folder(cfg: TrainConfig, ctx: distributed.Context, saved: dict | None,
                    held: contextlib.ExitStack) -> tuple[TrainConfig, dict | None]:
    """Take the run folder for this run: rank 0 locks it (held until the run ends), removes what killed
    writers left, and decides where the run starts (:func:`choose_start`); every process then loads the
    checkpoint it continues from. Returns the config (``resume``: that checkpoint) and its training state."""
    out = Path(cfg.out)
    decision = None
    if ctx.is_main:
        try:
            held.enter_context(run_folder.RunLock(out))
            run_folder.remove_stale_temporaries(out)
            decision = {"resume": cfg.resume if saved is not None else choose_start(cfg, out)}
            if decision["resume"] is None or not (out / "config.json").is_file():
                atomic_write_json(out / "config.json", cfg.to_dict())  # every setting, presets filled in
        except UserError as e:  # every process stops with the same message
            decision = {"error": str(e)}
    decision = distributed.broadcast_object(decision)
    if "error" in decision:
        raise UserError(decision["error"])
    if saved is None and decision["resume"] is not None:
        saved = checkpoint.load_train_state(decision["resume"])
        cfg = replace(cfg, resume=decision["resume"])
    elif saved is None:
        cfg = replace(cfg, resume=None)
    return cfg, saved


def choose_start(cfg: TrainConfig, out: Path) -> str | None:
    """``--resume auto``: the checkpoint to continue from, None to start afresh. A folder holding any trace
    of a run is that run: continued when its configuration is this one, refused otherwise; ``--overwrite``
    first deletes the run's own files."""
    if cfg.overwrite:
        removed = run_folder.overwrite(out)
        if removed:
            err_console.print(f"--overwrite: removed {', '.join(removed)} from {out}", highlight=False)
        return None
    found = run_folder.traces(out)
    if not found:
        return None
    newest = run_folder.newest_checkpoint(out)
    recorded = run_folder.read_recorded_config(out)
    if recorded is None and newest is not None:
        recorded = checkpoint.load_train_state(newest)["config"]
    if recorded is not None:
        differences = run_folder.config_differences(recorded, cfg.to_dict(), ignore=NOT_COMPARED)
        if differences:
            raise run_folder.refuse_other_configuration(out, differences)
    if newest is not None:
        return str(newest)
    if found == ["config.json"]:  # started, but stopped before its first checkpoint: nothing to lose
        return None
    shown = ", ".join(name + ("/" if (out / name).is_dir() else "") for name in found)
    raise UserError(f"{out} holds a run already ({shown}) but no last/ or step/ checkpoint to continue it from; "
                    f"start it again with --overwrite, or choose another {flag('out')}")


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
    """Optimiser steps per epoch (each accumulates ``accum_steps`` micro-batches per process) and the lr
    factor of each step."""

    accum_steps: int
    steps_per_epoch: int
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float

    def lr_factor(self, iteration: int) -> float:
        return lr_schedule(iteration, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def make_schedule(cfg: TrainConfig, data: RunData, ctx: distributed.Context) -> Schedule:
    accum_steps = accumulation_steps(cfg.total_batch, cfg.batch_size, ctx.world_size)
    steps_per_epoch = data.micro_batches_per_epoch // accum_steps
    if steps_per_epoch < 1:
        raise UserError(f"{data.train_set.list_file}: {len(data.train_set)} training videos make no step of "
                        f"{cfg.total_batch} clips; lower --total-batch / --batch-size")
    return Schedule(accum_steps, steps_per_epoch, warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
                    total_steps=cfg.epochs * steps_per_epoch, min_lr_ratio=cfg.min_lr_ratio)


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


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


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
        table.add_row(f"{record['epoch']}/{epochs}", f"{record['train_loss']:.4f}", _pct(record.get("top1")),
                      _pct(record.get("top5")), _pct(record.get("mean_class")), _pct(record.get("best_top1")),
                      f"{record['lr']:.1e}", f"{record['clips_per_s']:.1f}")
        console.print(table)
        self.rows += 1


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


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


def describe_run(run: Run) -> None:
    cfg, ctx, data, schedule, model = run.cfg, run.ctx, run.data, run.schedule, run.state.model
    if not ctx.is_main:
        return
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    err_console.print(
        f"{model.config.name}, {model.config.frames}x{model.config.input_size}: {params / 1e6:.2f}M parameters "
        f"({trained / 1e6:.2f}M trained); {len(data.train_set)} train / {len(data.val_set)} val videos, "
        f"{len(data.class_names)} classes; {ctx.world_size} process(es) on {ctx.device.type}; batch "
        f"{cfg.batch_size} x {ctx.world_size} x {schedule.accum_steps} accumulated = {cfg.total_batch}; "
        f"{schedule.steps_per_epoch} steps/epoch, {cfg.epochs} epochs -> {cfg.out}", highlight=False)
    compiled = "; --compile: the video encoder is compiled at its first use" if cfg.compile else ""
    err_console.print(f"precision: {run.precision}{compiled}", highlight=False, soft_wrap=True)
    for note in run.tracker.notes():
        err_console.print(note, highlight=False)
