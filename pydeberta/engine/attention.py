"""The engine's disentangled self-attention: the book's
:func:`pydeberta.attention.disentangled_self_attention`, same numbers, arranged for speed.

What differs from the book:

* the position projections ``Kr``, ``Qr`` come in precomputed (once per model,
  :class:`pydeberta.engine.model.Engine`), cut to the table rows the index reaches;
* the query is divided by the scale once, in place, and serves both c2c and c2p;
* the relative terms are products with those table rows only (``[B, H, N, R]``), gathered by the
  kernel ``disentangled_attention_probs`` through a
  :class:`~pydeberta.engine.relative.RelativeIndex` instead of materialised ``[B, H, N, N]``;
* heads go a chunk at a time (:func:`head_chunks`), so one chunk's score terms stay in cache
  between the products that write them and the kernel that reads them; probabilities and the
  context are written straight into their final arrays.
"""

import numpy as np

from ..attention import attention_scale, split_heads

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


def disentangled_self_attention(hidden, params, config, visible, tables, index, kernels):
    """Twin of :func:`pydeberta.attention.disentangled_self_attention`.

    Args:
        hidden: ``[B, N, C]``; params: the layer's ``attention.self`` parameters;
        config: the model's config; visible: bool ``[B, 1, N, N]``.
        tables: ``(pos_key, pos_query)``, each ``[H, R, D]`` cut to the rows ``index`` reaches
            (None when its term is off), or None without relative attention.
        index: the :class:`~pydeberta.engine.relative.RelativeIndex` of ``[N, N]`` (or None).
        kernels: the backend's :class:`~pydeberta.engine.backend.Kernels`.
    Returns:
        ``(context [B, N, C], probs [B, H, N, N])``.
    """
    H = config.num_attention_heads
    query = split_heads(kernels.dense(hidden, params["query_proj"]), H)  # [B, H, N, D]
    key = split_heads(kernels.dense(hidden, params["key_proj"]), H)  # [B, H, N, D]
    value = split_heads(kernels.dense(hidden, params["value_proj"]), H)  # [B, H, N, D]
    B, H, N, D = query.shape
    scale = attention_scale(D, config.pos_att, query.dtype)
    pos_key, pos_query = tables if tables is not None else (None, None)
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
        kernels.disentangled_attention_probs(c2c, visible, c2p, p2c, index, out=probs[:, h])  # [B, h, N, N]
        np.matmul(probs[:, h], value[:, h], out=context_heads[:, h])  # [B, h, N, D]
    return context.reshape(B, N, H * D), probs  # [B, N, C], [B, H, N, N]
