"""Multi-node torchrun: two launches on this machine, each a "node" of one process that meets the other
through a c10d rendezvous on 127.0.0.1 (gloo), train exactly like one machine running two processes
(which trains like one process with the same global batch: tests/test_ddp.py)."""

import socket
import subprocess
import sys

import pytest
import torch

from mbgf_cli.checkpoint import load_checkpoint
from tests.test_train_support import TINY_RUN, env_without_torchrun, read_metrics, without_timing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


@pytest.mark.slow
def test_two_nodes_of_one_process_train_exactly_like_one_machine_with_two(toy_dataset, tmp_path):
    train = ["-m", "mbgf_cli", "train", "--dataset", "synthetic", "--root", str(toy_dataset), *TINY_RUN,
             "--batch-size", "4", "--total-batch", "8"]
    # torchrun sets one thread per process only when it starts several on a node: the same everywhere,
    # so that the two layouts add the same numbers in the same order
    env = {**env_without_torchrun(), "OMP_NUM_THREADS": "1"}

    one_machine = tmp_path / "one-machine"
    done = subprocess.run(_torchrun("--standalone", "--nproc-per-node", "2", *train, "--out", str(one_machine)),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    two_nodes = tmp_path / "two-nodes"  # one folder that both nodes see, as on a cluster's shared file system
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen(_torchrun("--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                                        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "mbgf-test",
                                        *train, "--out", str(two_nodes)),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=600))
    finally:
        for node in nodes:
            node.kill()
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    assert sum("2 process(es)" in " ".join(stderr.split()) for _, stderr in outputs) == 1  # rank 0 reports

    assert [r["epoch"] for r in read_metrics(two_nodes)] == [1, 2]
    assert without_timing(read_metrics(two_nodes)) == without_timing(read_metrics(one_machine))
    a, b = load_checkpoint(one_machine / "last")[0].state_dict(), load_checkpoint(two_nodes / "last")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
