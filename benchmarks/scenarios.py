"""The seven scenarios: what each measures, against which limit, and its target.

A scenario turns into a list of :class:`Job`\\ s (one per contender and worker
count, plus *reference* jobs that measure the machine's own limits in the same run);
``run.py`` executes them in order under one progress bar. Every job builds its
contender, measures, and closes it; :class:`~benchmarks.proctree.ChildGuard` then
checks that no worker outlived the close before the next job starts.

Throughput is measured the same way for everyone (:func:`measure_throughput`): the
first batch, a warm-up of ``warmup_s`` (pools fill their queues, JITs and caches
settle), then batches counted over ``budget_s`` (or ``max_batches``), every batch
read page by page (:func:`~benchmarks.loaders.touch`) as a training step would.

========  ===================================================================  ==========================
scenario  loader and workers                                                   target (awkgen)
========  ===================================================================  ==========================
latency   sleeps 20 ms per batch; 8 and 32 workers; ideal = workers / 20 ms      >= 0.95 of ideal
bandwidth 32 MiB float32 per batch; 2 workers; limits: memcpy, serial loader    process >= 0.8 x serial,
                                                                               >= 2 x torch DataLoader
cpu       ~10 ms of numpy per batch; workers = cores; ideal = cores / call      (reported)
tiny      1 KiB per batch; workers = cores: the per-batch overhead; median of   process >= 3 x best peer
          3 interleaved rounds
ttfb      8 workers, 20 ms loader: construction to first batch                 <= one call + 0.3 s
overlap   Keras model.fit, train step ~ one loader call, 2 workers              epoch <= 1.05 x max(load,
                                                                               train)
memory    scenario 2's workload, PSS of the whole process tree                  extra <= (prefetch +
                                                                               workers + 1) batches
========  ===================================================================  ==========================
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .contenders import AWKGEN_PROCESS, PEERS, Contender
from .loaders import MIB, CpuLoader, FullLoader, SleepLoader, tiny_loader, touch
from .proctree import ChildGuard, MemorySampler

__all__ = ["Settings", "Job", "SCENARIOS", "plan_jobs", "evaluate_targets", "measure_throughput", "merge_rounds"]

CORES = os.cpu_count() or 1
LATENCY_S = 0.020
BIG_BYTES = 32 * MIB
CPU_CALL_S = 0.010
TTFB_WORKERS = 8
TTFB_SLACK_S = 0.3
OVERLAP_WORKERS = 2
OVERLAP_SLACK = 1.05
BANDWIDTH_WORKERS = 2
_WARM_BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class Settings:
    """How long to measure. ``quick`` trades precision for a run under two minutes."""

    quick: bool
    budget_s: float
    warmup_s: float
    max_batches: int
    latency_workers: tuple[int, ...]
    ttfb_trials: int
    fit_steps: int
    fit_epochs: int
    memory_batches: int
    tiny_rounds: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, budget_s=0.5, warmup_s=0.2, max_batches=20_000, latency_workers=(8,),
                       ttfb_trials=1, fit_steps=10, fit_epochs=2, memory_batches=8, tiny_rounds=1)
        return cls(quick=False, budget_s=4.0, warmup_s=1.0, max_batches=200_000, latency_workers=(8, 32),
                   ttfb_trials=2, fit_steps=60, fit_epochs=5, memory_batches=60, tiny_rounds=3)


@dataclass
class Job:
    """One measurement: *run* returns a record (a flat dict) for the report."""

    scenario: str
    contender: str
    run: Callable[[], dict[str, Any]]
    workers: int | None = None
    reference: bool = False
    round: int | None = None  # set when the measurement is repeated in rounds (see merge_rounds)

    @property
    def label(self) -> str:
        return (f"{self.scenario}: {self.contender}" + (f" x{self.workers}" if self.workers else "")
                + (f" (round {self.round + 1})" if self.round is not None else ""))


# -- measuring ---------------------------------------------------------------------------------------

def measure_throughput(contender: Contender, loader: Callable[..., Any], ids: np.ndarray, workers: int,
                       batch_size: int, settings: Settings) -> dict[str, Any]:
    """Batches per second of *contender* in steady state; see the module docstring."""
    started = time.perf_counter()
    it = contender.start(loader, ids, workers, batch_size=batch_size)
    try:
        touch(next(it))
        first_s = time.perf_counter() - started
        warm_until = time.perf_counter() + settings.warmup_s
        warm = 0  # at least enough batches to fill every prefetch window and shared-memory slot once
        while time.perf_counter() < warm_until or warm < _WARM_BATCHES_PER_WORKER * workers + 4:
            touch(next(it))
            warm += 1
        n = 0
        start = now = time.perf_counter()
        deadline = start + settings.budget_s
        while now < deadline and n < settings.max_batches:
            touch(next(it))
            n += 1
            now = time.perf_counter()
        elapsed = now - start
    finally:
        del it
        contender.close()
    return {"batches": n, "seconds": round(elapsed, 4), "batches_per_s": n / elapsed, "first_batch_s": first_s}


def _timed_loop(fn: Callable[[], Any], settings: Settings, warm: int = 2) -> float:
    """Calls of *fn* per second, over the measuring budget."""
    for _ in range(warm):
        fn()
    n = 0
    start = now = time.perf_counter()
    while now - start < settings.budget_s and n < settings.max_batches:
        fn()
        n += 1
        now = time.perf_counter()
    return n / (now - start)


def _ids(n_batches: int, batch_size: int) -> np.ndarray:
    return np.arange(n_batches * batch_size, dtype=np.int64)


# -- scenarios -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    what: str
    unit: str
    plan: Callable[[Settings, list[Contender], dict[str, Any]], list[Job]]


def _throughput_jobs(scenario: str, contenders: list[Contender], loader: Callable[..., Any], ids: np.ndarray,
                     batch_size: int, workers: int, settings: Settings,
                     extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda r: r) -> list[Job]:
    def job(c: Contender) -> Job:
        def run() -> dict[str, Any]:
            return extra(measure_throughput(c, loader, ids, workers, batch_size, settings))
        return Job(scenario, c.name, run, workers if c.parallel else None)
    return [job(c) for c in contenders]


def plan_latency(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    jobs = []
    for workers in settings.latency_workers:
        ideal = workers / LATENCY_S

        def add_ideal(record: dict[str, Any], ideal: float = ideal) -> dict[str, Any]:
            record.update(value=record["batches_per_s"], ideal=ideal, of_ideal=record["batches_per_s"] / ideal)
            return record

        jobs += _throughput_jobs("latency", contenders, SleepLoader(LATENCY_S), _ids(64, 8), 8, workers,
                                 settings, add_ideal)
    return jobs


def plan_bandwidth(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    loader = FullLoader(BIG_BYTES)

    def memcpy() -> dict[str, Any]:
        src = np.ones(BIG_BYTES // 4, dtype=np.float32)
        dst = np.empty_like(src)
        rate = _timed_loop(lambda: np.copyto(dst, src), settings)
        shared["memcpy"] = rate
        return {"value": rate, "batches_per_s": rate, "gib_per_s": rate * BIG_BYTES / 2**30,
                "note": "np.copyto of 32 MiB, both arrays warm"}

    def serial() -> dict[str, Any]:
        rate = _timed_loop(lambda: touch(loader(np.zeros(1))), settings)
        shared["serial"] = rate
        return {"value": rate, "batches_per_s": rate, "gib_per_s": rate * BIG_BYTES / 2**30,
                "note": "the loader called in a loop in this process"}

    def add_limits(record: dict[str, Any]) -> dict[str, Any]:
        rate = record["batches_per_s"]
        record.update(value=rate, gib_per_s=rate * BIG_BYTES / 2**30,
                      of_serial=rate / shared["serial"] if shared.get("serial") else None,
                      of_memcpy=rate / shared["memcpy"] if shared.get("memcpy") else None)
        return record

    refs = [Job("bandwidth", "memcpy limit", memcpy, reference=True),
            Job("bandwidth", "serial loader", serial, reference=True)]
    return refs + _throughput_jobs("bandwidth", contenders, loader, _ids(64, 1), 1, BANDWIDTH_WORKERS, settings,
                                   add_limits)


def plan_cpu(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    holder: dict[str, CpuLoader] = {}  # the loader the reference job calibrates, read when a job runs

    def calibrate() -> dict[str, Any]:
        loader = CpuLoader.calibrate(CPU_CALL_S)
        holder["loader"] = loader
        rate = _timed_loop(lambda: loader(np.zeros(1)), settings)
        shared["cpu_serial"] = rate
        return {"value": rate, "batches_per_s": rate, "call_ms": 1e3 / rate, "reps": loader.reps,
                "note": "calibrated loader called in a loop in this process (one core)"}

    def job(c: Contender) -> Job:
        def run() -> dict[str, Any]:
            record = measure_throughput(c, holder["loader"], _ids(64, 4), CORES, 4, settings)
            ideal = CORES * shared["cpu_serial"]
            record.update(value=record["batches_per_s"], ideal=ideal, of_ideal=record["batches_per_s"] / ideal)
            return record
        return Job("cpu", c.name, run, CORES if c.parallel else None)

    return [Job("cpu", "serial loader", calibrate, reference=True)] + [job(c) for c in contenders]


def plan_tiny(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    def value(record: dict[str, Any]) -> dict[str, Any]:
        record.update(value=record["batches_per_s"], us_per_batch=1e6 / record["batches_per_s"])
        return record

    # Per-batch overhead is what a busy or shared machine disturbs most: every contender is measured
    # in several rounds, interleaved (each round in a rotated order), and the median round counts.
    jobs = []
    for n in range(settings.tiny_rounds):
        order = contenders[n % len(contenders):] + contenders[:n % len(contenders)]
        for job in _throughput_jobs("tiny", order, tiny_loader, _ids(1024, 1), 1, CORES, settings, value):
            job.round = n if settings.tiny_rounds > 1 else None
            jobs.append(job)
    return jobs


def plan_ttfb(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    loader = SleepLoader(LATENCY_S)
    ids = _ids(64, 8)

    def job(c: Contender) -> Job:
        def once() -> float:
            started = time.perf_counter()
            it = c.start(loader, ids, TTFB_WORKERS, batch_size=8)
            try:
                touch(next(it))
                return time.perf_counter() - started
            finally:
                del it
                c.close()

        def run() -> dict[str, Any]:
            trials = [once() for _ in range(settings.ttfb_trials + (0 if settings.quick else 1))]
            warm = trials[1:] if len(trials) > 1 else trials
            median = statistics.median(warm)
            return {"value": median, "seconds": median, "first_trial_s": trials[0], "trials_s": trials,
                    "limit_s": LATENCY_S + TTFB_SLACK_S}
        return Job("ttfb", c.name, run, TTFB_WORKERS if c.parallel else None)

    return [job(c) for c in contenders]


def _overlap_model(width: int) -> Any:
    import keras

    model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="sgd", loss="mse")
    return model


class _EpochTimer:
    """A Keras callback (built lazily) that records each epoch's wall time."""

    def __new__(cls) -> Any:
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []
                self._began = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._began = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - self._began)

        return EpochTimer()


def plan_overlap(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    batch_size, width = 128, 512
    steps, epochs = settings.fit_steps, settings.fit_epochs
    ids = _ids(steps, batch_size)
    labels = np.zeros((len(ids), 10), dtype=np.float32)
    state: dict[str, Any] = {}
    x_fixed = np.random.default_rng(0).random((batch_size, width), dtype=np.float32)
    y_fixed = np.zeros((batch_size, 10), dtype=np.float32)

    def fixed() -> Any:
        while True:
            yield x_fixed, y_fixed

    def train_epoch_s(epochs: int = 1) -> list[float]:
        """Epoch times of model.fit on one in-memory batch: training alone, no loading."""
        timer = _EpochTimer()
        state["model"].fit(fixed(), steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[timer])
        return timer.times

    def train_only() -> dict[str, Any]:
        state["model"] = _overlap_model(width)
        train_s = min(train_epoch_s(epochs + 1)[1:])  # the first epoch compiles
        state.update(train_s=train_s, step_s=train_s / steps)
        return {"value": train_s, "epoch_s": train_s, "step_ms": 1e3 * train_s / steps, "steps": steps,
                "note": "model.fit on one in-memory batch: the train time alone; sets the loader's sleep"}

    def job(c: Contender) -> Job:
        def run() -> dict[str, Any]:
            step_s = state["step_s"]
            loader = SleepLoader(step_s, (batch_size, width))  # one loader call costs one train step
            load_s = steps * step_s / OVERLAP_WORKERS
            # Training alone, measured right before (the machine's speed drifts when it is shared),
            # over as many epochs; the first epoch of a fit call carries setup, and of the others the
            # fastest counts, here and below (interference from other jobs only ever adds time).
            train_s = min(train_epoch_s(epochs)[1:])
            x, kwargs = c.fit_input(loader, ids, OVERLAP_WORKERS, batch_size=batch_size, labels=labels,
                                    steps=steps)
            timer = _EpochTimer()
            try:
                state["model"].fit(x, epochs=epochs, verbose=0, callbacks=[timer], **kwargs)
            finally:
                del x
                c.close()
            if len(timer.times) < epochs:
                raise RuntimeError(f"model.fit stopped after {len(timer.times)} of {epochs} epochs")
            epoch_s = min(timer.times[1:])
            bound = max(load_s, train_s)
            return {"value": epoch_s / bound, "epoch_s": epoch_s, "epochs_s": timer.times, "load_s": load_s,
                    "train_s": train_s, "ratio": epoch_s / bound, "loader_ms": 1e3 * step_s}
        return Job("overlap", c.name, run, OVERLAP_WORKERS if c.parallel else None)

    return [Job("overlap", "train only", train_only, reference=True)] + [job(c) for c in contenders]


def plan_memory(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    loader = FullLoader(BIG_BYTES)
    ids = _ids(64, 1)

    def job(c: Contender) -> Job:
        def run() -> dict[str, Any]:
            import gc

            gc.collect()
            sampler = MemorySampler().start()
            it = c.start(loader, ids, BANDWIDTH_WORKERS, batch_size=1)
            try:
                for _ in range(settings.memory_batches):
                    touch(next(it))
            finally:
                del it
                c.close()
                sampler.stop()
            extra_batches = sampler.extra / BIG_BYTES
            return {"value": sampler.extra / MIB, "extra_mib": sampler.extra / MIB, "extra_batches": extra_batches,
                    "peak_pss_mib": sampler.peak_pss / MIB, "peak_rss_mib": sampler.peak_rss / MIB,
                    "sweeps": sampler.sweeps,
                    "allowed_batches": 3 * BANDWIDTH_WORKERS + 1 if c.name == AWKGEN_PROCESS else None}
        return Job("memory", c.name, run, BANDWIDTH_WORKERS if c.parallel else None)

    return [job(c) for c in contenders]


SCENARIOS: dict[str, Scenario] = {s.key: s for s in (
    Scenario("latency", "1. Latency-bound", "loader sleeps 20 ms per batch (remote storage)", "batches/s",
             plan_latency),
    Scenario("bandwidth", "2. Bandwidth-bound", "32 MiB float32 batches, 2 workers", "batches/s", plan_bandwidth),
    Scenario("cpu", "3. CPU-bound", f"~10 ms of numpy per batch, {CORES} workers (= cores)", "batches/s",
             plan_cpu),
    Scenario("tiny", "4. Tiny batches",
             f"1 KiB per batch, {CORES} workers: per-batch overhead; median of interleaved rounds", "batches/s",
             plan_tiny),
    Scenario("ttfb", "5. Time to first batch", "8 workers, 20 ms loader: construction to first batch", "s",
             plan_ttfb),
    Scenario("overlap", "6. Training overlap", "Keras model.fit, train step ~ one loader call, 2 workers",
             "epoch / max(load, train)", plan_overlap),
    Scenario("memory", "7. Memory", "scenario 2's workload: peak PSS of parent + workers beyond their own",
             "MiB", plan_memory),
)}


def plan_jobs(keys: list[str], settings: Settings, contenders: list[Contender],
              shared: dict[str, Any]) -> list[Job]:
    jobs: list[Job] = []
    for key in keys:
        jobs += SCENARIOS[key].plan(settings, contenders, shared)
    return jobs


def run_job(job: Job, guard: ChildGuard) -> dict[str, Any]:
    """Run *job*, never raising: a contender that fails gets an ``error`` instead of numbers."""
    record: dict[str, Any] = {"scenario": job.scenario, "contender": job.contender, "workers": job.workers,
                              "reference": job.reference, "round": job.round}
    started = time.perf_counter()
    try:
        record.update(job.run())
    except Exception as exc:  # one broken contender must not sink the whole run
        record["error"] = f"{type(exc).__name__}: {exc}"[:400]
        record["value"] = None
    record["wall_s"] = round(time.perf_counter() - started, 2)
    leaked = guard.check(job.label)
    if leaked:
        record["leaked_pids"] = leaked
    return record


def merge_rounds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per measurement repeated in rounds: the round with the median value, and
    every round's value under ``rounds``. Records without a round pass through unchanged.

    >>> rs = [{"scenario": "tiny", "contender": "a", "workers": 2, "round": n, "value": v}
    ...       for n, v in enumerate([5.0, 1.0, 4.0])]
    >>> [(r["value"], r["rounds"]) for r in merge_rounds(rs)]
    [(4.0, [5.0, 1.0, 4.0])]
    """
    slots: list[dict[str, Any] | list[dict[str, Any]]] = []  # records, and each group at its first round's place
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("round") is None:
            slots.append(r)
            continue
        key = (r["scenario"], r["contender"], r["workers"])
        if key not in groups:
            groups[key] = []
            slots.append(groups[key])
        groups[key].append(r)
    return [slot if isinstance(slot, dict) else _median_round(slot) for slot in slots]


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((x for x in rounds if x.get("value") is not None), key=lambda x: x["value"])
    pick = dict(ok[(len(ok) - 1) // 2] if ok else rounds[0])
    pick.update(round=None, rounds=[x.get("value") for x in rounds])
    return pick


# -- targets ----------------------------------------------------------------------------------------------

def _find(records: list[dict[str, Any]], scenario: str, contender: str,
          workers: int | None = None) -> dict[str, Any] | None:
    for r in records:
        if (r["scenario"] == scenario and r["contender"] == contender and r.get("value") is not None
                and (workers is None or r["workers"] == workers)):
            return r
    return None


def evaluate_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each as ``{target, contender, measured, threshold, passed}``.

    A target whose inputs were not measured in this run is left out.
    """
    out: list[dict[str, Any]] = []

    def add(target: str, contender: str, measured: float, threshold: float, passed: bool, how: str) -> None:
        out.append({"target": target, "contender": contender, "measured": measured, "threshold": threshold,
                    "passed": bool(passed), "how": how})

    for name in ("awkgen-thread", AWKGEN_PROCESS):
        for r in records:
            if r["scenario"] == "latency" and r["contender"] == name and r.get("value") is not None:
                add(f"latency-bound, {r['workers']} workers", name, r["of_ideal"], 0.95, r["of_ideal"] >= 0.95,
                    "fraction of workers / 20 ms")
    proc = _find(records, "bandwidth", AWKGEN_PROCESS)
    serial = _find(records, "bandwidth", "serial loader")
    torch_ = _find(records, "bandwidth", "torch-dataloader")
    if proc and serial:
        ratio = proc["value"] / serial["value"]
        add("bandwidth-bound vs serial loader", AWKGEN_PROCESS, ratio, 0.8, ratio >= 0.8,
            "fraction of the in-process serial rate")
    if proc and torch_:
        ratio = proc["value"] / torch_["value"]
        add("bandwidth-bound vs torch DataLoader", AWKGEN_PROCESS, ratio, 2.0, ratio >= 2.0,
            "times the DataLoader's batches/s")
    tiny = _find(records, "tiny", AWKGEN_PROCESS)
    peers = [r for p in PEERS if (r := _find(records, "tiny", p))]
    if tiny and peers:
        best = max(peers, key=lambda r: r["value"])
        ratio = tiny["value"] / best["value"]
        add("tiny batches vs best peer", AWKGEN_PROCESS, ratio, 3.0, ratio >= 3.0,
            f"times the best peer's batches/s ({best['contender']})")
    for name in ("awkgen-thread", AWKGEN_PROCESS):
        r = _find(records, "ttfb", name)
        if r:
            add("time to first batch", name, r["value"], r["limit_s"], r["value"] <= r["limit_s"],
                "seconds; one loader call + 0.3 s")
        r = _find(records, "overlap", name)
        if r:
            add("training overlap", name, r["value"], OVERLAP_SLACK, r["value"] <= OVERLAP_SLACK,
                "epoch time / max(load, train)")
    r = _find(records, "memory", AWKGEN_PROCESS)
    if r:
        add("memory in flight", AWKGEN_PROCESS, r["extra_batches"], r["allowed_batches"],
            r["extra_batches"] <= r["allowed_batches"],
            "32 MiB batches beyond the processes' own footprint; prefetch (4) + workers (2) + 1 held")
    return out
