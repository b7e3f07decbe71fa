"""The relative index as the engine reads it: built once per length, held as one line.

The book's :func:`pydeberta.positions.relative_index` is a ``[Q, K]`` table ``c(i, j)``. It
depends on ``i - j`` only, so the engine keeps its ``Q + K - 1`` distinct values (the *line*)
and three facts about them that the kernels use:

* ``lo``, ``hi``: the table rows some (query, key) pair reaches. When ``Q, K <= S`` that is far
  fewer than the ``2S`` rows of the relative table, and attention needs only
  ``table[lo:hi + 1]``; the line holds ``c(i, j) - lo``.
* the *identity band* ``band_lo <= i - j <= band_hi`` where ``c(i, j) - lo = band_c + (i - j)``:
  the distances the log buckets leave as they are (all of them when ``N <= bucket_size / 2``).
  Inside it the kernels read rows straight, without the index.

:func:`relative_index` builds it once per sizes and keeps it (an LRU cache of 64 lengths).
"""

import functools
from dataclasses import dataclass

import numpy as np

from ..positions import check_sizes, make_log_bucket_position


@dataclass(frozen=True)
class RelativeIndex:
    """``c(i, j) - lo`` for a ``[Q, K]`` score matrix, as the line ``line[i - j + K - 1]``.

    Attributes:
        query_size, key_size: ``Q`` and ``K``.
        lo, hi: first and last relative-table row reached.
        line: read-only int64 ``[Q + K - 1]``, values in ``[0, hi - lo]``.
        band: ``(band_lo, band_hi, band_c)``: ``line[d + K - 1] == band_c + d`` for every
            distance ``band_lo <= d <= band_hi`` (``band_lo > band_hi``: no band).
    """

    query_size: int
    key_size: int
    lo: int
    hi: int
    line: np.ndarray
    band: tuple

    @property
    def rows(self):
        """``hi - lo + 1``: how many table rows the kernels read."""
        return self.hi - self.lo + 1

    def table(self):
        """The index as a read-only ``[Q, K]`` view of :attr:`line` (strides ``(s, -s)``):
        ``table()[i, j] == line[i - j + K - 1]``, no copy."""
        step = self.line.strides[0]
        start = self.line[self.key_size - 1:]  # table[0, 0] is line[K - 1]
        return np.lib.stride_tricks.as_strided(start, (self.query_size, self.key_size), (step, -step),
                                               writeable=False)  # [Q, K]


def identity_band(line, key_size):
    """The longest run of ``line`` that climbs by one per step, as ``(band_lo, band_hi, band_c)``
    in distances ``d = t - (K - 1)``; ``(1, 0, 0)`` when no two neighbours climb.

    >>> identity_band(np.array([0, 0, 1, 2, 3, 3]), key_size=3)
    (-1, 2, 1)
    """
    steps = np.concatenate([[0], (np.diff(line) == 1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(steps))  # runs of +1 steps: line[start..end] consecutive
    if edges.size == 0:
        return 1, 0, 0
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    band_lo, band_hi = int(starts[k]) - (key_size - 1), int(ends[k]) - (key_size - 1)
    return band_lo, band_hi, int(line[starts[k]]) - band_lo


def relative_index(query_size, key_size, att_span, bucket_size=-1, max_position=-1):
    """The :class:`RelativeIndex` of the book's :func:`pydeberta.positions.relative_index`
    (same arguments, checked by the same :func:`pydeberta.positions.check_sizes`), computed from
    the ``Q + K - 1`` distances alone and cached per sizes.

    >>> index = relative_index(3, 3, att_span=2)
    >>> index.lo, index.hi, index.line.tolist()
    (0, 3, [0, 1, 2, 3, 3])
    >>> print(index.table())
    [[2 1 0]
     [3 2 1]
     [3 3 2]]
    """
    check_sizes(query_size, key_size, bucket_size, max_position, att_span)  # before the cache: 3.0 == 3 there
    return _relative_index(int(query_size), int(key_size), int(att_span), int(bucket_size), int(max_position))


@functools.lru_cache(maxsize=64)
def _relative_index(query_size, key_size, att_span, bucket_size, max_position):
    """:func:`relative_index` of checked sizes, built once per sizes."""
    distances = np.arange(-(key_size - 1), query_size, dtype=np.int64)  # [Q + K - 1]: d = i - j
    if bucket_size > 0 and max_position > 0:
        distances = make_log_bucket_position(distances, bucket_size, max_position)
    line = np.clip(distances + att_span, 0, 2 * att_span - 1)  # c(i, j) along the line
    lo, hi = int(line.min()), int(line.max())
    line = line - lo
    line.flags.writeable = False
    return RelativeIndex(query_size, key_size, lo, hi, line, identity_band(line, key_size))
