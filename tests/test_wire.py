"""The process backend's wire (awkgen/executors/_wire.py): frames survive any split into
reads, ids and small results cross as raw bytes yet arrive exactly as pickle would give
them (dtype, shape, order, writable), and whatever the fast path cannot express falls
back to pickling instead of being mangled."""

from __future__ import annotations

import datetime
import os
import pickle
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awkgen import DataGenerator, DataGeneratorMultiProc, transport
from awkgen.executors import _wire
from awkgen.executors._wire import VALUE, Channel, MalformedFrame, UnreadableIds, decode_task, encode_task, encode_value


@pytest.fixture
def channels():
    a, b = Channel.pair()
    yield a, b
    for ch in (a, b):
        try:
            ch.close()
        except OSError:
            pass


def receive_n(channel: Channel, n: int) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    while len(got) < n:
        got += [(bytes(head), bytes(blob)) for head, blob in channel.receive()]
    return got


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 70_000), st.sampled_from([0, 1, 300_000, 1_100_000])), max_size=12))
def test_any_sequence_of_frames_arrives_whole_and_in_order(sizes):
    sender, receiver = Channel.pair()
    try:
        frames = [(os.urandom(head), os.urandom(blob)) for head, blob in sizes]
        writer = threading.Thread(target=lambda: [sender.send(h, b) for h, b in frames])
        writer.start()  # large frames need the reader running, as with a real worker
        got = receive_n(receiver, len(frames))
        writer.join()
        assert got == frames
    finally:
        sender.close()
        receiver.close()


def test_replies_that_piled_up_come_in_one_read(channels):
    sender, receiver = channels
    for i in range(50):
        sender.send(bytes([i]) * 10)
    frames = receiver.receive()
    assert [bytes(head) for head, _ in frames] == [bytes([i]) * 10 for i in range(50)]


def test_end_of_file_is_an_eof_error_even_in_the_middle_of_a_large_frame(channels):
    sender, receiver = channels
    os.write(sender.fd, b"\x00" * 3)  # a header cut short, then the writer dies
    sender.close()
    with pytest.raises(EOFError):
        receive_n(receiver, 1)
    a, b = Channel.pair()
    try:
        head = b"h"
        os.write(a.fd, _wire._HEADER.pack(_wire._MAGIC, len(head) + 10**6, len(head)) + head)
        os.write(a.fd, b"x" * 1000)
        a.close()
        with pytest.raises(EOFError, match="middle of a message"):
            receive_n(b, 1)
    finally:
        b.close()


@pytest.mark.parametrize("ids", [
    np.arange(5, dtype=np.int64), np.array([3], dtype=np.uint8), np.arange(6.0).reshape(2, 3),
    np.asfortranarray(np.arange(6).reshape(2, 3)), np.arange(10)[::3], np.array(["a.npy", "bb.npy"]),
    np.array([b"x", b"yz"]), np.array(["2026-01-01"], dtype="M8[D]"), np.zeros(0, dtype=np.int32),
    np.array([(1, 2.0)], dtype=[("row", "i4"), ("w", "f8")]), np.array([{"a": 1}, None], dtype=object),
    ["a.npy", "b.npy"], (1, 2), range(3), np.int64(4),
], ids=lambda v: type(v).__name__ + (f"-{v.dtype}" if hasattr(v, "dtype") else ""))
def test_ids_arrive_as_pickle_would_deliver_them(ids):
    slot = transport.SlotRef("/dev/shm/awkgen-0-test-0", 4096)
    task, got_slot = decode_task(encode_task(9, ids, (1, 2), slot))
    assert (task.seq, task.rng_entropy, got_slot) == (9, (1, 2), slot)
    if isinstance(ids, np.ndarray):
        assert type(task.ids) is np.ndarray and task.ids.dtype == ids.dtype and task.ids.shape == ids.shape
        np.testing.assert_array_equal(task.ids, ids)
        assert task.ids.flags.writeable
        pickled = pickle.loads(pickle.dumps(ids))
        assert (task.ids.flags.c_contiguous, task.ids.flags.f_contiguous) == (
            pickled.flags.c_contiguous, pickled.flags.f_contiguous)
    else:
        assert task.ids == ids and type(task.ids) is type(ids)


def test_ids_nothing_can_pickle_raise_instead_of_sending_garbage():
    with pytest.raises(TypeError, match="generator"):
        encode_task(1, [(i for i in range(3))], None, None)  # not even dill pickles a generator


def rebuild_reply(fields: tuple, blob: bytes):
    fields = pickle.loads(pickle.dumps(fields))  # as the pipe carries it
    kind, seq, load_s, nbytes, data, in_slot, wanted, retire = fields
    assert kind == VALUE and not in_slot and not retire
    return transport.load_result(data, np.frombuffer(bytearray(blob), dtype=np.uint8) if nbytes else None)


def test_small_results_travel_in_the_blob_and_come_back_writable_and_exact():
    value = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": (np.array([True, False]), 7),
             "when": np.array(["2026-11-21T10:00"], dtype="M8[m]"), "text": ["a", "b"],
             "rec": np.array([(1, 2.5)], dtype=[("i", "<i2"), ("f", ">f8")]), "none": None,
             "empty": np.zeros((0, 2)), "obj": np.array([datetime.date(2026, 1, 1)], dtype=object)}
    head, blob = encode_value(3, value, 0.5, None, attach=None)
    got = rebuild_reply(head, bytes(blob))
    assert got.keys() == value.keys() and got["text"] == ["a", "b"] and got["none"] is None
    for key in ("x", "when", "rec", "empty", "obj"):
        assert got[key].dtype == value[key].dtype and got[key].shape == value[key].shape
        np.testing.assert_array_equal(got[key], value[key])
    assert got["y"][1] == 7 and got["y"][0].tolist() == [True, False]
    got["x"][0, 0] = 99  # the caller may normalise a batch in place
    assert got["x"][0, 0] == 99


def test_results_through_real_workers_equal_the_blocking_generators():
    def loader(ids):
        ids = np.asarray(ids)
        return (ids.astype(np.float16), {"f": np.asfortranarray(np.outer(ids, [1, 2, 3]))},
                np.array([str(i) for i in ids]), float(ids.sum()))

    ids = list(range(40))
    reference = DataGenerator(loader, ids, batch_size=3, seed=2)
    with DataGeneratorMultiProc(loader, ids, batch_size=3, n_workers=2, seed=2) as gen:
        for _ in range(30):
            (got,), (want,) = gen(), reference()
            assert got[0].dtype == np.float16 and got[2].dtype == want[2].dtype and got[3] == want[3]
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1]["f"], want[1]["f"])
            np.testing.assert_array_equal(got[2], want[2])


class _Gone:
    """Stands for a class the worker cannot import."""


def test_ids_a_worker_cannot_unpickle_still_name_their_batch(monkeypatch):
    head = encode_task(12, [_Gone()], None, None)
    monkeypatch.delattr(sys.modules[__name__], "_Gone")  # the worker's view: no such class
    with pytest.raises(UnreadableIds, match="cannot be rebuilt in the worker process") as info:
        decode_task(head)
    assert info.value.seq == 12 and isinstance(info.value.__cause__, AttributeError)


def test_bytes_that_are_not_a_frame_are_refused_before_anything_is_allocated(channels):
    sender, receiver = channels
    os.write(sender.fd, b"\x01" * 12 + b"\xff" * 8)  # a stray write: would announce a 72 PB frame
    with pytest.raises(MalformedFrame, match="not a message"):
        receive_n(receiver, 1)


def test_a_non_blocking_sender_keeps_what_the_socket_cannot_take_and_flushes_it_in_order():
    a, b = Channel.pair()
    sender = Channel(a.fd, blocking=False)
    try:
        blobs = [bytes([i]) * 100_000 for i in range(8)]  # 800 kB: far more than a socket buffer holds
        for i, blob in enumerate(blobs):
            sender.send(pickle.dumps(i), blob)  # never blocks
        assert sender.pending
        got = []
        while len(got) < len(blobs):
            sender.flush()
            got += [(pickle.loads(head), bytes(blob)) for head, blob in b.receive()]
        assert got == list(enumerate(blobs))
        assert sender.flush() and not sender.pending
    finally:
        a.close()
        b.close()
