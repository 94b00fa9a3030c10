"""``awkgen demo``: a real Keras model trained from files on disk, through awkgen, beats chance.

The demo imports TensorFlow, whose threads outlive it, so it runs in a child
interpreter; the test waits for it.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

from awkgen.demo import default_cache_dir
from tests.test_cli import run_cli


@pytest.mark.slow
def test_demo_trains_from_files_above_chance_and_prefetching_saves_time(tmp_path, monkeypatch):
    monkeypatch.setenv("AWKGEN_CACHE", str(tmp_path))  # the child writes the files there
    done = run_cli("demo", "--epochs", "1", "--latency-ms", "2", "--workers", "4", "--no-progress", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert len(glob.glob(str(tmp_path / "digits" / "*" / "*.png"))) == 1797  # the files it trained from
    assert "sleeps 2 ms per file to simulate slow storage" in out

    accuracy = float(re.search(r"accuracy: ([0-9.]+) on (\d+) held-out files", out).group(1))
    assert accuracy > 0.6, out  # ten classes: chance is 0.1

    waits = dict(re.findall(r"(DataGenerator \(blocking\)|DataGeneratorMultiProc\(4\)).*?waited for data\s+"
                            r"([0-9.]+) s", out))
    assert set(waits) == {"DataGenerator (blocking)", "DataGeneratorMultiProc(4)"}, out
    assert float(waits["DataGeneratorMultiProc(4)"]) < 0.7 * float(waits["DataGenerator (blocking)"]), out
    assert "prefetch: saved" in out


def test_cache_dir_follows_awkgen_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("AWKGEN_CACHE", raising=False)
    assert default_cache_dir() == os.path.join(".awkgen-cache", "digits")
    monkeypatch.setenv("AWKGEN_CACHE", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "digits")


def test_by_default_the_demo_decodes_real_png_files_and_sleeps_nowhere(tmp_path):
    from PIL import Image

    from awkgen.__main__ import build_parser
    from awkgen.datasets import digits_on_disk
    from awkgen.demo import SlowStorageLoader

    assert build_parser().parse_args(["demo"]).latency_ms == 0.0
    paths, labels = digits_on_disk(tmp_path)
    with Image.open(paths[0]) as image:  # real PNG files, 8-bit grayscale
        assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
    batch = SlowStorageLoader()(paths[:5])  # the demo's loader, default latency: decode only
    assert batch.shape == (5, 8, 8, 1) and batch.dtype.name == "float32"
    assert 0.0 == batch.min() < batch.max() == 1.0
