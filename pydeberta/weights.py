"""The key table: which checkpoint tensors a model needs, with their shapes, and how a state
dict read from disk (:mod:`pydeberta.checkpoint`) becomes a model's parameters.

Parameter names ARE the checkpoint keys of transformers, e.g.
``deberta.encoder.layer.3.attention.self.query_proj.weight`` in a task model, the same without
``deberta.`` in ``DebertaV2Model``. :func:`expected_shapes` is the one table of them.

Loading (:func:`match_state_dict`):

* keys with or without the ``deberta.`` prefix are accepted;
* tensors Microsoft's checkpoints carry that the model does not use are dropped quietly
  (another task's head, as when the bare ``DebertaV2Model`` loads a classifier's checkpoint,
  absolute ``position_embeddings`` when ``position_biased_input`` is false, ``mask_predictions.*``,
  GDES ``*._weight`` deltas, the
  ``position_ids`` buffer, the tied legacy ``cls.predictions.decoder.*``); anything else
  unexpected is reported in a warning;
* a missing backbone tensor or a shape mismatch is an error naming the key and the shapes;
* a missing head tensor is initialised as transformers initialises it, with a warning.
"""

import re
import warnings

import numpy as np

BACKBONE_PREFIX = "deberta."

# Head kinds, one per model class.
HEADS = ("base", "masked_lm", "sequence_classification", "token_classification",
         "question_answering", "multiple_choice")

# The top-level modules of the task heads (transformers' names). A model loaded from another task's
# checkpoint (the bare DebertaV2Model from a classifier, a classifier from a masked LM) leaves that
# head out without a warning, as transformers does (it logs them at info level unless the class is
# the checkpoint's own architecture).
HEAD_MODULES = ("cls", "lm_predictions", "pooler", "classifier", "qa_outputs")

_QUIETLY_IGNORED = (
    re.compile(r"^mask_predictions\."),  # Microsoft's RTD head
    re.compile(r"\._weight$"),  # GDES deltas of v3 checkpoints
    re.compile(r"(^|\.)embeddings\.position_ids$"),  # old buffer
    re.compile(r"^cls\.predictions\.decoder\.(weight|bias)$"),  # tied to word embeddings / cls bias
)


def backbone_shapes(config):
    """Shapes of ``DebertaV2Model``'s tensors (no prefix), in transformers' order."""
    C, E, F = config.hidden_size, config.embedding_size, config.intermediate_size
    A = config.num_attention_heads * config.attention_head_size
    shapes = {"embeddings.word_embeddings.weight": (config.vocab_size, E)}
    if config.position_biased_input:
        shapes["embeddings.position_embeddings.weight"] = (config.max_position_embeddings, E)
    if config.type_vocab_size > 0:
        shapes["embeddings.token_type_embeddings.weight"] = (config.type_vocab_size, E)
    if E != C:
        shapes["embeddings.embed_proj.weight"] = (C, E)
    shapes["embeddings.LayerNorm.weight"] = (C,)
    shapes["embeddings.LayerNorm.bias"] = (C,)
    projections = ["query_proj", "key_proj", "value_proj"]
    if config.relative_attention and not config.share_att_key:
        projections += [name for term, name in (("c2p", "pos_key_proj"), ("p2c", "pos_query_proj"))
                        if term in config.pos_att]
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        for name in projections:
            shapes[p + f"attention.self.{name}.weight"] = (A, C)
            shapes[p + f"attention.self.{name}.bias"] = (A,)
        for name, (out, inp) in (("attention.output.dense", (C, A)), ("intermediate.dense", (F, C)),
                                 ("output.dense", (C, F))):
            shapes[p + name + ".weight"] = (out, inp)
            shapes[p + name + ".bias"] = (out,)
            if name != "intermediate.dense":
                ln = name.replace("dense", "LayerNorm")
                shapes[p + ln + ".weight"] = (C,)
                shapes[p + ln + ".bias"] = (C,)
    if config.relative_attention:
        shapes["encoder.rel_embeddings.weight"] = (2 * config.att_span, C)
    if "layer_norm" in config.norm_rel_ebd_list:
        shapes["encoder.LayerNorm.weight"] = (C,)
        shapes["encoder.LayerNorm.bias"] = (C,)
    if config.conv_kernel_size > 0:
        shapes["encoder.conv.conv.weight"] = (C, C // config.conv_groups, config.conv_kernel_size)
        shapes["encoder.conv.conv.bias"] = (C,)
        shapes["encoder.conv.LayerNorm.weight"] = (C,)
        shapes["encoder.conv.LayerNorm.bias"] = (C,)
    return shapes


def head_shapes(config, head):
    """Shapes of the task head's tensors for ``head`` (one of :data:`HEADS`)."""
    C, L, V, E = config.hidden_size, config.num_labels, config.vocab_size, config.embedding_size
    if head == "base":
        return {}
    if head == "masked_lm":
        if config.legacy:  # LegacyDebertaV2OnlyMLMHead
            return {"cls.predictions.transform.dense.weight": (E, C), "cls.predictions.transform.dense.bias": (E,),
                    "cls.predictions.transform.LayerNorm.weight": (E,),
                    "cls.predictions.transform.LayerNorm.bias": (E,), "cls.predictions.bias": (V,)}
        return {"lm_predictions.lm_head.dense.weight": (C, C), "lm_predictions.lm_head.dense.bias": (C,),
                "lm_predictions.lm_head.LayerNorm.weight": (C,), "lm_predictions.lm_head.LayerNorm.bias": (C,),
                "lm_predictions.lm_head.bias": (V,)}
    if head in ("sequence_classification", "multiple_choice"):
        out = 1 if head == "multiple_choice" else L
        return {"pooler.dense.weight": (C, C), "pooler.dense.bias": (C,),
                "classifier.weight": (out, C), "classifier.bias": (out,)}
    if head == "token_classification":
        return {"classifier.weight": (L, C), "classifier.bias": (L,)}
    if head == "question_answering":
        return {"qa_outputs.weight": (L, C), "qa_outputs.bias": (L,)}
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")


def expected_shapes(config, head="base"):
    """The key table: every tensor a model with ``head`` needs, key -> shape.

    Backbone keys carry the ``deberta.`` prefix in task models (``head != "base"``). A model
    quantized to int8 (:func:`is_quantized`) has a ``weight_scale [out]`` beside each int8 weight.
    """
    prefix = "" if head == "base" else BACKBONE_PREFIX
    shapes = {prefix + k: v for k, v in backbone_shapes(config).items()}
    shapes.update(head_shapes(config, head))
    if is_quantized(config):
        for key in int8_weight_keys(config, head):
            shapes[key[:-len("weight")] + "weight_scale"] = shapes[key][:1]
    return shapes


# The linear layers ``quantize("int8")`` converts (docs/int8.md): the six of each encoder layer,
# which hold nearly all of a forward's multiply-adds. The embeddings (a lookup), the relative
# table (computed once per model), the separate position projections ``pos_key_proj`` /
# ``pos_query_proj`` (applied to that table only, once per model) and the task heads (one row
# per sequence, or the tied decoder, which is the embedding table) stay float32.
INT8_LAYERS = ("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
               "attention.output.dense", "intermediate.dense", "output.dense")
INT8_METHOD = "pydeberta-int8"


def is_quantized(config):
    """Whether ``config`` describes a model quantized by :meth:`quantize` (its ``quantization_config``);
    ``ValueError`` for a quantization this package does not know."""
    settings = getattr(config, "quantization_config", None)
    if settings is None:
        return False
    if not isinstance(settings, dict) or settings.get("quant_method") != INT8_METHOD:
        raise ValueError(f"quantization_config: only {{'quant_method': {INT8_METHOD!r}}} is supported, got {settings!r}")
    return True


def int8_weight_keys(config, head="base"):
    """The checkpoint keys of the weights that are int8 in a quantized model, in key-table order."""
    prefix = "" if head == "base" else BACKBONE_PREFIX
    return [f"{prefix}encoder.layer.{i}.{name}.weight" for i in range(config.num_hidden_layers) for name in INT8_LAYERS]


def _normalise_prefix(state_dict, head):
    """Add or strip ``deberta.`` so backbone keys are spelled as the model class spells them."""
    out = {}
    for key, value in state_dict.items():
        if head == "base" and key.startswith(BACKBONE_PREFIX):
            key = key[len(BACKBONE_PREFIX):]
        elif head != "base" and key.split(".", 1)[0] in ("embeddings", "encoder"):
            key = BACKBONE_PREFIX + key
        out[key] = value
    return out


def _quietly_ignored(key, config, head):
    """True for tensors Microsoft's/transformers' checkpoints carry that this model never uses."""
    bare = key[len(BACKBONE_PREFIX):] if key.startswith(BACKBONE_PREFIX) else key
    if bare == "embeddings.position_embeddings.weight" and not config.position_biased_input:
        return True
    if key.split(".", 1)[0] in HEAD_MODULES:  # another task's head (this head's own keys are expected ones)
        return True
    return any(p.search(key) for p in _QUIETLY_IGNORED)


def init_tensor(key, shape, config, rng):
    """A fresh tensor as transformers' ``_init_weights`` makes it (float64).

    LayerNorm weight 1 and bias 0; every other bias 0 (including the MLM output bias);
    Linear and Embedding weights ~ N(0, initializer_range) with the padding row of the word
    embeddings zeroed; the convolution keeps PyTorch's default (uniform, bound 1/sqrt(fan_in)).
    """
    if key.endswith("LayerNorm.weight"):
        return np.ones(shape)
    if key.endswith("conv.conv.weight") or key.endswith("conv.conv.bias"):
        fan_in = config.hidden_size // config.conv_groups * config.conv_kernel_size
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)
    if key.endswith("bias"):
        return np.zeros(shape)
    weight = rng.normal(0.0, config.initializer_range, size=shape)
    if key.endswith("word_embeddings.weight") and 0 <= config.pad_token_id < shape[0]:
        weight[config.pad_token_id] = 0.0
    return weight


def init_parameters(config, head="base", seed=None):
    """Randomly initialised parameters for every key of :func:`expected_shapes` (float64)."""
    rng = np.random.default_rng(seed)
    return {key: init_tensor(key, shape, config, rng) for key, shape in expected_shapes(config, head).items()}


def summarise(items, most=10):
    """At most ``most`` lines of ``items``, then how many were left out: a message about a broken
    checkpoint stays short however many keys it concerns.

    >>> print(summarise([f"k{i}" for i in range(12)], most=2))
    k0
      k1
      ... and 10 more
    """
    items = list(items)
    shown = "\n  ".join(str(item) for item in items[:most])
    return shown + (f"\n  ... and {len(items) - most} more" if len(items) > most else "")


def match_state_dict(state_dict, config, head="base", source="checkpoint"):
    """Map a checkpoint's tensors onto the key table of a model with ``head``.

    Args:
        state_dict: key -> array, as read by :func:`pydeberta.checkpoint.read_state_dict`.
        source: how to name the checkpoint in messages (e.g. its folder).
    Returns:
        key -> array for exactly the keys of :func:`expected_shapes`.
    Raises:
        ValueError: a backbone tensor is missing, or a tensor's shape differs from the table.
    Warns:
        UserWarning: unexpected tensors (not used), and head tensors that were missing and
        have been initialised randomly.
    """
    table = expected_shapes(config, head)
    state_dict = _normalise_prefix(state_dict, head)
    mismatched = [
        f"{key}: checkpoint has {tuple(np.shape(value))}, the config expects {table[key]}"
        for key, value in state_dict.items() if key in table and tuple(np.shape(value)) != table[key]
    ]
    if mismatched:
        raise ValueError(f"shape mismatch between {source} and the config:\n  " + summarise(mismatched))
    head_keys = set(head_shapes(config, head))
    missing = [key for key in table if key not in state_dict]
    missing_backbone = [f"{key} {table[key]}" for key in missing if key not in head_keys]
    if missing_backbone:
        raise ValueError(f"{source} lacks backbone tensors the config requires:\n  " + summarise(missing_backbone))
    unexpected = [key for key in state_dict if key not in table and not _quietly_ignored(key, config, head)]
    if unexpected:
        more = f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        warnings.warn(f"{source} has tensors this model does not use (ignored): {sorted(unexpected)[:10]}{more}",
                      stacklevel=3)
    params = {key: state_dict[key] for key in table if key in state_dict}
    if missing:
        warnings.warn(
            f"{source} has no {sorted(missing)}; these head tensors were initialised randomly, "
            "so the head's outputs are meaningless until it is trained", stacklevel=3)
        rng = np.random.default_rng()
        params.update({key: init_tensor(key, table[key], config, rng) for key in missing})
    return params


def unflatten(flat):
    """``{"a.b.0.c": x}`` -> ``{"a": {"b": [{"c": x}]}}``; numbered levels become lists.

    The nested view shares the arrays of ``flat`` (no copies); it lets the pure functions take
    one module's parameters, e.g. ``linear(x, **params["query_proj"])``.
    """
    tree = {}
    for key, value in flat.items():
        node = tree
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value

    def listify(node):
        if not isinstance(node, dict):
            return node
        node = {k: listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
        return node

    return listify(tree)


def flatten(tree, prefix=""):
    """The inverse of :func:`unflatten`: nested dicts/lists -> ``{"a.b.0.c": x}``."""
    items = enumerate(tree) if isinstance(tree, list) else tree.items()
    flat = {}
    for name, node in items:
        key = f"{prefix}{name}"
        if isinstance(node, (dict, list)):
            flat.update(flatten(node, key + "."))
        else:
            flat[key] = node
    return flat


def describe(tree, prefix=""):
    """One line per module of a parameter tree: its path, its tensors' shapes and its number of
    parameters; the layers of a list are described once, as ``layer[0..L-1]`` and ``L ×`` count.

    >>> tree = unflatten({"encoder.layer.0.dense.weight": np.zeros((3, 2)), "encoder.layer.0.dense.bias": np.zeros(3),
    ...                   "encoder.layer.1.dense.weight": np.zeros((3, 2)), "encoder.layer.1.dense.bias": np.zeros(3),
    ...                   "encoder.LayerNorm.weight": np.zeros(3)})
    >>> for line in describe(tree): print(line)
    ('encoder.layer[0..1].dense', 'weight [3, 2], bias [3]', '2 × 9')
    ('encoder.LayerNorm', 'weight [3]', '3')
    """
    tensors = {name: node for name, node in tree.items() if not isinstance(node, (dict, list))}
    if tensors:
        shapes = ", ".join(f"{name} {list(np.shape(node))}" for name, node in tensors.items())
        yield prefix.rstrip("."), shapes, f"{sum(int(np.prod(np.shape(node))) for node in tensors.values()):,}"
    for name, node in tree.items():
        if isinstance(node, dict):
            yield from describe(node, f"{prefix}{name}.")
        elif isinstance(node, list) and node:
            for path, shapes, count in describe(node[0], f"{prefix}{name}[0..{len(node) - 1}]."):
                yield path, shapes, f"{len(node)} × {count}"
