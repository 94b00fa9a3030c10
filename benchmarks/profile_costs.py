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
``/proc/<pid>/stat``), so the share of the two cores each side uses is visible.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
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


def awkgen_costs(loader: Any, batch_size: int, workers: int, seconds: float) -> dict[str, float]:
    import awkgen

    ids = np.arange(1024 * batch_size)
    with awkgen.DataGeneratorMultiProc(loader, ids, None, batch_size, n_workers=workers, backend="process",
                                       shuffle=False) as gen:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    out = {"bandwidth_parts": bandwidth_parts(),
           "bandwidth_awkgen_process": awkgen_costs(FullLoader(BIG), 1, 2, args.seconds),
           "tiny_awkgen_process": awkgen_costs(tiny_loader, 1, os.cpu_count() or 1, args.seconds),
           "tiny_floor": tiny_floor(args.seconds)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
