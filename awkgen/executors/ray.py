"""The ``"ray"`` backend: loader calls on Ray actors, arrays through Ray's object store.

Data flow::

    generator --submit--> _todo --manager--> actor.load.remote(task) --> actor: loader(ids)
                                                                              | result -> object store
    generator <--get--- _outcomes <--manager <-- ray.wait / ray.get <-- ObjectRef of the result

What runs where:

- **the caller's process** (the Ray *driver*) plans and orders the batches: the
  generator above this executor is the same for every backend, so the batch
  sequence is too. Labels never leave it.
- **manager thread** (``_manage``): the only code that talks to the actors. It gives
  each idle actor one task, waits on the results with ``ray.wait``, turns each into an
  :class:`~awkgen.executors.base.Outcome`, and kills (``ray.kill``) and replaces an
  actor whose call outlived ``timeout``. Every task it took yields exactly one
  outcome: a value, a ``LoaderError``, a ``WorkerDiedError`` or a
  ``LoaderTimeoutError``.
- **actors** (:class:`_LoaderActor`, ``n_workers`` of them, placed with Ray's
  ``SPREAD`` strategy): each unpickles the loader once and runs one call at a time,
  so per-worker state (open files, caches) is reused. A result goes back as the
  actor call's return value, through Ray's object store, encoded as on the process
  backend (:mod:`awkgen.transport`): read-only arrays stay zero-copy views of the
  store, writable ones are copied out of it once, so each arrives as the loader built it.

One call per actor at a time, and at most ``prefetch`` tasks submitted by the
generator: what is in flight on the cluster and waiting in ``_todo`` stays bounded.

Which cluster: the one this process is already connected to (``ray.init`` called
first), else the one named by ``address=`` or the ``RAY_ADDRESS`` variable, else the
latest one started on this machine with ``ray start``, else a new local one. A
cluster awkgen starts is left running for the life of the process, as Ray does for
any ``ray.init``: Ray's own exit hook stops it; call ``ray.shutdown()`` to stop it
earlier. awkgen never shuts down a cluster, only its own actors.

The actors belong to this process (Ray "fate-shares" them with their owner): if it
dies, even by ``SIGKILL``, or exits without a stop, Ray kills them.

Faults (each a typed error for its batch, within seconds; nothing else lost): an actor
that dies, also while its result is being sent, fails its call with ``RayActorError``
(``WorkerDiedError``, the actor replaced); a result larger than the object store is
stored outside it by Ray and arrives intact; Ray failing to deliver one is a
``LoaderError`` for that batch. The handshake: an actor answers the pid call made at
its creation with the awkgen it runs (:mod:`._identity`), and the manager reads that
answer before any result of the actor; an actor of other code (Ray's workers import
awkgen from their own ``sys.path``) breaks the pool with a ``WorkerStartError`` naming
both, instead of results whose classes differ. Every node needs awkgen, numpy and the
installed packages the loader imports (or ``ray.init(runtime_env=...)`` to ship them);
the user's own modules travel by value with the loader (:mod:`._travel`).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import transport
from ..errors import AwkgenError, LoaderError, LoaderTimeoutError, WorkerDiedError, WorkerStartError
from . import _travel
from ._identity import IDENTITY, Identity, mismatch
from .base import Outcome, Task, call_loader, loader_failure
from .managed import ManagedExecutor

__all__ = ["RayExecutor"]

_INSTALL_HINT = 'the "ray" backend needs Ray: pip install "awkgen[ray]"'
_IDLE_TICK_S = 0.5  # longest the manager sleeps with nothing in flight
_BUSY_TICK_S = 0.02  # longest one ray.wait lasts with calls in flight (new tasks wait at most this)
_JOIN_S = 2.0
#: An actor gets this long to start (be scheduled, import, unpickle the loader) before its
#: task fails with WorkerDiedError; ``timeout`` counts only from when it is up.
_ACTOR_START_S = 120.0
_PID_WAIT_S = 1.0  # how long a failed call's report waits for its actor's pid (already computed)
_REASON_CHARS = 300  # how much of Ray's explanation a WorkerDiedError quotes
_DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} (import ray failed: {exc})") from exc
    return ray


# -- what runs in an actor -------------------------------------------------------------------

@dataclass(frozen=True)
class Loaded:
    """Actor to driver: a task's result, the loader's run time and the actor's pid.

    The result travels as :func:`awkgen.transport.encode_result` pickled it (``data``), its
    arrays as flat byte buffers (``buffers``) that Ray moves through the object store
    without pickling: the driver gets the loader's result with every type, layout, write
    flag and shared reference it had, as on the process backend.
    """

    data: bytes
    buffers: list[Any]
    load_s: float
    pid: int


@dataclass(frozen=True)
class Interrupted:
    """Actor to driver: the loader raised ``SystemExit`` or ``KeyboardInterrupt``, which Ray
    would take for the actor's own exit; they mean on Ray what they mean everywhere."""

    exc: BaseException
    load_s: float
    pid: int


@dataclass(frozen=True)
class Broken:
    """Actor to driver, instead of any result: the loader could not be unpickled there."""

    error_text: str


class _LoaderActor:
    """Runs the loader in a Ray worker process; wrapped by ``ray.remote`` when first used.

    A loader exception propagates (Ray wraps it in a ``RayTaskError``); tblib is
    installed on it first, so its ``__traceback__`` survives the trip to the driver.
    """

    def __init__(self, payload: tuple[bytes, list[str]]) -> None:
        self._loader: Callable[..., Any] | None = None
        self._broken = ""
        try:
            from ray import cloudpickle

            loader_bytes, paths = payload
            _travel.add_paths(paths)  # the driver's own code, where this node has it (a local cluster)
            self._loader = cloudpickle.loads(loader_bytes)
            _travel.adopt_classes(self._loader)
        except BaseException:
            self._broken = traceback.format_exc()

    def pid(self) -> tuple[int, tuple[str, ...]]:
        """The actor's pid and which awkgen it runs (the handshake, see :mod:`._identity`)."""
        return os.getpid(), tuple(IDENTITY)

    def load(self, task: Task) -> Loaded | Interrupted | Broken:
        if self._loader is None:
            return Broken(self._broken)
        start = time.perf_counter()
        try:
            value, load_s = call_loader(self._loader, task)
        except (SystemExit, KeyboardInterrupt) as exc:
            return Interrupted(exc, time.perf_counter() - start, os.getpid())
        except BaseException as exc:
            try:
                from tblib import pickling_support

                pickling_support.install(exc)
            except Exception:  # the text still travels in Ray's error
                pass
            raise
        data, layout = transport.encode_result(value, separate=True)
        return Loaded(data, transport.separate_buffers(layout), load_s, os.getpid())


# -- the driver's side -------------------------------------------------------------------------

@dataclass(eq=False)
class _Worker:
    actor: Any
    pid_ref: Any  # ObjectRef of the actor's pid and awkgen, asked for when it was created; ready once it is up
    spawned: float
    up: bool = False  # the actor answered (or failed) its pid call: it was scheduled and started
    checked: bool = False  # its answer was read: its pid is known and its awkgen was compared with ours
    pid: int | None = None
    task: Task | None = None
    ref: Any = None  # ObjectRef of the running call
    started: float = 0.0

    def describe(self) -> str:
        return f"Ray actor {_actor_id(self.actor)} (pid {self.pid if self.pid is not None else 'unknown'})"


class RayExecutor(ManagedExecutor):
    """Run the loader on *n_workers* Ray actors; see the module docstring.

    *address* names the cluster to connect to when this process is not connected
    yet (default: ``RAY_ADDRESS``, else a running local cluster, else a new local
    one). *actor_options* update the options of every actor (Ray's
    ``.options(...)``, e.g. ``{"num_cpus": 1}`` to reserve a CPU for each, or a
    ``scheduling_strategy``); the defaults are no restarts and ``"SPREAD"``.
    """

    def __init__(self, loader: Callable[..., Any], n_workers: int, prefetch: int, timeout: float | None,
                 address: str | None = None, actor_options: Mapping[str, Any] | None = None) -> None:
        ray = _import_ray()
        from ray import cloudpickle

        try:
            loader_bytes = _travel.cloudpickle_dumps(cloudpickle, loader)  # the user's code by value
        except Exception as exc:
            raise _travel.unpicklable(loader, exc, "Ray actors") from exc
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be None or a Ray address string; received: {address!r}")
        if actor_options is not None and not isinstance(actor_options, Mapping):
            raise TypeError(f"actor_options must be None or a dict of Ray actor options; "
                            f"received: {actor_options!r:.100}")
        _connect(ray, address)
        super().__init__(n_workers, timeout)
        self._ray = ray
        self._prefetch = prefetch
        self._actor_class = ray.remote(_LoaderActor).options(**{**_DEFAULT_ACTOR_OPTIONS, **(actor_options or {})})
        self._loader_ref = ray.put((loader_bytes, _travel.user_paths()))
        self._wake = threading.Event()
        self._spawn_lock = threading.Lock()  # no actor is spawned once close() has begun
        self._workers: list[_Worker] = []
        self._graveyard: list[Any] = []  # refs of killed actors' calls: awaited so Ray logs no "unhandled error"
        self._broken_as: type[AwkgenError] = LoaderError  # what tasks fail with once _broken is set
        self._start()

    # -- the caller's side ---------------------------------------------------------------
    def submit(self, task: Task) -> None:
        if len(self._todo) >= self._prefetch:  # the generator keeps at most prefetch undelivered
            raise AwkgenError(f"more than prefetch={self._prefetch} tasks queued for the Ray backend; "
                              "this is a bug in awkgen, please report it")
        super().submit(task)

    def _notify(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop the manager and kill every actor. Idempotent, thread-safe, finalizer-safe.

        Only the actors are killed: the Ray cluster (and the connection to it) stays.
        """
        if not self._begin_close():
            return
        with self._spawn_lock:
            self._stopping = True
        self._notify()
        self._join_manager(_JOIN_S)
        with self._spawn_lock:
            workers, self._workers = self._workers, []
        self._todo.clear()
        self._drop_outcomes()
        self._graveyard.clear()
        try:
            if not self._ray.is_initialized():  # ray.shutdown() came first: the actors went with it
                return
            for worker in workers:
                self._kill(worker)
        except Exception:  # interpreter exit: Ray may be half torn down; its own exit hook cleans up
            pass

    # -- actors ---------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        actor = self._actor_class.remote(self._loader_ref)
        return _Worker(actor, actor.pid.remote(), time.monotonic())

    def _kill(self, worker: _Worker) -> None:
        try:
            self._ray.kill(worker.actor, no_restart=True)
        except Exception:  # already dead
            pass

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        with self._spawn_lock:
            if worker in self._workers:
                self._workers.remove(worker)
            if not self._stopping:
                self._workers.append(self._spawn())

    # -- the manager thread -------------------------------------------------------------------
    def _manage(self) -> None:
        while not self._stopping:
            self._dispatch()
            refs = [w.ref for w in self._workers if w.ref is not None]
            if not refs and not self._graveyard:
                self._wake.wait(_IDLE_TICK_S)
                self._wake.clear()
                continue
            done, _ = self._ray.wait(refs + self._graveyard, num_returns=1, timeout=self._sleep_s())
            for ref in done:
                if ref in self._graveyard:
                    self._graveyard.remove(ref)
                    _swallow(self._ray, ref)
            for worker in list(self._workers):
                if worker.ref is not None and worker.ref in done:
                    self._collect(worker)
            self._expire()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.task is not None or not self._todo:
                continue
            try:
                task = self._todo.popleft()
            except IndexError:  # cancelled meanwhile
                return
            if self._broken is not None:
                self._outcomes.put(Outcome(task.seq, error_type=self._broken_as, detail=self._broken))
                continue
            worker.task, worker.started = task, time.monotonic()
            worker.ref = worker.actor.load.remote(task)

    def _sleep_s(self) -> float:
        if self._timeout is None:
            return _BUSY_TICK_S
        now = time.monotonic()
        deadlines = [w.started + self._timeout - now for w in self._workers if w.task is not None and w.up]
        return max(0.001, min([_BUSY_TICK_S, *deadlines]))

    def _collect(self, worker: _Worker) -> None:
        """*worker*'s call finished: turn its result or error into the task's outcome."""
        ray = self._ray
        task, ref = worker.task, worker.ref
        assert task is not None
        worker.task, worker.ref = None, None
        self._resolve_pid(worker, wait_s=_PID_WAIT_S)  # answered before this call: its awkgen is known
        if self._broken_as is WorkerStartError:  # it runs another awkgen: what it sent cannot be read
            _swallow(ray, ref)
            self._outcomes.put(Outcome(task.seq, error_type=WorkerStartError, detail=self._broken or ""))
            return
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the loader raised (or its result would not pickle)
            self._resolve_pid(worker, wait_s=_PID_WAIT_S)  # the actor answered its pid call before this one
            self._outcomes.put(_loader_failure(task.seq, exc, worker))
            return
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError) as exc:
            self._resolve_pid(worker, wait_s=_PID_WAIT_S)
            if getattr(exc, "actor_init_failed", False):  # a replacement would fail the same way
                self._broken = (f"Ray actors could not start ({worker.describe()}): is awkgen installed on "
                                f"every node, or shipped with ray.init(runtime_env=...)?\n{exc}")
                self._outcomes.put(Outcome(task.seq, error_type=LoaderError, detail=self._broken))
                return
            self._outcomes.put(Outcome(task.seq, error_type=WorkerDiedError, pid=worker.pid,
                                       detail=f"{worker.describe()} died: {_reason(exc)}; it has been replaced"))
            self._replace(worker)
            return
        except Exception as exc:  # Ray could not deliver the result (object lost, store full, ...)
            self._outcomes.put(Outcome(task.seq, error_type=LoaderError, cause=exc,
                                       detail=f"Ray could not deliver the result from {worker.describe()}: "
                                              f"{type(exc).__name__}: {_first_line(exc)}"))
            return
        if isinstance(result, Broken):
            self._broken = f"Ray actors could not load the loader:\n{result.error_text}"
            self._outcomes.put(Outcome(task.seq, error_type=LoaderError, detail=self._broken))
            return
        worker.pid = result.pid
        if isinstance(result, Interrupted):
            self._outcomes.put(loader_failure(task.seq, result.exc, result.load_s, result.pid))
            return
        try:
            value = transport.load_result(result.data, result.buffers)
        except Exception as exc:  # a class the driver cannot import, ...
            self._outcomes.put(Outcome(task.seq, error_type=LoaderError, cause=exc,
                                       detail=f"the result from {worker.describe()} cannot be rebuilt in this "
                                              f"process: {type(exc).__name__}: {_first_line(exc)}"))
            return
        self._outcomes.put(Outcome(task.seq, value=value, load_s=result.load_s, pid=result.pid))

    def _resolve_pid(self, worker: _Worker, wait_s: float = 0.0) -> None:
        """Learn *worker*'s pid and check that it runs this process's awkgen (else break the
        pool: every task fails with a WorkerStartError naming both)."""
        if worker.checked:
            return
        try:
            said = self._ray.get(worker.pid_ref, timeout=wait_s)
        except Exception:  # died before it could say, or not up yet
            return
        worker.checked = True
        pid, theirs = (said[0], Identity.of(said[1])) if isinstance(said, tuple) and len(said) == 2 else (said, None)
        worker.pid = pid if isinstance(pid, int) else -1
        if not IDENTITY.same_code(theirs) and self._broken_as is not WorkerStartError:
            self._broken_as = WorkerStartError
            self._broken = mismatch(f"Ray actors (the first: {worker.describe()})", theirs,
                                    "Ray's worker processes import awkgen themselves, from their own sys.path: "
                                    "install the same awkgen on every node (an editable checkout used through "
                                    "PYTHONPATH or sys.path in the driver is not seen there), or ship it with "
                                    "ray.init(runtime_env={'py_modules': [awkgen]})")

    def _expire(self) -> None:
        """Fail calls past ``timeout`` (counted from when their actor was up) or whose actor never started."""
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.up and self._ray.wait([worker.pid_ref], timeout=0)[0]:
                worker.up = True
                self._resolve_pid(worker)
                worker.started = now  # the clock starts when the actor can run the call
            if worker.task is None:
                continue
            if not worker.up:
                if now - worker.spawned > _ACTOR_START_S:
                    self._fail_running(worker, WorkerDiedError,
                                       f"{worker.describe()} did not start within {_ACTOR_START_S:g} s (does "
                                       "the cluster have room for it? see actor_options); it has been replaced")
            elif self._timeout is not None and now - worker.started > self._timeout:
                self._fail_running(worker, LoaderTimeoutError,
                                   f"loader call exceeded timeout={self._timeout:g} s; {worker.describe()} "
                                   "was killed and replaced")

    def _fail_running(self, worker: _Worker, error_type: type[AwkgenError], detail: str) -> None:
        assert worker.task is not None
        self._outcomes.put(Outcome(worker.task.seq, error_type=error_type, detail=detail, pid=worker.pid,
                                   load_s=time.monotonic() - worker.started))
        self._graveyard.append(worker.ref)
        worker.task, worker.ref = None, None
        self._replace(worker)


def _connect(ray: Any, address: str | None) -> None:
    """Make sure this process is connected to a Ray cluster (see the module docstring)."""
    if not ray.is_initialized():
        ray.init(address=address)
        return
    if address is None or address == "auto":
        return
    current = ray.get_runtime_context().gcs_address
    if address.removeprefix("ray://") != current:
        raise ValueError(f"address must name the Ray cluster this process is already connected to "
                         f"({current}), or be left out; received: address={address!r}. "
                         "A process talks to one Ray cluster: call ray.shutdown() first to switch.")


def _actor_id(actor: Any) -> str:
    try:
        return str(actor._actor_id.hex())
    except Exception:  # a private attribute of Ray's handle: never let a message depend on it
        return "(id unknown)"


def _loader_failure(seq: int, exc: Any, worker: _Worker) -> Outcome:
    """A ``RayTaskError`` as a ``LoaderError`` outcome: unwrap to the loader's own exception."""
    cause = getattr(exc, "cause", None)
    if not isinstance(cause, BaseException):
        cause = exc
    worker_tb = str(exc)
    if cause.__traceback__ is None and worker_tb:  # tblib could not carry it: attach the text
        _add_note(cause, f"worker-side traceback (Ray actor, pid {getattr(exc, 'pid', None)}):\n{worker_tb}")
    pid = getattr(exc, "pid", None) or worker.pid
    return Outcome(seq, error_type=LoaderError, cause=cause, pid=pid,
                   detail=f"loader raised {type(cause).__name__}: {cause} (in Ray actor "
                          f"{_actor_id(worker.actor)}, pid {pid})")


class _RemoteTraceback(Exception):
    """A traceback that exists only as text; printed as the cause of the exception it explains."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10, which has no exception notes.

    There the note is kept in ``__notes__`` (where 3.11 keeps it) and, when *exc* has no
    cause yet, also made its ``__cause__``, so that a printed traceback shows it, as
    ``concurrent.futures`` shows a worker's traceback. Never raises.
    """
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:  # Python 3.11+
        add_note(note)
        return
    try:
        setattr(exc, "__notes__", [*getattr(exc, "__notes__", ()), note])  # noqa: B010 - 3.10 has no such slot
    except (AttributeError, TypeError):  # an exception type that refuses new attributes
        pass
    if exc.__cause__ is None:
        exc.__cause__ = _RemoteTraceback(note)


def _reason(exc: BaseException) -> str:
    """Ray's explanation of an actor's death, shortened: what killed it, not the advice after."""
    text = getattr(exc, "error_msg", None) or str(exc)
    marker = "The actor is dead because"
    if marker in text:
        text = text[text.index(marker):]
    text = " ".join(text.split())
    for cut in (" Some common causes include", " To troubleshoot"):
        if cut in text:
            text = text[:text.index(cut)]
    return text[:_REASON_CHARS] + ("..." if len(text) > _REASON_CHARS else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _swallow(ray: Any, ref: Any) -> None:
    try:
        ray.get(ref, timeout=0)
    except Exception:  # a killed actor's call: its error is what we expect, and already reported
        pass
