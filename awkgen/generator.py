"""The stateful generator object: the Python form of the R package's closures.

One :class:`BatchGenerator` class serves all factories; they differ only in the
executor that runs the loader. The generator owns the *order*: it plans batches
from its :class:`~awkgen.sampling.Plan`, keeps up to ``prefetch`` of them submitted
to the executor, and delivers outcomes strictly in plan order, whichever worker
finished first. Labels are sliced here, in the caller, never shipped to workers.

Cursor bookkeeping (all under ``_lock``)::

    _inflight   seq -> _Batch, in plan order: submitted, not yet delivered
    _ready      seq -> Outcome that arrived before its turn
    _submit_at  (epoch, step) of the next batch to submit
    epoch/step  of the next batch to *deliver* (the head of _inflight, else _submit_at)

Rules that keep every call returning or raising (SPEC section 4):

- **Lock order**: ``BatchGenerator._lock -> executor locks`` (the process backend's
  ``_state_lock -> SlotRing._lock``). ``_lock`` is held by the call that delivers a
  batch, across its wait; nothing else waits for it: ``stats()``, ``close()`` and the
  properties read without it or hold it only briefly, so a monitor thread, a signal
  handler or another thread never blocks on a waiting call.
- **Ctrl-C**: the bookkeeping runs under :class:`~awkgen._interrupts.deferred_sigint`;
  an interrupt is delivered only between two short waits, or once the batch taken is
  *handed over* (``_handover``). The public method that delivers it (``gen()``,
  ``next(gen)``, ``get_batch()``, ``send(None)``, an epoch pass) clears the handover with
  one attribute store right before its ``return``, where CPython runs no signal handler
  (handlers run only when a call returns, at a backward jump, on entering a function and,
  on 3.10, at a conditional jump taken: ``tests/test_interrupts.py`` checks this on the
  running interpreter; the store follows a branch *not* taken). An interrupt
  anywhere before that store leaves the batch handed over, and the next call, from any
  thread, delivers it first: the interrupted batch is the next one returned. Nothing is put
  back in an ``except`` clause, where a second Ctrl-C could land. A method that wraps a
  delivering method would reopen the gap (a handler may run when the inner call returns):
  new entry points call ``_next_batch`` and clear the handover themselves.
- **Finalizers and GC callbacks** (a dropped generator, a collected batch) take no lock
  and never wait: a dropped generator only *asks* its executor to close
  (``request_close``); the executor's own thread does the closing.
- **fork**: a generator belongs to the process that built it. In a forked child every
  call raises :class:`~awkgen.AwkgenError` and ``close()`` leaves the parent's workers
  and shared memory alone.
"""

from __future__ import annotations

import _thread
import collections
import os
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast, overload

import numpy as np

from . import _interrupts, procfs
from ._checks import is_int
from ._interrupts import deferred_sigint
from .errors import AwkgenError, GeneratorStoppedError, short_ids
from .executors.base import Executor, Outcome, Task, held_here, usable_cpus
from .sampling import EXACT_MAX, Plan

if TYPE_CHECKING:  # for the bridges' return types; none is imported at run time until used
    import tensorflow as tf

    from .frameworks.keras import KerasStream
    from .frameworks.torch import TorchStream

__all__ = ["BatchGenerator", "EpochPass", "GeneratorStats"]

_POLL_S = 0.1  # how long one wait for an outcome lasts before flags are re-checked
_STATE_VERSION = 2  # 2: shuffled orders of more than sampling.EXACT_MAX ids come from sampling.permute
_STATE_KEYS = ("n_ids", "batch_size", "shuffle", "drop_last", "rank", "world_size")
_INPUT_BOUND_WAIT_FRACTION = 0.2  # of the time after the warm-up spent waiting for batches: input-bound


class _Process:
    """This process's pid, kept by an at-fork hook: the per-batch "is this a forked child?"
    check reads an attribute instead of making a system call."""

    pid = os.getpid()

    @classmethod
    def after_fork(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Process.after_fork)


@dataclass(slots=True)
class _Batch:  # made per batch, never changed: slotted, not frozen (see executors.base.Task)
    epoch: int
    step: int
    positions: np.ndarray
    ids: Any
    entropy: tuple[int, ...] | None


@dataclass(frozen=True)
class GeneratorStats:
    """Where the time went: what :meth:`BatchGenerator.stats` returns.

    A frozen snapshot; ``str(stats)`` is a one-line summary ending with the verdict.

    Attributes:
        batches: Batches delivered to the caller so far.
        loader_s: Seconds the loader ran for those batches, summed over workers.
        wait_s: Seconds the caller spent waiting for batches.
        elapsed_s: Seconds since the first batch was asked for.
        ready: Batches loaded and waiting to be taken.
        in_flight: Batches handed to workers and not loaded yet.
        n_workers: The generator's workers (1 for :func:`~awkgen.DataGenerator`).
        verdict: What limits the loop and what would help; see :meth:`BatchGenerator.stats`.
        warmup_s: Seconds from the first request to the end of the warm-up (the first
            ``n_workers`` batches: workers starting, the first loads), which the verdict
            leaves out.
        cpus: The CPUs this process may run on (its affinity mask).
        loader_cpu: Since the warm-up, the loader's CPU seconds per second it ran: near 1
            for a loader that computes on a CPU of its own, near 0 for one that waits
            (storage, network, sleep, or a CPU other work holds); ``None`` before, or on
            Ray, whose workers run elsewhere.
        cpus_idle: Since the warm-up, how many of those *cpus* were idle on average,
            whoever used the rest (this process, its workers, other programs); ``None``
            before.

    >>> import awkgen
    >>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=5)
    >>> _ = gen(), gen()
    >>> stats = gen.stats()
    >>> stats.batches, stats.n_workers, stats.verdict.startswith("warming up")
    (2, 1, True)
    >>> str(stats).startswith("2 batches in ")
    True
    """

    batches: int
    loader_s: float
    wait_s: float
    elapsed_s: float
    ready: int
    in_flight: int
    n_workers: int
    verdict: str
    warmup_s: float = 0.0
    cpus: int = 1
    loader_cpu: float | None = None
    cpus_idle: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (JSON-serialisable), e.g. for a metrics logger.

        Returns:
            ``{"batches": ..., "loader_s": ..., ..., "verdict": ...}``, one key per attribute.
        """
        return asdict(self)

    def __str__(self) -> str:
        per = (lambda s: 1e3 * s / self.batches) if self.batches else (lambda s: 0.0)
        cpu = "" if self.cpus_idle is None else f"{self.cpus_idle:.1f} of {self.cpus} CPUs idle; "
        return (f"{self.batches} batches in {self.elapsed_s:.2f} s; loader {per(self.loader_s):.1f} ms/batch "
                f"on {self.n_workers} worker(s); consumer waited {per(self.wait_s):.1f} ms/batch; "
                f"{self.ready} ready, {self.in_flight} in flight; {cpu}{self.verdict}")


@dataclass(frozen=True)
class _Mark:
    """The counters when the warm-up ended: the verdict judges what came after."""

    at: float
    batches: int
    loader_s: float
    wait_s: float
    loader_cpu_s: float | None
    idle_s: float | None


# The verdict's thresholds.
_WARMUP_JUDGED_AFTER = 3  # batches past the warm-up before a verdict
_BUSY_WORKERS = 0.75  # of the workers' time spent in the loader: "the workers are busy"
_IDLE_CPUS = 0.5  # CPUs idle on average, at least: "CPUs are free"
_COMPUTES = 0.5  # loader CPU seconds per second of loading, at least: "the loader computes"


_NO_COPY = ("an awkgen generator cannot be copied: its workers and its place in the stream belong to one object. "
            "Build another from the same loader and ids, and call load_state_dict(gen.state_dict()) on it to "
            "continue from the same batch")


def _stand_in() -> Generator[None, None, None]:
    """What ``gen.gi_frame`` and ``gen.gi_code`` show: a generator paused at its yield."""
    yield


def _failure(batch: _Batch, outcome: Outcome) -> BaseException:
    """The error to raise for a failed batch, its cause attached."""
    assert outcome.error_type is not None
    message = f"{outcome.detail} (batch {batch.step} of epoch {batch.epoch}, ids {short_ids(batch.ids)})"
    error = outcome.error_type(message, ids=batch.ids, epoch=batch.epoch, step=batch.step, pid=outcome.pid,
                               exitcode=outcome.exitcode)
    error.__cause__ = outcome.exception()  # as ``raise error from cause`` would
    error.__suppress_context__ = True
    return error


class EpochPass(Iterator[tuple[Any, ...]]):
    """What :meth:`awkgen.BatchGenerator.one_epoch` returns: the generator's batches up to the end
    of the epoch it was in when the pass was made.

    ``len()`` is the number of batches this pass has left to give.
    """

    def __init__(self, gen: BatchGenerator) -> None:
        self._gen = gen
        self._epoch = gen.epoch

    def __iter__(self) -> EpochPass:
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self._gen.epoch != self._epoch:
            raise StopIteration
        batch, handed = self._gen._next_batch()
        if handed:  # see BatchGenerator._next_batch
            self._gen._handover = None
        return batch

    def __len__(self) -> int:
        epoch, step = self._gen._cursor()
        return self._gen.steps_per_epoch - step if epoch == self._epoch else 0

    def __repr__(self) -> str:
        return f"<awkgen epoch pass: epoch {self._epoch}, {len(self)} batch(es) left>"


class BatchGenerator:
    """An endless, stateful stream of batches; build one with a factory such as
    :func:`awkgen.DataGenerator`.

    ``gen()``, ``next(gen)``, ``gen.get_batch()`` and ``for batch in gen`` all return
    the next batch: ``(x,)``, or ``(x, y)`` when labels were given. ``gen(stop=True)``,
    ``gen.close()`` and leaving ``with gen:`` stop it.

    Keras 3's ``model.fit`` accepts, among iterables, only real Python generators
    (``isinstance(x, types.GeneratorType)``: a built-in type, which nothing can join),
    so ``gen.__class__`` reports :class:`types.GeneratorType`; ``type(gen)`` is still
    this class and ``isinstance(gen, awkgen.BatchGenerator)`` holds.
    ``model.fit(gen, steps_per_epoch=gen.steps_per_epoch)`` then works without awkgen
    importing Keras. The disguise is whole, so tools that trust it get true answers:

    - the generator protocol: ``send(None)`` is ``next(gen)`` (an awkgen generator
      takes no values), ``throw(exc)`` stops it and raises *exc* (as an uncaught
      exception ends a generator), ``close()`` stops it;
    - ``gi_running`` (a call is delivering a batch), ``gi_suspended``, ``gi_frame``
      and ``gi_code`` (a stand-in: the work happens in workers, not in a Python
      frame; ``gi_frame`` is ``None`` once stopped), ``gi_yieldfrom`` (``None``): so
      ``inspect.getgeneratorstate(gen)`` is ``GEN_SUSPENDED`` (workers load from
      the start: never ``GEN_CREATED``), ``GEN_RUNNING`` or ``GEN_CLOSED``, and
      ``inspect.getgeneratorlocals(gen)`` is ``{}``;
    - ``copy.copy``, ``copy.deepcopy`` and ``pickle.dumps`` raise ``TypeError`` (as
      for any generator), saying what to do instead.

    What it costs: code that dispatches on ``obj.__class__`` rather than ``type(obj)``
    (``functools.singledispatch``) sees a generator.
    """

    def __init__(self, loader: Callable[..., Any], ids: Any, labels: np.ndarray | None, plan: Plan,
                 executor: Executor, prefetch: int, wants_rng: bool, backend: str = "serial") -> None:
        self._loader = loader
        self._ids = ids
        self._labels = labels
        self._plan = plan
        self._executor = executor
        self._prefetch = prefetch
        self._wants_rng = wants_rng
        self._backend = backend
        self._lock = threading.RLock()
        self._closed = False
        self._inflight: collections.OrderedDict[int, _Batch] = collections.OrderedDict()
        self._ready: dict[int, Outcome] = {}
        self._next_seq = 0
        self._submit_at = (0, 0)
        self._batches = 0
        self._running = False  # a call is delivering a batch (gi_running)
        self._handover: tuple[int, _Batch, Outcome] | None = None  # see _next_batch
        self._stand_in = cast("types.GeneratorType[None, None, None]", _stand_in())
        next(self._stand_in)  # paused at its yield, as a generator between two batches
        self._loader_s = 0.0
        self._wait_s = 0.0
        self._started: float | None = None
        self._warm: _Mark | None = None  # the counters when the warm-up ended
        self._cpus = usable_cpus()
        self._affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(self._cpus))
        self._serial_cpu_s = 0.0  # DataGenerator: CPU time of the loader, run in the caller's waits
        self._pid = os.getpid()
        # The finalizer holds the executor, never self: a dropped generator is collected. It may
        # run inside garbage collection on any thread, so it only asks the executor to close.
        self._finalizer = weakref.finalize(self, executor.request_close)
        with self._lock:
            self._fill()  # workers start loading now, not at the first call

    # -- ART's DataGenerator interface and the read-only properties ----------------
    @property
    def size(self) -> int:
        """Number of ids this generator draws from (this rank's shard)."""
        return self._plan.size

    @property
    def batch_size(self) -> int:
        """Ids per batch (the last batch of an epoch may have fewer, unless ``drop_last``)."""
        return self._plan.batch_size

    @property
    def iterator(self) -> BatchGenerator:
        """ART's ``iterator`` attribute: the generator itself."""
        return self

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch: ``ceil(size / batch_size)``, or floor with ``drop_last``."""
        return self._plan.steps_per_epoch

    @property
    def epoch(self) -> int:
        """Epoch of the batch the next call returns."""
        return self._cursor()[0]

    @property
    def step(self) -> int:
        """Index, within its epoch, of the batch the next call returns."""
        return self._cursor()[1]

    @property
    def seed(self) -> int:
        """The seed of the epochs' permutations: the one given, or the one drawn for ``seed=None``."""
        return self._plan.seed

    @property
    def closed(self) -> bool:
        """Whether the generator was stopped: its workers are gone, and calls raise
        :class:`~awkgen.GeneratorStoppedError`."""
        return self._closed

    @property
    def n_workers(self) -> int:
        """Workers loading batches: 1 for :func:`~awkgen.DataGenerator` and :func:`~awkgen.DataGeneratorNonblock`."""
        return self._executor.n_workers

    @property
    def backend(self) -> str:
        """``"serial"`` (:func:`~awkgen.DataGenerator`), ``"process"``, ``"thread"`` or ``"ray"``."""
        return self._backend

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105 - see the class docstring
        return types.GeneratorType

    # -- the rest of a generator's face (see the class docstring) --------------------
    @property
    def gi_running(self) -> bool:
        """Whether a call is delivering a batch now."""
        return self._running

    @property
    def gi_suspended(self) -> bool:
        """Whether the generator is open and idle: the next call delivers a batch."""
        return not self._closed and not self._running

    @property
    def gi_frame(self) -> types.FrameType | None:
        """A stand-in frame while open (the loader runs in workers, not in a frame of this
        object), ``None`` once stopped."""
        return None if self._closed else self._stand_in.gi_frame

    @property
    def gi_code(self) -> types.CodeType:
        """The stand-in frame's code (that of a generator paused at its yield)."""
        return self._stand_in.gi_code

    @property
    def gi_yieldfrom(self) -> None:
        """``None``: an awkgen generator delegates to no other generator."""
        return None

    def send(self, value: None) -> tuple[Any, ...]:
        """The generator protocol's ``send``: ``send(None)`` is ``next(gen)``.

        Args:
            value: Must be ``None``: an awkgen generator takes no values.

        Returns:
            The next batch, as ``next(gen)`` returns it.

        Raises:
            TypeError: *value* is not ``None``.
        """
        if value is not None:
            raise TypeError(f"an awkgen generator takes no values: send(None) is next(gen); received: {value!r:.100}")
        batch, handed = self._next_batch()
        if handed:  # see _next_batch: no signal handler runs between this store and the return
            self._handover = None
        return batch

    def throw(self, typ: type[BaseException] | BaseException, val: object = None,
              tb: types.TracebackType | None = None) -> NoReturn:
        """The generator protocol's ``throw``: stop the generator and raise the exception, as an
        exception a generator does not catch ends it.

        Args:
            typ: The exception, or its class.
            val: With a class: the exception's argument, or an instance of it.
            tb: A traceback to attach to the exception.

        Raises:
            BaseException: The exception given, always, once the generator has stopped.
        """
        self.close()
        if isinstance(typ, BaseException):
            error = typ
        elif isinstance(val, typ):
            error = val
        else:
            error = typ() if val is None else typ(val)
        raise error.with_traceback(tb) if tb is not None else error

    def __copy__(self) -> NoReturn:
        raise TypeError(_NO_COPY)

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        raise TypeError(_NO_COPY)

    def __repr__(self) -> str:
        state = "stopped" if self._closed else f"epoch {self.epoch}, step {self.step}"
        return (f"<awkgen generator: {self.size} ids, batch_size={self.batch_size}, "
                f"backend={self._backend!r}, n_workers={self.n_workers}, {state}>")

    def __reduce__(self) -> Any:
        raise TypeError("an awkgen generator holds live workers and cannot be pickled; "
                        "pickle its loader and ids and build a new one instead")

    # -- producing batches ----------------------------------------------------------
    @overload
    def __call__(self, stop: Literal[False] = False) -> tuple[Any, ...]: ...

    @overload
    def __call__(self, stop: Literal[True]) -> None: ...

    @overload
    def __call__(self, stop: bool) -> tuple[Any, ...] | None: ...

    def __call__(self, stop: bool = False) -> tuple[Any, ...] | None:
        """Return the next batch; with ``stop=True`` stop the generator and return ``None``.

        Type checkers see ``gen()`` return the batch (so ``x, y = gen()`` checks) and
        ``gen(stop=True)`` return ``None``.

        Args:
            stop: Stop the generator instead (as :meth:`close`; idempotent, never raises).

        Returns:
            The next batch, ``(x,)``, or ``(x, y)`` with labels, where ``x`` is what the
            loader returned and ``y`` the batch's rows of ``sample_cls``; ``None`` with
            ``stop=True``.

        Raises:
            LoaderError: The loader raised for this batch; ``__cause__`` is its exception.
            WorkerDiedError: The worker loading this batch died (it has been replaced).
            LoaderTimeoutError: The loader call outlived the generator's ``timeout``.
            WorkerStartError: Workers cannot start (every later call raises it too).
            GeneratorStoppedError: The generator was stopped.
            AwkgenError: The generator is used in a child process made by ``os.fork()``.
        """
        if stop:
            self.close()
            return None
        batch, handed = self._next_batch()
        if handed:  # see _next_batch: no signal handler runs between this store and the return
            self._handover = None
        return batch

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        batch, handed = self._next_batch()
        if handed:  # see _next_batch: no signal handler runs between this store and the return
            self._handover = None
        return batch

    def __len__(self) -> int:
        """``len(gen)`` is :attr:`steps_per_epoch`, as for a Keras ``PyDataset`` or a torch
        ``DataLoader``; the generator itself is endless (see :meth:`one_epoch`)."""
        return self._plan.steps_per_epoch

    def __dir__(self) -> list[str]:
        # object.__dir__ lists the attributes of obj.__class__, which is the disguise
        # (types.GeneratorType): list the real class's instead, so completion shows the API.
        return sorted(set(dir(type(self))) | set(vars(self)))

    def one_epoch(self) -> EpochPass:
        """The batches from here to the end of the current epoch: ``for x, y in gen.one_epoch():``.

        Called between epochs (``gen.step == 0``) it yields a whole epoch,
        :attr:`steps_per_epoch` batches; called after a loop left an epoch early, it
        yields the rest of that epoch, so the next pass starts at an epoch boundary
        and no batch is skipped. The generator itself stays endless (``for batch in
        gen`` never ends, as in the R package and ART); this is the loop that ends.

        Returns:
            An iterator of batches, as ``gen()`` returns them. A batch that fails raises
            from ``next()`` as ``gen()`` does; calling ``next()`` again goes on with the
            following batch of the same epoch.

        Raises:
            GeneratorStoppedError: The generator was stopped (raised by ``next()``).

        >>> import awkgen
        >>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=2, shuffle=False)
        >>> [x for x, in gen.one_epoch()]
        [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        >>> for x, in gen.one_epoch():
        ...     break
        >>> [x for x, in gen.one_epoch()], gen.epoch, gen.step
        ([[2, 3], [4, 5], [6, 7], [8, 9]], 2, 0)
        """
        return EpochPass(self)

    def get_batch(self) -> tuple[Any, ...]:
        """ART's interface: the next batch, as ``gen()`` and ``next(gen)`` return it.

        Returns:
            ``(x,)``, or ``(x, y)`` when the generator has labels.

        Raises:
            LoaderError: The loader raised for this batch; ``__cause__`` is its exception.
            WorkerDiedError: The worker loading this batch died (it has been replaced).
            LoaderTimeoutError: The loader call outlived the generator's ``timeout``.
            WorkerStartError: Workers cannot start (every later call raises it too).
            GeneratorStoppedError: The generator was stopped.
            AwkgenError: The generator is used in a child process made by ``os.fork()``.
        """
        batch, handed = self._next_batch()
        if handed:  # see _next_batch: no signal handler runs between this store and the return
            self._handover = None
        return batch

    def _next_batch(self) -> tuple[tuple[Any, ...], bool]:
        """Take the next batch: ``(batch, handed)``, or raise its error.

        Ctrl-C may raise ``KeyboardInterrupt`` wherever CPython runs a signal handler: when a call
        returns, at a backward jump, on entering a function, on 3.10 at a conditional jump taken
        (never between a plain store and a ``return``/``raise``). The batch is taken under
        :class:`deferred_sigint`; when that block defers, :meth:`_take` also leaves it *handed
        over* (``_handover``) until the public method that called this one clears it, with one
        attribute store right before its ``return``. An interrupt from the end of the block to
        that store leaves the handover in place, and the next call gives that batch again. No
        ``except`` clause has to put a batch back, so no second Ctrl-C can land while it does.
        ``handed`` tells the caller the handover is its own to clear (another thread's call never
        touches the main thread's).
        """
        interrupts = deferred_sigint().__enter__()
        try:
            with self._lock:
                self._running = True
                try:
                    seq, batch, outcome = self._take(interrupts)  # handed over when deferring
                    handed = interrupts.deferring
                finally:
                    self._running = False
            if outcome.error_type is None:
                error = None
                result = (outcome.value,) if self._labels is None else (outcome.value, self._labels[batch.positions])
            else:
                error = _failure(batch, outcome)  # unpickling a worker's traceback: a Ctrl-C waits for it
        except BaseException:
            interrupts.finish()
            raise
        interrupts.finish()  # delivers a Ctrl-C recorded meanwhile: the batch stays handed over
        if error is None:
            return result, handed
        if handed:
            self._handover = None  # an error is delivered here: nothing runs a handler from here to the caller
        raise error

    def _take(self, interrupts: deferred_sigint) -> tuple[int, _Batch, Outcome]:
        """Wait for the next batch in plan order and take it off the queues. Under ``_lock``."""
        self._check_open()
        handover = self._handover
        # Read once; still the same after the check: the main thread clears a handover only inside
        # a delivering method, and a new one cannot be set while this call holds the lock.
        if handover is not None and self._handover_abandoned() and self._handover is handover:
            self._handover = None
            self._put_back(*handover)
        if self._started is None:
            self._started = time.perf_counter()
        self._fill()
        seq, batch = next(iter(self._inflight.items()))
        outcome = self._wait_for(seq, interrupts)
        if outcome.interrupted:  # the loader raised KeyboardInterrupt: load the batch again
            self._executor.submit(Task(seq, batch.ids, batch.entropy))
            cause = outcome.exception()
            raise KeyboardInterrupt(*getattr(cause, "args", ())) from cause
        if interrupts.deferring:  # set before the batch leaves _inflight: the cursor never skips it
            self._handover = (seq, batch, outcome)
        del self._inflight[seq]
        self._fill()  # keep workers busy while the caller trains on this batch
        self._batches += 1
        self._loader_s += outcome.load_s
        if self._warm is None and self._batches >= self._executor.n_workers:
            self._warm = _Mark(time.perf_counter(), self._batches, self._loader_s, self._wait_s,
                               self._loader_cpu_s(), procfs.idle_seconds(self._affinity))
        return seq, batch, outcome

    def _handover_abandoned(self) -> bool:
        """Whether the main thread's handed-over batch was never received: the call that took it
        raised (Ctrl-C) before clearing it. Under ``_lock``; runs only while a handover is pending."""
        main = _interrupts.main_ident()
        if main is None:
            return True
        if _thread.get_ident() == main:
            # This call is one delivery; one further up (a signal handler that called the generator
            # while a delivery was returning) would still own the handover.
            return self._deliveries(sys._getframe()) <= 1
        return self._deliveries(sys._current_frames().get(main)) == 0

    def _deliveries(self, frame: types.FrameType | None) -> int:
        """How many of this generator's delivering methods are running on *frame*'s stack."""
        count = 0
        while frame is not None:
            if frame.f_code in _DELIVERING:
                owner = frame.f_locals.get("self")
                if owner is self or getattr(owner, "_gen", None) is self:  # an EpochPass of this one
                    count += 1
            frame = frame.f_back
        return count

    def _put_back(self, seq: int, batch: _Batch, outcome: Outcome) -> None:
        """Undo :meth:`_take`: the batch is again the next one to deliver. Under ``_lock``."""
        self._inflight[seq] = batch
        self._inflight.move_to_end(seq, last=False)
        self._ready[seq] = outcome
        self._batches -= 1
        self._loader_s -= outcome.load_s

    def _wait_for(self, seq: int, interrupts: deferred_sigint) -> Outcome:
        """Wait for batch *seq*'s outcome; a recorded Ctrl-C is delivered between waits,
        where nothing is half done."""
        ready = self._ready
        if seq in ready:  # already here: no wait to time (the common case when workers keep ahead)
            return ready.pop(seq)
        serial = self._backend == "serial"
        start = time.perf_counter()
        cpu_start = time.thread_time() if serial else 0.0
        try:
            while seq not in ready:
                self._check_open()
                interrupts.check()
                outcome = self._executor.get(timeout=_POLL_S)
                if outcome is not None and outcome.seq in self._inflight:
                    ready[outcome.seq] = outcome
            return ready.pop(seq)
        finally:
            self._wait_s += time.perf_counter() - start
            if serial:  # the loader ran in these waits: its CPU time, for DataGenerator's stats
                self._serial_cpu_s += time.thread_time() - cpu_start

    def _fill(self) -> None:
        """Submit planned batches until ``prefetch`` are undelivered."""
        while len(self._inflight) < self._prefetch:
            epoch, step = self._submit_at
            positions = self._plan.batch_positions(epoch, step)  # computed per batch: no epoch-long array
            ids = self._ids_at(positions)
            entropy = tuple(self._plan.loader_seed(epoch, step)) if self._wants_rng else None
            seq = self._next_seq
            self._next_seq += 1
            self._inflight[seq] = _Batch(epoch, step, positions, ids, entropy)
            self._executor.submit(Task(seq, ids, entropy))
            self._submit_at = self._plan.next_cursor(epoch, step)

    def _ids_at(self, positions: np.ndarray) -> Any:
        """The batch's ids, read from the ids the caller gave (never copied whole): a numpy
        array (memory-mapped too) is fancy-indexed, any other sequence indexed id by id."""
        if isinstance(self._ids, np.ndarray):
            return self._ids[positions]
        return [self._ids[p] for p in positions.tolist()]

    def _cursor(self) -> tuple[int, int]:
        """(epoch, step) of the next batch to deliver. Read without ``_lock`` (a call may be
        waiting with it): a snapshot, retried if the queue changed under it."""
        while True:
            handover = self._handover  # a batch handed over, and not yet received, comes first
            if handover is not None:
                return handover[1].epoch, handover[1].step
            try:
                for head in self._inflight.values():
                    return head.epoch, head.step
                return self._submit_at
            except RuntimeError:  # changed size during iteration: another thread delivered a batch
                continue

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A small JSON-serialisable dict from which :meth:`load_state_dict` resumes.

        Works on a stopped generator too: it names the next batch the caller has not had.

        Returns:
            The position (``epoch``, ``step``), the ``seed`` and what the stream depends
            on (``n_ids``, ``batch_size``, ``shuffle``, ``drop_last``, ``rank``,
            ``world_size``), plus a format version (``awkgen_state``).

        >>> import awkgen
        >>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=4, seed=1)
        >>> _ = gen(); state = gen.state_dict()
        >>> state["epoch"], state["step"], state["seed"]
        (0, 1, 1)
        """
        epoch, step = self._cursor()
        state: dict[str, Any] = {"awkgen_state": _STATE_VERSION, "epoch": epoch, "step": step,
                                 "seed": self._plan.seed}
        state.update({key: getattr(self._plan, key) for key in _STATE_KEYS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next batch the one that came next when *state* was taken.

        The generator must have been built with the same ids, batch size, shuffle,
        drop_last and shard; workers and backend may differ. Batches already
        prefetched are discarded.

        Args:
            state: A dict from :meth:`state_dict` (it may have been through JSON).

        Raises:
            ValueError: *state* is not from :meth:`state_dict`, was taken from a generator
                with other ids or arguments, or names a position that does not exist.
            GeneratorStoppedError: The generator was stopped.

        >>> import awkgen
        >>> gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=4, seed=7)
        >>> _ = gen(); state = gen.state_dict(); expected = gen()
        >>> again = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=4, seed=0)
        >>> again.load_state_dict(state)
        >>> again() == expected, again.seed
        (True, 7)
        """
        version = state.get("awkgen_state") if isinstance(state, dict) else None
        if version == 1 and self._plan.shuffle and self._plan.n_ids > EXACT_MAX:
            raise ValueError(f"state is from an older awkgen (awkgen_state=1), whose shuffled order of more than "
                             f"{EXACT_MAX} ids differs from this one's: resuming would repeat and skip ids in its "
                             "epoch. Resume with the awkgen that saved it, or from the next epoch's start: "
                             "load_state_dict({**state, 'awkgen_state': 2, 'epoch': state['epoch'] + 1, 'step': 0})")
        if version not in (1, _STATE_VERSION):  # 1 and 2 give the same orders up to EXACT_MAX ids
            raise ValueError(f"state must be a dict from state_dict() (awkgen_state={_STATE_VERSION}); "
                             f"received: {state!r:.200}")
        for key in _STATE_KEYS:
            if state.get(key) != getattr(self._plan, key):
                raise ValueError(f"state[{key!r}] is {state.get(key)!r} but this generator has "
                                 f"{key}={getattr(self._plan, key)!r}: build the generator with "
                                 "the same ids and arguments as the one the state came from")
        cursor = []
        for key in ("epoch", "step", "seed"):
            value = state.get(key)
            if not is_int(value) or value < 0:  # a state is data: a wrong kind is a wrong value
                raise ValueError(f"state[{key!r}] must be a non-negative int; received: {value!r}")
            cursor.append(int(value))
        epoch, step, seed = cursor
        if step >= self._plan.steps_per_epoch:
            raise ValueError(f"state['step'] must be < steps_per_epoch={self._plan.steps_per_epoch}; "
                             f"received: {step}")
        with self._lock:
            self._check_open()
            self._executor.cancel()
            self._handover = None
            self._inflight.clear()
            self._ready.clear()
            if seed != self._plan.seed:
                self._plan = Plan(**{**asdict(self._plan), "seed": seed})
            self._submit_at = (epoch, step)

    # -- diagnostics ----------------------------------------------------------------
    def stats(self) -> GeneratorStats:
        """Batches delivered, loader time, time the caller waited, CPU use, and a verdict.

        The verdict leaves the warm-up out (the first ``n_workers`` batches: workers
        starting, first loads) and waits for a few batches after it. Then it is
        *compute-bound* when the caller spent at most a fifth of its time waiting for
        batches, else *input-bound*, and says whether more workers would help:

        - yes, when the workers are busy and CPUs are idle (the loader computes, or
          waits on storage: :attr:`GeneratorStats.loader_cpu` tells which);
        - no, when the loader computes and the CPUs this process may use are busy (the
          loader, the training loop and other programs share them): make the loader
          cheaper or give the process more CPUs;
        - it cannot tell when the CPUs are busy and the loader spends little of its
          time on a CPU: waiting on storage (more workers would help) looks the same
          from here as waiting for a CPU (they would not), and the verdict says so;
        - no, when the workers are mostly idle: the time goes to moving batches;
        - no, when threads run a loader that holds the GIL (all busy, one CPU's worth
          of work): ``backend="process"`` would help;
        - for :func:`~awkgen.DataGenerator`, the loader runs inside the training loop:
          a prefetching factory would overlap it.

        CPU times come from ``/proc``. Cheap, never waits (safe from a monitor thread
        while a call waits), and works on a stopped generator.

        Returns:
            A :class:`GeneratorStats` snapshot.
        """
        # No _lock: a call waiting for a slow batch holds it, and a monitor thread must not wait.
        now = time.perf_counter()
        elapsed = 0.0 if self._started is None else now - self._started
        ready = 0 if self._closed else len(self._ready) + self._executor.ready()
        in_flight = max(0, len(self._inflight) - ready)
        batches, wait_s, loader_s, warm = self._batches, self._wait_s, self._loader_s, self._warm
        n_workers = self._executor.n_workers
        loader_cpu = cpus_idle = None
        if warm is None:
            warmup_s = elapsed
            verdict = ("no batches delivered yet" if not batches else
                       f"warming up: {batches} of the first {n_workers} batches delivered")
        else:
            assert self._started is not None
            warmup_s = warm.at - self._started
            span = max(now - warm.at, 1e-9)
            loaded = loader_s - warm.loader_s
            cpu_now = None if self._closed else self._loader_cpu_s()
            if cpu_now is not None and warm.loader_cpu_s is not None and loaded > 0:
                loader_cpu = max(0.0, cpu_now - warm.loader_cpu_s) / loaded
            idle_now = procfs.idle_seconds(self._affinity)
            if idle_now is not None and warm.idle_s is not None:
                cpus_idle = min(float(self._cpus), max(0.0, idle_now - warm.idle_s) / span)
            verdict = self._verdict(batches - warm.batches, (wait_s - warm.wait_s) / span,
                                    loaded / span / n_workers, loader_cpu, cpus_idle)
        return GeneratorStats(batches, loader_s, wait_s, elapsed, ready, in_flight, n_workers, verdict,
                              warmup_s, self._cpus, loader_cpu, cpus_idle)

    def _verdict(self, batches: int, waiting: float, busy: float, loader_cpu: float | None,
                 cpus_idle: float | None) -> str:
        """The verdict on the time since the warm-up: *waiting* and *busy* are fractions of it
        (the caller waiting; each worker, on average, in the loader)."""
        if batches < _WARMUP_JUDGED_AFTER:
            return (f"warming up: {batches} batch(es) since the first {self.n_workers}; judged after "
                    f"{_WARMUP_JUDGED_AFTER}")
        if waiting <= _INPUT_BOUND_WAIT_FRACTION:
            return f"compute-bound: loading keeps up (the loop waited {waiting:.0%} of the time)"
        head = f"input-bound: the loop waited {waiting:.0%} of the time; "
        cpus = self._cpus
        computes = loader_cpu is None or loader_cpu >= _COMPUTES
        idle = cpus_idle is not None and cpus_idle >= _IDLE_CPUS
        if self._backend == "serial":
            if computes and not idle:
                return head + ("DataGenerator loads inside the loop and no CPU is idle: a prefetching factory "
                               "would help little; make the loader cheaper")
            return head + "DataGenerator loads inside the loop: DataGeneratorMultiProc would load ahead of it"
        if busy < _BUSY_WORKERS:
            return head + (f"the workers are idle {1 - busy:.0%} of the time, so more workers would not help: the "
                           "time goes to moving batches, not loading them (larger batches cost less per sample)")
        if loader_cpu is None:
            return head + "the workers are busy: more workers would help if the cluster has CPUs free"
        loading = self.n_workers * busy  # workers in the loader at once, on average
        if self._backend == "thread" and loading >= 1.8 and cpus > 1 and 0.7 <= loader_cpu * loading <= 1.3:
            return head + (f"{loading:.1f} threads load at once but use one CPU between them: a loader that holds "
                           "the GIL. More threads would not help; backend='process' would")
        if idle:
            why = "the loader mostly waits" if not computes else "the loader computes"
            return head + (f"the workers are busy, {why} ({loader_cpu:.0%} of its time on a CPU) and CPUs are idle "
                           f"({cpus_idle:.1f} of {cpus}): more workers would help")
        shown = "" if cpus_idle is None else f" ({cpus_idle:.1f} idle)"
        if computes:
            return head + (f"the loader computes ({loader_cpu:.0%} of its time on a CPU) and the {cpus} CPU(s) this "
                           f"process may use are busy{shown}: more workers would not help; make the loader "
                           "cheaper, or give the process more CPUs")
        if loader_cpu * loading >= 0.5 * cpus:  # the workers compete with each other for the CPUs
            return head + (f"{loading:.1f} workers load at once on {cpus} CPU(s) and keep "
                           f"{loader_cpu * loading:.1f} of them busy: they wait for the CPUs, not for storage, so "
                           "more workers would not help; make the loader cheaper, or give the process more CPUs")
        return head + (f"the workers are busy but the loader ran on a CPU only {loader_cpu:.0%} of its time, and "
                       f"the {cpus} CPU(s) are busy{shown}: if the loader waits on storage, more workers would "
                       "help; if other programs hold the CPUs, they would not")

    def _loader_cpu_s(self) -> float | None:
        """CPU seconds the loader has used so far: in the caller's waits (DataGenerator), in the
        worker threads or the worker processes; ``None`` on Ray (its workers run elsewhere)."""
        if self._backend == "serial":
            return self._serial_cpu_s
        total = 0.0
        if self._backend == "thread":
            me = os.getpid()
            for thread in list(getattr(self._executor, "_threads", ())):  # the pool's threads
                if thread.native_id is not None:
                    total += procfs.cpu_seconds(me, thread.native_id) or 0.0
            return total
        if self._backend == "process":
            for worker in list(getattr(self._executor, "_workers", ())):  # the pool's live worker processes
                pid = getattr(getattr(worker, "proc", None), "pid", None)
                if isinstance(pid, int):
                    total += procfs.cpu_seconds(pid) or 0.0
            return total
        return None

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers and free shared memory. Idempotent; later calls raise
        :class:`~awkgen.GeneratorStoppedError`.

        Never waits for a call in progress: safe from a signal handler or another
        thread, where a call waiting for a batch then raises
        :class:`~awkgen.GeneratorStoppedError`. Arrays already returned stay valid.
        ``gen(stop=True)``, :func:`~awkgen.CleanupGenerator` and leaving ``with gen:``
        do the same; so do garbage collection and interpreter exit.
        """
        if os.getpid() != self._pid:  # a forked child: the workers are the parent's
            self._closed = True
            self._finalizer.detach()
            return
        self._closed = True  # seen by a call waiting in another thread, without the lock
        self._finalizer.detach()
        # Never waits for _lock: close() may come from a signal handler that interrupted a call
        # holding it, or from another thread while a call waits; that call sees _closed and raises.
        self._executor.close()
        if not held_here(self._lock) and self._lock.acquire(blocking=False):
            try:
                self._drop_prefetched()  # their shared memory goes now
            finally:
                self._lock.release()

    def _drop_prefetched(self) -> None:
        """Forget batches loaded ahead, keeping the cursor: ``state_dict()`` after a stop still
        names the next batch the caller has not had. Under ``_lock``."""
        for head in self._inflight.values():
            self._submit_at = (head.epoch, head.step)
            break
        self._inflight.clear()
        self._ready.clear()

    def __enter__(self) -> BatchGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if _Process.pid != self._pid:  # os.getpid() is a system call; this runs twice a batch
            raise AwkgenError(f"this generator belongs to process {self._pid}, which built it; this is process "
                              f"{os.getpid()}, a child made by os.fork(). A generator's workers serve one "
                              "process: build a new generator in the child")
        if self._closed:
            self._drop_prefetched()
            raise GeneratorStoppedError("this generator was stopped (gen(stop=True), close() or CleanupGenerator); "
                                        "build a new one to load more batches")

    # -- bridges to frameworks (imported only when asked for) ----------------------------
    def as_keras(self) -> KerasStream:
        """A ``keras.utils.PyDataset`` of one epoch's steps: ``model.fit(gen.as_keras(), epochs=E)``.

        Returns:
            A ``keras.utils.PyDataset`` whose ``len`` is :attr:`steps_per_epoch`; see
            :func:`awkgen.frameworks.as_keras`.

        Raises:
            ImportError: Keras is not installed (``pip install "awkgen[keras]"``).
        """
        from .frameworks.keras import as_keras

        return as_keras(self)

    def as_torch(self) -> TorchStream:
        """An iterable of torch tensors, one epoch per pass, usable where a ``DataLoader`` is.

        A pass is :meth:`one_epoch`: after a ``break``, the next pass finishes that
        epoch, and the one after starts at an epoch boundary.

        Returns:
            A ``torch.utils.data.IterableDataset`` with ``len`` (:attr:`steps_per_epoch`);
            see :func:`awkgen.frameworks.as_torch`.

        Raises:
            ImportError: torch is not installed (``pip install "awkgen[torch]"``).
        """
        from .frameworks.torch import as_torch

        return as_torch(self)

    def as_tf(self) -> tf.data.Dataset[Any]:
        """A ``tf.data.Dataset`` of this generator's batches, one epoch per pass.

        Returns:
            A ``tf.data.Dataset`` of cardinality :attr:`steps_per_epoch`; see
            :func:`awkgen.frameworks.as_tf` (which also takes an ``output_signature``).

        Raises:
            ImportError: TensorFlow is not installed (``pip install "awkgen[tensorflow]"``).
        """
        from .frameworks.tensorflow import as_tf

        return as_tf(self)


#: The code of every method that delivers a batch and clears its handover (see
#: ``BatchGenerator._next_batch``): a main thread inside one of them has not abandoned it.
_DELIVERING = frozenset(method.__code__ for method in (
    BatchGenerator.__call__, BatchGenerator.__next__, BatchGenerator.get_batch, BatchGenerator.send,
    EpochPass.__next__))
