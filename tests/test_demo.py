"""``awkgen demo``: a real Keras model trained from photos on disk, decoded and augmented in awkgen's
workers, beats chance; the comparison claims a saving only when its epochs stand behind it.

The demo imports Keras and JAX, whose threads outlive it, so it runs in a child
interpreter; the test waits for it.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest

from awkgen.demo import PhotoLoader, compare, default_cache_dir, digit_photos_on_disk
from tests.test_cli import run_cli


@pytest.mark.slow
def test_demo_trains_from_photos_above_chance_and_never_claims_a_saving_it_cannot_show(tmp_path, monkeypatch):
    monkeypatch.setenv("AWKGEN_CACHE", str(tmp_path))  # the child writes the files there
    done = run_cli("demo", "--epochs", "1", "--compare-epochs", "2", "--latency-ms", "2", "--workers", "4",
                   "--no-progress", timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert len(glob.glob(str(tmp_path / "digit-photos" / "*" / "*.jpg"))) == 1797  # the files it trained from
    assert "sleeps 2 ms per file to simulate slow storage" in out
    assert "(jax backend)" in out  # the demo's default backend: no TensorFlow needed

    accuracy = float(re.search(r"accuracy: ([0-9.]+) on (\d+) held-out files", out).group(1))
    assert accuracy > 0.5, out  # ten classes: chance is 0.1

    waits = {label: [float(w) for w in values.split(", ")] for label, values in
             re.findall(r"(DataGenerator \(blocking\)|DataGeneratorMultiProc\(4\)).*?waited for data ([0-9., ]+) s",
                        out)}
    assert set(waits) == {"DataGenerator (blocking)", "DataGeneratorMultiProc(4)"}, out
    assert len(waits["DataGenerator (blocking)"]) == 2, out
    # The blocking loop waits for every load; the workers' loads overlap training.
    assert sum(waits["DataGeneratorMultiProc(4)"]) < 0.7 * sum(waits["DataGenerator (blocking)"]), out
    claim = re.search(r"prefetch: (.*)", out).group(1)
    assert claim.startswith(("prefetching saved ", "no saving this run can stand behind")), out
    assert "saved -" not in claim, out


@pytest.mark.parametrize("blocking, prefetching, saving", [
    ([4.0, 4.2, 4.1], [2.0, 2.5, 2.1], 2.0),  # every blocking epoch slower: the medians' difference
    ([2.4, 4.0], [2.0, 2.5], None),  # overlapping: no claim
    ([1.0, 1.1], [1.4, 1.5], None),  # prefetching slower (a busy machine): never a negative saving
    ([3.0], [2.9], 0.1),
])
def test_a_saving_is_claimed_only_when_every_epoch_stands_behind_it(blocking, prefetching, saving):
    claimed, sentence = compare(blocking, prefetching)
    assert claimed == (saving if saving is None else pytest.approx(saving))
    if saving is None:
        assert sentence.startswith("no saving this run can stand behind") and "saved" not in sentence
    else:
        assert sentence.startswith(f"prefetching saved {saving:.2f} s per epoch")


def test_cache_dir_follows_awkgen_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("AWKGEN_CACHE", raising=False)
    assert default_cache_dir() == os.path.join(".awkgen-cache", "digit-photos")
    monkeypatch.setenv("AWKGEN_CACHE", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "digit-photos")


def test_the_demo_loader_decodes_real_jpeg_photos_and_augments_them_reproducibly(tmp_path):
    from PIL import Image

    from awkgen.__main__ import build_parser

    assert build_parser().parse_args(["demo"]).latency_ms == 0.0
    paths, labels = digit_photos_on_disk(tmp_path)
    assert len(paths) == 1797 and labels[:3].tolist() == [0, 1, 2]
    with Image.open(paths[0]) as image:  # real photos at a realistic size
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (192, 192))
    loader = PhotoLoader()
    first = loader(paths[:5], rng=np.random.default_rng(7))
    assert first.shape == (5, 32, 32, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, loader(paths[:5], rng=np.random.default_rng(7)))  # the rng decides
    assert not np.array_equal(first, loader(paths[:5], rng=np.random.default_rng(8)))  # augmented
    plain = PhotoLoader(augment=False)(paths[:5])
    np.testing.assert_array_equal(plain, PhotoLoader(augment=False)(paths[:5]))


def test_the_demo_and_notebook_extras_are_light():
    """awkgen[demo] trains on Keras with JAX: no TensorFlow; awkgen[notebook] adds imagecodecs and matplotlib."""
    import configparser

    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.cfg"))
    extras = {name: {re.split(r"[<>=!\[ ]", line.strip())[0].lower() for line in value.splitlines() if line.strip()}
              for name, value in config["options.extras_require"].items()}
    assert extras["demo"] == {"keras", "jax", "scikit-learn", "pillow", "tqdm"}
    assert extras["notebook"] == extras["demo"] | {"imagecodecs", "matplotlib"}  # its PNG files: awkgen.images
