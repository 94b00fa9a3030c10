"""``awkgen demo``: train a real Keras model from JPEG photos on disk, decoded and augmented in workers.

What it does, in order:

1. writes scikit-learn's digits as colour JPEG "photos" of 192x192 pixels (the
   digit scaled up, on a shaded background with sensor noise), one file per image,
   into a cache folder (``$AWKGEN_CACHE/digit-photos``, else
   ``./.awkgen-cache/digit-photos``; reused on the next run), and holds out a fifth;
2. trains a small CNN (Keras on JAX unless ``KERAS_BACKEND`` says otherwise) with
   ``model.fit(gen, steps_per_epoch=len(gen), shuffle=False)``, where ``gen`` is a
   :func:`~awkgen.DataGeneratorMultiProc` on the process backend whose loader,
   :class:`PhotoLoader`, does what a real input pipeline does per image: decode the
   JPEG, rotate it by a random angle, crop a random square, resize it to the
   model's 32x32, jitter brightness and contrast (about 2 ms of CPU per image);
3. compares, over several epochs taken in turn (blocking, prefetching, blocking,
   ...), the blocking :func:`~awkgen.DataGenerator` and the prefetching generator,
   and prints what prefetching saved per epoch **only if every blocking epoch took
   longer than every prefetching one**; otherwise it says that this machine, now,
   shows no saving it can stand behind (other programs on a shared machine move
   epoch times by more than the difference);
4. prints the accuracy on the held-out files, read through a non-shuffled
   generator without augmentation.

``latency_ms`` adds a sleep per file, as slow storage would (the demo says so).
Keras is imported only inside :func:`run_demo`: ``import awkgen.demo`` imports no
framework. The loader takes awkgen's per-batch ``rng``, so the augmentation is the
same on every run and backend.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .factories import DataGenerator, DataGeneratorMultiProc
from .generator import BatchGenerator

__all__ = ["PhotoLoader", "EpochTiming", "DemoResult", "default_cache_dir", "digit_photos_on_disk", "split_files",
           "compare", "run_demo"]

PHOTO_SIZE = 192  # pixels, the files' side
MODEL_SIZE = 32  # pixels, the model input's side


def default_cache_dir() -> str:
    """``$AWKGEN_CACHE/digit-photos`` if ``AWKGEN_CACHE`` is set, else ``.awkgen-cache/digit-photos`` here.

    >>> os.path.basename(default_cache_dir())
    'digit-photos'
    """
    return os.path.join(os.environ.get("AWKGEN_CACHE") or ".awkgen-cache", "digit-photos")


def digit_photos_on_disk(folder: str | os.PathLike[str], size: int = PHOTO_SIZE) -> tuple[list[str], np.ndarray]:
    """Write scikit-learn's digits as ``<folder>/<label>/<index>.jpg`` colour photos (once); return
    ``(paths, labels)``.

    Each digit is scaled up to *size* x *size* pixels and drawn in a random ink on a
    shaded background with noise, then saved as a JPEG (quality 90). Files already
    there are reused. Needs scikit-learn and Pillow (``pip install "awkgen[demo]"``).
    """
    try:
        from PIL import Image
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError('the demo\'s photos need scikit-learn and Pillow: pip install "awkgen[demo]"') from exc
    digits = load_digits()
    paths, labels = [], []
    grid = np.mgrid[0:size, 0:size] / size
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        path = os.path.join(os.fspath(folder), str(int(label)), f"{index:04d}.jpg")
        if not os.path.exists(path):
            rng = np.random.default_rng(index)
            ink = np.asarray(Image.fromarray(np.uint8(image * (255 / 16))).resize((size, size),
                                                                                  Image.Resampling.BICUBIC))
            alpha = (ink.astype(np.float32) / 255)[..., None]
            angle = rng.uniform(0, 2 * np.pi)
            shade = 0.35 + 0.3 * (np.cos(angle) * grid[1] + np.sin(angle) * grid[0])
            background = shade[..., None] * rng.uniform(0.6, 1.0, 3)
            rgb = background * (1 - alpha) + alpha * rng.uniform(0.7, 1.0, 3)
            rgb += rng.normal(0, 0.04, rgb.shape)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            Image.fromarray(np.uint8(np.clip(rgb, 0, 1) * 255)).save(tmp, format="JPEG", quality=90)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        paths.append(path)
        labels.append(int(label))
    return paths, np.asarray(labels, dtype=np.int64)


class PhotoLoader:
    """The demo's loader: decode each JPEG and augment it into a ``(n, 32, 32, 3)`` float32 batch.

    With ``augment=True`` (training) each image is rotated by up to 15 degrees, a
    random square of 80-100% of its side is cropped and resized to the model's
    size, and its brightness and contrast are jittered, drawn from the ``rng``
    awkgen passes (the same batches on every run and backend). With
    ``augment=False`` (evaluation) the whole image is resized. ``latency_ms``
    sleeps that long per file first, as slow storage would. A module-level class,
    so the process backend pickles it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths, labels = digit_photos_on_disk(folder, size=48)
    ...     batch = PhotoLoader()(paths[:3], rng=np.random.default_rng(0))
    ...     plain = PhotoLoader(augment=False)(paths[:3])
    >>> batch.shape, batch.dtype.name, plain.shape
    ((3, 32, 32, 3), 'float32', (3, 32, 32, 3))
    """

    def __init__(self, size: int = MODEL_SIZE, augment: bool = True, latency_ms: float = 0.0) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0; received: {latency_ms!r}")
        self.size: int = size
        self.augment: bool = augment
        self.latency_ms: float = float(latency_ms)

    def __call__(self, paths: Sequence[str], rng: np.random.Generator | None = None) -> np.ndarray:
        from PIL import Image

        if self.latency_ms:
            time.sleep(self.latency_ms * len(paths) / 1e3)
        rng = rng if rng is not None else np.random.default_rng(0)
        out = np.empty((len(paths), self.size, self.size, 3), dtype=np.float32)
        for i, path in enumerate(paths):
            with Image.open(path) as image:
                image = image.convert("RGB")
            side = image.width
            box: tuple[float, float, float, float] = (0, 0, side, side)
            if self.augment:
                image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
                crop = int(side * rng.uniform(0.8, 1.0))
                x, y = rng.integers(0, side - crop + 1, size=2)
                box = (int(x), int(y), int(x) + crop, int(y) + crop)
            pixels = np.asarray(image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box),
                                dtype=np.float32) / 255
            if self.augment:
                mean = pixels.mean()
                pixels = (pixels - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.1, 0.1)
            out[i] = pixels
        return out

    def __repr__(self) -> str:
        return f"PhotoLoader(size={self.size}, augment={self.augment}, latency_ms={self.latency_ms})"


@dataclass(frozen=True)
class EpochTiming:
    """One training epoch through one generator: wall time and the time the loop waited for data."""

    label: str
    wall_s: float
    wait_s: float
    batches: int


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` measured: the accuracy, and the compared epochs, in the order they ran."""

    accuracy: float
    n_train: int
    n_test: int
    epochs: int
    blocking: tuple[EpochTiming, ...]
    prefetching: tuple[EpochTiming, ...]

    @property
    def saved_s(self) -> float | None:
        """Seconds per epoch prefetching saved (the medians' difference), or ``None`` when the
        measurements cannot stand behind a saving (see :func:`compare`)."""
        return compare([t.wall_s for t in self.blocking], [t.wall_s for t in self.prefetching])[0]


def compare(blocking_s: Sequence[float], prefetching_s: Sequence[float]) -> tuple[float | None, str]:
    """What the demo may claim from epoch times taken in turn: ``(saving or None, sentence)``.

    A saving is claimed only if every blocking epoch took longer than every
    prefetching epoch; it is the difference of the medians, and the sentence gives
    the smallest difference too. Otherwise there is no claim, and the sentence says why.

    >>> round(compare([4.0, 4.2, 4.1], [2.0, 2.5, 2.1])[0], 2)
    2.0
    >>> saving, sentence = compare([4.0, 2.4], [2.0, 2.5])
    >>> saving is None, sentence.startswith("no saving this run can stand behind")
    (True, True)
    """
    if not blocking_s or not prefetching_s:
        raise ValueError("compare needs at least one epoch of each")
    b, p = statistics.median(blocking_s), statistics.median(prefetching_s)
    spread = (f"blocking epochs took {min(blocking_s):.2f} to {max(blocking_s):.2f} s, prefetching "
              f"{min(prefetching_s):.2f} to {max(prefetching_s):.2f} s")
    if min(blocking_s) > max(prefetching_s):
        saving = b - p
        return saving, (f"prefetching saved {saving:.2f} s per epoch ({saving / b:.0%} of the blocking epoch's "
                        f"{b:.2f} s; at least {min(blocking_s) - max(prefetching_s):.2f} s in every epoch): {spread}")
    return None, (f"no saving this run can stand behind: {spread}. The ranges overlap: other work on this "
                  "machine moved epoch times by more than prefetching changed them (try again when it is "
                  "quieter, or with more --compare-epochs)")


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


def run_demo(cache_dir: str | None = None, epochs: int = 3, batch_size: int = 64, n_workers: int = 4,
             latency_ms: float = 0.0, holdout: float = 0.2, seed: int = 0, progress: bool = True,
             compare_epochs: int = 3, out: Callable[[str], object] = print) -> DemoResult:
    """Build the data set, train, compare blocking and prefetching, evaluate; see the module docstring.

    Needs ``keras``, a backend (JAX by default), ``scikit-learn`` and Pillow
    (``pip install "awkgen[demo]"``). Returns the measurements; everything it prints
    goes through *out*.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; received: {epochs!r}")
    if compare_epochs < 1:
        raise ValueError(f"compare_epochs must be >= 1; received: {compare_epochs!r}")
    cache_dir = cache_dir or default_cache_dir()
    start = time.perf_counter()
    paths, labels = digit_photos_on_disk(cache_dir)
    train_x, train_y, test_x, test_y = split_files(paths, labels, holdout, seed)
    out(f"data set: {len(paths)} digit photos, {PHOTO_SIZE}x{PHOTO_SIZE} JPEG files, in {os.path.abspath(cache_dir)}")
    out(f"loader:   decode, random rotation and crop, resize to {MODEL_SIZE}x{MODEL_SIZE}, brightness and "
        "contrast jitter (Pillow and numpy)")
    out(f"          {len(train_x)} files to train on, {len(test_x)} held out")
    loader = PhotoLoader(latency_ms=latency_ms)
    if latency_ms:
        out(f"storage:  the loader sleeps {latency_ms:g} ms per file to simulate slow storage "
            "(by default, 0, the loader only reads the files)")

    # Workers start before Keras is imported: the forkserver never sees a framework.
    gen = DataGeneratorMultiProc(loader, train_x, train_y, batch_size=batch_size, n_workers=n_workers,
                                 backend="process", seed=seed)
    blocking: list[EpochTiming] = []
    prefetching: list[EpochTiming] = []
    try:
        keras = _import_keras()
        out(f"model:    a small CNN on Keras {keras.__version__} ({keras.backend.backend()} backend)")
        model = _build_model(keras, seed)
        out(f"training: {epochs} epoch(s) of {len(gen)} batches of {batch_size} from "
            f"DataGeneratorMultiProc(n_workers={n_workers}, backend='process')")
        model.fit(gen, steps_per_epoch=len(gen), epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[_progress_callback(keras, "train", len(gen), progress)])

        out(f"compare:  {compare_epochs} more epoch(s) through each generator, in turn (training continues)")
        with DataGenerator(loader, train_x, train_y, batch_size=batch_size, seed=seed + 1) as blocking_gen:
            for _ in range(compare_epochs):
                blocking.append(_timed_epoch(keras, model, blocking_gen, "DataGenerator (blocking)", progress))
                prefetching.append(_timed_epoch(keras, model, gen, f"DataGeneratorMultiProc({n_workers})",
                                                progress))
        stats = gen.stats()
    finally:
        gen(stop=True)

    accuracy = _accuracy(model, PhotoLoader(augment=False, latency_ms=latency_ms), test_x, test_y, batch_size)
    result = DemoResult(accuracy, len(train_x), len(test_x), epochs, tuple(blocking), tuple(prefetching))
    for timings in (blocking, prefetching):
        label = timings[0].label
        walls = ", ".join(f"{t.wall_s:.2f}" for t in timings)
        waits = ", ".join(f"{t.wait_s:.2f}" for t in timings)
        out(f"          {label:<28} epochs {walls} s; waited for data {waits} s ({timings[0].batches} batches each)")
    out(f"stats:    {stats}")
    _, sentence = compare([t.wall_s for t in blocking], [t.wall_s for t in prefetching])
    out(f"prefetch: {sentence}")
    out(f"accuracy: {accuracy:.3f} on {len(test_x)} held-out files (chance: 0.100)")
    out(f"done in {time.perf_counter() - start:.0f} s")
    return result


# -- internals: everything that touches Keras ------------------------------------------

def _import_keras() -> Any:
    # JAX: the lightest backend that trains this model (awkgen[demo] installs it, not TensorFlow).
    os.environ.setdefault("KERAS_BACKEND", "jax")
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
        keras.Input(shape=(MODEL_SIZE, MODEL_SIZE, 3)),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
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
    model.fit(gen, steps_per_epoch=len(gen), epochs=1, shuffle=False, verbose=0,
              callbacks=[_progress_callback(keras, label, len(gen), progress)])
    wall = time.perf_counter() - start
    after = gen.stats()
    return EpochTiming(label, wall, after.wait_s - before.wait_s, after.batches - before.batches)


def _accuracy(model: Any, loader: PhotoLoader, paths: list[str], labels: np.ndarray, batch_size: int) -> float:
    batch_size = min(batch_size, len(paths))
    correct = 0
    with DataGenerator(loader, paths, labels, batch_size=batch_size, shuffle=False) as gen:
        for x, y in gen.one_epoch():
            predicted = np.asarray(model.predict_on_batch(x)).argmax(axis=-1)
            correct += int((predicted == y).sum())
    return correct / len(paths)
