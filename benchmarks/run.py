"""Run the comparative benchmark: ``python -m benchmarks.run [--quick] [--scenarios ...] [--out DIR]``.

All contenders run in this one process, one after another, on the same machine, so
their figures are ratios measured side by side. Frameworks are imported once, up
front ("after imports"); each measurement builds its contender, measures, closes it
and checks that no worker process is left. Results go to ``--out``
(default ``benchmarks/results``) as JSON, Markdown and PNG.

This module is light at import time on purpose: process pools that *spawn* (Grain)
re-import the main module in every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable, for us and spawned workers
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Imported before any measurement, in this order (torch before TensorFlow avoids symbol clashes).
FRAMEWORKS = ("numpy", "torch", "tensorflow", "keras", "grain", "ray", "awkgen")
BUSY_CAVEAT = ("measured while other jobs shared the machine's cores; absolute figures are noisy and the "
               "side-by-side ratios are indicative only")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.contenders import CONTENDERS, RAY_CONTENDERS
    from benchmarks.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round, short budgets, latency at 8 workers only, 100 k path ids (< 3 min)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of: {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of: {','.join([*CONTENDERS, *RAY_CONTENDERS])} (default: all "
                             "but the Ray ones, which need ray[data]: latency,coldstart,bandwidth,tiny are their "
                             "scenarios)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for results.json/.md/.png (default: %(default)s)")
    parser.add_argument("--caveat", default=None,
                        help="a note printed on top of the report (e.g. 'busy machine'); "
                             "'busy' gives the standard one")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for kind, chosen, known in (("scenario", args.scenarios, SCENARIOS),
                                ("contender", args.contenders, {**CONTENDERS, **RAY_CONTENDERS})):
        unknown = [x for x in chosen if x not in known]
        if unknown:
            parser.error(f"unknown {kind}(s) {unknown}; expected some of {list(known)}")
    if args.caveat == "busy":
        args.caveat = BUSY_CAVEAT
    return args


def import_frameworks() -> dict[str, str]:
    """Import every framework once, quietly; return their versions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    warnings.filterwarnings("ignore", message=".*suggested max number of worker.*")  # torch, > cores on purpose
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import importlib

    versions = {}
    for name in FRAMEWORKS:
        try:
            module = importlib.import_module(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError as exc:  # that contender will report the error; the others still run
            versions[name] = f"missing ({exc})"
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return versions


def profile_costs() -> dict[str, Any] | None:
    """``python -m benchmarks.profile_costs`` in a child (a fresh interpreter, no framework loaded):
    where awkgen's process backend spends the bandwidth and tiny workloads' time."""
    import json
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.profile_costs", "--seconds", "3"], cwd=root,
                              capture_output=True, text=True, timeout=300)
        return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-400:]}
    except (subprocess.SubprocessError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    versions = import_frameworks()

    from tqdm import tqdm

    from benchmarks import report
    from benchmarks.contenders import make_contenders
    from benchmarks.loaders import make_jpegs
    from benchmarks.proctree import ChildGuard, cpu_times, machine, steal_fraction
    from benchmarks.scenarios import (
        JPEG_COUNT,
        JPEG_DIR,
        SCENARIOS,
        Settings,
        evaluate_targets,
        merge_rounds,
        plan_jobs,
        rederive,
        run_job,
    )

    settings = Settings.make(args.quick)
    contenders = make_contenders(args.contenders)
    shared: dict[str, Any] = {}
    jobs = plan_jobs(args.scenarios, settings, contenders, shared)
    if "decode" in args.scenarios:
        make_jpegs(JPEG_DIR, JPEG_COUNT)  # once per checkout (.awkgen-cache, removed by make clean)
    if any(c.name == "awkgen-ray" or c.family == "ray.data" for c in contenders):
        from benchmarks.contenders import ray_cluster

        ray_cluster()  # the run's Ray cluster: its processes belong to the guard's baseline
    info = machine()
    ticks = cpu_times()
    guard = ChildGuard()
    records = []
    with tqdm(total=len(jobs), desc="benchmark", unit="job", file=sys.stderr, dynamic_ncols=True) as bar:
        for job in jobs:
            bar.set_postfix_str(job.label[:60])
            records.append(run_job(job, guard))
            bar.update()
    records = rederive(merge_rounds(records))
    profile = profile_costs() if {"bandwidth", "tiny"} & set(args.scenarios) and not args.quick else None
    # On a shared VM the hypervisor's steal time is the usual reason two runs disagree.
    info["cpu_steal"] = steal_fraction(ticks, cpu_times())
    results = {
        "machine": info,
        "versions": versions,
        "settings": settings.__dict__,
        "caveat": args.caveat,
        "contenders": [c.name for c in contenders],
        "configs": {c.name: c.config for c in contenders},
        "scenarios": {k: {"title": SCENARIOS[k].title, "what": SCENARIOS[k].what, "unit": SCENARIOS[k].unit}
                      for k in args.scenarios},
        "records": records,
        "targets": evaluate_targets(records, profile),
        "profile": profile,
        "leaks": guard.leaks,
        "wall_s": time.perf_counter() - started,
    }
    paths = report.write(args.out, results)
    print(report.markdown(results))
    print(f"\nwritten: {', '.join(paths.values())}")
    return results


if __name__ == "__main__":
    main()
