"""The differential oracle at scale: thousands of result trees through every backend.

    python -m tests.oracle --trees 10000 --seed 1                  # every backend
    python -m tests.oracle --trees 2000 --seed 7 --backends process
    python -m tests.oracle --seed 1 --tree 4242 --backends process # replay one tree

Tree ``i`` of seed ``S`` is drawn from ``random.Random(S * 1_000_003 + i)`` by
:func:`tests.fidelity.draw_recipe`, so one tree replays alone. Trees run in chunks of
``--chunk``; each chunk is one generator whose shape (workers, prefetch, batch size, a
scratch array that makes results outgrow their slot) is drawn from the seed and the chunk
number: a *configuration*. Every batch is compared with a serial call of the same loader
(:func:`tests.fidelity.diff`), and the last ``--hold`` batches are held and compared again
once later batches arrived. Prints ``FAIL ...`` with the replay command for each
difference, then ``N configurations, T trees, F failures`` and the routes the process
backend's results took; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time

import awkgen
from tests.fidelity import TreeLoader, diff, draw_recipe


class SeededRecipes:
    """Recipe of tree *i* of seed *seed*: picklable, so workers draw the same trees."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, i: int) -> tuple:
        r = random.Random(self.seed * 1_000_003 + int(i))
        return draw_recipe(r.randrange)


def run_chunk(backend: str, seed: int, chunk: int, ids: list[int], hold: int, routes: collections.Counter,
              out=sys.stdout) -> tuple[int, int]:
    r = random.Random(f"{seed}-{chunk}-{backend}")
    n_workers = r.randint(1, 3)
    prefetch = r.choice([None, 1, 2, 4, 8])
    batch_size = min(len(ids), r.choice([1, 1, 2, 3, 5]))
    outgrow = r.random() < 0.3
    loader = TreeLoader(recipe_of=SeededRecipes(seed), outgrow=outgrow)
    failures = 0
    with awkgen.DataGeneratorMultiProc(loader, ids, batch_size=batch_size, n_workers=n_workers, backend=backend,
                                       prefetch=prefetch, shuffle=False) as gen:
        held: collections.deque = collections.deque(maxlen=hold)
        for step in range(gen.steps_per_epoch):
            batch = ids[step * batch_size:(step + 1) * batch_size]
            (got,) = gen()
            want = loader(batch)
            problem = diff(want, got)
            if problem:
                failures += 1
                print(f"FAIL {backend} seed={seed} trees={batch} (n_workers={n_workers} prefetch={prefetch} "
                      f"batch_size={batch_size} outgrow={outgrow}): {problem}\n  replay: python -m tests.oracle "
                      f"--seed {seed} --tree {batch[0]} --backends {backend}", file=out, flush=True)
            held.append((want, got, batch))
            if len(held) == hold:
                w, g, b = held[0]
                problem = diff(w, g)
                if problem:
                    failures += 1
                    print(f"FAIL {backend} seed={seed} trees={b}: changed while held: {problem}", file=out, flush=True)
        for w, g, b in held:
            problem = diff(w, g)
            if problem:
                failures += 1
                print(f"FAIL {backend} seed={seed} trees={b}: changed while held: {problem}", file=out, flush=True)
        routes.update(getattr(gen._executor, "_routes", {}))
    return len(ids), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tree", type=int, default=None, help="replay this one tree")
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--hold", type=int, default=4)
    parser.add_argument("--backends", default="thread,process,ray")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    backends = args.backends.split(",")
    if "ray" in backends:
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"oracle: seed={seed} backends={backends}", flush=True)
    routes: collections.Counter = collections.Counter()
    configs = trees = failures = 0
    started = time.monotonic()
    chunks = [[args.tree]] if args.tree is not None else [
        list(range(start, min(start + args.chunk, args.trees))) for start in range(0, args.trees, args.chunk)]
    for backend in backends:
        for number, ids in enumerate(chunks):
            n, f = run_chunk(backend, seed, number, ids, args.hold, routes)
            configs += 1
            trees += n
            failures += f
            if configs % 250 == 0:
                print(f"  {backend}: {configs} configurations, {trees} trees, {failures} failures, "
                      f"{time.monotonic() - started:.0f} s, routes {dict(routes)}", flush=True)
        print(f"  {backend}: done, {trees} trees so far, {failures} failures, {time.monotonic() - started:.0f} s",
              flush=True)
    print(f"process routes: {dict(routes)}")
    print(f"{configs} configurations, {trees} trees, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
