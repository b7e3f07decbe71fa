"""Cython twins of :mod:`pydeberta.positions` (``pydeberta._cy_positions``).

Same names, arguments and results (exact integers) as the NumPy references; the formulas and the
worked example are in their docstrings. A ``[Q, K]`` table depends on ``i - j`` only, so each
distance is bucketed once (``Q + K - 1`` logs instead of ``Q * K``) and the table is filled
from that line. The logs are the C library's ``log`` in double precision, numerator and
denominator alike, so ``|r| = max_position - 1`` gives a ratio of exactly 1 as in the reference.
"""

import numpy as np

from libc.math cimport ceil, log
from libc.stdint cimport int64_t


cdef inline int64_t _bucket(int64_t r, int64_t mid, double log_span) noexcept nogil:
    """``make_log_bucket_position`` of one distance ``r`` (``log_span = log((max_position - 1) / mid)``)."""
    cdef int64_t a = -r if r < 0 else r
    cdef int64_t log_pos
    if a <= mid:  # the reference's placeholder mid - 1 for |r| < mid also lands here
        return r
    log_pos = <int64_t>(ceil(log(<double>a / <double>mid) / log_span * <double>(mid - 1)) + <double>mid)
    return -log_pos if r < 0 else log_pos


cdef double _log_span(int64_t bucket_size, int64_t max_position) except? -1.0:
    """Check the bucket arguments and return the denominator ``log((max_position - 1) / mid)``."""
    cdef int64_t mid = bucket_size // 2
    if bucket_size < 2:
        raise ValueError(f"bucket_size must be >= 2, got {bucket_size}")
    if max_position - 1 <= mid:
        raise ValueError(f"max_position must be > bucket_size // 2 + 1 = {mid + 1}, got {max_position}")
    return log(<double>(max_position - 1) / <double>mid)


def _size(name, value):
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


cdef void _distance_rows(int64_t Q, int64_t K, bint bucketed, int64_t mid, double log_span, int64_t att_span,
                         int64_t[::1] line) noexcept nogil:
    """``line[d + K - 1]`` for every distance ``d = i - j`` in ``[-(K - 1), Q - 1]``: the bucket
    (or ``d``), shifted by ``att_span`` and clipped to ``[0, 2 att_span - 1]`` when ``att_span > 0``."""
    cdef Py_ssize_t t
    cdef int64_t d, v
    for t in range(Q + K - 1):
        d = t - (K - 1)
        v = _bucket(d, mid, log_span) if bucketed else d
        if att_span > 0:
            v = v + att_span
            v = 0 if v < 0 else (2 * att_span - 1 if v > 2 * att_span - 1 else v)
        line[t] = v


cdef void _fill_toeplitz(const int64_t[::1] line, int64_t[:, ::1] out) noexcept nogil:
    """``out[i, j] = line[i - j + K - 1]``: row ``i`` is ``line`` read backwards from ``i + K - 1``."""
    cdef Py_ssize_t i, j, Q = out.shape[0], K = out.shape[1]
    for i in range(Q):
        for j in range(K):
            out[i, j] = line[i - j + K - 1]


def _table(query_size, key_size, bucket_size, max_position, att_span):
    cdef int64_t Q = _size("query_size", query_size), K = _size("key_size", key_size)
    cdef bint bucketed = bucket_size > 0 and max_position > 0
    cdef double log_span = _log_span(bucket_size, max_position) if bucketed else 0.0
    cdef int64_t mid = bucket_size // 2 if bucketed else 0
    out = np.empty((Q, K), dtype=np.int64)
    if Q == 0 or K == 0:
        out.flags.writeable = False
        return out
    line = np.empty(Q + K - 1, dtype=np.int64)
    cdef int64_t[::1] line_view = line
    cdef int64_t[:, ::1] out_view = out
    cdef int64_t span = att_span
    with nogil:
        _distance_rows(Q, K, bucketed, mid, log_span, span, line_view)
        _fill_toeplitz(line_view, out_view)
    out.flags.writeable = False
    return out


def make_log_bucket_position(relative_pos, bucket_size, max_position):
    """Twin of :func:`pydeberta.positions.make_log_bucket_position`.

    ``bucket(r) = r`` for ``|r| <= mid``, else
    ``sign(r) * (ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1)) + mid)``.

    Args:
        relative_pos: integer array (or array-like) of any shape; converted to int64 as the
            reference does.
        bucket_size: >= 2; max_position: > bucket_size // 2 + 1 (else ValueError).
    Returns:
        int64 array of the same shape.
    """
    rel = np.asarray(relative_pos, dtype=np.int64)
    cdef double log_span = _log_span(bucket_size, max_position)
    cdef int64_t mid = bucket_size // 2
    flat = np.ascontiguousarray(rel).reshape(-1)
    out = np.empty(flat.shape[0], dtype=np.int64)
    cdef const int64_t[::1] r = flat
    cdef int64_t[::1] b = out
    cdef Py_ssize_t n
    with nogil:
        for n in range(r.shape[0]):
            b[n] = _bucket(r[n], mid, log_span)
    return out.reshape(rel.shape)


def build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    """Twin of :func:`pydeberta.positions.build_relative_position`.

    ``rel[i, j] = i - j``, log-bucketed when ``bucket_size > 0 and max_position > 0``.

    Returns:
        read-only int64 ``[Q, K]``.
    """
    return _table(query_size, key_size, bucket_size, max_position, 0)


def relative_index(query_size, key_size, att_span, bucket_size=-1, max_position=-1):
    """Twin of :func:`pydeberta.positions.relative_index`.

    ``c(i, j) = clip(rel[i, j] + S, 0, 2S - 1)`` with ``S = att_span`` (>= 1).

    Returns:
        read-only int64 ``[Q, K]``.
    """
    if att_span < 1:
        raise ValueError(f"att_span must be >= 1, got {att_span}")
    return _table(query_size, key_size, bucket_size, max_position, att_span)
