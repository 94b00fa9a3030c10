"""What runs inside a worker process of the ``"process"`` backend.

The forkserver preloads this module, so a new worker forks with numpy, dill and
tblib already imported. Each worker:

1. ignores SIGINT (Ctrl-C belongs to the parent, which stops the pool);
2. starts a watchdog thread that waits on the *lifeline* pipe: the parent never
   writes to it, so it turns readable (EOF) exactly when the parent is gone, even
   after SIGKILL; the watchdog then unlinks the dead parent's shared memory and exits;
3. caps BLAS/OpenMP threads so N workers do not oversubscribe the cores;
4. unpickles the loader and says :class:`Ready` (or :class:`InitFailed`);
5. loops: receive an :class:`Assignment`, run the loader, write arrays into the
   assigned slot, send a :class:`Reply`. ``None`` or EOF ends the loop.

Every message is a small frozen dataclass, pickled explicitly (dill only when
pickle refuses) so a failure to send a result becomes that batch's error.
"""

from __future__ import annotations

import collections
import ctypes
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import dill
from tblib import pickling_support
from threadpoolctl import threadpool_limits

from .. import transport
from .base import Task, call_loader

__all__ = ["Assignment", "Reply", "Ready", "InitFailed", "worker_main", "dumps"]

_PARENT_EXIT_WAIT_S = 2.0  # after the lifeline breaks, how long to wait for the parent to be gone
_ATTACHED_MAX = 8
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP_BYTES = 1 << 30  # mappings a worker keeps open; stale ones are dropped oldest first
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Assignment:
    """Parent to worker: run *task*; put its arrays into *slot* if they fit."""

    task: Task
    slot: transport.SlotRef | None


@dataclass(frozen=True)
class Reply:
    """Worker to parent: a task's result or failure.

    ``tree`` is the result with arrays replaced by :class:`~awkgen.transport.ArrayRef`
    when ``in_slot``, else the whole result. ``nbytes`` is what its arrays needed.
    On failure, ``error`` is the pickled exception (``None`` if it would not pickle)
    and ``error_text`` its formatted traceback.
    """

    seq: int
    tree: Any = None
    in_slot: bool = False
    nbytes: int = 0
    load_s: float = 0.0
    failed: bool = False
    error: bytes | None = None
    error_text: str = ""


@dataclass(frozen=True)
class Ready:
    """Worker to parent, once: the loader is loaded; send tasks (timeouts count from here)."""


@dataclass(frozen=True)
class InitFailed:
    """Worker to parent, instead of any reply: the loader could not be unpickled."""

    error_text: str


def dumps(obj: Any) -> bytes:
    """Pickle with the standard pickler, falling back to dill (lambdas, closures)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def worker_main(conn: Any, lifeline: Any, loader_bytes: bytes, parent_pid: int, blas_threads: int,
                shm_dir: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(lifeline, parent_pid, shm_dir), name="awkgen-watchdog",
                     daemon=True).start()
    for name in _THREAD_ENV:
        os.environ[name] = str(blas_threads)
    _keep_freed_memory()
    try:
        threadpool_limits(limits=blas_threads)
        loader = dill.loads(loader_bytes)
    except BaseException:
        conn.send_bytes(dumps(InitFailed(traceback.format_exc())))
        sys.exit(1)
    conn.send_bytes(dumps(Ready()))
    attached: collections.OrderedDict[str, Any] = collections.OrderedDict()
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message is None:
            return
        conn.send_bytes(_run(loader, message, attached))


def _keep_freed_memory() -> None:
    """Make glibc reuse the memory of freed batches instead of unmapping and faulting it in again.

    By default every allocation above a threshold (at most 32 MiB) is a fresh ``mmap``
    whose pages fault in one by one, and is unmapped when freed: a loader building a
    32 MiB batch pays that on every call. With both thresholds raised, freed batches
    stay in the worker's heap and the next one reuses them (2-3x faster to fill). The
    cost: a worker's RSS stays at its high-water mark, bounded by what the loader
    itself allocates at once.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)


def _watch_parent(lifeline: Any, parent_pid: int, shm_dir: str) -> None:
    from multiprocess.connection import wait

    wait([lifeline])  # returns on EOF: the parent closed the pool or died
    # A killed parent's pipes close before it is reaped or even a zombie: give it a moment.
    deadline = time.monotonic() + _PARENT_EXIT_WAIT_S
    while transport._pid_alive(parent_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not transport._pid_alive(parent_pid):
        for path in transport.owned_segments(parent_pid, shm_dir):
            transport.unlink_segment(path)
    os._exit(0)


def _run(loader: Any, message: Assignment, attached: collections.OrderedDict[str, Any]) -> bytes:
    task, slot = message.task, message.slot
    try:
        value, load_s = call_loader(loader, task)
    except BaseException as exc:
        return _failure(task.seq, exc)
    try:
        tree, arrays, nbytes = transport.flatten_arrays(value)
        if slot is not None and transport.MIN_SHM_BYTES <= nbytes <= slot.capacity:
            transport.write_arrays(_attach(slot.path, attached), tree, arrays)
            return dumps(Reply(task.seq, tree, True, nbytes, load_s))
        return dumps(Reply(task.seq, value, False, nbytes, load_s))
    except Exception as exc:
        unsendable = TypeError(f"the loader's result cannot be sent back from the worker process "
                               f"({type(exc).__name__}: {exc}); return arrays or picklable objects")
        unsendable.__cause__ = exc
        return _failure(task.seq, unsendable, load_s)


def _attach(path: str, attached: collections.OrderedDict[str, Any]) -> Any:
    mm = attached.get(path)
    if mm is None:
        mm = attached[path] = transport.attach_segment(path)
        while len(attached) > _ATTACHED_MAX:
            attached.popitem(last=False)[1].close()
    attached.move_to_end(path)
    return mm


def _failure(seq: int, exc: BaseException, load_s: float = 0.0) -> bytes:
    text = "".join(traceback.format_exception(exc))
    try:
        pickling_support.install(exc)  # ship the worker-side traceback along with the exception
        blob: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = None
    return dumps(Reply(seq, load_s=load_s, failed=True, error=blob, error_text=text))
