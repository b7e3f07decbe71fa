"""The engine's kernels in NumPy: the ``numpy`` backend runs these, the ``cython`` backend their
compiled twins (``_ext/functional.pyx``, ``_ext/attention.pyx``), chosen in
:mod:`pydeberta.engine.backend`.

Each kernel computes what its book function computes (:mod:`pydeberta.functional`,
:mod:`pydeberta.attention`), arranged for speed: one matrix product for all leading axes, the
residual sum fused into LayerNorm, and the relative terms gathered through a
:class:`~pydeberta.engine.relative.RelativeIndex`, optionally into an ``out`` array.
"""

import math

import numpy as np

from .. import functional
from ..attention import gather_backward


def linear(x, weight, bias=None):
    """:func:`pydeberta.functional.linear` as one ``[M, in] x [in, out]`` product for all leading
    axes of ``x``, bias added in place.

    ``x @ weight.T`` on a 3-D ``x`` is ``B`` separate products of ``N`` rows (NumPy's matmul loops
    over stacked matrices), which BLAS runs at a fraction of the speed of one product of
    ``B * N`` rows. Shapes: ``x [..., in]``, ``weight [out, in]``, ``bias [out]``; returns ``[..., out]``.
    """
    y = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) @ weight.T  # [M, out]
    if bias is not None:
        y = np.add(y, bias, out=y) if np.result_type(y, bias) == y.dtype else y + bias  # in place when it can
    return y.reshape(*x.shape[:-1], y.shape[-1])  # [..., out]


gelu = functional.gelu


def layer_norm(x, weight, bias, eps, residual=None):
    """:func:`pydeberta.functional.layer_norm` of ``x``, or of ``x + residual`` (the "add & norm"
    of every block; the sum is taken in the inputs' dtype). Shapes: ``[..., C]``."""
    return functional.layer_norm(x if residual is None else x + residual, weight, bias, eps)


def disentangled_attention_probs(c2c, visible, c2p=None, p2c=None, index=None, out=None):
    """Attention probabilities from the score terms: gather, add, mask, softmax.

    ::

        scores[b, h, i, j] = c2c[b, h, i, j] + (c2p[b, h, i, c] + p2c[b, h, j, c]),   c = index.table()[i, j]
        probs = masked_softmax(scores, visible)

    with every term already divided by the scale: ``c2c = (q / scale) @ k^T``,
    ``c2p = (q / scale) @ Kr^T`` and ``p2c = (k / scale) @ Qr^T`` hold the products with the
    ``R = index.rows`` table rows the index reaches. The book computes the same sum in
    :func:`pydeberta.attention.disentangled_self_attention`.

    Args:
        c2c: ``[B, H, Q, K]``; visible: bool, broadcastable to it (``[B, 1, Q, K]``).
        c2p: ``[B, H, Q, R]`` or None (term off); p2c: ``[B, H, K, R]`` or None.
        index: a :class:`~pydeberta.engine.relative.RelativeIndex` of ``[Q, K]``; needed when a
            relative term is on.
        out: an array ``[B, H, Q, K]`` to write the result into (may be ``c2c``), or None.
    Returns:
        probs ``[B, H, Q, K]`` (``out`` when given).
    """
    relative = []
    if c2p is not None or p2c is not None:
        table = index.table()  # [Q, K]
        if c2p is not None:
            relative.append(np.take_along_axis(c2p, table[None, None], axis=-1))  # [B, H, Q, K]
        if p2c is not None:
            relative.append(np.take_along_axis(p2c, table.T[None, None], axis=-1).swapaxes(-1, -2))  # [B, H, Q, K]
    scores = c2c + sum(relative) if relative else c2c  # [B, H, Q, K]
    probs = functional.masked_softmax(scores, visible)
    if out is None:
        return probs
    out[...] = probs
    return out


# --------------------------------------------------------------------------- backward
# The training step's twins of the book's backward functions (pydeberta.training.engine runs them).
def linear_backward(grad, x, weight, bias=None):
    """:func:`pydeberta.functional.linear_backward` as three products over all leading axes at
    once (``[M, out] x [out, in]`` and so on, as :func:`linear`).

    Shapes: grad ``[..., out]``, x ``[..., in]``, weight ``[out, in]``; returns
    ``(dx [..., in], {"weight": [out, in], "bias": [out]})`` (no ``"bias"`` when bias is None).
    """
    rows = grad.reshape(-1, grad.shape[-1])  # [M, out]
    grads = {"weight": rows.T @ x.reshape(-1, x.shape[-1])}  # [out, in]
    if bias is not None:
        grads["bias"] = rows.sum(axis=0)  # [out]
    return (rows @ weight).reshape(*grad.shape[:-1], weight.shape[-1]), grads  # [..., in]


gelu_backward = functional.gelu_backward
layer_norm_backward = functional.layer_norm_backward


def disentangled_attention_probs_backward(dprobs, probs, visible, index=None, c2p=False, p2c=False):
    """Backward of :func:`disentangled_attention_probs` from ``dprobs``, the gradient of its result.

    ::

        dscores[b, h, i, j] = visible ? probs (dprobs - sum_k dprobs[.., k] probs[.., k]) : 0
        dc2p[b, h, i, r]    = sum of dscores[b, h, i, j] over the keys j with c(i, j) = r
        dp2c[b, h, j, r]    = sum of dscores[b, h, i, j] over the queries i with c(i, j) = r

    ``dscores`` is also the gradient of ``c2c``; the sums are the scatter-add backward of the
    gathers (:func:`pydeberta.attention.gather_backward`), into the ``R = index.rows`` rows the
    index reaches.

    Args:
        dprobs, probs: ``[B, H, Q, K]``; visible: bool, broadcastable to them.
        index: the :class:`~pydeberta.engine.relative.RelativeIndex` (when ``c2p`` or ``p2c``).
        c2p, p2c: whether the forward had that term.
    Returns:
        ``(dscores [B, H, Q, K], dc2p [B, H, Q, R] or None, dp2c [B, H, K, R] or None)``.
    """
    dscores = functional.masked_softmax_backward(dprobs, probs, visible)  # [B, H, Q, K]
    dc2p = dp2c = None
    if c2p:
        dc2p = gather_backward(dscores, index.table(), index.rows)  # [B, H, Q, R]
    if p2c:
        dp2c = gather_backward(dscores.swapaxes(-1, -2), index.table().T, index.rows)  # [B, H, K, R]
    return dscores, dc2p, dp2c
