"""pydeberta.engine.relative: the index the kernels read equals the book's table, exactly.

The oracle is the book's :func:`pydeberta.positions.relative_index` (itself checked against
transformers in tests/test_positions.py): every entry of the line's ``[Q, K]`` view, the rows it
reaches, and the identity band it claims.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from oracle import BUCKET_PAIRS
from pydeberta import positions
from pydeberta.engine.relative import identity_band, relative_index

PAIRS = BUCKET_PAIRS + [(128, 512), (256, 1024), (2, 3), (6, 100), (-1, -1), (8, -1)]


@settings(max_examples=60)
@given(q=st.integers(1, 700), k=st.integers(1, 700), pair=st.sampled_from(PAIRS), span=st.integers(1, 300))
@example(q=1, k=1, pair=(256, 512), span=256)
@example(q=700, k=700, pair=(256, 512), span=256)  # beyond the bucket span: the index clamps at both ends
@example(q=600, k=3, pair=(-1, -1), span=16)
def test_index_equals_the_book(q, k, pair, span):
    book = positions.relative_index(q, k, span, *pair)
    index = relative_index(q, k, span, *pair)
    assert (index.lo, index.hi) == (book.min(), book.max()) and index.rows == index.hi - index.lo + 1
    table = index.table()
    assert table.shape == (q, k) and not table.flags.writeable and not index.line.flags.writeable
    np.testing.assert_array_equal(table + index.lo, book)
    band_lo, band_hi, band_c = index.band
    distance = np.arange(q)[:, None] - np.arange(k)[None, :]
    in_band = (distance >= band_lo) & (distance <= band_hi)
    np.testing.assert_array_equal(table[in_band], band_c + distance[in_band])


def test_the_released_layout_has_the_identity_band_of_its_buckets():
    """(256, 512), S = 256, N = 512: |i - j| <= 128 keep their own rows, so the band is at least
    that wide; |i - j| = 511 lands in bucket ±255, so the rows reached are 1..511."""
    index = relative_index(512, 512, 256, 256, 512)
    band_lo, band_hi, _ = index.band
    assert band_lo <= -128 and band_hi >= 128 and (index.lo, index.hi) == (1, 511)
    short = relative_index(128, 128, 256, 256, 512)  # N = 128 <= S: 255 rows around the middle
    assert (short.lo, short.hi) == (256 - 127, 256 + 127) and short.band == (-127, 127, 127)


def test_index_is_built_once_per_sizes():
    assert relative_index(9, 9, 4, 8, 32) is relative_index(9, 9, 4, 8, 32)


@pytest.mark.parametrize("line, band", [
    ([0, 0, 1, 2, 3, 3], (-1, 2, 1)),
    ([5, 4, 3], (1, 0, 0)),  # no two neighbours climb: no band
    ([0, 1, 9, 2, 3, 4], (1, 3, 1)),  # the longer of two runs
])
def test_identity_band_by_hand(line, band):
    assert identity_band(np.array(line), key_size=3) == band


@pytest.mark.parametrize("q, k, name", [(0, 3, "query_size"), (3, 0, "key_size")])
def test_empty_sizes_are_refused(q, k, name):
    with pytest.raises(ValueError, match=f"{name} must be >= 1"):
        relative_index(q, k, 4)


def test_equal_sizes_of_other_integer_types_share_one_index():
    assert relative_index(np.int64(5), 5, 4) is relative_index(5, 5, 4)
