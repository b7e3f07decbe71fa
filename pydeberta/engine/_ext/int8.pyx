"""The compiled int8 linear layer (``pydeberta.engine._cy_int8``): the twin of
:func:`pydeberta.quantization.quantized_linear`, equal to it bit for bit (``int8_gemm.h``).

The rows of ``x`` are quantized in parallel, then the product runs over tasks of a panel of
``PANEL_ROWS`` rows by ``PANEL_COLUMNS`` output columns (the panel's int8 activations, at most
``PANEL_ROWS * in`` bytes, stay in the core's L2 cache while its tiles sweep them), shared
out to the OpenMP threads. AVX2 only: :func:`have_avx2` says whether this CPU can run it; the
engine falls back to the NumPy reference otherwise.
"""

import numpy as np

from cython.parallel cimport prange

from libc.stdint cimport int8_t

cdef extern from "int8_gemm.h" nogil:
    int pyd_int8_have_avx2()
    void pyd_int8_quantize_rows(const float *x, Py_ssize_t M, Py_ssize_t K, Py_ssize_t ldx, int8_t *q,
                                Py_ssize_t ldq, float *scale)
    void pyd_int8_gemm_columns(const int8_t *a, Py_ssize_t M, Py_ssize_t K, Py_ssize_t lda, const float *x_scale,
                               const int8_t *w, Py_ssize_t ldw, const float *w_scale, const float *bias, float *y,
                               Py_ssize_t ldy, Py_ssize_t o0, Py_ssize_t o1)

cdef enum:
    PANEL_ROWS = 48       # rows of x per task: 48 * 3072 bytes = 144 KiB of int8 at in = 3072
    PANEL_COLUMNS = 48    # output columns per task (16 tiles of 3)
    QUANTIZE_ROWS = 16    # rows per parallel chunk of the quantization

HAVE_AVX2 = bool(pyd_int8_have_avx2())


def have_avx2():
    """Whether this CPU runs the AVX2 kernel."""
    return HAVE_AVX2


cdef void _quantize(const float[:, ::1] x, int8_t[:, ::1] q, float[::1] scale) noexcept nogil:
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], chunk, r0, rows
    for chunk in prange((M + QUANTIZE_ROWS - 1) // QUANTIZE_ROWS, schedule="static"):
        r0 = chunk * QUANTIZE_ROWS
        rows = QUANTIZE_ROWS if r0 + QUANTIZE_ROWS <= M else M - r0
        pyd_int8_quantize_rows(&x[r0, 0], rows, K, K, &q[r0, 0], q.shape[1], &scale[r0])


cdef void _gemm(const int8_t[:, ::1] q, const float[::1] x_scale, const int8_t[:, ::1] w, const float[::1] w_scale,
                const float *bias, float[:, ::1] y) noexcept nogil:
    cdef Py_ssize_t M = q.shape[0], N = w.shape[0], K = w.shape[1]
    cdef Py_ssize_t panels = (M + PANEL_ROWS - 1) // PANEL_ROWS, chunks = (N + PANEL_COLUMNS - 1) // PANEL_COLUMNS
    cdef Py_ssize_t task, r0, o0
    for task in prange(panels * chunks, schedule="dynamic"):
        r0 = (task // chunks) * PANEL_ROWS
        o0 = (task % chunks) * PANEL_COLUMNS
        pyd_int8_gemm_columns(&q[r0, 0], PANEL_ROWS if r0 + PANEL_ROWS <= M else M - r0, K, q.shape[1], &x_scale[r0],
                              &w[0, 0], K, &w_scale[0], bias, &y[r0, 0], N, o0,
                              o0 + PANEL_COLUMNS if o0 + PANEL_COLUMNS <= N else N)


def quantized_linear(x, weight, weight_scale, bias=None):
    """Twin of :func:`pydeberta.quantization.quantized_linear` (same arguments, same bits).

    Shapes: ``x [..., in]`` float32; ``weight`` int8 ``[out, in]``; ``weight_scale`` float32
    ``[out]``; ``bias`` float32 ``[out]`` or None; returns float32 ``[..., out]``. Other dtypes or
    shapes raise ``TypeError`` / ``ValueError`` naming the argument; non-contiguous arrays are
    copied first. ``RuntimeError`` on a CPU without AVX2.
    """
    if not HAVE_AVX2:
        raise RuntimeError("the int8 kernel needs AVX2, which this CPU lacks; use pydeberta.quantization.quantized_linear")
    x, weight, weight_scale = np.asarray(x), np.asarray(weight), np.asarray(weight_scale)
    for name, array, dtype in (("x", x, np.float32), ("weight", weight, np.int8), ("weight_scale", weight_scale, np.float32)):
        if array.dtype != dtype:
            raise TypeError(f"quantized_linear: {name} must be {np.dtype(dtype).name}, got {array.dtype}")
    if x.ndim < 1:
        raise ValueError(f"quantized_linear: x must have at least one axis, got shape {x.shape}")
    lead = x.shape[:x.ndim - 1]  # the leading axes [...]
    if weight.ndim != 2 or x.shape[x.ndim - 1] != weight.shape[1] or weight_scale.shape != weight.shape[:1]:
        raise ValueError(f"quantized_linear: expected x [..., in], weight [out, in], weight_scale [out]; got x "
                         f"{x.shape}, weight {weight.shape}, weight_scale {weight_scale.shape}")
    if weight.shape[1] > (2**31 - 1) // 127**2:
        raise ValueError(f"quantized_linear: in={weight.shape[1]} could overflow the int32 accumulator")
    cdef Py_ssize_t M = int(np.prod(lead)), K = weight.shape[1], N = weight.shape[0]
    rows = np.ascontiguousarray(x.reshape(M, K))  # [M, in]
    w = np.ascontiguousarray(weight)
    ws = np.ascontiguousarray(weight_scale)
    q = np.empty((M, (K + 31) // 32 * 32), np.int8)  # [M, in rounded up to 32] (C division: K >= 0)
    x_scale = np.empty(M, np.float32)  # [M]
    y = np.empty((M, N), np.float32)  # [M, out]
    cdef const float[::1] b
    cdef const float *bias_ptr = NULL
    if bias is not None:
        bias = np.ascontiguousarray(bias)
        if bias.dtype != np.float32 or bias.shape != (N,):
            raise ValueError(f"quantized_linear: bias must be float32 [{N}], got {bias.dtype} {bias.shape}")
        b = bias
        bias_ptr = &b[0]
    if M and N and K:
        _quantize(rows, q, x_scale)
        _gemm(q, x_scale, w, ws, bias_ptr, y)
    else:  # nothing to sum: y = bias (or 0), as the reference
        y[...] = 0 if bias is None else bias
    return y.reshape(lead + (N,))  # [..., out]
