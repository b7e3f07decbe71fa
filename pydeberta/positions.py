"""Relative positions and their log buckets (DeBERTa paper, section 3.1, eq. (3); DeBERTaV3 keeps them).

DeBERTa-v2/v3 never adds absolute positions to its inputs; instead every attention score looks
up an embedding of the *relative* distance ``i - j`` between query ``i`` and key ``j``
(:mod:`pydeberta.attention`). Distances up to ``mid = bucket_size // 2`` keep their own table row;
farther ones share rows whose width grows logarithmically, up to ``max_position``
(``docs/architecture.md`` draws the data flow).

Worked example (``bucket_size=8, max_position=16``, so ``mid=4``)::

    r      :  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    bucket :  0  1  2  3  4  5  5  6  6  6  7  7  7  7  7  7

>>> print(make_log_bucket_position(np.arange(16), bucket_size=8, max_position=16))
[0 1 2 3 4 5 5 6 6 6 7 7 7 7 7 7]

Everything here depends on sizes only, never on the input; the engine computes it once per
length (:mod:`pydeberta.engine.relative`). Both take their sizes through :func:`check_sizes`.
"""

import numpy as np


def check_sizes(query_size, key_size, bucket_size=-1, max_position=-1, att_span=None):
    """Refuse sizes the relative positions cannot be built from, naming the argument: ``TypeError``
    for a non-integer (``4.5`` would give one length to ``np.arange`` and another to a compiled
    loop), ``ValueError`` for ``query_size``/``key_size``/``att_span`` < 1, or log buckets
    (``bucket_size > 0`` and ``max_position > 0``) without ``bucket_size >= 2`` and
    ``max_position - 1 > bucket_size // 2`` (the formula divides by ``log((max_position - 1) / mid)``).

    ``att_span`` is checked when given (:func:`relative_index` takes one).

    >>> check_sizes(4.5, 4)
    Traceback (most recent call last):
    TypeError: query_size must be an integer, got float 4.5
    """
    sizes = {"query_size": query_size, "key_size": key_size, "bucket_size": bucket_size,
             "max_position": max_position, "att_span": 1 if att_span is None else att_span}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.40}")
        if name in ("query_size", "key_size", "att_span") and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if bucket_size > 0 and max_position > 0 and (bucket_size < 2 or max_position - 1 <= bucket_size // 2):
        raise ValueError(f"log buckets need bucket_size >= 2 and max_position - 1 > bucket_size // 2, "
                         f"got bucket_size={bucket_size}, max_position={max_position}")


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
    ``±(2 mid - 1)``.

    Args:
        relative_pos: integer array of any shape.
        bucket_size: ``position_buckets`` (>= 2).
        max_position: maximum relative position (> bucket_size // 2 + 1).
    Returns:
        int64 array of the same shape.

    >>> print(make_log_bucket_position([-300, -5, 0, 128, 129, 511, 600], 256, 512))
    [-207   -5    0  128  129  255  270]
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


def build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    """Relative positions ``rel[i, j] = i - j``, log-bucketed when ``bucket_size > 0``.

    Args:
        query_size: ``Q``; key_size: ``K`` (integers >= 1, :func:`check_sizes`).
        bucket_size, max_position: as in :func:`make_log_bucket_position`; bucketing happens only
            when both are > 0, as in transformers.
    Returns:
        int64 array ``[Q, K]`` (transformers returns it with a leading axis of 1).

    >>> print(build_relative_position(2, 3))
    [[ 0 -1 -2]
     [ 1  0 -1]]
    """
    check_sizes(query_size, key_size, bucket_size, max_position)
    rel = np.arange(query_size, dtype=np.int64)[:, None] - np.arange(key_size, dtype=np.int64)[None, :]  # [Q, K]
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    return rel


def relative_index(query_size, key_size, att_span, bucket_size=-1, max_position=-1):
    """Row of the relative-embedding table each (query, key) pair reads, ``δ(i, j)`` of the
    paper's eq. (3) shifted into ``[0, 2S)``::

        c(i, j) = clip(rel[i, j] + S, 0, 2S - 1)

    Both relative terms use this same index: c2p reads ``(q_i · Kr)[c(i, j)]`` and p2c reads
    ``(k_j · Qr)[c(i, j)]`` (transformers' ``-rel[j, i]`` equals ``rel[i, j]`` because the bucket
    function is odd).

    Returns:
        int64 array ``[Q, K]`` with values in ``[0, 2S)``.

    >>> print(relative_index(3, 3, att_span=2))
    [[2 1 0]
     [3 2 1]
     [3 3 2]]
    """
    check_sizes(query_size, key_size, bucket_size, max_position, att_span)
    rel = build_relative_position(query_size, key_size, bucket_size, max_position)
    return np.clip(rel + att_span, 0, 2 * att_span - 1)  # [Q, K]
