"""Path ids at scale, one contender per interpreter: ``python -m benchmarks.pathids --contender NAME``.

One epoch over *n* path strings (a Python ``list`` of ``str``, what a dataset of files
usually is), shuffled, *batch_size* per batch, *workers* workers, each batch loaded by
:func:`~benchmarks.loaders.path_loader`. Prints one JSON line: throughput over the epoch
(construction included, and without it) and the peak PSS of the whole process tree
(this interpreter and every worker, helper and forkserver below it), sampled from
``/proc`` by :class:`~benchmarks.proctree.MemorySampler`.

It runs in a fresh interpreter that imports only numpy and the contender's own library,
as a training script would: the benchmark's parent has TensorFlow, torch, Keras and
Grain loaded, and every forked worker would share (or pay for) all of that.

Where the ids live is the point. A torch ``Dataset`` holds the list, and its workers
are forked with it: every ``paths[i]`` a worker reads writes that string's reference
count, so the pages holding the strings are copied, worker by worker (copy-on-write).
awkgen keeps the ids in the parent and sends each worker only its batch's ids.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loaders import MIB, make_paths, path_loader, touch  # noqa: E402
from benchmarks.proctree import MemorySampler, tree_memory  # noqa: E402

CONTENDERS = ("awkgen-process", "torch[manual]", "torch[auto]")


def _awkgen(paths: list[str], workers: int, batch_size: int) -> tuple[Any, int, Any]:
    import awkgen

    gen = awkgen.DataGeneratorMultiProc(path_loader, paths, None, batch_size, n_workers=workers,
                                        backend="process", shuffle=True, seed=0)
    return gen, gen.steps_per_epoch, gen.close


class _PathDataset:
    """A torch map-style dataset holding the list of paths (made a ``Dataset`` subclass on use)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: Any) -> Any:
        return path_loader([self.paths[i] for i in indices])

    __getitems__ = __getitem__


def _torch(paths: list[str], workers: int, batch_size: int, automatic: bool) -> tuple[Any, int, Any]:
    import torch
    from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, default_convert

    dataset = type("PathDataset", (_PathDataset, Dataset), {})(paths)
    g = torch.Generator().manual_seed(0)
    common = dict(num_workers=workers, persistent_workers=False, pin_memory=False, prefetch_factor=2)
    if automatic:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g,
                            collate_fn=default_convert, **common)
    else:
        sampler = BatchSampler(RandomSampler(dataset, generator=g), batch_size, drop_last=False)
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, **common)
    it = iter(loader)

    def close() -> None:
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    return it, len(loader), close


def run(contender: str, n: int, workers: int, batch_size: int) -> dict[str, Any]:
    if contender == "awkgen-process":
        import awkgen  # noqa: F401  (imported before the baseline, like torch below)
    else:
        import torch  # noqa: F401
    paths = make_paths(n)
    gc.collect()
    base = tree_memory()
    sampler = MemorySampler(interval_s=0.05).start()
    started = time.perf_counter()
    if contender == "awkgen-process":
        source, steps, close = _awkgen(paths, workers, batch_size)
    else:
        source, steps, close = _torch(paths, workers, batch_size, automatic=contender == "torch[auto]")
    try:
        touch(next(source))
        first_s = time.perf_counter() - started
        for _ in range(steps - 1):
            touch(next(source))
        seconds = time.perf_counter() - started
    finally:
        close()
        sampler.stop()
    return {"batches": steps, "seconds": seconds, "first_batch_s": first_s,
            "batches_per_s": steps / seconds, "steady_batches_per_s": (steps - 1) / max(1e-9, seconds - first_s),
            "ids": n, "peak_pss_mib": sampler.peak_pss / MIB, "peak_rss_mib": sampler.peak_rss / MIB,
            "base_pss_mib": sum(p for p, _ in base.values()) / MIB,
            "extra_pss_mib": (sampler.peak_pss - sum(p for p, _ in base.values())) / MIB,
            "sweeps": sampler.sweeps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pathids", description=__doc__.splitlines()[0])
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*suggested max number of worker.*")  # > cores on purpose
    print(json.dumps(run(args.contender, args.n, args.workers, args.batch_size)))


if __name__ == "__main__":
    main()
