"""The loaders every contender runs, and the one picklable wrapper they share.

Everything here is module-level and imports numpy only: spawned workers (Grain)
and forkserver workers (awkgen) import this module to unpickle a loader, and
must not drag TensorFlow or torch in with it.

A loader maps a batch of ids to a float32 array (the benchmarks' convention, so
``tf.numpy_function`` knows its output type without a probe call). Contenders
that index batches by number (Keras ``PyDataset``, torch ``Dataset``, ``tf.data``,
Grain) wrap the same loader in :class:`BatchAt`.

>>> at = BatchAt(tiny_loader, np.arange(6), batch_size=2)
>>> at.n_batches, at(0).nbytes, at(4).nbytes   # batch 4 wraps around to batch 1
(3, 1024, 1024)
>>> x, y = BatchAt(as_float, np.arange(6), 2, labels=np.arange(6) * 10.0)(1)
>>> x.tolist(), y.tolist()
([2.0, 3.0], [20.0, 30.0])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchAt", "SleepLoader", "FullLoader", "CpuLoader", "tiny_loader", "as_float", "touch",
           "MIB", "PAGE_BYTES"]

MIB = 2**20
PAGE_BYTES = 4096


def as_float(ids: np.ndarray) -> np.ndarray:
    """The ids as float32: a loader that costs nothing."""
    return np.asarray(ids, dtype=np.float32)


def tiny_loader(ids: np.ndarray) -> np.ndarray:
    """1 KiB at once: all that is left to measure is the per-batch overhead."""
    return np.full(256, float(ids[0]), dtype=np.float32)


@dataclass(frozen=True)
class SleepLoader:
    """Waits *seconds* (remote storage: no CPU used), then returns a float32 array of *shape*.

    >>> SleepLoader(0.0, (2, 3))(np.arange(2)).shape
    (2, 3)
    """

    seconds: float
    shape: tuple[int, ...] = (8,)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.full(self.shape, (int(ids[0]) % 251) / 251, dtype=np.float32)  # small values: no inf in a model


@dataclass(frozen=True)
class FullLoader:
    """Returns a freshly allocated, filled float32 array of *nbytes* (bandwidth-bound)."""

    nbytes: int

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return np.full(self.nbytes // 4, float(ids[0]), dtype=np.float32)


@dataclass(frozen=True)
class CpuLoader:
    """*reps* rounds of small numpy work holding the CPU (about 0.1 ms each; calibrate with :meth:`calibrate`)."""

    reps: int

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        a = np.linspace(0.0, 1.0, 2048, dtype=np.float64) + float(ids[0])
        for _ in range(self.reps):
            a = np.sin(a) * 1.0001 + np.cos(a[::-1])
        return a.astype(np.float32)

    @classmethod
    def calibrate(cls, target_s: float, trials: int = 5) -> CpuLoader:
        """A loader whose call takes about *target_s* on this machine (median of *trials*)."""
        probe = cls(200)
        times = []
        for _ in range(trials):
            start = time.perf_counter()
            probe(np.zeros(1))
            times.append(time.perf_counter() - start)
        per_rep = sorted(times)[len(times) // 2] / probe.reps
        return cls(max(1, round(target_s / per_rep)))


@dataclass(frozen=True)
class BatchAt:
    """Batch number *i* (cyclic) of ``ids`` cut into *batch_size* slices, loaded by *loader*.

    With *labels*, returns ``(x, labels_of_the_batch)`` as Keras' ``fit`` wants.
    """

    loader: Callable[[np.ndarray], Any]
    ids: np.ndarray
    batch_size: int
    labels: np.ndarray | None = None

    @property
    def n_batches(self) -> int:
        return len(self.ids) // self.batch_size

    def __call__(self, i: Any) -> Any:
        j = int(i) % self.n_batches
        part = slice(j * self.batch_size, (j + 1) * self.batch_size)
        x = self.loader(self.ids[part])
        return x if self.labels is None else (x, self.labels[part])


def touch(batch: Any) -> float:
    """Read one value per 4 KiB page of the batch's first array, as a training step would fault it in.

    Every contender's consumer calls this on every batch, so memory that is mapped
    but never read (a lazily faulted shared-memory view) costs what it would cost a
    real consumer.

    >>> touch((np.ones(2048, dtype=np.float32),))   # two pages, one value read from each
    2.0
    """
    while isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    a = np.asarray(batch)
    if a.size == 0:
        return 0.0
    flat = a.reshape(-1)
    step = max(1, PAGE_BYTES // max(1, a.itemsize))
    return float(flat[::step].sum())
