"""Log-bucketed relative positions: published anchors, transformers parity, properties over the whole range."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf

from oracle import BUCKET_PAIRS
from pydeberta.engine.relative import relative_index as engine_index
from pydeberta.positions import build_relative_position, make_log_bucket_position, relative_index

R = np.arange(-4096, 4097)


def test_released_anchors():
    """Anchors for the released (256, 512), checked by hand against the formula."""
    b = make_log_bucket_position(np.arange(2048), 256, 512)
    anchors = {129: 129, 131: 131, 132: 131, 133: 132, 136: 134, 140: 137, 150: 143, 160: 149, 192: 166, 200: 169,
               256: 192, 300: 207, 384: 229, 400: 233, 450: 244, 500: 254, 505: 254, 506: 255, 511: 255, 512: 256,
               516: 256, 517: 257, 600: 270, 1000: 317, 1024: 319, 2047: 383}
    assert {r: int(b[r]) for r in anchors} == anchors
    np.testing.assert_array_equal(b[:129], np.arange(129))
    assert b.sum() == 599511 and (b ** 2).sum() == 190183053
    small = make_log_bucket_position(np.array([64, 65, 100, 511, 512]), 128, 512)
    assert small.tolist() == [64, 65, 78, 127, 128]


@pytest.mark.parametrize("bucket_size,max_position", BUCKET_PAIRS + [(128, 512), (256, 1024)])
def test_buckets_equal_transformers_over_whole_range(bucket_size, max_position):
    ours = make_log_bucket_position(R, bucket_size, max_position)
    theirs = hf.make_log_bucket_position(torch.tensor(R), bucket_size, max_position).numpy().astype(np.int64)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("bucket_size,max_position", BUCKET_PAIRS)
def test_bucket_is_odd_monotone_and_identity_in_the_middle(bucket_size, max_position):
    b = make_log_bucket_position(R, bucket_size, max_position)
    np.testing.assert_array_equal(b, -b[::-1])  # odd
    assert (np.diff(b) >= 0).all()  # monotone
    mid = bucket_size // 2
    band = np.abs(R) <= mid
    np.testing.assert_array_equal(b[band], R[band])  # identity band
    inside = np.abs(R) < max_position
    assert np.abs(b[inside]).max() <= 2 * mid - 1  # the log band ends at 2 mid - 1 for |r| < max_position


@settings(max_examples=40)
@given(q=st.integers(1, 80), k=st.integers(1, 80), pair=st.sampled_from(BUCKET_PAIRS + [(-1, -1)]))
def test_relative_position_equals_transformers(q, k, pair):
    bucket_size, max_position = pair
    ours = build_relative_position(q, k, bucket_size, max_position)
    theirs = hf.build_relative_position(torch.zeros(q, 1), torch.zeros(k, 1), bucket_size, max_position)
    np.testing.assert_array_equal(ours, theirs[0].numpy())


@settings(max_examples=40)
@given(n=st.integers(1, 80), span=st.integers(1, 300))
def test_relative_index_is_the_clamped_shifted_distance(n, span):
    """Without buckets: c(i, j) = clip(i - j + S, 0, 2S - 1) (distances beyond S - 1 saturate)."""
    rel = np.arange(n)[:, None] - np.arange(n)[None, :]
    np.testing.assert_array_equal(relative_index(n, n, span), np.clip(rel + span, 0, 2 * span - 1))


def test_reachable_table_rows_hand_worked():
    """n=3, S=4, no buckets: c(i, j) = i - j + 4 lies in [2, 6]; the engine's index keeps rows
    2..6 and the line c - 2 (tests/test_engine_relative.py checks it against this module)."""

    index = engine_index(3, 3, 4)
    assert (index.lo, index.hi) == (2, 6)
    np.testing.assert_array_equal(index.table(), [[2, 1, 0], [3, 2, 1], [4, 3, 2]])
    np.testing.assert_array_equal(index.table() + 2, relative_index(3, 3, 4))


@pytest.mark.parametrize("args, error, message", [
    ((4.5, 4, 2), TypeError, "query_size must be an integer, got float 4.5"),
    ((4, np.float64(4.0), 2), TypeError, "key_size must be an integer, got float64"),
    ((4, 4, 2.5), TypeError, "att_span must be an integer"),
    ((4, 4, 2, 8.0, 32), TypeError, "bucket_size must be an integer"),
    ((True, 4, 2), TypeError, "query_size must be an integer, got bool"),
    ((0, 4, 2), ValueError, "query_size must be >= 1, got 0"),
    ((4, 4, 0), ValueError, "att_span must be >= 1"),
    ((4, 4, 2, 1, 32), ValueError, "log buckets need bucket_size >= 2"),
    ((4, 4, 2, 8, 5), ValueError, "max_position - 1 > bucket_size // 2"),
])
@pytest.mark.parametrize("twin", ["book", "engine"])
def test_sizes_that_are_not_positive_integers_are_refused(args, error, message, twin):
    """np.arange(4.5) has 5 entries, a compiled loop over range(int(4.5)) 4: a float is refused,
    by the book's relative_index and the engine's twin with the same check and message."""
    function = relative_index if twin == "book" else engine_index
    with pytest.raises(error, match=message):
        function(*args)
    index = function(np.int64(3), 3, 2)  # a NumPy integer is an integer
    assert (index.table() if twin == "engine" else index).shape == (3, 3)
