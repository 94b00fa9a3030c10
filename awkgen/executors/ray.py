"""The ``"ray"`` backend: loader calls on Ray actors; arrays through shared memory or Ray's object store.

Data flow::

    generator --submit--> _todo --> actor.load.remote(task, slot)  (or load_many: several tasks)
                                          | actor: loader(ids), arrays -> the slot (driver's node)
                                          |                      or -> object store (other nodes)
    generator <--get---- ray.wait / ray.get on the caller's thread (or the manager's, see below)

What runs where:

- **the caller's process** (the Ray *driver*) plans and orders the batches: the
  generator above this executor is the same for every backend, so the batch
  sequence is too. Labels never leave it.
- **the caller's thread**: ``submit`` hands a task to an actor with room at once (no hop
  through the manager, which may be inside a ``ray.wait``); ``get``, while no outcome is
  ready, waits on the actors' results itself and collects them. Each actor keeps its next
  call queued behind its running one (Ray runs an actor's calls in order, so the actor
  starts its next batch without a round trip to the driver). Calls go only to actors that
  are *up* (answered their info call): a task waits in ``_todo`` for the first free actor
  rather than behind one still starting.
- **manager thread** (``_manage``): collects results while the caller is away from ``get``
  (training; the copies out of the store then overlap its work), notices actors that come
  up or die, dispatches tasks given back, and kills (``ray.kill``) and replaces an actor
  whose call outlived ``timeout``. ``_lock`` guards the call queues between the two
  threads; a result is rebuilt (:func:`awkgen.transport.load_result`) outside it. Every
  task taken yields exactly one outcome: a value, a ``LoaderError``, a ``WorkerDiedError``,
  a ``LoaderTimeoutError`` or a ``WorkerStartError``.
- **actors** (:class:`_LoaderActor`, ``n_workers`` of them, all created at once): each
  unpickles the loader once and runs one call at a time, so per-worker state (open
  files, caches) is reused. Like a worker process, an actor keeps the memory its loader
  frees (:func:`._worker._keep_freed_memory`: the next batch reuses the last one's pages
  instead of faulting in fresh ones; its RSS stays at its high-water mark). A result goes
  back by one of two routes, encoded as on the
  process backend (:mod:`awkgen.transport`), so each arrives as the loader built it:

  - *slots*, for an actor on the driver's own node (the node id its info call reports is
    the driver's): each task goes with a slot of the executor's :class:`~awkgen.transport.SlotRing`,
    and the actor runs it as a worker process does (:func:`._worker.load_in_slot`:
    ``awkgen.empty`` carves from the slot, the result's arrays are written into it) and
    returns only the reply's head (:class:`Replied`); the driver leases the slot to the
    batch (:func:`awkgen.transport.load_result`) and gets it back when the batch's arrays
    are gone. The ring is made when the first result of such an actor needs a slot (its
    size sizes the slots, as on the process backend; calls sent before go through the
    store) and closed by :meth:`RayExecutor.close` (and at interpreter exit).
  - *the object store*, for every other call: read-only arrays stay zero-copy views of the
    store, writable ones are copied out of it once.

  Slot rules: a slot is given back only by a reply (a value or a loader failure; *retired*
  instead if an ``awkgen.empty`` array outlived the call). A call that ends any other way
  (the actor died, was killed for ``timeout``, its reply was lost, or it was queued behind
  such a call) gets its slots retired: unlinked and never handed out again, since a killed
  actor's process may linger and still write them (``ray.kill`` does not wait for it).
  An actor that cannot map a slot (another machine's ``/dev/shm`` after all) sends that
  result through the store and gets no more slots. ``_lock -> SlotRing._lock`` is the lock
  order; leases end in finalizers, which take no lock.

Quick loaders (a running mean under :data:`COALESCE_BELOW_S`, about Ray's own cost per
call): the tasks waiting go in one call (``load_many``), and a task waits for a second one
(:data:`_COALESCE_LEAST`) to go with it while other calls are in flight. A crash, a
timeout or an unpicklable result in such a call sends its tasks back, each to run again
alone, where a failure is that batch's own.

Placement: each actor goes to the alive node, of those that can host one, that has the
fewest of this executor's actors (Ray's soft node affinity: should that node be gone
when Ray places the actor, any node will do), so actors spread over the cluster
whatever the head node holds; a ``scheduling_strategy`` in ``actor_options`` replaces
this. *Can host* compares the actor's needs (``num_cpus``, 1 by default, as Ray places
actors; ``num_gpus``, ``memory``, ``resources``) with each node's totals.

Faults: an actor that dies fails the call it was running (``WorkerDiedError``, naming
its node when the node died with it); the calls queued behind it never started and go
to other actors. Ray can lose a finished call's reply when the next call kills the
process at once (a segfault), so when an actor dies with a call queued, for a reason
other than its node's death, both calls run again, each alone on an idle actor, where
a death is that batch's own. Nodes an actor died with are never used again. A call
that finished on a node lost before its result was fetched (the result's only copy went
with the node) runs again first, on another actor, once (lost twice, it is a
``WorkerDiedError``); its actor is replaced. An actor whose node died before it started
(its info call failed so, on the node awkgen placed it on) is replaced before any call
goes to it. When no
alive node can host an actor, every task fails at once with ``WorkerStartError``, and
the executor looks again every second: actors start as soon as a node can host one.

At most ``prefetch`` tasks are submitted by the generator: what is in flight on the
cluster and waiting in ``_todo`` stays bounded.

Which cluster: the one this process is already connected to (``ray.init`` called
first), else the one named by ``address=`` or the ``RAY_ADDRESS`` variable, else the
latest one started on this machine with ``ray start``, else a new local one. A
cluster awkgen starts is left running for the life of the process, as Ray does for
any ``ray.init``: Ray's own exit hook stops it; call ``ray.shutdown()`` to stop it
earlier. awkgen never shuts down a cluster, only its own actors.

The actors belong to this process (Ray "fate-shares" them with their owner): if it
dies, even by ``SIGKILL``, or exits without a stop, Ray kills them. Its slots go at
exit with or without a stop (an exit hook closes every ring); after a ``SIGKILL`` their
names stay in ``/dev/shm`` until the next awkgen pool on the machine starts and reclaims
them (:func:`awkgen.transport.reclaim_orphans`): Ray's actors, unlike worker processes,
do not watch their driver.

More faults (each a typed error for its batch, within seconds; nothing else lost): an
actor that dies while its result is being sent fails its call with ``RayActorError``
(``WorkerDiedError``, the actor replaced); a result larger than the object store is
stored outside it by Ray and arrives intact; Ray failing to deliver one is a
``LoaderError`` for that batch. The handshake: an actor answers the info call made at
its creation with the awkgen it runs (:mod:`._identity`), and the manager reads that
answer before any result of the actor; an actor of other code (Ray's workers import
awkgen from their own ``sys.path``) breaks the pool with a ``WorkerStartError`` naming
both, instead of results whose classes differ. Every node needs awkgen, numpy and the
installed packages the loader imports (or ``ray.init(runtime_env=...)`` to ship them);
the user's own modules travel by value with the loader (:mod:`._travel`).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import secrets
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import transport
from ..errors import AwkgenError, LoaderError, LoaderTimeoutError, WorkerDiedError, WorkerStartError
from . import _travel, _worker
from ._identity import IDENTITY, Identity, mismatch
from ._wire import FAILED, IN_PLACE, IN_SLOT, ROUTES, failed_reply
from .base import Outcome, Task, call_loader, loader_failure
from .managed import ManagedExecutor

__all__ = ["RayExecutor"]

logger: logging.Logger = logging.getLogger("awkgen")

_INSTALL_HINT = 'the "ray" backend needs Ray: pip install "awkgen[ray]"'
_IDLE_TICK_S = 0.5  # longest the manager sleeps with nothing in flight
_BUSY_TICK_S = 0.02  # longest one ray.wait lasts with calls in flight (new tasks wait at most this)
_JOIN_S = 2.0
#: The manager collects results (and rebuilds them, overlapping the caller's work) only once
#: the caller has been away from get() this long: a caller that comes back at once collects
#: its own, without two threads waiting on the same results.
_CALLER_AWAY_S = 0.005
#: An actor gets this long to start (be scheduled, import, unpickle the loader) before its
#: task fails with WorkerDiedError; ``timeout`` counts only from when it is up.
_ACTOR_START_S = 120.0
_PID_WAIT_S = 1.0  # how long a failed call's report waits for its actor's pid (already computed)
_REASON_CHARS = 300  # how much of Ray's explanation a WorkerDiedError quotes
_NODE_ID_CHARS = 12  # how much of a node's id messages show (Ray's own tools show 8 or more)
#: Calls each actor has submitted at once: the running one and the next, queued behind it.
_CALLS_PER_ACTOR = 2
#: How often a worker that no node could host looks again for one (and fails its tasks meanwhile).
_REPLACE_EVERY_S = 1.0
#: Loader calls quicker than this (a running mean) cost less than a Ray actor call's round trip
#: (about 1 ms of CPU between driver, raylet and actor): the tasks waiting then go in one call
#: (``load_many``), at least :data:`_COALESCE_LEAST` while other calls are in flight.
COALESCE_BELOW_S = 0.002
#: With quick loaders, a task waits for this many to go in one call while other calls are in flight.
_COALESCE_LEAST = 2
#: Weight of the latest loader call in the running mean of loader call times.
_LOAD_S_WEIGHT = 0.2
_DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}


#: The slot rings of open Ray executors: closed at interpreter exit (a driver that exits without
#: stopping its generator leaves nothing in /dev/shm), forgotten in a forked child.
_live_rings: weakref.WeakSet[transport.SlotRing] = weakref.WeakSet()


@atexit.register
def _close_live_rings() -> None:
    for ring in list(_live_rings):
        ring.close()


def _forget_rings_in_child() -> None:
    """After ``os.fork()``, in the child: drop the copies of the rings' lock descriptors (the
    parent's pools must look dead once the parent is, whatever its children do)."""
    for ring in list(_live_rings):
        ring.forget_in_child()
    _live_rings.clear()


os.register_at_fork(after_in_child=_forget_rings_in_child)


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
    flag and shared reference it had, as on the process backend. ``nbytes``: what a slot
    would need for those arrays (the driver sizes its slots from it).
    """

    data: bytes
    buffers: list[Any]
    load_s: float
    pid: int
    nbytes: int = 0


@dataclass(frozen=True)
class Replied:
    """Actor to driver, for a task that came with a slot: the reply a process backend's worker
    makes (:func:`._worker.load_in_slot`: ``_wire``'s ``VALUE`` or ``FAILED`` fields), its
    arrays in the slot, or in ``blob`` (those that did not go there), through the object store."""

    fields: tuple[Any, ...]
    blob: Any  # a flat uint8 array, or None
    pid: int


@dataclass(frozen=True)
class Interrupted:
    """Actor to driver: the loader raised ``SystemExit`` or ``KeyboardInterrupt``, which Ray
    would take for the actor's own exit; they mean on Ray what they mean everywhere."""

    exc: BaseException
    load_s: float
    pid: int


@dataclass(frozen=True)
class Failed:
    """Actor to driver, in a coalesced call: the loader raised *name*: *message* on this task.
    The exception travels pickled with its traceback (tblib), or only as text when it cannot."""

    name: str
    message: str
    pickled: bytes | None
    text: str
    load_s: float
    pid: int

    @classmethod
    def of(cls, exc: BaseException, load_s: float) -> Failed:
        import pickle

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            from tblib import pickling_support

            pickling_support.install(exc)
            pickled: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pickled = None
        return cls(type(exc).__name__, str(exc), pickled, text, load_s, os.getpid())


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
        _worker._keep_freed_memory()  # as a worker process: the loader's next batch reuses the last one's pages
        self._loader: Callable[..., Any] | None = None
        self._broken = ""
        self._attached: collections.OrderedDict[str, Any] = collections.OrderedDict()  # slots mapped
        try:
            from ray import cloudpickle

            loader_bytes, paths = payload
            _travel.add_paths(paths)  # the driver's own code, where this node has it (a local cluster)
            self._loader = cloudpickle.loads(loader_bytes)
            _travel.adopt_classes(self._loader)
        except BaseException:
            self._broken = traceback.format_exc()

    def info(self) -> tuple[int, tuple[str, ...], str, str]:
        """This actor's pid, which awkgen it runs (the handshake, see :mod:`._identity`), its
        node's id and IP address."""
        import ray

        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return os.getpid(), tuple(IDENTITY), ray.get_runtime_context().get_node_id(), ip

    def load(self, task: Task, slot: transport.SlotRef | None = None) -> Loaded | Replied | Interrupted | Broken:
        """*task*'s result. With a *slot* of the driver's (this actor runs on its node), the
        result's arrays go there, as a worker process's do, and only the reply's head travels
        through Ray; a slot this process cannot map (another machine's ``/dev/shm`` after all)
        is ignored: the result goes through the object store, and the driver sends no more."""
        if self._loader is None:
            return Broken(self._broken)
        if slot is not None and self._maps(slot):
            fields, blob = _worker.load_in_slot(self._loader, task, slot, self._attach)
            return Replied(fields, np.frombuffer(blob, np.uint8) if len(blob) else None, os.getpid())
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
        return Loaded(data, transport.separate_buffers(layout), load_s, os.getpid(), layout.nbytes)

    def load_many(self, tasks: list[Task], slots: list[transport.SlotRef | None] | None = None
                  ) -> list[Loaded | Replied | Interrupted | Failed] | Broken:
        """Several tasks in one call (coalesced for quick loaders): each one's result, in order.
        A loader exception is that task's :class:`Failed`; the next tasks still run."""
        if self._loader is None:
            return Broken(self._broken)
        out: list[Loaded | Replied | Interrupted | Failed] = []
        for task, slot in zip(tasks, slots or [None] * len(tasks)):
            start = time.perf_counter()
            try:
                out.append(self.load(task, slot))  # type: ignore[arg-type]  # not Broken: the loader is here
            except BaseException as exc:
                out.append(Failed.of(exc, time.perf_counter() - start))
        return out

    def _attach(self, path: str) -> Any:
        return _worker._attach(path, self._attached)

    def _maps(self, slot: transport.SlotRef) -> bool:
        """Whether this process can map *slot* (it shares the driver's ``/dev/shm``)."""
        try:
            self._attach(slot.path)
        except (OSError, ValueError):
            return False
        return True


# -- the driver's side -------------------------------------------------------------------------

@dataclass(eq=False)
class _Call:
    tasks: tuple[Task, ...]  # one (``load``) or several, coalesced into one call (``load_many``)
    ref: Any  # ObjectRef of the actor call's result
    slots: tuple[transport.SlotRef | None, ...] = ()  # each task's slot (actors on this node), else None

    @property
    def task(self) -> Task:
        return self.tasks[0]


@dataclass(eq=False)
class _Worker:
    """One actor and the calls submitted to it, oldest (the running one) first.

    ``actor`` is ``None`` while no node of the cluster can host an actor (see
    :meth:`RayExecutor._placement`): the worker then fails every task given to it at
    once, and checks again for room every :data:`_REPLACE_EVERY_S`.
    """

    actor: Any
    info_ref: Any  # ObjectRef of the actor's (pid, node id, node ip), asked for when it was created
    spawned: float
    node_id: str | None = None  # where it was placed (before it is up), then where it runs
    up: bool = False  # the actor answered (or failed) its info call: it was scheduled and started
    checked: bool = False  # its answer was read: its pid is known and its awkgen was compared with ours
    shm: bool = False  # it runs on this process's node (its answer says) and maps our slots: its tasks get one
    pid: int | None = None
    node_ip: str | None = None
    calls: collections.deque[_Call] = field(default_factory=collections.deque)
    started: float = 0.0  # when the oldest call could start running (timeout counts from there)

    def describe(self) -> str:
        return f"Ray actor {_actor_id(self.actor)} (pid {self.pid if self.pid is not None else 'unknown'})"

    def where(self) -> str:
        """The node the actor runs on (or was placed on), for messages; "" if unknown."""
        if self.node_id is None:
            return ""
        return f"node {self.node_id[:_NODE_ID_CHARS]}" + (f" at {self.node_ip}" if self.node_ip else "")


class RayExecutor(ManagedExecutor):
    """Run the loader on *n_workers* Ray actors; see the module docstring.

    *address* names the cluster to connect to when this process is not connected
    yet (default: ``RAY_ADDRESS``, else a running local cluster, else a new local
    one). *actor_options* update the options of every actor (Ray's
    ``.options(...)``, e.g. ``{"num_cpus": 1}`` to reserve a CPU for each, or a
    ``scheduling_strategy``); the defaults are no restarts and one actor per node
    in turn (round robin over the alive nodes that can host one).
    """

    backend_name = "ray"

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
        options = {**_DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
        self._place_by_node = "scheduling_strategy" not in options  # the user's strategy wins
        self._needs = _actor_needs(options)
        self._options = options
        self._actor_class = ray.remote(_LoaderActor)
        self._loader_ref = ray.put((loader_bytes, _travel.user_paths()))
        self._wake = threading.Event()
        #: Guards the workers' call queues, ``_todo`` and ``_suspects``: the caller's thread dispatches
        #: (submit) and collects (get) itself, the manager does both when the caller is elsewhere.
        self._lock = threading.RLock()
        #: Outcomes collected under _lock, their values not rebuilt yet (see _deliver).
        self._collected: collections.deque[Outcome] = collections.deque()
        self._caller_waiting = 0  # the caller is in get(), waiting on the actors' results itself
        self._caller_left = 0.0  # when the caller last came out of a ray.wait in get()
        #: Actor calls that carried several tasks so far (for tests and stats).
        self.coalesced_calls = 0
        self._load_s = float("inf")  # running mean of loader call times: below COALESCE_BELOW_S, calls carry several
        self._spawn_lock = threading.Lock()  # no actor is spawned once close() has begun
        self._workers: list[_Worker] = []
        self._graveyard: list[Any] = []  # refs of killed actors' calls: awaited so Ray logs no "unhandled error"
        self._broken_as: type[AwkgenError] = LoaderError  # what tasks fail with once _broken is set
        self._suspects: set[int] = set()  # tasks whose actor died, maybe by them: each runs alone
        self._lost_nodes: set[str] = set()  # nodes our actors died with: never placed on again
        self._lost_once: set[int] = set()  # tasks whose finished result Ray lost once: run again, once
        #: This process's node: its actors write results into ``_ring``'s slots, not the object store.
        self._node_id: str = ray.get_runtime_context().get_node_id()
        #: Made (under ``_lock``) once a result of an actor on this node needs a slot; closed by close().
        self._ring: transport.SlotRing | None = None
        self._routes: collections.Counter[str] = collections.Counter()  # how results travelled (tests read it)
        self._warned_kept = False  # warned once that the loader keeps arrays from awkgen.empty
        self._nodes: list[dict[str, Any]] | None = ray.nodes()  # read once for all the first actors
        self._start()
        self._nodes = None

    # -- the caller's side ---------------------------------------------------------------
    def submit(self, task: Task) -> None:
        """Queue *task* and, when an actor has room, submit its call from the caller's thread:
        no wait for the manager (which may be inside a ``ray.wait``)."""
        with self._lock:
            if len(self._todo) >= self._prefetch:  # the generator keeps at most prefetch undelivered
                raise AwkgenError(f"more than prefetch={self._prefetch} tasks queued for the Ray backend; "
                                  "this is a bug in awkgen, please report it")
            self._todo.append(task)
            if not self._stopping:
                self._dispatch()
        if self._timeout is not None:
            self._notify()  # the manager's next wake-up must honour the new call's deadline

    def get(self, timeout: float) -> Outcome | None:
        """The next outcome; while none is ready, the caller's thread waits on the actors' results
        itself (``ray.wait``) and collects them: no hop through the manager. Should the manager
        have died (a bug), this raises as on every managed backend instead of going on without
        it (nothing would enforce ``timeout`` any more)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._outcomes.get_nowait()
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            with self._lock:
                if self._todo and not self._stopping:
                    self._dispatch()  # what submit held back (coalescing)
                refs = [] if self._stopping else [w.calls[0].ref for w in self._workers if w.calls]
            manager_gone = self._manager is not None and not self._manager.is_alive() and not self._closed
            if not refs or remaining <= 0 or manager_gone:
                outcome = super().get(max(0.0, min(remaining, _BUSY_TICK_S)))
                if outcome is not None or remaining <= 0:
                    return outcome
                continue
            self._caller_waiting += 1
            try:
                done, _ = self._ray.wait(refs, num_returns=1, timeout=min(remaining, _BUSY_TICK_S))
            finally:
                self._caller_waiting -= 1
                self._caller_left = time.monotonic()
            if done:
                with self._lock:
                    if not self._stopping:
                        self._collect_finished(done)
                        self._dispatch()  # what a dead actor gave back
                self._deliver()

    def cancel(self) -> None:
        with self._lock:
            self._todo.clear()

    def workers_up(self) -> int:
        """How many actors are up (answered their info call): Ray starts them a few at a time."""
        return sum(w.up for w in self._workers)

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
        with self._lock:  # no result is collected into the ring from here on
            ring, self._ring = self._ring, None
        if ring is not None:  # names first; a killed actor still writing keeps only its own mapping
            ring.close()
            _live_rings.discard(ring)
        self._todo.clear()
        self._drop_outcomes()
        self._collected.clear()
        self._graveyard.clear()
        try:
            if not self._ray.is_initialized():  # ray.shutdown() came first: the actors went with it
                return
            for worker in workers:
                self._kill(worker)
        except Exception:  # interpreter exit: Ray may be half torn down; its own exit hook cleans up
            pass

    # -- actors ---------------------------------------------------------------------------------
    def _spawn(self, replacing: _Worker | None = None) -> _Worker:
        """Start one actor (on the node :meth:`_placement` picks); returns at once: Ray starts
        actors in the background, so ``n_workers`` of them start in parallel. A worker without
        an actor when no alive node can host one."""
        now = time.monotonic()
        nodes = self._nodes if self._nodes is not None else self._ray.nodes()
        hosts = [n["NodeID"] for n in nodes
                 if n.get("Alive") and n["NodeID"] not in self._lost_nodes
                 and all(n.get("Resources", {}).get(k, 0.0) >= v for k, v in self._needs.items())]
        if not hosts:
            return _Worker(None, None, now)
        if not self._place_by_node:  # the user's scheduling_strategy
            actor = self._actor_class.options(**self._options).remote(self._loader_ref)
            return _Worker(actor, actor.info.remote(), now)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node_id = self._placement(hosts, replacing)
        # soft: should the node be gone by the time Ray schedules the actor, any other node will do.
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=True)
        actor = self._actor_class.options(**self._options, scheduling_strategy=strategy).remote(self._loader_ref)
        return _Worker(actor, actor.info.remote(), now, node_id=node_id)

    def _placement(self, hosts: list[str], replacing: _Worker | None) -> str:
        """Of the alive nodes that can host an actor (*hosts*, as Ray lists them), the one with
        the fewest of ours: round robin over the cluster, whatever the head node holds.

        Whether a node *can host* an actor compares the actor's needs (``num_cpus``, default 1
        as Ray places actors, ``num_gpus``, ``memory``, ``resources``) with the node's totals,
        not with what is free now: an actor reserves nothing while it runs unless
        ``actor_options`` say so, and one that must wait for room waits on its node.
        """
        load = collections.Counter(w.node_id for w in self._workers if w.actor is not None and w is not replacing)
        return min(hosts, key=lambda node: load[node])  # ties: the first in Ray's order

    def _kill(self, worker: _Worker) -> None:
        if worker.actor is None:
            return
        try:
            self._ray.kill(worker.actor, no_restart=True)
        except Exception:  # already dead
            pass

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        with self._spawn_lock:
            if worker in self._workers:
                index = self._workers.index(worker)
                if not self._stopping:
                    self._workers[index] = self._spawn(replacing=worker)
                else:
                    del self._workers[index]

    def _retire(self, worker: _Worker, replace: bool = True, first: tuple[Task, ...] = ()) -> None:
        """*worker*'s actor is gone and its oldest call accounted for (taken off ``calls``): give
        back the calls still queued on it, which it never started (Ray runs an actor's calls in
        order), for other actors to run, then replace it. *first*, when given, are the oldest
        call's tasks, given back too, ahead of the others (whether each then runs alone is the
        caller's to say, by putting them in ``_suspects``: see :meth:`_died`)."""
        calls = list(worker.calls)
        worker.calls.clear()
        self._graveyard.extend(call.ref for call in calls)
        for call in calls:  # never started, unless the actor lingers after ray.kill: never reused
            self._retire_slots(call.slots)
        for task in [*first, *(task for call in calls for task in call.tasks)][::-1]:
            self._todo.appendleft(task)
        if replace:
            self._replace(worker)

    # -- the manager thread -------------------------------------------------------------------
    def _manage(self) -> None:
        """Dispatch what the caller could not (tasks given back, actors that came up), collect
        results while the caller is elsewhere, notice actors that came up or died, and expire
        calls past ``timeout``. While the caller waits in :meth:`get`, it collects the results
        itself and the manager watches only starting actors and killed actors' calls."""
        while not self._stopping:
            with self._lock:
                self._dispatch()
                mine = [w.info_ref for w in self._workers if w.actor is not None and not w.up]
                mine += self._graveyard
                busy = any(w.calls for w in self._workers)
                if busy and not self._caller_waiting and time.monotonic() - self._caller_left > _CALLER_AWAY_S:
                    mine += [w.calls[0].ref for w in self._workers if w.calls]
                tick = self._sleep_s() if busy else _IDLE_TICK_S
            done: list[Any] = []
            if mine:
                done, rest = self._ray.wait(mine, num_returns=1, timeout=tick)
                if done and rest:  # collect everything finished meanwhile in one pass
                    more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
                    done += more
            else:
                self._wake.wait(tick)
                self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                finished = set(done)
                for ref in [r for r in self._graveyard if r in finished]:
                    self._graveyard.remove(ref)
                    _swallow(self._ray, ref)
                self._collect_finished(finished)
                self._expire()
            self._deliver()

    def _collect_finished(self, finished: Any) -> None:
        """Collect every worker's oldest call whose result is among *finished* (refs); under ``_lock``.
        Results go to ``_collected``, for :meth:`_deliver` once the lock is let go."""
        finished = set(finished)
        for worker in list(self._workers):
            if worker.calls and worker.calls[0].ref in finished:
                self._collect(worker)

    def _deliver(self) -> None:
        """Rebuild the results collected (:func:`_loaded`: writable arrays are copied out of the
        object store) and queue them for :meth:`get`; outside ``_lock``, so that a large copy
        never holds up the caller's :meth:`submit`. In whichever thread collected them: the
        manager's while the caller is busy elsewhere (the copy overlaps with the caller's work),
        else the caller's own (no hop between threads)."""
        while True:
            try:
                outcome = self._collected.popleft()
            except IndexError:
                return
            self._outcomes.put(_loaded(outcome))  # type: ignore[arg-type]

    def _dispatch(self) -> None:
        """Keep every actor's next call queued behind its running one (Ray runs an actor's
        calls in order), so an actor starts its next batch without waiting for this process;
        under ``_lock``, from the caller's thread (submit) or the manager's.

        Only actors that are up (answered their info call) get calls: a task waits here
        rather than behind an actor still starting (seconds, on a busy machine), and goes
        to the first actor with room. Tasks go first to actors with nothing to do, then to
        those with one call, so a short queue is spread over all actors rather than stacked
        on the first ones. A *suspect* task (see :meth:`_died`) goes only to an idle actor,
        and nothing is queued behind it. When no worker has an actor (no node can host
        one), every task fails at once with ``WorkerStartError``.
        """
        if self._broken is not None:
            while self._todo:
                task = self._todo.popleft()
                self._outcomes.put(Outcome(task.seq, error_type=self._broken_as, detail=self._broken))
            return
        if self._todo and self._workers and all(w.actor is None for w in self._workers):
            for worker in list(self._workers):
                self._rehost(worker)
            if all(w.actor is None for w in self._workers):
                while self._todo:
                    task = self._todo.popleft()
                    self._outcomes.put(Outcome(task.seq, error_type=WorkerStartError, detail=self._no_host()))
                return
        for worker in self._workers:
            if worker.actor is not None and not worker.up and self._ray.wait([worker.info_ref], timeout=0)[0]:
                self._mark_up(worker, time.monotonic())
        coalesce = self._load_s < COALESCE_BELOW_S
        if (coalesce and 0 < len(self._todo) < _COALESCE_LEAST and self._todo[0].seq not in self._suspects
                and any(w.calls for w in self._workers)):
            return  # held until another joins it, or nothing else is in flight
        for depth in range(_CALLS_PER_ACTOR):
            for worker in self._workers:
                if not self._todo:
                    return
                if not worker.up or len(worker.calls) != depth:
                    continue
                if depth and worker.calls[0].task.seq in self._suspects:
                    continue
                if depth and self._todo[0].seq in self._suspects:
                    break  # it waits for an idle actor (the order of _todo is the generator's)
                tasks = [self._todo.popleft()]
                while (coalesce and self._todo and tasks[0].seq not in self._suspects
                       and self._todo[0].seq not in self._suspects):
                    tasks.append(self._todo.popleft())
                if not worker.calls:
                    worker.started = time.monotonic()
                slots = tuple(self._slot_for(worker) for _ in tasks)
                # No slot, no argument for it: each argument costs Ray tens of microseconds a call.
                extra = () if not any(slots) else (slots[0],) if len(tasks) == 1 else (list(slots),)
                try:
                    if len(tasks) == 1:
                        ref = worker.actor.load.remote(tasks[0], *extra)
                    else:
                        ref = worker.actor.load_many.remote(tasks, *extra)
                        self.coalesced_calls += 1
                except BaseException:
                    self._release_slots(slots)
                    raise
                worker.calls.append(_Call(tuple(tasks), ref, slots))

    # -- slots: results of actors on this node, through shared memory ---------------------------
    def _slot_for(self, worker: _Worker) -> transport.SlotRef | None:
        """A slot for a task bound for *worker* (under ``_lock``): one of the ring's if the actor
        runs on this node and a result has sized the slots, else ``None`` (the object store)."""
        if not worker.shm or self._ring is None:
            return None
        try:
            return self._ring.acquire()
        except Exception as exc:  # EMFILE, a planted name...: this batch goes through the object store
            logger.warning("awkgen: could not make a shared-memory slot (%s: %s); this batch goes through "
                           "Ray's object store", type(exc).__name__, exc)
            return None

    def _need(self, worker: _Worker, nbytes: int) -> None:
        """A result of *worker* needed *nbytes* of arrays: size the slots for it (making the ring
        at the first such result of an actor on this node). Under ``_lock``."""
        if nbytes < transport.MIN_SHM_BYTES or not worker.shm or self._stopping:
            return
        if self._ring is None:
            directory = transport.shm_dir()
            transport.reclaim_orphans(directory)
            self._ring = transport.SlotRing(secrets.token_hex(4), directory)
            _live_rings.add(self._ring)
        self._ring.need(nbytes)

    def _release_slots(self, slots: tuple[transport.SlotRef | None, ...]) -> None:
        """Give back slots no actor wrote (or whose writer is done and left nothing in them)."""
        for slot in slots:
            if slot is not None and self._ring is not None:
                self._ring.release(slot)

    def _retire_slots(self, slots: tuple[transport.SlotRef | None, ...]) -> None:
        """Never reuse *slots*: their call ended without a reply that says the actor is done with
        them (it died, was killed and may linger, or its reply was lost). Under ``_lock``."""
        for slot in slots:
            if slot is not None and self._ring is not None:
                self._ring.retire(slot)

    def _mark_up(self, worker: _Worker, now: float) -> bool:
        """*worker*'s actor answered (or failed) its info call: it was scheduled and started.
        Returns whether it is up; ``False`` when it was replaced instead.

        One whose info call failed because the node it was placed on died never started and
        ran nothing: it is replaced at once (elsewhere: that node is never used again, so
        this ends when the cluster runs out of nodes that die), and no batch is sent to a
        dead actor to fail there. Any other failure (or a node death where the user's
        ``scheduling_strategy`` placed it, whose node awkgen does not know) marks it up: its
        first call reports it (a ``WorkerDiedError``, or a broken pool when the actor cannot
        start anywhere), so an actor that cannot start fails batches instead of being
        replaced forever.
        """
        failure = self._info_failure(worker)
        if failure is not None and _node_died(failure) and worker.node_id is not None:
            self._lost_nodes.add(worker.node_id)
            self._retire(worker)  # it has no calls: calls go only to actors that are up
            return False
        worker.up = True
        self._resolve_info(worker)
        worker.started = now  # the clock starts when the actor can run a call
        return True

    def _rehost(self, worker: _Worker) -> _Worker:
        """A worker without an actor (no node could host one) looks again, at most every
        :data:`_REPLACE_EVERY_S`; returns it, or the worker that replaced it."""
        if time.monotonic() - worker.spawned < _REPLACE_EVERY_S:
            return worker
        with self._spawn_lock:
            if self._stopping or worker not in self._workers:
                return worker
            index = self._workers.index(worker)
            self._workers[index] = self._spawn()
            return self._workers[index]

    def _no_host(self) -> str:
        needs = ", ".join(f"{k}={v:g}" for k, v in sorted(self._needs.items()))
        return (f"no alive node of the Ray cluster can host a Ray actor (each needs {needs}; "
                f"{len(self._lost_nodes)} node(s) lost so far): add nodes, or ask for less with "
                "actor_options; awkgen starts actors again as soon as a node can host one")

    def _sleep_s(self) -> float:
        if self._timeout is None:
            return _BUSY_TICK_S
        now = time.monotonic()
        deadlines = [w.started + self._timeout - now for w in self._workers if w.calls and w.up]
        return max(0.001, min([_BUSY_TICK_S, *deadlines]))

    def _collect(self, worker: _Worker) -> None:
        """*worker*'s oldest call finished: turn its result or error into its tasks' outcomes.

        Slots: a call that ended in an error (the actor died, was killed, Ray lost its reply)
        gives no word that its actor is done with them, and they are retired, never reused.
        """
        ray = self._ray
        call = worker.calls.popleft()
        tasks, ref = call.tasks, call.ref
        self._suspects.difference_update(t.seq for t in tasks)
        worker.started = time.monotonic()  # the next call starts now
        self._resolve_info(worker, wait_s=_PID_WAIT_S)  # answered before this call: its awkgen is known
        if self._broken_as is WorkerStartError:  # it runs another awkgen: what it sent cannot be read
            _swallow(ray, ref)
            self._retire_slots(call.slots)
            self._fail_all(tasks, Outcome(0, error_type=WorkerStartError, detail=self._broken or ""))
            return
        try:
            result = ray.get(ref)
        except Exception as exc:
            self._retire_slots(call.slots)
            self._failed(worker, call.tasks, exc)
            return
        if isinstance(result, Broken):
            self._release_slots(call.slots)
            self._broken = f"Ray actors could not load the loader:\n{result.error_text}"
            self._fail_all(tasks, Outcome(0, error_type=LoaderError, detail=self._broken))
            return
        for task, slot, item in zip(tasks, call.slots or [None] * len(tasks),
                                    result if isinstance(result, list) else [result]):
            self._put_result(worker, task, slot, item)

    def _failed(self, worker: _Worker, tasks: tuple[Task, ...], exc: Exception) -> None:
        """*worker*'s oldest call, of *tasks*, raised *exc* in ``ray.get``: its tasks' outcomes."""
        errors = self._ray.exceptions
        if isinstance(exc, errors.RayTaskError):  # the loader raised (or a result would not pickle)
            if len(tasks) > 1:  # which task's result would not pickle? each runs again alone
                self._suspects.update(t.seq for t in tasks)
                self._give_back(tasks)
                return
            self._outcomes.put(_loader_failure(tasks[0].seq, exc, worker))
        elif isinstance(exc, (errors.RayActorError, errors.WorkerCrashedError, errors.OutOfMemoryError,
                              errors.NodeDiedError)):
            self._resolve_info(worker, wait_s=_PID_WAIT_S)
            if getattr(exc, "actor_init_failed", False):  # a replacement would fail the same way
                self._broken = (f"Ray actors could not start ({worker.describe()}): is awkgen installed on "
                                f"every node, or shipped with ray.init(runtime_env=...)?\n{exc}")
                self._fail_all(tasks, Outcome(0, error_type=LoaderError, detail=self._broken))
                self._retire(worker, replace=False)  # its queued tasks fail as broken, in _dispatch
                return
            self._died(worker, tasks, exc)
        elif isinstance(exc, errors.ObjectLostError):  # its only copy went with a node (or was evicted)
            # The call finished, its result is gone: the actor's node is most likely gone too (its
            # death may not be reported yet), so the actor is replaced and its calls given back;
            # a batch lost for the first time runs again, first (what Ray's lineage would do).
            again = tuple(t for t in tasks if t.seq not in self._lost_once)
            twice = [t for t in tasks if t.seq in self._lost_once]
            self._lost_once.update(t.seq for t in again)
            if twice:
                where = worker.where() or "its node"
                self._fail_all(tuple(twice), Outcome(
                    0, error_type=WorkerDiedError, cause=exc, pid=worker.pid,
                    detail=f"the result from {worker.describe()} on {where} was lost before it reached this "
                           f"process, and it had been lost once already: {type(exc).__name__}: "
                           f"{_first_line(exc)}; the actor has been replaced"))
                self._lost_once.difference_update(t.seq for t in twice)
            self._retire(worker, first=again)
        else:  # Ray could not deliver the result (store full, ...)
            self._fail_all(tasks, Outcome(0, error_type=LoaderError, cause=exc,
                                          detail=f"Ray could not deliver the result from {worker.describe()}: "
                                                 f"{type(exc).__name__}: {_first_line(exc)}"))

    def _put_result(self, worker: _Worker, task: Task, slot: transport.SlotRef | None,
                    item: Loaded | Replied | Interrupted | Failed) -> None:
        """The outcome of *task* (sent with *slot*) from what its actor sent back."""
        worker.pid = item.pid
        self._lost_once.discard(task.seq)
        if isinstance(item, Replied):
            self._replied(worker, task, slot, item)
            return
        if slot is not None:  # the actor could not map it: this node's /dev/shm is not its own
            self._release_slots((slot,))
            worker.shm = False
            logger.debug("awkgen: %s cannot map this process's shared memory; its results go through "
                         "Ray's object store", worker.describe())
        self._note_load_s(item.load_s)
        if isinstance(item, Interrupted):
            self._outcomes.put(loader_failure(task.seq, item.exc, item.load_s, item.pid))
        elif isinstance(item, Failed):
            where = f"in Ray actor {_actor_id(worker.actor)}, pid {item.pid}"
            self._outcomes.put(Outcome(task.seq, error_type=LoaderError, load_s=item.load_s, pid=item.pid,
                                       cause=_RemoteTraceback(f"worker-side traceback ({where}):\n{item.text}"),
                                       cause_pickle=item.pickled,
                                       detail=f"loader raised {item.name}: {item.message} ({where})"))
        else:  # rebuilt (_loaded) by the thread that collected it, once it let go of _lock
            self._routes["store"] += 1
            self._need(worker, item.nbytes)
            self._collected.append(Outcome(task.seq, value=_Unloaded(item.data, item.buffers, worker.describe()),
                                           load_s=item.load_s, pid=item.pid))

    def _replied(self, worker: _Worker, task: Task, slot: transport.SlotRef | None, item: Replied) -> None:
        """The outcome of *task* from a worker process's reply (:func:`._worker.load_in_slot`):
        its arrays in *slot* (leased to the batch: the slot comes back when its arrays are
        gone), in the blob, or a failure; the slot retired if an array of the loader's
        from ``awkgen.empty`` outlived the call."""
        kind, seq, load_s, *rest = item.fields
        self._note_load_s(load_s)
        if item.fields[-1]:  # retire: the actor still holds an array that views the slot
            self._routes["retired"] += 1
            if not self._warned_kept:
                self._warned_kept = True
                logger.warning("awkgen: the loader kept an array it got from awkgen.empty after returning (in "
                               "%s): the batch was copied out of shared memory and its slot retired; keep a "
                               "copy (np.array(a)) instead of the array itself", worker.describe())
            self._retire_slots((slot,))
            slot = None
        if kind == FAILED:
            self._release_slots((slot,))
            outcome = failed_reply(seq, rest[0], rest[1], rest[2], load_s, item.pid)
            where = f"in Ray actor {_actor_id(worker.actor)}, pid {item.pid}"
            self._outcomes.put(replace(outcome, detail=f"{outcome.detail} ({where})"))
            return
        nbytes, data, route, wanted = rest[:4]
        self._routes[ROUTES[route] if nbytes else "pickled"] += 1
        self._need(worker, wanted)
        base: Any = item.blob
        if route in (IN_SLOT, IN_PLACE) and slot is not None and self._ring is not None:
            base = self._ring.lease(slot)
        else:
            self._release_slots((slot,))
        self._collected.append(Outcome(seq, value=_Unloaded(data, base, worker.describe()), load_s=load_s,
                                       pid=item.pid))

    def _note_load_s(self, load_s: float) -> None:
        self._load_s = load_s if self._load_s == float("inf") else (
            (1 - _LOAD_S_WEIGHT) * self._load_s + _LOAD_S_WEIGHT * load_s)

    def _fail_all(self, tasks: tuple[Task, ...], failure: Outcome) -> None:
        for task in tasks:
            self._outcomes.put(replace(failure, seq=task.seq))

    def _give_back(self, tasks: tuple[Task, ...]) -> None:
        for task in reversed(tasks):
            self._todo.appendleft(task)

    def _died(self, worker: _Worker, tasks: tuple[Task, ...], exc: BaseException) -> None:
        """*worker*'s actor died while *tasks*, its oldest call, were due: fail them with
        ``WorkerDiedError``, give back the calls queued behind it, replace the actor.

        With a call queued behind it, the call may have finished: Ray sends a call's reply from
        a background thread of the actor, and a next call that kills its process at once (a
        segfault, ``os._exit``) can take the reply with it. Unless its node died (which no
        batch causes), the call's tasks and the calls behind it are then *suspects*, as are
        the tasks of a coalesced call (which of them killed it?): given back, each runs again
        alone on an idle actor, where a death is its own. Every batch a dead actor ran thus
        fails at most once, and only if it died alone or with its node.
        """
        lost_node = _node_died(exc)
        if lost_node and worker.node_id is not None:
            self._lost_nodes.add(worker.node_id)
        if (len(worker.calls) > 0 or len(tasks) > 1) and not lost_node:
            self._suspects.update([*(t.seq for t in tasks), *(t.seq for c in worker.calls for t in c.tasks)])
            self._retire(worker, first=tasks)
            return
        where = worker.where() or "node"
        how = f"died with its {where}" if lost_node else "died"
        after = "" if lost_node or where == "node" else f" (it ran on {where})"
        self._fail_all(tasks, Outcome(0, error_type=WorkerDiedError, pid=worker.pid,
                                      detail=f"{worker.describe()} {how}: {_reason(exc)}; it has been "
                                             f"replaced{after}"))
        self._retire(worker)

    def _info_failure(self, worker: _Worker) -> BaseException | None:
        """The exception *worker*'s finished info call raised, or ``None`` (it answered)."""
        try:
            self._ray.get(worker.info_ref, timeout=0)
        except Exception as exc:
            return exc
        return None

    def _resolve_info(self, worker: _Worker, wait_s: float = 0.0) -> None:
        """Learn *worker*'s pid and node, and check that it runs this process's awkgen (else break
        the pool: every task fails with a WorkerStartError naming both)."""
        if worker.checked or worker.info_ref is None:
            return
        try:
            said = self._ray.get(worker.info_ref, timeout=wait_s)
        except Exception:  # died before it could say, or not up yet
            return
        worker.checked = True
        theirs = None
        if isinstance(said, tuple) and len(said) == 4:
            pid, identity, worker.node_id, worker.node_ip = said
            theirs = Identity.of(identity)
            worker.shm = worker.node_id == self._node_id  # this node: results through our slots
        else:  # an actor of other code: its answer has another shape
            pid = said[0] if isinstance(said, tuple) and said else said
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
            if worker.actor is None:
                self._rehost(worker)  # a node may have joined
                continue
            if not worker.up and self._ray.wait([worker.info_ref], timeout=0)[0]:
                if not self._mark_up(worker, now):
                    continue  # replaced: its replacement is looked at on the next turn
            if not worker.up:
                if now - worker.spawned > _ACTOR_START_S:  # no room for it on the cluster, or stuck
                    if self._todo and not any(w.up for w in self._workers):  # and tasks wait for it
                        task = self._todo.popleft()
                        self._outcomes.put(Outcome(
                            task.seq, error_type=WorkerDiedError,
                            detail=f"{worker.describe()} did not start within {_ACTOR_START_S:g} s, nor did any "
                                   "other (does the cluster have room for them? see actor_options); it has been "
                                   "replaced"))
                    self._replace(worker)
                continue
            if not worker.calls:
                continue
            if self._timeout is not None and now - worker.started > self._timeout:
                self._fail_running(worker, LoaderTimeoutError,
                                   f"loader call exceeded timeout={self._timeout:g} s; {worker.describe()} "
                                   "was killed and replaced")

    def _fail_running(self, worker: _Worker, error_type: type[AwkgenError], detail: str) -> None:
        """Kill and replace *worker*, failing its running call's task; a coalesced call's tasks
        are given back instead, each to run again alone (which one took too long?)."""
        call = worker.calls.popleft()
        self._graveyard.append(call.ref)
        self._retire_slots(call.slots)  # a killed actor's process may linger, still writing them
        if len(call.tasks) > 1:
            self._suspects.update(t.seq for t in call.tasks)
            self._retire(worker, first=call.tasks)
            return
        self._suspects.discard(call.task.seq)
        self._outcomes.put(Outcome(call.task.seq, error_type=error_type, detail=detail, pid=worker.pid,
                                   load_s=time.monotonic() - worker.started))
        self._retire(worker)


@dataclass(frozen=True)
class _Unloaded:
    """An outcome's value as collected, not yet rebuilt: the pickled result and what its arrays
    view (:func:`awkgen.transport.load_result`'s *base*): the object store's buffers, a leased
    slot, or a blob from the object store."""

    data: bytes
    base: Any
    source: str  # which actor sent it, for messages


def _loaded(outcome: Outcome | None) -> Outcome | None:
    """*outcome* with its value rebuilt (:func:`awkgen.transport.load_result`), or a ``LoaderError``
    outcome when that fails (a class this process cannot import, ...)."""
    if outcome is None or not isinstance(outcome.value, _Unloaded):
        return outcome
    base = outcome.value.base
    if isinstance(base, np.ndarray) and not base.flags.writeable:  # a blob, read-only in the store
        base = base.copy()  # its arrays arrive writable or not as the loader made them
    try:
        value = transport.load_result(outcome.value.data, base)
    except Exception as exc:
        return Outcome(outcome.seq, error_type=LoaderError, cause=exc, pid=outcome.pid,
                       detail=f"the result from {outcome.value.source} cannot be rebuilt in this "
                              f"process: {type(exc).__name__}: {_first_line(exc)}")
    return replace(outcome, value=value)


def _actor_needs(options: Mapping[str, Any]) -> dict[str, float]:
    """What one actor needs of a node's totals to be placed there, from its Ray options.

    >>> _actor_needs({"num_cpus": 0.25, "resources": {"disk": 1}})
    {'CPU': 0.25, 'disk': 1.0}
    >>> _actor_needs({})   # Ray places an actor only where there is a CPU, though it holds none
    {'CPU': 1.0}
    """
    cpus = options.get("num_cpus")
    needs = {"CPU": 1.0 if cpus is None else float(cpus)}
    if options.get("num_gpus"):
        needs["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        needs["memory"] = float(options["memory"])
    for key, value in (options.get("resources") or {}).items():
        needs[str(key)] = float(value)
    return {k: v for k, v in needs.items() if v > 0}


def _node_died(exc: BaseException) -> bool:
    """Whether Ray says the actor died because its node did."""
    if type(exc).__name__ == "NodeDiedError":
        return True
    text = getattr(exc, "error_msg", None) or str(exc)
    return "node has died" in text or "node was terminated" in text


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
