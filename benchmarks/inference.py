"""Inference speed on this machine, in one run: fp32 vs bf16 vs compiled vs onnxruntime, as ``mbgf
eval/predict/embed`` run (onnxruntime: ``mbgf predict --checkpoint model.onnx``).

    python benchmarks/inference.py                     # tiny (the synthetic default) and b16, the default settings
    python benchmarks/inference.py --models b16 --settings fp32,bf16 --json
    python benchmarks/inference.py --models tiny --settings fp32,bf16,onnx   # onnxruntime vs torch, same batch

A unit of work is one batch of class logits: the video encoder over the clips (under autocast for
bf16; ``encode_video`` compiled as ``--compile`` does it) and the similarity with the class texts
(frozen, so their features are computed once and cached, as in evaluation), in eval mode without
gradients. Measured for
  - tiny (random init) at the synthetic default (8 x 48 px), batch 16 (the preset's), 12 classes;
  - b16 (random weights, the shape of ViT-B/16) at 1 clip x 8 frames x 224 px (``--b16-batch``), 400
    classes.
Settings (``--settings``, comma-separated or ``all``): fp32, bf16, compiled (fp32), compiled-bf16, onnx
(the same model exported by ``mbgf export --format onnx``, classes baked in, run by onnxruntime's CPU
provider at fp32 on the very same batch; its ``max_rel_diff_to_torch_fp32`` and ``export_s`` are
reported), and the -no-mbgf ones. Rounds interleave the settings (benchmarks/measure.py); the median
time per batch is reported, with the speed-ups (fp32 time / their time; ``onnx_speedup``,
``onnx_over_bf16_speedup``) and MBGF's cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import measure  # benchmarks/measure.py (puts the repository on sys.path)
import torch

from fusion.prompts import class_text_tokens
from mbgf_cli.compilation import compile_video_model

ONNX = {s.name: s for s in (measure.Setting("onnx"), measure.Setting("onnx-no-mbgf", mbgf=False))}
measure.SETTINGS.update(ONNX)  # this script's own settings


def make_forward(model_name: str, setting: measure.Setting, batch: int, frames: int, size: int, classes: int,
                 device: str):
    import fusion

    torch.manual_seed(0)
    model = fusion.build_video_model(model=model_name, variant="clip", mbgf=setting.mbgf, frames=frames,
                                     input_size=size).to(device).eval()
    if setting.compiled:
        compile_video_model(model)
    tokens = class_text_tokens([f"class number {i}" for i in range(classes)], "one").to(device)
    clips = torch.randn(batch, frames, 3, size, size, device=device)  # the same batch for every setting
    if setting.name in ONNX:
        return make_onnx_forward(model, tokens, clips)

    def forward():
        with torch.no_grad(), setting.autocast(device):
            model(clips, tokens)

    return forward, model


class OnnxUnit:
    """What the onnx setting reports besides its time."""

    def __init__(self, figures: dict):
        self.figures = figures


def make_onnx_forward(model, tokens: torch.Tensor, clips: torch.Tensor):
    """``model`` with the ``tokens``' classes exported as ``mbgf export --format onnx`` does, run by
    onnxruntime on ``clips`` (on the CPU, fp32)."""
    import onnxruntime

    from mbgf_cli.interop.onnx import VideoGraph, export_graph

    model = model.cpu()
    with torch.no_grad():
        text = model.encode_text(tokens.cpu()).float()
        expected = model(clips.cpu(), tokens.cpu()).float()
    graph = VideoGraph(model, text)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        start = time.perf_counter()
        export_graph(graph, (clips[:2].cpu(),), path, {})
        export_s = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"video": clips.cpu().numpy()}

    def forward():
        session.run(["logits"], feed)

    (logits,) = session.run(["logits"], feed)
    difference = float((torch.from_numpy(logits) - expected).abs().max() / expected.abs().max())
    return forward, OnnxUnit({"export_s": export_s, "provider": "CPUExecutionProvider",
                              "max_rel_diff_to_torch_fp32": difference})


BENCH = measure.Bench(make_forward, unit="batch", title="inference (class logits, no gradients)",
                      default_settings="fp32,bf16,compiled,onnx", rounds={"tiny": (30, 30), "b16": (8, 30)})

if __name__ == "__main__":
    measure.main(BENCH, __doc__)
