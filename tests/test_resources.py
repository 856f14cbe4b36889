"""mbgf_cli/resources.py: devices, loader processes and memory bounded by what the machine has (the
machine is faked: CPUs, memory, process limit and GPUs are monkeypatched)."""

import resource as posix_resource

import pytest
import torch

from mbgf_cli import resources
from mbgf_cli.errors import UserError

GIB = 2**30


@pytest.fixture
def machine(monkeypatch):
    """A machine with 2 CPUs, 8 GiB available, no process limit and no GPU; tests change what they need."""
    state = {"cpus": 2, "memory": 8 * GIB, "nproc": posix_resource.RLIM_INFINITY, "gpus": 0}
    monkeypatch.setattr(resources, "available_cpus", lambda: state["cpus"])
    monkeypatch.setattr(resources, "available_memory", lambda: state["memory"])
    monkeypatch.setattr(posix_resource, "getrlimit", lambda which: (state["nproc"], posix_resource.RLIM_INFINITY))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: state["gpus"] > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["gpus"])
    return state


def test_devices_that_exist_resolve(machine):
    assert resources.resolve_device(None) == torch.device("cpu")
    assert resources.resolve_device("cpu") == torch.device("cpu")
    machine["gpus"] = 2
    assert resources.resolve_device(None) == torch.device("cuda")
    assert resources.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resources.resolve_device("cuda") == torch.device("cuda")


def test_a_device_that_is_not_here_names_those_that_are(machine):
    with pytest.raises(UserError, match=r"^--device cuda: this machine has no such device; it has cpu$"):
        resources.resolve_device("cuda")
    machine["gpus"] = 2
    with pytest.raises(UserError, match=r"^--device cuda:2: this machine has no such device; it has cpu, cuda:0, "
                                        r"cuda:1$"):
        resources.resolve_device("cuda:2")
    with pytest.raises(UserError, match=r"^--device 'gpu0': not a device name; this machine has cpu, cuda:0, cuda:1$"):
        resources.resolve_device("gpu0")


def test_workers_are_bounded_by_cpus_memory_and_the_process_limit(machine):
    assert resources.max_workers() == 8  # 4 per CPU
    machine["memory"] = 2 * GIB
    assert resources.max_workers() == 4  # 512 MiB each
    machine["nproc"] = 8
    assert resources.max_workers() == 2  # a quarter of the process limit
    machine["memory"], machine["nproc"] = 100 * 2**20, posix_resource.RLIM_INFINITY
    assert resources.max_workers() == 1  # always at least one
    assert resources.check_workers(0) == 0 and resources.check_workers(None) is None
    assert resources.check_workers(1) == 1
    with pytest.raises(UserError, match=r"^--workers 100000: this machine runs at most 1 loader processes \(2 CPUs, "
                                        r"0.1 GiB available\); give 1 or fewer$"):
        resources.check_workers(100000)
    with pytest.raises(UserError, match=r"^--workers must be at least 0, not -1$"):
        resources.check_workers(-1)


def test_memory_is_checked_before_allocation(machine):
    machine["memory"] = 4 * GIB
    resources.check_memory(2 * GIB, "x")  # half is allowed
    with pytest.raises(UserError, match=r"^x needs 2.0 GiB, more than 50% of the 4.0 GiB available; lower it$"):
        resources.check_memory(2 * GIB + 1, "x")
    assert resources.input_bytes(batch=2, frames=8, size=224, views=3) == 2 * 3 * 8 * 3 * 224 * 224 * 4
    resources.check_input_memory(batch=8, frames=8, size=224)
    with pytest.raises(UserError, match=r"^--batch-size 8 x --views 1 x --frames 4096 at --input-size 1024 \(the "
                                        r"decoded batch\) needs 384.0 GiB"):
        resources.check_input_memory(batch=8, frames=4096, size=1024)
    machine["memory"] = None  # unknown: nothing is refused
    resources.check_memory(10**15, "x")


def test_the_real_machine_is_read(monkeypatch):
    """Without fakes: the numbers are the machine's (positive, consistent)."""
    assert resources.available_cpus() >= 1
    assert resources.available_memory() is None or resources.available_memory() > 0
    assert resources.max_workers() >= 1 and "cpu" in resources.available_devices()


def test_train_and_eval_on_a_missing_gpu_say_which_devices_exist(monkeypatch):
    """The distributed setup every training and evaluation run goes through: one line, no AttributeError."""
    from mbgf_cli import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match=r"^--device cuda: this machine has no such device; it has cpu$"):
        distributed.setup("cuda")
    assert distributed.setup("cpu").device == torch.device("cpu")
