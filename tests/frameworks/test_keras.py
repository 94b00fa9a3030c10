"""KerasDataGenerator against real Keras data, as_keras, and Keras 3 fit on three backends.

Keras is imported at module level (with the TensorFlow backend, this process's
default) so that its one-time machinery predates the leak fixture's baseline.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import keras
import numpy as np
import pytest

import awkgen
from awkgen.frameworks import KerasDataGenerator, as_keras
from tests.conftest import as_array

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("keras_backend_script.py")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "TF_CPP_MIN_LOG_LEVEL": "2"}


class Squares(keras.utils.PyDataset):
    """A real PyDataset of 3 batches that counts its epoch hooks."""

    def __init__(self):
        super().__init__()
        self.ends = 0

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return np.full((2, 1), index, dtype="float32"), np.full(2, index * index)

    def on_epoch_end(self):
        self.ends += 1


# -- KerasDataGenerator ------------------------------------------------------------------

def test_a_pydataset_advances_and_restarts_after_its_last_item():
    data = Squares()
    gen = KerasDataGenerator(data, size=6, batch_size=2)
    labels = [gen.get_batch()[1].tolist() for _ in range(7)]
    assert labels == [[0, 0], [1, 1], [4, 4], [0, 0], [1, 1], [4, 4], [0, 0]]
    assert data.ends == 2  # on_epoch_end after each full pass, as Keras's fit calls it
    x, y = gen.get_batch()
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    assert gen.iterator is data and (gen.size, gen.batch_size) == (6, 2)


def test_an_endless_pydataset_is_walked_forever():
    class Endless(keras.utils.PyDataset):
        num_batches = None

        def __getitem__(self, index):
            return np.array([index]), np.array([index])

    gen = KerasDataGenerator(Endless(), size=None, batch_size=1)
    assert [int(gen.get_batch()[0][0]) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_generator_function_restarts_and_an_endless_generator_flows():
    def two_batches():
        yield np.zeros(2), np.zeros(2)
        yield np.ones(2), np.ones(2)

    gen = KerasDataGenerator(two_batches, size=4, batch_size=2)
    assert [gen.get_batch()[0][0] for _ in range(5)] == [0, 1, 0, 1, 0]

    def endless():
        i = 0
        while True:
            yield np.full(2, i), np.full(2, -i)
            i += 1

    gen = KerasDataGenerator(endless(), size=4, batch_size=2)
    assert [gen.get_batch()[1][0] for _ in range(3)] == [0, -1, -2]


def test_a_one_shot_generator_that_ends_says_what_to_pass_instead():
    gen = KerasDataGenerator(iter([(np.zeros(1), np.zeros(1))]), size=1, batch_size=1)
    gen.get_batch()
    with pytest.raises(RuntimeError, match="pass a generator function, a keras.utils.PyDataset or a re-iterable"):
        gen.get_batch()


def test_a_list_of_batches_is_reiterated_and_an_empty_one_refused():
    gen = KerasDataGenerator([(np.zeros(1), np.zeros(1)), (np.ones(1), np.ones(1))], size=2, batch_size=1)
    assert [gen.get_batch()[0][0] for _ in range(3)] == [0, 1, 0]
    with pytest.raises(ValueError, match="Expected the list to yield at least one batch per pass"):
        KerasDataGenerator([], size=1, batch_size=1).get_batch()
    with pytest.raises(TypeError, match=r"Expected iterator to be a keras.utils.PyDataset .* Received: 3 \(int\)"):
        KerasDataGenerator(3, size=1, batch_size=1)


def test_an_awkgen_generator_can_be_wrapped_too():
    with awkgen.DataGenerator(as_array, np.arange(6), np.arange(6) * 10, batch_size=3, shuffle=False) as source:
        gen = KerasDataGenerator(source, size=source.size, batch_size=source.batch_size)
        assert [gen.get_batch()[1].tolist() for _ in range(3)] == [[0, 10, 20], [30, 40, 50], [0, 10, 20]]


# -- as_keras ----------------------------------------------------------------------------

def test_as_keras_is_a_pydataset_of_one_epoch():
    with awkgen.DataGenerator(as_array, np.arange(7), np.arange(7), batch_size=3, shuffle=False) as gen:
        ds = gen.as_keras()
        assert isinstance(ds, keras.utils.PyDataset)
        assert len(ds) == ds.num_batches == gen.steps_per_epoch == 3
        assert [y.tolist() for _, y in ds] == [[0, 1, 2], [3, 4, 5], [6]]
        assert [y.tolist() for _, y in ds] == [[0, 1, 2], [3, 4, 5], [6]]  # a second pass is the next epoch
        assert (gen.epoch, gen.step) == (2, 0)
        with pytest.raises(IndexError, match=r"Expected an index in \[0, 3\). Received: 3"):
            ds[3]


def test_as_keras_binds_batches_read_early_so_none_is_skipped_or_repeated():
    with awkgen.DataGenerator(as_array, np.arange(8), batch_size=2, shuffle=False) as gen:
        ds = as_keras(gen)
        assert ds[0][0].tolist() == ds[0][0].tolist() == [0, 1]  # a peek, as Keras's TF backend does
        assert ds[1][0].tolist() == [2, 3]
        ds.on_epoch_begin()  # a build step: one read, then the epoch is abandoned
        assert ds[3][0].tolist() == [4, 5]
        ds.on_epoch_end()
        ds.on_epoch_begin()  # a real, shuffled epoch
        seen = {i: ds[i][0].tolist() for i in (2, 3, 0, 1)}
        ds.on_epoch_end()
        assert seen == {0: [0, 1], 1: [2, 3], 2: [6, 7], 3: [4, 5]}
        ds.on_epoch_begin()  # the next epoch gets the next epoch of the stream
        assert [ds[i][0].tolist() for i in (1, 0, 3, 2)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        ds.on_epoch_end()


def test_as_keras_keeps_a_few_batches_not_an_epoch():
    with awkgen.DataGenerator(as_array, np.arange(40), batch_size=2) as gen:
        ds = as_keras(gen)
        ds.on_epoch_begin()
        alive = []
        for index in range(len(ds)):
            alive.append(weakref.ref(ds[index][0]))
        gc.collect()
        assert sum(ref() is not None for ref in alive) == 4  # the first reads: a build step may abandon them
        ds.on_epoch_end()
        gc.collect()
        assert all(ref() is None for ref in alive)  # the epoch was read through: all dropped


def test_fit_in_this_process_trains_one_epoch_of_the_stream_per_keras_epoch(digits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    with awkgen.DataGenerator(awkgen.datasets.load_digits_batch, digits.train_paths, digits.train_labels,
                              batch_size=100, seed=0) as gen:
        model.fit(gen.as_keras(), epochs=2, verbose=0)
        assert (gen.epoch, gen.step) == (2, 0)
    assert model.evaluate(digits.x_test, digits.y_test, verbose=0)[1] > 0.5


# -- Keras 3 on every backend (one subprocess each: the backend is fixed per process) ------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_fit_learns_from_awkgen_on_every_backend(backend, digits):
    env = {**os.environ, **ONE_THREAD, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(SCRIPT), digits.folder], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend
    for run, (accuracy, _seconds) in out["accuracy"].items():
        assert accuracy > 0.5, f"{run}: held-out accuracy {accuracy:.2f} on 10 classes"
    # gen.as_keras(): exactly EPOCHS epochs of the stream were taken, none peeked past.
    assert out["cursor"]["multiproc/pydataset"][:2] == [3, 0]
    for run, record in out["order"].items():
        seen, expected = record["seen"], record["expected"]
        steps = len(expected) // 4
        assert len(seen) == 3 * steps, run
        for epoch in range(3):  # each Keras epoch trained on exactly one epoch of the stream
            window = slice(epoch * steps, (epoch + 1) * steps)
            assert sorted(seen[window]) == sorted(expected[window]), f"{run}, epoch {epoch}"
        if run.endswith("/unshuffled"):
            assert seen == expected[:3 * steps]
        if "pydataset" in run:
            assert record["cursor"] == [3, 0], run
