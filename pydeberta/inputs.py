"""Checking and converting what users pass to a model call.

Every model call goes through :func:`prepare_inputs`, which turns NumPy arrays or nested lists
into arrays of the right dtype and raises a clear ``TypeError``/``ValueError`` naming the
argument, what was expected and what came, instead of failing deep inside NumPy.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class ModelInputs:
    """Validated inputs of the backbone: ``input_ids``/``inputs_embeds`` (one of them), and
    ``attention_mask``, ``token_type_ids``, ``position_ids``, all ``[B, N]``."""

    input_ids: Optional[np.ndarray]
    inputs_embeds: Optional[np.ndarray]
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    position_ids: np.ndarray

    @property
    def shape(self):
        """``(B, N)``."""
        return self.attention_mask.shape


def _describe(array):
    return f"shape {tuple(array.shape)} and dtype {array.dtype}"


def as_integer_array(value, name):
    """``value`` as an int64 array; floats that are not integers, strings and bools rejected."""
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of integers; got ragged input ({exc})") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise TypeError(f"{name} must hold integers, got {_describe(array)}")
    return array.astype(np.int64, copy=False)


def _as_mask(value, shape, name):
    """A 0/1 mask of ``shape`` from bool, integer or float input."""
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have rank 2 [batch, sequence] like the input ids {shape}, got {_describe(array)} "
            "(3-D and 4-D masks are not supported by DeBERTa-v2's embedding and conv layers)")
    if array.shape != shape:
        raise ValueError(f"{name} must have the shape of the inputs {shape}, got {_describe(array)}")
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise TypeError(f"{name} must be numeric or bool, got {_describe(array)}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1, got values {np.unique(array)[:10].tolist()}")
    return array.astype(np.int64)


def prepare_inputs(config, dtype, input_ids=None, attention_mask=None, token_type_ids=None,
                   position_ids=None, inputs_embeds=None):
    """Validate and convert one backbone call's inputs.

    Args:
        config: the model's :class:`~pydeberta.config.DebertaV2Config`.
        dtype: the model's float dtype (``inputs_embeds`` is cast to it).
        input_ids: int ``[B, N]`` in ``[0, vocab_size)`` -- or --
        inputs_embeds: float ``[B, N, E]``.
        attention_mask: 0/1 ``[B, N]`` (default all ones).
        token_type_ids: int ``[B, N]`` (default zeros); ignored by the model when
            ``type_vocab_size == 0``, but checked anyway.
        position_ids: int ``[B, N]`` or ``[N]`` (default ``arange(N)``); used only with
            ``position_biased_input``, then must lie in ``[0, max_position_embeddings)``.
    Returns:
        :class:`ModelInputs`.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds, got "
                         + ("both" if input_ids is not None else "neither"))
    if input_ids is not None:
        input_ids = as_integer_array(input_ids, "input_ids")
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must have rank 2 [batch, sequence], got {_describe(input_ids)} "
                             "(wrap a single sequence as [ids])")
        shape = input_ids.shape
        if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
            bad = input_ids[(input_ids < 0) | (input_ids >= config.vocab_size)]
            raise ValueError(f"input_ids must lie in [0, vocab_size={config.vocab_size}), got {bad[:5].tolist()}")
    else:
        inputs_embeds = np.asarray(inputs_embeds)
        if not np.issubdtype(inputs_embeds.dtype, np.floating):
            raise TypeError(f"inputs_embeds must be floating point, got {_describe(inputs_embeds)}")
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != config.embedding_size:
            raise ValueError(f"inputs_embeds must be [batch, sequence, embedding_size={config.embedding_size}], "
                             f"got {_describe(inputs_embeds)}")
        inputs_embeds = inputs_embeds.astype(dtype, copy=False)
        shape = inputs_embeds.shape[:2]
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"the batch must hold at least one sequence of at least one token, got shape {shape}")

    attention_mask = np.ones(shape, np.int64) if attention_mask is None else _as_mask(
        attention_mask, shape, "attention_mask")

    if token_type_ids is None:
        token_type_ids = np.zeros(shape, np.int64)
    else:
        token_type_ids = as_integer_array(token_type_ids, "token_type_ids")
        if token_type_ids.shape != shape:
            raise ValueError(f"token_type_ids must have the shape of the inputs {shape}, got {_describe(token_type_ids)}")
        if config.type_vocab_size > 0 and (token_type_ids.min() < 0 or token_type_ids.max() >= config.type_vocab_size):
            raise ValueError(f"token_type_ids must lie in [0, type_vocab_size={config.type_vocab_size}), got values "
                             f"{np.unique(token_type_ids)[:10].tolist()}")

    if position_ids is None:
        position_ids = np.broadcast_to(np.arange(shape[1], dtype=np.int64), shape)
    else:
        position_ids = as_integer_array(position_ids, "position_ids")
        if position_ids.shape not in (shape, shape[1:], (1, shape[1])):
            raise ValueError(f"position_ids must have shape {shape} or {shape[1:]}, got {_describe(position_ids)}")
        position_ids = np.broadcast_to(position_ids, shape)
    if config.position_biased_input and (position_ids.min() < 0 or position_ids.max() >= config.max_position_embeddings):
        raise ValueError(
            f"position_ids must lie in [0, max_position_embeddings={config.max_position_embeddings}) because this "
            f"model adds absolute position embeddings; got a maximum of {position_ids.max()} "
            f"(sequence length {shape[1]})")
    return ModelInputs(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids)


def check_labels(labels, expected_shape, name="labels", integer=True):
    """``labels`` as an array of ``expected_shape`` (int64 when ``integer``), or a clear error."""
    array = as_integer_array(labels, name) if integer else np.asarray(labels)
    if array.shape != tuple(expected_shape):
        raise ValueError(f"{name} must have shape {tuple(expected_shape)}, got {_describe(array)}")
    return array
