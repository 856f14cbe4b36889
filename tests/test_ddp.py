"""Two processes under torchrun (gloo, CPU) train like one process with the same global batch, and
their evaluation counts every video exactly once."""

import subprocess
import sys

import pytest
import torch

from mbgf_cli.checkpoint import load_checkpoint
from tests.test_train_support import (
    TINY_RUN,
    env_without_torchrun,
    read_metrics,
    run_cli,
)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(toy_dataset, tmp_path, capsys):
    # 13 val videos: an odd number, so the distributed sampler pads one rank with a repeat.
    val_lines = (toy_dataset / "val.txt").read_text().splitlines()
    val_lines.append((toy_dataset / "train.txt").read_text().splitlines()[0])
    val_list = tmp_path / "val13.txt"
    val_list.write_text("\n".join(val_lines) + "\n")
    common = ["train", "--dataset", "synthetic", "--root", str(toy_dataset), *TINY_RUN, "--val-list", str(val_list)]

    single = tmp_path / "single"
    code, _, stderr = run_cli([*common, "--batch-size", "8", "--total-batch", "8", "--out", single], capsys)
    assert code == 0, stderr

    ddp = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mbgf_cli", *common, "--batch-size", "4", "--total-batch", "8", "--out", str(ddp)]
    done = subprocess.run(command, env=env_without_torchrun(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in " ".join(done.stderr.split())
    assert done.stdout.count("1/2") == 1  # the epoch table is printed once (rank 0 only)

    one, two = read_metrics(single), read_metrics(ddp)
    assert [r["epoch"] for r in two] == [1, 2]  # one line per epoch: only rank 0 writes
    for a, b in zip(one, two, strict=True):
        assert b["iteration"] == a["iteration"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["videos"] == a["videos"] == 13 and b["skipped"] == 0  # no padding repeat counted
        assert abs(b["top1"] - a["top1"]) <= 1 / 13 + 1e-9  # at most one near-tie flipped by rounding

    weights_one = load_checkpoint(single / "last")[0].state_dict()
    weights_two = load_checkpoint(ddp / "last")[0].state_dict()
    worst = max(float((weights_one[k] - weights_two[k]).abs().max()) for k in weights_one)
    assert worst < 1e-4


def test_gather_predictions_places_rows_by_index_in_one_process():
    from mbgf_cli.distributed import gather_predictions

    # What one rank of a padded sampler holds: videos 0, 2, 4 and a padding repeat of 0; video 5 failed.
    rows, seen = gather_predictions(torch.tensor([0, 2, 4, 0, 1, 3]),
                                    torch.tensor([[0.0], [2.0], [4.0], [0.0], [1.0], [3.0]]), total=6)
    assert rows.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]
    assert seen.tolist() == [True, True, True, True, True, False]
