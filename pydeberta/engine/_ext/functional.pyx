"""Cython twins of the row-wise and elementwise kernels of :mod:`pydeberta.engine.kernels`
(``pydeberta.engine._cy_functional``): GELU and LayerNorm, and their backward.

Same names, arguments and results as the NumPy references, for float32 and float64 arrays (other
dtypes: ``TypeError``). Non-contiguous inputs are copied first, never read with wrong strides.
All evaluate in double precision and round once to the input's dtype, as their references do;
they differ from them only in the order of the sums and in the C library's erf and exp (within 1e-15).
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt

from vector_math cimport (pydeberta_gelu_backward_double, pydeberta_gelu_backward_float, pydeberta_gelu_double,
                          pydeberta_gelu_float, pydeberta_norm_dx_double, pydeberta_norm_dx_float,
                          pydeberta_norm_params_double, pydeberta_norm_params_float, pydeberta_norm_sum_g_double,
                          pydeberta_norm_sum_g_float, pydeberta_norm_sum_gxhat_double, pydeberta_norm_sum_gxhat_float,
                          pydeberta_normalise_double, pydeberta_normalise_float, pydeberta_sum_double,
                          pydeberta_sum_float, pydeberta_sum_sq_dev_double, pydeberta_sum_sq_dev_float)

ctypedef fused floating:
    float
    double

cdef enum:
    # Elements per parallel chunk of the elementwise kernels: enough work to amortise a thread's
    # start, few enough chunks for two to eight threads to share evenly.
    CHUNK = 16384
    # Rows per block of layer_norm_backward: each block adds its rows' parameter gradients into its
    # own partial sums, and the blocks are added in order, so the sums do not depend on the threads.
    NORM_ROWS = 64


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


def _same_shape(grad, x):
    """``ValueError`` naming both shapes unless ``grad`` and ``x`` have one shape."""
    if grad.shape != x.shape:
        raise ValueError(f"grad and x must have one shape, got grad {grad.shape} and x {x.shape}")


cdef inline void _gelu_backward_run(const floating* g, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    """``y = g (Phi(x) + x phi(x))`` over ``n`` elements, in double rounded once."""
    if floating is float:
        pydeberta_gelu_backward_float(g, x, y, n)
    else:
        pydeberta_gelu_backward_double(g, x, y, n)


cdef void _gelu_backward(const floating[::1] g, const floating[::1] x, floating[::1] y) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], chunk, start
    for chunk in prange((n + CHUNK - 1) // CHUNK, schedule="dynamic"):
        start = chunk * CHUNK
        _gelu_backward_run(&g[start], &x[start], &y[start], CHUNK if start + CHUNK <= n else n - start)


def gelu_backward(grad, x):
    """Twin of :func:`pydeberta.engine.kernels.gelu_backward` (:func:`pydeberta.functional.gelu_backward`):
    the gradient of :func:`gelu`'s input from ``grad``, the gradient of its output::

        grad * (Phi(x) + x * phi(x)),   Phi(x) = 0.5 * (1 + erf(x / sqrt(2))),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

    elementwise with the C library's double ``erf`` and ``exp`` (libmvec's SIMD variants where the
    build has them), in double rounded once to x's dtype, as the reference. When grad and x differ
    in dtype both are widened to float64 (exactly) first, as the reference's products are.

    Shapes: grad and x of one shape (any); returns a new array of that shape, in x's dtype.
    """
    grad, x = _float_array("grad", grad), _float_array("x", x)
    _same_shape(grad, x)
    if grad.dtype != x.dtype:
        return gelu_backward(grad.astype(np.float64), x.astype(np.float64)).astype(x.dtype)
    y = np.empty_like(x)
    if x.dtype == np.float32:
        _gelu_backward[float](grad.reshape(-1), x.reshape(-1), y.reshape(-1))
    else:
        _gelu_backward[double](grad.reshape(-1), x.reshape(-1), y.reshape(-1))
    return y


cdef inline double _norm_sum_g(const floating* dy, const double* w, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return pydeberta_norm_sum_g_float(dy, w, n)
    else:
        return pydeberta_norm_sum_g_double(dy, w, n)


cdef inline double _norm_sum_gxhat(const floating* dy, const floating* x, const double* w, Py_ssize_t n,
                                   double mean, double inv_sigma) noexcept nogil:
    if floating is float:
        return pydeberta_norm_sum_gxhat_float(dy, x, w, n, mean, inv_sigma)
    else:
        return pydeberta_norm_sum_gxhat_double(dy, x, w, n, mean, inv_sigma)


cdef inline void _norm_dx(const floating* dy, const floating* x, const double* w, floating* dx, Py_ssize_t n,
                          double mean, double inv_sigma, double mean_g, double mean_gxhat) noexcept nogil:
    if floating is float:
        pydeberta_norm_dx_float(dy, x, w, dx, n, mean, inv_sigma, mean_g, mean_gxhat)
    else:
        pydeberta_norm_dx_double(dy, x, w, dx, n, mean, inv_sigma, mean_g, mean_gxhat)


cdef inline void _norm_params(const floating* dy, const floating* x, Py_ssize_t n, double mean, double inv_sigma,
                              double* dweight, double* dbias) noexcept nogil:
    if floating is float:
        pydeberta_norm_params_float(dy, x, n, mean, inv_sigma, dweight, dbias)
    else:
        pydeberta_norm_params_double(dy, x, n, mean, inv_sigma, dweight, dbias)


cdef void _layer_norm_backward(const floating[:, ::1] dy, const floating[:, ::1] x, const double[::1] weight,
                               double eps, floating[:, ::1] dx, double[:, :, ::1] partial) noexcept nogil:
    """Per row, in double: the forward's mean and variance (two passes), ``inv_sigma = 1 / sqrt(var + eps)``,
    the row's parameter gradients added into its block's ``partial[block] = (dweight, dbias)``, the
    means of ``g`` and ``g * xhat``, and ``dx`` rounded once to the element type. ``prange`` over
    blocks of ``NORM_ROWS`` rows; then the blocks' sums are added in order into ``partial[0]``."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], blocks = partial.shape[0], block, m, c
    cdef double mean, inv_sigma, mean_g, mean_gxhat
    for block in prange(blocks, schedule="static"):
        for m in range(block * NORM_ROWS, min(block * NORM_ROWS + NORM_ROWS, M)):
            mean = _row_sum(&x[m, 0], C) / C
            inv_sigma = 1.0 / sqrt(_row_sum_sq_dev(&x[m, 0], C, mean) / C + eps)
            _norm_params(&dy[m, 0], &x[m, 0], C, mean, inv_sigma, &partial[block, 0, 0], &partial[block, 1, 0])
            mean_g = _norm_sum_g(&dy[m, 0], &weight[0], C) / C
            mean_gxhat = _norm_sum_gxhat(&dy[m, 0], &x[m, 0], &weight[0], C, mean, inv_sigma) / C
            _norm_dx(&dy[m, 0], &x[m, 0], &weight[0], &dx[m, 0], C, mean, inv_sigma, mean_g, mean_gxhat)
    for block in range(1, blocks):
        for c in range(C):
            partial[0, 0, c] += partial[block, 0, c]
            partial[0, 1, c] += partial[block, 1, c]


def layer_norm_backward(grad, x, weight, bias, eps):
    """Twin of :func:`pydeberta.engine.kernels.layer_norm_backward` (:func:`pydeberta.functional.layer_norm_backward`).
    With xhat = (x - mean) / sigma, sigma = sqrt(var + eps) over the last axis (two passes, as the
    forward) and g = grad * weight::

        dx      = (g - mean(g) - xhat * mean(g * xhat)) / sigma          (means over the last axis)
        dweight = sum over rows of grad * xhat          dbias = sum over rows of grad

    per row in double, rounded once to x's dtype; ``weight`` is read in double. The parameter sums
    are taken in double by fixed blocks of rows whose sums are then added in order: the same bits
    on any number of threads. ``bias`` is not read (the reference does not read it either). When
    grad and x differ in dtype both are widened to float64 (exactly) first, as in the reference.

    Shapes: grad and x ``[..., C]``, weight ``[C]``; returns
    ``(dx [..., C], {"weight": [C], "bias": [C]})``, all in x's dtype.
    """
    grad, x = _float_array("grad", grad), _float_array("x", x)
    _same_shape(grad, x)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis (the normalised one), got a 0-d array")
    if grad.dtype != x.dtype:
        dx, grads = layer_norm_backward(grad.astype(np.float64), x.astype(np.float64), weight, bias, eps)
        return dx.astype(x.dtype), {name: value.astype(x.dtype) for name, value in grads.items()}
    C = x.shape[x.ndim - 1]
    weight = np.ascontiguousarray(weight, dtype=np.float64)
    if weight.shape != (C,):
        raise ValueError(f"weight must have shape ({C},) to match x {x.shape}, got {weight.shape}")
    M = x.size // C if C else 0
    dx = np.empty_like(x)
    partial = np.zeros((max((M + NORM_ROWS - 1) // NORM_ROWS, 1), 2, C))  # [blocks, 2, C]: (dweight, dbias) per block
    if M:
        if x.dtype == np.float32:
            _layer_norm_backward[float](grad.reshape(-1, C), x.reshape(-1, C), weight, float(eps), dx.reshape(-1, C),
                                        partial)
        else:
            _layer_norm_backward[double](grad.reshape(-1, C), x.reshape(-1, C), weight, float(eps), dx.reshape(-1, C),
                                         partial)
    return dx, {"weight": partial[0, 0].astype(x.dtype), "bias": partial[0, 1].astype(x.dtype)}
