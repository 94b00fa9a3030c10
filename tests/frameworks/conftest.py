"""Fixtures for the framework tests: the digits data set written to files, split once.

Frameworks are imported at module level by each test file, so that their
process-wide machinery (thread pools, open libraries) exists before the
``no_leaks`` baseline of the first test is taken.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import tqdm

from awkgen.datasets import digits_on_disk, load_digits_batch

# ART shows tqdm progress bars; tqdm's first bar starts its monitor thread, which then lives as
# long as the process, by design. Start it here, before any baseline, so it counts as infrastructure.
tqdm.tqdm(total=1, file=io.StringIO()).close()


@dataclass(frozen=True)
class Digits:
    folder: str
    train_paths: list[str]
    train_labels: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """sklearn's digits as one .npy file per image; 1400 training files, 397 held-out images."""
    folder = tmp_path_factory.mktemp("digits")
    paths, labels = digits_on_disk(folder)
    order = np.random.default_rng(0).permutation(len(paths))
    train, test = order[:1400], order[1400:]
    return Digits(str(folder), [paths[i] for i in train], labels[train],
                  load_digits_batch([paths[i] for i in test]), labels[test])
