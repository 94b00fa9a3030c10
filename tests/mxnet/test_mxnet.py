"""MXDataGenerator against real MXNet 1.9.1, and awkgen's core on numpy 1.23.

Runs in ``.venv-mxnet`` (``make test``), where MXNet's ``numpy < 1.24`` lives and
torch, TensorFlow, Keras and ART do not: the install hints are checked against
their real absence. ``tests/conftest.py`` (the leak fixture) applies here too.
"""

from __future__ import annotations

import importlib.util

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import awkgen
from awkgen.frameworks import DataGenerator, MXDataGenerator


def make_loader(n=10, batch_size=4, shuffle=False):
    x = np.arange(n, dtype="float32")[:, None]
    dataset = gluon.data.ArrayDataset(x, np.arange(n, dtype="int64") * 10)
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def test_numpy_is_the_old_one_mxnet_needs():
    assert np.__version__.startswith("1.23.") and mx.__version__ == "1.9.1"


def test_a_finite_gluon_dataloader_restarts_and_batches_come_back_as_numpy():
    gen = MXDataGenerator(make_loader(), size=10, batch_size=4)
    labels = [gen.get_batch()[1].tolist() for _ in range(4)]
    assert labels == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90], [0, 10, 20, 30]]
    x, y = gen.get_batch()
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (4, 1)
    assert isinstance(y, np.ndarray)
    assert isinstance(gen, DataGenerator) and (gen.size, gen.batch_size) == (10, 4)


def test_a_shuffled_gluon_dataloader_gives_every_sample_once_per_pass():
    gen = MXDataGenerator(make_loader(shuffle=True), size=10, batch_size=4)
    for _ in range(2):
        labels = np.concatenate([gen.get_batch()[1] for _ in range(3)])
        assert sorted(labels.tolist()) == list(range(0, 100, 10))


def test_only_a_gluon_dataloader_is_accepted():
    with pytest.raises(TypeError, match=r"Expected iterator to be an mxnet.gluon.data.DataLoader. Received: \[\]"):
        MXDataGenerator([], size=10, batch_size=4)
    with pytest.raises(ValueError, match="Expected batch_size <= size"):
        MXDataGenerator(make_loader(), size=3, batch_size=4)


def load_points(paths):
    return np.stack([np.load(p) for p in paths])


def test_awkgen_on_numpy_1_23_feeds_a_gluon_model_from_files(tmp_path):
    # Two Gaussian blobs, one .npy file per point, loaded in worker processes.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    points = rng.normal(size=(400, 2)).astype("float32") + 2.5 * labels[:, None]
    paths = []
    for i, point in enumerate(points):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], point)
    mx.random.seed(0)
    net = gluon.nn.Dense(2)
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with awkgen.DataGeneratorMultiProc(load_points, paths[:300], labels[:300], batch_size=30, n_workers=2,
                                       seed=0) as gen:
        for _ in range(5 * gen.steps_per_epoch):
            x, y = gen()
            with autograd.record():
                batch_loss = loss(net(mx.nd.array(x)), mx.nd.array(y))
            batch_loss.backward()
            trainer.step(len(x))
        assert (gen.epoch, gen.step) == (5, 0)
    predicted = net(mx.nd.array(points[300:])).asnumpy().argmax(axis=1)
    assert (predicted == labels[300:]).mean() > 0.8


@pytest.mark.parametrize("name, module, extra", [
    ("as_torch", "torch", "torch"),
    ("PyTorchDataGenerator", "torch", "torch"),
    ("as_tf", "tensorflow", "tensorflow"),
    ("TensorFlowV2DataGenerator", "tensorflow", "tensorflow"),
    ("as_keras", "keras", "keras"),
    ("to_art", "art", "art"),
])
def test_a_missing_framework_names_the_extra_to_install(name, module, extra):
    assert importlib.util.find_spec(module) is None, f"{module} is installed in this venv: the test needs it absent"
    import awkgen.frameworks as fw

    with awkgen.DataGenerator(lambda ids: ids, list(range(4)), [0, 1, 0, 1], batch_size=2) as gen:
        call = getattr(fw, name)
        args = (gen,) if name.startswith(("as_", "to_")) else ([], 4, 2)
        with pytest.raises(ImportError, match=rf'needs {module}, which is not installed: '
                                              rf'pip install "awkgen\[{extra}\]"'):
            call(*args)
