"""Soak test: ``python benchmarks/soak.py [--batches 100000]`` (``make soak``).

Pushes many batches through the process backend and reports whether anything
grows: the parent's RSS and the whole tree's RSS and PSS (parent, forkserver,
workers), open file descriptors and ``/dev/shm`` segments, sampled after a warm-up
and at the end. Batches are 256 KiB float32 arrays with labels, so every one goes
through the shared-memory ring and the label slicing. Writes
``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable, for us and the workers
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "soak.json")
_MIB = 2**20


def snapshot() -> dict[str, Any]:
    """Memory of the parent and of the whole process tree, fds and awkgen's /dev/shm segments."""
    from benchmarks.proctree import read_memory, tree_memory

    parent = read_memory(os.getpid())
    tree = tree_memory()
    segments = [n for n in os.listdir("/dev/shm") if n.startswith(f"awkgen-{os.getpid()}-")]
    return {
        "parent_rss_mib": round(parent[1] / _MIB, 1) if parent else None,
        "parent_pss_mib": round(parent[0] / _MIB, 1) if parent else None,
        "tree_rss_mib": round(sum(r for _, r in tree.values()) / _MIB, 1),
        "tree_pss_mib": round(sum(p for p, _ in tree.values()) / _MIB, 1),
        "processes": len(tree),
        "fds": len(os.listdir("/proc/self/fd")),
        "shm_segments": len(segments),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="benchmarks/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100_000, help="batches to pull (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument("--kib", type=int, default=256, help="KiB per batch (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write (default: %(default)s)")
    args = parser.parse_args(argv)

    import numpy as np
    from tqdm import tqdm

    import awkgen
    from benchmarks.loaders import FullLoader, touch
    from benchmarks.proctree import machine

    n_ids = 4096
    labels = np.arange(n_ids) % 10
    warmup = min(1000, max(1, args.batches // 10))
    gen = awkgen.DataGeneratorMultiProc(FullLoader(args.kib * 1024), np.arange(n_ids), labels, batch_size=1,
                                        n_workers=args.workers, seed=0)
    started = time.perf_counter()
    with gen, tqdm(total=args.batches, desc="soak", unit="batch", unit_scale=True, file=sys.stderr,
                   mininterval=0.5) as bar:
        for i in range(args.batches):
            touch(gen())
            if i + 1 == warmup:
                start = snapshot()
                start["after_batches"] = warmup
            if i % 256 == 255:
                bar.update(256)
        bar.update(args.batches - bar.n)
        end = snapshot()
        end["after_batches"] = args.batches
        stats = gen.stats().as_dict()
    elapsed = time.perf_counter() - started
    closed = snapshot()
    result = {
        "machine": machine(),
        "batches": args.batches, "workers": args.workers, "kib_per_batch": args.kib,
        "seconds": round(elapsed, 1), "batches_per_s": round(args.batches / elapsed, 1),
        "start": start, "end": end, "after_close": closed,
        "growth_parent_rss_mib": round(end["parent_rss_mib"] - start["parent_rss_mib"], 1),
        "growth_tree_rss_mib": round(end["tree_rss_mib"] - start["tree_rss_mib"], 1),
        "growth_tree_pss_mib": round(end["tree_pss_mib"] - start["tree_pss_mib"], 1),
        "generator_stats": stats,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"{args.batches} batches of {args.kib} KiB through {args.workers} worker processes in {elapsed:.0f} s "
          f"({args.batches / elapsed:.0f} batches/s)")
    for key in ("parent_rss_mib", "tree_rss_mib", "tree_pss_mib", "fds", "shm_segments"):
        print(f"  {key:16} after {start['after_batches']:>7} batches: {start[key]:>8}   "
              f"after {args.batches:>7}: {end[key]:>8}   after close: {closed[key]:>8}")
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
