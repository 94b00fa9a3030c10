"""The blocking DataGenerator: the R package's behaviour, case by case, and SPEC sections 2-5."""

from __future__ import annotations

import collections.abc
import copy
import inspect
import json
import pathlib
import pickle
import pydoc
import threading
import time
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import awkgen
from awkgen import CleanupGenerator, DataGenerator, DataGeneratorMultiProc, GeneratorStoppedError, LoaderError
from tests.conftest import identity


def take(gen, n):
    return [gen()[0] for _ in range(n)]


# -- the R package's behaviour -----------------------------------------------------------

def test_r_order_ids_1_to_7_batch_3_wraps_to_the_next_epoch():
    gen = DataGenerator(identity, [1, 2, 3, 4, 5, 6, 7], batch_size=3, shuffle=False)
    assert take(gen, 5) == [[1, 2, 3], [4, 5, 6], [7], [1, 2, 3], [4, 5, 6]]


def test_batch_size_equal_to_the_number_of_ids_works_where_r_crashed():
    gen = DataGenerator(identity, ["a", "b", "c"], batch_size=3, shuffle=False)
    assert take(gen, 3) == [["a", "b", "c"]] * 3
    assert gen.steps_per_epoch == 1


def test_batch_size_one():
    gen = DataGenerator(identity, [10, 20], batch_size=1, shuffle=False)
    assert take(gen, 4) == [[10], [20], [10], [20]]


def test_a_call_returns_x_alone_without_classes_and_x_y_with_them():
    assert len(DataGenerator(identity, [1, 2], batch_size=1)()) == 1
    x, y = DataGenerator(identity, [1, 2], sample_cls=[0, 1], batch_size=2, shuffle=False)()
    assert x == [1, 2] and y.tolist() == [0, 1]


def test_stop_true_stops_and_later_calls_raise():
    gen = DataGenerator(identity, [1, 2, 3], batch_size=1)
    gen()
    assert gen(stop=True) is None
    assert gen(stop=True) is None  # idempotent
    with pytest.raises(GeneratorStoppedError, match="stopped"):
        gen()
    with pytest.raises(GeneratorStoppedError):
        next(gen)


# -- what a call returns ---------------------------------------------------------------------

def test_drop_last_skips_the_short_batch():
    gen = DataGenerator(identity, list(range(7)), batch_size=3, shuffle=False, drop_last=True)
    assert gen.steps_per_epoch == 2
    assert take(gen, 3) == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]


def test_labels_rows_follow_the_samples_for_one_hot_and_multilabel_matrices():
    ids = np.arange(20)
    onehot = np.eye(4)[ids % 4]
    multilabel = np.stack([ids % 2, ids % 3 == 0, ids > 10], axis=1).astype(np.int8)
    for labels in (ids % 4, onehot, multilabel):
        gen = DataGenerator(identity, ids, sample_cls=labels, batch_size=6, seed=3)
        for _ in range(7):
            x, y = gen()
            np.testing.assert_array_equal(y, labels[x])


def test_ids_reach_the_loader_as_an_array_when_given_as_one_else_as_a_list_of_the_originals():
    seen = []
    DataGenerator(lambda ids: seen.append(ids), np.array(["a", "b", "c"]), batch_size=2)()
    paths = [pathlib.Path("/x/1.npy"), pathlib.Path("/x/2.npy")]
    DataGenerator(lambda ids: seen.append(ids), paths, batch_size=2)()
    DataGenerator(lambda ids: seen.append(ids), range(5), batch_size=2)()
    assert isinstance(seen[0], np.ndarray) and seen[0].dtype.kind == "U"
    assert isinstance(seen[1], list) and set(seen[1]) == set(paths)
    assert isinstance(seen[2], list) and all(type(i) is int for i in seen[2])


def test_the_loader_value_is_returned_untouched():
    marker = object()
    gen = DataGenerator(lambda ids: {"img": marker, "n": len(ids)}, [1, 2, 3], batch_size=2)
    (x,) = gen()
    assert x["img"] is marker and x["n"] == 2


def test_a_loader_with_rng_gets_a_generator_seeded_from_seed_epoch_step():
    def loader(ids, rng):
        return rng.integers(0, 2**32, 4)

    a = DataGenerator(loader, list(range(10)), batch_size=3, seed=7)
    b = DataGenerator(loader, list(range(10)), batch_size=3, seed=7)
    c = DataGenerator(loader, list(range(10)), batch_size=3, seed=8)
    first_a, first_b, first_c = ([g()[0] for _ in range(9)] for g in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(first_a, first_b))
    assert not np.array_equal(first_a[0], first_c[0])
    assert len({tuple(v) for v in first_a}) == 9  # every (epoch, step) draws differently


def test_iteration_and_next_and_get_batch_give_the_same_stream():
    def make():
        return DataGenerator(identity, list(range(10)), batch_size=4, seed=11)

    g1, g2, g3 = make(), make(), make()
    it = iter(g1)
    assert it is g1
    via_iter = [next(it)[0] for _ in range(6)]
    assert via_iter == [next(g2)[0] for _ in range(6)] == [g3.get_batch()[0] for _ in range(6)]


def test_seed_none_draws_one_seed_reported_by_gen_seed():
    gen = DataGenerator(identity, list(range(50)), batch_size=5)
    assert isinstance(gen.seed, int) and gen.seed >= 0
    twin = DataGenerator(identity, list(range(50)), batch_size=5, seed=gen.seed)
    assert take(gen, 12) == take(twin, 12)


def test_properties_and_art_interface():
    gen = DataGenerator(identity, list(range(10)), batch_size=4, seed=1)
    assert (gen.size, gen.batch_size, gen.steps_per_epoch, gen.epoch, gen.step) == (10, 4, 3, 0, 0)
    assert gen.iterator is gen
    for _ in range(3):
        gen()
    assert (gen.epoch, gen.step) == (1, 0)


def test_keras_sees_a_real_generator_but_type_is_awkgens():
    gen = DataGenerator(identity, [1, 2], batch_size=1)
    assert isinstance(gen, types.GeneratorType)
    assert isinstance(gen, awkgen.BatchGenerator) and type(gen) is awkgen.BatchGenerator


def test_the_disguise_is_whole_for_tools_that_trust_it():
    gen = DataGenerator(identity, list(range(6)), batch_size=2, shuffle=False)
    assert inspect.isgenerator(gen) and isinstance(gen, collections.abc.Generator)
    assert not inspect.isawaitable(gen)
    assert inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED  # workers load from the start
    assert inspect.getgeneratorlocals(gen) == {}
    assert gen.gi_yieldfrom is None and isinstance(gen.gi_code, types.CodeType)
    assert gen.send(None) == ([0, 1],)  # send(None) is next(gen)
    with pytest.raises(TypeError, match="takes no values"):
        gen.send("x")
    assert next(gen) == ([2, 3],)
    gen.close()
    assert inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED and gen.gi_frame is None


def test_gi_running_while_a_call_is_delivering_a_batch():
    release = threading.Event()
    gen = DataGenerator(lambda ids: release.wait(10) and ids, [1, 2], batch_size=1, shuffle=False)
    caller = threading.Thread(target=gen)
    caller.start()
    try:
        deadline = time.monotonic() + 5
        while inspect.getgeneratorstate(gen) != inspect.GEN_RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert inspect.getgeneratorstate(gen) == inspect.GEN_RUNNING and gen.gi_running
    finally:
        release.set()
        caller.join()
    assert inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED and not gen.gi_running


def test_copy_and_pickle_refuse_with_what_to_do_instead():
    gen = DataGenerator(identity, [1, 2], batch_size=1)
    for tool in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match=r"cannot be copied.*load_state_dict"):
            tool(gen)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(gen)
    assert not gen.closed and gen()[0] in ([1], [2])  # still usable


def test_throw_stops_the_generator_and_raises_as_in_a_generator():
    gen = DataGenerator(identity, [1, 2], batch_size=1)
    with pytest.raises(ValueError, match="boom"):
        gen.throw(ValueError("boom"))
    assert gen.closed and inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED
    with pytest.raises(KeyError):
        DataGenerator(identity, [1, 2], batch_size=1).throw(KeyError)


def test_isinstance_with_a_factory_says_to_use_batchgenerator():
    from awkgen import frameworks

    gen = DataGenerator(identity, [1, 2], batch_size=1)
    for factory in (awkgen.DataGenerator, awkgen.DataGeneratorNonblock, awkgen.DataGeneratorMultiProc):
        with pytest.raises(TypeError, match=r"is a factory function.*isinstance\(\.\.\., awkgen\.BatchGenerator\)"):
            isinstance(gen, factory)
        with pytest.raises(TypeError, match=r"issubclass\(\) cannot take awkgen\."):
            issubclass(awkgen.BatchGenerator, factory)
    assert isinstance(gen, awkgen.BatchGenerator) and isinstance(gen, frameworks.DataGenerator)


def test_factories_keep_their_signature_docs_and_pickle_by_name():
    for factory in (awkgen.DataGenerator, awkgen.DataGeneratorNonblock, awkgen.DataGeneratorMultiProc):
        assert pickle.loads(pickle.dumps(factory)) is factory
        assert inspect.isroutine(factory) and factory.__name__ in repr(factory)
    assert list(inspect.signature(awkgen.DataGenerator).parameters)[:4] == ["loader", "sample_ids", "sample_cls",
                                                                            "batch_size"]
    assert awkgen.DataGenerator.__doc__.startswith("A blocking generator")
    assert "A blocking generator" in pydoc.render_doc(awkgen.DataGenerator, renderer=pydoc.plaintext)


def test_a_generator_refuses_to_be_pickled_with_advice():
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(DataGenerator(identity, [1, 2], batch_size=1))


# -- shards ----------------------------------------------------------------------------------------

def test_ranks_get_disjoint_equal_shards_of_one_permutation_each_epoch():
    ids = list(range(103))
    gens = [DataGenerator(identity, ids, batch_size=5, seed=9, rank=r, world_size=4) for r in range(4)]
    assert {g.size for g in gens} == {25} and {g.steps_per_epoch for g in gens} == {5}
    for _ in range(2):  # two epochs
        epoch = [sorted(sum(take(g, 5), [])) for g in gens]
        flat = sum(epoch, [])
        assert len(flat) == len(set(flat)) == 100


# -- state ---------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), data=st.data())
def test_state_round_trips_at_any_step_through_json(n, data):
    batch_size = data.draw(st.integers(1, n))
    drop_last = data.draw(st.booleans())
    before = data.draw(st.integers(0, 3 * n))
    ids = list(range(n))
    gen = DataGenerator(identity, ids, batch_size=batch_size, seed=5, drop_last=drop_last)
    take(gen, before)
    state = json.loads(json.dumps(gen.state_dict()))
    expected = take(gen, 5)
    other = DataGenerator(identity, ids, batch_size=batch_size, seed=99, drop_last=drop_last)
    other.load_state_dict(state)
    assert other.seed == 5
    assert take(other, 5) == expected


def test_several_resumes_in_a_row_and_at_epoch_boundaries():
    ids = list(range(9))
    reference = DataGenerator(identity, ids, batch_size=3, seed=4)
    expected = take(reference, 12)
    got = []
    gen = DataGenerator(identity, ids, batch_size=3, seed=4)
    for _ in range(4):  # each leg stops exactly at an epoch boundary
        got += take(gen, 3)
        state = gen.state_dict()
        assert state["step"] == 0
        gen = DataGenerator(identity, ids, batch_size=3)
        gen.load_state_dict(state)
    assert got == expected


def test_load_state_dict_rejects_a_state_from_other_ids_naming_the_key():
    state = DataGenerator(identity, list(range(10)), batch_size=2).state_dict()
    with pytest.raises(ValueError, match="n_ids"):
        DataGenerator(identity, list(range(11)), batch_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        DataGenerator(identity, list(range(10)), batch_size=5).load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        DataGenerator(identity, list(range(10)), batch_size=2).load_state_dict({"epoch": 1})


# -- errors ------------------------------------------------------------------------------------------

def test_a_loader_exception_becomes_loader_error_naming_ids_and_the_next_call_goes_on():
    def loader(ids):
        if 3 in ids:
            raise KeyError("no such file: 3.png")
        return ids

    gen = DataGenerator(loader, list(range(6)), batch_size=2, shuffle=False)
    assert gen()[0] == [0, 1]
    with pytest.raises(LoaderError, match=r"KeyError.*ids \[2, 3\]") as info:
        gen()
    assert type(info.value.__cause__) is KeyError
    assert info.value.__cause__.args == ("no such file: 3.png",)
    assert isinstance(info.value, RuntimeError)
    assert gen()[0] == [4, 5]


def test_long_id_lists_are_shortened_in_messages():
    def loader(ids):
        raise ValueError("bad")

    with pytest.raises(LoaderError, match=r"\.\.\. \(992 more\)"):
        DataGenerator(loader, list(range(1000)), batch_size=1000)()


# -- lifecycle -------------------------------------------------------------------------------------

def test_close_cleanup_generator_and_with_are_idempotent():
    gen = DataGenerator(identity, [1, 2], batch_size=1)
    with gen as same:
        assert same is gen
        gen()
    assert gen.closed
    gen.close()
    CleanupGenerator(gen)
    gen(stop=True)
    with pytest.raises(GeneratorStoppedError):
        gen.get_batch()


def test_cleanup_generator_rejects_other_objects():
    with pytest.raises(TypeError, match="gen must be a generator made by an awkgen factory"):
        CleanupGenerator(iter([1, 2]))


def test_stats_count_batches_and_give_a_verdict():
    gen = DataGenerator(identity, list(range(10)), batch_size=2)
    assert gen.stats().verdict == "no batches delivered yet"
    take(gen, 7)
    stats = gen.stats()
    assert stats.batches == 7 and stats.n_workers == 1
    assert stats.verdict.startswith(("input-bound", "compute-bound"))
    assert "7 batches" in str(stats)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_state_dict_after_a_stop_names_the_next_batch_not_the_prefetched_ones(backend):
    with DataGeneratorMultiProc(identity, list(range(40)), batch_size=2, n_workers=2, prefetch=8, backend=backend,
                                shuffle=False) as gen:
        gen(), gen()
    state = gen.state_dict()  # a checkpoint saved after the loop stopped the generator
    assert (state["epoch"], state["step"]) == (0, 2)
    resumed = DataGenerator(identity, list(range(40)), batch_size=2, shuffle=False)
    resumed.load_state_dict(state)
    assert resumed()[0] == [4, 5]
