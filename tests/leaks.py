"""What a test may not leave behind: child processes, threads, file descriptors, /dev/shm segments.

Used by the autouse fixture in ``conftest.py`` and by tests that check a child
interpreter (``python -c``) from the outside.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from awkgen import procfs
from awkgen.procfs import pid_alive as pid_alive  # whether a process runs (a zombie does not count)

SHM_DIR = "/dev/shm"


def _is_ray_raylet(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"/raylet" in f.read().split(b"\0", 1)[0]
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    """All descendants of *pid* (from /proc), zombies excluded.

    Processes under a Ray raylet are left out: the raylet keeps a pool of idle worker
    processes that it grows and shrinks on its own (tests/test_ray.py checks that
    awkgen's actors die on stop).
    """
    return procfs.descendants(pid, prune=_is_ray_raylet)


def descendants(pid: int) -> set[int]:
    """Every living descendant of process *pid*."""
    return _children(pid)


def awkgen_segments(pid: int | None = None) -> set[str]:
    prefix = "awkgen-" if pid is None else f"awkgen-{pid}-"
    return {name for name in os.listdir(SHM_DIR) if name.startswith(prefix)}


@dataclass(frozen=True)
class Snapshot:
    children: frozenset[int]
    threads: frozenset[str]
    fds: int
    segments: frozenset[str]

    @classmethod
    def take(cls) -> Snapshot:
        # Dummy threads are native threads of C/C++ libraries (Ray's core worker, TF) that
        # happened to call into Python: not started by Python code, so not ours to leak.
        threads = frozenset(f"{t.name}#{t.ident}" for t in threading.enumerate()
                            if not isinstance(t, threading._DummyThread))
        return cls(frozenset(_children(os.getpid())), threads, len(os.listdir("/proc/self/fd")),
                   frozenset(awkgen_segments(os.getpid())))

    def leaks_since(self, before: Snapshot) -> list[str]:
        problems = []
        if self.children - before.children:
            problems.append(f"child processes left: {sorted(self.children - before.children)}")
        if self.threads - before.threads:
            problems.append(f"threads left: {sorted(self.threads - before.threads)}")
        if self.fds > before.fds:
            problems.append(f"file descriptors left: {self.fds - before.fds} more than before")
        if self.segments - before.segments:
            problems.append(f"/dev/shm segments left: {sorted(self.segments - before.segments)}")
        return problems


def wait_for_no_leaks(before: Snapshot, within_s: float = 5.0) -> list[str]:
    """Poll until nothing leaked since *before* or *within_s* passes; return what leaked."""
    deadline = time.monotonic() + within_s
    while True:
        problems = Snapshot.take().leaks_since(before)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


def wait_until(predicate, within_s: float) -> bool:
    """Poll *predicate* until it holds or *within_s* seconds pass; return its last value."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
