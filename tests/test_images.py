"""awkgen.images: real image files decoded as R's LoadImage/LoadImageBatch/LoadPNG* (png::readPNG) and EstimateMem.

Every file here is a real file: PNGs of every colour type and bit depth written byte by
byte (tests/pngsuite.py, each checked against real R by ``make r-compat``), and files
Pillow writes (PNG, JPEG); the loader runs in-process and on the thread, process and Ray
backends. Each ``R:`` comment is what R 4.2 with AwkwardMLTools 9edd66c and png 0.1-8 gave.
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
from tests import pngsuite

SUITE = pngsuite.cases()


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


@pytest.mark.parametrize("case", SUITE, ids=[case.name for case in SUITE])
def test_every_png_colour_type_and_bit_depth_reads_as_png_readpng(tmp_path, case):
    path = tmp_path / f"{case.name}.png"
    path.write_bytes(pngsuite.encode(case))
    want = pngsuite.expected(case)  # R's png::readPNG(path), value for value
    got = load_image(path, dtype=np.float64)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(load_image(path), want, rtol=1e-7, atol=0)  # float32, the default
    stored = load_image(path, dtype=np.uint16 if case.bit_depth == 16 else np.uint8)
    np.testing.assert_array_equal(stored, np.rint(want * (65535 if case.bit_depth == 16 else 255)))


def test_sixteen_bit_samples_keep_all_sixteen_bits(tmp_path):
    # R: readPNG gives 0x1234 / 65535 = 0.0711 (not 0x12 / 255 = 0.0706) and 0x00FF / 65535 (not 0)
    samples = np.array([[[0x1234, 0x00FF, 0xFFFF]]])
    path = tmp_path / "deep.png"
    path.write_bytes(pngsuite.encode(pngsuite.Case("deep", samples, pngsuite.RGB, 16)))
    assert load_image(path, dtype=np.float64)[0, 0].tolist() == [0x1234 / 65535, 0x00FF / 65535, 1.0]
    assert load_image(path, dtype=np.uint16)[0, 0].tolist() == [0x1234, 0x00FF, 0xFFFF]


def test_a_trns_chunk_becomes_an_alpha_channel(tmp_path):
    # R: readPNG of a grey file with tRNS has 2 channels, of an RGB file with tRNS 4; alpha 0 where transparent
    grey = np.array([[[3], [7]]])
    path = tmp_path / "t.png"
    path.write_bytes(pngsuite.encode(pngsuite.Case("t", grey, pngsuite.GREY, 8, trns=(7,))))
    assert load_image(path, dtype=np.float64)[0].tolist() == [[3 / 255, 1.0], [7 / 255, 0.0]]
    image = Image.new("RGB", (2, 1), (10, 20, 30))
    image.putpixel((1, 0), (1, 2, 3))
    image.save(tmp_path / "rgb.png", transparency=(1, 2, 3))  # Pillow writes the tRNS chunk, opens it without alpha
    assert load_image(tmp_path / "rgb.png", dtype=np.uint8)[0].tolist() == [[10, 20, 30, 255], [1, 2, 3, 0]]


def test_png_files_are_told_by_their_signature_not_their_name(tmp_path):
    case = SUITE[0]
    (tmp_path / "image.dat").write_bytes(pngsuite.encode(case))
    np.testing.assert_array_equal(load_image(tmp_path / "image.dat", dtype=np.float64), pngsuite.expected(case))
    damaged = pngsuite.encode(case)[:60]
    (tmp_path / "damaged.png").write_bytes(damaged)
    with pytest.raises(OSError, match=r"damaged.png' to be a PNG file libpng can decode"):
        load_image(tmp_path / "damaged.png")


@pytest.mark.parametrize("name", ["grey_alpha8", "rgb16", "grey_alpha16", "grey2_trns"])
def test_resizing_works_for_every_decoded_layout(tmp_path, name):
    case = next(c for c in SUITE if c.name == name)
    path = tmp_path / "x.png"
    path.write_bytes(pngsuite.encode(case))
    full = load_image(path)
    resized = load_image(path, size=(10, 14))
    assert resized.shape == (10, 14, full.shape[2]) and resized.dtype == np.float32
    assert full.min() - 1e-6 <= resized.min() <= resized.max() <= full.max() + 1e-6
    flat = pngsuite.Case("flat", np.full_like(case.samples, 1), case.colour_type, case.bit_depth)
    path.write_bytes(pngsuite.encode(flat))
    want = pngsuite.expected(flat)[:1, :1]
    np.testing.assert_array_equal(load_image(path, size=(3, 4), dtype=np.float64),
                                  np.broadcast_to(want, (3, 4, want.shape[2])))


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


def test_a_reader_replaces_the_decoders_as_rs_loader_argument(tmp_path):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], np.full((3, 3), i, dtype=np.float64))
    batch = load_image_batch(paths, reader=np.load, dtype=np.float64)
    assert batch.shape == (2, 3, 3, 1) and batch[1].max() == 1.0  # used as is: no scaling
    with pytest.raises(ValueError, match=r"reader\(.*\) to return an array \(h, w\) or \(h, w, c\)"):
        load_image_batch(paths, reader=lambda path: np.zeros(3))


def r_array(values, dim):
    """R's array(values, dim): column-major."""
    return np.asarray(values).reshape(dim, order="F")


def chw_reader(path):  # R: function(f) array(seq_len(12) + 100 * k, c(2, 2, 3)), k = 1 for "a", 2 for "b"
    return r_array(np.arange(1, 13) + 100 * {"a": 1, "b": 2}[path], (2, 2, 3))


def test_rs_channel_last_false_is_a_reader_returning_channels_first():
    # R: LoadImage("a", loader, channel_last = FALSE) relabels the loader's (c, h, w) array: the same array
    one = load_image("a", reader=chw_reader, channel_last=False, reader_channel_last=False, dtype=np.int64)
    np.testing.assert_array_equal(one, chw_reader("a"))
    assert load_image("a", reader=chw_reader, reader_channel_last=False).shape == (2, 3, 2)  # (h, w, c) out
    # R: LoadImage(c("a", "b"), loader, channel_last = FALSE)[, 1, 1] is 101 102 103 104, pixel (2, 1) of "a"
    # in channels 3 and 4; its documentation concatenates channels: 101 102 201 202, as here.
    two = load_image(["a", "b"], reader=chw_reader, channel_last=False, reader_channel_last=False, dtype=np.int64)
    assert two.shape == (4, 2, 3) and two[:, 0, 0].tolist() == [101, 102, 201, 202]
    with pytest.raises(ValueError, match=r"to return an array \(c, h, w\)"):
        load_image("a", reader=lambda path: np.zeros((1, 2, 3, 4)), reader_channel_last=False)


def hw_reader(path):  # R: function(f) matrix(seq_len(6) + 100 * k, 2, 3)
    return r_array(np.arange(1, 7) + 100 * {"a": 1, "b": 2}[path], (2, 3))


def test_rs_ret_flatten_is_a_numpy_expression():
    # R: LoadImage(c("a", "b"), loader, ret.flatten = TRUE) is 101:106, 201:206
    image = load_image(["a", "b"], reader=hw_reader, dtype=np.int64)
    assert image.ravel(order="F").tolist() == list(range(101, 107)) + list(range(201, 207))
    # R: LoadImageBatch(list(c("a", "b"), c("b", "a")), loader, 2, 3, 2, ret.flatten = TRUE) has dim 2 6 2,
    # b[1, , 1] = 101:106, b[2, , 1] = 201:206, b[1, , 2] = 201:206, b[2, , 2] = 101:106
    b = load_image_batch([["a", "b"], ["b", "a"]], reader=hw_reader, dtype=np.int64)
    n, h, w, c = b.shape
    flat = b.transpose(0, 2, 1, 3).reshape(n, h * w, c)
    assert flat.shape == (2, 6, 2)
    assert flat[0, :, 0].tolist() == flat[1, :, 1].tolist() == list(range(101, 107))
    assert flat[1, :, 0].tolist() == flat[0, :, 1].tolist() == list(range(201, 207))
    # with batch_last = TRUE: dim 6 2 2, c(b) is 101:106, 201:206, 201:206, 101:106
    last = b.transpose(2, 1, 3, 0).reshape(h * w, c, n)
    assert last.ravel(order="F").tolist() == [*range(101, 107), *range(201, 207), *range(201, 207), *range(101, 107)]
    # batch_last = TRUE without ret.flatten: dim h w c n
    np.testing.assert_array_equal(np.moveaxis(b, 0, -1)[..., 1], b[1])


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


def test_without_a_decoder_the_error_names_the_extra(tmp_path, gray):
    jpeg = write(tmp_path, "a.jpg", np.zeros((4, 4, 3), dtype=np.uint8), format="JPEG")
    for blocked, path in (("imagecodecs", gray[0]), ("PIL", jpeg)):
        code = (f"import sys; sys.modules[{blocked!r}] = None\n"
                "from awkgen.images import load_image_batch\n"
                f"load_image_batch([{path!r}])")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and 'pip install "awkgen[images]"' in done.stderr, done.stderr
    code = f"import sys; sys.modules['PIL'] = None\nfrom awkgen.images import load_image\nload_image({gray[0]!r})"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0  # PNG needs no Pillow


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


@pytest.mark.parametrize("channel_last", [True, False])
def test_load_image_batch_decodes_into_the_shared_memory_slot_on_the_process_backend(tmp_path, channel_last):
    """In a process worker, the batch is carved from the batch's slot (awkgen.empty): the
    parent reads it where the pixels were written, no copy (the route says "in-place"); the
    values are the in-process loader's, bit for bit."""
    rng = np.random.default_rng(3)
    paths = [write(tmp_path, f"{i}.jpg", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8), format="JPEG")
             for i in range(16)]
    loader = functools.partial(load_image_batch, size=(64, 64), channel_last=channel_last)  # 196 KiB: a slot
    expected = [loader(paths[i:i + 4]) for i in range(0, 16, 4)] * 2
    with awkgen.DataGeneratorMultiProc(loader, paths, batch_size=4, shuffle=False, n_workers=1, prefetch=2,
                                       backend="process") as gen:
        for want in expected:
            x, = gen()
            assert x.shape == want.shape and x.strides == want.strides
            np.testing.assert_array_equal(x, want)
        routes = dict(gen._executor._routes)  # replies received so far: the batches taken, maybe one prefetched
    # the first batch is pickled (no slot is sized before a first result), every later one in place
    assert routes["blob"] == 1 and routes["in-place"] >= len(expected) - 1 and set(routes) == {"blob", "in-place"}


def test_estimate_mem_follows_r_with_a_dtype():
    # R: 8 bytes per value; the unit's first letter K/M/G in powers of 1024, anything else bytes
    assert estimate_mem(10, 32, 32, 3, unit="k", dtype=np.float64) == 8.0 * 10 * 32 * 32 * 3 / 1024
    assert estimate_mem(10, 32, 32, 3, unit="G", dtype="float64") == 8.0 * 10 * 32 * 32 * 3 / 1024**3
    assert estimate_mem(2, 4, 4, 1, unit="MiB") == 4.0 * 32 / 1024**2  # float32 by default: what awkgen loads
    assert estimate_mem(2, 4, 4, 1, unit="b", dtype=np.uint8) == 32.0
    # R: EstimateMem(1, 8, 8, 1, "kilo") is 0.5, "Gigabytes" is in GiB, "Tera" (and "") is 512 bytes
    assert estimate_mem(1, 8, 8, 1, unit="kilo", dtype=np.float64) == 0.5
    assert estimate_mem(1, 8, 8, 1, unit="Gigabytes", dtype=np.float64) == 512 / 1024**3
    assert estimate_mem(1, 8, 8, 1, unit="Tera", dtype=np.float64) == estimate_mem(1, 8, 8, 1, "", "float64") == 512
    batch = load_image_batch(["a", "b"], reader=lambda path: np.zeros((4, 4)))
    assert estimate_mem(*batch.shape, unit="b") == batch.nbytes
    with pytest.raises(TypeError, match="Expected unit to be a string"):
        estimate_mem(1, 1, 1, 1, unit=1024)
    with pytest.raises(ValueError, match="Expected h to be an int >= 0"):
        estimate_mem(1, 2.5, 1, 1)
