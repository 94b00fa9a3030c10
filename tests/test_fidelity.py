"""Every batch equals the serial loader's result, on every backend and every transport route.

Hypothesis draws result trees (``tests/fidelity.py``: containers of every kind, arrays of
every dtype kind, layout, write flag, aliasing, ``awkgen.empty`` patterns) and the
generator's shape (workers, prefetch, batch size, a scratch array that makes results
outgrow their slot); each batch is compared with a serial call of the same loader on the
same ids (:func:`tests.fidelity.diff`), and every earlier batch still held is compared again
at the end (no slot reused while held). ``AWKGEN_ORACLE_EXAMPLES`` scales the run
(``make oracle`` runs thousands); a failure prints the falsifying example, and
``--hypothesis-seed`` replays a whole run.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import awkgen
from tests.fidelity import TreeLoader, diff, draw_recipe

EXAMPLES = int(os.environ.get("AWKGEN_ORACLE_EXAMPLES", "0"))
ROUTES: collections.Counter[str] = collections.Counter()  # how the process backend's results travelled
COUNTS: collections.Counter[str] = collections.Counter()


@st.composite
def recipes(draw: st.DrawFn) -> tuple:
    return draw_recipe(lambda n: draw(st.integers(0, n - 1)))


def run(backend: str, items: list, batch_size: int, n_workers: int, prefetch: int | None, outgrow: bool) -> None:
    loader = TreeLoader(outgrow=outgrow)
    with awkgen.DataGeneratorMultiProc(loader, items, batch_size=batch_size, n_workers=n_workers, backend=backend,
                                       prefetch=prefetch, shuffle=False) as gen:
        held = []
        steps = gen.steps_per_epoch
        for step in range(2 * steps):  # a second epoch reuses the slots of the first
            start = (step % steps) * batch_size
            ids = items[start:start + batch_size]
            (got,) = gen()
            want = loader(ids)
            problem = diff(want, got)
            assert problem is None, f"{backend}, batch {step}: {problem}"
            held.append((want, got, step))
        for want, got, step in held:  # nothing delivered was overwritten by a later batch
            problem = diff(want, got)
            assert problem is None, f"{backend}, batch {step} (checked again at the end): {problem}"
        ROUTES.update(getattr(gen._executor, "_routes", {}))
        COUNTS[backend] += 1
        COUNTS[f"{backend} batches"] += 2 * steps


def oracle_settings(examples: int):
    return settings(max_examples=EXAMPLES or examples, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


shapes = dict(items=st.lists(recipes(), min_size=1, max_size=10), batch_size=st.integers(1, 4),
              n_workers=st.integers(1, 3), prefetch=st.sampled_from([None, 1, 2, 5]), outgrow=st.booleans())


@oracle_settings(8)
@given(**shapes)
def test_thread_backend_batches_equal_the_serial_loaders(items, batch_size, n_workers, prefetch, outgrow):
    run("thread", items, min(batch_size, len(items)), n_workers, prefetch, outgrow)


BIG = ("array", "<f8", "C", 20_000, 4, False, False, False, False)  # 640 kB: the slot route
BIG_IN_PLACE = ("array", "<f4", "F", 20_000, 4, False, True, True, False)  # built with awkgen.empty


@oracle_settings(15)
@given(**shapes)
@example(items=[BIG] * 5, batch_size=1, n_workers=2, prefetch=None, outgrow=False)  # every route is taken:
@example(items=[(*BIG_IN_PLACE[:3], 500 * (i + 1), *BIG_IN_PLACE[4:]) for i in range(8)],  # test_..._every_route
         batch_size=1, n_workers=1, prefetch=None, outgrow=True)
@example(items=[("tuple", (BIG_IN_PLACE, ("scalar", 2), BIG), True)] * 4, batch_size=2, n_workers=2, prefetch=1,
         outgrow=False)
def test_process_backend_batches_equal_the_serial_loaders(items, batch_size, n_workers, prefetch, outgrow):
    run("process", items, min(batch_size, len(items)), n_workers, prefetch, outgrow)


@pytest.mark.ray
@oracle_settings(3)
@given(**shapes)
def test_ray_backend_batches_equal_the_serial_loaders(items, batch_size, n_workers, prefetch, outgrow):
    run("ray", items, min(batch_size, len(items)), min(n_workers, 2), prefetch, outgrow)


def test_the_oracle_run_took_every_route():
    """The process runs above went through every way a result travels (a check of the oracle itself)."""
    if not COUNTS["process"]:
        pytest.skip("run with the process-backend test above")
    print(f"\noracle: {dict(COUNTS)}; process routes: {dict(ROUTES)}")
    assert {"blob", "slot", "in-place", "overflow to blob", "pickled"} <= set(ROUTES), dict(ROUTES)


# -- the rules the oracle found, pinned -------------------------------------------------------

def _fortran_readonly_twice(ids):
    k = int(np.asarray(ids)[0])
    f = np.asfortranarray(np.arange(40_000, dtype=np.float64).reshape(200, 200) + k)
    ro = np.full(30_000, k, dtype=np.int32)
    ro.flags.writeable = False
    return f, ro, f, [ro]


@pytest.mark.parametrize("backend", ["thread", "process", pytest.param("ray", marks=pytest.mark.ray)])
def test_order_write_flag_and_aliasing_survive_every_backend(backend):
    with awkgen.DataGeneratorMultiProc(_fortran_readonly_twice, np.arange(6), batch_size=1, n_workers=2,
                                       backend=backend, shuffle=False) as gen:
        for k in range(6):
            ((f, ro, f_again, (ro_again,)),) = gen()
            assert f.flags.f_contiguous and not f.flags.c_contiguous and f.flags.writeable
            assert (f == np.arange(40_000).reshape(200, 200) + k).all()
            assert not ro.flags.writeable and (ro == k).all()
            assert f_again is f and ro_again is ro


class _ExplodesInParent:
    """Unpickles in the worker, raises when rebuilt in the process that made the generator."""

    def __init__(self, host: int) -> None:
        self.host = host

    def __reduce__(self):
        return (_rebuild, (self.host,))


def _rebuild(host: int) -> _ExplodesInParent:
    if os.getpid() == host:
        raise RuntimeError("this result cannot be rebuilt here")
    return _ExplodesInParent(host)


class _UnrebuildableEveryOther:
    def __init__(self) -> None:
        self.host = os.getpid()  # the test's process, carried to the workers with the loader

    def __call__(self, ids):
        k = int(np.asarray(ids)[0])
        return (np.full(10, k), _ExplodesInParent(self.host) if k % 2 else None)


@pytest.mark.parametrize("backend", ["process", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_result_the_parent_cannot_rebuild_fails_its_batch_only(backend):
    with awkgen.DataGeneratorMultiProc(_UnrebuildableEveryOther(), np.arange(6), batch_size=1, n_workers=2,
                                       backend=backend, shuffle=False) as gen:
        for k in range(6):
            if k % 2:
                with pytest.raises(awkgen.LoaderError, match="cannot be rebuilt"):
                    gen()
            else:
                ((x, none),) = gen()
                assert (x == k).all() and none is None
