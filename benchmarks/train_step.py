"""Training-step speed with and without MBGF, on this machine, in one run.

    python benchmarks/train_step.py                    # tiny (the synthetic default) and b16 at 1 x 8 frames
    python benchmarks/train_step.py --device cuda --b16-batch 8 --json

A step is what ``mbgf train`` does per batch: forward over the clips and the class texts, cross-entropy,
backward, AdamW step. Measured for
  - tiny (random init) at the synthetic default (the preset's frames and size: 8 x 48 px), batch 16,
    text encoder frozen;
  - b16 (random weights, the shape of ViT-B/16) at batch 1 x 8 frames x 224 px, text frozen (X-CLIP's
    default), 400 classes;
each with and without MBGF. Runs alternate (without, with, without, with, ...) so that a change of
load on a shared machine hits both alike; the median step time is reported. Prints clips/s and the
ratio of step times with / without MBGF (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli.presets import SYNTHETIC_RECIPE
from mbgf_cli.training import TrainConfig, make_param_groups


def make_step(model_name: str, mbgf: bool, batch: int, frames: int, size: int, classes: int, device: str):
    torch.manual_seed(0)
    model = fusion.build_video_model(model=model_name, variant="clip", mbgf=mbgf, frames=frames,
                                     input_size=size).to(device).train()
    model.freeze_text()
    optimizer = torch.optim.AdamW(make_param_groups(model, TrainConfig(new_lr_mult=10.0, weight_decay=0.001)),
                                  lr=1e-5, betas=(0.9, 0.98),
                                  **({"fused": True} if device == "cuda" else {"foreach": True}))  # as mbgf train
    tokens = class_text_tokens([f"class number {i}" for i in range(classes)], "one").to(device)
    clips = torch.randn(batch, frames, 3, size, size, device=device)
    labels = torch.randint(classes, (batch,), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)

    def step():
        with autocast:
            logits = model(clips, tokens)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(name: str, batch: int, frames: int, size: int, classes: int, device: str, rounds: int,
            warmup: int) -> dict:
    steps = {mbgf: make_step(name, mbgf, batch, frames, size, classes, device) for mbgf in (False, True)}
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {False: [], True: []}
    for _ in range(rounds):
        for mbgf in (False, True):
            times[mbgf].append(timed(steps[mbgf], device))
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    return {"model": name, "batch": batch, "frames": frames, "input_size": size, "device": device,
            "clips_per_s_without_mbgf": batch / without, "clips_per_s_with_mbgf": batch / with_,
            "step_ms_without_mbgf": 1000 * without, "step_ms_with_mbgf": 1000 * with_,
            "ratio_with_over_without": with_ / without, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="tiny,b16", help="comma-separated: tiny, b16")
    parser.add_argument("--tiny-batch", type=int, default=16)
    parser.add_argument("--b16-batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=0, help="timed steps per model and setting (0: auto)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = {"tiny": dict(batch=args.tiny_batch, frames=SYNTHETIC_RECIPE["frames"],
                             size=SYNTHETIC_RECIPE["input_size"], classes=12, rounds=args.rounds or 20),
                "b16": dict(batch=args.b16_batch, frames=8, size=224, classes=400,
                            rounds=args.rounds or (20 if args.device == "cuda" else 6))}
    results = []
    for name in args.models.split(","):
        s = settings[name]
        results.append(compare(name, s["batch"], s["frames"], s["size"], s["classes"], args.device, s["rounds"],
                               args.warmup))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"training step (forward + backward + AdamW), {args.device}, {torch.get_num_threads()} CPU threads")
    print(f"{'model':<6} {'input':>12} {'clips/s':>10} {'clips/s +MBGF':>14} {'step ms':>9} {'+MBGF ms':>9} "
          f"{'ratio':>7}")
    for r in results:
        shape = f"{r['batch']}x{r['frames']}x{r['input_size']}"
        print(f"{r['model']:<6} {shape:>12} {r['clips_per_s_without_mbgf']:>10.2f} {r['clips_per_s_with_mbgf']:>14.2f} "
              f"{r['step_ms_without_mbgf']:>9.1f} {r['step_ms_with_mbgf']:>9.1f} {r['ratio_with_over_without']:>7.3f}")
    print("ratio = step time with MBGF / without (target <= 1.05)")


if __name__ == "__main__":
    main()
