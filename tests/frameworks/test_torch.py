"""PyTorchDataGenerator against a real DataLoader, and as_torch training a real torch model."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import awkgen
from awkgen.datasets import load_digits_batch
from awkgen.frameworks import PyTorchDataGenerator, as_torch
from tests.conftest import as_array


def make_loader(n=10, batch_size=4, shuffle=False):
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return DataLoader(TensorDataset(x, torch.arange(n) * 10), batch_size=batch_size, shuffle=shuffle)


def test_a_finite_dataloader_restarts_and_batches_come_back_as_numpy():
    gen = PyTorchDataGenerator(make_loader(), size=10, batch_size=4)
    labels = [gen.get_batch()[1].tolist() for _ in range(4)]
    assert labels == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90], [0, 10, 20, 30]]
    x, y = gen.get_batch()
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (4, 1)
    assert isinstance(y, np.ndarray) and y.dtype == np.int64


def test_a_shuffled_dataloader_gives_every_sample_once_per_pass():
    gen = PyTorchDataGenerator(make_loader(shuffle=True), size=10, batch_size=4)
    for _ in range(2):
        labels = np.concatenate([gen.get_batch()[1] for _ in range(3)])
        assert sorted(labels.tolist()) == list(range(0, 100, 10))


def test_tensors_with_gradients_are_detached():
    x = torch.ones(4, 2, requires_grad=True)
    loader = DataLoader(TensorDataset(x * 2, torch.zeros(4)), batch_size=2)
    assert PyTorchDataGenerator(loader, size=4, batch_size=2).get_batch()[0].tolist() == [[2, 2], [2, 2]]


def test_only_a_dataloader_is_accepted_and_an_empty_one_is_refused():
    with pytest.raises(TypeError, match=r"Expected iterator to be a torch.utils.data.DataLoader. Received: \[1, 2\]"):
        PyTorchDataGenerator([1, 2], size=2, batch_size=1)
    empty = DataLoader(TensorDataset(torch.zeros(0, 1)), batch_size=1)
    with pytest.raises(ValueError, match="Expected the DataLoader to yield at least one batch per pass"):
        PyTorchDataGenerator(empty, size=1, batch_size=1).get_batch()


def test_as_torch_gives_one_epoch_of_tensors_per_pass():
    with awkgen.DataGenerator(as_array, np.arange(7), np.arange(7) * 10, batch_size=3, shuffle=False) as gen:
        data = gen.as_torch()
        assert isinstance(data, torch.utils.data.IterableDataset) and len(data) == 3
        first = [(x, y) for x, y in data]
        assert all(isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) for x, y in first)
        assert [y.tolist() for _, y in first] == [[0, 10, 20], [30, 40, 50], [60]]
        x, _ = next(iter(data))  # leaving a pass early loses nothing: the next pass finishes that epoch
        assert x.tolist() == [0, 1, 2]
        assert [y.tolist() for _, y in DataLoader(data, batch_size=None)] == [[30, 40, 50], [60]]
        assert (gen.epoch, gen.step) == (2, 0)  # so the pass after starts at an epoch boundary
        assert [y.tolist() for _, y in data] == [[0, 10, 20], [30, 40, 50], [60]]


def test_after_a_break_the_next_pass_ends_with_the_epoch():
    """The issue's case: ids 0..9 in batches of 2, a loop that breaks after two batches."""
    with awkgen.DataGenerator(as_array, np.arange(10), batch_size=2, shuffle=False) as gen:
        data = gen.as_torch()
        for i, _batch in enumerate(data):
            if i == 1:
                break
        assert [x.tolist() for x, in data] == [[4, 5], [6, 7], [8, 9]]  # not [0, 1], [2, 3] of the next epoch
        assert [x.tolist() for x, in data] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        assert len(data) == 5


@pytest.mark.parametrize("batch_size, message", [
    (8, r"DataLoader\(gen.as_torch\(\), batch_size=8\) would stack 8 of awkgen's batches"),
    (1, r"default batch_size=1, which would add a dimension of 1"),
])
def test_as_torch_refuses_a_dataloader_that_would_stack_batches(batch_size, message):
    with awkgen.DataGenerator(as_array, np.arange(20), batch_size=2, shuffle=False) as gen:
        loader = DataLoader(gen.as_torch()) if batch_size == 1 else DataLoader(gen.as_torch(), batch_size=batch_size)
        with pytest.raises(ValueError, match=message) as info:
            next(iter(loader))
        assert "batch_size=None" in str(info.value)
        assert (gen.epoch, gen.step) == (0, 0)  # refused before a batch was taken
        assert [x.tolist() for x, in DataLoader(gen.as_torch(), batch_size=None)][:2] == [[0, 1], [2, 3]]


def test_as_torch_refuses_dataloader_workers():
    with awkgen.DataGenerator(as_array, np.arange(4), batch_size=2) as gen:
        loader = DataLoader(as_torch(gen), batch_size=None, num_workers=1, multiprocessing_context="fork")
        batches = iter(loader)
        with pytest.raises(RuntimeError, match="awkgen already loads in its own workers") as info:
            next(batches)
        del info, batches  # the traceback holds the DataLoader iterator; dropping it stops its worker
        gc.collect()


@pytest.fixture
def one_torch_thread():
    """Tiny models train faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_as_torch_trains_a_real_model_on_digits_from_files(digits, one_torch_thread):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with awkgen.DataGeneratorMultiProc(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=64,
                                       n_workers=2, seed=0) as gen:
        data = gen.as_torch()
        for _ in range(3):
            for x, y in data:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
        assert (gen.epoch, gen.step) == (3, 0)
    with torch.no_grad():
        predicted = model(torch.from_numpy(digits.x_test)).argmax(dim=1).numpy()
    assert (predicted == digits.y_test).mean() > 0.5
