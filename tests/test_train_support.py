"""Shared helpers of the training/evaluation tests (no tests here): a tiny generated dataset, running
the CLI in-process, reading a run's files.

The dataset is the synthetic one at toy size (12 classes, 48 px, 12 frames; the model sees 4 frames at
32 px): enough to train the tiny model for a couple of epochs in seconds, through real mp4 files and the
real loaders.
"""

import json
import os
import shutil
from pathlib import Path

# Each run: tiny model at 32 px (4 patches per frame), 8 frames, batch 8; no plots (matplotlib is slow
# to import and the curve is checked once, in the end-to-end test).
TINY_RUN = ["--model", "tiny", "--variant", "clip", "--frames", "4", "--input-size", "32", "--batch-size", "8",
            "--total-batch", "8", "--epochs", "2", "--warmup-epochs", "1", "--lr", "1e-3", "--workers", "0",
            "--no-plot"]
VIDEOS_PER_CLASS = 5  # 4 train + 1 val per class: 48 train, 12 val videos


def make_dataset(tmp_path_factory) -> Path:
    """The toy synthetic dataset, generated once per test session (conftest's ``toy_dataset`` fixture)."""
    root = tmp_path_factory.getbasetemp() / "synthetic-toy"
    if not (root / "val.txt").is_file():
        from mbgf_cli.data import synthetic

        staging = tmp_path_factory.mktemp("synthetic-staging")
        synthetic.generate(staging, class_set="a", videos_per_class=VIDEOS_PER_CLASS, frames=12, size=48, seed=0,
                           workers=1, show_progress=False)
        shutil.move(str(staging), str(root))
    return root


def run_cli(args, capsys=None) -> tuple[int, str, str]:
    """Run ``mbgf ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from mbgf_cli.app import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# Fields of metrics.jsonl that measure time (differ between identical runs).
TIMING = ("clips_per_s", "train_seconds")


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def env_without_torchrun() -> dict:
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env
