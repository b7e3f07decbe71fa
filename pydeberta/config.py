"""`DebertaV2Config`: the hyper-parameters of a DeBERTa-v2/v3 model, with transformers' names.

A config is read from and written to ``config.json`` exactly as transformers does, so a folder
saved by either library loads in the other. Three kinds of fields exist:

* the constructor fields of ``transformers.DebertaV2Config`` (always present, with its defaults);
* fields transformers reads with ``getattr(config, name, default)`` (``embedding_size``,
  ``position_buckets``, ``norm_rel_ebd``, ``share_att_key``, ``attention_head_size``, ``conv_*``,
  ``cls_dropout``): stored only when given, their defaults answered on attribute access, so a
  config without them round-trips without gaining them;
* anything else in ``config.json`` (``architectures``, ``torch_dtype``, ...): kept verbatim.

Impossible values (hidden size not divisible by the heads, an even convolution kernel, a bucket
count the log formula cannot use, ...) raise ``ValueError`` when the config is built.
"""

import copy
import inspect
import json
from pathlib import Path

from .checkpoint import read_json_object
from .functional import ACT2FN
from .saving import atomic_files

CONFIG_NAME = "config.json"

# Fields that transformers reads with getattr(config, name, default); a default of None is
# resolved from other fields in __getattr__ below.
_GETATTR_DEFAULTS = {
    "embedding_size": None,  # -> hidden_size
    "attention_head_size": None,  # -> hidden_size // num_attention_heads
    "position_buckets": -1,
    "norm_rel_ebd": "none",
    "share_att_key": False,
    "conv_kernel_size": 0,
    "conv_groups": 1,
    "conv_act": "tanh",
    "cls_dropout": None,
}

_PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
_NORM_REL_EBD = ("none", "layer_norm")

# Every field's kind and range, checked before anything is computed from it. The upper limits
# are far beyond any released model (deberta-v2-xxlarge: 48 layers, hidden 1536, 128100 words)
# and keep a corrupt or hostile config.json from asking for absurd sizes.
_INTS = {  # name: (smallest, largest)
    "vocab_size": (1, 1 << 24), "hidden_size": (1, 1 << 16), "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1 << 12), "intermediate_size": (1, 1 << 20), "max_position_embeddings": (1, 1 << 20),
    "embedding_size": (1, 1 << 16), "attention_head_size": (1, 1 << 16), "type_vocab_size": (0, 1 << 16),
    "max_relative_positions": (-(1 << 31), 1 << 20), "position_buckets": (-(1 << 31), 1 << 16),
    "conv_kernel_size": (0, 1 << 10), "conv_groups": (1, 1 << 16),
}
_FLOATS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "pooler_dropout", "initializer_range")  # or null
# (layer_norm_eps, which must be a number > 0, is checked in validate)
_BOOLS = ("relative_attention", "position_biased_input", "share_att_key", "legacy", "tie_word_embeddings")
_MAX_PARAMETERS = 1 << 34  # 17 billion: 64 GiB of float32
_MAX_LABELS = 1 << 20
_POS_ATT_TYPES = ("c2p", "p2c", "p2p", "none")  # p2p exists in Microsoft's code only; ignored as in HF


def _default_labels(num_labels):
    """``{0: "LABEL_0", ...}`` for ``num_labels`` labels, after checking it is an int in [1, 2^20]."""
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or not 1 <= num_labels <= _MAX_LABELS:
        raise ValueError(f"config.num_labels must be a positive integer (at most {_MAX_LABELS}), "
                         f"got {num_labels!r:.80}")
    return {i: f"LABEL_{i}" for i in range(num_labels)}


class DebertaV2Config:
    """Configuration of a DeBERTa-v2/v3 model (transformers' ``DebertaV2Config``).

    Besides transformers' fields it offers three resolved, read-only views used by the model:
    ``pos_att`` (the normalised ``pos_att_type`` set), ``max_relative_span`` (``max_relative_positions``
    or ``max_position_embeddings`` when < 1) and ``att_span`` (``S``: ``position_buckets`` when
    bucketing, else ``max_relative_span``; the relative table has ``2S`` rows).
    """

    model_type = "deberta-v2"

    def __init__(
        self,
        vocab_size=128100,
        hidden_size=1536,
        num_hidden_layers=24,
        num_attention_heads=24,
        intermediate_size=6144,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=0,
        initializer_range=0.02,
        layer_norm_eps=1e-7,
        relative_attention=False,
        max_relative_positions=-1,
        pad_token_id=0,
        position_biased_input=True,
        pos_att_type=None,
        pooler_dropout=0,
        pooler_hidden_act="gelu",
        legacy=True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.relative_attention = relative_attention
        self.max_relative_positions = max_relative_positions
        self.pad_token_id = pad_token_id
        self.position_biased_input = position_biased_input
        if isinstance(pos_att_type, str):  # "p2c|c2p" -> ["p2c", "c2p"], as transformers
            pos_att_type = [x.strip() for x in pos_att_type.lower().split("|")]
        self.pos_att_type = pos_att_type
        self.pooler_dropout = pooler_dropout
        self.pooler_hidden_act = pooler_hidden_act
        self.pooler_hidden_size = kwargs.pop("pooler_hidden_size", hidden_size)
        self.legacy = legacy

        # Label fields of transformers' PretrainedConfig: id2label wins over num_labels.
        id2label = kwargs.pop("id2label", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("label2id", None)  # derived from id2label
        if id2label is None:
            id2label = _default_labels(2 if num_labels is None else num_labels)
        if not isinstance(id2label, dict) or len(id2label) > _MAX_LABELS or not all(
                str(k).lstrip("-").isdigit() and isinstance(v, (str, int)) for k, v in id2label.items()):
            raise ValueError(f"config.id2label must map label numbers to names (at most {_MAX_LABELS}), "
                             f"got {id2label!r:.80}")
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.label2id = {v: k for k, v in self.id2label.items()}
        self.problem_type = kwargs.pop("problem_type", None)
        self.tie_word_embeddings = kwargs.pop("tie_word_embeddings", True)
        kwargs.pop("model_type", None)

        for name, value in kwargs.items():  # getattr-fields and unknown fields, kept verbatim
            setattr(self, name, value)
        self.validate()

    def __getattr__(self, name):
        """Defaults of the fields transformers reads with ``getattr`` (only called when unset)."""
        if name not in _GETATTR_DEFAULTS:
            raise AttributeError(f"'DebertaV2Config' object has no attribute '{name}'")
        if name == "embedding_size":
            return self.hidden_size
        if name == "attention_head_size":
            return self.hidden_size // self.num_attention_heads
        return _GETATTR_DEFAULTS[name]

    # ----------------------------------------------------------------- resolved views
    @property
    def num_labels(self):
        """Number of labels of the task heads (``len(id2label)``)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n):
        self.id2label = _default_labels(n)
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def pos_att(self):
        """The relative terms in use: a subset of ``{"c2p", "p2c"}`` (``"none"``/``"p2p"`` dropped)."""
        return frozenset(t for t in (self.pos_att_type or []) if t in ("c2p", "p2c"))

    @property
    def max_relative_span(self):
        """``max_relative_positions``, or ``max_position_embeddings`` when it is < 1."""
        if self.max_relative_positions >= 1:
            return self.max_relative_positions
        return self.max_position_embeddings

    @property
    def att_span(self):
        """``S``: ``position_buckets`` if > 0, else ``max_relative_span``; the table has 2S rows."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative_span

    @property
    def norm_rel_ebd_list(self):
        """``norm_rel_ebd`` split on ``|`` and lower-cased, as transformers' encoder does."""
        return [x.strip() for x in str(self.norm_rel_ebd).lower().split("|")]

    # ----------------------------------------------------------------- validation
    def check_kinds(self):
        """Raise ``ValueError`` naming the field when a value has the wrong kind (an int that is a
        list, a flag that is a string...) or lies outside its range (:data:`_INTS`)."""
        for name, (low, high) in _INTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                kind = "a positive integer" if low == 1 else f"an integer in [{low}, {high}]"
                raise ValueError(f"config.{name} must be {kind}" + (f" (at most {high})" if low == 1 else "")
                                 + f", got {value!r:.80}")
        for name in _FLOATS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"config.{name} must be a number, got {value!r:.80}")
        if self.pad_token_id is not None and (isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int)):
            raise ValueError(f"config.pad_token_id must be an integer or null, got {self.pad_token_id!r:.80}")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"config.{name} must be true or false, got {getattr(self, name)!r:.80}")
        for name in ("hidden_act", "pooler_hidden_act", "conv_act"):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in ACT2FN:
                raise ValueError(f"config.{name} must be one of {sorted(ACT2FN)}, got {value!r:.80}")
        if self.pos_att_type is not None and not (
                isinstance(self.pos_att_type, list) and all(isinstance(t, str) for t in self.pos_att_type)):
            raise ValueError(f"config.pos_att_type must be a list of names or a '|'-separated string, "
                             f"got {self.pos_att_type!r:.80}")
        architectures = getattr(self, "architectures", None)  # kept as read, but transformers' kind
        if architectures is not None and not (
                isinstance(architectures, list) and all(isinstance(name, str) for name in architectures)):
            raise ValueError(f"config.architectures must be a list of class names, got {architectures!r:.80}")
        if not isinstance(self.norm_rel_ebd, str) or any(part not in _NORM_REL_EBD for part in self.norm_rel_ebd_list):
            raise ValueError(f"config.norm_rel_ebd must be 'none', 'layer_norm' or both joined by '|', "
                             f"got {self.norm_rel_ebd!r:.80}")
        C, F, V, E = self.hidden_size, self.intermediate_size, self.vocab_size, self.embedding_size
        parameters = V * E + self.num_hidden_layers * (4 * C * C + 2 * C * F)
        if parameters > _MAX_PARAMETERS:
            raise ValueError(f"config describes {parameters:.3g} parameters (vocab_size {V}, hidden_size {C}, "
                             f"intermediate_size {F}, num_hidden_layers {self.num_hidden_layers}); at most "
                             f"{_MAX_PARAMETERS:.3g} are accepted")

    def validate(self):
        """Raise ``ValueError`` naming the field when a value cannot build a working model."""
        self.check_kinds()
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"config.hidden_size ({self.hidden_size}) must be a multiple of "
                f"config.num_attention_heads ({self.num_attention_heads})"
            )
        if self.attention_head_size * self.num_attention_heads != self.hidden_size:
            raise ValueError(
                f"config.attention_head_size ({self.attention_head_size}) x num_attention_heads "
                f"({self.num_attention_heads}) must equal hidden_size ({self.hidden_size})"
            )
        if self.pooler_hidden_size != self.hidden_size:
            raise ValueError(
                f"config.pooler_hidden_size ({self.pooler_hidden_size}) must equal hidden_size "
                f"({self.hidden_size}): the pooler reads the hidden state of token 0"
            )
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ValueError(f"config.type_vocab_size must be an integer >= 0, got {self.type_vocab_size!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"config.layer_norm_eps must be a number > 0, got {eps!r:.80}")
        for name in ("hidden_act", "pooler_hidden_act", "conv_act"):
            value = getattr(self, name)
            if value not in ACT2FN:
                raise ValueError(
                    f"config.{name} must be one of {sorted(ACT2FN)}, got {value!r}"
                )
        unknown = [t for t in (self.pos_att_type or []) if t not in _POS_ATT_TYPES]
        if unknown:
            raise ValueError(
                f"config.pos_att_type may contain {list(_POS_ATT_TYPES)}, got {self.pos_att_type!r}"
            )
        if self.conv_kernel_size < 0 or (self.conv_kernel_size > 0 and self.conv_kernel_size % 2 == 0):
            raise ValueError(
                f"config.conv_kernel_size must be 0 (no convolution) or odd, got {self.conv_kernel_size} "
                "(an even kernel shortens the sequence by one)"
            )
        if self.conv_kernel_size > 0 and (self.conv_groups < 1 or self.hidden_size % self.conv_groups):
            raise ValueError(
                f"config.conv_groups ({self.conv_groups}) must be >= 1 and divide hidden_size ({self.hidden_size})"
            )
        if self.relative_attention and self.position_buckets > 0:
            mid = self.position_buckets // 2
            max_pos = self.max_relative_span
            if mid < 1 or max_pos - 1 <= mid:
                raise ValueError(
                    f"config.position_buckets ({self.position_buckets}) cannot be used with a maximum relative "
                    f"position of {max_pos}: the log buckets need position_buckets >= 2 and "
                    f"max_relative_positions - 1 > position_buckets // 2, since they divide by "
                    f"log((max_relative_positions - 1) / (position_buckets // 2))"
                )
        if self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"config.problem_type must be one of {list(_PROBLEM_TYPES)}, got {self.problem_type!r}")
        if self.num_labels < 1:
            raise ValueError(f"config.num_labels must be >= 1, got {self.num_labels} (config.id2label is empty)")

    # ----------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, config_dict, **overrides):
        """Build a config from a ``config.json`` dictionary; ``overrides`` replace its entries."""
        data = copy.deepcopy(config_dict)
        if "num_labels" in overrides and "id2label" not in overrides:  # a new label count replaces the names
            data.pop("id2label", None)
            data.pop("label2id", None)
        return cls(**{**data, **overrides})

    @classmethod
    def from_json_file(cls, path, **overrides):
        """Read a ``config.json`` file; ``overrides`` replace its entries."""
        return cls.from_dict(read_json_object(path), **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path, **overrides):
        """Read ``config.json`` from a checkpoint folder, a ``config.json`` path, or a hub id."""
        path = Path(name_or_path)
        if not path.is_file():
            from .hub import resolve_model_folder

            path = resolve_model_folder(name_or_path) / CONFIG_NAME
            if not path.is_file():
                raise FileNotFoundError(f"no {CONFIG_NAME} in {path.parent} (from name_or_path={name_or_path!r})")
        return cls.from_json_file(path, **overrides)

    def to_dict(self):
        """The ``config.json`` dictionary: every stored field, ``id2label`` keys as strings."""
        out = {"model_type": self.model_type}
        for name, value in self.__dict__.items():
            out[name] = copy.deepcopy(value)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return out

    def to_json_string(self):
        """``to_dict()`` as indented, key-sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path):
        """Write ``to_json_string()`` to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    def save_pretrained(self, folder):
        """Write ``folder/config.json`` (the folder is created if needed), all or nothing."""
        with atomic_files(folder) as target:
            self.to_json_file(target(CONFIG_NAME))

    def __eq__(self, other):
        return isinstance(other, DebertaV2Config) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"DebertaV2Config {self.to_json_string()}"


CONFIG_FIELDS = frozenset(
    {name for name in inspect.signature(DebertaV2Config.__init__).parameters if name not in ("self", "kwargs")}
    | set(_GETATTR_DEFAULTS)
    | {"pooler_hidden_size", "id2label", "label2id", "num_labels", "problem_type", "tie_word_embeddings"})
"""The fields a DeBERTa-v2 config has by name (constructor, ``getattr`` and label fields)."""
