"""PNG files of every colour type and bit depth, written byte by byte, and what R's ``png::readPNG`` returns.

Pillow cannot write most of these (16-bit RGB, RGBA and grey+alpha, 2- and 4-bit grey, a
``tRNS`` chunk on 16-bit files), so :func:`encode` writes the chunks itself (PNG spec:
IHDR, PLTE, tRNS, one IDAT of filter-0 rows, IEND). :func:`expected` is ``readPNG``'s array
for such a file, from the PNG specification and libpng's documented transformations
(checked against real R by ``make r-compat``): samples over ``2**bit_depth - 1`` after
libpng expands 1/2/4-bit grey to 8 bits, a palette looked up, a ``tRNS`` chunk turned into
an alpha channel. Used by tests/test_images.py and tools/rcompat/.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
CHANNELS = {GREY: 1, RGB: 3, PALETTE: 1, GREY_ALPHA: 2, RGBA: 4}


@dataclass(frozen=True)
class Case:
    """One file: its samples (h, w, channels stored), header fields and optional PLTE/tRNS contents."""

    name: str
    samples: np.ndarray
    colour_type: int
    bit_depth: int
    palette: np.ndarray | None = None  # (entries, 3) uint8
    trns: tuple[int, ...] | None = None  # grey: (value,); RGB: (r, g, b); palette: one alpha per entry


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode(case: Case) -> bytes:
    """The PNG file's bytes."""
    samples = np.asarray(case.samples)
    height, width, channels = samples.shape
    assert channels == CHANNELS[case.colour_type]
    if case.bit_depth < 8:
        per_byte = 8 // case.bit_depth
        rows = []
        for row in samples[:, :, 0].astype(np.uint8):
            padded = np.zeros(-(-width // per_byte) * per_byte, dtype=np.uint8)
            padded[:width] = row
            groups = padded.reshape(-1, per_byte)
            shifts = np.arange(per_byte - 1, -1, -1) * case.bit_depth
            rows.append((groups << shifts).sum(axis=1).astype(np.uint8).tobytes())
    elif case.bit_depth == 8:
        rows = [row.astype(np.uint8).tobytes() for row in samples.reshape(height, -1)]
    else:
        rows = [row.astype(">u2").tobytes() for row in samples.reshape(height, -1)]
    raw = b"".join(b"\x00" + row for row in rows)
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, case.bit_depth, case.colour_type, 0, 0, 0))]
    if case.palette is not None:
        chunks.append(_chunk(b"PLTE", np.asarray(case.palette, dtype=np.uint8).tobytes()))
    if case.trns is not None:
        if case.colour_type == PALETTE:
            chunks.append(_chunk(b"tRNS", bytes(case.trns)))
        else:
            chunks.append(_chunk(b"tRNS", struct.pack(f">{len(case.trns)}H", *case.trns)))
    chunks.append(_chunk(b"IDAT", zlib.compress(raw)))
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def expected(case: Case) -> np.ndarray:
    """``png::readPNG(file)`` as an array (h, w, c) of float64 (R gives a matrix for one channel)."""
    samples = np.asarray(case.samples).astype(np.int64)
    if case.colour_type == PALETTE:
        assert case.palette is not None
        colours = np.asarray(case.palette, dtype=np.float64)[samples[:, :, 0]] / 255
        if case.trns is None:
            return colours
        alpha = np.full(len(case.palette), 255.0)
        alpha[:len(case.trns)] = case.trns
        return np.concatenate([colours, alpha[samples[:, :, 0]][:, :, None] / 255], axis=2)
    if case.bit_depth < 8:  # libpng expands to 8 bits (v * 255 / (2**b - 1), exact), then R divides by 255
        values = (samples * (255 // (2**case.bit_depth - 1))) / 255
    else:
        values = samples / (2**case.bit_depth - 1)
    if case.trns is None:
        return values
    opaque = np.any(samples != np.asarray(case.trns), axis=2, keepdims=True)
    return np.concatenate([values, opaque.astype(np.float64)], axis=2)


def cases(seed: int = 0, height: int = 5, width: int = 7) -> list[Case]:
    """Every colour type at every bit depth it allows, with and without tRNS where allowed; random samples."""
    rng = np.random.default_rng(seed)
    out = []

    def draw(depth: int, channels: int) -> np.ndarray:
        return rng.integers(0, 2**depth, (height, width, channels))

    for depth in (1, 2, 4, 8, 16):
        samples = draw(depth, 1)
        out.append(Case(f"grey{depth}", samples, GREY, depth))
        out.append(Case(f"grey{depth}_trns", samples, GREY, depth, trns=(int(samples[0, 0, 0]),)))
        entries = 2 ** min(depth, 8)
        if depth <= 8:
            palette = rng.integers(0, 256, (entries, 3))
            out.append(Case(f"palette{depth}", samples, PALETTE, depth, palette=palette))
            alphas = tuple(int(a) for a in rng.integers(0, 256, max(1, entries // 2)))  # a short tRNS: the rest opaque
            out.append(Case(f"palette{depth}_trns", samples, PALETTE, depth, palette=palette, trns=alphas))
    for depth in (8, 16):
        rgb = draw(depth, 3)
        out.append(Case(f"rgb{depth}", rgb, RGB, depth))
        out.append(Case(f"rgb{depth}_trns", rgb, RGB, depth, trns=tuple(int(v) for v in rgb[0, 0])))
        out.append(Case(f"grey_alpha{depth}", draw(depth, 2), GREY_ALPHA, depth))
        out.append(Case(f"rgba{depth}", draw(depth, 4), RGBA, depth))
    return out
