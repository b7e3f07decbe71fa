"""The DeBERTa-v2/v3 backbone as pure functions: embeddings, encoder layer, encoder.

Each function takes the parameters of one module as a nested dict whose paths are the
checkpoint keys (``params["layer"][3]["attention"]["self"]["query_proj"]["weight"]`` is
``encoder.layer.3.attention.self.query_proj.weight``), so every step can be called and looked at on
its own. This is the book: nothing is cached and nothing is computed in place. The classes users
call (``DebertaV2Model``, ...) are in :mod:`pydeberta.modeling`; the engine's faster forward, with
the same names, in :mod:`pydeberta.engine.model`. ``docs/architecture.md`` draws the data flow.

Shapes: ``B`` batch, ``N`` sequence length, ``C`` hidden size, ``E`` embedding size, ``H`` heads,
``F`` intermediate size, ``L`` layers, ``S`` attention span.
"""


import numpy as np

from .attention import (add_grads, attention_output, attention_output_backward, disentangled_self_attention,
                        disentangled_self_attention_backward)
from .conv import conv_layer, conv_layer_backward
from .dropout import NO_DROPOUT
from .functional import (get_activation, get_activation_backward, layer_norm, layer_norm_backward, linear,
                         linear_backward)
from .positions import build_relative_position, relative_index


def embeddings(params, config, inputs, drop=NO_DROPOUT):
    """``DebertaV2Embeddings``::

        x = word_embeddings[ids]  (or inputs_embeds)
          + position_embeddings[position_ids]     if position_biased_input
          + token_type_embeddings[token_types]    if type_vocab_size > 0
        x = embed_proj(x)                         if embedding_size != hidden_size
        x = LayerNorm(x) * mask                   padded rows become exactly zero
        x = dropout(x)                            in training (``drop``, :mod:`pydeberta.dropout`)

    Args:
        params: the ``embeddings`` subtree; inputs: :class:`~pydeberta.inputs.ModelInputs`.
    Returns:
        ``[B, N, C]``.
    """
    if inputs.inputs_embeds is not None:
        x = inputs.inputs_embeds  # [B, N, E]
    else:
        x = params["word_embeddings"]["weight"][inputs.input_ids]  # [B, N, E]
    if config.position_biased_input:
        x = x + params["position_embeddings"]["weight"][inputs.position_ids]
    if config.type_vocab_size > 0:
        x = x + params["token_type_embeddings"]["weight"][inputs.token_type_ids]
    if "embed_proj" in params:
        x = linear(x, **params["embed_proj"])  # [B, N, C]
    x = layer_norm(x, **params["LayerNorm"], eps=config.layer_norm_eps)
    return drop(x * inputs.attention_mask[..., None].astype(x.dtype), "embeddings")


def encoder_layer(x, params, config, visible, rel_embeddings=None, rel_index=None, drop=NO_DROPOUT):
    """``DebertaV2Layer``: post-LayerNorm attention block then feed-forward block::

        a = LayerNorm(attention.output.dense(attention(x)) + x)
        y = LayerNorm(output.dense(act(intermediate.dense(a))) + a)

    (in training, dropout on each dense output before its residual, see :mod:`pydeberta.dropout`).

    Args:
        x: ``[B, N, C]``; params: one ``encoder.layer.<i>`` subtree.
        visible, rel_embeddings, rel_index, drop: as :func:`pydeberta.attention.disentangled_self_attention`.
    Returns:
        ``(y [B, N, C], probs [B, H, N, N], terms)``: the attention probabilities and its score terms.
    """
    context, probs, terms = disentangled_self_attention(x, params["attention"]["self"], config, visible,
                                                        rel_embeddings, rel_index, drop)
    a = attention_output(context, x, params["attention"]["output"], config.layer_norm_eps, drop)  # [B, N, C]
    h = get_activation(config.hidden_act)(linear(a, **params["intermediate"]["dense"]))  # [B, N, F]
    y = layer_norm(drop(linear(h, **params["output"]["dense"]), "output") + a, **params["output"]["LayerNorm"],
                   eps=config.layer_norm_eps)  # [B, N, C]
    return y, probs, terms


def relative_embeddings(params, config):
    """The relative-embedding table ``P [2S, C]``, LayerNorm-ed when ``norm_rel_ebd`` says so."""
    P = params["rel_embeddings"]["weight"]  # [2S, C]
    if "layer_norm" in config.norm_rel_ebd_list:
        P = layer_norm(P, **params["LayerNorm"], eps=config.layer_norm_eps)
    return P


def encoder(x, params, config, mask, drop=NO_DROPOUT):
    """``DebertaV2Encoder``: the layers, with the nGiE convolution after layer 0.

    Args:
        x: embedding output ``E0 [B, N, C]``.
        params: the ``encoder`` subtree.
        mask: ``[B, N]`` 0/1.
        drop: dropout, each layer's sites under ``layer.<i>`` (:mod:`pydeberta.dropout`); none by default.
    Returns:
        ``(hidden_states, attentions, study)``: L+1 arrays ``[B, N, C]`` (``E0`` first), L arrays
        ``[B, H, N, N]``, and a dict of the intermediates :class:`~pydeberta.outputs.StudyOutput`
        holds (relative positions, relative index, each layer's c2c / c2p / p2c terms, conv output).
    """
    N = x.shape[1]
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]: m_i * m_j
    study = {"relative_positions": None, "rel_index": None, "conv_output": None}
    rel_embeddings = rel_index = None
    if config.relative_attention:
        rel_embeddings = relative_embeddings(params, config)  # [2S, C]
        sizes = (config.position_buckets, config.max_relative_span)
        study["relative_positions"] = build_relative_position(N, N, *sizes)  # [N, N]
        study["rel_index"] = rel_index = relative_index(N, N, config.att_span, *sizes)  # [N, N]
    hidden_states, attentions, terms = [x], [], []
    for i, layer in enumerate(params["layer"]):
        y, probs, layer_terms = encoder_layer(hidden_states[-1], layer, config, visible, rel_embeddings, rel_index,
                                              drop.scope(f"layer.{i}"))
        if i == 0 and "conv" in params:
            y, study["conv_output"] = conv_layer(x, y, mask.astype(x.dtype), params["conv"], config, drop)
        hidden_states.append(y)
        attentions.append(probs)
        terms.append(layer_terms)
    for name in ("c2c", "c2p", "p2c"):
        study[name] = tuple(layer_terms.get(name) for layer_terms in terms)
    return hidden_states, attentions, study


def backbone(params, config, inputs, drop=NO_DROPOUT):
    """``DebertaV2Model``'s forward: :func:`embeddings` then :func:`encoder`.

    Args:
        params: the backbone's tree (``embeddings``, ``encoder``); inputs: validated
            :class:`~pydeberta.inputs.ModelInputs`.
    Returns:
        what :func:`encoder` returns.
    """
    x = embeddings(params["embeddings"], config, inputs, drop)  # [B, N, C]
    return encoder(x, params["encoder"], config, inputs.attention_mask, drop)


# --------------------------------------------------------------------------- backward
# As in pydeberta.attention: each backward takes its forward's output gradient and arguments,
# recomputes what it needs, and returns parameter gradients shaped like ``params``.
def embeddings_backward(grad, params, config, inputs, drop=NO_DROPOUT):
    """Backward of :func:`embeddings`: through the mask, LayerNorm and ``embed_proj``, then a
    scatter-add of each token's gradient into the rows it read (``dW[ids[b, n]] += dx[b, n]``).

    Returns:
        ``grads`` shaped like ``params`` (the word embeddings' rows no token read are 0, and so is
        the padding token's row, as ``nn.Embedding(padding_idx=pad_token_id)``; with
        ``inputs_embeds`` they get no gradient here).
    """
    grads = {}
    if inputs.inputs_embeds is not None:
        x = inputs.inputs_embeds  # [B, N, E]
    else:
        x = params["word_embeddings"]["weight"][inputs.input_ids]  # [B, N, E]
    tables = [("position_embeddings", inputs.position_ids)] if config.position_biased_input else []
    tables += [("token_type_embeddings", inputs.token_type_ids)] if config.type_vocab_size > 0 else []
    for name, ids in tables:
        x = x + params[name]["weight"][ids]
    pre_norm = linear(x, **params["embed_proj"]) if "embed_proj" in params else x  # [B, N, C]
    d, grads["LayerNorm"] = layer_norm_backward(drop(grad, "embeddings") * inputs.attention_mask[..., None], pre_norm,
                                                **params["LayerNorm"], eps=config.layer_norm_eps)
    if "embed_proj" in params:
        d, grads["embed_proj"] = linear_backward(d, x, **params["embed_proj"])  # [B, N, E]
    if inputs.inputs_embeds is None:
        tables.append(("word_embeddings", inputs.input_ids))
    for name, ids in tables:
        table = np.zeros_like(params[name]["weight"])  # [rows, E]
        np.add.at(table, ids.reshape(-1), d.reshape(-1, d.shape[-1]))
        grads[name] = {"weight": table}
    if "word_embeddings" in grads and config.pad_token_id is not None:
        grads["word_embeddings"]["weight"][config.pad_token_id] = 0  # nn.Embedding(padding_idx=pad_token_id)
    return grads


def encoder_layer_backward(grad, x, params, config, visible, rel_embeddings=None, rel_index=None, drop=NO_DROPOUT):
    """Backward of :func:`encoder_layer` from ``grad = dy [B, N, C]``, the two blocks in reverse::

        y = LN2(z2), z2 = W_o act(W_i a) + a:   dz2 = LN2'(dy);  da = dz2 + W_i' act'(W_o' dz2)
        a = LN1(z1), z1 = W_d ctx + x:          dz1 = LN1'(da);  dx = dz1 + attention'(W_d' dz1)

    Returns:
        ``(dx [B, N, C], grads, drel_embeddings [2S, C] or None)``.
    """
    eps = config.layer_norm_eps
    context, _, _ = disentangled_self_attention(x, params["attention"]["self"], config, visible, rel_embeddings,
                                                rel_index, drop)  # [B, N, C]
    a = attention_output(context, x, params["attention"]["output"], eps, drop)  # [B, N, C]
    pre = linear(a, **params["intermediate"]["dense"])  # [B, N, F]
    h = get_activation(config.hidden_act)(pre)
    z2 = drop(linear(h, **params["output"]["dense"]), "output") + a  # [B, N, C]
    dz2, out_ln = layer_norm_backward(grad, z2, **params["output"]["LayerNorm"], eps=eps)  # [B, N, C]
    dh, out_dense = linear_backward(drop(dz2, "output"), h, **params["output"]["dense"])  # [B, N, F]
    da, inter_dense = linear_backward(get_activation_backward(config.hidden_act)(dh, pre), a,
                                      **params["intermediate"]["dense"])  # [B, N, C]
    dcontext, dx, attn_out = attention_output_backward(dz2 + da, context, x, params["attention"]["output"], eps, drop)
    dx_attn, attn_self, drel = disentangled_self_attention_backward(dcontext, x, params["attention"]["self"], config,
                                                                    visible, rel_embeddings, rel_index, drop)
    grads = {"attention": {"self": attn_self, "output": attn_out}, "intermediate": {"dense": inter_dense},
             "output": {"dense": out_dense, "LayerNorm": out_ln}}
    return dx + dx_attn, grads, drel


def relative_embeddings_backward(grad, params, config):
    """Backward of :func:`relative_embeddings` from ``grad [2S, C]`` (summed over the layers):
    ``grads`` for ``rel_embeddings`` and, with ``norm_rel_ebd``, the encoder's ``LayerNorm``."""
    P = params["rel_embeddings"]["weight"]  # [2S, C]
    if "layer_norm" not in config.norm_rel_ebd_list:
        return {"rel_embeddings": {"weight": grad}}
    dP, ln_grads = layer_norm_backward(grad, P, **params["LayerNorm"], eps=config.layer_norm_eps)
    return {"rel_embeddings": {"weight": dP}, "LayerNorm": ln_grads}


def encoder_backward(grad, hidden_states, params, config, mask, drop=NO_DROPOUT):
    """Backward of :func:`encoder` from the gradient of its last hidden state, layer by layer
    from the top; each layer recomputes its own intermediates from its input ``hidden_states[i]``.

    Args:
        grad: ``[B, N, C]``, the gradient of ``hidden_states[-1]``.
        hidden_states: the L+1 arrays :func:`encoder` returned.
    Returns:
        ``(dE0 [B, N, C], grads)``, ``grads`` shaped like ``params``.
    """
    x = hidden_states[0]  # [B, N, C]
    N = x.shape[1]
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
    rel_embeddings = rel_index = None
    if config.relative_attention:
        rel_embeddings = relative_embeddings(params, config)  # [2S, C]
        rel_index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
    layers = params["layer"]
    grads = {"layer": [None] * len(layers)}
    drel = np.zeros_like(rel_embeddings) if rel_embeddings is not None else None
    dx0 = np.zeros_like(x)  # the conv's share of dE0
    for i in reversed(range(len(layers))):
        layer_drop = drop.scope(f"layer.{i}")
        if i == 0 and "conv" in params:
            y0, _, _ = encoder_layer(x, layers[0], config, visible, rel_embeddings, rel_index, layer_drop)  # pre-conv
            dx0, grad, grads["conv"] = conv_layer_backward(grad, x, y0, mask.astype(x.dtype), params["conv"], config,
                                                           drop)
        grad, grads["layer"][i], drel_i = encoder_layer_backward(grad, hidden_states[i], layers[i], config, visible,
                                                                  rel_embeddings, rel_index, layer_drop)
        if drel_i is not None:
            drel = drel + drel_i
    if rel_embeddings is not None:
        add_grads(grads, relative_embeddings_backward(drel, params, config))
    return grad + dx0, grads


def backbone_backward(grad, hidden_states, params, config, inputs, drop=NO_DROPOUT):
    """Backward of :func:`backbone` from the gradient of the last hidden state: :func:`encoder_backward`
    then :func:`embeddings_backward`; returns ``grads`` shaped like ``params``."""
    dx, encoder_grads = encoder_backward(grad, hidden_states, params["encoder"], config, inputs.attention_mask, drop)
    return {"embeddings": embeddings_backward(dx, params["embeddings"], config, inputs, drop), "encoder": encoder_grads}
