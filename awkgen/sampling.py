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

**The order in constant memory.** Epoch *e*'s order is a bijection of the positions
``range(n_ids)`` that depends only on ``(seed, e)``; the plan never holds it whole:

- Up to :data:`EXACT_MAX` ids (65,536) it is numpy's permutation (an exact
  Fisher-Yates shuffle) from ``numpy.random.default_rng([seed, 0, e])``, computed once
  per epoch: 512 KiB at most, and the same order awkgen gave before it had a second way.
- Above, it is :func:`permute`: a keyed Feistel network on ``ceil(log2(n_ids))`` bits
  (:data:`ROUNDS` rounds of multiply-add-shift hashing, its keys drawn from
  ``numpy.random.SeedSequence([seed, 0, e])``), with cycle-walking back into
  ``range(n_ids)``. Any position's place is computed on its own, so the plan computes
  the order :data:`CHUNK` positions at a time, when a batch needs them, and keeps the
  last few chunks: memory is the same for a thousand ids and for a billion, and the
  cost of a batch's positions is proportional to the batch.

Tiny domains are where a Feistel network is weakest (over 40,000 seeds, on 8 positions, it
gives 16,317 of the 40,320 orders, some of them 25 times; numpy's permutation gives 25,347,
none more than 7 times); that is why small data sets keep numpy's exact shuffle.

>>> plan = Plan(n_ids=10**9, batch_size=4, shuffle=True, seed=1)
>>> positions = plan.batch_positions(0, 0)
>>> len(positions), bool(((0 <= positions) & (positions < 10**9)).all())
(4, True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Plan", "permute", "order_keys", "EXACT_MAX", "CHUNK", "ROUNDS"]

# Domain tags keep the permutation stream and the loaders' rng streams apart.
_ORDER_STREAM = 0
_LOADER_STREAM = 1

#: Positions of an epoch's order computed at once, and the most ids ordered by numpy's exact shuffle.
CHUNK = 1 << 16
EXACT_MAX = CHUNK
#: Feistel rounds (each a keyed hash of one part, xor-ed into the other part).
ROUNDS = 8
_ONE = np.uint64(1)
_CACHED_CHUNKS = 4  # the chunks a plan keeps: batches across a chunk or an epoch boundary reuse them

def order_keys(seed: int, epoch: int) -> np.ndarray:
    """The round keys (uint64) of epoch *epoch*'s order under *seed*: :data:`ROUNDS` multipliers
    (made odd where used), then :data:`ROUNDS` addends.

    >>> keys = order_keys(7, 0)
    >>> keys.dtype.name, len(keys), bool((keys == order_keys(7, 0)).all()), bool((keys == order_keys(7, 1)).any())
    ('uint64', 16, True, False)
    """
    return np.random.SeedSequence([seed, _ORDER_STREAM, epoch]).generate_state(2 * ROUNDS, dtype=np.uint64)


def _feistel(y: np.ndarray, bits: int, keys: np.ndarray) -> np.ndarray:
    """One pass of the network over *y* (uint64 values below ``2**bits``; *y* is overwritten).

    The value is split into a high and a low part; a round replaces ``(hi, lo)`` by
    ``(lo, hi ^ F(lo))``, which any ``F`` makes a bijection. With an odd number of bits the
    parts differ by one bit and swap widths every round (an unbalanced network), so the
    domain is ``2**bits`` with ``2**bits < 2 * n``: cycle-walking then takes under two
    passes per position on average.

    ``F(lo)`` is the top bits of ``a * lo + b`` modulo ``2**64`` (multiply-add-shift, a
    universal hash family), with the round's own odd ``a`` and its ``b``: three vectorised
    operations, which keeps the order's cost per position about that of numpy's
    permutation. The hash is nearly linear, so rounds matter: at 10^6 positions five
    rounds still show structure in ``tests/test_sampling_order.py``'s lagged-pair
    statistics, six do not; :data:`ROUNDS` is eight, for a margin.
    """
    low = bits // 2
    rounds = len(keys) // 2
    for a, b in zip(keys[:rounds] | _ONE, keys[rounds:]):
        high = bits - low  # the width of hi, which becomes the width of the new low part
        lo = y & np.uint64((1 << low) - 1)
        y >>= np.uint64(low)  # hi
        if high:  # a part is 0 bits wide only when bits == 1: that round is the identity
            f = lo * a
            f += b
            f >>= np.uint64(64 - high)
            y ^= f  # hi ^ F(lo): the new low part
        lo <<= np.uint64(high)
        y |= lo  # lo: the new high part
        low = high
    return y


def permute(positions: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """The images of *positions* (ints in ``[0, n)``) under the bijection of ``range(n)`` keyed by *keys*.

    A Feistel network on the smallest power of two ``>= n``, with cycle-walking: a
    value that lands outside ``range(n)`` goes through the network again until it lands
    inside, which keeps the map a bijection of ``range(n)`` (it follows the network's
    cycle to the next member of the range). Each position is computed on its own, in
    vectorised uint64 arithmetic: memory and time are proportional to ``len(positions)``.

    Args:
        positions: Integer array of distinct or repeated positions in ``[0, n)``.
        n: The domain's size, ``1 <= n < 2**63``.
        keys: The round keys (:func:`order_keys`): a round per multiplier-addend pair.

    Returns:
        An int64 array of the same length: each position's image.

    >>> keys = order_keys(0, 0)
    >>> image = permute(np.arange(10), 10, keys)
    >>> sorted(image.tolist()) == list(range(10)), image.tolist() == permute(np.arange(10), 10, keys).tolist()
    (True, True)
    """
    x = np.array(positions, dtype=np.int64)  # a copy: the identity of range(1) returns it
    if n <= 1:
        return x
    bits = (n - 1).bit_length()
    limit = np.uint64(n)
    out = _feistel(x.astype(np.uint64), bits, keys)
    walk = np.flatnonzero(out >= limit)
    while walk.size:
        again = _feistel(out[walk], bits, keys)  # out[walk] is a copy: overwriting it is fine
        out[walk] = again
        walk = walk[again >= limit]
    return out.view(np.int64)


@dataclass(frozen=True)
class Plan:
    """Everything that decides which positions make up batch ``(epoch, step)``.

    *n_ids* is the number of ids before sharding; *size* the number in this shard.
    Rank *r* of *w* takes places ``r, r + w, r + 2w, ...`` of the epoch's order.

    A plan keeps the last few chunks of order it computed; it is meant to be used from
    one thread at a time (a generator plans under its lock).
    """

    n_ids: int
    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool = False
    rank: int = 0
    world_size: int = 1

    @functools.cached_property  # asked for every batch; a Plan never changes
    def size(self) -> int:
        """Ids in this rank's shard: every rank gets ``n_ids // world_size``."""
        return self.n_ids // self.world_size

    @functools.cached_property  # asked twice per batch; a Plan never changes
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    @functools.cached_property
    def _chunks(self) -> dict[tuple[int, int], np.ndarray]:
        return {}

    def positions(self, epoch: int, start: int, stop: int) -> np.ndarray:
        """Places ``[start, stop)`` of this shard's order in epoch *epoch*: positions in the ids (int64).

        Computes only the chunks of order those places fall in (see the module docstring).
        A shuffled batch within one chunk is a read-only view of it.
        """
        if not 0 <= start <= stop <= self.size:
            raise IndexError(f"places must satisfy 0 <= start <= stop <= size={self.size}; "
                             f"received: start={start}, stop={stop}")
        if not self.shuffle or start == stop:
            return self.rank + np.arange(start, stop, dtype=np.int64) * self.world_size
        first, last = start // CHUNK, (stop - 1) // CHUNK
        if first == last:
            return self._chunk(epoch, first)[start - first * CHUNK:stop - first * CHUNK]
        return np.concatenate([self._chunk(epoch, c)[max(start - c * CHUNK, 0):stop - c * CHUNK]
                               for c in range(first, last + 1)])

    def _chunk(self, epoch: int, index: int) -> np.ndarray:
        """Places ``[index * CHUNK, (index + 1) * CHUNK)`` of the shard's order, read-only, cached."""
        cache = self._chunks
        chunk = cache.get((epoch, index))
        if chunk is None:
            lo = index * CHUNK
            places = self.rank + np.arange(lo, min(lo + CHUNK, self.size), dtype=np.int64) * self.world_size
            if self.n_ids <= EXACT_MAX:  # one chunk holds the whole shard
                rng = np.random.default_rng([self.seed, _ORDER_STREAM, epoch])
                chunk = rng.permutation(self.n_ids)[places]
            else:
                chunk = permute(places, self.n_ids, order_keys(self.seed, epoch))
            chunk.flags.writeable = False  # batches are views of it
            while len(cache) >= _CACHED_CHUNKS:
                del cache[next(iter(cache))]
            cache[(epoch, index)] = chunk
        return chunk

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions of this shard's ids, in epoch *epoch*'s order (int64).

        The whole shard at once, ``8 * size`` bytes: for small data and tests; batches
        use :meth:`batch_positions`, which computes only what a batch needs.
        """
        return self.positions(epoch, 0, self.size)

    def batch_positions(self, epoch: int, step: int) -> np.ndarray:
        """Positions of batch *step* of epoch *epoch* (int64; when shuffled, usually a read-only view)."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step must be in [0, {self.steps_per_epoch}); received: {step}")
        start = step * self.batch_size
        if self.shuffle:  # the usual case inlined (it runs for every batch): a whole batch in one cached chunk
            index, offset = divmod(start, CHUNK)
            chunk = self._chunks.get((epoch, index))
            if chunk is not None and offset + self.batch_size <= len(chunk):
                return chunk[offset:offset + self.batch_size]
        return self.positions(epoch, start, min(start + self.batch_size, self.size))

    def next_cursor(self, epoch: int, step: int) -> tuple[int, int]:
        """The batch after ``(epoch, step)``: the next step, or the next epoch's first."""
        return (epoch, step + 1) if step + 1 < self.steps_per_epoch else (epoch + 1, 0)

    def loader_seed(self, epoch: int, step: int) -> list[int]:
        """Entropy for the ``rng`` handed to a loader for batch ``(epoch, step)``."""
        return [self.seed, _LOADER_STREAM, epoch, step, self.rank]
