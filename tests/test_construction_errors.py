"""Mistakes found when the generator is built, with messages that say what to do.

A loader that cannot take one positional argument is refused at construction (where its
signature can be read), not at its first call in a worker; a misspelt or borrowed
keyword (``num_workers``, torch's name) gets "did you mean"; ids in messages print as
plain values under numpy 2.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import awkgen
from awkgen.errors import short_ids
from tests.conftest import identity

IDS = list(range(10))


def two_args(ids, extra):
    return ids


class CallableLoader:
    def __call__(self, ids):
        return ids


@pytest.mark.parametrize("loader, shown", [
    (lambda: 1, r"<lambda>\(\).*too many positional arguments"),
    (two_args, r"two_args\(ids, extra\).*missing a required argument: 'extra'"),
    (lambda ids, *, rng, scale: ids, r"awkgen calls loader\(ids, rng=rng\).*missing a required argument: 'scale'"),
    (lambda *, ids: ids, r"too many positional arguments"),
])
@pytest.mark.parametrize("factory", [awkgen.DataGenerator, awkgen.DataGeneratorMultiProc])
def test_a_loader_that_cannot_take_the_ids_is_refused_at_construction(factory, loader, shown):
    with pytest.raises(TypeError, match=r"loader must take a batch of ids as one positional argument") as info:
        factory(loader, IDS, batch_size=2)
    assert re.search(shown, str(info.value)), str(info.value)


@pytest.mark.parametrize("loader", [
    identity, CallableLoader(), functools.partial(two_args, extra=1), lambda ids, rng: ids,
    lambda ids, *more, **options: ids, lambda ids, scale=2: ids, np.asarray, len,
])
def test_loaders_that_take_one_argument_are_accepted(loader):
    gen = awkgen.DataGenerator(loader, IDS, batch_size=2, shuffle=False)
    gen()
    gen.close()


@pytest.mark.parametrize("factory, keyword, expected", [
    (awkgen.DataGeneratorMultiProc, "num_workers", r"'num_workers': did you mean n_workers\?"),
    (awkgen.DataGeneratorMultiProc, "prefetch_factor", r"did you mean prefetch\?"),
    (awkgen.DataGeneratorMultiProc, "shufle", r"did you mean shuffle\?"),
    (awkgen.DataGeneratorNonblock, "timout", r"did you mean timeout\?"),
    (awkgen.DataGenerator, "shufle", r"DataGenerator\(\) got an unexpected keyword argument 'shufle'; did you mean "
                                     r"shuffle\?"),
    (awkgen.DataGenerator, "num_workers", r"without workers: did you mean DataGeneratorMultiProc\(\.\.\., "
                                          r"n_workers=\.\.\.\)\?"),
    (awkgen.DataGenerator, "labels", r"did you mean sample_cls\?"),
    (awkgen.DataGenerator, "frobnicate", r"unexpected keyword argument 'frobnicate'; it takes loader, sample_ids"),
])
def test_an_unknown_keyword_gets_a_suggestion(factory, keyword, expected):
    with pytest.raises(TypeError, match=expected):
        factory(identity, IDS, batch_size=2, **{keyword: 2})


def test_a_typo_in_a_ray_option_is_caught_before_ray_is_imported():
    with pytest.raises(TypeError, match=r"'adress': did you mean address\?.*received: \['adress'\]"):
        awkgen.DataGeneratorMultiProc(identity, IDS, batch_size=2, backend="ray", adress="auto")


def test_ids_print_as_plain_values_under_numpy_2():
    assert short_ids(np.array([8, 9])) == "[8, 9]"
    assert short_ids([np.int64(8), np.float32(0.5), np.str_("a.png")]) == "[8, 0.5, 'a.png']"

    def loader(ids):
        raise OSError("cannot read")

    gen = awkgen.DataGenerator(loader, np.arange(100, 110), batch_size=3, shuffle=False)
    with pytest.raises(awkgen.LoaderError, match=r"ids \[100, 101, 102\]\)$") as info:
        gen()
    assert "np." not in str(info.value)
    assert isinstance(info.value.ids, np.ndarray)  # the attribute keeps the ids as the loader got them
