"""The epoch order in constant memory (awkgen.sampling.permute and Plan above EXACT_MAX ids).

The bijection is checked exhaustively for sizes around powers of two and primes; the plan's
promises (every id once per epoch, shards disjoint and equal, a function of (seed, epoch)
only, whatever order batches are asked in) at sizes where the Feistel network orders; and
the quality of the shuffle against numpy's permutation, through statistics whose thresholds
a uniformly random permutation exceeds with probability below 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awkgen.sampling import CHUNK, EXACT_MAX, ROUNDS, Plan, order_keys, permute

PRIMES = [2, 3, 5, 7, 11, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 65521, 65537, 131071]


def _around_powers_of_two():
    return st.builds(lambda k, d: max(1, 2**k + d), st.integers(0, 17), st.integers(-2, 2))


sizes = st.one_of(_around_powers_of_two(), st.sampled_from(PRIMES), st.integers(1, 3000))


@settings(max_examples=300, deadline=None)
@given(n=sizes, seed=st.integers(0, 2**63 - 1), epoch=st.integers(0, 2**32))
def test_permute_maps_every_position_to_a_distinct_position(n, seed, epoch):
    image = permute(np.arange(n), n, order_keys(seed, epoch))
    assert image.dtype == np.int64
    assert np.array_equal(np.sort(image), np.arange(n))


@pytest.mark.parametrize("n", [2**20 - 1, 2**20, 2**20 + 1, 1_000_003])
def test_permute_is_a_bijection_at_a_million(n):
    image = permute(np.arange(n), n, order_keys(3, 1))
    assert np.array_equal(np.bincount(image, minlength=n), np.ones(n, dtype=np.int64))


@settings(max_examples=50, deadline=None)
@given(n=sizes, seed=st.integers(0, 2**63 - 1), data=st.data())
def test_each_position_is_computed_on_its_own(n, seed, data):
    """Any subset, in any order, repeated or not, maps as the whole does: what lets a plan compute per batch."""
    keys = order_keys(seed, 0)
    whole = permute(np.arange(n), n, keys)
    some = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=50)))
    assert np.array_equal(permute(some, n, keys), whole[some])


def test_the_order_is_pinned_the_same_on_every_numpy():
    """The Feistel order is plain uint64 arithmetic and SeedSequence: these values hold on numpy 1.23 and 2.x."""
    assert order_keys(0, 0).tolist()[:2] == [15793235383387715774, 12390638538380655177]
    assert ROUNDS == 8 and len(order_keys(0, 0)) == 2 * ROUNDS
    assert Plan(10**6, 8, True, seed=0).batch_positions(0, 0).tolist() == [
        123455, 13938, 70533, 943613, 593323, 809005, 480896, 443843]
    assert Plan(10**6, 8, True, seed=0).batch_positions(3, 12345).tolist() == [
        680041, 639870, 619358, 226457, 700985, 587482, 194387, 625994]
    assert Plan(10**9, 5, True, seed=2**63 - 1, rank=2, world_size=3).batch_positions(1, 10**7).tolist() == [
        67463004, 329910842, 308242739, 560687936, 3090584]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, EXACT_MAX), seed=st.integers(0, 2**63 - 1), epoch=st.integers(0, 100))
def test_up_to_exact_max_ids_the_order_is_numpys_permutation_as_before(n, seed, epoch):
    expected = np.random.default_rng([seed, 0, epoch]).permutation(n)
    assert np.array_equal(Plan(n, 1, True, seed=seed).epoch_order(epoch), expected)


# -- the plan above EXACT_MAX ids ---------------------------------------------------------------------

@st.composite
def big_plans(draw):
    n = draw(st.one_of(st.integers(EXACT_MAX + 1, EXACT_MAX + 3 * CHUNK), st.sampled_from([2**17, 2**17 + 1])))
    world_size = draw(st.integers(1, 4))
    batch_size = min(n // world_size, draw(st.sampled_from([1, 7, 1000, CHUNK + 3, n])))
    return Plan(n_ids=n, batch_size=batch_size,
                shuffle=True, seed=draw(st.integers(0, 2**63 - 1)), drop_last=draw(st.booleans()),
                rank=draw(st.integers(0, world_size - 1)), world_size=world_size)


@settings(max_examples=25, deadline=None)
@given(plan=big_plans(), epoch=st.integers(0, 10**6))
def test_shards_are_disjoint_equal_and_every_used_id_once(plan, epoch):
    shards = [Plan(**{**plan.__dict__, "rank": r}).epoch_order(epoch) for r in range(plan.world_size)]
    assert {len(s) for s in shards} == {plan.n_ids // plan.world_size}
    union = np.concatenate(shards)
    assert np.array_equal(np.bincount(union, minlength=plan.n_ids) > 1, np.zeros(plan.n_ids, dtype=bool))
    assert union.min() >= 0 and union.max() < plan.n_ids


@settings(max_examples=25, deadline=None)
@given(plan=big_plans(), epoch=st.integers(0, 10**6), data=st.data())
def test_batches_asked_in_any_order_are_the_epochs_slices(plan, epoch, data):
    """Chunks are computed and forgotten as batches are asked; the answer never depends on what was cached."""
    order = Plan(**plan.__dict__).epoch_order(epoch)
    steps = data.draw(st.lists(st.integers(0, plan.steps_per_epoch - 1), min_size=1, max_size=12))
    for step in steps:
        got = plan.batch_positions(epoch, step)
        assert np.array_equal(got, order[step * plan.batch_size:(step + 1) * plan.batch_size])
        if got.flags.writeable:  # a batch across two chunks: a fresh array
            got[:] = -1
        else:  # a view of a chunk the plan keeps: it cannot be scribbled on
            with pytest.raises(ValueError, match="read-only"):
                got[:] = -1
    seen = np.concatenate([plan.batch_positions(epoch, s) for s in range(plan.steps_per_epoch)])
    dropped = plan.size % plan.batch_size if plan.drop_last else 0
    assert len(seen) == len(np.unique(seen)) == plan.size - dropped


def test_a_plan_keeps_a_few_chunks_whatever_the_number_of_ids():
    plan = Plan(n_ids=10**9, batch_size=1000, shuffle=True, seed=0)
    for step in range(0, 10**6, 997):  # about a thousand chunks, one after another
        plan.batch_positions(0, step)
    cached = plan.__dict__["_chunks"]
    assert len(cached) <= 4 and sum(c.nbytes for c in cached.values()) <= 4 * 8 * CHUNK


def test_unshuffled_order_of_a_trillion_ids_is_the_original_order():
    plan = Plan(n_ids=10**12, batch_size=3, shuffle=False, seed=0, rank=1, world_size=2)
    assert plan.batch_positions(7, 0).tolist() == [1, 3, 5]
    last = plan.steps_per_epoch - 1
    assert plan.batch_positions(0, last).tolist() == [10**12 - 3, 10**12 - 1]  # 5 * 10**11 % 3 == 2


def test_epochs_and_seeds_give_unrelated_orders():
    n = 200_003
    a, b, c = (Plan(n, 1, True, seed=s).epoch_order(e) for s, e in ((1, 0), (1, 1), (2, 0)))
    for x, y in ((a, b), (a, c)):
        assert np.mean(x == y) < 0.001  # a random pair of permutations agrees at ~1 place
        assert abs(np.corrcoef(x, y)[0, 1]) * np.sqrt(n) < 5.5


# -- quality: no visible structure, as numpy's permutation ----------------------------------------------

def _statistics(p: np.ndarray) -> dict[str, float]:
    """Scaled statistics of a permutation *p* of range(n); each stays below its bound in QUALITY_BOUNDS
    with probability above 1 - 1e-6 for a uniformly random permutation (n large)."""
    n = len(p)
    i = np.arange(n)
    d = np.sort(np.abs(p - i) / n)  # displacement: P(|p(i) - i| / n <= x) = 1 - (1 - x)^2
    cdf = 1 - (1 - d) ** 2
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - i / n)) * np.sqrt(n)
    lags = [1, 2, 3, 4, 256, 1024, n // 2]
    serial = max(abs(np.corrcoef(p[:-k], p[k:])[0, 1]) for k in lags) * np.sqrt(n)
    trend = abs(np.corrcoef(i, p)[0, 1]) * np.sqrt(n)
    cells = p * 16 // n  # consecutive outputs: 16 x 16 cells, 255 degrees of freedom
    counts = np.bincount(cells[:-1] * 16 + cells[1:], minlength=256)
    expected = (n - 1) / 256
    pairs = float(((counts - expected) ** 2 / expected).sum())
    low = p & 3  # the low bits of consecutive outputs: 16 cells
    counts = np.bincount(low[:-1] * 4 + low[1:], minlength=16)
    expected = (n - 1) / 16
    low_bits = float(((counts - expected) ** 2 / expected).sum())
    return {"displacement_ks": ks, "serial_corr": serial, "trend": trend, "pairs_chi2": pairs,
            "low_bits_chi2": low_bits, "lagged_pairs_z": _lagged_pairs(p)}


def _lagged_pairs(p: np.ndarray) -> float:
    """The largest z-score of 14 chi-squares: places ``i`` and ``i + lag`` (lags 1, 2, 3 and the powers of
    two where a Feistel network splits its input), their 32 x 32 joint cells (1023 degrees of freedom)
    and their difference modulo n in 64 cells (63). Five rounds of the network fail it (z ~ 20)."""
    n = len(p)
    bits = (n - 1).bit_length()
    worst = 0.0
    for lag in (1, 2, 3, 2 ** (bits // 2), 2 ** (bits // 2 + 1), 2 ** (bits - bits // 2), 2 ** (bits - 2)):
        a, b = p[:-lag], p[lag:]
        for cells, k in (((a * 32 // n) * 32 + b * 32 // n, 1024), ((b - a) % n * 64 // n, 64)):
            counts = np.bincount(cells, minlength=k)
            expected = len(a) / k
            chi2 = ((counts - expected) ** 2 / expected).sum()
            worst = max(worst, (chi2 - (k - 1)) / np.sqrt(2 * (k - 1)))
    return float(worst)


#: Kolmogorov's distribution: P(K > 2.7) ~ 1e-6; a correlation times sqrt(n) is ~N(0, 1): 5.5 sigma over
#: seven lags; chi-square tails at 1e-6 for 255 and 15 degrees of freedom; the lagged pairs' largest z of 14
#: (a chi-square's z-score has a heavier right tail than a normal's: 6 is about 1e-6 at these sizes).
QUALITY_BOUNDS = {"displacement_ks": 2.7, "serial_corr": 5.5, "trend": 5.0, "pairs_chi2": 400.0,
                  "low_bits_chi2": 55.0, "lagged_pairs_z": 6.0}


@pytest.mark.parametrize("n", [EXACT_MAX + 1, 100_000, 2**17, 1_000_000])
@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_the_shuffle_shows_no_structure_numpys_permutation_would_not(n, seed):
    ours = _statistics(Plan(n, 1, True, seed=seed).epoch_order(0))
    numpys = _statistics(np.random.default_rng(seed).permutation(n))
    for name, bound in QUALITY_BOUNDS.items():
        assert numpys[name] < bound, (name, numpys)  # the bounds are right for a real shuffle
        assert ours[name] < bound, (name, ours)


def test_where_a_position_lands_is_uniform_over_seeds():
    """Position 0 and position 1, over 4000 seeds: their places fall evenly into 20 bins, independently."""
    n, seeds = 1_000_003, 4000
    places = np.array([permute(np.array([0, 1]), n, order_keys(s, 0)) for s in range(seeds)])
    bins = places * 20 // n
    for column in (bins[:, 0], bins[:, 1]):
        counts = np.bincount(column, minlength=20)
        assert ((counts - seeds / 20) ** 2 / (seeds / 20)).sum() < 60  # chi-square, 19 dof: P ~ 1e-6
    joint = np.bincount(bins[:, 0] // 4 * 5 + bins[:, 1] // 4, minlength=25)  # 5 x 5
    assert ((joint - seeds / 25) ** 2 / (seeds / 25)).sum() < 70  # 24 dof


@pytest.mark.parametrize("rounds", [4, 5])
def test_the_quality_checks_catch_a_network_with_too_few_rounds(rounds):
    """The statistics above can fail: four or five rounds of the same network show structure at lagged pairs
    (six pass; awkgen uses eight)."""
    n = 1_000_000
    keys = order_keys(0, 0)
    weak = _statistics(permute(np.arange(n), n, np.concatenate([keys[:rounds], keys[ROUNDS:ROUNDS + rounds]])))
    assert weak["lagged_pairs_z"] > QUALITY_BOUNDS["lagged_pairs_z"]
