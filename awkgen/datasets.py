"""A real on-disk image data set for the demo, the notebook and the tests.

scikit-learn ships the 8x8 digits set (1797 images, no download); this writes it
as one ``.npy`` file per image under a folder, the way a user's own data sits on
disk, and gives the loader that reads such files back. Needs ``scikit-learn``
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

__all__ = ["digits_on_disk", "load_digits_batch"]


def digits_on_disk(folder: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Write scikit-learn's digits as ``<folder>/<label>/<index>.npy`` (once); return ``(paths, labels)``.

    Each file holds one float32 ``(8, 8)`` image scaled to [0, 1]. Files already
    there are reused, so a second call costs only a directory listing.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError('the digits data set needs scikit-learn: pip install "awkgen[demo]"') from exc
    digits = load_digits()
    paths, labels = [], []
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        path = os.path.join(os.fspath(folder), str(int(label)), f"{index:04d}.npy")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, (image / 16.0).astype(np.float32))
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        paths.append(path)
        labels.append(int(label))
    return paths, np.asarray(labels, dtype=np.int64)


def load_digits_batch(paths: Sequence[str]) -> np.ndarray:
    """The loader: read a batch of image files into one ``(n, 8, 8, 1)`` float32 array."""
    return np.stack([np.load(p) for p in paths])[..., None]
