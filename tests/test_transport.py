"""The shared-memory ring: bounded, reused, safe for batches a caller keeps, and falling
back to pickling, with a warning, when the tmpfs is too small (a real tiny tmpfs here)."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import warnings

import numpy as np
import pytest

from awkgen import DataGenerator, DataGeneratorMultiProc
from tests.conftest import big_array
from tests.leaks import awkgen_segments


def big_float32(ids):
    """40 MB per batch of 10 ids."""
    return np.repeat(np.asarray(ids, dtype=np.float32)[:, None], 1_000_000, axis=1)


@pytest.fixture
def tiny_tmpfs(tmp_path, monkeypatch):
    """Mount a real tmpfs of the requested size and point AWKGEN_SHM_DIR at it."""
    mounted = []

    def make(size_mb: int) -> str:
        target = tmp_path / f"shm{size_mb}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(target)], check=True)
        mounted.append(target)
        monkeypatch.setenv("AWKGEN_SHM_DIR", str(target))
        return str(target)

    yield make
    gc.collect()
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=True)


def test_slots_are_reused_so_shared_memory_stays_bounded():
    with DataGeneratorMultiProc(big_array, list(range(1000)), batch_size=10, n_workers=2, prefetch=4) as gen:
        most = 0
        for _ in range(150):
            gen()
            most = max(most, len(awkgen_segments(os.getpid())))
        assert 1 <= most <= 4 + 2  # the prefetch window, plus the batch being consumed and one growing


def test_kept_batches_are_never_overwritten_and_freed_slots_come_back():
    ids = list(range(200))
    reference = DataGenerator(big_array, ids, batch_size=10, seed=6)
    with DataGeneratorMultiProc(big_array, ids, batch_size=10, n_workers=2, prefetch=2, seed=6) as gen:
        kept = [gen()[0] for _ in range(12)]
        grown = len(awkgen_segments(os.getpid()))
        assert grown >= 12 - 2  # each kept batch holds its slot (the first prefetch window is pickled)
        for arr in kept:
            np.testing.assert_array_equal(arr, reference()[0])
        del kept, arr
        gc.collect()
        for _ in range(30):
            gen()
        # freed slots were reused: without reuse there would be 30 more
        assert len(awkgen_segments(os.getpid())) <= grown + 2


def test_a_tmpfs_with_too_little_room_warns_and_falls_back_to_pickling(tiny_tmpfs):
    directory = tiny_tmpfs(16)
    ids = list(range(40))
    reference = DataGenerator(big_array, ids, batch_size=10, seed=2)
    with pytest.warns(RuntimeWarning, match=r"has only 16 MiB free; batches will be pickled"):
        gen = DataGeneratorMultiProc(big_array, ids, batch_size=10, n_workers=2, seed=2)
    with gen:
        for _ in range(8):
            np.testing.assert_array_equal(gen()[0], reference()[0])
        assert os.listdir(directory) == []


def test_a_batch_the_tmpfs_cannot_hold_falls_back_instead_of_crashing_a_worker(tiny_tmpfs):
    directory = tiny_tmpfs(100)  # room for two 40 MB slots, not for the prefetch window
    ids = list(range(60))
    reference = DataGenerator(big_float32, ids, batch_size=10, seed=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with DataGeneratorMultiProc(big_float32, ids, batch_size=10, n_workers=2, prefetch=4, seed=3) as gen:
            for _ in range(8):
                np.testing.assert_array_equal(gen()[0], reference()[0])
    assert any("could not hold a" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert os.listdir(directory) == []


def test_segments_live_in_awkgen_shm_dir_while_in_use(tiny_tmpfs):
    directory = tiny_tmpfs(128)
    with DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=1) as gen:
        for _ in range(4):
            gen()
        assert any(name.startswith(f"awkgen-{os.getpid()}-") for name in os.listdir(directory))
    assert os.listdir(directory) == []


def one_outlier(ids):
    """1 MiB batches, but 48 MiB for the batch holding id 5."""
    n = 48 * 2**20 if 5 in ids else 2**20
    return np.full(n // 8, ids[0], dtype=np.float64)


def test_one_huge_batch_does_not_pin_its_size_in_every_slot(tiny_tmpfs):
    directory = tiny_tmpfs(512)

    def pinned() -> int:
        return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))

    with DataGeneratorMultiProc(one_outlier, list(range(200)), batch_size=1, n_workers=2, prefetch=4,
                                shuffle=False) as gen:
        peak = 0
        for step in range(120):
            (x,) = gen()
            assert x[0] == step
            del x
            peak = max(peak, pinned())
        assert peak > 48 * 2**20  # the outlier did go through shared memory
        assert pinned() < 16 * 2**20, f"{pinned() / 2**20:.0f} MiB of slots still pinned after the outlier"


@pytest.mark.parametrize("make", ["missing", "a file", "read-only"])
def test_an_unusable_awkgen_shm_dir_warns_naming_it_and_batches_still_arrive(tmp_path, monkeypatch, make):
    target = tmp_path / "shm"
    if make == "a file":
        target.write_bytes(b"")
    elif make == "read-only":
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,ro", "tmpfs", str(target)], check=True)
    monkeypatch.setenv("AWKGEN_SHM_DIR", str(target))
    try:
        with pytest.warns(RuntimeWarning, match=re.escape(str(target))):
            gen = DataGeneratorMultiProc(big_array, list(range(20)), batch_size=10, n_workers=1, shuffle=False)
        with gen:
            assert [float(gen()[0][0, 0]) for _ in range(3)] == [0.0, 10.0, 0.0]
    finally:
        if make == "read-only":
            subprocess.run(["umount", "-l", str(target)], check=True)


def forty_eight_mib(ids):
    """A fresh 48 MiB float32 array per batch, as a loader that allocates its output."""
    return np.full(12 * 2**20, float(ids[0]), dtype=np.float32)


def _rss_anon_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon in /proc/{pid}/status")


def test_a_worker_holds_one_batch_of_heap_once_its_first_batch_went_pickled():
    """The first batch travels in a blob (no slot is sized before a first result): the worker
    then held the loader's array and its copy at once, and kept that heap (two batches) for
    its life. It gives the heap back after such a reply: one batch, the loader's array, is
    what stays, as the memory bound (prefetch + workers + 1 held) counts it."""
    batch = 48 * 2**20
    with DataGeneratorMultiProc(forty_eight_mib, list(range(64)), batch_size=1, n_workers=1, prefetch=2,
                                shuffle=False) as gen:
        for _ in range(6):
            gen()
        assert gen._executor._routes["blob"] == 1 and gen._executor._routes["slot"] >= 5  # (and prefetched ones)
        [worker] = gen._executor._workers
        anon = _rss_anon_of(worker.proc.pid)
    # The worker's own footprint (interpreter, numpy, this test module) is 20-30 MiB; holding
    # two batches it was above 120 MiB.
    assert anon < 2 * batch, f"the worker holds {anon / 2**20:.0f} MiB of anonymous memory"
