"""What the benchmark scripts share: the device's description, timing on the device, interleaved rounds,
and the model settings they measure (precision and compilation, as ``mbgf train/eval`` apply them).

Interleaving: every setting is warmed up first (compilation happens there, and its seconds are
reported), then the timed rounds run setting after setting (a, b, c, a, b, c, ...), so that a change of
load on a shared machine hits all of them alike; a setting's figure is the median of its rounds, and
ratios are taken between figures of the same run.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mbgf_cli.precision import choose_amp, cpu_bf16_units  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """One measured way of running a model: with or without MBGF, at fp32 or bf16, eager or compiled."""

    name: str
    mbgf: bool = True
    bf16: bool = False
    compiled: bool = False

    def autocast(self, device: str):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


SETTINGS = {s.name: s for s in (
    Setting("fp32-no-mbgf", mbgf=False),
    Setting("fp32"),
    Setting("bf16-no-mbgf", mbgf=False, bf16=True),
    Setting("bf16", bf16=True),
    Setting("compiled", compiled=True),
    Setting("compiled-bf16", bf16=True, compiled=True),
)}


def parse_settings(text: str, parser) -> list[Setting]:
    names = list(SETTINGS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        parser.error(f"--settings: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(SETTINGS)} or all")
    return [SETTINGS[n] for n in names]


def describe_device(device: str) -> dict:
    """The machine as the figures depend on it: device, threads, bf16 units, what --amp auto picks."""
    _, amp_auto = choose_amp("auto", torch.device(device))
    info = {"device": device, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "cpu": cpu_name(),
            "cpu_bf16_units": cpu_bf16_units(), "amp_auto": amp_auto,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def timed(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(runs: dict, device: str, rounds: int, warmup: int) -> tuple[dict, dict]:
    """``runs``: name -> a callable doing one unit of work. Returns (median seconds per name, warm-up
    seconds per name: compilation shows there)."""
    warm = {}
    for name, fn in runs.items():
        warm[name] = sum(timed(fn, device) for _ in range(warmup))
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}, warm


def ratios(seconds: dict) -> dict:
    """The ratios the settings measured allow: bf16 and compile speed-ups (time of the reference / time
    of the setting, >1 is faster) and MBGF's cost (time with / without, at the same precision)."""
    out = {}
    pairs = (("bf16_speedup", "fp32", "bf16"), ("compiled_speedup", "fp32", "compiled"),
             ("compiled_bf16_speedup", "fp32", "compiled-bf16"), ("compiled_over_bf16_speedup", "bf16", "compiled-bf16"),
             ("onnx_speedup", "fp32", "onnx"), ("onnx_over_bf16_speedup", "bf16", "onnx"))
    for key, reference, setting in pairs:
        if reference in seconds and setting in seconds:
            out[key] = seconds[reference] / seconds[setting]
    for precision in ("fp32", "bf16", "onnx"):
        if precision in seconds and f"{precision}-no-mbgf" in seconds:
            out[f"mbgf_cost_{precision}"] = seconds[precision] / seconds[f"{precision}-no-mbgf"]
    return out


def compile_state(model) -> str:
    """"compiled", or "fell back to eager" when torch.compile failed on this machine."""
    from mbgf_cli.compilation import is_compiled

    return "compiled" if is_compiled(model) else "fell back to eager"


# ------------------------------------------------------------------------------------------------
# The command line of train_step.py and inference.py: models x settings, one table or one JSON object
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What differs between the scripts: the unit of work and how it is named."""

    make_unit: object  # (model name, Setting, batch, frames, size, classes, device) -> (callable, model)
    unit: str  # "step" | "batch": the figures are <unit>_ms
    title: str
    default_settings: str
    rounds: dict  # model -> (rounds on a CPU, rounds on a GPU)
    tiny_batch: int = 16


def measure_model(bench: Bench, name: str, settings: list, batch: int, frames: int, size: int, classes: int,
                  device: str, rounds: int, warmup: int) -> dict:
    runs, models = {}, {}
    for setting in settings:
        runs[setting.name], models[setting.name] = bench.make_unit(name, setting, batch, frames, size, classes,
                                                                   device)
    seconds, warm = interleaved(runs, device, rounds, warmup)
    result = {"model": name, "batch": batch, "frames": frames, "input_size": size, "classes": classes,
              "rounds": rounds, "settings": {}, "ratios": ratios(seconds)}
    for s in settings:
        figures = {f"{bench.unit}_ms": 1000 * seconds[s.name], "clips_per_s": batch / seconds[s.name],
                   "warmup_s": warm[s.name]}
        if s.compiled:
            figures["compile"] = compile_state(models[s.name])
        figures.update(getattr(models[s.name], "figures", {}))  # what a setting measures besides time
        result["settings"][s.name] = figures
    return result


def main(bench: Bench, doc: str, argv=None) -> None:
    import argparse
    import json

    from mbgf_cli.presets import SYNTHETIC_RECIPE

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="tiny,b16", help="comma-separated: tiny, b16")
    parser.add_argument("--settings", default=bench.default_settings,
                        help=f"comma-separated, or all (default {bench.default_settings}; all: {', '.join(SETTINGS)})")
    parser.add_argument("--tiny-batch", type=int, default=bench.tiny_batch)
    parser.add_argument("--b16-batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=0, help=f"timed {bench.unit}s per model and setting (0: auto)")
    parser.add_argument("--warmup", type=int, default=2,
                        help=f"untimed {bench.unit}s per setting first (compilation happens there)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = parse_settings(args.settings, parser)
    on_gpu = torch.device(args.device).type != "cpu"
    shapes = {"tiny": dict(batch=args.tiny_batch, frames=SYNTHETIC_RECIPE["frames"],
                           size=SYNTHETIC_RECIPE["input_size"], classes=12),
              "b16": dict(batch=args.b16_batch, frames=8, size=224, classes=400)}
    results = {**describe_device(args.device), "models": []}
    for name in args.models.split(","):
        if name not in shapes:
            parser.error(f"--models: unknown {name!r}; choose from {', '.join(shapes)}")
        rounds = args.rounds or bench.rounds[name][on_gpu]
        results["models"].append(measure_model(bench, name, settings, **shapes[name], device=args.device,
                                               rounds=rounds, warmup=args.warmup))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(bench, results)


def print_table(bench: Bench, results: dict) -> None:
    from rich.table import Table

    from mbgf_cli.console import console

    table = Table(title=f"{bench.title}, {results['device']}, {results['cpu_threads']} CPU threads; --amp auto: "
                  f"{results['amp_auto']}", title_justify="left")
    for column in ("model", "input", "setting", f"{bench.unit} ms", "clips/s", "warm-up s"):
        table.add_column(column, justify="left" if column in ("model", "setting") else "right")
    for m in results["models"]:
        shape = f"{m['batch']}x{m['frames']}x{m['input_size']}"
        for name, r in m["settings"].items():
            note = f" ({r['compile']})" if r.get("compile") == "fell back to eager" else ""
            table.add_row(m["model"], shape, name + note, f"{r[bench.unit + '_ms']:.1f}", f"{r['clips_per_s']:.2f}",
                          f"{r['warmup_s']:.1f}")
    console.print(table)
    for m in results["models"]:
        console.print(f"{m['model']}: " + ", ".join(f"{k} {v:.3f}" for k, v in m["ratios"].items()), highlight=False)
    console.print("*_speedup = fp32 time / its time (> 1: faster); mbgf_cost = time with MBGF / without "
                  "(target <= 1.05)", highlight=False)
