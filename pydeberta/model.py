"""The DeBERTa-v2/v3 backbone: embeddings, encoder layers, encoder, ``DebertaV2Model``.

The forward pass is a handful of pure functions over a parameter tree whose paths are the
checkpoint keys (``params["encoder"]["layer"][3]["attention"]["self"]["query_proj"]["weight"]``),
so every step can be called and looked at on its own. The classes are thin: they hold the config,
the parameters and a cache of the work that does not depend on the input (relative-position
indices per length, each layer's projected relative embeddings).

Shapes: ``B`` batch, ``N`` sequence length, ``C`` hidden size, ``E`` embedding size, ``H`` heads.
"""

import os

import numpy as np

from ._backend import block_cache
from .attention import attention_output, disentangled_self_attention, relative_projections
from .checkpoint import read_state_dict, write_safetensors
from .hub import resolve_model_folder
from .config import DebertaV2Config
from .conv import conv_layer
from .functional import get_activation, layer_norm, linear
from .inputs import prepare_inputs
from .outputs import BaseModelOutput, StudyOutput
from .positions import build_relative_position, reachable_rows, relative_index
from .weights import expected_shapes, flatten, init_parameters, match_state_dict, pack, unflatten

SAFE_WEIGHTS_NAME = "model.safetensors"


# --------------------------------------------------------------------------- pure functions
def embeddings(params, config, inputs):
    """``DebertaV2Embeddings`` (spec §3)::

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


def encoder_layer(x, params, config, visible, relative, study=None):
    """``DebertaV2Layer``: post-LayerNorm attention block then feed-forward block::

        a = LayerNorm(dense(attention(x)) + x)
        y = LayerNorm(output.dense(act(intermediate.dense(a))) + a)

    Returns:
        ``(y [B, N, C], probs [B, H, N, N])``.
    """
    context, probs = disentangled_self_attention(
        x, params["attention"]["self"], config.num_attention_heads, visible, config.pos_att, relative, study)
    a = attention_output(context, x, params["attention"]["output"], config.layer_norm_eps)
    h = get_activation(config.hidden_act)(linear(a, **params["intermediate"]["dense"]))  # [B, N, F]
    y = layer_norm(linear(h, **params["output"]["dense"]), **params["output"]["LayerNorm"],
                   eps=config.layer_norm_eps, residual=a)  # [B, N, C]
    return y, probs


def relative_embeddings(params, config):
    """The relative-embedding table ``R [2S, C]``, LayerNorm-ed when ``norm_rel_ebd`` says so."""
    R = params["rel_embeddings"]["weight"]
    if "layer_norm" in config.norm_rel_ebd_list:
        R = layer_norm(R, **params["LayerNorm"], eps=config.layer_norm_eps)
    return R


def encoder(x, params, config, mask, relative_tables=None, output_attentions=False, study=None):
    """``DebertaV2Encoder`` (spec §7): the layers, with the nGiE convolution after layer 0.

    Args:
        x: embedding output ``E0 [B, N, C]``.
        params: the ``encoder`` subtree.
        mask: ``[B, N]`` 0/1.
        relative_tables: per layer ``(pos_key, pos_query)`` from :func:`relative_projections`
            (computed here when None); unused without relative attention.
        study: a :class:`~pydeberta.outputs.StudyOutput` to fill, or None.
    Returns:
        ``(hidden_states, attentions)``: L+1 arrays ``[B, N, C]`` (``E0`` first) and, if asked,
        L arrays ``[B, H, N, N]``.
    """
    N = x.shape[1]
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]: m_i * m_j
    index = None
    if config.relative_attention:
        if relative_tables is None:
            R = relative_embeddings(params, config)  # [2S, C]
            relative_tables = [relative_projections(R, layer["attention"]["self"], config.num_attention_heads,
                                                    config.pos_att, config.share_att_key)
                               for layer in params["layer"]]
        sizes = (config.att_span, config.position_buckets, config.max_relative_span)
        if study is not None:
            study.relative_positions = build_relative_position(N, N, *sizes[1:])
            study.rel_index = relative_index(N, N, *sizes)
        # Only the table rows some (i, j) reaches take part: c(i, j) lies in [lo, hi], far fewer
        # than 2S rows when N <= S (spec §5.3). Slice the cached tables; index is c(i, j) - lo.
        lo, hi, index = reachable_rows(N, N, *sizes)
        relative_tables = [tuple(None if t is None else t[:, lo:hi + 1] for t in tables) for tables in relative_tables]
    hidden_states, attentions, terms = [x], [], []
    embedding_output = x
    for i, layer_params in enumerate(params["layer"]):
        relative = (*relative_tables[i], index) if config.relative_attention else None
        layer_study = {} if study is not None else None
        x, probs = encoder_layer(x, layer_params, config, visible, relative, layer_study)
        if i == 0 and "conv" in params:
            x = conv_layer(embedding_output, x, mask.astype(x.dtype), params["conv"], config, layer_study)
        hidden_states.append(x)
        if output_attentions:
            attentions.append(probs)
        if study is not None:
            terms.append(layer_study)
    if study is not None:
        study.c2c = tuple(t["c2c"] for t in terms)
        study.c2p = tuple(t.get("c2p") for t in terms)
        study.p2c = tuple(t.get("p2c") for t in terms)
        study.conv_output = terms[0].get("conv_output")
    return hidden_states, attentions


# --------------------------------------------------------------------------- classes
class DebertaV2PreTrainedModel:
    """Common base: config, parameters, loading and saving, the input-independent cache.

    ``tree`` holds the parameters, read-only arrays of the model's dtype nested by checkpoint key
    path (``tree["encoder"]["layer"][0]["attention"]["self"]["query_proj"]["weight"]``);
    ``params`` is the same arrays under their flat checkpoint keys. Subclasses set ``head`` (a kind of
    :data:`pydeberta.weights.HEADS`) and implement ``forward``.
    """

    head = "base"
    base_model_prefix = "deberta"

    def __init__(self, config, params=None, dtype=np.float32, seed=None):
        """Build a model from a config; without ``params``, weights are initialised randomly as
        transformers does (``seed`` makes that reproducible)."""
        if not isinstance(config, DebertaV2Config):
            raise TypeError(f"config must be a DebertaV2Config, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.check_config(config)
        if params is None:
            params = init_parameters(config, self.head, seed)
        else:
            params = match_state_dict(params, config, self.head, source="params")
        self.tree = unflatten(pack(params, self.dtype))
        self._relative_cache = None

    @classmethod
    def check_config(cls, config):
        """Raise ``ValueError`` when ``config`` cannot build this head (overridden by heads)."""

    @classmethod
    def from_pretrained(cls, name_or_path, *, dtype=np.float32, config=None, **config_overrides):
        """Load a checkpoint folder (``config.json`` + ``model.safetensors`` / sharded /
        ``pytorch_model.bin``), or a hub id when ``huggingface_hub`` is installed.

        Args:
            dtype: ``np.float32`` (default) or ``np.float64``; everything is computed in it.
            config: a :class:`DebertaV2Config` to use instead of the folder's ``config.json``.
            **config_overrides: fields replacing those of ``config.json`` (e.g. ``num_labels=3``).
        """
        folder = resolve_model_folder(name_or_path)
        if config is None:
            config = DebertaV2Config.from_pretrained(folder, **config_overrides)
        cls.check_config(config)
        state_dict = read_state_dict(folder)
        params = match_state_dict(state_dict, config, cls.head, source=str(folder))
        return cls(config, params=params, dtype=dtype)

    def save_pretrained(self, folder):
        """Write ``config.json`` and ``model.safetensors`` (transformers' keys) to ``folder``."""
        os.makedirs(folder, exist_ok=True)
        self.config.save_pretrained(folder)
        write_safetensors(os.path.join(folder, SAFE_WEIGHTS_NAME), self.params, metadata={"format": "pt"})

    @property
    def params(self):
        """Checkpoint key -> array (transformers' keys for this model class), from ``tree``."""
        return flatten(self.tree)

    def state_dict(self):
        """The same as :attr:`params`, under transformers' method name."""
        return self.params

    def num_parameters(self, exclude_embeddings=False):
        """Number of parameters (tied weights counted once); optionally without the embedding
        tables (word, position, token type), as transformers' ``num_parameters``."""
        shapes = expected_shapes(self.config, self.head)
        return int(sum(np.prod(shape) for key, shape in shapes.items()
                       if not (exclude_embeddings and "embeddings" in key and key.endswith("embeddings.weight"))))

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ backbone
    def _backbone_params(self):
        return self.tree if self.head == "base" else self.tree[self.base_model_prefix]

    def relative_tables(self):
        """Per layer ``(pos_key, pos_query)`` ``[H, 2S, D]``: computed once, reused on every call.

        They depend on weights only. The cache remembers the arrays it was computed from and is
        rebuilt if any of them has been replaced.
        """
        encoder_params = self._backbone_params()["encoder"]
        sources = [encoder_params["rel_embeddings"], encoder_params.get("LayerNorm", {})]
        sources += [proj for layer in encoder_params["layer"] for proj in layer["attention"]["self"].values()]
        arrays = [array for module in sources for array in module.values()]
        cached = self._relative_cache
        if cached is None or len(cached[0]) != len(arrays) or any(a is not b for a, b in zip(cached[0], arrays)):
            R = relative_embeddings(encoder_params, self.config)
            tables = [relative_projections(R, layer["attention"]["self"], self.config.num_attention_heads,
                                           self.config.pos_att, self.config.share_att_key)
                      for layer in encoder_params["layer"]]
            self._relative_cache = (arrays, tables)
        return self._relative_cache[1]

    def run_backbone(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                     inputs_embeds=None, output_attentions=False, output_hidden_states=False, output_study=False):
        """Validate the inputs and run embeddings + encoder; returns a :class:`BaseModelOutput`.

        NumPy's large blocks come from the extension's block cache meanwhile (:func:`block_cache`).
        """
        with block_cache():
            return self._run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                      output_attentions, output_hidden_states, output_study)

    def _run_backbone(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                      output_attentions, output_hidden_states, output_study):
        inputs = prepare_inputs(self.config, self.dtype, input_ids, attention_mask, token_type_ids,
                                position_ids, inputs_embeds)
        params = self._backbone_params()
        x = embeddings(params["embeddings"], self.config, inputs)
        study = StudyOutput() if output_study else None
        tables = self.relative_tables() if self.config.relative_attention else None
        hidden_states, attentions = encoder(x, params["encoder"], self.config, inputs.attention_mask, tables,
                                            output_attentions, study)
        return BaseModelOutput(
            last_hidden_state=hidden_states[-1],
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            study=study,
        )


class DebertaV2Model(DebertaV2PreTrainedModel):
    """The bare backbone: ``last_hidden_state [B, N, C]`` (transformers' ``DebertaV2Model``)."""

    head = "base"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=False, output_hidden_states=False, output_study=False):
        """Run the model.

        Args:
            input_ids: int ``[B, N]`` (or ``inputs_embeds`` float ``[B, N, E]``), arrays or nested lists.
            attention_mask: 0/1 ``[B, N]``; token_type_ids, position_ids: int ``[B, N]``.
            output_attentions: also return each layer's attention probabilities.
            output_hidden_states: also return the embedding output and every layer's output.
            output_study: also return :class:`~pydeberta.outputs.StudyOutput` (the c2c/c2p/p2c
                score terms per layer, relative positions, conv output) in ``out.study``.
        Returns:
            :class:`~pydeberta.outputs.BaseModelOutput`.
        """
        return self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                 output_attentions, output_hidden_states, output_study)
