"""ART's ``DataGenerator`` interface, and what every framework wrapper shares.

ART (``art.data_generators``) defines a data generator as four things: ``size``
(samples in the data set, or ``None``), ``batch_size``, ``iterator`` (the
framework's own iterable) and ``get_batch()`` (the next ``(x, y)``, looping over
the data forever). :class:`DataGenerator` is that interface with ART's name and
signature; the wrappers in the sibling modules implement it for one framework
each. An awkgen generator (:class:`awkgen.BatchGenerator`) already has all four,
so it is registered here as a virtual subclass: ``isinstance(gen, DataGenerator)``
holds without the core importing this package.

Wrapped framework iterables are often finite (one epoch of a ``DataLoader``, a
``tf.data.Dataset`` without ``repeat()``). :class:`_RestartingGenerator` turns
them into ART's endless stream: when the current pass ends it starts a new one,
and it refuses to loop on an iterable that yields nothing.

>>> import awkgen
>>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=4)
>>> isinstance(gen, DataGenerator), gen.size, gen.batch_size
(True, 10, 4)
"""

from __future__ import annotations

import abc
import importlib
import numbers
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from .._tree import map_tree
from ..generator import BatchGenerator

__all__ = ["DataGenerator", "art_twin", "import_framework", "steps_per_epoch", "to_numpy"]


def import_framework(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import *module* or raise an ImportError that says which awkgen extra installs it.

    >>> import_framework("no_such_framework", "nope", "the test")
    Traceback (most recent call last):
    ...
    ImportError: the test needs no_such_framework, which is not installed: pip install "awkgen[nope]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f'{needed_by} needs {module.split(".")[0]}, which is not installed: '
                          f'pip install "awkgen[{extra}]"') from exc


def steps_per_epoch(gen: Any) -> int:
    """Batches in one epoch of *gen* (an awkgen generator or another :class:`DataGenerator`).

    >>> import awkgen
    >>> steps_per_epoch(awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=4))
    3
    >>> steps_per_epoch([1, 2])
    Traceback (most recent call last):
    ...
    TypeError: Expected gen to be an awkgen generator (or another DataGenerator). Received: [1, 2] (list)
    """
    if not isinstance(gen, DataGenerator):
        raise TypeError("Expected gen to be an awkgen generator (or another DataGenerator). "
                        f"Received: {gen!r:.100} ({type(gen).__name__})")
    steps = getattr(gen, "steps_per_epoch", None)
    if steps is not None:
        return int(steps)
    if gen.size is None:
        raise ValueError("Expected gen to know its size, to make one epoch of it. Received: size=None")
    return -(-gen.size // gen.batch_size)


def _check_count(name: str, value: Any, allow_none: bool) -> int | None:
    """ART's check of ``size``/``batch_size``: an ``int`` >= 1 (or ``None`` where allowed), else ``ValueError``.

    As ART, a numpy integer is not an ``int``; stricter than ART, neither is a bool
    (ART takes ``batch_size=True`` as 1).
    """
    if value is None and allow_none:
        return None
    expected = "an int >= 1 or None" if allow_none else "an int >= 1"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        numpy_int = isinstance(value, numbers.Integral) and not isinstance(value, (bool, int))
        hint = " (convert it with int())" if numpy_int else ""
        raise ValueError(f"Expected {name} to be {expected}, as ART requires{hint}. "
                         f"Received: {name}={value!r:.100} ({type(value).__name__})")
    return value


class DataGenerator(abc.ABC):
    """ART's abstract data generator: *size* samples (or ``None``), batches of *batch_size*.

    Subclasses set ``self._iterator`` and implement :meth:`get_batch`. Arguments
    are checked as ART checks them: ``size`` (or ``None``) and ``batch_size`` must be
    ``int`` >= 1 with ``batch_size <= size``, else ``ValueError`` (a numpy integer is
    not an ``int``, as in ART). Deliberately stricter than ART: a bool is refused
    (ART reads ``batch_size=True`` as 1).

    With ART installed, every subclass is also an ``art.data_generators.DataGenerator``
    (a virtual subclass, registered when ART is imported), so ART's own
    ``isinstance`` checks accept it.

    Args:
        size: Samples in the data set, or ``None`` when unknown.
        batch_size: Samples per batch.

    Raises:
        ValueError: *size* or *batch_size* is not an ``int`` >= 1 (or *size* ``None``),
            or *batch_size* > *size*.

    >>> class Ones(DataGenerator):
    ...     def get_batch(self):
    ...         return np.ones((self.batch_size, 2)), np.zeros(self.batch_size)
    >>> g = Ones(size=10, batch_size=4)
    >>> g.size, g.batch_size, g.get_batch()[0].shape
    (10, 4, (4, 2))
    >>> Ones(size=10, batch_size=True)
    Traceback (most recent call last):
    ...
    ValueError: Expected batch_size to be an int >= 1, as ART requires. Received: batch_size=True (bool)
    >>> Ones(size=3, batch_size=4)
    Traceback (most recent call last):
    ...
    ValueError: Expected batch_size <= size (3). Received: batch_size=4
    """

    def __init__(self, size: int | None, batch_size: int) -> None:
        self._size = _check_count("size", size, allow_none=True)
        checked = _check_count("batch_size", batch_size, allow_none=False)
        assert checked is not None
        if self._size is not None and checked > self._size:
            raise ValueError(f"Expected batch_size <= size ({self._size}). Received: batch_size={batch_size!r}")
        self._batch_size = checked
        self._iterator: Any = None

    @abc.abstractmethod
    def get_batch(self) -> tuple[Any, ...]:
        """The next batch ``(x, y)`` as numpy arrays; the stream loops over the data forever.

        Returns:
            The next batch, as a tuple of numpy arrays (``(x, y)``, or ``(x,)``).
        """
        raise NotImplementedError

    @property
    def iterator(self) -> Any:
        """The framework's iterable this generator reads from."""
        return self._iterator

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def size(self) -> int | None:
        """Samples in the data set, or ``None`` when unknown."""
        return self._size

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} size={self._size} batch_size={self._batch_size} "
                f"iterator={self._iterator!r:.80}>")


# An awkgen generator has size, batch_size, iterator and get_batch(): it *is* one.
DataGenerator.register(BatchGenerator)

# ART's own code checks isinstance(generator, art.data_generators.DataGenerator) (generic
# fit_generator, ActivationDefence) and isinstance(generator, <Framework>DataGenerator) to
# take a framework's fast path. Each awkgen class below is registered as a virtual
# subclass of its ART twin the moment ART is imported (awkgen never imports ART itself).
ART_MODULE = "art.data_generators"
_ART_TWINS: list[tuple[type, str]] = []
_T = TypeVar("_T", bound=type)


def art_twin(art_name: str) -> Callable[[_T], _T]:
    """Class decorator: the class passes ``isinstance(x, art.data_generators.<art_name>)`` when ART is there."""

    def register(cls: _T) -> _T:
        _ART_TWINS.append((cls, art_name))
        module = sys.modules.get(ART_MODULE)
        if module is not None:
            register_twins(module)
        return cls

    return register


def register_twins(module: ModuleType) -> None:
    """Register every awkgen class with its ART twin in *module* (``art.data_generators``)."""
    for cls, name in list(_ART_TWINS):
        art_class = getattr(module, name, None)
        if isinstance(art_class, abc.ABCMeta) and not issubclass(cls, art_class):
            art_class.register(cls)


art_twin("DataGenerator")(DataGenerator)  # awkgen/__init__.py calls register_twins when ART is imported


class _RestartingGenerator(DataGenerator):
    """A DataGenerator over a finite re-iterable: each pass is ``iter(iterable)``; a new
    pass starts when one ends. Subclasses convert a framework batch with :meth:`_convert`."""

    def __init__(self, iterable: Any, size: int | None, batch_size: int) -> None:
        super().__init__(size=size, batch_size=batch_size)
        self._iterator = iterable
        self._current: Iterator[Any] | None = None  # opened on first use: no worker starts in __init__

    def _open_pass(self) -> Iterator[Any]:
        """An iterator over one pass of the data (subclasses may override)."""
        return iter(self._iterator)

    def _next_raw(self) -> Any:
        if self._current is not None:
            try:
                return next(self._current)
            except StopIteration:
                pass
        self._current = self._open_pass()  # a new pass over the data
        try:
            return next(self._current)
        except StopIteration:
            self._current = None
            raise ValueError(f"Expected {self._describe()} to yield at least one batch per pass. "
                             "Received: an empty pass, so get_batch() cannot loop over it") from None

    def _describe(self) -> str:
        return f"the {type(self._iterator).__name__}"

    def get_batch(self) -> tuple[Any, ...]:
        """The next batch as a tuple of numpy arrays; a finite iterator is restarted."""
        batch = self._next_raw()
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        return tuple(to_numpy(item) for item in batch)

    def close(self) -> None:
        """Drop the current pass (and any loader workers it holds). Idempotent."""
        self._current = None


def to_numpy(value: Any) -> Any:
    """A framework tensor (or a dict/tuple of them) as numpy arrays; a list is data, made one array.

    >>> to_numpy({"a": [1, 2], "b": (np.int64(3),)})
    {'a': array([1, 2]), 'b': (array(3),)}
    """
    return map_tree(value, _leaf_to_numpy, lists=False, exact=False)


def _leaf_to_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "asnumpy"):  # mxnet NDArray
        return value.asnumpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and callable(value.numpy):  # eager tf.Tensor
        return value.numpy()
    return np.asarray(value)
