"""The process backend's wire: framed messages over a worker's socket, and their encoding.

Every batch crosses the pipe twice (a task out, a reply back), so for small batches
this module *is* the per-batch overhead. Three choices keep it to a few microseconds:

- **Framing without a round trip per message.** A frame is a 16-byte header
  (a magic number, frame length, head length) + a pickled *head* + an optional
  raw *blob*. The header is checked before anything is allocated: bytes that are
  not a frame (a loader or a library writing to the socket) raise
  :class:`MalformedFrame` instead of asking for a huge buffer.
  :meth:`Channel.receive` does one ``read`` and returns every frame that read
  completed, so replies that piled up while the caller trained arrive in one
  system call; a large frame is read straight into its own buffer.
- **Tuples, not objects.** Heads are tuples of plain values; a result travels as the
  pickle :func:`awkgen.transport.encode_result` made (its arrays as a few-field reference each).
- **Arrays as raw bytes.** Pickling a numpy array costs ~10 us (reduce protocol,
  dtype object); a task's numpy ids travel as ``(dtype, shape, bytes)``, and a
  reply's arrays that do not go to shared memory travel in the frame's blob, laid
  out exactly as in a slot, so the parent rebuilds them the same way: as views of
  the frame's own writable buffer, no further copy.

Messages (``kind`` is the head's first item)::

    parent -> worker   (TASK, seq, ids_dtype, ids_shape, ids, rng_entropy, slot_path, slot_capacity)
                       None                                       stop
    worker -> parent   (READY, identity)                          the loader is loaded
                       (INIT_FAILED, traceback_text, identity)    it could not be (or other code)
                       (VALUE, seq, load_s, nbytes, data, in_slot, wanted, retire) + blob of inline arrays
                       (FAILED, seq, load_s, pickled_exception | None, traceback_text, by_loader, retire)

``retire`` (the last field of both replies): an array the loader got from ``awkgen.empty``
outlived its call, so the parent must never reuse the task's slot.

A FAILED reply becomes its batch's outcome through :func:`failed_reply` (both backends that
run a worker's code: the process backend, and Ray actors on the driver's node).

``identity`` is the awkgen the worker runs, a plain tuple (see :mod:`._identity`).
``ids_dtype`` is ``None`` when the ids are not a plain numpy array; ``ids`` is then
the ids pickled on their own (dill when pickle refuses), so a worker that cannot
unpickle them can still fail the right batch.

>>> a, b = Channel.pair()
>>> a.send(encode_task(7, np.arange(3), None, None))
>>> [(head, blob)] = b.receive()
>>> task, slot = decode_task(head)
>>> task.seq, task.ids.tolist(), slot
(7, [0, 1, 2], None)
>>> a.close(); b.close()
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from dataclasses import replace
from typing import Any

import dill
import numpy as np

from .. import transport
from ..errors import LoaderError
from .base import Outcome, Task, loader_failure

__all__ = ["Channel", "READY", "INIT_FAILED", "VALUE", "FAILED", "TASK", "dumps", "encode_task",
           "decode_task", "encode_value", "ROUTES", "UnreadableIds", "MalformedFrame", "RemoteLoaderError",
           "failed_reply", "last_line"]

TASK, READY, INIT_FAILED, VALUE, FAILED = range(5)
#: Where a VALUE's arrays lie (its ``in_slot`` field; true means the slot): in the blob; in the
#: slot, copied there; in the slot, some built there by ``awkgen.empty``; in the blob because
#: the in-place layout outgrew the slot.
IN_BLOB, IN_SLOT, IN_PLACE, OVERFLOW = 0, 1, 2, 3
ROUTES = {IN_BLOB: "blob", IN_SLOT: "slot", IN_PLACE: "in-place", OVERFLOW: "overflow to blob"}
_HEADER = struct.Struct("<IQI")  # magic; bytes after the header; bytes of the pickled head
_MAGIC = 0x4B574101  # "\x01AWK" little-endian: what every frame starts with
try:  # no frame can be larger than the machine's memory
    _MAX_FRAME = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    _MAX_FRAME = 1 << 40
_READ_BYTES = 256 * 1024  # one read takes up to this much; larger frames get their own buffer
_SMALL_SEND = 64 * 1024  # frames up to this size go out in one write


def dumps(obj: Any) -> bytes:
    """Pickle with the standard pickler, falling back to dill (lambdas, closures)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return data


class MalformedFrame(ValueError):
    """Bytes on the channel that are not a frame: the stream cannot be trusted any more."""


class Channel:
    """Framed messages over a stream file descriptor (one end of a socketpair or pipe).

    ``receive`` performs exactly one read and returns the frames it completed
    (``(head, blob)`` memoryviews of a buffer owned by that frame), so the caller
    decides when it may block: the parent reads only after ``poll`` said the
    descriptor is readable, a worker reads when it has nothing else to do. End of
    file raises :class:`EOFError`; bytes that are not a frame raise :class:`MalformedFrame`.

    Sending: a worker's channel (*blocking*) writes whole frames, waiting as long as it
    takes. The parent's channels never block (``blocking=False``, the descriptor is
    made non-blocking): what the socket cannot take now waits in ``_out`` and goes out
    with :meth:`flush` when ``poll`` says the socket is writable. So the parent never
    waits on a worker that is itself waiting for the parent to read its replies.
    """

    def __init__(self, fd: int, blocking: bool = True) -> None:
        self.fd = fd
        self.blocking = blocking
        if not blocking:
            os.set_blocking(fd, False)
        self._out = bytearray()  # bytes a non-blocking send could not write yet
        self.broken = ""  # set once bytes that are not a frame arrived: what they were
        self._buf = bytearray()  # bytes read that do not yet complete a frame
        self._big: bytearray | None = None  # a large frame being read straight into place
        self._big_filled = 0
        self._big_head = 0

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """Two connected channels in this process (for tests and doctests)."""
        left, right = socket.socketpair()
        return cls(left.detach()), cls(right.detach())

    def close(self) -> None:
        os.close(self.fd)

    @property
    def receiving(self) -> bool:
        """Whether part of a frame has arrived and the rest has not: the sender is mid-message."""
        return bool(self._buf) or self._big is not None

    @property
    def pending(self) -> bool:
        """Whether bytes wait in ``_out`` for the socket to take them (non-blocking channels)."""
        return bool(self._out)

    def send(self, head: bytes, blob: Any = b"") -> None:
        size = len(head) + len(blob)
        header = _HEADER.pack(_MAGIC, size, len(head))
        if size <= _SMALL_SEND:
            self._write(b"".join((header, head, blob)))
        else:
            self._write(header + head)
            self._write(blob)

    def send_many(self, messages: list[tuple[bytes, Any]]) -> None:
        """Send several ``(head, blob)`` messages, small ones together in one write."""
        if len(messages) == 1:
            self.send(*messages[0])
        elif sum(len(head) + len(blob) for head, blob in messages) > _SMALL_SEND:
            for head, blob in messages:
                self.send(head, blob)
        else:
            self._write(b"".join(b"".join((_HEADER.pack(_MAGIC, len(head) + len(blob), len(head)), head, blob))
                                 for head, blob in messages))

    def _write(self, data: Any) -> None:
        if self._out:  # keep the order: behind what is already waiting
            self._out += data
            return
        view = memoryview(data).cast("B")
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # only on a non-blocking channel: keep the rest for flush()
                self._out += view
                return

    def flush(self) -> bool:
        """Write what ``_out`` holds, as far as the socket takes it; True once all is sent."""
        while self._out:
            try:
                sent = os.write(self.fd, self._out)
            except BlockingIOError:
                return False
            del self._out[:sent]
        return True

    def receive(self) -> list[tuple[memoryview, memoryview]]:
        """The frames one read completes. Frames intact before bad bytes are still returned
        (their batches are fine), with ``broken`` set; the next call raises."""
        if self.broken:
            raise MalformedFrame(self.broken)
        try:
            if self._big is not None:
                return self._fill_big()
            chunk = os.read(self.fd, _READ_BYTES)
        except BlockingIOError:  # nothing after all (a non-blocking channel)
            return []
        if not chunk:
            raise EOFError("the other end closed the channel")
        buf = self._buf
        buf += chunk
        frames: list[tuple[memoryview, memoryview]] = []
        start = 0
        while len(buf) - start >= _HEADER.size:
            magic, size, head_size = _HEADER.unpack_from(buf, start)
            if magic != _MAGIC or head_size > size or size > _MAX_FRAME:
                self.broken = f"bytes that are not a message: {bytes(buf[start:start + 16])!r}"
                del buf[:]
                if frames:
                    return frames
                raise MalformedFrame(self.broken)
            end = start + _HEADER.size + size
            if end > len(buf):
                if size > _READ_BYTES:  # read the rest of this frame straight into its own buffer
                    self._big = bytearray(size)
                    self._big_head = head_size
                    self._big_filled = len(buf) - start - _HEADER.size
                    self._big[:self._big_filled] = buf[start + _HEADER.size:]
                    start = len(buf)
                break
            frames.append(_split(buf[start + _HEADER.size:end], head_size))  # a copy: the frame's own
            start = end
        del buf[:start]
        return frames

    def _fill_big(self) -> list[tuple[memoryview, memoryview]]:
        assert self._big is not None
        got = os.readv(self.fd, [memoryview(self._big)[self._big_filled:]])
        if not got:
            raise EOFError("the other end closed the channel in the middle of a message")
        self._big_filled += got
        if self._big_filled < len(self._big):
            return []
        frame, self._big = self._big, None
        return [_split(frame, self._big_head)]


def _split(frame: bytearray, head_size: int) -> tuple[memoryview, memoryview]:
    view = memoryview(frame)
    return view[:head_size], view[head_size:]


# -- tasks ---------------------------------------------------------------------------------

def _plain_array(value: Any) -> bool:
    """A numpy array whose bytes, dtype string and shape say everything about it."""
    return (type(value) is np.ndarray and value.dtype.fields is None and value.dtype.subdtype is None
            and not value.dtype.hasobject and (value.flags.c_contiguous or not value.flags.f_contiguous))


class UnreadableIds(Exception):
    """A worker could not unpickle the ids of batch ``seq`` (raised by :func:`decode_task`)."""

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq


def encode_task(seq: int, ids: Any, rng_entropy: tuple[int, ...] | None, slot: transport.SlotRef | None) -> bytes:
    """A task's head. Raises when the ids cannot be pickled, even by dill.

    Ids that are not a plain array are pickled on their own, inside the head: a worker
    that cannot unpickle them still learns which batch they belong to.
    """
    path, capacity = (slot.path, slot.capacity) if slot is not None else (None, 0)
    if _plain_array(ids):
        fields = (TASK, seq, ids.dtype.str, ids.shape, ids.tobytes(), rng_entropy, path, capacity)
    else:
        fields = (TASK, seq, None, None, dumps(ids), rng_entropy, path, capacity)
    return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)


def decode_task(head: Any) -> tuple[Task, transport.SlotRef | None]:
    _, seq, dtype, shape, ids, entropy, path, capacity = pickle.loads(head)
    if dtype is not None:  # a writable array, as pickle would have given the loader
        ids = np.frombuffer(bytearray(ids), dtype=dtype).reshape(shape)
    else:
        try:
            ids = pickle.loads(ids)
        except Exception as exc:
            raise UnreadableIds(seq, f"the batch's ids cannot be rebuilt in the worker process "
                                     f"({type(exc).__name__}: {exc}); ids must unpickle there: define their "
                                     "classes in an importable module, not in __main__") from exc
    return Task(seq, ids, entropy), (transport.SlotRef(path, capacity) if path is not None else None)


# -- replies -------------------------------------------------------------------------------

def encode_value(seq: int, value: Any, load_s: float, slot: transport.SlotRef | None,
                 attach: Any, arena: transport._Arena | None = None) -> tuple[tuple[Any, ...], Any]:
    """A result's head fields and blob: its arrays go into *slot* (mapped by ``attach(path)``)
    when they are worth it and fit, else into the blob. Raises if the rest cannot be pickled.

    With an *arena* (the slot, as the loader's ``awkgen.empty`` used it), arrays built
    there stay where they are and the others are laid out after them; if that does not
    fit, everything goes to the blob: a second layout in the same slot could copy one
    array over the source of another (see :mod:`awkgen.transport`).
    The head fields are ``(VALUE, seq, load_s, nbytes, data, in_slot, wanted, retire)`` (*wanted*:
    the slot size this result needs, its in-place layout's when that outgrew the slot); the caller
    pickles them once it knows whether the slot must be retired.
    """
    placed = arena is not None and arena.used > 0 and slot is not None
    wanted = 0
    if placed:
        assert arena is not None and slot is not None
        data, layout = transport.encode_result(value, placed=arena.offset_of, start=arena.used)
        if layout.nbytes <= slot.capacity:
            transport.write_arrays(arena.buffer, layout)
            return (VALUE, seq, load_s, layout.nbytes, data, IN_PLACE, layout.nbytes, False), b""
        wanted = layout.nbytes  # the parent grows its slots to this: the next batch fits in place
    data, layout = transport.encode_result(value)
    if slot is not None and transport.MIN_SHM_BYTES <= layout.nbytes <= slot.capacity and not placed:
        transport.write_arrays(attach(slot.path), layout)
        return (VALUE, seq, load_s, layout.nbytes, data, IN_SLOT, layout.nbytes, False), b""
    blob = bytearray(layout.nbytes)
    transport.write_arrays(blob, layout, fresh=True)
    return (VALUE, seq, load_s, layout.nbytes, data, OVERFLOW if placed else IN_BLOB, max(wanted, layout.nbytes),
            False), blob


class RemoteLoaderError(Exception):
    """Stands for a loader exception that could not be pickled back; holds its traceback text."""


def failed_reply(seq: int, error: bytes | None, error_text: str, by_loader: bool, load_s: float,
             pid: int | None = None) -> Outcome:
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
    if exc is not None:
        # Keep the cause pickled: the generator unpickles it again where it raises it (see
        # Outcome.cause_pickle); this copy, rebuilt here, only tells what kind of failure it is.
        outcome = (loader_failure(seq, exc, load_s, pid) if by_loader else
                   Outcome(seq, error_type=LoaderError, detail=str(exc), load_s=load_s, pid=pid))
        return replace(outcome, cause=RemoteLoaderError(error_text), cause_pickle=error)
    detail = f"loader raised {last_line(error_text)}" if by_loader else last_line(error_text)
    return Outcome(seq, error_type=LoaderError, detail=detail, cause=RemoteLoaderError(error_text), load_s=load_s,
                   pid=pid)


def last_line(traceback_text: str) -> str:
    """The ``Type: message`` line that ends a formatted traceback."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "an exception"
