"""One call on a GPU machine: training and evaluation clips/s, the loader against the training step, peak
memory; one JSON object on stdout (progress on stderr). Run it through ``benchmarks/gpu.sh``.

    bash benchmarks/gpu.sh                                  # cuda, B/16 8x224 bf16, 16 loader workers
    bash benchmarks/gpu.sh --device cpu --model tiny --frames 4 --size 32 --batch 2 --videos 2 ...   # a smoke run

Measured, in this order:
  train   the training step (forward, cross-entropy, backward, AdamW; text frozen, ``--classes`` classes)
          at ``--batch`` clips of ``--frames`` x ``--size`` px under ``--amp``, with and without MBGF,
          rounds interleaved (benchmarks/measure.py): clips/s and each one's peak memory.
  eval    the forward pass without gradients (MBGF, eval mode) at ``--eval-batch`` clips: clips/s.
  loader  ``VideoDataset`` + ``build_loader`` with ``--workers`` processes, training transforms, on
          ``--videos`` generated Kinetics-like videos (340x256, 25 fps, B-frames; benchmarks/loader.py),
          batches of ``--batch``: clips/s after the first batch, against the training step's
          consumption (with MBGF): ``loader_bound`` when the loader delivers fewer clips/s than the
          step takes.
A SIGTERM (gpu.sh's time limit) prints what was measured so far, marked ``"complete": false``.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import loader as loader_bench  # benchmarks/loader.py
import measure  # benchmarks/measure.py (puts the repository on sys.path)
import torch
import torch.nn.functional as F

from fusion.prompts import class_text_tokens
from mbgf_cli.training import TrainConfig, make_param_groups


class OutOfTime(Exception):
    pass


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def memory_in_use(device: str) -> int:
    return torch.cuda.memory_allocated(torch.device(device)) if torch.device(device).type == "cuda" else 0


def build(args, mbgf: bool, train: bool):
    import fusion

    torch.manual_seed(0)
    model = fusion.build_video_model(model=args.model, variant=args.variant, mbgf=mbgf, frames=args.frames,
                                     input_size=args.size).to(args.device)
    model.train(train)
    model.freeze_text()
    return model


def train_step(args, mbgf: bool):
    """A training step's callable and the bytes of device memory it keeps and peaks at."""
    device = torch.device(args.device)
    before = memory_in_use(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build(args, mbgf, train=True)
    optimizer = torch.optim.AdamW(make_param_groups(model, TrainConfig(new_lr_mult=10.0, weight_decay=0.001)),
                                  lr=1e-5, betas=(0.9, 0.98),
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    tokens = class_text_tokens([f"class number {i}" for i in range(args.classes)], "one").to(device)
    clips = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device)
    labels = torch.randint(args.classes, (args.batch,), device=device)
    autocast = measure.SETTINGS["bf16" if args.amp == "bf16" else "fp32"].autocast(args.device)

    def step():
        with autocast:
            logits = model(clips, tokens)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    measure.synchronize(args.device)
    peak = torch.cuda.max_memory_allocated(device) - before if device.type == "cuda" else None
    return step, peak


def eval_forward(args):
    device = torch.device(args.device)
    model = build(args, mbgf=True, train=False)
    tokens = class_text_tokens([f"class number {i}" for i in range(args.classes)], "one").to(device)
    clips = torch.randn(args.eval_batch, args.frames, 3, args.size, args.size, device=device)
    autocast = measure.SETTINGS["bf16" if args.amp == "bf16" else "fp32"].autocast(args.device)

    def forward():
        with torch.no_grad(), autocast:
            model(clips, tokens)

    return forward


def loader_speed(args, folder: Path) -> float:
    from mbgf_cli.data import VideoDataset, build_loader

    root = loader_bench.kinetics_like(folder, args.videos, args.seconds, workers=max(1, args.workers))
    dataset = VideoDataset(root, root / "list.txt", 4, frames=args.frames, input_size=args.size, train=True)
    loader = build_loader(dataset, batch_size=args.batch, workers=args.workers, shuffle=True, drop_last=False)
    counted, start, epoch = 0, None, 0
    while counted < args.loader_clips:
        loader.set_epoch(epoch)
        for clips, _, _ in loader:
            if start is None:  # the first batch pays for starting the workers: not counted
                start = time.perf_counter()
                continue
            counted += clips.shape[0]
            if counted >= args.loader_clips:
                break
        epoch += 1
    elapsed = time.perf_counter() - start
    del loader
    return counted / elapsed


def run(args, results: dict) -> None:
    gib = 2**30
    log(f"train: {args.model} {args.batch}x{args.frames}x{args.size}, {args.amp}, with and without MBGF")
    steps, peaks = {}, {}
    for mbgf in (False, True):
        steps[mbgf], peaks[mbgf] = train_step(args, mbgf)
    seconds, _ = measure.interleaved({"without": steps[False], "with": steps[True]}, args.device, args.rounds, 0)
    results["train"] = {
        "clips_per_s_with_mbgf": args.batch / seconds["with"], "clips_per_s_without_mbgf": args.batch / seconds["without"],
        "mbgf_cost": seconds["with"] / seconds["without"],
        "peak_memory_gib_with_mbgf": None if peaks[True] is None else peaks[True] / gib,
        "peak_memory_gib_without_mbgf": None if peaks[False] is None else peaks[False] / gib}
    del steps
    if torch.device(args.device).type == "cuda":
        torch.cuda.empty_cache()

    log(f"eval: {args.eval_batch} clips per forward")
    on_gpu = torch.device(args.device).type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(torch.device(args.device))
    forward = eval_forward(args)
    eval_seconds, _ = measure.interleaved({"eval": forward}, args.device, args.rounds, args.warmup)
    results["eval"] = {"clips_per_s": args.eval_batch / eval_seconds["eval"], "batch": args.eval_batch,
                       "peak_memory_gib": torch.cuda.max_memory_allocated(torch.device(args.device)) / gib
                       if on_gpu else None}
    del forward

    log(f"loader: {args.workers} workers on {args.videos} generated 340x256 videos")
    with tempfile.TemporaryDirectory(prefix="mbgf-gpu-bench-") as tmp:
        speed = loader_speed(args, Path(tmp))
    consumption = results["train"]["clips_per_s_with_mbgf"]
    results["loader"] = {"clips_per_s": speed, "workers": args.workers, "videos": args.videos,
                         "train_consumption_clips_per_s": consumption, "loader_over_train": speed / consumption,
                         "loader_bound": speed < consumption}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="b16", help="backbone: b16, b32, l14, tiny")
    parser.add_argument("--variant", default="clip", help="clip, actionclip, xclip")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32, help="clips per training step (and loader batch)")
    parser.add_argument("--eval-batch", type=int, default=64, help="clips per evaluation forward")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--amp", choices=("bf16", "off"), default="bf16")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16, help="loader processes")
    parser.add_argument("--videos", type=int, default=64, help="generated videos for the loader")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each generated video")
    parser.add_argument("--loader-clips", type=int, default=1024, help="clips timed through the loader")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu for a smoke run)")

    started = time.perf_counter()
    results = {**measure.describe_device(args.device),
               "setting": {k: getattr(args, k) for k in ("model", "variant", "frames", "size", "batch", "eval_batch",
                                                         "classes", "amp", "rounds", "warmup")},
               "complete": False}

    def out_of_time(signum, frame):
        raise OutOfTime

    signal.signal(signal.SIGTERM, out_of_time)
    try:
        run(args, results)
        results["complete"] = True
    except OutOfTime:
        log("stopped by SIGTERM (time limit): printing what was measured")
    finally:
        results["seconds"] = time.perf_counter() - started
        results["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
        print(json.dumps(results, indent=1), flush=True)


if __name__ == "__main__":
    main()
