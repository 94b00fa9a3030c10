"""Ids and labels are never materialised: range, numpy arrays (memory-mapped too) and any
collections.abc.Sequence are indexed per batch, in the parent, and only a batch's ids travel.

Also the order's promises at sizes where the Feistel network orders (more than
``EXACT_MAX`` ids): the same batches for every backend and worker count, exact resume.
"""

from __future__ import annotations

import collections.abc
import json

import numpy as np
import pytest

from awkgen import DataGenerator, DataGeneratorMultiProc
from awkgen.sampling import EXACT_MAX
from tests.conftest import as_array, identity


class Unshippable(collections.abc.Sequence):
    """A billion ids that refuse to be iterated or pickled, and count the ones read."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise IndexError(f"integer index in range expected; received {i!r}")
        self.read += 1
        return f"sample/{i:010d}.png"

    def __iter__(self):
        raise AssertionError("the ids were iterated whole")

    def __reduce__(self):
        raise TypeError("the ids were pickled whole")


def _rss_anon() -> int:
    """This process's anonymous resident memory, bytes (mapped files' pages not counted)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _paths(ids):
    return [p.upper() for p in ids]


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_a_sequence_of_a_billion_ids_is_read_per_batch_and_never_shipped(backend):
    ids = Unshippable(10**9)
    kwargs = {} if backend == "serial" else {"n_workers": 2, "backend": backend, "prefetch": 3}
    factory = DataGenerator if backend == "serial" else DataGeneratorMultiProc
    with factory(_paths, ids, batch_size=8, seed=1, **kwargs) as gen:
        batches = [gen()[0] for _ in range(5)]
    assert all(len(b) == 8 and all(p.startswith("SAMPLE/") for p in b) for b in batches)
    assert len({p for b in batches for p in b}) == 40
    assert ids.read <= 8 * (5 + 3)  # the batches delivered and those prefetched: nothing else was read


def test_a_range_of_a_trillion_ids_is_not_materialised():
    gen = DataGenerator(identity, range(10**12), batch_size=4, shuffle=False)
    assert gen() == ([0, 1, 2, 3],) and gen.steps_per_epoch == 250_000_000_000
    gen = DataGenerator(identity, range(5, 5 + 3 * 10**12, 3), batch_size=4, seed=0)
    (x,) = gen()
    assert len(set(x)) == 4 and all(5 <= i < 5 + 3 * 10**12 and i % 3 == 2 for i in x)


def test_memory_mapped_ids_and_one_hot_labels_stay_on_disk(tmp_path):
    """10^8 ids and 10^8 one-hot rows, memory-mapped: no copy of either, no permutation of 10^8 positions
    (800 MB) in memory; the loader gets a plain array of the batch's ids."""
    n = 10**8
    ids = np.lib.format.open_memmap(tmp_path / "ids.npy", mode="w+", dtype=np.int64, shape=(n,))
    ids[-5:] = np.arange(n - 5, n)  # the rest is a hole in a sparse file: zeros, no disk space
    del ids
    onehot = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.uint8, shape=(n, 4))
    onehot[-5:, 1] = 1
    del onehot
    ids = np.load(tmp_path / "ids.npy", mmap_mode="r")
    labels = np.load(tmp_path / "y.npy", mmap_mode="r")
    before = _rss_anon()
    seen = []
    gen = DataGenerator(lambda batch: seen.append(type(batch)) or batch * 2, ids, labels, batch_size=256, seed=3)
    for _ in range(200):
        x, y = gen()
        assert x.shape == (256,) and y.shape == (256, 4)
    grown = _rss_anon() - before
    assert grown < 100 * 2**20, f"anonymous memory grew by {grown / 2**20:.0f} MiB"
    assert set(seen) == {np.ndarray}
    tail = DataGenerator(identity, ids, labels, batch_size=5, shuffle=False)
    tail.load_state_dict({**tail.state_dict(), "step": n // 5 - 1})
    x, y = tail()
    assert x.tolist() == list(range(n - 5, n)) and y.tolist() == [[0, 1, 0, 0]] * 5


N_BIG = 3 * EXACT_MAX + 11  # ordered by the Feistel network, over several chunks


def _reference(count: int) -> list[np.ndarray]:
    gen = DataGenerator(as_array, np.arange(N_BIG) * 10, batch_size=40_000, seed=11)
    return [gen()[0] for _ in range(count)]


@pytest.mark.parametrize(("backend", "n_workers"), [("thread", 3), ("process", 2)])
def test_every_backend_and_worker_count_gives_the_same_batches_above_exact_max(backend, n_workers):
    expected = _reference(12)  # 5 steps an epoch: three epochs
    with DataGeneratorMultiProc(as_array, np.arange(N_BIG) * 10, batch_size=40_000, n_workers=n_workers,
                                backend=backend, seed=11) as gen:
        got = [gen()[0] for _ in range(12)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    epoch = np.concatenate(got[:5])
    assert len(np.unique(epoch)) == N_BIG and not np.array_equal(got[0], got[5])


def test_resume_above_exact_max_continues_exactly_across_backends():
    expected = _reference(9)
    with DataGeneratorMultiProc(as_array, np.arange(N_BIG) * 10, batch_size=40_000, n_workers=2,
                                backend="process", seed=11) as gen:
        for _ in range(4):
            gen()
        state = json.loads(json.dumps(gen.state_dict()))
    with DataGeneratorMultiProc(as_array, np.arange(N_BIG) * 10, batch_size=40_000, n_workers=1,
                                backend="thread", seed=0) as again:
        again.load_state_dict(state)
        got = [again()[0] for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected[4:]))


def test_a_state_from_before_the_feistel_order_is_refused_only_where_the_order_changed():
    big = DataGenerator(identity, range(N_BIG), batch_size=10, seed=2)
    old = {**big.state_dict(), "awkgen_state": 1}
    with pytest.raises(ValueError, match=r"older awkgen \(awkgen_state=1\).*'epoch': state\['epoch'\] \+ 1"):
        big.load_state_dict(old)
    big.load_state_dict({**old, "awkgen_state": 2, "epoch": 1, "step": 0})  # the way on the message gives
    assert (big.epoch, big.step) == (1, 0)
    unshuffled = DataGenerator(identity, range(N_BIG), batch_size=10, shuffle=False)
    unshuffled.load_state_dict({**unshuffled.state_dict(), "awkgen_state": 1, "step": 3})
    assert unshuffled() == ([30, 31, 32, 33, 34, 35, 36, 37, 38, 39],)
    small = DataGenerator(identity, list(range(100)), batch_size=10, seed=2)
    expected = DataGenerator(identity, list(range(100)), batch_size=10, seed=2)
    small.load_state_dict({**small.state_dict(), "awkgen_state": 1, "step": 4})
    assert small() == tuple(expected() for _ in range(5))[-1]
