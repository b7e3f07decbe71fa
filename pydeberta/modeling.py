"""The classes users call: ``DebertaV2Model`` and the task models, with transformers' names,
arguments and outputs (the product layer).

A model holds its config, its parameters as a tree of plain arrays whose paths are the checkpoint
keys (``model.tree["encoder"]["layer"][3]["attention"]["self"]["query_proj"]["weight"]``), and the
engine's state for them. A call validates its inputs (:mod:`pydeberta.inputs`) and runs

* the book (:func:`pydeberta.model.backbone`, :mod:`pydeberta.heads`) under the ``reference``
  backend, or whenever ``output_study=True`` asks for its intermediates;
* the engine (:class:`pydeberta.engine.model.Engine`) otherwise,

then the task head and its loss, chosen as transformers chooses them. Loading and saving go
through :mod:`pydeberta.hub`, :mod:`pydeberta.checkpoint` and :mod:`pydeberta.weights`.

Shapes: ``B`` batch, ``N`` sequence length, ``C`` hidden size, ``V`` vocabulary, ``H`` heads.
"""

import contextlib

import numpy as np

from .checkpoint import read_state_dict, write_safetensors
from .config import CONFIG_FIELDS, CONFIG_NAME, DebertaV2Config
from .engine import backend
from .engine import model as engine_model
from .dropout import NO_DROPOUT, Dropout
from .engine.pack import pack
from .functional import linear
from .heads import context_pooler, masked_lm_head
from .hub import resolve_model_folder
from .inputs import as_integer_array, check_labels, prepare_inputs
from .losses import (bce_with_logits, bce_with_logits_backward, cross_entropy, cross_entropy_backward, mse_loss,
                     mse_loss_backward, soft_cross_entropy, soft_cross_entropy_backward)
from .model import backbone
from .outputs import (BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringModelOutput,
                      SequenceClassifierOutput, StudyOutput, TokenClassifierOutput)
from .saving import atomic_files
from .sharing import Source, load_shared, rebuild
from .quantization import quantize_weight
from .weights import (INT8_METHOD, describe, expected_shapes, flatten, init_parameters, int8_weight_keys,
                      is_quantized, match_state_dict, unflatten)

SAFE_WEIGHTS_NAME = "model.safetensors"


# --------------------------------------------------------------------------- classes
def quantize_params(params, keys):
    """``params`` with each weight of ``keys`` replaced by its int8 weight and a ``weight_scale``
    beside it (:func:`pydeberta.quantization.quantize_weight`)."""
    params = dict(params)
    for key in keys:
        try:
            params[key], params[key[:-len("weight")] + "weight_scale"] = quantize_weight(params[key])
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return params


class DebertaV2PreTrainedModel:
    """Common base: config, parameters, loading and saving, the engine's state.

    ``tree`` holds the parameters, arrays of the model's dtype nested by checkpoint key path
    (``tree["encoder"]["layer"][0]["attention"]["self"]["query_proj"]["weight"]``); ``params`` is
    the same arrays under their flat checkpoint keys. To change a parameter, assign a new array
    to its place in ``tree``: the next call uses it. The arrays a model loaded with
    :meth:`from_pretrained` are read-only (it pickles as its folder while they are unchanged,
    :mod:`pydeberta.sharing`); in a model built from arrays, those the engine derives tables
    from (relative embeddings and position projections) become read-only after the first engine
    call, so that an in-place edit cannot leave a stale table behind. Subclasses set ``head`` (a kind of
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
        if is_quantized(config) and self.dtype != np.float32:
            raise ValueError(f"an int8 model computes in float32; dtype must be float32, got {self.dtype}")
        if params is None:
            params = init_parameters(config, self.head, seed)
            if is_quantized(config):
                params = quantize_params(params, int8_weight_keys(config, self.head))
        else:
            params = match_state_dict(params, config, self.head, source="params")
        self.tree = unflatten(pack(params, self.param_dtypes(params)))
        self._engine = None
        self._source = None  # set by from_pretrained

    def param_dtypes(self, params):
        """Checkpoint key -> dtype the model holds it in: the model's dtype, int8 for the int8
        weights of a quantized model (``TypeError`` when ``params`` has those in another dtype, or
        int8 weights come without a quantized config)."""
        dtypes = dict.fromkeys(params, self.dtype)
        quantized = is_quantized(self.config)
        for key in int8_weight_keys(self.config, self.head):
            value = params[key]
            is_int8 = (value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype) == np.int8
            if quantized and not is_int8:
                raise TypeError(f"{key}: a quantized model's weight must be int8, got {np.asarray(value).dtype} "
                                f"(load the float checkpoint and quantize it)")
            if is_int8 and not quantized:  # int8 numbers without their scales are not the weights
                raise TypeError(f"{key} is int8 but the config has no quantization_config: the folder's config.json "
                                f"does not match its weights")
            dtypes[key] = np.dtype(np.int8) if quantized else self.dtype
        return dtypes

    def quantize(self, method="int8"):
        """Quantize the model in place for int8 inference; returns the model.

        The six linear layers of every encoder layer (query, key and value projections, attention
        output, feed-forward in and out; :data:`pydeberta.weights.INT8_LAYERS` says why those)
        get per-output-channel symmetric int8 weights and a ``weight_scale``; at each call their
        input rows are quantized to int8, the products summed in int32 and scaled back to float32
        (:func:`pydeberta.quantization.quantized_linear`, compiled under the ``cython`` backend).
        Everything else stays float32. ``save_pretrained`` then writes the int8 weights and
        scales, and ``from_pretrained`` loads them back (transformers cannot run such a folder).
        Only float32 models; a model already quantized is left as it is.
        """
        if method != "int8":
            raise ValueError(f"quantize: method must be 'int8', got {method!r}")
        if is_quantized(self.config):
            return self
        if self.dtype != np.float32:
            raise ValueError(f"quantize: an int8 model computes in float32; this model is {self.dtype}")
        config = DebertaV2Config.from_dict(self.config.to_dict(), quantization_config={
            "quant_method": INT8_METHOD, "weights": "int8, symmetric, per output channel",
            "activations": "int8, symmetric, per row, quantized at each call", "accumulation": "int32"})
        source = self._source if self._source is not None and self._source.unchanged(self.params) else None
        params = quantize_params(self.params, int8_weight_keys(config, self.head))
        self.config = config
        self.tree = unflatten(pack(params, self.param_dtypes(params)))
        self._engine = None
        self._source = None
        if source is not None:  # still its folder's weights, quantized: pickled as the folder and "int8"
            self._remember_source(source.folder, source.config, quantize=method)
        return self

    def _remember_source(self, folder, config, quantize=None):
        """Make the parameters read-only and record where they came from (:class:`~pydeberta.sharing.Source`:
        the folder, the config dict it was loaded with, the quantization applied after), so that
        the model pickles as its folder while they stay (see :mod:`pydeberta.sharing`)."""
        loaded = self.params
        for array in loaded.values():
            array.flags.writeable = False
        self._source = Source(folder, config, self.dtype.name, loaded, quantize=quantize)

    @classmethod
    def check_config(cls, config):
        """Raise ``ValueError`` when ``config`` cannot build this head (overridden by heads)."""

    @classmethod
    def from_pretrained(cls, name_or_path, *, dtype=np.float32, config=None, quantize=None, **config_overrides):
        """Load a checkpoint folder (``config.json`` + ``model.safetensors`` / sharded /
        ``pytorch_model.bin``), or a hub id when ``huggingface_hub`` is installed.

        Args:
            dtype: ``np.float32`` (default) or ``np.float64``; everything is computed in it.
            config: a :class:`DebertaV2Config` to use instead of the folder's ``config.json``.
            quantize: ``"int8"`` to quantize the model after loading (:meth:`quantize`); a folder
                that a quantized model was saved to loads quantized without it.
            **config_overrides: fields replacing those of ``config.json`` (e.g. ``num_labels=3``);
                a name that is neither a config field nor an option raises ``TypeError``, as in
                transformers, rather than being stored and ignored.
        """
        if config is not None and config_overrides:
            raise TypeError(f"from_pretrained: pass either config= or config fields {sorted(config_overrides)}, not both")
        folder = resolve_model_folder(name_or_path)
        if config is None:
            config = DebertaV2Config.from_pretrained(folder)
            unknown = sorted(set(config_overrides) - CONFIG_FIELDS - set(config.to_dict()))
            if unknown:
                raise TypeError(f"from_pretrained() got unexpected keyword argument(s) {unknown}: neither a field of "
                                f"DebertaV2Config nor an option (dtype, config, quantize)")
            if config_overrides:
                config = DebertaV2Config.from_dict(config.to_dict(), **config_overrides)
        cls.check_config(config)
        state_dict = read_state_dict(folder, lazy=True)  # weights read straight into the model's buffer
        params = match_state_dict(state_dict, config, cls.head, source=str(folder))
        model = cls(config, params=params, dtype=dtype)
        model._remember_source(str(folder), config.to_dict())
        return model if quantize is None else model.quantize(quantize)

    def __reduce__(self):
        """Pickled as its folder, config and weights' digest when loaded by :meth:`from_pretrained`
        and no parameter was replaced since (a worker loads it once, see
        :mod:`pydeberta.sharing`); by value (config and arrays) otherwise."""
        if self._source is not None and self._source.unchanged(self.params):
            source = self._source
            return load_shared, (type(self), source.folder, source.config, source.dtype, source.digest(), source.quantize)
        return rebuild, (type(self), self.config.to_dict(), self.params, self.dtype.name)

    def save_pretrained(self, folder):
        """Write ``config.json`` and ``model.safetensors`` (transformers' keys) to ``folder``, all or
        nothing (:func:`pydeberta.saving.atomic_files`): a failure raises ``OSError`` and leaves
        the folder as it was."""
        with atomic_files(folder) as target:
            self.config.to_json_file(target(CONFIG_NAME))
            write_safetensors(target(SAFE_WEIGHTS_NAME), self.params, metadata={"format": "pt"})

    @property
    def params(self):
        """Checkpoint key -> array (transformers' keys for this model class), from ``tree``."""
        return flatten(self.tree)

    def state_dict(self):
        """The same as :attr:`params`, under transformers' method name."""
        return self.params

    def load_state_dict(self, state_dict, strict=True):
        """Replace the parameters by checkpoint key, as ``torch.nn.Module.load_state_dict``: the
        given arrays are copied (cast to the model's dtype) into new arrays, never written into
        the old ones, so a loaded model's read-only arrays and the engine's tables stay valid.

        Args:
            state_dict: checkpoint key -> array of the shape :attr:`params` has for that key.
            strict: every key of :attr:`params` must be given and no other (else ``KeyError``
                naming them); with False, missing keys keep their arrays and unknown ones are left out.
        Returns:
            ``(missing_keys, unexpected_keys)``, sorted lists.
        """
        current = self.params
        missing = sorted(set(current) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(current))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: state_dict must have exactly the model's keys; missing {missing[:5]}"
                           f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                           f"{' ...' if len(unexpected) > 5 else ''}")
        for key in current.keys() & state_dict.keys():
            if np.shape(state_dict[key]) != current[key].shape:
                raise ValueError(f"load_state_dict: {key} must have shape {current[key].shape}, "
                                 f"got {np.shape(state_dict[key])}")
        params = {key: state_dict.get(key, value) for key, value in current.items()}
        self.tree = unflatten(pack(params, self.param_dtypes(params)))
        return missing, unexpected

    def num_parameters(self, exclude_embeddings=False):
        """Number of parameters (tied weights counted once); optionally without the embedding
        tables (word, position, token type), as transformers' ``num_parameters``."""
        shapes = expected_shapes(self.config, self.head)
        return int(sum(np.prod(shape) for key, shape in shapes.items()
                       if not (exclude_embeddings and "embeddings" in key and key.endswith("embeddings.weight"))))

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def result(self, output, return_dict):
        """``output``, or its :meth:`~pydeberta.outputs.ModelOutput.to_tuple` when ``return_dict``
        is False (None reads ``config.return_dict``, True unless the config says otherwise)."""
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        if not isinstance(return_dict, (bool, np.bool_)):
            raise TypeError(f"return_dict must be True, False or None, got {return_dict!r}")
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------------------------ transformers habits
    training = False  # model.train() switches dropout on
    _pinned_dropout = None
    _pinned_tape = None

    def train(self, mode=True, seed=None):
        """Training mode (``mode=True``): every call applies dropout (:mod:`pydeberta.dropout`),
        with masks from a generator seeded by ``seed`` (fresh entropy when None), and runs the book
        (:func:`pydeberta.training.value_and_grad` runs the engine's training pass instead).
        ``train(False)`` is :meth:`eval`. Returns the model, as transformers."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"train(mode=...) must be True or False, got {mode!r}")
        self.training = bool(mode)
        if mode:
            self.dropout_rng = np.random.default_rng(seed)
        return self

    def eval(self):
        """Inference mode (the default): no dropout."""
        return self.train(False)

    def dropout(self):
        """The dropout of one call: none in eval mode, else a :class:`~pydeberta.dropout.Dropout`
        with fresh masks (or the one :func:`pydeberta.training.value_and_grad` pinned)."""
        if self._pinned_dropout is not None:
            return self._pinned_dropout
        return Dropout(self.config, self.dropout_rng) if self.training else NO_DROPOUT

    @contextlib.contextmanager
    def pinned_dropout(self, drop, tape=None):
        """Calls inside use ``drop`` (so that a backward sees the forward's masks) and, with a
        :class:`~pydeberta.engine.training.Tape`, run the backbone on the engine's training
        forward, which records into ``tape`` what the engine's backward needs."""
        self._pinned_dropout, self._pinned_tape = drop, tape
        try:
            yield
        finally:
            self._pinned_dropout = self._pinned_tape = None

    def __repr__(self):
        """The architecture: a summary line, then each module's tensors and parameter count."""
        c = self.config
        relative = (f"relative attention {'+'.join(sorted(c.pos_att)) or 'c2c only'} over "
                    f"{c.position_buckets if c.position_buckets > 0 else 'unbucketed'} buckets"
                    if c.relative_attention else "no relative attention")
        lines = list(describe(self.tree))
        width = max(len(path) for path, _, _ in lines)
        body = "\n".join(f"  {path:<{width}}  {shapes}  ({count})" for path, shapes, count in lines)
        return (f"{type(self).__name__}({self.num_parameters():,} parameters, {self.dtype}: {c.num_hidden_layers} "
                f"layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, feed-forward "
                f"{c.intermediate_size} {c.hidden_act}, vocabulary {c.vocab_size}, {relative})\n{body}")

    # ------------------------------------------------------------------ backbone
    def _backbone_params(self):
        return self.tree if self.head == "base" else self.tree[self.base_model_prefix]

    def engine(self):
        """The :class:`~pydeberta.engine.model.Engine` of this model (made on first use)."""
        if self._engine is None or self._engine.tree is not self._backbone_params():
            self._engine = engine_model.Engine(self.config, self._backbone_params())
        return self._engine

    def runs_book(self, output_study):
        """Whether a call runs the book: under the ``reference`` backend, in training mode (the
        engine has no dropout), or to return its intermediates (``output_study=True``)."""
        return output_study or self.training or backend.active_backend() == "reference"

    def run_backbone(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                     inputs_embeds=None, output_attentions=False, output_hidden_states=False, output_study=False,
                     drop=NO_DROPOUT):
        """Validate the inputs and run embeddings + encoder, on the book or the engine
        (:meth:`runs_book`; the engine's training forward while a tape is pinned,
        :meth:`pinned_dropout`), with the call's dropout ``drop``; returns a :class:`BaseModelOutput`."""
        inputs = prepare_inputs(self.config, self.dtype, input_ids, attention_mask, token_type_ids,
                                position_ids, inputs_embeds)
        study = None
        if self._pinned_tape is not None:
            hidden_states, attentions = self._pinned_tape.backbone(self._backbone_params(), self.config, inputs, drop,
                                                                   output_attentions)
        elif self.runs_book(output_study):
            hidden_states, attentions, intermediates = backbone(self._backbone_params(), self.config, inputs, drop)
            study = StudyOutput(**intermediates) if output_study else None
        else:
            hidden_states, attentions = self.engine().backbone(inputs, backend.active_kernels(), output_attentions)
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
                inputs_embeds=None, output_attentions=False, output_hidden_states=False, output_study=False,
                return_dict=None):
        """Run the model.

        Args:
            input_ids: int ``[B, N]`` (or ``inputs_embeds`` float ``[B, N, E]``), arrays or nested lists.
            attention_mask: 0/1 ``[B, N]``; token_type_ids, position_ids: int ``[B, N]``.
            output_attentions: also return each layer's attention probabilities.
            output_hidden_states: also return the embedding output and every layer's output.
            output_study: also return :class:`~pydeberta.outputs.StudyOutput` (the c2c/c2p/p2c
                score terms per layer, relative positions, conv output) in ``out.study``.
            return_dict: False for the tuple of the output's fields that are set (transformers'
                ``return_dict=False``); None reads ``config.return_dict`` (default True).
        Returns:
            :class:`~pydeberta.outputs.BaseModelOutput` (every task model's output likewise).
        """
        return self.result(self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                             output_attentions, output_hidden_states, output_study, self.dropout()),
                           return_dict)


# --------------------------------------------------------------------------- losses, as transformers picks them
def check_class_labels(labels, shape, num_classes, name="labels", ignore_index=-100):
    """Integer labels of ``shape`` in ``[0, num_classes)`` or equal to ``ignore_index``."""
    labels = check_labels(labels, shape, name)
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(f"{name} must lie in [0, {num_classes}) or be {ignore_index} (ignored), "
                         f"got {np.unique(labels[bad])[:5].tolist()}")
    return labels


def sequence_classification_loss(logits, labels, config, with_grad=False):
    """The loss of ``DebertaV2ForSequenceClassification``, chosen as transformers chooses it.

    ``problem_type`` None (what DeBERTa checkpoints carry; the model never sets it):
      * ``num_labels == 1``: regression, MSE of the flattened logits (float labels);
      * labels ``[B]``: cross-entropy over the rows whose label is >= 0 (negative labels are
        ignored; 0 when none is left), in float32 as transformers casts it;
      * labels ``[B, num_labels]``: soft labels, ``-(log_softmax(logits) * labels).sum(-1).mean()``.
    ``"regression"``: MSE; ``"single_label_classification"``: cross-entropy (ignore index
    -100); ``"multi_label_classification"``: BCE with logits against ``[B, num_labels]`` targets.

    One deliberate difference: labels ``[B, 1]`` are read as ``[B]``. transformers gathers
    them with the row/column pairs of ``nonzero()``, which mixes up rows (and crashes unless
    ``num_labels == 2``).

    With ``with_grad`` returns ``(loss, dlogits)``, ``dlogits [B, num_labels]`` the gradient of
    the loss by the matching backward of :mod:`pydeberta.losses`.
    """
    B, L = logits.shape

    def chosen(loss, backward, scores, targets, rows=slice(None)):
        """``loss(scores, targets)``, and with ``with_grad`` its gradient put back in ``logits``' shape."""
        value = loss(scores, targets)
        if not with_grad:
            return value
        dlogits = np.zeros_like(logits)  # [B, L]
        dlogits[rows] = backward(scores, targets).reshape(dlogits[rows].shape)
        return value, dlogits

    problem = config.problem_type
    if problem == "regression" or (problem is None and L == 1):
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.floating):
            raise TypeError(f"regression labels must be floating point, got dtype {labels.dtype}")
        if L == 1:
            if labels.size != B:
                raise ValueError(f"regression labels must have {B} values, got shape {labels.shape}")
            labels = labels.reshape(-1)
            scores = logits.reshape(-1)  # [B]
            if problem is None:  # transformers casts the logits to the labels' dtype here
                scores = scores.astype(labels.dtype)
            return chosen(mse_loss, mse_loss_backward, scores, labels)
        if labels.shape != (B, L):
            raise ValueError(f"regression labels must have shape {(B, L)}, got {labels.shape}")
        return chosen(mse_loss, mse_loss_backward, logits, labels.astype(logits.dtype))
    if problem == "multi_label_classification":
        labels = np.asarray(labels)
        if labels.shape != (B, L):
            raise ValueError(f"multi-label labels must have shape {(B, L)}, got {labels.shape}")
        return chosen(bce_with_logits, bce_with_logits_backward, logits, labels.astype(logits.dtype))
    labels = np.asarray(labels)
    if labels.shape == (B, 1):
        labels = labels.reshape(B)
    if problem == "single_label_classification":
        return chosen(cross_entropy, cross_entropy_backward, logits, check_class_labels(labels, (B,), L))
    if labels.shape == (B, L) and L > 1:  # soft labels
        return chosen(soft_cross_entropy, soft_cross_entropy_backward, logits, labels.astype(logits.dtype))
    labels = check_labels(labels, (B,), "labels (class indices [B] or soft labels [B, num_labels])")
    keep = labels >= 0  # negative labels are ignored
    if np.any(labels[keep] >= L):
        raise ValueError(f"labels must lie in [0, {L}) (negative ones are ignored), got {labels[keep].max()}")
    if not keep.any():
        zero = np.zeros((), logits.dtype)
        return (zero, np.zeros_like(logits)) if with_grad else zero
    return chosen(cross_entropy, cross_entropy_backward, logits[keep].astype(np.float32), labels[keep], keep)


class DebertaV2ForMaskedLM(DebertaV2PreTrainedModel):
    """Masked LM: ``logits [B, N, V]``. ``config.legacy`` picks the head layout: True for
    transformers' ``cls.predictions.*``, False for Microsoft's ``lm_predictions.lm_head.*``
    (the one the released checkpoints carry)."""

    head = "masked_lm"

    @classmethod
    def check_config(cls, config):
        if not config.legacy and config.embedding_size != config.hidden_size:
            raise ValueError(
                f"the legacy=False masked-LM head needs embedding_size ({config.embedding_size}) == hidden_size "
                f"({config.hidden_size}): it multiplies a hidden_size vector by the word embeddings")

    def lm_logits(self, hidden, book=False):
        """The masked-LM head on hidden states ``[..., C]`` -> logits ``[..., V]``, by the book or
        the engine; the fill-mask pipeline gives it only the masked positions' rows."""
        head = self.tree["cls"] if self.config.legacy else self.tree["lm_predictions"]
        word_embeddings = self.tree["deberta"]["embeddings"]["word_embeddings"]["weight"]
        if book:
            return masked_lm_head(hidden, head, word_embeddings, self.config)
        return engine_model.masked_lm_head(hidden, head, word_embeddings, self.config, backend.active_kernels())

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False, return_dict=None):
        """Run the model (arguments as :meth:`DebertaV2Model.forward`); ``labels [B, N]`` in
        ``[0, V)`` or -100 (ignored) give ``loss``, the mean cross-entropy."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study, self.dropout())
        logits = self.lm_logits(out.last_hidden_state, self.runs_book(output_study))  # [B, N, V]
        loss = None
        if labels is not None:
            labels = check_class_labels(labels, logits.shape[:2], self.config.vocab_size)
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        output = MaskedLMOutput(loss, logits, out.hidden_states, out.attentions, out.study)
        return self.result(output, return_dict)


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    """Sentence (pair) classification or regression: ``logits [B, num_labels]``."""

    head = "sequence_classification"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False, return_dict=None):
        """Run the model; ``labels`` give ``loss`` (see :func:`sequence_classification_loss`)."""
        drop = self.dropout()
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study, drop)
        pooled = context_pooler(out.last_hidden_state, self.tree["pooler"], self.config, drop)  # [B, C]
        logits = linear(drop(pooled, "classifier"), **self.tree["classifier"])  # [B, num_labels]
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        if loss is not None and self.config.problem_type is None and self.config.num_labels == 1:
            logits = logits.reshape(-1).astype(np.asarray(labels).dtype)  # transformers returns these, [B]
        output = SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions, out.study)
        return self.result(output, return_dict)


class DebertaV2ForTokenClassification(DebertaV2PreTrainedModel):
    """Per-token classification (e.g. NER): ``logits [B, N, num_labels]``."""

    head = "token_classification"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False, return_dict=None):
        """Run the model; ``labels [B, N]`` (-100 ignored) give the mean cross-entropy ``loss``."""
        drop = self.dropout()
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study, drop)
        logits = linear(drop(out.last_hidden_state, "token_classifier"), **self.tree["classifier"])  # [B, N, L]
        loss = None
        if labels is not None:
            labels = check_class_labels(labels, logits.shape[:2], self.config.num_labels)
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        output = TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions, out.study)
        return self.result(output, return_dict)


class DebertaV2ForQuestionAnswering(DebertaV2PreTrainedModel):
    """Extractive QA: ``start_logits``/``end_logits [B, N]``."""

    head = "question_answering"

    @classmethod
    def check_config(cls, config):
        if config.num_labels != 2:
            raise ValueError(f"question answering needs num_labels == 2 (start and end), got {config.num_labels}")

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=False,
                output_hidden_states=False, output_study=False, return_dict=None):
        """Run the model; ``start_positions``/``end_positions [B]`` give ``loss``: the mean of the
        two cross-entropies, positions clamped to ``[0, N]`` and ``N`` ignored, as transformers."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study, self.dropout())
        logits = linear(out.last_hidden_state, **self.tree["qa_outputs"])  # [B, N, 2]
        start_logits, end_logits = logits[..., 0], logits[..., 1]  # [B, N] each
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("pass both start_positions and end_positions, or neither")
        if start_positions is not None:
            B, N = start_logits.shape
            losses = []
            for name, positions, scores in (("start_positions", start_positions, start_logits),
                                            ("end_positions", end_positions, end_logits)):
                positions = as_integer_array(positions, name)
                positions = check_labels(positions.reshape(-1) if positions.ndim == 2 else positions, (B,), name)
                losses.append(cross_entropy(scores, np.clip(positions, 0, N), ignore_index=N))
            loss = (losses[0] + losses[1]) / 2
        return self.result(QuestionAnsweringModelOutput(loss, np.ascontiguousarray(start_logits),
                                                        np.ascontiguousarray(end_logits), out.hidden_states,
                                                        out.attentions, out.study), return_dict)


class DebertaV2ForMultipleChoice(DebertaV2PreTrainedModel):
    """Multiple choice: inputs ``[B, num_choices, N]``, ``logits [B, num_choices]``."""

    head = "multiple_choice"

    @staticmethod
    def flatten_choices(input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                        inputs_embeds=None):
        """Check the ``[B, num_choices, N(, E)]`` inputs and flatten each to ``[B*num_choices, N(, E)]``.

        Returns:
            ``(B, num_choices, inputs)``, ``inputs`` a dict of :meth:`run_backbone`'s input arguments.
        """
        main = input_ids if input_ids is not None else inputs_embeds
        if main is None:
            raise ValueError("pass exactly one of input_ids and inputs_embeds, got neither")
        main_shape = np.shape(main)
        rank = 3 if input_ids is not None else 4
        if len(main_shape) != rank:
            raise ValueError(f"multiple-choice {'input_ids' if input_ids is not None else 'inputs_embeds'} must have "
                             f"rank {rank} [batch, num_choices, sequence{', embedding' if rank == 4 else ''}], "
                             f"got shape {main_shape}")
        B, num_choices, N = main_shape[:3]

        def flat(value, name, trailing=0):
            if value is None:
                return None
            array = np.asarray(value)
            if array.ndim != 3 + trailing or array.shape[:3] != (B, num_choices, N):
                raise ValueError(f"{name} must have shape {(B, num_choices, N)}{' + (E,)' if trailing else ''}, "
                                 f"got {array.shape}")
            return array.reshape(B * num_choices, *array.shape[2:])  # [B*num_choices, N(, E)]

        inputs = {name: flat(value, name) for name, value in (("input_ids", input_ids),
                                                              ("attention_mask", attention_mask),
                                                              ("token_type_ids", token_type_ids),
                                                              ("position_ids", position_ids))}
        inputs["inputs_embeds"] = flat(inputs_embeds, "inputs_embeds", 1)
        return B, num_choices, inputs

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False, return_dict=None):
        """Run the model on every (example, choice) sequence; ``labels [B]`` (choice index) give
        the cross-entropy ``loss``."""
        B, num_choices, flat = self.flatten_choices(input_ids, attention_mask, token_type_ids, position_ids,
                                                    inputs_embeds)
        drop = self.dropout()
        out = self.run_backbone(**flat, output_attentions=output_attentions,
                                output_hidden_states=output_hidden_states, output_study=output_study, drop=drop)
        pooled = context_pooler(out.last_hidden_state, self.tree["pooler"], self.config, drop)  # [B*num_choices, C]
        logits = linear(drop(pooled, "classifier"), **self.tree["classifier"]).reshape(B, num_choices)  # [B, nc]
        loss = None
        if labels is not None:
            loss = cross_entropy(logits, check_class_labels(labels, (B,), num_choices))
        output = MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions, out.study)
        return self.result(output, return_dict)
