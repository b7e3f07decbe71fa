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


from .attention import attention_output, disentangled_self_attention
from .conv import conv_layer
from .functional import get_activation, layer_norm, linear
from .positions import build_relative_position, relative_index


def embeddings(params, config, inputs):
    """``DebertaV2Embeddings``::

        x = word_embeddings[ids]  (or inputs_embeds)
          + position_embeddings[position_ids]     if position_biased_input
          + token_type_embeddings[token_types]    if type_vocab_size > 0
        x = embed_proj(x)                         if embedding_size != hidden_size
        x = LayerNorm(x) * mask                   padded rows become exactly zero

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
    return x * inputs.attention_mask[..., None].astype(x.dtype)


def encoder_layer(x, params, config, visible, rel_embeddings=None, rel_index=None):
    """``DebertaV2Layer``: post-LayerNorm attention block then feed-forward block::

        a = LayerNorm(attention.output.dense(attention(x)) + x)
        y = LayerNorm(output.dense(act(intermediate.dense(a))) + a)

    Args:
        x: ``[B, N, C]``; params: one ``encoder.layer.<i>`` subtree.
        visible, rel_embeddings, rel_index: as :func:`pydeberta.attention.disentangled_self_attention`.
    Returns:
        ``(y [B, N, C], probs [B, H, N, N], terms)``: the attention probabilities and its score terms.
    """
    context, probs, terms = disentangled_self_attention(x, params["attention"]["self"], config, visible,
                                                        rel_embeddings, rel_index)
    a = attention_output(context, x, params["attention"]["output"], config.layer_norm_eps)  # [B, N, C]
    h = get_activation(config.hidden_act)(linear(a, **params["intermediate"]["dense"]))  # [B, N, F]
    y = layer_norm(linear(h, **params["output"]["dense"]) + a, **params["output"]["LayerNorm"],
                   eps=config.layer_norm_eps)  # [B, N, C]
    return y, probs, terms


def relative_embeddings(params, config):
    """The relative-embedding table ``P [2S, C]``, LayerNorm-ed when ``norm_rel_ebd`` says so."""
    P = params["rel_embeddings"]["weight"]  # [2S, C]
    if "layer_norm" in config.norm_rel_ebd_list:
        P = layer_norm(P, **params["LayerNorm"], eps=config.layer_norm_eps)
    return P


def encoder(x, params, config, mask):
    """``DebertaV2Encoder``: the layers, with the nGiE convolution after layer 0.

    Args:
        x: embedding output ``E0 [B, N, C]``.
        params: the ``encoder`` subtree.
        mask: ``[B, N]`` 0/1.
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
        y, probs, layer_terms = encoder_layer(hidden_states[-1], layer, config, visible, rel_embeddings, rel_index)
        if i == 0 and "conv" in params:
            y, study["conv_output"] = conv_layer(x, y, mask.astype(x.dtype), params["conv"], config)
        hidden_states.append(y)
        attentions.append(probs)
        terms.append(layer_terms)
    for name in ("c2c", "c2p", "p2c"):
        study[name] = tuple(layer_terms.get(name) for layer_terms in terms)
    return hidden_states, attentions, study


def backbone(params, config, inputs):
    """``DebertaV2Model``'s forward: :func:`embeddings` then :func:`encoder`.

    Args:
        params: the backbone's tree (``embeddings``, ``encoder``); inputs: validated
            :class:`~pydeberta.inputs.ModelInputs`.
    Returns:
        what :func:`encoder` returns.
    """
    x = embeddings(params["embeddings"], config, inputs)  # [B, N, C]
    return encoder(x, params["encoder"], config, inputs.attention_mask)
