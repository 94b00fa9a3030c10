"""Keras: ART's ``KerasDataGenerator``, and ``as_keras`` (an awkgen generator as a ``PyDataset``).

Neither needs Keras to be imported until it is used: :class:`KerasDataGenerator`
recognises a ``Sequence``/``PyDataset`` by its methods, and :func:`as_keras`
imports Keras when called.

Feeding Keras 3 from an awkgen generator, two ways::

    model.fit(gen, steps_per_epoch=gen.steps_per_epoch, epochs=5)  # gen reports types.GeneratorType
    model.fit(gen.as_keras(), epochs=5)                             # a PyDataset of one epoch's steps
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._checks import is_int
from ..generator import BatchGenerator
from .base import DataGenerator, _RestartingGenerator, art_twin, import_framework, steps_per_epoch

__all__ = ["KerasDataGenerator", "as_keras"]

# Batches read first within a pass stay bound to their index until the pass is over: enough for
# the one item Keras reads to build a model (and what TensorFlow prefetches meanwhile).
_KEPT_PER_PASS = 4


def _is_sequence(obj: Any) -> bool:
    """A ``keras.utils.Sequence``/``PyDataset`` (or anything indexable by batch with a length)."""
    kind = type(obj)
    return hasattr(kind, "__getitem__") and (hasattr(kind, "num_batches") or hasattr(kind, "__len__"))


def _num_batches(sequence: Any) -> int | None:
    """Batches in one pass of a Sequence/PyDataset; ``None`` for an endless PyDataset."""
    if hasattr(type(sequence), "num_batches"):  # PyDataset: None means infinite
        try:
            steps = sequence.num_batches
        except NotImplementedError:
            pass
        else:
            return None if steps is None else int(steps)
    return len(sequence)


@art_twin("KerasDataGenerator")
class KerasDataGenerator(_RestartingGenerator):
    """ART's wrapper over Keras-style data: ``get_batch()`` returns the next ``(x, y)`` as numpy, forever.

    *iterator* may be a ``keras.utils.PyDataset`` or ``Sequence`` (walked by index
    from 0 to its length, then ``on_epoch_end()`` and again from 0 — ART instead
    returns item 0 on every call), a generator function (called again when its
    generator ends), a re-iterable such as a list of batches (iterated again), or
    an endless iterator such as a Python generator or an awkgen generator. A
    one-shot iterator that ends cannot loop and raises ``RuntimeError`` then.

    Args:
        iterator: The Keras-style data, as above.
        size: Samples in the data set (ART's ``size``), or ``None``.
        batch_size: Samples per batch.

    Raises:
        TypeError: *iterator* is none of the above.
        ValueError: *size* or *batch_size* is out of range (see :class:`DataGenerator`).

    >>> import numpy as np
    >>> class Twice:  # a Sequence-like object: two batches, indexed
    ...     def __len__(self): return 2
    ...     def __getitem__(self, i): return np.full(3, i), np.full(3, 10 * i)
    >>> g = KerasDataGenerator(Twice(), size=6, batch_size=3)
    >>> [g.get_batch()[1].tolist() for _ in range(3)]
    [[0, 0, 0], [10, 10, 10], [0, 0, 0]]
    >>> def batches():  # a generator function restarts
    ...     yield np.zeros(2), np.zeros(2)
    >>> g = KerasDataGenerator(batches, size=2, batch_size=2)
    >>> len([g.get_batch() for _ in range(3)])
    3
    >>> g = KerasDataGenerator(batches(), size=2, batch_size=2)  # a one-shot generator cannot
    >>> _ = g.get_batch(); g.get_batch()
    Traceback (most recent call last):
    ...
    RuntimeError: Expected the generator to loop over its data forever, as ART requires. Received: ...
    """

    def __init__(self, iterator: Any, size: int | None, batch_size: int) -> None:
        super().__init__(iterator, size=size, batch_size=batch_size)
        if _is_sequence(iterator):
            self._kind = "sequence"
        elif inspect.isgeneratorfunction(iterator):
            self._kind = "generator function"
        elif isinstance(iterator, Iterator) or hasattr(type(iterator), "__next__"):
            self._kind = "iterator"
        elif hasattr(type(iterator), "__iter__"):
            self._kind = "iterable"
        else:
            raise TypeError("Expected iterator to be a keras.utils.PyDataset or Sequence, a generator (function) "
                            f"or an iterable of (x, y) batches. Received: {iterator!r:.100} "
                            f"({type(iterator).__name__})")
        self._passes = 0

    def _open_pass(self) -> Iterator[Any]:
        self._passes += 1
        if self._kind == "sequence":
            return self._walk(self._iterator)
        if self._kind == "generator function":
            return iter(self._iterator())
        if self._kind == "iterator":
            if self._passes > 1:
                raise RuntimeError("Expected the generator to loop over its data forever, as ART requires. "
                                   f"Received: a {type(self._iterator).__name__} that ended; pass a generator "
                                   "function, a keras.utils.PyDataset or a re-iterable instead so that a new "
                                   "pass can start")
            return iter(self._iterator)
        return iter(self._iterator)

    @staticmethod
    def _walk(sequence: Any) -> Iterator[Any]:
        """One pass over a Sequence/PyDataset, with its epoch hooks, as Keras's own fit() does it."""
        n = _num_batches(sequence)
        if hasattr(sequence, "on_epoch_begin"):
            sequence.on_epoch_begin()
        for index in itertools.count() if n is None else range(n):
            yield sequence[index]
        if hasattr(sequence, "on_epoch_end"):
            sequence.on_epoch_end()


def as_keras(gen: BatchGenerator | DataGenerator) -> KerasStream:
    """A ``keras.utils.PyDataset`` whose ``len`` is one epoch of *gen*: ``model.fit(gen.as_keras(), epochs=E)``.

    The promise: each epoch of ``fit`` (``evaluate``, ``predict``) trains on
    exactly the next ``len`` batches of *gen*'s stream, each once. After ``E``
    epochs *gen* has delivered ``E * len`` batches, so a later ``fit`` or
    ``gen()`` continues where this one stopped.

    Keras 3's ``PyDatasetAdapter`` does not simply read items ``0..len-1``, so
    batches are *bound to indices*:

    - ``ds[i]`` returns the batch bound to index ``i``; an index with none gets
      the stream's next batch. Keras reads some items before it trains: with the
      TensorFlow backend items 0 and 1, for the tensor spec, before the first
      epoch; with JAX and PyTorch one item of an abandoned epoch, to build the
      model. Such a batch stays bound to its index, and the epoch that trains
      reads it there: nothing is skipped, nothing is loaded twice.
    - Only peeks and the first 4 batches read within a pass are kept bound (so
      memory holds a few batches, never an epoch); they are dropped once every
      index has been read within epochs (between the ``on_epoch_begin`` and
      ``on_epoch_end`` hooks, which Keras calls around every epoch), and the next
      epoch binds fresh batches.
    - ``fit(shuffle=True)`` (the default) reads the indices in random order, and
      fresh batches are bound in the order Keras asks for them, so training
      follows the stream except that a batch read early waits at its index.
      With ``fit(..., shuffle=False)`` the order is exactly the stream's. awkgen
      has already shuffled by its seed either way.
    - Iterating the dataset yourself (``for batch in ds``) is one epoch.
    - Keras's own thread pool (``workers > 1``) is not used: awkgen loads ahead in
      its own workers (use ``DataGeneratorMultiProc``).

    Needs Keras 3 (``pip install "awkgen[keras]"``).

    Args:
        gen: An awkgen generator, or another :class:`~awkgen.frameworks.DataGenerator`.

    Returns:
        A ``keras.utils.PyDataset`` of ``steps_per_epoch`` items, each a batch of *gen*.

    Raises:
        ImportError: Keras is not installed.
        TypeError: *gen* is not an awkgen generator or a ``DataGenerator``.

    >>> import awkgen
    >>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(5)), batch_size=2, shuffle=False)
    >>> ds = as_keras(gen)
    >>> len(ds), ds[1], ds[1]            # the stream's first batch, now bound to index 1
    (3, ([0, 1],), ([0, 1],))
    >>> [batch[0] for batch in ds]       # one epoch: index 1 keeps its batch, the others get the next
    [[2, 3], [0, 1], [4]]
    >>> gen()[0]                         # the stream continues with the next epoch
    [0, 1]
    """
    steps = steps_per_epoch(gen)
    keras = import_framework("keras", "keras", "as_keras()")
    stream: KerasStream = _stream_class(keras.utils.PyDataset)(gen, steps)
    return stream


if TYPE_CHECKING:
    class KerasStream:
        """What :func:`as_keras` returns, for type checkers: a ``keras.utils.PyDataset`` (at run
        time, a subclass of it) of *gen*'s epochs. Keras ships no type information, so its
        ``fit`` takes it whatever it is declared as; this declaration gives it a ``len``."""

        @property
        def generator(self) -> BatchGenerator | DataGenerator: ...

        @property
        def num_batches(self) -> int: ...

        def __len__(self) -> int: ...

        def __getitem__(self, index: int) -> tuple[Any, ...]: ...

        def on_epoch_end(self) -> None: ...


@functools.cache
def _stream_class(py_dataset: type) -> type:
    """Define the PyDataset subclass once Keras is imported (its base class lives there)."""

    class KerasStream(py_dataset):  # type: ignore[misc]  # a base class known at run time
        """One epoch of an awkgen generator as a ``keras.utils.PyDataset``; see :func:`as_keras`."""

        def __init__(self, gen: BatchGenerator | DataGenerator, steps: int) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self._gen = gen
            self._steps = steps
            self._lock = threading.Lock()  # TensorFlow reads items from its own threads
            self._in_epoch = False
            self._bound: dict[int, Any] = {}  # index -> batch taken from the stream, not yet retired
            self._covered: set[int] = set()  # indices read within epochs since the last retirement

        @property
        def generator(self) -> BatchGenerator | DataGenerator:
            return self._gen

        def __len__(self) -> int:
            return self._steps

        def __getitem__(self, index: int) -> tuple[Any, ...]:
            if not is_int(index) or not 0 <= index < self._steps:
                raise IndexError(f"Expected an index in [0, {self._steps}). Received: {index!r}")
            index = int(index)
            with self._lock:
                if self._in_epoch and len(self._covered) == self._steps:
                    self._retire()  # a new pass began before on_epoch_end: the last one was all trained on
                batch = self._bound.get(index)
                if batch is None:
                    batch = self._gen.get_batch()
                    # Outside an epoch a read is a peek: keep it. Inside, keep only the first few reads
                    # of a pass (a build step may abandon them); later ones are trained on, and keeping
                    # them would hold a whole epoch in memory.
                    if not self._in_epoch or len(self._covered) < _KEPT_PER_PASS:
                        self._bound[index] = batch
                if self._in_epoch:
                    self._covered.add(index)
                return batch

        def _retire(self) -> None:
            self._bound.clear()
            self._covered.clear()

        def __iter__(self) -> Iterator[Any]:
            self.on_epoch_begin()
            try:
                for index in range(self._steps):
                    yield self[index]
            finally:
                self.on_epoch_end()

        def on_epoch_begin(self) -> None:
            with self._lock:
                self._in_epoch = True

        def on_epoch_end(self) -> None:
            with self._lock:
                self._in_epoch = False
                if len(self._covered) == self._steps:  # every index read in an epoch: all trained on
                    self._retire()

        def __repr__(self) -> str:
            return f"<awkgen KerasStream: {self._steps} steps per epoch of {self._gen!r}>"

    return KerasStream
