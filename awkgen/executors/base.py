"""The executor interface and the messages that cross it.

An executor runs loader calls; it knows nothing of epochs, order or labels. The
generator plans batches, submits a :class:`Task` per batch (at most ``prefetch``
undelivered at once) and collects one :class:`Outcome` per task, in any order,
from :meth:`Executor.get`; it delivers them in order itself::

    generator --submit(Task)--> executor --> workers (loader calls)
    generator <--get() Outcome-- executor <-- results / deaths / timeouts

Contract for every executor:

- every submitted task yields exactly one outcome (a value or a failure), also when
  its worker dies or times out: nothing is ever lost, so the generator never hangs;
- :meth:`Executor.get` returns ``None`` after *timeout* seconds without an outcome,
  so callers re-check their own flags between waits;
- :meth:`Executor.close` is idempotent, safe from any thread and from a signal
  handler, and leaves no worker, thread or shared-memory segment behind it;
  :meth:`Executor.request_close` is what a finalizer calls: no lock, no wait.
"""

from __future__ import annotations

import abc
import os
import pickle
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AwkgenError

__all__ = ["Task", "Outcome", "Executor", "call_loader", "loader_failure", "usable_cpus", "drain", "held_here"]


#: Tasks and outcomes are made once per batch and never changed after: plain slotted
#: dataclasses, not frozen ones, whose construction (object.__setattr__ per field) costs
#: 1-2 us more per batch in the caller's thread.
@dataclass(slots=True)
class Task:
    """One loader call: the batch's ids and, if the loader takes one, its rng entropy."""

    seq: int
    ids: Any
    rng_entropy: tuple[int, ...] | None = None


@dataclass(slots=True)
class Outcome:
    """What became of a task: its loader's value, or a failure to raise in its place.

    A failure has ``error_type`` set (an :class:`~awkgen.AwkgenError` subclass),
    ``detail`` saying what happened, and ``cause`` the original exception, if any.
    ``load_s`` is the loader's own run time in seconds; ``pid`` and ``exitcode`` name
    the worker process and how it ended, for deaths. ``interrupted`` marks a loader
    call that raised ``KeyboardInterrupt``: the generator raises it in the caller and
    loads the same batch again on the next call.

    ``cause_pickle``, when set, holds the cause still pickled: it is unpickled by
    :meth:`exception` in the thread that raises it. A worker's exception rebuilt with
    its traceback (tblib) gets frames whose ``f_back`` chain is the stack that unpickled
    it; unpickled while an executor reads a pipe, that chain would reach the generator
    from the executor's queue, a cycle kept alive by the executor's thread.
    """

    seq: int
    value: Any = None
    error_type: type[AwkgenError] | None = None
    detail: str = ""
    cause: BaseException | None = None
    load_s: float = 0.0
    pid: int | None = None
    exitcode: int | None = None
    interrupted: bool = False
    cause_pickle: bytes | None = None

    def exception(self) -> BaseException | None:
        """The cause, unpickled now if it travelled pickled."""
        if self.cause_pickle is None:
            return self.cause
        try:
            loaded = pickle.loads(self.cause_pickle)
        except Exception:  # it unpickled once already; never let a second try lose the batch's error
            return self.cause
        return loaded if isinstance(loaded, BaseException) else self.cause


def held_here(lock: Any) -> bool:
    """Whether this thread holds the ``RLock`` *lock*: a signal handler that interrupted a call
    holding it must not wait for it (it would wait for itself)."""
    return bool(lock._is_owned())


def drain(outcomes: queue.SimpleQueue[Any]) -> None:
    """Empty *outcomes* without waiting."""
    try:
        while True:
            outcomes.get_nowait()
    except queue.Empty:
        return


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (``taskset``, a container's cpuset)
    where the OS has one, else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def call_loader(loader: Callable[..., Any], task: Task) -> tuple[Any, float]:
    """Run *loader* on *task*'s ids; return ``(value, seconds)``. Exceptions propagate.

    The loader gets its own copy of the batch's array or list, on every backend (a worker
    process gets one anyway): a loader that sorts or edits it in place changes nothing
    outside its call, not the ids an error reports nor those a retried batch is loaded with.
    """
    ids = task.ids
    if isinstance(ids, (np.ndarray, list)):
        ids = ids.copy()
    start = time.perf_counter()
    if task.rng_entropy is None:
        value = loader(ids)
    else:
        value = loader(ids, rng=np.random.default_rng(list(task.rng_entropy)))
    return value, time.perf_counter() - start


def loader_failure(seq: int, exc: BaseException, load_s: float = 0.0, pid: int | None = None) -> Outcome:
    """The outcome of a loader call that raised *exc*, on any backend.

    One meaning everywhere: ``KeyboardInterrupt`` interrupts the caller and the batch is
    loaded again; anything else, ``SystemExit`` from ``sys.exit()`` included, fails the
    batch with a :class:`~awkgen.LoaderError` (a loader cannot end the training process).
    """
    from ..errors import LoaderError

    if isinstance(exc, KeyboardInterrupt):
        return Outcome(seq, cause=exc, load_s=load_s, pid=pid, interrupted=True)
    return Outcome(seq, error_type=LoaderError, detail=f"loader raised {type(exc).__name__}: {exc}", cause=exc,
                   load_s=load_s, pid=pid)


class Executor(abc.ABC):
    """Runs loader calls for one generator. See the module docstring for the contract."""

    #: How many loader calls may run at once.
    n_workers: int = 1

    @abc.abstractmethod
    def submit(self, task: Task) -> None:
        """Queue *task*; never blocks on the loader."""

    @abc.abstractmethod
    def get(self, timeout: float) -> Outcome | None:
        """The next finished outcome (any task's), or ``None`` after *timeout* seconds."""

    def cancel(self) -> None:
        """Forget queued tasks that have not started; outcomes of running ones still come.

        The generator ignores outcomes it no longer waits for, so this is an
        optimisation (used when a state is loaded), not a requirement.
        """
        return None

    def ready(self) -> int:
        """Outcomes finished and waiting to be collected by :meth:`get` (for stats)."""
        return 0

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every worker and free every resource. Idempotent, thread-safe."""

    def request_close(self) -> None:
        """Ask for :meth:`close` without waiting; safe in a finalizer or GC callback on any
        thread: it takes no lock and waits for nothing (the executor's own threads close)."""
        self.close()
