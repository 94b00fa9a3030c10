"""The blocking executor behind ``DataGenerator``: the loader runs in the caller."""

from __future__ import annotations

import _signal
import collections
import signal
from collections.abc import Callable
from typing import Any

from .. import _interrupts
from .base import Executor, Outcome, Task, call_loader, loader_failure

__all__ = ["SerialExecutor"]


class SerialExecutor(Executor):
    """Runs each task inside :meth:`get`, in the calling thread, in submission order.

    >>> ex = SerialExecutor(lambda ids: sum(ids))
    >>> ex.submit(Task(0, [1, 2, 3]))
    >>> ex.get(timeout=1.0).value
    6
    >>> ex.get(timeout=0.0) is None
    True
    """

    n_workers = 1

    def __init__(self, loader: Callable[..., Any]) -> None:
        self._loader = loader
        self._queue: collections.deque[Task] = collections.deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def get(self, timeout: float) -> Outcome | None:
        if not self._queue:
            return None
        task = self._queue.popleft()
        guard = _interrupts.active()  # the generator's deferred_sigint, when SIGINT is deferred
        try:
            try:
                if guard is not None:  # Ctrl-C stops a long loader call at once...
                    guard.check()
                    _signal.signal(signal.SIGINT, guard.original)
                value, seconds = call_loader(self._loader, task)
            finally:
                if guard is not None:  # first thing (no Python call before it): deferred again
                    _signal.signal(signal.SIGINT, guard.record)
        except KeyboardInterrupt:
            self._queue.appendleft(task)  # ...and the interrupted batch is the next one loaded
            raise
        except BaseException as exc:  # the loader's own failure (sys.exit too), in its batch's place
            return loader_failure(task.seq, exc)
        return Outcome(task.seq, value=value, load_s=seconds)

    def cancel(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        self._queue.clear()
