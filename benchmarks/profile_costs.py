"""Where awkgen's process backend spends its time on the bandwidth and tiny workloads:
``python -m benchmarks.profile_costs [--seconds S]``; prints one JSON object.

Bandwidth (32 MiB float32 batches): the per-batch costs a worker pays, measured on
their own in this process, each the median of repeated runs:

- ``fresh_fill_ms``:  the benchmark's loader, ``np.full`` into a fresh array (allocation,
  page faults, the fill): what every contender pays;
- ``copy_to_shm_ms``: ``np.copyto`` of that array into a warm shared-memory mapping
  (``/dev/shm``, pages already faulted): what awkgen's process backend adds today;
- ``fill_in_shm_ms``: the loader's fill written straight into the warm mapping: what a
  loader would pay if it could build its array in shared memory (an ``awkgen.empty()``);
- ``touch_ms``: the consumer reading one value per page of a warm mapping.

The tiny workload's floor (``tiny_floor``): the bare loop and ``DataGenerator`` calling the
same loader in-line, whose CPU per batch less the bare loop's is the generator's own work
per batch, paid by every backend's parent.

Then awkgen's process backend itself, on each workload for ``--seconds``: batches/s, and
the CPU time per batch of the parent (all its threads) and of the workers (from
``/proc/<pid>/stat``), so the share of the two cores each side uses is visible; tiny
batches also with ``prefetch=64``.

And the tiny workload with no library (``handoff_floor``: threads and processes, one task a
message) and a bare process pool sharing each message among 1 to 16 batches
(``message_floor``).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loaders import MIB, FullLoader, tiny_loader, touch  # noqa: E402
from benchmarks.proctree import descendants  # noqa: E402

BIG = 32 * MIB


def _median_ms(fn: Callable[[], Any], repeat: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _parts(mm: mmap.mmap) -> dict[str, float]:
    loader = FullLoader(BIG)
    ids = np.zeros(1)
    shm = np.frombuffer(mm, dtype=np.float32)
    shm[:] = 0  # fault every page in: a reused slot is warm
    src = loader(ids)
    return {
        "fresh_fill_ms": _median_ms(lambda: loader(ids)),
        "copy_to_shm_ms": _median_ms(lambda: np.copyto(shm, src)),
        "fill_in_shm_ms": _median_ms(lambda: shm.fill(1.0)),
        "touch_ms": _median_ms(lambda: touch(shm)),
    }


def bandwidth_parts() -> dict[str, float]:
    with tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as f:
        f.truncate(BIG)
        mm = mmap.mmap(f.fileno(), BIG)
        parts = _parts(mm)  # its views are gone when it returns: the mapping can close
        mm.close()
    return {k: round(v, 3) for k, v in parts.items()}


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def awkgen_costs(loader: Any, batch_size: int, workers: int, seconds: float,
                 prefetch: int | None = None) -> dict[str, float]:
    import awkgen

    ids = np.arange(1024 * batch_size)
    with awkgen.DataGeneratorMultiProc(loader, ids, None, batch_size, n_workers=workers, backend="process",
                                       shuffle=False, prefetch=prefetch) as gen:
        for _ in range(4 * workers + 4):
            touch(next(gen))
        kids = descendants()
        parent0, kids0 = time.process_time(), sum(_cpu_s(p) for p in kids)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            touch(next(gen))
            n += 1
        wall = time.perf_counter() - start
        parent, workers_cpu = time.process_time() - parent0, sum(_cpu_s(p) for p in kids) - kids0
        stats = gen.stats()
    return {"batches_per_s": round(n / wall, 1), "parent_cpu_us_per_batch": round(1e6 * parent / n, 1),
            "workers_cpu_us_per_batch": round(1e6 * workers_cpu / n, 1),
            "parent_cores": round(parent / wall, 2), "workers_cores": round(workers_cpu / wall, 2),
            "loader_ms_per_batch": round(1e3 * stats.loader_s / max(1, stats.batches), 3)}


def tiny_floor(seconds: float) -> dict[str, float]:
    """The floor under any backend on the tiny workload, in this process: the bare loop (the
    loader and the consumer's touch, nothing else) and ``DataGenerator`` (the same loader
    called in-line by the generator: its ordering, bookkeeping and Ctrl-C guard per batch,
    no worker, no message). Every backend's parent runs that same generator per batch."""
    import awkgen

    ids = np.arange(1024)

    def rate(step: Callable[[int], Any]) -> tuple[float, float]:
        for i in range(200):
            step(i)
        n, cpu0, start = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - start < seconds:
            step(n)
            n += 1
        return n / (time.perf_counter() - start), 1e6 * (time.process_time() - cpu0) / n

    bare, bare_us = rate(lambda i: touch(tiny_loader(ids[i % 1024:i % 1024 + 1])))
    gen = awkgen.DataGenerator(tiny_loader, ids, None, 1, shuffle=False)
    inline, inline_us = rate(lambda i: touch(next(gen)))
    return {"bare_loop_per_s": round(bare, 1), "bare_loop_cpu_us": round(bare_us, 1),
            "inline_generator_per_s": round(inline, 1), "inline_generator_cpu_us": round(inline_us, 1),
            "generator_us_per_batch": round(inline_us - bare_us, 1)}


_FLOOR_WORKER = """
import os, pickle, sys
import numpy as np
fd, buf = int(sys.argv[1]), b""
try:
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # as awkgen's workers run
except (AttributeError, OSError):
    pass
try:
    while chunk := os.read(fd, 65536):
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "little"):
            n = int.from_bytes(buf[:4], "little")
            seqs, buf = pickle.loads(buf[4:4 + n]), buf[4 + n:]
            reply = pickle.dumps([(seq, np.full(256, float(seq), dtype=np.float32)) for seq in seqs], protocol=5)
            os.write(fd, len(reply).to_bytes(4, "little") + reply)
except OSError:  # the caller closed its end with replies unread: the measurement is over
    pass
"""


def _floor_rate(next_ready: Callable[[], Any], send: Callable[[], None], window: int, seconds: float,
                workers: tuple[int, ...] = ()) -> tuple[float, float, float]:
    """Batches/s, this process's CPU us per batch and the *workers* processes' CPU us per batch
    of a loop that keeps *window* tasks out."""
    for _ in range(window):
        send()
    for _ in range(500):
        touch(next_ready())
        send()
    n, cpu0, start = 0, time.process_time(), time.perf_counter()
    workers0 = sum(_cpu_s(pid) for pid in workers)
    while time.perf_counter() - start < seconds:
        touch(next_ready())
        send()
        n += 1
    workers_s = sum(_cpu_s(pid) for pid in workers) - workers0
    return n / (time.perf_counter() - start), 1e6 * (time.process_time() - cpu0) / n, 1e6 * workers_s / n


def handoff_floor(workers: int, seconds: float) -> dict[str, float]:
    """What any pool pays per batch on the tiny workload, with no library around it: the caller
    keeps ``2 * workers`` tasks out (the window every contender of the scenario runs with) and
    takes the results in order. Threads: ``queue.SimpleQueue`` both ways, the tiny loader in
    *workers* threads. Processes: one socketpair per worker process, a task a pickled list of
    one seq, a reply the pickled list of one ``(seq, array)``, read after ``poll``. The CPU is the caller's process's
    (its threads included), and for processes also the workers' (a wake-up, a read, unpickling
    the task, the loader, pickling and writing the reply: the least a worker process does)."""
    import queue
    import threading

    window = 2 * workers
    out: dict[str, float] = {}
    tasks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[tuple[int, np.ndarray]] = queue.SimpleQueue()

    def work() -> None:
        while (seq := tasks.get()) is not None:
            results.put((seq, tiny_loader(np.array([seq]))))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    counter = {"sent": 0, "next": 0}
    ready: dict[int, Any] = {}

    def send_thread() -> None:
        tasks.put(counter["sent"])
        counter["sent"] += 1

    def next_thread() -> Any:
        while counter["next"] not in ready:
            seq, value = results.get()
            ready[seq] = value
        counter["next"] += 1
        return ready.pop(counter["next"] - 1)

    rate, cpu, _ = _floor_rate(next_thread, send_thread, window, seconds)
    out.update(threads_per_s=round(rate, 1), threads_cpu_us=round(cpu, 1))
    for _ in threads:
        tasks.put(None)

    rate, cpu, workers_cpu = _process_floor(workers, 1, window, seconds)
    out.update(processes_per_s=round(rate, 1), processes_cpu_us=round(cpu, 1),
               processes_workers_cpu_us=round(workers_cpu, 1))
    return out


#: ``message_floor``'s runs: batches per message, the window per worker, and whether one worker
#: streams: the tiny scenario's window (2 per worker) split into messages of 1, 2 and 4, round
#: robin; the same window streamed to one busy worker (awkgen's dispatch for quick loaders),
#: 1 and 2 a message; then a wide window of messages of 16.
MESSAGE_FLOOR_RUNS = ((1, 2, False), (2, 2, False), (4, 2, False), (1, 2, True), (2, 2, True), (16, 32, False))


def message_floor(workers: int, seconds: float) -> dict[str, dict[str, float]]:
    """The bare process pool of ``handoff_floor`` with *k* batches per message each way: the
    caller sends *k* consecutive tasks as one pickled list, the worker runs them and answers
    with one pickled list of *k* ``(seq, array)``. Messages go round robin, or (*streaming*)
    all to one worker, whose socket the caller reads before it asks ``poll``, as awkgen's
    dispatch does for quick loaders. For each run of ``MESSAGE_FLOOR_RUNS``: batches/s, and
    the caller's and the workers' CPU per batch. The caller's CPU is what a pool's parent pays
    to send a task and receive its batch in that design with no library around it; the parent
    is one interpreter, so its rate is at most 1 s over that plus the generator's own work."""
    out = {}
    for per_message, per_worker, streaming in MESSAGE_FLOOR_RUNS:
        rate, cpu, workers_cpu = _process_floor(workers, per_message, per_worker * workers, seconds, streaming)
        out[f"{per_message}_per_message_window_{per_worker * workers}" + ("_streaming" if streaming else "")] = {
            "per_message": per_message, "window": per_worker * workers, "streaming": streaming,
            "per_s": round(rate, 1), "caller_cpu_us": round(cpu, 1), "workers_cpu_us": round(workers_cpu, 1)}
    return out


def _process_floor(workers: int, per_message: int, window: int, seconds: float,
                   streaming: bool = False) -> tuple[float, float, float]:
    """Batches/s, the caller's and the workers' CPU us per batch of a bare pool of *workers*
    processes over socketpairs, *per_message* tasks a message each way, *window* tasks out;
    *streaming*: every message to the first worker, its socket read before ``poll``."""
    import select
    import socket
    import subprocess

    pairs = [socket.socketpair() for _ in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-c", _FLOOR_WORKER, str(child.fileno())], pass_fds=[child.fileno()])
             for _, child in pairs]
    for _, child in pairs:
        child.close()
    fds = [parent.fileno() for parent, _ in pairs]
    for fd in fds:
        os.set_blocking(fd, False)  # reads after poll, or tried first when streaming; writes are small
    buffers = {fd: b"" for fd in fds}
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    counter = {"sent": 0, "next": 0}
    pending: list[int] = []
    ready: dict[int, Any] = {}

    def send() -> None:
        pending.append(counter["sent"])
        counter["sent"] += 1
        if len(pending) == per_message:  # round robin over messages
            message = pickle.dumps(pending, protocol=5)
            fd = fds[0] if streaming else fds[pending[0] // per_message % workers]
            os.write(fd, len(message).to_bytes(4, "little") + message)
            pending.clear()

    def take(fd: int) -> None:
        buf = buffers[fd] + os.read(fd, 1 << 18)
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "little"):
            n = int.from_bytes(buf[:4], "little")
            replies, buf = pickle.loads(buf[4:4 + n]), buf[4 + n:]
            ready.update(replies)
        buffers[fd] = buf

    def next_ready() -> Any:
        if streaming and counter["next"] not in ready:
            try:
                take(fds[0])
            except BlockingIOError:  # nothing there yet: wait below
                pass
        while counter["next"] not in ready:
            for fd, _ in poller.poll():
                take(fd)
        counter["next"] += 1
        return ready.pop(counter["next"] - 1)

    try:
        return _floor_rate(next_ready, send, window, seconds, tuple(proc.pid for proc in procs))
    finally:
        for parent, _ in pairs:
            parent.close()
        for proc in procs:
            proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    out = {"bandwidth_parts": bandwidth_parts(),
           "bandwidth_awkgen_process": awkgen_costs(FullLoader(BIG), 1, 2, args.seconds),
           "tiny_awkgen_process": awkgen_costs(tiny_loader, 1, os.cpu_count() or 1, args.seconds),
           # the same with a wide window: what the parent pays per batch when it seldom waits
           "tiny_awkgen_process_prefetch_64": awkgen_costs(tiny_loader, 1, os.cpu_count() or 1, args.seconds, 64),
           "tiny_floor": tiny_floor(args.seconds),
           "handoff_floor": handoff_floor(os.cpu_count() or 1, args.seconds),
           "message_floor": message_floor(os.cpu_count() or 1, args.seconds)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
