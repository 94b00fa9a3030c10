"""One small adapter per contender, behind one tiny interface.

::

    contender.start(loader, ids, workers, batch_size=B)     -> iterator of batches (numpy)
    contender.fit_input(loader, ids, workers, batch_size=B,
                        labels=y, steps=S)                  -> (x, kwargs) for model.fit(x, **kwargs)
    contender.close()                                       -> every worker gone; idempotent

Every contender loads the same batches: ``ids`` cut into consecutive slices of
*batch_size*, in order, each loaded by ``loader(slice)``; contenders that index
batches by number wrap the loader in :class:`~benchmarks.loaders.BatchAt`.

Each peer library (a *family*) runs in each of the configurations its own documentation
recommends, and the report compares awkgen with the family's **best** configuration in
each scenario (see :data:`FAMILIES`):

======================  ===================================================================
``awkgen-blocking``     ``DataGenerator``: the loader runs in the caller (the baseline)
``awkgen-thread``       ``DataGeneratorMultiProc(backend="thread", n_workers=N)``
``awkgen-process``      ``DataGeneratorMultiProc(backend="process", n_workers=N)``, default
                        ``prefetch`` (2 per worker) and transport (shared-memory slots)
``awkgen-ray``          ``DataGeneratorMultiProc(backend="ray", n_workers=N)``: N Ray actors on
                        the run's local Ray cluster (:func:`ray_cluster`), default options
``keras[threads]``      ``PyDataset(workers=N, use_multiprocessing=False,
                        max_queue_size=max(10, 2N))`` (its advice for I/O-bound work)
``keras[processes]``    the same with ``use_multiprocessing=True`` (its advice for
                        compute-bound work); both iterated through Keras' own
                        ``PyDatasetAdapter``, exactly as ``model.fit`` does
``torch[manual]``       ``DataLoader(batch_dataset, batch_size=None, sampler=BatchSampler(
                        SequentialSampler, B), num_workers=N, persistent_workers=True,
                        pin_memory=False, prefetch_factor=2)``: manual batching, the dataset
                        gets a list of indices
``torch[auto]``         ``DataLoader(dataset, batch_size=B, ...)``: automatic batching; the
                        dataset's ``__getitems__`` (torch's batched-fetch hook) loads the batch
                        with one loader call, ``collate_fn=default_convert``
``tf.data[autotune]``   ``range(n).map(tf.numpy_function(loader), num_parallel_calls=AUTOTUNE,
                        deterministic=True).prefetch(AUTOTUNE)`` (its guide's advice)
``tf.data[fixed]``      ``num_parallel_calls=N``, private thread pool of ``max(N, cores)``
``grain[threads]``      ``MapDataset.range(n).map(loader).to_iter_dataset(ReadOptions(
                        num_threads=N, prefetch_buffer_size=2N))``: N reader threads in-process
``grain[processes]``    ``...to_iter_dataset(ReadOptions(num_threads=0)).mp_prefetch(
                        MultiprocessingOptions(num_workers=N, per_worker_buffer_size=2))``
                        (``num_threads=0``: ReadOptions' own advice for data already in memory;
                        the default 16 threads x 500 elements would buffer 16 GB of 32 MiB batches)
``ray.data[tasks]``     ``ray.data.range(1024, override_num_blocks=64).map_batches(fn,
                        batch_size=1, concurrency=N, num_cpus=min(1, cpus/N))
                        .iter_batches(batch_size=1, prefetch_batches=2N)``, ``preserve_order``
                        on (deterministic order, as every other contender): one row per batch
                        index, ``fn`` loads the batch (``BatchAt``) into one row; the
                        fractional ``num_cpus`` is Ray Data's advice for I/O-bound work
``ray.data[actors]``    the same with a callable class: a pool of N actors
                        (``concurrency=N``), Ray Data's advice for per-worker state; each
                        holds ``min(1, cpus/2N)``: the read tasks that feed the pool need
                        the other half (a pool holding every CPU starves them: a hang)
======================  ===================================================================

The three Ray contenders (:data:`RAY_CONTENDERS`) run only when ``--contenders`` names them,
on one local Ray cluster started once per run (before the harness takes its baseline of
child processes) with this machine's CPUs.

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

__all__ = ["Contender", "CONTENDERS", "make_contenders", "AWKGEN_PROCESS", "AWKGEN_RAY", "PEERS", "FAMILIES",
           "family_of", "ray_cluster", "RAY_CONTENDERS", "RAY_DATA"]

#: Batches one endless stream can index; ``BatchAt`` wraps around the ids.
_ENDLESS = 10**8
AWKGEN_PROCESS = "awkgen-process"
AWKGEN_RAY = "awkgen-ray"


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
    #: The library it belongs to ("keras", "torch", ...) and the configuration, in words.
    family: str = ""
    config: str = ""
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

    def all_up(self) -> bool:
        """Whether every worker of the stack last started is up: the throughput warm-up waits for
        it (within its cap), as for a steady rate. Stacks whose workers start at once say True."""
        return True


# -- awkgen ------------------------------------------------------------------------------------

class Awkgen(Contender):
    def __init__(self, backend: str) -> None:
        self.backend = backend  # "blocking", "thread", "process" or "ray"
        self.name = f"awkgen-{backend}"
        self.family = "awkgen"
        self.config = {"blocking": "DataGenerator", "thread": "backend='thread'",
                       "process": "backend='process', default prefetch (2/worker), shared-memory slots",
                       "ray": "backend='ray', default prefetch (2/worker) and actor options, local cluster"}[backend]
        self.parallel = backend != "blocking"
        self._gen: Any = None

    def _build(self, loader: Any, ids: np.ndarray, workers: int, batch_size: int,
               labels: np.ndarray | None) -> Any:
        import awkgen

        if self.backend == "ray":
            ray_cluster()
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

    def all_up(self):
        """Ray starts actors a few at a time (seconds for 8 on a small machine): all of them up?"""
        workers_up = getattr(getattr(self._gen, "_executor", None), "workers_up", None)
        return workers_up is None or workers_up() >= self._gen._executor.n_workers


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
    family = "keras"

    def __init__(self, processes: bool) -> None:
        self.processes = processes
        self.name = f"keras[{'processes' if processes else 'threads'}]"
        self.config = f"PyDataset(workers=N, use_multiprocessing={processes}, max_queue_size=max(10, 2N))"
        self._adapter: Any = None
        self._dataset: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        self._dataset = _pydataset_class()(batch_at, n_batches, workers=workers,
                                           use_multiprocessing=self.processes,
                                           max_queue_size=max(10, _window(workers)))
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
            """Index ``j`` is sample ``j`` of the endless stream ``BatchAt`` cuts into batches.

            Manual batching (``batch_size=None`` and a ``BatchSampler``) calls
            ``__getitem__`` with a batch's list of indices; automatic batching calls
            ``__getitems__`` (torch's batched-fetch hook) with the same list. Either way the
            loader runs once per batch, on the batch's ids, like every other contender.
            """

            def __init__(self, batch_at: BatchAt, n_batches: int) -> None:
                self.batch_at, self.n_batches = batch_at, n_batches

            def __len__(self) -> int:
                return self.n_batches * self.batch_at.batch_size

            def __getitem__(self, indices: Any) -> Any:
                return self.batch_at(indices[0] // self.batch_at.batch_size)

            __getitems__ = __getitem__

        _TORCH_DATASET_CLASS = BatchDataset
    return _TORCH_DATASET_CLASS


def _numpy(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return type(batch)(_numpy(b) for b in batch)
    return batch.numpy() if hasattr(batch, "numpy") else batch


class TorchDataLoader(Contender):
    family = "torch"

    def __init__(self, automatic: bool) -> None:
        self.automatic = automatic
        self.name = f"torch[{'auto' if automatic else 'manual'}]"
        self.config = ("DataLoader(batch_size=B, collate_fn=default_convert), dataset.__getitems__"
                       if automatic else "DataLoader(batch_size=None, sampler=BatchSampler(B))")
        self.config += ", num_workers=N, persistent_workers, prefetch_factor=2, pin_memory=False"
        self._loader: Any = None
        self._iterator: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, default_convert

        dataset = _torch_dataset_class()(batch_at, n_batches)
        common = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=False,
                      prefetch_factor=2 if workers > 0 else None)
        if self.automatic:
            self._loader = DataLoader(dataset, batch_size=batch_at.batch_size, shuffle=False,
                                      collate_fn=default_convert, **common)
        else:
            sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_at.batch_size, drop_last=False)
            self._loader = DataLoader(dataset, batch_size=None, sampler=sampler, **common)
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
    family = "tf.data"

    def __init__(self, autotune: bool) -> None:
        self.autotune = autotune
        self.name = f"tf.data[{'autotune' if autotune else 'fixed'}]"
        self.config = ("map(num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)" if autotune else
                       "map(num_parallel_calls=N).prefetch(AUTOTUNE), private pool max(N, cores)")
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

        if self.autotune:
            dataset = (tf.data.Dataset.range(n_batches)
                       .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                       .prefetch(tf.data.AUTOTUNE))
        else:
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
    family = "grain"

    def __init__(self, processes: bool) -> None:
        self.processes = processes
        self.name = f"grain[{'processes' if processes else 'threads'}]"
        self.config = ("ReadOptions(num_threads=0) + mp_prefetch(num_workers=N, per_worker_buffer_size=2)"
                       if processes else "ReadOptions(num_threads=N, prefetch_buffer_size=2N)")
        self._iterator: Any = None
        self._dataset: Any = None

    def _build(self, batch_at: BatchAt, n_batches: int, workers: int) -> Any:
        import grain
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain reads absl flags; outside absl.app.run nobody parses them
            flags.FLAGS.mark_as_parsed()
        # Grain's default ReadOptions (16 threads, 500 elements ahead) would buffer 500
        # batches (16 GB of 32 MiB batches); see the module docstring for both configurations.
        source = grain.MapDataset.range(n_batches).map(batch_at)
        if self.processes:
            read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
            self._dataset = source.to_iter_dataset(read).mp_prefetch(
                grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
        else:
            read = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=_window(workers))
            self._dataset = source.to_iter_dataset(read)
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


# -- Ray Data ----------------------------------------------------------------------------------

#: Batch indices one Ray Data pass covers, in blocks of 16 (one block per batch: 4x slower start and
#: half the rate on this project's 2-core machine); the iterator starts over after them.
RAY_DATA_BATCHES = 1024
RAY_DATA_BLOCKS = 64


def ray_cluster() -> Any:
    """The run's local Ray cluster (started on first use, with this machine's CPUs), and ``ray``."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


class _LoadRow:
    """Ray Data's ``fn``: ``{"id": [i]}`` -> ``{"x": [batch i]}`` (one row holding the whole batch)."""

    def __init__(self, batch_at: BatchAt) -> None:
        self.batch_at = batch_at

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.asarray(self.batch_at(rows["id"][0]))[None]}


class _LoadRowActor(_LoadRow):
    """The same, as a class Ray Data builds once per actor (its constructor arguments travel)."""


class RayData(Contender):
    family = "ray.data"

    def __init__(self, actors: bool) -> None:
        self.actors = actors
        self.name = f"ray.data[{'actors' if actors else 'tasks'}]"
        self.config = ("range(1024, override_num_blocks=64).map_batches(" + ("LoaderClass, " if actors else "fn, ")
                       + "batch_size=1, concurrency=N, num_cpus=" + ("min(1, cpus/2N)" if actors else "min(1, cpus/N)")
                       + ").iter_batches(batch_size=1, prefetch_batches=2N), preserve_order=True")
        self._iterator: Any = None
        self._pass: Any = None  # Ray Data's iterator over the current pass

    def _dataset(self, batch_at: BatchAt, workers: int) -> Any:
        ray_cluster()
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # deterministic order, like every contender here
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        source = ray.data.range(RAY_DATA_BATCHES, override_num_blocks=RAY_DATA_BLOCKS)
        if self.actors:
            # The pool holds its CPUs for good: half the cluster's, the rest for the read tasks feeding it
            # (with all of them held, the reads never run).
            return source.map_batches(_LoadRowActor, fn_constructor_args=(batch_at,), batch_size=1,
                                      concurrency=workers, num_cpus=min(1.0, cpus / (2 * workers)),
                                      batch_format="numpy")
        return source.map_batches(_LoadRow(batch_at), batch_size=1, concurrency=workers,
                                  num_cpus=min(1.0, cpus / workers), batch_format="numpy")

    def _batches(self, batch_at: BatchAt, workers: int) -> Iterator[Any]:
        while True:  # one pass covers RAY_DATA_BATCHES batches; BatchAt wraps around the ids
            self._pass = iter(self._dataset(batch_at, workers).iter_batches(
                batch_size=1, batch_format="numpy", prefetch_batches=_window(workers)))
            for rows in self._pass:
                yield rows["x"][0]

    def start(self, loader, ids, workers, *, batch_size):
        self._iterator = self._batches(BatchAt(loader, ids, batch_size), workers)
        return self._iterator

    def fit_input(self, loader, ids, workers, *, batch_size, labels, steps):
        raise NotImplementedError("ray.data runs in the throughput scenarios only")

    def close(self):
        for it in (self._iterator, self._pass):  # ours, then Ray Data's: it stops its executor, tasks, actors
            if it is not None and hasattr(it, "close"):
                it.close()
        self._iterator = self._pass = None
        gc.collect()


#: Contender name -> factory, in report order.
CONTENDERS: dict[str, Callable[[], Contender]] = {
    "awkgen-blocking": lambda: Awkgen("blocking"),
    "awkgen-thread": lambda: Awkgen("thread"),
    AWKGEN_PROCESS: lambda: Awkgen("process"),
    "keras[threads]": lambda: KerasPyDataset(processes=False),
    "keras[processes]": lambda: KerasPyDataset(processes=True),
    "torch[manual]": lambda: TorchDataLoader(automatic=False),
    "torch[auto]": lambda: TorchDataLoader(automatic=True),
    "tf.data[autotune]": lambda: TfData(autotune=True),
    "tf.data[fixed]": lambda: TfData(autotune=False),
    "grain[threads]": lambda: Grain(processes=False),
    "grain[processes]": lambda: Grain(processes=True),
}
#: The Ray contenders, run on request only (``--contenders``; they need a Ray cluster and
#: ``ray[data]``): awkgen's Ray backend and its peer, Ray Data, in the configurations above.
RAY_CONTENDERS: dict[str, Callable[[], Contender]] = {
    AWKGEN_RAY: lambda: Awkgen("ray"),
    "ray.data[tasks]": lambda: RayData(actors=False),
    "ray.data[actors]": lambda: RayData(actors=True),
}
RAY_DATA = ("ray.data[tasks]", "ray.data[actors]")
#: The other libraries' configurations, against whose best awkgen's relative targets are set.
PEERS = tuple(name for name in CONTENDERS if not name.startswith("awkgen"))
#: Each peer library and its configurations; a family's best configuration in a scenario is what counts.
FAMILIES: dict[str, tuple[str, ...]] = {}
for _name in PEERS:
    FAMILIES.setdefault(_name.split("[")[0], ())
    FAMILIES[_name.split("[")[0]] += (_name,)


def family_of(name: str) -> str:
    """``"keras[threads]"`` -> ``"keras"``; awkgen's contenders are each their own family.

    >>> family_of("tf.data[autotune]"), family_of("awkgen-process")
    ('tf.data', 'awkgen-process')
    """
    return name.split("[")[0]


def make_contenders(names: list[str] | None = None) -> list[Contender]:
    """Fresh adapters for *names* (default: all), in report order."""
    chosen = list(CONTENDERS) if names is None else names
    known = {**CONTENDERS, **RAY_CONTENDERS}
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; expected some of {list(known)}")
    return [known[n]() for n in chosen]
