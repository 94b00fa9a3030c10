"""A real on-disk image data set for the demo, the notebook and the tests.

scikit-learn ships the 8x8 digits set (1797 images, no download); this writes it
as one grayscale PNG file per image under a folder, the way a user's own data sits
on disk, and gives the loader that decodes such files back (with
:func:`awkgen.images.load_image_batch`). Needs ``scikit-learn`` and Pillow
(``pip install "awkgen[demo]"``).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     paths, labels = digits_on_disk(folder)
...     len(paths), load_digits_batch(paths[:4]).shape, labels[:4].tolist()
(1797, (4, 8, 8, 1), [0, 1, 2, 3])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .images import load_image_batch

__all__ = ["digits_on_disk", "load_digits_batch"]


def digits_on_disk(folder: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Write scikit-learn's digits as ``<folder>/<label>/<index>.png`` (once); return ``(paths, labels)``.

    Each file is one 8-bit grayscale 8x8 PNG (the set's 0..16 levels scaled to
    0..255). Files already there are reused, so a second call costs only a
    directory listing.
    """
    try:
        from PIL import Image
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError('the digits data set needs scikit-learn and Pillow: pip install "awkgen[demo]"') from exc
    digits = load_digits()
    paths, labels = [], []
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        path = os.path.join(os.fspath(folder), str(int(label)), f"{index:04d}.png")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            Image.fromarray(np.rint(image * (255 / 16)).astype(np.uint8)).save(tmp, format="PNG")
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        paths.append(path)
        labels.append(int(label))
    return paths, np.asarray(labels, dtype=np.int64)


def load_digits_batch(paths: Sequence[str]) -> np.ndarray:
    """The loader: decode a batch of PNG files into one ``(n, 8, 8, 1)`` float32 array in [0, 1]."""
    return load_image_batch(paths)
