"""Cython twins of :func:`pydeberta.engine.kernels.disentangled_attention_probs` and of its backward
(``pydeberta.engine._cy_attention``).

The NumPy reference gathers the two relative terms with ``take_along_axis`` (an index array
broadcast to ``[B, H, Q, K]`` and two gathered ``[B, H, Q, K]`` temporaries), adds them to the
content scores, puts ``finfo.min`` at hidden entries (another temporary) and takes a softmax
(two more). Here, for each block of ``ROWS`` query rows of one score matrix::

    rel[i, j] = c2p[i, c(i, j)] + p2c[j, c(i, j)]            gathered key by key for the block
    s[j] = c2c[i, j] + rel[i, j]  (visible j),  -inf (hidden j)
    p[j] = exp(s[j] - max_j s) / sum_j exp(...)              vectorised exp
    p[j] = 1 / K                                             no visible key in the row

written in place of the content scores if asked, with ``prange`` over all blocks of all
``B * H`` matrices. The additions happen in the reference's order; exp is the C library's
(libmvec's SIMD variant where available); the row sum is accumulated in double, in sixteen
partial sums (a fixed order: the same result on any number of threads).

The backward (:func:`disentangled_attention_probs_backward`) takes each score matrix whole, on
one thread: the softmax's backward row by row, each row added into the c2p gradient through the
index, then each column into the p2c gradient.
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t
from libc.string cimport memset

from omp_compat cimport omp_get_max_threads
from vector_math cimport (pydeberta_divide_double, pydeberta_divide_float, pydeberta_dot_double,
                          pydeberta_dot_float, pydeberta_exp_shifted_double, pydeberta_exp_shifted_float,
                          pydeberta_gather_double, pydeberta_gather_float, pydeberta_max_double, pydeberta_max_float,
                          pydeberta_p2c_band_float, pydeberta_reverse_double, pydeberta_reverse_float,
                          pydeberta_scores_double, pydeberta_scores_float, pydeberta_softmax_backward_double,
                          pydeberta_softmax_backward_float, pydeberta_sum_double, pydeberta_sum_float)

ctypedef fused floating:
    float
    double


cdef inline void _exp_shifted(floating* s, Py_ssize_t K, floating top) noexcept nogil:
    """``s[j] = exp(s[j] - top)`` for every ``j`` (``exp(-inf) = 0``)."""
    if floating is float:
        pydeberta_exp_shifted_float(s, K, top)
    else:
        pydeberta_exp_shifted_double(s, K, top)


cdef inline floating _max(const floating* s, Py_ssize_t K) noexcept nogil:
    """``max_j s[j]`` (16 running maxima: vectorised, exact in any order)."""
    if floating is float:
        return pydeberta_max_float(s, K)
    else:
        return pydeberta_max_double(s, K)


cdef inline double _sum(const floating* s, Py_ssize_t K) noexcept nogil:
    """``sum_j s[j]`` in double, 16 partial sums (a fixed order: same result on any thread)."""
    if floating is float:
        return pydeberta_sum_float(s, K)
    else:
        return pydeberta_sum_double(s, K)


cdef enum:
    # Query rows per task. Row i reads p2c[j, c(i, j)] for every key j: one cache line per j. The
    # rows of a block read neighbouring entries of the same lines, so the p2c gather walks the
    # block key by key (ROWS entries per line) instead of row by row (one entry per line).
    ROWS = 8


cdef inline void _band_keys(Py_ssize_t first, Py_ssize_t last, Py_ssize_t band_lo, Py_ssize_t band_hi,
                            Py_ssize_t K, Py_ssize_t* ja, Py_ssize_t* jb) noexcept nogil:
    """The keys ``[ja, jb)`` (within ``[0, K)``) for which every query row ``i`` in ``[first, last]``
    lies in the band ``band_lo <= i - j <= band_hi``: ``j`` in ``[last - band_hi, first - band_lo]``."""
    ja[0] = min(max(last - band_hi, 0), K)
    jb[0] = min(max(first - band_lo + 1, ja[0]), K)


cdef void _gather(floating* rel, Py_ssize_t i0, Py_ssize_t rows, Py_ssize_t K,
                  const floating* c2p, Py_ssize_t c2p_stride, const floating* p2c, Py_ssize_t p2c_stride,
                  const int64_t* index, Py_ssize_t index_stride, Py_ssize_t index_step,
                  Py_ssize_t band_lo, Py_ssize_t band_hi, Py_ssize_t band_c) noexcept nogil:
    """``rel[t, j] = c2p[t, c] + p2c[j, c]`` with ``c = index[t * index_stride + j * index_step]``,
    for the ``rows`` query rows ``i = i0 + t`` of a block; either term may be NULL (off). Added
    in the reference's order.

    In the band ``band_lo <= i - j <= band_hi`` the index is ``c = band_c + i - j`` (the
    identity zone of the log buckets, all of it when N <= bucket_size / 2), so rows are read
    straight there: a reversed run of ``c2p[t]`` and, per key, ``rows`` neighbouring entries of
    ``p2c[j]``. Elsewhere ``c`` is read from the index's line (``index_stride = 1``,
    ``index_step = -1``: one short line read backwards, which stays in L1)."""
    cdef Py_ssize_t t, j, i, ja, jb
    cdef floating* rel_row
    cdef const floating* c2p_row
    cdef const floating* p2c_row
    cdef const int64_t* index_row
    for t in range(rows):
        i = i0 + t
        rel_row = rel + t * K
        index_row = index + t * index_stride
        if c2p != NULL:
            c2p_row = c2p + t * c2p_stride
            _band_keys(i, i, band_lo, band_hi, K, &ja, &jb)
            _c2p_gather(rel_row, c2p_row, index_row, index_step, ja)
            if jb > ja:
                _c2p_reverse(rel_row + ja, c2p_row + band_c + i - ja, jb - ja)
            _c2p_gather(rel_row + jb, c2p_row, index_row + jb * index_step, index_step, K - jb)
        else:
            for j in range(K):
                rel_row[j] = 0
    if p2c != NULL:
        _band_keys(i0, i0 + rows - 1, band_lo, band_hi, K, &ja, &jb)
        for j in range(ja):
            _p2c_gather(rel, rows, K, p2c + j * p2c_stride, index + j * index_step, index_stride, j)
        if floating is float and rows == 8:  # full blocks (ROWS = 8), as the C helper takes them
            pydeberta_p2c_band_float(rel, K, p2c, p2c_stride, band_c + i0, ja, jb)
        else:
            for j in range(ja, jb):
                p2c_row = p2c + j * p2c_stride + band_c + i0 - j
                for t in range(rows):
                    rel[t * K + j] = rel[t * K + j] + p2c_row[t]
        for j in range(jb, K):
            _p2c_gather(rel, rows, K, p2c + j * p2c_stride, index + j * index_step, index_stride, j)


cdef inline void _c2p_gather(floating* dst, const floating* c2p_row, const int64_t* index, Py_ssize_t step,
                             Py_ssize_t n) noexcept nogil:
    """``dst[j] = c2p_row[index[j * step]]`` for ``j < n``."""
    if floating is float:
        pydeberta_gather_float(dst, c2p_row, index, step, n)
    else:
        pydeberta_gather_double(dst, c2p_row, index, step, n)


cdef inline void _c2p_reverse(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    """``dst[j] = src[-j]`` for ``j < n``: a row of c2p inside the linear band."""
    if floating is float:
        pydeberta_reverse_float(dst, src, n)
    else:
        pydeberta_reverse_double(dst, src, n)


cdef inline void _p2c_gather(floating* rel, Py_ssize_t rows, Py_ssize_t K, const floating* p2c_row,
                             const int64_t* index_column, Py_ssize_t index_stride, Py_ssize_t j) noexcept nogil:
    """``rel[t, j] += p2c_row[index[t, j]]`` for the rows of a block: one key, read through the index."""
    cdef Py_ssize_t t
    for t in range(rows):
        rel[t * K + j] = rel[t * K + j] + p2c_row[index_column[t * index_stride]]


cdef void _softmax_row(floating* out, const floating* c2c, const floating* rel, const unsigned char* visible,
                       Py_ssize_t K) noexcept nogil:
    """One query row: ``s = c2c + rel`` (``rel`` NULL: no relative term), then the masked
    softmax, into ``out`` (which may be ``c2c``)."""
    cdef Py_ssize_t j
    cdef floating norm
    cdef bint any_visible = False
    if floating is float:
        pydeberta_scores_float(out, c2c, rel, visible, K)
    else:
        pydeberta_scores_double(out, c2c, rel, visible, K)
    for j in range(K):
        if visible[j]:
            any_visible = True
            break
    if not any_visible:  # a padded query: transformers >= 4.47 attends uniformly to all keys
        norm = <floating>1.0 / <floating>K
        for j in range(K):
            out[j] = norm
        return
    _exp_shifted(out, K, _max(out, K))
    norm = <floating>_sum(out, K)
    if floating is float:
        pydeberta_divide_float(out, K, norm)
    else:
        pydeberta_divide_double(out, K, norm)


cdef void _probs(floating[:, :, :, :] out, const floating[:, :, :, :] c2c,
                 const unsigned char[:, :, :, ::1] visible,
                 const floating[:, :, :, :] c2p, const floating[:, :, :, :] p2c,
                 const int64_t[::1] line, Py_ssize_t band_lo, Py_ssize_t band_hi, Py_ssize_t band_c,
                 bint has_c2p, bint has_p2c, floating[:, :, ::1] scratch) noexcept nogil:
    """``prange`` over blocks of ``ROWS`` query rows of the ``B * H`` score matrices (one
    matrix may be all the work); ``scratch[thread]`` holds a block's relative terms.

    ``out``, ``c2c``, ``c2p`` and ``p2c`` may have any strides but a contiguous last axis
    (checked by the caller), so each row is read and written through a plain pointer. Row ``i``
    of the index is ``line[i + K - 1 - j]``: the line read backwards from ``i + K - 1``."""
    cdef Py_ssize_t B = c2c.shape[0], H = c2c.shape[1], Q = c2c.shape[2], K = c2c.shape[3]
    cdef Py_ssize_t blocks = (Q + ROWS - 1) // ROWS
    cdef Py_ssize_t task, b, h, i0, rows, t
    cdef bint relative = has_c2p or has_p2c
    cdef bint by_batch = visible.shape[0] > 1, by_head = visible.shape[1] > 1
    cdef floating* rel
    for task in prange(B * H * blocks, schedule="static", num_threads=scratch.shape[0]):
        b = task // (H * blocks)
        h = (task // blocks) % H
        i0 = (task % blocks) * ROWS
        rows = ROWS if i0 + ROWS <= Q else Q - i0
        rel = &scratch[threadid(), 0, 0]
        if relative:
            _gather(rel, i0, rows, K, &c2p[b, h, i0, 0] if has_c2p else NULL, c2p.strides[2] // sizeof(floating),
                    &p2c[b, h, 0, 0] if has_p2c else NULL, p2c.strides[2] // sizeof(floating),
                    &line[i0 + K - 1], 1, -1, band_lo, band_hi, band_c)
        for t in range(rows):
            _softmax_row(&out[b, h, i0 + t, 0], &c2c[b, h, i0 + t, 0], rel + t * K if relative else NULL,
                         &visible[b if by_batch else 0, h if by_head else 0, i0 + t, 0], K)


def _floats(name, x, dtype=None, like="c2c"):
    """``x`` as a float32/float64 array with 4 axes (and ``dtype``, the dtype of ``like``, if given)
    whose last axis is contiguous: a strided view over the first three axes is read in place,
    anything else copied."""
    x = np.asarray(x)
    if x.dtype != np.float32 and x.dtype != np.float64:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have {like}'s dtype {dtype}, got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have 4 axes, got shape {x.shape}")
    if not x.flags.aligned or x.strides[3] != x.itemsize:
        x = np.ascontiguousarray(x)
    return x


def _visible(visible, B, H, Q, K):
    """``visible`` as uint8 ``[B or 1, H or 1, Q, K]``, C-contiguous; B and H are not broadcast."""
    visible = np.asarray(visible)
    if visible.dtype != np.bool_:
        raise TypeError(f"visible must be a bool array, got dtype {visible.dtype}")
    if visible.ndim > 4:
        raise ValueError(f"visible must have at most 4 axes, got shape {visible.shape}")
    visible = visible.reshape((1,) * (4 - visible.ndim) + visible.shape)
    for axis, size in enumerate((B, H, Q, K)):
        if visible.shape[axis] not in (1, size):
            raise ValueError(f"visible of shape {visible.shape} does not broadcast to the scores "
                             f"[B, H, Q, K] = {(B, H, Q, K)}")
    visible = np.broadcast_to(visible, visible.shape[:2] + (Q, K))  # copied below only if Q or K was 1
    return np.ascontiguousarray(visible).view(np.uint8)


def _relative(name, x, dtype, lead):
    """A relative term ``[*lead, R]`` as a C-contiguous array of c2c's dtype."""
    x = _floats(name, x, dtype)
    if x.shape[:3] != lead or x.shape[3] == 0:
        raise ValueError(f"{name} must have shape [{', '.join(map(str, lead))}, R >= 1], got {x.shape}")
    return x


def _line(index, Q, K, rows=None):
    """The line (int64, contiguous) and identity band of ``index``, checked against the scores:
    a ``[Q, K]`` index whose values lie in ``[0, rows)`` (``index.rows`` when None)."""
    if index is None:
        raise ValueError("index is required when c2p or p2c is given, got None")
    line = getattr(index, "line", None)
    if not isinstance(line, np.ndarray) or getattr(index, "band", None) is None:
        raise TypeError(f"index must be a RelativeIndex (pydeberta.engine.relative), got {type(index).__name__}")
    rows = index.rows if rows is None else rows
    if (index.query_size, index.key_size) != (Q, K):
        raise ValueError(f"index is for [Q, K] = {(index.query_size, index.key_size)}, the scores are {(Q, K)}")
    line = np.ascontiguousarray(line, np.int64)
    if line.shape != (Q + K - 1,):
        raise ValueError(f"index.line must hold Q + K - 1 = {Q + K - 1} values, got shape {line.shape}")
    if line.min() < 0 or line.max() >= rows:
        raise ValueError(f"index values must lie in [0, {rows}) (the rows of c2p / p2c), "
                         f"got [{line.min()}, {line.max()}]")
    band_lo, band_hi, band_c = (int(value) for value in index.band)
    if band_lo <= band_hi and not (-(K - 1) <= band_lo and band_hi <= Q - 1 and 0 <= band_c + band_lo
                                   and band_c + band_hi < rows):
        raise ValueError(f"index.band {index.band} reaches outside the index or the table rows")
    return line, (band_lo, band_hi, band_c)


def disentangled_attention_probs(c2c, visible, c2p=None, p2c=None, index=None, out=None):
    """Twin of :func:`pydeberta.engine.kernels.disentangled_attention_probs`: the relative terms
    gathered, added to the content scores, masked and soft-maxed in one pass::

        scores[b, h, i, j] = c2c[b, h, i, j] + (c2p[b, h, i, c] + p2c[b, h, j, c]),   c = index.table()[i, j]
        probs = softmax(where(visible, scores, finfo.min), axis=-1)

    Args:
        c2c: content scores, already divided by the scale, float32/float64 ``[B, H, Q, K]``.
        visible: bool, broadcastable to ``[B, H, Q, K]`` (the model passes ``[B, 1, Q, K]``).
        c2p: ``(q / scale) @ Kr^T`` ``[B, H, Q, R]`` or None; p2c: ``(k / scale) @ Qr^T``
            ``[B, H, K, R']`` or None; both of c2c's dtype, ``R, R' >= index.rows``.
        index: a :class:`~pydeberta.engine.relative.RelativeIndex` of ``[Q, K]``; needed with
            either term. Its line and identity band are read as they are.
        out: ``[B, H, Q, K]`` array of c2c's dtype with a contiguous last axis to write into
            (e.g. a slice of heads of a larger array); may be ``c2c`` itself, must not overlap the
            other inputs. A new array when None.
    Returns:
        probs ``[B, H, Q, K]`` (``out`` when given).

    Inputs whose last axis is not contiguous are copied (strided first axes are read in place);
    a wrong dtype, shape or index raises before any work.
    """
    c2c = _floats("c2c", c2c)
    B, H, Q, K = c2c.shape
    dtype = c2c.dtype
    mask = _visible(visible, B, H, Q, K)
    has_c2p, has_p2c = c2p is not None, p2c is not None
    c2p = _relative("c2p", c2p, dtype, (B, H, Q)) if has_c2p else np.zeros((1, 1, 1, 1), dtype)
    p2c = _relative("p2c", p2c, dtype, (B, H, K)) if has_p2c else np.zeros((1, 1, 1, 1), dtype)
    if has_c2p or has_p2c:
        line, band = _line(index, Q, K, min(c2p.shape[3] if has_c2p else p2c.shape[3],
                                            p2c.shape[3] if has_p2c else c2p.shape[3]))
    else:
        line, band = np.zeros(1, np.int64), (1, 0, 0)
    if out is None:
        out = np.empty_like(c2c)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != c2c.shape:
            raise ValueError(f"out must be a {dtype} array of shape {c2c.shape}, got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        if not out.flags.writeable or not out.flags.aligned or (K > 1 and out.strides[3] != out.itemsize):
            raise ValueError("out must be writeable, with a contiguous last axis")
        in_place = out.ctypes.data == c2c.ctypes.data and out.strides == c2c.strides
        if not in_place and np.may_share_memory(out, c2c):
            raise ValueError("out may be c2c itself but must not overlap it otherwise")
        for name, other in (("c2p", c2p), ("p2c", p2c), ("visible", mask)):
            if np.may_share_memory(out, other):
                raise ValueError(f"out must not overlap {name}")
    if c2c.size == 0:
        return out
    scratch = np.empty((omp_get_max_threads(), ROWS, K), dtype)  # one block of relative terms per thread
    if dtype == np.float32:
        _probs[float](out, c2c, mask, c2p, p2c, line, *band, has_c2p, has_p2c, scratch)
    else:
        _probs[double](out, c2c, mask, c2p, p2c, line, *band, has_c2p, has_p2c, scratch)
    return out


cdef void _softmax_backward_row(floating* ds, const floating* dp, const floating* p, const unsigned char* visible,
                                Py_ssize_t K) noexcept nogil:
    """One query row of the masked softmax's backward: ``ds = visible ? p (dp - sum_k dp[k] p[k]) : 0``,
    the sum over all keys in double (16 partial sums), each entry in double rounded once."""
    if floating is float:
        pydeberta_softmax_backward_float(ds, dp, p, visible, K, pydeberta_dot_float(dp, p, K))
    else:
        pydeberta_softmax_backward_double(ds, dp, p, visible, K, pydeberta_dot_double(dp, p, K))


cdef inline void _scatter_add(floating* dst, const floating* src, Py_ssize_t src_step, const int64_t* index,
                              Py_ssize_t index_step, Py_ssize_t n) noexcept nogil:
    """``dst[index[t * index_step]] += src[t * src_step]`` for ``t = 0, 1, ..., n - 1``, in that order."""
    cdef Py_ssize_t t
    for t in range(n):
        dst[index[t * index_step]] += src[t * src_step]


cdef void _probs_backward(floating[:, :, :, ::1] dscores, floating[:, :, :, ::1] dc2p, floating[:, :, :, ::1] dp2c,
                          const floating[:, :, :, :] dprobs, const floating[:, :, :, :] probs,
                          const unsigned char[:, :, :, ::1] visible, const int64_t[::1] line,
                          bint has_c2p, bint has_p2c) noexcept nogil:
    """``prange`` over the ``B * H`` score matrices, each on one thread (every query row adds into
    the p2c gradient of every key). For each matrix: the ``dscores`` rows, each added into its
    c2p row at once; then, key by key, the ``dscores`` columns added into their p2c rows::

        dc2p[i, c(i, j)] += dscores[i, j]   for j = 0, 1, ..., K - 1       c(i, j) = line[i + K - 1 - j]
        dp2c[j, c(i, j)] += dscores[i, j]   for i = 0, 1, ..., Q - 1

    in the element type, each row zeroed just before (while it is in cache; the relative terms'
    gradients are as large as the scores): each entry gets its terms in the reference's order
    (:func:`pydeberta.attention.gather_backward`), the same on any number of threads.

    ``dprobs`` and ``probs`` may have any strides but a contiguous last axis (checked by the caller)."""
    cdef Py_ssize_t B = probs.shape[0], H = probs.shape[1], Q = probs.shape[2], K = probs.shape[3]
    cdef Py_ssize_t R = dc2p.shape[3], pair, b, h, i, j
    cdef bint by_batch = visible.shape[0] > 1, by_head = visible.shape[1] > 1
    for pair in prange(B * H, schedule="static"):
        b = pair // H
        h = pair % H
        for i in range(Q):
            _softmax_backward_row(&dscores[b, h, i, 0], &dprobs[b, h, i, 0], &probs[b, h, i, 0],
                                  &visible[b if by_batch else 0, h if by_head else 0, i, 0], K)
            if has_c2p:  # row i of the index: line[i + K - 1 - j], read backwards
                memset(&dc2p[b, h, i, 0], 0, R * sizeof(floating))
                _scatter_add(&dc2p[b, h, i, 0], &dscores[b, h, i, 0], 1, &line[i + K - 1], -1, K)
        if has_p2c:  # column j of the index: line[K - 1 - j + i], read forwards
            for j in range(K):
                memset(&dp2c[b, h, j, 0], 0, R * sizeof(floating))
                _scatter_add(&dp2c[b, h, j, 0], &dscores[b, h, 0, j], K, &line[K - 1 - j], 1, Q)


def disentangled_attention_probs_backward(dprobs, probs, visible, index=None, c2p=False, p2c=False):
    """Twin of :func:`pydeberta.engine.kernels.disentangled_attention_probs_backward`: the masked
    softmax's backward and the scatter-add backward of the relative gathers in one kernel::

        dscores[b, h, i, j] = visible ? probs (dprobs - sum_k dprobs[.., k] probs[.., k]) : 0
        dc2p[b, h, i, r]    = sum of dscores[b, h, i, j] over the keys j with c(i, j) = r
        dp2c[b, h, j, r]    = sum of dscores[b, h, i, j] over the queries i with c(i, j) = r

    with ``c = index.table()`` (:func:`pydeberta.functional.masked_softmax_backward`, then
    :func:`pydeberta.attention.gather_backward` on the table and on its transpose). The row sum is
    taken in double and each ``dscores`` entry rounded once; the sums of dc2p and dp2c are taken in
    the element type, each in the reference's order (keys ascending, queries ascending), on one
    thread per score matrix: the same bits on any number of threads.

    Args:
        dprobs: the gradient of the probabilities, ``[B, H, Q, K]`` of probs' dtype.
        probs: the forward's result, float32/float64 ``[B, H, Q, K]``.
        visible: bool, broadcastable to ``[B, H, Q, K]`` (the model passes ``[B, 1, Q, K]``).
        index: the :class:`~pydeberta.engine.relative.RelativeIndex` of ``[Q, K]``; needed when
            ``c2p`` or ``p2c``.
        c2p, p2c: whether the forward had that term.
    Returns:
        ``(dscores [B, H, Q, K], dc2p [B, H, Q, R] or None, dp2c [B, H, K, R] or None)`` in probs'
        dtype, ``R = index.rows``.

    Inputs whose last axis is not contiguous are copied (strided first axes are read in place);
    a wrong dtype, shape or index raises before any work.
    """
    probs = _floats("probs", probs)
    B, H, Q, K = probs.shape
    dtype = probs.dtype
    dprobs = _floats("dprobs", dprobs, dtype, like="probs")
    if dprobs.shape != probs.shape:
        raise ValueError(f"dprobs and probs must have one shape, got dprobs {dprobs.shape} and probs {probs.shape}")
    mask = _visible(visible, B, H, Q, K)
    has_c2p, has_p2c = bool(c2p), bool(p2c)
    if has_c2p or has_p2c:
        line, _ = _line(index, Q, K)
        R = index.rows
    else:
        line, R = np.zeros(1, np.int64), 1
    new = np.empty if probs.size else np.zeros  # the kernel zeroes each row of dc2p / dp2c it adds into
    dscores = new((B, H, Q, K), dtype)
    dc2p = new((B, H, Q, R), dtype) if has_c2p else None
    dp2c = new((B, H, K, R), dtype) if has_p2c else None
    if probs.size:
        unused = np.empty((1, 1, 1, R), dtype)  # stands in for a term that is off
        if dtype == np.float32:
            _probs_backward[float](dscores, unused if dc2p is None else dc2p, unused if dp2c is None else dp2c,
                                   dprobs, probs, mask, line, has_c2p, has_p2c)
        else:
            _probs_backward[double](dscores, unused if dc2p is None else dc2p, unused if dp2c is None else dp2c,
                                    dprobs, probs, mask, line, has_c2p, has_p2c)
    return dscores, dc2p, dp2c
