"""Keras 3 on one backend, fed by awkgen: run as a script with ``KERAS_BACKEND`` set.

``python tests/frameworks/keras_backend_script.py DIGITS_FOLDER`` trains a small
model on the digits read from files by awkgen's loader, for each generator kind
(blocking ``DataGenerator``, prefetching ``DataGeneratorMultiProc`` on processes)
and each way of handing it to ``fit`` (the generator with ``steps_per_epoch``, and
``gen.as_keras()``), then records which ids a model sees in each fit to check
the stream's order. It prints one JSON object; ``test_keras_backends.py`` checks it.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import awkgen
from awkgen.datasets import digits_on_disk, load_digits_batch

EPOCHS = 3
BATCH_SIZE = 64


def make(kind: str, loader, ids, labels, batch_size: int, seed: int):
    if kind == "blocking":
        return awkgen.DataGenerator(loader, ids, labels, batch_size=batch_size, seed=seed)
    return awkgen.DataGeneratorMultiProc(loader, ids, labels, batch_size=batch_size, n_workers=2,
                                         backend="process", seed=seed)


def fit(model, gen, style: str, epochs: int, **kwargs) -> None:
    if style == "generator":
        model.fit(gen, steps_per_epoch=gen.steps_per_epoch, epochs=epochs, verbose=0, **kwargs)
    else:
        model.fit(gen.as_keras(), epochs=epochs, verbose=0, **kwargs)


def ids_as_x(ids):
    return np.asarray(ids, dtype="float32")[:, None]


def main() -> None:
    started = time.perf_counter()
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)  # the test machine's cores are shared: threads fight each other
    folder = sys.argv[1]
    paths, labels = digits_on_disk(folder)
    order = np.random.default_rng(0).permutation(len(paths))
    train, test = order[:1400], order[1400:]
    train_paths = [paths[i] for i in train]
    x_test, y_test = load_digits_batch([paths[i] for i in test]), labels[test]
    out: dict = {"backend": keras.backend.backend(), "accuracy": {}, "cursor": {}, "order": {},
                 "import_s": round(time.perf_counter() - started, 2)}

    # Both generator kinds and both ways into fit, on a real model: (blocking, generator) and
    # (multiproc, PyDataset). The order checks below run all four combinations.
    for kind, style in (("blocking", "generator"), ("multiproc", "pydataset")):
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        with make(kind, load_digits_batch, train_paths, labels[train], BATCH_SIZE, seed=1) as gen:
            fit(model, gen, style, EPOCHS)
            out["cursor"][f"{kind}/{style}"] = [gen.epoch, gen.step, gen.steps_per_epoch]
        # One eager forward pass: model.evaluate would compile a test step (seconds, on JAX) for one call.
        predicted = keras.ops.convert_to_numpy(model(x_test, training=False)).argmax(axis=1)
        accuracy = (predicted == y_test).mean()
        out["accuracy"][f"{kind}/{style}"] = [float(accuracy), round(time.perf_counter() - start, 2)]

    # Which ids reach the model, in which order: a layer records its (eager) inputs.
    class Recorder(keras.layers.Layer):
        seen: list = []

        def call(self, x, training=None):
            if training:  # not the shape inference some backends run on dummy batches
                Recorder.seen.append(keras.ops.convert_to_numpy(x)[:, 0].astype(int).tolist())
            return x

    ids = np.arange(50)
    with awkgen.DataGenerator(ids_as_x, ids, batch_size=8, seed=3) as twin:
        expected = [twin()[0][:, 0].astype(int).tolist() for _ in range(4 * twin.steps_per_epoch)]
    order_started = time.perf_counter()
    runs = [(kind, style, True) for kind in ("blocking", "multiproc") for style in ("generator", "pydataset")]
    for kind, style, shuffle in runs + [("blocking", "pydataset", False)]:
        Recorder.seen = []
        model = keras.Sequential([keras.Input((1,)), Recorder(), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        with make(kind, ids_as_x, ids, np.zeros(50, dtype="float32"), 8, seed=3) as gen:
            fit(model, gen, style, 3, shuffle=shuffle)
            cursor = [gen.epoch, gen.step]
        key = f"{kind}/{style}" + ("" if shuffle else "/unshuffled")
        out["order"][key] = {"seen": Recorder.seen, "expected": expected, "cursor": cursor}
    out["order_s"] = round(time.perf_counter() - order_started, 2)
    out["total_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
