"""Every bad argument of SPEC section 4 raises TypeError/ValueError naming it and the value given."""

from __future__ import annotations

import numpy as np
import pytest

from awkgen import DataGenerator, DataGeneratorMultiProc, DataGeneratorNonblock
from tests.conftest import identity

IDS = list(range(10))

BAD_COMMON = [
    # (kwargs, exception, pattern that must appear in the message)
    (dict(loader=3), TypeError, r"loader must be a callable.*received: 3"),
    (dict(sample_ids=[]), ValueError, r"sample_ids must not be empty; received: \[\]"),
    (dict(sample_ids=np.array([])), ValueError, r"sample_ids must not be empty"),
    (dict(sample_ids="abc"), TypeError, r"sample_ids must be a sequence of ids, not a single str; received: 'abc'"),
    (dict(sample_ids={1, 2}), TypeError, r"sample_ids must be an ordered sequence.*set"),
    (dict(sample_ids=5), TypeError, r"sample_ids must be a sequence of ids; received: 5"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1; received: 0"),
    (dict(batch_size=-2), ValueError, r"batch_size must be >= 1; received: -2"),
    (dict(batch_size=2.0), TypeError, r"batch_size must be an int; received: 2.0"),
    (dict(batch_size=True), TypeError, r"batch_size must be an int; received: True"),
    (dict(batch_size="4"), TypeError, r"batch_size must be an int; received: '4'"),
    (dict(batch_size=11), ValueError, r"batch_size must be at most the number of ids \(10\); received: batch_size=11"),
    (dict(sample_cls=[0, 1]), ValueError, r"sample_cls must have one row per id \(10\); received 2 rows"),
    (dict(sample_cls=1), TypeError, r"sample_cls must hold one label.*scalar"),
    (dict(shuffle="yes"), TypeError, r"shuffle must be True or False; received: 'yes'"),
    (dict(drop_last=1), TypeError, r"drop_last must be True or False; received: 1"),
    (dict(seed=-1), ValueError, r"seed must be >= 0; received: -1"),
    (dict(seed=1.5), TypeError, r"seed must be an int; received: 1.5"),
    (dict(world_size=0), ValueError, r"world_size must be >= 1; received: 0"),
    (dict(rank=-1), ValueError, r"rank must be >= 0; received: -1"),
    (dict(rank=2, world_size=2), ValueError, r"rank must be in \[0, world_size=2\); received: rank=2"),
    (dict(batch_size=4, world_size=3, seed=0), ValueError, r"each shard holds 3 ids .* received batch_size=4"),
    (dict(world_size=2), ValueError, r"seed must be given, the same on every rank, when world_size > 1"),
]

BAD_POOL = [
    (dict(n_workers=0), ValueError, r"n_workers must be >= 1; received: 0"),
    (dict(n_workers=2.5), TypeError, r"n_workers must be an int; received: 2.5"),
    (dict(prefetch=0), ValueError, r"prefetch must be >= 1; received: 0"),
    (dict(prefetch=True), TypeError, r"prefetch must be an int; received: True"),
    (dict(timeout=0), ValueError, r"timeout must be a positive number of seconds; received: 0"),
    (dict(timeout=-1.0), ValueError, r"timeout must be a positive number of seconds; received: -1.0"),
    (dict(timeout="1s"), TypeError, r"timeout must be None or a number of seconds; received: '1s'"),
    (dict(backend="dask"), ValueError, r"backend must be one of \('process', 'thread', 'ray'\); received: 'dask'"),
    (dict(backend="thread", address="x"), TypeError, r"backend='thread' takes no extra options"),
    (dict(backend="ray", adress="x"), TypeError, r"backend='ray' takes the options .*received: \['adress'\]"),
]


def _call(factory, kwargs):
    args = dict(loader=identity, sample_ids=IDS, batch_size=2)
    args.update(kwargs)
    return factory(**args)


@pytest.mark.parametrize("kwargs, exc, pattern", BAD_COMMON, ids=[str(k) for k, _, _ in BAD_COMMON])
@pytest.mark.parametrize("factory", [DataGenerator, DataGeneratorMultiProc])
def test_bad_argument_is_named_with_its_value(factory, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _call(factory, kwargs)


@pytest.mark.parametrize("kwargs, exc, pattern", BAD_POOL, ids=[str(k) for k, _, _ in BAD_POOL])
def test_bad_pool_argument_is_named_with_its_value(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _call(DataGeneratorMultiProc, kwargs)


def test_nonblock_refuses_n_workers():
    with pytest.raises(TypeError, match="DataGeneratorNonblock always uses one worker"):
        DataGeneratorNonblock(identity, IDS, n_workers=3)


def test_a_loader_that_cannot_be_pickled_is_refused_at_construction_for_processes():
    stream = (i for i in range(3))  # a live Python generator: not even dill pickles it
    with pytest.raises(TypeError, match="loader must be picklable.*backend='thread'"):
        DataGeneratorMultiProc(lambda ids: (stream, ids), IDS, batch_size=2, n_workers=1)


def test_unshuffled_shards_need_no_seed():
    gen = DataGenerator(identity, IDS, batch_size=2, shuffle=False, rank=1, world_size=2)
    assert gen()[0] == [1, 3]


def test_valid_edge_values_are_accepted():
    gen = DataGenerator(identity, np.arange(10), batch_size=np.int64(10), seed=np.uint32(3))
    assert gen.steps_per_epoch == 1
    gen = DataGenerator(identity, (i for i in range(4)), batch_size=2, shuffle=np.bool_(False))
    assert gen()[0] == [0, 1]
