"""The engine's training pass through the backbone: the book's forward and backward
(:func:`pydeberta.model.backbone`, :func:`pydeberta.model.backbone_backward`), the same numbers
within float rounding, arranged for speed. :func:`pydeberta.training.value_and_grad` runs it under
the ``numpy`` and ``cython`` backends, and the book under ``reference``.

What differs from the book:

* the forward keeps what the backward needs, a :class:`LayerTape` per layer, where the book's
  backward recomputes each layer from its input (it keeps nothing between the two passes);
* products run over all leading axes at once (``kernels.linear``, ``kernels.linear_backward``);
* the backend's kernels do the row-wise work both ways: GELU and its derivative, LayerNorm and
  its backward, the attention probabilities and, fused, the softmax backward with the
  scatter-add of the relative gathers (:func:`pydeberta.engine.kernels.disentangled_attention_probs_backward`);
* the position projections cover only the rows of the relative table the index reaches
  (:class:`~pydeberta.engine.relative.RelativeIndex` ``lo..hi``); the other rows get no gradient
  from attention, as in the book, where their gathered gradient is zero.

The embeddings, the nGiE convolution and the relative table's LayerNorm are the book's own
functions, forward and backward. Dropout sites are asked in the book's order, so one seeded
:class:`~pydeberta.dropout.Dropout` gives both the same masks (``tests/test_gradients.py`` compares
the two passes on that).

Shapes: ``B`` batch, ``N`` sequence length, ``C`` hidden size, ``H`` heads, ``D`` head size,
``F`` intermediate size, ``R`` table rows reached.
"""

from typing import NamedTuple, Optional

import numpy as np

from ..attention import add_grads, attention_scale, merge_heads, position_projection_names, split_heads
from ..conv import conv_layer, conv_layer_backward
from ..model import embeddings, embeddings_backward, relative_embeddings, relative_embeddings_backward
from .attention import relative_scores
from .backend import activation, activation_backward
from .relative import relative_index


class AttentionTape(NamedTuple):
    """What one attention block's backward reads: ``query`` (already divided by the scale) and
    ``key``, ``value`` ``[B, H, N, D]``; ``probs [B, H, N, N]`` before dropout; the cut relative
    table ``rows [R, C]`` after dropout and its projections ``pos_key``, ``pos_query``
    ``[H, R, D]`` (None when off); the ``scale``."""

    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    probs: np.ndarray
    rows: Optional[np.ndarray]
    pos_key: Optional[np.ndarray]
    pos_query: Optional[np.ndarray]
    scale: np.floating


class LayerTape(NamedTuple):
    """What one encoder layer's backward reads: its input ``x``, the attention's tape, the
    ``context``, the LayerNorm inputs ``z1``, ``z2`` and the first one's output ``a`` ``[B, N, C]``,
    the feed-forward pre-activation ``pre`` and activation ``h`` ``[B, N, F]``."""

    x: np.ndarray
    attention: AttentionTape
    context: np.ndarray
    z1: np.ndarray
    a: np.ndarray
    pre: np.ndarray
    h: np.ndarray
    z2: np.ndarray


class Tape:
    """One training call of the backbone, recorded for :func:`backbone_backward`.

    :meth:`backbone` runs the forward (what :meth:`~pydeberta.modeling.DebertaV2PreTrainedModel.run_backbone`
    calls while :func:`pydeberta.training.value_and_grad` has pinned a tape) and keeps each layer's
    :class:`LayerTape`, the visible (query, key) pairs, the relative table and index, and the
    pre-convolution output of layer 0.
    """

    def __init__(self, kernels):
        self.kernels = kernels
        self.layers, self.visible, self.table, self.index, self.layer0_output = [], None, None, None, None

    def backbone(self, params, config, inputs, drop, output_attentions=False):
        """The forward of :func:`pydeberta.model.backbone` with dropout ``drop``, recording.

        Returns:
            ``(hidden_states, attentions)``: L+1 arrays ``[B, N, C]``, and the L probability
            arrays ``[B, H, N, N]`` after dropout (as the book returns them) when asked for.
        """
        x = embeddings(params["embeddings"], config, inputs, drop)  # [B, N, C]
        encoder_params, mask = params["encoder"], inputs.attention_mask
        N = x.shape[1]
        self.visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
        if config.relative_attention:
            self.table = relative_embeddings(encoder_params, config)  # [2S, C]
            self.index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
        hidden_states, attentions = [x], []
        for i, layer in enumerate(encoder_params["layer"]):
            layer_drop = drop.scope(f"layer.{i}")
            y, tape = encoder_layer(hidden_states[-1], layer, config, self.visible, self.table, self.index,
                                    layer_drop, self.kernels)
            if i == 0 and "conv" in encoder_params:
                self.layer0_output = y
                y, _ = conv_layer(x, y, mask.astype(x.dtype), encoder_params["conv"], config, drop)
            hidden_states.append(y)
            self.layers.append(tape)
            if output_attentions:
                attentions.append(layer_drop(tape.attention.probs, "attention.probs"))
        return hidden_states, attentions


def attention(x, params, config, visible, table, index, drop, kernels):
    """Twin of :func:`pydeberta.attention.disentangled_self_attention`, keeping its tape.

    Args:
        x: ``[B, N, C]``; params: the layer's ``attention.self``; visible: bool ``[B, 1, N, N]``.
        table: the relative table ``P [2S, C]`` (None without relative attention); index: its
            :class:`~pydeberta.engine.relative.RelativeIndex`.
    Returns:
        ``(context [B, N, C], AttentionTape)``.
    """
    H = config.num_attention_heads
    query = split_heads(kernels.linear(x, **params["query_proj"]), H)  # [B, H, N, D]
    key = split_heads(kernels.linear(x, **params["key_proj"]), H)  # [B, H, N, D]
    value = split_heads(kernels.linear(x, **params["value_proj"]), H)  # [B, H, N, D]
    scale = attention_scale(query.shape[-1], config.pos_att, query.dtype)
    query = query / scale  # [B, H, N, D], contiguous: serves c2c, c2p and their backward
    scores = query @ key.swapaxes(-1, -2)  # [B, H, N, N]
    rows = pos_key = pos_query = c2p = p2c = None
    if table is not None:
        rows = drop(table, "attention.rel")[index.lo:index.hi + 1]  # [R, C]: the rows the index reaches
        key_name, query_name = position_projection_names(config)
        if "c2p" in config.pos_att:
            pos_key = np.ascontiguousarray(split_heads(kernels.linear(rows[None], **params[key_name]),
                                                       H)[0])  # [H, R, D]
            c2p = relative_scores(query, pos_key)  # [B, H, N, R]
        if "p2c" in config.pos_att:
            pos_query = np.ascontiguousarray(split_heads(kernels.linear(rows[None], **params[query_name]),
                                                         H)[0])  # [H, R, D]
            p2c = relative_scores(key / scale, pos_query)  # [B, H, N, R]
    probs = kernels.disentangled_attention_probs(scores, visible, c2p, p2c, index, out=scores)  # [B, H, N, N]
    context = merge_heads(drop(probs, "attention.probs") @ value)  # [B, N, C]
    return context, AttentionTape(query, key, value, probs, rows, pos_key, pos_query, scale)


def attention_backward(dcontext, x, tape, params, config, visible, index, drop, kernels):
    """Backward of :func:`attention` from ``dcontext [B, N, C]`` (the book's
    :func:`~pydeberta.attention.disentangled_self_attention_backward`), with ``q`` the query
    already divided by the scale::

        dV = A^T @ dctx        dA = dctx @ V^T        dscores, dc2p, dp2c: the probabilities' kernel
        dq  = dscores @ k + dc2p @ Kr                 dKr = sum_b dc2p^T @ q
        dk  = dscores^T @ q + dp2c @ Qr / scale       dQr = sum_b dp2c^T @ k / scale

    then ``dq / scale`` and the three projections; ``dKr``, ``dQr`` go back through the position
    projections into the table rows.

    Args:
        x: the block's input ``[B, N, C]``; tape: its :class:`AttentionTape`; the rest as :func:`attention`.
    Returns:
        ``(dx [B, N, C], grads, dtable [2S, C] or None)``.
    """
    t, H = tape, config.num_attention_heads
    dctx = split_heads(dcontext, H)  # [B, H, N, D]
    dvalue = drop(t.probs, "attention.probs").swapaxes(-1, -2) @ dctx  # [B, H, N, D]
    dprobs = drop(dctx @ t.value.swapaxes(-1, -2), "attention.probs")  # [B, H, N, N]
    dscores, dc2p, dp2c = kernels.disentangled_attention_probs_backward(
        dprobs, t.probs, visible, index, c2p=t.pos_key is not None, p2c=t.pos_query is not None)
    dquery = dscores @ t.key  # [B, H, N, D]: the gradient of query / scale
    dkey = dscores.swapaxes(-1, -2) @ t.query  # [B, H, N, D]
    dpos = {}  # projection name -> gradient of its table projection [H, R, D]
    key_name, query_name = position_projection_names(config)
    if t.pos_key is not None:
        dquery += dc2p @ t.pos_key  # [B, H, N, D]
        dpos[key_name] = (dc2p.swapaxes(-1, -2) @ t.query).sum(axis=0)  # [H, R, D]
    if t.pos_query is not None:
        dkey += (dp2c @ t.pos_query) / t.scale  # [B, H, N, D]
        dpos[query_name] = (dp2c.swapaxes(-1, -2) @ t.key).sum(axis=0) / t.scale  # [H, R, D]
    dquery /= t.scale
    grads, dx = {}, 0
    for name, d in (("query_proj", dquery), ("key_proj", dkey), ("value_proj", dvalue)):
        dx_part, grads[name] = kernels.linear_backward(merge_heads(d), x, **params[name])  # [B, N, C]
        dx = dx + dx_part
    if t.rows is None:
        return dx, grads, None
    drows = 0
    for name, d in dpos.items():
        drows_part, pos_grads = kernels.linear_backward(merge_heads(d[None])[0], t.rows, **params[name])  # [R, C]
        add_grads(grads, {name: pos_grads})
        drows = drows + drows_part
    dtable = np.zeros((2 * config.att_span, t.rows.shape[1]), t.rows.dtype)  # [2S, C]
    dtable[index.lo:index.hi + 1] = drows
    return dx, grads, drop(dtable, "attention.rel")


def encoder_layer(x, params, config, visible, table, index, drop, kernels):
    """Twin of :func:`pydeberta.model.encoder_layer`, keeping its tape::

        a = LayerNorm(dropout(attention.output.dense(attention(x))) + x)
        y = LayerNorm(dropout(output.dense(act(intermediate.dense(a)))) + a)

    Returns:
        ``(y [B, N, C], LayerTape)``.
    """
    eps = config.layer_norm_eps
    context, attention_tape = attention(x, params["attention"]["self"], config, visible, table, index, drop, kernels)
    out = params["attention"]["output"]
    z1 = drop(kernels.linear(context, **out["dense"]), "attention.output") + x  # [B, N, C]
    a = kernels.layer_norm(z1, **out["LayerNorm"], eps=eps)  # [B, N, C]
    pre = kernels.linear(a, **params["intermediate"]["dense"])  # [B, N, F]
    h = activation(config.hidden_act, kernels)(pre)  # [B, N, F]
    z2 = drop(kernels.linear(h, **params["output"]["dense"]), "output") + a  # [B, N, C]
    y = kernels.layer_norm(z2, **params["output"]["LayerNorm"], eps=eps)  # [B, N, C]
    return y, LayerTape(x, attention_tape, context, z1, a, pre, h, z2)


def encoder_layer_backward(grad, tape, params, config, visible, index, drop, kernels):
    """Backward of :func:`encoder_layer` from ``grad = dy [B, N, C]`` (the book's
    :func:`~pydeberta.model.encoder_layer_backward`, reading the tape instead of recomputing)::

        dz2 = LN2'(dy);   da = dz2 + W_i' act'(W_o' dz2);   dz1 = LN1'(da);   dx = dz1 + attention'(W_d' dz1)

    Returns:
        ``(dx [B, N, C], grads, dtable [2S, C] or None)``.
    """
    t, eps = tape, config.layer_norm_eps
    out = params["attention"]["output"]
    dz2, out_ln = kernels.layer_norm_backward(grad, t.z2, **params["output"]["LayerNorm"], eps=eps)  # [B, N, C]
    dh, out_dense = kernels.linear_backward(drop(dz2, "output"), t.h, **params["output"]["dense"])  # [B, N, F]
    dpre = activation_backward(config.hidden_act, kernels)(dh, t.pre)  # [B, N, F]
    da, inter_dense = kernels.linear_backward(dpre, t.a, **params["intermediate"]["dense"])  # [B, N, C]
    dz1, attn_ln = kernels.layer_norm_backward(dz2 + da, t.z1, **out["LayerNorm"], eps=eps)  # [B, N, C]
    dcontext, attn_dense = kernels.linear_backward(drop(dz1, "attention.output"), t.context, **out["dense"])
    dx, attn_self, dtable = attention_backward(dcontext, t.x, t.attention, params["attention"]["self"], config,
                                               visible, index, drop, kernels)
    grads = {"attention": {"self": attn_self, "output": {"dense": attn_dense, "LayerNorm": attn_ln}},
             "intermediate": {"dense": inter_dense}, "output": {"dense": out_dense, "LayerNorm": out_ln}}
    return dx + dz1, grads, dtable


def backbone_backward(grad, tape, params, config, inputs, drop):
    """Twin of :func:`pydeberta.model.backbone_backward` from the gradient of the last hidden
    state ``[B, N, C]``, reading ``tape`` (:meth:`Tape.backbone` of the same call, same ``drop``).

    Returns:
        ``grads`` shaped like ``params``.
    """
    encoder_params, mask = params["encoder"], inputs.attention_mask
    layers = encoder_params["layer"]
    grads = {"layer": [None] * len(layers)}
    dtable, dx0 = None, 0  # the sum over layers of the table's gradient; the conv's share of dE0
    for i in reversed(range(len(layers))):
        layer_drop = drop.scope(f"layer.{i}")
        if i == 0 and "conv" in encoder_params:
            dx0, grad, grads["conv"] = conv_layer_backward(grad, tape.layers[0].x, tape.layer0_output,
                                                           mask.astype(grad.dtype), encoder_params["conv"], config,
                                                           drop)
        grad, grads["layer"][i], dtable_i = encoder_layer_backward(grad, tape.layers[i], layers[i], config,
                                                                    tape.visible, tape.index, layer_drop, tape.kernels)
        if dtable_i is not None:
            dtable = dtable_i if dtable is None else dtable + dtable_i
    if tape.table is not None:
        add_grads(grads, relative_embeddings_backward(dtable, encoder_params, config))
    return {"embeddings": embeddings_backward(grad + dx0, params["embeddings"], config, inputs, drop),
            "encoder": grads}
