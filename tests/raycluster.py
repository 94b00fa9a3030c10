"""The session's local Ray cluster, shared by every test that runs the ``"ray"`` backend.

Starting a cluster takes seconds, so one serves the whole session. It starts before
the autouse ``no_leaks`` fixture takes its first baseline (session fixtures come
first), and a warm-up run makes Ray open, up front, the threads and connections it
otherwise opens lazily the first time an actor starts, fails or is killed.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from awkgen import DataGeneratorMultiProc, LoaderError, WorkerDiedError

MARK = 1000  # a batch holding this id makes the loaders below hang or raise


def ids_and_pid(ids):
    """The batch and the pid of the process that loaded it; hangs on MARK."""
    if MARK in list(ids):
        time.sleep(60)
    return np.asarray(ids), os.getpid()


def _parse_record(record):
    raise ValueError(f"record {record} is corrupt")


def failing(ids):
    if MARK in list(ids):
        _parse_record(MARK)
    return np.asarray(ids)


@pytest.fixture(scope="session")
def ray_cluster():
    """The address of a local Ray cluster that lives for the session."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Warm-up: an actor that starts, loads, raises, dies by SIGKILL and is killed on
    # close, so Ray's lazily opened connections and threads belong to the baseline.
    with DataGeneratorMultiProc(ids_and_pid, [1, 2, MARK], batch_size=1, n_workers=1, backend="ray",
                                shuffle=False, prefetch=1) as gen:
        _, pid = gen()[0]
        gen()  # the actor now loads [MARK], which hangs
        with pytest.raises(LoaderError):
            DataGeneratorMultiProc(failing, [MARK], batch_size=1, n_workers=1, backend="ray")()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError):
            gen()
        gen()
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
