"""The differential oracle: what a backend delivers must be what the serial loader returns.

Three pieces, shared by ``tests/test_fidelity.py`` (trees drawn by hypothesis) and the
stress harness (``tests/stress.py``, trees drawn from a configuration's seed):

- :func:`draw_recipe` draws a *recipe*: plain, picklable data (nested tuples) describing a
  result tree: tuples, lists, dicts, namedtuples and dict subclasses around arrays of every
  kind of dtype (ints, floats with NaN payloads, complex, bool, byte-swapped, datetime,
  unicode, bytes, structured, object), 0-d and empty arrays, Fortran order, transposes,
  strided and reversed views, read-only arrays, the same object twice, and arrays built
  with ``awkgen.empty`` (scratch space, built in another order than returned, views of
  them, results that outgrow the slot). It takes a ``choose(n)`` function (an integer in
  ``[0, n)``), so hypothesis (``st.data()``) and ``random.Random`` drive the same code.
- :class:`TreeLoader` turns the batch's ids (recipes, or ints with a recipe of its own)
  into the tree: a pure function of them, so a serial call gives the expected value.
- :func:`diff` compares an expected tree with a delivered one: the Python type of every
  node, values bit for bit (NaN payloads too), dtype, shape, layout, the write flag and
  aliasing; ``None`` when they agree, else the first difference, with its path.

The promise checked (README, "What a batch is"): on every backend a batch equals the serial
loader's result in all of the above. Layout: a C- or Fortran-ordered array, and any other
dense one, keeps its exact strides; a view with gaps or negative strides arrives dense in
the same axis order. Aliasing: the same array (or list, or dict) twice is one object
again; distinct arrays that overlap in the delivered batch must overlap in the loader's
result too (only arrays built in one ``awkgen.empty`` slot do), so no two arrays of a
batch, or of two batches, ever share memory that the loader did not share.
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

import awkgen

Pair = collections.namedtuple("Pair", "first second")


class Tagged(dict):  # type: ignore[type-arg]
    """A dict subclass: pickled whole (a leaf for awkgen's walkers), its arrays still in shared memory."""


DTYPES = ("<i8", "<i4", "|u1", "<u2", "<f8", "<f4", "<f2", ">f8", ">i4", "<c16", "|b1", "<M8[s]", "<m8[ms]",
          "<U5", "|S3", "|V4", "struct", "object")
LAYOUTS = ("C", "F", "transpose", "step", "reverse", "column", "zero_d", "empty")
Choose = Callable[[int], int]


def draw_recipe(choose: Choose, depth: int = 0, max_bytes: int = 400_000) -> tuple[Any, ...]:
    """A recipe for one result tree. ``choose(n)`` gives an integer in ``[0, n)``."""
    kind = choose(9 if depth < 3 else 3)
    if kind in (0, 1, 2):  # an array (most nodes)
        return _draw_array(choose, max_bytes)
    if kind == 3:
        return ("scalar", choose(6))
    n = choose(4)
    children = tuple(draw_recipe(choose, depth + 1, max_bytes // max(1, n)) for _ in range(n))
    container = ("tuple", "list", "dict", "pair", "tagged")[kind - 4]
    if container == "pair":
        children = (children + (("scalar", 0), ("scalar", 1)))[:2]
    return (container, children, choose(2) == 1)  # built last to first: carved in another order than returned


def _draw_array(choose: Choose, max_bytes: int) -> tuple[Any, ...]:
    dtype = DTYPES[choose(len(DTYPES))]
    layout = LAYOUTS[choose(len(LAYOUTS))]
    scale = (1, 7, 300, 3_000, 30_000)[choose(5)]
    rows = 1 + choose(scale)
    cols = 1 + choose(6)
    itemsize = 16
    rows = max(1, min(rows, max_bytes // (itemsize * cols * 2)))
    readonly = choose(5) == 0
    in_place = dtype != "object" and choose(3) == 0  # built with awkgen.empty
    scratch = choose(4) == 0 and in_place  # awkgen.empty scratch space taken before it
    twice = choose(6) == 0  # the same object returned twice
    return ("array", dtype, layout, rows, cols, readonly, in_place, scratch, twice)


class TreeLoader:
    """Builds the tree of each id's recipe; ids are recipes or ints (``recipe_of`` maps them).

    A batch's result is a tuple of its ids' trees; with ``outgrow``, a scratch array sized
    to overflow the in-place layout comes first (so results outgrow their slot)."""

    def __init__(self, recipe_of: Callable[[Any], Any] | None = None, outgrow: bool = False) -> None:
        self.recipe_of = recipe_of
        self.outgrow = outgrow

    def __call__(self, ids: Any) -> Any:
        items = list(ids)
        if self.outgrow and items:
            salt = _salt(items[0])
            big = awkgen.empty(1 + salt % 60_000)  # scratch that may push the in-place layout out of the slot
            big[:] = 1.5
        trees = []
        for item in items:
            recipe = self.recipe_of(item) if self.recipe_of is not None else item
            trees.append(build(recipe, _salt(item)))
        return tuple(trees)


def _salt(item: Any) -> int:
    return zlib.crc32(repr(item).encode()) & 0x7FFFFFFF


def build(recipe: tuple[Any, ...], salt: int) -> Any:
    """The tree *recipe* describes, its values derived from *salt*: a pure function."""
    built: list[Any] = []
    return _build(recipe, salt, built)


def _build(recipe: tuple[Any, ...], salt: int, built: list[Any]) -> Any:
    kind = recipe[0]
    if kind == "array":
        value = _array(recipe, salt + len(built))
        built.append(value)
        return value
    if kind == "scalar":
        return (salt, float(salt) / 3, f"s{salt}", None, np.float32(salt), b"\x00b")[recipe[1]]
    order = range(len(recipe[1]))
    if len(recipe) > 2 and recipe[2]:
        order = order[::-1]
    made = {i: _build(recipe[1][i], salt * 31 + i, built) for i in order}
    children = [made[i] for i in range(len(recipe[1]))]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "pair":
        return Pair(*children)
    items = {f"k{i}": child for i, child in enumerate(children)}
    return items if kind == "dict" else Tagged(items)


def _fill(base: np.ndarray, salt: int) -> None:
    """Fill *base* (any dtype) with values derived from *salt*: NaN payloads and all."""
    flat = base.reshape(-1)  # base is C-ordered: a view
    n = flat.size
    if not n:
        return
    if base.dtype.hasobject:
        for i in range(n):
            flat[i] = (salt + i, f"o{i}", None, float(i))[i % 4]
        return
    raw = np.frombuffer(np.random.default_rng(salt).bytes(base.nbytes), dtype=np.uint8)
    flat.view(np.uint8)[:] = raw  # every bit pattern: NaNs with payloads, subnormals
    if base.dtype.kind == "b":
        flat.view(np.uint8)[:] &= 1
    elif base.dtype.kind in "Mm":
        flat.view(np.int64)[:] %= 10**12
    elif base.dtype.kind == "U":
        codes = flat.view(np.uint32)
        codes %= 0xD000  # valid code points, below the surrogates
        codes |= 0x20


def _array(recipe: tuple[Any, ...], salt: int) -> Any:
    _, dtype_name, layout, rows, cols, readonly, in_place, scratch, twice = recipe
    dtype = (np.dtype([("i", "<i2"), ("f", ">f8"), ("s", "S2")]) if dtype_name == "struct"
             else np.dtype(dtype_name))
    make = awkgen.empty if in_place else np.empty
    if scratch:
        pad = awkgen.empty(1 + salt % 500)
        pad[:] = 0
    if layout == "zero_d":
        shape: tuple[int, ...] = ()
    elif layout == "empty":
        shape = (0, cols)
    else:
        shape = (rows, cols)
    if layout == "F":
        base = make(shape, dtype, order="F")
        _fill(base.T, salt)  # base.T is C-ordered
        array = base
    else:
        extra = (2 * rows, cols) if layout in ("step", "column") else shape
        if layout == "column":
            extra = (rows, cols + 1)
        base = make(extra, dtype)
        _fill(base, salt)
        if layout == "transpose":
            array = base.T
        elif layout == "step":
            array = base[::2]
        elif layout == "reverse":
            array = base[::-1]
        elif layout == "column":
            array = base[:, 1:]
        else:  # C, zero_d, empty
            array = base
    if readonly:
        array.flags.writeable = False
    return (array, array) if twice else array


# -- the comparison -----------------------------------------------------------------------------

def _is_dense(a: np.ndarray) -> bool:  # the oracle's own, not awkgen.transport's: it checks that code
    span = a.itemsize
    for n, s in zip(a.shape, a.strides):
        if n > 1:
            if s < 0:
                return False
            span += (n - 1) * s
    return span == a.nbytes


def _k_order(a: np.ndarray) -> list[int]:
    return sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    if x.dtype.hasobject:
        return all(diff(a, b) is None for a, b in zip(x.ravel(), y.ravel(), strict=True)) \
            if x.size == y.size else False
    return np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()


def _array_diff(want: np.ndarray, got: Any, path: str) -> str | None:
    if type(got) is not type(want):
        return f"{path}: {type(got).__name__}, expected {type(want).__name__}"
    if got.dtype != want.dtype or got.dtype.str != want.dtype.str or got.dtype.descr != want.dtype.descr:
        return f"{path}: dtype {got.dtype!r}, expected {want.dtype!r}"
    if got.shape != want.shape:
        return f"{path}: shape {got.shape}, expected {want.shape}"
    if got.flags.writeable != want.flags.writeable:
        return f"{path}: writeable={got.flags.writeable}, expected {want.flags.writeable}"
    if want.size:
        if _is_dense(want):
            if (got.flags.c_contiguous, got.flags.f_contiguous) != (want.flags.c_contiguous, want.flags.f_contiguous):
                return f"{path}: C/F-contiguous {got.flags.c_contiguous}/{got.flags.f_contiguous}, expected " \
                       f"{want.flags.c_contiguous}/{want.flags.f_contiguous}"
            if want.size > 1 and [s for n, s in zip(want.shape, want.strides) if n > 1] != \
                    [s for n, s in zip(got.shape, got.strides) if n > 1]:
                return f"{path}: strides {got.strides}, expected {want.strides}"
        elif not want.dtype.hasobject and got.strides != want.strides and (
                not _is_dense(got) or _k_order(got) != _k_order(want)):
            return f"{path}: a view with gaps should arrive dense in its axis order: strides {got.strides} " \
                   f"(the loader's: {want.strides})"
    if not _same_bits(want, got):
        return f"{path}: values differ"
    return None


def diff(want: Any, got: Any, path: str = "batch") -> str | None:
    """``None`` when *got* is what the serial loader returned (*want*), else the first difference."""
    seen_want: dict[int, str] = {}
    seen_got: dict[int, str] = {}
    arrays: list[tuple[np.ndarray, np.ndarray, str]] = []
    problem = _diff(want, got, path, seen_want, seen_got, arrays)
    if problem:
        return problem
    return overlap_diff(arrays)


def _diff(want: Any, got: Any, path: str, seen_want: dict[int, str], seen_got: dict[int, str],
          arrays: list[tuple[np.ndarray, np.ndarray, str]]) -> str | None:
    if type(got) is not type(want):
        return f"{path}: {type(got).__name__}, expected {type(want).__name__}"
    if isinstance(want, (np.ndarray, list, dict)):  # mutable: identity is part of the result
        first_want, first_got = seen_want.get(id(want)), seen_got.get(id(got))
        if first_want != first_got:
            return f"{path}: aliasing differs (the loader's object first seen at {first_want}, " \
                   f"the delivered one at {first_got})"
        if first_want is not None:
            return None
        seen_want[id(want)] = seen_got[id(got)] = path
    if isinstance(want, np.ndarray):
        arrays.append((want, got, path))
        return _array_diff(want, got, path)
    if isinstance(want, (tuple, list)):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for i, (w, g) in enumerate(zip(want, got)):
            problem = _diff(w, g, f"{path}[{i}]", seen_want, seen_got, arrays)
            if problem:
                return problem
        return None
    if isinstance(want, dict):
        if list(got) != list(want):
            return f"{path}: keys {list(got)[:8]}, expected {list(want)[:8]}"
        for key in want:
            problem = _diff(want[key], got[key], f"{path}[{key!r}]", seen_want, seen_got, arrays)
            if problem:
                return problem
        return None
    if isinstance(want, float):
        same = np.float64(want).tobytes() == np.float64(got).tobytes()
    else:
        try:
            same = bool(want == got)
        except Exception:
            same = repr(want) == repr(got)
    return None if same else f"{path}: {got!r:.80}, expected {want!r:.80}"


def overlap_diff(arrays: list[tuple[np.ndarray, np.ndarray, str]]) -> str | None:
    """Delivered arrays that share memory must share it in the loader's result too."""
    distinct = {id(g): (w, g, p) for w, g, p in arrays if g.size}
    items = list(distinct.values())
    if len(items) > 60:  # pairs grow fast; the first 60 arrays are plenty
        items = items[:60]
    for i, (w1, g1, p1) in enumerate(items):
        for w2, g2, p2 in items[i + 1:]:
            if np.shares_memory(g1, g2, max_work=1000) and not np.shares_memory(w1, w2, max_work=1000):
                return f"{p1} and {p2} share memory in the delivered batch but not in the loader's result"
    return None


def arrays_of(value: Any) -> list[np.ndarray]:
    """Every ndarray in *value* (through tuples, lists, dicts and their subclasses)."""
    out: list[np.ndarray] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, np.ndarray):
            out.append(node)
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return out
