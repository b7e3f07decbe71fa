"""Disentangled self-attention: content and relative position attend separately.

The DeBERTa paper's eq. (4): with content projections ``Qc = H Wq``, ``Kc = H Wk``, ``Vc = H Wv``
and the relative-embedding table ``P`` projected as ``Qr = P Wq,r``, ``Kr = P Wk,r``, for query
``i`` and key ``j`` of one head (``D`` = head size)::

    A[i, j] = ( Qc_i · Kc_j  +  Qc_i · Kr[c(i, j)]  +  Kc_j · Qr[c(i, j)] ) / sqrt(D · sf)
                  c2c              c2p                     p2c
    out     = softmax(A) @ Vc

``c(i, j)`` is the table row of the bucketed distance ``i - j``
(:func:`pydeberta.positions.relative_index`) and ``sf = 1 + #relative terms`` (3 in the released
models, the paper's ``sqrt(3d)``). With ``share_att_key`` (DeBERTa-v2/v3) the position
projections are ``key_proj``/``query_proj`` themselves, biases included; otherwise
``pos_key_proj``/``pos_query_proj``. Masked (query, key) pairs get ``finfo.min`` before the
softmax, so a fully masked (padded) query row attends uniformly to every key, as transformers
>= 4.47.

This is the book: it computes every term in full, as written. The engine's version
(:mod:`pydeberta.engine.attention`) gives the same numbers faster.

Shapes: ``B`` batch, ``H`` heads, ``Q``/``K`` query/key length (``N`` when equal), ``D`` head
size, ``C`` hidden size, ``S`` attention span (the relative table has ``2S`` rows).
"""

import numpy as np

from .functional import layer_norm, linear, masked_softmax


def split_heads(x, num_heads):
    """``[B, N, H*D] -> [B, H, N, D]`` (transformers' ``transpose_for_scores``)."""
    B, N, _ = x.shape
    return x.reshape(B, N, num_heads, -1).transpose(0, 2, 1, 3)  # [B, H, N, D]


def merge_heads(x):
    """``[B, H, N, D] -> [B, N, H*D]``, the inverse of :func:`split_heads`."""
    B, H, N, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * D)  # [B, N, C]


def attention_scale(head_size, pos_att, dtype):
    """``sqrt(D · sf)`` with ``sf = 1 + #{c2p, p2c} in pos_att``.

    transformers takes the square root in float32 and casts it to the activation dtype, so in
    float64 the scale is the float32 value widened; we do the same for 1e-8 parity.

    >>> print(attention_scale(64, {"c2p", "p2c"}, np.dtype(np.float32)))   # sqrt(64 * 3)
    13.856406
    """
    scale_factor = 1 + len(pos_att)
    return dtype.type(np.sqrt(np.float32(head_size) * np.float32(scale_factor)))


def relative_projections(rel_embeddings, params, config):
    """Project the relative-embedding table for one layer: ``Kr`` (for c2p) and ``Qr`` (for p2c).

    ``Kr = heads(P @ Wk.T + bk)``, ``Qr = heads(P @ Wq.T + bq)`` with the content projections
    when ``config.share_att_key``, else ``pos_key_proj`` / ``pos_query_proj``.

    Args:
        rel_embeddings: ``P [2S, C]`` (already LayerNorm-ed when ``norm_rel_ebd`` asks for it).
        params: the layer's ``attention.self`` parameters.
    Returns:
        ``(pos_key, pos_query)``, each ``[H, 2S, D]``, or None when its term is off.
    """
    P = rel_embeddings[None]  # [1, 2S, C]
    H = config.num_attention_heads
    key_name, query_name = ("key_proj", "query_proj") if config.share_att_key else ("pos_key_proj", "pos_query_proj")
    pos_key = split_heads(linear(P, **params[key_name]), H)[0] if "c2p" in config.pos_att else None  # [H, 2S, D]
    pos_query = split_heads(linear(P, **params[query_name]), H)[0] if "p2c" in config.pos_att else None  # [H, 2S, D]
    return pos_key, pos_query


def attention_score_terms(query, key, scale, pos_key=None, pos_query=None, rel_index=None):
    """The three score terms of eq. (4), each already divided by ``scale``::

        c2c[b, h, i, j] = q[b, h, i] · k[b, h, j] / scale
        c2p[b, h, i, j] = q[b, h, i] · Kr[h, c(i, j)] / scale      (gathered from q @ Kr.T)
        p2c[b, h, i, j] = k[b, h, j] · Qr[h, c(i, j)] / scale      (gathered from k @ Qr.T)

    Args:
        query: ``[B, H, Q, D]``; key: ``[B, H, K, D]``; scale: scalar from :func:`attention_scale`.
        pos_key, pos_query: ``[H, 2S, D]`` or None (term off).
        rel_index: int ``[Q, K]`` table rows ``c(i, j)``; needed when a relative term is on.
    Returns:
        dict with ``"c2c"`` and, when on, ``"c2p"`` and ``"p2c"``; each ``[B, H, Q, K]``.
    """
    terms = {"c2c": query @ (key.swapaxes(-1, -2) / scale)}  # [B, H, Q, K]
    if pos_key is not None:
        c2p_all = query @ pos_key.swapaxes(-1, -2)  # [B, H, Q, 2S]: q_i with every table row
        terms["c2p"] = np.take_along_axis(c2p_all, rel_index[None, None], axis=-1) / scale  # [B, H, Q, K]
    if pos_query is not None:
        p2c_all = key @ pos_query.swapaxes(-1, -2)  # [B, H, K, 2S]: k_j with every table row
        gathered = np.take_along_axis(p2c_all, rel_index.T[None, None], axis=-1)  # [B, H, K, Q]
        terms["p2c"] = gathered.swapaxes(-1, -2) / scale  # [B, H, Q, K]
    return terms


def disentangled_self_attention(hidden, params, config, visible, rel_embeddings=None, rel_index=None):
    """One ``DisentangledSelfAttention`` block: projections, the three terms, scale, mask,
    softmax, context (eq. (4)).

    Args:
        hidden: ``[B, N, C]`` layer input.
        params: the layer's ``attention.self`` parameters (``query_proj``, ``key_proj``, ...).
        config: the model's :class:`~pydeberta.config.DebertaV2Config`.
        visible: bool ``[B, 1, N, N]``, ``m_i · m_j``.
        rel_embeddings: the relative table ``P [2S, C]`` when relative attention is on, else None.
        rel_index: int ``[N, N]`` rows ``c(i, j)`` of ``P`` (with ``rel_embeddings``).
    Returns:
        ``(context [B, N, C], probs [B, H, N, N], terms)``, ``terms`` as
        :func:`attention_score_terms` returns them.
    """
    H = config.num_attention_heads
    query = split_heads(linear(hidden, **params["query_proj"]), H)  # [B, H, N, D]
    key = split_heads(linear(hidden, **params["key_proj"]), H)  # [B, H, N, D]
    value = split_heads(linear(hidden, **params["value_proj"]), H)  # [B, H, N, D]
    scale = attention_scale(query.shape[-1], config.pos_att, query.dtype)
    pos_key, pos_query = (None, None) if rel_embeddings is None else relative_projections(rel_embeddings, params,
                                                                                          config)  # [H, 2S, D]
    terms = attention_score_terms(query, key, scale, pos_key, pos_query, rel_index)  # each [B, H, N, N]
    scores = terms["c2c"] + sum(terms[name] for name in ("c2p", "p2c") if name in terms)  # [B, H, N, N]
    probs = masked_softmax(scores, visible)  # [B, H, N, N]
    context = merge_heads(probs @ value)  # [B, N, C]
    return context, probs, terms


def attention_output(context, residual, params, eps):
    """``DebertaV2SelfOutput``: ``LayerNorm(dense(context) + residual)``; ``[B, N, C]``."""
    return layer_norm(linear(context, **params["dense"]) + residual, **params["LayerNorm"], eps=eps)
