"""Pure functions from (ids, seed, epoch, shard) to batches of positions. No I/O.

A :class:`Plan` fixes everything that decides the batch sequence; a batch is named
by its ``(epoch, step)`` and its positions (indices into the original ids) follow
from the plan alone. That is why every backend and worker count gives the same
sequence: the parent plans, workers only load.

>>> plan = Plan(n_ids=7, batch_size=3, shuffle=False, seed=0)
>>> [plan.batch_positions(0, s).tolist() for s in range(plan.steps_per_epoch)]
[[0, 1, 2], [3, 4, 5], [6]]
>>> plan.next_cursor(0, 2)
(1, 0)

With ``drop_last`` the short batch is skipped:

>>> Plan(n_ids=7, batch_size=3, shuffle=False, seed=0, drop_last=True).steps_per_epoch
2

Shards are disjoint, of equal size, and cut from one shared permutation:

>>> a = Plan(10, 2, True, seed=5, rank=0, world_size=2).epoch_order(0)
>>> b = Plan(10, 2, True, seed=5, rank=1, world_size=2).epoch_order(0)
>>> len(a), len(b), set(a.tolist()) & set(b.tolist())
(5, 5, set())
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Plan"]

# Domain tags keep the permutation stream and the loaders' rng streams apart.
_ORDER_STREAM = 0
_LOADER_STREAM = 1


@dataclass(frozen=True)
class Plan:
    """Everything that decides which positions make up batch ``(epoch, step)``.

    *n_ids* is the number of ids before sharding; *size* the number in this shard.
    """

    n_ids: int
    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def size(self) -> int:
        """Ids in this rank's shard: every rank gets ``n_ids // world_size``."""
        return self.n_ids // self.world_size

    @functools.cached_property  # asked twice per batch; a Plan never changes
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions of this shard's ids, in epoch *epoch*'s order (int64)."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, _ORDER_STREAM, epoch])
            order = rng.permutation(self.n_ids)
        else:
            order = np.arange(self.n_ids)
        if self.world_size == 1:
            return order
        used = self.size * self.world_size
        return order[self.rank:used:self.world_size]

    def batch_positions(self, epoch: int, step: int, order: np.ndarray | None = None) -> np.ndarray:
        """Positions of batch *step* of epoch *epoch*; pass *order* to reuse a computed one."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step must be in [0, {self.steps_per_epoch}); received: {step}")
        if order is None:
            order = self.epoch_order(epoch)
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def next_cursor(self, epoch: int, step: int) -> tuple[int, int]:
        """The batch after ``(epoch, step)``: the next step, or the next epoch's first."""
        return (epoch, step + 1) if step + 1 < self.steps_per_epoch else (epoch + 1, 0)

    def loader_seed(self, epoch: int, step: int) -> list[int]:
        """Entropy for the ``rng`` handed to a loader for batch ``(epoch, step)``."""
        return [self.seed, _LOADER_STREAM, epoch, step, self.rank]
