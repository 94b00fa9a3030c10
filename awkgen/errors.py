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
import signal as _signal
from typing import Any

__all__ = [
    "AwkgenError",
    "LoaderError",
    "WorkerDiedError",
    "LoaderTimeoutError",
    "WorkerStartError",
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
    """Base class of every error a running generator raises.

    Besides the message, a batch's failure carries what a training script needs to
    log or skip it without parsing text (``None`` where it does not apply):

    - ``ids``: the batch's ids, as the loader received them;
    - ``epoch``, ``step``: where the batch stands in the stream;
    - ``pid``: the worker process that ran (or died running) it;
    - ``exitcode``: how that worker ended, as ``multiprocessing`` says it
      (negative: killed by that signal);
    - ``signal``: the signal's name when a signal killed it (``"SIGKILL"``).

    >>> err = WorkerDiedError("worker died", ids=[3, 4], epoch=0, step=1, pid=42, exitcode=-9)
    >>> err.ids, err.step, err.signal
    ([3, 4], 1, 'SIGKILL')
    """

    def __init__(self, message: str = "", *, ids: Any = None, epoch: int | None = None, step: int | None = None,
                 pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.ids, self.epoch, self.step, self.pid, self.exitcode = ids, epoch, step, pid, exitcode

    @property
    def signal(self) -> str | None:
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return _signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"


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


class WorkerStartError(AwkgenError):
    """Worker processes cannot start: they die before they are ready (a loader that
    kills its process while it is unpickled, a start method that cannot run this
    program) or the system refuses new processes (file-descriptor or process limits).

    Raised within seconds instead of respawning forever; the generator cannot recover
    by itself: fix the cause and build a new one.
    """


class GeneratorStoppedError(AwkgenError):
    """The generator was stopped (``gen(stop=True)``, ``close()``, ...) and cannot be used."""
