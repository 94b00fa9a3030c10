"""awkgen.classes: the R package's one-hot and index helpers (onehot.R, indexing.R, discontinuity.R).

Each ``R:`` comment is what real R 4.2 with AwkwardMLTools at 9edd66c printed for the call
(1-based; awkgen counts from 0); ``make r-compat`` (tools/rcompat/) finds such cases on
hundreds of random inputs. Cases where R is wrong by its own documentation say so.
Runs with the core dependencies only (tools/core_check.sh): numpy, no Pillow.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awkgen.classes import (
    class_to_idx,
    count_class,
    decode_onehot,
    encode_class_list,
    find_idx,
    find_idx_unsorted,
    idx_to_class,
    missing_class,
    pad_idx,
    pad_idx_left,
    pad_idx_right,
    related_class,
    related_idx,
    scarce_class,
    swap_missing_class,
)

# R: EncodeClassList(list(1, c(2, 3), 3, 3)) is this 4x3 table (value_offset 0: labels are 1-based columns)
R_TABLE = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 1]])

label_lists = st.lists(st.one_of(st.integers(-3, 6), st.lists(st.integers(-3, 6), max_size=3)), min_size=1,
                       max_size=12).filter(lambda rows: any(np.size(r) for r in rows))
tables = st.integers(1, 8).flatmap(lambda n: st.integers(1, 6).flatmap(
    lambda c: st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n))).map(np.array)


def test_encoding_matches_r_up_to_counting_from_zero():
    assert encode_class_list([1, [2, 3], 3, 3]).tolist() == R_TABLE.tolist()  # offset -1: label 1 is column 0
    assert encode_class_list([1, [2, 3], 3], offset=0).tolist() == np.pad(R_TABLE[:3], ((0, 0), (1, 0))).tolist()
    assert decode_onehot(R_TABLE, offset=-1) == [[1], [2, 3], [3], [3]]  # R: DecodeOnehot(t, value_offset = 0)


def test_character_labels_are_split_on_single_spaces_as_r():
    # R: EncodeClassList(c("1 2", "3", "")) is rbind(c(1, 1, 0), c(0, 0, 1), c(0, 0, 0))
    assert encode_class_list(["1 2", "3", ""]).tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert encode_class_list(np.array(["1 2 3", "2"])).tolist() == [[1, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match=r"separated by single spaces. Received: cls_list\[1\]='1  2'"):
        encode_class_list(["1", "1  2"])  # R: as.integer("") is NA, then an error in the assignment


def test_labels_with_gaps_get_the_columns_they_need():
    # R's default nclass is the number of distinct labels (2), too few for labels 0 and 5: R fails
    assert encode_class_list([0, 5]).shape == (2, 6)
    with pytest.raises(ValueError, match=r"cls_list\[1\] has 5 \(\+ offset 0 = column 5\)"):
        encode_class_list([0, 5], n_classes=2)
    with pytest.raises(ValueError, match="integer class labels"):
        encode_class_list([0.5, 1])


def test_a_label_below_the_first_column_is_refused():
    # R: EncodeClassList(list(0, 1, 2), value_offset = 0) silently drops label 0 (column 0): rows 000, 100, 010;
    # EncodeClassList(list(-2, 1, 2), value_offset = 1, nclass = 3)'s first row is 0 1 1 (column -1: all others)
    with pytest.raises(ValueError, match=r"cls_list\[0\] has 0 \(\+ offset -1 = column -1\)"):
        encode_class_list([0, 1, 2], offset=-1)
    with pytest.raises(ValueError, match=r"cls_list\[0\] has -2 \(\+ offset 0 = column -2\)"):
        encode_class_list([-2, 1, 2], offset=0, n_classes=3)


@given(label_lists)
@settings(max_examples=60, deadline=None)
def test_decode_inverts_encode(rows):
    flat = [v for r in rows for v in np.atleast_1d(r)]
    table = encode_class_list(rows)
    assert table.shape == (len(rows), max(flat) - min(flat) + 1)
    assert decode_onehot(table, offset=-min(flat)) == [sorted(set(np.atleast_1d(r).tolist())) for r in rows]


def test_class_to_idx_is_sorted_by_default_and_first_seen_when_not_fast():
    # R: ClassToIdx(c(3, 1), m) is 1 2 3 4; ClassToIdx(c(3, 1), m, fast = FALSE) is 2 3 4 1
    assert class_to_idx([2, 0], R_TABLE).tolist() == [0, 1, 2, 3]
    assert class_to_idx([2, 0], R_TABLE, fast=False).tolist() == [1, 2, 3, 0]
    assert class_to_idx([2, 0], R_TABLE, fast=False, sort=True).tolist() == [0, 1, 2, 3]
    assert class_to_idx([], R_TABLE).tolist() == [] and class_to_idx(None, R_TABLE, fast=False).tolist() == []
    with pytest.raises(ValueError, match=r"Expected classes \(columns\) in \[0, 3\)"):
        class_to_idx([3], R_TABLE)


def test_reduce_takes_rs_extra_arguments():
    # R: ClassToIdx(c(2, 3), m, f_reduce = intersect) is 2; f_reduce's extra arguments come after the two sets
    assert class_to_idx([1, 2], R_TABLE, reduce=np.intersect1d).tolist() == [1]
    calls = []

    def union(a, b, tag):
        calls.append(tag)
        return np.union1d(a, b)

    assert class_to_idx([0, 1, 2], R_TABLE, reduce=union, tag="t").tolist() == [0, 1, 2, 3]
    assert calls == ["t", "t"]  # purrr::reduce: once per class after the first
    assert class_to_idx([1, 2], R_TABLE, reduce=functools.partial(np.intersect1d, assume_unique=True)).tolist() == [1]
    # R: ClassToIdx(integer(0), m, f_reduce = intersect) is an error (purrr: "Must supply .init when .x is empty")
    assert class_to_idx([], R_TABLE, reduce=np.intersect1d).tolist() == []
    with pytest.raises(TypeError, match=r"reduce to be given with arguments for it. Received: reduce=None and \['t"):
        class_to_idx([1], R_TABLE, tag="t")


def test_idx_to_class_is_sorted_as_r_documents():
    # R: IdxToClass(c(2, 1), m) is 2 3 1, though its fast= says "result is always sorted": R's fast path
    # lacks a return(). awkgen sorts; fast=False gives R's first-seen order.
    assert idx_to_class([1, 0], R_TABLE).tolist() == [0, 1, 2]
    assert idx_to_class([1, 0], R_TABLE, fast=False).tolist() == [1, 2, 0]
    assert related_class([0], R_TABLE).tolist() == [0]  # R: RelatedClass(1, m) is 1
    assert related_class([1], R_TABLE).tolist() == [1, 2]  # class 1 shares row 1 with class 2
    assert related_idx([2], R_TABLE).tolist() == [1, 2, 3]  # row 2's class 2 is on rows 1, 2, 3


@given(tables, st.data())
@settings(max_examples=60, deadline=None)
def test_lookups_agree_with_a_plain_reading_of_the_r_code(table, data):
    classes = data.draw(st.lists(st.integers(0, table.shape[1] - 1), max_size=4))
    rows = data.draw(st.lists(st.integers(0, table.shape[0] - 1), max_size=4))
    carriers = [int(i) for i in range(table.shape[0]) if any(table[i, c] for c in classes)]
    assert class_to_idx(classes, table).tolist() == carriers
    first_seen = list(dict.fromkeys(int(i) for c in classes for i in np.flatnonzero(table[:, c])))
    assert class_to_idx(classes, table, fast=False).tolist() == first_seen
    seen = list(dict.fromkeys(int(c) for i in rows for c in np.flatnonzero(table[i])))
    assert idx_to_class(rows, table, fast=False).tolist() == seen
    assert idx_to_class(rows, table).tolist() == sorted(seen)


def test_counts_and_scarce_classes():
    assert count_class(R_TABLE).tolist() == [1, 1, 3]
    assert count_class(R_TABLE, density=True).tolist() == [0.2, 0.2, 0.6]
    assert scarce_class(2, R_TABLE).tolist() == [0, 1]
    assert np.isnan(count_class(np.zeros((2, 2)), density=True)).all()  # R: CountClass(matrix(0, 2, 2), TRUE): NaN NaN
    assert count_class([[2, 0], [1, 1]]).tolist() == [3, 1]  # column sums, as R's colSums
    with pytest.raises(ValueError, match="2-d table"):
        count_class([1, 0])


def test_missing_class_keeps_rs_order():
    # R: MissingClass(c(3, 4), c(2, 1), m) is 2 1: idx_ref's classes in first-seen order
    assert missing_class([2, 3], [1, 0], R_TABLE).tolist() == [1, 0]
    assert missing_class([0], [1, 2], R_TABLE).tolist() == [1, 2]
    assert missing_class([1], [2], R_TABLE).tolist() == []
    # R: MissingClass(NULL, c(2, 1), m) is 2 1, idx_ref itself (rows, not classes); no rows miss every class
    assert missing_class(None, [3, 0], R_TABLE).tolist() == [2, 0]
    assert missing_class([], [3, 0], R_TABLE).tolist() == [2, 0]
    with pytest.raises(ValueError, match="idx_ref=None"):
        missing_class([0], None, R_TABLE)


def test_swap_follows_r_exactly():
    # R: SwapMissingClass(c(1, 2, 4), c(5, 3), EncodeClassList(list(1, 1, 2, 1, 2))) is idx 1 2 4 5, idx_ref 3
    table = encode_class_list([1, 1, 2, 1, 2])
    idx, ref = swap_missing_class([0, 1, 3], [4, 2], table)
    assert (idx.tolist(), ref.tolist()) == ([0, 1, 3, 4], [2])
    table = encode_class_list([0] * 4 + [1] * 10)
    # max(floor(10 * 0.3), 1) = 3 rows of class 1 move in, the first ones; none moves back
    idx, ref = swap_missing_class(range(4), range(4, 14), table, swap_ratio=0.3)
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6] and ref.tolist() == list(range(7, 14))
    idx, ref = swap_missing_class([0], [13, 12, 0, 5], table, swap_ratio=0.9)  # floor(3 * 0.9) = 2
    assert (idx.tolist(), ref.tolist()) == ([0, 13, 12], [0, 5])  # idx_ref's 0 stays: setdiff keeps it
    idx, ref = swap_missing_class([2], [3, 3, 1], table)  # nothing missing: nothing changes, repeats stay
    assert (idx.tolist(), ref.tolist()) == ([2], [3, 3, 1])
    for ratio in (1, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="swap_ratio in"):
            swap_missing_class([0], [1], table, swap_ratio=ratio)


@given(st.lists(st.lists(st.integers(0, 4), max_size=2), min_size=4, max_size=30), st.data())
@settings(max_examples=80, deadline=None)
def test_swap_leaves_no_class_missing_and_moves_only_reference_rows(labels, data):
    table = encode_class_list(labels, offset=0, n_classes=5)
    n = len(labels)
    order = data.draw(st.permutations(range(n)))
    cut = data.draw(st.integers(0, n))
    idx, ref = order[:cut], order[cut:]
    ratio = data.draw(st.sampled_from([0.0, 0.1, 0.5, 0.99]))
    random = data.draw(st.booleans())
    new_idx, new_ref = swap_missing_class(idx, ref, table, swap_ratio=ratio, swap_random=random,
                                          rng=np.random.default_rng(0))
    assert new_idx.tolist()[:len(idx)] == idx  # rows are only added to idx, at its end
    assert sorted(new_idx.tolist() + new_ref.tolist()) == list(range(n))  # nothing lost, nothing doubled
    assert new_ref.tolist() == [i for i in ref if i not in new_idx.tolist()]  # idx_ref keeps its order
    assert missing_class(new_idx, new_ref, table).size == 0


def test_find_idx_never_gives_one_index_to_two_keys():
    # R: FindIdx(1:10, c(3, 3)) is 3 4 (numpy.searchsorted gives 2 2 from 0)
    assert find_idx(np.arange(1, 11), [3, 3]).tolist() == [2, 3]
    assert find_idx(np.arange(1, 11), [3, 3], cmpf=operator.gt).tolist() == [3, 4]
    assert find_idx([1, 2], [2, 5, 6]).tolist() == [1, -1, -1]  # R: 2 NA NA
    assert find_idx([1, 2], []).tolist() == []  # R: an error (an empty iterator)


def test_find_idx_unsorted_does_what_r_documents():
    # R: FindIdxUnsorted(c(5, 1, 9), c(8, 0)) is 2 2: its loop compares val[i] with key[j]
    assert find_idx_unsorted([5, 1, 9], [8, 0]).tolist() == [2, 0]
    assert find_idx_unsorted([5, 1, 9], [10, 1, 1]).tolist() == [-1, 0, 0]  # R: an error (val[3] vs key)
    # R's result is the documented function with the roles of val and key swapped, and cmpf's arguments too
    assert find_idx_unsorted([8, 0], [5, 1], lambda a, b: b >= a).tolist() == [1, 1]


def test_pad_indices_as_long_as_the_input():
    # R: pad_idx_left(c(4, 8, 10)) is 1 5 9; pad_idx_right(c(1, 5, 9), 10) is 4 8 10
    assert pad_idx_left([3, 7, 9]).tolist() == [0, 4, 8]
    assert pad_idx_right([0, 4, 8], end=9).tolist() == [3, 7, 9]
    assert pad_idx([0, 4, 8]).tolist() == [3, 7]
    assert pad_idx_right([0, 4]).tolist() == [3, -1]  # R's default end is NA
    # R: pad_idx_left(5) is 1 6, pad_idx_right(5, 10) is NA 4 10, pad_idx(5) is NA 4: seq.int(0) and 2:1 count down
    assert pad_idx_left([4]).tolist() == [0] and pad_idx_right([4], end=9).tolist() == [9]
    assert pad_idx([4]).tolist() == []
    # R: pad_idx_left(integer(0)) is an error; pad_idx_right(integer(0), 10) is NA NA 10
    assert pad_idx_left([]).tolist() == [] and pad_idx_right([], end=9).tolist() == [] and pad_idx([]).tolist() == []
    assert pad_idx_left([2.5], start=1).tolist() == [1.0]
    with pytest.raises(ValueError, match="Expected idx to be numbers"):
        pad_idx(["a", "b"])
