"""Fixtures shared by the whole suite.

``no_leaks`` runs around every test: a test that leaves a child process, a thread,
a file descriptor or a /dev/shm segment behind fails. Process-wide machinery that
lives as long as the interpreter (the forkserver, a session's Ray cluster) is
started before the first baseline is taken.
"""

from __future__ import annotations

import gc
import os
import signal

import numpy as np
import pytest

from tests.leaks import Snapshot, wait_for_no_leaks
from tests.raycluster import ray_cluster  # noqa: F401 - a session fixture, shared by the backend suites

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# A shell starts a background job (``make test &``, ``nohup``) with SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler: the Ctrl-C tests would see nothing. Give this
# process (and, through exec, every child interpreter it starts) the terminal's default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Start the forkserver (and its resource tracker) once, so they count as
    # infrastructure in every baseline rather than as a test's leak.
    import awkgen

    with awkgen.DataGeneratorMultiProc(lambda ids: ids, [1, 2], batch_size=1, n_workers=1) as gen:
        gen()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    if request.node.get_closest_marker("ray"):
        request.getfixturevalue("ray_cluster")  # the cluster is infrastructure: start it before the baseline
    before = Snapshot.take()
    yield
    gc.collect()
    problems = wait_for_no_leaks(before)
    assert not problems, "; ".join(problems)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: the test starts process-wide machinery on purpose")
    config.addinivalue_line("markers", "ray: the test runs on the session's local Ray cluster")


# -- loaders used across test modules: module-level, so every backend can pickle them --------

def identity(ids):
    return ids


def as_array(ids):
    return np.asarray(ids)


def big_array(ids):
    """~0.8 MB per batch of 10: large enough for the shared-memory path."""
    return np.repeat(np.asarray(ids, dtype=np.float64)[:, None], 10_000, axis=1)


def with_rng(ids, rng):
    return (np.asarray(ids), rng.random(3))
