"""A/B of two awkgen trees on the process backend's per-batch paths: ``python -m benchmarks.ab_codec OLD NEW``.

Each round runs, in fresh child interpreters and in alternating order, the tiny scenario (1 KiB
batches, 2 workers) and the bandwidth scenario (32 MiB float32 batches, 2 workers, ordinary and
``awkgen.empty`` loaders) against each tree (``PYTHONPATH``), so load on a shared machine falls on
both alike; prints each run and the medians. Used to check that a transport change costs nothing
measurable (issue 20: the result codec).
"""

from __future__ import annotations

import statistics
import sys

from benchmarks._ab import run_in_tree

CHILD = r"""
import json, sys, time
import numpy as np
import awkgen
from benchmarks.loaders import FullLoader, FullLoaderInPlace, tiny_loader
out = {}
for name, loader, n, warm in (("tiny", tiny_loader, 4000, 400), ("bandwidth", FullLoader(32 << 20), 60, 8),
                              ("bandwidth empty", FullLoaderInPlace(32 << 20), 60, 8)):
    with awkgen.DataGeneratorMultiProc(loader, np.arange(100_000), batch_size=1, n_workers=2, shuffle=False) as gen:
        for _ in range(warm):
            gen()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            (x,) = gen()
            del x
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out[name] = {"per_s": n / wall, "parent_cpu_us": 1e6 * cpu / n}
print(json.dumps(out))
"""


def run(tree: str) -> dict:
    return run_in_tree(tree, CHILD, timeout=600)  # type: ignore[no-any-return]


def main() -> None:
    old, new, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5
    results: dict[str, list[dict]] = {old: [], new: []}
    for r in range(rounds):
        for tree in ((old, new) if r % 2 == 0 else (new, old)):
            got = run(tree)
            results[tree].append(got)
            print(f"round {r} {tree}: " + ", ".join(f"{k} {v['per_s']:.0f}/s ({v['parent_cpu_us']:.0f} us cpu)"
                                                     for k, v in got.items()), flush=True)
    for name in results[old][0]:
        o = statistics.median(x[name]["per_s"] for x in results[old])
        n = statistics.median(x[name]["per_s"] for x in results[new])
        oc = statistics.median(x[name]["parent_cpu_us"] for x in results[old])
        nc = statistics.median(x[name]["parent_cpu_us"] for x in results[new])
        print(f"{name}: old {o:.0f}/s ({oc:.0f} us parent cpu), new {n:.0f}/s ({nc:.0f} us), new/old {n / o:.2f}")


if __name__ == "__main__":
    main()
