"""awkgen.empty: a loader builds its arrays straight in the batch's shared-memory slot.

On the process backend the arrays a loader gets from ``awkgen.empty`` lie in the slot
the parent reads (checked from inside the worker: their memory is the slot's
mapping), results arrive intact whatever mixes them with ordinary arrays, and a result
that outgrows the slot still arrives (copied). Elsewhere ``empty`` is ``numpy.empty``.
"""

from __future__ import annotations

import mmap

import numpy as np
import pytest

import awkgen
from awkgen import transport
from awkgen.executors._worker import _close_mapping

ROWS = 40_000  # 40_000 x 4 float32 = 640 KB per batch: well above the 64 KiB shared-memory threshold


def in_slot(array):
    """Whether *array*'s memory is a shared-memory slot's mapping (walks the base chain)."""
    base = array
    while True:
        if isinstance(base, np.ndarray):
            base = base.base
        elif isinstance(base, transport._ArenaOwner):  # what every carved array's base is
            base = base._bytes
        elif isinstance(base, memoryview):  # numpy 2 keeps a memoryview of the mapping
            base = base.obj
        else:
            return isinstance(base, mmap.mmap)


def built_in_place(ids):
    x = awkgen.empty((ROWS, 4), dtype=np.float32)
    x[:] = np.asarray(ids, dtype=np.float32)[0]
    return x, np.array(in_slot(x))


def mixed(ids):
    first = int(np.asarray(ids)[0])
    scratch = awkgen.empty(1000)  # taken from the slot, not returned
    scratch[:] = 1
    a = awkgen.empty((ROWS,), dtype=np.int64)
    a[:] = first
    b = np.full(ROWS // 2, first, dtype=np.int16)  # an ordinary array beside them
    return {"a": a, "b": b, "view": a[10:20], "n": first, "in_slot": in_slot(a)}


def outgrows_the_slot(ids):
    first = int(np.asarray(ids)[0])
    grow = first >= 6  # later batches are 16 times larger than the slots learned so far
    a = awkgen.empty(ROWS * (16 if grow else 1), dtype=np.float32)
    a[:] = first
    return a, np.full(ROWS * (16 if grow else 1), first, dtype=np.float32)


def fails_after_empty(ids):
    awkgen.empty((ROWS, 4))
    if int(np.asarray(ids)[0]) == 3:
        raise ValueError("three")
    return built_in_place(ids)


def test_outside_a_worker_empty_is_numpy_empty():
    a = awkgen.empty((3, 2), dtype="int32")
    assert type(a) is np.ndarray and a.shape == (3, 2) and a.dtype == np.int32 and not in_slot(a)
    assert awkgen.empty(4).dtype == np.float64
    assert awkgen.empty(0).size == 0
    assert awkgen.empty(2, dtype=object).dtype == object
    with pytest.raises(ValueError):
        awkgen.empty(-1)


def test_on_the_process_backend_arrays_are_built_in_the_slot():
    ids = np.arange(24)
    with awkgen.DataGeneratorMultiProc(built_in_place, ids, batch_size=2, n_workers=2, shuffle=False) as gen:
        flags = []
        for step in range(12):
            ((x, flag),) = gen()
            assert x.shape == (ROWS, 4) and (x == 2 * step).all()
            flags.append(bool(flag))
    assert flags[-4:] == [True] * 4, flags  # once slots exist, every batch was built in place


@pytest.mark.parametrize("backend", ["thread", "serial"])
def test_elsewhere_the_same_loader_gets_plain_arrays(backend):
    ids = np.arange(8)
    make = (lambda: awkgen.DataGenerator(built_in_place, ids, batch_size=2, shuffle=False)) if backend == "serial" \
        else (lambda: awkgen.DataGeneratorMultiProc(built_in_place, ids, batch_size=2, n_workers=2,
                                                    backend="thread", shuffle=False))
    with make() as gen:
        for step in range(4):
            ((x, flag),) = gen()
            assert (x == 2 * step).all() and not flag


def test_arrays_built_in_place_mix_with_ordinary_ones_and_views():
    with awkgen.DataGeneratorMultiProc(mixed, np.arange(30), batch_size=3, n_workers=2, shuffle=False) as gen:
        seen_in_slot = []
        for step in range(10):
            (out,) = gen()
            first = 3 * step
            assert out["n"] == first and (out["a"] == first).all() and (out["b"] == first).all()
            assert out["a"].dtype == np.int64 and out["b"].dtype == np.int16 and out["view"].shape == (10,)
            assert (out["view"] == first).all()
            out["a"][:] = -1  # arrays arrive writable, and writing one leaves the next batch alone
            seen_in_slot.append(out["in_slot"])
        assert seen_in_slot[-3:] == [True] * 3


def test_a_result_that_outgrows_its_slot_is_copied_and_arrives_intact():
    with awkgen.DataGeneratorMultiProc(outgrows_the_slot, np.arange(10), batch_size=1, n_workers=2,
                                       shuffle=False) as gen:
        for step in range(20):
            ((a, b),) = gen()
            n = ROWS * (16 if step % 10 >= 6 else 1)
            assert a.shape == b.shape == (n,) and (a == step % 10).all() and (b == step % 10).all()


def test_a_loader_error_after_empty_leaves_the_next_batches_right():
    with awkgen.DataGeneratorMultiProc(fails_after_empty, np.arange(6), batch_size=1, n_workers=1,
                                       shuffle=False) as gen:
        for step in range(6):
            if step == 3:
                with pytest.raises(awkgen.LoaderError, match="three"):
                    gen()
                continue
            ((x, _),) = gen()
            assert (x == step).all()


def test_a_slot_mapping_a_loader_kept_an_array_of_closes_later_without_error(tmp_path):
    path = str(tmp_path / "slot")
    with open(path, "wb") as f:
        f.truncate(mmap.PAGESIZE)
    kept = transport._Arena(transport.attach_segment(path), mmap.PAGESIZE)
    array = kept.carve((16,), np.dtype(np.float64))
    kept.close()
    _close_mapping(kept.buffer)  # a view is still alive: the mapping goes with it, no BufferError
    array[:] = 1.0
    assert array.sum() == 16.0
    assert kept.carve((1,), np.dtype(np.float64)) is None  # a closed arena hands out nothing


def test_carving_respects_capacity_and_alignment(tmp_path):
    path = str(tmp_path / "slot")
    with open(path, "wb") as f:
        f.truncate(4096)
    arena = transport._Arena(transport.attach_segment(path), 4096)
    a = arena.carve((3,), np.dtype(np.int8))
    b = arena.carve((4,), np.dtype(np.float64))
    assert arena.offset_of(a) == 0 and arena.offset_of(b) == 64 and arena.used == 128
    assert arena.offset_of(np.zeros(3)) is None and arena.offset_of(b[::2]) is None
    assert arena.carve((4096,), np.dtype(np.int8)) is None  # does not fit: the caller gets numpy.empty
    del a, b
    arena.close()
    arena.buffer.close()


R = 20_000  # float64 items per array: 160 kB, above the shared-memory threshold


def reorders(ids):
    """Scratch space, two empty arrays returned in another order than they were carved, and an
    ordinary array first: once the in-place layout outgrows the slot, the arrays must still
    arrive as built (a compact copy into the same slot once copied x over y's source)."""
    k = int(np.asarray(ids)[0])
    scratch = awkgen.empty(R * (k % 3))
    scratch[:] = -1
    y = awkgen.empty(R)
    y[:] = k + 0.5
    x = awkgen.empty(R)
    x[:] = k
    z = np.full(R, k + 0.25)
    return z, x, y


def test_arrays_built_in_place_survive_a_layout_that_outgrows_the_slot():
    with awkgen.DataGeneratorMultiProc(reorders, np.arange(30), batch_size=1, n_workers=1, shuffle=False) as gen:
        for k in range(30):
            ((z, x, y),) = gen()
            assert (z == k + 0.25).all() and (x == k).all() and (y == k + 0.5).all(), k


def keeps_one(ids, kept=[]):  # noqa: B006 - the cache is the point: an array kept past the call
    k = int(np.asarray(ids)[0])
    a = awkgen.empty(R)
    a[:] = k
    if k == 2:
        kept.append(a)
    if kept:
        kept[0][:] = -7  # writes into the slot batch 2 was carved from, on every later call
    return a


def test_an_array_kept_from_empty_never_corrupts_a_later_batch(caplog):
    with awkgen.DataGeneratorMultiProc(keeps_one, np.arange(40), batch_size=1, n_workers=1, shuffle=False,
                                       prefetch=2) as gen:
        got = [gen()[0] for _ in range(40)]  # held, so the parent keeps leasing fresh and reused slots
        want = [-7.0 if k == 2 else float(k) for k in range(40)]  # batch 2: the loader's own write, as serially
        assert [float(a[0]) for a in got] == want
        assert all((a == w).all() for w, a in zip(want, got))
    assert "kept an array it got from awkgen.empty" in caplog.text


class _Stray:
    """A loader whose own thread calls awkgen.empty after the call that started it returned."""

    def __init__(self):
        self.thread = None

    def __call__(self, ids):
        import threading
        import time

        k = int(np.asarray(ids)[0])

        def late():
            time.sleep(0.05)
            late_array = awkgen.empty(R)  # during a later call: carved from that call's slot
            late_array[:] = -1
            time.sleep(0.2)
            late_array[:] = -2

        if k % 4 == 0:
            self.thread = threading.Thread(target=late)
            self.thread.start()
        a = awkgen.empty(R)
        a[:] = k
        time.sleep(0.02)
        return a


def test_empty_from_a_thread_that_outlives_the_call_never_corrupts_a_batch():
    with awkgen.DataGeneratorMultiProc(_Stray(), np.arange(24), batch_size=1, n_workers=1, shuffle=False) as gen:
        got = [gen()[0] for _ in range(24)]
        assert all((a == k).all() for k, a in enumerate(got)), [float(a[0]) for a in got]


@pytest.mark.parametrize("args", [
    ((2, 3), ("f4", (3,))),  # a sub-array dtype adds axes
    ((2, 3.0), float), ("99", float), (2**63, float), ((-1,), float), ((2, 2), "no such dtype"),
    ((2, 2), float, "Z"), ((3, 4), np.int16, "F"), ((0, 5), float), ((), np.uint8),
])
def test_empty_in_a_worker_behaves_as_numpy_empty(args):
    """The same call gives the same shape, dtype and layout, or the same exception type,
    in a worker that holds a slot as in numpy.empty."""

    def outcome(call):
        try:
            a = call(*args)
        except Exception as exc:
            return type(exc)
        return a.shape, a.dtype, a.flags.c_contiguous, a.flags.f_contiguous

    def in_worker(ids, args=args):
        sized = awkgen.empty(10_000)  # the first batches teach the ring a slot size
        sized[:] = 0
        if int(np.asarray(ids)[0]) < 3:
            return sized, None
        return sized, outcome(awkgen.empty)

    want = outcome(np.empty)
    with awkgen.DataGeneratorMultiProc(in_worker, np.arange(6), batch_size=1, n_workers=1, shuffle=False) as gen:
        got = [gen()[0][1] for _ in range(6)][3:]
    assert got == [want] * 3
