"""Properties of the pure batch planner (awkgen.sampling)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from awkgen.sampling import Plan


@st.composite
def plans(draw, world=False):
    n = draw(st.integers(1, 300))
    world_size = draw(st.integers(1, min(n, 5))) if world else 1
    shard = n // world_size
    return Plan(n_ids=n, batch_size=draw(st.integers(1, shard)), shuffle=draw(st.booleans()),
                seed=draw(st.integers(0, 2**63 - 1)), drop_last=draw(st.booleans()),
                rank=draw(st.integers(0, world_size - 1)), world_size=world_size)


def epoch_batches(plan: Plan, epoch: int) -> list[np.ndarray]:
    return [plan.batch_positions(epoch, s) for s in range(plan.steps_per_epoch)]


@given(plans(), st.integers(0, 1000))
def test_every_id_once_per_epoch_minus_what_drop_last_drops(plan, epoch):
    seen = np.concatenate(epoch_batches(plan, epoch))
    assert len(set(seen.tolist())) == len(seen)
    dropped = plan.size % plan.batch_size if plan.drop_last else 0
    assert len(seen) == plan.size - dropped
    assert all(len(b) == plan.batch_size for b in epoch_batches(plan, epoch)[:-1])


@given(plans(world=True), st.integers(0, 50))
def test_shards_are_disjoint_equal_and_cover_the_used_ids(plan, epoch):
    shards = [Plan(**{**plan.__dict__, "rank": r}).epoch_order(epoch) for r in range(plan.world_size)]
    assert {len(s) for s in shards} == {plan.n_ids // plan.world_size}
    union = np.concatenate(shards)
    assert len(set(union.tolist())) == len(union)


@given(plans(world=True), st.integers(0, 50))
def test_sequence_depends_only_on_seed_and_epoch(plan, epoch):
    again = Plan(**plan.__dict__)
    assert all(np.array_equal(a, b) for a, b in zip(epoch_batches(plan, epoch), epoch_batches(again, epoch)))


@settings(max_examples=50)
@given(st.integers(10, 200), st.integers(0, 2**32))
def test_epochs_are_shuffled_differently(n, seed):
    plan = Plan(n_ids=n, batch_size=1, shuffle=True, seed=seed)
    assert not np.array_equal(plan.epoch_order(0), plan.epoch_order(1))
    assert sorted(plan.epoch_order(1).tolist()) == list(range(n))


@given(plans(), st.integers(0, 3), st.integers(0, 30))
def test_next_cursor_walks_every_step_then_the_next_epoch(plan, epoch, walk):
    cursor = (epoch, 0)
    for _ in range(walk):
        cursor = plan.next_cursor(*cursor)
    assert cursor == (epoch + walk // plan.steps_per_epoch, walk % plan.steps_per_epoch)


def test_unshuffled_order_is_the_original_order():
    plan = Plan(n_ids=7, batch_size=3, shuffle=False, seed=123)
    assert [b.tolist() for b in epoch_batches(plan, 5)] == [[0, 1, 2], [3, 4, 5], [6]]
