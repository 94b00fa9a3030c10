"""The ``"ray"`` backend on a real local Ray cluster: same batches, errors, deaths, timeouts, stop.

One cluster serves the whole session (the ``ray_cluster`` fixture of
``tests/raycluster.py``, shared with the backend-wide suites).
"""

from __future__ import annotations

import gc
import os
import re
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
from tests.leaks import awkgen_segments, pid_alive, wait_until
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
        assert 1.4 <= time.monotonic() - start < 10  # the clock starts at dispatch, inside the previous gen()
        assert wait_until(lambda: not pid_alive(pid), within_s=10), "the timed-out actor's process still runs"
        x, new_pid = gen()[0]
        assert x.tolist() == [3] and new_pid != pid


class SlowToSend:
    """Part of a result: pickling it (in the actor, as Ray sends the result) says so in a file,
    then takes a minute, so a test can kill the actor in the middle of the transfer."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        with open(self.marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(self.marker + ".tmp", self.marker)
        time.sleep(60)
        return (SlowToSend, (self.marker,))


def one_megabyte_then_stuck_sending_id_1(ids, marker):
    x = np.full(125_000, ids[0], dtype=np.float64)
    return (x, SlowToSend(marker)) if ids[0] == 1 else (x, None)


def test_an_actor_killed_while_sending_its_result_fails_only_that_batch_within_seconds(tmp_path):
    import functools

    marker = str(tmp_path / "sending")
    loader = functools.partial(one_megabyte_then_stuck_sending_id_1, marker=marker)
    with DataGeneratorMultiProc(loader, list(range(5)), batch_size=1, n_workers=1, prefetch=1, backend="ray",
                                shuffle=False) as gen:
        assert gen()[0][0][0] == 0
        assert wait_until(lambda: os.path.exists(marker), within_s=30), "the actor never began to send batch 1"
        pid = int(open(marker).read())
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerDiedError, match=rf"\(pid {pid}\) died: .*replaced.*ids \[1\]"):
            gen()
        assert time.monotonic() - start < 10
        for i in (2, 3, 4):  # nothing lost: the stream goes on, each batch intact
            x, extra = gen()[0]
            assert extra is None and x.shape == (125_000,) and (x == i).all()
        assert wait_until(lambda: not pid_alive(pid), within_s=10)


SMALL_STORE_DRIVER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import ray
    import awkgen

    # A cluster of its own (the session's has the default store): 80 MiB of object store,
    # batches of 100 MB, two in flight; Ray must fall back to memory outside the store.
    ray.init(address="local", num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False,
             log_to_driver=False, _temp_dir=sys.argv[1])

    def big(ids):
        return np.full(12_500_000, ids[0], dtype=np.float64), os.getpid()

    gen = awkgen.DataGeneratorMultiProc(big, list(range(8)), batch_size=1, n_workers=2, backend="ray",
                                        shuffle=False, prefetch=2)
    pids, got = set(), []
    for _ in range(6):
        x, pid = gen()[0]
        got.append(float(x[0]) if (x == x[0]).all() and x.shape == (12_500_000,) else "damaged")
        pids.add(pid)
    print("GOT", got)
    print("ACTORS", sorted(pids), flush=True)
    print("ROUTES", dict(gen._executor._routes), flush=True)
    print("PID", os.getpid(), flush=True)
    # and exits without stop(), close() or ray.shutdown()
""")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:  # gone meanwhile
                pass
    return found


def test_a_small_object_store_loses_nothing_and_a_driver_exiting_without_stop_leaves_nothing():
    import ast
    import shutil
    import tempfile

    session = tempfile.mkdtemp(prefix="awkray-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", SMALL_STORE_DRIVER, session], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        took = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        assert ast.literal_eval(lines["GOT"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], proc.stdout
        actors = ast.literal_eval(lines["ACTORS"])
        assert len(actors) == 2, proc.stdout
        # the first batches through the store, then the driver's slots: none left once it exited
        assert ast.literal_eval(lines["ROUTES"]).get("slot", 0) >= 1, proc.stdout
        assert awkgen_segments(int(lines["PID"])) == set()
        assert took < 90, f"the driver took {took:.0f} s"
        # Ray's exit hook stopped the cluster it started; awkgen's actors went with it.
        assert wait_until(lambda: not any(pid_alive(p) for p in actors), within_s=20), actors
        assert wait_until(lambda: not _processes_mentioning(session), within_s=20), _processes_mentioning(session)
    finally:
        shutil.rmtree(session, ignore_errors=True)


OTHER_AWKGEN_DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])  # this driver runs the checkout; its cluster's workers find PYTHONPATH's copy
    import ray
    import awkgen

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
    gen = awkgen.DataGeneratorMultiProc(lambda ids: ids, [1, 2, 3], batch_size=1, n_workers=1, backend="ray")
    for _ in range(2):
        start = time.monotonic()
        try:
            gen()
            print("BATCH", flush=True)
        except awkgen.AwkgenError as exc:
            print("ERROR", repr((type(exc).__name__, str(exc), time.monotonic() - start)), flush=True)
""")


def test_actors_running_another_awkgen_fail_with_a_worker_start_error_naming_both(tmp_path):
    import ast
    import shutil
    import tempfile

    copy = tmp_path / "other"
    shutil.copytree(os.path.join(ROOT, "awkgen"), copy / "awkgen", ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "awkgen" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "old-'))
    session = tempfile.mkdtemp(prefix="awkray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(copy)
    try:
        proc = subprocess.run([sys.executable, "-c", OTHER_AWKGEN_DRIVER, session, ROOT], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        errors = [ast.literal_eval(line[6:]) for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
        assert len(errors) == 2 and "BATCH" not in proc.stdout, proc.stdout + proc.stderr[-3000:]
        for name, message, seconds in errors:
            assert name == "WorkerStartError" and seconds < 30, (name, message, seconds)
            assert re.search(r"Ray actors .* run another awkgen than this process: they run awkgen old-\S+ from "
                             r"\S*other/awkgen .*this process runs awkgen", message), message
    finally:
        shutil.rmtree(session, ignore_errors=True)


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


# -- quick loaders: several tasks in one actor call ----------------------------------------------------

def _epoch(gen, n):
    """*n* calls of *gen*: each batch's ids, or the type of the error raised in its place."""
    out = []
    for _ in range(n):
        try:
            out.append(np.asarray(gen()[0]).tolist())
        except (LoaderError, WorkerDiedError, LoaderTimeoutError) as err:
            out.append(type(err).__name__)
    return out


QUICK_IDS = [*range(30), MARK, *range(30, 60)]


def test_quick_loader_calls_are_coalesced_and_a_failing_one_fails_only_its_batch():
    expected = [[i] if i != MARK else "LoaderError" for i in QUICK_IDS]
    with DataGeneratorMultiProc(failing, QUICK_IDS, batch_size=1, n_workers=2, prefetch=8, backend="ray",
                                shuffle=False) as gen:
        assert _epoch(gen, len(QUICK_IDS)) == expected
        assert gen._executor.coalesced_calls > 0  # the case under test: calls carried several tasks
        for _ in range(QUICK_IDS.index(MARK)):
            gen()
        with pytest.raises(LoaderError, match=rf"ValueError: record {MARK} is corrupt \(in Ray actor .*"
                                              rf"ids \[{MARK}\]") as info:
            gen()
        cause = info.value.__cause__
        assert type(cause) is ValueError and str(cause) == f"record {MARK} is corrupt"
        worker_side = "".join(traceback.format_exception(cause))
        assert "_parse_record" in worker_side and "in failing" in worker_side  # frames from the actor


def test_a_crash_in_a_coalesced_call_fails_only_the_batch_that_crashed():
    expected = [[i] if i != MARK else "WorkerDiedError" for i in QUICK_IDS]
    with DataGeneratorMultiProc(segfaults, QUICK_IDS, batch_size=1, n_workers=1, prefetch=8, backend="ray",
                                shuffle=False) as gen:
        start = time.monotonic()
        assert _epoch(gen, len(QUICK_IDS)) == expected  # the others ran again, each alone, and came
        assert gen._executor.coalesced_calls > 0
        assert time.monotonic() - start < 60


def test_a_timeout_in_a_coalesced_call_fails_only_the_batch_that_hung():
    expected = [[i] if i != MARK else "LoaderTimeoutError" for i in QUICK_IDS]
    with DataGeneratorMultiProc(lambda ids: ids_and_pid(ids)[0], QUICK_IDS, batch_size=1, n_workers=1, prefetch=8,
                                backend="ray", shuffle=False, timeout=1.5) as gen:
        start = time.monotonic()
        assert _epoch(gen, len(QUICK_IDS)) == expected
        assert gen._executor.coalesced_calls > 0
        assert time.monotonic() - start < 60


# -- zero-copy: read-only arrays stay views of the object store, writable ones are copied once --------------

def read_only_and_writable(ids):
    read_only = np.full(1 << 18, float(ids[0]))
    read_only.flags.writeable = False
    return read_only, np.full(1 << 18, 2.0 * ids[0])


def _owners(array):
    """What *array* views, outermost first: ndarrays (and whether each owns its memory), then the buffer."""
    chain = []
    while array is not None:
        chain.append((type(array).__name__, array.flags.owndata if isinstance(array, np.ndarray) else None))
        array = array.base if isinstance(array, np.ndarray) else None
    return chain


def test_read_only_arrays_are_views_of_the_object_store_and_writable_ones_one_copy():
    with DataGeneratorMultiProc(read_only_and_writable, [3, 4], batch_size=1, n_workers=1, backend="ray",
                                shuffle=False) as gen:
        read_only, writable = gen()[0]
        assert (read_only == 3).all() and (writable == 6).all()
        assert not read_only.flags.writeable
        # numpy views all the way down to a buffer that is no numpy array: Ray's store, not a copy
        assert not any(owns for kind, owns in _owners(read_only) if kind == "ndarray")
        assert _owners(read_only)[-1][0] != "ndarray"
        assert writable.flags.writeable
        # one array owns the memory: the one copy out of the store
        assert [owns for kind, owns in _owners(writable)].count(True) == 1


# -- actors on this process's node: results through its shared-memory slots, not the object store ---------

def many_layouts(ids):
    """Arrays of every kind the codec keeps apart, each computable from the batch's ids."""
    base = np.arange(40_000, dtype=np.float32).reshape(200, 200) + float(ids[0])
    read_only = np.full(30_000, ids[0], dtype=np.int64)
    read_only.flags.writeable = False
    shared = np.linspace(0.0, 1.0, 20_000) * ids[0]
    return {"c": base, "fortran": np.asfortranarray(base * 2), "transposed": base.T, "strided": base[::2, ::3],
            "read_only": read_only, "shared": shared, "again": shared, "small": np.asarray(ids, dtype=np.int16),
            "ids": list(ids)}


def _views_a_slot(array):
    """Whether *array*'s memory is one of the driver's shared-memory slots (the end of its base chain)."""
    return _owners(array)[-1][0] == "_Lease"


def test_results_of_actors_on_this_node_come_through_shared_memory_as_the_serial_loader_made_them():
    ids = list(range(16))
    expected = DataGenerator(many_layouts, ids, batch_size=2, shuffle=False)
    with DataGeneratorMultiProc(many_layouts, ids, batch_size=2, n_workers=2, backend="ray", shuffle=False) as gen:
        for step in range(12):
            got, want = gen()[0], expected()[0]
            assert got.keys() == want.keys() and got["ids"] == want["ids"]
            for key in ("c", "fortran", "transposed", "strided", "read_only", "shared", "small"):
                a, b = got[key], want[key]
                np.testing.assert_array_equal(a, b)
                assert (a.dtype, a.shape, a.flags.writeable) == (b.dtype, b.shape, b.flags.writeable), key
                # every dense layout kept, a view with gaps made dense in the same axis order
                assert a.strides == np.array(b, order="K").strides, key
            assert got["shared"] is got["again"]  # one array returned twice is one array again
            if step >= 6:  # the first calls went out before any result sized the slots
                assert all(_views_a_slot(got[key]) for key in ("c", "fortran", "read_only", "small")), step
            got["c"] += 1  # writable ones are writable
        routes = dict(gen._executor._routes)
    assert routes["slot"] >= 6 and set(routes) <= {"slot", "store"}, routes


def full_in_place(ids):
    import awkgen

    out = awkgen.empty((256, 1024), dtype=np.float32)
    out[:] = ids[0]
    return out, np.asarray(ids)


def test_awkgen_empty_in_a_loader_on_an_actor_of_this_node_builds_the_batch_in_its_slot():
    with DataGeneratorMultiProc(full_in_place, list(range(12)), batch_size=1, n_workers=2, backend="ray",
                                shuffle=False) as gen:
        for i in range(12):
            x, batch_ids = gen()[0]
            assert batch_ids.tolist() == [i] and x.shape == (256, 1024) and x.dtype == np.float32 and (x == i).all()
            assert x.flags.writeable and x.flags.c_contiguous
        routes = dict(gen._executor._routes)
    assert routes["in-place"] >= 6 and set(routes) <= {"in-place", "store"}, routes


def one_megabyte_hangs_on_mark(ids):
    if MARK in list(ids):
        time.sleep(60)
    return np.full(131_072, ids[0], dtype=np.float64), os.getpid()


@pytest.mark.parametrize("how", ["SIGKILL", "timeout"])
def test_the_slot_of_an_actor_killed_in_mid_call_is_never_reused_and_close_leaves_no_segment(how):
    ids = [1, 2, MARK, 4, 5, 6]
    with DataGeneratorMultiProc(one_megabyte_hangs_on_mark, ids, batch_size=1, n_workers=1, prefetch=1,
                                backend="ray", shuffle=False, timeout=2.0 if how == "timeout" else None) as gen:
        for i in (1, 2):
            x, pid = gen()[0]
            assert (x == i).all()
        executor = gen._executor
        [worker] = executor._workers
        [call] = worker.calls  # [MARK], hanging in the actor, with a slot
        [slot] = call.slots
        assert slot is not None and os.path.exists(slot.path)
        if how == "SIGKILL":
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError if how == "SIGKILL" else LoaderTimeoutError, match=rf"ids \[{MARK}\]"):
            gen()
        assert not os.path.exists(slot.path) and slot.path not in executor._ring._slots  # retired, not reused
        for i in (4, 5, 6):
            x, new_pid = gen()[0]
            assert (x == i).all() and new_pid != pid
        assert _views_a_slot(x)
        assert awkgen_segments(os.getpid())  # the ring and its lock file live as long as the generator
    assert awkgen_segments(os.getpid()) == set()
    assert (x == 6).all()  # a delivered batch outlives the unlinked segment


def one_megabyte_or_corrupt(ids):
    if MARK in list(ids):
        _parse_record(MARK)
    return np.full(131_072, ids[0], dtype=np.float64)


def _parse_record(record):
    raise ValueError(f"record {record} is corrupt")


def test_a_loader_error_in_a_call_with_a_slot_is_its_batchs_LoaderError_and_the_slot_is_reused():
    with DataGeneratorMultiProc(one_megabyte_or_corrupt, [1, 2, MARK, 4, 5, 6], batch_size=1, n_workers=1,
                                prefetch=1, backend="ray", shuffle=False) as gen:
        assert (gen()[0] == 1).all() and (gen()[0] == 2).all()
        executor = gen._executor
        [slot] = executor._workers[0].calls[0].slots  # [MARK]'s call
        assert slot is not None
        with pytest.raises(LoaderError, match=rf"loader raised ValueError: record {MARK} is corrupt \(in Ray "
                                              rf"actor [0-9a-f]+, pid \d+\).*ids \[{MARK}\]") as info:
            gen()
        cause = info.value.__cause__
        assert type(cause) is ValueError and str(cause) == f"record {MARK} is corrupt"
        assert "in _parse_record" in "".join(traceback.format_exception(cause))  # frames from the actor
        assert os.path.exists(slot.path)  # given back, not retired: the actor said it was done with it
        for i in (4, 5, 6):
            x = gen()[0]
            assert (x == i).all() and _views_a_slot(x)
        assert executor._routes["retired"] == 0
