"""``--amp``: what ``auto`` chooses on which device (and says why), and that bf16 gives fp32's answers:
the same top-1 for a trained tiny checkpoint, logits within a stated tolerance on ViT-B/16 weights."""

import csv
import json

import pytest
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli import precision
from tests.test_train_support import TINY_RUN, run_cli

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def fake_cpu(monkeypatch, amx: bool, avx512_bf16: bool, mkldnn: bool = True):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: mkldnn)


def test_auto_picks_bf16_on_a_cpu_with_avx512_bf16(monkeypatch):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=True)
    assert precision.choose_amp("auto", CPU) == (torch.bfloat16, "bf16 (CPU has AVX-512 BF16)")
    assert precision.choose_amp("auto", CPU, model="b16") == (torch.bfloat16, "bf16 (CPU has AVX-512 BF16)")


def test_auto_trains_the_tiny_model_in_fp32_on_a_cpu(monkeypatch):
    # measured (benchmarks/): the tiny model's training step is slower in bf16, its inference faster
    fake_cpu(monkeypatch, amx=True, avx512_bf16=True)
    assert precision.choose_amp("auto", CPU, model="tiny", training=True) == (
        None, "fp32 (CPU has AMX-BF16, but the tiny model trains faster in fp32)")
    assert precision.choose_amp("auto", CPU, model="tiny")[0] is torch.bfloat16
    assert precision.choose_amp("auto", CPU, model="b16", training=True)[0] is torch.bfloat16
    assert precision.choose_amp("bf16", CPU, model="tiny", training=True)[0] is torch.bfloat16  # asked for: given


def test_auto_picks_bf16_on_a_cpu_with_amx(monkeypatch):
    fake_cpu(monkeypatch, amx=True, avx512_bf16=True)
    assert precision.choose_amp("auto", CPU) == (torch.bfloat16, "bf16 (CPU has AMX-BF16)")


@pytest.mark.parametrize("mkldnn", [True, False])
def test_auto_stays_fp32_on_a_cpu_without_bf16_units(monkeypatch, mkldnn):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False, mkldnn=mkldnn)
    dtype, reason = precision.choose_amp("auto", CPU)
    assert dtype is None and reason.startswith("fp32 (CPU without AMX or AVX-512 BF16")
    # no oneDNN in this torch build: its bf16 kernels are absent whatever the CPU has
    fake_cpu(monkeypatch, amx=True, avx512_bf16=True, mkldnn=False)
    assert precision.choose_amp("auto", CPU)[0] is None


def test_auto_on_cuda_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert precision.choose_amp("auto", torch.device("cuda")) == (torch.bfloat16, "bf16 (GPU has native bf16)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4: emulated bf16
    dtype, reason = precision.choose_amp("auto", torch.device("cuda"))
    assert dtype is None and reason.startswith("fp32 (GPU without native bf16")


def test_explicit_choices_are_taken_as_given(monkeypatch):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False)
    assert precision.choose_amp("bf16", CPU) == (torch.bfloat16, "bf16 (--amp bf16)")
    assert precision.choose_amp("fp16", CPU) == (torch.float16, "fp16 (--amp fp16)")
    assert precision.choose_amp("off", CPU) == (None, "fp32 (--amp off)")
    with pytest.raises(ValueError, match="--amp must be one of auto, bf16, fp16, off"):
        precision.choose_amp("half", CPU)


def eval_top1_and_predictions(checkpoint, root, amp, tmp_path, capsys):
    predictions = tmp_path / f"predictions-{amp}.csv"
    code, out, err = run_cli(["eval", "--checkpoint", checkpoint, "--root", root, "--amp", amp, "--workers", "0",
                              "--device", "cpu", "--predictions", predictions, "--json"], capsys)
    assert code == 0, err
    with open(predictions, newline="") as f:
        rows = list(csv.DictReader(f))
    return json.loads(out)["top1"], rows


def test_bf16_gives_fp32s_top1_on_a_trained_tiny_checkpoint(toy_dataset, tmp_path, capsys):
    # Trained (in fp32) until it knows the 12 val videos: a model near chance has near-ties that any
    # rounding flips, on one CPU and not another; a trained one has margins, as a real checkpoint does.
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN,
                            "--train-list", "val.txt", "--batch-size", "4", "--total-batch", "4", "--epochs", "20",
                            "--eval-every", "20", "--lr", "3e-3", "--amp", "off", "--out", run], capsys)
    assert code == 0, err
    top1_fp32, rows_fp32 = eval_top1_and_predictions(run / "last", toy_dataset, "off", tmp_path, capsys)
    top1_bf16, rows_bf16 = eval_top1_and_predictions(run / "last", toy_dataset, "bf16", tmp_path, capsys)
    assert top1_fp32 >= 0.9
    assert top1_bf16 == top1_fp32
    assert len(rows_bf16) == len(rows_fp32) == 12


# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per value); through 12 residual blocks with
# fp32 accumulation the video embedding stays within a cosine of 1e-3 of fp32's (measured: 1 - 1.3e-5),
# and a logit (logit scale x cosine, the scale at CLIP's initial 1/0.07) within 0.05 of fp32's
# (measured: 0.009; the logits of the 20 classes span 0.5).
LOGIT_TOLERANCE = 0.05
EMBEDDING_COSINE = 1 - 1e-3


def test_bf16_logits_within_tolerance_on_b16_weights():
    torch.manual_seed(0)
    model = fusion.build_video_model(model="b16", variant="clip", mbgf=True, frames=8, pretrained=None).eval()
    tokens = class_text_tokens([f"class number {i}" for i in range(20)], "one")
    clips = torch.randn(1, 8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, details = model(clips, tokens, return_details=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits_bf16, details_bf16 = model(clips, tokens, return_details=True)
    assert logits_bf16.dtype == torch.bfloat16  # autocast did run the model in bf16
    assert (logits_bf16.float() - logits).abs().max() <= LOGIT_TOLERANCE
    cosine = torch.nn.functional.cosine_similarity(details["video_features"], details_bf16["video_features"].float())
    assert cosine.min() >= EMBEDDING_COSINE
