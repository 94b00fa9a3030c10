"""Where the memory scenario's memory in flight sits, process by process:
``python -m benchmarks.profile_memory [ROUNDS]``.

Runs scenario 8's workload (the process backend, 2 workers, 32 MiB batches of ``FullLoader``
behind ``FirstCallPause``, 24 batches) *ROUNDS* times and sweeps the process tree every 10 ms
as ``MemorySampler`` does, keeping each sweep's PSS per process and per kind of mapping
(``/proc/PID/smaps``). For each round it prints the extra (the peak sweep's total minus the
least total of a sweep that saw every process of the last one, as the scenario reports it)
and how the peak sweep differs from that baseline sweep, process by process (the parent, the
resource tracker, the fork server, each worker: a shared page's PSS is split among its
mappers, so this split moves with who maps a slot at the moment) and by kind, summed over the
tree: the shared-memory slots (``/dev/shm``), anonymous memory (heaps, the loader's arrays, the
interpreter's objects, pages a forked worker copied on its first write) and the rest (files:
libraries, the fork server's code). Sweeps are not re-read while a process's RSS moves (the scenario's sampler does), so
a round may read up to a quarter of a batch high; the split, not the total, is what this is
for (issue 24: memory in flight above 7 batches).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loaders import MIB, FirstCallPause, FullLoader, touch  # noqa: E402
from benchmarks.proctree import cmdline, descendants  # noqa: E402

BIG = 32 * MIB


KINDS = ("slots", "anonymous", "files")


def _by_kind(pid: int) -> dict[str, int] | None:
    """PSS in bytes of *pid*'s mappings by kind, or None if it is gone."""
    out = dict.fromkeys(KINDS, 0)
    kind = "anonymous"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:  # a mapping's header
                    parts = line.split(maxsplit=5)
                    path = parts[5].strip() if len(parts) > 5 else ""
                    kind = ("slots" if path.startswith("/dev/shm/") else
                            "anonymous" if not path or path.startswith("[") else "files")
                elif line.startswith("Pss:"):
                    out[kind] += int(line.split()[1]) * 1024
    except OSError:
        return None
    return out


def _sweep() -> dict[int, dict[str, int]]:
    pids = (os.getpid(), *descendants())
    return {pid: m for pid in pids if (m := _by_kind(pid)) is not None}


def _total(sweep: dict[int, dict[str, int]]) -> int:
    return sum(sum(kinds.values()) for kinds in sweep.values())


def _role(pid: int) -> str:
    if pid == os.getpid():
        return "parent"
    line = cmdline(pid)
    if "resource_tracker" in line:
        return "resource tracker"
    with open(f"/proc/{pid}/stat") as f:  # the fork server is this process's child, a worker the server's
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    return "fork server" if "forkserver" in line and parent == os.getpid() else f"worker {pid}"


def one_round() -> tuple[float, dict[str, float], dict[str, float]]:
    """The extra in MiB, and the peak sweep less the baseline sweep per process role and per
    kind of mapping, in MiB."""
    import awkgen

    gc.collect()
    sweeps: list[dict[int, dict[str, int]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            sweeps.append(_sweep())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    gen = awkgen.DataGeneratorMultiProc(FirstCallPause(FullLoader(BIG)), np.arange(64), batch_size=1, n_workers=2,
                                        backend="process", shuffle=False)
    try:
        it = iter(gen)
        for _ in range(24):
            touch(next(it))
        stop.set()
        watcher.join()
        sweeps.append(_sweep())
        roles = {pid: _role(pid) for pid in sweeps[-1]}
    finally:
        gen.close()
    last = set(sweeps[-1])
    base = min((s for s in sweeps if set(s) >= last), key=_total)
    peak = max(sweeps, key=_total)
    by_process = {roles.get(pid, f"gone {pid}"): (sum(peak[pid].values()) - sum(base.get(pid, {}).values())) / MIB
                  for pid in peak}
    by_kind = {kind: (sum(p[kind] for p in peak.values()) - sum(p[kind] for p in base.values())) / MIB
               for kind in KINDS}
    return (_total(peak) - _total(base)) / MIB, by_process, by_kind


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 6
    for n in range(rounds):
        extra, by_process, by_kind = one_round()
        processes = ", ".join(f"{role} {mib:+.1f}" for role, mib in by_process.items())
        kinds = ", ".join(f"{kind} {mib:+.1f}" for kind, mib in by_kind.items())
        print(f"round {n}: {extra:.1f} MiB in flight ({extra * MIB / BIG:.3f} batches of 32 MiB); peak less "
              f"baseline, MiB, by kind: {kinds}; by process: {processes}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
