"""Class labels as one-hot tables: the R package's ``onehot.R`` and ``indexing.R``.

A *one-hot table* has one row per sample and one column per class; a sample may
carry several classes (a multi-hot row). Here, as in R, a *class* in
:func:`class_to_idx` and friends is a column number and an *index* (idx) a row
number, both counted from 0 (R: from 1). :func:`encode_class_list` builds the table
from class labels, with an *offset* that maps labels to columns (R's
``value_offset``).

>>> table = encode_class_list([0, [1, 2], 2, 2])
>>> table
array([[1, 0, 0],
       [0, 1, 1],
       [0, 0, 1],
       [0, 0, 1]])
>>> decode_onehot(table)
[[0], [1, 2], [2], [2]]
>>> class_to_idx([1, 2], table).tolist(), idx_to_class([0, 1], table).tolist()
([1, 2, 3], [0, 1, 2])
>>> count_class(table).tolist(), scarce_class(2, table).tolist()
([1, 1, 3], [0, 1])
>>> missing_class([2, 3], [0, 1], table).tolist()  # classes of rows 0 and 1 that rows 2 and 3 lack
[0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["encode_class_list", "decode_onehot", "class_to_idx", "idx_to_class", "related_class",
           "related_idx", "count_class", "scarce_class", "missing_class", "swap_missing_class"]

Reduce = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _labels(cls_list: Iterable[Any]) -> list[list[int]]:
    rows = []
    for i, item in enumerate(cls_list):
        values = np.atleast_1d(np.asarray(item))
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"Expected integer class labels. Received: cls_list[{i}]={item!r:.100}")
        rows.append([int(v) for v in values.ravel()])
    return rows


def encode_class_list(cls_list: Iterable[Any], n_classes: int | None = None, offset: int | None = None) -> np.ndarray:
    """A one-hot table ``(len(cls_list), n_classes)`` of int64: row *i* is hot at ``cls_list[i] + offset``.

    Each item of *cls_list* is one integer label or a list of labels (a multi-hot
    row; an empty list gives an all-zero row). *offset* defaults to ``-min(labels)``,
    so the smallest label is column 0; *n_classes* defaults to the columns the labels
    need (R: the number of distinct labels, which fails for labels with gaps). A
    label outside ``[0, n_classes)`` after the offset raises ``ValueError``.

    Args:
        cls_list: One item per sample: an integer label, or a list of labels.
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


def _table(onehot: Any) -> np.ndarray:
    table = np.asarray(onehot)
    if table.ndim != 2:
        raise ValueError(f"Expected onehot to be a 2-d table (samples x classes). Received: shape {table.shape}")
    hot: np.ndarray = table != 0
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


def _which(keys: Any, table: np.ndarray, reduce: Reduce | None, sort: bool, what: str) -> np.ndarray:
    keys = np.atleast_1d(np.asarray(keys, dtype=np.int64))
    if keys.size and (keys.min() < 0 or keys.max() >= table.shape[1]):
        raise ValueError(f"Expected {what} in [0, {table.shape[1]}). Received: {keys.tolist()!r:.100}")
    hits = [np.flatnonzero(table[:, k]) for k in keys]
    if not hits:
        return np.zeros(0, dtype=np.int64)
    if reduce is None:
        found = np.concatenate(hits)
        _, first = np.unique(found, return_index=True)
        result = found[np.sort(first)]  # R's unique(): first-seen order
    else:
        result = hits[0]
        for more in hits[1:]:
            result = np.asarray(reduce(result, more))
    return np.sort(result) if sort else result.astype(np.int64, copy=False)


def class_to_idx(cls: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False) -> np.ndarray:
    """Rows hot in any column of *cls* (R's ``ClassToIdx``); *reduce* (e.g. ``np.intersect1d``) replaces the union.

    Args:
        cls: A class (column) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the hits of two keys, e.g. ``np.intersect1d``; ``None``: their
            union, in first-seen order.
        sort: Sort the result.

    Returns:
        The rows (sample indices), an int64 array.

    Raises:
        ValueError: A class is outside the table, or *onehot* is not 2-d.

    >>> table = encode_class_list([[0, 1], [1], [0]])
    >>> class_to_idx([0, 1], table, reduce=np.intersect1d).tolist()  # rows with both classes
    [0]
    """
    return _which(cls, _table(onehot), reduce, sort, "classes (columns)")


def idx_to_class(idx: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False) -> np.ndarray:
    """Columns hot in any row of *idx* (R's ``IdxToClass``); *reduce* as in :func:`class_to_idx`.

    Args:
        idx: A row (sample index) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the hits of two keys, e.g. ``np.intersect1d``; ``None``: their
            union, in first-seen order.
        sort: Sort the result.

    Returns:
        The classes (columns), an int64 array.

    Raises:
        ValueError: A row is outside the table, or *onehot* is not 2-d.
    """
    return _which(idx, _table(onehot).T, reduce, sort, "indices (rows)")


def related_class(cls: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False) -> np.ndarray:
    """Classes that share a sample with a class of *cls* (R's ``RelatedClass``).

    Args:
        cls: A class (column) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the hits of two keys, e.g. ``np.intersect1d``; ``None``: their
            union, in first-seen order.
        sort: Sort the result.

    Returns:
        ``idx_to_class(class_to_idx(cls, ...), ...)``: the classes of every sample that
        carries a class of *cls*.

    Raises:
        ValueError: As :func:`class_to_idx`.
    """
    return idx_to_class(class_to_idx(cls, onehot, reduce, sort), onehot, reduce, sort)


def related_idx(idx: Any, onehot: Any, reduce: Reduce | None = None, sort: bool = False) -> np.ndarray:
    """Samples that share a class with a sample of *idx* (R's ``RelatedIdx``).

    Args:
        idx: A row (sample index) or several.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        reduce: Combines the hits of two keys, e.g. ``np.intersect1d``; ``None``: their
            union, in first-seen order.
        sort: Sort the result.

    Returns:
        ``class_to_idx(idx_to_class(idx, ...), ...)``: every sample that carries a class
        of a sample of *idx*.

    Raises:
        ValueError: As :func:`idx_to_class`.
    """
    return class_to_idx(idx_to_class(idx, onehot, reduce, sort), onehot, reduce, sort)


def count_class(onehot: Any, density: bool = False) -> np.ndarray:
    """Samples per class (column sums), or their share of all hot cells with *density* (R's ``CountClass``).

    Args:
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        density: Return shares that sum to 1 instead of counts.

    Returns:
        One int64 count (or float share) per class.

    Raises:
        ValueError: *onehot* is not 2-d.

    >>> count_class([[1, 0], [1, 1]], density=True).tolist()
    [0.6666666666666666, 0.3333333333333333]
    """
    counts: np.ndarray = _table(onehot).sum(axis=0).astype(np.int64)
    if density:
        total = int(counts.sum())
        shares: np.ndarray = counts / total if total else counts.astype(np.float64)
        return shares
    return counts


def scarce_class(threshold: float, onehot: Any) -> np.ndarray:
    """Classes with fewer than *threshold* samples (R's ``ScarceClass``; same argument order).

    Args:
        threshold: The count a class must reach not to be scarce.
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).

    Returns:
        The scarce classes (columns), sorted.

    Raises:
        ValueError: *onehot* is not 2-d.
    """
    return np.flatnonzero(count_class(onehot) < threshold)


def missing_class(idx: Any, idx_ref: Any, onehot: Any) -> np.ndarray:
    """Classes present in the rows *idx_ref* but absent from the rows *idx*, sorted (R's ``MissingClass``).

    R's version computes the reference classes from *idx* too, so it always returns
    nothing; this is what its documentation says it does.

    Args:
        idx: The rows to check (e.g. a training split).
        idx_ref: The reference rows (e.g. a validation split).
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).

    Returns:
        The missing classes (columns), sorted.

    Raises:
        ValueError: A row is outside the table, or *onehot* is not 2-d.
    """
    table = _table(onehot)
    return np.setdiff1d(idx_to_class(idx_ref, table), idx_to_class(idx, table))


def swap_missing_class(idx: Any, idx_ref: Any, onehot: Any, swap_ratio: float = 0.1,
                       swap_random: bool = False,
                       rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move samples of classes missing from *idx* over from *idx_ref*, and as many back (R's ``SwapMissingClass``).

    For each class of :func:`missing_class`, ``max(1, ceil(swap_ratio * carriers))``
    of the *idx_ref* rows carrying it move to *idx* (the first ones, or random ones
    with *swap_random*, drawn from *rng*); for each, a row of *idx* goes back to
    *idx_ref*, chosen among the rows (not just moved in) whose every class stays
    present in *idx* without them (none left: *idx* grows instead). Returns the new ``(idx, idx_ref)``;
    afterwards *idx* misses none of *idx_ref*'s classes. Typical use: a training
    split that lacks a class the validation split has.

    Args:
        idx: The rows that should carry every class (e.g. a training split).
        idx_ref: The rows to take them from (e.g. a validation split).
        onehot: The one-hot table, samples x classes (any 2-d array; nonzero is hot).
        swap_ratio: The share, in [0, 1], of a missing class's carriers to move.
        swap_random: Move random carriers instead of the first ones.
        rng: Draws the random carriers; ``None``: a fresh ``np.random.default_rng()``.

    Returns:
        The new ``(idx, idx_ref)``, two int arrays.

    Raises:
        ValueError: *swap_ratio* is outside [0, 1], a row is outside the table, or
            *onehot* is not 2-d.

    >>> table = encode_class_list([0, 0, 1, 0, 1])
    >>> swap_missing_class([0, 1, 3], [2, 4], table)
    (array([1, 2, 3]), array([0, 4]))
    """
    table = _table(onehot)
    if isinstance(swap_ratio, bool) or not isinstance(swap_ratio, (int, float)) or not 0 <= swap_ratio <= 1:
        raise ValueError(f"Expected swap_ratio in [0, 1]. Received: swap_ratio={swap_ratio!r:.100}")
    rng = rng if rng is not None else np.random.default_rng()
    train = [int(i) for i in np.atleast_1d(idx)]
    ref = [int(i) for i in np.atleast_1d(idx_ref)]
    for column in missing_class(train, ref, table):
        carriers = [i for i in ref if table[i, column]]
        k = min(len(carriers), max(1, math.ceil(swap_ratio * len(carriers))))
        chosen = [int(i) for i in rng.choice(carriers, k, replace=False)] if swap_random else carriers[:k]
        moved_in: set[int] = set()
        for row in chosen:
            counts = table[train].sum(axis=0)
            givers = [j for j in train if j not in moved_in and table[j].any() and np.all(counts[table[j]] > 1)]
            moved_in.add(row)
            ref.remove(row)
            train.append(row)
            if givers:
                giver = int(rng.choice(givers)) if swap_random else givers[0]
                train.remove(giver)
                ref.append(giver)
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(ref, dtype=np.int64))
