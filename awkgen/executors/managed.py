"""The skeleton the ``"process"`` and ``"ray"`` backends share.

Both keep their workers behind one *manager thread*, the only code that talks to
workers; the caller's thread never blocks on a worker::

    submit(task) --> _todo (deque) --> manager --> workers
    get()        <-- _outcomes (queue) <-- manager

This class owns that plumbing: the two queues, starting the workers and the
manager, ``get`` (which never waits longer than asked and notices a manager that
died), ``ready``, ``cancel`` and the shutdown flags. A backend supplies
``_spawn`` (start one worker), ``_manage`` (the manager's loop), ``_notify``
(wake the manager) and ``close``.
"""

from __future__ import annotations

import abc
import collections
import queue
import threading
from typing import Any

from ..errors import AwkgenError
from .base import Executor, Outcome, Task, drain

__all__ = ["ManagedExecutor"]


class ManagedExecutor(Executor):
    #: Names the backend in the manager thread's name and in messages.
    backend_name = "managed"

    def __init__(self, n_workers: int, timeout: float | None) -> None:
        self.n_workers = n_workers
        self._timeout = timeout
        self._todo: collections.deque[Task] = collections.deque()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._close_lock = threading.Lock()
        self._closed = False  # close() has begun (set once, under _close_lock)
        self._stopping = False  # the manager must stop and spawn nothing more
        self._broken: str | None = None  # set when workers cannot even load the loader
        self._manager_error: BaseException | None = None
        self._workers: list[Any] = []
        self._manager: threading.Thread | None = None

    def _start(self) -> None:
        """Start the workers, then the manager; on any failure, release what started."""
        try:
            for _ in range(self.n_workers):
                self._workers.append(self._spawn())
        except BaseException:
            self.close()
            raise
        self._manager = threading.Thread(target=self._run_manager, name=f"awkgen-{self.backend_name}-manager",
                                         daemon=True)
        self._manager.start()

    def _run_manager(self) -> None:
        try:
            self._manage()
        except BaseException as exc:  # never die silently: get() reports it
            self._manager_error = exc
            raise
        finally:
            if self._stopping and not self._closed:  # asked by request_close (a finalizer, a signal)
                self.close()

    def request_close(self) -> None:
        """Finalizer-safe: only a flag (no lock, no wait); the manager sees it within its
        tick, leaves its loop and closes the executor from its own thread."""
        self._stopping = True

    # -- the caller's side ------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        self._todo.append(task)
        self._notify()

    def get(self, timeout: float) -> Outcome | None:
        try:
            return self._outcomes.get(timeout=timeout)
        except queue.Empty:
            if not self._closed and self._manager is not None and not self._manager.is_alive():
                raise AwkgenError(f"the {self.backend_name} backend's manager thread stopped unexpectedly; "
                                  "close this generator and build a new one") from self._manager_error
            return None

    def ready(self) -> int:
        return self._outcomes.qsize()

    def cancel(self) -> None:
        self._todo.clear()

    def _drop_outcomes(self) -> None:
        """Forget results nobody will collect: their arrays may view shared memory, which
        must go with the close even while the caller still holds the generator."""
        drain(self._outcomes)

    def _begin_close(self) -> bool:
        """Mark the executor closed; True for the one call that should do the closing."""
        with self._close_lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def _join_manager(self, timeout_s: float) -> None:
        if self._manager is not None and self._manager is not threading.current_thread():
            self._manager.join(timeout_s)

    # -- what a backend supplies ------------------------------------------------------------
    @abc.abstractmethod
    def _spawn(self) -> Any:
        """Start one worker and return its handle."""

    @abc.abstractmethod
    def _manage(self) -> None:
        """The manager thread's loop; returns once ``_stopping`` is set."""

    @abc.abstractmethod
    def _notify(self) -> None:
        """Wake the manager (a task was submitted, or close() began)."""
