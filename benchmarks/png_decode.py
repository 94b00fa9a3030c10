"""PNG decode speed, awkgen.images (libpng through imagecodecs) against Pillow, on 8-bit files:
``python -m benchmarks.png_decode [--repeat N] [--out FILE]``; prints a Markdown table, writes JSON.

awkgen.images decodes PNG with imagecodecs because Pillow cannot give ``png::readPNG``'s values for
16-bit colour and tRNS files (README, R users). Its promise: on the 8-bit files Pillow does decode
right, it is at least as fast. Each row is one kind of file, a photo-like image (a colour
gradient plus seeded noise, saved by Pillow at its default compression); each figure is the
time of decoding every file of the row once, per file, file reading included; each round times the
two right after each other (the order alternates), so that other jobs on the machine hit both alike:

- ``awkgen_ms``: :func:`awkgen.images.read_image` (open, read, libpng), the best round;
- ``pillow_ms``: ``numpy.asarray(Image.open(path))`` after ``load()``: Pillow's own 8-bit path,
  what awkgen.images did before, the best round;
- ``speedup``: the median over rounds of Pillow's time over awkgen's (>= 1: awkgen at least as fast).
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
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: (label, (height, width), Pillow mode) of each row
ROWS = (("RGB 64x64", (64, 64), "RGB"), ("RGB 224x224", (224, 224), "RGB"), ("RGB 512x384", (384, 512), "RGB"),
        ("grey 224x224", (224, 224), "L"), ("RGBA 224x224", (224, 224), "RGBA"))
FILES_PER_ROW = 16


def _photo(shape: tuple[int, int], channels: int, seed: int) -> np.ndarray:
    h, w = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w + 40 * k + (y * 255 // h) * (k % 2)) % 256 for k in range(channels)], axis=-1)
    return np.clip(base + rng.integers(-24, 25, base.shape), 0, 255).astype(np.uint8)


def _side_by_side_ms(ours: Callable[[], Any], theirs: Callable[[], Any], repeat: int,
                     per: int) -> tuple[float, float, float]:
    """Each round times both, one right after the other (alternating which goes first), so that
    load from other jobs on the machine hits both alike: (best ms per file of each, median ratio)."""
    ours(), theirs()
    mine, other, ratios = [], [], []
    for round_ in range(repeat):
        pair = []
        for fn in ((ours, theirs) if round_ % 2 == 0 else (theirs, ours)):
            t = time.perf_counter()
            fn()
            pair.append(time.perf_counter() - t)
        a, b = pair if round_ % 2 == 0 else pair[::-1]
        mine.append(a)
        other.append(b)
        ratios.append(b / a)
    return 1e3 * min(mine) / per, 1e3 * min(other) / per, statistics.median(ratios)


def measure(repeat: int) -> list[dict[str, Any]]:
    from PIL import Image

    from awkgen.images import read_image

    def pillow(path: str) -> np.ndarray:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image)

    rows = []
    with tempfile.TemporaryDirectory(prefix="awkgen-png-") as folder:
        for label, shape, mode in ROWS:
            paths = []
            for i in range(FILES_PER_ROW):
                pixels = _photo(shape, len(mode), i)
                paths.append(os.path.join(folder, f"{label.replace(' ', '_')}-{i}.png"))
                Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(paths[-1])
            for path in paths:  # the same values from both, before timing either
                assert np.array_equal(read_image(path)[0][..., 0] if mode == "L" else read_image(path)[0],
                                      pillow(path))
            ours, theirs, ratio = _side_by_side_ms(lambda ps=paths: [read_image(p) for p in ps],
                                                   lambda ps=paths: [pillow(p) for p in ps], repeat, len(paths))
            rows.append({"row": label, "awkgen_ms": round(ours, 4), "pillow_ms": round(theirs, 4),
                         "speedup": round(ratio, 2),
                         "file_kib": round(sum(os.path.getsize(p) for p in paths) / len(paths) / 1024, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.png_decode", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=31, help="rounds per row (default: %(default)s)")
    parser.add_argument("--out", default=None, help="a JSON file for the rows (default: print only)")
    args = parser.parse_args(argv)
    import imagecodecs
    import PIL

    rows = measure(args.repeat)
    print(f"PNG decode, 8-bit, ms per file (best of {args.repeat} rounds; imagecodecs {imagecodecs.__version__}, "
          f"Pillow {PIL.__version__}, {os.cpu_count()} cores)\n")
    print("| file | KiB | awkgen.images | Pillow | Pillow / awkgen |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['file_kib']} | {r['awkgen_ms']:.3f} | {r['pillow_ms']:.3f} | {r['speedup']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"repeat": args.repeat, "imagecodecs": imagecodecs.__version__, "pillow": PIL.__version__,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
