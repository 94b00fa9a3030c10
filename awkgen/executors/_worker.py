"""What runs inside a worker process of the ``"process"`` backend.

The forkserver preloads this module (through :mod:`._preload`, with :mod:`.process` and
the native thread pools already found), so a new worker forks with numpy, dill and tblib
already imported, and its start is mostly unpickling the loader. First of all, a worker
compares the awkgen it runs (:data:`._identity.IDENTITY`, computed when the server
imported this module) with its parent's: a worker of other code (the server found
another awkgen tree on its ``sys.path``) says so and exits, and every later message
names its awkgen too, so the parent can refuse it (the *handshake*). ``worker_main``
takes one setup dict, not positional arguments, so that a worker of another version
still gets this far. Then it:

1. ignores SIGINT (Ctrl-C belongs to the parent, which stops the pool), leaves the
   parent's process group (a kill of that whole group must leave it time to clean up)
   and runs under ``SCHED_BATCH`` (its wake-ups never preempt the training loop);
2. starts a watchdog thread that waits on the *lifeline* pipe: the parent never
   writes to it, so it turns readable (EOF) exactly when the parent is gone, even
   after SIGKILL; the watchdog then unlinks the dead parent's shared memory and exits.
   The main loop may see the parent's socket close first (an idle worker): it does
   the same cleanup before it returns, so no segment outlives a parent's death;
3. closes its copies of the forkserver's and resource tracker's descriptors (processes
   a loader starts would otherwise keep those servers alive after the parent stops),
   and caps BLAS/OpenMP threads so N workers do not oversubscribe the cores;
4. puts the parent's own code directories on ``sys.path``, unpickles the loader, adopts
   the classes that came with it (:mod:`._travel`) and says ``READY`` (or ``INIT_FAILED``);
5. loops: receive a task, run the loader, write its arrays into the assigned slot
   (or the reply's blob), send the reply. A stop message or EOF ends the loop.

Messages are the tuples of :mod:`._wire`, pickled explicitly (dill only when
pickle refuses), so a result that cannot be sent becomes that batch's error.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import dill
from tblib import pickling_support
from threadpoolctl import ThreadpoolController

from .. import procfs, transport
from . import _travel
from ._identity import IDENTITY, Identity
from ._wire import (
    FAILED,
    IN_BLOB,
    IN_PLACE,
    IN_SLOT,
    INIT_FAILED,
    READY,
    VALUE,
    Channel,
    UnreadableIds,
    decode_task,
    dumps,
    encode_value,
)
from .base import call_loader

__all__ = ["worker_main", "load_in_slot"]

_PARENT_EXIT_WAIT_S = 2.0  # after the lifeline breaks, how long to wait for the parent to be gone
_ATTACHED_MAX = 8
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP_BYTES = 1 << 30  # mappings a worker keeps open; stale ones are dropped oldest first
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: The native thread pools found in this process, scanned once by the forkserver (:mod:`._preload`)
#: so that its forks only set their size; None where nothing scanned them (spawn, fork start methods).
THREADPOOLS: ThreadpoolController | None = None
#: The process that ran :mod:`._preload` (in a worker: its forkserver, its parent); None where none did.
PRELOADED_IN: int | None = None


def worker_main(conn: Any, lifeline: Any, setup: dict[str, Any]) -> None:
    """A worker's life. *setup* is one dict (``loader``, ``parent_pid``, ``blas_threads``,
    ``shm_dir``, ``paths``, ``identity``) so that a worker running another awkgen than its
    parent still reads it and reports the mismatch, rather than dying on its arguments."""
    channel = Channel(conn.fileno())
    parent_identity = Identity.of(setup.get("identity"))
    if not IDENTITY.same_code(parent_identity):  # first, before anything that other code may do differently
        channel.send(dumps((INIT_FAILED, f"this worker runs {IDENTITY}, its parent {parent_identity}",
                            tuple(IDENTITY))))
        sys.exit(1)
    loader_bytes, parent_pid, blas_threads = setup["loader"], setup["parent_pid"], setup["blas_threads"]
    shm_dir, paths = setup["shm_dir"], setup["paths"]
    gc.freeze()  # what the forkserver built stays shared: no collection of this worker writes to it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _leave_process_group()
    _hold_no_servers()
    _run_as_batch()
    threading.Thread(target=_watch_parent, args=(lifeline, parent_pid, shm_dir), name="awkgen-watchdog",
                     daemon=True).start()
    for name in _THREAD_ENV:
        os.environ[name] = str(blas_threads)
    _keep_freed_memory()
    try:
        (THREADPOOLS or ThreadpoolController()).limit(limits=blas_threads)
        _travel.add_paths(paths)  # the parent's own modules, also those the loader imports lazily
        loader = dill.loads(loader_bytes)
        _travel.adopt_classes(loader)  # results of its __main__ classes go back as the parent's classes
    except BaseException:
        channel.send(dumps((INIT_FAILED, traceback.format_exc(), tuple(IDENTITY))))
        sys.exit(1)
    channel.send(dumps((READY, tuple(IDENTITY))))
    attached: collections.OrderedDict[str, Any] = collections.OrderedDict()
    waiting: collections.deque[Any] = collections.deque()  # tasks that arrived in one read
    blob_before = False  # whether the last reply carried a large blob
    try:
        while True:
            while not waiting:
                waiting.extend(head for head, _ in channel.receive())
            head = waiting.popleft()
            if len(head) == 0:  # the stop message
                return
            # Each reply goes before the next call starts: if that call kills this process,
            # the parent still has every earlier result and blames the right batch.
            reply, blob = _run(loader, head, attached)
            channel.send(reply, blob)
            large = len(blob) >= transport.MIN_SHM_BYTES
            del reply, blob
            if large and not blob_before:
                _return_freed_memory()
            blob_before = large
    except (EOFError, OSError):  # the parent closed its end without a stop message: it is gone
        _after_parent(parent_pid, shm_dir)
        return


def _leave_process_group() -> None:
    """Run in a process group of one's own.

    Whoever kills the parent's whole group at once (a notebook server stopping its kernel,
    a job runner) would otherwise kill the workers in the same instant, and nobody would be
    left to remove the parent's shared memory. Out of that group, a worker sees the parent
    die through the lifeline, cleans up, and exits within seconds; Ctrl-C in a terminal
    (sent to the foreground group) was never theirs anyway.
    """
    try:
        os.setpgid(0, 0)
    except OSError:  # not allowed here (already a group leader): keep the group
        pass


def _hold_no_servers() -> None:
    """Close this worker's descriptors of the parent's forkserver and resource tracker.

    Each of those servers exits when the last holder of its descriptor is gone; a
    worker needs neither (its parent makes every segment), but processes the loader
    starts would inherit them and keep both servers alive long after the parent stops.
    A loader that uses multiprocess itself gets servers of its own, started on demand.
    """
    from multiprocess import forkserver, resource_tracker

    server, tracker = forkserver._forkserver, resource_tracker._resource_tracker
    for owner, name in ((server, "_forkserver_alive_fd"), (tracker, "_fd")):
        fd = getattr(owner, name, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # not open in this process: nothing held
                pass
            setattr(owner, name, None)


def _run_as_batch() -> None:
    """Run under ``SCHED_BATCH``: a worker woken by a task or a timer never preempts the
    training loop on its CPU (it takes an idle CPU, or waits for the scheduler tick).

    Without it, on a machine with fewer cores than workers + 1, the training loop was
    descheduled on most messages it sent: the scheduler tends to wake a pipe's reader on the
    writer's CPU and let it preempt the writer. Loaders are throughput work; CPU shares
    between processes are unchanged.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the default policy
        pass


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


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system (``malloc_trim``), after a reply whose
    arrays travelled in a blob while the one before did not: the first batch (no slot is
    sized before a first result arrives) or one that outgrew its slot.

    Such a reply held the loader's arrays and their copy in the blob at once, so the heap
    grew to twice the batch, and :func:`_keep_freed_memory` would keep it there for the
    worker's life: one batch more per worker than the slots' steady state, which needs
    only the loader's own arrays. When every reply travels in a blob (no shared memory),
    the heap is left at that size: it is the steady state of that route.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _watch_parent(lifeline: Any, parent_pid: int, shm_dir: str) -> None:
    from multiprocess.connection import wait

    wait([lifeline])  # returns on EOF: the parent closed the pool or died
    _after_parent(parent_pid, shm_dir)
    os._exit(0)


_after_parent_lock = threading.Lock()  # the watchdog and the main loop may both get here


def _after_parent(parent_pid: int, shm_dir: str) -> None:
    """The parent's end closed: if it died, unlink the shared memory it left.

    Once per process: the second caller waits for the first (a watchdog that found the
    lock taken by the main thread's cleanup must not ``os._exit`` in the middle of it).
    """
    with _after_parent_lock:
        # A killed parent's pipes close before it is reaped or even a zombie: give it a moment.
        deadline = time.monotonic() + _PARENT_EXIT_WAIT_S
        while procfs.pid_alive(parent_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not procfs.pid_alive(parent_pid):
            transport.reclaim_orphans(shm_dir, pid=parent_pid, wait_s=_PARENT_EXIT_WAIT_S)


def _run(loader: Any, head: Any, attached: collections.OrderedDict[str, Any]) -> tuple[bytes, Any]:
    """Run one task; return its reply ``(head, blob)``."""
    try:
        task, slot = decode_task(head)
    except UnreadableIds as exc:
        error = TypeError(str(exc))
        error.__cause__ = exc.__cause__
        return dumps(_failure(exc.seq, error, by_loader=False)), b""
    fields, blob = load_in_slot(loader, task, slot, lambda path: _attach(path, attached))
    return dumps(fields), blob


def load_in_slot(loader: Any, task: Any, slot: transport.SlotRef | None,
                 attach: Callable[[str], Any]) -> tuple[tuple[Any, ...], Any]:
    """Run *loader* on *task*; return the reply's fields (``VALUE`` or ``FAILED``, see :mod:`._wire`)
    and blob. Never raises: a failure is a ``FAILED`` reply.

    With a *slot* (mapped by ``attach(path)``), ``awkgen.empty`` builds the loader's arrays
    in it while the call runs, and the result's arrays go there when they fit; ``retire``
    (the last field) is set when an array from the slot outlived the call, and the value
    then travels in the blob. Shared by the process backend's workers and the Ray
    backend's actors on the driver's node.
    """
    arena = None
    if slot is not None:  # awkgen.empty() builds the loader's arrays in this slot
        try:
            arena = transport._arena = transport._Arena(attach(slot.path), slot.capacity)
        except (OSError, ValueError):  # the slot cannot be mapped: encode_value will say so, or pickle
            arena = None
    try:
        fields, blob = _load_and_encode(loader, task, slot, attach, arena)
    finally:  # one place ends the arena, on every path
        transport._arena = None
        if arena is not None:
            arena.close()
    if arena is not None and arena.outlived():  # an array from awkgen.empty lives on: retire the slot
        fields, blob = _out_of_slot(fields, blob, arena)
    return fields, blob


def _load_and_encode(loader: Any, task: Any, slot: transport.SlotRef | None, attach: Callable[[str], Any],
                     arena: transport._Arena | None) -> tuple[tuple[Any, ...], Any]:
    """The reply fields and blob for one task; nothing of the loader's result outlives this call."""
    try:
        value, load_s = call_loader(loader, task)
    except BaseException as exc:
        return _failure(task.seq, exc), b""
    finally:
        transport._arena = None
    try:
        return encode_value(task.seq, value, load_s, slot, attach, arena)
    except Exception as exc:
        unsendable = TypeError(f"the loader's result cannot be sent back from the worker process "
                               f"({type(exc).__name__}: {exc}); return arrays or picklable objects")
        unsendable.__cause__ = exc
        return _failure(task.seq, unsendable, load_s, by_loader=False), b""


def _out_of_slot(fields: tuple[Any, ...], blob: Any, arena: transport._Arena) -> tuple[tuple[Any, ...], Any]:
    """The reply of a batch whose slot is to be retired (``retire``, its last field, set). A
    value's bytes are copied from the slot into the blob: the layout is the same from offset
    0, so the pickled references stay valid."""
    if fields[0] == VALUE and fields[5] in (IN_SLOT, IN_PLACE):
        blob = bytearray(memoryview(arena.buffer)[:fields[3]])
        fields = (*fields[:5], IN_BLOB, *fields[6:])
    return (*fields[:-1], True), blob


def _attach(path: str, attached: collections.OrderedDict[str, Any]) -> Any:
    mm = attached.get(path)
    if mm is None:
        mm = attached[path] = transport.attach_segment(path)
        while len(attached) > _ATTACHED_MAX:
            _close_mapping(attached.popitem(last=False)[1])
    attached.move_to_end(path)
    return mm


def _close_mapping(mm: Any) -> None:
    """Unmap a slot now, or when the last array viewing it goes (one from ``awkgen.empty`` a loader kept)."""
    try:
        mm.close()
    except BufferError:
        pass


def _failure(seq: int, exc: BaseException, load_s: float = 0.0, by_loader: bool = True) -> tuple[Any, ...]:
    """A FAILED reply's fields; *by_loader* is False when the worker, not the loader, failed the batch."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickling_support.install(exc)  # ship the worker-side traceback along with the exception
        blob: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = None
    return (FAILED, seq, load_s, blob, text, by_loader, False)
