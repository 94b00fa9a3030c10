"""TensorFlow: ART's ``TensorFlowDataGenerator`` (TF1 graph mode) and ``TensorFlowV2DataGenerator``,
and ``as_tf`` (an awkgen generator as a ``tf.data.Dataset``).

TensorFlow is imported when one of them is used, never by ``import awkgen.frameworks``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._tree import map_tree
from ..generator import BatchGenerator
from .base import DataGenerator, _RestartingGenerator, art_twin, import_framework, steps_per_epoch, to_numpy

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["TensorFlowDataGenerator", "TensorFlowV2DataGenerator", "as_tf"]

ITERATOR_TYPES = ("initializable", "reinitializable", "feedable")


@art_twin("TensorFlowDataGenerator")
class TensorFlowDataGenerator(DataGenerator):
    """ART's wrapper over a TF1 graph-mode iterator (``tf.compat.v1.data.Iterator``) run in *sess*.

    *iterator_arg* is what restarts the iterator, as ART defines it:

    - ``"initializable"``: the ``feed_dict`` for ``iterator.initializer`` (``{}`` if none);
    - ``"reinitializable"``: the init op, ``iterator.make_initializer(dataset)``;
    - ``"feedable"``: a tuple ``(dataset_iterator, feed_dict)``: the initializable
      iterator behind the handle, and the ``feed_dict`` mapping the handle
      placeholder to ``sess.run(dataset_iterator.string_handle())``.

    ``get_batch()`` runs one ``get_next()`` op, built once here (ART builds a new
    op per call, so its graph grows with every batch), and re-initialises the
    iterator when it is uninitialised or exhausted: the stream loops forever.

    Args:
        sess: The ``tf.compat.v1.Session`` that runs the iterator.
        iterator: A ``tf.compat.v1.data.Iterator``.
        iterator_type: ``"initializable"``, ``"reinitializable"`` or ``"feedable"``.
        iterator_arg: What restarts the iterator, as above.
        size: Samples in the data set (ART's ``size``).
        batch_size: Samples per batch.

    Raises:
        ImportError: TensorFlow is not installed (``pip install "awkgen[tensorflow]"``).
        TypeError: An argument is not of the kind ART requires (the message says which).
        ValueError: *size* or *batch_size* is out of range (see :class:`DataGenerator`).
    """

    def __init__(self, sess: Any, iterator: Any, iterator_type: str, iterator_arg: Any, size: int,
                 batch_size: int) -> None:
        tf1 = import_framework("tensorflow.compat.v1", "tensorflow", "TensorFlowDataGenerator")
        super().__init__(size=size, batch_size=batch_size)
        if not callable(getattr(sess, "run", None)) or not hasattr(sess, "graph"):
            raise TypeError(f"Expected sess to be a tf.compat.v1.Session. Received: {sess!r:.100} "
                            f"({type(sess).__name__})")
        if not isinstance(iterator, tf1.data.Iterator):
            raise TypeError("Expected iterator to be a tf.compat.v1.data.Iterator. "
                            f"Received: {iterator!r:.100} ({type(iterator).__name__})")
        if iterator_type not in ITERATOR_TYPES:
            raise TypeError(f"Expected iterator_type in {ITERATOR_TYPES}, as ART requires. "
                            f"Received: iterator_type={iterator_type!r}")
        if iterator_type == "initializable" and not isinstance(iterator_arg, dict):
            raise TypeError("Expected iterator_arg to be the initializer's feed_dict (a dict) for an "
                            f"initializable iterator. Received: {iterator_arg!r:.100}")
        if iterator_type == "reinitializable" and not isinstance(iterator_arg, tf1.Operation):
            raise TypeError("Expected iterator_arg to be the init op (iterator.make_initializer(dataset)) for "
                            f"a reinitializable iterator. Received: {iterator_arg!r:.100}")
        if iterator_type == "feedable" and not (
                isinstance(iterator_arg, tuple) and len(iterator_arg) == 2
                and isinstance(iterator_arg[0], tf1.data.Iterator) and isinstance(iterator_arg[1], dict)):
            raise TypeError("Expected iterator_arg to be a tuple (dataset_iterator, feed_dict) for a feedable "
                            f"iterator. Received: {iterator_arg!r:.100}")
        self.sess: Any = sess
        self.iterator_type: str = iterator_type
        self.iterator_arg: Any = iterator_arg
        self._iterator = iterator
        self._errors = (tf1.errors.FailedPreconditionError, tf1.errors.OutOfRangeError)
        with sess.graph.as_default():
            self._next_op = iterator.get_next()  # once: a graph op per call would grow the graph forever
            if iterator_type == "initializable":
                self._restart_op, self._restart_feed = iterator.initializer, iterator_arg
            elif iterator_type == "reinitializable":
                self._restart_op, self._restart_feed = iterator_arg, None
            else:  # feedable
                self._restart_op, self._restart_feed = iterator_arg[0].initializer, None
        self._feed = iterator_arg[1] if iterator_type == "feedable" else None

    def get_batch(self) -> tuple[Any, ...]:
        """The next batch as a tuple of numpy arrays; (re)initialises the iterator as needed."""
        try:
            batch = self.sess.run(self._next_op, feed_dict=self._feed)
        except self._errors:  # not initialised yet, or the pass ended: start a new one
            self.sess.run(self._restart_op, feed_dict=self._restart_feed)
            batch = self.sess.run(self._next_op, feed_dict=self._feed)
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        return tuple(to_numpy(item) for item in batch)


@art_twin("TensorFlowV2DataGenerator")
class TensorFlowV2DataGenerator(_RestartingGenerator):
    """ART's wrapper over a ``tf.data.Dataset`` (eager): ``get_batch()`` returns the next batch as
    numpy arrays, and a finite dataset starts over when it ends (ART raises ``StopIteration``).

    Args:
        iterator: A ``tf.data.Dataset``.
        size: Samples in the data set (ART's ``size``).
        batch_size: Samples per batch.

    Raises:
        ImportError: TensorFlow is not installed (``pip install "awkgen[tensorflow]"``).
        TypeError: *iterator* is not a ``tf.data.Dataset``.
        ValueError: *size* or *batch_size* is out of range (see :class:`DataGenerator`).
    """

    def __init__(self, iterator: Any, size: int, batch_size: int) -> None:
        tf = import_framework("tensorflow", "tensorflow", "TensorFlowV2DataGenerator")
        if not isinstance(iterator, tf.data.Dataset):
            raise TypeError("Expected iterator to be a tf.data.Dataset. "
                            f"Received: {iterator!r:.100} ({type(iterator).__name__})")
        super().__init__(iterator, size=size, batch_size=batch_size)


def _spec_of(tf: Any, batch: Any) -> Any:
    """A ``tf.TensorSpec`` structure for batches like *batch* (as :func:`to_numpy` makes them),
    batch dimension left open."""
    def spec(array: np.ndarray) -> Any:
        shape = (None,) + array.shape[1:] if array.ndim else ()
        dtype = tf.string if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype)
        return tf.TensorSpec(shape=shape, dtype=dtype)

    return map_tree(batch, spec, lists=False, exact=False)


def as_tf(gen: BatchGenerator | DataGenerator, output_signature: Any = None) -> tf.data.Dataset[Any]:
    """A ``tf.data.Dataset`` whose every pass is *gen*'s next epoch (cardinality ``steps_per_epoch``).

    Elements are *gen*'s batches, ``(x,)`` or ``(x, y)``, tuples and dicts kept as
    structure and other values turned into arrays. Without *output_signature*
    the spec is read from *gen*'s next batch, which is kept and becomes the first
    element of the first pass: nothing is lost. The batch dimension is left open
    (``None``), so a short last batch fits. ``model.fit(gen.as_tf(), epochs=E)``
    trains on one epoch of *gen* per Keras epoch.

    The batches of a pass are taken from *gen* as TensorFlow asks for them; a
    ``.prefetch()`` you add may take some ahead within the pass, and a pass you
    leave early drops those.

    Needs TensorFlow (``pip install "awkgen[tensorflow]"``).

    Args:
        gen: An awkgen generator, or another :class:`~awkgen.frameworks.DataGenerator`.
        output_signature: The elements' ``tf.TensorSpec`` structure, as
            ``tf.data.Dataset.from_generator`` takes it; ``None``: read from *gen*'s
            next batch.

    Returns:
        A ``tf.data.Dataset`` of *gen*'s batches, one epoch of *gen* per pass.

    Raises:
        ImportError: TensorFlow is not installed.
        TypeError: *gen* is not an awkgen generator or a ``DataGenerator``.
    """
    steps = steps_per_epoch(gen)
    tf = import_framework("tensorflow", "tensorflow", "as_tf()")
    kept: collections.deque[Any] = collections.deque()
    if output_signature is None:
        first = to_numpy(tuple(gen.get_batch()))  # tuples and dicts are structure, the rest arrays
        kept.append(first)
        output_signature = _spec_of(tf, first)

    def one_epoch() -> Iterator[Any]:
        for _ in range(steps):
            yield kept.popleft() if kept else to_numpy(tuple(gen.get_batch()))

    dataset = tf.data.Dataset.from_generator(one_epoch, output_signature=output_signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps))
