"""The exceptions awkgen raises.

Every runtime failure of a generator is an :class:`AwkgenError`, itself a
:class:`RuntimeError`, so ``except RuntimeError`` keeps working in code written
for the R package. Bad *arguments* are plain :class:`TypeError` /
:class:`ValueError`, raised when the generator is built.

>>> issubclass(LoaderError, AwkgenError) and issubclass(AwkgenError, RuntimeError)
True
>>> short_ids(list(range(100)))
'[0, 1, 2, 3, 4, 5, 6, 7, ... (92 more)]'
>>> import numpy as np
>>> short_ids([np.int64(8), np.str_("a.png")]), short_ids(np.arange(3))
("[8, 'a.png']", '[0, 1, 2]')
"""

from __future__ import annotations

import reprlib
import signal as _signal
from typing import Any

import numpy as np

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
    """A one-line, bounded description of a batch's ids for error messages.

    Args:
        ids: The batch's ids: any iterable.

    Returns:
        The first 8 ids, each shortened to 60 characters, and how many more there are.
    """
    items = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    # numpy 2 writes its scalars as np.int64(8): show the plain value, as a numpy array's ids print
    items = [i.item() if isinstance(i, np.generic) else i for i in items]
    shown = ", ".join(_ID_REPR.repr(i) for i in items[:_SHOWN_IDS])
    more = len(items) - _SHOWN_IDS
    return f"[{shown}, ... ({more} more)]" if more > 0 else f"[{shown}]"


class AwkgenError(RuntimeError):
    """Base class of every error a running generator raises; a :class:`RuntimeError`.

    Besides the message, a batch's failure carries what a training script needs to
    log or skip it without parsing text, as attributes of the same names as the
    arguments below (``None`` where they do not apply), and :attr:`signal`. awkgen
    builds these errors; the arguments matter to code that raises one itself (a test,
    a wrapper).

    Args:
        message: What went wrong, naming the batch.
        ids: The batch's ids, as the loader received them.
        epoch: The epoch of the batch.
        step: The batch's index within its epoch.
        pid: The worker process that ran (or died running) the batch.
        exitcode: How that worker ended, as :mod:`multiprocessing` says it (negative:
            killed by that signal).

    >>> err = WorkerDiedError("worker died", ids=[3, 4], epoch=0, step=1, pid=42, exitcode=-9)
    >>> err.ids, err.step, err.signal
    ([3, 4], 1, 'SIGKILL')
    """

    def __init__(self, message: str = "", *, ids: Any = None, epoch: int | None = None, step: int | None = None,
                 pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.ids: Any = ids
        self.epoch: int | None = epoch
        self.step: int | None = step
        self.pid: int | None = pid
        self.exitcode: int | None = exitcode

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended the worker (``"SIGKILL"``), else ``None``.

        ``None`` when the worker exited by itself or its exit code is unknown;
        ``"signal N"`` for a number Python has no name for.
        """
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return _signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"


class LoaderError(AwkgenError):
    """The loader raised; ``__cause__`` is the original exception.

    Raised by the call that would have returned the batch, on every backend:
    ``__cause__`` has the original's type and message and the worker's traceback (an
    exception that cannot be pickled arrives as text). Also raised when the loader's
    result cannot be sent back, when the batch's ids cannot be rebuilt in a worker, and
    for ``sys.exit()`` in the loader. The generator stays usable: the next call returns
    the next batch.

    >>> import awkgen
    >>> def loader(ids):
    ...     if 3 in ids:
    ...         raise FileNotFoundError("no such file: 3.png")
    ...     return ids
    >>> gen = awkgen.DataGenerator(loader, [1, 2, 3, 4], batch_size=1, shuffle=False)
    >>> gen(), gen()
    (([1],), ([2],))
    >>> try:
    ...     gen()
    ... except awkgen.LoaderError as err:
    ...     print(err.ids, err.step, repr(err.__cause__))
    [3] 2 FileNotFoundError('no such file: 3.png')
    >>> gen()
    ([4],)
    """


class WorkerDiedError(AwkgenError):
    """A worker process died (killed, segfault, ``os._exit``) while loading a batch.

    Raised, within a second or so, by the call that would have returned that batch;
    ``pid``, ``exitcode`` and ``signal`` say which worker and how it ended (on Ray:
    the actor, its pid when known, and Ray's reason). Also raised when a worker sends
    bytes that are not a message. The worker has been replaced; the next call returns
    the next batch.
    """


class LoaderTimeoutError(AwkgenError):
    """A loader call took longer than the generator's ``timeout``.

    Raised by the call that would have returned that batch. The stuck worker process
    (or Ray actor) is killed and replaced; a stuck thread cannot be killed and is
    abandoned. The next call returns the next batch.
    """


class WorkerStartError(AwkgenError):
    """Worker processes cannot start: they die before they are ready (a loader that
    kills its process while it is unpickled, a start method that cannot run this
    program) or the system refuses new processes (file-descriptor or process limits).

    Raised within seconds instead of respawning forever; the generator cannot recover
    by itself: fix the cause and build a new one.
    """


class GeneratorStoppedError(AwkgenError):
    """The generator was stopped and cannot give batches any more.

    Raised by every request for a batch (``gen()``, ``next(gen)``, ``get_batch()``,
    iteration) and by ``load_state_dict`` after ``gen(stop=True)``, ``close()``,
    :func:`~awkgen.CleanupGenerator` or the end of a ``with gen:`` block; also by a
    call that was waiting for a batch in another thread when the generator was
    stopped. Stopping again never raises, and ``state_dict()`` still works. Build a new
    generator (``load_state_dict`` resumes where this one was) to go on.

    >>> import awkgen
    >>> gen = awkgen.DataGenerator(lambda ids: ids, [1, 2, 3], batch_size=1, shuffle=False)
    >>> gen()
    ([1],)
    >>> gen(stop=True)
    >>> try:
    ...     gen()
    ... except awkgen.GeneratorStoppedError as err:
    ...     print(isinstance(err, awkgen.AwkgenError), "stopped" in str(err))
    True True
    >>> gen.state_dict()["step"], gen.closed
    (1, True)
    """
