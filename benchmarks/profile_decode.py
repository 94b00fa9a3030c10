"""Where the decode scenario's time goes: ``python -m benchmarks.profile_decode [--rounds R] [--seconds S]``.

The decode scenario compares awkgen's process backend (2 workers) with *cores x the
serial rate* of its loader. This splits the gap, in interleaved rounds (each round runs
every case, rotated, so a busy machine weighs on all of them alike):

- ``serial``: the loader in a loop in this process: batches/s and CPU ms per batch;
- ``bare``: the loader in a loop in each of *cores* plain processes (``os.fork``), results
  dropped: what the machine itself gives two copies of the loader side by side (no
  transport, no parent), i.e. the limit any data loader could reach;
- ``awkgen``: ``DataGeneratorMultiProc(backend="process")`` with the benchmark's consumer
  (:func:`~benchmarks.loaders.touch`): batches/s, and the CPU ms per batch of its workers
  and of the parent (read from ``/proc``, as :mod:`benchmarks.profile_costs` does), and of
  the loader calls alone inside the workers (:class:`TimedLoader`): the workers' CPU beyond
  their loader calls, plus the parent's, is what awkgen adds to each batch. That split is
  measured inside one run, so it holds on a busy machine, where the wall-clock ratios
  (``*_of_ideal``) move by tens of percent between rounds.

Each case runs the scenario's loader (:func:`~benchmarks.scenarios.decode_loader`) and,
with ``--old``, also the loader the scenario used before (:class:`~benchmarks.loaders.JpegLoader`:
a copy into the shared-memory slot). Printed: one JSON object, medians over rounds and
every round's ratios; the serial loader's parts come first (CPU ms per batch of 8, medians,
each part called in turn).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loaders import JpegLoader, make_jpegs, touch  # noqa: E402
from benchmarks.proctree import descendants  # noqa: E402
from benchmarks.profile_costs import _cpu_s  # noqa: E402
from benchmarks.scenarios import CORES, DECODE_BATCH, JPEG_COUNT, JPEG_DIR, decode_loader  # noqa: E402


@dataclass(frozen=True)
class TimedLoader:
    """*loader*, adding each call's CPU time (this thread's) to a file of *folder* named by the pid."""

    loader: Any
    folder: str

    def __call__(self, ids: np.ndarray) -> Any:
        start = time.thread_time()
        try:
            return self.loader(ids)
        finally:
            path = os.path.join(self.folder, str(os.getpid()))
            try:
                with open(path, "rb") as f:
                    total = float(f.read() or 0)
            except FileNotFoundError:
                total = 0.0
            with open(path + ".tmp", "w") as f:
                f.write(repr(total + time.thread_time() - start))
            os.replace(path + ".tmp", path)  # whole: the parent never reads a file half written


def _loader_cpu_s(folder: str) -> float:
    total = 0.0
    for name in os.listdir(folder):
        if name.isdigit():
            with open(os.path.join(folder, name)) as f:
                total += float(f.read() or 0)
    return total


def _interleaved_cpu_ms(fns: dict[str, Callable[[], Any]], repeat: int = 30) -> dict[str, float]:
    """Median CPU ms of each of *fns*, called in turn *repeat* times (load weighs on all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.thread_time()
            fn()
            times[name].append(time.thread_time() - t)
    return {name: round(1e3 * statistics.median(ts), 3) for name, ts in times.items()}


def parts() -> dict[str, float]:
    """The serial loader's steps, each on its own, CPU ms per batch of 8 images."""
    from PIL import Image

    paths = [os.path.join(JPEG_DIR, f"{i:05d}.jpg") for i in range(DECODE_BATCH)]
    size = (224, 224)

    def decode() -> None:
        for p in paths:
            with Image.open(p) as im:
                im.load()

    def decode_resize() -> None:
        for p in paths:
            with Image.open(p) as im:
                im.resize(size, Image.Resampling.BILINEAR)

    def decode_resize_asarray() -> None:
        for p in paths:
            with Image.open(p) as im:
                np.asarray(im.resize(size, Image.Resampling.BILINEAR))

    u8 = np.asarray(Image.open(paths[0]).resize(size, Image.Resampling.BILINEAR))
    out = np.empty((DECODE_BATCH, *u8.shape), np.float32)

    def to_float() -> None:
        for k in range(DECODE_BATCH):
            np.divide(u8, np.float32(255), out=out[k], dtype=np.float32)

    copy = np.empty_like(out)
    return _interleaved_cpu_ms({
        "decode": decode, "decode+resize": decode_resize, "decode+resize+asarray": decode_resize_asarray,
        "uint8 -> float32 / 255 into the batch": to_float,
        "copy of the float32 batch (4.8 MB)": lambda: np.copyto(copy, out),
        "touch (the consumer)": lambda: touch(out),
        "scenario loader": lambda: decode_loader()(np.arange(DECODE_BATCH)),
        "JpegLoader (before)": lambda: JpegLoader(JPEG_DIR, JPEG_COUNT)(np.arange(DECODE_BATCH))})


def _ids(k: int) -> np.ndarray:
    return np.arange(k * DECODE_BATCH, (k + 1) * DECODE_BATCH) % JPEG_COUNT


def serial(loader: Any, seconds: float) -> dict[str, float]:
    loader(_ids(0))
    n, c0, w0 = 0, time.thread_time(), time.perf_counter()
    while time.perf_counter() - w0 < seconds:
        loader(_ids(n))
        n += 1
    wall = time.perf_counter() - w0
    return {"batches_per_s": n / wall, "cpu_ms": 1e3 * (time.thread_time() - c0) / n}


def bare(loader: Any, seconds: float, procs: int = CORES) -> dict[str, float]:
    """*procs* forked processes, each looping the loader for *seconds*; their total rate."""
    pipes = []
    for _ in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: loop, report, exit without running the parent's atexit hooks
            os.close(r)
            result = serial(loader, seconds)
            os.write(w, json.dumps(result).encode())
            os._exit(0)
        os.close(w)
        pipes.append((pid, r))
    results = []
    for pid, r in pipes:
        with os.fdopen(r) as f:
            results.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    return {"batches_per_s": sum(x["batches_per_s"] for x in results),
            "cpu_ms": statistics.mean(x["cpu_ms"] for x in results)}


def awkgen_process(loader: Any, seconds: float) -> dict[str, Any]:
    import awkgen

    ids = np.arange(JPEG_COUNT // DECODE_BATCH * DECODE_BATCH)
    with tempfile.TemporaryDirectory() as folder, \
            awkgen.DataGeneratorMultiProc(TimedLoader(loader, folder), ids, None, DECODE_BATCH, n_workers=CORES,
                                          backend="process", shuffle=False) as gen:
        for _ in range(4 * CORES + 4):
            touch(next(gen)[0])
        kids = descendants()
        p0, k0, l0 = time.process_time(), sum(_cpu_s(p) for p in kids), _loader_cpu_s(folder)
        n, w0 = 0, time.perf_counter()
        while time.perf_counter() - w0 < seconds:
            touch(next(gen)[0])
            n += 1
        wall = time.perf_counter() - w0
        # the batches in flight were loaded, or are being loaded, after the loop: counted in both
        parent, workers = time.process_time() - p0, sum(_cpu_s(p) for p in kids) - k0
        loader_s = _loader_cpu_s(folder) - l0
        routes = dict(getattr(gen._executor, "_routes", {}))
    return {"batches_per_s": n / wall, "parent_cpu_ms": 1e3 * parent / n, "workers_cpu_ms": 1e3 * workers / n,
            "loader_cpu_ms": 1e3 * loader_s / n, "worker_overhead_ms": 1e3 * (workers - loader_s) / n,
            "routes": routes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_decode", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--old", action="store_true", help="also the scenario's former loader (JpegLoader)")
    args = parser.parse_args(argv)
    make_jpegs(JPEG_DIR, JPEG_COUNT)
    loaders: dict[str, Any] = {"scenario": decode_loader()}
    if args.old:
        loaders["JpegLoader"] = JpegLoader(JPEG_DIR, JPEG_COUNT)
    cases = [(name, kind) for name in loaders for kind in ("serial", "bare", "awkgen")]
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        shift = r % len(cases)
        got: dict[str, Any] = {}
        for name, kind in cases[shift:] + cases[:shift]:
            run = {"serial": serial, "bare": bare, "awkgen": awkgen_process}[kind]
            got[f"{name}/{kind}"] = run(loaders[name], args.seconds)
        for name in loaders:
            ideal = CORES * got[f"{name}/serial"]["batches_per_s"]
            got[f"{name}/bare of ideal"] = got[f"{name}/bare"]["batches_per_s"] / ideal
            got[f"{name}/awkgen of ideal"] = got[f"{name}/awkgen"]["batches_per_s"] / ideal
            bare_rate = got[f"{name}/bare"]["batches_per_s"]
            got[f"{name}/awkgen of bare"] = got[f"{name}/awkgen"]["batches_per_s"] / bare_rate
        rounds.append(got)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items() if k.endswith(("ideal", "bare"))
                                             and isinstance(v, float)), file=sys.stderr)

    def median(key: str, field: str | None = None) -> float:
        values = [x[key] if field is None else x[key][field] for x in rounds]
        return round(float(statistics.median(values)), 3)

    summary: dict[str, Any] = {"serial_parts_cpu_ms": parts()}
    for name in loaders:
        summary[name] = {
            "serial_batches_per_s": median(f"{name}/serial", "batches_per_s"),
            "serial_cpu_ms": median(f"{name}/serial", "cpu_ms"),
            "bare_cpu_ms": median(f"{name}/bare", "cpu_ms"),
            "awkgen_workers_cpu_ms": median(f"{name}/awkgen", "workers_cpu_ms"),
            "awkgen_parent_cpu_ms": median(f"{name}/awkgen", "parent_cpu_ms"),
            "awkgen_loader_cpu_ms": median(f"{name}/awkgen", "loader_cpu_ms"),
            "awkgen_worker_overhead_ms": median(f"{name}/awkgen", "worker_overhead_ms"),
            "rounds_worker_overhead_ms": [round(x[f"{name}/awkgen"]["worker_overhead_ms"], 3) for x in rounds],
            "rounds_parent_cpu_ms": [round(x[f"{name}/awkgen"]["parent_cpu_ms"], 3) for x in rounds],
            "bare_of_ideal": median(f"{name}/bare of ideal"),
            "awkgen_of_ideal": median(f"{name}/awkgen of ideal"),
            "awkgen_of_bare": median(f"{name}/awkgen of bare"),
            "rounds_awkgen_of_ideal": [round(x[f"{name}/awkgen of ideal"], 3) for x in rounds],
            "rounds_bare_of_ideal": [round(x[f"{name}/bare of ideal"], 3) for x in rounds],
            "routes": rounds[-1][f"{name}/awkgen"]["routes"]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
