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

from typing import NamedTuple, Optional

import numpy as np

from .dropout import NO_DROPOUT
from .functional import (layer_norm, layer_norm_backward, linear, linear_backward, masked_softmax,
                         masked_softmax_backward)


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


def position_projection_names(config):
    """The names of the layers that project the relative table for c2p and p2c: the content
    projections ``("key_proj", "query_proj")`` with ``share_att_key``, else
    ``("pos_key_proj", "pos_query_proj")``."""
    return ("key_proj", "query_proj") if config.share_att_key else ("pos_key_proj", "pos_query_proj")


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
    key_name, query_name = position_projection_names(config)
    # contiguous copies: on these head-split views NumPy's batched matmul (q @ Kr.T) leaves BLAS
    # for a plain loop, ~70x slower at base size
    pos_key = pos_query = None
    if "c2p" in config.pos_att:
        pos_key = np.ascontiguousarray(split_heads(linear(P, **params[key_name]), H)[0])  # [H, 2S, D]
    if "p2c" in config.pos_att:
        pos_query = np.ascontiguousarray(split_heads(linear(P, **params[query_name]), H)[0])  # [H, 2S, D]
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


class Projections(NamedTuple):
    """The per-head inputs of the scores: ``query``, ``key``, ``value`` ``[B, H, N, D]``, the
    ``scale`` ``sqrt(D · sf)``, and ``pos_key`` / ``pos_query`` ``[H, 2S, D]`` (None when off)."""

    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    scale: np.floating
    pos_key: Optional[np.ndarray]
    pos_query: Optional[np.ndarray]


def project(hidden, params, config, rel_embeddings=None):
    """The projections of one block: content ``Qc, Kc, Vc`` split into heads, and the relative
    table's ``Kr, Qr`` (:func:`relative_projections`) when relative attention is on.

    Args:
        hidden: ``[B, N, C]``; params, config, rel_embeddings: as :func:`disentangled_self_attention`.
    Returns:
        :class:`Projections`.
    """
    H = config.num_attention_heads
    query = split_heads(linear(hidden, **params["query_proj"]), H)  # [B, H, N, D]
    key = split_heads(linear(hidden, **params["key_proj"]), H)  # [B, H, N, D]
    value = split_heads(linear(hidden, **params["value_proj"]), H)  # [B, H, N, D]
    scale = attention_scale(query.shape[-1], config.pos_att, query.dtype)
    pos_key, pos_query = (None, None) if rel_embeddings is None else relative_projections(rel_embeddings, params,
                                                                                          config)  # [H, 2S, D]
    return Projections(query, key, value, scale, pos_key, pos_query)


def attention_probabilities(p, visible, rel_index=None):
    """``softmax(c2c + c2p + p2c)`` over the visible keys, from :class:`Projections` ``p``.

    Returns:
        ``(probs [B, H, N, N], terms)``, ``terms`` as :func:`attention_score_terms` returns them.
    """
    terms = attention_score_terms(p.query, p.key, p.scale, p.pos_key, p.pos_query, rel_index)  # each [B, H, N, N]
    scores = terms["c2c"] + sum(terms[name] for name in ("c2p", "p2c") if name in terms)  # [B, H, N, N]
    return masked_softmax(scores, visible), terms


def disentangled_self_attention(hidden, params, config, visible, rel_embeddings=None, rel_index=None,
                                drop=NO_DROPOUT):
    """One ``DisentangledSelfAttention`` block: projections, the three terms, scale, mask,
    softmax, context (eq. (4)).

    Args:
        hidden: ``[B, N, C]`` layer input.
        params: the layer's ``attention.self`` parameters (``query_proj``, ``key_proj``, ...).
        config: the model's :class:`~pydeberta.config.DebertaV2Config`.
        visible: bool ``[B, 1, N, N]``, ``m_i · m_j``.
        rel_embeddings: the relative table ``P [2S, C]`` when relative attention is on, else None.
        rel_index: int ``[N, N]`` rows ``c(i, j)`` of ``P`` (with ``rel_embeddings``).
        drop: dropout (:mod:`pydeberta.dropout`) on the table and the probabilities; none by default.
    Returns:
        ``(context [B, N, C], probs [B, H, N, N], terms)``, ``terms`` as
        :func:`attention_score_terms` returns them (``probs`` after dropout, as transformers).
    """
    if rel_embeddings is not None:
        rel_embeddings = drop(rel_embeddings, "attention.rel")
    p = project(hidden, params, config, rel_embeddings)
    probs, terms = attention_probabilities(p, visible, rel_index)  # [B, H, N, N]
    probs = drop(probs, "attention.probs")
    context = merge_heads(probs @ p.value)  # [B, N, C]
    return context, probs, terms


def attention_output(context, residual, params, eps, drop=NO_DROPOUT):
    """``DebertaV2SelfOutput``: ``LayerNorm(dropout(dense(context)) + residual)``; ``[B, N, C]``."""
    return layer_norm(drop(linear(context, **params["dense"]), "attention.output") + residual, **params["LayerNorm"],
                      eps=eps)


# --------------------------------------------------------------------------- backward
# Each backward takes the gradient of its forward's output and the forward's own arguments, and
# recomputes the intermediates it needs (nothing is stored between the two passes). Parameter
# gradients come back as dicts shaped like ``params``.
def gather_backward(grad, index, size):
    """Backward of ``np.take_along_axis(table, index, axis=-1)`` for a ``table [..., R, size]``:
    a scatter-add, ``dtable[..., r, index[r, j]] += grad[..., r, j]`` (several ``j`` of one row
    may read the same table column: the log buckets).

    Shapes: grad ``[..., R, K]``, index int ``[R, K]``; returns ``[..., R, size]``.
    """
    dtable = np.zeros(grad.shape[:-1] + (size,), grad.dtype)  # [..., R, size]
    rows = np.arange(index.shape[0])[:, None]  # [R, 1]
    np.add.at(dtable, (..., rows, index), grad)
    return dtable


def add_grads(total, grads):
    """Add the nested parameter-gradient dict ``grads`` into ``total`` (same layout) and return it."""
    for name, value in grads.items():
        if isinstance(value, dict):
            add_grads(total.setdefault(name, {}), value)
        else:
            total[name] = value if name not in total else total[name] + value
    return total


def attention_score_terms_backward(grads, query, key, scale, pos_key=None, pos_query=None, rel_index=None):
    """Backward of :func:`attention_score_terms` from the gradient of each term::

        c2c:  dq += dc2c @ k / scale                 dk += dc2c^T @ q / scale
        c2p:  D = scatter_j(dc2p) / scale            dq += D @ Kr       dKr += sum_b D^T @ q
        p2c:  D = scatter_i(dp2c^T) / scale          dk += D @ Qr       dQr += sum_b D^T @ k

    where ``scatter`` (:func:`gather_backward`) adds each (i, j) entry into its table row
    ``c(i, j)``: the relative table learns from every pair at that bucketed distance.

    Args:
        grads: dict of ``[B, H, Q, K]`` arrays, one per term the forward returned.
        query, key, scale, pos_key, pos_query, rel_index: the forward's arguments.
    Returns:
        ``(dquery [B, H, Q, D], dkey [B, H, K, D], dpos_key, dpos_query)``, the last two
        ``[H, 2S, D]`` or None.
    """
    dquery = grads["c2c"] @ key / scale  # [B, H, Q, D]
    dkey = grads["c2c"].swapaxes(-1, -2) @ query / scale  # [B, H, K, D]
    dpos_key = dpos_query = None
    if pos_key is not None:
        d_all = gather_backward(grads["c2p"] / scale, rel_index, pos_key.shape[-2])  # [B, H, Q, 2S]
        dquery = dquery + d_all @ pos_key
        dpos_key = (d_all.swapaxes(-1, -2) @ query).sum(axis=0)  # [H, 2S, D]: summed over the batch
    if pos_query is not None:
        d_all = gather_backward(grads["p2c"].swapaxes(-1, -2) / scale, rel_index.T,
                                pos_query.shape[-2])  # [B, H, K, 2S]
        dkey = dkey + d_all @ pos_query
        dpos_query = (d_all.swapaxes(-1, -2) @ key).sum(axis=0)  # [H, 2S, D]
    return dquery, dkey, dpos_key, dpos_query


def relative_projections_backward(dpos_key, dpos_query, rel_embeddings, params, config):
    """Backward of :func:`relative_projections`: the head-split gradients go back through the
    position projections' :func:`~pydeberta.functional.linear_backward`.

    Returns:
        ``(dP [2S, C], grads)``, ``grads`` keyed by the projection names the forward used.
    """
    key_name, query_name = position_projection_names(config)
    dP = np.zeros_like(rel_embeddings)  # [2S, C]
    grads = {}
    for name, d in ((key_name, dpos_key), (query_name, dpos_query)):
        if d is not None:
            dP_part, grads[name] = linear_backward(merge_heads(d[None])[0], rel_embeddings, **params[name])  # [2S, C]
            dP = dP + dP_part
    return dP, grads


def disentangled_self_attention_backward(dcontext, hidden, params, config, visible, rel_embeddings=None,
                                         rel_index=None, drop=NO_DROPOUT):
    """Backward of :func:`disentangled_self_attention` from ``dcontext [B, N, C]``::

        dV = A^T @ dctx            dA = dctx @ V^T            dscores = masked_softmax'(dA)
        then the three terms (:func:`attention_score_terms_backward`) and the projections.

    Returns:
        ``(dhidden [B, N, C], grads, drel_embeddings [2S, C] or None)``; ``grads`` shaped like
        ``params``.
    """
    dropped = None if rel_embeddings is None else drop(rel_embeddings, "attention.rel")
    p = project(hidden, params, config, dropped)
    probs, terms = attention_probabilities(p, visible, rel_index)  # [B, H, N, N]
    dctx = split_heads(dcontext, config.num_attention_heads)  # [B, H, N, D]
    dvalue = drop(probs, "attention.probs").swapaxes(-1, -2) @ dctx  # [B, H, N, D]
    dprobs = drop(dctx @ p.value.swapaxes(-1, -2), "attention.probs")  # [B, H, N, N]
    dscores = masked_softmax_backward(dprobs, probs, visible)  # [B, H, N, N]
    dquery, dkey, dpos_key, dpos_query = attention_score_terms_backward(
        {name: dscores for name in terms}, p.query, p.key, p.scale, p.pos_key, p.pos_query, rel_index)
    grads = {}
    dhidden = np.zeros_like(hidden)  # [B, N, C]
    for name, d in (("query_proj", dquery), ("key_proj", dkey), ("value_proj", dvalue)):
        dh, grads[name] = linear_backward(merge_heads(d), hidden, **params[name])  # [B, N, C]
        dhidden = dhidden + dh
    drel = None
    if rel_embeddings is not None:
        drel, rel_grads = relative_projections_backward(dpos_key, dpos_query, dropped, params, config)
        drel = drop(drel, "attention.rel")
        add_grads(grads, rel_grads)
    return dhidden, grads, drel


def attention_output_backward(grad, context, residual, params, eps, drop=NO_DROPOUT):
    """Backward of :func:`attention_output`, ``LayerNorm(dense(context) + residual)``.

    Returns:
        ``(dcontext [B, N, C], dresidual [B, N, C], grads)`` with ``grads`` for ``dense`` and ``LayerNorm``.
    """
    z = drop(linear(context, **params["dense"]), "attention.output") + residual  # [B, N, C]
    dz, ln_grads = layer_norm_backward(grad, z, **params["LayerNorm"], eps=eps)
    dcontext, dense_grads = linear_backward(drop(dz, "attention.output"), context, **params["dense"])
    return dcontext, dz, {"dense": dense_grads, "LayerNorm": ln_grads}
