"""The crash table: every way a loader or worker can fail raises the right error at the
right batch, within seconds, and the next call returns the next batch (SPEC section 4)."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import numpy as np
import pytest

from awkgen import (
    AwkgenError,
    DataGenerator,
    DataGeneratorMultiProc,
    LoaderError,
    LoaderTimeoutError,
    WorkerDiedError,
)
from tests.leaks import wait_until

BAD_ID = 3  # the batch holding this id fails; with batch_size=2, unshuffled, that is batch 1: ids [2, 3]


def raising_loader(ids):
    if BAD_ID in ids:
        raise FileNotFoundError(f"no such file: {BAD_ID}.png")
    return np.asarray(ids)


def sigkill_loader(ids):
    if BAD_ID in ids:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.asarray(ids)


def exiting_loader(ids):
    if BAD_ID in ids:
        os._exit(3)
    return np.asarray(ids)


def segfault_loader(ids):
    if BAD_ID in ids:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return np.asarray(ids)


def unpicklable_loader(ids):
    if BAD_ID in ids:
        return (i for i in ids)  # a live generator: neither pickle nor dill can send it
    return np.asarray(ids)


def hanging_loader(ids):
    if BAD_ID in ids:
        # 4x the timeout: a process is killed at 1 s; an abandoned thread (which cannot be
        # killed) returns at 4 s, its result dropped, and must then exit (no_leaks checks it).
        time.sleep(4)
    return np.asarray(ids)


RAY_DIED = r"Ray actor .* died"  # Ray reports the actor and its pid, not the signal
# (case, loader, error, what the message must say per backend, extra kwargs)
CRASHES = [
    ("raise", raising_loader, LoaderError, {"thread": r"FileNotFoundError: no such file: 3.png",
                                            "process": r"FileNotFoundError: no such file: 3.png",
                                            "ray": r"FileNotFoundError: no such file: 3.png"}, {}),
    ("sigkill", sigkill_loader, WorkerDiedError, {"process": r"worker process \d+ died from signal SIGKILL",
                                                  "ray": RAY_DIED}, {}),
    ("os_exit", exiting_loader, WorkerDiedError, {"process": r"worker process \d+ died with exit code 3",
                                                  "ray": RAY_DIED}, {}),
    ("segfault", segfault_loader, WorkerDiedError, {"process": r"died from signal SIGSEGV \(segmentation fault",
                                                    "ray": RAY_DIED}, {}),
    ("unpicklable", unpicklable_loader, LoaderError, {"process": r"^the loader's result cannot be sent back from "
                                                                 r"the worker process"}, {}),
    ("hang", hanging_loader, LoaderTimeoutError, {"thread": r"exceeded timeout=1 s",
                                                  "process": r"exceeded timeout=1 s",
                                                  "ray": r"timeout=1 s"}, {"timeout": 1.0}),
]
ON_RAY = pytest.mark.ray  # runs on the session's local Ray cluster (tests/raycluster.py)
CASES = [pytest.param(case, loader, err, msg, backend, kw, id=f"{case}-{backend}",
                      marks=[ON_RAY] if backend == "ray" else [])
         for case, loader, err, messages, kw in CRASHES for backend, msg in messages.items()]


@pytest.mark.parametrize("case, loader, error, message, backend, kwargs", CASES)
def test_failure_raises_at_its_batch_within_seconds_and_the_stream_goes_on(case, loader, error, message,
                                                                          backend, kwargs):
    ids = list(range(8))
    with DataGeneratorMultiProc(loader, ids, batch_size=2, n_workers=2, backend=backend, shuffle=False,
                                **kwargs) as gen:
        assert gen()[0].tolist() == [0, 1]
        start = time.monotonic()
        with pytest.raises(error, match=message) as info:
            gen()
        assert time.monotonic() - start < 10
        assert isinstance(info.value, AwkgenError) and isinstance(info.value, RuntimeError)
        assert "ids [2, 3]" in str(info.value) and "batch 1 of epoch 0" in str(info.value)
        assert (info.value.ids, info.value.epoch, info.value.step) == ([2, 3], 0, 1)
        # The worker process that ran (or died running) the batch; an actor Ray saw die before it
        # could tell its pid stays unnamed (Ray's error names the actor).
        if backend == "process" or (backend == "ray" and error is not WorkerDiedError):
            assert isinstance(info.value.pid, int) and info.value.pid != os.getpid()
        # the generator goes on: the next batches, then the next epoch
        assert [gen()[0].tolist() for _ in range(2)] == [[4, 5], [6, 7]]
        assert gen()[0].tolist() == [0, 1]
        assert gen.n_workers == 2


def dies_at_id_43(ids):
    if 43 in ids:
        os._exit(5)
    return np.asarray(ids)


def test_a_crash_deep_in_a_stream_of_quick_batches_blames_only_its_own_batch():
    """Quick loaders make the process pool queue several tasks on one worker at a time; a
    crash there must fail exactly the batch that crashed, and every batch queued before it
    must arrive with its data, epoch after epoch."""
    ids = list(range(50))
    with DataGeneratorMultiProc(dies_at_id_43, ids, batch_size=1, n_workers=2, prefetch=8, shuffle=False) as gen:
        for epoch in range(3):
            for i in ids:
                if i == 43:
                    with pytest.raises(WorkerDiedError, match="exit code 5") as info:
                        gen()
                    assert f"batch 43 of epoch {epoch}, ids [43]" in str(info.value)
                else:
                    assert gen()[0].tolist() == [i]


def test_ids_a_worker_cannot_unpickle_fail_their_batch_with_the_reason():
    """Instances of a class defined in a script's ``__main__`` pickle by reference; a worker
    (which never runs that script) cannot rebuild them. That batch, and only it, fails."""
    code = textwrap.dedent("""
        import numpy as np, awkgen

        class Path:
            def __init__(self, n):
                self.n = n

        ids = [1, 2, Path(3), 4]
        with awkgen.DataGeneratorMultiProc(lambda b: np.array([getattr(i, "n", i) for i in b]), ids,
                                           batch_size=1, n_workers=1, shuffle=False) as gen:
            print(gen()[0].tolist(), gen()[0].tolist())
            try:
                gen()
            except awkgen.LoaderError as exc:
                print("LoaderError:", exc)
                print("cause:", repr(exc.__cause__.__cause__))
            print(gen()[0].tolist())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[1] [2]" and lines[-1] == "[4]"
    assert lines[1].startswith("LoaderError: the batch's ids cannot be rebuilt in the worker process")
    assert "batch 2 of epoch 0" in lines[1] and "__main__" in lines[1]
    assert "Path" in lines[2]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_loader_error_cause_is_the_original_with_the_worker_side_traceback(backend):
    with DataGeneratorMultiProc(raising_loader, list(range(4)), batch_size=2, n_workers=1, backend=backend,
                                shuffle=False) as gen:
        gen()
        with pytest.raises(LoaderError) as info:
            gen()
    cause = info.value.__cause__
    assert type(cause) is FileNotFoundError and str(cause) == "no such file: 3.png"
    assert "in raising_loader" in "".join(traceback.format_exception(cause))


def test_the_blocking_generator_has_the_same_loader_error():
    gen = DataGenerator(raising_loader, list(range(4)), batch_size=2, shuffle=False)
    gen()
    with pytest.raises(LoaderError, match="ids \\[2, 3\\]") as info:
        gen()
    assert type(info.value.__cause__) is FileNotFoundError
    assert gen()[0].tolist() == [0, 1]


class Picky(Exception):
    """An exception whose __init__ wants two arguments: plain pickle cannot rebuild it."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def picky_loader(ids):
    raise Picky("x", "y")


class Unsendable(Exception):
    """An exception holding a lock: it cannot be pickled at all."""

    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def unsendable_loader(ids):
    raise Unsendable()


def test_an_exception_with_a_custom_init_arrives_as_itself():
    with DataGeneratorMultiProc(picky_loader, list(range(4)), batch_size=2, n_workers=1) as gen:
        with pytest.raises(LoaderError, match="loader raised Picky: x/y") as info:
            gen()
    assert type(info.value.__cause__) is Picky and str(info.value.__cause__) == "x/y"


def test_an_exception_that_cannot_travel_still_arrives_as_text_with_its_traceback():
    with DataGeneratorMultiProc(unsendable_loader, list(range(4)), batch_size=2, n_workers=1) as gen:
        with pytest.raises(LoaderError, match="Unsendable: holds a lock") as info:
            gen()
    cause = str(info.value.__cause__)
    assert "in unsendable_loader" in cause and "Unsendable: holds a lock" in cause


def slow_pid_loader(ids, pid_dir):
    with open(os.path.join(pid_dir, f"{ids[0]}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(2.0 if ids[0] == 0 else 0.0)
    return np.asarray(ids)


def kill_the_worker_loading_batch_0(pid_dir) -> int:
    """SIGKILL the worker running ``slow_pid_loader`` on ids [0] (it sleeps 2 s); return its pid."""
    pid_file = pid_dir / "0.pid"
    assert wait_until(pid_file.exists, 10.0), "no worker started batch 0"
    time.sleep(0.05)  # the pid is written
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def test_worker_killed_from_outside_mid_batch_never_hangs(tmp_path):
    import functools

    loader = functools.partial(slow_pid_loader, pid_dir=str(tmp_path))
    with DataGeneratorMultiProc(loader, list(range(6)), batch_size=1, n_workers=2, shuffle=False) as gen:
        pid = kill_the_worker_loading_batch_0(tmp_path)
        with pytest.raises(WorkerDiedError, match=rf"worker process {pid} died from signal SIGKILL.*ids \[0\]") \
                as info:
            gen()
        err = info.value  # what a training loop logs or skips on, without parsing the message
        assert (err.ids, err.epoch, err.step) == ([0], 0, 0)
        assert (err.pid, err.exitcode, err.signal) == (pid, -signal.SIGKILL, "SIGKILL")
        assert [gen()[0].tolist() for _ in range(5)] == [[1], [2], [3], [4], [5]]


def test_idle_worker_killed_is_replaced_silently(tmp_path):
    import functools

    loader = functools.partial(slow_pid_loader, pid_dir=str(tmp_path))
    with DataGeneratorMultiProc(loader, list(range(1, 7)), batch_size=1, n_workers=1, prefetch=1,
                                shuffle=False) as gen:
        assert gen()[0].tolist() == [1]
        pid = int((tmp_path / "1.pid").read_text())
        time.sleep(0.3)  # the prefetched batch [2] is done; the worker idles
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        assert [gen()[0].tolist() for _ in range(5)] == [[2], [3], [4], [5], [6]]


def _explode_on_load():
    raise RuntimeError("model weights missing on this worker")


class UnloadableLoader:
    """Pickles fine in the parent, but cannot be rebuilt in a worker."""

    def __call__(self, ids):
        return ids

    def __reduce__(self):
        return (_explode_on_load, ())


def test_workers_that_cannot_load_the_loader_fail_every_batch_instead_of_hanging():
    with DataGeneratorMultiProc(UnloadableLoader(), list(range(6)), batch_size=2, n_workers=2) as gen:
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(LoaderError, match="could not load the loader: RuntimeError: model weights missing") \
                    as info:
                gen()
            assert "in _explode_on_load" in str(info.value.__cause__)
            assert time.monotonic() - start < 10


def test_the_awkgen_logger_tells_the_story_of_a_pool(tmp_path, caplog):
    import functools
    import logging

    caplog.set_level(logging.DEBUG, logger="awkgen")
    loader = functools.partial(slow_pid_loader, pid_dir=str(tmp_path))
    with DataGeneratorMultiProc(loader, list(range(6)), batch_size=1, n_workers=1, shuffle=False) as gen:
        pid = kill_the_worker_loading_batch_0(tmp_path)
        with pytest.raises(WorkerDiedError):
            gen()
        gen()
    text = "\n".join(record.getMessage() for record in caplog.records if record.name == "awkgen")
    for event in (f"started worker process {pid}", f"worker process {pid} is ready",
                  f"worker process {pid} died from signal SIGKILL", "process pool stopped"):
        assert event in text, text
    assert len(re.findall(r"started worker process \d+", text)) == 2  # the replacement
