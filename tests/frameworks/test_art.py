"""to_art against the real Adversarial Robustness Toolbox: fit_generator and an adversarial trainer."""

from __future__ import annotations

import art.data_generators
import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier

import awkgen
from awkgen.datasets import load_digits_batch
from awkgen.frameworks import to_art
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
        trainer.fit_generator(to_art(gen), nb_epochs=1)
        assert (gen.epoch, gen.step) == (3, 0)  # ceil(size / batch_size) batches: one epoch
    assert accuracy(classifier, digits) > 0.5
