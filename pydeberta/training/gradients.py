"""Gradients of a task model's loss with respect to every parameter, by hand-written backward
functions (no autograd engine).

:func:`value_and_grad` runs the forward (:mod:`pydeberta.model`, :mod:`pydeberta.heads`) and the
loss transformers would choose, then walks back: the loss's gradient on the logits, the head's
backward, and the backbone's backward through every layer from the top. The tied decoder of the
masked LM adds its share to the word embeddings' gradient. Which backbone pass runs follows the
backend (:mod:`pydeberta.engine.backend`):

* ``reference``: the book, :func:`pydeberta.model.backbone_backward`, each layer recomputing its
  own intermediates from its input (the forward keeps only the layers' inputs, its hidden states);
* ``numpy`` and ``cython`` (the default): the engine's training pass
  (:mod:`pydeberta.engine.training`), whose forward keeps what the backward needs and whose
  kernels are the backend's; the same numbers within float rounding.

The heads' backward is the book's on every backend (a sliver of the work).

Shapes: ``B`` batch, ``N`` sequence length, ``C`` hidden size, ``V`` vocabulary.
"""

import contextlib
import dataclasses

import numpy as np

from ..attention import add_grads
from ..dropout import NO_DROPOUT, Dropout
from ..engine import backend
from ..engine.training import Tape
from ..engine.training import backbone_backward as engine_backbone_backward
from ..functional import linear, linear_backward
from ..heads import context_pooler, context_pooler_backward, masked_lm_head_backward
from ..inputs import as_integer_array, check_labels, prepare_inputs
from ..losses import cross_entropy_backward
from ..model import backbone_backward
from ..modeling import sequence_classification_loss
from ..weights import flatten, is_quantized

LABELS = {"masked_lm": ("labels",), "sequence_classification": ("labels",), "token_classification": ("labels",),
          "multiple_choice": ("labels",), "question_answering": ("start_positions", "end_positions")}
"""The label arguments each head's loss needs, by :attr:`~pydeberta.modeling.DebertaV2PreTrainedModel.head`."""

BACKBONE_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")


def value_and_grad(model, rng=None, **batch):
    """The model's outputs (with ``loss``) and the gradient of ``loss`` for every parameter.

    In training mode (``model.train()``) the forward applies dropout (:mod:`pydeberta.dropout`)
    and the backward goes through the same masks; in eval mode (the default) there is none.

    Args:
        model: a task model (``DebertaV2ForMaskedLM``, ``...ForSequenceClassification``,
            ``...ForTokenClassification``, ``...ForQuestionAnswering``, ``...ForMultipleChoice``).
        rng: a ``numpy.random.Generator`` for the dropout masks (default: the model's, from
            :meth:`~pydeberta.modeling.DebertaV2PreTrainedModel.train`); unused in eval mode.
        **batch: the forward's arguments, with the labels its loss needs (``labels``, or
            ``start_positions`` and ``end_positions``).
    Returns:
        ``(outputs, grads)``: ``outputs`` as ``model(**batch)`` returns them (computed by the book
        under the ``reference`` backend or with ``output_study=True``, else by the engine's pass);
        ``grads`` maps every checkpoint key of ``model.params`` to an array of its shape and the
        model's dtype (parameters the loss does not reach get zeros).
    """
    if model.head not in LABELS:
        raise TypeError(f"value_and_grad needs a task model with a loss, got {type(model).__name__}")
    if is_quantized(model.config):
        raise ValueError("value_and_grad: an int8 model has no gradient (its weights are integers); train the "
                         "float32 model, then quantize it")
    missing = [name for name in LABELS[model.head] if batch.get(name) is None]
    if missing:
        raise ValueError(f"value_and_grad: {type(model).__name__} needs {' and '.join(LABELS[model.head])} for its "
                         f"loss; missing {', '.join(missing)}")
    keep_hidden = batch.pop("output_hidden_states", False)
    return_dict = batch.pop("return_dict", None)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"value_and_grad: rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    drop = Dropout(model.config, rng if rng is not None else model.dropout_rng) if model.training else NO_DROPOUT
    book = backend.active_backend() == "reference" or batch.get("output_study")
    tape = None if book else Tape(backend.active_kernels())
    with backend.use_backend("reference") if book else contextlib.nullcontext(), model.pinned_dropout(drop, tape):
        outputs = model(**batch, output_hidden_states=True, return_dict=True)
    config, tree = model.config, model.tree
    hidden = outputs.hidden_states[-1]  # [B, N, C]
    dhidden, head_grads = HEAD_BACKWARD[model.head](model, outputs, hidden, batch, drop)  # [B, N, C]
    tied = head_grads.pop(model.base_model_prefix, {})  # the masked-LM decoder's share of the word embeddings
    inputs = backbone_inputs(model, batch)
    if book:
        backbone = backbone_backward(dhidden, outputs.hidden_states, tree[model.base_model_prefix], config, inputs,
                                     drop)
    else:
        backbone = engine_backbone_backward(dhidden, tape, tree[model.base_model_prefix], config, inputs, drop)
    flat = flatten({**head_grads, model.base_model_prefix: add_grads(backbone, tied)})
    grads = {key: np.zeros_like(value) if key not in flat else np.asarray(flat[key], model.dtype)
             for key, value in model.params.items()}
    if not keep_hidden:
        outputs = dataclasses.replace(outputs, hidden_states=None)
    return model.result(outputs, return_dict), grads


def backbone_inputs(model, batch):
    """The validated :class:`~pydeberta.inputs.ModelInputs` the forward gave the backbone."""
    arguments = {name: batch.get(name) for name in BACKBONE_INPUTS}
    if model.head == "multiple_choice":
        arguments = model.flatten_choices(**arguments)[2]
    return prepare_inputs(model.config, model.dtype, **arguments)


# --------------------------------------------------------------------------- heads
# Each takes (model, outputs, last hidden state, batch, the call's dropout) and returns the gradient
# of the loss on the last hidden state and the head's parameter gradients, nested as in model.tree.
def masked_lm_backward(model, outputs, hidden, batch, drop):
    """Mean cross-entropy over the labelled tokens, through the masked-LM head and its tied decoder."""
    V = outputs.logits.shape[-1]
    labels = np.asarray(batch["labels"]).reshape(-1)
    dlogits = cross_entropy_backward(outputs.logits.reshape(-1, V), labels).reshape(outputs.logits.shape)
    name = "cls" if model.config.legacy else "lm_predictions"
    word_embeddings = model.tree[model.base_model_prefix]["embeddings"]["word_embeddings"]["weight"]
    dhidden, head, dword = masked_lm_head_backward(dlogits, hidden, model.tree[name], word_embeddings, model.config)
    tied = {"embeddings": {"word_embeddings": {"weight": dword}}}
    return dhidden, {name: head, model.base_model_prefix: tied}


def pooled_classifier_backward(model, dlogits, hidden, drop):
    """Through ``classifier(dropout(pooler(h)))`` from ``dlogits [B, L]``; returns ``(dhidden, grads)``."""
    pooled = drop(context_pooler(hidden, model.tree["pooler"], model.config, drop), "classifier")  # [B, C]
    dpooled, classifier = linear_backward(dlogits, pooled, **model.tree["classifier"])  # [B, C]
    dhidden, pooler = context_pooler_backward(drop(dpooled, "classifier"), hidden, model.tree["pooler"], model.config,
                                              drop)
    return dhidden, {"pooler": pooler, "classifier": classifier}


def sequence_classification_backward(model, outputs, hidden, batch, drop):
    """The loss :func:`~pydeberta.modeling.sequence_classification_loss` chooses, through the
    classifier and the pooler."""
    pooled = drop(context_pooler(hidden, model.tree["pooler"], model.config, drop), "classifier")  # [B, C]
    logits = linear(pooled, **model.tree["classifier"])  # [B, L]
    _, dlogits = sequence_classification_loss(logits, batch["labels"], model.config, with_grad=True)
    return pooled_classifier_backward(model, dlogits, hidden, drop)


def multiple_choice_backward(model, outputs, hidden, batch, drop):
    """Cross-entropy over the choices' scores ``[B, num_choices]``, through the classifier and the pooler."""
    labels = np.asarray(batch["labels"]).reshape(-1)
    dlogits = cross_entropy_backward(outputs.logits, labels).reshape(-1, 1)  # [B*num_choices, 1]
    return pooled_classifier_backward(model, dlogits, hidden, drop)


def token_classification_backward(model, outputs, hidden, batch, drop):
    """Mean cross-entropy over the labelled tokens, through the token classifier."""
    L = outputs.logits.shape[-1]
    labels = np.asarray(batch["labels"]).reshape(-1)
    dlogits = cross_entropy_backward(outputs.logits.reshape(-1, L), labels).reshape(outputs.logits.shape)
    dhidden, classifier = linear_backward(dlogits, drop(hidden, "token_classifier"), **model.tree["classifier"])
    return drop(dhidden, "token_classifier"), {"classifier": classifier}  # [B, N, C]


def question_answering_backward(model, outputs, hidden, batch, drop):
    """``(CE(start) + CE(end)) / 2``, positions clamped to ``[0, N]`` and ``N`` ignored, through ``qa_outputs``."""
    N = hidden.shape[1]
    dlogits = np.zeros(hidden.shape[:2] + (2,), hidden.dtype)  # [B, N, 2]
    for column, name, scores in ((0, "start_positions", outputs.start_logits),
                                 (1, "end_positions", outputs.end_logits)):
        positions = as_integer_array(batch[name], name)
        positions = check_labels(positions.reshape(-1) if positions.ndim == 2 else positions, scores.shape[:1], name)
        dlogits[..., column] = cross_entropy_backward(scores, np.clip(positions, 0, N), ignore_index=N) / 2
    dhidden, qa_outputs = linear_backward(dlogits, hidden, **model.tree["qa_outputs"])  # [B, N, C]
    return dhidden, {"qa_outputs": qa_outputs}


HEAD_BACKWARD = {"masked_lm": masked_lm_backward, "sequence_classification": sequence_classification_backward,
                 "token_classification": token_classification_backward,
                 "question_answering": question_answering_backward, "multiple_choice": multiple_choice_backward}
