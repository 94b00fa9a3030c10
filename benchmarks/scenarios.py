"""The scenarios: what each measures, against which limit, and its target.

A scenario turns into a list of :class:`Job`\\ s (one per contender and worker
count, plus *reference* jobs that measure the machine's own limits in the same run).
:func:`plan_jobs` interleaves every scenario in rounds: round *n* runs the scenarios,
and each scenario's contenders, rotated by *n* (A B C, B C A, ...), each scenario's
references first, so a reference and the contenders it is compared with are measured
minutes apart at most; :func:`merge_rounds` keeps each measurement's median round and
its spread. Every job builds its contender, measures, and closes it;
:class:`~benchmarks.proctree.ChildGuard` then checks that no worker outlived the close.

Throughput is measured the same way for everyone (:func:`measure_throughput`): the
first batch, a warm-up of ``warmup_s`` (pools fill their queues, JITs and caches
settle) that goes on while the rate still rises (a pool whose workers are still
starting: 32 processes take seconds; start-up has its own scenario, cold start) and
while the contender says not all its workers are up (:meth:`Contender.all_up`: Ray
starts actors a few at a time, so the rate rises in steps with flat stretches), then
batches counted over ``budget_s`` (or ``max_batches``), every batch read page by page
(:func:`~benchmarks.loaders.touch`) as a training step would.

Peers run in every configuration their documentation recommends
(:mod:`benchmarks.contenders`); a relative target compares awkgen with the best peer
configuration *in that scenario*.

=========  ==================================================================  ===========================
scenario   loader and workers                                                  target (awkgen-process)
=========  ==================================================================  ===========================
latency    sleeps 20 ms per batch; 8 and 32 workers; ideal = workers / 20 ms     >= 0.95 of ideal
bandwidth  32 MiB float32 per batch; 2 workers; limits: memcpy, serial loader   >= 1.0 x serial,
                                                                                >= 2 x best peer
cpu        ~10 ms of numpy per batch; workers = cores; ideal = cores / call     (reported)
tiny       1 KiB per batch; workers = cores: the per-batch overhead             >= 3 x best peer
decode     8 JPEG files (512x384) per batch read, decoded and resized to        >= 0.95 x cores x serial
           224x224 by Pillow; workers = cores; limit = cores x serial
coldstart  8 workers, 20 ms loader: construction to the 200th batch;            >= 0.95 of ideal (0.5 s);
           ideal = 200 x 20 ms / 8                                              first batch <= 20 ms + 0.3 s
overlap    Keras model.fit, train step ~ one loader call, 2 workers             epoch <= 1.05 x max(load,
                                                                                train)
memory     scenario 2's workload, PSS of the whole process tree                 extra <= (prefetch +
                                                                                workers + 1) batches
pathids    1 M path strings, shuffled, 256 per batch, one epoch, 8 workers,     tree PSS <= 0.5 x torch's,
           each contender in a fresh interpreter; peak PSS of the whole tree    batches/s >= 2 x torch's
bigids     10^9 ids as a range, 10^8 memory-mapped ids, 256 per batch, up to    construction <= 1 s, first
           10,000 batches, each in a fresh interpreter (awkgen's generators,    batch <= 1 s (range); the
           Grain's IndexSampler, torch's RandomSampler); the order's cost per   tree's anonymous memory
           batch at 10^6 ids, and of the plan awkgen had before                 grows <= 200 MB; order <=
                                                                                before + 2 us per batch
=========  ==================================================================  ===========================
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .contenders import AWKGEN_PROCESS, AWKGEN_RAY, PEERS, RAY_DATA, Contender
from .loaders import (
    MIB,
    CpuLoader,
    FirstCallPause,
    FullLoader,
    FullLoaderInPlace,
    FullLoaderReadOnly,
    ImageBatchLoader,
    SleepLoader,
    make_jpegs,
    tiny_loader,
    touch,
)
from .proctree import ChildGuard, MemorySampler, cpu_times, steal_fraction

__all__ = ["Settings", "Job", "SCENARIOS", "plan_jobs", "evaluate_targets", "measure_throughput", "merge_rounds",
           "best_peer", "rederive", "JPEG_DIR"]

CORES = os.cpu_count() or 1
LATENCY_S = 0.020
BIG_BYTES = 32 * MIB
CPU_CALL_S = 0.010
COLD_WORKERS = 8
COLD_BATCHES = 200
TTFB_SLACK_S = 0.3
DECODE_BATCH = 8
JPEG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".awkgen-cache", "bench-jpeg")
JPEG_COUNT = 256
PATHIDS_WORKERS = 8
PATHIDS_BATCH = 256
#: Contenders of the path-ids scenario (each in a fresh interpreter: see benchmarks/pathids.py).
PATHIDS_CONTENDERS = ("awkgen-process", "torch[manual]", "torch[auto]")
#: The ids-at-scale scenario (benchmarks/bigids.py): sizes per case, batches per measurement.
BIGIDS_N = {"range": 10**9, "memmap": 10**8, "order": 10**6}
BIGIDS_LABEL = {"range": "10^9", "memmap": "10^8", "order": "10^6"}
BIGIDS_BATCHES = 10_000
BIGIDS_AWKGEN = ("awkgen-process", "awkgen-blocking")
#: How many microseconds per batch awkgen's order may cost beyond the plan it had before: 1% of the
#: ~180 us of parent CPU the process backend spends per batch in the tiny scenario (its noise).
BIGIDS_ORDER_SLACK_US = 2.0
OVERLAP_WORKERS = 2
OVERLAP_SLACK = 1.05
BANDWIDTH_WORKERS = 2
#: The bandwidth scenario's extra awkgen row: the loader builds its batch with awkgen.empty.
EMPTY_ROW = "awkgen-process, loader using awkgen.empty"
#: The bandwidth scenario's extra Ray row: the loader marks its batch read-only (an actor on another node than the
#: driver's: no copy out of the store; on the driver's node it goes through a shared-memory slot like any batch).
READ_ONLY_ROW = "awkgen-ray, loader returning read-only arrays"
_WARM_BATCHES_PER_WORKER = 4
#: Warm-up windows (at least this long, and two batches a worker) go on until the rate has not
#: risen more than _STEADY_RISE above its best for _FLAT_WINDOWS windows in a row...
_WINDOW_S = 0.2
_STEADY_RISE = 1.05
_FLAT_WINDOWS = 2
#: ...or this long has passed since the first batch (a rate that never settles is measured anyway).
_WARM_CAP_S = 15.0


@dataclass(frozen=True)
class Settings:
    """How long to measure. ``quick`` trades precision for a run under two minutes."""

    quick: bool
    budget_s: float
    warmup_s: float
    max_batches: int
    latency_workers: tuple[int, ...]
    fit_steps: int
    fit_epochs: int
    memory_batches: int
    rounds: int
    pathids_n: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, budget_s=0.3, warmup_s=0.1, max_batches=20_000, latency_workers=(8,),
                       fit_steps=8, fit_epochs=2, memory_batches=6, rounds=1, pathids_n=100_000)
        return cls(quick=False, budget_s=1.2, warmup_s=0.3, max_batches=200_000, latency_workers=(8, 32),
                   fit_steps=30, fit_epochs=3, memory_batches=24, rounds=3, pathids_n=1_000_000)


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
        best, flat = 0.0, 0
        while ((flat < _FLAT_WINDOWS or not contender.all_up())  # until every worker is up
               and time.perf_counter() - started < _WARM_CAP_S):
            n_window, t0 = 0, time.perf_counter()
            while n_window < 2 * workers or time.perf_counter() - t0 < _WINDOW_S:
                touch(next(it))
                n_window += 1
            rate = n_window / (time.perf_counter() - t0)
            flat = flat + 1 if rate <= _STEADY_RISE * best else 0
            best = max(best, rate)
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
    #: Whether a larger value is better (batches/s) or a smaller one (seconds, MiB, ratios to a bound).
    higher: bool = True


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
    for c in contenders:  # the opt-in way: the same fill, written straight into the slot (awkgen.empty)
        if c.name == AWKGEN_PROCESS:
            def in_place(c: Contender = c) -> dict[str, Any]:
                record = measure_throughput(c, FullLoaderInPlace(BIG_BYTES), _ids(64, 1), BANDWIDTH_WORKERS, 1,
                                            settings)
                record["note"] = "FullLoader's fill into awkgen.empty(): built in the shared-memory slot"
                return add_limits(record)
            refs.append(Job("bandwidth", EMPTY_ROW, in_place, BANDWIDTH_WORKERS, reference=True))
        if c.name == AWKGEN_RAY:  # what the Ray backend does without its one copy out of the object store
            def read_only(c: Contender = c) -> dict[str, Any]:
                record = measure_throughput(c, FullLoaderReadOnly(BIG_BYTES), _ids(64, 1), BANDWIDTH_WORKERS, 1,
                                            settings)
                record["note"] = ("FullLoader's batch marked read-only: through a shared-memory slot on the driver's "
                                  "node, elsewhere a view of Ray's object store, not copied")
                return add_limits(record)
            refs.append(Job("bandwidth", READ_ONLY_ROW, read_only, BANDWIDTH_WORKERS, reference=True))
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

    return _throughput_jobs("tiny", contenders, tiny_loader, _ids(1024, 1), 1, CORES, settings, value)


def decode_loader() -> ImageBatchLoader:
    """The decode scenario's loader, the same for every contender: ``awkgen.images.load_image_batch``."""
    return ImageBatchLoader(JPEG_DIR, JPEG_COUNT)


def plan_decode(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    loader = decode_loader()
    ids = _ids(JPEG_COUNT // DECODE_BATCH, DECODE_BATCH)

    def serial() -> dict[str, Any]:
        make_jpegs(JPEG_DIR, JPEG_COUNT)  # once per cache folder; files stay in the page cache
        batch = ids[:DECODE_BATCH]
        rate = _timed_loop(lambda: touch(loader(batch)), settings)
        shared["decode_serial"] = rate
        return {"value": rate, "batches_per_s": rate, "images_per_s": rate * DECODE_BATCH,
                "ms_per_batch": 1e3 / rate, "note": "the loader called in a loop in this process (one core)"}

    def limits(record: dict[str, Any]) -> dict[str, Any]:
        ideal = CORES * shared["decode_serial"]
        record.update(value=record["batches_per_s"], images_per_s=record["batches_per_s"] * DECODE_BATCH,
                      ideal=ideal, of_ideal=record["batches_per_s"] / ideal)
        return record

    return ([Job("decode", "serial loader", serial, reference=True)]
            + _throughput_jobs("decode", contenders, loader, ids, DECODE_BATCH, CORES, settings, limits))


def plan_coldstart(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    loader = SleepLoader(LATENCY_S)
    ids = _ids(COLD_BATCHES, 8)
    ideal_s = COLD_BATCHES * LATENCY_S / COLD_WORKERS

    def job(c: Contender) -> Job:
        def run() -> dict[str, Any]:
            started = time.perf_counter()
            it = c.start(loader, ids, COLD_WORKERS, batch_size=8)
            try:
                touch(next(it))
                first_s = time.perf_counter() - started
                for _ in range(COLD_BATCHES - 1):
                    touch(next(it))
                seconds = time.perf_counter() - started
            finally:
                del it
                c.close()
            return {"value": seconds, "seconds": seconds, "first_batch_s": first_s, "ideal_s": ideal_s,
                    "of_ideal": ideal_s / seconds, "first_limit_s": LATENCY_S + TTFB_SLACK_S}
        return Job("coldstart", c.name, run, COLD_WORKERS if c.parallel else None)

    return [job(c) for c in contenders]


def plan_pathids(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    """Each contender in a fresh interpreter that imports only its own library (see
    :mod:`benchmarks.pathids`): the tree's PSS is then what a training script would pay."""
    def job(name: str) -> Job:
        def run() -> dict[str, Any]:
            cmd = [sys.executable, "-m", "benchmarks.pathids", "--contender", name, "--n", str(settings.pathids_n),
                   "--workers", str(PATHIDS_WORKERS), "--batch-size", str(PATHIDS_BATCH)]
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"pathids child failed ({proc.returncode}): {proc.stderr[-300:]}")
            record: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            record["value"] = record["batches_per_s"]
            return record
        return Job("pathids", name, run, PATHIDS_WORKERS)

    names = [c.name for c in contenders if c.name in PATHIDS_CONTENDERS]
    return [job(n) for n in names]


def _bigids_child(args: list[str]) -> list[dict[str, Any]]:
    """Run ``python -m benchmarks.bigids *args`` in a fresh interpreter; its JSON lines."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bigids", *args], cwd=root, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bigids child failed ({proc.returncode}): {proc.stderr[-300:]}")
    return [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]


def plan_bigids(settings: Settings, contenders: list[Contender], shared: dict[str, Any]) -> list[Job]:
    """Ids at scale (see :mod:`benchmarks.bigids`): each measurement in a fresh interpreter.

    Rows are named ``"<contender>, <case>"``: awkgen's generators where those contenders run,
    Grain's ``IndexSampler`` and torch's ``RandomSampler`` where a Grain or torch configuration runs.
    """
    budget = "3" if settings.quick else "5"  # for the peers: Grain's sampler takes ~4 ms a batch of 256
    names = [c.name for c in contenders]
    ids_rows = [n for n in BIGIDS_AWKGEN if n in names]
    ids_rows += [peer for peer in ("grain", "torch") if any(n.startswith(peer + "[") for n in names)]
    order_rows = ["awkgen", "awkgen before (numpy permutation)"] if set(BIGIDS_AWKGEN) & set(names) else []
    order_rows += [m for m in ("grain", "torch") if m in ids_rows]

    def ids_job(case: str, name: str) -> Job:
        def run() -> dict[str, Any]:
            awkgen = name in BIGIDS_AWKGEN  # awkgen's rows run every batch the targets name
            record = _bigids_child(["--case", case, "--contender", name, "--n", str(BIGIDS_N[case]),
                                    "--batches", str(BIGIDS_BATCHES), "--budget-s", "300" if awkgen else budget])[-1]
            record["library"] = record.pop("contender")  # the job's row name stays the record's contender
            record["value"] = record.get("anon_growth_mib")  # None when skipped (torch at 10^9)
            return record
        return Job("bigids", f"{name}, {case} {BIGIDS_LABEL[case]}", run, 2 if name == AWKGEN_PROCESS else None)

    def order_job(method: str, batch_size: int) -> Job:
        def run() -> dict[str, Any]:
            record = _bigids_child(["--case", "order", "--method", method, "--batch-size", str(batch_size),
                                    "--n", str(BIGIDS_N["order"]), "--budget-s", budget])[-1]
            record["library"] = record.pop("contender")
            record["value"] = record.get("us_per_batch")
            return record
        return Job("bigids", f"{method}, order {BIGIDS_LABEL['order']} x{batch_size}", run)

    jobs = [ids_job(case, name) for case in ("range", "memmap") for name in ids_rows]
    return jobs + [order_job(m, b) for b in (1, 256) for m in order_rows]


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
    loader = FirstCallPause(FullLoader(BIG_BYTES))  # every worker is seen idle before its first batch
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
                # Before close: a sweep in the middle of it reads the parent before it unmaps the
                # batches it shares with workers, then those workers as their sole owners (counted twice).
                sampler.stop()
                del it
                c.close()
            extra_batches = sampler.extra / BIG_BYTES
            return {"value": sampler.extra / MIB, "extra_mib": sampler.extra / MIB, "extra_batches": extra_batches,
                    "extra_by_process_mib": sampler.extra_by_process / MIB,
                    "peak_pss_mib": sampler.peak_pss / MIB, "peak_rss_mib": sampler.peak_rss / MIB,
                    "sweeps": sampler.sweeps, "sweeps_retried": sampler.retried,
                    "allowed_batches": 3 * BANDWIDTH_WORKERS + 1 if c.name == AWKGEN_PROCESS else None}
        return Job("memory", c.name, run, BANDWIDTH_WORKERS if c.parallel else None)

    return [job(c) for c in contenders]


SCENARIOS: dict[str, Scenario] = {s.key: s for s in (
    Scenario("latency", "1. Latency-bound", "loader sleeps 20 ms per batch (remote storage)", "batches/s",
             plan_latency),
    Scenario("bandwidth", "2. Bandwidth-bound", "32 MiB float32 batches, 2 workers", "batches/s", plan_bandwidth),
    Scenario("cpu", "3. CPU-bound", f"~10 ms of numpy per batch, {CORES} workers (= cores)", "batches/s",
             plan_cpu),
    Scenario("tiny", "4. Tiny batches", f"1 KiB per batch, {CORES} workers: per-batch overhead", "batches/s",
             plan_tiny),
    Scenario("decode", "5. Real decode",
             f"{DECODE_BATCH} JPEG files (512x384) per batch, decoded and resized to 224x224 by Pillow, "
             f"{CORES} workers; limit = cores x the in-process rate", "batches/s", plan_decode),
    Scenario("coldstart", "6. Cold start",
             f"{COLD_WORKERS} workers, 20 ms loader: construction to the {COLD_BATCHES}th batch "
             f"(ideal {COLD_BATCHES * LATENCY_S / COLD_WORKERS:.2f} s)", "s", plan_coldstart, higher=False),
    Scenario("overlap", "7. Training overlap", "Keras model.fit, train step ~ one loader call, 2 workers",
             "epoch / max(load, train)", plan_overlap, higher=False),
    Scenario("memory", "8. Memory", "scenario 2's workload: peak PSS of parent + workers beyond their own",
             "MiB", plan_memory, higher=False),
    Scenario("pathids", "9. Path ids at scale",
             f"1 M path strings, shuffled, {PATHIDS_BATCH} per batch, one epoch, {PATHIDS_WORKERS} workers, "
             "each contender in a fresh interpreter; peak PSS of the whole process tree", "batches/s",
             plan_pathids),
    Scenario("bigids", "10. A billion ids",
             "10^9 ids as a range and 10^8 memory-mapped int64 ids, 256 per batch, shuffled, up to "
             f"{BIGIDS_BATCHES:,} batches, each in a fresh interpreter: construction, first batch, growth of the "
             "tree's anonymous memory; and the order's cost per batch at 10^6 ids", "MiB or us per batch",
             plan_bigids, higher=False),
)}


def _rotate(items: list[Any], n: int) -> list[Any]:
    """*items* rotated left by *n*.

    >>> _rotate([1, 2, 3], 1), _rotate([1, 2, 3], 4)
    ([2, 3, 1], [2, 3, 1])
    """
    if not items:
        return []
    n %= len(items)
    return items[n:] + items[:n]


def plan_jobs(keys: list[str], settings: Settings, contenders: list[Contender],
              shared: dict[str, Any]) -> list[Job]:
    """Every scenario's jobs, in ``settings.rounds`` interleaved rounds.

    Round *n* runs the scenarios rotated by *n* (A B C, B C A, C A B, ...) and, within each,
    the contenders rotated by *n*; a scenario's reference jobs stay first in it. With more
    than one round, every job carries its round number (merged by :func:`merge_rounds`).
    """
    jobs: list[Job] = []
    for n in range(settings.rounds):
        for key in _rotate(list(keys), n):
            for job in SCENARIOS[key].plan(settings, _rotate(list(contenders), n), shared):
                job.round = n if settings.rounds > 1 else None
                jobs.append(job)
    return jobs


def run_job(job: Job, guard: ChildGuard) -> dict[str, Any]:
    """Run *job*, never raising: a contender that fails gets an ``error`` instead of numbers.

    Each record carries the hypervisor's CPU steal during the job and the load average after it.
    """
    record: dict[str, Any] = {"scenario": job.scenario, "contender": job.contender, "workers": job.workers,
                              "reference": job.reference, "round": job.round}
    started = time.perf_counter()
    ticks = cpu_times()
    try:
        record.update(job.run())
    except Exception as exc:  # one broken contender must not sink the whole run
        record["error"] = f"{type(exc).__name__}: {exc}"[:400]
        record["value"] = None
    record["wall_s"] = round(time.perf_counter() - started, 2)
    record["steal"] = steal_fraction(ticks, cpu_times())
    try:
        record["loadavg"] = round(os.getloadavg()[0], 2)
    except OSError:
        record["loadavg"] = None
    leaked = guard.check(job.label)
    if leaked:
        record["leaked_pids"] = leaked
    return record


def merge_rounds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per measurement repeated in rounds: the round with the median value, every
    round's value under ``rounds``, their ``spread`` ``[min, max]`` and the largest CPU steal
    of any round. Records without a round pass through unchanged; groups come out in the
    order of their first round.

    >>> rs = [{"scenario": "tiny", "contender": "a", "workers": 2, "round": n, "value": v, "steal": 0.01 * n}
    ...       for n, v in enumerate([5.0, 1.0, 4.0])]
    >>> [(r["value"], r["rounds"], r["spread"], r["steal_max"]) for r in merge_rounds(rs)]
    [(4.0, [5.0, 1.0, 4.0], [1.0, 5.0], 0.02)]
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


def rederive(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After :func:`merge_rounds`: ratios to a reference measured in the same run (decode and CPU
    ``of_ideal``, bandwidth ``of_serial``/``of_memcpy``) recomputed from the *medians*, so a table's
    ratios follow its values; each round's own paired ratio stays under ``*_paired``.

    >>> rs = [{"scenario": "decode", "contender": "serial loader", "reference": True, "value": 10.0},
    ...       {"scenario": "decode", "contender": "x", "reference": False, "value": 15.0, "of_ideal": 0.9}]
    >>> r = rederive(rs)[1]
    >>> (r["of_ideal"], r["of_ideal_paired"], r["ideal"]) == (15.0 / (CORES * 10.0), 0.9, CORES * 10.0)
    True
    >>> rederive(rs)[1]["of_ideal_paired"]   # a second pass changes nothing
    0.9
    """
    refs = {(r["scenario"], r["contender"]): r["value"] for r in records
            if r.get("reference") and r.get("value")}
    for r in records:
        if r.get("reference") or r.get("value") is None:
            continue
        if r["scenario"] in ("decode", "cpu") and (r["scenario"], "serial loader") in refs:
            r.setdefault("of_ideal_paired", r.get("of_ideal"))  # idempotent: a second pass keeps the round's
            r["ideal"] = CORES * refs[r["scenario"], "serial loader"]
            r["of_ideal"] = r["value"] / r["ideal"]
        if r["scenario"] == "bandwidth":
            for key, ref in (("of_serial", "serial loader"), ("of_memcpy", "memcpy limit")):
                if ("bandwidth", ref) in refs:
                    r.setdefault(f"{key}_paired", r.get(key))
                    r[key] = r["value"] / refs["bandwidth", ref]
    return records


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((x for x in rounds if x.get("value") is not None), key=lambda x: x["value"])
    pick = dict(ok[(len(ok) - 1) // 2] if ok else rounds[0])
    steals = [x["steal"] for x in rounds if x.get("steal") is not None]
    pick.update(round=None, rounds=[x.get("value") for x in rounds],
                spread=[ok[0]["value"], ok[-1]["value"]] if ok else None,
                steal_max=max(steals) if steals else None)
    if ok and len(ok) < len(rounds):
        pick.pop("error", None)
        pick["failed_rounds"] = [x.get("error") for x in rounds if x.get("value") is None]
    return pick


# -- targets ----------------------------------------------------------------------------------------------

def _find(records: list[dict[str, Any]], scenario: str, contender: str,
          workers: int | None = None) -> dict[str, Any] | None:
    for r in records:
        if (r["scenario"] == scenario and r["contender"] == contender and r.get("value") is not None
                and (workers is None or r["workers"] == workers)):
            return r
    return None


def best_peer(records: list[dict[str, Any]], scenario: str, workers: int | None = None,
              names: tuple[str, ...] = PEERS, key: str = "value", higher: bool | None = None) -> dict[str, Any] | None:
    """The best record of the peer configurations *names* in *scenario* (the largest *key*
    where *higher*, default the scenario's own direction, else the smallest), or ``None``.

    >>> rs = [{"scenario": "tiny", "contender": c, "workers": 2, "value": v}
    ...       for c, v in [("keras[threads]", 9.0), ("keras[processes]", 2.0), ("awkgen-process", 50.0)]]
    >>> best_peer(rs, "tiny")["contender"]
    'keras[threads]'
    """
    found = [r for n in names if (r := _find(records, scenario, n, workers)) and r.get(key) is not None]
    if not found:
        return None
    if higher is None:
        higher = SCENARIOS[scenario].higher
    return (max if higher else min)(found, key=lambda r: r[key])


#: The Ray backend's targets (issue 22): fractions of ideal, of the process backend, of Ray Data's best.
RAY_LATENCY_OF_IDEAL = 0.9
RAY_COLDSTART_OF_IDEAL = 0.8
RAY_OF_PROCESS = 0.5
RAY_OVER_RAY_DATA = 1.5


def _ray_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """awkgen-ray's targets: latency and cold start against the ideal, bandwidth and tiny batches
    against awkgen-process, and every scenario against Ray Data's best configuration.

    >>> rs = [{"scenario": "tiny", "contender": c, "workers": 2, "value": v}
    ...       for c, v in [("awkgen-ray", 900.0), ("awkgen-process", 1000.0), ("ray.data[tasks]", 100.0)]]
    >>> [(t["target"], round(t["measured"], 2), t["passed"]) for t in _ray_targets(rs)]
    [('tiny batches vs awkgen-process', 0.9, True), ('tiny vs Ray Data', 9.0, True)]
    """
    out: list[dict[str, Any]] = []

    def add(target: str, measured: float, threshold: float, how: str) -> None:
        out.append({"target": target, "contender": AWKGEN_RAY, "measured": measured, "threshold": threshold,
                    "cmp": ">=", "passed": bool(measured >= threshold), "how": how})

    ray_data = RAY_DATA
    for r in records:
        if r["scenario"] == "latency" and r["contender"] == AWKGEN_RAY and r.get("value") is not None:
            add(f"latency-bound, {r['workers']} workers", r["of_ideal"], RAY_LATENCY_OF_IDEAL,
                "fraction of workers / 20 ms, steady state")
    r = _find(records, "coldstart", AWKGEN_RAY)
    if r:
        add("cold start, 200 batches", r["of_ideal"], RAY_COLDSTART_OF_IDEAL,
            "fraction of ideal: 200 x 20 ms / 8 workers, construction included")
    read_only, proc = _find(records, "bandwidth", READ_ONLY_ROW), _find(records, "bandwidth", AWKGEN_PROCESS)
    if read_only and proc:
        add("bandwidth, read-only arrays, vs awkgen-process (reported)", read_only["value"] / proc["value"], 0.0,
            "times awkgen-process's batches/s; on one node the batch goes through a shared-memory slot, as "
            "writable ones do (on other nodes it would stay in Ray's object store); no target")
    for scenario, label in (("bandwidth", "bandwidth"), ("tiny", "tiny batches")):
        ray, proc = _find(records, scenario, AWKGEN_RAY), _find(records, scenario, AWKGEN_PROCESS)
        if ray and proc:
            add(f"{label} vs awkgen-process", ray["value"] / proc["value"], RAY_OF_PROCESS,
                "times awkgen-process's batches/s, same run")
    for scenario in ("latency", "coldstart", "bandwidth", "tiny"):
        higher = SCENARIOS[scenario].higher
        for r in records:
            if r["scenario"] != scenario or r["contender"] != AWKGEN_RAY or r.get("value") is None:
                continue
            peer = best_peer(records, scenario, r["workers"], names=ray_data)
            if peer:
                ratio = r["value"] / peer["value"] if higher else peer["value"] / r["value"]
                add(f"{scenario} vs Ray Data" + (f", {r['workers']} workers" if scenario == "latency" else ""),
                    ratio, RAY_OVER_RAY_DATA, f"times Ray Data's best ({peer['contender']}), both in order")
    return out


def evaluate_targets(records: list[dict[str, Any]], profile: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The issue's targets, each as ``{target, contender, measured, threshold, passed, cmp, how}``.

    Relative targets compare with the best peer configuration in the same scenario; *profile*
    (``benchmarks.profile_costs``' output, measured after the run) adds the per-batch CPU
    targets. A target whose inputs were not measured in this run is left out.
    """
    out: list[dict[str, Any]] = []

    def add(target: str, contender: str, measured: float, threshold: float, cmp: str, how: str) -> None:
        passed = measured >= threshold if cmp == ">=" else measured <= threshold
        out.append({"target": target, "contender": contender, "measured": measured, "threshold": threshold,
                    "cmp": cmp, "passed": bool(passed), "how": how})

    for name in ("awkgen-thread", AWKGEN_PROCESS):
        for r in records:
            if r["scenario"] == "latency" and r["contender"] == name and r.get("value") is not None:
                add(f"latency-bound, {r['workers']} workers", name, r["of_ideal"], 0.95, ">=",
                    "fraction of workers / 20 ms")
    serial = _find(records, "bandwidth", "serial loader")
    memcpy = _find(records, "bandwidth", "memcpy limit")
    peer = best_peer(records, "bandwidth")
    for name in (AWKGEN_PROCESS, "awkgen-thread"):  # the process backend is the one the targets are for
        proc = _find(records, "bandwidth", name)
        if proc and serial:
            add("bandwidth vs serial loader", name, proc["value"] / serial["value"], 1.0, ">=",
                "times the in-process serial rate (same loader)")
        if proc and peer:
            add("bandwidth vs best peer", name, proc["value"] / peer["value"], 2.0, ">=",
                f"times the best peer's batches/s ({peer['contender']})")
        if proc and memcpy:
            add("bandwidth vs memcpy limit (reported)", name, proc["value"] / memcpy["value"], 0.0, ">=",
                "fraction of one core's np.copyto rate of 32 MiB; no target")
    in_place = _find(records, "bandwidth", EMPTY_ROW)
    if in_place and peer:
        add("bandwidth with awkgen.empty vs best peer (reported)", EMPTY_ROW, in_place["value"] / peer["value"],
            0.0, ">=", f"times the best peer's batches/s ({peer['contender']}), whose loader copies; no target")
    if in_place and serial:
        add("bandwidth with awkgen.empty vs serial loader (reported)", EMPTY_ROW,
            in_place["value"] / serial["value"], 0.0, ">=", "times the in-process serial rate of FullLoader; no target")
    peer = best_peer(records, "tiny")
    for name in (AWKGEN_PROCESS, "awkgen-thread"):
        tiny = _find(records, "tiny", name)
        if tiny and peer:
            add("tiny batches vs best peer", name, tiny["value"] / peer["value"], 3.0, ">=",
                f"times the best peer's batches/s ({peer['contender']})")
    inline = _find(records, "tiny", "awkgen-blocking")
    if inline and peer:
        add("tiny: in-line generator vs best peer (reported)", "awkgen-blocking", inline["value"] / peer["value"],
            0.0, ">=", "times the best peer's batches/s: DataGenerator calls the loader itself, no worker, no "
            "message; its per-batch work is every backend's parent's too, so this bounds them; no target")
    tiny_prof = (profile or {}).get("tiny_awkgen_process")
    if tiny_prof:
        add("tiny: parent CPU per batch", AWKGEN_PROCESS, tiny_prof["parent_cpu_us_per_batch"], 60.0, "<=",
            "us of the parent's CPU (all its threads) per batch, benchmarks.profile_costs after the run")
    _tiny_limits(profile or {}, peer, add)
    for name in ("awkgen-thread", AWKGEN_PROCESS):
        r = _find(records, "decode", name)
        if r:
            add("real decode vs cores x serial", name, r["of_ideal"], 0.95, ">=",
                "fraction of cores x the in-process rate")
    for name in ("awkgen-thread", AWKGEN_PROCESS):
        r = _find(records, "coldstart", name)
        if r:
            add("cold start, 200 batches", name, r["of_ideal"], 0.95, ">=",
                "fraction of ideal: 200 x 20 ms / 8 workers, construction included")
            add("time to first batch", name, r["first_batch_s"], r["first_limit_s"], "<=",
                "seconds; one loader call + 0.3 s")
        r = _find(records, "overlap", name)
        if r:
            add("training overlap", name, r["value"], OVERLAP_SLACK, "<=", "epoch time / max(load, train)")
    out += _ray_targets(records)
    r = _find(records, "memory", AWKGEN_PROCESS)
    if r:
        add("memory in flight", AWKGEN_PROCESS, r["extra_batches"], r["allowed_batches"], "<=",
            "32 MiB batches beyond the processes' own footprint; prefetch (4) + workers (2) + 1 held")
    _bigids_targets(records, add)
    r = _find(records, "pathids", AWKGEN_PROCESS)
    torch_names = tuple(n for n in PEERS if n.startswith("torch"))
    lean = best_peer(records, "pathids", names=torch_names, key="peak_pss_mib", higher=False)
    fast = best_peer(records, "pathids", names=torch_names)
    if r and lean:
        add("path ids: whole-tree PSS vs torch", AWKGEN_PROCESS, r["peak_pss_mib"] / lean["peak_pss_mib"], 0.5,
            "<=", f"fraction of the leaner torch configuration's peak PSS ({lean['contender']})")
    if r and fast:
        add("path ids: throughput vs torch", AWKGEN_PROCESS, r["value"] / fast["value"], 2.0, ">=",
            f"times the faster torch configuration's batches/s ({fast['contender']})")
    return out


def _tiny_limits(profile: dict[str, Any], peer: dict[str, Any] | None, add: Callable[..., None],
                 cores: int = CORES) -> None:
    """What stands between the tiny scenario and 3x the best peer, from ``profile_costs``: two
    reported rows, each the least a batch costs over what 3x the best peer's rate leaves per
    batch, so that above 1 the target is out of reach for any pool under awkgen's generator.

    - processes: the generator's own work (in-line ``DataGenerator`` less the bare loop) plus a
      bare worker process's CPU per batch (no library: read, unpickle, loader, pickle, write),
      counting nothing for the caller's side of the pipe, over all the cores' time per batch;
    - the parent of a process pool, twice: the generator's own work plus the cheapest caller of
      the bare socket pools ``profile_costs.message_floor`` measures (1 to 16 batches a message,
      round robin or streamed to one worker) within the scenario's window of 2 tasks per worker,
      and then in any window it tries (up to 32 per worker), over the time per batch: one
      interpreter runs the parent, so above 1 no pool that sends batches in messages gets there
      under the generator in that window;
    - threads: the generator's own work plus a bare handoff's CPU per batch (``queue.SimpleQueue``
      both ways and the loader in the threads, no library), which one GIL mostly runs one after
      the other, over the time per batch (an estimate: CPU time includes what threads do without
      the GIL, so this row is not a strict bound).

    >>> rows = []
    >>> prof = {"tiny_floor": {"generator_us_per_batch": 9.0},
    ...         "handoff_floor": {"threads_cpu_us": 16.0, "processes_workers_cpu_us": 19.0},
    ...         "message_floor": {"a": {"per_message": 1, "window": 4, "caller_cpu_us": 17.0},
    ...                           "b": {"per_message": 16, "window": 64, "caller_cpu_us": 5.0}}}
    >>> _tiny_limits(prof, {"value": 25000.0}, lambda *a: rows.append(a[:3]), cores=2)
    >>> for target, _, value in rows:
    ...     print(target.split(":")[1].split(" vs")[0].strip(), round(value, 2))
    least CPU of a process pool per batch 1.05
    least parent time of a process pool per batch, window 4, 1.95
    least parent time of a process pool per batch, any window, 1.05
    least time of a thread pool per batch 1.88
    """
    floor, handoff = profile.get("tiny_floor"), profile.get("handoff_floor")
    if peer is None or not floor or not handoff:
        return
    rate = 3 * peer["value"]
    generator = floor["generator_us_per_batch"]
    if "processes_workers_cpu_us" in handoff:
        budget = cores * 1e6 / rate
        least = generator + handoff["processes_workers_cpu_us"]
        add("tiny: least CPU of a process pool per batch vs what 3x the best peer leaves (reported)", AWKGEN_PROCESS,
            least / budget, 0.0, ">=", f"(the generator's own work + a bare worker process's CPU per batch at one "
            f"task a message, no library, the caller's side of the pipe not counted: {least:.1f} us) / "
            f"({cores} cores / {rate:,.0f} batches/s = {budget:.1f} us); above 1, out of reach for any process "
            "pool under the generator")
    messages = list(profile.get("message_floor", {}).values())
    for label, runs in ((f"window {2 * cores}", [m for m in messages if m["window"] == 2 * cores]),
                        ("any window", messages)):
        if not runs:
            continue
        best = min(runs, key=lambda m: m["caller_cpu_us"])
        least = generator + best["caller_cpu_us"]
        add(f"tiny: least parent time of a process pool per batch, {label}, vs what 3x the best peer leaves "
            "(reported)", AWKGEN_PROCESS, least * rate / 1e6, 0.0, ">=", f"(the generator's own work + the "
            f"cheapest caller's CPU per batch of profile_costs' bare socket pools, {best['per_message']} batch"
            f"{'es' if best['per_message'] > 1 else ''} a "
            f"message in a window of {best['window']}{', streamed to one worker' if best.get('streaming') else ''}, "
            f"no library: {least:.1f} us) / (1 s / {rate:,.0f} batches/s = {1e6 / rate:.1f} us): one interpreter "
            f"runs the parent; above 1, out of reach in {label.replace('any window', 'any window tried')} for a "
            "pool that sends batches in messages under the generator")
    budget = 1e6 / rate
    least = generator + handoff["threads_cpu_us"]
    add("tiny: least time of a thread pool per batch vs what 3x the best peer leaves (reported)", "awkgen-thread",
        least / budget, 0.0, ">=", f"(the generator's own work + a bare SimpleQueue handoff's CPU per batch, the "
        f"loader's included, no library: {least:.1f} us, which one GIL mostly runs one after the other) / "
        f"(1 s / {rate:,.0f} batches/s = {budget:.1f} us); above 1, out of reach for a thread pool under the "
        "generator (an estimate: CPU time includes what threads do without the GIL)")


def _bigids_targets(records: list[dict[str, Any]], add: Callable[..., None]) -> None:
    """The ids-at-scale targets (issue 25), for each awkgen generator measured."""
    for name in BIGIDS_AWKGEN:
        r = _find(records, "bigids", f"{name}, range {BIGIDS_LABEL['range']}")
        if r:
            add("10^9 range ids: construction", name, r["construction_s"], 1.0, "<=", "seconds")
            add("10^9 range ids: first batch", name, r["first_batch_s"], 1.0, "<=", "seconds from construction")
            add("10^9 range ids: memory growth", name, r["anon_growth_mib"], 200 * 1e6 / MIB, "<=",
                f"MiB of anonymous memory, whole process tree, over {r['batches']:,} batches")
        r = _find(records, "bigids", f"{name}, memmap {BIGIDS_LABEL['memmap']}")
        if r:
            add("10^8 memory-mapped ids: construction", name, r["construction_s"], 1.0, "<=", "seconds")
            add("10^8 memory-mapped ids: memory growth", name, r["anon_growth_mib"], 200 * 1e6 / MIB, "<=",
                f"MiB of anonymous memory (the mapped file's pages aside), whole tree, over {r['batches']:,} "
                "batches")
    for batch_size in (1, 256):
        new = _find(records, "bigids", f"awkgen, order {BIGIDS_LABEL['order']} x{batch_size}")
        old = _find(records, "bigids", f"awkgen before (numpy permutation), order {BIGIDS_LABEL['order']} "
                                       f"x{batch_size}")
        if new and old:
            add(f"order at 10^6 ids, batch {batch_size}: cost beyond before", "awkgen",
                new["us_per_batch"] - old["us_per_batch"], BIGIDS_ORDER_SLACK_US, "<=",
                f"us per batch more than the numpy-permutation plan ({old['us_per_batch']:.2f} us); 2 us is 1% "
                "of the tiny scenario's parent CPU per batch")
