"""Disentangled self-attention (spec §5): content and relative position attend separately.

For query ``i`` and key ``j`` of one head (``D`` = head size)::

    A[i, j] = ( q_i · k_j  +  q_i · Kr[c(i, j)]  +  k_j · Qr[c(i, j)] ) / sqrt(D · sf)
                 c2c            c2p                    p2c

where ``Kr``/``Qr`` are the relative-embedding table projected by the key/query projections
(``key_proj``/``query_proj`` themselves when ``share_att_key``, including their biases, else
``pos_key_proj``/``pos_query_proj``), ``c(i, j)`` is the table row of the bucketed distance
``i - j`` (:func:`pydeberta.positions.relative_index`) and ``sf = 1 + #relative terms`` (3 in the
released models). Masked (query, key) pairs get ``finfo.min`` before the softmax, so a fully
masked (padded) query row attends uniformly to every key, as transformers >= 4.47.

Shapes: ``B`` batch, ``H`` heads, ``Q``/``K`` query/key length, ``D`` head size, ``C`` hidden
size, ``S`` attention span (the relative table has ``2S`` rows).
"""

import numpy as np

from ._backend import dispatch
from .functional import layer_norm, linear, masked_softmax


def split_heads(x, num_heads):
    """``[B, N, H*D] -> [B, H, N, D]`` (transformers' ``transpose_for_scores``)."""
    B, N, _ = x.shape
    return x.reshape(B, N, num_heads, -1).transpose(0, 2, 1, 3)  # [B, H, N, D]


def attention_scale(head_size, pos_att, dtype):
    """``sqrt(D · sf)`` with ``sf = 1 + #{c2p, p2c} in pos_att``.

    transformers takes the square root in float32 and casts it to the activation dtype, so in
    float64 the scale is the float32 value widened; we do the same for 1e-8 parity.
    """
    scale_factor = 1 + len(pos_att)
    return dtype.type(np.sqrt(np.float32(head_size) * np.float32(scale_factor)))


def relative_projections(rel_embeddings, params, num_heads, pos_att, share_att_key):
    """Project the relative-embedding table for one layer: ``Kr`` and ``Qr``.

    ``Kr = heads(R @ Wk.T + bk)``, ``Qr = heads(R @ Wq.T + bq)`` with the content projections
    when ``share_att_key``, else ``pos_key_proj`` (needed for c2p) / ``pos_query_proj`` (p2c).
    It depends on weights only, so the model computes it once and caches it.

    Args:
        rel_embeddings: ``[2S, C]`` (already LayerNorm-ed when ``norm_rel_ebd`` asks for it).
        params: the layer's ``attention.self`` parameters.
    Returns:
        ``(pos_key, pos_query)``, each ``[H, 2S, D]`` or ``None`` when its term is off.
    """
    R = rel_embeddings[None]  # [1, 2S, C]
    key_name, query_name = ("key_proj", "query_proj") if share_att_key else ("pos_key_proj", "pos_query_proj")
    pos_key = split_heads(linear(R, **params[key_name]), num_heads)[0] if "c2p" in pos_att else None  # [H, 2S, D]
    pos_query = split_heads(linear(R, **params[query_name]), num_heads)[0] if "p2c" in pos_att else None  # [H, 2S, D]
    return pos_key, pos_query


def attention_score_terms(query, key, scale, pos_key=None, pos_query=None, rel_index=None):
    """The three score terms, each already divided by ``scale``.

    ::

        c2c[b, h, i, j] = q[b, h, i] · k[b, h, j] / scale
        c2p[b, h, i, j] = (q[b, h, i] · Kr[h, c(i, j)]) / scale      (gathered from q @ Kr.T)
        p2c[b, h, i, j] = (k[b, h, j] · Qr[h, c(i, j)]) / scale      (gathered from k @ Qr.T)

    Args:
        query: ``[B, H, Q, D]``; key: ``[B, H, K, D]``; scale: scalar from :func:`attention_scale`.
        pos_key, pos_query: ``[H, 2S, D]`` or None (term off).
        rel_index: int ``[Q, K]`` table rows ``c(i, j)``; needed when a relative term is on.
    Returns:
        dict with ``"c2c"`` and, when on, ``"c2p"`` and ``"p2c"``; each ``[B, H, Q, K]``.
    """
    terms = {"c2c": query @ (key.swapaxes(-1, -2) / scale)}  # [B, H, Q, K]
    if pos_key is not None:
        c2p_all = query @ pos_key.swapaxes(-1, -2)  # [B, H, Q, 2S]
        terms["c2p"] = np.take_along_axis(c2p_all, rel_index[None, None], axis=-1) / scale  # [B, H, Q, K]
    if pos_query is not None:
        p2c_all = key @ pos_query.swapaxes(-1, -2)  # [B, H, K, 2S]
        gathered = np.take_along_axis(p2c_all, rel_index.T[None, None], axis=-1)  # [B, H, K, Q]
        terms["p2c"] = gathered.swapaxes(-1, -2) / scale  # [B, H, Q, K]
    return terms


def relative_scores(x, table):
    """``x @ table^T`` for every head: ``[B, H, N, D] x [H, R, D] -> [B, H, N, R]``.

    Computed as one ``[B*N, D] x [D, R]`` product per head (H matrix products instead of B*H)
    on the head-major view of ``x`` (no copy when ``x`` comes from :func:`split_heads`), and
    returned as a ``[B, H, N, R]`` view of the ``[H, B*N, R]`` result.
    """
    B, H, N, D = x.shape
    per_head = x.transpose(1, 0, 2, 3).reshape(H, B * N, D)  # [H, B*N, D]
    out = per_head @ table.swapaxes(-1, -2)  # [H, B*N, R]
    return out.reshape(H, B, N, -1).transpose(1, 0, 2, 3)  # [B, H, N, R]


@dispatch
def disentangled_attention_probs(c2c, visible, c2p=None, p2c=None, rel_index=None, out=None):
    """Attention probabilities from the score terms: gather, add, mask, softmax.

    ::

        scores[b, h, i, j] = c2c[b, h, i, j] + (c2p[b, h, i, c(i, j)] + p2c[b, h, j, c(i, j)])
        probs = masked_softmax(scores, visible)

    with every term already divided by the scale: ``c2c = (q / scale) @ k^T``,
    ``c2p = (q / scale) @ Kr^T`` and ``p2c = (k / scale) @ Qr^T`` hold the products with *all*
    ``R`` table rows, and ``c(i, j) = rel_index[i, j]`` picks one per (query, key) pair. Fused in
    one pass by the Cython twin ``pydeberta._cy_attention.disentangled_attention_probs``.

    Args:
        c2c: ``[B, H, Q, K]``; visible: bool, broadcastable to it (``[B, 1, Q, K]``).
        c2p: ``[B, H, Q, R]`` or None (term off); p2c: ``[B, H, K, R]`` or None.
        rel_index: int ``[Q, K]`` with values in ``[0, R)``; needed when a relative term is on.
        out: an array ``[B, H, Q, K]`` to write the result into (may be ``c2c``), or None.
    Returns:
        probs ``[B, H, Q, K]`` (``out`` when given).
    """
    relative = []
    if c2p is not None:
        relative.append(np.take_along_axis(c2p, rel_index[None, None], axis=-1))  # [B, H, Q, K]
    if p2c is not None:
        relative.append(np.take_along_axis(p2c, rel_index.T[None, None], axis=-1).swapaxes(-1, -2))  # [B, H, Q, K]
    scores = c2c + sum(relative) if relative else c2c  # [B, H, Q, K]
    probs = masked_softmax(scores, visible)
    if out is None:
        return probs
    out[...] = probs
    return out


# Heads are handled in chunks whose score terms (c2c, c2p, p2c) take at most this many bytes, so
# they stay in cache between the products that write them and the gathers that read them: all
# twelve heads at B=1 N=128 (4 MB), one head at a time at B=8 N=128 or N=512, where all heads'
# terms (31 MB, 37 MB) would travel to memory and back.
CHUNK_BYTES = 4 << 20


def head_chunks(B, H, N, R, itemsize):
    """Slices of the ``H`` heads, each as many heads as fit in :data:`CHUNK_BYTES`."""
    per_head = B * N * (N + 2 * R) * itemsize
    size = max(1, min(H, CHUNK_BYTES // max(per_head, 1)))
    return [slice(start, min(start + size, H)) for start in range(0, H, size)]


def disentangled_self_attention(hidden, params, num_heads, visible, pos_att, relative=None, study=None):
    """One ``DisentangledSelfAttention`` block: projections, scores, masked softmax, context.

    The score terms are the products of :func:`attention_score_terms`, computed with every
    relative-table row ``pos_key``/``pos_query`` hold (pass only the rows ``rel_index`` reaches)
    and gathered by :func:`disentangled_attention_probs`, a chunk of heads at a time
    (:func:`head_chunks`).

    Args:
        hidden: ``[B, N, C]`` layer input.
        params: the layer's ``attention.self`` parameters (``query_proj``, ``key_proj``, ...).
        num_heads: ``H``.
        visible: bool ``[B, 1, N, N]``, ``m_i · m_j``.
        pos_att: set of relative terms on (subset of ``{"c2p", "p2c"}``).
        relative: ``(pos_key, pos_query, rel_index)`` when relative attention is on, else None.
        study: a dict to fill with the score terms (``c2c``/``c2p``/``p2c``), or None.
    Returns:
        ``(context [B, N, C], probs [B, H, N, N])``.
    """
    query = split_heads(linear(hidden, **params["query_proj"]), num_heads)  # [B, H, N, D]
    key = split_heads(linear(hidden, **params["key_proj"]), num_heads)  # [B, H, N, D]
    value = split_heads(linear(hidden, **params["value_proj"]), num_heads)  # [B, H, N, D]
    B, H, N, D = query.shape
    scale = attention_scale(D, pos_att, query.dtype)
    pos_key, pos_query, rel_index = relative if relative is not None else (None, None, None)
    if study is not None:
        study.update(attention_score_terms(query, key, scale, pos_key, pos_query, rel_index))
    query /= scale  # in place: q / scale serves both c2c and c2p
    scaled_key = key / scale if pos_query is not None else None  # [B, H, N, D]
    probs = np.empty((B, H, N, N), query.dtype)
    context = np.empty((B, N, H, D), query.dtype)  # written head by head, merged by a free reshape
    context_heads = context.transpose(0, 2, 1, 3)  # [B, H, N, D] view
    R = max((t.shape[1] for t in (pos_key, pos_query) if t is not None), default=0)
    for h in head_chunks(B, H, N, R, query.dtype.itemsize):
        c2c = query[:, h] @ key[:, h].swapaxes(-1, -2)  # [B, h, N, N]
        c2p = relative_scores(query[:, h], pos_key[h]) if pos_key is not None else None  # [B, h, N, R]
        p2c = relative_scores(scaled_key[:, h], pos_query[h]) if pos_query is not None else None  # [B, h, N, R]
        disentangled_attention_probs(c2c, visible, c2p, p2c, rel_index, out=probs[:, h])  # [B, h, N, N]
        np.matmul(probs[:, h], value[:, h], out=context_heads[:, h])  # [B, h, N, D]
    return context.reshape(B, N, H * D), probs  # [B, N, C], [B, H, N, N]


def attention_output(context, residual, params, eps):
    """``DebertaV2SelfOutput``: ``LayerNorm(dense(context) + residual)``; ``[B, N, C]``."""
    return layer_norm(linear(context, **params["dense"]), **params["LayerNorm"], eps=eps, residual=residual)
