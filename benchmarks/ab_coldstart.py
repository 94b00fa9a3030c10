"""A/B of two awkgen trees on the process backend's start: ``python -m benchmarks.ab_coldstart OLD NEW [ROUNDS]``;
``python -m benchmarks.ab_coldstart --preload TREE [ROUNDS]`` compares one tree with itself with the loader's
module imported by the forkserver.

Scenario 6 (cold start: 8 workers, a 20 ms ``SleepLoader``, construction to the 200th batch,
ideal 0.5 s), in fresh child interpreters, alternating the trees (``PYTHONPATH``) each round so
load on a shared machine falls on both alike. Each child measures:

- the *first pool* of its process, which also starts the forkserver (``benchmarks.run`` with
  only this scenario measures this one), then three *warm* pools on the running forkserver
  (what scenario 6 measures inside a full run);
- the CPU time each worker spent from its fork to saying Ready (``/proc/PID/schedstat``, read
  when the parent sees Ready), and the forkserver's CPU time per fork: CPU, unlike wall time,
  hardly moves with the machine's load;
- when the parent saw each worker's Ready, from the pool's construction: the 200th batch
  comes about their mean after the ideal, since each worker's share of the 200 calls begins
  then.

``--preload``: the second arm adds the loader's module (``benchmarks.loaders``) to what the
forkserver imports before it forks anyone, so a worker's start is a fork and unpickling a
loader whose module is already there. That is the most any scheme which forks workers from a
process that already holds the loader (a per-pool template process) could save; awkgen does
not do it (a user's module imported into the shared server would run its top-level code
there, for every later pool), so this arm measures the ceiling of that direction.

Prints each run, then medians and ranges (issue 24: the cold start).
"""

from __future__ import annotations

import os
import statistics
import sys

from benchmarks._ab import run_in_tree

CHILD = r"""
import json, pickle, time
import numpy as np
import awkgen
import os
from multiprocess import forkserver
from awkgen.executors import process
from benchmarks.loaders import SleepLoader, touch

if os.environ.get("AWKGEN_AB_PRELOAD"):  # the ceiling arm: the server imports the loader's module too
    chosen = forkserver.set_forkserver_preload
    forkserver.set_forkserver_preload = lambda names: chosen([*names, "benchmarks.loaders"])

ready_cpu, ready_at, clock = {}, [], {}
on_reply = process.ProcessExecutor._on_reply

def watched(self, worker, head, blob):
    if pickle.loads(head)[0] == process.READY:
        ready_at.append(time.perf_counter() - clock["started"])
        with open(f"/proc/{worker.proc.pid}/schedstat") as f:
            ready_cpu[worker.proc.pid] = int(f.read().split()[0]) / 1e6
    return on_reply(self, worker, head, blob)

process.ProcessExecutor._on_reply = watched

def server_cpu_ms():
    pid = forkserver._forkserver._forkserver_pid
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6

def pool():
    ready_cpu.clear()
    ready_at.clear()
    started = clock["started"] = time.perf_counter()
    gen = awkgen.DataGeneratorMultiProc(SleepLoader(0.02), np.arange(200 * 8), batch_size=8, n_workers=8,
                                        backend="process", shuffle=False)
    it = iter(gen)
    touch(next(it))
    first = time.perf_counter() - started
    for _ in range(199):
        touch(next(it))
    seconds = time.perf_counter() - started
    server = server_cpu_ms()
    del it
    gen.close()
    return {"seconds": seconds, "first_s": first, "worker_cpu_ms": sorted(ready_cpu.values()), "server_ms": server,
            "mean_ready_s": sum(ready_at) / max(1, len(ready_at))}

runs = [pool() for _ in range(4)]
for a, b in zip(runs, runs[1:]):
    b["server_fork_ms"] = (b["server_ms"] - a["server_ms"]) / 8  # its CPU per fork (and reaping)
print(json.dumps(runs))
"""


def run(tree: str, preload: bool = False) -> list[dict]:
    return run_in_tree(tree, CHILD, timeout=300,  # type: ignore[no-any-return]
                       env={"AWKGEN_AB_PRELOAD": "1"} if preload else None)


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    if sys.argv[1] == "--preload":
        tree, rounds = sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 6
        old, new = tree, f"{tree} (loader's module preloaded)"
    else:
        old, new, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 6
    results: dict[str, list[list[dict]]] = {old: [], new: []}
    for r in range(rounds):
        for arm in ((old, new) if r % 2 == 0 else (new, old)):
            got = run(arm.split(" (")[0], preload=arm.endswith("preloaded)"))
            results[arm].append(got)
            print(f"round {r} {arm}: first pool {got[0]['seconds']:.3f} s (first batch {got[0]['first_s']:.3f}), "
                  "warm " + ", ".join(f"{p['seconds']:.3f}" for p in got[1:]) + " s", flush=True)
    print(f"\nmedian [range] over {rounds} rounds; ideal 0.5 s; loadavg now {os.getloadavg()[0]:.1f}")
    for tree in (old, new):
        children = results[tree]
        mean_ready = [p["mean_ready_s"] * 1e3 for c in children for p in c[1:]]
        cold = [c[0]["seconds"] for c in children]
        cold_first = [c[0]["first_s"] for c in children]
        warm = [p["seconds"] for c in children for p in c[1:]]
        warm_first = [p["first_s"] for c in children for p in c[1:]]
        worker_cpu = [x for c in children for p in c[1:] for x in p["worker_cpu_ms"]]
        fork_cpu = [p["server_fork_ms"] for c in children for p in c[1:]]
        print(f"{tree}:\n  first pool (forkserver start included): {spread(cold)} s, "
              f"{0.5 / statistics.median(cold):.2f} of ideal; first batch {spread(cold_first)} s"
              f"\n  warm pools: {spread(warm)} s, {0.5 / statistics.median(warm):.2f} of ideal; first batch "
              f"{spread(warm_first)} s; the parent saw the workers Ready after {spread(mean_ready, 0)} ms "
              f"on average\n  worker CPU, fork to Ready: {spread(worker_cpu, 1)} ms; forkserver CPU "
              f"per fork {spread(fork_cpu, 2)} ms; forkserver CPU by the end of the first pool (its start) "
              f"{spread([c[0]['server_ms'] for c in children], 0)} ms")

if __name__ == "__main__":
    main()
