"""Where the Ray backend's time goes: ``python -m benchmarks.profile_ray [--seconds S]``.

Ray's own floor, measured with bare actors (no awkgen) on a fresh local cluster with
this machine's CPUs, next to awkgen's ``"ray"`` backend on the same loaders:

- ``calls_per_s``: 1 KiB results from 2 actors, each with 2 calls in flight (what awkgen
  keeps queued), collected with ``ray.wait``/``ray.get``: the tiny scenario's ceiling.
- ``big_ms``: one 32 MiB float32 result per call from 2 actors, pipelined the same way:
  writable (copied once out of the store, as awkgen delivers it) and read-only (a view
  of the store), next to one ``np.copy`` of 32 MiB in this process.
- ``actor_up_s``: seconds from creating 8 actors at once to each answering its first call
  (Ray starts worker processes a few at a time): the cold start's floor.

Prints one JSON object. Run it on an otherwise idle machine for figures worth comparing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

MIB = 2**20


class _Bare:
    def ready(self) -> float:
        return time.time()

    def tiny(self, i: int) -> np.ndarray:
        return np.full(256, float(i), dtype=np.float32)

    def big(self, i: int, writable: bool) -> np.ndarray:
        a = np.full(32 * MIB // 4, float(i), dtype=np.float32)
        a.flags.writeable = writable
        return a


def _pipelined(ray: Any, actors: list[Any], call: Any, seconds: float, after: Any = None) -> float:
    """Results per second with 2 calls in flight per actor, over *seconds*."""
    inflight = {a: [call(a), call(a)] for a in actors}
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for actor, refs in inflight.items():
            value = ray.get(refs.pop(0))
            if after is not None:
                after(value)
            del value
            refs.append(call(actor))
            n += 1
    rate = n / (time.perf_counter() - start)
    for refs in inflight.values():
        ray.get(refs)
    return rate


def profile(seconds: float) -> dict[str, Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    out: dict[str, Any] = {"cpus": os.cpu_count()}
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        bare = ray.remote(_Bare)
        began = time.time()
        actors = [bare.remote() for _ in range(8)]
        out["actor_up_s"] = sorted(round(t - began, 3) for t in ray.get([a.ready.remote() for a in actors]))
        pair = actors[:2]
        out["calls_per_s"] = _pipelined(ray, pair, lambda a: a.tiny.remote(1), seconds)
        rates = {}
        for writable in (True, False):
            rates[writable] = _pipelined(ray, pair, lambda a, w=writable: a.big.remote(1, w), seconds,
                                         after=(lambda v: v.copy()) if writable else None)
        src = np.ones(32 * MIB // 4, dtype=np.float32)
        copies, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            src.copy()
            copies += 1
        out["big_ms"] = {"copied_once": 1e3 / rates[True], "store_view": 1e3 / rates[False],
                         "np_copy_32mib": 1e3 * (time.perf_counter() - start) / copies}
        for a in actors:
            ray.kill(a)
    finally:
        ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ray", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure (default 3)")
    print(json.dumps(profile(parser.parse_args(argv).seconds)))


if __name__ == "__main__":
    main()
