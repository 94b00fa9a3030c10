"""The loaders of the stress harness (``tests/stress.py``), in a module of their own.

Worker processes import this module to rebuild a loader, so it stays small (numpy and
the standard library) and importable as ``tests.stress_loaders``: a loader defined in
``tests/stress.py`` would belong to ``__main__`` when the driver runs with ``-m`` and
travel by value instead.

Everything a loader does is a pure function of its :class:`Shape` and the batch's ids
(:func:`plan`): whether the batch raises, kills its worker or outlives the timeout, how
long it takes and how large its result is. The driver calls the same function to know
what each position of the stream must give, and :func:`check_value` to verify a
delivered result: every result encodes the batch's ids and a fill derived from them,
so order, content and slot reuse are all checked.
"""

from __future__ import annotations

import os
import signal
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

import awkgen

MAGIC = 0x5EED_F00D
RESULT_KINDS = ("array", "tuple", "dict", "object", "mixed")
MAX_BYTES = 24 * 2**20  # no result is larger, outliers included


@dataclass(frozen=True)
class Shape:
    """What a stress loader does; the part of a configuration that workers need."""

    salt: int
    host_pid: int  # the driver's child interpreter: a loader never kills it, only workers
    result: str = "array"
    size: int = 64  # bytes of arrays (or of the bytes object) in a result
    growth: int = 0  # bytes added per position of the batch's first sample in the id list
    outlier_every: int = 0  # about one batch in this many is outlier_factor times larger
    outlier_factor: int = 1
    sleep_ms: float = 0.0
    spin: bool = False  # burn the time holding the GIL instead of sleeping
    p_raise: float = 0.0
    p_exit: float = 0.0
    exit_mode: str = "exit"  # "exit": os._exit(17); "sigkill": the worker kills itself
    p_slow: float = 0.0
    slow_s: float = 0.0  # a slow batch's extra time (past the generator's timeout)
    id_offset: int = 0
    id_stride: int = 1
    in_place: bool = False  # build the int64 arrays with awkgen.empty (in the slot, on processes)
    tree: bool = False  # return (value, a random result tree of tests.fidelity), checked against a serial build


@dataclass(frozen=True)
class Plan:
    """What the loader does with one batch."""

    kind: str  # "value", "raise", "exit" (in a worker process only) or "slow"
    sleep_s: float
    nbytes: int
    fill: int


def id_numbers(ids: Any) -> np.ndarray:
    """The batch's ids as int64, whichever form the loader received them in."""
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64)
    return np.asarray([int(i[1:]) if isinstance(i, str) else int(i) for i in ids], dtype=np.int64)


def _unit(raw: bytes, salt: int, k: int) -> float:
    """A uniform number in [0, 1) derived from the ids' bytes, the salt and *k*."""
    return zlib.crc32(raw, (salt * 31 + k * 0x9E3779B1) & 0xFFFFFFFF) / 2**32


def plan(shape: Shape, numbers: np.ndarray) -> Plan:
    raw = numbers.tobytes()
    salt = shape.salt
    if _unit(raw, salt, 1) < shape.p_raise:
        kind = "raise"
    elif _unit(raw, salt, 2) < shape.p_exit:
        kind = "exit"
    elif _unit(raw, salt, 3) < shape.p_slow:
        kind = "slow"
    else:
        kind = "value"
    sleep_s = shape.sleep_ms / 1000 * (0.25 + 1.5 * _unit(raw, salt, 4))
    if kind == "slow":
        sleep_s += shape.slow_s
    nbytes = shape.size
    if shape.growth:
        nbytes += shape.growth * int((numbers.min() - shape.id_offset) // shape.id_stride)
    if shape.outlier_every and _unit(raw, salt, 5) * shape.outlier_every < 1:
        nbytes *= shape.outlier_factor
    fill = zlib.crc32(raw, salt & 0xFFFFFFFF) & 0x7FFFFFFF
    return Plan(kind, sleep_s, min(nbytes, MAX_BYTES), fill)


class StressError(ValueError):
    """What a stress loader raises on the batches it is told to fail."""


class StressLoader:
    """A picklable loader whose behaviour is :func:`plan` of its shape and the ids."""

    def __init__(self, shape: Shape, ids_are_array: bool) -> None:
        self.shape = shape
        self.ids_are_array = ids_are_array

    def __call__(self, ids: Any) -> Any:
        if isinstance(ids, np.ndarray) != self.ids_are_array:
            raise TypeError(f"stress: the loader got {type(ids).__name__} ids, expected "
                            f"{'a numpy array' if self.ids_are_array else 'a list'}")
        numbers = id_numbers(ids)
        step = plan(self.shape, numbers)
        if step.sleep_s:
            if self.shape.spin:
                end = time.perf_counter() + step.sleep_s
                while time.perf_counter() < end:
                    pass
            else:
                time.sleep(step.sleep_s)
        if step.kind == "raise":
            raise StressError(f"stress: batch {numbers.tolist()[:4]} fails on purpose")
        if step.kind == "exit" and os.getpid() != self.shape.host_pid:
            if self.shape.exit_mode == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(17)
        value = make_value(self.shape.result, numbers, step.nbytes, step.fill, self.shape.in_place)
        return (value, tree_for(self.shape.salt, numbers)) if self.shape.tree else value


def tree_for(salt: int, numbers: np.ndarray) -> Any:
    """The oracle's tree for a batch: drawn and built from the salt and the ids alone, so the
    driver builds the same one serially and compares (:func:`tests.fidelity.diff`)."""
    import random

    from tests.fidelity import build, draw_recipe

    seed = zlib.crc32(numbers.tobytes(), salt & 0xFFFFFFFF)
    return build(draw_recipe(random.Random(seed).randrange, max_bytes=200_000), seed)


def _exit_in_worker(host_pid: int, how: str) -> None:
    if os.getpid() != host_pid:
        if how == "raise":
            raise RuntimeError("stress: this loader cannot be rebuilt in a worker")
        os._exit(5)


class DoomedLoader:
    """A loader whose workers never get ready: rebuilding it in a worker process raises
    (``how="raise"``) or exits the process (``how="exit"``)."""

    def __init__(self, host_pid: int, how: str) -> None:
        self.host_pid, self.how = host_pid, how

    def __call__(self, ids: Any) -> Any:
        return np.asarray(id_numbers(ids))

    def __setstate__(self, state: dict[str, Any]) -> None:
        _exit_in_worker(state["host_pid"], state["how"])
        self.__dict__.update(state)


# -- results ------------------------------------------------------------------------------

def _encoded(numbers: np.ndarray, nbytes: int, fill: int, in_place: bool = False) -> np.ndarray:
    n = len(numbers)
    if in_place:
        out = awkgen.empty(max(n + 2, nbytes // 8), dtype=np.int64)
        out.fill(fill)
    else:
        out = np.full(max(n + 2, nbytes // 8), fill, dtype=np.int64)
    out[0], out[1] = MAGIC, n
    out[2:2 + n] = numbers
    return out


def make_value(kind: str, numbers: np.ndarray, nbytes: int, fill: int, in_place: bool = False) -> Any:
    """The result of a batch: its ids and a fill, in a structure of the chosen kind."""
    if kind == "array":
        return _encoded(numbers, nbytes, fill, in_place)
    if kind == "tuple":
        return (_encoded(numbers, nbytes // 2, fill, in_place),
                np.full(nbytes // 2 // 4, fill % 1000, dtype=np.float32))
    if kind == "dict":
        return {"x": _encoded(numbers, nbytes - 256, fill, in_place),
                "meta": {"ids": numbers.tolist(), "tag": "stress"},
                "w": np.full(256, fill % 127, dtype=np.int8), "empty": np.zeros(0)}
    if kind == "object":
        return {"ids": numbers.tolist(), "blob": bytes([fill & 0xFF]) * nbytes}
    if kind == "mixed":
        return [_encoded(numbers, nbytes, fill, in_place), "tag", None, 2.5, tuple(numbers.tolist())]
    raise ValueError(f"unknown result kind {kind!r}")


def _check_encoded(arr: Any, numbers: np.ndarray, fill: int, what: str) -> str | None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
        return f"{what} is not a 1-d int64 array: {type(arr).__name__} {getattr(arr, 'dtype', '')}"
    n = len(numbers)
    if len(arr) < n + 2 or arr[0] != MAGIC or arr[1] != n:
        return f"{what} has a bad header: {arr[:4].tolist()} (expected {n} ids)"
    got = arr[2:2 + n]
    if not np.array_equal(got, numbers):
        return f"{what} holds ids {got.tolist()[:12]}, expected {numbers.tolist()[:12]}"
    rest = arr[2 + n:]
    if rest.size and not (rest == fill).all():
        bad = int(np.flatnonzero(rest != fill)[0])
        return f"{what} is corrupt at element {2 + n + bad} of {len(arr)}: {int(rest[bad])} != fill {fill}"
    return None


def check_value(kind: str, value: Any, numbers: np.ndarray, step: Plan) -> str | None:
    """``None`` when *value* is what the loader returns for *numbers*, else what is wrong."""
    fill = step.fill
    try:
        if kind == "array":
            return _check_encoded(value, numbers, fill, "the array")
        if kind == "tuple":
            if type(value) is not tuple or len(value) != 2:
                return f"expected a 2-tuple, got {type(value).__name__}"
            second = value[1]
            if (not isinstance(second, np.ndarray) or second.dtype != np.float32
                    or second.size != step.nbytes // 2 // 4 or (second.size and not (second == fill % 1000).all())):
                return "the tuple's second array is wrong or corrupt"
            return _check_encoded(value[0], numbers, fill, "the tuple's first array")
        if kind == "dict":
            if type(value) is not dict or set(value) != {"x", "meta", "w", "empty"}:
                return f"expected the dict result, got {type(value).__name__} {sorted(value)[:5]!r}"
            if value["meta"] != {"ids": numbers.tolist(), "tag": "stress"}:
                return f"the dict's meta is {value['meta']!r:.200}"
            w = value["w"]
            if not isinstance(w, np.ndarray) or w.dtype != np.int8 or w.size != 256 or not (w == fill % 127).all():
                return "the dict's 'w' array is wrong or corrupt"
            if not isinstance(value["empty"], np.ndarray) or value["empty"].size != 0:
                return "the dict's empty array is wrong"
            return _check_encoded(value["x"], numbers, fill, "the dict's 'x' array")
        if kind == "object":
            if type(value) is not dict or value.get("ids") != numbers.tolist():
                return f"the object result names ids {str(value.get('ids'))[:80]}, expected {numbers.tolist()[:12]}"
            blob = value["blob"]
            if blob != bytes([fill & 0xFF]) * step.nbytes:
                return f"the object's {len(blob)} bytes are wrong or corrupt (expected {step.nbytes})"
            return None
        if kind == "mixed":
            if type(value) is not list or len(value) != 5 or value[1:4] != ["tag", None, 2.5]:
                return f"the mixed result is {type(value).__name__} {value!r:.120}"
            if value[4] != tuple(numbers.tolist()):
                return "the mixed result's id tuple is wrong"
            return _check_encoded(value[0], numbers, fill, "the mixed result's array")
    except Exception as exc:  # a malformed result: say what, do not crash the driver
        return f"checking the {kind} result raised {type(exc).__name__}: {exc}"
    return f"unknown result kind {kind!r}"
