"""MXNet: ART's ``MXDataGenerator`` over a Gluon ``DataLoader`` (ART 1.x had it; ART 1.20 dropped it).

MXNet 1.9.1 needs ``numpy < 1.24``; ``pip install "awkgen[mxnet]"`` in an
environment of its own. mxnet is imported when the class is used.
"""

from __future__ import annotations

from typing import Any

from .base import _RestartingGenerator, art_twin, import_framework

__all__ = ["MXDataGenerator"]


@art_twin("MXDataGenerator")
class MXDataGenerator(_RestartingGenerator):
    """ART's wrapper over an ``mxnet.gluon.data.DataLoader``: ``get_batch()`` returns the next
    batch as numpy arrays (``NDArray.asnumpy()``), starting a new pass when one ends.

    The first pass starts at the first ``get_batch()``, so building the wrapper
    starts no loader worker; :meth:`close` drops the current pass.

    Args:
        iterator: An ``mxnet.gluon.data.DataLoader``.
        size: Samples in the data set (ART's ``size``).
        batch_size: Samples per batch.

    Raises:
        ImportError: MXNet is not installed (``pip install "awkgen[mxnet]"``).
        TypeError: *iterator* is not a Gluon ``DataLoader``.
        ValueError: *size* or *batch_size* is out of range (see :class:`DataGenerator`).
    """

    def __init__(self, iterator: Any, size: int, batch_size: int) -> None:
        mxnet = import_framework("mxnet", "mxnet", "MXDataGenerator")
        if not isinstance(iterator, mxnet.gluon.data.DataLoader):
            raise TypeError("Expected iterator to be an mxnet.gluon.data.DataLoader. "
                            f"Received: {iterator!r:.100} ({type(iterator).__name__})")
        super().__init__(iterator, size=size, batch_size=batch_size)
