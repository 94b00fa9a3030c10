"""The habits of Keras and PyTorch users: completion shows the API, ``len(gen)``, one epoch per loop.

The generator stays endless (``for batch in gen`` never ends, as in the R package and
ART); ``len(gen)`` is the steps of one epoch, and ``gen.one_epoch()`` is the loop that
ends with the epoch.
"""

from __future__ import annotations

import inspect
import rlcompleter
import types

import numpy as np
import pytest

import awkgen
from tests.conftest import identity

API = ("stats", "state_dict", "load_state_dict", "as_torch", "as_keras", "as_tf", "steps_per_epoch", "one_epoch",
       "epoch", "step", "seed", "n_workers", "backend", "closed", "size", "batch_size", "get_batch")


def _gen(**kwargs):
    return awkgen.DataGenerator(identity, list(range(10)), batch_size=2, shuffle=False, **kwargs)


def _completions(namespace, text):
    completer = rlcompleter.Completer(namespace)
    found, i = [], 0
    while (match := completer.complete(text, i)) is not None:
        found.append(match)
        i += 1
    return found


def test_dir_shows_the_api_and_the_generator_face():
    gen = _gen()
    listed = dir(gen)
    assert set(API) <= set(listed), set(API) - set(listed)
    assert {"send", "throw", "close", "gi_frame", "gi_running"} <= set(listed)
    assert gen.__class__ is types.GeneratorType  # the disguise Keras needs is kept
    assert inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED


def test_pythons_completer_offers_the_api():
    gen = _gen()
    assert _completions({"gen": gen}, "gen.st") == ["gen.state_dict()", "gen.stats()", "gen.step",
                                                    "gen.steps_per_epoch"]
    assert set(_completions({"gen": gen}, "gen.as_")) == {"gen.as_keras()", "gen.as_torch()", "gen.as_tf()"}


def test_jedi_and_ipython_complete_the_api():
    jedi = pytest.importorskip("jedi")
    gen = _gen()
    assert {c.name for c in jedi.Interpreter("gen.st", [{"gen": gen}]).complete()} >= {
        "stats", "state_dict", "steps_per_epoch"}
    completer = pytest.importorskip("IPython.core.completer")  # Jupyter's completer, jedi on
    ipython = completer.IPCompleter(namespace={"gen": gen}, global_namespace={},
                                    disable_matchers=["IPCompleter.magic_matcher"])  # no shell: no magics
    assert ipython.use_jedi
    with completer.provisionalcompleter():
        found = {c.text for c in ipython.completions("gen.as_", 7)}
    assert {"as_torch", "as_keras", "as_tf"} <= found, found


@pytest.mark.parametrize("kwargs, steps", [({}, 5), ({"drop_last": True}, 5)])
def test_len_is_steps_per_epoch(kwargs, steps):
    gen = awkgen.DataGenerator(identity, list(range(11)), batch_size=2, **kwargs)
    assert len(gen) == gen.steps_per_epoch == (6 if not kwargs else 5)
    gen.close()
    assert len(gen) == gen.steps_per_epoch  # a stopped generator still knows its epoch


def test_the_generator_stays_endless():
    gen = _gen()
    taken = [x for (x,), _ in zip(gen, range(12))]
    assert taken[5] == taken[0] == [0, 1] and len(taken) == 12


def test_one_epoch_is_one_whole_epoch_then_the_loop_ends():
    gen = awkgen.DataGenerator(identity, list(range(10)), np.arange(10) * 10, batch_size=4, seed=3)
    seen = [y.tolist() for x, y in gen.one_epoch()]
    assert len(seen) == len(gen) == 3
    assert sorted(sum(seen, [])) == list(range(0, 100, 10))
    assert (gen.epoch, gen.step) == (1, 0)
    again = gen.one_epoch()
    assert len(again) == 3
    next(again)
    assert len(again) == 2


def test_one_epoch_after_a_break_finishes_that_epoch():
    gen = _gen()
    for (x,) in gen.one_epoch():
        if x == [2, 3]:
            break
    assert [x for (x,) in gen.one_epoch()] == [[4, 5], [6, 7], [8, 9]]
    assert [x for (x,) in gen.one_epoch()] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_a_failed_batch_raises_from_next_and_the_pass_goes_on():
    def loader(ids):
        if 4 in ids:
            raise OSError("unreadable: 4")
        return ids

    gen = awkgen.DataGenerator(loader, list(range(10)), batch_size=2, shuffle=False)
    epoch = gen.one_epoch()
    got = []
    while True:
        try:
            got.append(next(epoch)[0])
        except awkgen.LoaderError as err:
            got.append(f"failed {err.ids}")
        except StopIteration:
            break
    assert got == [[0, 1], [2, 3], "failed [4, 5]", [6, 7], [8, 9]]


def test_one_epoch_on_a_stopped_generator_raises():
    gen = _gen()
    epoch = gen.one_epoch()
    gen.close()
    with pytest.raises(awkgen.GeneratorStoppedError):
        next(epoch)


def test_one_epoch_on_every_backend_is_the_same_epoch():
    with awkgen.DataGeneratorMultiProc(identity, list(range(10)), batch_size=3, n_workers=2, seed=5) as gen:
        pooled = [x for (x,) in gen.one_epoch()]
    blocking = [x for (x,) in awkgen.DataGenerator(identity, list(range(10)), batch_size=3, seed=5).one_epoch()]
    assert pooled == blocking and len(pooled) == 4
