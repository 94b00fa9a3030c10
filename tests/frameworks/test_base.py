"""The framework-free part of awkgen.frameworks: ART's interface, lazy imports, install hints."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import awkgen
import awkgen.frameworks as fw
from tests.conftest import identity

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "mxnet", "art")


def test_importing_frameworks_imports_no_framework():
    code = ("import sys, awkgen\n"
            "assert 'awkgen.frameworks' not in sys.modules, 'import awkgen imported awkgen.frameworks'\n"
            "import awkgen.frameworks as fw\n"
            "fw.DataGenerator\n"
            f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("factory", [
    lambda: awkgen.DataGenerator(identity, list(range(10)), batch_size=3),
    lambda: awkgen.DataGeneratorMultiProc(identity, list(range(10)), batch_size=3, n_workers=1, backend="thread"),
])
def test_every_awkgen_generator_is_an_art_data_generator(factory):
    with factory() as gen:
        assert isinstance(gen, fw.DataGenerator)
        assert issubclass(awkgen.BatchGenerator, fw.DataGenerator)
        assert (gen.size, gen.batch_size, gen.iterator) == (10, 3, gen)
        assert len(gen.get_batch()[0]) == 3


def test_a_plain_generator_is_not_an_art_data_generator():
    assert not isinstance((i for i in range(3)), fw.DataGenerator)


class Constant(fw.DataGenerator):
    def get_batch(self):
        return np.zeros((self.batch_size, 2)), np.zeros(self.batch_size)


@pytest.mark.parametrize("size, batch_size, message", [
    (0, 1, "Expected size to be an int >= 1 or None, as ART requires. Received: size=0 (int)"),
    (True, 1, "Expected size to be an int >= 1 or None, as ART requires. Received: size=True (bool)"),
    (2.0, 1, "Expected size to be an int >= 1 or None, as ART requires. Received: size=2.0 (float)"),
    (10, 0, "Expected batch_size to be an int >= 1, as ART requires. Received: batch_size=0 (int)"),
    (10, None, "Expected batch_size to be an int >= 1, as ART requires. Received: batch_size=None (NoneType)"),
    (10, np.int64(4), "Expected batch_size to be an int >= 1, as ART requires (convert it with int()). "
                      "Received: batch_size=np.int64(4) (int64)"),
    (10, 11, "Expected batch_size <= size (10). Received: batch_size=11"),
])
def test_data_generator_arguments_are_checked_like_art(size, batch_size, message):
    with pytest.raises(ValueError) as info:  # ART raises ValueError for all of these (tests/frameworks/test_art.py)
        Constant(size, batch_size)
    assert str(info.value) == message


def test_size_may_be_unknown():
    assert Constant(None, 4).size is None
    assert Constant(10, 4).batch_size == 4
    with pytest.raises(TypeError, match="abstract"):
        fw.DataGenerator(10, 2)


def test_a_missing_framework_names_the_extra_to_install():
    # mxnet is not installed in the main venv (it needs numpy < 1.24): a real absence, not a mock.
    assert importlib.util.find_spec("mxnet") is None
    with pytest.raises(ImportError, match=r'MXDataGenerator needs mxnet, which is not installed: '
                                          r'pip install "awkgen\[mxnet\]"') as info:
        fw.MXDataGenerator([], size=1, batch_size=1)
    assert isinstance(info.value.__cause__, ImportError)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        fw.Nope  # noqa: B018
    assert set(fw.__all__) <= set(dir(fw))
