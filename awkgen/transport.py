"""Shared-memory ring for numpy batches; pickle fallback.

Numpy arrays in a worker's result (alone or nested in tuples, lists and dicts) are
copied once into a *slot*, a file in ``/dev/shm`` mapped by both sides, and the
parent hands out arrays that are views of that mapping: no pickling, no pipe, no
second copy. Everything else (and arrays under :data:`MIN_SHM_BYTES` in all)
travels pickled through the worker's pipe.

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
  left alone;
- a worker that sees its parent die removes that parent's pools the same way;
- the lock file is created under a hidden name, locked, then renamed into place, so no
  one ever sees it unlocked while its owner lives. ``os.fork()`` children drop their
  copy of the lock (an inherited descriptor would keep the lock held).

Arrays built in place (:func:`empty`): a loader on the process backend may ask for its
output arrays with ``awkgen.empty(shape, dtype)``; while it runs, the worker holds the
task's slot as an :class:`_Arena` (module global :data:`_arena`, set and cleared by the
worker around the loader call, the worker's only task at a time) and ``empty`` carves
aligned pieces out of it, so the result is already where the parent reads it and
:func:`write_arrays` skips the copy. Everywhere else (the thread, serial and Ray
backends, a task without a slot, a request that does not fit) ``empty`` is
``numpy.empty``. The rule for loaders: such an array is valid until the loader
returns; keeping it (a cache) and writing to it later would write into a slot the
parent has since given to another batch.

>>> tree, arrays, nbytes = flatten_arrays({"x": np.zeros((2, 3)), "n": 5})
>>> tree["n"], len(arrays), nbytes  # 48 bytes, aligned to 64
(5, 1, 64)
"""

from __future__ import annotations

import collections
import errno
import fcntl
import logging
import mmap
import os
import stat
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._tree import map_tree

__all__ = ["shm_dir", "MIN_SHM_BYTES", "SlotRef", "ArrayRef", "SlotRing", "flatten_arrays", "write_arrays",
           "rebuild", "attach_segment", "reclaim_orphans", "shm_available", "empty"]

logger = logging.getLogger("awkgen")
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


class ArrayRef:
    """Stands for an array in a flattened result: where its bytes lie in the slot or blob.

    A plain class with a compact pickle (the dtype as its string when that says it
    all): refs cross the pipe with every batch, so they must cost microseconds.
    """

    __slots__ = ("index", "offset", "shape", "dtype", "nbytes")

    def __init__(self, index: int, offset: int, shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> None:
        self.index, self.offset, self.shape, self.dtype, self.nbytes = index, offset, shape, dtype, nbytes

    def __reduce__(self) -> tuple[Any, ...]:
        dtype = self.dtype
        token = dtype.str if dtype.fields is None and dtype.subdtype is None else dtype
        return (_array_ref, (self.index, self.offset, self.shape, token, self.nbytes))

    def __repr__(self) -> str:
        return f"ArrayRef({self.index}, offset={self.offset}, shape={self.shape}, dtype={self.dtype})"


def _array_ref(index: int, offset: int, shape: tuple[int, ...], dtype: Any, nbytes: int) -> ArrayRef:
    return ArrayRef(index, offset, shape, np.dtype(dtype), nbytes)


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
    Returns the names removed."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX)]
    except OSError:
        return []
    pools: dict[str, list[str]] = collections.defaultdict(list)
    for name in names:
        key = name[:-len(_LOCK_SUFFIX)] if name.endswith(_LOCK_SUFFIX) else name.rpartition("-")[0]
        pools[key].append(name)
    mine = None if pid is None else f"{PREFIX}{pid}-"
    removed = []
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
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():  # not ours to judge
                continue
            _lock_within(fd, wait_s)  # raises while the owner lives
            for name in sorted(members, key=lambda n: n == lock_name):  # the lock file last
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    os.unlink(path)
                    removed.append(name)
        except OSError:  # held (its owner lives), or not ours to remove
            continue
        finally:
            os.close(fd)
    return removed


# -- flattening results ---------------------------------------------------------------------
# The leaf functions are small classes, not closures over the walk: see awkgen/_tree.py.

def _shippable(value: Any) -> bool:
    """A plain array whose bytes say it all; subclasses (masked arrays, ``np.matrix``, record
    arrays) are pickled instead, so they arrive with their class, mask and fields."""
    return type(value) is np.ndarray and not value.dtype.hasobject and value.nbytes > 0


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


class _Flattener:
    """The leaf function of :func:`flatten_arrays`: swaps arrays for refs, lays them out."""

    def __init__(self, placed: Callable[[np.ndarray], int | None] | None, start: int) -> None:
        self.arrays: list[np.ndarray] = []
        self.refs: list[ArrayRef] = []
        self.offset = start
        self.placed = placed

    def __call__(self, value: Any) -> Any:
        if not _shippable(value):
            return value
        where = self.placed(value) if self.placed is not None else None
        if where is None:
            where = self.offset
            self.offset += _aligned(value.nbytes)
        ref = ArrayRef(len(self.arrays), where, value.shape, value.dtype, value.nbytes)
        self.arrays.append(value)
        self.refs.append(ref)
        return ref


def flatten_arrays(value: Any, placed: Callable[[np.ndarray], int | None] | None = None,
                   start: int = 0) -> tuple[Any, list[np.ndarray], int]:
    """Replace the arrays in *value* (through tuples, lists, dicts) by :class:`ArrayRef`.

    Returns ``(tree, arrays, nbytes)``: the tree to pickle, the arrays to copy in
    order, and the aligned bytes they need. *placed* names arrays that already lie in
    the slot (built there by :func:`empty`): their offset, else ``None``; the others
    are laid out from *start* on.
    """
    flattener = _Flattener(placed, start)
    tree = map_tree(value, flattener)
    return tree, flattener.arrays, flattener.offset


def write_arrays(buffer: mmap.mmap | bytearray, tree: Any, arrays: list[np.ndarray]) -> None:
    """Copy *arrays* into *buffer* (a slot's mapping, or a message's blob) at the offsets *tree* records."""
    whole = np.frombuffer(buffer, dtype=np.uint8)
    dst = None
    refs: list[ArrayRef] = []
    map_tree(tree, lambda v: refs.append(v) if isinstance(v, ArrayRef) else None)
    for ref in refs:
        src = arrays[ref.index]
        dst = whole[ref.offset:ref.offset + src.nbytes].view(src.dtype).reshape(src.shape)
        if dst.ctypes.data != src.ctypes.data:  # not built in place by empty()
            np.copyto(dst, src, casting="no")
    del whole, dst  # release the buffer exports so the mapping can be closed


class _Arena:
    """The slot of the task a worker's loader is running, for :func:`empty` to carve arrays from.

    Carving is a bump of :attr:`used` under a lock (a loader may call ``empty`` from
    threads of its own). :meth:`close` drops the arena's own view; arrays handed out
    keep the mapping alive as long as they live.
    """

    def __init__(self, buffer: mmap.mmap, capacity: int) -> None:
        self.buffer = buffer
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()
        self._bytes: np.ndarray | None = np.frombuffer(buffer, dtype=np.uint8)
        self._address = int(self._bytes.ctypes.data)

    def carve(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """An array of *shape* and *dtype* in the slot, or ``None`` when it does not fit."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            whole = self._bytes
            if whole is None or nbytes <= 0 or self.used + nbytes > self.capacity:
                return None
            offset, self.used = self.used, self.used + _aligned(nbytes)
        return whole[offset:offset + nbytes].view(dtype).reshape(shape)

    def offset_of(self, array: np.ndarray) -> int | None:
        """Where *array* lies in the slot, if it lies within what :meth:`carve` handed out."""
        if not array.flags.c_contiguous:
            return None
        offset = int(array.ctypes.data) - self._address
        return offset if 0 <= offset and offset + array.nbytes <= self.used else None

    def close(self) -> None:
        with self._lock:
            self._bytes = None


#: The arena of the loader call running in this worker process; ``None`` elsewhere.
_arena: _Arena | None = None


def empty(shape: int | tuple[int, ...], dtype: Any = float) -> np.ndarray:
    """An uninitialised array for a loader's result, built where the parent will read it.

    On the process backend the array lies in the shared-memory slot of the batch being
    loaded, so returning it (alone or inside a tuple, list or dict, whole or as a
    contiguous slice) costs no copy. It must be filled by the loader and not kept after
    the loader returns. Anywhere else (thread, serial and Ray backends, outside a
    loader, an object dtype, a request larger than what is left of the slot) it is
    ``numpy.empty(shape, dtype)``. Arrays a loader takes but does not return still use
    that batch's slot space; results that outgrow the slot are copied, as without it.

    Args:
        shape: The array's shape, an int or a tuple of ints (as ``numpy.empty``).
        dtype: Its dtype (as ``numpy.empty``; default ``float``).

    Returns:
        A plain, writable, C-ordered ``numpy.ndarray`` of *shape* and *dtype*.

    Raises:
        ValueError: A negative dimension (from ``numpy.empty``).
        TypeError: A dtype numpy does not understand.

    >>> a = empty((2, 3), dtype="float32")
    >>> a.shape, a.dtype, a.flags.c_contiguous, a.flags.writeable
    ((2, 3), dtype('float32'), True, True)
    """
    dtype = np.dtype(dtype)
    arena = _arena
    if arena is not None and not dtype.hasobject:
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        carved = arena.carve(tuple(int(d) for d in dims), dtype)
        if carved is not None:
            return carved
    return np.empty(shape, dtype)


def _pages(nbytes: int) -> int:
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


def _view(base: np.ndarray | None, ref: ArrayRef) -> np.ndarray:
    """The array *ref* describes, as a view of *base* (a slot's or a message's bytes)."""
    assert base is not None
    return base[ref.offset:ref.offset + ref.nbytes].view(ref.dtype).reshape(ref.shape)


class _Rebuilder:
    """The leaf function of :func:`rebuild`: a view of the slot's bytes for each ref."""

    def __init__(self, base: np.ndarray | None) -> None:
        self.base = base

    def __call__(self, value: Any) -> Any:
        return _view(self.base, value) if isinstance(value, ArrayRef) else value


def rebuild(tree: Any, base: np.ndarray | None) -> Any:
    """Put arrays back into *tree*: views of *base* (the slot's bytes) for each ref."""
    if type(tree) is ArrayRef:  # a loader returning one array: the common case, kept quick
        return _view(base, tree)
    return map_tree(tree, _Rebuilder(base))


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
      nothing that waits is done while holding it.
    """

    def __init__(self, pool_name: str, directory: str, enabled: bool = True) -> None:
        self.directory = os.path.abspath(directory)  # resolved once: a later chdir changes nothing
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
        self.enabled = enabled
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
