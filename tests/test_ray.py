"""The ``"ray"`` backend on a real local Ray cluster: same batches, errors, deaths, timeouts, stop.

One cluster serves the whole session (the ``ray_cluster`` fixture of
``tests/raycluster.py``, shared with the backend-wide suites).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import numpy as np
import pytest

from awkgen import (
    DataGenerator,
    DataGeneratorMultiProc,
    GeneratorStoppedError,
    LoaderError,
    LoaderTimeoutError,
    WorkerDiedError,
)
from tests.conftest import identity, with_rng
from tests.leaks import pid_alive, wait_until
from tests.raycluster import MARK, failing, ids_and_pid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- loaders (module level: actors import them by reference) -----------------------------------

def slow_ids_and_pid(ids):
    time.sleep(0.05)
    return np.asarray(ids), os.getpid()


def exits(ids):
    if MARK in list(ids):
        os._exit(3)
    return np.asarray(ids)


def segfaults(ids):
    if MARK in list(ids):
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return np.asarray(ids)


def four_megabytes(ids):
    """~4 MB per batch, each row computable from its id."""
    ids = np.asarray(ids, dtype=np.float64)
    return {"x": ids[:, None] * 1e-3 + np.arange(125_000)[None, :], "ids": ids.astype(np.int64)}


# -- the cluster ------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("ray_cluster")


# -- the same batches as every other backend -------------------------------------------------------

@pytest.mark.parametrize("n_workers", [1, 2])
def test_ray_gives_the_same_batches_as_DataGenerator(n_workers):
    ids = list(range(23))
    labels = np.eye(4)[np.arange(23) % 4]
    kwargs = dict(sample_cls=labels, batch_size=5, seed=7)
    expected = DataGenerator(with_rng, ids, **kwargs)
    with DataGeneratorMultiProc(with_rng, ids, n_workers=n_workers, backend="ray", **kwargs) as gen:
        for _ in range(12):  # two epochs and a bit, each with a short last batch
            (x, noise), y = gen()
            (ex, enoise), ey = expected()
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(noise, enoise)  # the loader's rng does not depend on the backend
            np.testing.assert_array_equal(y, ey)
        assert (gen.epoch, gen.step) == (expected.epoch, expected.step) == (2, 2)


def test_state_dict_from_the_thread_backend_resumes_on_ray():
    ids = list(range(30))
    with DataGeneratorMultiProc(identity, ids, batch_size=4, seed=3, n_workers=2, backend="thread") as gen:
        for _ in range(5):
            gen()
        state = gen.state_dict()
        expected = [gen()[0] for _ in range(4)]
    with DataGeneratorMultiProc(identity, ids, batch_size=4, seed=3, n_workers=1, backend="ray") as gen:
        gen.load_state_dict(state)
        assert [gen()[0] for _ in range(4)] == expected


def test_several_megabyte_arrays_arrive_intact_and_writable():
    ids = list(range(24))
    with DataGeneratorMultiProc(four_megabytes, ids, batch_size=4, n_workers=2, backend="ray", seed=1) as gen:
        for _ in range(8):
            batch = gen()[0]
            x, batch_ids = batch["x"], batch["ids"]
            assert x.shape == (4, 125_000) and x.nbytes == 4_000_000
            np.testing.assert_array_equal(x, batch_ids[:, None] * 1e-3 + np.arange(125_000)[None, :])
            x += 1  # arrays arrive writable, as from every other backend
            assert set(batch_ids.tolist()) <= set(ids)


# -- failures: each fails its own batch, and the next call goes on ------------------------------------

def test_loader_error_is_a_LoaderError_caused_by_the_original_exception():
    ids = [1, 2, MARK, 4]
    with DataGeneratorMultiProc(failing, ids, batch_size=1, n_workers=2, backend="ray", shuffle=False) as gen:
        assert gen()[0].tolist() == [1]
        assert gen()[0].tolist() == [2]
        with pytest.raises(LoaderError, match=rf"ValueError: record {MARK} is corrupt.*ids \[{MARK}\]"
                           ) as info:
            gen()
        cause = info.value.__cause__
        assert type(cause) is ValueError and str(cause) == f"record {MARK} is corrupt"
        worker_side = "".join(traceback.format_exception(cause))
        assert "_parse_record" in worker_side and "in failing" in worker_side  # frames from the actor
        assert gen()[0].tolist() == [4]
        assert gen()[0].tolist() == [1]


def test_sigkilled_actor_raises_WorkerDiedError_naming_it_then_the_next_batch_comes():
    ids = [1, MARK, 3, 4]
    with DataGeneratorMultiProc(ids_and_pid, ids, batch_size=1, n_workers=1, prefetch=1, backend="ray",
                                shuffle=False) as gen:
        x, pid = gen()[0]
        assert x.tolist() == [1] and pid != os.getpid()
        # The actor is now loading the hanging batch [MARK] (prefetch=1).
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerDiedError, match=rf"Ray actor [0-9a-f]+ \(pid {pid}\) died: .*"
                                                  rf"replaced.*ids \[{MARK}\]"):
            gen()
        assert time.monotonic() - start < 10
        x, new_pid = gen()[0]
        assert x.tolist() == [3] and new_pid != pid
        assert gen()[0][0].tolist() == [4]


@pytest.mark.parametrize("loader", [exits, segfaults])
def test_an_actor_that_exits_or_crashes_raises_WorkerDiedError_then_the_next_batch_comes(loader):
    with DataGeneratorMultiProc(loader, [1, MARK, 3], batch_size=1, n_workers=1, backend="ray",
                                shuffle=False) as gen:
        assert gen()[0].tolist() == [1]
        with pytest.raises(WorkerDiedError, match=rf"Ray actor .* died: .*ids \[{MARK}\]"):
            gen()
        assert gen()[0].tolist() == [3]


def test_timeout_raises_LoaderTimeoutError_and_the_actor_is_killed_and_replaced():
    ids = [1, MARK, 3]
    with DataGeneratorMultiProc(ids_and_pid, ids, batch_size=1, n_workers=1, prefetch=1, backend="ray",
                                shuffle=False, timeout=1.5) as gen:
        _, pid = gen()[0]
        start = time.monotonic()
        with pytest.raises(LoaderTimeoutError, match=rf"timeout=1.5 s; Ray actor [0-9a-f]+ \(pid {pid}\) was "
                                                     rf"killed and replaced.*ids \[{MARK}\]"):
            gen()
        assert 1.5 <= time.monotonic() - start < 10
        assert wait_until(lambda: not pid_alive(pid), within_s=10), "the timed-out actor's process still runs"
        x, new_pid = gen()[0]
        assert x.tolist() == [3] and new_pid != pid


# -- lifecycle -------------------------------------------------------------------------------------------

def test_stop_kills_every_actor():
    gen = DataGeneratorMultiProc(slow_ids_and_pid, list(range(40)), batch_size=2, n_workers=2, backend="ray")
    pids = {gen()[0][1] for _ in range(12)}
    assert len(pids) == 2, f"expected both actors to have loaded batches; pids seen: {pids}"
    gen(stop=True)
    gen.close()  # idempotent
    with pytest.raises(GeneratorStoppedError):
        gen()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), within_s=10), \
        f"actor processes still alive after stop: {[p for p in pids if pid_alive(p)]}"


def test_a_dropped_generator_is_collected_and_its_actors_killed():
    gen = DataGeneratorMultiProc(ids_and_pid, [1, 2, 3, 4], batch_size=1, n_workers=1, backend="ray")
    _, pid = gen()[0]
    del gen
    gc.collect()
    assert wait_until(lambda: not pid_alive(pid), within_s=10), "a collected generator left its actor running"


def test_a_loader_that_cannot_be_pickled_is_refused_at_construction():
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"loader must be picklable to run in Ray actors.*backend='thread'"):
        DataGeneratorMultiProc(lambda ids: (lock, ids), [1, 2], batch_size=1, n_workers=1, backend="ray")


# -- which cluster ------------------------------------------------------------------------------------------

def test_address_of_the_cluster_this_process_uses_is_accepted_and_another_refused(ray_cluster):
    with DataGeneratorMultiProc(identity, [1, 2, 3], batch_size=2, n_workers=1, backend="ray",
                                shuffle=False, address=ray_cluster) as gen:
        assert gen()[0] == [1, 2]
    with pytest.raises(ValueError, match=r"address must name the Ray cluster this process is already "
                                         r"connected to .*received: address='127.0.0.1:1'"):
        DataGeneratorMultiProc(identity, [1, 2], batch_size=1, n_workers=1, backend="ray", address="127.0.0.1:1")


SECOND_DRIVER = textwrap.dedent("""
    import os, sys, time
    import ray
    from awkgen import DataGeneratorMultiProc

    address = sys.argv[1]
    # 1. address= connects this fresh process to the running cluster (it starts none).
    with DataGeneratorMultiProc(lambda ids: [i * 10 for i in ids], [1, 2, 3], batch_size=3, n_workers=1,
                                backend="ray", shuffle=False, address=address) as gen:
        assert gen()[0] == [10, 20, 30]
    assert ray.get_runtime_context().gcs_address == address, ray.get_runtime_context().gcs_address
    ray.shutdown()
    # 2. So does RAY_ADDRESS, with no argument at all.
    os.environ["RAY_ADDRESS"] = address
    gen = DataGeneratorMultiProc(lambda ids: os.getpid(), [4, 5], batch_size=1, n_workers=1, backend="ray")
    assert ray.get_runtime_context().gcs_address == address
    print("second driver ok, actor pid", gen()[0], flush=True)
    time.sleep(120)  # until the test kills this process
""")


def test_address_and_RAY_ADDRESS_connect_another_process_and_its_actors_die_with_it(ray_cluster):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", SECOND_DRIVER, ray_cluster], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline()
        driver.kill()  # SIGKILL: no close(), no exit hook
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
        driver.wait()
    assert line.startswith("second driver ok, actor pid "), line + err
    assert "Started a local Ray instance" not in err  # it joined ours
    actor_pid = int(line.split()[-1])
    assert wait_until(lambda: not pid_alive(actor_pid), within_s=10), "Ray kept a dead driver's actor"


# -- ray is optional ----------------------------------------------------------------------------------------

def test_without_ray_the_backend_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds when ray is not installed
    with pytest.raises(ImportError, match=r'pip install "awkgen\[ray\]"'):
        DataGeneratorMultiProc(identity, [1, 2], batch_size=1, n_workers=1, backend="ray")


def test_importing_awkgen_does_not_import_ray():
    code = "import sys, awkgen; import awkgen.executors.ray; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stdout + proc.stderr
