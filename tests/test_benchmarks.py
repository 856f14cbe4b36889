"""The benchmark scripts run and print one JSON object a script can read (smallest sizes, on the CPU), so
that they cannot rot between the occasions someone runs them for real. Figures are checked for
consistency with each other, never against a speed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_json(command: list, **env) -> dict:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # the whole of stdout is the one object


def test_gpu_sh_smoke_run_on_the_cpu():
    out = run_json(["bash", BENCHMARKS / "gpu.sh", "--device", "cpu", "--model", "tiny", "--frames", "4", "--size",
                    "32", "--batch", "2", "--eval-batch", "2", "--classes", "4", "--rounds", "1", "--warmup", "1",
                    "--workers", "1", "--videos", "2", "--seconds", "1", "--loader-clips", "4"],
                   PYTHON=sys.executable)
    assert out["complete"] is True and out["device"] == "cpu"
    assert out["setting"]["model"] == "tiny" and out["setting"]["amp"] == "bf16"
    train, evaluation, loader = out["train"], out["eval"], out["loader"]
    assert train["clips_per_s_with_mbgf"] > 0 and train["clips_per_s_without_mbgf"] > 0
    assert train["mbgf_cost"] == pytest.approx(train["clips_per_s_without_mbgf"] / train["clips_per_s_with_mbgf"])
    assert evaluation["clips_per_s"] > 0
    assert loader["workers"] == 1 and loader["clips_per_s"] > 0
    assert loader["train_consumption_clips_per_s"] == train["clips_per_s_with_mbgf"]
    assert loader["loader_bound"] == (loader["clips_per_s"] < train["clips_per_s_with_mbgf"])
    assert out["peak_rss_gib"] > 0


@pytest.mark.parametrize("script, unit", [("train_step.py", "step_ms"), ("inference.py", "batch_ms")])
def test_speed_scripts_report_each_setting_and_its_ratios(script, unit):
    out = run_json([sys.executable, BENCHMARKS / script, "--device", "cpu", "--models", "tiny", "--tiny-batch", "2",
                    "--settings", "fp32-no-mbgf,fp32,bf16", "--rounds", "1", "--warmup", "0", "--json"])
    assert out["amp_auto"].startswith(("bf16 (", "fp32 ("))
    (model,) = out["models"]
    assert model["model"] == "tiny" and model["batch"] == 2
    settings = model["settings"]
    assert list(settings) == ["fp32-no-mbgf", "fp32", "bf16"]
    assert all(s[unit] > 0 and s["clips_per_s"] == pytest.approx(2000 / s[unit]) for s in settings.values())
    assert model["ratios"]["bf16_speedup"] == pytest.approx(settings["fp32"][unit] / settings["bf16"][unit])
    assert model["ratios"]["mbgf_cost_fp32"] == pytest.approx(settings["fp32"][unit] / settings["fp32-no-mbgf"][unit])


def test_loader_script_json():
    out = run_json([sys.executable, BENCHMARKS / "loader.py", "--videos", "2", "--seconds", "1", "--frames", "4",
                    "--size", "32", "--clips", "4", "--workers", "0", "1", "--rounds", "1", "--json"])
    assert out["raw_clips_per_s"] > 0
    for workers, figures in out["pipeline"].items():
        assert figures["ratio_per_worker"] == pytest.approx(
            figures["clips_per_s"] / (out["raw_clips_per_s"] * max(int(workers), 1)))


def test_predict_script_json():
    out = run_json([sys.executable, BENCHMARKS / "predict.py", "--videos", "12", "--workers", "1", "--batch-size", "4",
                    "--rounds", "1", "--json"])
    assert out["videos"] == 12 and out["workers"] == 1 and out["batch_size"] == 4
    assert all(out[key] > 0 for key in ("decode_videos_per_s", "decode_one_process_videos_per_s",
                                        "model_videos_per_s", "predict_videos_per_s"))
    assert out["ratio"] == pytest.approx(out["predict_videos_per_s"] / out["decode_videos_per_s"])
    assert out["ratio_to_one_decoder"] == pytest.approx(out["predict_videos_per_s"] / out["decode_one_process_videos_per_s"])


def test_inference_script_runs_onnxruntime_on_the_same_batch_as_torch():
    # README: python benchmarks/inference.py --models tiny --settings fp32,bf16,onnx --json
    out = run_json([sys.executable, BENCHMARKS / "inference.py", "--device", "cpu", "--models", "tiny", "--tiny-batch",
                    "2", "--settings", "fp32,bf16,onnx", "--rounds", "1", "--warmup", "0", "--json"])
    (model,) = out["models"]
    settings, ratios = model["settings"], model["ratios"]
    assert list(settings) == ["fp32", "bf16", "onnx"]
    onnx = settings["onnx"]
    assert onnx["provider"] == "CPUExecutionProvider" and onnx["export_s"] > 0
    assert onnx["max_rel_diff_to_torch_fp32"] < 1e-4  # the same logits as torch on the same batch
    assert ratios["onnx_speedup"] == pytest.approx(settings["fp32"]["batch_ms"] / onnx["batch_ms"])
    assert ratios["onnx_over_bf16_speedup"] == pytest.approx(settings["bf16"]["batch_ms"] / onnx["batch_ms"])


def test_timeline_script_json():
    out = run_json([sys.executable, BENCHMARKS / "timeline.py", "--short", "0.05", "--long", "0.2", "--batch-size", "4",
                    "--json"])
    short, long = out["short"], out["long"]
    assert (short["frames"], long["frames"], out["length_ratio"]) == (24, 96, 4.0)
    assert (short["windows"], long["windows"]) == (2, 11)  # 3 s and 12 s in 2 s windows every 1 s
    for row in (short, long):
        assert row["frames"] - 2 <= row["decoded"] <= row["frames"]  # once each, up to the last one sampled
        assert row["peak_rss_mib"] >= row["baseline_rss_mib"] > 0
        assert row["growth_mib"] == pytest.approx(row["peak_rss_mib"] - row["baseline_rss_mib"], abs=0.11)
    assert out["peak_rss_ratio"] == pytest.approx(long["peak_rss_mib"] / short["peak_rss_mib"], abs=1e-3)
