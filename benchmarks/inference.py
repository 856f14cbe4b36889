"""Inference speed on this machine, in one run: fp32 vs bf16 vs compiled, as ``mbgf eval/predict/embed`` run.

    python benchmarks/inference.py                     # tiny (the synthetic default) and b16, the default settings
    python benchmarks/inference.py --models b16 --settings fp32,bf16 --json

A unit of work is one batch of class logits: the video encoder over the clips (under autocast for
bf16; ``encode_video`` compiled as ``--compile`` does it) and the similarity with the class texts
(frozen, so their features are computed once and cached, as in evaluation), in eval mode without
gradients. Measured for
  - tiny (random init) at the synthetic default (8 x 48 px), batch 16 (the preset's), 12 classes;
  - b16 (random weights, the shape of ViT-B/16) at 1 clip x 8 frames x 224 px (``--b16-batch``), 400
    classes.
Settings (``--settings``, comma-separated or ``all``): fp32, bf16, compiled (fp32), compiled-bf16, and
the -no-mbgf ones. Rounds interleave the settings (benchmarks/measure.py); the median time per batch is
reported, with the speed-ups (fp32 time / their time) and MBGF's cost.
"""

from __future__ import annotations

import measure  # benchmarks/measure.py (puts the repository on sys.path)
import torch

from fusion.prompts import class_text_tokens
from mbgf_cli.compilation import compile_video_model


def make_forward(model_name: str, setting: measure.Setting, batch: int, frames: int, size: int, classes: int,
                 device: str):
    import fusion

    torch.manual_seed(0)
    model = fusion.build_video_model(model=model_name, variant="clip", mbgf=setting.mbgf, frames=frames,
                                     input_size=size).to(device).eval()
    if setting.compiled:
        compile_video_model(model)
    tokens = class_text_tokens([f"class number {i}" for i in range(classes)], "one").to(device)
    clips = torch.randn(batch, frames, 3, size, size, device=device)

    def forward():
        with torch.no_grad(), setting.autocast(device):
            model(clips, tokens)

    return forward, model


BENCH = measure.Bench(make_forward, unit="batch", title="inference (class logits, no gradients)",
                      default_settings="fp32,bf16,compiled", rounds={"tiny": (30, 30), "b16": (8, 30)})

if __name__ == "__main__":
    measure.main(BENCH, __doc__)
