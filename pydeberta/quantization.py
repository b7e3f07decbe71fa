"""int8 linear layers in exact integer arithmetic: the reference the engine's kernel must equal.

A float32 linear layer ``y = x @ W.T + b`` becomes, with ``W`` quantized once and ``x`` at every
call (``docs/int8.md``)::

    W[o, :] ~ w_scale[o] * Wq[o, :]        Wq int8 in [-127, 127], w_scale[o] = max|W[o, :]| / 127
    x[r, :] ~ x_scale[r] * xq[r, :]        xq int8 in [-127, 127], x_scale[r] = max|x[r, :]| / 127
    acc[r, o] = sum_i xq[r, i] * Wq[o, i]                      (int32, exact)
    y[r, o] = float32(acc[r, o]) * (x_scale[r] * w_scale[o]) + b[o]

Symmetric scales (no zero points) keep the product a plain integer dot product; one scale per
output channel of ``W`` and per row of ``x`` (per token) follows each row's own range. Every step
is defined in float32 in the order written (division, round half to even, clip; the conversion,
the product of the scales, the multiply, the bias), so a compiled kernel doing the same steps
gives the same bits. The integer product runs here as a float64 matrix product: every term
``xq * Wq`` and every partial sum is an integer of magnitude below ``in * 127 * 127 < 2**53``
(for ``in`` up to about 5.5e8), so float64 holds each exactly, in any summation order.

Shapes: ``x [..., in]``, ``weight [out, in]``, scales ``[out]`` and ``[...]``, ``y [..., out]``.
"""

import math

import numpy as np

QMAX = 127  # symmetric int8: -128 is never used, so -q is always representable


def quantize_symmetric(x):
    """Quantize each row of ``x`` (the last axis) to int8 with its own scale::

        scale = max|x| / 127          q = clip(round_half_even(x / scale), -127, 127)

    A row of zeros gets scale 0 and q 0. A row holding a NaN or an infinity gets scale NaN and
    q 0, so what comes out of it (:func:`quantized_linear`) is NaN, as in float32, never a number.

    Shapes: ``x [..., in]`` -> ``(q int8 [..., in], scale float32 [...])``.

    >>> q, scale = quantize_symmetric(np.array([[0.5, -1.27, 0.0]], np.float32))
    >>> q, scale
    (array([[  50, -127,    0]], dtype=int8), array([0.01], dtype=float32))
    """
    x = np.asarray(x, np.float32)
    finite = np.isfinite(x).all(axis=-1)  # [...]
    scale = np.where(finite, np.abs(x).max(axis=-1, initial=np.float32(0), where=np.isfinite(x)) / np.float32(QMAX),
                     np.float32(np.nan))  # [...]
    divisor = np.where(scale > 0, scale, np.float32(1))[..., None]  # [..., 1]: NaN > 0 is False
    q = np.clip(np.rint(np.where(finite[..., None], x, 0) / divisor), -QMAX, QMAX).astype(np.int8)  # [..., in]
    return q, scale.astype(np.float32)


def quantize_weight(weight):
    """Per-output-channel symmetric int8 weights: :func:`quantize_symmetric` of each row of the
    ``nn.Linear`` weight ``[out, in]``; returns ``(weight int8 [out, in], weight_scale float32 [out])``.
    ``ValueError`` for a weight with NaN or infinite values (they have no int8 form)."""
    weight = np.asarray(weight, np.float32)
    if not np.isfinite(weight).all():
        raise ValueError(f"quantize_weight: the weight has {np.size(weight) - np.isfinite(weight).sum()} NaN or "
                         f"infinite values; only finite weights can be quantized")
    return quantize_symmetric(weight)


def dequantize(q, scale):
    """The float32 values an int8 array stands for: ``q * scale`` per row. Shapes:
    ``q [..., in]``, ``scale [...]`` -> ``[..., in]``."""
    return q.astype(np.float32) * scale[..., None]


def integer_matmul(xq, wq):
    """``acc[r, o] = sum_i xq[r, i] * wq[o, i]`` exactly, as int32.

    Shapes: ``xq int8 [M, in]``, ``wq int8 [out, in]`` -> ``int32 [M, out]``. Runs as a float64
    product, exact while ``in * 127**2 < 2**53`` (see the module docstring); ``in`` beyond
    ``(2**31 - 1) // 127**2`` (133,144) could overflow int32, and is refused.
    """
    if xq.shape[-1] > (2**31 - 1) // QMAX**2:
        raise ValueError(f"integer_matmul: in={xq.shape[-1]} could overflow the int32 accumulator "
                         f"(at most {(2**31 - 1) // QMAX**2})")
    return (xq.astype(np.float64) @ wq.astype(np.float64).T).astype(np.int32)  # [M, out]


def quantized_linear(x, weight, weight_scale, bias=None):
    """``nn.Linear`` with int8 weights and per-row dynamic int8 activations (module docstring)::

        xq, x_scale = quantize_symmetric(x)
        y = float32(xq @ weight.T) * (x_scale[:, None] * weight_scale) + bias

    Shapes: ``x [..., in]`` float32; ``weight`` int8 ``[out, in]``; ``weight_scale`` float32
    ``[out]``; ``bias [out]`` or None; returns float32 ``[..., out]``.

    >>> w, w_scale = quantize_weight(np.array([[1.0, -2.0], [0.5, 0.25]], np.float32))
    >>> w                                   # 1 / (2/127) = 63.5 rounds to even: 64
    array([[  64, -127],
           [ 127,   64]], dtype=int8)
    >>> quantized_linear(np.array([[2.0, 1.0]], np.float32), w, w_scale)   # float32: [[0, 1.25]]
    array([[0.       , 1.2539525]], dtype=float32)
    """
    x = np.asarray(x, np.float32)
    xq, x_scale = quantize_symmetric(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]))  # [M, in], [M]
    acc = integer_matmul(xq, weight)  # [M, out] int32
    y = acc.astype(np.float32) * (x_scale[:, None] * weight_scale)  # [M, out]
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])  # [..., out]
