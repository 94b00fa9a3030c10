"""The benchmark process's tree, read from ``/proc``: memory, leftover workers, the machine.

- :func:`descendants` lists every process below this one (workers of all
  contenders, awkgen's forkserver, resource trackers).
- :class:`MemorySampler` is a background thread that sweeps the tree and keeps the
  peak of the summed PSS (proportional set size: a page shared by k processes counts
  1/k in each, so shared memory and copy-on-write pages are counted once) and of the
  summed RSS, and each process's own minimum.
- :class:`ChildGuard` makes sure a contender's ``close()`` really left no worker
  behind before the next measurement starts; stragglers are reported and killed
  (by pid: they are ours).
- :func:`machine` describes the machine for the report.

No psutil: ``/proc`` has all of it.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field

from awkgen import procfs

__all__ = ["descendants", "read_memory", "MemorySampler", "ChildGuard", "machine"]

_INFRA_MARKERS = ("forkserver", "resource_tracker", "semaphore_tracker",
                  # The run's Ray cluster: its servers, and the pool of idle workers its raylet keeps
                  # (an actor that outlives its close() is "ray::<its class>", and counts as a leak).
                  "gcs_server", "/raylet", "log_monitor.py", "ray/dashboard", "ray::IDLE",
                  "ray/_private/workers/default_worker.py", "runtime_env/agent",
                  # Ray Data's own singletons, started on first use, kept for the cluster's life
                  "ray::_StatsActor", "ray::_AutoscalingCoordinatorActor", "ray::ActorLocationTracker")
_SETTLE_S = 10.0  # how long closed workers get to exit before they count as leaked
_POLL_S = 0.05
_SWEEP_TRIES = 4  # readings of the tree per sweep, at most, waiting for one in which no RSS moved


def descendants(pid: int | None = None) -> set[int]:
    """Every live (non-zombie) process below *pid* (default: this process)."""
    return procfs.descendants(os.getpid() if pid is None else pid)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def read_memory(pid: int, pss: bool = True) -> tuple[int, int] | None:
    """``(pss_bytes, rss_bytes)`` of *pid*, or ``None`` if it is gone.

    PSS comes from ``smaps_rollup``, which walks every mapping (milliseconds for a
    process that loaded TensorFlow); with ``pss=False`` only the cheap RSS is read and
    PSS is reported as RSS.
    """
    try:
        if pss:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                text = f.read()
            values = {}
            for line in text.splitlines():
                key, _, rest = line.partition(b":")
                if key in (b"Rss", b"Pss"):
                    values[key] = int(rest.split()[0]) * 1024
            return values[b"Pss"], values[b"Rss"]
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return rss, rss
    except (OSError, KeyError, IndexError, ValueError):
        return None


def _rss(pid: int) -> int | None:
    """*pid*'s resident pages (``statm``: cheap), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def tree_memory(pss: bool = True) -> dict[int, tuple[int, int]]:
    """``{pid: (pss, rss)}`` for this process and all its descendants."""
    out = {}
    for pid in (os.getpid(), *descendants()):
        mem = read_memory(pid, pss)
        if mem is not None:
            out[pid] = mem
    return out


@dataclass
class MemorySampler:
    """Sweeps the process tree from a background thread until :meth:`stop`.

    ``peak_pss``/``peak_rss``: the largest tree total seen in one sweep. ``extra``: the
    memory that came and went with batches in flight, the workers' and parent's idle
    footprint excluded (a scenario holds every worker idle a while before its first batch,
    see :class:`~benchmarks.loaders.FirstCallPause`): the peak minus the least total of a
    sweep that saw every process the last sweep (in :meth:`stop`) saw, i.e. once the tree
    that ran was all up. A short-lived process counts where it held memory (at the peak)
    and is not needed in the baseline's sweep. Sweeps are kept grouped by the processes
    they saw (a few groups), so what is kept is small. A process's own start, between the
    first sweep that saw it and its being idle, still counts (the memory scenario's
    workers, forked from a running fork server, grow by under 1.2 MiB then); a pid reused
    within one measurement would be taken for the same process.

    Why one sweep's total, and not the sum of each process's own smallest PSS
    (``extra_by_process``, the figure reported before 2026-12-02): minima taken at different
    moments add up to less than the tree ever held at once. A process that grew before the
    last one started (a fork server importing what it preloads, a resource tracker starting,
    while the workers were not up yet) had its minimum before that growth, and the growth
    was counted as memory in flight; and a page shared by processes whose number changes
    (a fork server's pages and its children's) is split differently from sweep to sweep.
    Measured on the memory scenario's workload with 1 KiB batches, where nothing large is
    in flight (``awkgen-process``, 2 workers, its pool started in the window): 0.9 MiB one
    sweep's way, 14.9 MiB the other, the fork server and the resource tracker making the
    difference.
    """

    interval_s: float = 0.01
    pss: bool = True
    peak_pss: int = 0
    peak_rss: int = 0
    sweeps: int = 0
    retried: int = 0  # sweeps read again because a process's RSS moved during the reading
    _min_pss: dict[int, int] = field(default_factory=dict)
    #: The least and the largest total PSS of the sweeps that saw each set of processes.
    _totals: dict[frozenset[int], tuple[int, int]] = field(default_factory=dict)
    _last: frozenset[int] = frozenset()  # the processes the latest sweep saw
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="bench-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.sweep()
            if self._stop.wait(self.interval_s):
                return

    def sweep(self) -> None:
        """One reading of the tree, retried (up to :data:`_SWEEP_TRIES` times) while a process's
        resident size changed during it.

        A page's PSS is split among the processes mapping it, and a sweep reads them one after
        another: a page that a second process maps between the two readings counts 1/1 in the
        first and 1/2 in the second (one page and a half). Such a sweep over-counts by up to the
        pages mapped or unmapped meanwhile, so one in which no process's RSS moved is taken
        when there is one (on the memory scenario the overcount was about a quarter of a batch).
        """
        for _ in range(_SWEEP_TRIES):
            pids = (os.getpid(), *descendants())
            before = [_rss(pid) for pid in pids]
            mem = {pid: m for pid in pids if (m := read_memory(pid, self.pss)) is not None}
            if [_rss(pid) for pid in pids] == before:
                break
            self.retried += 1
        self.sweeps += 1
        total = sum(p for p, _ in mem.values())
        seen = self._last = frozenset(mem)
        least, largest = self._totals.get(seen, (total, total))
        self._totals[seen] = (min(least, total), max(largest, total))
        self.peak_pss = max(self.peak_pss, total)
        self.peak_rss = max(self.peak_rss, sum(r for _, r in mem.values()))
        for pid, (p, _) in mem.items():
            self._min_pss[pid] = min(p, self._min_pss.get(pid, p))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self.sweep()

    @property
    def extra(self) -> int:
        """The peak minus the least total of a sweep that saw every process the last one saw."""
        return self.peak_pss - min((least for seen, (least, _) in self._totals.items() if seen >= self._last),
                                   default=self.peak_pss)

    @property
    def extra_by_process(self) -> int:
        """The peak minus the sum of each process's own smallest PSS (see the class docstring)."""
        return self.peak_pss - sum(self._min_pss.values())


class ChildGuard:
    """Knows which child processes belong to the harness, and checks a measurement left none.

    Process-wide machinery that a contender starts once and keeps on purpose
    (awkgen's forkserver, multiprocessing's resource tracker) joins the baseline;
    anything else still alive :data:`_SETTLE_S` after ``close()`` is a leak: it is
    recorded, then killed so it cannot distort the next measurement.
    """

    def __init__(self) -> None:
        self.baseline = descendants()
        self.leaks: list[dict[str, object]] = []

    def check(self, label: str) -> list[int]:
        deadline = time.monotonic() + _SETTLE_S
        while True:
            extra = descendants() - self.baseline
            for pid in list(extra):
                if any(marker in cmdline(pid) for marker in _INFRA_MARKERS):
                    self.baseline.add(pid)
                    extra.discard(pid)
            if not extra or time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
        for pid in sorted(extra):
            self.leaks.append({"after": label, "pid": pid, "cmdline": cmdline(pid)[:200]})
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.baseline &= descendants() | {os.getpid()}
        return sorted(extra)


def cpu_times() -> list[int]:
    """The machine's cumulative CPU times (``/proc/stat``: user, nice, system, idle, iowait,
    irq, softirq, steal), in clock ticks; empty where there is no ``/proc``."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def steal_fraction(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two :func:`cpu_times`.

    >>> steal_fraction([10, 0, 0, 80, 0, 0, 0, 10], [20, 0, 0, 160, 0, 0, 0, 20])
    0.1
    """
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after) - sum(before)
    return round((after[7] - before[7]) / total, 4) if total > 0 else None


def machine() -> dict[str, object]:
    """nproc, CPU model, RAM, kernel, Python and the date, for the report header."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(ram / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
