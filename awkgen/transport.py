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

Segments are named ``awkgen-<parent pid>-<pool>-<n>``; a pool starting up removes
those of parents that no longer run (:func:`reclaim_orphans`), and workers remove
their parent's when they see it die.

>>> tree, arrays, nbytes = flatten_arrays({"x": np.zeros((2, 3)), "n": 5})
>>> tree["n"], len(arrays), nbytes  # 48 bytes, aligned to 64
(5, 1, 64)
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SHM_DIR", "MIN_SHM_BYTES", "SlotRef", "ArrayRef", "SlotRing", "flatten_arrays", "write_arrays",
           "rebuild", "attach_segment", "reclaim_orphans", "shm_available"]

SHM_DIR = "/dev/shm"
PREFIX = "awkgen-"
#: Below this many array bytes a result is pickled: a pipe is cheaper than a slot.
MIN_SHM_BYTES = 64 * 1024
_ALIGN = 64
_GROWTH = 1.25  # a slot that proved too small is replaced by one this much larger
#: /dev/shm must have this much free space at pool start, or the pool pickles everything.
MIN_FREE_SHM_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SlotRef:
    """The slot a task's arrays go to, as the worker sees it."""

    name: str
    capacity: int


@dataclass(frozen=True)
class ArrayRef:
    """Stands for an array in a flattened result: where it lies in the slot."""

    index: int
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype


# -- the segment trio -----------------------------------------------------------------

def create_segment(name: str, nbytes: int) -> mmap.mmap:
    """Create ``/dev/shm/<name>`` with *nbytes* reserved and map it (parent only).

    Space is reserved up front (``posix_fallocate``), so a full ``/dev/shm``
    fails here with ``OSError(ENOSPC)`` instead of crashing a worker with SIGBUS.
    """
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, nbytes)
        return mmap.mmap(fd, nbytes)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def attach_segment(name: str) -> mmap.mmap:
    """Map an existing segment (worker side)."""
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def unlink_segment(name: str) -> None:
    """Remove a segment's name; mappings stay valid until dropped. Missing is fine."""
    try:
        os.unlink(os.path.join(SHM_DIR, name))
    except FileNotFoundError:
        pass


def shm_available() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def shm_free_bytes() -> int:
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def owned_segments(pid: int) -> list[str]:
    """Names of the segments created by process *pid*."""
    prefix = f"{PREFIX}{pid}-"
    try:
        return [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except OSError:
        return []


def reclaim_orphans() -> list[str]:
    """Unlink segments whose creating process no longer runs; return their names."""
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)]
    except OSError:
        return []
    removed = []
    for name in names:
        try:
            pid = int(name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            unlink_segment(name)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


# -- flattening results ---------------------------------------------------------------------

def _shippable(value: Any) -> bool:
    return isinstance(value, np.ndarray) and not value.dtype.hasobject and value.nbytes > 0


def flatten_arrays(value: Any) -> tuple[Any, list[np.ndarray], int]:
    """Replace the arrays in *value* (through tuples, lists, dicts) by :class:`ArrayRef`.

    Returns ``(tree, arrays, nbytes)``: the tree to pickle, the arrays to copy in
    order, and the aligned bytes they need.
    """
    arrays: list[np.ndarray] = []
    offset = 0

    def walk(v: Any) -> Any:
        nonlocal offset
        if _shippable(v):
            ref = ArrayRef(len(arrays), offset, v.shape, v.dtype)
            arrays.append(v)
            offset += -(-v.nbytes // _ALIGN) * _ALIGN
            return ref
        if type(v) is list:
            return [walk(i) for i in v]
        if type(v) is dict:
            return {k: walk(i) for k, i in v.items()}
        if isinstance(v, tuple):
            items = [walk(i) for i in v]
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        return v

    tree = walk(value)
    return tree, arrays, offset


def write_arrays(buffer: mmap.mmap, tree: Any, arrays: list[np.ndarray]) -> None:
    """Copy *arrays* into *buffer* at the offsets *tree* records (worker side)."""
    whole = np.frombuffer(buffer, dtype=np.uint8)
    for ref in _refs(tree):
        src = arrays[ref.index]
        dst = whole[ref.offset:ref.offset + src.nbytes].view(src.dtype).reshape(src.shape)
        np.copyto(dst, src, casting="no")
    del whole  # release the buffer export so the mapping can be closed


def _refs(tree: Any) -> list[ArrayRef]:
    out: list[ArrayRef] = []

    def walk(v: Any) -> None:
        if isinstance(v, ArrayRef):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            for i in v:
                walk(i)
        elif type(v) is dict:
            for i in v.values():
                walk(i)

    walk(tree)
    return out


def rebuild(tree: Any, base: np.ndarray | None) -> Any:
    """Put arrays back into *tree*: views of *base* (the slot's bytes) for each ref."""

    def walk(v: Any) -> Any:
        if isinstance(v, ArrayRef):
            assert base is not None
            nbytes = int(np.prod(v.shape, dtype=np.int64)) * v.dtype.itemsize
            return base[v.offset:v.offset + nbytes].view(v.dtype).reshape(v.shape)
        if type(v) is list:
            return [walk(i) for i in v]
        if type(v) is dict:
            return {k: walk(i) for k, i in v.items()}
        if isinstance(v, tuple):
            items = [walk(i) for i in v]
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        return v

    return walk(tree)


# -- the parent's ring ---------------------------------------------------------------------

class _Lease:
    """The ``base`` of a delivered batch's arrays; returns its slot when collected.

    Numpy collapses a view's ``base`` to the first non-array owner, so every array
    cut from ``np.asarray(lease)`` keeps this very object alive, and its
    finalizer runs exactly when the last of them is gone.
    """

    def __init__(self, slot: _Slot, release: Callable[[_Slot], None]) -> None:
        self._bytes = np.frombuffer(slot.mm, dtype=np.uint8)  # keeps the mapping alive
        self.__array_interface__ = {
            "shape": (slot.capacity,), "typestr": "|u1", "version": 3,
            "data": (self._bytes.ctypes.data, False),
        }
        weakref.finalize(self, release, slot)


class _Slot:
    __slots__ = ("name", "capacity", "mm")

    def __init__(self, name: str, capacity: int, mm: mmap.mmap) -> None:
        self.name, self.capacity, self.mm = name, capacity, mm

    def ref(self) -> SlotRef:
        return SlotRef(self.name, self.capacity)


class SlotRing:
    """The parent's slots: created on demand, sized from what results need, reused.

    ``acquire()`` gives a free slot of the current size (or ``None`` while no result
    has needed one, or once shared memory proved unusable); ``lease()`` wraps a filled
    slot for delivery; ``release()`` returns an unused one. Thread-safe: leases end in
    whichever thread collects the last array.
    """

    def __init__(self, pool_name: str, enabled: bool = True) -> None:
        self._pool_name = pool_name
        self._lock = threading.Lock()
        self._free: list[_Slot] = []
        self._slots: dict[str, _Slot] = {}  # name -> slot, for every segment not yet unlinked
        self._counter = 0
        self._target = 0
        self._closed = False
        self.enabled = enabled and shm_available()
        if self.enabled and shm_free_bytes() < MIN_FREE_SHM_BYTES:
            self._disable(f"{SHM_DIR} has only {shm_free_bytes() // 2**20} MiB free")

    def _disable(self, why: str) -> None:
        self.enabled = False
        warnings.warn(f"awkgen: {why}; batches will be pickled through pipes instead of shared memory "
                      f"(slower). Give the machine or container more {SHM_DIR} (e.g. docker run --shm-size=2g).",
                      RuntimeWarning, stacklevel=2)

    def need(self, nbytes: int) -> None:
        """A result needed *nbytes*: make future slots at least that large."""
        if nbytes >= MIN_SHM_BYTES and nbytes > self._target:
            self._target = int(nbytes * _GROWTH) if self._target else nbytes
            self._target = -(-self._target // mmap.PAGESIZE) * mmap.PAGESIZE

    def acquire(self) -> SlotRef | None:
        if not self.enabled or not self._target:
            return None
        with self._lock:
            while self._free:
                slot = self._free.pop()
                if slot.capacity >= self._target:
                    return slot.ref()
                self._drop(slot)
            name = f"{PREFIX}{os.getpid()}-{self._pool_name}-{self._counter}"
            self._counter += 1
            try:
                mm = create_segment(name, self._target)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                    raise
                self._disable(f"{SHM_DIR} could not hold a {self._target // 2**20} MiB batch ({exc})")
                return None
            slot = _Slot(name, self._target, mm)
            self._slots[name] = slot
            return slot.ref()

    def lease(self, ref: SlotRef) -> np.ndarray:
        """The bytes of filled slot *ref*, as an array whose base returns the slot when freed."""
        slot = self._slots[ref.name]
        return np.asarray(_Lease(slot, self._return))

    def release(self, ref: SlotRef | None) -> None:
        """Give back a slot whose task put nothing in it."""
        if ref is not None:
            self._return(self._slots[ref.name])

    def _return(self, slot: _Slot) -> None:
        with self._lock:
            if self._closed or slot.capacity < self._target:
                self._drop(slot)
            else:
                self._free.append(slot)

    def _drop(self, slot: _Slot) -> None:
        unlink_segment(slot.name)
        self._slots.pop(slot.name, None)

    def close(self) -> None:
        """Unlink every segment. Arrays already delivered stay valid."""
        with self._lock:
            self._closed = True
            for name in list(self._slots):
                unlink_segment(name)
            self._free.clear()
            self._slots.clear()
