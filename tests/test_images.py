"""awkgen.images: real image files decoded by Pillow, as R's LoadImage/LoadImageBatch/LoadPNG* and EstimateMem.

Every file here is written by Pillow in a real format (PNG, JPEG) and read back;
the loader runs in-process and as a loader on the thread, process and Ray backends.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import awkgen
from awkgen.images import estimate_mem, load_image, load_image_batch


def write(folder, name, array, mode=None, **save):
    path = os.path.join(folder, name)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **save)
    return path


@pytest.fixture
def gray(tmp_path):
    """Three 4x5 grayscale PNGs, pixel values 0..19 (+ 100 * file number)."""
    return [write(tmp_path, f"g{i}.png", (np.arange(20, dtype=np.uint8).reshape(4, 5) + 100 * i)) for i in range(3)]


def test_grayscale_gives_one_channel_scaled_to_unit_range(gray):
    batch = load_image_batch(gray)
    assert batch.shape == (3, 4, 5, 1) and batch.dtype == np.float32
    expected = np.stack([np.arange(20).reshape(4, 5) + 100 * i for i in range(3)])[..., None] / 255
    np.testing.assert_allclose(batch, expected, rtol=1e-6)
    assert load_image_batch(gray, dtype=np.uint8)[2, 0, 1, 0] == 201  # an integer dtype: the stored values


@pytest.mark.parametrize("mode, channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("1", 1), ("P", 3),
                                            ("CMYK", 3)])
def test_channels_follow_the_image_mode(tmp_path, mode, channels):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = write(tmp_path, f"x.{fmt.lower()}", rgb, mode=mode, format=fmt)
    image = load_image(path)
    assert image.shape == (6, 7, channels) and 0.0 <= image.min() <= image.max() <= 1.0
    if mode == "RGB":
        np.testing.assert_array_equal(load_image(path, dtype=np.uint8), rgb)


def test_a_palette_with_transparency_keeps_its_alpha(tmp_path):
    image = Image.new("P", (3, 2))
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0
    path = os.path.join(tmp_path, "p.png")
    image.save(path, transparency=0)
    assert load_image(path, dtype=np.uint8).shape == (2, 3, 4)


def test_sixteen_bit_png_is_scaled_by_its_depth(tmp_path):
    values = np.array([[0, 1000, 65535]], dtype=np.uint16)
    path = os.path.join(tmp_path, "deep.png")
    Image.fromarray(values).save(path)
    np.testing.assert_allclose(load_image(path)[..., 0], values / 65535, rtol=1e-6)


def test_jpeg_files_decode_too(tmp_path):
    smooth = np.full((16, 16, 3), 120, dtype=np.uint8)
    path = write(tmp_path, "a.jpg", smooth, format="JPEG", quality=95)
    assert np.abs(load_image(path, dtype=np.int16) - 120).max() <= 2


def test_per_channel_files_are_concatenated_in_order(gray):
    batch = load_image_batch([gray, [gray[2], gray[0], gray[1]]], dtype=np.uint8)  # R's per-channel files
    assert batch.shape == (2, 4, 5, 3)
    assert batch[0, 0, 0].tolist() == [0, 100, 200] and batch[1, 0, 0].tolist() == [200, 0, 100]
    ids = np.array([gray, gray[::-1]])  # ids as awkgen hands them over: rows of a 2-d array of paths
    assert load_image_batch(ids, dtype=np.uint8)[1, 0, 0].tolist() == [200, 100, 0]


def test_images_of_one_batch_must_agree_in_channels(gray):
    with pytest.raises(ValueError, match=r"one channels; .* is 4x5x2 \(h x w x c\), .* is 4x5x3"):
        load_image_batch([gray, [gray[2], gray[0]]])


def test_channel_first_layouts(gray):
    batch = load_image_batch([gray, gray[::-1]], channel_last=False, dtype=np.uint8)
    assert batch.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(batch[1, 0], np.asarray(Image.open(gray[2])))
    assert load_image(gray, channel_last=False).shape == (3, 4, 5)


def test_different_sizes_fail_naming_the_file_and_both_sizes_unless_resized(tmp_path, gray):
    big = write(tmp_path, "big.png", np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ValueError) as info:
        load_image_batch([gray[0], big])
    message = str(info.value)
    assert big in message and gray[0] in message and "8x9x1" in message and "4x5x1" in message
    assert "size=(h, w)" in message
    resized = load_image_batch([gray[0], big], size=(6, 7))
    assert resized.shape == (2, 6, 7, 1)
    with pytest.raises(ValueError, match=r"channel files of one image to have one size. Received: .*big.png"):
        load_image([gray[0], big])


def test_a_reader_replaces_pillow_as_rs_loader_argument(tmp_path):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], np.full((3, 3), i, dtype=np.float64))
    batch = load_image_batch(paths, reader=np.load, dtype=np.float64)
    assert batch.shape == (2, 3, 3, 1) and batch[1].max() == 1.0  # used as is: no scaling
    with pytest.raises(ValueError, match=r"reader\(.*\) to return an array \(h, w\) or \(h, w, c\)"):
        load_image_batch(paths, reader=lambda path: np.zeros(3))


@pytest.mark.parametrize("files, error, match", [
    ("one.png", TypeError, "Expected files to be a batch"),
    ([], ValueError, "at least one image"),
    ([3], TypeError, r"Expected files\[0\] to be a file path or a non-empty list of file paths"),
    ([[]], TypeError, r"Expected files\[0\]"),
])
def test_bad_batches_say_what_was_expected(files, error, match):
    with pytest.raises(error, match=match):
        load_image_batch(files)


@pytest.mark.parametrize("size", [(0, 3), (3,), "3x3", (2.0, 3), (True, 3)])
def test_bad_sizes_are_refused(gray, size):
    with pytest.raises(ValueError, match="Expected size to be \\(height, width\\)"):
        load_image_batch(gray, size=size)


def test_a_missing_file_raises_the_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_batch([str(tmp_path / "nope.png")])


def test_without_pillow_the_error_names_the_extra(gray):
    code = ("import sys; sys.modules['PIL'] = None\n"
            "from awkgen.images import load_image_batch\n"
            f"load_image_batch({gray!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and 'pip install "awkgen[images]"' in done.stderr


@pytest.mark.parametrize("backend", ["thread", "process", pytest.param("ray", marks=pytest.mark.ray)])
def test_load_image_batch_is_a_loader_on_every_backend(tmp_path, backend):
    rng = np.random.default_rng(1)
    paths = [write(tmp_path, f"{i}.png", rng.integers(0, 256, (5 + i % 3, 6, 3), dtype=np.uint8))
             for i in range(12)]
    loader = functools.partial(load_image_batch, size=(5, 6))  # pickles by reference: module-level function
    with awkgen.DataGenerator(loader, paths, np.arange(12), batch_size=4, seed=2) as blocking:
        expected = [blocking() for _ in range(6)]
    with awkgen.DataGeneratorMultiProc(loader, paths, np.arange(12), batch_size=4, seed=2, n_workers=2,
                                       backend=backend) as gen:
        for want in expected:
            x, y = gen()
            assert x.shape == (4, 5, 6, 3)
            np.testing.assert_array_equal(x, want[0])
            np.testing.assert_array_equal(y, want[1])


def test_estimate_mem_follows_r_with_a_dtype():
    # R: 8 bytes per value; K/M/G in powers of 1024, anything else bytes
    assert estimate_mem(10, 32, 32, 3, unit="k", dtype=np.float64) == 8.0 * 10 * 32 * 32 * 3 / 1024
    assert estimate_mem(10, 32, 32, 3, unit="G", dtype="float64") == 8.0 * 10 * 32 * 32 * 3 / 1024**3
    assert estimate_mem(2, 4, 4, 1, unit="MiB") == 4.0 * 32 / 1024**2  # float32 by default: what awkgen loads
    assert estimate_mem(2, 4, 4, 1, unit="b", dtype=np.uint8) == 32.0
    batch = load_image_batch(["a", "b"], reader=lambda path: np.zeros((4, 4)))
    assert estimate_mem(*batch.shape, unit="b") == batch.nbytes
    with pytest.raises(ValueError, match="unit"):
        estimate_mem(1, 1, 1, 1, unit="t")
    with pytest.raises(ValueError, match="Expected h to be an int >= 0"):
        estimate_mem(1, 2.5, 1, 1)
