"""``make r-compat``: awkgen's R toolkit and generators against real R running AwkwardMLTools.

Builds one R script of calls (PNG files of every colour type and bit depth written by R's
``png`` and by Python; hundreds of random one-hot, indexing and padding cases with edge
cases; generator configurations with ``shuffle=False``), runs it with ``Rscript`` against the
package installed by tools/rcompat/install.sh, reads R's results (tools/rcompat/emit.R) and
compares each with awkgen's. Every case ends in one category:

- ``same``: awkgen gives R's value, in R's order (indices shifted by one);
- ``R error`` / ``R NULL``: R fails or returns NULL where awkgen returns a value (README lists them);
- ``R wrong: ...``: a known R bug (its code contradicts its documentation; README shows each):
  the check proves R's result is exactly the predicted wrong one, and awkgen gives the right one;
- ``DIFF``: anything else. Any DIFF makes the run fail.

Usage: python tools/rcompat/run.py --rlib DIR [--cases 300] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import functools
import operator
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import awkgen  # noqa: E402
from awkgen import classes as C  # noqa: E402
from awkgen import images as I  # noqa: E402
from tests import pngsuite  # noqa: E402

Record = tuple[Any, ...]
Judge = Callable[[Record], str]
SAME = "same"


# ---------------------------------------------------------------- R literals and R's results

def r_int(values: Any) -> str:
    values = [int(v) for v in np.asarray(values).ravel()]
    return f"c({', '.join(f'{v}L' for v in values)})" if values else "integer(0)"


def r_num(values: Any) -> str:
    values = [float(v) for v in np.asarray(values, dtype=float).ravel()]
    return f"c({', '.join(repr(v) for v in values)})" if values else "numeric(0)"


def r_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def r_matrix(table: np.ndarray) -> str:
    return f"matrix({r_int(table.ravel(order='F'))}, nrow = {table.shape[0]}, ncol = {table.shape[1]})"


def read_records(path: Path) -> dict[str, Record]:
    data = path.read_bytes()
    at = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal at
        size = struct.calcsize(fmt)
        out = struct.unpack_from(fmt, data, at)
        at += size
        return out

    def text() -> str:
        nonlocal at
        (length,) = take("<i")
        out = data[at:at + length].decode("utf-8")
        at += length
        return out

    def record() -> tuple[str, Record]:
        name = text()
        (status,) = take("<i")
        if status == 1:
            return name, ("null",)
        if status == 2:
            return name, ("error", text())
        if status == 3:
            (length,) = take("<i")
            return name, ("list", [record()[1] for _ in range(length)])
        (ndim,) = take("<i")
        dims = take(f"<{ndim}i")
        count = int(np.prod(dims)) if ndim else 0
        values = np.array(take(f"<{count}d"), dtype=float).reshape(dims, order="F")
        na = np.array(take(f"<{count}i"), dtype=bool).reshape(dims, order="F")
        return name, ("value", values, na)

    out = {}
    while at < len(data):
        name, rec = record()
        out[name] = rec
    return out


def r_values(rec: Record) -> list[float | None]:
    """An R vector's values, NA as None (flattened in R's order)."""
    values, na = rec[1].ravel(order="F"), rec[2].ravel(order="F")
    return [None if missing else float(v) for v, missing in zip(values, na)]


def one_based(values: Any) -> list[float | None]:
    """awkgen's 0-based indices as R's (-1, awkgen's "none", as NA)."""
    return [None if int(v) == -1 else float(v) + 1 for v in np.asarray(values).ravel()]


def as_floats(values: Any) -> list[float | None]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def equal(a: list[float | None], b: list[float | None]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is None or y is None:
            if x is not y:
                return False
        elif not (x == y or (np.isnan(x) and np.isnan(y))):
            return False
    return True


# ---------------------------------------------------------------- the harness

class Harness:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.checks: list[tuple[str, str, str, Judge]] = []
        self.diffs: list[str] = []

    def r(self, code: str) -> None:
        self.lines.append(code)

    def check(self, group: str, expr: str, judge: Judge) -> None:
        name = f"{group}/{len(self.checks)}"
        self.lines.append(f"rc({r_str(name)}, {expr})")
        self.checks.append((group, name, expr, judge))

    def run(self, rlib: str, workdir: Path) -> dict[str, collections.Counter[str]]:
        script = workdir / "calls.R"
        results = workdir / "results.bin"
        head = [f"suppressMessages(library(AwkwardMLTools, lib.loc = {r_str(rlib)}))",
                f"source({r_str(str(Path(__file__).with_name('emit.R')))})", f"rc_open({r_str(str(results))})"]
        script.write_text("\n".join(head + self.lines + ["close(.rc_con)", ""]), encoding="utf-8")
        done = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=1800)
        if done.returncode:
            sys.exit(f"Rscript failed ({done.returncode}):\n{done.stderr[-4000:]}")
        records = read_records(results)
        tally: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for group, name, expr, judge in self.checks:
            rec = records.get(name, ("missing",))
            try:
                verdict = judge(rec)
            except Exception as exc:  # awkgen raised where R gave a value: a difference
                verdict = f"DIFF: awkgen raised {type(exc).__name__}: {exc}"
            if verdict.startswith("DIFF"):
                self.diffs.append(f"{name}: {verdict:.300} | R: {rec[0]} | call: {expr:.300}")
                verdict = "DIFF"
            tally[group][verdict] += 1
        return tally


def judged(want: Callable[[], list[float | None]], *, error: str | None = None, null_ok: bool = False) -> Judge:
    """R's value must equal want(); R may error (category 'R error: <first words>') or return NULL if allowed."""
    def judge(rec: Record) -> str:
        if rec[0] == "error":
            return f"R error: {error or rec[1][:60]}"
        if rec[0] == "null":
            return "R NULL" if null_ok and want() == [] else "DIFF: R NULL"
        if rec[0] != "value":
            return f"DIFF: R gave {rec[0]}"
        got, expected = r_values(rec), want()
        return SAME if equal(got, expected) else f"DIFF: R {got} awkgen {expected}"
    return judge


# ---------------------------------------------------------------- one-hot and indexing helpers

def random_table(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(0, 10)
    n, c = int(rng.integers(1, 13)), int(rng.integers(1, 7))
    if kind == 0:
        c = 1  # one class
    table = (rng.random((n, c)) < rng.uniform(0.1, 0.7)).astype(np.int64)
    if kind == 1:
        table[:, rng.integers(0, c)] = 0  # an unused class
    if kind == 2:
        table[:] = 0
    return table


def r_setdiff(a: np.ndarray, b: Any) -> np.ndarray:
    """R's setdiff, order kept: the reduce function with an extra argument in the f_reduce cases."""
    a = list(dict.fromkeys(int(v) for v in np.asarray(a)))
    return np.asarray([v for v in a if v not in set(np.atleast_1d(b).tolist())], dtype=np.int64)


def r_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(list(dict.fromkeys([*map(int, a), *map(int, b)])), dtype=np.int64)


def r_intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inb = set(map(int, b))
    return np.asarray([v for v in dict.fromkeys(map(int, a)) if v in inb], dtype=np.int64)


def onehot_cases(h: Harness, rng: np.random.Generator, count: int) -> None:
    h.r("union_drop <- function(a, b, drop) setdiff(union(a, b), drop)")
    for case in range(count):
        table = random_table(rng)
        n, c = table.shape
        m = f"m{case}"
        h.r(f"{m} <- {r_matrix(table)}")
        cls = rng.integers(0, c, int(rng.integers(0, 4)))
        rows = rng.integers(0, n, int(rng.integers(0, 5)))
        # ClassToIdx / IdxToClass, every variant
        h.check("ClassToIdx", f"ClassToIdx({r_int(cls + 1)}, {m})",
                judged(lambda t=table, k=cls: one_based(C.class_to_idx(k, t))))
        h.check("ClassToIdx", f"ClassToIdx({r_int(cls + 1)}, {m}, fast = FALSE)",
                judged(lambda t=table, k=cls: one_based(C.class_to_idx(k, t, fast=False)), null_ok=True))
        h.check("ClassToIdx", f"ClassToIdx({r_int(cls + 1)}, {m}, fast = FALSE, ret.sorted = TRUE)",
                judged(lambda t=table, k=cls: one_based(C.class_to_idx(k, t, fast=False, sort=True)), null_ok=True))
        h.check("ClassToIdx", f"ClassToIdx({r_int(cls + 1)}, {m}, f_reduce = intersect)",
                judged(lambda t=table, k=cls: one_based(C.class_to_idx(k, t, reduce=r_intersect)),
                       error="f_reduce on no class (purrr: empty .x)"))
        drop = int(rng.integers(0, n))
        h.check("ClassToIdx", f"ClassToIdx({r_int(cls + 1)}, {m}, f_reduce = union_drop, drop = {drop + 1}L)",
                judged(lambda t=table, k=cls, d=drop: one_based(C.class_to_idx(k, t, reduce=r_setdiff_union, drop=d)),
                       error="f_reduce on no class (purrr: empty .x)"))

        def idx_to_class_judge(rec: Record, t: np.ndarray = table, r: np.ndarray = rows) -> str:
            if rec[0] == "null":
                return "R NULL" if C.idx_to_class(r, t).size == 0 else "DIFF: R NULL"
            got = r_values(rec)
            if not equal(got, one_based(C.idx_to_class(r, t, fast=False))):
                return "DIFF: not first-seen"
            if equal(got, one_based(C.idx_to_class(r, t))):
                return SAME
            assert equal(sorted(got), one_based(C.idx_to_class(r, t)))  # type: ignore[type-var]
            return "R wrong: IdxToClass unsorted with fast = TRUE"
        h.check("IdxToClass", f"IdxToClass({r_int(rows + 1)}, {m})", idx_to_class_judge)
        h.check("IdxToClass", f"IdxToClass({r_int(rows + 1)}, {m}, ret.sorted = TRUE)",
                judged(lambda t=table, r=rows: one_based(C.idx_to_class(r, t, sort=True)), null_ok=True))
        h.check("IdxToClass", f"IdxToClass({r_int(rows + 1)}, {m}, f_reduce = union)",
                judged(lambda t=table, r=rows: one_based(C.idx_to_class(r, t, reduce=r_union)),
                       error="f_reduce on no index (purrr: empty .x)"))
        # RelatedClass / RelatedIdx
        h.check("RelatedClass", f"RelatedClass({r_int(cls + 1)}, {m}, fast = FALSE)",
                judged(lambda t=table, k=cls: one_based(C.related_class(k, t, fast=False)), null_ok=True))

        def related_class_judge(rec: Record, t: np.ndarray = table, k: np.ndarray = cls) -> str:
            if rec[0] == "null":
                return "R NULL" if C.related_class(k, t).size == 0 else "DIFF: R NULL"
            got, ours = r_values(rec), one_based(C.related_class(k, t))
            if equal(got, ours):
                return SAME
            rows_r = C.class_to_idx(k, t)  # R: IdxToClass(ClassToIdx(cls)) in first-seen order
            if equal(got, one_based(C.idx_to_class(rows_r, t, fast=False))) and equal(sorted(got), ours):  # type: ignore[type-var]
                return "R wrong: IdxToClass unsorted with fast = TRUE"
            return f"DIFF: R {got} awkgen {ours}"
        h.check("RelatedClass", f"RelatedClass({r_int(cls + 1)}, {m})", related_class_judge)
        h.check("RelatedIdx", f"RelatedIdx({r_int(rows + 1)}, {m})",
                judged(lambda t=table, r=rows: one_based(C.related_idx(r, t)), null_ok=True))
        h.check("RelatedIdx", f"RelatedIdx({r_int(rows + 1)}, {m}, fast = FALSE)",
                judged(lambda t=table, r=rows: one_based(C.related_idx(r, t, fast=False)), null_ok=True))
        # CountClass / ScarceClass / DecodeOnehot
        h.check("CountClass", f"CountClass({m})", judged(lambda t=table: as_floats(C.count_class(t))))
        h.check("CountClass", f"CountClass({m}, ret.density = TRUE)",
                judged(lambda t=table: as_floats(C.count_class(t, density=True))))
        threshold = int(rng.integers(0, 5))
        h.check("ScarceClass", f"ScarceClass({threshold}, {m})",
                judged(lambda t=table, th=threshold: one_based(C.scarce_class(th, t))))
        offset = int(rng.integers(-2, 3))

        def decode_judge(rec: Record, t: np.ndarray = table, o: int = offset) -> str:
            ours = C.decode_onehot(t, offset=o - 1)
            if rec[0] != "list" or len(rec[1]) != len(ours):
                return f"DIFF: R {rec[0]}"
            same = all(equal(r_values(r), as_floats(v)) for r, v in zip(rec[1], ours))
            return SAME if same else "DIFF: rows differ"
        h.check("DecodeOnehot", f"DecodeOnehot({m}, {offset}L)", decode_judge)
        # MissingClass
        idx = rng.permutation(n)[:int(rng.integers(0, n + 1))]
        ref = rng.permutation(n)[:int(rng.integers(0, n + 1))]
        h.check("MissingClass", f"MissingClass({r_int(idx + 1)}, {r_int(ref + 1)}, {m})",
                judged(lambda t=table, a=idx, b=ref: one_based(C.missing_class(a, b, t)), null_ok=True))
        swap_case(h, rng, table, m)
    # edge cases: a one-row table, R's NULLs, empty input
    h.r("e1 <- matrix(c(1L, 0L, 1L), nrow = 1)")
    ours = C.missing_class(None, [0], np.array([[1, 0, 1]])).tolist()
    h.check("MissingClass", "MissingClass(NULL, c(1L), e1)", lambda rec: "R wrong: MissingClass(NULL, ref) returns ref"
            if rec[0] == "value" and r_values(rec) == [1.0] and ours == [0, 2] else f"DIFF: {rec}")
    h.check("ClassToIdx", "ClassToIdx(NULL, e1)", judged(lambda: []))
    h.check("IdxToClass", "IdxToClass(NULL, e1)", judged(lambda: []))
    for case in range(count // 3):  # larger tables: several carriers per class, so that swap_ratio counts
        table = (rng.random((int(rng.integers(10, 41)), int(rng.integers(2, 7)))) < rng.uniform(0.05, 0.4)).astype(int)
        h.r(f"s{case} <- {r_matrix(table)}")
        swap_case(h, rng, table, f"s{case}")


def swap_case(h: Harness, rng: np.random.Generator, table: np.ndarray, m: str) -> None:
    n = table.shape[0]
    # SwapMissingClass (swap_random = FALSE: R's sample() cannot be replayed)
    order = rng.permutation(n)
    cut = int(rng.integers(0, n + 1))
    ratio = float(rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 0.9]))
    a, b = order[:cut], order[cut:]

    def swap_judge(rec: Record, t: np.ndarray = table, a: np.ndarray = a, b: np.ndarray = b,
                   ratio: float = ratio) -> str:
        new_a, new_b = C.swap_missing_class(a, b, t, swap_ratio=ratio)
        if rec[0] != "list":
            return f"DIFF: R {rec[0]}"
        ra, rb = rec[1]
        ra_v = [] if ra[0] == "null" else r_values(ra)
        rb_v = [] if rb[0] == "null" else r_values(rb)
        if equal(ra_v, one_based(new_a)) and equal(rb_v, one_based(new_b)):
            return SAME + (", rows moved" if len(new_a) > len(a) else "")
        return \
            f"DIFF: R {ra_v} {rb_v} awkgen {new_a.tolist()} {new_b.tolist()}"
    h.check("SwapMissingClass", f"SwapMissingClass({r_int(a + 1)}, {r_int(b + 1)}, {m}, swap_ratio = {ratio!r})",
            swap_judge)


def r_setdiff_union(a: np.ndarray, b: np.ndarray, drop: int) -> np.ndarray:
    return r_setdiff(r_union(a, b), drop)


def encode_cases(h: Harness, rng: np.random.Generator, count: int) -> None:
    for _case in range(count):
        n = int(rng.integers(1, 8))
        low = int(rng.integers(-2, 3))
        gaps = rng.random() < 0.2
        labels = np.arange(low, low + int(rng.integers(1, 6))) if not gaps else \
            np.unique(rng.integers(low, low + 8, int(rng.integers(2, 5))))
        rows = [np.unique(rng.choice(labels, int(rng.integers(0, 3)))) for _ in range(n)]
        if not any(r.size for r in rows):
            rows[0] = labels[:1]
        flat = np.concatenate(rows)
        variant = int(rng.integers(0, 3))
        as_text = variant == 2  # character labels: "1 2" (R tests only the first item's type)
        items = [" ".join(str(int(v)) for v in r) for r in rows] if as_text else rows
        r_items = ("c(" + ", ".join(r_str(s) for s in items) + ")") if as_text else \
            "list(" + ", ".join(r_int(r) for r in rows) + ")"
        args, kwargs = "", {}
        if variant == 1:
            value_offset = int(rng.integers(-1, 3)) - int(flat.min()) + 1
            nclass = int(flat.max()) + value_offset + int(rng.integers(-1, 2))
            args = f", nclass = {nclass}L, value_offset = {value_offset}L"
            kwargs = {"n_classes": nclass, "offset": value_offset - 1}

        def judge(rec: Record, items: Any = items, kwargs: dict[str, Any] = kwargs, flat: np.ndarray = flat) -> str:
            try:
                ours = C.encode_class_list(items, **kwargs)
            except ValueError:
                if rec[0] == "error":
                    return "R error: labels beyond nclass (subscript out of bounds)"
                offset = kwargs.get("offset", -int(flat.min()))
                if rec[0] == "value" and flat.min() + offset < 0:
                    return "R wrong: a label below column 1 (R drops it, or fills every other column)"
                return f"DIFF: awkgen raised, R {rec[0]}"
            if rec[0] == "error":
                distinct = len(np.unique(flat))
                if "nclass" not in kwargs and "subscript out of bounds" in rec[1] and ours.shape[1] > distinct:
                    return "R error: labels with gaps (nclass defaults to the count of distinct labels)"
                return f"R error: {rec[1][:60]}"
            return SAME if rec[1].shape == ours.shape and np.array_equal(rec[1], ours) else \
                f"DIFF: R {rec[1].tolist()} awkgen {ours.tolist()}"
        h.check("EncodeClassList", f"EncodeClassList({r_items}{args})", judge)


def index_cases(h: Harness, rng: np.random.Generator, count: int) -> None:
    for case in range(count):
        val = np.sort(rng.integers(0, 30, int(rng.integers(0, 15))))
        key = np.sort(rng.integers(-3, 33, int(rng.integers(0 if case % 50 == 0 else 1, 6))))
        strict = bool(rng.integers(0, 2))
        cmpf, r_cmpf = (operator.gt, "`>`") if strict else (operator.ge, "`>=`")
        h.check("FindIdx", f"FindIdx({r_int(val)}, {r_int(key)}, cmpf = {r_cmpf})",
                judged(lambda v=val, k=key, f=cmpf: one_based(C.find_idx(v, k, f)),
                       error="an empty key (iterator_atomic: zero length)"))
        uval = rng.integers(0, 30, int(rng.integers(1, 10)))
        ukey = rng.integers(-3, 33, len(uval) if rng.random() < 0.7 else int(rng.integers(1, 10)))
        # what R documents, written plainly in R
        h.check("FindIdxUnsorted", f"sapply({r_int(ukey)}, function(k) {{ j <- which({r_cmpf}({r_int(uval)}, k)); "
                f"if (length(j)) j[1] else NA_integer_ }})",
                judged(lambda v=uval, k=ukey, f=cmpf: one_based(C.find_idx_unsorted(v, k, f))))

        def unsorted_judge(rec: Record, v: np.ndarray = uval, k: np.ndarray = ukey, f: Any = cmpf) -> str:
            if rec[0] == "error":
                return "R error: val[i] or key[j] past its end (NA in if)"
            swapped = C.find_idx_unsorted(k[:len(v)], v[:len(k)], lambda a, b: f(b, a))  # R's loop: indices swapped
            if not equal(r_values(rec), one_based(swapped)):
                return "DIFF: R's loop is not the documented one with val and key swapped"
            return SAME if equal(r_values(rec), one_based(C.find_idx_unsorted(v, k, f))) else \
                "R wrong: FindIdxUnsorted compares val[i] with key[j]"
        h.check("FindIdxUnsorted", f"FindIdxUnsorted({r_int(uval)}, {r_int(ukey)}, cmpf = {r_cmpf})", unsorted_judge)
        idx = np.sort(rng.choice(40, int(rng.integers(0 if case % 25 == 0 else 1, 8)), replace=False)) + 1
        start, end = int(rng.integers(1, 3)), int(idx.max() + 5 if idx.size else 9)

        def pad_judge(want: Callable[[], list[float | None]], r_short: Callable[[], list[float | None]],
                      what: str) -> Judge:
            def judge(rec: Record) -> str:
                if rec[0] == "error":
                    return f"R error: {what} of no index (mixed subscripts)"
                got, ours = r_values(rec), want()
                if equal(got, ours):
                    return SAME
                if equal(got, r_short()):
                    return f"R wrong: {what} of one or no index"
                return f"DIFF: R {got} awkgen {ours}"
            return judge
        i0 = idx - 1  # awkgen's 0-based indices
        h.check("pad_idx", f"pad_idx_left({r_int(idx)}, start = {start}L)",
                pad_judge(lambda i=i0, s=start: one_based(C.pad_idx_left(i, start=s - 1)),
                          lambda i=idx, s=start: [float(s), float(i[0] + 1)] if len(i) == 1 else [], "pad_idx_left"))
        h.check("pad_idx", f"pad_idx_right({r_int(idx)}, end = {end}L)",
                pad_judge(lambda i=i0, e=end: one_based(C.pad_idx_right(i, end=e - 1)),
                          lambda i=idx, e=end: ([None, float(i[0] - 1), float(e)] if len(i) == 1
                                                else [None, None, float(e)]), "pad_idx_right"))
        h.check("pad_idx", f"pad_idx_right({r_int(idx)})",
                pad_judge(lambda i=i0: one_based(C.pad_idx_right(i)),
                          lambda i=idx: [None, float(i[0] - 1), None] if len(i) == 1 else [None, None, None],
                          "pad_idx_right"))
        h.check("pad_idx", f"pad_idx({r_int(idx)})",
                pad_judge(lambda i=i0: one_based(C.pad_idx(i)),
                          lambda i=idx: [None, float(i[0] - 1)] if len(i) == 1 else [None, None], "pad_idx"))
    for unit in ("k", "K", "kilo", "Kilobytes", "m", "MB", "mega", "g", "Gigabytes", "b", "bytes", "", "Tera", "x"):
        dims = [int(v) for v in rng.integers(0, 300, 4)]
        h.check("EstimateMem", f"EstimateMem({', '.join(map(str, dims))}, unit = {r_str(unit)})",
                judged(lambda d=dims, u=unit: [I.estimate_mem(*d, unit=u, dtype="float64")]))


# ---------------------------------------------------------------- images

def image_cases(h: Harness, rng: np.random.Generator, folder: Path) -> None:
    files: dict[str, Path] = {}
    for case in pngsuite.cases(seed=int(rng.integers(0, 2**31)), height=6, width=5):
        files[case.name] = folder / f"py_{case.name}.png"
        files[case.name].write_bytes(pngsuite.encode(case))
    # R's png writes 8-bit grey, grey+alpha, RGB and RGBA (its only depth), from random values in [0, 1]
    writes = []
    for channels, name in ((0, "r_grey"), (2, "r_grey_alpha"), (3, "r_rgb"), (4, "r_rgba")):
        files[name] = folder / f"{name}.png"
        dims = "6, 5" if channels == 0 else f"6, 5, {channels}"
        writes.append(f"set.seed({len(files)}); png::writePNG(array(runif({6 * 5 * max(channels, 1)}), c({dims})), "
                      f"{r_str(str(files[name]))})")
    subprocess.run(["Rscript", "-e", "; ".join(writes)], check=True, timeout=300)
    for path in files.values():
        h.check("readPNG", f"png::readPNG({r_str(str(path))})",
                lambda rec, p=path: image_judge(rec, I.load_image(p, dtype=np.float64)))
        h.check("LoadPNG", f"LoadPNG({r_str(str(path))})",
                lambda rec, p=path: image_judge(rec, I.load_image(p, dtype=np.float64)))
        h.check("LoadPNG", f"LoadPNG({r_str(str(path))}, ret.flatten = TRUE)",
                lambda rec, p=path: image_judge(rec, I.load_image(p, dtype=np.float64).ravel(order="F")))

        def relabel_judge(rec: Record, p: Path = path) -> str:
            # R's channel_last says what the loader returns; readPNG's (h, w, c) comes back as it is
            ours = I.load_image(p, dtype=np.float64)
            if ours.shape[2] == 1:
                return "R error: channel_last = FALSE on a grey file (dim(matrix)[3] is NA)" if rec[0] == "error" \
                    else f"DIFF: {rec[0]}"
            if image_judge(rec, ours) == SAME:
                return "R: channel_last = FALSE is the loader's layout; readPNG's (h, w, c) comes back unchanged"
            return image_judge(rec, np.moveaxis(ours, 2, 0))
        h.check("LoadPNG", f"LoadPNG({r_str(str(path))}, channel_last = FALSE)", relabel_judge)
    # per-channel files, and batches of them (every file is 6 x 5)
    singles = [p for n, p in files.items() if "grey" in n and "alpha" not in n and "trns" not in n]
    everything = list(files.values())
    by_channels: dict[int, list[Path]] = collections.defaultdict(list)
    for path in everything:
        by_channels[I.load_image(path).shape[2]].append(path)
    for case in range(60):
        pool = everything if case % 10 == 0 else by_channels[int(rng.choice(sorted(by_channels)))]
        group = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(1, 4)))]
        h.check("LoadPNG", f"LoadPNG(c({', '.join(r_str(str(p)) for p in group)}))",
                lambda rec, g=group: mixed_error(rec, g) or image_judge(rec, I.load_image(g, dtype=np.float64)))
        n = int(rng.integers(1, 4))
        nch = int(rng.integers(1, 4))
        batch = [[singles[int(i)] for i in rng.integers(0, len(singles), nch)] for _ in range(n)]
        r_batch = "list(" + ", ".join("c(" + ", ".join(r_str(str(p)) for p in item) + ")" for item in batch) + ")"
        ours = I.load_image_batch(batch, dtype=np.float64)
        hh, ww = ours.shape[1:3]
        h.check("LoadPNGBatch", f"LoadPNGBatch({r_batch}, {hh}L, {ww}L, {nch}L)",
                lambda rec, b=ours: image_judge(rec, b))
        h.check("LoadPNGBatch", f"LoadPNGBatch({r_batch}, {hh}L, {ww}L, {nch}L, batch_last = TRUE)",
                lambda rec, b=ours: image_judge(rec, np.moveaxis(b, 0, -1)))
        h.check("LoadPNGBatch", f"LoadPNGBatch({r_batch}, {hh}L, {ww}L, {nch}L, ret.flatten = TRUE)",
                lambda rec, b=ours: image_judge(rec, b.transpose(0, 2, 1, 3).reshape(len(b), -1, b.shape[3])))
        h.check("LoadPNGBatch", f"LoadPNGBatch({r_batch}, {hh}L, {ww}L, {nch}L, ret.flatten = TRUE, batch_last = TRUE)",
                lambda rec, b=ours: image_judge(rec, b.transpose(2, 1, 3, 0).reshape(-1, b.shape[3], len(b))))
    # a loader that returns (c, h, w): R's channel_last = FALSE
    h.r("chw <- function(f) { x <- png::readPNG(f); if (length(dim(x)) == 2) dim(x) <- c(dim(x), 1); "
        "aperm(x, c(3, 1, 2)) }")

    def chw_reader(path: str) -> np.ndarray:
        return np.moveaxis(I.load_image(path, dtype=np.float64), 2, 0)
    for case in range(30):
        pool = everything if case % 10 == 0 else by_channels[int(rng.choice(sorted(by_channels)))]
        group = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(1, 3)))]
        ours = I.load_image(group, reader=chw_reader, reader_channel_last=False, channel_last=False, dtype=np.float64)

        def chw_judge(rec: Record, g: list[Path] = group, o: np.ndarray = ours) -> str:
            if mixed_error(rec, g):
                return mixed_error(rec, g)
            if image_judge(rec, o) == SAME:
                return SAME
            parts = np.concatenate([chw_reader(str(p)).ravel(order="F") for p in g])
            if len(g) > 1 and image_judge(rec, parts.reshape(o.shape, order="F")) == SAME:
                return "R wrong: channel_last = FALSE mixes the pixels of several files into channels"
            return "DIFF"
        h.check("LoadImage", f"LoadImage(c({', '.join(r_str(str(p)) for p in group)}), chw, channel_last = FALSE)",
                chw_judge)


def mixed_error(rec: Record, group: list[Path]) -> str:
    """R's sapply() gives a list, not a matrix, for files of different channel counts: LoadImage then fails."""
    if rec[0] == "error" and len({I.load_image(p).shape[2] for p in group}) > 1:
        return "R error: per-channel files with different channel counts (sapply gives a list)"
    return ""


def image_judge(rec: Record, ours: np.ndarray) -> str:
    if rec[0] != "value":
        return f"DIFF: R {rec[0]} {rec[1] if len(rec) > 1 else ''}"
    theirs = rec[1]
    if theirs.ndim == 2 and ours.ndim == 3 and ours.shape[2] == 1:  # readPNG: a matrix for one channel
        ours = ours[:, :, 0]
    if theirs.shape != ours.shape:
        return f"DIFF: R shape {theirs.shape}, awkgen {ours.shape}"
    return SAME if np.array_equal(theirs, ours) else f"DIFF: max |R - awkgen| {np.abs(theirs - ours).max():.3g}"


# ---------------------------------------------------------------- generators

def generator_cases(h: Harness, rng: np.random.Generator, count: int) -> None:
    h.r("loader <- function(ids) ids * 10")
    for case in range(count):
        n = int(rng.integers(1, 20))
        batch = int(rng.integers(1, n + 2))
        ids = rng.integers(0, 1000, n)
        cls = rng.integers(0, 5, n) if rng.random() < 0.7 else None
        multi = case % 4 == 3
        workers = int(rng.integers(1, 4))
        calls = 2 * -(-n // batch) + 1
        r_cls = r_int(cls) if cls is not None else "NULL"
        factory = f"DataGeneratorMultiProc(loader, {r_int(ids)}, {r_cls}, {batch}L, n_workers = {workers}L)" \
            if multi else f"DataGenerator(loader, {r_int(ids)}, {r_cls}, {batch}L)"
        name = f"g{case}"
        h.r(f"{name} <- tryCatch(suppressWarnings({factory}), error = function(e) e)")
        h.r(f"{name}_out <- if (inherits({name}, 'error')) structure(conditionMessage({name}), class = 'rc_error') "
            f"else tryCatch(lapply(seq_len({calls}), function(i) {name}()), "
            f"error = function(e) structure(conditionMessage(e), class = 'rc_error'))")
        if multi:
            h.r(f"if (is.function({name})) invisible(try({name}(STOP = TRUE), silent = TRUE))")

        def judge(rec: Record, ids: np.ndarray = ids, cls: Any = cls, batch: int = batch, calls: int = calls,
                  multi: bool = multi, workers: int = workers) -> str:
            loader = functools.partial(np.multiply, 10)
            make = functools.partial(awkgen.DataGeneratorMultiProc, n_workers=workers, backend="thread") if multi \
                else awkgen.DataGenerator
            try:
                gen = make(loader, ids, cls, batch, shuffle=False)
            except ValueError:
                return "R error (awkgen refuses too): batch size larger than sample size" if rec[0] == "error" \
                    else "DIFF: awkgen refused"
            with gen:
                ours = [gen() for _ in range(calls)]
            if rec[0] == "error":
                if batch == len(ids) and batch > 1:
                    return "R error: batch_size == length(sample_ids) ('to' must be a finite number)"
                return f"R error: {rec[1][:60]}"
            for r_call, our in zip(rec[1], ours):
                if r_call[0] != "list" or len(r_call[1]) != len(our):
                    return "DIFF: (x) or (x, y)"
                for r_part, part in zip(r_call[1], our):
                    if not equal(r_values(r_part), as_floats(part)):
                        return f"DIFF: R {r_values(r_part)} awkgen {as_floats(part)}"
            return SAME
        h.check("DataGeneratorMultiProc" if multi else "DataGenerator", f"{name}_out", judge)


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rlib", required=True, help="the R library AwkwardMLTools is installed in")
    parser.add_argument("--cases", type=int, default=300, help="random cases per helper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="a folder to keep the R script, its results and the PNG files in")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="awkgen-rcompat-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        h = Harness()
        image_cases(h, rng, workdir)
        onehot_cases(h, rng, args.cases)
        encode_cases(h, rng, args.cases)
        index_cases(h, rng, args.cases)
        generator_cases(h, rng, args.cases)
        tally = h.run(os.path.abspath(args.rlib), workdir)
    total: collections.Counter[str] = collections.Counter()
    width = max(len(group) for group in tally)
    for group in sorted(tally):
        parts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally[group].items(), key=lambda kv: -kv[1]))
        print(f"{group:<{width}}  {sum(tally[group].values()):>5}  {parts}")
        total.update(tally[group])
    print(f"{'all':<{width}}  {sum(total.values()):>5}  " +
          ", ".join(f"{n} {v}" for v, n in sorted(total.items(), key=lambda kv: -kv[1])))
    for line in h.diffs[:40]:
        print(line)
    if h.diffs:
        print(f"{len(h.diffs)} DIFF: awkgen differs from R beyond R's errors, NULLs and known bugs")
        return 1
    print("no difference beyond R's errors, NULLs and known bugs (README, R users)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
