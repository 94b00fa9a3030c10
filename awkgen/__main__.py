"""The ``awkgen`` command: ``awkgen demo`` and ``awkgen bench`` (also ``python -m awkgen``).

Worker processes start through a forkserver that re-imports the main module, so
everything that does work sits in :func:`main`, behind the ``__main__`` guard.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; received: {text!r}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1; received: {text!r}")
    return value


def _worker_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(_positive_int(part) for part in text.split(",") if part.strip())
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers; received: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one worker count; received: {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awkgen",
        description="awkgen: shuffled, batched, prefetched data for training loops. "
                    "Run 'awkgen demo' to train a Keras model from photos on disk, "
                    "'awkgen bench' to measure batches per second.")
    parser.add_argument("--version", action="version", version=f"awkgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,bench}")

    demo = commands.add_parser(
        "demo", help="train a Keras CNN from photos on disk, decoded and augmented in awkgen's workers",
        description="Write scikit-learn's digits as 192x192 JPEG photos (cached), train a small Keras CNN "
                    "from them with DataGeneratorMultiProc (process backend), whose loader decodes and "
                    "augments each image; compare epochs against the blocking DataGenerator, taken in turn, "
                    "and print the held-out accuracy. Needs: pip install 'awkgen[demo]'.")
    demo.add_argument("--epochs", type=_positive_int, default=3,
                      help="training epochs before the comparison (default: 3)")
    demo.add_argument("--compare-epochs", type=_positive_int, default=3,
                      help="epochs through each generator, in turn, for the comparison (default: 3)")
    demo.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default: 64)")
    demo.add_argument("--workers", type=_positive_int, default=4,
                      help="worker processes (default: 4)")
    demo.add_argument("--latency-ms", type=_non_negative_float, default=0.0,
                      help="add a simulated storage latency per file, in ms, to see what prefetching saves on "
                           "slow storage (default: 0, the real files only)")
    demo.add_argument("--holdout", type=_fraction, default=0.2,
                      help="fraction of the files held out for the accuracy (default: 0.2)")
    demo.add_argument("--cache", default=None,
                      help="folder for the image files (default: $AWKGEN_CACHE/digit-photos, else "
                           "./.awkgen-cache/digit-photos)")
    demo.add_argument("--seed", type=int, default=0, help="seed for the split, the order and the model (default: 0)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    bench = commands.add_parser(
        "bench", help="batches/s of DataGenerator vs DataGeneratorMultiProc with a slow loader",
        description="Measure batches per second of the blocking DataGenerator and of "
                    "DataGeneratorMultiProc for several worker counts, with a loader that sleeps a "
                    "fixed latency per sample (no framework needed). The full comparative suite "
                    "lives in benchmarks/.")
    bench.add_argument("--quick", action="store_true", help="fewer batches and worker counts 1,2,4 (seconds)")
    bench.add_argument("--workers", type=_worker_list, default=None,
                       help="comma-separated worker counts (default: 1,2,4,8; with --quick 1,2,4)")
    bench.add_argument("--latency-ms", type=_non_negative_float, default=1.0,
                       help="loader sleep per sample, in ms (default: 1)")
    bench.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default: 32)")
    bench.add_argument("--batches", type=_positive_int, default=None,
                       help="timed batches per row (default: 100; with --quick 30)")
    bench.add_argument("--backend", choices=("process", "thread"), default="process",
                       help="DataGeneratorMultiProc backend (default: process)")
    bench.add_argument("--no-progress", action="store_true",
                       help="no progress (by default: a bar if tqdm is installed, else a line per row on stderr)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad arguments, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _run(args)
    except (ValueError, ImportError) as exc:  # a bad combination of options, or a missing extra
        print(f"awkgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # generators stopped in their finally blocks; no traceback
        print(f"awkgen {args.command}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        result = run_demo(cache_dir=args.cache, epochs=args.epochs, batch_size=args.batch_size,
                          n_workers=args.workers, latency_ms=args.latency_ms, holdout=args.holdout,
                          seed=args.seed, progress=not args.no_progress, compare_epochs=args.compare_epochs)
        return 0 if result.accuracy > 0.5 else 1  # a demo that did not learn is a failure
    from .bench import DEFAULT_WORKERS, QUICK_WORKERS, run_bench

    workers = args.workers or (QUICK_WORKERS if args.quick else DEFAULT_WORKERS)
    n_batches = args.batches or (30 if args.quick else 100)
    run_bench(latency_ms=args.latency_ms, batch_size=args.batch_size, workers=workers,
              n_batches=n_batches, backend=args.backend, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
