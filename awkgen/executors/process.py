"""The ``"process"`` backend: persistent worker processes, driven by the caller.

Data flow::

    generator --submit--> _todo --caller's thread--> worker pipe --> worker: loader(ids)
                                                                        |  arrays -> /dev/shm slot
    generator <--get--- _outcomes <--caller's thread <-- worker pipe <-- reply (tree of ArrayRefs)
                            ^-- manager thread: deaths, timeouts, unready workers

Actors and what each does:

- **caller** (the generator): ``submit`` queues a task and sends it at once to a
  worker with room (quick loaders: a few at a time, see ``submit``); ``get`` reads the
  busy workers' pipes itself, turning replies into outcomes, and waits at most the
  time it was given (no thread hop per batch). Messages are the framed tuples of
  :mod:`._wire`.
- **manager thread** (``_manage``): starts the workers (one per turn, so early ones
  work while later ones start), reads a worker's pipe until it says Ready, hands out
  tasks queued before any worker had room, notices deaths through process sentinels,
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

Workers start through multiprocess's ``forkserver``: a clean server process forks
them, so a parent that already runs TensorFlow, JAX or torch threads is never
forked (fork with live threads can deadlock), while loaders defined as lambdas,
closures or in ``__main__``/notebooks still travel, pickled by value by dill.
Because the loader travels by value, workers do not re-run the parent's main
script (multiprocessing's usual "spawn" preparation): scripts need no
``if __name__ == "__main__":`` guard, and ``python -c``/stdin programs work.
``AWKGEN_START_METHOD=spawn`` (or ``fork``) overrides the method, with that
method's usual rules.
"""

from __future__ import annotations

import atexit
import collections
import io
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

import dill
import multiprocess
import numpy as np
from multiprocess import forkserver, popen_forkserver, spawn, util
from multiprocess.context import ForkServerProcess, reduction, set_spawning_popen

from .. import transport
from ..errors import AwkgenError, LoaderError, LoaderTimeoutError, WorkerDiedError
from ._wire import FAILED, INIT_FAILED, READY, VALUE, Channel, encode_task
from ._worker import worker_main
from .base import Outcome, Task, loader_failure
from .managed import ManagedExecutor

__all__ = ["ProcessExecutor", "describe_exit"]

START_METHOD = os.environ.get("AWKGEN_START_METHOD", "forkserver")
_MANAGER_TICK_S = 0.5  # longest the manager sleeps without re-checking its flags
_PER_WORKER = 2  # least tasks queued at a worker: one running, one waiting in its pipe
_STOP_GRACE_S = 2.0  # time workers get to exit after a stop message, before SIGKILL
_JOIN_S = 2.0
#: Loader calls quicker than this (a running mean) cost less than the messages around them:
#: tasks then go several per write, to a worker that is already awake when one is.
COALESCE_BELOW_S = 0.001
_SIGNAL_HINTS = {
    signal.SIGKILL: "killed: out of memory, or kill -9",
    signal.SIGSEGV: "segmentation fault in the loader or a C extension",
    signal.SIGBUS: "bus error: is /dev/shm full?",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
}


class RemoteLoaderError(Exception):
    """Stands for a loader exception that could not be pickled back; holds its traceback text."""


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


class _MainlessPopen(popen_forkserver.Popen):
    """multiprocess's forkserver launcher, minus re-running the parent's ``__main__``.

    Mirrors ``popen_forkserver.Popen._launch`` (multiprocess 0.70) with one change:
    the preparation data omits ``init_main_from_path``/``init_main_from_name``.
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
        parent_w = os.dup(w)  # the child's sentinel of this parent, as in multiprocess
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WorkerProcess(ForkServerProcess):
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


class ProcessExecutor(ManagedExecutor):
    backend_name = "process"

    def __init__(self, loader: Callable[..., Any], n_workers: int, prefetch: int, timeout: float | None) -> None:
        super().__init__(n_workers, timeout)
        try:
            self._loader_bytes = dill.dumps(loader, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
        except Exception as exc:
            raise TypeError(f"loader must be picklable (by dill) to run in worker processes; pickling "
                            f"{loader!r:.80} failed with {type(exc).__name__}: {exc}. Use backend='thread', "
                            "or build what the loader needs inside it.") from exc
        self._ctx = multiprocess.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            self._ctx.set_forkserver_preload(["awkgen.executors._worker"])
        shm_dir = transport.shm_dir()
        transport.reclaim_orphans(shm_dir)
        self._ring = transport.SlotRing(secrets.token_hex(4), shm_dir)
        self._blas_threads = max(1, (os.cpu_count() or 1) // n_workers)
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._life_r, self._life_w = self._ctx.Pipe(duplex=False)
        # Guards the workers and their queues: the manager and a caller dispatching tasks
        # itself (submit) both change them. Never held across a wait for a worker.
        self._state_lock = threading.RLock()
        self._replied = False  # a first result arrived: the ring knows what size slots to make
        self._load_s = float("inf")  # running mean of loader call times; small means coalesce messages
        self._per_worker = max(_PER_WORKER, -(-prefetch // n_workers))
        self._prefetch = prefetch
        self._selector = selectors.DefaultSelector()  # the manager's: sentinels, wake pipe, unready workers
        # The manager pokes this when it queues an outcome (a death, a timeout) for a waiting caller.
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        os.set_blocking(self._signal_r, False)
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
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return super().get(0.0)  # raises if the manager died
            with self._state_lock:
                if self._todo and self._dispatch() and self._timeout is not None:
                    self._notify()
                busy = {w.channel.fd: w for w in self._workers if w.tasks and not w.conn.closed}
            readable = _readable_fds([*busy, self._signal_r], min(remaining, _MANAGER_TICK_S))
            if self._signal_r in readable:
                try:
                    os.read(self._signal_r, 4096)
                except OSError:  # nothing left, or closed by close()
                    pass
            with self._state_lock:
                for fd in readable:
                    worker = busy.get(fd)
                    if worker is not None and not worker.conn.closed:
                        self._receive(worker, readable=True)
            if not outcomes.empty():
                return outcomes.get_nowait()

    def ready(self) -> int:
        """Outcomes ready for the caller, counting replies still waiting in worker pipes."""
        with self._state_lock:
            for worker in [w for w in self._workers if w.tasks]:
                self._receive(worker)
        return self._outcomes.qsize()

    def _put(self, outcome: Outcome) -> None:
        self._outcomes.put(outcome)
        if threading.current_thread() is self._manager:
            try:
                os.write(self._signal_w, b"\0")
            except (BlockingIOError, OSError):  # full (the caller is behind) or closed (stopping)
                pass

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
            if (self._load_s < COALESCE_BELOW_S and len(self._todo) < self._per_worker
                    and not self._outcomes.empty() and not any(w.tasks for w in self._workers)):
                return
            started = self._dispatch()
        if started and self._timeout is not None:
            self._notify()  # the manager's next wake-up must honour the new deadline

    def close(self) -> None:
        if not self._begin_close():
            return
        self._stopping = True
        self._notify()
        self._join_manager(_JOIN_S)
        with self._state_lock:
            workers, self._workers = self._workers, []
            self._todo.clear()
        for worker in workers:
            try:  # never blocks: a hung worker with a full socket is killed after the grace period
                os.set_blocking(worker.channel.fd, False)
                worker.channel.send(b"")  # the stop message
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in workers:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            self._reap(worker)
        self._life_w.close()
        self._life_r.close()
        for fd in (self._wake_r, self._wake_w, self._signal_r, self._signal_w):
            os.close(fd)
        self._ring.close()

    # -- workers ----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process_class = _WorkerProcess if START_METHOD == "forkserver" else self._ctx.Process
        proc = process_class(
            target=worker_main, name="awkgen-worker", daemon=True,
            args=(child_conn, self._life_r, self._loader_bytes, os.getpid(), self._blas_threads,
                  self._ring.directory))
        try:
            proc.start()
        finally:
            child_conn.close()
        return _Worker(proc, parent_conn, Channel(parent_conn.fileno()))

    def _reap(self, worker: _Worker) -> None:
        """Make sure *worker* is gone and its handles closed."""
        if worker.proc.exitcode is None:
            worker.proc.kill()
            worker.proc.join(_JOIN_S)
        worker.conn.close()
        if worker.proc.exitcode is not None:
            worker.proc.close()

    def _notify(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # full: the manager is awake anyway; closed: stopping
            pass

    # -- the manager thread ---------------------------------------------------------------------
    def _manage(self) -> None:
        selector = self._selector
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                with self._state_lock:
                    starting = self._broken is None and len(self._workers) < self.n_workers
                    if starting:  # one start per turn: replies and dispatch go on meanwhile
                        worker = self._spawn()
                        self._workers.append(worker)
                        # Until it is ready the manager reads its pipe; then the caller does.
                        selector.register(worker.conn.fileno(), selectors.EVENT_READ, worker)
                        selector.register(worker.proc.sentinel, selectors.EVENT_READ, worker)
                    if self._broken is not None:
                        self._fail_todo()
                    self._dispatch()
                    sleep_s = 0.0 if starting else self._sleep_s()
                events = selector.select(sleep_s)  # the manager's only wait, and without the lock
                with self._state_lock:
                    for key, _ in events:
                        if key.data is None:
                            self._drain_wake()
                        elif key.data in self._workers:
                            worker = key.data
                            exited = key.fd == worker.proc.sentinel
                            # READY, or all a dying worker sent last
                            self._receive(worker, readable=not exited, drain=exited)
                            if exited:
                                self._on_death(worker)
                            elif worker.ready and worker in self._workers:
                                self._unwatch_pipe(worker)
                    self._expire()
        finally:
            selector.close()

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
        workers = [w for w in self._workers if w.ready and not w.timed_out]
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
            try:
                worker.channel.send_many(batch)
            except (OSError, ValueError):
                pass  # the worker is dead; its sentinel fires and _on_death accounts for its tasks
        return started

    def _assign(self, worker: _Worker) -> bytes | None:
        """Give *worker* the next queued task and a slot; return the message to send it."""
        try:
            task = self._todo.popleft()
        except IndexError:  # cancelled meanwhile
            return None
        slot = self._ring.acquire()
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
        if self._timeout is None:
            return _MANAGER_TICK_S
        now = time.monotonic()
        deadlines = [w.started + self._timeout - now for w in self._workers if w.tasks and not w.timed_out]
        return max(0.005, min([_MANAGER_TICK_S, *deadlines]))

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _receive(self, worker: _Worker, readable: bool = False, drain: bool = False) -> None:
        """Take the messages *worker* has sent: one read, skipped unless *readable* or its
        socket has data; with *drain*, every read until nothing is left (a dead worker's
        last words). EOF means it died: then account for it. Under ``_state_lock``."""
        fd = worker.channel.fd
        try:
            if not (readable or _readable(fd)):
                return
            while worker in self._workers:
                for head, blob in worker.channel.receive():
                    self._on_reply(worker, pickle.loads(head), blob)
                if not (drain and _readable(fd)):
                    return
        except (EOFError, OSError):
            self._on_death(worker)

    def _on_reply(self, worker: _Worker, message: tuple[Any, ...], blob: memoryview) -> None:
        kind = message[0]
        if kind == VALUE:
            _, seq, load_s, nbytes, tree, in_slot = message
        elif kind == READY:
            worker.ready = True
            return
        elif kind == INIT_FAILED:
            self._broken = message[1]
            self._fail_todo()
            return
        else:
            seq, load_s = message[1], message[2]
        self._replied = True
        task, slot = worker.tasks.popleft()
        worker.started = time.monotonic()  # the next queued task starts now
        if seq != task.seq:  # cannot happen: a worker answers in order
            raise AwkgenError(f"worker process {worker.proc.pid} answered batch {seq}, expected {task.seq}")
        if kind == FAILED:
            self._ring.release(slot)
            self._put(_failure(seq, message[3], message[4], message[5], load_s))
            return
        self._load_s = load_s if self._load_s == float("inf") else 0.8 * self._load_s + 0.2 * load_s
        if nbytes >= transport.MIN_SHM_BYTES:
            self._ring.need(nbytes)
        if in_slot and slot is not None:
            value = transport.rebuild(tree, self._ring.lease(slot))
        else:
            if slot is not None:
                self._ring.release(slot)
            value = transport.rebuild(tree, np.frombuffer(blob, dtype=np.uint8)) if nbytes else tree
        self._put(Outcome(seq, value, None, "", None, load_s))

    def _fail_todo(self) -> None:
        """Once workers cannot load the loader, fail every queued task rather than wait forever."""
        while self._todo:
            try:
                task = self._todo.popleft()
            except IndexError:
                return
            why = _last_line(self._broken or "")
            self._put(Outcome(task.seq, error_type=LoaderError, cause=RemoteLoaderError(self._broken or ""),
                                       detail=f"worker processes could not load the loader: {why}"))

    def _on_death(self, worker: _Worker) -> None:
        """Fail the task *worker* was running, requeue the ones it had not started; the
        manager starts a replacement on its next turn. Idempotent; under ``_state_lock``."""
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        self._unwatch_pipe(worker)
        try:
            self._selector.unregister(worker.proc.sentinel)
        except (KeyError, ValueError, OSError):
            pass
        worker.proc.join(_JOIN_S)
        pid, code = worker.proc.pid, worker.proc.exitcode
        self._reap(worker)
        self._notify()  # wake the manager to start the replacement
        if worker.tasks:
            (task, slot), waiting = worker.tasks[0], list(worker.tasks)[1:]
            self._ring.release(slot)
            if worker.timed_out:
                outcome = Outcome(task.seq, error_type=LoaderTimeoutError,
                                  detail=f"loader call exceeded timeout={self._timeout:g} s; worker process "
                                         f"{pid} was killed and replaced", load_s=self._timeout or 0.0)
            else:
                outcome = Outcome(task.seq, error_type=WorkerDiedError,
                                  detail=describe_exit(pid, code) + "; it has been replaced")
            self._put(outcome)
            for queued, queued_slot in reversed(waiting):  # never started: someone else runs them
                self._ring.release(queued_slot)
                self._todo.appendleft(queued)


    def _expire(self) -> None:
        if self._timeout is None:
            return
        for worker in list(self._workers):
            if worker.tasks and not worker.timed_out:
                self._receive(worker)  # replies the caller has not collected yet restart the clock
        now = time.monotonic()
        for worker in self._workers:
            if worker.tasks and not worker.timed_out and now - worker.started > self._timeout:
                worker.timed_out = True
                worker.proc.kill()  # its sentinel fires next; _on_death reports the timeout


def _failure(seq: int, error: bytes | None, error_text: str, by_loader: bool, load_s: float) -> Outcome:
    """The outcome for a batch a worker failed: the loader's own exception when it pickles
    both ways (tblib carries its traceback), else its traceback as text. When the worker
    failed it (*by_loader* false: a result it cannot send, ids it cannot rebuild), the
    message is the worker's, not "loader raised ..."."""
    exc: BaseException | None = None
    if error is not None:
        try:
            loaded = pickle.loads(error)
        except Exception:
            loaded = None
        exc = loaded if isinstance(loaded, BaseException) else None
    if exc is not None and by_loader:
        return loader_failure(seq, exc, load_s)
    if exc is not None:
        detail = str(exc)
    else:
        detail = f"loader raised {_last_line(error_text)}" if by_loader else _last_line(error_text)
    return Outcome(seq, error_type=LoaderError, detail=detail,
                   cause=exc if exc is not None else RemoteLoaderError(error_text), load_s=load_s)


def _last_line(traceback_text: str) -> str:
    """The ``Type: message`` line that ends a formatted traceback."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "an exception"


def _outstanding(worker: _Worker) -> int:
    return len(worker.tasks)


def _readable_fds(fds: list[int], timeout_s: float) -> set[int]:
    """Those of *fds* with data or EOF waiting, within *timeout_s*. ``poll``, not ``select``:
    a training process may well hold file descriptors past select's limit of 1024. A closed
    fd counts as ready (POLLNVAL); callers map fds back to live workers."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(timeout_s * 1000)}


def _readable(fd: int) -> bool:
    """Whether *fd* has data (or EOF) waiting, without the selector multiprocess builds per poll."""
    return bool(_readable_fds([fd], 0.0))
