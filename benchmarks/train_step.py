"""Training-step speed on this machine, in one run: with and without MBGF, fp32 vs bf16 vs compiled.

    python benchmarks/train_step.py                    # tiny (the synthetic default) and b16, the default settings
    python benchmarks/train_step.py --models tiny --settings all --json
    python benchmarks/train_step.py --device cuda --b16-batch 8 --json

A step is what ``mbgf train`` does per batch: forward over the clips and the class texts (under
autocast for bf16; ``encode_video`` compiled as ``--compile`` does it), cross-entropy, backward,
AdamW step. Measured for
  - tiny (random init) at the synthetic default (the preset's frames and size: 8 x 48 px), batch 16,
    text encoder frozen, 12 classes;
  - b16 (random weights, the shape of ViT-B/16) at batch 1 x 8 frames x 224 px, text frozen (X-CLIP's
    default), 400 classes.
Settings (``--settings``, comma-separated or ``all``): fp32-no-mbgf, fp32, bf16-no-mbgf, bf16, compiled
(fp32), compiled-bf16; every one but the -no-mbgf ones with MBGF. Rounds interleave the settings
(see benchmarks/measure.py); the median step time is reported, with the ratios: MBGF's cost (step
time with / without, target <= 1.05), the bf16 and compile speed-ups (fp32 time / their time).
"""

from __future__ import annotations

import measure  # benchmarks/measure.py (puts the repository on sys.path)
import torch
import torch.nn.functional as F

from fusion.prompts import class_text_tokens
from mbgf_cli.compilation import compile_video_model
from mbgf_cli.training import TrainConfig, make_param_groups


def make_step(model_name: str, setting: measure.Setting, batch: int, frames: int, size: int, classes: int,
              device: str):
    import fusion

    torch.manual_seed(0)
    model = fusion.build_video_model(model=model_name, variant="clip", mbgf=setting.mbgf, frames=frames,
                                     input_size=size).to(device).train()
    model.freeze_text()
    optimizer = torch.optim.AdamW(make_param_groups(model, TrainConfig(new_lr_mult=10.0, weight_decay=0.001)),
                                  lr=1e-5, betas=(0.9, 0.98),
                                  **({"fused": True} if device.startswith("cuda") else {"foreach": True}))  # as mbgf train
    if setting.compiled:
        compile_video_model(model)
    tokens = class_text_tokens([f"class number {i}" for i in range(classes)], "one").to(device)
    clips = torch.randn(batch, frames, 3, size, size, device=device)
    labels = torch.randint(classes, (batch,), device=device)

    def step():
        with setting.autocast(device):
            logits = model(clips, tokens)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, model


BENCH = measure.Bench(make_step, unit="step", title="training step (forward + backward + AdamW)",
                      default_settings="fp32-no-mbgf,fp32,bf16,compiled", rounds={"tiny": (20, 20), "b16": (6, 20)})

if __name__ == "__main__":
    measure.main(BENCH, __doc__)
