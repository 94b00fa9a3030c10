"""Shared-memory ring for numpy batches; the result codec every remote backend uses.

A worker's result is pickled whole (:func:`encode_result`), except its plain numpy
arrays, wherever they sit in it: their bytes are copied once into a *slot*, a file in
``/dev/shm`` mapped by both sides, and the parent hands out arrays that are views of
that mapping (:func:`load_result`): no pickling of array data, no pipe, no second copy.
Results whose arrays hold under :data:`MIN_SHM_BYTES` in all travel in the reply's
*blob*, laid out the same way. The Ray backend's actors on the driver's own node write
into the driver's slots the same way; its actors on other nodes use the same codec with one
buffer per array (``separate=True``), sent through Ray's object store.

**Fidelity** (what the SPEC promises: the parent gets what the serial loader returns):
the object graph is pickle's, so every node's Python type and every shared reference
(the same array or list returned twice) survive; an array keeps its values bit for bit,
its dtype, shape, write flag and layout (C, Fortran and every other dense layout keep
their exact strides; a view with gaps or negative strides arrives dense in the same axis
order, as numpy's ``copy(order="K")``: the bytes between its elements are not part of the
result). Distinct arrays that are views of one buffer arrive as separate arrays, except
those built with :func:`empty`, which stay views of the one slot.

**No copy overwrites another's source** (:func:`write_arrays`): arrays are laid out from
the end of what :func:`empty` handed out, so none lands on an array built in place; a
source that lies where a copy will write (only an array kept from an earlier call can)
is copied out first; a result whose layout does not fit the slot goes to the blob, never
to a second layout in the same slot.

Ownership (the matching trio :func:`create_segment` / :func:`attach_segment` /
:func:`unlink_segment`): the **parent** creates, sizes and unlinks every segment;
a **worker** only attaches to the slot named in its task and writes into it.
A slot is reused once every array viewing it has been garbage-collected: each
delivered batch holds a :class:`_Lease` (the arrays' ``base``) whose finalizer
returns the slot to the ring. Arrays a caller keeps stay valid, even after the
generator is stopped and the segment unlinked (a mapping outlives its name).

Segments are files named ``awkgen-<parent pid>-<pool>-<n>`` in :func:`shm_dir`
(``/dev/shm``, or ``$AWKGEN_SHM_DIR`` to use another tmpfs); tasks carry their full
path.

Who may remove a segment (the directory is shared by every user and container on the
host, so a pid number alone proves nothing: another PID namespace reuses it):

- every pool holds an exclusive ``flock`` on its *lock file* ``awkgen-<pid>-<pool>.lock``
  for as long as it lives; the kernel releases it when the last descriptor of the
  owner goes, however it died, and it is visible across PID namespaces;
- a pool starting up (:func:`reclaim_orphans`) removes a pool's segments and lock file
  only if it can take that lock itself: the owner is gone. No lock file, a lock it
  cannot open (another user's), a name that is not awkgen's or not a regular file:
  left alone. A file it cannot remove (``EPERM``, ``EACCES``) or another user's file
  under the pool's name is skipped, the rest still removed; the lock file goes last,
  once every file of the pool's owner is gone;
- a worker that sees its parent die removes that parent's pools the same way;
- the lock file is created under a hidden name, locked, then renamed into place, so no
  one ever sees it unlocked while its owner lives. ``os.fork()`` children drop their
  copy of the lock (an inherited descriptor would keep the lock held).

Arrays built in place (:func:`empty`): a loader on the process backend (or on a Ray actor
on the driver's node) may ask for its output arrays with ``awkgen.empty(shape, dtype)``;
while it runs, the worker holds the task's slot as an :class:`_Arena` (module global
:data:`_arena`, set and cleared by the thread that runs the loader, around its call) and
``empty`` carves aligned pieces out of it, so the result is already where the parent reads
it and :func:`write_arrays` skips the copy. Everywhere else (the thread and serial
backends, Ray actors on other nodes, a task without a slot, a request that does not fit)
``empty`` is ``numpy.empty``. A carved array that outlives the
loader call (kept in a cache, or by a thread of the loader's) is noticed
(:meth:`_Arena.outlived`): the batch is copied out of the slot into the reply and the
parent retires the slot, so a later write to that array can never reach a batch.

>>> data, layout = encode_result({"x": np.zeros((2, 3)), "n": 5})
>>> blob = bytearray(layout.nbytes); write_arrays(blob, layout)
>>> load_result(data, np.frombuffer(blob, dtype=np.uint8))
{'x': array([[0., 0., 0.],
       [0., 0., 0.]]), 'n': 5}
"""

from __future__ import annotations

import collections
import errno
import fcntl
import io
import logging
import mmap
import os
import pickle
import stat
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dill
import numpy as np

__all__ = ["shm_dir", "MIN_SHM_BYTES", "SlotRef", "SlotRing", "Layout", "encode_result", "write_arrays",
           "load_result", "separate_buffers", "attach_segment", "reclaim_orphans", "shm_available", "empty"]

logger: logging.Logger = logging.getLogger("awkgen")
DEFAULT_SHM_DIR = "/dev/shm"
PREFIX = "awkgen-"
#: Below this many array bytes a result is pickled: a pipe is cheaper than a slot.
MIN_SHM_BYTES = 64 * 1024
_ALIGN = 64
_GROWTH = 1.25  # a slot that proved too small is replaced by one this much larger
_RECENT = 32  # results the slot size follows: an outlier stops pinning memory this many batches later
#: /dev/shm must have this much free space at pool start, or the pool pickles everything.
MIN_FREE_SHM_BYTES = 64 * 1024 * 1024
_NAME_TRIES = 16  # segment names tried before giving up on a directory full of planted names


@dataclass(frozen=True)
class SlotRef:
    """The slot a task's arrays go to, as the worker sees it: a file path and its size."""

    path: str
    capacity: int


# -- the segment trio -----------------------------------------------------------------

def shm_dir() -> str:
    """Where segments live: ``$AWKGEN_SHM_DIR`` if set, else ``/dev/shm``."""
    return os.environ.get("AWKGEN_SHM_DIR", DEFAULT_SHM_DIR)


def create_segment(path: str, nbytes: int) -> mmap.mmap:
    """Create the segment file *path* with *nbytes* reserved and map it (parent only).

    Space is reserved up front (``posix_fallocate``), so a full ``/dev/shm``
    fails here with ``OSError(ENOSPC)`` instead of crashing a worker with SIGBUS.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, nbytes)
        return mmap.mmap(fd, nbytes)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def attach_segment(path: str) -> mmap.mmap:
    """Map an existing segment (worker side)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def unlink_segment(path: str) -> None:
    """Remove a segment's name; mappings stay valid until dropped. Missing is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def shm_available(directory: str) -> bool:
    return os.path.isdir(directory) and os.access(directory, os.W_OK)


def shm_free_bytes(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


_LOCK_SUFFIX = ".lock"


def _lock_within(fd: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def lock_pool(directory: str, key: str) -> int:
    """Create and lock pool *key*'s lock file in *directory*; return its descriptor (keep it open)."""
    hidden = os.path.join(directory, f".{key}{_LOCK_SUFFIX}")
    fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, os.path.join(directory, key + _LOCK_SUFFIX))
    except BaseException:
        os.close(fd)
        unlink_segment(hidden)
        raise
    return fd


def reclaim_orphans(directory: str, pid: int | None = None, wait_s: float = 0.0) -> list[str]:
    """Unlink the segments and lock files of pools whose owner is gone (their lock can be
    taken); only pools of process *pid* when given, trying each lock for up to *wait_s*
    (a killed process shows as a zombie while its last threads still close its files).
    Returns the names removed.

    Never raises, and one file it cannot remove stops nothing else: a pool's file owned by
    another user (a planted name) is left alone, one that cannot be unlinked (``EPERM`` in
    a sticky directory, ``EACCES`` in a read-only one) is skipped, and the rest of that pool
    and every other pool are still reclaimed. The lock file goes last, and only once all of
    its pool's own files are gone, so a later pool retries what was left.
    """
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX)]
    except OSError:
        return []
    pools: dict[str, list[str]] = collections.defaultdict(list)
    for name in names:
        key = name[:-len(_LOCK_SUFFIX)] if name.endswith(_LOCK_SUFFIX) else name.rpartition("-")[0]
        pools[key].append(name)
    mine = None if pid is None else f"{PREFIX}{pid}-"
    uid = os.getuid()
    removed: list[str] = []
    for key, members in pools.items():
        lock_name = key + _LOCK_SUFFIX
        if lock_name not in members or (mine is not None and not key.startswith(mine)):
            continue
        try:
            fd = os.open(os.path.join(directory, lock_name), os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # someone else's, or gone meanwhile
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:  # not ours to judge
                continue
            try:
                _lock_within(fd, wait_s)
            except OSError:  # held: its owner lives
                continue
            kept = False
            for name in members:
                if name != lock_name:
                    kept |= not _unlink_ours(directory, name, uid, removed)
            if not kept:
                _unlink_ours(directory, lock_name, uid, removed)
        finally:
            os.close(fd)
    return removed


def _unlink_ours(directory: str, name: str, uid: int, removed: list[str]) -> bool:
    """Unlink *name* if it is a regular file of user *uid* (added to *removed*); False if one
    of ours is still there (it could not be unlinked). Another user's file counts as done."""
    path = os.path.join(directory, name)
    try:
        info = os.lstat(path)
    except FileNotFoundError:  # gone meanwhile
        return True
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:  # a planted name, a link, a directory
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError as exc:  # EPERM (sticky directory), EACCES (read-only one), EBUSY...
        logger.debug("awkgen: could not remove %s, left from a dead pool (%s)", path, exc)
        return False
    removed.append(name)
    return True


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def _pages(nbytes: int) -> int:
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


# -- results: pickled whole, arrays laid out as raw bytes ------------------------------------
#
# A result is pickled as one object graph (so every Python type, namedtuple, dict subclass and
# shared reference comes back as the loader built it); plain numpy arrays anywhere in it are
# swapped, by the pickler's ``reducer_override``, for a call to :func:`_array_view` that
# names where their bytes lie. Pickle's memo sees each array object once: the same array
# returned twice is one array again in the parent (aliasing kept). What an array keeps:
#
# - values bit for bit, dtype (byte order, fields, metadata), shape;
# - its layout: C order; Fortran order and every other *dense* layout (transposes: the
#   elements fill their span exactly) keep their exact strides; a view with gaps or negative
#   strides (``a[::2]``, ``a[::-1]``) arrives dense, in the same axis order (as numpy's
#   ``copy(order="K")``): the bytes between its elements are not part of the result;
# - its write flag (a read-only array arrives read-only, a writable one writable).
#
# Arrays of objects, and ndarray subclasses (masked arrays, ``np.matrix``), are pickled as
# numpy pickles them.

def _dtype_token(dtype: np.dtype[Any]) -> Any:
    """The dtype as its string when that says it all (a few bytes on the wire), else itself."""
    return dtype.str if dtype.fields is None and dtype.subdtype is None and dtype.metadata is None else dtype


def _dense(array: np.ndarray) -> bool:
    """Whether *array*'s elements fill the bytes from its first element on, with no gap, all strides >= 0."""
    span = array.itemsize
    for n, s in zip(array.shape, array.strides):
        if n > 1:
            if s < 0:
                return False
            span += (n - 1) * s
    return span == array.nbytes


def _k_strides(array: np.ndarray) -> tuple[int, ...]:
    """Dense strides in *array*'s axis order (numpy's ``order="K"``: axes by decreasing |stride|)."""
    order = sorted(range(array.ndim), key=lambda axis: -abs(array.strides[axis]))
    strides = [0] * array.ndim
    step = array.itemsize
    for axis in reversed(order):
        strides[axis] = step
        step *= array.shape[axis]
    return tuple(strides)


def layout_strides(array: np.ndarray) -> tuple[int, ...] | None:
    """The strides *array*'s copy gets: ``None`` for C order (the common case, rebuilt by a
    reshape), its own for any other dense layout, dense ones in its axis order otherwise."""
    if array.flags.c_contiguous or array.size == 0:
        return None
    return array.strides if _dense(array) else _k_strides(array)


def _byte_range(array: np.ndarray) -> tuple[int, int]:
    """The addresses ``[low, high)`` *array*'s elements lie within."""
    low = high = int(array.ctypes.data)
    for n, s in zip(array.shape, array.strides):
        if n > 1:
            if s < 0:
                low += (n - 1) * s
            else:
                high += (n - 1) * s
    return low, high + array.itemsize


class Layout:
    """Where the arrays of one result go: filled by the pickler, then written by :func:`write_arrays`.

    *placed* names arrays already where they belong (built in the slot by :func:`empty`):
    their offset, else ``None``; the others are laid out from *start* on, aligned. With
    *separate*, each array gets a buffer of its own (the Ray backend's object store) and its
    "offset" is its index in :attr:`writes`; :attr:`nbytes` is still what a slot for them needs.
    """

    __slots__ = ("writes", "nbytes", "placed", "separate")

    def __init__(self, placed: Callable[[np.ndarray], int | None] | None = None, start: int = 0,
                 separate: bool = False) -> None:
        self.writes: list[tuple[np.ndarray, int, tuple[int, ...] | None]] = []  # (array, offset, strides)
        self.nbytes: int = start
        self.placed: Callable[[np.ndarray], int | None] | None = placed
        self.separate: bool = separate

    def add(self, array: np.ndarray) -> tuple[Any, ...]:
        """Lay *array* out; return the reduce tuple that rebuilds it in the parent."""
        nbytes = array.nbytes
        strides = layout_strides(array)
        where = None
        if nbytes and self.placed is not None and (strides is None or strides == array.strides):
            where = self.placed(array)
        if where is None and nbytes:
            where = len(self.writes) if self.separate else self.nbytes
            self.nbytes += _aligned(nbytes)  # with separate too: what a slot for these arrays needs
            self.writes.append((array, where, strides))
        args = (where or 0, array.shape, _dtype_token(array.dtype), nbytes, strides, array.flags.writeable)
        return (_array_view, args)


def _reduce_array(layout: Layout, array: np.ndarray) -> Any:
    """How the result pickler reduces a plain ndarray: its bytes laid out (:meth:`Layout.add`),
    or, for an array of objects, numpy's own pickle (which keeps Fortran order) plus its
    write flag, which numpy's pickle of object arrays drops."""
    if not array.dtype.hasobject:
        return layout.add(array)
    if array.flags.writeable:
        return NotImplemented
    return (_read_only, (array.copy(order="K"),))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class _Reduced:
    """Pickles as the reduce tuple it holds (:func:`encode_result`'s path for one plain array)."""

    __slots__ = ("reduce",)

    def __init__(self, reduce: tuple[Any, ...]) -> None:
        self.reduce = reduce

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduce


class _ResultPickler(pickle.Pickler):
    def __init__(self, file: Any, layout: Layout) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.layout = layout

    def reducer_override(self, obj: Any) -> Any:
        return _reduce_array(self.layout, obj) if type(obj) is np.ndarray else NotImplemented


class _DillResultPickler(dill.Pickler):  # type: ignore[misc]
    """The fallback for results plain pickle refuses (lambdas, closures): the same array rule."""

    def __init__(self, file: Any, layout: Layout) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.layout = layout

    def reducer_override(self, obj: Any) -> Any:
        return _reduce_array(self.layout, obj) if type(obj) is np.ndarray else NotImplemented


def encode_result(value: Any, placed: Callable[[np.ndarray], int | None] | None = None, start: int = 0,
                  separate: bool = False) -> tuple[bytes, Layout]:
    """Pickle *value* with its plain arrays swapped for references; return the pickle and the
    :class:`Layout` of those arrays (see :class:`Layout` for *placed*, *start*, *separate*).
    Raises what pickling raises when even dill cannot pickle the rest.

    >>> data, layout = encode_result({"x": np.zeros((2, 3)), "n": 5})
    >>> layout.nbytes, len(layout.writes)  # 48 bytes, aligned to 64
    (64, 1)
    """
    layout = Layout(placed, start, separate)
    if type(value) is np.ndarray and not value.dtype.hasobject and isinstance(_dtype_token(value.dtype), str):
        # The commonest result, one plain array: its reference pickled alone, the same bytes as
        # the result pickler's, without a pickler calling back into Python for every object.
        return pickle.dumps(_Reduced(layout.add(value)), protocol=pickle.HIGHEST_PROTOCOL), layout
    buffer = io.BytesIO()
    try:
        _ResultPickler(buffer, layout).dump(value)
    except Exception:
        layout = Layout(placed, start, separate)
        buffer = io.BytesIO()
        _DillResultPickler(buffer, layout).dump(value)
    return buffer.getvalue(), layout


def write_arrays(buffer: mmap.mmap | bytearray, layout: Layout, fresh: bool = False) -> None:
    """Copy the arrays of *layout* into *buffer* (a slot's mapping, or a message's blob).

    Overlap-safe: a source whose bytes lie where the layout writes (an array from an
    earlier loader call in this very slot) is copied out before anything is written, so
    no copy ever overwrites the source of another. Arrays built in place are skipped.
    A *fresh* buffer (a blob just allocated) holds no source: nothing to check.
    """
    if not layout.writes:
        return
    whole = np.frombuffer(buffer, dtype=np.uint8)
    sources = [src for src, _, _ in layout.writes]
    if not fresh:
        first = min(offset for _, offset, _ in layout.writes)
        low, high = int(whole.ctypes.data) + first, int(whole.ctypes.data) + layout.nbytes
        for i, src in enumerate(sources):
            src_low, src_high = _byte_range(src)
            if src_low < high and low < src_high:  # overlaps what is about to be written: take it out first
                sources[i] = src.copy(order="K")
    dst = None
    for src, (_, offset, strides) in zip(sources, layout.writes):
        dst = _carve(whole, offset, src.shape, src.dtype, src.nbytes, strides)
        np.copyto(dst, src, casting="no")
    del whole, dst, sources  # release the buffer exports so the mapping can be closed


def separate_buffers(layout: Layout) -> list[np.ndarray]:
    """The arrays of a *separate* layout as flat byte arrays, each in its layout (the Ray backend
    sends these through the object store). Dense arrays are not copied."""
    buffers = []
    for src, _, strides in layout.writes:
        if strides is not None and strides != src.strides:  # gaps or negative strides: make it dense
            dense = np.empty(src.nbytes, np.uint8)
            np.copyto(_carve(dense, 0, src.shape, src.dtype, src.nbytes, strides), src, casting="no")
            buffers.append(dense)
            continue
        if strides is not None:  # dense in another axis order: a C-ordered view of the same bytes
            src = src.transpose(sorted(range(src.ndim), key=lambda axis: -src.strides[axis]))
        buffers.append(src.reshape(-1).view(np.uint8) if src.ndim else src.reshape(1).view(np.uint8))
    return buffers


def _carve(whole: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype[Any], nbytes: int,
           strides: tuple[int, ...] | None) -> np.ndarray:
    """The array at *offset* of *whole* (flat bytes) with *shape*, *dtype* and *strides* (``None``: C order)."""
    piece: np.ndarray = whole[offset:offset + nbytes]
    if strides is None:
        view: np.ndarray = piece.view(dtype).reshape(shape)
        return view
    strided: np.ndarray = np.ndarray(shape, dtype, buffer=piece, strides=strides)
    return strided


class _Loading(threading.local):
    """The bytes the result being unpickled on this thread views (:func:`load_result` sets it)."""

    base: Any = None


_loading = _Loading()


def _array_view(offset: int, shape: tuple[int, ...], dtype: Any, nbytes: int, strides: tuple[int, ...] | None,
                writeable: bool) -> np.ndarray:
    """An array of a result, rebuilt while :func:`load_result` unpickles it: a view of the
    base (the slot's or the blob's bytes), or, when the base is a list (separate buffers), of
    its buffer number *offset*, copied if that buffer is read-only (Ray's object store) and
    the array was writable."""
    base = _loading.base
    dtype = np.dtype(dtype)
    if not nbytes:
        array = np.empty(shape, dtype)
    elif isinstance(base, list):
        buffer = base[offset]
        if writeable and not buffer.flags.writeable:
            buffer = buffer.copy()
        array = _carve(buffer, 0, shape, dtype, nbytes, strides)
    else:
        array = _carve(base, offset, shape, dtype, nbytes, strides)
    if not writeable:
        array.flags.writeable = False
    return array


class _ResultUnpickler(pickle.Unpickler):
    """For results dill pickled (the pickle names ``dill._dill``): classes come home (:func:`_home_type`)."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_create_type" and module == "dill._dill":
            return _home_type
        return super().find_class(module, name)


def _home_type(*args: Any) -> type:
    """A class that came by value (dill; a class of the loader's that the worker could not
    pickle by name), replaced by this process's own class of that module and name: the
    caller's ``isinstance`` holds, as for classes that travel by reference."""
    cls: type = dill._dill._create_type(*args)
    home = getattr(sys.modules.get(cls.__module__), cls.__qualname__, None)
    return home if isinstance(home, type) and home.__name__ == cls.__name__ else cls


def load_result(data: bytes, base: np.ndarray | list[np.ndarray] | None) -> Any:
    """The result :func:`encode_result` pickled, its arrays views of *base*: the slot's or the
    blob's bytes (a flat ``uint8`` array), or the list of separate buffers."""
    previous, _loading.base = _loading.base, base  # a result unpickled inside another's (a __setstate__) restores it
    try:
        if b"dill._dill" in data:
            return _ResultUnpickler(io.BytesIO(data)).load()
        return pickle.loads(data)
    finally:
        _loading.base = previous


class _ArenaOwner:
    """The ``base`` of every array :meth:`_Arena.carve` hands out (numpy collapses a view's
    base to the first non-array owner), so whether any of them is still alive after the
    loader call is one weak reference away."""

    def __init__(self, buffer: mmap.mmap, capacity: int) -> None:
        self._bytes = np.frombuffer(buffer, dtype=np.uint8, count=capacity)  # keeps the mapping alive
        self.__array_interface__ = {
            "shape": (capacity,), "typestr": "|u1", "version": 3,
            "data": (self._bytes.ctypes.data, False),
        }


class _Arena:
    """The slot of the task a worker's loader is running, for :func:`empty` to carve arrays from.

    Carving is a bump of :attr:`used` under a lock (a loader may call ``empty`` from
    threads of its own). :meth:`close` ends carving and drops the arena's own reference;
    :meth:`outlived` then tells whether an array it handed out is still alive (kept by the
    loader, or by a thread of its own): the worker then copies the batch out of the slot
    and has the parent retire that slot, so a later write to the kept array can reach no
    batch.
    """

    def __init__(self, buffer: mmap.mmap, capacity: int) -> None:
        self.buffer = buffer
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()
        owner = _ArenaOwner(buffer, capacity)
        self._owner_ref = weakref.ref(owner)
        self._bytes: np.ndarray | None = np.asarray(owner)
        self._address = int(self._bytes.ctypes.data)

    def carve(self, shape: tuple[int, ...], dtype: np.dtype[Any], fortran: bool = False) -> np.ndarray | None:
        """An array of *shape* and *dtype* (C order, or Fortran with *fortran*) in the slot, or
        ``None`` when it does not fit or carving has ended."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            whole = self._bytes
            if whole is None or nbytes <= 0 or self.used + nbytes > self.capacity:
                return None
            offset, self.used = self.used, self.used + _aligned(nbytes)
        piece = whole[offset:offset + nbytes].view(dtype)
        return piece.reshape(shape[::-1]).T if fortran else piece.reshape(shape)

    def offset_of(self, array: np.ndarray) -> int | None:
        """Where *array* lies in the slot, if it is dense (no gaps: it can be read back from
        there as it is) and within what :meth:`carve` handed out."""
        if not _dense(array):
            return None
        low, high = _byte_range(array)
        offset = low - self._address
        return offset if 0 <= offset and high - self._address <= self.used else None

    def close(self) -> None:
        with self._lock:
            self._bytes = None

    def outlived(self) -> bool:
        """After :meth:`close`: whether an array carved here is still referenced."""
        return self._owner_ref() is not None


#: The arena of the loader call running in this worker process; ``None`` elsewhere. Set and
#: cleared by the worker's main thread around each loader call; a thread that calls
#: :func:`empty` at another moment gets ``numpy.empty`` or carves scratch from the running
#: call's slot, which :meth:`_Arena.outlived` then catches.
_arena: _Arena | None = None


def empty(shape: Any, dtype: Any = float, order: str = "C", *, like: Any = None) -> np.ndarray:
    """An uninitialised array for a loader's result, built where the parent will read it.

    On the process backend (and on Ray actors on the driver's own node) the array lies in
    the shared-memory slot of the batch being loaded, so returning it (alone or inside any
    result, whole or as a slice) costs no copy. Anywhere else (thread and serial backends,
    Ray actors on other nodes, outside a loader, an object dtype, ``like=``, a request
    larger than what is left of the slot) it is ``numpy.empty(shape, dtype, order)``.
    Arguments are checked by ``numpy.empty`` itself on every backend, so a loader behaves
    the same everywhere (same shapes, same errors).

    What a loader may do with it: fill it, return it (or views of it, or not at all:
    scratch space), call ``empty`` from threads of its own while the call runs. What it
    should not do: keep such an array after it returns (a cache). That is never *wrong*
    (the worker notices, copies the batch out and retires the slot, and the parent logs a
    warning) but it costs the copy ``empty`` exists to save.

    Args:
        shape: The array's shape (as ``numpy.empty``).
        dtype: Its dtype (as ``numpy.empty``; default ``float``).
        order: ``"C"`` or ``"F"`` (as ``numpy.empty``).
        like: Passed to ``numpy.empty`` (an array-like of another library: never in the slot).

    Returns:
        A plain, writable ``numpy.ndarray`` of *shape*, *dtype* and *order*, exactly what
        ``numpy.empty`` returns for the same arguments.

    Raises:
        ValueError: A negative or too large dimension, or a bad order (from ``numpy.empty``).
        TypeError: A shape or dtype numpy does not understand (from ``numpy.empty``).

    >>> a = empty((2, 3), dtype="float32")
    >>> a.shape, a.dtype, a.flags.c_contiguous, a.flags.writeable
    ((2, 3), dtype('float32'), True, True)
    """
    # numpy.empty checks the arguments and gives the shape and dtype (a sub-array dtype adds
    # axes); its memory is only reserved, never touched, and freed at once when carved.
    make: Any = np.empty  # the arguments are numpy's to judge: its stubs would narrow them
    probe: np.ndarray = make(shape, dtype, order) if like is None else make(shape, dtype, order, like=like)
    arena = _arena
    if arena is None or like is not None or type(probe) is not np.ndarray or probe.dtype.hasobject:
        return probe
    fortran = probe.flags.f_contiguous and not probe.flags.c_contiguous
    carved = arena.carve(probe.shape, probe.dtype, fortran)
    return probe if carved is None else carved


# -- the parent's ring ---------------------------------------------------------------------

class _Lease:
    """The ``base`` of a delivered batch's arrays; returns its slot when collected.

    Numpy collapses a view's ``base`` to the first non-array owner, so every array
    cut from ``np.asarray(lease)`` keeps this very object alive, and its
    finalizer runs exactly when the last of them is gone. That may be inside a
    cyclic garbage collection triggered by any allocation on any thread, including
    one that holds the ring's lock: *release* must take no lock (it only queues).
    """

    def __init__(self, slot: _Slot, release: Callable[[_Slot], None]) -> None:
        self._bytes = np.frombuffer(slot.mm, dtype=np.uint8)  # keeps the mapping alive
        self.__array_interface__ = {
            "shape": (slot.capacity,), "typestr": "|u1", "version": 3,
            "data": (self._bytes.ctypes.data, False),
        }
        weakref.finalize(self, release, slot)


class _Slot:
    __slots__ = ("path", "capacity", "mm")

    def __init__(self, path: str, capacity: int, mm: mmap.mmap) -> None:
        self.path, self.capacity, self.mm = path, capacity, mm

    def ref(self) -> SlotRef:
        return SlotRef(self.path, self.capacity)


class SlotRing:
    """The parent's slots: created on demand, sized from what results need, reused.

    ``acquire()`` gives a free slot of the current size (or ``None`` while no result
    has needed one, or once shared memory proved unusable); ``lease()`` wraps a filled
    slot for delivery; ``release()`` returns an unused one. Thread-safe: leases end in
    whichever thread collects the last array.

    Rules (a lease's end runs inside garbage collection, at any allocation, on any
    thread, possibly one that is inside ``acquire`` holding ``_lock``):

    - returning a slot (a lease's finalizer, ``release``) takes **no lock**: it appends
      to ``_returned`` (a deque: append and popleft are atomic) and nothing else;
    - ``acquire`` and ``close`` drain ``_returned`` under ``_lock``; ``_lock`` is the
      innermost lock of the process backend (``_state_lock -> SlotRing._lock``) and
      nothing that waits is done while holding it;
    - ``retire`` (a worker still views the slot: an ``awkgen.empty`` array outlived its
      call) unlinks it under ``_lock`` and forgets it, so no later task is given it; the
      caller holds ``_state_lock``, the same order.
    """

    def __init__(self, pool_name: str, directory: str, enabled: bool = True) -> None:
        self.directory: str = os.path.abspath(directory)  # resolved once: a later chdir changes nothing
        directory = self.directory
        self._lock = threading.Lock()
        self._returned: collections.deque[_Slot] = collections.deque()  # given back, not yet sorted
        self._free: list[_Slot] = []
        self._slots: dict[str, _Slot] = {}  # path -> slot, for every segment not yet unlinked
        self._key = f"{PREFIX}{os.getpid()}-{pool_name}"
        self._lock_fd: int | None = None
        self._counter = 0
        self._target = 0
        self._recent: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._closed = False
        self.enabled: bool = enabled
        if enabled and not shm_available(directory):
            self._disable(f"{directory} is not a writable directory")
        elif enabled and shm_free_bytes(directory) < MIN_FREE_SHM_BYTES:
            self._disable(f"{directory} has only {shm_free_bytes(directory) // 2**20} MiB free")
        if self.enabled:
            self._take_lock()

    def _disable(self, why: str) -> None:
        self.enabled = False
        logger.warning("awkgen: %s; batches will be pickled through pipes instead of shared memory", why)
        warnings.warn(f"awkgen: {why}; batches will be pickled through pipes instead of shared memory "
                      f"(slower). Give the machine or container more {self.directory} (docker run --shm-size=2g), "
                      "or point AWKGEN_SHM_DIR at a larger tmpfs.",
                      RuntimeWarning, stacklevel=2)

    def need(self, nbytes: int) -> None:
        """A result needed *nbytes*: make future slots at least that large.

        Slots follow the working set: once the last ``_RECENT`` results all needed less
        than half the current size (one outlier batch long gone), the size comes back
        down, and slots more than twice that size are unlinked as they come back, so one
        huge batch does not pin its size in every slot until the pool closes.
        """
        if nbytes < MIN_SHM_BYTES:
            return
        self._recent.append(nbytes)
        if nbytes > self._target:
            self._target = _pages(int(nbytes * _GROWTH) if self._target else nbytes)
        elif len(self._recent) == _RECENT and 2 * max(self._recent) < self._target:
            self._target = _pages(int(max(self._recent) * _GROWTH))

    def _fits(self, slot: _Slot) -> bool:
        return self._target <= slot.capacity <= 2 * self._target

    def acquire(self) -> SlotRef | None:
        """A free slot of the current size, or ``None``: no size known yet, or shared
        memory is off. Raises what creating a segment raised, beyond a full or
        refused tmpfs (which turns shared memory off); the caller then sends the
        task without a slot, so no error here loses a batch."""
        if not self.enabled or not self._target or self._closed:
            return None
        with self._lock:
            if self._closed:  # closed meanwhile: make nothing nobody would unlink
                return None
            self._sort_returned()
            while self._free:
                slot = self._free.pop()
                if self._fits(slot):
                    return slot.ref()
                self._drop(slot)
            mm = None
            for _ in range(_NAME_TRIES):
                path = os.path.join(self.directory, f"{self._key}-{self._counter}")
                self._counter += 1
                try:
                    mm = create_segment(path, self._target)
                    break
                except FileExistsError:  # a name someone planted, or a stale one: take the next
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG, errno.EACCES, errno.EPERM,
                                         errno.ENOENT, errno.ENOTDIR, errno.EROFS):
                        raise
                    self._disable(f"{self.directory} could not hold a {self._target // 2**20} MiB batch ({exc})")
                    return None
            if mm is None:
                raise FileExistsError(f"{_NAME_TRIES} segment names in a row already exist in {self.directory}")
            slot = _Slot(path, self._target, mm)
            self._slots[path] = slot
            return slot.ref()

    def lease(self, ref: SlotRef) -> np.ndarray:
        """The bytes of filled slot *ref*, as an array whose base returns the slot when freed."""
        slot = self._slots[ref.path]
        return np.asarray(_Lease(slot, self._give_back))

    def release(self, ref: SlotRef | None) -> None:
        """Give back a slot whose task put nothing in it."""
        if ref is not None:
            self._give_back(self._slots[ref.path])

    def retire(self, ref: SlotRef) -> None:
        """Unlink slot *ref* and never hand it out again: a worker still has an array viewing it."""
        with self._lock:
            slot = self._slots.get(ref.path)
            if slot is not None:
                self._drop(slot)

    def _give_back(self, slot: _Slot) -> None:
        """Queue *slot* for reuse. Runs in finalizers: no lock, no allocation beyond the append."""
        if not self._closed:
            self._returned.append(slot)

    def _sort_returned(self) -> None:
        """Under ``_lock``: file returned slots as free, or drop those now too small."""
        while self._returned:
            slot = self._returned.popleft()
            if slot.path not in self._slots:
                continue
            if self._fits(slot):
                self._free.append(slot)
            else:
                self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        unlink_segment(slot.path)
        self._slots.pop(slot.path, None)

    def _take_lock(self) -> None:
        """Hold this pool's lock file: what proves to other pools that its segments are alive."""
        try:
            self._lock_fd = lock_pool(self.directory, self._key)
        except OSError as exc:
            self._disable(f"{self.directory} does not take awkgen's lock file ({exc})")

    def forget_in_child(self) -> None:
        """After ``os.fork()``, in the child: drop the inherited lock descriptor (the parent's
        stays), so the lock is released when the parent dies even if the child lives on."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._closed = True

    def close(self) -> None:
        """Unlink every segment, then the lock file. Arrays already delivered stay valid."""
        with self._lock:
            self._closed = True
            self._returned.clear()
            for path in list(self._slots):
                unlink_segment(path)
            self._free.clear()
            self._slots.clear()
            if self._lock_fd is not None:
                unlink_segment(os.path.join(self.directory, self._key + _LOCK_SUFFIX))
                os.close(self._lock_fd)
                self._lock_fd = None
