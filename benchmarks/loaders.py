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

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchAt", "SleepLoader", "FullLoader", "FullLoaderReadOnly", "CpuLoader", "JpegLoader", "ImageBatchLoader",
           "FirstCallPause",
           "tiny_loader", "path_loader", "as_float", "touch", "make_jpegs", "make_paths", "MIB", "PAGE_BYTES"]

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
class FullLoaderInPlace:
    """:class:`FullLoader`'s batch, built with ``awkgen.empty`` (in the batch's slot on the process backend)."""

    nbytes: int

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        import awkgen

        out = awkgen.empty(self.nbytes // 4, dtype=np.float32)
        out.fill(float(ids[0]))
        return out


@dataclass(frozen=True)
class FullLoaderReadOnly:
    """:class:`FullLoader`'s batch, marked read-only: on the Ray backend it stays a view of Ray's object store.

    >>> FullLoaderReadOnly(16)(np.arange(1)).flags.writeable
    False
    """

    nbytes: int

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        out = np.full(self.nbytes // 4, float(ids[0]), dtype=np.float32)
        out.flags.writeable = False
        return out


#: ``(pid, loader)`` of each :class:`FirstCallPause` that has paused in that process.
_PAUSED_IN: set[tuple[int, Any]] = set()


@dataclass(frozen=True)
class FirstCallPause:
    """*loader*, after a pause of *seconds* on its first call in each process (worker).

    The memory scenario's loader: a worker's own footprint is the smallest PSS the
    sampler sees it at, and a worker that started, loaded and built its first batch
    between two sweeps (a sweep of the tree takes tens of milliseconds on a busy machine)
    was first seen *with* that batch, which then counted as its own footprint. The pause
    holds every worker, idle and ready, long enough for several sweeps (a second: a sweep of a
    busy machine, read again while RSS moves, can take a few hundred milliseconds). Every contender
    gets it; it costs no memory.

    >>> FirstCallPause(as_float, 0.0)(np.arange(2)).tolist()
    [0.0, 1.0]
    """

    loader: Callable[[np.ndarray], Any]
    seconds: float = 1.0

    def __call__(self, ids: np.ndarray) -> Any:
        key = (os.getpid(), self)
        if key not in _PAUSED_IN:
            _PAUSED_IN.add(key)
            time.sleep(self.seconds)
        return self.loader(ids)


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


def path_loader(paths: Any) -> np.ndarray:
    """One float per path string (its length): the "path ids at scale" loader, all overhead.

    >>> path_loader(["a/b.jpg", "c.jpg"]).tolist()
    [7.0, 5.0]
    """
    return np.fromiter((len(p) for p in paths), dtype=np.float32, count=len(paths))


def make_paths(n: int) -> list[str]:
    """*n* distinct, realistic image paths (about 40 characters each), as a Python list of str.

    >>> make_paths(2)
    ['/datasets/train/shard-0000/img-0000000.jpg', '/datasets/train/shard-0001/img-0000001.jpg']
    """
    return [f"/datasets/train/shard-{i % 1000:04d}/img-{i:07d}.jpg" for i in range(n)]


#: Bump when :func:`make_jpegs` draws different images: the cache is rebuilt.
_JPEG_VERSION = 1


def make_jpegs(folder: str, n: int = 256, size: tuple[int, int] = (512, 384), quality: int = 90) -> str:
    """Write *n* deterministic JPEG files (``00000.jpg`` ...) into *folder* once; return *folder*.

    Each image is a smooth colour gradient plus seeded noise (so it does not compress to
    nothing), *size* = (width, height). A ``MANIFEST`` file records what was written; a
    folder whose manifest matches is reused as is.
    """
    from PIL import Image

    manifest = os.path.join(folder, "MANIFEST")
    want = f"v{_JPEG_VERSION} n={n} size={size[0]}x{size[1]} quality={quality}\n"
    try:
        with open(manifest) as f:
            if f.read() == want:
                return folder
    except OSError:
        pass
    os.makedirs(folder, exist_ok=True)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    for i in range(n):
        rng = np.random.default_rng(i)
        phase = rng.integers(0, 256, 3)
        base = np.stack([(x * 255 // w + phase[0]), (y * 255 // h + phase[1]),
                         ((x + y) * 255 // (w + h) + phase[2])], axis=-1) % 256
        noisy = np.clip(base + rng.integers(-24, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        tmp = os.path.join(folder, f"{i:05d}.jpg.tmp")
        Image.fromarray(noisy).save(tmp, "JPEG", quality=quality)
        os.replace(tmp, os.path.join(folder, f"{i:05d}.jpg"))
    with open(manifest, "w") as f:
        f.write(want)
    return folder


@dataclass(frozen=True)
class JpegLoader:
    """Reads, decodes and resizes JPEG file ``ids % n`` of *folder* with Pillow; float32 ``(B, H, W, 3)``.

    Pillow releases the GIL while it decodes and resizes, so threads can run it side by side.
    """

    folder: str
    n: int
    size: tuple[int, int] = (224, 224)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        from PIL import Image

        out = np.empty((len(ids), self.size[1], self.size[0], 3), dtype=np.float32)
        for k, i in enumerate(ids):
            with Image.open(os.path.join(self.folder, f"{int(i) % self.n:05d}.jpg")) as im:
                out[k] = np.asarray(im.convert("RGB").resize(self.size, Image.BILINEAR))
        return out


@dataclass(frozen=True)
class ImageBatchLoader:
    """JPEG files ``ids % n`` of *folder*, read, decoded and resized to *size* ``(h, w)`` by
    :func:`awkgen.images.load_image_batch` (Pillow): float32 ``(B, H, W, 3)`` in [0, 1].

    The decode scenario's loader, for every contender: the same Pillow work as
    :class:`JpegLoader` (without its ``convert("RGB")`` copy, and with values divided by 255),
    written into a batch from ``awkgen.empty``: in awkgen's process workers the batch's
    shared-memory slot, everywhere else ``numpy.empty``.
    """

    folder: str
    n: int
    size: tuple[int, int] = (224, 224)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        from awkgen.images import load_image_batch

        return load_image_batch([os.path.join(self.folder, f"{int(i) % self.n:05d}.jpg") for i in ids],
                                size=self.size)


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
