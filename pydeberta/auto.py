"""transformers' ``Auto`` classes for DeBERTa-v2/v3 checkpoints, so that code written with them
switches by changing the import::

    from pydeberta import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained("path/to/checkpoint")
    model = AutoModelForSequenceClassification.from_pretrained("path/to/checkpoint")

As in transformers, the task picks the head: ``AutoModelForSequenceClassification`` gives a
:class:`~pydeberta.modeling.DebertaV2ForSequenceClassification` whatever ``architectures`` the
checkpoint lists (a head the checkpoint lacks is initialised randomly, with a warning), and
``AutoModel`` gives the bare :class:`~pydeberta.modeling.DebertaV2Model`. ``config.json``'s
``model_type`` is checked: pydeberta implements ``"deberta-v2"`` (DeBERTa-v2 and v3), and any other
type is refused by name instead of being loaded into the wrong architecture.
:func:`model_class_for` reads ``architectures`` for callers that want the checkpoint's own head.
"""

import os

from .checkpoint import read_json_object
from .config import CONFIG_NAME, DebertaV2Config
from .hub import resolve_model_folder
from .modeling import (DebertaV2ForMaskedLM, DebertaV2ForMultipleChoice, DebertaV2ForQuestionAnswering,
                       DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification, DebertaV2Model)
from .tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

MODEL_TYPE = DebertaV2Config.model_type
MODEL_CLASSES = {cls.__name__: cls for cls in (
    DebertaV2Model, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification,
    DebertaV2ForQuestionAnswering, DebertaV2ForMultipleChoice)}


def checked_config(name_or_path, **overrides):
    """The :class:`DebertaV2Config` of a checkpoint (folder, ``config.json`` path, bundled name or
    Hub id), after checking that its ``model_type`` is ``"deberta-v2"`` (or absent).

    Raises:
        ValueError: another ``model_type`` (e.g. ``"deberta"``, ``"bert"``), named.
    """
    path = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    if not (isinstance(path, str) and os.path.isfile(path)):
        path = resolve_model_folder(name_or_path) / CONFIG_NAME
    data = read_json_object(path)
    model_type = data.get("model_type", MODEL_TYPE)
    if model_type != MODEL_TYPE:
        raise ValueError(f"{path} has model_type {model_type!r}; pydeberta implements DeBERTa-v2/v3 "
                         f"(model_type {MODEL_TYPE!r}) only")
    return DebertaV2Config.from_dict(data, **overrides)


def model_class_for(config):
    """The model class a config's ``architectures`` names (its first entry), e.g.
    ``DebertaV2ForMaskedLM``; :class:`DebertaV2Model` when it names none.

    Raises:
        ValueError: an architecture pydeberta does not have.
    """
    architectures = getattr(config, "architectures", None) or ["DebertaV2Model"]
    name = architectures[0] if isinstance(architectures, (list, tuple)) else architectures
    if name not in MODEL_CLASSES:
        raise ValueError(f"config.architectures names {name!r}; pydeberta has {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]


class AutoConfig:
    """``AutoConfig.from_pretrained(name_or_path, **overrides)`` -> :class:`DebertaV2Config`."""

    def __init__(self):
        raise TypeError("AutoConfig is used through AutoConfig.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path, **overrides):
        """The checkpoint's config, ``model_type`` checked; ``overrides`` replace its fields."""
        return checked_config(name_or_path, **overrides)


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path, use_fast=True)`` -> the DeBERTa-v2 tokenizer."""

    def __init__(self):
        raise TypeError("AutoTokenizer is used through AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path, *, use_fast=True, **kwargs):
        """:class:`DebertaV2TokenizerFast` (character offsets) or, with ``use_fast=False``,
        :class:`DebertaV2Tokenizer`, loaded from anything a model loads from."""
        cls = DebertaV2TokenizerFast if use_fast else DebertaV2Tokenizer
        return cls.from_pretrained(name_or_path, **kwargs)


class AutoModelBase:
    """What the ``AutoModel...`` classes share; each sets ``model_class``."""

    model_class = None

    def __init__(self):
        raise TypeError(f"{type(self).__name__} is used through {type(self).__name__}.from_pretrained(name_or_path) "
                        f"or .from_config(config)")

    @classmethod
    def from_pretrained(cls, name_or_path, *, dtype=None, **config_overrides):
        """Load ``model_class`` from a checkpoint whose ``model_type`` is ``"deberta-v2"``;
        arguments as :meth:`pydeberta.DebertaV2PreTrainedModel.from_pretrained`."""
        checked_config(name_or_path)
        options = {} if dtype is None else {"dtype": dtype}
        return cls.model_class.from_pretrained(name_or_path, **options, **config_overrides)

    @classmethod
    def from_config(cls, config, **kwargs):
        """A randomly initialised ``model_class`` for ``config`` (a :class:`DebertaV2Config`)."""
        return cls.model_class(config, **kwargs)


class AutoModel(AutoModelBase):
    model_class = DebertaV2Model


class AutoModelForMaskedLM(AutoModelBase):
    model_class = DebertaV2ForMaskedLM


class AutoModelForSequenceClassification(AutoModelBase):
    model_class = DebertaV2ForSequenceClassification


class AutoModelForTokenClassification(AutoModelBase):
    model_class = DebertaV2ForTokenClassification


class AutoModelForQuestionAnswering(AutoModelBase):
    model_class = DebertaV2ForQuestionAnswering


class AutoModelForMultipleChoice(AutoModelBase):
    model_class = DebertaV2ForMultipleChoice
