"""``awkgen bench``: how many batches per second each factory delivers from a slow loader.

The loader here does no real work: it sleeps ``latency_ms`` per sample, the way a
loader waits on a network disk or an object store, then returns a small array.
That isolates what awkgen itself adds: the blocking :func:`~awkgen.DataGenerator`
runs one loader call at a time, :func:`~awkgen.DataGeneratorMultiProc` runs
``n_workers`` of them side by side, so its throughput should grow with the workers
until awkgen's own overhead (a pipe round trip and a shared-memory copy per batch)
dominates. Nothing consumes the batches but the loop that times them: this is the
input pipeline's ceiling, not a training speed.

The full comparative suite (against Keras, PyTorch, tf.data, Grain) lives in
``benchmarks/``; this module is the quick, dependency-free check behind
``awkgen bench``.

>>> rows = run_bench(latency_ms=0.0, workers=(1,), n_batches=3, backend="thread", progress=False,
...                  out=lambda line: None)
>>> [(row.factory, row.n_workers) for row in rows]
[('DataGenerator', 1), ('DataGeneratorMultiProc', 1)]
>>> rows[0].speedup
1.0
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .factories import DataGenerator, DataGeneratorMultiProc
from .generator import BatchGenerator

__all__ = ["SleepyLoader", "BenchRow", "throughput", "run_bench", "format_table",
           "DEFAULT_WORKERS", "QUICK_WORKERS"]

DEFAULT_WORKERS = (1, 2, 4, 8)
QUICK_WORKERS = (1, 2, 4)
_N_IDS = 4096


class SleepyLoader:
    """A loader that waits ``latency_ms`` per sample, then returns ``(n, *shape)`` float32 zeros.

    A module-level class, so every backend can pickle it.

    >>> SleepyLoader(latency_ms=0.0, shape=(2, 2))([7, 8, 9]).shape
    (3, 2, 2)
    """

    def __init__(self, latency_ms: float = 1.0, shape: tuple[int, ...] = (8, 8, 1)) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0; received: {latency_ms!r}")
        self.latency_ms: float = float(latency_ms)
        self.shape: tuple[int, ...] = tuple(shape)

    def __call__(self, ids: Sequence[Any]) -> np.ndarray:
        if self.latency_ms:
            time.sleep(self.latency_ms * len(ids) / 1e3)
        return self.read(ids)

    def read(self, ids: Sequence[Any]) -> np.ndarray:
        """What a batch holds once the wait is over (subclasses read real files)."""
        return np.zeros((len(ids), *self.shape), dtype=np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(latency_ms={self.latency_ms}, shape={self.shape})"


@dataclass(frozen=True)
class BenchRow:
    """One line of the table: a factory, its workers, and what it delivered."""

    factory: str
    backend: str
    n_workers: int
    batches_per_s: float
    wait_ms_per_batch: float
    speedup: float  # against the blocking DataGenerator in the same run


def throughput(gen: BatchGenerator, n_batches: int, tick: Callable[[], object] | None = None) -> tuple[float, float]:
    """Pull *n_batches* from *gen* after one warm-up batch; return ``(batches/s, wait ms/batch)``.

    The warm-up batch keeps worker start-up out of the timing; *tick* is called
    after each timed batch (a progress bar's update).

    >>> gen = DataGenerator(SleepyLoader(0.0), list(range(10)), batch_size=5)
    >>> rate, wait_ms = throughput(gen, 4)
    >>> rate > 0 and wait_ms >= 0
    True
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1; received: {n_batches!r}")
    gen()
    before = gen.stats()
    start = time.perf_counter()
    for _ in range(n_batches):
        gen()
        if tick is not None:
            tick()
    seconds = time.perf_counter() - start
    waited = gen.stats().wait_s - before.wait_s
    return n_batches / seconds, 1e3 * waited / n_batches


def run_bench(latency_ms: float = 1.0, batch_size: int = 32, workers: Sequence[int] = DEFAULT_WORKERS,
              n_batches: int = 100, backend: str = "process", seed: int = 0, progress: bool = True,
              out: Callable[[str], object] = print) -> list[BenchRow]:
    """Time the blocking ``DataGenerator``, then ``DataGeneratorMultiProc`` for each worker count.

    Prints the table through *out* and returns its rows; the first row is the
    blocking baseline (``speedup`` 1.0). With *progress*, a tqdm bar if tqdm is
    installed (it is not a dependency), else a line per row on stderr.
    """
    tqdm: Any = None
    if progress:
        try:  # not a core dependency: without it, a plain line per row
            import tqdm.auto as tqdm_auto
        except ImportError:
            pass
        else:
            tqdm = tqdm_auto.tqdm

    loader = SleepyLoader(latency_ms)
    ids = list(range(_N_IDS))
    configs: list[tuple[str, int]] = [("DataGenerator", 1)] + [("DataGeneratorMultiProc", n) for n in workers]
    out(f"awkgen bench: loader sleeps {latency_ms:g} ms per sample, batch_size={batch_size}, "
        f"{n_batches} timed batches per row, backend={backend!r}")
    rows: list[BenchRow] = []
    # No tqdm object at all without progress: even a disabled bar starts tqdm's monitor thread for good.
    bar = tqdm(total=n_batches * len(configs), unit="batch", leave=False) if tqdm is not None else None
    try:
        for factory, n_workers in configs:
            if factory == "DataGenerator":
                gen = DataGenerator(loader, ids, batch_size=batch_size, seed=seed)
            else:
                gen = DataGeneratorMultiProc(loader, ids, batch_size=batch_size, n_workers=n_workers,
                                             backend=backend, seed=seed)
            label = f"{factory}({n_workers})" if gen.backend != "serial" else factory
            if bar is not None:
                bar.set_description(label)
            elif progress:
                print(f"awkgen bench: timing {label} ({len(rows) + 1} of {len(configs)})", file=sys.stderr, flush=True)
            with gen:
                rate, wait_ms = throughput(gen, n_batches, tick=None if bar is None else lambda: bar.update(1))
            base = rows[0].batches_per_s if rows else rate
            rows.append(BenchRow(factory, gen.backend, n_workers, rate, wait_ms, rate / base))
    finally:
        if bar is not None:
            bar.close()
    out(format_table(rows))
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """The rows as an aligned text table.

    >>> print(format_table([BenchRow("DataGenerator", "serial", 1, 30.0, 33.3, 1.0)]))
    factory                 backend  workers  batches/s  wait ms/batch  speedup
    DataGenerator           serial         1       30.0           33.3     1.00x
    """
    lines = [f"{'factory':<23} {'backend':<8} {'workers':>7} {'batches/s':>10} {'wait ms/batch':>14} {'speedup':>8}"]
    for r in rows:
        lines.append(f"{r.factory:<23} {r.backend:<8} {r.n_workers:>7} {r.batches_per_s:>10.1f} "
                     f"{r.wait_ms_per_batch:>14.1f} {r.speedup:>7.2f}x")
    return "\n".join(lines)
