"""Shared test fixtures."""

import pytest
import torch

from tests.test_train_support import make_dataset


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one intra-op thread beats two (no hand-offs, which cost dearly when the cores
    are shared), so modules that use this run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """The toy synthetic dataset of the training, evaluation and DDP tests (read-only: copy to change)."""
    return make_dataset(tmp_path_factory)
