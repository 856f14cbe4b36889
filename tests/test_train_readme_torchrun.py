"""Every ``torchrun`` line of the README, run through real torchrun in its written form (issue 21): the
dataset it names replaced by the toy generated one, counts made small (processes, steps), the model
tiny. Options mbgf adds sit before the README's own, so the README's win where both give one."""

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_train_support import env_without_torchrun, read_metrics

README = Path(__file__).resolve().parents[1] / "README.md"
# The toy settings: 48 train videos, 4 clips per process and 8 per step.
TINY = ["--model", "tiny", "--frames", "4", "--input-size", "32", "--batch-size", "4", "--total-batch", "8",
        "--epochs", "1", "--warmup-epochs", "1", "--lr", "1e-3", "--workers", "0", "--no-plot"]


def readme_torchrun_lines() -> list[str]:
    """The README's torchrun commands, continuation lines joined."""
    text = README.read_text().replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.lstrip().startswith("torchrun ")]


def as_test(line: str, root, out, nproc: int, **values) -> list[str]:
    """The README line with the toy data, ``out`` and small counts; ``values`` fill its $VARIABLES/HOST."""
    for name, value in values.items():
        line = line.replace(name, str(value))
    words = shlex.split(line.split(" & ")[0].rstrip("&").strip())
    substitutions = {"--nproc-per-node": str(nproc), "--dataset": "synthetic", "--root": str(root), "-o": str(out),
                     "--save-every": "2"}
    for i, word in enumerate(words[:-1]):
        if word in substitutions:
            words[i + 1] = substitutions[word]
    assert words[0] == "torchrun" and "train" in words, line
    at = words.index("train") + 1
    return [sys.executable, "-m", "torch.distributed.run", *words[1:at], *TINY, *words[at:]]


def _line(*must_contain) -> str:
    lines = [line for line in readme_torchrun_lines() if all(m in line for m in must_contain)]
    assert len(lines) == 1, readme_torchrun_lines()
    return lines[0]


def _env():
    return {**env_without_torchrun(), "OMP_NUM_THREADS": "1"}


def test_the_readme_has_exactly_the_torchrun_lines_these_tests_run():
    lines = readme_torchrun_lines()
    assert len(lines) == 3
    assert {_line("--variant actionclip"), _line("--nnodes 2"), _line("--signals-to-handle")} == set(lines)


def test_torchruns_own_parser_passes_report_to_and_stops_at_log():
    """Issue 21: ``--log`` is ambiguous to torchrun's parser (--log-dir, --logs-specs); ``--report-to`` passes."""
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    parsed = parser.parse_args(["--nproc-per-node", "2", "-m", "mbgf_cli", "train", "--report-to", "tensorboard"])
    assert parsed.training_script_args == ["train", "--report-to", "tensorboard"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--nproc-per-node", "2", "-m", "mbgf_cli", "train", "--log", "tensorboard"])


@pytest.mark.slow
def test_readme_single_node_torchrun_line_trains_with_two_processes_and_reports_to_tensorboard(toy_dataset,
                                                                                                tmp_path):
    command = as_test(_line("--variant actionclip"), toy_dataset, tmp_path / "run", nproc=2)
    command += ["--output", str(tmp_path / "run"), "--report-to", "tensorboard"]  # the tracker through torchrun
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    message = " ".join(done.stderr.split())
    assert "2 process(es)" in message and "actionclip" in (tmp_path / "run" / "config.json").read_text()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]
    assert any((tmp_path / "run" / "tensorboard").iterdir())


@pytest.mark.slow
def test_readme_multi_node_torchrun_line_runs_as_two_nodes(toy_dataset, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"  # one folder both nodes see, as on a shared file system
    nodes = [subprocess.Popen(as_test(_line("--nnodes 2"), toy_dataset, out, nproc=1, **{"$NODE_RANK": rank,
                                      "HOST:29500": f"127.0.0.1:{port}"}),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    try:
        results = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, stderr) in zip(nodes, results, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    assert sum("2 process(es)" in " ".join(stderr.split()) for _, stderr in results) == 1
    assert [r["epoch"] for r in read_metrics(out)] == [1]


@pytest.mark.slow
def test_readme_slurm_torchrun_line_stops_on_sigusr1_with_a_checkpoint_and_the_requeued_job_finishes(toy_dataset,
                                                                                                      tmp_path):
    out = tmp_path / "run"
    command = as_test(_line("--signals-to-handle"), toy_dataset, out, nproc=2) + ["--epochs", "2"]
    launcher = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "step").exists() and launcher.poll() is None:
            time.sleep(0.05)
        launcher.send_signal(signal.SIGUSR1)  # what the sbatch script's trap does at the time limit
        _, stderr = launcher.communicate(timeout=600)
    finally:
        launcher.kill()
    assert re.search(r"stopped by SIGUSR1", stderr), stderr[-3000:]
    assert not (out / "summary.json").exists()  # so the script requeues the job
    requeued = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "resuming" in requeued.stderr
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
