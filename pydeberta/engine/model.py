"""The engine's forward pass: the book's :mod:`pydeberta.model` (same names, same numbers within
float rounding), with the work that does not depend on the input done once per model and length.

* :class:`Engine` holds a model's parameter tree (the same arrays the book reads) and the tables
  derived from it: each layer's projected relative embeddings ``Kr``, ``Qr``. They are computed
  on the first call and again only when one of the arrays they come from is replaced.
* :func:`~pydeberta.engine.relative.relative_index` is built once per length.
* The backend's kernels (:mod:`pydeberta.engine.backend`) do the row-wise work; NumPy's large
  temporaries come from the extension's block cache under the ``cython`` backend.

The embeddings and the nGiE convolution are the book's own functions: they take well under 1%
of a forward.
"""

from ..attention import position_projection_names, relative_projections
from ..conv import conv_layer
from ..model import embeddings, relative_embeddings
from .attention import disentangled_self_attention
from .backend import activation, block_cache
from .relative import relative_index


def encoder_layer(x, params, config, visible, tables, index, kernels):
    """Twin of :func:`pydeberta.model.encoder_layer`: ``(y [B, N, C], probs [B, H, N, N])``.

    ``tables`` and ``index`` as :func:`pydeberta.engine.attention.disentangled_self_attention`
    takes them; the residual sums happen inside the LayerNorm kernel.
    """
    context, probs = disentangled_self_attention(x, params["attention"]["self"], config, visible, tables, index,
                                                 kernels)
    out = params["attention"]["output"]
    a = kernels.layer_norm(kernels.dense(context, out["dense"]), **out["LayerNorm"], eps=config.layer_norm_eps,
                           residual=x)  # [B, N, C]
    h = activation(config.hidden_act, kernels)(kernels.dense(a, params["intermediate"]["dense"]))  # [B, N, F]
    y = kernels.layer_norm(kernels.dense(h, params["output"]["dense"]), **params["output"]["LayerNorm"],
                           eps=config.layer_norm_eps, residual=a)  # [B, N, C]
    return y, probs


def encoder(x, params, config, mask, relative_tables, kernels, output_attentions=False):
    """Twin of :func:`pydeberta.model.encoder`.

    Args:
        x: ``E0 [B, N, C]``; params: the ``encoder`` subtree; mask: ``[B, N]`` 0/1.
        relative_tables: per layer ``(pos_key, pos_query)`` ``[H, 2S, D]`` (:meth:`Engine.relative_tables`).
        kernels: the backend's :class:`~pydeberta.engine.backend.Kernels`.
        output_attentions: keep each layer's probabilities (else they are dropped as soon as used).
    Returns:
        ``(hidden_states, attentions)``: L+1 arrays ``[B, N, C]``, and L arrays ``[B, H, N, N]``
        when asked for (else an empty list).
    """
    N = x.shape[1]
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]: m_i * m_j
    index, layer_tables = None, [None] * len(params["layer"])
    if config.relative_attention:
        index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
        layer_tables = [tuple(None if t is None else t[:, index.lo:index.hi + 1] for t in tables)
                        for tables in relative_tables]  # each [H, R, D]: only the rows the index reaches
    hidden_states, attentions = [x], []
    for i, layer in enumerate(params["layer"]):
        y, probs = encoder_layer(hidden_states[-1], layer, config, visible, layer_tables[i], index, kernels)
        if i == 0 and "conv" in params:
            y, _ = conv_layer(x, y, mask.astype(x.dtype), params["conv"], config)
        hidden_states.append(y)
        if output_attentions:
            attentions.append(probs)
    return hidden_states, attentions


def masked_lm_head(hidden, params, word_embeddings, config, kernels):
    """Twin of :func:`pydeberta.heads.masked_lm_head`: logits ``[B, N, V]``."""
    head = params["predictions"]["transform"] if config.legacy else params["lm_head"]
    t = activation(config.hidden_act, kernels)(kernels.dense(hidden, head["dense"]))  # [B, N, E] or [B, N, C]
    t = kernels.layer_norm(t, **head["LayerNorm"], eps=config.layer_norm_eps)
    bias = params["predictions"]["bias"] if config.legacy else params["lm_head"]["bias"]
    return kernels.linear(t, word_embeddings, bias)  # [B, N, V]: the tied decoder


class Engine:
    """The engine's state for one model: its backbone parameters and the tables derived from them.

    ``tree`` is the model's own backbone tree (``embeddings``, ``encoder``), read live: replacing
    an array in it is seen by the next call. The arrays a derived table comes from (the relative
    embeddings, their LayerNorm and the layers' position projections) are made read-only once
    the table exists, so an in-place edit cannot leave a stale table behind: assign a new array
    instead, and the table is rebuilt.
    """

    def __init__(self, config, tree):
        self.config = config
        self.tree = tree
        self._relative = None  # (source arrays, per-layer tables)

    def _relative_sources(self):
        """The arrays the relative tables are computed from, in a fixed order."""
        encoder_params = self.tree["encoder"]
        names = position_projection_names(self.config)
        modules = [encoder_params["rel_embeddings"], encoder_params.get("LayerNorm", {})]
        modules += [layer["attention"]["self"][name] for layer in encoder_params["layer"] for name in names
                    if name in layer["attention"]["self"]]
        return [array for module in modules for array in module.values()]

    def relative_tables(self):
        """Per layer ``(pos_key, pos_query)`` ``[H, 2S, D]`` (:func:`pydeberta.attention.relative_projections`
        of the table :func:`pydeberta.model.relative_embeddings`): computed once, reused on every call."""
        sources = self._relative_sources()
        cached = self._relative
        if cached is None or len(cached[0]) != len(sources) or any(a is not b for a, b in zip(cached[0], sources)):
            P = relative_embeddings(self.tree["encoder"], self.config)  # [2S, C]
            tables = [relative_projections(P, layer["attention"]["self"], self.config)
                      for layer in self.tree["encoder"]["layer"]]
            for array in sources:
                array.flags.writeable = False
            self._relative = (sources, tables)
        return self._relative[1]

    def backbone(self, inputs, kernels, output_attentions=False):
        """Embeddings and encoder on validated :class:`~pydeberta.inputs.ModelInputs`;
        returns what :func:`encoder` returns."""
        tables = self.relative_tables() if self.config.relative_attention else None
        with block_cache():
            x = embeddings(self.tree["embeddings"], self.config, inputs)  # [B, N, C]
            return encoder(x, self.tree["encoder"], self.config, inputs.attention_mask, tables, kernels,
                           output_attentions)
