"""A bounded slice of the stress harness (``tests/stress.py``) in the normal suite.

Thirty fixed configurations, picked to cover every backend, result size class and
structure, fault (loader errors, ``os._exit`` and ``SIGKILL`` deaths, timeouts, workers
that cannot start), stop from another thread, Ctrl-C, state hand-off, garbage-collector
pressure and every way to end a generator, each a few seconds at most. They run through
the driver in a subprocess, exactly as ``python -m tests.stress --seeds ...`` does, so a
hang is a reported failure with a stack dump, never a stuck test run. A failure prints
the seed and the command that replays it; ``make stress`` runs the harness for an hour.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.stress import REPO

SLICE_SEEDS = (208, 332, 533, 619, 679, 916, 928, 1125, 1188, 1461, 1607, 1693, 1776, 1973, 1979, 2287, 2357, 2421,
               2451, 2514, 2843, 3145, 3998, 4009, 4315, 4333, 4521, 4614, 4716, 4757)
DRIVER_TIMEOUT_S = 240  # the driver's own limits end any hang long before this


def run_driver(seeds: tuple[int, ...]) -> tuple[int, str]:
    """Run the driver on *seeds*; return its exit status and output. On a timeout, SIGINT
    lets the driver kill its children's process groups before it exits."""
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    proc = subprocess.Popen([sys.executable, "-m", "tests.stress", "--seeds", ",".join(map(str, seeds))], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=DRIVER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out += f"\n(the driver did not finish within {DRIVER_TIMEOUT_S} s)"
    return proc.returncode, out


@pytest.mark.slow
def test_a_slice_of_random_configurations_never_hangs_loses_a_batch_or_leaks():
    print(f"stress seeds: {','.join(map(str, SLICE_SEEDS))}")
    code, out = run_driver(SLICE_SEEDS)
    print(out)
    assert code == 0 and f"{len(SLICE_SEEDS)} configurations, 0 failures" in out, (
        f"the stress slice failed (exit {code}); replay a seed with `python -m tests.stress --replay SEED`:\n"
        + out[-20000:])
