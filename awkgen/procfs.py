"""What ``/proc`` says about processes: one reader of ``/proc/<pid>/stat`` for awkgen's pool,
its tests and its benchmarks (Linux only, like awkgen; no psutil needed).

A stat line is ``pid (comm) state ppid ...``; *comm* is the program's name, which may
itself hold spaces and parentheses, so the fields are read after its last ``)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["stat", "cpu_seconds", "idle_seconds", "pid_alive", "process_table", "descendants"]


def stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, state letter)`` of process *pid*; ``None`` if it is gone or unreadable.

    >>> stat(os.getpid())[0] == os.getppid()
    True
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int, tid: int | None = None) -> float | None:
    """CPU time (user + system) process *pid* has used, all its threads, or only thread
    *tid* of it; ``None`` if it is gone.

    >>> cpu_seconds(os.getpid()) >= 0
    True
    """
    try:
        path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def idle_seconds(cpus: set[int]) -> float | None:
    """Seconds CPUs *cpus* have been idle (``idle`` + ``iowait`` of ``/proc/stat``), summed;
    ``None`` if ``/proc/stat`` cannot be read.

    >>> idle_seconds(os.sched_getaffinity(0)) >= 0
    True
    """
    total = 0
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"cpu") and line[3:4].isdigit():
                    fields = line.split()
                    if int(fields[0][3:]) in cpus:
                        total += int(fields[4]) + int(fields[5])
    except (OSError, IndexError, ValueError):
        return None
    return total / _CLOCK_TICKS


def pid_alive(pid: int) -> bool:
    """Whether process *pid* runs: it exists and is not a zombie (dead for every purpose here).

    Someone else's process (``kill`` not permitted) counts as alive, and so does one
    whose ``/proc`` entry cannot be read.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    info = stat(pid)
    return info is None or info[1] != "Z"


def process_table() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state letter)}`` for every process this one can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = stat(int(entry))
            if info is not None:
                table[int(entry)] = info
    return table


def descendants(pid: int, prune: Callable[[int], bool] | None = None) -> set[int]:
    """Every living (not zombie) descendant of process *pid*; none are sought below a
    process for which *prune* holds (it is listed itself)."""
    parents = {child: parent for child, (parent, state) in process_table().items() if state != "Z"}
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
        if prune is not None:
            frontier = {p for p in frontier if not prune(p)}
    return found
