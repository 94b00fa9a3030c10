"""PyTorch: ART's ``PyTorchDataGenerator``, and ``as_torch`` (an awkgen generator as an ``IterableDataset``).

torch is imported when one of them is used, never by ``import awkgen.frameworks``.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._tree import map_tree
from ..generator import BatchGenerator
from .base import DataGenerator, _RestartingGenerator, art_twin, import_framework, steps_per_epoch

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["PyTorchDataGenerator", "as_torch"]


@art_twin("PyTorchDataGenerator")
class PyTorchDataGenerator(_RestartingGenerator):
    """ART's wrapper over a ``torch.utils.data.DataLoader``: ``get_batch()`` returns the next
    batch as numpy arrays, starting a new pass over the loader when one ends.

    The first pass starts at the first ``get_batch()``, so building the wrapper
    starts no loader worker; :meth:`close` drops the current pass (and its workers).

    Args:
        iterator: A ``torch.utils.data.DataLoader``.
        size: Samples in the data set (ART's ``size``).
        batch_size: Samples per batch.

    Raises:
        ImportError: torch is not installed (``pip install "awkgen[torch]"``).
        TypeError: *iterator* is not a ``DataLoader``.
        ValueError: *size* or *batch_size* is out of range (see :class:`DataGenerator`).
    """

    def __init__(self, iterator: Any, size: int, batch_size: int) -> None:
        import_framework("torch", "torch", "PyTorchDataGenerator")
        from torch.utils.data import DataLoader

        if not isinstance(iterator, DataLoader):
            raise TypeError("Expected iterator to be a torch.utils.data.DataLoader. "
                            f"Received: {iterator!r:.100} ({type(iterator).__name__})")
        super().__init__(iterator, size=size, batch_size=batch_size)


def as_torch(gen: BatchGenerator | DataGenerator) -> TorchStream:
    """An ``IterableDataset`` of torch tensors: each pass runs to the end of *gen*'s current epoch.

    Use it where a ``DataLoader`` goes (``for x, y in gen.as_torch(): ...``), or
    wrap it as ``DataLoader(gen.as_torch(), batch_size=None)`` for APIs that insist
    on one. Batches are already made (and loaded ahead by awkgen's workers), so such
    a DataLoader must keep ``batch_size=None`` and ``num_workers=0``: any other
    ``batch_size`` would stack several batches into one, and is refused with a
    ``ValueError`` when the DataLoader starts a pass. Numpy arrays become tensors
    sharing their memory; tuples and dicts are converted item by item; other values
    are passed through.

    A pass is :meth:`BatchGenerator.one_epoch <awkgen.BatchGenerator.one_epoch>`:
    batches are taken from the stream as the loop asks for them, and a pass ends
    where an epoch ends. After a loop left a pass early (``break``), the next pass
    gives the rest of that epoch, so the pass after it starts at an epoch boundary
    again; no batch is skipped. ``len()`` is always the steps of a whole epoch.

    Needs torch (``pip install "awkgen[torch]"``).

    Args:
        gen: An awkgen generator, or another :class:`~awkgen.frameworks.DataGenerator`.

    Returns:
        A ``torch.utils.data.IterableDataset`` whose ``len`` is *gen*'s steps per epoch.

    Raises:
        ImportError: torch is not installed.
        TypeError: *gen* is not an awkgen generator or a ``DataGenerator``.

    >>> import awkgen, numpy as np
    >>> gen = awkgen.DataGenerator(lambda ids: ids * 1.0, np.arange(5), np.arange(5), batch_size=2,
    ...                            shuffle=False)
    >>> data = as_torch(gen)
    >>> len(data), [y.tolist() for x, y in data], [y.tolist() for x, y in data][0]
    (3, [[0, 1], [2, 3], [4]], [0, 1])
    """
    steps = steps_per_epoch(gen)
    data = import_framework("torch.utils.data", "torch", "as_torch()")
    stream: TorchStream = _stream_class(data.IterableDataset)(gen, steps)
    return stream


if TYPE_CHECKING:
    class TorchStream(torch.utils.data.IterableDataset[tuple[Any, ...]]):
        """What :func:`as_torch` returns (for type checkers: an ``IterableDataset`` with ``len``)."""

        @property
        def generator(self) -> BatchGenerator | DataGenerator: ...

        def __len__(self) -> int: ...

        def __iter__(self) -> Iterator[tuple[Any, ...]]: ...


_MANY_BATCHES = ("DataLoader(gen.as_torch(), batch_size={0}) would stack {0} of awkgen's batches into one "
                 "batch: awkgen's batches are already made. Pass batch_size=None (DataLoader(gen.as_torch(), "
                 "batch_size=None)), and choose the batch size in the awkgen factory")


def _refuse_collation(caller: types.FrameType | None) -> None:
    """Refuse a ``DataLoader`` whose ``batch_size`` would stack batches. The caller of
    ``iter(dataset)`` is torch's fetcher, which knows whether it collates (torch since 1.2)."""
    try:
        from torch.utils.data import DataLoader
        from torch.utils.data._utils.fetch import _IterableDatasetFetcher
    except ImportError:  # a torch that arranges fetching otherwise: nothing to check
        return
    if caller is None:
        return
    fetcher = caller.f_locals.get("self")
    if not (isinstance(fetcher, _IterableDatasetFetcher) and fetcher.auto_collation):
        return
    size: Any = "N"
    frame = caller.f_back
    for _ in range(8):  # the DataLoader that made the fetcher, for its batch_size
        if frame is None:
            break
        found = [v for v in (frame.f_locals.get("loader"), frame.f_locals.get("self")) if isinstance(v, DataLoader)]
        if found:
            size = found[0].batch_size
            break
        frame = frame.f_back
    if size == 1:  # DataLoader's default
        raise ValueError("DataLoader(gen.as_torch()) collates with its default batch_size=1, which would add "
                         "a dimension of 1 to each of awkgen's batches: awkgen's batches are already made. "
                         "Pass batch_size=None: DataLoader(gen.as_torch(), batch_size=None)")
    raise ValueError(_MANY_BATCHES.format(size))


@functools.cache
def _stream_class(iterable_dataset: type) -> type:
    """Define the IterableDataset subclass once torch is imported (its base class lives there)."""
    import torch

    def tensor(value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
            # from_numpy shares memory (and keeps the array, hence its shared-memory slot, alive)
            return torch.from_numpy(value) if value.flags.writeable else torch.tensor(value)
        return value

    class TorchStream(iterable_dataset):  # type: ignore[misc]  # a base class known at run time
        """The rest of an awkgen generator's current epoch per pass, as torch tensors; see :func:`as_torch`."""

        def __init__(self, gen: BatchGenerator | DataGenerator, steps: int) -> None:
            super().__init__()
            self._gen = gen
            self._steps = steps

        @property
        def generator(self) -> BatchGenerator | DataGenerator:
            return self._gen

        def __len__(self) -> int:
            return self._steps

        def __iter__(self) -> Iterator[tuple[Any, ...]]:
            _refuse_collation(sys._getframe(1))  # iter(dataset) is called by torch's fetcher, if any
            if torch.utils.data.get_worker_info() is not None:
                raise RuntimeError("Expected to be iterated in the main process (DataLoader num_workers=0). "
                                   "Received: a call from a DataLoader worker; awkgen already loads in its own "
                                   "workers, so use DataGeneratorMultiProc instead of DataLoader workers")
            gen = self._gen
            batches = (gen.one_epoch() if isinstance(gen, BatchGenerator)
                       else (gen.get_batch() for _ in range(self._steps)))
            # tuples, lists, dicts: item by item
            return (map_tree(batch, tensor, exact=False) for batch in batches)

        def __repr__(self) -> str:
            return f"<awkgen TorchStream: {self._steps} steps per epoch of {self._gen!r}>"

    return TorchStream
