"""awkgen against the real Adversarial Robustness Toolbox.

ART's own checks (``isinstance`` in ``fit_generator``, ``ActivationDefence``, the
framework fast paths) accept awkgen's classes; ``NumpyDataGenerator`` and the
argument checks are compared with ART's own classes, side by side.
"""

from __future__ import annotations

import subprocess
import sys

import art.data_generators
import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod
from art.defences.detector.poison import ActivationDefence
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier

import awkgen
import awkgen.frameworks as fw
from awkgen.datasets import load_digits_batch
from awkgen.frameworks import NumpyDataGenerator, to_art
from tests.conftest import as_array


@pytest.fixture
def classifier():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model, busy machine: one thread is fastest
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    yield PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(8, 8, 1), nb_classes=10,
                            optimizer=torch.optim.Adam(model.parameters(), lr=0.01), clip_values=(0.0, 1.0))
    torch.set_num_threads(threads)


def accuracy(classifier, digits):
    return (classifier.predict(digits.x_test).argmax(axis=1) == digits.y_test).mean()


def test_to_art_is_a_real_art_data_generator():
    with awkgen.DataGenerator(as_array, np.arange(10), np.arange(10) % 3, batch_size=4, shuffle=False) as gen:
        art_gen = to_art(gen)
        assert isinstance(art_gen, art.data_generators.DataGenerator)
        assert (art_gen.size, art_gen.batch_size, art_gen.iterator) == (10, 4, gen)
        x, y = art_gen.get_batch()
        assert isinstance(x, np.ndarray) and x.tolist() == [0, 1, 2, 3] and y.tolist() == [0, 1, 2, 0]


def test_to_art_needs_labels_and_a_generator():
    with awkgen.DataGenerator(as_array, np.arange(10), batch_size=4) as gen:
        with pytest.raises(ValueError, match="build the awkgen generator with sample_cls=labels"):
            to_art(gen).get_batch()
    with pytest.raises(TypeError, match=r"Expected gen to be an awkgen generator .* Received: \[1\] \(list\)"):
        to_art([1])


def test_fit_generator_trains_an_art_classifier_from_files(classifier, digits):
    with awkgen.DataGeneratorMultiProc(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=50,
                                       n_workers=2, seed=0) as gen:
        classifier.fit_generator(to_art(gen), nb_epochs=3)
        assert (gen.epoch, gen.step) == (3, 0)  # 1400 / 50: ART's 28 batches per epoch are awkgen's epoch
    assert accuracy(classifier, digits) > 0.5


def test_adversarial_trainer_reads_size_and_trains_from_awkgen(classifier, digits):
    with awkgen.DataGenerator(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=50,
                              seed=0) as gen:
        classifier.fit_generator(to_art(gen), nb_epochs=2)
        trainer = AdversarialTrainer(classifier, FastGradientMethod(classifier, eps=0.05), ratio=0.5)
        trainer.fit_generator(gen, nb_epochs=1)  # the generator itself: ART reads size and batch_size
        assert (gen.epoch, gen.step) == (3, 0)  # ceil(size / batch_size) batches: one epoch
    assert accuracy(classifier, digits) > 0.5


# --- ART's own isinstance checks --------------------------------------------------------

ISINSTANCE_SCRIPT = """
import sys
{first}
import awkgen
{second}
import art.data_generators as d
import awkgen.frameworks as fw
gen = awkgen.DataGenerator(lambda ids: ids, list(range(6)), [0, 1] * 3, batch_size=2)
checks = [isinstance(gen, d.DataGenerator), issubclass(fw.PyTorchDataGenerator, d.PyTorchDataGenerator),
          issubclass(fw.KerasDataGenerator, d.KerasDataGenerator),
          issubclass(fw.TensorFlowV2DataGenerator, d.TensorFlowV2DataGenerator),
          issubclass(fw.NumpyDataGenerator, d.NumpyDataGenerator), issubclass(fw.MXDataGenerator, d.DataGenerator),
          not isinstance(gen, d.KerasDataGenerator), not issubclass(fw.MXDataGenerator, d.PyTorchDataGenerator)]
gen.close()
print(checks, d.__loader__.__class__.__name__)
"""


@pytest.mark.parametrize("first, second", [
    ("", "assert not {'art', 'awkgen.frameworks'} & set(sys.modules), 'import awkgen imported ART'"),
    ("import art.data_generators", ""),  # ART first
    ("import awkgen.frameworks.torch", "import art"),  # an awkgen framework module before ART
])
def test_art_accepts_awkgen_classes_whatever_the_import_order(first, second):
    code = ISINSTANCE_SCRIPT.format(first=first, second=second)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[True,"] + ["True,"] * 6 + ["True]", "SourceFileLoader"]


def test_generic_fit_generator_takes_an_awkgen_generator_directly(classifier, digits):
    with awkgen.DataGeneratorMultiProc(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=50,
                                       n_workers=2, seed=0) as gen:
        classifier.fit_generator(gen, nb_epochs=2)  # no to_art(): ART's isinstance check accepts gen itself
        assert (gen.epoch, gen.step) == (2, 0)
    assert accuracy(classifier, digits) > 0.5


class LoaderOnly(fw.PyTorchDataGenerator):
    """Fails if ART falls back to its generic path (which calls get_batch) instead of iterating the DataLoader."""

    def get_batch(self):
        raise AssertionError("ART called get_batch(): it did not take its PyTorch fast path")


def test_art_takes_its_pytorch_fast_path_with_awkgens_pytorch_generator(classifier, digits):
    onehot = np.eye(10, dtype=np.float32)[digits.train_labels]  # ART's fast path argmaxes one-hot labels
    with awkgen.DataGenerator(load_digits_batch, digits.train_paths, onehot, batch_size=50, seed=0) as gen:
        loader = torch.utils.data.DataLoader(fw.as_torch(gen), batch_size=None)
        classifier.fit_generator(LoaderOnly(loader, size=gen.size, batch_size=gen.batch_size), nb_epochs=2)
        assert (gen.epoch, gen.step) == (2, 0)
    assert accuracy(classifier, digits) > 0.5


def test_activation_defence_takes_an_awkgen_generator(classifier, digits):
    with awkgen.DataGenerator(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=100,
                              seed=0) as gen:
        classifier.fit_generator(gen, nb_epochs=2)
        # ART 1.20 raised "Generator must a an instance of DataGenerator" for anything else.
        defence = ActivationDefence(classifier, x_train=None, y_train=None, generator=gen)
        report, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=2, reduce="PCA")
        assert len(is_clean) == len(digits.train_paths)  # one verdict per sample, read through gen
        assert set(np.unique(is_clean)) <= {0, 1}


# --- NumpyDataGenerator, side by side with ART's ------------------------------------------

def test_numpy_data_generator_batches_as_arts_does_when_not_shuffling():
    x, y = np.arange(22).reshape(11, 2), np.arange(11)
    for drop in (True, False):
        ours, theirs = NumpyDataGenerator(x, y, 3, drop), art.data_generators.NumpyDataGenerator(x, y, 3, drop)
        assert (ours.size, ours.batch_size, ours.batches_per_epoch) == (theirs.size, theirs.batch_size,
                                                                       theirs.batches_per_epoch)
        for _ in range(3 * ours.batches_per_epoch + 1):  # across epoch ends
            (ox, oy), (tx, ty) = ours.get_batch(), theirs.get_batch()
            assert ox.tolist() == tx.tolist() and oy.tolist() == ty.tolist()
        assert [b[1].tolist() for b in ours] == [b[1].tolist() for b in theirs]
        assert isinstance(ours, art.data_generators.NumpyDataGenerator) and ours.iterator is ours


def test_numpy_data_generator_shuffles_every_epoch_replayably():
    x = np.arange(100)
    gen = NumpyDataGenerator(x, x % 7, batch_size=10, shuffle=True, seed=1)
    epochs = [np.concatenate([bx for bx, _ in gen]) for _ in range(3)]
    assert all(sorted(e.tolist()) == x.tolist() for e in epochs)  # every sample once per epoch
    assert epochs[0].tolist() != epochs[1].tolist() != epochs[2].tolist()
    # the order is awkgen's plan for (seed, epoch): an awkgen generator with that seed agrees
    with awkgen.DataGenerator(as_array, x, batch_size=10, seed=1, drop_last=True) as plain:
        assert np.concatenate([plain()[0] for _ in range(10)]).tolist() == epochs[0].tolist()
    again = NumpyDataGenerator(x, x % 7, batch_size=10, shuffle=True, seed=1)
    assert np.concatenate([again.get_batch()[0] for _ in range(10)]).tolist() == epochs[0].tolist()


def test_numpy_data_generator_trains_an_art_classifier(classifier, digits):
    x = load_digits_batch(digits.train_paths)
    gen = NumpyDataGenerator(x, digits.train_labels, batch_size=50, shuffle=True, seed=0)
    classifier.fit_generator(gen, nb_epochs=3)
    assert accuracy(classifier, digits) > 0.5


# --- argument checks: the exception ART raises, or a stricter one where README says so ------

def outcome(make):
    try:
        make()
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc)
    return "ok"


@pytest.mark.parametrize("size, batch_size", [
    (10, 4), (None, 4), (0, 1), (-1, 1), (2.0, 1), (np.int64(10), 4), ("10", 4), (10, 0), (10, None),
    (10, 2.0), (10, np.int32(4)), (10, 11), (None, 100),
])
def test_data_generator_checks_raise_what_art_raises(size, batch_size):
    class Ours(fw.DataGenerator):
        def get_batch(self):
            return ()

    class Theirs(art.data_generators.DataGenerator):
        def get_batch(self):
            return ()

    assert outcome(lambda: Ours(size, batch_size)) == outcome(lambda: Theirs(size, batch_size))


@pytest.mark.parametrize("batch_size", [3, 3.0, 3.7, np.int64(3), "3", None, 0, -2, 12, "x"])
def test_numpy_data_generator_checks_raise_what_art_raises(batch_size):
    x = np.zeros((11, 2))
    assert (outcome(lambda: NumpyDataGenerator(x, x[:, 0], batch_size))
            == outcome(lambda: art.data_generators.NumpyDataGenerator(x, x[:, 0], batch_size)))
    for y in (x[:5, 0], 3):
        assert outcome(lambda y=y: NumpyDataGenerator(x, y)) is ValueError
        assert outcome(lambda y=y: art.data_generators.NumpyDataGenerator(x, y)) is ValueError


def test_bools_are_refused_where_art_reads_them_as_one():
    """Deliberately stricter than ART (README, "ART"): ``batch_size=True`` is a mistake, not 1."""
    class Theirs(art.data_generators.DataGenerator):
        def get_batch(self):
            return ()

    assert Theirs(10, True).batch_size is True
    with pytest.raises(ValueError, match=r"Received: batch_size=True \(bool\)"):
        NumpyDataGenerator(np.zeros(4), np.zeros(4), batch_size=True)
    with pytest.raises(ValueError, match=r"Received: size=True \(bool\)"):
        fw.DataGenerator.__init__(NumpyDataGenerator(np.zeros(4), np.zeros(4)), True, 1)
