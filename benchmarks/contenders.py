"""One small adapter per contender, behind one tiny interface.

::

    contender.start(loader, ids, workers, batch_size=B)     -> iterator of batches (numpy)
    contender.fit_input(loader, ids, workers, batch_size=B,
                        labels=y, steps=S)                  -> (x, kwargs) for model.fit(x, **kwargs)
    contender.close()                                       -> every worker gone; idempotent

Every contender loads the same batches: ``ids`` cut into consecutive slices of
*batch_size*, in order, each loaded by ``loader(slice)``; contenders that index
batches by number wrap the loader in :class:`~benchmarks.loaders.BatchAt`. Each is
configured the way its own documentation recommends for a batch-level source, with
the same in-flight window (two batches per worker) wherever the knob exists:

============================  ===============================================================
``awkgen-blocking``           ``DataGenerator``: the loader runs in the caller (the baseline)
``awkgen-thread``             ``DataGeneratorMultiProc(backend="thread", n_workers=N)``
``awkgen-process``            ``DataGeneratorMultiProc(backend="process", n_workers=N)``
``keras-pydataset``           ``keras.utils.PyDataset(workers=N, use_multiprocessing=True,
                              max_queue_size=2N)``, iterated through Keras' own
                              ``PyDatasetAdapter`` (an ``OrderedEnqueuer`` over a
                              ``multiprocessing.Pool``), exactly as ``model.fit`` does
``torch-dataloader``          ``DataLoader(batch_dataset, batch_size=None, num_workers=N,
                              persistent_workers=True, pin_memory=False, prefetch_factor=2)``
``tf.data``                   ``range(n).map(tf.numpy_function(loader), num_parallel_calls=N,
                              deterministic=True).prefetch(AUTOTUNE)``, private thread pool of
                              ``max(N, cores)`` threads (else at most ``cores`` calls run at once)
``grain``                     ``MapDataset.range(n).map(loader).to_iter_dataset(ReadOptions(
                              num_threads=1, prefetch_buffer_size=2)).mp_prefetch(
                              MultiprocessingOptions(num_workers=N, per_worker_buffer_size=2))``
============================  ===============================================================

Frameworks are imported inside the adapters, never at module level: spawned Grain
workers import this package to unpickle a loader.
"""

from __future__ import annotations

import abc
import gc
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .loaders import BatchAt

__all__ = ["Contender", "CONTENDERS", "make_contenders", "AWKGEN_PROCESS", "PEERS"]

#: Batches one endless stream can index; ``BatchAt`` wraps around the ids.
_ENDLESS = 10**8
AWKGEN_PROCESS = "awkgen-process"


def _stream(source: Iterator[Any], convert: Callable[[Any], Any]) -> Iterator[Any]:
    """``convert(batch)`` for each batch of *source*, holding no reference to the previous batch
    while waiting for the next (a generator expression's loop variable would, keeping one more
    batch, and its shared memory, alive than the consumer does)."""
    while True:
        yield convert(next(source))


def _window(workers: int) -> int:
    return 2 * max(1, workers)


class Contender(abc.ABC):
    """A data-loading stack under test. See the module docstring for the interface."""

    name: str = ""
    #: Whether ``workers`` means anything to it (the blocking baseline ignores it).
    parallel: bool = True

    @abc.abstractmethod
    def start(self, loader: Callable[[np.ndarray], Any], ids: np.ndarray, workers: int, *,
              batch_size: int) -> Iterator[Any]:
        """Build the stack and return an endless iterator of its batches (numpy arrays)."""

    @abc.abstractmethod
    def fit_input(self, loader: Callable[[np.ndarray], Any], ids: np.ndarray, workers: int, *,
                  batch_size: int, labels: np.ndarray, steps: int) -> tuple[Any, dict[str, Any]]:
        """What to hand ``model.fit``: ``(x, extra keyword arguments)``, *steps* batches per epoch."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every worker. Idempotent."""


# -- awkgen ------------------------------------------------------------------------------------

class Awkgen(Contender):
    def __init__(self, backend: str) -> None:
        self.backend = backend  # "blocking", "thread" or "process"
        self.name = f"awkgen-{backend}"
        self.parallel = backend != "blocking"
        self._gen: Any = None

    def _build(self, loader: Any, ids: np.ndarray, workers: int, batch_size: int,
               labels: np.ndarray | None) -> Any:
        import awkgen

        if self.backend == "blocking":
            self._gen = awkgen.DataGenerator(loader, ids, labels, batch_size, shuffle=False)
        else:
            self._gen = awkgen.DataGeneratorMultiProc(loader, ids, labels, batch_size, n_workers=workers,
                                                      backend=self.backend, shuffle=False)
        return self._gen

    def start(self, loader, ids, workers, *, batch_size):
        return _stream(self._build(loader, ids, workers, batch_size, None), lambda batch: batch[0])

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        return self._build(loader, ids, workers, batch_size, labels), {"steps_per_epoch": steps}

    def close(self):
        if self._gen is not None:
            self._gen.close()
            self._gen = None


# -- Keras PyDataset ---------------------------------------------------------------------------

_PYDATASET_CLASS: Any = None


def _pydataset_class() -> Any:
    """A ``keras.utils.PyDataset`` whose item *i* is ``BatchAt(i)`` (defined on first use)."""
    global _PYDATASET_CLASS
    if _PYDATASET_CLASS is None:
        import keras

        class BatchPyDataset(keras.utils.PyDataset):
            def __init__(self, batch_at: BatchAt, n_batches: int, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.batch_at, self.n_batches = batch_at, n_batches

            def __len__(self) -> int:
                return self.n_batches

            def __getitem__(self, index: int) -> Any:
                return self.batch_at(index)

        _PYDATASET_CLASS = BatchPyDataset
    return _PYDATASET_CLASS


class KerasPyDataset(Contender):
    name = "keras-pydataset"

    def __init__(self) -> None:
        self._adapter: Any = None
        self._dataset: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        self._dataset = _pydataset_class()(batch_at, n_batches, workers=workers, use_multiprocessing=True,
                                           max_queue_size=_window(workers))
        return self._dataset

    def start(self, loader, ids, workers, *, batch_size):
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        dataset = self._build(BatchAt(loader, ids, batch_size), _ENDLESS, workers)
        # What model.fit does with a PyDataset: an adapter, on_epoch_begin (starts the
        # OrderedEnqueuer's pool), then its numpy iterator.
        self._adapter = PyDatasetAdapter(dataset, shuffle=False)
        self._adapter.on_epoch_begin()
        return self._adapter.get_numpy_iterator()

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        return self._build(BatchAt(loader, ids, batch_size, labels), steps, workers), {}

    def close(self):
        if self._adapter is not None:
            self._adapter.on_epoch_end()  # stops the enqueuer; its pool is closed and its workers exit
            self._adapter = None
        self._dataset = None
        gc.collect()


# -- PyTorch DataLoader ------------------------------------------------------------------------

_TORCH_DATASET_CLASS: Any = None


def _torch_dataset_class() -> Any:
    """A map-style ``torch.utils.data.Dataset`` whose items are whole batches."""
    global _TORCH_DATASET_CLASS
    if _TORCH_DATASET_CLASS is None:
        import torch.utils.data

        class BatchDataset(torch.utils.data.Dataset):
            def __init__(self, batch_at: BatchAt, n_batches: int) -> None:
                self.batch_at, self.n_batches = batch_at, n_batches

            def __len__(self) -> int:
                return self.n_batches

            def __getitem__(self, index: int) -> Any:
                return self.batch_at(index)

        _TORCH_DATASET_CLASS = BatchDataset
    return _TORCH_DATASET_CLASS


def _numpy(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return type(batch)(_numpy(b) for b in batch)
    return batch.numpy() if hasattr(batch, "numpy") else batch


class TorchDataLoader(Contender):
    name = "torch-dataloader"

    def __init__(self) -> None:
        self._loader: Any = None
        self._iterator: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        from torch.utils.data import DataLoader

        self._loader = DataLoader(_torch_dataset_class()(batch_at, n_batches), batch_size=None, shuffle=False,
                                  num_workers=workers, persistent_workers=True, pin_memory=False,
                                  prefetch_factor=2)
        return self._loader

    def start(self, loader, ids, workers, *, batch_size):
        self._iterator = iter(self._build(BatchAt(loader, ids, batch_size), _ENDLESS, workers))
        return _stream(self._iterator, _numpy)

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        return self._build(BatchAt(loader, ids, batch_size, labels), steps, workers), {}

    def close(self):
        for it in (self._iterator, getattr(self._loader, "_iterator", None)):
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
        self._iterator = self._loader = None
        gc.collect()


# -- tf.data -----------------------------------------------------------------------------------

class TfData(Contender):
    name = "tf.data"

    def __init__(self) -> None:
        self._iterator: Any = None
        self._dataset: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int, shapes: Any = None) -> Any:
        import tensorflow as tf

        labelled = batch_at.labels is not None
        out = [tf.float32, tf.float32] if labelled else tf.float32

        def load(i: Any) -> Any:
            value = tf.numpy_function(batch_at, [i], out, stateful=False)
            if shapes is None:
                return value
            for tensor, shape in zip(value, shapes):
                tensor.set_shape(shape)
            return tuple(value)

        options = tf.data.Options()
        options.threading.private_threadpool_size = max(workers, os.cpu_count() or 1)
        dataset = (tf.data.Dataset.range(n_batches)
                   .map(load, num_parallel_calls=workers, deterministic=True)
                   .prefetch(tf.data.AUTOTUNE)
                   .with_options(options))
        self._dataset = dataset
        return dataset

    def start(self, loader, ids, workers, *, batch_size):
        self._iterator = self._build(BatchAt(loader, ids, batch_size), _ENDLESS, workers).as_numpy_iterator()
        return self._iterator

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        batch_at = BatchAt(loader, ids, batch_size, labels)
        x, y = batch_at(0)  # a probe call (outside any timing): Keras wants static shapes
        dataset = self._build(batch_at, _ENDLESS, workers, shapes=(x.shape, y.shape))
        return dataset, {"steps_per_epoch": steps}

    def close(self):
        self._iterator = self._dataset = None
        gc.collect()


# -- Grain -------------------------------------------------------------------------------------

class Grain(Contender):
    name = "grain"

    def __init__(self) -> None:
        self._iterator: Any = None
        self._dataset: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        import grain
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain reads absl flags; outside absl.app.run nobody parses them
            flags.FLAGS.mark_as_parsed()
        # One loader call at a time per worker, like every other contender: Grain's default
        # ReadOptions (16 threads, 500 elements ahead) would run 16 calls per worker and
        # buffer 500 batches (16 GB of 32 MiB batches).
        read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
        self._dataset = (grain.MapDataset.range(n_batches).map(batch_at).to_iter_dataset(read)
                         .mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2)))
        return self._dataset

    def start(self, loader, ids, workers, *, batch_size):
        self._iterator = iter(self._build(BatchAt(loader, ids, batch_size), _ENDLESS, workers))
        return self._iterator

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        # Endless, with steps_per_epoch: Keras keeps one iterator (one set of workers) across
        # epochs, as Grain's guide does with ``.repeat()``; a finite dataset ends fit after epoch 1.
        return self._build(BatchAt(loader, ids, batch_size, labels), _ENDLESS, workers), {"steps_per_epoch": steps}

    def close(self):
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = self._dataset = None
        gc.collect()


#: Contender name -> factory, in report order.
CONTENDERS: dict[str, Callable[[], Contender]] = {
    "awkgen-blocking": lambda: Awkgen("blocking"),
    "awkgen-thread": lambda: Awkgen("thread"),
    AWKGEN_PROCESS: lambda: Awkgen("process"),
    "keras-pydataset": KerasPyDataset,
    "torch-dataloader": TorchDataLoader,
    "tf.data": TfData,
    "grain": Grain,
}
#: The other libraries, against which awkgen's relative targets are set.
PEERS = ("keras-pydataset", "torch-dataloader", "tf.data", "grain")


def make_contenders(names: list[str] | None = None) -> list[Contender]:
    """Fresh adapters for *names* (default: all), in report order."""
    chosen = list(CONTENDERS) if names is None else names
    unknown = [n for n in chosen if n not in CONTENDERS]
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; expected some of {list(CONTENDERS)}")
    return [CONTENDERS[n]() for n in chosen]
