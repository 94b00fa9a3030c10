"""Stress harness: random configurations that must never hang, lose a batch or leak.

Run it from the repository root (``make stress`` runs it for ``STRESS_MINUTES``, 60 by default)::

    python -m tests.stress --count 200             # 200 configurations from a random base seed
    python -m tests.stress --seed 1000 --count 50  # configurations 1000..1049
    python -m tests.stress --seeds 17,1086         # exactly these
    python -m tests.stress --minutes 60 --jobs 2   # until time is up, two child interpreters at once
    python -m tests.stress --replay 1086           # rerun one configuration, narrating every call
    python -m tests.stress --seed 0 --count 20 --show   # print configurations without running them

Configuration ``S`` is drawn from ``random.Random(S)`` (and awkgen's size thresholds, so
a seed names the same configuration as long as those stay put): a backend (the blocking
``DataGenerator``, ``DataGeneratorMultiProc`` with ``backend="thread"`` or
``"process"``), workers, prefetch depth, ids (numpy or list, shuffled or not), batch
size, result structure (an array, a tuple or dict of arrays, plain objects) and size
(around every threshold: the 64 KiB inline limit, slot growth and outliers, the socket
buffer, the wire's read size, tiny), loader speed, how long the caller "trains" between
batches (with pauses longer than any timeout), garbage-collector pressure (low
thresholds, batches dropped in reference cycles, ``gc.collect()`` from another thread),
loader errors, worker deaths (``os._exit`` or ``SIGKILL`` inside the loader, ``SIGKILL``
from outside at random moments, while workers start, or while they idle), workers that
cannot load the loader at all, timeouts, a stop from another thread, Ctrl-C (SIGINT to
the main thread during calls), ``state_dict``/``load_state_dict`` (into the same
generator, or a fresh one with another backend and worker count), a thread calling
``gen.stats()``, and how the generator ends (``close()``, ``gen(stop=True)``,
``CleanupGenerator``, ``with``, or dropping it). The loaders live in
:mod:`tests.stress_loaders`; what they do is a pure function of the configuration and the
batch's ids, so the expected stream is known.

Invariants checked for every configuration:

- every ``gen()`` (and every close, join, state load) returns or raises within
  ``CALL_DEADLINE_S`` (plus the timeout's share);
- the stream equals the blocking generator's (same ids, batch size, shuffle, seed,
  drop_last): every batch holds the right ids and content, in order, with its labels;
  each failed batch raises ``LoaderError`` (caused by the loader's exception),
  ``WorkerDiedError`` or ``LoaderTimeoutError`` at its own position, naming it, and the
  next call gives the next batch; a ``SIGKILL`` from outside costs at most the batch its
  worker was running, none when the worker was idle; Ctrl-C inside a call loses no
  batch; workers that cannot load the loader make every call raise an ``AwkgenError``;
- ``gen.epoch``/``gen.step`` and ``state_dict()`` name the next position; kept batches are
  never overwritten; after a stop from another thread calls raise ``GeneratorStoppedError``;
- once the generator is closed, and while the caller still holds it (or once it is
  dropped and collected), no child process, thread, file descriptor or file in the
  shared-memory directory remains (polled for ``LEAK_WAIT_S``).

Configurations run in child interpreters (``--batch`` of them per child, a fresh child
after any failure), one at a time, each child with a private ``AWKGEN_SHM_DIR``. Inside a
child a watchdog thread dumps every thread's stack and the state of the worker processes
and ends the child when an action outlives its deadline (``faulthandler`` backs it up for
an interpreter too stuck to run it); outside, the driver kills the child's process group
when a configuration outlives its hard limit. Every failure prints ``FAIL seed=<S>
<config>``, what broke (the assertion; for a hang, the main thread's innermost frames,
then the whole dump) and ``replay: python -m tests.stress --replay <S>``. The run ends
with ``N configurations, F failures`` and exits non-zero on any failure.
``tests/test_stress.py`` runs a fixed slice of thirty seeds in the normal suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import itertools
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.fidelity import diff
from tests.stress_loaders import (
    RESULT_KINDS,
    DoomedLoader,
    Shape,
    StressLoader,
    check_value,
    id_numbers,
    plan,
    tree_for,
)

CALL_DEADLINE_S = 20.0  # a gen() call (or a close, a join) taking longer is a hang
LEAK_WAIT_S = 5.0  # how long processes, threads, fds and shm files get to go after a close
BATCH_PER_CHILD = 20  # configurations one child interpreter runs before a fresh one takes over
HARD_SLACK_S = 30.0  # the driver's limit: the config's own limit plus this
PROTOCOL = "@@stress "  # prefix of the child's result lines on stdout
MARKER = "@@stress-seed "  # starts a configuration's section of the child's stderr
WATCHDOG_EXIT = 70
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AWKGEN_DIR = os.path.join(REPO, "awkgen") + os.sep
BACKENDS = ("blocking", "thread", "process")
_ALWAYS_SHOWN = {"backend", "n_workers", "prefetch", "n_ids", "batch_size", "ids_kind", "shuffle", "gen_seed",
                 "drop_last", "n_calls", "result", "size_class", "size", "sleep_ms", "end"}
SIZE_CLASSES = ("tiny", "inline_edge", "pipe60k", "sockbuf", "read_bytes", "large", "grow")


def _min_shm_bytes() -> int:
    from awkgen import transport

    return int(transport.MIN_SHM_BYTES)


def _read_bytes() -> int:
    from awkgen.executors import _wire

    return int(getattr(_wire, "_READ_BYTES", 256 * 1024))


def _socket_buffer() -> int:
    try:
        with open("/proc/sys/net/core/wmem_default") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 212992


# -- configurations -------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    seed: int
    backend: str
    n_workers: int
    prefetch: int | None
    timeout: float | None
    n_ids: int
    batch_size: int
    ids_kind: str  # "array64", "array32", "list_int", "list_str"
    id_offset: int
    id_stride: int
    labels: bool
    shuffle: bool
    gen_seed: int | None
    drop_last: bool
    n_calls: int
    result: str
    size_class: str
    size: int
    growth: int
    outlier_every: int
    outlier_factor: int
    sleep_ms: float
    spin: bool
    p_raise: float
    p_exit: float
    exit_mode: str
    p_slow: float
    slow_s: float
    shm: str  # "private": a private tmpfs dir; "missing": AWKGEN_SHM_DIR names no directory
    doomed: str | None  # None, or how workers fail to load the loader: "raise" / "exit"
    gc_threshold: int | None
    gc_thread: bool
    cycle_drop: bool
    keep: int
    monitor: bool
    interrupt: bool
    kill_times: tuple[float, ...]
    idle_kill_at: int | None
    stop: tuple[str, float] | None
    state_at: int | None
    state_action: str | None  # "rewind" or "handoff"
    resume_at: int | None
    handoff: tuple[str, int, int | None] | None  # backend, n_workers, prefetch
    end: str  # "close", "stop", "cleanup", "with", "drop"
    overlap: bool  # a handoff builds the new generator before closing the old one
    consumer_ms: float  # the caller "trains" about this long after each batch: replies pile up meanwhile
    pause_every: int  # and every this many calls (0: never) pauses pause_s, longer than any timeout
    pause_s: float
    expected_s: float
    in_place: bool = False  # the loader builds its int64 arrays with awkgen.empty
    tree: bool = False  # the result carries an oracle tree too (tests/fidelity.py), compared with a serial build
    lazy_ids: str | None = None  # None, "memmap", "range" or "sequence": see _lazy_ids

    def summary(self) -> str:
        """The configuration on one line: the core fields, and the optional ones that are on."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("seed", "expected_s") or f.name not in _ALWAYS_SHOWN and value in (None, False, 0, ()):
                continue
            if (f.name == "exit_mode" and not self.p_exit or f.name == "shm" and value == "private"
                    or f.name == "outlier_factor" and not self.outlier_every):
                continue
            parts.append(f"{f.name}={round(value, 4) if isinstance(value, float) else value}")
        return " ".join(parts)

    def shape(self, host_pid: int) -> Shape:
        return Shape(salt=self.seed & 0xFFFFFFFF, host_pid=host_pid, result=self.result, size=self.size,
                     growth=self.growth, outlier_every=self.outlier_every, outlier_factor=self.outlier_factor,
                     sleep_ms=self.sleep_ms, spin=self.spin, p_raise=self.p_raise, p_exit=self.p_exit,
                     exit_mode=self.exit_mode, p_slow=self.p_slow, slow_s=self.slow_s,
                     id_offset=self.id_offset, id_stride=self.id_stride, in_place=self.in_place, tree=self.tree)

    @property
    def call_deadline_s(self) -> float:
        return CALL_DEADLINE_S + 2 * (self.timeout or 0.0) + (self.slow_s if self.p_slow else 0.0)

    @property
    def limit_s(self) -> float:
        """The most a whole configuration may take inside its child."""
        return 60.0 + 4 * self.expected_s


def _size(r: random.Random, size_class: str) -> tuple[int, int]:
    """(size, growth) in bytes for a size class."""
    min_shm, read_bytes, sock = _min_shm_bytes(), _read_bytes(), _socket_buffer()
    if size_class == "tiny":
        return r.randint(8, 2048), 0
    if size_class == "inline_edge":
        return min_shm + r.choice([-4096, -192, -128, -64, -8, 0, 8, 64, 4096]), 0
    if size_class == "pipe60k":
        return r.randint(52 * 1024, min_shm - 128), 0
    if size_class == "sockbuf":
        return sock + r.choice([-4096, -512, -64, 0, 64, 512, 4096]), 0
    if size_class == "read_bytes":
        return read_bytes + r.choice([-4096, -512, -256, -192, -128, -64, 0, 64, 128, 4096]), 0
    if size_class == "large":
        return r.randint(1, 4) * 2**20 + r.randint(0, 4096), 0
    base = r.choice([4096, 60 * 1024, min_shm, 200 * 1024])
    return base, r.choice([64, 512, 4096, 16384])


def draw_config(seed: int) -> Config:
    """The configuration of *seed*: a pure function of it (and of awkgen's thresholds)."""
    r = random.Random(seed)
    backend = r.choices(BACKENDS, weights=[1, 2, 5])[0]
    multi = backend != "blocking"
    process = backend == "process"
    doomed = r.choice(["raise", "exit"]) if process and r.random() < 0.04 else None
    n_workers = r.randint(1, 4) if multi else 1
    prefetch = r.choice([None, None, 1, 2, 3, 4, 8, 16, r.randint(1, 16)]) if multi else None
    n_ids = r.choice([r.randint(1, 12), r.randint(10, 100), r.randint(100, 400)])
    batch_size = r.choice([1, r.randint(1, n_ids), min(n_ids, r.randint(1, 8)), n_ids])
    ids_kind = r.choice(["array64", "array64", "array32", "list_int", "list_str"])
    id_offset = r.choice([0, 1, 1000] + ([] if ids_kind == "array32" else [10**9]))
    id_stride = r.choice([1, 3, 7])
    result = r.choices(RESULT_KINDS, weights=[4, 1, 1, 1, 1])[0]
    size_class = r.choice(SIZE_CLASSES)
    size, growth = _size(r, size_class)
    outlier_every, outlier_factor = 0, 1
    if r.random() < 0.25:
        outlier_every, outlier_factor = r.choice([3, 7, 20]), r.choice([4, 16, 40])
    sleep_ms = r.choices([0.0, r.uniform(0.02, 1.0), r.uniform(1.0, 10.0), r.uniform(10.0, 40.0)],
                         weights=[4, 2, 2, 1])[0]
    spin = sleep_ms > 0 and r.random() < 0.15
    p_raise = r.choice([0.0, 0.0, 0.0, 0.03, 0.1, 0.3])
    p_exit = r.choice([0.0, 0.0, 0.0, 0.02, 0.05, 0.1]) if process else 0.0
    exit_mode = r.choice(["exit", "sigkill"])
    timeout, p_slow, slow_s = None, 0.0, 0.0
    if multi and r.random() < 0.25:
        # Far above a normal call: its sleep, and making and copying its largest result (an
        # outlier of tens of MB takes a while when several stress children share two cores).
        largest = min((size + growth * n_ids) * outlier_factor, 2e8)
        timeout = round(max(0.3, 20 * sleep_ms / 1000 + 0.3 + 20 * largest / 5e8), 2)
        p_slow = r.choice([0.0, 0.05, 0.1])
        slow_s = round(timeout + r.uniform(0.3, 1.0), 2) if p_slow else 0.0
    # Bound the configuration's time: a few seconds of loading at most.
    n_calls = r.choice([r.randint(1, 10), r.randint(10, 80), r.randint(80, 300)])
    avg_bytes = (size + growth * n_ids / max(1, id_stride) / 2) * (1 + (outlier_factor - 1) / max(1, outlier_every))
    per_call = sleep_ms / 1000 / (n_workers if process or not spin else 1) + 3e-4 + min(avg_bytes, 24e6) / 5e8
    n_calls = max(1, min(n_calls, int(3.0 / per_call)))
    if p_slow:
        p_slow = min(p_slow, 2.0 / n_calls)
    if p_exit:
        p_exit = min(p_exit, 8.0 / n_calls)
    expected_s = 0.5 + n_calls * per_call + n_calls * (p_slow * slow_s + p_exit * 0.3)
    shm = "missing" if process and r.random() < 0.1 else "private"
    gc_threshold = r.choice([None, None, r.randint(50, 700)])
    gc_thread = r.random() < 0.3
    cycle_drop = r.random() < 0.4
    keep = r.choice([0, 0, 1, 3, 8])
    monitor = r.random() < 0.3
    interrupt = r.random() < 0.12
    kill_times: tuple[float, ...] = ()
    if process and r.random() < 0.25:
        times = [r.uniform(0.0, expected_s) for _ in range(r.randint(1, 3))]
        if r.random() < 0.3:
            times.append(r.uniform(0.0, 0.2))  # while workers start
        kill_times = tuple(sorted(round(t, 3) for t in times))
    idle_kill_at = r.randrange(n_calls) if process and r.random() < 0.15 else None
    stop = (r.choice(["close", "stop"]), round(r.uniform(0.0, expected_s), 3)) if r.random() < 0.2 else None
    state_at = state_action = resume_at = handoff = None
    if r.random() < 0.25:
        state_at = r.randrange(n_calls)
        resume_at = r.randint(state_at, n_calls - 1)
        state_action = r.choice(["rewind", "handoff"])
        if state_action == "handoff":
            to = r.choices(BACKENDS, weights=[1, 2, 3])[0]
            handoff = (to, 1 if to == "blocking" else r.randint(1, 4),
                       None if to == "blocking" else r.choice([None, 1, 4, 16]))
    end = r.choice(["close", "stop", "cleanup", "with", "drop"])
    gen_seed = None if r.random() < 0.3 else r.randrange(2**32)
    shuffle = r.random() < 0.7
    drop_last = r.random() < 0.3
    labels = r.random() < 0.3
    consumer_ms = r.choices([0.0, r.uniform(0.05, 2.0), r.uniform(2.0, 15.0)], weights=[3, 2, 1])[0]
    consumer_ms = min(consumer_ms, 2000.0 / n_calls)
    pause_every = r.choice([0, 0, 0, max(r.randint(5, 60), n_calls // 6)])
    pause_s = round(r.uniform(0.2, 0.8), 3) if pause_every else 0.0
    expected_s += n_calls * consumer_ms / 1000 + (n_calls // pause_every * pause_s if pause_every else 0.0)
    if doomed:
        n_calls, kill_times, idle_kill_at, stop, state_at, state_action, resume_at, handoff = 3, (), None, None, \
            None, None, None, None
        interrupt = False
    overlap = r.random() < 0.5
    in_place = r.random() < 0.3  # drawn last: every earlier draw of a seed stays what it was
    tree = r.random() < 0.5  # later still, for the same reason
    lazy_ids, n_ids = _draw_lazy_ids(r, ids_kind, n_ids, labels, growth)  # after tree, for the same reason
    return Config(seed=seed, backend=backend, n_workers=n_workers, prefetch=prefetch, timeout=timeout, n_ids=n_ids,
                  batch_size=batch_size, ids_kind=ids_kind, id_offset=id_offset, id_stride=id_stride, labels=labels,
                  shuffle=shuffle, gen_seed=gen_seed, drop_last=drop_last, n_calls=n_calls, result=result,
                  size_class=size_class, size=size, growth=growth, outlier_every=outlier_every,
                  outlier_factor=outlier_factor, sleep_ms=round(sleep_ms, 3), spin=spin, p_raise=p_raise,
                  p_exit=p_exit, exit_mode=exit_mode, p_slow=p_slow, slow_s=slow_s, shm=shm, doomed=doomed,
                  gc_threshold=gc_threshold, gc_thread=gc_thread, cycle_drop=cycle_drop, keep=keep, monitor=monitor,
                  interrupt=interrupt, kill_times=kill_times, idle_kill_at=idle_kill_at, stop=stop,
                  state_at=state_at, state_action=state_action, resume_at=resume_at, handoff=handoff, end=end,
                  overlap=overlap and handoff is not None, consumer_ms=round(consumer_ms, 3),
                  pause_every=pause_every, pause_s=pause_s, expected_s=round(expected_s, 2), in_place=in_place,
                  tree=tree, lazy_ids=lazy_ids)


def _draw_lazy_ids(r: random.Random, ids_kind: str, n_ids: int, labels: bool, growth: int) -> tuple[str | None, int]:
    """In three configurations in ten, the ids come in a container awkgen indexes per batch and never
    copies: a read-only memory map (numpy ids), a ``range`` or a ``Sequence`` (list ids). Half of those
    without labels or per-position growth hold about a billion ids, or just over ``EXACT_MAX``, so the
    Feistel order runs too. Returns ``(kind, n_ids)``."""
    if r.random() >= 0.3:
        return None, n_ids
    if ids_kind.startswith("array"):
        return "memmap", n_ids
    kind = r.choice(["range", "sequence"]) if ids_kind == "list_int" else "sequence"
    if not labels and not growth and r.random() < 0.5:
        from awkgen.sampling import EXACT_MAX

        n_ids = r.choice([EXACT_MAX + r.randint(1, 5000), 10**9 + r.randint(0, 10**6)])
    return kind, n_ids


# -- inside a child interpreter: the watchdog and the processes ---------------------------------

class Watchdog:
    """Ends the process, after dumping every thread's stack and the state of its child
    processes, when the main thread's current action outlives its deadline.

    A Python thread, so the dump says which action hung; ``faulthandler`` backs it up
    for an interpreter so stuck that this thread cannot run (see ``run_child``).
    """

    def __init__(self) -> None:
        self._armed: tuple[float, str] | None = None
        self.seed: int | None = None
        threading.Thread(target=self._run, name="stress-watchdog", daemon=True).start()

    def arm(self, what: str, seconds: float) -> None:
        self._armed = (time.monotonic() + seconds, what)

    def disarm(self) -> None:
        self._armed = None

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            armed = self._armed
            if armed is not None and time.monotonic() > armed[0]:
                sys.stderr.write(f"\nWATCHDOG seed={self.seed}: {armed[1]} did not finish in time\n")
                sys.stderr.write(describe_processes())
                sys.stderr.flush()
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                sys.stderr.flush()
                os._exit(WATCHDOG_EXIT)


def worker_pids() -> list[int]:
    """The live worker processes of this interpreter's pools: the forkserver's children,
    the grandchildren of this process (the resource tracker and the forkserver are its
    children)."""
    from awkgen import procfs

    table = procfs.process_table()
    me = os.getpid()
    children = {pid for pid, (ppid, _) in table.items() if ppid == me}
    return sorted(pid for pid, (ppid, state) in table.items() if ppid in children and state != "Z")


def describe_processes() -> str:
    """Every descendant of this process: pid, state and the kernel function it waits in."""
    from awkgen import procfs

    table = procfs.process_table()
    lines, frontier, depth = [], [os.getpid()], 0
    while frontier and depth < 4:
        depth += 1
        nxt = []
        for parent in frontier:
            for pid, (ppid, state) in sorted(table.items()):
                if ppid != parent:
                    continue
                nxt.append(pid)
                try:
                    with open(f"/proc/{pid}/wchan") as f:
                        wchan = f.read().strip() or "-"
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    wchan = comm = "?"
                lines.append(f"  {'  ' * (depth - 1)}pid {pid} ({comm}) state {state} waiting in {wchan}")
        frontier = nxt
    return "descendant processes:\n" + ("\n".join(lines) if lines else "  (none)") + "\n"


# -- one configuration ----------------------------------------------------------------------------

class Failure(AssertionError):
    """An invariant broke; the message says which and where."""


def _ids_only(ids: Any) -> Any:
    return ids


def _make_ids(cfg: Config) -> Any:
    if cfg.lazy_ids:
        return _lazy_ids(cfg)
    numbers = cfg.id_offset + cfg.id_stride * np.arange(cfg.n_ids, dtype=np.int64)
    if cfg.ids_kind == "array64":
        return numbers
    if cfg.ids_kind == "array32":
        return numbers.astype(np.int32)
    if cfg.ids_kind == "list_int":
        return numbers.tolist()
    return [f"s{n}" for n in numbers.tolist()]


class _LazyIds(Sequence):
    """``cfg.n_ids`` ids computed on demand (ints, or ``"s<n>"`` strings), which refuse to be iterated whole."""

    def __init__(self, cfg: Config) -> None:
        self.n, self.offset, self.stride = cfg.n_ids, cfg.id_offset, cfg.id_stride
        self.text = cfg.ids_kind == "list_str"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise Failure(f"the lazy ids were indexed with {i!r}, not a position in [0, {self.n})")
        number = self.offset + self.stride * i
        return f"s{number}" if self.text else number

    def __iter__(self) -> Any:
        raise Failure("the lazy ids were iterated whole: awkgen must index them per batch")


def _lazy_ids(cfg: Config) -> Any:
    """The configuration's ids in its lazy container: the same ids, values and order as :func:`_make_ids`'s."""
    if cfg.lazy_ids == "range":
        return range(cfg.id_offset, cfg.id_offset + cfg.id_stride * cfg.n_ids, cfg.id_stride)
    if cfg.lazy_ids == "sequence":
        return _LazyIds(cfg)
    dtype = np.int64 if cfg.ids_kind == "array64" else np.int32
    fd, path = tempfile.mkstemp(suffix=".ids")
    os.close(fd)
    try:
        ids = np.memmap(path, dtype=dtype, mode="w+", shape=(cfg.n_ids,))
        ids[:] = cfg.id_offset + cfg.id_stride * np.arange(cfg.n_ids, dtype=np.int64)
        ids.flush()
        del ids
        return np.memmap(path, dtype=dtype, mode="r", shape=(cfg.n_ids,))  # the mapping outlives the name
    finally:
        os.unlink(path)


def _label_rows(n_ids: int) -> np.ndarray:
    return (np.arange(n_ids, dtype=np.int32) * 3 + 1) % 1000


def _raised_in_awkgen(tb: Any) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(AWKGEN_DIR):
            return True
        tb = tb.tb_next
    return False


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return fds


def _describe(obj: Any) -> str:
    if isinstance(obj, types.FrameType):
        return f"frame of {obj.f_code.co_name} ({os.path.basename(obj.f_code.co_filename)}:{obj.f_lineno})"
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}({str(obj)[:60]!r})"
    return type(obj).__name__


def _holder_story(obj: Any) -> str:
    """Why *obj* is still alive: its referrers; for a frame, the deepest frame called from
    it (a traceback keeps a frame, and every frame its callers, alive) and who holds that."""
    holders = gc.get_referrers(obj)
    story = [", ".join(_describe(r) for r in holders[:6])]
    frames = [r for r in holders if isinstance(r, types.FrameType)]
    if frames:
        deepest, seen = frames[0], set()
        while id(deepest) not in seen:
            seen.add(id(deepest))
            deeper = [r for r in gc.get_referrers(deepest) if isinstance(r, types.FrameType) and r.f_back is deepest]
            if deeper:
                deepest = deeper[0]
        tbs = [r for r in gc.get_referrers(deepest) if isinstance(r, types.TracebackType)]
        owners = [_describe(r) for tb in tbs for r in gc.get_referrers(tb) if isinstance(r, BaseException)]
        story.append(f"the frames end in {_describe(deepest)}, held by a traceback of {owners or tbs}")
    return "; ".join(story)


class Reference:
    """The expected stream: the blocking generator's batches, by position."""

    def __init__(self, cfg: Config, ids: Any, seed: int) -> None:
        import awkgen

        self._gen = awkgen.DataGenerator(_ids_only, ids, None, cfg.batch_size, shuffle=cfg.shuffle, seed=seed,
                                         drop_last=cfg.drop_last)
        self.steps = self._gen.steps_per_epoch
        self._cache: list[np.ndarray] = []

    def numbers(self, position: int) -> np.ndarray:
        while len(self._cache) <= position:
            self._cache.append(id_numbers(self._gen()[0]))
        return self._cache[position]

    def close(self) -> None:
        self._gen.close()


@dataclass
class _Shared:
    """What the main thread and a configuration's helper threads share."""

    gen: Any = None
    swap_lock: threading.Lock = field(default_factory=threading.Lock)
    stop_target: Any = None
    stop_started: bool = False
    stop_done: bool = False
    kills: int = 0  # SIGKILLs that reached a worker at a random moment: each may fail one batch
    armed: bool = False  # a gen() call is running: a SIGINT now raises KeyboardInterrupt
    sigints: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)


class ConfigRun:
    """Runs one configuration in this interpreter and checks every invariant."""

    def __init__(self, cfg: Config, watchdog: Watchdog, verbose: bool = False) -> None:
        self.cfg = cfg
        self.watchdog = watchdog
        self.verbose = verbose
        self.shared = _Shared()
        self.rng = random.Random(cfg.seed * 7919 + 1)
        self.notes: dict[str, int] = {"values": 0, "errors": 0, "interrupts": 0, "kill_deaths": 0,
                                      "start_breaks": 0, "trees": 0}
        self.kept: deque[tuple[Any, np.ndarray, Any, str]] = deque()
        self.kill_budget_used = 0
        self.backend = cfg.backend
        self.timeout = cfg.timeout
        self.shape = cfg.shape(os.getpid())
        self.dropped: weakref.ref[Any] | None = None

    # -- helpers -----------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.verbose:
            sys.stderr.write(f"  {message}\n")
            sys.stderr.flush()

    def watched(self, what: str, fn: Any, *args: Any, seconds: float | None = None) -> Any:
        self.watchdog.arm(f"{what}", seconds or self.cfg.call_deadline_s)
        try:
            return fn(*args)
        finally:
            self.watchdog.disarm()

    def build(self, backend: str, n_workers: int, prefetch: int | None, seed: int | None) -> Any:
        import awkgen

        cfg = self.cfg
        if cfg.doomed:
            loader: Any = DoomedLoader(os.getpid(), cfg.doomed)
        else:
            loader = StressLoader(self.shape, cfg.ids_kind.startswith("array"))
        labels = _label_rows(cfg.n_ids) if cfg.labels else None
        common = {"shuffle": cfg.shuffle, "seed": seed, "drop_last": cfg.drop_last}
        if backend == "blocking":
            return awkgen.DataGenerator(loader, self.ids, labels, cfg.batch_size, **common)
        return awkgen.DataGeneratorMultiProc(loader, self.ids, labels, cfg.batch_size, n_workers, backend=backend,
                                             prefetch=prefetch, timeout=cfg.timeout, **common)

    def position(self, gen: Any) -> int:
        return gen.epoch * self.ref.steps + gen.step

    def where(self, p: int) -> str:
        epoch, step = divmod(p, self.ref.steps)
        return f"position {p} (epoch {epoch}, step {step})"

    # -- the run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from tests.leaks import Snapshot

        cfg = self.cfg
        shm_dir = os.environ["AWKGEN_SHM_DIR"]
        if cfg.shm == "missing":
            os.environ["AWKGEN_SHM_DIR"] = os.path.join(shm_dir, "missing")
        saved_gc = gc.get_threshold()
        saved_sigint = signal.getsignal(signal.SIGINT)
        self.ids = _make_ids(cfg)  # before the baseline: a memory map of ids holds a file descriptor, the caller's
        before = Snapshot.take()
        fds_before = _open_fds()
        threads: list[threading.Thread] = []
        try:
            if cfg.gc_threshold:
                gc.set_threshold(cfg.gc_threshold, 10, 10)
            if cfg.interrupt:
                signal.signal(signal.SIGINT, self._on_sigint)
            # The generator lives in self.shared only: "drop" must be able to let go of it.
            self.shared.gen = self.watched("building the generator", self.build, cfg.backend, cfg.n_workers,
                                           cfg.prefetch, cfg.gen_seed)
            self.started = time.monotonic()
            if cfg.end == "with":
                self.shared.gen.__enter__()
            self.ref = Reference(cfg, self.ids, self.shared.gen.seed)
            threads = self._start_threads()
            if cfg.doomed:
                self._doomed(self.shared.gen)
            else:
                self._stream()
            self.shared.done.set()
            for thread in threads:
                self.watched(f"joining the {thread.name} thread", thread.join)
            if self.shared.errors:
                raise Failure("; ".join(self.shared.errors[:5]))
            self._end()
            while self.kept:
                self._check_kept(self.kept.popleft())
        finally:
            self.shared.done.set()
            for thread in threads:
                thread.join(CALL_DEADLINE_S)
            signal.signal(signal.SIGINT, saved_sigint)
            gc.set_threshold(*saved_gc)
            os.environ["AWKGEN_SHM_DIR"] = shm_dir
            self.kept.clear()
            # A closed generator the caller still holds must hold nothing either: keep it through the check.
            closed = self.shared.gen if cfg.end != "drop" else None
            self.shared.gen = self.shared.stop_target = None
            if hasattr(self, "ref"):
                self.ref.close()
        gc.collect()
        # A thread cannot be killed: one abandoned after a timeout exits when its loader call
        # returns (README), which may be up to a slow call after the close.
        abandoned_s = cfg.slow_s if cfg.backend == "thread" and cfg.timeout is not None else 0.0
        problems = self._leaks(before, shm_dir, within_s=LEAK_WAIT_S + abandoned_s)
        if problems:
            new_fds = {fd: target for fd, target in _open_fds().items() if fds_before.get(fd) != target}
            if new_fds:
                problems.append(f"new fds: {dict(sorted(new_fds.items())[:6])}")
            alive = self.dropped() if self.dropped is not None else None
            if alive is not None:
                problems.append(f"the dropped generator was never collected: {_holder_story(alive)}")
            del alive
            closed = None
            gc.collect()
            if not self._leaks(before, shm_dir, within_s=0.5):
                problems.append("(all gone after dropping the generator and a second gc.collect())")
            raise Failure(f"after the generator was closed ({cfg.end}): " + "; ".join(problems))
        del closed
        self.notes.update(sigints=self.shared.sigints, kills=self.shared.kills)
        return self.notes

    def _leaks(self, before: Any, shm_dir: str, within_s: float = LEAK_WAIT_S) -> list[str]:
        from tests.leaks import wait_for_no_leaks

        problems = self.watched("waiting for workers, threads and fds to go", wait_for_no_leaks, before, within_s,
                                seconds=within_s + CALL_DEADLINE_S)
        left = self._shm_files(shm_dir, within_s)
        if left:
            problems.append(f"files left in AWKGEN_SHM_DIR: {left[:4]}")
        return problems

    def _shm_files(self, shm_dir: str, within_s: float) -> list[str]:
        deadline = time.monotonic() + within_s
        while True:
            left = sorted(os.listdir(shm_dir))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    # -- the stream ----------------------------------------------------------------------
    def _stream(self) -> None:
        import awkgen

        cfg = self.cfg
        p = 0
        state: dict[str, Any] | None = None
        state_p = 0
        for i in range(cfg.n_calls):
            gen = self.shared.gen
            if i == cfg.idle_kill_at and self.backend == "process":
                self.watched("waiting for the workers to idle (stats().in_flight), then killing one", self._idle_kill,
                             gen, seconds=LEAK_WAIT_S + CALL_DEADLINE_S)
            if i == cfg.state_at:
                state = self.watched("state_dict()", self._save_state, gen, p)
                state_p = p
            if i == cfg.resume_at and state is not None:
                try:
                    gen = self._resume(gen, state)
                    p = state_p
                except awkgen.GeneratorStoppedError:
                    stopped = gen if self._stop_started(gen) else self.shared.gen  # a handoff's new one, perhaps
                    if not self._stop_started(stopped):
                        raise Failure(f"load_state_dict raised GeneratorStoppedError at call {i} before any stop"
                                      ) from None
                    self._after_stop(stopped, i)
                    return
            must_stop = self.shared.stop_done and self.shared.stop_target is gen
            if not self._stop_started(gen):
                cursor = self.position(gen)
                if cursor != p:
                    raise Failure(f"before call {i}: gen.epoch/gen.step name position {cursor}, expected "
                                  f"{self.where(p)}")
            numbers = self.ref.numbers(p)
            step = plan(self.shape, numbers)
            expected = self._expected_error(step)
            what = f"gen() call {i} at {self.where(p)} (ids {numbers.tolist()[:6]}, expect {expected or 'a batch'})"
            start = time.monotonic()
            kind, outcome = self.watched(what, self._call, gen)
            took = time.monotonic() - start
            if kind == "interrupt":
                p = self._interrupted(gen, outcome, p, i)
                continue
            if kind == "error" and isinstance(outcome, awkgen.GeneratorStoppedError):
                if not self._stop_started(gen):
                    raise Failure(f"{what}: GeneratorStoppedError but nothing stopped the generator")
                self._after_stop(gen, i)
                return
            if must_stop:
                raise Failure(f"{what}: the generator was stopped from another thread, yet the call gave "
                              f"{'a batch' if kind == 'value' else type(outcome).__name__}")
            self.log(f"call {i} pos {p}: {kind} {type(outcome).__name__ if kind == 'error' else ''} "
                     f"({1000 * took:.1f} ms)")
            if kind == "value":
                self._check_batch(outcome, numbers, step, expected, what)
            else:
                self._check_error(outcome, expected, what, p)
            p += 1
            self._train(i)

    def _train(self, i: int) -> None:
        """The caller's own work between batches, while workers keep loading."""
        cfg = self.cfg
        if cfg.consumer_ms:
            time.sleep(self.rng.uniform(0.0, 2 * cfg.consumer_ms) / 1000)
        if cfg.pause_every and i % cfg.pause_every == cfg.pause_every - 1:
            time.sleep(cfg.pause_s)

    def _call(self, gen: Any) -> tuple[str, Any]:
        """One ``gen()``: ("value", batch), ("error", exception) or ("interrupt", KeyboardInterrupt)."""
        shared = self.shared
        try:
            try:
                shared.armed = self.cfg.interrupt
                return "value", gen()
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                return "error", exc
            finally:
                shared.armed = False
        except KeyboardInterrupt as exc:
            shared.armed = False
            return "interrupt", exc

    def _on_sigint(self, signum: int, frame: Any) -> None:
        """The SIGINT handler of an ``interrupt`` configuration: Ctrl-C inside gen() calls only."""
        if self.shared.armed:
            self.shared.armed = False
            raise KeyboardInterrupt

    def _expected_error(self, step: Any) -> str | None:
        if step.kind == "raise":
            return "LoaderError"
        if step.kind == "exit" and self.backend == "process":
            return "WorkerDiedError"
        if step.kind == "slow" and self.timeout is not None and self.backend != "blocking":
            return "LoaderTimeoutError"
        return None

    def _check_batch(self, batch: Any, numbers: np.ndarray, step: Any, expected: str | None, what: str) -> None:
        if expected is not None:
            raise Failure(f"{what}: expected {expected}, got a batch")
        if type(batch) is not tuple or len(batch) != (2 if self.cfg.labels else 1):
            raise Failure(f"{what}: gen() returned {type(batch).__name__} of {len(batch)}, not the batch tuple")
        problem = self._check_value(batch[0], numbers, step)
        if problem:
            raise Failure(f"{what}: {problem}")
        if self.cfg.labels:
            rows = _label_rows(self.cfg.n_ids)[(numbers - self.cfg.id_offset) // self.cfg.id_stride]
            if not np.array_equal(np.asarray(batch[1]), rows):
                raise Failure(f"{what}: labels {np.asarray(batch[1]).tolist()[:8]} != {rows.tolist()[:8]}")
        self.notes["values"] += 1
        if self.cfg.keep:
            self.kept.append((batch, numbers, step, what))
            if len(self.kept) > self.cfg.keep:
                self._check_kept(self.kept.popleft())
        if self.cfg.cycle_drop:
            holder: list[Any] = [batch]
            holder.append(holder)  # garbage only the cycle collector frees, on whichever thread it runs

    def _check_value(self, value: Any, numbers: np.ndarray, step: Any) -> str | None:
        """What is wrong with a delivered result, or None; with ``tree``, the oracle's tree must
        equal a serial build of it in every respect (``tests.fidelity.diff``)."""
        if not self.cfg.tree:
            return check_value(self.cfg.result, value, numbers, step)
        if type(value) is not tuple or len(value) != 2:
            return f"expected (value, tree), got {type(value).__name__}"
        problem = check_value(self.cfg.result, value[0], numbers, step)
        if problem:
            return problem
        self.notes["trees"] += 1
        return diff(tree_for(self.cfg.seed & 0xFFFFFFFF, numbers), value[1], "tree")

    def _check_kept(self, kept: tuple[Any, np.ndarray, Any, str]) -> None:
        batch, numbers, step, what = kept
        problem = self._check_value(batch[0], numbers, step)
        if problem:
            raise Failure(f"a batch kept since {what} changed later: {problem}")

    def _check_error(self, exc: BaseException, expected: str | None, what: str, p: int) -> None:
        import awkgen

        name = type(exc).__name__
        epoch, step = divmod(p, self.ref.steps)
        if not isinstance(exc, awkgen.AwkgenError):
            raise Failure(f"{what}: raised {name}: {exc}")
        if f"batch {step} of epoch {epoch}" not in str(exc):
            raise Failure(f"{what}: {name} does not name its batch: {exc}")
        if name == expected:
            if expected == "LoaderError" and not (type(exc.__cause__).__name__ == "StressError"
                                                  and "fails on purpose" in str(exc.__cause__)):
                raise Failure(f"{what}: LoaderError's __cause__ is {exc.__cause__!r:.200}")
            self.notes["errors"] += 1
            return
        if isinstance(exc, awkgen.WorkerStartError) and self.shared.kills >= 3:
            # Three SIGKILLs that landed on starting workers look exactly like a loader that kills
            # its worker while it is unpickled: the pool is right to give up with this error.
            self.notes["start_breaks"] += 1
            return
        if isinstance(exc, awkgen.WorkerDiedError) and self.kill_budget_used < self.shared.kills:
            self.kill_budget_used += 1  # a worker killed from outside ran this batch
            self.notes["kill_deaths"] += 1
            return
        raise Failure(f"{what}: raised {name}: {str(exc)[:300]}")

    def _interrupted(self, gen: Any, exc: KeyboardInterrupt, p: int, i: int) -> int:
        """Ctrl-C hit call *i*: inside awkgen, the interrupted batch must come next."""
        self.notes["interrupts"] += 1
        inside = _raised_in_awkgen(exc.__traceback__)
        if self._stop_started(gen):
            return p
        cursor = self.position(gen)
        self.log(f"call {i} pos {p}: KeyboardInterrupt ({'inside' if inside else 'outside'} awkgen), next {cursor}")
        if inside and cursor != p:
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            raise Failure(f"Ctrl-C inside gen() call {i} at {self.where(p)} moved the stream to position {cursor}: "
                          f"the interrupted batch is lost. Interrupted at:\n{where}")
        if not inside and cursor not in (p, p + 1):
            raise Failure(f"Ctrl-C around gen() call {i} at {self.where(p)} moved the stream to {cursor}")
        return cursor

    # -- stops, states, kills ----------------------------------------------------------
    def _stop_started(self, gen: Any) -> bool:
        return self.shared.stop_started and self.shared.stop_target is gen

    def _after_stop(self, gen: Any, i: int) -> None:
        """The generator was stopped from another thread: every later call raises GeneratorStoppedError."""
        import awkgen

        self.log(f"call {i}: the generator was stopped from another thread")
        self.watched("waiting for the stopping thread", self._wait_stop_done)
        for k in range(2):
            kind, outcome = self.watched(f"gen() call {i + 1 + k} after the stop", self._call, gen)
            if not (kind == "error" and isinstance(outcome, awkgen.GeneratorStoppedError)):
                raise Failure(f"a call after gen was stopped from another thread gave {kind} "
                              f"{type(outcome).__name__}, not GeneratorStoppedError")
        if not gen.closed:
            raise Failure("gen.closed is False after a stop")

    def _wait_stop_done(self) -> None:
        while not self.shared.stop_done:
            time.sleep(0.01)

    def _save_state(self, gen: Any, p: int) -> dict[str, Any]:
        state = json.loads(json.dumps(gen.state_dict()))
        if not self._stop_started(gen) and (state["epoch"], state["step"]) != divmod(p, self.ref.steps):
            raise Failure(f"state_dict() at {self.where(p)} says epoch {state['epoch']} step {state['step']}")
        self.log(f"state saved at pos {p}: {state}")
        return state

    def _resume(self, gen: Any, state: dict[str, Any]) -> Any:
        cfg = self.cfg
        if cfg.state_action == "rewind":
            self.watched("load_state_dict", gen.load_state_dict, state)
            self.log("state loaded into the same generator")
            return gen
        assert cfg.handoff is not None
        backend, n_workers, prefetch = cfg.handoff
        with self.shared.swap_lock:
            if not cfg.overlap:
                self.watched("closing the generator before a handoff", gen.close)
            new = self.watched(f"building the {backend} generator of the handoff", self.build, backend, n_workers,
                               prefetch, None)
            if cfg.overlap:  # both pools run for a moment
                self.watched("closing the old generator after the new one started", gen.close)
            self.shared.gen = new
            self.backend = backend
        self.watched("load_state_dict into the new generator", new.load_state_dict, state)
        self.log(f"state loaded into a new {backend} generator, {n_workers} workers, prefetch {prefetch}")
        return new

    def _idle_kill(self, gen: Any) -> None:
        """Once every prefetched batch is loaded, SIGKILL an idle worker: no batch may fail."""
        deadline = time.monotonic() + LEAK_WAIT_S
        while time.monotonic() < deadline and not self._stop_started(gen):
            if gen.stats().in_flight <= 0:
                break
            time.sleep(0.01)
        else:
            return
        pids = worker_pids()
        if pids:
            pid = self.rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                self.log(f"killed idle worker {pid}")
            except ProcessLookupError:
                pass
            time.sleep(0.5)  # as in test_idle_worker_killed_is_replaced_silently: the death is noticed

    def _doomed(self, gen: Any) -> None:
        import awkgen

        for i in range(self.cfg.n_calls):
            what = f"gen() call {i} with workers that cannot load the loader ({self.cfg.doomed})"
            kind, outcome = self.watched(what, self._call, gen)
            if kind != "error" or not isinstance(outcome, awkgen.AwkgenError):
                raise Failure(f"{what}: gave {kind} {type(outcome).__name__}, not an AwkgenError")
            if self.cfg.doomed == "raise" and not isinstance(outcome, awkgen.LoaderError):
                raise Failure(f"{what}: raised {type(outcome).__name__}, not LoaderError: {outcome}")
            self.log(f"call {i}: {type(outcome).__name__}: {str(outcome)[:120]}")

    def _end(self) -> None:
        import awkgen

        gen = self.shared.gen
        end = self.cfg.end
        if end == "close":
            self.watched("gen.close()", gen.close)
            self.watched("gen.close() again", gen.close)
        elif end == "stop":
            self.watched("gen(stop=True)", gen, True)
        elif end == "cleanup":
            self.watched("CleanupGenerator(gen)", awkgen.CleanupGenerator, gen)
        elif end == "with":
            self.watched("leaving `with gen:`", gen.__exit__, None, None, None)
        if end != "drop":
            kind, outcome = self.watched("gen() after the end", self._call, gen)
            if not (kind == "error" and isinstance(outcome, awkgen.GeneratorStoppedError)):
                raise Failure(f"gen() after {end} gave {kind} {type(outcome).__name__}, not GeneratorStoppedError")
        if end == "drop":
            self.dropped = weakref.ref(gen)
            self.shared.gen = gen = None  # the last reference goes; collection must clean up

    # -- helper threads ------------------------------------------------------------------
    def _start_threads(self) -> list[threading.Thread]:
        cfg = self.cfg
        targets = []
        if cfg.monitor:
            targets.append(("monitor", self._monitor))
        if cfg.gc_thread:
            targets.append(("gc", self._collector))
        if cfg.stop:
            targets.append(("stopper", self._stopper))
        if cfg.kill_times:
            targets.append(("killer", self._killer))
        if cfg.interrupt:
            targets.append(("interrupter", self._interrupter))
        threads = []
        for name, target in targets:
            r = random.Random(self.rng.random())
            thread = threading.Thread(target=self._guarded, args=(name, target, r), name=f"stress-{name}",
                                      daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def _guarded(self, name: str, target: Any, r: random.Random) -> None:
        try:
            target(r)
        except Exception as exc:
            self.shared.errors.append(f"the {name} thread raised {type(exc).__name__}: {exc}\n"
                                      + traceback.format_exc())

    def _monitor(self, r: random.Random) -> None:
        while not self.shared.done.wait(r.uniform(0.001, 0.03)):
            gen = self.shared.gen
            if gen is not None:
                stats = gen.stats()
                str(stats)
                repr(gen)

    def _collector(self, r: random.Random) -> None:
        while not self.shared.done.wait(r.uniform(0.001, 0.03)):
            gc.collect()

    def _stopper(self, r: random.Random) -> None:
        assert self.cfg.stop is not None
        how, at = self.cfg.stop
        if self.shared.done.wait(max(0.0, self.started + at - time.monotonic())):
            return
        with self.shared.swap_lock:
            gen = self.shared.gen
            self.shared.stop_target = gen
            self.shared.stop_started = True
        if how == "close":
            gen.close()
        else:
            gen(stop=True)
        self.shared.stop_done = True

    def _killer(self, r: random.Random) -> None:
        for at in self.cfg.kill_times:
            if self.shared.done.wait(max(0.0, self.started + at - time.monotonic())):
                return
            pids = worker_pids()
            if not pids:
                continue
            self.shared.kills += 1  # before the kill: its death may be reported at once
            try:
                os.kill(r.choice(pids), signal.SIGKILL)
            except ProcessLookupError:
                self.shared.kills -= 1

    def _interrupter(self, r: random.Random) -> None:
        main = threading.main_thread().ident
        assert main is not None
        while not self.shared.done.wait(r.uniform(0.005, 0.1)):
            if self.shared.armed:
                self.shared.sigints += 1
                signal.pthread_kill(main, signal.SIGINT)


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(record) + "\n")
    sys.stdout.flush()


def run_child(verbose: bool) -> None:
    """Serve configurations: read a seed per line on stdin, answer one result line each."""
    import awkgen

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Start the forkserver before any baseline, as the test suite's conftest does.
    with awkgen.DataGeneratorMultiProc(_ids_only, [1, 2], batch_size=1, n_workers=1) as gen:
        gen()
    watchdog = Watchdog()
    for line in sys.stdin:
        seed = int(line)
        cfg = draw_config(seed)
        sys.stderr.write(f"{MARKER}{seed}\n")
        sys.stderr.flush()
        watchdog.seed = seed
        if verbose:
            sys.stderr.write(f"config {seed}: {cfg.summary()}\n")
        faulthandler.dump_traceback_later(cfg.limit_s, exit=True)
        start = time.monotonic()
        record: dict[str, Any] = {"seed": seed}
        try:
            record["notes"] = ConfigRun(cfg, watchdog, verbose).run()
            record["status"] = "pass"
        except Failure as exc:
            record.update(status="fail", detail=str(exc))
        except Exception:
            record.update(status="fail", detail="the configuration raised:\n" + traceback.format_exc())
        finally:
            faulthandler.cancel_dump_traceback_later()
            watchdog.disarm()
        record["secs"] = round(time.monotonic() - start, 2)
        record["last"] = record["status"] == "fail"  # a fresh interpreter for the next configuration
        _emit(record)
        if record["last"]:
            return


# -- the driver ---------------------------------------------------------------------------------

@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    shm_dir: str
    err_path: str
    sent: int = 0
    seed: int | None = None  # the configuration it runs now
    since: float = 0.0
    limit: float = 0.0
    buf: bytes = b""
    killed: str = ""

    def send(self, seed: int) -> None:
        assert self.proc.stdin is not None
        self.seed, self.since, self.sent = seed, time.monotonic(), self.sent + 1
        self.limit = draw_config(seed).limit_s + HARD_SLACK_S
        self.proc.stdin.write(f"{seed}\n".encode())
        self.proc.stdin.flush()

    @property
    def accepting(self) -> bool:
        """Alive and still taking configurations."""
        return self.proc.stdin is not None and not self.proc.stdin.closed and self.proc.poll() is None

    def finish_input(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass


@dataclass
class Result:
    seed: int
    ok: bool
    detail: str = ""
    secs: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)


class Driver:
    def __init__(self, jobs: int, per_child: int, verbose: bool, out: Any = sys.stdout) -> None:
        self.jobs, self.per_child, self.verbose, self.out = jobs, per_child, verbose, out
        self.results: list[Result] = []
        self.selector = selectors.DefaultSelector()

    def _spawn(self) -> _Child:
        shm_root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        shm_dir = tempfile.mkdtemp(prefix="stress-awkgen-", dir=shm_root)
        err_fd, err_path = tempfile.mkstemp(prefix="stress-awkgen-", suffix=".stderr")
        env = {**os.environ, "AWKGEN_SHM_DIR": shm_dir, "PYTHONPATH": REPO, "PYTHONFAULTHANDLER": "1",
               "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        cmd = [sys.executable, "-m", "tests.stress", "--child"] + (["--verbose"] if self.verbose else [])
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=None if self.verbose else err_fd, start_new_session=True)
        os.close(err_fd)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        child = _Child(proc, shm_dir, err_path)
        self.selector.register(proc.stdout.fileno(), selectors.EVENT_READ, child)
        return child

    def run(self, seeds: Iterator[int], deadline: float | None = None) -> list[Result]:
        children: list[_Child] = []
        seeds = iter(seeds)
        exhausted = False
        last_progress = time.monotonic()
        try:
            while True:
                out_of_time = deadline is not None and time.monotonic() > deadline
                for child in children:  # idle children get the next seed, or no more input
                    if child.seed is None and child.accepting:
                        seed = None
                        if not (out_of_time or exhausted or child.sent >= self.per_child):
                            seed = next(seeds, None)
                            exhausted = seed is None
                        if seed is None:
                            child.finish_input()
                        else:
                            child.send(seed)
                while not (out_of_time or exhausted) and sum(c.accepting for c in children) < self.jobs:
                    seed = next(seeds, None)
                    exhausted = seed is None
                    if seed is not None:
                        child = self._spawn()
                        children.append(child)
                        child.send(seed)
                if not children:
                    break
                for key, _ in self.selector.select(0.25):
                    self._read(key.data)
                now = time.monotonic()
                for child in list(children):
                    if child.seed is not None and now - child.since > child.limit and not child.killed:
                        self._kill(child, f"the configuration outlived the driver's hard limit of {child.limit:.0f} s")
                    if child.proc.poll() is not None:
                        self._read(child)
                        self._reap(child)
                        children.remove(child)
                if now - last_progress > 60:
                    last_progress = now
                    failed = sum(not r.ok for r in self.results)
                    self.out.write(f"... {len(self.results)} configurations, {failed} failures so far\n")
                    self.out.flush()
        finally:
            for child in children:
                self._kill(child, "the driver stopped")
                self._reap(child)
        return self.results

    def _read(self, child: _Child) -> None:
        assert child.proc.stdout is not None
        try:
            while True:
                chunk = os.read(child.proc.stdout.fileno(), 65536)
                if not chunk:  # EOF: the child is exiting; stop watching its pipe
                    self.selector.unregister(child.proc.stdout.fileno())
                    break
                child.buf += chunk
        except (BlockingIOError, OSError, ValueError, KeyError):
            pass
        *lines, child.buf = child.buf.split(b"\n")
        for raw in lines:  # child.seed is the configuration the line is about
            line = raw.decode(errors="replace")
            if not line.startswith(PROTOCOL):
                if self.verbose:
                    self.out.write(line + "\n")
                continue
            record = json.loads(line[len(PROTOCOL):])
            if record["seed"] != child.seed:
                continue
            detail = record.get("detail", "")
            if record["status"] != "pass":
                child.finish_input()
                section = self._stderr_section(child, max_lines=80)
                if section.strip():
                    detail += "\nthe child's stderr meanwhile:\n" + section
            child.seed = None
            self._record(Result(record["seed"], record["status"] == "pass", detail, record.get("secs", 0.0),
                                record.get("notes", {})))

    def _kill(self, child: _Child, why: str) -> None:
        """Dump the child's stacks (SIGUSR1, faulthandler), then SIGKILL its process group."""
        child.killed = why
        if child.proc.poll() is None:
            try:
                os.kill(child.proc.pid, signal.SIGUSR1)
                child.proc.wait(2.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, child: _Child) -> None:
        try:
            child.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever the child left in its group (workers, the forkserver) goes too
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        assert child.proc.stdout is not None
        try:
            self.selector.unregister(child.proc.stdout.fileno())
        except (KeyError, ValueError):
            pass
        child.proc.stdout.close()
        if child.proc.stdin is not None and not child.proc.stdin.closed:
            child.finish_input()
        if child.seed is not None:  # it died in the middle of a configuration
            code = child.proc.returncode
            how = child.killed or ("its watchdog ended it: an action hung" if code == WATCHDOG_EXIT else
                                   f"the child interpreter exited with {code}" if code is not None and code >= 0
                                   else f"the child interpreter died from signal {-(code or 0)}")
            section = self._stderr_section(child)
            summary = _main_thread_summary(section)
            self._record(Result(child.seed, False, f"{how}\n{summary}\n{section}",
                                round(time.monotonic() - child.since, 2)))
            child.seed = None
        shutil.rmtree(child.shm_dir, ignore_errors=True)
        try:
            os.unlink(child.err_path)
        except OSError:
            pass

    def _stderr_section(self, child: _Child, max_lines: int = 400) -> str:
        """What the child wrote to stderr since it began its current configuration."""
        if self.verbose:
            return "(see the child's output above)"
        try:
            with open(child.err_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        marker = f"{MARKER}{child.seed}\n"
        text = text[text.rfind(marker) + len(marker):] if marker in text else text
        lines = text.rstrip().splitlines()
        if len(lines) > max_lines:
            lines = lines[:max_lines // 4] + [f"... ({len(lines) - max_lines} lines)"] + lines[-3 * max_lines // 4:]
        return "\n".join(lines)

    def _record(self, result: Result) -> None:
        self.results.append(result)
        if result.ok:
            if self.verbose:
                self.out.write(f"pass seed={result.seed} ({result.secs} s) {result.notes}\n")
            return
        indented = "\n".join("    " + line for line in result.detail.splitlines())
        self.out.write(f"FAIL seed={result.seed} {draw_config(result.seed).summary()}\n{indented}\n"
                       f"    replay: python -m tests.stress --replay {result.seed}\n")
        self.out.flush()


def _main_thread_summary(dump: str) -> str:
    """One line from a faulthandler dump: the innermost frames of the child's main thread."""
    blocks = re.split(r"\n\s*(?=(?:Current thread|Thread) 0x)", dump)
    for block in blocks:
        if "in run_child" in block:
            frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block)
            shown = [f"{name} ({os.path.basename(path)}:{line})" for path, line, name in frames[:5]]
            return "main thread: " + " <- ".join(shown)
    return "main thread: (no stack in the dump)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: a random one)")
    parser.add_argument("--count", type=int, default=None, help="configurations to run (default: 100)")
    parser.add_argument("--minutes", type=float, default=None, help="run until this much time has passed")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds to run")
    parser.add_argument("--replay", type=int, default=None, help="rerun one configuration, verbosely")
    parser.add_argument("--jobs", type=int, default=1, help="child interpreters at once (default: 1)")
    parser.add_argument("--batch", type=int, default=BATCH_PER_CHILD, help="configurations per child")
    parser.add_argument("--show", action="store_true", help="print the configurations, do not run them")
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.verbose)
        return 0
    deadline = None
    if args.replay is not None:
        seeds: Iterator[int] = iter([args.replay])
        args.verbose = True
        print(f"replaying seed {args.replay}: {draw_config(args.replay).summary()}", flush=True)
    elif args.seeds:
        seeds = iter(int(s) for s in args.seeds.split(","))
    else:
        base = args.seed if args.seed is not None else random.randrange(10**9)
        if args.minutes is not None:
            deadline = time.monotonic() + 60 * args.minutes
            seeds = itertools.count(base) if args.count is None else iter(range(base, base + args.count))
            print(f"seeds from {base}, for {args.minutes:g} minutes, {args.jobs} job(s)", flush=True)
        else:
            count = 100 if args.count is None else args.count
            seeds = iter(range(base, base + count))
            print(f"seeds {base}..{base + count - 1}, {args.jobs} job(s)", flush=True)
    if args.show:
        for seed in seeds:
            print(f"{seed}: {draw_config(seed).summary()}")
        return 0
    start = time.monotonic()
    driver = Driver(max(1, args.jobs), max(1, args.batch), args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        driver.run(seeds, deadline)
    except KeyboardInterrupt:  # the children are gone (Driver.run's cleanup): report what ran
        interrupted = True
    results = driver.results
    failed = [r.seed for r in results if not r.ok]
    print(f"{len(results)} configurations, {len(failed)} failures ({time.monotonic() - start:.0f} s)"
          + (f"; failing seeds: {','.join(map(str, failed))}" if failed else "")
          + ("; interrupted" if interrupted else ""), flush=True)
    return 130 if interrupted else 1 if failed else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
