"""The nGiE convolution (``ConvLayer``), used by deberta-v2-xlarge and -xxlarge (DeBERTa paper,
appendix A.6, "nGiE": n-gram induced input encoding).

A 1-D convolution over the sequence looks at each token's ``k`` neighbours in the *embedding
output* ``E0`` (n-gram information) and is added to the output of layer 0::

    out[b, t] = bias + Σ_τ W[:, :, τ] @ E0pad[b, t + τ]      (cross-correlation, zero padding (k-1)//2)
    out       = conv_act(dropout(out * m))                    (padded positions zeroed first; dropout in training)
    Y0'       = LayerNorm(Y0 + out) * m

With ``groups = g`` the channels split into ``g`` blocks that only see their own block.
"""

import numpy as np

from .dropout import NO_DROPOUT
from .functional import get_activation, get_activation_backward, layer_norm, layer_norm_backward


def conv1d(x, weight, bias, groups=1):
    """Grouped 1-D cross-correlation over the sequence axis with 'same' zero padding.

    Args:
        x: ``[B, N, C]``.
        weight: ``[C, C/g, k]`` (PyTorch ``Conv1d`` layout), ``k`` odd.
        bias: ``[C]``.
    Returns:
        ``[B, N, C]``: ``out[b, t, o] = bias[o] + Σ_τ Σ_c weight[o, c, τ] · xpad[b, t + τ, g(o)·C/g + c]``.
    """
    B, N, C = x.shape
    C_out, C_in_group, k = weight.shape
    pad = (k - 1) // 2
    xpad = np.pad(x, ((0, 0), (pad, pad), (0, 0)))  # [B, N + 2p, C]
    w = weight.reshape(groups, C_out // groups, C_in_group, k)  # [g, Co/g, Ci/g, k]
    windows = (xpad[:, tau:tau + N].reshape(B * N, groups, C_in_group).transpose(1, 0, 2)
               for tau in range(k))  # each [g, B*N, Ci/g]: the inputs tap tau sees
    out = sum(window @ w[..., tau].transpose(0, 2, 1) for tau, window in enumerate(windows))  # [g, B*N, Co/g]
    return out.transpose(1, 0, 2).reshape(B, N, C_out) + bias  # [B, N, C]


def conv_layer(embedding_output, layer_output, mask, params, config, drop=NO_DROPOUT):
    """``ConvLayer``: mix the convolved embedding output into layer 0's output.

    Args:
        embedding_output: ``E0 [B, N, C]`` (padded rows already zero).
        layer_output: ``Y0 [B, N, C]``, the output of layer 0.
        mask: ``[B, N]`` 0/1 in the activation dtype.
        params: ``encoder.conv`` parameters (``conv.weight``, ``conv.bias``, ``LayerNorm``).
    Returns:
        ``(Y0' [B, N, C], out [B, N, C])``: the new layer output and the activated convolution.
    """
    out = conv1d(embedding_output, **params["conv"], groups=config.conv_groups)  # [B, N, C]
    out = get_activation(config.conv_act)(drop(out * mask[..., None], "conv"))
    return layer_norm(layer_output + out, **params["LayerNorm"], eps=config.layer_norm_eps) * mask[..., None], out


def conv1d_backward(grad, x, weight, bias, groups=1):
    """Backward of :func:`conv1d`: for each tap ``tau`` the forward is a product
    ``window_tau @ W_tau^T``, so ``dW_tau = dout^T @ window_tau`` and the windows' gradients
    ``dout @ W_tau`` add back into the padded input at their offset.

    Shapes: grad and x ``[B, N, C]``; returns ``(dx [B, N, C], {"weight": [C, C/g, k], "bias": [C]})``.
    """
    B, N, C = x.shape
    C_out, C_in_group, k = weight.shape
    pad = (k - 1) // 2
    xpad = np.pad(x, ((0, 0), (pad, pad), (0, 0)))  # [B, N + 2p, C]
    w = weight.reshape(groups, C_out // groups, C_in_group, k)  # [g, Co/g, Ci/g, k]
    dout = grad.reshape(B * N, groups, C_out // groups).transpose(1, 0, 2)  # [g, B*N, Co/g]
    dw = np.zeros_like(w)  # [g, Co/g, Ci/g, k]
    dxpad = np.zeros_like(xpad)  # [B, N + 2p, C]
    for tau in range(k):
        window = xpad[:, tau:tau + N].reshape(B * N, groups, C_in_group).transpose(1, 0, 2)  # [g, B*N, Ci/g]
        dw[..., tau] = dout.transpose(0, 2, 1) @ window  # [g, Co/g, Ci/g]
        dxpad[:, tau:tau + N] += (dout @ w[..., tau]).transpose(1, 0, 2).reshape(B, N, C)  # [B, N, C]
    grads = {"weight": dw.reshape(weight.shape), "bias": grad.reshape(-1, C_out).sum(axis=0)}
    return dxpad[:, pad:pad + N], grads


def conv_layer_backward(grad, embedding_output, layer_output, mask, params, config, drop=NO_DROPOUT):
    """Backward of :func:`conv_layer` from the gradient of ``Y0'``.

    Returns:
        ``(dE0 [B, N, C], dY0 [B, N, C], grads)`` with ``grads`` for ``conv`` and ``LayerNorm``.
    """
    m = mask[..., None]  # [B, N, 1]
    pre = drop(conv1d(embedding_output, **params["conv"], groups=config.conv_groups) * m, "conv")  # [B, N, C]
    out = get_activation(config.conv_act)(pre)
    dsum, ln_grads = layer_norm_backward(grad * m, layer_output + out, **params["LayerNorm"],
                                         eps=config.layer_norm_eps)  # [B, N, C]
    dpre = drop(get_activation_backward(config.conv_act)(dsum, pre), "conv") * m  # [B, N, C]
    dx, conv_grads = conv1d_backward(dpre, embedding_output, **params["conv"], groups=config.conv_groups)
    return dx, dsum, {"conv": conv_grads, "LayerNorm": ln_grads}
