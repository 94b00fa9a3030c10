"""The Ray backend's scenarios, for an interleaved A/B: ``python -m benchmarks.ab_ray SCENARIO...``.

Prints one JSON object, one entry per scenario, measured on one local Ray cluster with
the awkgen this interpreter imports:

- ``cold``: 8 actors, 20 ms loader: construction to the 200th batch (``first``: to the first);
- ``latency``: 8 actors, 20 ms loader: batches/s over 3 s after 6 s (all actors up);
- ``tiny``: 1 KiB batches, 2 actors, default prefetch; ``tiny32``: the same with ``prefetch=32``;
- ``bw``: 32 MiB float32 batches, 2 actors; ``bw_empty``: the same built with ``awkgen.empty``;
  ``bw_process``: ``bw`` on the process backend (the target: the Ray backend at half its rate).

``driver_cpu_us`` is this process's CPU per batch (every thread, Ray's own included);
``coalesced``: actor calls that carried several batches; ``routes``: how results travelled.

For an A/B, ``python -m benchmarks.ab_ray --ab OLD NEW ROUNDS SCENARIO...`` runs this file
against each tree in turn (fresh interpreters, ``PYTHONPATH`` set to the tree, the order
alternating between rounds), prints each run and the medians and ranges. The figures of the
runs behind the Ray section of the performance guide are in ``benchmarks/results/ray/ab.txt``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks.loaders import FullLoader, FullLoaderInPlace, SleepLoader, tiny_loader

LATENCY_S = 0.02


def _steady(loader: Any, n_batches: int, workers: int, warm_s: float, measure_s: float,
            prefetch: int | None = None, backend: str = "ray") -> dict[str, Any]:
    import awkgen

    started = time.perf_counter()
    gen = awkgen.DataGeneratorMultiProc(loader, np.arange(n_batches), None, 1, n_workers=workers, backend=backend,
                                        shuffle=False, prefetch=prefetch)
    try:
        gen()
        first = time.perf_counter() - started
        while time.perf_counter() - started < warm_s:
            gen()
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < measure_s:
            gen()
            n += 1
        rate = n / (time.perf_counter() - start)
        return {"first": round(first, 3), "rate": round(rate, 1),
                "driver_cpu_us": round((time.process_time() - cpu) / n * 1e6),
                "coalesced": getattr(gen._executor, "coalesced_calls", None),
                "routes": dict(getattr(gen._executor, "_routes", {}))}
    finally:
        gen.close()


def _cold() -> dict[str, Any]:
    import awkgen

    started = time.perf_counter()
    gen = awkgen.DataGeneratorMultiProc(SleepLoader(LATENCY_S), np.arange(200), None, 1, n_workers=8,
                                        backend="ray", shuffle=False)
    try:
        gen()
        first = time.perf_counter() - started
        for _ in range(199):
            gen()
        return {"first": round(first, 3), "total": round(time.perf_counter() - started, 3)}
    finally:
        gen.close()


SCENARIOS = {
    "cold": _cold,
    "latency": lambda: _steady(SleepLoader(LATENCY_S), 512, 8, 6.0, 3.0),
    "tiny": lambda: _steady(tiny_loader, 1024, 2, 2.0, 3.0),
    "tiny32": lambda: _steady(tiny_loader, 1024, 2, 2.0, 3.0, prefetch=32),
    "bw": lambda: _steady(FullLoader(32 * 2**20), 64, 2, 2.0, 3.0),
    "bw_empty": lambda: _steady(FullLoaderInPlace(32 * 2**20), 64, 2, 2.0, 3.0),
    "bw_process": lambda: _steady(FullLoader(32 * 2**20), 64, 2, 2.0, 3.0, backend="process"),
}

#: The A/B's child: this file, run against one tree's awkgen (and its benchmarks.loaders).
_CHILD = "import runpy, sys; sys.argv = [{file!r}, *{names!r}]; runpy.run_path({file!r}, run_name='__main__')"


def ab(old: str, new: str, rounds: int, names: list[str]) -> None:
    """Interleaved A/B: each round runs *names* against both trees, the order alternating."""
    from benchmarks._ab import run_in_tree

    runs: dict[str, list[dict[str, Any]]] = {old: [], new: []}
    child = _CHILD.format(file=os.path.abspath(__file__), names=names)
    for r in range(rounds):
        for tree in ((old, new) if r % 2 == 0 else (new, old)):
            got = run_in_tree(tree, child, timeout=600)
            if "bw" in got and "bw_process" in got:
                got["bw"]["of_process"] = round(got["bw"]["rate"] / got["bw_process"]["rate"], 3)
            runs[tree].append(got)
            print(f"round {r} {'old' if tree == old else 'new'} {json.dumps(got)}", flush=True)
    for name in names:
        for key in ("rate", "of_process", "driver_cpu_us", "total"):
            line = []
            for label, tree in (("old", old), ("new", new)):
                values = [run[name][key] for run in runs[tree] if key in run[name]]
                if values:
                    line.append(f"{label} {statistics.median(values):g} ({min(values):g}-{max(values):g})")
            if line:
                print(f"{name} {key}: median (range) " + ", ".join(line), flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--ab"]:
        ab(argv[1], argv[2], int(argv[3]), argv[4:])
        return
    unknown = [name for name in argv if name not in SCENARIOS]
    if unknown or not argv:
        raise SystemExit(f"usage: python -m benchmarks.ab_ray {{{','.join(SCENARIOS)}}}...; received: {argv}")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        print(json.dumps({name: SCENARIOS[name]() for name in argv}))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
