"""The exceptions awkgen raises.

Every runtime failure of a generator is an :class:`AwkgenError`, itself a
:class:`RuntimeError`, so ``except RuntimeError`` keeps working in code written
for the R package. Bad *arguments* are plain :class:`TypeError` /
:class:`ValueError`, raised when the generator is built.

>>> issubclass(LoaderError, AwkgenError) and issubclass(AwkgenError, RuntimeError)
True
>>> short_ids(list(range(100)))
'[0, 1, 2, 3, 4, 5, 6, 7, ... (92 more)]'
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "AwkgenError",
    "LoaderError",
    "WorkerDiedError",
    "LoaderTimeoutError",
    "GeneratorStoppedError",
    "short_ids",
]

_SHOWN_IDS = 8
_ID_REPR = reprlib.Repr()
_ID_REPR.maxstring = 60
_ID_REPR.maxother = 60


def short_ids(ids: Any) -> str:
    """A one-line, bounded description of a batch's ids for error messages."""
    items = list(ids)
    shown = ", ".join(_ID_REPR.repr(i) for i in items[:_SHOWN_IDS])
    more = len(items) - _SHOWN_IDS
    return f"[{shown}, ... ({more} more)]" if more > 0 else f"[{shown}]"


class AwkgenError(RuntimeError):
    """Base class of every error a running generator raises."""


class LoaderError(AwkgenError):
    """The loader raised; ``__cause__`` is the original exception.

    The generator stays usable: the next call returns the next batch.
    """


class WorkerDiedError(AwkgenError):
    """A worker process died (killed, segfault, ``os._exit``) while loading a batch.

    The worker has been replaced; the next call returns the next batch.
    """


class LoaderTimeoutError(AwkgenError):
    """A loader call took longer than the generator's ``timeout``.

    The stuck worker has been replaced; the next call returns the next batch.
    """


class GeneratorStoppedError(AwkgenError):
    """The generator was stopped (``gen(stop=True)``, ``close()``, ...) and cannot be used."""
