"""Image files to arrays: the R package's ``LoadImage``/``LoadImageBatch``/``LoadPNG*`` and ``EstimateMem``.

:func:`load_image_batch` is a ready-made loader: it takes a batch of ids where each id
is one image file, or a list of files concatenated along channels (R's per-channel
files: ``["r.png", "g.png", "b.png"]``), and returns one array ``(n, h, w, c)`` (or
``(n, c, h, w)`` with ``channel_last=False``). PNG files are decoded by libpng through
imagecodecs, exactly as R's ``png::readPNG`` decodes them; other formats by Pillow;
or every file by your own *reader* (R's ``loader``). Both decoders come with the
``images`` extra and are imported when the first file is read.

Pixels: a float *dtype* (the default, ``float32``) gives values scaled to [0, 1] by
the image's bit depth, as ``png::readPNG`` (``float64`` gives its values exactly); an
integer *dtype* gives the stored 8- or 16-bit samples. Channels: grey gives
``c == 1``, grey+alpha 2, RGB 3, RGBA 4; a palette becomes RGB, and a ``tRNS``
chunk an alpha channel (:func:`read_image` has the details).

The batch is built with :func:`awkgen.empty`: on the process backend each image is decoded,
resized (8-bit grey, RGB and RGBA in Pillow, before it becomes an array) and converted to
*dtype* straight into the batch's shared-memory slot, one numpy pass from the decoder's 8- or
16-bit pixels (no float temporaries), and the batch reaches the training loop without a copy;
anywhere else it is an ordinary array. A loader that returns a *new* array computed from the
batch (``x * 2``, an augmentation) leaves the decoded batch in the slot as scratch, and slots
grow to hold both (no copy, twice the shared memory); transforming it in place (``x *= 2``)
keeps one batch per slot.

Every image of a batch must have the same height and width, else ``ValueError``
names the file and both sizes; pass ``size=(h, w)`` to resize instead. The functions
live at module level, so they pickle by reference and work as a loader on every
backend, alone or through ``functools.partial``::

    gen = awkgen.DataGeneratorMultiProc(functools.partial(load_image_batch, size=(64, 64)), paths, labels,
                                        batch_size=32)

>>> import tempfile, os
>>> from PIL import Image
>>> with tempfile.TemporaryDirectory() as folder:
...     paths = []
...     for i in range(3):
...         paths.append(os.path.join(folder, f"{i}.png"))
...         Image.new("L", (5, 4), color=51 * i).save(paths[-1])
...     batch = load_image_batch(paths)
...     rgb = load_image_batch([paths[:3]], dtype="uint8")  # three files as the channels of one image
>>> batch.shape, batch.dtype, batch[:, 0, 0, 0].tolist()
((3, 4, 5, 1), dtype('float32'), [0.0, 0.20000000298023224, 0.4000000059604645])
>>> rgb.shape, rgb[0, 0, 0].tolist()
((1, 4, 5, 3), [0, 51, 102])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

import numpy as np

from ._checks import is_int
from .transport import empty

__all__ = ["load_image", "load_image_batch", "estimate_mem", "read_image"]

PathLike = Union[str, "os.PathLike[str]"]
#: An id of an image batch: one file, or the files whose channels make one image.
ImageId = Union[PathLike, Sequence[PathLike]]
Reader = Callable[[str], np.ndarray]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Pillow mode -> (mode to convert to, or None, and the largest stored value); for files other than PNG
_MODES: dict[str, tuple[str | None, float]] = {
    "1": ("L", 255.0), "L": (None, 255.0), "LA": (None, 255.0), "RGB": (None, 255.0), "RGBA": (None, 255.0),
    "P": ("RGB", 255.0), "PA": ("RGBA", 255.0), "CMYK": ("RGB", 255.0), "YCbCr": ("RGB", 255.0),
    "LAB": ("RGB", 255.0), "HSV": ("RGB", 255.0), "La": ("LA", 255.0), "RGBa": ("RGBA", 255.0),
    "I;16": (None, 65535.0), "I;16L": (None, 65535.0), "I;16B": (None, 65535.0), "I;16N": (None, 65535.0),
    "I": (None, 65535.0),  # 16-bit TIFFs open as "I"; values beyond 65535 are not scaled down
    "F": (None, 1.0),
}


#: Modes :func:`_resize` resizes as Pillow images of that very mode (8-bit grey, RGB, RGBA).
_RESIZED_AS_IS = ("L", "RGB", "RGBA")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError('awkgen.images decodes files other than PNG, and resizes, with Pillow, which is not '
                          'installed: pip install "awkgen[images]" (or pass reader=)') from exc
    return Image


def _png_decode() -> Callable[[bytes], np.ndarray]:
    try:
        from imagecodecs import png_decode
    except ImportError as exc:
        raise ImportError('awkgen.images decodes PNG files with imagecodecs (libpng, as png::readPNG), which is '
                          'not installed: pip install "awkgen[images]" (or pass reader=)') from exc
    decode: Callable[[bytes], np.ndarray] = png_decode
    return decode


def read_image(path: PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode one file: ``(pixels (h, w, c), the largest value its bit depth can store)``.

    PNG files (told by their signature, whatever their name) are decoded by libpng
    through imagecodecs with the transformations R's ``png::readPNG`` asks of libpng,
    so that ``pixels / peak`` is ``readPNG``'s array value for value, for every colour
    type and bit depth: grey of 1, 2 or 4 bits is expanded to 8 (a 2-bit 1 reads 85,
    1/3 of 255), a palette to RGB, a ``tRNS`` chunk to an alpha channel (grey+tRNS
    gives 2 channels, RGB+tRNS and palette+tRNS 4), 16-bit samples stay 16-bit
    (*peak* 65535); ``gAMA`` and ``sBIT`` are not applied, as R. Other formats are
    decoded by Pillow (palette to RGB or RGBA, CMYK and YCbCr to RGB). *size*
    ``(h, w)`` resizes (bilinear, with Pillow) after decoding.

    Args:
        path: The image file.
        size: ``(height, width)`` to resize to, or ``None`` to keep the file's size.

    Returns:
        ``(pixels, peak)``: the stored values as an array ``(h, w, c)``, and the largest
        value the image's bit depth can store (255.0 for 8 bits, 65535.0 for 16).

    Raises:
        ImportError: imagecodecs (PNG) or Pillow (other formats, resizing) is needed
            and not installed (``pip install "awkgen[images]"``).
        OSError: A file cannot be read or decoded (e.g. ``FileNotFoundError``).
    """
    with open(path, "rb") as file:
        data = file.read(len(PNG_SIGNATURE))
        if data == PNG_SIGNATURE:
            data += file.read()
    if data[:8] == PNG_SIGNATURE:
        decode = _png_decode()
        try:
            pixels = decode(data)
        except Exception as exc:  # imagecodecs.PngError (a RuntimeError): a damaged file
            raise OSError(f"Expected {os.fspath(path)!r} to be a PNG file libpng can decode. Received: {exc}") from exc
        peak = 65535.0 if pixels.dtype == np.uint16 else 255.0
    else:
        pixels, peak = _read_pillow(path, size)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if size is not None and pixels.shape[:2] != tuple(size):
        pixels = _resize(pixels, size)
    return pixels, peak


def _read_pillow(path: PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode with Pillow; an 8-bit grey, RGB or RGBA image is resized (*size*) before it
    becomes an array: the same pixels :func:`_resize` gives, without the round trip."""
    image_module = _pillow()
    with image_module.open(path) as image:
        image.load()
        mode = image.mode
        convert_to: str | None
        if mode == "P" and "transparency" in image.info:
            convert_to, peak = "RGBA", 255.0
        else:
            convert_to, peak = _MODES.get(mode, ("RGB", 255.0))
        if convert_to is not None:
            image = image.convert(convert_to)
        if size is not None and image.mode in _RESIZED_AS_IS and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), resample=image_module.Resampling.BILINEAR)
        return np.asarray(image), peak


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with Pillow: 8-bit grey, RGB and RGBA in their own modes, anything else a channel at a time."""
    image_module = _pillow()
    bilinear = image_module.Resampling.BILINEAR
    height, width = size
    channels = pixels.shape[2]
    if pixels.dtype == np.uint8 and channels in (1, 3, 4):
        resized = np.asarray(image_module.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
                             .resize((width, height), resample=bilinear))
        return resized[:, :, None] if resized.ndim == 2 else resized
    planes = [np.asarray(image_module.fromarray(np.ascontiguousarray(pixels[:, :, k], dtype=np.float32))
                         .resize((width, height), resample=bilinear)) for k in range(channels)]
    stacked = np.stack(planes, axis=2)
    if np.issubdtype(pixels.dtype, np.integer):
        limits = np.iinfo(pixels.dtype)
        rounded: np.ndarray = np.clip(np.rint(stacked), limits.min, limits.max).astype(pixels.dtype)
        return rounded
    return stacked.astype(pixels.dtype, copy=False)


def _as_files(item: Any, where: str) -> list[str]:
    if isinstance(item, (str, os.PathLike)):
        return [os.fspath(item)]
    if isinstance(item, bytes):
        return [os.fsdecode(item)]
    if isinstance(item, Iterable):
        files = [os.fspath(f) if isinstance(f, (str, os.PathLike)) else f for f in item]
        if files and all(isinstance(f, str) for f in files):
            return files
    raise TypeError(f"Expected {where} to be a file path or a non-empty list of file paths (one per channel "
                    f"group). Received: {item!r:.100} ({type(item).__name__})")


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(is_int(v) and v >= 1 for v in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"Expected size to be (height, width), two ints >= 1, or None. Received: size={size!r:.100}")


def _write(target: np.ndarray, pixels: np.ndarray, peak: float | None) -> None:
    """Write *pixels* into *target* as its dtype, in one pass: a float dtype is divided by
    *peak* (the bit depth's largest value; ``None``: a reader's values, as they are), an
    integer one takes the stored values. The same numpy operations, in the same type, as
    ``(pixels.astype(dtype) / dtype.type(peak))`` or ``pixels.astype(dtype)``: bit for bit
    the same values, with no temporary array."""
    dtype = target.dtype
    if peak is not None and np.issubdtype(dtype, np.floating):
        np.divide(pixels, dtype.type(peak), out=target, dtype=dtype, casting="unsafe")
    else:
        np.copyto(target, pixels, casting="unsafe")


def load_image(files: ImageId, *, size: tuple[int, int] | None = None, channel_last: bool = True,
               dtype: Any = np.float32, reader: Reader | None = None,
               reader_channel_last: bool = True) -> np.ndarray:
    """One image ``(h, w, c)`` (``(c, h, w)`` if not *channel_last*) from one file or per-channel files.

    R's ``LoadImage``/``LoadPNG``. *files* is a path, or a list of paths whose
    channels are concatenated in order. *reader* replaces the decoders: a function
    from a path to an array ``(h, w)`` or ``(h, w, c)`` (``(c, h, w)`` with
    ``reader_channel_last=False``), used as is (no scaling, no resizing).

    R's one ``channel_last`` says both what the loader returns and what comes out;
    here *channel_last* says what comes out and *reader_channel_last* what the reader
    returns, so R's ``LoadImage(files, loader, channel_last = FALSE)`` is
    ``load_image(files, reader=loader, channel_last=False, reader_channel_last=False)``
    (R relabels what its loader returns; for several files R's relabelling mixes
    pixels into channels, and here channels are concatenated). R's
    ``ret.flatten = TRUE`` is ``image.ravel(order="F")`` of the ``channel_last`` image
    (R's column-major order: height fastest, channels slowest).

    Args:
        files: One image file, or a list of files whose channels make one image.
        size: ``(height, width)`` to resize every file to, or ``None``.
        channel_last: ``(h, w, c)`` when true, else ``(c, h, w)``.
        dtype: A float type scales values to [0, 1] by the bit depth; an integer type
            keeps the stored values.
        reader: A function from a path to an array, used instead of the decoders.
        reader_channel_last: Whether *reader* returns ``(h, w, c)`` (or ``(h, w)``);
            ``False``: ``(c, h, w)``.

    Returns:
        The image, an array of *dtype*.

    Raises:
        TypeError: *files* is not a path or a non-empty list of paths.
        ValueError: The files' sizes differ (without *size*), *size* is not two ints
            >= 1, or *reader* returned something that is not an image array.
        ImportError: A decoder is needed and not installed (``pip install "awkgen[images]"``).
        OSError: A file cannot be read or decoded (e.g. ``FileNotFoundError``).
    """
    parts = _decode_parts(files, _check_size(size), reader, reader_channel_last, "files")
    height, width = parts[0][0].shape[:2]
    image = np.empty((height, width, sum(p.shape[2] for p, _ in parts)), np.dtype(dtype))
    _fill(image, parts)
    return image if channel_last else np.moveaxis(image, 2, 0)


def _from_reader(reader: Reader, path: str, channel_last: bool) -> np.ndarray:
    pixels = np.asarray(reader(path))
    if pixels.ndim == 2:
        return pixels[:, :, None]
    if pixels.ndim != 3:
        layout = "(h, w) or (h, w, c)" if channel_last else "(c, h, w)"
        raise ValueError(f"Expected reader({path!r}) to return an array {layout}. Received: an array of shape "
                         f"{pixels.shape}")
    return pixels if channel_last else np.moveaxis(pixels, 0, 2)


def _decode_parts(item: Any, size: tuple[int, int] | None, reader: Reader | None, reader_channel_last: bool,
                  where: str) -> list[tuple[np.ndarray, float | None]]:
    """The files of one image, decoded: ``(pixels (h, w, c) as stored, peak)`` each (*peak*
    ``None`` for a reader's arrays), all of one height and width."""
    parts: list[tuple[np.ndarray, float | None]] = []
    shape: tuple[int, int] | None = None
    first = ""
    for path in _as_files(item, where):
        peak: float | None
        if reader is None:
            pixels, peak = read_image(path, size)
        else:
            pixels, peak = _from_reader(reader, path, reader_channel_last), None
        here = (int(pixels.shape[0]), int(pixels.shape[1]))
        if shape is None:
            shape, first = here, path
        elif here != shape:
            raise ValueError(f"Expected the channel files of one image to have one size. Received: {path!r} is "
                             f"{here[0]}x{here[1]} (h x w), {first!r} is {shape[0]}x{shape[1]}")
        parts.append((pixels, peak))
    return parts


def _fill(image: np.ndarray, parts: list[tuple[np.ndarray, float | None]]) -> None:
    """Write the decoded *parts* of one image into *image* ``(h, w, c)``, channels concatenated in order."""
    if len(parts) == 1:
        _write(image, *parts[0])
        return
    start = 0
    for pixels, peak in parts:
        stop = start + pixels.shape[2]
        _write(image[:, :, start:stop], pixels, peak)
        start = stop


def load_image_batch(files: Iterable[ImageId], *, size: tuple[int, int] | None = None,
                     channel_last: bool = True, dtype: Any = np.float32,
                     reader: Reader | None = None, reader_channel_last: bool = True) -> np.ndarray:
    """A batch of images as one array ``(n, h, w, c)`` (``(n, c, h, w)`` if not *channel_last*).

    R's ``LoadImageBatch``/``LoadPNGBatch``, and a ready-made awkgen loader: each item
    of *files* is one image file or a list of files concatenated along channels.
    Images of different sizes raise ``ValueError`` naming the file and both sizes,
    unless *size* ``(h, w)`` asks for every image to be resized to it. See the module
    docstring for *dtype* and channels, :func:`load_image` for *reader* and
    *reader_channel_last*. R's other arguments, as numpy expressions on the
    ``channel_last`` batch ``b`` of shape ``(n, h, w, c)``: ``batch_last = TRUE`` is
    ``numpy.moveaxis(b, 0, -1)``; ``ret.flatten = TRUE`` (R's ``(n, h * w, c)``, pixels
    in column-major order) is ``b.transpose(0, 2, 1, 3).reshape(n, h * w, c)``, and
    with ``batch_last = TRUE`` ``b.transpose(2, 1, 3, 0).reshape(h * w, c, n)``.

    Args:
        files: The batch's ids: each one image file, or a list of per-channel files.
        size: ``(height, width)`` to resize every image to, or ``None``.
        channel_last: ``(n, h, w, c)`` when true, else ``(n, c, h, w)``.
        dtype: As for :func:`load_image`.
        reader: As for :func:`load_image`.
        reader_channel_last: As for :func:`load_image`.

    Returns:
        One array ``(n, h, w, c)`` (or ``(n, c, h, w)``, a view of it) of *dtype*, from
        :func:`awkgen.empty`: in a process worker, carved from the batch's shared-memory slot.

    Raises:
        TypeError: *files* is not a batch of paths (or of per-channel path lists).
        ValueError: The batch is empty, its images differ in channels (or in size,
            without *size*), or an argument is out of range.
        ImportError: A decoder is needed and not installed (``pip install "awkgen[images]"``).
        OSError: A file cannot be read or decoded (e.g. ``FileNotFoundError``).
    """
    checked = _check_size(size)
    dtype = np.dtype(dtype)
    if isinstance(files, (str, bytes, os.PathLike)):
        raise TypeError("Expected files to be a batch: a list of paths (or of per-channel path lists). "
                        f"Received: one path, {files!r:.100}; wrap it in a list")
    items = list(files)
    if not items:
        raise ValueError("Expected files to hold at least one image. Received: an empty batch")
    batch: np.ndarray | None = None
    first_name = ""
    for index, item in enumerate(items):
        parts = _decode_parts(item, checked, reader, reader_channel_last, f"files[{index}]")
        h, w = (int(n) for n in parts[0][0].shape[:2])
        c = sum(int(p.shape[2]) for p, _ in parts)
        if batch is None:
            # Built where the batch goes: in a process worker, the shared-memory slot the
            # parent reads it from (returned as is, it is never copied); elsewhere numpy.empty.
            batch = empty((len(items), h, w, c), dtype)
            first_name = _as_files(item, "")[0]
        elif (h, w, c) != batch.shape[1:]:
            h0, w0, c0 = batch.shape[1:]
            name = _as_files(item, "")[0]
            what = "channels" if (h, w) == (h0, w0) else "size"
            raise ValueError(f"Expected every image of the batch to have one {what}; pass size=(h, w) to resize. "
                             f"Received: {name!r} is {h}x{w}x{c} (h x w x c), {first_name!r} is {h0}x{w0}x{c0}")
        _fill(batch[index], parts)
    assert batch is not None
    return batch if channel_last else np.moveaxis(batch, 3, 1)


_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


def estimate_mem(n: int, h: int, w: int, nch: int, unit: str = "k", dtype: Any = np.float32) -> float:
    """Memory of *n* images of ``h x w x nch`` values of *dtype*, in *unit* (R's ``EstimateMem``).

    As R, only *unit*'s first letter counts, in any case: ``k`` for KiB, ``m`` for
    MiB, ``g`` for GiB (powers of 1024: ``"kilo"``, ``"MB"``, ``"Gigabytes"`` all
    work), anything else bytes. R assumes 8-byte doubles; the default here is
    ``float32``, what :func:`load_image_batch` returns (``dtype="float64"`` gives R's
    figure).

    Args:
        n: Images.
        h: Height of each, in pixels.
        w: Width of each, in pixels.
        nch: Channels of each.
        unit: Its first letter: ``k``, ``m`` or ``g``; anything else is bytes.
        dtype: The type of one value.

    Returns:
        The memory, in *unit*.

    Raises:
        ValueError: A count is not an int >= 0.
        TypeError: *unit* is not a string.

    >>> estimate_mem(1000, 224, 224, 3, unit="m")  # a batch of 1000 float32 RGB images, in MiB
    574.21875
    >>> estimate_mem(1, 8, 8, 1, unit="bytes", dtype="float64")  # R's figure: 8 bytes a value
    512.0
    >>> estimate_mem(1, 8, 8, 1, unit="Kilobytes", dtype="float64")  # R: EstimateMem(1, 8, 8, 1, "Kilobytes")
    0.5
    """
    for name, value in (("n", n), ("h", h), ("w", w), ("nch", nch)):
        if not is_int(value) or value < 0:
            raise ValueError(f"Expected {name} to be an int >= 0. Received: {name}={value!r:.100}")
    if not isinstance(unit, str):
        raise TypeError(f"Expected unit to be a string (its first letter: k, m or g; else bytes). Received: "
                        f"unit={unit!r:.100} ({type(unit).__name__})")
    return float(np.dtype(dtype).itemsize * int(n) * int(h) * int(w) * int(nch)) / _UNITS.get(unit[:1].upper(), 1)
