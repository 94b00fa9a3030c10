"""awkgen.classes: the R package's one-hot helpers (onehot.R, indexing.R), checked on examples worked
out by hand from the R source and on random tables (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awkgen.classes import (
    class_to_idx,
    count_class,
    decode_onehot,
    encode_class_list,
    idx_to_class,
    missing_class,
    related_class,
    related_idx,
    scarce_class,
    swap_missing_class,
)

# R: EncodeClassList(list(1, c(2, 3), 3)) is a 3x3 table (value_offset 0: labels are 1-based columns)
R_TABLE = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])

label_lists = st.lists(st.one_of(st.integers(-3, 6), st.lists(st.integers(-3, 6), max_size=3)), min_size=1,
                       max_size=12).filter(lambda rows: any(np.size(r) for r in rows))


def test_encoding_matches_r_up_to_counting_from_zero():
    assert encode_class_list([1, [2, 3], 3]).tolist() == R_TABLE.tolist()  # offset -1: label 1 is column 0
    assert encode_class_list([1, [2, 3], 3], offset=0).tolist() == np.pad(R_TABLE, ((0, 0), (1, 0))).tolist()
    assert decode_onehot(R_TABLE, offset=-1) == [[1], [2, 3], [3]]  # R: DecodeOnehot(t, value_offset = 0)


def test_labels_with_gaps_get_the_columns_they_need():
    # R's default nclass is the number of distinct labels (2), too few for labels 0 and 5
    assert encode_class_list([0, 5]).shape == (2, 6)
    with pytest.raises(ValueError, match=r"cls_list\[1\] has 5 \(\+ offset 0 = column 5\)"):
        encode_class_list([0, 5], n_classes=2)
    with pytest.raises(ValueError, match="integer class labels"):
        encode_class_list([0.5, 1])


@given(label_lists)
@settings(max_examples=60, deadline=None)
def test_decode_inverts_encode(rows):
    flat = [v for r in rows for v in np.atleast_1d(r)]
    table = encode_class_list(rows)
    assert table.shape == (len(rows), max(flat) - min(flat) + 1)
    assert decode_onehot(table, offset=-min(flat)) == [sorted(set(np.atleast_1d(r).tolist())) for r in rows]


def test_lookups_follow_r():
    assert class_to_idx([2, 1], R_TABLE).tolist() == [1, 2]  # R: unique(unlist(...)), first-seen order
    assert class_to_idx([2, 0], R_TABLE).tolist() == [1, 2, 0]
    assert class_to_idx([2, 0], R_TABLE, sort=True).tolist() == [0, 1, 2]
    assert class_to_idx([1, 2], R_TABLE, reduce=np.intersect1d).tolist() == [1]
    assert idx_to_class([1], R_TABLE).tolist() == [1, 2]
    assert related_class([1], R_TABLE).tolist() == [1, 2]  # class 1 shares row 1 with class 2
    assert related_idx([2], R_TABLE).tolist() == [1, 2]  # row 2 shares class 2 with row 1
    with pytest.raises(ValueError, match=r"Expected classes \(columns\) in \[0, 3\)"):
        class_to_idx([3], R_TABLE)


def test_counts_and_scarce_classes():
    assert count_class(R_TABLE).tolist() == [1, 1, 2]
    assert count_class(R_TABLE, density=True).tolist() == [0.25, 0.25, 0.5]
    assert scarce_class(2, R_TABLE).tolist() == [0, 1]
    assert count_class(np.zeros((2, 2)), density=True).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2-d table"):
        count_class([1, 0])


def test_missing_class_does_what_r_documents():
    # R's MissingClass computes both class sets from idx, so it always returns nothing: a bug.
    assert missing_class([0], [1, 2], R_TABLE).tolist() == [1, 2]
    assert missing_class([1], [2], R_TABLE).tolist() == []


@given(st.lists(st.integers(0, 4), min_size=4, max_size=30), st.data())
@settings(max_examples=80, deadline=None)
def test_swap_leaves_no_class_missing_and_keeps_both_sets_a_partition(labels, data):
    table = encode_class_list(labels, offset=0, n_classes=5)
    n = len(labels)
    order = data.draw(st.permutations(range(n)))
    cut = data.draw(st.integers(1, n - 1))
    idx, ref = sorted(order[:cut]), sorted(order[cut:])
    ratio = data.draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    random = data.draw(st.booleans())
    new_idx, new_ref = swap_missing_class(idx, ref, table, swap_ratio=ratio, swap_random=random,
                                          rng=np.random.default_rng(0))
    assert sorted(new_idx.tolist() + new_ref.tolist()) == list(range(n))  # nothing lost, nothing doubled
    assert missing_class(new_idx, ref, table).size == 0
    if missing_class(idx, ref, table).size == 0:
        assert (new_idx.tolist(), new_ref.tolist()) == (idx, ref)  # nothing to do: nothing moves


def test_swap_with_ratio_moves_that_share_of_carriers():
    table = encode_class_list([0] * 4 + [1] * 10)
    # ceil(0.3 * 10) = 3 rows of class 1 move in (the first ones); 3 rows of class 0 go back, one stays
    idx, ref = swap_missing_class(range(4), range(4, 14), table, swap_ratio=0.3)
    assert idx.tolist() == [3, 4, 5, 6] and ref.tolist() == [0, 1, 2] + list(range(7, 14))
    idx, ref = swap_missing_class([0, 1], list(range(4, 14)), table, swap_ratio=0.3)
    assert idx.tolist() == [1, 4, 5, 6]  # only one giver: the idx set grows rather than lose class 0
    with pytest.raises(ValueError, match="swap_ratio in"):
        swap_missing_class([0], [1], table, swap_ratio=2)
