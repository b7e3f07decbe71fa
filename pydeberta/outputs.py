"""Model outputs: dataclasses with transformers' attribute names, holding NumPy arrays.

As in transformers, an output is read by attribute (``out.logits``), by key (``out["logits"]``)
or by position over the fields that are set (``out[0]``); ``to_tuple()`` gives those values (what
a model called with ``return_dict=False`` returns), and ``keys()``, ``values()``, ``items()`` and
``to_dict()`` read it as the mapping of the fields that are set.
Every output also has a ``study`` field, set only when the model is called with
``output_study=True`` (see :class:`StudyOutput`).
"""

from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np


class ModelOutput:
    """Base of the output dataclasses: attribute, key and index access, as transformers'."""

    def to_tuple(self):
        """The values of the fields that are not None, in declaration order."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def keys(self):
        """Names of the fields that are not None."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self):
        """Values of the fields that are not None (the same as :meth:`to_tuple`, as a list)."""
        return list(self.to_tuple())

    def items(self):
        """``(name, value)`` of the fields that are not None."""
        return [(name, getattr(self, name)) for name in self.keys()]

    def to_dict(self):
        """A plain dict of the fields that are not None."""
        return dict(self.items())

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no field {key!r} set; set fields: {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key):
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())


@dataclass
class StudyOutput(ModelOutput):
    """Intermediates for studying the model (``output_study=True``); free when not asked for.

    Attributes:
        relative_positions: int ``[N, N]``, the (bucketed) relative position ``i - j``; None
            without relative attention.
        rel_index: int ``[N, N]``, the relative-table row ``c(i, j)`` both relative terms read.
        c2c, c2p, p2c: per layer, the score terms before the softmax, each ``[B, H, N, N]`` and
            already divided by ``sqrt(D · sf)`` (their sum, masked, is what the softmax sees);
            ``c2p``/``p2c`` entries are None when the term is off.
        conv_output: ``[B, N, C]``, the activated nGiE convolution added to layer 0's output
            (None without convolution).
    """

    relative_positions: Optional[np.ndarray] = None
    rel_index: Optional[np.ndarray] = None
    c2c: Tuple[np.ndarray, ...] = ()
    c2p: Tuple[Optional[np.ndarray], ...] = ()
    p2c: Tuple[Optional[np.ndarray], ...] = ()
    conv_output: Optional[np.ndarray] = None


@dataclass
class BaseModelOutput(ModelOutput):
    """``last_hidden_state [B, N, C]``; ``hidden_states``: L+1 arrays (embedding output first);
    ``attentions``: L arrays ``[B, H, N, N]``."""

    last_hidden_state: Optional[np.ndarray] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
    study: Optional[StudyOutput] = None


@dataclass
class LogitsOutput(ModelOutput):
    """Fields shared by the heads that return one ``logits`` array (transformers' names)."""

    loss: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
    study: Optional[StudyOutput] = None


class MaskedLMOutput(LogitsOutput):
    """``logits [B, N, V]``; ``loss`` (0-d) when labels were given."""


class SequenceClassifierOutput(LogitsOutput):
    """``logits [B, num_labels]``; ``loss`` (0-d) when labels were given."""


class TokenClassifierOutput(LogitsOutput):
    """``logits [B, N, num_labels]``; ``loss`` (0-d) when labels were given."""


class MultipleChoiceModelOutput(LogitsOutput):
    """``logits [B, num_choices]``; ``loss`` when labels were given; hidden states and
    attentions are over the flattened ``B * num_choices`` sequences, as in transformers."""


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """``start_logits``/``end_logits [B, N]``; ``loss`` when start and end positions were given."""

    loss: Optional[np.ndarray] = None
    start_logits: Optional[np.ndarray] = None
    end_logits: Optional[np.ndarray] = None
    hidden_states: Optional[Tuple[np.ndarray, ...]] = None
    attentions: Optional[Tuple[np.ndarray, ...]] = None
    study: Optional[StudyOutput] = None
