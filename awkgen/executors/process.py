"""The ``"process"`` backend: persistent worker processes, driven by the caller.

Data flow::

    generator --submit--> _todo --caller's thread--> worker pipe --> worker: loader(ids)
                                                                        |  arrays -> /dev/shm slot
    generator <--get--- _outcomes <--caller's thread <-- worker pipe <-- reply (tree of ArrayRefs)
                            ^-- manager thread: deaths, timeouts, unready workers

Actors and what each does:

- **caller** (the generator): ``submit`` queues a task and sends it at once to a
  worker with room (quick loaders: a few at a time, see ``submit``); ``get`` reads the
  busy workers' pipes itself (for quick loaders first without a ``poll``: replies are then
  usually there already, and their tasks go to few workers), turning replies into outcomes,
  and waits at most the
  time it was given (no thread hop per batch). Messages are the framed tuples of
  :mod:`._wire`.
- **manager thread** (``_manage``): starts the workers (one per turn, so early ones
  work while later ones start), reads a worker's pipe until it says Ready, hands out
  tasks queued before any worker had room (and then wakes a caller waiting in ``get``,
  whose wait does not watch that worker yet), notices deaths through process sentinels,
  and kills workers whose call outlived ``timeout``, pulling in replies the caller has
  not read yet before it judges. Outcomes it adds (deaths, timeouts) wake a waiting
  caller through ``_signal_r``. Every task yields exactly one outcome: a value, a
  ``LoaderError``, a ``WorkerDiedError`` or a ``LoaderTimeoutError``; a dead worker's
  unstarted tasks go back to the queue and the worker is replaced.
- **shared state** (the workers, their task queues, ``_todo``) changes only under
  ``_state_lock``, which is never held across a wait for a worker.
- **workers** (``_worker.worker_main``): one task at a time, each reply sent before
  the next call starts; they exit on a stop message, on EOF, or when the lifeline pipe
  says the parent is gone.

Rules (each one closes a way the pool could hang):

- **Lock order**: ``BatchGenerator._lock -> _state_lock -> SlotRing._lock``. ``_state_lock``
  (an ``RLock``) is never held across a wait for a worker: only ``poll`` waits, outside it.
- **Who blocks on which pipe**: the parent never blocks on a worker's socket. Its ends
  are non-blocking: reads happen after ``poll`` said readable, and what a send cannot
  write now waits in the channel and is flushed when ``poll`` says writable (by the
  caller in ``get``, by the manager each turn). A worker blocks on its own socket, both
  ways; the parent reading whenever it waits is what unblocks it. So a worker stuck
  writing a reply while the parent writes it more tasks cannot deadlock them.
- **Finalizers and GC callbacks** take no lock and wait for nothing: a batch's lease
  only queues its slot (``SlotRing``), a dropped generator only calls
  ``request_close`` (a flag and a byte on the wake pipe); the manager thread then
  closes the pool. ``close()`` called from a signal handler that interrupted a call
  holding ``_state_lock`` does the same.
- **A task leaves ``_todo`` only after the step that can fail** (making its slot):
  a slot that cannot be made means the batch travels pickled, never a lost batch.
- **Every death is accounted for once** (``_on_death``, idempotent): the running task
  fails, the queued ones go back to ``_todo``. Workers that die before they say Ready
  ``_START_FAILURES`` times in a row, or that cannot be started at all, break the pool
  with :class:`~awkgen.WorkerStartError` instead of respawning forever.
- **Handshake**: a worker's first message (``READY`` or ``INIT_FAILED``) names the awkgen it
  runs (:mod:`._identity`); one that runs other code than the parent, or does not say,
  breaks the pool with a :class:`~awkgen.WorkerStartError` naming both. Workers of an
  awkgen too old to say die before Ready and are counted as above; either way a
  bootstrap failure ends in one typed error within seconds, never a respawn loop.
- **A worker whose messages cannot be trusted** (not a frame, a reply out of order)
  is killed, and its batch fails with :class:`~awkgen.WorkerDiedError` saying so.
- **fork** (what a forked child may touch): a pool belongs to the process that made
  it. In a forked child (``os.fork``, a PyTorch ``DataLoader`` or ``multiprocessing``
  fork worker, a pre-fork server) the parent's pools are inert: calls raise, ``close()``
  touches nothing of the parent's, and an at-fork hook drops the child's copies of
  the parent's lifelines and lock files (so the parent's death still shows) and of the
  parent's forkserver (multiprocess's singleton: its pid is not the child's child, so
  every start there failed with ``ChildProcessError``). The child's own pools start a
  forkserver of their own and work as anywhere; they end with the child (its workers
  see the lifeline break and remove its segments), closed or not.
- **A broken pool** (workers cannot start) with no batch in flight releases its
  segments and lock file at once: a program that gives up and ``os._exit``s leaves
  nothing in ``/dev/shm``.

Workers start through multiprocess's ``forkserver``: a clean server process forks
them, so a parent that already runs TensorFlow, JAX or torch threads is never
forked (fork with live threads can deadlock), while loaders defined as lambdas,
closures or in ``__main__``/notebooks still travel, pickled by value by dill.
The server preloads everything a worker needs but the loader (:mod:`._preload`: the
worker's code, this module, whose class a worker's process object names, and the
native thread pools), so a worker's start is a fork and unpickling the loader (which
imports the loader's own module): about 10 ms of CPU, where importing this module in
every worker took as much again. The manager asks the server for one worker per turn
without waiting for any to be ready, so the workers' starts overlap. The server itself
is a new interpreter importing awkgen and numpy: it starts with a process's first pool
(a few tenths of a second, in the manager thread, while the constructor returns) and
serves every later pool.
Because the loader travels by value, workers do not re-run the parent's main
script (multiprocessing's usual "spawn" preparation): scripts need no
``if __name__ == "__main__":`` guard, and ``python -c``/stdin programs work.
``AWKGEN_START_METHOD=spawn`` (or ``fork``) overrides the method, with that
method's usual rules.
"""

from __future__ import annotations

import atexit
import collections
import errno
import io
import logging
import os
import pickle
import secrets
import select
import selectors
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiprocess
import numpy as np
from multiprocess import forkserver, popen_forkserver, resource_tracker, spawn, util
from multiprocess.context import ForkServerProcess, reduction, set_spawning_popen

from .. import procfs, transport
from ..errors import AwkgenError, LoaderError, LoaderTimeoutError, WorkerDiedError, WorkerStartError
from . import _travel
from ._identity import IDENTITY, Identity, mismatch
from ._wire import (
    FAILED,
    IN_PLACE,
    IN_SLOT,
    INIT_FAILED,
    READY,
    ROUTES,
    VALUE,
    Channel,
    MalformedFrame,
    RemoteLoaderError,
    encode_task,
    failed_reply,
    last_line,
)
from ._worker import _hold_no_servers, worker_main
from .base import Outcome, Task, held_here, usable_cpus
from .managed import ManagedExecutor

__all__ = ["ProcessExecutor", "describe_exit"]

START_METHOD = os.environ.get("AWKGEN_START_METHOD", "forkserver")
logger: logging.Logger = logging.getLogger("awkgen")
_MANAGER_TICK_S = 0.5  # longest the manager sleeps without re-checking its flags
_FLUSH_TICK_S = 0.01  # ...or this, while tasks wait in a channel for a full socket to drain
_START_FAILURES = 3  # workers dying before Ready, in a row, before the pool gives up
#: A worker gets this long to say Ready (start, import, unpickle the loader): one stuck there
#: (a loader whose unpickling waits forever) breaks the pool instead of leaving calls waiting.
START_TIMEOUT_S = 120.0
_PER_WORKER = 2  # least tasks queued at a worker: one running, one waiting in its pipe
_STOP_GRACE_S = 2.0  # time workers get to exit after a stop message, before SIGKILL
_JOIN_S = 2.0
#: Loader calls quicker than this (a running mean) cost less than the messages around them:
#: tasks then go several per write, to a worker that is already awake when one is.
COALESCE_BELOW_S = 0.001
_FORKSERVER_REMEDY = ("Their forkserver, a new interpreter, imported its own copy: PYTHONPATH or the working "
                      "directory puts another awkgen tree first there, or awkgen's files changed after this "
                      "program imported them. Make both find the same awkgen, or restart the program")
_SIGNAL_HINTS = {
    signal.SIGKILL: "killed: out of memory, or kill -9",
    signal.SIGSEGV: "segmentation fault in the loader or a C extension",
    signal.SIGBUS: "bus error: is /dev/shm full?",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
}


def describe_exit(pid: int, exitcode: int | None) -> str:
    """Say how worker *pid* ended, for a :class:`~awkgen.WorkerDiedError`.

    >>> describe_exit(42, -9)
    'worker process 42 died from signal SIGKILL (killed: out of memory, or kill -9)'
    >>> describe_exit(42, 3)
    'worker process 42 died with exit code 3 (sys.exit or os._exit in the loader?)'
    """
    if exitcode is None:
        return f"worker process {pid} stopped answering"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"worker process {pid} died from signal {-exitcode}"
        hint = _SIGNAL_HINTS.get(sig)
        return f"worker process {pid} died from signal {sig.name}" + (f" ({hint})" if hint else "")
    return f"worker process {pid} died with exit code {exitcode} (sys.exit or os._exit in the loader?)"


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any  # owns the socket; ``channel`` frames messages over its descriptor
    channel: Channel
    ready: bool = False  # the worker said Ready: it has the loader and takes tasks
    # Tasks sent and not yet answered, oldest (the one running) first, each with its slot.
    # Up to prefetch / n_workers deep (at least 2), the whole prefetch window for quick loaders
    # (see ProcessExecutor._dispatch): a worker goes from one batch to the next without waiting.
    tasks: collections.deque[tuple[Task, transport.SlotRef | None]] = field(default_factory=collections.deque)
    started: float = 0.0  # when the oldest task began: its dispatch, or the previous reply
    timed_out: bool = False
    condemned: str = ""  # why the parent killed it (a malformed message), for its batch's error
    spawned: float = field(default_factory=time.monotonic)
    orphaned: bool = False  # its forkserver died: its sentinel and exit code say nothing any more


class _MainlessPopen(popen_forkserver.Popen):  # type: ignore[misc]  # multiprocess has no type hints
    """multiprocess's forkserver launcher, minus re-running the parent's ``__main__``.

    Mirrors ``popen_forkserver.Popen._launch`` (multiprocess 0.70) with one change:
    the preparation data omits ``init_main_from_path``/``init_main_from_name``. A copy,
    because multiprocess offers no switch for it and patching ``spawn`` would change
    every other user's processes; tests/test_pool.py fails when a multiprocess release
    changes the rest of the method, so the copy cannot drift unnoticed.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = {key: value for key, value in spawn.get_preparation_data(process_obj._name).items()
                     if key not in ("init_main_from_path", "init_main_from_name")}
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # the child's sentinel of this parent, as in multiprocess
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WorkerProcess(ForkServerProcess):  # type: ignore[misc]  # multiprocess has no type hints
    """A worker's process: multiprocess's, started without re-running ``__main__`` and also
    from a daemonic process (a worker of a ``multiprocess`` Pool).

    multiprocess refuses children to daemonic processes, which are terminated, not joined,
    when their parent exits: their children would be orphans. awkgen's workers need no
    parent to end them (they watch the lifeline and remove the pool's segments when it
    breaks), so ``start`` mirrors ``BaseProcess.start`` (multiprocess 0.70) without that
    one assertion; tests/test_pool.py fails when a release changes the rest of it.
    """

    def start(self) -> None:
        self._check_closed()
        assert self._popen is None, 'cannot start a process twice'  # type: ignore[has-type]
        assert self._parent_pid == os.getpid(), \
               'can only start a process object created by current process'
        multiprocess.process._cleanup()
        self._popen = self._Popen(self)
        self._sentinel = self._popen.sentinel  # type: ignore[attr-defined]
        # Avoid a refcycle if the target function holds an indirect
        # reference to the process object (see bpo-30775)
        del self._target, self._args, self._kwargs
        multiprocess.process._children.add(self)

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocess's name
        return _MainlessPopen(process_obj)


_live_pools: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    """Stop every pool still open at interpreter exit.

    Registered after multiprocess (imported above) registers its own exit hook, so it
    runs first: workers are stopped by their pool, never terminated by multiprocess
    while a manager thread is still reaping them.
    """
    for pool in list(_live_pools):
        pool.close()


def _own_servers_in_child() -> None:
    """After ``os.fork()``, in the child: forget the forkserver the parent started.

    multiprocess keeps one forkserver per process (its pid, socket address and "alive"
    descriptor in a module singleton). A forked child inherits that singleton, but the
    server is the parent's child, not its own: multiprocess's next start in the child
    asks ``waitpid`` about it and fails with ``ChildProcessError`` (every pool in a
    PyTorch ``DataLoader`` fork worker failed that way), and the child's copy of the
    alive descriptor would keep the parent's server running after the parent is gone.
    So the child closes that copy and clears the singleton: its first pool starts a
    server of its own. A server's own children (awkgen's workers) have no pid recorded
    (multiprocess sets only the address there) and are left as they are.

    The locks of the forkserver and resource tracker singletons are made anew: a
    parent thread that held one at the fork (a manager starting a worker) does not
    exist in the child, and would hold it forever. The resource tracker itself may be
    shared with the parent (multiprocess checks that it lives before using it).
    """
    server, tracker = forkserver._forkserver, resource_tracker._resource_tracker
    for owner in (server, tracker):  # the same kind of lock: the tracker's is reentrant
        owner._lock = threading.RLock() if hasattr(owner._lock, "_is_owned") else threading.Lock()
    if server._forkserver_pid is None:  # none started here (or a forkserver's own child)
        return
    if server._forkserver_alive_fd is not None:
        try:
            os.close(server._forkserver_alive_fd)
        except OSError:  # closed already: nothing of the parent's server is held
            pass
    server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None


def _forget_pools_in_child() -> None:
    """After ``os.fork()``, in the child: own nothing of the parent's pools.

    The child's copy of a pool's lifeline would keep the parent's workers alive after
    the parent dies, its copies of the forkserver's and resource tracker's descriptors
    would keep those servers alive: they are closed here (a child that starts pools of its
    own gets servers of its own). The workers leave multiprocess's list of the
    child's children, whose exit hook would terminate them (and read their exit codes
    off the parent's sentinels). The pools stay in the child's memory, marked as
    another process's (``close()`` there touches nothing).
    """
    _own_servers_in_child()
    children: set[Any] = getattr(multiprocess.process, "_children", set())
    if _live_pools:  # nor the forkserver and resource tracker awkgen started: they serve the parent
        _hold_no_servers()
    for pool in list(_live_pools):
        try:
            pool._life_w.close()
        except OSError:  # already closed: nothing of the parent's is held
            pass
        for worker in pool._workers:  # else multiprocess's exit hook in the child SIGTERMs them
            children.discard(worker.proc)
        pool._ring.forget_in_child()
    _live_pools.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


class ProcessExecutor(ManagedExecutor):
    backend_name = "process"

    def __init__(self, loader: Callable[..., Any], n_workers: int, prefetch: int, timeout: float | None) -> None:
        super().__init__(n_workers, timeout)
        self._pid = os.getpid()
        try:
            self._loader_bytes = _travel.dill_dumps(loader)
        except Exception as exc:
            raise _travel.unpicklable(loader, exc, "worker processes") from exc
        self._paths = _travel.user_paths()  # where the parent finds its own modules, for the workers
        self._ctx = multiprocess.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            self._ctx.set_forkserver_preload(["awkgen.executors._preload"])  # what every worker needs, once
        shm_dir = transport.shm_dir()
        transport.reclaim_orphans(shm_dir)
        self._ring = transport.SlotRing(secrets.token_hex(4), shm_dir)
        self._blas_threads = max(1, usable_cpus() // n_workers)
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._life_r, self._life_w = self._ctx.Pipe(duplex=False)
        # Guards the workers and their queues: the manager and a caller dispatching tasks
        # itself (submit) both change them. Never held across a wait for a worker.
        self._state_lock = threading.RLock()
        self._replied = False  # a first result arrived: the ring knows what size slots to make
        self._load_s = float("inf")  # running mean of loader call times; small means coalesce messages
        self._warned_kept = False  # warned once that the loader keeps arrays from awkgen.empty
        self._routes: collections.Counter[str] = collections.Counter()  # how results travelled (tests read it)
        self._per_worker = max(_PER_WORKER, -(-prefetch // n_workers))
        self._prefetch = prefetch
        self._selector = selectors.DefaultSelector()  # the manager's: sentinels, wake pipe, unready workers
        # The manager pokes this when it queues an outcome (a death, a timeout) for a waiting caller.
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        os.set_blocking(self._signal_r, False)
        self._start_failures = 0  # workers that died before Ready since one was last ready
        self._broken_as: tuple[type[AwkgenError], BaseException | None] = (LoaderError, None)
        self._forkserver_restarted = False
        self._close_done = threading.Event()
        self._closer: int | None = None  # the thread doing the closing
        _live_pools.add(self)
        self._start()

    def _start(self) -> None:
        """Start only the manager: it starts the workers one by one and hands each a task as
        soon as it is ready, so the first batch need not wait for the last worker's start."""
        self._manager = threading.Thread(target=self._run_manager, name="awkgen-process-manager", daemon=True)
        self._manager.start()

    def get(self, timeout: float) -> Outcome | None:
        """The next outcome: the caller reads the busy workers' pipes itself (no thread hop);
        the manager only adds the outcomes of deaths and timeouts, and pokes ``_signal_r``."""
        outcomes = self._outcomes
        if not outcomes.empty():  # the common case when workers keep ahead
            return outcomes.get_nowait()
        if self._load_s < COALESCE_BELOW_S:  # quick loaders: replies are likely already there
            with self._state_lock:  # one read of each busy worker (quick loaders' tasks go to few), no poll
                if not self._stopping:
                    for busy in [w for w in self._workers if w.tasks and not w.conn.closed]:
                        self._receive(busy, readable=True)
            if not outcomes.empty():
                return outcomes.get_nowait()
        deadline = time.monotonic() + timeout
        while True:
            self._check_manager()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping:
                return None if outcomes.empty() else outcomes.get_nowait()
            with self._state_lock:
                if self._todo and self._dispatch() and self._timeout is not None:
                    self._notify()
                live = [w for w in self._workers if not w.conn.closed]
                reading = {w.channel.fd: w for w in live if w.tasks}
                writing = {w.channel.fd: w for w in live if w.channel.pending}
            readable, writable = _poll([*reading, self._signal_r], list(writing), min(remaining, _MANAGER_TICK_S))
            if self._signal_r in readable:
                try:
                    os.read(self._signal_r, 4096)
                except OSError:  # nothing left, or closed by close()
                    pass
            with self._state_lock:
                if self._stopping:  # close() may be closing these descriptors
                    continue
                for fd in writable:
                    if writing[fd] in self._workers:
                        self._flush(writing[fd])
                for fd in readable:
                    worker = reading.get(fd)
                    if worker is not None and worker in self._workers:
                        self._receive(worker, readable=True)
            if not outcomes.empty():
                return outcomes.get_nowait()

    def _check_manager(self) -> None:
        """Raise at once if the manager thread died (it must never die silently)."""
        if self._manager_error is not None and not self._closed:
            raise AwkgenError(f"the process backend's manager thread stopped unexpectedly "
                              f"({type(self._manager_error).__name__}: {self._manager_error}); close this "
                              "generator and build a new one") from self._manager_error

    def ready(self) -> int:
        """Outcomes ready for the caller, counting replies still waiting in worker pipes."""
        if self._stopping or not self._state_lock.acquire(blocking=False):  # stats() never waits
            return self._outcomes.qsize()
        try:
            for worker in [w for w in self._workers if w.tasks]:
                self._receive(worker)
        finally:
            self._state_lock.release()
        return self._outcomes.qsize()

    def _put(self, outcome: Outcome) -> None:
        self._outcomes.put(outcome)
        if threading.current_thread() is self._manager:
            self._wake_caller()

    def submit(self, task: Task) -> None:
        """Queue *task* and, when a worker has room, send it from the caller's thread: no
        round trip through the manager for the common case.

        When loader calls are quicker than a message's round trip (``COALESCE_BELOW_S``)
        and every worker is idle, a task is held while the caller has a batch in hand,
        until ``_per_worker`` tasks are queued: one write and one wake-up then carry them
        all. ``get`` sends whatever is held before it waits, so holding never starves
        the caller.
        """
        with self._state_lock:
            self._todo.append(task)
            if self._broken is not None:
                self._fail_todo()
                return
            if (self._load_s < COALESCE_BELOW_S and len(self._todo) < self._per_worker
                    and not self._outcomes.empty() and not any(w.tasks for w in self._workers)):
                return
            started = self._dispatch()
        if started and self._timeout is not None:
            self._notify()  # the manager's next wake-up must honour the new deadline

    def request_close(self) -> None:
        """Finalizer-safe close: a flag and a byte on the wake pipe (``os.write`` takes no
        lock); the manager wakes at once and closes the pool."""
        self._stopping = True
        self._notify()

    def close(self) -> None:
        """Stop the workers and free everything; returns once done (bounded by the stop grace).

        From a signal handler that interrupted this very pool (its ``_state_lock`` held by
        this thread), it only requests the close: the manager does it, and the interrupted
        call sees ``_stopping`` and returns.
        """
        if os.getpid() != self._pid:  # a forked child: the workers and segments are the parent's
            return
        if held_here(self._state_lock):
            self.request_close()
            return
        if not self._begin_close():
            if self._closer != threading.get_ident():
                self._close_done.wait(_JOIN_S + _STOP_GRACE_S + 2 * _JOIN_S)
            return
        self._closer = threading.get_ident()
        try:
            self._shut_down()
        finally:
            self._close_done.set()
            logger.debug("awkgen: process pool stopped (%d workers)", self.n_workers)

    def _shut_down(self) -> None:
        self._stopping = True
        # Names first: whoever kills this process's whole group in the next instant (a notebook
        # server stopping its kernel) kills the workers too, and nobody would be left to do it.
        self._ring.close()
        self._notify()
        self._join_manager(_JOIN_S)
        with self._state_lock:
            workers, self._workers = self._workers, []
            self._todo.clear()
            for worker in workers:
                try:  # never blocks: a hung worker with a full socket is killed after the grace period
                    worker.channel.send(b"")  # the stop message
                    worker.channel.flush()
                except (OSError, ValueError):  # already dead: the join and SIGKILL below cover it
                    pass
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in workers:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            self._end_process(worker, grace_s=max(0.0, deadline - time.monotonic()))
        with self._state_lock:  # a caller between poll and read checks conn.closed under this lock
            for worker in workers:
                self._close_handles(worker)
        self._life_w.close()
        self._life_r.close()
        for fd in (self._wake_r, self._wake_w, self._signal_r, self._signal_w):
            os.close(fd)
        self._drop_outcomes()
        _live_pools.discard(self)

    # -- workers ----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process_class = _WorkerProcess if START_METHOD == "forkserver" else self._ctx.Process
        proc = process_class(
            target=worker_main, name="awkgen-worker", daemon=True,
            args=(child_conn, self._life_r, {
                "loader": self._loader_bytes, "parent_pid": os.getpid(), "blas_threads": self._blas_threads,
                "shm_dir": self._ring.directory, "paths": self._paths, "identity": tuple(IDENTITY)}))
        try:
            proc.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()
        logger.debug("awkgen: started worker process %d", proc.pid)
        return _Worker(proc, parent_conn, Channel(parent_conn.fileno(), blocking=False))

    def _wake_caller(self) -> None:
        """From the manager: wake a caller waiting in ``get`` to look again. For an outcome the
        manager queued (a death, a timeout), and for a worker that just said Ready and got a
        task, which that wait does not watch (it began before): otherwise, while workers start,
        each runs its first task and then idles until the caller's wait times out."""
        try:
            os.write(self._signal_w, b"\0")
        except (BlockingIOError, OSError):  # full (the caller is behind) or closed (stopping)
            pass

    def _start_worker(self) -> None:
        """The manager's turn to start one worker; a start that fails breaks the pool
        with a clear error instead of leaving it short of workers without a word.

        Called without ``_state_lock``: a start can take a second (the forkserver's own start,
        a loaded machine), and callers and ``stats()`` must not wait for it meanwhile."""
        try:
            worker = self._spawn()
        except Exception as exc:
            with self._state_lock:
                self._start_failed(exc)
            return
        with self._state_lock:
            if self._stopping:  # close() began meanwhile and took the worker list without this one
                self._end_process(worker)
                self._close_handles(worker)
                return
            self._workers.append(worker)
        # Until it is ready the manager reads its pipe; then the caller does.
        self._selector.register(worker.conn.fileno(), selectors.EVENT_READ, worker)
        self._selector.register(worker.proc.sentinel, selectors.EVENT_READ, worker)

    def _start_failed(self, exc: Exception) -> None:
        """Under ``_state_lock``: a worker could not be started."""
        if START_METHOD == "forkserver" and not self._forkserver_restarted and isinstance(
                exc, (FileNotFoundError, ConnectionRefusedError)):
            self._forkserver_restarted = True  # its socket was removed (a /tmp cleaner): start a new one
            logger.warning("awkgen: the forkserver could not be reached (%s); starting a new one", exc)
            _forget_forkserver()
            return
        hint = ""
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            hint = (" This process has reached its limit of open files (ulimit -n): each worker needs "
                    "a few descriptors. Raise the limit or use fewer workers.")
        elif isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.ENOMEM):
            hint = " The system refused a new process (process limit or memory). Use fewer workers."
        self._break(WorkerStartError, f"could not start worker process {len(self._workers) + 1} of "
                    f"{self.n_workers} ({type(exc).__name__}: {exc}).{hint}", exc)

    def _end_process(self, worker: _Worker, grace_s: float = 0.0) -> None:
        """Make sure *worker*'s process is gone (SIGKILL if it has not exited within *grace_s*)."""
        if worker.orphaned:  # no sentinel to wait on: watch the pid itself
            deadline = time.monotonic() + grace_s
            while procfs.pid_alive(worker.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if procfs.pid_alive(worker.proc.pid):
                os.kill(worker.proc.pid, signal.SIGKILL)
        elif worker.proc.exitcode is None:
            worker.proc.kill()
            worker.proc.join(_JOIN_S)

    def _close_handles(self, worker: _Worker) -> None:
        worker.conn.close()
        if worker.proc.exitcode is not None:
            worker.proc.close()

    def _notify(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # full: the manager is awake anyway; closed: stopping
            pass

    def _flush(self, worker: _Worker) -> None:
        try:
            worker.channel.flush()
        except OSError:  # the worker is dead: its sentinel fires and _on_death accounts for its tasks
            pass

    # -- the manager thread ---------------------------------------------------------------------
    def _manage(self) -> None:
        selector = self._selector
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                starting = self._broken is None and len(self._workers) < self.n_workers
                if starting:  # one start per turn, outside the lock: replies and dispatch go on meanwhile
                    self._start_worker()
                with self._state_lock:
                    if self._broken is not None:
                        self._fail_todo()
                        self._release_ring_if_idle()
                    if self._dispatch():  # a worker just ready got work (see _wake_caller)
                        self._wake_caller()
                    for worker in self._workers:
                        if worker.channel.pending:
                            self._flush(worker)
                    sleep_s = 0.0 if starting else self._sleep_s()
                events = selector.select(sleep_s)  # the manager's only wait, and without the lock
                with self._state_lock:
                    if self._stopping:
                        break
                    for key, _ in events:
                        if key.data is None:
                            self._drain_wake()
                        elif key.data in self._workers:
                            worker = key.data
                            exited = key.fd == worker.proc.sentinel
                            if exited and procfs.pid_alive(worker.proc.pid):
                                self._lost_sentinel(worker)
                                continue
                            # READY, or all a dying worker sent last
                            self._receive(worker, readable=not exited, drain=exited)
                            if exited:
                                self._on_death(worker)
                            elif worker.ready and worker in self._workers:
                                self._unwatch_pipe(worker)
                    self._expire()
        finally:
            selector.close()

    def _lost_sentinel(self, worker: _Worker) -> None:
        """*worker*'s sentinel ended while it lives: the forkserver that reports its exit died
        (a kernel or job runner stopping its own children). The worker is fine; its death, if
        it comes, shows as end-of-file on its socket instead."""
        logger.debug("awkgen: the forkserver of worker process %d is gone; the worker goes on", worker.proc.pid)
        worker.orphaned = True
        try:
            self._selector.unregister(worker.proc.sentinel)
        except (KeyError, ValueError, OSError):  # not watched
            pass

    def _unwatch_pipe(self, worker: _Worker) -> None:
        try:
            self._selector.unregister(worker.conn.fileno())
        except (KeyError, ValueError, OSError):  # not watched, or already closed
            pass

    def _dispatch(self) -> bool:
        """Hand out queued tasks, each worker's share in one write.

        Breadth first (every worker's first slot before anyone's second, at most
        ``_per_worker`` each) for loaders slow enough to run in parallel. When calls are
        quicker than messages (``COALESCE_BELOW_S``), the busiest worker first, up to the
        whole prefetch window: it keeps streaming instead of being woken per task, one
        write carries several tasks, and the other workers stay spare.

        Returns whether an idle worker got a task (its timeout clock started).
        """
        started = False
        heads: dict[_Worker, list[tuple[bytes, bytes]]] = {}
        # Until a first result says how large batches are, no slot can be sized: one task
        # per worker, so at most n_workers batches travel pickled.
        depth = self._per_worker if self._replied else 1
        workers = [w for w in self._workers if w.ready and not w.timed_out and not w.condemned]
        if self._replied and self._load_s < COALESCE_BELOW_S:
            depth = self._prefetch
            workers.sort(key=_outstanding, reverse=True)
            order = [w for w in workers for _ in range(depth - len(w.tasks))]
        else:
            order = [w for _ in range(depth) for w in workers]
        for worker in order:
            if not self._todo:
                break
            if len(worker.tasks) < depth:
                head = self._assign(worker)
                if head is not None:
                    started = started or len(worker.tasks) == 1
                    heads.setdefault(worker, []).append((head, b""))
        for worker, batch in heads.items():
            try:  # never blocks: what the socket cannot take now waits in the channel
                worker.channel.send_many(batch)
            except (OSError, ValueError):
                pass  # the worker is dead; its sentinel fires and _on_death accounts for its tasks
        return started

    def _assign(self, worker: _Worker) -> bytes | None:
        """Give *worker* the next queued task and a slot; return the message to send it.

        The slot is made before the task leaves ``_todo``; if it cannot be made, the task
        goes without one (its result travels pickled), so no error here loses a batch.
        """
        try:
            slot = self._ring.acquire()
        except Exception as exc:  # EMFILE, a planted name, -W error turning the shm warning into one...
            logger.warning("awkgen: could not make a shared-memory slot (%s: %s); this batch travels pickled",
                           type(exc).__name__, exc)
            slot = None
        try:
            task = self._todo.popleft()
        except IndexError:  # cancelled meanwhile
            self._ring.release(slot)
            return None
        try:
            head = encode_task(task.seq, task.ids, task.rng_entropy, slot)
        except Exception as exc:  # ids that cannot be pickled
            self._ring.release(slot)
            self._put(Outcome(task.seq, error_type=LoaderError, cause=exc,
                              detail=f"the batch's ids cannot be sent to a worker process ({exc})"))
            return None
        if not worker.tasks:
            worker.started = time.monotonic()
        worker.tasks.append((task, slot))
        return head

    def _sleep_s(self) -> float:
        longest = _FLUSH_TICK_S if any(w.channel.pending for w in self._workers) else _MANAGER_TICK_S
        if self._timeout is None:
            return longest
        now = time.monotonic()
        deadlines = [w.started + self._timeout - now for w in self._workers if w.tasks and not w.timed_out]
        return max(0.005, min([longest, *deadlines]))

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:  # another wake-up took the bytes: nothing to do
            pass

    def _receive(self, worker: _Worker, readable: bool = False, drain: bool = False) -> None:
        """Take the messages *worker* has sent: one read, skipped unless *readable* or its
        socket has data; with *drain*, every read until nothing is left (a dead worker's
        last words). EOF means it died: then account for it; a message that cannot be
        trusted gets it killed. Under ``_state_lock``."""
        fd = worker.channel.fd
        try:
            if worker.condemned or not (readable or _readable(fd)):
                return
            while worker in self._workers:
                for head, blob in worker.channel.receive():
                    self._on_reply(worker, head, blob)
                if worker.channel.broken:  # the frames before the bad bytes were delivered above
                    raise MalformedFrame(worker.channel.broken)
                if not (drain and _readable(fd)):
                    return
        except (EOFError, OSError):
            self._on_death(worker)
        except Exception as exc:  # not a frame, a head that does not unpickle, a reply out of order
            self._condemn(worker, f"{type(exc).__name__}: {exc}")

    def _condemn(self, worker: _Worker, why: str) -> None:
        """Kill *worker*, whose messages cannot be trusted; its batch fails saying why."""
        if worker.condemned or worker not in self._workers:
            return
        worker.condemned = why
        logger.warning("awkgen: worker process %d sent a malformed message (%s); killing and replacing it",
                       worker.proc.pid, why)
        worker.proc.kill()
        self._on_death(worker)

    def _on_reply(self, worker: _Worker, head: Any, blob: memoryview) -> None:
        if self._stopping:  # the ring is closed: nobody will collect it
            return
        message = pickle.loads(head)
        kind = message[0]
        if kind in (READY, INIT_FAILED):
            # The handshake: a worker says which awkgen it runs, whatever it says next.
            at = 1 if kind == READY else 2
            theirs = Identity.of(message[at] if len(message) > at else None)
            if not IDENTITY.same_code(theirs):
                self._break(WorkerStartError, mismatch("worker processes", theirs, _FORKSERVER_REMEDY), None)
                worker.proc.kill()  # its sentinel fires next; _on_death cleans up
                return
        if kind == READY:
            worker.ready = True
            self._start_failures = 0
            logger.debug("awkgen: worker process %d is ready", worker.proc.pid)
            return
        if kind == INIT_FAILED:
            self._break(LoaderError, f"worker processes could not load the loader: {last_line(message[1])}",
                        RemoteLoaderError(message[1]))
            return
        if kind not in (VALUE, FAILED):
            raise MalformedFrame(f"a message of unknown kind {kind!r}")
        seq, load_s = message[1], message[2]
        if not worker.tasks or seq != worker.tasks[0][0].seq:  # a worker answers its tasks in order
            raise MalformedFrame(f"an answer for batch {seq}, expected "
                                 f"{worker.tasks[0][0].seq if worker.tasks else 'none'}")
        self._replied = True
        task, slot = worker.tasks.popleft()
        worker.started = time.monotonic()  # the next queued task starts now
        if message[-1]:  # retire: an array the loader got from awkgen.empty outlived the call
            self._routes["retired"] += 1
            self._retire(slot)
            slot = None  # gone from the ring: nothing to release
        if kind == FAILED:
            self._ring.release(slot)
            self._put(failed_reply(seq, message[3], message[4], message[5], load_s, worker.proc.pid))
            return
        _, seq, load_s, nbytes, data, in_slot, wanted, _ = message
        self._routes[ROUTES[in_slot] if nbytes else "pickled"] += 1
        self._load_s = load_s if self._load_s == float("inf") else 0.8 * self._load_s + 0.2 * load_s
        if wanted >= transport.MIN_SHM_BYTES:
            self._ring.need(wanted)
        try:
            if in_slot in (IN_SLOT, IN_PLACE) and slot is not None:
                value = transport.load_result(data, self._ring.lease(slot))
            else:
                self._ring.release(slot)
                value = transport.load_result(data, np.frombuffer(blob, dtype=np.uint8) if nbytes else None)
        except Exception as exc:  # e.g. a class this process cannot import: the batch fails, the stream goes on
            self._put(Outcome(seq, error_type=LoaderError, cause=exc, load_s=load_s, pid=worker.proc.pid,
                              detail=f"the result from worker process {worker.proc.pid} cannot be rebuilt in "
                                     f"this process ({type(exc).__name__}: {exc})"))
            return
        self._put(Outcome(seq, value, None, "", None, load_s))

    def _retire(self, slot: transport.SlotRef | None) -> None:
        """Never reuse *slot* (an array of the loader's still views it in the worker). Under ``_state_lock``."""
        if slot is None:
            return
        if not self._warned_kept:
            self._warned_kept = True
            logger.warning("awkgen: the loader kept an array it got from awkgen.empty after returning (a cache, "
                           "or a thread of its own): its batch was copied out of shared memory and the slot "
                           "retired, so the batch is intact, but each such batch costs a copy. Keep a copy "
                           "(np.array(a)) instead of the array itself.")
        self._ring.retire(slot)

    def _break(self, error_type: type[AwkgenError], why: str, cause: BaseException | None) -> None:
        """The pool cannot go on: fail every queued and future task with *why*. Under ``_state_lock``."""
        if self._broken is None:
            logger.warning("awkgen: %s", why)
        self._broken = why
        self._broken_as = (error_type, cause)
        self._release_ring_if_idle()  # before any caller hears of it: it may then exit at once
        self._fail_todo()

    def _release_ring_if_idle(self) -> None:
        """Once broken, with no batch in flight, no slot is used again: the segments and lock
        file go now, not at ``close()``, which a program that gave up (``os._exit``, a DataLoader
        worker's end) never calls. Under ``_state_lock``."""
        if not any(w.tasks for w in self._workers):
            self._ring.close()

    def _fail_todo(self) -> None:
        """Once workers cannot start or load the loader, fail every queued task rather than wait forever."""
        error_type, cause = self._broken_as
        while self._todo:
            try:
                task = self._todo.popleft()
            except IndexError:
                return
            self._put(Outcome(task.seq, error_type=error_type, cause=cause, detail=self._broken or ""))

    def _on_death(self, worker: _Worker) -> None:
        """Fail the task *worker* was running, requeue the ones it had not started; the
        manager starts a replacement on its next turn. Idempotent; under ``_state_lock``."""
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        self._unwatch_pipe(worker)
        try:
            self._selector.unregister(worker.proc.sentinel)
        except (KeyError, ValueError, OSError):  # not watched (never started, or already unwatched)
            pass
        worker.proc.join(_JOIN_S)
        pid, code = worker.proc.pid, None if worker.orphaned else worker.proc.exitcode
        self._end_process(worker)
        self._close_handles(worker)
        self._notify()  # wake the manager to start the replacement
        logger.debug("awkgen: %s", describe_exit(pid, code))
        if not worker.ready and not self._stopping and self._broken is None:
            self._start_failures += 1
            if self._start_failures >= _START_FAILURES:
                self._break(WorkerStartError, f"worker processes died before they were ready, {self._start_failures} "
                            f"in a row (the last: {describe_exit(pid, code)}). Unpickling the loader kills the "
                            f"worker (a C extension that crashes on import, a __reduce__ that exits), the "
                            f"'{START_METHOD}' start method cannot start workers from this program, or the "
                            f"workers import another awkgen than this process's {IDENTITY} (PYTHONPATH or the "
                            "working directory putting another awkgen tree first)", None)
        if worker.tasks:
            (task, slot), waiting = worker.tasks[0], list(worker.tasks)[1:]
            self._ring.release(slot)
            if worker.timed_out:
                outcome = Outcome(task.seq, error_type=LoaderTimeoutError,
                                  detail=f"loader call exceeded timeout={self._timeout:g} s; worker process "
                                         f"{pid} was killed and replaced", load_s=self._timeout or 0.0,
                                  pid=pid, exitcode=code)
            elif worker.condemned:
                outcome = Outcome(task.seq, error_type=WorkerDiedError, pid=pid, exitcode=code,
                                  detail=f"worker process {pid} sent a malformed message ({worker.condemned}: "
                                         "did the loader or a library write to its socket?); it was killed "
                                         "and replaced")
            else:
                outcome = Outcome(task.seq, error_type=WorkerDiedError, pid=pid, exitcode=code,
                                  detail=describe_exit(pid, code) + "; it has been replaced")
            self._put(outcome)
            for queued, queued_slot in reversed(waiting):  # never started: someone else runs them
                self._ring.release(queued_slot)
                self._todo.appendleft(queued)

    def _expire(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if not worker.ready and now - worker.spawned > START_TIMEOUT_S and self._broken is None:
                self._break(WorkerStartError, f"worker process {worker.proc.pid} was not ready within "
                            f"{START_TIMEOUT_S:g} s of its start: unpickling the loader (or importing what "
                            "it needs) does not finish", None)
                worker.proc.kill()  # its sentinel fires next; _on_death cleans up
        if self._timeout is None:
            return
        for worker in list(self._workers):
            if worker.tasks and not worker.timed_out:
                # Replies the caller has not collected yet restart the clock: read them all. A reply
                # half read means the call is over and the worker is writing (perhaps blocked on a
                # socket the caller, busy training, left full): the loader is not late.
                self._receive(worker, drain=True)
                if worker.channel.receiving:
                    worker.started = time.monotonic()
        now = time.monotonic()
        for worker in self._workers:
            if worker.tasks and not worker.timed_out and now - worker.started > self._timeout:
                worker.timed_out = True
                logger.debug("awkgen: worker process %d exceeded timeout=%g s; killing it",
                             worker.proc.pid, self._timeout)
                worker.proc.kill()  # its sentinel fires next; _on_death reports the timeout


def _forget_forkserver() -> None:
    """Make multiprocess start a fresh forkserver on the next start (its socket was removed).

    The old server is not stopped (its live children would keep it waiting); it exits
    once they are gone. multiprocess has no public call for this.
    """
    server = forkserver._forkserver
    with server._lock:
        if server._forkserver_alive_fd is not None:
            os.close(server._forkserver_alive_fd)
        server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None


def _outstanding(worker: _Worker) -> int:
    return len(worker.tasks)


_WRITE_READY = select.POLLOUT | select.POLLERR | select.POLLHUP | select.POLLNVAL


def _poll(read_fds: list[int], write_fds: list[int], timeout_s: float) -> tuple[set[int], set[int]]:
    """Those of *read_fds* with data or EOF waiting and those of *write_fds* that can take
    bytes, within *timeout_s*. ``poll``, not ``select``: a training process may well hold
    file descriptors past select's limit of 1024. A closed or broken fd counts as ready
    (the read or write that follows reports it); callers map fds back to live workers."""
    poller = select.poll()
    for fd in read_fds:
        poller.register(fd, select.POLLIN)
    for fd in write_fds:
        if fd in read_fds:
            poller.modify(fd, select.POLLIN | select.POLLOUT)
        else:
            poller.register(fd, select.POLLOUT)
    readable, writable = set(), set()
    for fd, events in poller.poll(timeout_s * 1000):
        if events & _WRITE_READY and fd in write_fds:
            writable.add(fd)
        if events & ~select.POLLOUT:
            readable.add(fd)
    return readable, writable


def _readable(fd: int) -> bool:
    """Whether *fd* has data (or EOF) waiting, without the selector multiprocess builds per poll."""
    return bool(_poll([fd], [], 0.0)[0])
