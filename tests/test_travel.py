"""One loader, every backend (SPEC section 1): what the blocking generator gives, the thread,
process and Ray backends give too, for loaders from the user's own uninstalled modules,
lambdas, closures, ``__main__`` definitions and modules imported lazily, and for results
whose type is not a plain array."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from awkgen import DataGenerator, DataGeneratorMultiProc, LoaderError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A project of the user's: a package on sys.path, not installed, added at run time.
PROJECT = {
    "mylib/__init__.py": "",
    "mylib/loaders.py": """
        import struct

        import numpy as np

        HEADER = struct.Struct("<I")  # a module global pickle cannot send: the module must go by reference
        SCALE = 3

        def local_function(ids):
            return np.asarray(ids) * SCALE

        class LocalClass:
            def __init__(self, offset):
                self.offset = offset

            def __call__(self, ids):
                return np.asarray(ids) + self.offset

        def lazy_sibling(ids):
            from mylib import sibling  # imported only when the worker first calls it
            return sibling.double(np.asarray(ids))

        class Item:  # ids that are instances of a class of the user's
            def __init__(self, value):
                self.value = value

        def item_values(items):
            return np.asarray([item.value for item in items])
    """,
    "mylib/sibling.py": """
        def double(values):
            return values * 2
    """,
}

MAIN = """
import os, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {project!r})  # after start-up, as a notebook or script would
import numpy as np
import awkgen
from mylib import loaders as mylib_loaders
from mylib.loaders import Item, LocalClass, item_values, lazy_sibling, local_function


class Point:
    def __init__(self, i):
        self.i = int(i)


def main_function(ids):
    return np.asarray(ids) - 2, [Point(i) for i in ids]


def uses_the_module(ids):  # a __main__ function holding a user module: by reference, not its contents
    return np.asarray(ids) * mylib_loaders.SCALE


def closure_over(k):
    def add(ids):
        return np.asarray(ids) + k
    return add


LOADERS = {{
    "local function": local_function,
    "local class instance": LocalClass(5),
    "lambda": lambda ids: np.asarray(ids) - 1,
    "closure": closure_over(11),
    "__main__ function and class": main_function,
    "__main__ function using a user module": uses_the_module,
    "lazy sibling import": lazy_sibling,
    "ids that are instances of a user class": item_values,
}}


def same(a, b):
    if isinstance(a, np.ndarray):
        return type(a) is type(b) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, Point):
        return isinstance(b, Point) and a.i == b.i
    return a == b


for backend in {backends!r}:
    for name, loader in LOADERS.items():
        ids = [Item(i) for i in range(20)] if loader is item_values else list(range(20))
        expected = awkgen.DataGenerator(loader, ids, batch_size=4, seed=1)
        with awkgen.DataGeneratorMultiProc(loader, ids, batch_size=4, seed=1, n_workers=2, backend=backend) as gen:
            for step in range(7):
                want, got = expected()[0], gen()[0]
                assert same(want, got), (backend, name, step, want, got)
        print("same stream:", backend, name, flush=True)
print("OK")
"""


def run_matrix(tmp_path, backends, env=None):
    project = tmp_path / "project"
    for path, text in PROJECT.items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    elsewhere = tmp_path / "cwd"  # the project is neither the working directory nor the script's
    elsewhere.mkdir()
    script = tmp_path / "main.py"
    script.write_text(MAIN.format(root=ROOT, project=str(project), backends=tuple(backends)))
    out = subprocess.run([sys.executable, str(script)], cwd=elsewhere, capture_output=True, text=True, timeout=240,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0 and "OK" in out.stdout.split(), out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout


def test_every_kind_of_loader_gives_the_blocking_stream_on_threads_and_processes(tmp_path):
    out = run_matrix(tmp_path, ["thread", "process"])
    assert out.count("same stream:") == 16


@pytest.mark.ray
def test_every_kind_of_loader_gives_the_blocking_stream_on_ray(tmp_path, ray_cluster):
    out = run_matrix(tmp_path, ["ray"], env={"RAY_ADDRESS": ray_cluster})
    assert out.count("same stream:") == 8


def array_subclasses(ids):
    ids = np.asarray(ids)
    masked = np.ma.masked_array(np.repeat(ids, 10_000).astype(np.float64), mask=np.repeat(ids % 2 == 0, 10_000))
    return masked, np.matrix([ids, ids]), np.rec.fromarrays([ids, ids * 0.5], names="id,half")


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("backend", ["thread", "process", pytest.param("ray", marks=pytest.mark.ray)])
def test_array_subclasses_keep_their_class_mask_and_fields(backend):
    expected = DataGenerator(array_subclasses, list(range(8)), batch_size=4, shuffle=False)
    with DataGeneratorMultiProc(array_subclasses, list(range(8)), batch_size=4, n_workers=1, backend=backend,
                                shuffle=False) as gen:
        for _ in range(3):
            (want,), (got,) = expected(), gen()
            for a, b in zip(want, got):
                assert type(a) is type(b)
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert np.array_equal(want[0].mask, got[0].mask) and got[0].mask.any()
            assert got[2].dtype.names == ("id", "half")


def sorts_its_ids_in_place(ids):
    ids.sort()
    ids[0] = -1
    raise ValueError("stop here")


@pytest.mark.parametrize("backend", ["serial", "thread", "process", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_loader_mutating_its_ids_changes_nothing_outside_its_call(backend):
    ids = np.arange(10)[::-1].copy()
    kwargs = {} if backend == "serial" else {"n_workers": 1, "backend": backend}
    factory = DataGenerator if backend == "serial" else DataGeneratorMultiProc
    with factory(sorts_its_ids_in_place, ids, batch_size=5, shuffle=False, **kwargs) as gen:
        with pytest.raises(LoaderError) as info:
            gen()
    assert info.value.ids.tolist() == [9, 8, 7, 6, 5]  # the batch as planned, not as the loader left it
    assert ids.tolist() == list(range(10))[::-1]


def with_rng(ids, rng):
    return rng.random()


def test_a_loader_with_rng_bound_by_partial_is_refused_naming_it():
    bound = functools.partial(with_rng, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"binds rng=Generator.*functools.partial"):
        DataGenerator(bound, list(range(4)), batch_size=2)


def test_a_closure_with_a_cell_not_yet_filled_travels_and_its_filled_cells_are_searched():
    from awkgen.executors import _travel

    class Filled:
        pass

    def make():
        def loader(ids):
            return [later for _ in ids]  # assigned below: an empty cell until then
        found_while_empty = list(_travel._classes_reachable(loader, 3, set()))  # no ValueError
        later = Filled
        return loader, found_while_empty

    loader, found_while_empty = make()
    assert Filled not in found_while_empty
    assert Filled in list(_travel._classes_reachable(loader, 3, set()))
    assert loader([1]) == [Filled]
