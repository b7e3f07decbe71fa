"""Task heads on top of the backbone, as pure functions (the model classes that use them are in
:mod:`pydeberta.modeling`).

* masked LM, transformers' legacy layout ``cls.predictions.*``:
  ``LN_E(act(dense(h))) @ W_emb.T + b``
* masked LM, Microsoft's layout ``lm_predictions.lm_head.*`` (``legacy=False``):
  ``LN_C(act(dense(h))) @ W_emb.T + b``
* sequence classification and multiple choice (``pooler.dense.*``, ``classifier.*``):
  ``classifier(pooler(h))``, where ``pooler(h) = pooler_hidden_act(dense(h[:, 0]))`` (no tanh
  unless configured)
* token classification (``classifier.*``) and question answering (``qa_outputs.*``): a linear map of
  every token, ``classifier(h)``

The decoder of the masked LM is tied to the word embeddings (DeBERTa paper, section 3.2; the
Enhanced Mask Decoder of the pre-training is not part of these checkpoints' inference heads).
Dropout is the identity at inference, so it does not appear.
"""

import numpy as np

from .dropout import NO_DROPOUT
from .functional import (get_activation, get_activation_backward, layer_norm, layer_norm_backward, linear,
                         linear_backward)


def context_pooler(hidden, params, config, drop=NO_DROPOUT):
    """``ContextPooler``: ``act(dense(dropout(hidden[:, 0])))``; ``[B, N, C] -> [B, C]``."""
    return get_activation(config.pooler_hidden_act)(linear(drop(hidden[:, 0], "pooler"), **params["dense"]))  # [B, C]


def masked_lm_head(hidden, params, word_embeddings, config):
    """Masked-LM logits ``[B, N, V]`` from ``hidden [B, N, C]``, either checkpoint layout.

    legacy (``cls.predictions``)::  LN_E(act(transform.dense(h))) @ word_embeddings.T + bias
    Microsoft's (``lm_predictions.lm_head``)::  LN_C(act(dense(h))) @ word_embeddings.T + bias

    Args:
        params: the ``cls`` (legacy) or ``lm_predictions`` subtree.
        word_embeddings: ``[V, E]``, the tied decoder.
    """
    head = params["predictions"]["transform"] if config.legacy else params["lm_head"]
    t = get_activation(config.hidden_act)(linear(hidden, **head["dense"]))  # [B, N, E] or [B, N, C]
    t = layer_norm(t, **head["LayerNorm"], eps=config.layer_norm_eps)
    bias = params["predictions"]["bias"] if config.legacy else params["lm_head"]["bias"]
    return linear(t, word_embeddings, bias)  # [B, N, V]: the tied decoder


def context_pooler_backward(grad, hidden, params, config, drop=NO_DROPOUT):
    """Backward of :func:`context_pooler` from ``grad [B, C]``: only token 0 receives a gradient.

    Returns:
        ``(dhidden [B, N, C], {"dense": ...})``.
    """
    token = drop(hidden[:, 0], "pooler")  # [B, C]
    pre = linear(token, **params["dense"])  # [B, C]
    dpre = get_activation_backward(config.pooler_hidden_act)(grad, pre)
    dtoken, dense_grads = linear_backward(dpre, token, **params["dense"])  # [B, C]
    dhidden = np.zeros_like(hidden)  # [B, N, C]
    dhidden[:, 0] = drop(dtoken, "pooler")
    return dhidden, {"dense": dense_grads}


def masked_lm_head_backward(grad, hidden, params, word_embeddings, config):
    """Backward of :func:`masked_lm_head` from ``grad [B, N, V]``.

    Returns:
        ``(dhidden [B, N, C], grads, dword_embeddings [V, E])``: ``grads`` shaped like ``params``,
        and the tied decoder's share of the word embeddings' gradient.
    """
    head = params["predictions"]["transform"] if config.legacy else params["lm_head"]
    bias = params["predictions"]["bias"] if config.legacy else params["lm_head"]["bias"]
    pre = linear(hidden, **head["dense"])  # [B, N, E] or [B, N, C]
    act = get_activation(config.hidden_act)(pre)
    t = layer_norm(act, **head["LayerNorm"], eps=config.layer_norm_eps)
    dt, decoder = linear_backward(grad, t, word_embeddings, bias)
    dact, ln_grads = layer_norm_backward(dt, act, **head["LayerNorm"], eps=config.layer_norm_eps)
    dpre = get_activation_backward(config.hidden_act)(dact, pre)
    dhidden, dense_grads = linear_backward(dpre, hidden, **head["dense"])  # [B, N, C]
    transform = {"dense": dense_grads, "LayerNorm": ln_grads}
    grads = ({"predictions": {"transform": transform, "bias": decoder["bias"]}} if config.legacy
             else {"lm_head": {**transform, "bias": decoder["bias"]}})
    return dhidden, grads, decoder["weight"]
