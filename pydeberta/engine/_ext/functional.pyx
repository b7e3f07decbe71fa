"""Cython twins of the row-wise and elementwise kernels of :mod:`pydeberta.engine.kernels`
(``pydeberta.engine._cy_functional``).

Same names, arguments and results as the NumPy references, for float32 and float64 arrays (other
dtypes: ``TypeError``). Non-contiguous inputs are copied first, never read with wrong strides.
Both evaluate in double precision and round once to the input's dtype, as their references do;
they differ from them only in the order of the sums and in the C library's erf (within 1e-15).
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt

from vector_math cimport (pydeberta_gelu_double, pydeberta_gelu_float, pydeberta_normalise_double,
                          pydeberta_normalise_float, pydeberta_sum_double, pydeberta_sum_float,
                          pydeberta_sum_sq_dev_double, pydeberta_sum_sq_dev_float)

ctypedef fused floating:
    float
    double

cdef enum:
    # Elements per parallel chunk of the elementwise kernels: enough work to amortise a thread's
    # start, few enough chunks for two to eight threads to share evenly.
    CHUNK = 16384


def _float_array(name, x):
    """``x`` as a C-contiguous float32/float64 array; ``TypeError`` naming ``name`` otherwise."""
    x = np.asarray(x)
    if x.dtype != np.float32 and x.dtype != np.float64:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


cdef inline void _gelu_run(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    """``y = 0.5 x (1 + erf(x / sqrt(2)))`` over ``n`` elements, in double rounded once."""
    if floating is float:
        pydeberta_gelu_float(x, y, n)
    else:
        pydeberta_gelu_double(x, y, n)


cdef void _gelu(const floating[::1] x, floating[::1] y) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], chunk, start
    for chunk in prange((n + CHUNK - 1) // CHUNK, schedule="dynamic"):
        start = chunk * CHUNK
        _gelu_run(&x[start], &y[start], CHUNK if start + CHUNK <= n else n - start)


def gelu(x):
    """Twin of :func:`pydeberta.engine.kernels.gelu`: exact GELU with the C library's ``erf``::

        gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2)))

    elementwise with the C library's double ``erf`` (never the tanh approximation), in libmvec's
    SIMD variant where the build has it (``backend_info()["vector_math"]``); float32 input is
    evaluated in double and rounded once, as the reference does.

    Shape: any; returns a new array of the same shape and dtype.
    """
    x = _float_array("x", x)
    y = np.empty_like(x)
    if x.dtype == np.float32:
        _gelu[float](x.reshape(-1), y.reshape(-1))
    else:
        _gelu[double](x.reshape(-1), y.reshape(-1))
    return y


cdef inline double _row_sum(const floating* s, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return pydeberta_sum_float(s, n)
    else:
        return pydeberta_sum_double(s, n)


cdef inline double _row_sum_sq_dev(const floating* s, Py_ssize_t n, double mean) noexcept nogil:
    if floating is float:
        return pydeberta_sum_sq_dev_float(s, n, mean)
    else:
        return pydeberta_sum_sq_dev_double(s, n, mean)


cdef inline void _row_normalise(const floating* s, floating* y, const floating* w, const floating* b, Py_ssize_t n,
                                double mean, double inv_std) noexcept nogil:
    if floating is float:
        pydeberta_normalise_float(s, y, w, b, n, mean, inv_std)
    else:
        pydeberta_normalise_double(s, y, w, b, n, mean, inv_std)


cdef void _layer_norm(const floating[:, ::1] x, const floating[:, ::1] residual, bint has_residual,
                      const floating[::1] weight, const floating[::1] bias, double eps,
                      floating[:, ::1] y) noexcept nogil:
    """Per row: ``v = x + residual`` (in the element type, written to ``y``) when there is one;
    then, in double, the mean, the mean of squared deviations (two passes) and the normalised
    row rounded once to the element type. Row reductions are 16-lane sums (vector_math.h)."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], m, c
    cdef double mean, inv_std
    cdef const floating* row
    for m in prange(M, schedule="static"):
        row = &x[m, 0]
        if has_residual:
            for c in range(C):
                y[m, c] = x[m, c] + residual[m, c]
            row = &y[m, 0]
        mean = _row_sum(row, C) / C
        inv_std = 1.0 / sqrt(_row_sum_sq_dev(row, C, mean) / C + eps)
        _row_normalise(row, &y[m, 0], &weight[0], &bias[0], C, mean, inv_std)


def layer_norm(x, weight, bias, eps, residual=None):
    """Twin of :func:`pydeberta.engine.kernels.layer_norm`: LayerNorm over the last axis::

        y = (v - mean) / sqrt(var + eps) * weight + bias,   v = x (+ residual)

    in double precision rounded once to x's dtype, as the reference (``weight`` and ``bias``
    are cast to x's dtype first). ``x + residual`` is added in x's dtype in the same pass when
    both have the same dtype and shape; otherwise NumPy adds them first, as the reference does.

    Shapes: x ``[..., C]``, weight ``[C]``, bias ``[C]``, residual like x; returns a new ``[..., C]`` array.
    """
    x = _float_array("x", x)
    if residual is not None:
        residual = np.asarray(residual)
        if residual.dtype != x.dtype or residual.shape != x.shape:
            x, residual = _float_array("x", x + residual), None
        else:
            residual = _float_array("residual", residual)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis (the normalised one), got a 0-d array")
    C = x.shape[x.ndim - 1]
    weight = np.ascontiguousarray(weight, dtype=x.dtype)
    bias = np.ascontiguousarray(bias, dtype=x.dtype)
    if weight.shape != (C,) or bias.shape != (C,):
        raise ValueError(f"weight and bias must have shape ({C},) to match x {x.shape}, got {weight.shape} and {bias.shape}")
    y = np.empty_like(x)
    if x.size == 0:
        return y
    rows = x.reshape(-1, C)
    residual_rows = rows if residual is None else residual.reshape(-1, C)
    if x.dtype == np.float32:
        _layer_norm[float](rows, residual_rows, residual is not None, weight, bias, float(eps), y.reshape(-1, C))
    else:
        _layer_norm[double](rows, residual_rows, residual is not None, weight, bias, float(eps), y.reshape(-1, C))
    return y
