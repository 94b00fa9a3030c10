"""``awkgen demo``: train a real Keras model from image files on disk through awkgen.

What it does, in order:

1. writes scikit-learn's 8x8 digits as one PNG file per image into a cache
   folder (``$AWKGEN_CACHE/digits``, else ``./.awkgen-cache/digits``; reused on the
   next run) and holds out a fifth of the files; the loader decodes them with
   :func:`awkgen.images.load_image_batch` (libpng, through imagecodecs);
2. trains a small CNN (Keras, TensorFlow backend unless ``KERAS_BACKEND`` says
   otherwise) with ``model.fit(gen, steps_per_epoch=gen.steps_per_epoch)``, where
   ``gen`` is a :func:`~awkgen.DataGeneratorMultiProc` on the process backend;
3. runs one more epoch through the blocking :func:`~awkgen.DataGenerator` and one
   through the prefetching generator, and reports from ``gen.stats()`` how long the
   training loop waited for data in each and what prefetching saved;
4. prints the accuracy on the held-out files, read through a non-shuffled generator.

By default the loader does only the real work (open and decode each file). The
files are tiny and sit in the page cache, so ``latency_ms`` adds a sleep per file
to show what prefetching saves on slow storage (a network disk, an object store);
the demo says so. Keras is imported only inside :func:`run_demo`: ``import
awkgen.demo`` imports no framework.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bench import SleepyLoader
from .datasets import digits_on_disk, load_digits_batch
from .factories import DataGenerator, DataGeneratorMultiProc
from .generator import BatchGenerator

__all__ = ["SlowStorageLoader", "EpochTiming", "DemoResult", "default_cache_dir", "split_files", "run_demo"]


class SlowStorageLoader(SleepyLoader):
    """The demo's loader: sleep ``latency_ms`` per file (simulated slow storage, 0 by default), then decode them.

    A module-level class, so the process backend can pickle it.

    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    ...     for path in paths:
    ...         Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)
    ...     SlowStorageLoader(latency_ms=0.5)(paths).shape
    (3, 8, 8, 1)
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        super().__init__(latency_ms, shape=(8, 8, 1))

    def read(self, paths: Sequence[str]) -> np.ndarray:
        return load_digits_batch(paths)


@dataclass(frozen=True)
class EpochTiming:
    """One training epoch through one generator: wall time and the time the loop waited for data."""

    label: str
    wall_s: float
    wait_s: float
    batches: int


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` measured."""

    accuracy: float
    n_train: int
    n_test: int
    epochs: int
    blocking: EpochTiming
    prefetching: EpochTiming

    @property
    def saved_s(self) -> float:
        """Epoch wall time prefetching saved against the blocking generator."""
        return self.blocking.wall_s - self.prefetching.wall_s


def default_cache_dir() -> str:
    """``$AWKGEN_CACHE/digits`` if ``AWKGEN_CACHE`` is set, else ``.awkgen-cache/digits`` here.

    >>> os.path.basename(default_cache_dir())
    'digits'
    """
    return os.path.join(os.environ.get("AWKGEN_CACHE") or ".awkgen-cache", "digits")


def split_files(paths: Sequence[str], labels: np.ndarray, holdout: float,
                seed: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Hold out a random fraction *holdout* of the files: ``(train_paths, train_y, test_paths, test_y)``.

    >>> tr, tr_y, te, te_y = split_files(["a", "b", "c", "d", "e"], np.arange(5), 0.2, seed=0)
    >>> len(tr), len(te), sorted(tr + te)
    (4, 1, ['a', 'b', 'c', 'd', 'e'])
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1); received: {holdout!r}")
    order = np.random.default_rng(seed).permutation(len(paths))
    n_test = max(1, round(holdout * len(paths)))
    test, train = order[:n_test], order[n_test:]
    return [paths[i] for i in train], labels[train], [paths[i] for i in test], labels[test]


def run_demo(cache_dir: str | None = None, epochs: int = 5, batch_size: int = 64, n_workers: int = 4,
             latency_ms: float = 0.0, holdout: float = 0.2, seed: int = 0, progress: bool = True,
             out: Callable[[str], object] = print) -> DemoResult:
    """Build the data set, train, compare blocking and prefetching, evaluate; see the module docstring.

    Needs ``keras``, a backend, ``scikit-learn``, Pillow and imagecodecs (``pip install "awkgen[demo]"``).
    Returns the measurements; everything it prints goes through *out*.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; received: {epochs!r}")
    cache_dir = cache_dir or default_cache_dir()
    start = time.perf_counter()
    paths, labels = digits_on_disk(cache_dir)
    train_x, train_y, test_x, test_y = split_files(paths, labels, holdout, seed)
    out(f"data set: {len(paths)} digit images, one PNG file each, in {os.path.abspath(cache_dir)}")
    out("loader:   awkgen.images.load_image_batch decodes each batch's PNG files (libpng, through imagecodecs)")
    out(f"          {len(train_x)} files to train on, {len(test_x)} held out")
    loader = SlowStorageLoader(latency_ms)
    if latency_ms:
        out(f"storage:  the loader sleeps {latency_ms:g} ms per file to simulate slow storage "
            "(by default, 0, the loader only reads the files)")

    # Workers start before Keras is imported: the forkserver never sees a framework.
    gen = DataGeneratorMultiProc(loader, train_x, train_y, batch_size=batch_size, n_workers=n_workers,
                                 backend="process", seed=seed)
    try:
        keras = _import_keras()
        out(f"model:    a small CNN on Keras {keras.__version__} ({keras.backend.backend()} backend)")
        model = _build_model(keras, seed)
        out(f"training: {epochs} epoch(s) of {gen.steps_per_epoch} batches of {batch_size} from "
            f"DataGeneratorMultiProc(n_workers={n_workers}, backend='process')")
        model.fit(gen, steps_per_epoch=gen.steps_per_epoch, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[_progress_callback(keras, "train", gen.steps_per_epoch, progress)])

        out("compare:  one more epoch through each generator (training continues)")
        with DataGenerator(loader, train_x, train_y, batch_size=batch_size, seed=seed + 1) as blocking_gen:
            blocking = _timed_epoch(keras, model, blocking_gen, "DataGenerator (blocking)", progress)
        prefetching = _timed_epoch(keras, model, gen, f"DataGeneratorMultiProc({n_workers})", progress)
        stats = gen.stats()
    finally:
        gen(stop=True)

    accuracy = _accuracy(model, loader, test_x, test_y, batch_size)
    result = DemoResult(accuracy, len(train_x), len(test_x), epochs, blocking, prefetching)
    for timing in (blocking, prefetching):
        out(f"          {timing.label:<28} epoch {timing.wall_s:6.2f} s, waited for data "
            f"{timing.wait_s:6.2f} s ({timing.batches} batches)")
    saved = result.saved_s
    share = saved / blocking.wall_s if blocking.wall_s > 0 else 0.0
    out(f"stats:    {stats}")
    out(f"prefetch: saved {saved:.2f} s per epoch ({share:.0%} of the blocking epoch); the training loop "
        f"waited {blocking.wait_s - prefetching.wait_s:.2f} s less for data")
    out(f"accuracy: {accuracy:.3f} on {len(test_x)} held-out files (chance: 0.100)")
    out(f"done in {time.perf_counter() - start:.0f} s")
    return result


# -- internals: everything that touches Keras ------------------------------------------

def _import_keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError as exc:
        raise ImportError('the demo needs Keras and a backend: pip install "awkgen[demo]"') from exc
    return keras


def _build_model(keras: Any, seed: int) -> Any:
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _progress_callback(keras: Any, label: str, steps: int, enabled: bool) -> Any:
    """A Keras callback drawing one tqdm bar per epoch, with the running loss and accuracy."""
    try:  # not a core dependency
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError('the demo\'s progress bars need tqdm, which is not installed: pip install "awkgen[demo]"'
                          ) from exc

    class TqdmProgress(keras.callbacks.Callback):  # type: ignore[misc]
        bar: Any = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            # No tqdm object when disabled: even a disabled bar starts tqdm's monitor thread for good.
            if enabled:
                self.bar = tqdm(total=steps, desc=f"{label} epoch {epoch + 1}", unit="batch")

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.bar is None:
                return
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}",
                                     acc=f"{float(logs.get('accuracy', 0.0)):.3f}", refresh=False)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TqdmProgress()


def _timed_epoch(keras: Any, model: Any, gen: BatchGenerator, label: str, progress: bool) -> EpochTiming:
    before = gen.stats()
    start = time.perf_counter()
    model.fit(gen, steps_per_epoch=gen.steps_per_epoch, epochs=1, shuffle=False, verbose=0,
              callbacks=[_progress_callback(keras, label, gen.steps_per_epoch, progress)])
    wall = time.perf_counter() - start
    after = gen.stats()
    return EpochTiming(label, wall, after.wait_s - before.wait_s, after.batches - before.batches)


def _accuracy(model: Any, loader: SlowStorageLoader, paths: list[str], labels: np.ndarray,
              batch_size: int) -> float:
    batch_size = min(batch_size, len(paths))
    correct = 0
    with DataGenerator(loader, paths, labels, batch_size=batch_size, shuffle=False) as gen:
        for _ in range(gen.steps_per_epoch):
            x, y = next(gen)
            predicted = np.asarray(model.predict_on_batch(x)).argmax(axis=-1)
            correct += int((predicted == y).sum())
    return correct / len(paths)
