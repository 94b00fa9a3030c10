"""A billion ids, one contender per interpreter: ``python -m benchmarks.bigids --case CASE --contender NAME``.

What the number of ids costs before any sample is loaded: building the generator (or
sampler), its first batch, and the memory that grows with the ids. Each run is a fresh
interpreter that imports only numpy and its contender's library, and prints one JSON line.

Cases:

``range``   ``range(n)`` ids (default 10^9): a path template in the loader is all a data set of
            numbered files needs.
``memmap``  ``n`` int64 ids (default 10^8) in a ``.npy`` file opened with ``mmap_mode="r"`` (a
            sparse file, written once into ``.awkgen-cache/bench-bigids/``).
``order``   the order alone, in this process, at 10^6 ids: microseconds per batch over one
            epoch (batch sizes 1 and 256), for awkgen's plan, the plan awkgen had before (numpy's
            permutation of every position, sliced), Grain's ``IndexSampler`` and torch's
            ``RandomSampler``.

Contenders for ``range`` and ``memmap``:

- ``awkgen-process``: ``DataGeneratorMultiProc(loader, ids, batch_size=256, n_workers=2,
  backend="process", seed=0)``: the whole generator, workers included;
- ``awkgen-blocking``: ``DataGenerator(loader, ids, batch_size=256, seed=0)``;
- ``grain``: ``grain.python.IndexSampler(num_records=n, shuffle=True, seed=0)``; a batch is 256
  lookups (``sampler[i].record_key``), the ids indexed with them, the loader called here;
- ``torch``: ``torch.utils.data.RandomSampler(range(n), generator=...)`` iterated 256 indices a
  batch, the ids indexed with them, the loader called here. Its first ``next`` materialises
  ``torch.randperm(n).tolist()`` (about 48 bytes an id): it is not run where that would take more
  than half the machine's available memory, and the record says so.

The peers' rows are their samplers only (no workers): what they cost here is a floor for any
pipeline built on them. Memory is the anonymous resident memory (``RssAnon``) of this process
and every process below it, sampled every 20 ms; its growth is the peak minus the value just
before construction (after imports and after opening the memory map): pages of the mapped
file are not counted, they belong to the page cache.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import sys
import threading
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

CASES = ("range", "memmap", "order")
CONTENDERS = ("awkgen-process", "awkgen-blocking", "grain", "torch")
ORDER_METHODS = ("awkgen", "awkgen before (numpy permutation)", "grain", "torch")
BATCH = 256
CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".awkgen-cache", "bench-bigids")
TORCH_BYTES_PER_ID = 48  # randperm's int64 tensor, then a list of Python ints (pointer + int object)


def ids_loader(ids: Any) -> np.ndarray:
    """The batch's ids as int64: all overhead, no I/O (a real loader would open ``f"{root}/{i}.jpg"``).

    >>> ids_loader([3, 1]).tolist()
    [3, 1]
    """
    return np.asarray(ids, dtype=np.int64)


def _status(pid: int) -> tuple[int, int]:
    """``(RssAnon, VmRSS)`` of *pid* in bytes; zeros if it is gone."""
    anon = rss = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return anon, rss


class AnonSampler:
    """Peak anonymous and total resident memory of this process tree, from a background thread."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak_anon = self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-anon-sampler")

    @staticmethod
    def now() -> tuple[int, int]:
        from benchmarks.proctree import descendants

        pids = (os.getpid(), *descendants())
        values = [_status(p) for p in pids]
        return sum(a for a, _ in values), sum(r for _, r in values)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sweep()

    def sweep(self) -> None:
        anon, rss = self.now()
        self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)

    def start(self) -> AnonSampler:
        self.sweep()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sweep()


def memmap_ids(n: int) -> np.ndarray:
    """*n* int64 ids in a sparse ``.npy`` file (made once), opened read-only as a memory map."""
    path = os.path.join(CACHE, f"ids-{n}.npy")
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        part = path + f".{os.getpid()}.part"
        ids = np.lib.format.open_memmap(part, mode="w+", dtype=np.int64, shape=(n,))
        ids[-1] = n - 1  # the rest is a hole: zeros, no disk space
        ids.flush()
        del ids
        os.replace(part, path)
    return np.load(path, mmap_mode="r")


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _index(ids: Any, positions: list[int]) -> Any:
    if isinstance(ids, np.ndarray):
        return ids[np.asarray(positions, dtype=np.int64)]
    return [ids[p] for p in positions]


def _start(contender: str, ids: Any) -> tuple[Any, Any]:
    """``(next_batch, close)`` for *contender* over *ids*."""
    n = len(ids)
    if contender.startswith("awkgen"):
        import awkgen

        if contender == "awkgen-process":
            gen = awkgen.DataGeneratorMultiProc(ids_loader, ids, batch_size=BATCH, n_workers=2, backend="process",
                                                seed=0)
        else:
            gen = awkgen.DataGenerator(ids_loader, ids, batch_size=BATCH, seed=0)
        return (lambda: gen()[0]), gen.close
    if contender == "grain":
        import grain.python as gp

        sampler = gp.IndexSampler(num_records=n, shard_options=gp.NoSharding(), shuffle=True, num_epochs=None,
                                  seed=0)
        counter = itertools.count(0, BATCH)

        def grain_batch() -> np.ndarray:
            start = next(counter)
            return ids_loader(_index(ids, [sampler[i].record_key for i in range(start, start + BATCH)]))

        return grain_batch, (lambda: None)
    import torch
    from torch.utils.data import RandomSampler

    order = iter(RandomSampler(range(n), generator=torch.Generator().manual_seed(0)))
    return (lambda: ids_loader(_index(ids, list(itertools.islice(order, BATCH))))), (lambda: None)


def run_ids(case: str, contender: str, n: int, batches: int, budget_s: float) -> dict[str, Any]:
    """Construction, first batch, batches until *batches* or *budget_s*, and the memory that grew."""
    if contender.startswith("awkgen"):
        import awkgen  # noqa: F401  (imported before the baseline, as every library below)
    elif contender == "grain":
        import grain.python  # noqa: F401
    else:
        import torch  # noqa: F401
    record: dict[str, Any] = {"case": case, "contender": contender, "ids": n, "batch_size": BATCH}
    if contender == "torch" and TORCH_BYTES_PER_ID * n > _available_bytes() // 2:
        record["skipped"] = (f"not run: RandomSampler's first batch materialises randperm(n).tolist(), about "
                             f"{TORCH_BYTES_PER_ID * n / 2**30:.0f} GiB for {n:,} ids; "
                             f"{_available_bytes() / 2**30:.0f} GiB available")
        return record
    ids: Any = range(n) if case == "range" else memmap_ids(n)
    gc.collect()
    base_anon, base_rss = AnonSampler.now()
    sampler = AnonSampler().start()
    started = time.perf_counter()
    next_batch, close = _start(contender, ids)
    built = time.perf_counter()
    try:
        first = next_batch()
        first_at = time.perf_counter()
        assert len(first) == BATCH
        done = 1
        deadline = first_at + budget_s
        while done < batches and time.perf_counter() < deadline:
            next_batch()
            done += 1
        ended = time.perf_counter()
    finally:
        close()
        sampler.stop()
    record.update(construction_s=built - started, first_batch_s=first_at - started, batches=done,
                  batches_per_s=(done - 1) / max(ended - first_at, 1e-9),
                  anon_growth_mib=(sampler.peak_anon - base_anon) / 2**20,
                  rss_growth_mib=(sampler.peak_rss - base_rss) / 2**20, base_anon_mib=base_anon / 2**20)
    return record


class _PlanBefore:
    """awkgen's order until this scenario, line for line: the generator kept each epoch's permutation
    of every position (``_order``) and sliced it (``Plan.batch_positions(epoch, step, order)``)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.steps_per_epoch = -(-n // batch_size)
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            order = np.random.default_rng([0, 0, epoch]).permutation(self.n)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return order

    def _slice(self, epoch: int, step: int, order: np.ndarray | None = None) -> np.ndarray:
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(step)
        if order is None:
            order = self._order(epoch)
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def batch_positions(self, epoch: int, step: int) -> np.ndarray:
        return self._slice(epoch, step, self._order(epoch))


def _per_batch(make: Any, steps: int, budget_s: float) -> tuple[float, int]:
    """Seconds per call of the batch function *make()* returns, over *steps* calls or *budget_s*."""
    batch = make()
    started = time.perf_counter()
    done = 0
    while done < steps:
        batch()
        done += 1
        if done % 64 == 0 and time.perf_counter() - started > budget_s:
            break
    return (time.perf_counter() - started) / done, done


def run_order(n: int, budget_s: float, methods: tuple[str, ...] = ORDER_METHODS,
              batch_sizes: tuple[int, ...] = (1, BATCH)) -> list[dict[str, Any]]:
    """Microseconds per batch of each way (*methods*) to order *n* ids, over one epoch (or *budget_s*)."""
    from awkgen.sampling import Plan

    records = []
    for batch_size in batch_sizes:
        steps = -(-n // batch_size)

        def awkgen_plan(batch_size: int = batch_size) -> Any:
            plan = Plan(n, batch_size, True, seed=0)
            step = itertools.count()
            return lambda: plan.batch_positions(0, next(step))

        def before(batch_size: int = batch_size) -> Any:
            plan = _PlanBefore(n, batch_size)
            step = itertools.count()
            return lambda: plan.batch_positions(0, next(step))

        def grain_sampler(batch_size: int = batch_size) -> Any:
            import grain.python as gp

            sampler = gp.IndexSampler(num_records=n, shard_options=gp.NoSharding(), shuffle=True, num_epochs=None,
                                      seed=0)
            counter = itertools.count(0, batch_size)

            def positions() -> list[int]:
                start = next(counter)
                return [sampler[i].record_key for i in range(start, start + batch_size)]
            return positions

        def torch_sampler(batch_size: int = batch_size) -> Any:
            import torch
            from torch.utils.data import RandomSampler

            order = iter(RandomSampler(range(n), generator=torch.Generator().manual_seed(0)))
            return lambda: list(itertools.islice(order, batch_size))

        for method, make in zip(ORDER_METHODS, (awkgen_plan, before, grain_sampler, torch_sampler)):
            if method not in methods:
                continue
            try:
                seconds, done = _per_batch(make, steps, budget_s)
                records.append({"case": "order", "contender": method, "ids": n, "batch_size": batch_size,
                                "us_per_batch": 1e6 * seconds, "batches": done, "whole_epoch": done == steps})
            except ImportError as exc:
                records.append({"case": "order", "contender": method, "ids": n, "batch_size": batch_size,
                                "error": f"ImportError: {exc}"})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bigids", description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--contender", choices=CONTENDERS, help="for the range and memmap cases")
    parser.add_argument("--n", type=int, default=None, help="ids (default: 10^9 range, 10^8 memmap, 10^6 order)")
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--budget-s", type=float, default=15.0, help="most seconds of batches after the first")
    parser.add_argument("--method", choices=ORDER_METHODS, action="append",
                        help="order case: the ways to order, repeatable (default: all)")
    parser.add_argument("--batch-size", type=int, action="append", help="order case: repeatable (default: 1, 256)")
    args = parser.parse_args(argv)
    n = args.n or {"range": 10**9, "memmap": 10**8, "order": 10**6}[args.case]
    if args.case == "order":
        for record in run_order(n, args.budget_s, tuple(args.method or ORDER_METHODS),
                                tuple(args.batch_size or (1, BATCH))):
            print(json.dumps(record))
        return
    if args.contender is None:
        parser.error("--contender is required for the range and memmap cases")
    print(json.dumps(run_ids(args.case, args.contender, n, args.batches, args.budget_s)))


if __name__ == "__main__":
    main()
