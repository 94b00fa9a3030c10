"""One-hot tables and index helpers: the R package's ``onehot.R``, ``indexing.R`` and ``discontinuity.R``.

A *one-hot table* has one row per sample and one column per class; a sample may
carry several classes (a multi-hot row). Here, as in R, a *class* in
:func:`class_to_idx` and friends is a column number and an *index* (idx) a row
number; **both are counted from 0 here (R: from 1)**, and so are the indices that
:func:`find_idx` returns and :func:`pad_idx_left` and friends take. Everything else
follows AwkwardMLTools at its newest commit (9edd66c) value for value and in R's
order: ``make r-compat`` runs real R against these functions. Where R's code
contradicts its own documentation, the documented behaviour is kept, and README
(R users) shows the R call, R's result and why it is wrong. :func:`encode_class_list`
builds the table from class labels, with an *offset* that maps labels to columns
(R's ``value_offset`` minus 1).

>>> table = encode_class_list([0, [1, 2], 2, 2])
>>> table
array([[1, 0, 0],
       [0, 1, 1],
       [0, 0, 1],
       [0, 0, 1]])
>>> decode_onehot(table)
[[0], [1, 2], [2], [2]]
>>> class_to_idx([2, 0], table).tolist(), class_to_idx([2, 0], table, fast=False).tolist()  # sorted; first-seen
([0, 1, 2, 3], [1, 2, 3, 0])
>>> idx_to_class([1, 0], table).tolist()
[0, 1, 2]
>>> count_class(table).tolist(), scarce_class(2, table).tolist()
([1, 1, 3], [0, 1])
>>> missing_class([2, 3], [1, 0], table).tolist()  # classes of rows 1 and 0 that rows 2 and 3 lack, in R's order
[1, 0]
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["encode_class_list", "decode_onehot", "class_to_idx", "idx_to_class", "related_class",
           "related_idx", "count_class", "scarce_class", "missing_class", "swap_missing_class",
           "find_idx", "find_idx_unsorted", "pad_idx_left", "pad_idx_right", "pad_idx"]

Reduce = Callable[..., Any]
Compare = Callable[[Any, Any], Any]


def _labels(cls_list: Iterable[Any]) -> list[list[int]]:
    rows = []
    for i, item in enumerate(cls_list):
        if isinstance(item, str):  # R: strsplit(x, " ", fixed = TRUE), then as.integer
            try:
                rows.append([int(part) for part in item.split(" ")] if item else [])
            except ValueError:
                raise ValueError(f"Expected integer class labels separated by single spaces. Received: "
                                 f"cls_list[{i}]={item!r:.100}") from None
            continue
        values = np.atleast_1d(np.asarray(item))
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"Expected integer class labels. Received: cls_list[{i}]={item!r:.100}")
        rows.append([int(v) for v in values.ravel()])
    return rows


def encode_class_list(cls_list: Iterable[Any], n_classes: int | None = None, offset: int | None = None) -> np.ndarray:
    """A one-hot table ``(len(cls_list), n_classes)`` of int64: row *i* is hot at ``cls_list[i] + offset``.

    Each item of *cls_list* is one integer label, a list of labels (a multi-hot row;
    an empty list gives an all-zero row), or a string of labels separated by single
    spaces (``"1 2 3"``, as R reads character labels; ``""`` is an empty row).
    *offset* defaults to ``-min(labels)``, so the smallest label is column 0 (R's
    ``value_offset`` is this plus 1). *n_classes* defaults to the columns the labels
    need; R's default, the number of distinct labels, is the same when the labels
    have no gaps, and R fails with "subscript out of bounds" when they have. A
    label outside ``[0, n_classes)`` after the offset raises ``ValueError`` (R
    silently drops a column 0 and fills every other column for a negative one).

    Args:
        cls_list: One item per sample: an integer label, a list of labels, or a
            string of space-separated labels.
        n_classes: Columns of the table; ``None``: as many as the labels need.
        offset: Added to each label to give its column; ``None``: ``-min(labels)``.

    Returns:
        The table, an int64 array ``(len(cls_list), n_classes)`` of 0 and 1.

    Raises:
        ValueError: A label is not an integer, or falls outside ``[0, n_classes)``
            after the offset.

    >>> encode_class_list([3, 5], offset=-3)
    array([[1, 0, 0],
           [0, 0, 1]])
    >>> encode_class_list(["1 2", "3", ""])  # R: EncodeClassList(c("1 2", "3", ""))
    array([[1, 1, 0],
           [0, 0, 1],
           [0, 0, 0]])
    """
    rows = _labels(cls_list)
    flat = [v for row in rows for v in row]
    if offset is None:
        offset = -min(flat) if flat else 0
    if n_classes is None:
        n_classes = (max(flat) + offset + 1) if flat else 0
    onehot = np.zeros((len(rows), n_classes), dtype=np.int64)
    for i, row in enumerate(rows):
        for label in row:
            column = label + offset
            if not 0 <= column < n_classes:
                raise ValueError(f"Expected labels + offset in [0, n_classes={n_classes}). Received: "
                                 f"cls_list[{i}] has {label} (+ offset {offset} = column {column})")
            onehot[i, column] = 1
    return onehot


def _values(onehot: Any) -> np.ndarray:
    table = np.asarray(onehot)
    if table.ndim != 2:
        raise ValueError(f"Expected onehot to be a 2-d table (samples x classes). Received: shape {table.shape}")
    return table


def _table(onehot: Any) -> np.ndarray:
    hot: np.ndarray = _values(onehot) != 0  # R: as.logical()
    return hot


def decode_onehot(onehot: Any, offset: int = 0) -> list[list[int]]:
    """The labels of each row: its hot columns minus *offset* (the one used to encode; R's ``DecodeOnehot``).

    Args:
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        offset: The offset the table was encoded with.

    Returns:
        One list of labels per row.

    Raises:
        ValueError: *onehot* is not 2-d.

    >>> decode_onehot([[0, 1, 0], [1, 0, 1]], offset=-3)
    [[4], [3, 5]]
    """
    return [[int(c) - offset for c in np.flatnonzero(row)] for row in _table(onehot)]


def _keys(keys: Any, bound: int, what: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray([] if keys is None else keys))
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Expected {what} to be integers. Received: {keys!r:.100}")
    array = array.astype(np.int64).ravel()
    if array.size and (array.min() < 0 or array.max() >= bound):
        raise ValueError(f"Expected {what} in [0, {bound}). Received: {array.tolist()!r:.100}")
    return array


def _which(keys: np.ndarray, table: np.ndarray, values: np.ndarray, reduce: Reduce | None, sort: bool,
           fast: bool, kwargs: dict[str, Any]) -> np.ndarray:
    """R's ``which_onehot`` (and ``ClassToIdx``'s fast path): rows of *table* hot in any key column."""
    if kwargs and reduce is None:
        raise TypeError(f"Expected reduce to be given with arguments for it. Received: reduce=None and "
                        f"{sorted(kwargs)}")
    if reduce is None and fast:
        # R: as.logical(colSums(t(onehot[, cls, drop = FALSE]))): rows whose cells in the key columns sum to nonzero
        return np.flatnonzero(values[:, keys].sum(axis=1) != 0)
    hits = [np.flatnonzero(table[:, k]) for k in keys]
    if not hits:
        return np.zeros(0, dtype=np.int64)
    if reduce is None:
        found = np.concatenate(hits)
        _, first = np.unique(found, return_index=True)
        result = found[np.sort(first)]  # R's unique(): first-seen order
    else:
        result = hits[0]
        for more in hits[1:]:  # purrr::reduce(idx, f_reduce, ...)
            result = reduce(result, more, **kwargs)
        result = np.asarray(result)
    return np.sort(result) if sort else result.astype(np.int64, copy=False)


def class_to_idx(cls: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False, fast: bool = True,
                 **kwargs: Any) -> np.ndarray:
    """Rows hot in any column of *cls* (R's ``ClassToIdx``), sorted; *reduce* replaces the union.

    As R: with ``fast=True`` and no *reduce*, the rows come sorted; with
    ``fast=False`` they come in first-seen order (each class's rows in turn, each row
    once); *reduce* combines the rows of the classes in turn, ``reduce(rows_so_far,
    rows_of_next_class, **kwargs)`` (R's ``purrr::reduce(idx, f_reduce, ...)``).
    ``None`` or an empty *cls* gives no rows (R: ``integer()``, ``NULL`` with
    ``fast=FALSE``, an error with *f_reduce*).

    Args:
        cls: A class (column) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the rows of two classes, e.g. ``np.intersect1d``; ``None``:
            their union.
        sort: Sort the result (R's ``ret.sorted``).
        fast: Without *reduce*: the union, sorted (R's default); ``False``: in
            first-seen order.
        **kwargs: Passed to *reduce* (R's ``...``).

    Returns:
        The rows (sample indices), an int64 array.

    Raises:
        ValueError: A class is outside the table, or *onehot* is not 2-d.
        TypeError: *kwargs* without *reduce*.

    >>> table = encode_class_list([[0, 1], [1], [0]])
    >>> class_to_idx([0, 1], table, reduce=np.intersect1d).tolist()  # rows with both classes
    [0]
    """
    values = _values(onehot)
    return _which(_keys(cls, values.shape[1], "classes (columns)"), values != 0, values, reduce, sort, fast, kwargs)


def idx_to_class(idx: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False, fast: bool = True,
                 **kwargs: Any) -> np.ndarray:
    """Columns hot in any row of *idx* (R's ``IdxToClass``), sorted; *reduce* as in :func:`class_to_idx`.

    With ``fast=True`` and no *reduce* the classes come sorted, as R documents;
    R's code drops that result (a missing ``return``) and always gives first-seen
    order, which ``fast=False`` gives here.

    Args:
        idx: A row (sample index) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the classes of two rows, e.g. ``np.intersect1d``; ``None``:
            their union.
        sort: Sort the result (R's ``ret.sorted``).
        fast: Without *reduce*: the union, sorted; ``False``: in first-seen order
            (what R returns either way).
        **kwargs: Passed to *reduce* (R's ``...``).

    Returns:
        The classes (columns), an int64 array.

    Raises:
        ValueError: A row is outside the table, or *onehot* is not 2-d.
        TypeError: *kwargs* without *reduce*.
    """
    values = _values(onehot).T
    return _which(_keys(idx, values.shape[1], "indices (rows)"), values != 0, values, reduce, sort, fast, kwargs)


def related_class(cls: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False, fast: bool = True,
                  **kwargs: Any) -> np.ndarray:
    """Classes that share a sample with a class of *cls* (R's ``RelatedClass``).

    Args:
        cls: A class (column) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Passed to both lookups, as in :func:`class_to_idx`.
        sort: Sort the result.
        fast: Passed to both lookups (``False``: R's order).
        **kwargs: Passed to *reduce*.

    Returns:
        ``idx_to_class(class_to_idx(cls, ...), ...)``: the classes of every sample that
        carries a class of *cls*.

    Raises:
        ValueError: As :func:`class_to_idx`.
        TypeError: *kwargs* without *reduce*.
    """
    rows = class_to_idx(cls, onehot, reduce, sort, fast, **kwargs)
    return idx_to_class(rows, onehot, reduce, sort, fast, **kwargs)


def related_idx(idx: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False, fast: bool = True,
                **kwargs: Any) -> np.ndarray:
    """Samples that share a class with a sample of *idx* (R's ``RelatedIdx``).

    Args:
        idx: A row (sample index) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Passed to both lookups, as in :func:`class_to_idx`.
        sort: Sort the result.
        fast: Passed to both lookups.
        **kwargs: Passed to *reduce*.

    Returns:
        ``class_to_idx(idx_to_class(idx, ...), ...)``: every sample that carries a class
        of a sample of *idx*.

    Raises:
        ValueError: As :func:`idx_to_class`.
        TypeError: *kwargs* without *reduce*.
    """
    classes = idx_to_class(idx, onehot, reduce, sort, fast, **kwargs)
    return class_to_idx(classes, onehot, reduce, sort, fast, **kwargs)


def count_class(onehot: Any, density: bool = False) -> np.ndarray:
    """Column sums: samples per class for a 0/1 table, or shares of the total with *density* (R's ``CountClass``).

    A table with no hot cell has no shares: *density* gives NaN for each class, as R.

    Args:
        onehot: The one-hot table, samples x classes (any 2-d array).
        density: Return shares that sum to 1 instead of counts.

    Returns:
        One sum per class (int64 for an integer or bool table), or one float share.

    Raises:
        ValueError: *onehot* is not 2-d.

    >>> count_class([[1, 0], [1, 1]], density=True).tolist()
    [0.6666666666666666, 0.3333333333333333]
    >>> count_class([[0, 0]], density=True).tolist()
    [nan, nan]
    """
    values = _values(onehot)
    counts: np.ndarray = values.sum(axis=0)
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        counts = counts.astype(np.int64)
    if density:
        with np.errstate(invalid="ignore", divide="ignore"):
            shares: np.ndarray = counts / counts.sum()
        return shares
    return counts


def scarce_class(threshold: float, onehot: Any) -> np.ndarray:
    """Classes with fewer than *threshold* samples (R's ``ScarceClass``; same argument order).

    Args:
        threshold: The count a class must reach not to be scarce.
        onehot: The one-hot table, samples x classes (any 2-d array).

    Returns:
        The scarce classes (columns), sorted.

    Raises:
        ValueError: *onehot* is not 2-d.
    """
    return np.flatnonzero(count_class(onehot) < threshold)


def missing_class(idx: Any, idx_ref: Any, onehot: Any) -> np.ndarray:
    """Classes present in the rows *idx_ref* but absent from the rows *idx* (R's ``MissingClass``), in R's order.

    The order is R's: the classes of *idx_ref* in first-seen order (its rows in
    turn, each row's classes ascending). ``None`` or an empty *idx* misses every
    class of *idx_ref*; R returns *idx_ref* itself (rows, not classes) for
    ``idx = NULL``, which contradicts its documentation.

    Args:
        idx: The rows to check (e.g. a training split); ``None``: no rows.
        idx_ref: The reference rows (e.g. a validation split).
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).

    Returns:
        The missing classes (columns), an int64 array.

    Raises:
        ValueError: *idx_ref* is ``None``, a row is outside the table, or *onehot*
            is not 2-d.
    """
    if idx_ref is None:
        raise ValueError("Expected idx_ref to be rows of onehot. Received: idx_ref=None")
    table = _table(onehot)
    present = idx_to_class(idx, table)
    reference = idx_to_class(idx_ref, table, fast=False)
    return reference[~np.isin(reference, present)]


def _first_missing(idx: list[int], ref: list[int], table: np.ndarray) -> int | None:
    """``MissingClass(idx, ref, onehot)[1]``, without building the rest of it."""
    if not ref:
        return None
    missing = table[ref].any(axis=0) & ~table[idx].any(axis=0) if idx else table[ref].any(axis=0)
    if not missing.any():
        return None
    rows = table[ref][:, missing]
    first_row = int(np.flatnonzero(rows.any(axis=1))[0])
    return int(np.flatnonzero(missing)[np.flatnonzero(rows[first_row])[0]])


def swap_missing_class(idx: Any, idx_ref: Any, onehot: Any, swap_ratio: float = 0.1,
                       swap_random: bool = False,
                       rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move rows of each class missing from *idx* over from *idx_ref* (R's ``SwapMissingClass``, exactly).

    R's loop: take the first class of :func:`missing_class`; of the *idx_ref* rows
    carrying it (in *idx_ref*'s order), move ``max(floor(carriers * swap_ratio), 1)``
    (the first ones, or random ones drawn from *rng* with *swap_random*) to the end
    of *idx*; drop them from *idx_ref* (which also drops *idx_ref*'s repeats, as R's
    ``setdiff``); recompute the missing classes; repeat until none is missing. No row
    ever moves back. Afterwards *idx* misses none of the classes left in *idx_ref*.
    (R's ``sample()`` draws from ``1:x`` when a class has a single carrier ``x``: a
    row that may not be in *idx_ref* at all. Here the carrier itself moves.)

    Args:
        idx: The rows that should carry every class (e.g. a training split);
            ``None``: no rows.
        idx_ref: The rows to take them from (e.g. a validation split).
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        swap_ratio: The share, in [0, 1) as R, of a missing class's carriers to move.
        swap_random: Move random carriers instead of the first ones.
        rng: Draws the random carriers; ``None``: a fresh ``np.random.default_rng()``.

    Returns:
        The new ``(idx, idx_ref)``, two int64 arrays in R's order.

    Raises:
        ValueError: *swap_ratio* is outside [0, 1), *idx_ref* is ``None``, a row is
            outside the table, or *onehot* is not 2-d.

    >>> table = encode_class_list([0, 0, 1, 0, 1])
    >>> swap_missing_class([0, 1, 3], [4, 2], table)
    (array([0, 1, 3, 4]), array([2]))
    """
    table = _table(onehot)
    if (isinstance(swap_ratio, bool) or not isinstance(swap_ratio, numbers.Real)
            or not 0 <= swap_ratio < 1):
        raise ValueError(f"Expected swap_ratio in [0, 1). Received: swap_ratio={swap_ratio!r:.100}")
    if idx_ref is None:
        raise ValueError("Expected idx_ref to be rows of onehot. Received: idx_ref=None")
    train = [int(i) for i in _keys(idx, table.shape[0], "idx (rows)")]
    ref = [int(i) for i in _keys(idx_ref, table.shape[0], "idx_ref (rows)")]
    rng = rng if rng is not None else np.random.default_rng()
    column = _first_missing(train, ref, table)
    while column is not None:
        carriers = list(dict.fromkeys(i for i in ref if table[i, column]))  # R: intersect(idx_ref, ...)
        k = max(math.floor(len(carriers) * float(swap_ratio)), 1)
        chosen = [int(i) for i in rng.choice(carriers, k, replace=False)] if swap_random else carriers[:k]
        train += chosen
        moved = set(chosen)
        ref = list(dict.fromkeys(i for i in ref if i not in moved))  # R: setdiff(idx_ref, swap_idx)
        column = _first_missing(train, ref, table)
    return np.asarray(train, dtype=np.int64), np.asarray(ref, dtype=np.int64)


def _vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        array = np.atleast_1d(array)
        if array.ndim != 1:
            raise ValueError(f"Expected {name} to be a 1-d sequence. Received: shape {array.shape}")
    return array


def find_idx(val: Any, key: Any, cmpf: Compare = operator.ge) -> np.ndarray:
    """For each key in turn, the next index of *val* whose value passes ``cmpf(value, key)`` (R's ``FindIdx``).

    One pass over *val* (both sorted by *cmpf*): the current key moves on to the
    next one each time a value passes, so no index is given to two keys
    (``find_idx(range(1, 11), [3, 3])`` is ``[2, 3]``; ``numpy.searchsorted`` would give
    ``[2, 2]``). Keys left when *val* runs out get ``-1`` (R: ``NA``). Indices count
    from 0. An empty *key* gives an empty result (R: an error).

    Args:
        val: The values, sorted so that *cmpf* passes from some index on.
        key: The keys, in the same order.
        cmpf: ``cmpf(value, key)`` is true when *value* is found for *key*; R's
            default ``>=``.

    Returns:
        One index per key, an int64 array, ``-1`` where none was found.

    Raises:
        ValueError: *val* or *key* is not 1-d.

    >>> find_idx([1, 4, 4, 9], [2, 4, 5, 10]).tolist()
    [1, 2, 3, -1]
    """
    values, keys = _vector(val, "val"), _vector(key, "key")
    found = np.full(len(keys), -1, dtype=np.int64)
    if not len(keys):
        return found
    k = 0
    for i, value in enumerate(values):
        if cmpf(value, keys[k]):
            found[k] = i
            k += 1
            if k == len(keys):
                break
    return found


def find_idx_unsorted(val: Any, key: Any, cmpf: Compare = operator.ge) -> np.ndarray:
    """For each key, the first index of *val* whose value passes ``cmpf(value, key)`` (R's ``FindIdxUnsorted``).

    What R documents. R's loop compares ``val[i]`` with ``key[j]`` (indices
    swapped): it returns, for the first ``length(key)`` values, the index of the first
    *key* each one passes, and fails when *key* is longer than *val*. ``-1``: no
    value passes (R: ``NA``). Indices count from 0.

    Args:
        val: The values, in any order.
        key: The keys, in any order.
        cmpf: ``cmpf(value, key)`` is true when *value* is found for *key*; R's
            default ``>=``.

    Returns:
        One index per key, an int64 array, ``-1`` where none was found.

    Raises:
        ValueError: *val* or *key* is not 1-d.

    >>> find_idx_unsorted([5, 1, 9], [8, 0]).tolist()  # R: FindIdxUnsorted(c(5, 1, 9), c(8, 0)) is 2 2
    [2, 0]
    """
    values, keys = _vector(val, "val"), _vector(key, "key")
    found = np.full(len(keys), -1, dtype=np.int64)
    for k, wanted in enumerate(keys):
        for i, value in enumerate(values):
            if cmpf(value, wanted):
                found[k] = i
                break
    return found


def _indices(idx: Any) -> np.ndarray:
    array = _vector(idx, "idx")
    if array.size and not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"Expected idx to be numbers. Received: {idx!r:.100}")
    return array if array.size else array.astype(np.int64)


def pad_idx_left(idx: Any, start: int = 0) -> np.ndarray:
    """The first index of each run ending at an index of *idx*: ``[start, *(idx[:-1] + 1)]`` (R's ``pad_idx_left``).

    As long as *idx*. R returns ``c(start, idx[1] + 1)`` for a single index (its
    ``seq.int(n - 1)`` counts down from 1 to 0) and fails for none.

    Args:
        idx: Sorted indices, each the last of a run.
        start: The first index of the first run (R: 1, counted from 1).

    Returns:
        The runs' first indices, as long as *idx*.

    Raises:
        ValueError: *idx* is not a 1-d sequence of numbers.

    >>> pad_idx_left([3, 7, 9]).tolist()
    [0, 4, 8]
    """
    array = _indices(idx)
    if not array.size:
        return array
    return np.concatenate([np.asarray([start], dtype=array.dtype), array[:-1] + 1])


def pad_idx_right(idx: Any, end: int = -1) -> np.ndarray:
    """The last index of each run starting at an index of *idx*: ``[*(idx[1:] - 1), end]`` (R's ``pad_idx_right``).

    As long as *idx*. *end* defaults to ``-1``, the "none" of :func:`find_idx`
    (R: ``NA``). R returns ``c(NA, idx[1] - 1, end)`` for a single index (its
    ``2:n`` counts down) and ``c(NA, NA, end)`` for none.

    Args:
        idx: Sorted indices, each the first of a run.
        end: The last index of the last run.

    Returns:
        The runs' last indices, as long as *idx*.

    Raises:
        ValueError: *idx* is not a 1-d sequence of numbers.

    >>> pad_idx_right([0, 4, 8], end=9).tolist()
    [3, 7, 9]
    """
    array = _indices(idx)
    if not array.size:
        return array
    return np.concatenate([array[1:] - 1, np.asarray([end], dtype=array.dtype)])


def pad_idx(idx: Any) -> np.ndarray:
    """``idx[1:] - 1``: the last index of each run but the last (R's ``pad_idx``).

    One shorter than *idx* (empty for one index or none; R gives ``c(NA, idx[1] - 1)``
    and ``c(NA, NA)`` there).

    Args:
        idx: Sorted indices, each the first of a run.

    Returns:
        The last index of every run but the last.

    Raises:
        ValueError: *idx* is not a 1-d sequence of numbers.

    >>> pad_idx([0, 4, 8]).tolist()
    [3, 7]
    """
    array = _indices(idx)
    return array[1:] - 1
