"""The four R-named factories: validate arguments, pick an executor, build a generator.

Every argument is checked here, before any worker starts, and a bad one raises
``TypeError`` (wrong kind) or ``ValueError`` (right kind, out of range) whose
message names the argument and the value received.
"""

from __future__ import annotations

import collections
import difflib
import functools
import inspect
import numbers
import secrets
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Generic, ParamSpec

import numpy as np

from ._checks import check_int
from .executors.base import Executor, usable_cpus
from .executors.serial import SerialExecutor
from .generator import BatchGenerator
from .sampling import Plan

__all__ = ["DataGenerator", "DataGeneratorNonblock", "DataGeneratorMultiProc", "CleanupGenerator"]

BACKENDS = ("process", "thread", "ray")
RAY_OPTIONS = ("address", "actor_options")
_P = ParamSpec("_P")


class _Factory(Generic[_P]):
    """An R-named factory: calling it builds a :class:`~awkgen.BatchGenerator`. It is not a class.

    Every factory builds the same class, so ``isinstance(x, DataGenerator)`` has no
    answer that would not mislead (is a ``DataGeneratorMultiProc`` generator one?),
    and ``awkgen.frameworks.DataGenerator`` is ART's interface of the same name. So
    ``isinstance`` and ``issubclass`` raise a ``TypeError`` that says what to use
    instead (a plain function would raise Python's "arg 2 must be a type").
    Otherwise it is the function it wraps: same signature, docstring, ``help()``,
    and it pickles by name.
    """

    def __init__(self, build: Callable[_P, BatchGenerator]) -> None:
        self._build = build
        functools.update_wrapper(self, build)

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> BatchGenerator:
        if not _has_var_keyword(self._build):
            for name in kwargs:
                _check_keyword(self._build, name)
        return self._build(*args, **kwargs)

    def __get__(self, obj: object, owner: type | None = None) -> _Factory[_P]:
        return self  # never bound as a method; also what makes inspect and pydoc see a routine

    def __instancecheck__(self, obj: object) -> bool:
        raise TypeError(self._not_a_class("isinstance"))

    def __subclasscheck__(self, cls: type) -> bool:
        raise TypeError(self._not_a_class("issubclass"))

    def _not_a_class(self, check: str) -> str:
        name = self._build.__name__
        return (f"{check}() cannot take awkgen.{name}: it is a factory function (the R package's name), not a "
                f"class. Every awkgen generator is an awkgen.BatchGenerator, whichever factory built it: use "
                f"{check}(..., awkgen.BatchGenerator); gen.backend ('serial' for DataGenerator) and gen.n_workers "
                "tell the kinds apart. awkgen.frameworks.DataGenerator is ART's abstract interface, which every "
                "awkgen generator also satisfies")

    def __reduce__(self) -> str:
        return self._build.__qualname__  # pickled by reference, as the function was

    def __repr__(self) -> str:
        return f"<awkgen factory {self._build.__module__}.{self._build.__qualname__}>"


@_Factory
def DataGenerator(loader: Callable[..., Any], sample_ids: Sequence[Any] | np.ndarray,
                  sample_cls: Any = None, batch_size: int = 32, *, shuffle: bool = True,
                  seed: int | None = None, drop_last: bool = False, rank: int = 0,
                  world_size: int = 1) -> BatchGenerator:
    """A blocking generator: each call runs ``loader`` on the next batch's ids.

    *loader* maps a batch of ids to data (any object); if it has a parameter named
    ``rng`` it also gets a :class:`numpy.random.Generator` seeded from ``(seed,
    epoch, step)``. *sample_cls* (optional) holds one label row per id.

    Args:
        loader: Maps a batch of ids to data (any object: an array, a tuple or dict of
            arrays, ...). It gets the batch's ids as a numpy array when *sample_ids* is
            one, else as a list of the original objects. If it has a parameter named
            ``rng`` it also gets a :class:`numpy.random.Generator` seeded from ``(seed,
            epoch, step, rank)``.
        sample_ids: The ids of every sample (a sequence or a numpy array), e.g. file paths. A
            ``range``, a numpy array (memory-mapped too) or any ``Sequence`` is read per batch,
            never copied; other iterables are read once into a list.
        sample_cls: Labels, one row per id (1-D labels, one-hot or multi-label rows), or
            ``None`` for batches without labels.
        batch_size: Ids per batch, at most the number of ids in this rank's shard.
        shuffle: Order each epoch by a permutation of the ids that depends only on
            ``(seed, epoch)``; ``False`` keeps their order.
        seed: The permutations' seed; ``None`` draws one (``gen.seed``). Required,
            the same on every rank, when ``world_size > 1``.
        drop_last: Leave out each epoch's last, short batch.
        rank: This process's shard, in ``[0, world_size)``.
        world_size: Processes that split each epoch into disjoint, equal shards
            (see :func:`~awkgen.shard_from_env`).

    Returns:
        An endless :class:`~awkgen.BatchGenerator`, whose ``gen()`` returns ``(x,)``,
        or ``(x, y)`` with labels.

    Raises:
        TypeError: An argument of the wrong kind (a loader that is not callable, a
            ``batch_size`` that is not an int, ...); the message names it and the value.
        ValueError: An argument out of range (empty ids, a ``batch_size`` larger than
            the shard, labels of another length than the ids, ...), or ``seed=None``
            with ``world_size > 1``.

    A failing loader raises :class:`~awkgen.LoaderError` from the call that wanted the
    batch, as with every factory (see :meth:`BatchGenerator.__call__
    <awkgen.BatchGenerator.__call__>`).

    >>> gen = DataGenerator(lambda ids: ids, [1, 2, 3, 4, 5, 6, 7], batch_size=3, shuffle=False)
    >>> [gen()[0] for _ in range(4)]
    [[1, 2, 3], [4, 5, 6], [7], [1, 2, 3]]

    With labels a call returns ``(x, y)``; ``y`` holds the batch's rows of *sample_cls*:

    >>> import numpy as np
    >>> gen = DataGenerator(lambda ids: ids * 10, np.arange(4), sample_cls=["a", "b", "c", "d"],
    ...                     batch_size=2, shuffle=False)
    >>> x, y = gen()
    >>> x.tolist(), y.tolist()
    ([0, 10], ['a', 'b'])
    >>> gen(stop=True)
    >>> gen()
    Traceback (most recent call last):
    ...
    awkgen.errors.GeneratorStoppedError: this generator was stopped ...

    ``DataGenerator`` (like every R-named factory) is a function, not a class: all of
    them return an :class:`awkgen.BatchGenerator`, which is what ``isinstance`` should
    test; asking ``isinstance(gen, DataGenerator)`` raises a ``TypeError`` that says so.

    >>> import awkgen
    >>> isinstance(gen, awkgen.BatchGenerator), gen.backend
    (True, 'serial')
    >>> isinstance(gen, DataGenerator)
    Traceback (most recent call last):
    ...
    TypeError: isinstance() cannot take awkgen.DataGenerator: it is a factory function ...
    """
    prepared = _prepare(loader, sample_ids, sample_cls, batch_size, shuffle, seed, drop_last, rank, world_size)
    return _build(prepared, SerialExecutor(loader), prefetch=1, backend="serial")


@_Factory
def DataGeneratorMultiProc(loader: Callable[..., Any], sample_ids: Sequence[Any] | np.ndarray,
                           sample_cls: Any = None, batch_size: int = 32, n_workers: int | None = None,
                           *, backend: str = "process", prefetch: int | None = None,
                           timeout: float | None = None, shuffle: bool = True, seed: int | None = None,
                           drop_last: bool = False, rank: int = 0, world_size: int = 1,
                           **backend_options: Any) -> BatchGenerator:
    """A prefetching generator: *n_workers* workers run the loader ahead of the caller.

    Gives exactly the batches :func:`DataGenerator` gives with the same arguments.
    *n_workers* defaults to the CPUs this process may run on (its affinity mask, as
    ``os.process_cpu_count()`` in Python 3.13; ``taskset -c 0`` gives 1); *backend* is ``"process"`` (default),
    ``"thread"`` or ``"ray"``; *prefetch* bounds the batches in flight (default
    ``2 * n_workers``); *timeout* bounds one loader call in seconds. Extra keyword
    arguments go to the backend: ``address=`` and ``actor_options=`` for Ray.

    Args:
        loader: Maps a batch of ids to data (any object: an array, a tuple or dict of
            arrays, ...). It gets the batch's ids as a numpy array when *sample_ids* is
            one, else as a list of the original objects. If it has a parameter named
            ``rng`` it also gets a :class:`numpy.random.Generator` seeded from ``(seed,
            epoch, step, rank)``.
        sample_ids: The ids of every sample (a sequence or a numpy array), e.g. file paths. A
            ``range``, a numpy array (memory-mapped too) or any ``Sequence`` is read per batch,
            never copied; other iterables are read once into a list.
        sample_cls: Labels, one row per id (1-D labels, one-hot or multi-label rows), or
            ``None`` for batches without labels.
        batch_size: Ids per batch, at most the number of ids in this rank's shard.
        n_workers: Workers running the loader; ``None``: the CPUs this process may run on.
        backend: ``"process"`` (worker processes, arrays through shared memory),
            ``"thread"`` (for loaders that release the GIL) or ``"ray"`` (Ray actors).
        prefetch: Most batches in flight at once; ``None``: ``2 * n_workers``.
        timeout: Most seconds one loader call may take before its batch fails with
            :class:`~awkgen.LoaderTimeoutError` and its worker is replaced; ``None``: no limit.
        shuffle: Order each epoch by a permutation of the ids that depends only on
            ``(seed, epoch)``; ``False`` keeps their order.
        seed: The permutations' seed; ``None`` draws one (``gen.seed``). Required,
            the same on every rank, when ``world_size > 1``.
        drop_last: Leave out each epoch's last, short batch.
        rank: This process's shard, in ``[0, world_size)``.
        world_size: Processes that split each epoch into disjoint, equal shards
            (see :func:`~awkgen.shard_from_env`).
        **backend_options: ``address=`` and ``actor_options=`` for ``backend="ray"``;
            no other backend takes any.

    Returns:
        An endless :class:`~awkgen.BatchGenerator`, whose ``gen()`` returns ``(x,)``,
        or ``(x, y)`` with labels.
        Its workers start at once; stop it with ``gen(stop=True)``, ``close()`` or ``with``.

    Raises:
        TypeError: An argument of the wrong kind (a loader that is not callable, a
            ``batch_size`` that is not an int, ...); the message names it and the value.
        ValueError: An argument out of range (empty ids, a ``batch_size`` larger than
            the shard, labels of another length than the ids, ...), or ``seed=None``
            with ``world_size > 1``.
        ImportError: ``backend="ray"`` without Ray installed (``pip install "awkgen[ray]"``).

    >>> with DataGeneratorMultiProc(lambda ids: ids, list(range(7)), batch_size=3,
    ...                             n_workers=2, backend="thread", shuffle=False) as gen:
    ...     [gen()[0] for _ in range(4)]
    [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]]
    """
    prepared = _prepare(loader, sample_ids, sample_cls, batch_size, shuffle, seed, drop_last, rank, world_size)
    if n_workers is None:
        n_workers = usable_cpus()
    check_int("n_workers", n_workers, minimum=1)
    if prefetch is None:
        prefetch = 2 * n_workers
    check_int("prefetch", prefetch, minimum=1)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be None or a number of seconds; received: {timeout!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; received: {timeout!r}")
        timeout = float(timeout)
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; received: {backend!r}")
    executor = _make_executor(backend, loader, n_workers, prefetch, timeout, backend_options)
    return _build(prepared, executor, prefetch=prefetch, backend=backend)


@_Factory
def DataGeneratorNonblock(loader: Callable[..., Any], sample_ids: Sequence[Any] | np.ndarray,
                          sample_cls: Any = None, batch_size: int = 32, **kwargs: Any) -> BatchGenerator:
    """``DataGeneratorMultiProc(..., n_workers=1)``: load the next batch while the caller works.

    Args:
        loader: As for :func:`DataGenerator`.
        sample_ids: As for :func:`DataGenerator`.
        sample_cls: As for :func:`DataGenerator`.
        batch_size: As for :func:`DataGenerator`.
        **kwargs: Any other keyword argument of :func:`DataGeneratorMultiProc` but
            ``n_workers``: ``backend``, ``prefetch``, ``timeout``, ``shuffle``, ``seed``, ...

    Returns:
        An endless :class:`~awkgen.BatchGenerator`, whose ``gen()`` returns ``(x,)``,
        or ``(x, y)`` with labels.
        with one worker, loading the next batch while the caller works on this one.

    Raises:
        TypeError: An argument of the wrong kind (a loader that is not callable, a
            ``batch_size`` that is not an int, ...); the message names it and the value.
        ValueError: An argument out of range (empty ids, a ``batch_size`` larger than
            the shard, labels of another length than the ids, ...), or ``seed=None``
            with ``world_size > 1``.
        TypeError: ``n_workers`` was given: this factory always uses one worker.

    >>> with DataGeneratorNonblock(lambda ids: ids, [1, 2, 3], batch_size=2, shuffle=False,
    ...                            backend="thread") as gen:
    ...     gen(), gen(), gen.n_workers
    (([1, 2],), ([3],), 1)
    """
    if "n_workers" in kwargs:
        raise TypeError("DataGeneratorNonblock always uses one worker; received: "
                        f"n_workers={kwargs['n_workers']!r} (use DataGeneratorMultiProc for more)")
    return DataGeneratorMultiProc(loader, sample_ids, sample_cls, batch_size, n_workers=1, **kwargs)


def CleanupGenerator(gen: BatchGenerator) -> None:
    """Stop *gen*: its workers exit and its shared memory is freed. Idempotent.

    The R package's name for ``gen(stop=True)`` and ``gen.close()``. Arrays already
    returned stay valid; later calls of *gen* raise :class:`~awkgen.GeneratorStoppedError`.

    Args:
        gen: A generator made by an awkgen factory.

    Returns:
        ``None``.

    Raises:
        TypeError: *gen* is not an awkgen generator.

    >>> gen = DataGenerator(lambda ids: ids, [1, 2], batch_size=1)
    >>> CleanupGenerator(gen); CleanupGenerator(gen)
    >>> gen.closed
    True
    """
    if not isinstance(gen, BatchGenerator):
        raise TypeError(f"gen must be a generator made by an awkgen factory; received: {gen!r:.100}")
    gen.close()


# -- internals -------------------------------------------------------------------------

class _Prepared:
    __slots__ = ("loader", "ids", "labels", "plan", "wants_rng")

    def __init__(self, loader: Callable[..., Any], ids: Any, labels: np.ndarray | None, plan: Plan,
                 wants_rng: bool) -> None:
        self.loader, self.ids, self.labels, self.plan, self.wants_rng = loader, ids, labels, plan, wants_rng


def _build(p: _Prepared, executor: Executor, prefetch: int, backend: str) -> BatchGenerator:
    return BatchGenerator(p.loader, p.ids, p.labels, p.plan, executor, prefetch, p.wants_rng, backend)


def _prepare(loader: Any, sample_ids: Any, sample_cls: Any, batch_size: Any, shuffle: Any, seed: Any,
             drop_last: Any, rank: Any, world_size: Any) -> _Prepared:
    if not callable(loader):
        raise TypeError(f"loader must be a callable taking a batch of ids; received: {loader!r:.100} "
                        f"({type(loader).__name__})")
    ids = _check_ids(sample_ids)
    n_ids = len(ids)
    labels = _check_labels(sample_cls, n_ids)
    _check_bool("shuffle", shuffle)
    _check_bool("drop_last", drop_last)
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}); received: rank={rank!r}")
    check_int("batch_size", batch_size, minimum=1)
    shard = n_ids // world_size
    if batch_size > shard:
        if world_size == 1:
            raise ValueError(f"batch_size must be at most the number of ids ({n_ids}); "
                             f"received: batch_size={batch_size}")
        raise ValueError(f"each shard holds {shard} ids ({n_ids} ids // world_size={world_size}), fewer "
                         f"than one batch: received batch_size={batch_size}")
    if seed is None:
        if world_size > 1 and shuffle:
            raise ValueError(f"seed must be given, the same on every rank, when world_size > 1 (received "
                             f"seed=None, world_size={world_size}): ranks that each draw their own seed "
                             "shuffle differently and their shards overlap")
        seed = secrets.randbits(63)
    else:
        check_int("seed", seed, minimum=0)
    plan = Plan(n_ids=n_ids, batch_size=int(batch_size), shuffle=bool(shuffle), seed=int(seed),
                drop_last=bool(drop_last), rank=int(rank), world_size=int(world_size))
    wants_rng = _takes_rng(loader)
    _check_loader_signature(loader, wants_rng)
    return _Prepared(loader, ids, labels, plan, wants_rng)


def _check_ids(sample_ids: Any) -> Any:
    if isinstance(sample_ids, np.ndarray):
        if sample_ids.ndim == 0:
            raise TypeError(f"sample_ids must be a sequence of ids; received a 0-d array: {sample_ids!r}")
        ids: Any = sample_ids
    elif isinstance(sample_ids, (str, bytes)):
        raise TypeError(f"sample_ids must be a sequence of ids, not a single {type(sample_ids).__name__}; "
                        f"received: {sample_ids!r:.100}")
    elif isinstance(sample_ids, (Mapping, Set)):
        raise TypeError("sample_ids must be an ordered sequence (list, tuple, range, numpy array); received "
                        f"a {type(sample_ids).__name__}, whose order is not reproducible")
    elif isinstance(sample_ids, Sequence) and not isinstance(sample_ids, collections.deque):
        ids = sample_ids  # lazy: indexed per batch, never copied (a deque's indexing is linear: copied below)
    else:
        try:
            ids = list(sample_ids)  # an iterator, a generator, a pandas Series, ...: read once, kept as a list
        except TypeError:
            raise TypeError(f"sample_ids must be a sequence of ids; received: {sample_ids!r:.100} "
                            f"({type(sample_ids).__name__})") from None
    if len(ids) == 0:
        raise ValueError(f"sample_ids must not be empty; received: {sample_ids!r:.100}")
    return ids


def _check_labels(sample_cls: Any, n_ids: int) -> np.ndarray | None:
    if sample_cls is None:
        return None
    labels = np.asarray(sample_cls)
    if labels.ndim == 0:
        raise TypeError(f"sample_cls must hold one label (row) per id; received a scalar: {sample_cls!r:.100}")
    if len(labels) != n_ids:
        raise ValueError(f"sample_cls must have one row per id ({n_ids}); received {len(labels)} rows")
    return labels


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; received: {value!r}")


def _takes_rng(loader: Callable[..., Any]) -> bool:
    """Whether awkgen passes ``rng=``: the loader has a parameter of that name.

    One bound by the caller (``functools.partial(loader, rng=...)``) is refused: awkgen
    would pass its own, silently replacing it, and one generator shared by every worker
    process would not be reproducible anyway (each worker gets a copy of its state).
    """
    if isinstance(loader, functools.partial) and "rng" in loader.keywords:
        raise ValueError(f"loader binds rng={loader.keywords['rng']!r:.60} with functools.partial; awkgen passes "
                         "each call its own rng, seeded from (seed, epoch, step), the same whatever the workers "
                         "or backend. Leave rng unbound to use it, or give the loader's parameter another name "
                         "to keep your own generator")
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    param = params.get("rng")
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


@functools.cache
def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _has_var_keyword(function: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


# Names other loaders use for awkgen's arguments.
_ALIASES = {"num_workers": "n_workers", "workers": "n_workers", "labels": "sample_cls", "y": "sample_cls",
            "ids": "sample_ids", "x": "sample_ids", "batchsize": "batch_size", "prefetch_factor": "prefetch",
            "random_state": "seed", "drop_remainder": "drop_last", "use_multiprocessing": "backend"}


def _did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    alias = _ALIASES.get(name)
    if alias in candidates:
        return alias
    close = difflib.get_close_matches(name, [c for c in candidates if not c.startswith("_")], n=1, cutoff=0.6)
    return close[0] if close else None


def _check_keyword(build: Callable[..., Any], name: str) -> None:
    """Refuse an unknown keyword argument with a suggestion ("did you mean n_workers?")."""
    own = _parameters(build)
    if name in own:
        return
    message = f"{build.__name__}() got an unexpected keyword argument {name!r}"
    suggestion = _did_you_mean(name, own)
    if suggestion is not None:
        raise TypeError(f"{message}; did you mean {suggestion}?")
    pooled = _did_you_mean(name, _parameters(DataGeneratorMultiProc._build))
    if pooled is not None:
        raise TypeError(f"{message}; {build.__name__} loads in the calling process, without workers: did you "
                        f"mean DataGeneratorMultiProc(..., {pooled}=...)?")
    raise TypeError(f"{message}; it takes {', '.join(own)}")


def _unknown_options(backend: str, unknown: Sequence[str], allowed: Sequence[str]) -> str:
    """The message for keyword arguments that no parameter and no backend option takes."""
    takes = f"takes the options {tuple(allowed)}" if allowed else "takes no extra options"
    hints = []
    for name in unknown:
        suggestion = _did_you_mean(name, (*_parameters(DataGeneratorMultiProc._build), *allowed))
        if suggestion is not None:
            hints.append(f"{name!r}: did you mean {suggestion}?")
    lead = f"unexpected keyword argument {'; '.join(hints)} " if hints else ""
    return f"{lead}backend={backend!r} {takes}; received: {sorted(unknown)}"


def _check_loader_signature(loader: Callable[..., Any], wants_rng: bool) -> None:
    """The loader must take the batch's ids as one positional argument (and ``rng=`` by keyword,
    if it has that parameter): checked now, where its signature can be read, not at its first call."""
    try:
        signature = inspect.signature(loader)
    except (TypeError, ValueError):  # builtins and extension types without a signature: found at the call
        return
    try:
        if wants_rng:
            signature.bind(None, rng=None)
        else:
            signature.bind(None)
    except TypeError as exc:
        name = getattr(loader, "__qualname__", None) or type(loader).__name__
        calls = "loader(ids, rng=rng)" if wants_rng else "loader(ids)"
        raise TypeError(f"loader must take a batch of ids as one positional argument (awkgen calls {calls}); "
                        f"received {name}{signature}, which cannot be called so: {exc}") from None


def _make_executor(backend: str, loader: Callable[..., Any], n_workers: int, prefetch: int,
                   timeout: float | None, options: dict[str, Any]) -> Executor:
    if backend == "thread":
        from .executors.thread import ThreadExecutor

        _no_options(backend, options)
        return ThreadExecutor(loader, n_workers, timeout)
    if backend == "process":
        from .executors.process import ProcessExecutor

        _no_options(backend, options)
        return ProcessExecutor(loader, n_workers, prefetch, timeout)
    from .executors.ray import RayExecutor

    unknown = sorted(set(options) - set(RAY_OPTIONS))
    if unknown:
        raise TypeError(_unknown_options(backend, unknown, RAY_OPTIONS))
    return RayExecutor(loader, n_workers, prefetch, timeout, **options)


def _no_options(backend: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(_unknown_options(backend, sorted(options), ()))

