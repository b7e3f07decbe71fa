"""Relative positions and their log buckets (spec §4).

DeBERTa never adds absolute positions in v2/v3 checkpoints; instead every attention score looks
up an embedding of the *relative* distance ``i - j`` between query ``i`` and key ``j``. Distances
up to ``mid = bucket_size // 2`` keep their own row; farther ones share rows whose width grows
logarithmically, up to ``max_position``.

Worked example (``bucket_size=8, max_position=16``, so ``mid=4``)::

    r      :  0  1  2  3  4  5  6  7  8  9  10 ... 15
    bucket :  0  1  2  3  4  5  5  6  6  7   7 ...  7

Everything here depends on sizes only, never on the input, so results are cached per shape and
returned read-only.
"""

import functools

import numpy as np

from ._backend import dispatch


@dispatch
def make_log_bucket_position(relative_pos, bucket_size, max_position):
    """Map relative distances to log buckets (transformers' ``make_log_bucket_position``).

    ``mid = bucket_size // 2``; for ``|r| <= mid`` the bucket is ``r`` itself, otherwise::

        bucket(r) = sign(r) * (ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1)) + mid)

    computed in float64 with true division, as Microsoft's original NumPy code did. transformers
    computes it in float32 whose ``log`` is not correctly rounded (and differs between its
    vectorised and scalar paths), so no implementation can be bit-identical to it everywhere;
    float64 agrees with it on all of ``[-4096, 4096]`` for the released ``(256, 512)`` and for the
    power-of-two and common sizes tested in ``tests/test_positions.py``. The function is odd:
    ``bucket(-r) == -bucket(r)``. It is not clamped: ``|r| >= max_position`` gives buckets beyond
    ``±(2 mid - 1)`` (spec §4.3).

    Args:
        relative_pos: integer array of any shape.
        bucket_size: ``position_buckets`` (>= 2).
        max_position: maximum relative position (> bucket_size // 2 + 1).
    Returns:
        int64 array of the same shape.
    """
    relative_pos = np.asarray(relative_pos, dtype=np.int64)
    mid = bucket_size // 2
    sign = np.sign(relative_pos)
    abs_pos = np.where((relative_pos < mid) & (relative_pos > -mid), mid - 1, np.abs(relative_pos))
    # Entries with |r| <= mid are taken from relative_pos below; their log may be -inf (mid = 1:
    # log(0)), so the warnings it raises are not about any result.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pos = np.ceil(np.log(abs_pos / mid) / np.log((max_position - 1) / mid) * (mid - 1)) + mid
        return np.where(abs_pos <= mid, relative_pos, log_pos.astype(np.int64) * sign)


@functools.lru_cache(maxsize=64)
@dispatch
def build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    """Relative positions ``rel[i, j] = i - j``, log-bucketed when ``bucket_size > 0``.

    Args:
        query_size: ``Q``; key_size: ``K``.
        bucket_size, max_position: as in :func:`make_log_bucket_position`; bucketing happens only
            when both are > 0, as in transformers.
    Returns:
        read-only int64 array ``[Q, K]`` (transformers returns it with a leading axis of 1).
    """
    rel = np.arange(query_size, dtype=np.int64)[:, None] - np.arange(key_size, dtype=np.int64)[None, :]  # [Q, K]
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    rel.flags.writeable = False
    return rel


@functools.lru_cache(maxsize=64)
@dispatch
def relative_index(query_size, key_size, att_span, bucket_size=-1, max_position=-1):
    """Row of the relative-embedding table each (query, key) pair reads (spec §5.3)::

        c(i, j) = clip(rel[i, j] + S, 0, 2S - 1)

    Both relative terms use this same index: c2p reads ``(q_i · Kr)[c(i, j)]`` and p2c reads
    ``(k_j · Qr)[c(i, j)]`` (transformers' ``-rel[j, i]`` equals ``rel[i, j]`` because the bucket
    function is odd).

    Returns:
        read-only int64 array ``[Q, K]`` with values in ``[0, 2S)``.
    """
    rel = build_relative_position(query_size, key_size, bucket_size, max_position)
    index = np.clip(rel + att_span, 0, 2 * att_span - 1)  # [Q, K]
    index.flags.writeable = False
    return index


@functools.lru_cache(maxsize=64)
def reachable_rows(query_size, key_size, att_span, bucket_size=-1, max_position=-1):
    """The relative-table rows some (query, key) pair reads, and the index into just those rows.

    ``c(i, j)`` (:func:`relative_index`) lies in ``[lo, hi]``, far fewer than ``2S`` rows when
    ``Q, K <= S``; attention then needs only ``table[lo:hi + 1]`` and the index ``c(i, j) - lo``.
    That index depends on ``i - j`` only, so it is returned as a Toeplitz view of its
    ``Q + K - 1`` distinct values (``shifted[i, j] = line[i - j + K - 1]``, strides ``(s, -s)``):
    ``Q + K`` integers in memory instead of ``Q * K``.

    Returns:
        ``(lo, hi, shifted)`` with ``shifted`` a read-only int64 ``[Q, K]`` view in ``[0, hi - lo]``.
    """
    index = relative_index(query_size, key_size, att_span, bucket_size, max_position)  # [Q, K]
    if index.size == 0:
        return 0, 0, index
    lo, hi = int(index.min()), int(index.max())
    line = np.concatenate([index[0, ::-1], index[1:, 0]]) - lo  # [Q + K - 1]: line[i - j + K - 1]
    step = line.strides[0]
    shifted = np.lib.stride_tricks.as_strided(line[key_size - 1:], shape=index.shape, strides=(step, -step),
                                              writeable=False)  # [Q, K] view of line
    return lo, hi, shifted
