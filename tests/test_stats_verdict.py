"""``gen.stats()``'s verdict: the warm-up is left out, and "more workers" is advised only where
the workers are busy and either CPUs are idle or the loader waits rather than computes.

The decision table is checked on the generator's own ``_verdict`` with fixed figures (a
real run's CPU figures depend on what else the machine runs); real runs check the warm-up
and the measurements the verdict is made of.
"""

from __future__ import annotations

import time

import pytest

import awkgen
from awkgen.executors.base import usable_cpus
from tests.conftest import identity


def sleepy(ids):
    time.sleep(0.02)
    return ids


def test_no_verdict_during_the_warm_up():
    with awkgen.DataGeneratorMultiProc(sleepy, list(range(40)), batch_size=1, n_workers=4) as gen:
        assert gen.stats().verdict == "no batches delivered yet"
        gen()  # the first batch's wait is mostly starting workers
        stats = gen.stats()
        assert stats.verdict == "warming up: 1 of the first 4 batches delivered", stats
        assert stats.cpus == usable_cpus() and stats.loader_cpu is None and stats.cpus_idle is None
        for _ in range(4):
            gen()
        assert gen.stats().verdict.startswith("warming up: 1 batch(es) since the first 4; judged after 3")
        for _ in range(4):
            gen()
        stats = gen.stats()
        assert stats.verdict.startswith("input-bound"), stats  # the caller does nothing but wait
        assert 0 < stats.warmup_s < stats.elapsed_s


def test_a_waiting_loader_is_seen_as_waiting_and_more_workers_advised():
    with awkgen.DataGeneratorMultiProc(sleepy, list(range(60)), batch_size=1, n_workers=2, backend="thread") as gen:
        for _ in range(20):
            gen()
        stats = gen.stats()
    assert stats.loader_cpu is not None and stats.loader_cpu < 0.3, stats  # it sleeps
    assert stats.cpus_idle is not None and 0 <= stats.cpus_idle <= stats.cpus
    assert "more workers would help" in stats.verdict, stats
    assert "of 2 CPUs idle" in str(stats) or f"of {stats.cpus} CPUs idle" in str(stats)


def test_a_computing_loader_is_seen_computing():
    def burn(ids):
        start = time.thread_time()
        while time.thread_time() - start < 0.01:
            pass
        return ids

    gen = awkgen.DataGenerator(burn, list(range(60)), batch_size=1)
    for _ in range(15):
        gen()
    stats = gen.stats()
    assert stats.loader_cpu is not None and stats.loader_cpu > 0.3, stats  # it burns (shared CPUs may slow it)
    assert "DataGenerator loads inside the loop" in stats.verdict


def _generator(backend):
    if backend == "serial":
        gen = awkgen.DataGenerator(identity, list(range(8)), batch_size=1)
    else:
        gen = awkgen.DataGeneratorMultiProc(identity, list(range(8)), batch_size=1, n_workers=4, backend=backend)
    gen._cpus = 2  # the table below is for 2 usable CPUs
    return gen


# (waiting, busy, loader_cpu, cpus_idle) -> what the verdict must say, on 2 CPUs with 4 workers
TABLE = [
    ((0.1, 1.0, 1.0, 0.0), {"*": "compute-bound"}),
    ((0.9, 1.0, 0.1, 1.5), {"thread": "more workers would help", "process": "more workers would help"}),
    ((0.9, 1.0, 0.9, 1.5), {"process": "the loader computes (90% of its time on a CPU) and CPUs are idle"}),
    ((0.9, 1.0, 0.9, 0.1), {"process": "more workers would not help; make the loader cheaper"}),
    ((0.9, 1.0, 0.45, 0.0), {"process": "4.0 workers load at once on 2 CPU(s) and keep 1.8 of them busy: they wait "
                                        "for the CPUs, not for storage, so more workers would not help"}),
    ((0.9, 1.0, 0.05, 0.0), {"process": "if the loader waits on storage, more workers would help; if other "
                                        "programs hold the CPUs, they would not"}),
    ((0.9, 0.3, 0.9, 1.5), {"thread": "the workers are idle 70% of the time, so more workers would not help",
                            "process": "the workers are idle 70% of the time, so more workers would not help"}),
    ((0.9, 1.0, 0.25, 1.0), {"thread": "4.0 threads load at once but use one CPU between them: a loader that "
                                       "holds the GIL. More threads would not help; backend='process' would"}),
    ((0.9, 1.0, 0.9, 1.0), {"serial": "DataGenerator loads inside the loop: DataGeneratorMultiProc would load "
                                      "ahead of it"}),
    ((0.9, 1.0, 0.9, 0.0), {"serial": "no CPU is idle: a prefetching factory would help little"}),
]


CASES = [(backend, figures, says) for figures, expected in TABLE
         for backend in ("serial", "thread", "process")
         if (says := expected.get(backend, expected.get("*"))) is not None]


@pytest.mark.parametrize("backend, figures, says", CASES, ids=[f"{b}-{f}" for b, f, _ in CASES])
def test_the_verdict_table(backend, figures, says):
    with _generator(backend) as gen:
        verdict = gen._verdict(10, *figures)
    assert says in verdict, verdict
    if says.startswith("compute"):
        assert verdict.startswith("compute-bound")
    else:
        assert verdict.startswith("input-bound: the loop waited 90% of the time; ")


def test_stats_as_dict_holds_the_new_fields():
    gen = awkgen.DataGenerator(identity, list(range(8)), batch_size=1)
    for _ in range(6):
        gen()
    fields = gen.stats().as_dict()
    assert {"warmup_s", "cpus", "loader_cpu", "cpus_idle"} <= set(fields)
