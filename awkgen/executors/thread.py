"""The ``"thread"`` backend: a pool of daemon threads sharing one task queue.

Right for loaders that release the GIL (file and network I/O, most numpy, image
decoders). Results are handed over as they are: no copying, no pickling.

A thread cannot be killed, so a loader call past ``timeout`` is *abandoned*: its
batch fails with :class:`~awkgen.LoaderTimeoutError` at once, a fresh thread takes
its place, and the stuck thread exits, its result dropped, when the call returns.
Until then it is the one thing ``close()`` cannot reclaim (use the process backend
for loaders that may hang).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import LoaderTimeoutError
from .base import Executor, Outcome, Task, call_loader, drain, loader_failure

__all__ = ["ThreadExecutor"]

_TICK_S = 0.05  # how often a waiting get() checks running calls against the timeout
_JOIN_TIMEOUT_S = 2.0
_names = itertools.count()


class ThreadExecutor(Executor):
    def __init__(self, loader: Callable[..., Any], n_workers: int, timeout: float | None) -> None:
        self.n_workers = n_workers
        self._loader = loader
        self._timeout = timeout
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: dict[threading.Thread, tuple[Task, float]] = {}  # thread -> (task, start)
        self._abandoned: set[threading.Thread] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        for _ in range(n_workers):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name=f"awkgen-thread-worker-{next(_names)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        # Without a timeout no call is ever judged late, so none is registered: two lock hops
        # and a clock read less per batch (what a tiny batch costs here).
        timed = self._timeout is not None
        tasks, outcomes, loader = self._tasks, self._outcomes, self._loader
        while True:
            task = tasks.get()
            if task is None or self._closed:
                return
            if timed:
                with self._lock:
                    self._running[me] = (task, time.monotonic())
            try:
                value, seconds = call_loader(loader, task)
                outcome = Outcome(task.seq, value=value, load_s=seconds)
                if self._timeout is not None and seconds > self._timeout:
                    # Over time, though nobody was waiting to notice: the same failure as on processes.
                    outcome = self._late(task, me, seconds)
            except BaseException as exc:  # the loader's failure belongs to its batch
                outcome = loader_failure(task.seq, exc)
            if timed:
                with self._lock:
                    del self._running[me]
                    if me in self._abandoned:  # timed out: its batch has already failed
                        self._abandoned.discard(me)
                        return
            outcomes.put(outcome)

    def submit(self, task: Task) -> None:
        self._tasks.put(task)

    def get(self, timeout: float) -> Outcome | None:
        if self._timeout is None and not self._closed:  # nothing to expire: one wait, no tick
            try:
                return self._outcomes.get(timeout=timeout)
            except queue.Empty:
                return None
        deadline = time.monotonic() + timeout
        while not self._closed:
            expired = self._expire_running()
            if expired is not None:
                return expired
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                return self._outcomes.get(timeout=min(remaining, _TICK_S) if self._timeout else remaining)
            except queue.Empty:
                continue
        return None

    def _expire_running(self) -> Outcome | None:
        if self._timeout is None:
            return None
        now = time.monotonic()
        with self._lock:
            late = [(thread, task, start) for thread, (task, start) in self._running.items()
                    if thread not in self._abandoned and now - start > self._timeout]
            if not late:
                return None
            thread, task, start = late[0]
            self._abandoned.add(thread)
        self._threads.remove(thread)
        self._start_thread()
        return Outcome(task.seq, error_type=LoaderTimeoutError,
                       detail=f"loader call exceeded timeout={self._timeout:g} s in thread {thread.name} "
                              "(abandoned; a new thread replaces it)", load_s=now - start)

    def _late(self, task: Task, thread: threading.Thread, seconds: float) -> Outcome:
        return Outcome(task.seq, error_type=LoaderTimeoutError, load_s=seconds,
                       detail=f"loader call exceeded timeout={self._timeout:g} s in thread {thread.name} "
                              f"(it took {seconds:.2f} s; its result is dropped)")

    def ready(self) -> int:
        return self._outcomes.qsize()

    def cancel(self) -> None:
        try:
            while True:
                task = self._tasks.get_nowait()
                if task is None:  # keep close()'s sentinels
                    self._tasks.put(None)
                    return
        except queue.Empty:
            return

    def request_close(self) -> None:
        """Finalizer-safe: no lock (``SimpleQueue.put`` is reentrant); threads exit by themselves."""
        if self._closed:
            return
        self._closed = True
        for _ in list(self._threads):
            self._tasks.put(None)

    def close(self) -> None:
        # No lock: close() may come from a signal handler that interrupted this thread inside
        # _expire_running. A racing second close only adds sentinels, which are harmless.
        if self._closed:
            return
        self._closed = True
        self.cancel()
        for _ in list(self._threads):
            self._tasks.put(None)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        drain(self._outcomes)  # results nobody will collect
