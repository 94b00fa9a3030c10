"""One behaviour suite for every pool backend and worker count (SPEC sections 1-3, 7).

Whatever runs the loader, the batches, their order, the ``rng`` values and the
resumable state must be those of the blocking ``DataGenerator``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from awkgen import DataGenerator, DataGeneratorMultiProc, DataGeneratorNonblock
from tests.conftest import as_array, big_array, identity, with_rng

ON_RAY = pytest.mark.ray  # runs on the session's local Ray cluster (tests/raycluster.py)
POOLS = [pytest.param(backend, n, id=f"{backend}-{n}", marks=[ON_RAY] if backend == "ray" else [])
         for backend, n in [("thread", 1), ("thread", 2), ("thread", 4), ("process", 1), ("process", 2),
                            ("process", 4), ("ray", 1), ("ray", 2)]]
BACKENDS = ["thread", "process", pytest.param("ray", marks=ON_RAY)]


def pool(loader, ids, backend, n_workers, **kwargs):
    return DataGeneratorMultiProc(loader, ids, n_workers=n_workers, backend=backend, **kwargs)


def assert_same_batch(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        if isinstance(left, tuple):
            assert_same_batch(left, right)
        else:
            np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("backend, n_workers", POOLS)
def test_same_sequence_as_the_blocking_generator(backend, n_workers):
    ids = list(range(23))
    labels = np.arange(23) % 3
    kwargs = dict(sample_cls=labels, batch_size=4, seed=17)
    reference = DataGenerator(as_array, ids, **kwargs)
    with pool(as_array, ids, backend, n_workers, **kwargs) as gen:
        for _ in range(3 * gen.steps_per_epoch + 2):
            assert_same_batch(gen(), reference())


@pytest.mark.parametrize("backend, n_workers", POOLS)
def test_same_rng_values_whatever_runs_the_loader(backend, n_workers):
    ids = np.arange(12)
    reference = DataGenerator(with_rng, ids, batch_size=5, seed=3)
    with pool(with_rng, ids, backend, n_workers, batch_size=5, seed=3) as gen:
        for _ in range(7):
            assert_same_batch(gen(), reference())


@pytest.mark.parametrize("backend, n_workers", POOLS)
def test_large_arrays_arrive_intact_through_shared_memory(backend, n_workers):
    ids = list(range(40))
    reference = DataGenerator(big_array, ids, batch_size=10, seed=1)
    with pool(big_array, ids, backend, n_workers, batch_size=10, seed=1) as gen:
        kept = [gen() for _ in range(9)]  # holding batches must not let slots be overwritten
        expected = [reference() for _ in range(9)]
        for got, want in zip(kept, expected):
            assert_same_batch(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_resumes_on_a_different_worker_count_and_backend(backend):
    ids = list(range(30))
    reference = DataGenerator(identity, ids, batch_size=4, seed=8)
    expected = [reference()[0] for _ in range(20)]
    with pool(identity, ids, backend, 3, batch_size=4, seed=8) as first:
        got = [first()[0] for _ in range(9)]
        state = first.state_dict()
    with pool(identity, ids, "process" if backend == "thread" else "thread", 1, batch_size=4) as second:
        second.load_state_dict(state)
        got += [second()[0] for _ in range(11)]
    assert got == expected


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_load_state_dict_mid_stream_discards_prefetched_batches(backend):
    ids = list(range(20))
    with pool(identity, ids, backend, 2, batch_size=3, seed=2, shuffle=False) as gen:
        state = gen.state_dict()
        first = [gen()[0] for _ in range(4)]
        gen.load_state_dict(state)  # batches 4.. were already prefetched; they must not leak out
        assert [gen()[0] for _ in range(4)] == first


def test_nonblock_is_multiproc_with_one_worker():
    ids = list(range(10))
    with DataGeneratorNonblock(identity, ids, batch_size=3, seed=5) as gen:
        assert gen.n_workers == 1 and gen.backend == "process"
        reference = DataGenerator(identity, ids, batch_size=3, seed=5)
        assert [gen()[0] for _ in range(8)] == [reference()[0] for _ in range(8)]


def test_defaults_n_workers_cpu_count_and_prefetch_two_per_worker():
    import os

    with DataGeneratorMultiProc(identity, list(range(10)), batch_size=2, backend="thread") as gen:
        assert gen.n_workers == len(os.sched_getaffinity(0))
        gen()
        stats = gen.stats()
        assert stats.ready + stats.in_flight <= 2 * gen.n_workers


def test_default_n_workers_follows_the_cpu_affinity_mask():
    import subprocess
    import sys

    script = ("import os, awkgen; os.sched_setaffinity(0, {0}); "
              "g = awkgen.DataGeneratorMultiProc(lambda ids: ids, [1, 2], batch_size=1); "
              "print(g.n_workers); g.close()")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_prefetch_bounds_the_batches_loaded_ahead(backend, tmp_path):
    log = tmp_path / "calls"

    def loader(ids, log=str(log)):
        with open(log, "a") as f:
            f.write(f"{ids[0]}\n")
        return ids

    with pool(loader, list(range(100)), backend, 2, batch_size=1, prefetch=3, shuffle=False) as gen:
        gen()
        import time

        time.sleep(0.5)  # give workers every chance to run ahead
        calls = log.read_text().split()
        assert len(calls) <= 1 + 3  # the delivered batch plus the prefetch window


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_of_any_structure_come_back(backend):
    def loader(ids):
        arr = np.asarray(ids, dtype=np.float32)
        return {"image": np.repeat(arr[:, None], 20_000, 1), "meta": [str(i) for i in ids],
                "pair": (arr, arr.astype(np.int16)), "empty": np.zeros((0, 3))}

    reference = DataGenerator(loader, list(range(8)), batch_size=4, seed=0)
    with pool(loader, list(range(8)), backend, 2, batch_size=4, seed=0) as gen:
        for _ in range(3):
            (got,), (want,) = gen(), reference()
            np.testing.assert_array_equal(got["image"], want["image"])
            assert got["meta"] == want["meta"] and got["empty"].shape == (0, 3)
            assert got["pair"][1].dtype == np.int16
            np.testing.assert_array_equal(got["pair"][0], want["pair"][0])


def test_stats_tell_input_bound_from_compute_bound():
    import time

    def slow(ids):
        time.sleep(0.05)
        return ids

    with DataGeneratorMultiProc(slow, list(range(50)), batch_size=1, n_workers=1, backend="thread") as gen:
        for _ in range(6):
            gen()
        stats = gen.stats()
        assert stats.batches == 6 and stats.loader_s >= 6 * 0.05 * 0.9
        assert stats.verdict.startswith("input-bound")
    with DataGeneratorMultiProc(identity, list(range(50)), batch_size=1, n_workers=2, backend="thread") as gen:
        gen()
        for _ in range(5):
            time.sleep(0.05)  # the "training step" dominates
            gen()
        assert gen.stats().verdict.startswith("compute-bound")


# -- the launcher that keeps workers from re-running the caller's __main__ -------------------

def test_the_mainless_launcher_is_multiprocess_own_but_for_the_main_module():
    """_MainlessPopen._launch is a copy of multiprocess's with its first statement changed: a
    multiprocess release that changes any other statement fails here, to be mirrored."""
    import ast
    import inspect
    import textwrap

    from multiprocess import popen_forkserver

    from awkgen.executors.process import _MainlessPopen

    def statements(method):
        function = ast.parse(textwrap.dedent(inspect.getsource(method))).body[0]
        return [ast.dump(statement) for statement in function.body]

    theirs, ours = statements(popen_forkserver.Popen._launch), statements(_MainlessPopen._launch)
    assert ours[1:] == theirs[1:]
    assert "get_preparation_data" in theirs[0] and "init_main_from_path" in ours[0]


def test_the_worker_start_is_multiprocess_own_but_for_the_daemon_check():
    """_WorkerProcess.start is BaseProcess.start without the assertion that refuses children to
    daemonic processes (and with the module's globals named through the module)."""
    import ast
    import inspect
    import textwrap

    from multiprocess import process

    from awkgen.executors.process import _WorkerProcess

    def statements(method):
        function = ast.parse(textwrap.dedent(inspect.getsource(method))).body[0]
        body = [s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        return [ast.unparse(statement).replace("multiprocess.process.", "") for statement in body]

    theirs, ours = statements(process.BaseProcess.start), statements(_WorkerProcess.start)
    assert [s for s in theirs if "daemonic" not in s] == ours
    assert len(theirs) == len(ours) + 1


def _start_facts(ids):
    """What a worker found at its start: its pid and parent, who preloaded its code, its BLAS threads."""
    from threadpoolctl import threadpool_info

    from awkgen.executors import _worker

    time.sleep(0.02)  # slow enough for tasks to go breadth first: both workers usually answer
    threads = [pool["num_threads"] for pool in threadpool_info()]
    return np.array([os.getpid(), os.getppid(), _worker.PRELOADED_IN or 0, _worker.THREADPOOLS is not None,
                     max(threads, default=0), min(threads, default=0)])


def test_workers_fork_from_a_forkserver_that_preloaded_their_start():
    """The forkserver imported the worker's code and the process module (whose class a worker's
    process object names) and scanned the native thread pools before it forked: a worker's start
    is the fork and the loader's unpickling. A preload that fails (the forkserver swallows its
    ImportError) would leave every worker importing them anew, silently."""
    from multiprocess import forkserver

    from awkgen.executors.base import usable_cpus

    n_workers = 2
    with pool(_start_facts, list(range(8)), "process", n_workers, batch_size=1) as gen:
        facts = [gen()[0] for _ in range(8)]
        server = forkserver._forkserver._forkserver_pid
    for pid, parent, preloaded_in, scanned, most, least in (f.tolist() for f in facts):
        assert parent == server and preloaded_in == server, (pid, parent, preloaded_in, server)
        assert scanned
        assert most == least == max(1, usable_cpus() // n_workers)  # the scanned pools were capped


def test_workers_never_run_the_callers_main_script(tmp_path):
    import subprocess
    import sys

    marker = tmp_path / "runs.txt"
    script = tmp_path / "train.py"  # no `if __name__ == "__main__":` guard, on purpose
    script.write_text(
        "import os\n"
        f"open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "import awkgen\n"
        "gen = awkgen.DataGeneratorMultiProc(lambda ids: ids, list(range(8)), batch_size=2, n_workers=2)\n"
        "print(sorted(x for _ in range(4) for x in gen()[0]))\n"
        "gen(stop=True)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(marker.read_text().split()) == 1, "a worker ran the script's top level"
