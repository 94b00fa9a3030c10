"""``NumpyDataGenerator``: ART's generator over in-memory arrays, shuffled by awkgen's plan.

ART (1.13+) defines ``NumpyDataGenerator(x, y, batch_size=1, drop_remainder=True,
shuffle=False)``; this class takes the same arguments, has the same attributes
(``x``, ``y``, ``shuffle``, ``drop_remainder``, ``batches_per_epoch``, ``generator``)
and the same stream: ``iter(gen)`` is one epoch, ``get_batch()`` loops over epochs
forever. One thing differs, on purpose: the order. ART shuffles with numpy's global
random state; here epoch *e*'s order is :class:`awkgen.sampling.Plan`'s permutation
for ``(seed, e)``, the same one an awkgen generator with that seed uses, so a run can
be replayed (``seed=None`` draws a seed).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._checks import is_int
from ..sampling import Plan
from .base import DataGenerator, art_twin

__all__ = ["NumpyDataGenerator"]


@art_twin("NumpyDataGenerator")
class NumpyDataGenerator(DataGenerator):
    """Batches ``(x[i], y[i])`` of in-memory arrays *x* and *y*; a new order each epoch when *shuffle*.

    Arguments as ART's: ``len(x) == len(y)`` (else ``ValueError``), ``batch_size``
    is converted with ``int()`` as ART does (a bool is refused), ``drop_remainder``
    skips the last short batch of each epoch. *seed* (keyword only) fixes the
    shuffled order of every epoch.

    Args:
        x: The samples, indexed along the first axis.
        y: One label per sample.
        batch_size: Samples per batch.
        drop_remainder: Skip each epoch's last, short batch.
        shuffle: Draw a new order every epoch.
        seed: The orders' seed; ``None`` draws one.

    Raises:
        ValueError: *x* and *y* are not sized or differ in length, or *batch_size* or
            *seed* is out of range.

    >>> x, y = np.arange(10).reshape(5, 2), np.arange(5)
    >>> gen = NumpyDataGenerator(x, y, batch_size=2)
    >>> gen.size, gen.batches_per_epoch, [b.tolist() for b in gen.get_batch()]
    (5, 2, [[[0, 1], [2, 3]], [0, 1]])
    >>> [y.tolist() for _, y in gen]  # one epoch; the short batch is dropped
    [[0, 1], [2, 3]]
    >>> gen = NumpyDataGenerator(x, y, batch_size=2, drop_remainder=False, shuffle=True, seed=3)
    >>> sorted(int(i) for _, y in gen for i in y)  # every sample once per epoch
    [0, 1, 2, 3, 4]
    >>> NumpyDataGenerator(x, y[:3])
    Traceback (most recent call last):
    ...
    ValueError: Expected x and y of equal length, as ART requires. Received: len(x)=5, len(y)=3
    """

    def __init__(self, x: Any, y: Any, batch_size: int = 1, drop_remainder: bool = True,
                 shuffle: bool = False, *, seed: int | None = None) -> None:
        x = np.asanyarray(x)
        y = np.asanyarray(y)
        try:
            n_x, n_y = len(x), len(y)
        except TypeError as err:
            raise ValueError("Expected x and y to be sized (arrays with a first axis), as ART requires. "
                             f"Received: x of shape {x.shape}, y of shape {y.shape}") from err
        if n_x != n_y:
            raise ValueError(f"Expected x and y of equal length, as ART requires. Received: len(x)={n_x}, "
                             f"len(y)={n_y}")
        if isinstance(batch_size, bool):
            raise ValueError(f"Expected batch_size to be an int >= 1. Received: batch_size={batch_size!r} (bool)")
        if seed is not None and (not is_int(seed) or seed < 0):
            raise ValueError(f"Expected seed to be an int >= 0 or None. Received: seed={seed!r:.100}")
        super().__init__(n_x, int(batch_size))  # int() as ART: batch_size=2.0 is 2
        self.x = x
        self.y = y
        self.shuffle: bool = bool(shuffle)
        self.drop_remainder: bool = bool(drop_remainder)
        self.seed: int = int(seed) if seed is not None else secrets.randbits(63)
        self._plan = Plan(n_ids=n_x, batch_size=self.batch_size, shuffle=self.shuffle, seed=self.seed,
                          drop_last=self.drop_remainder)
        self.batches_per_epoch: int = self._plan.steps_per_epoch
        self._next_epoch = 0
        self._iterator = self
        self.generator: Iterator[tuple[Any, Any]] = iter(())

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """One epoch of batches; each ``iter()`` starts the next epoch (a new order when shuffling)."""
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return self._epoch(epoch)

    def _epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        for step in range(self.batches_per_epoch):
            positions = self._plan.batch_positions(epoch, step)
            if self.shuffle:
                yield self.x[positions], self.y[positions]
            else:  # contiguous: views, as ART gives
                window = slice(int(positions[0]), int(positions[-1]) + 1)
                yield self.x[window], self.y[window]

    def get_batch(self) -> tuple[Any, ...]:
        """The next batch ``(x, y)``; at the end of an epoch the next one starts."""
        try:
            return next(self.generator)
        except StopIteration:
            self.generator = iter(self)
            return next(self.generator)
