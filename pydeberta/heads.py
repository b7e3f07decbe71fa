"""Task heads on top of the backbone (spec §8), their losses, and the task model classes.

* ``DebertaV2ForMaskedLM``, legacy layout ``cls.predictions.*``:
  ``LN_E(act(dense(h))) @ W_emb.T + b``
* ``DebertaV2ForMaskedLM``, Microsoft's layout ``lm_predictions.lm_head.*`` (``legacy=False``):
  ``LN_C(act(dense(h))) @ W_emb.T + b``
* ``DebertaV2ForSequenceClassification`` (``pooler.dense.*``, ``classifier.*``): ``classifier(pooler(h))``
* ``DebertaV2ForTokenClassification`` (``classifier.*``): ``classifier(h)`` for every token
* ``DebertaV2ForQuestionAnswering`` (``qa_outputs.*``): ``qa_outputs(h)`` split into start / end logits
* ``DebertaV2ForMultipleChoice`` (``pooler.dense.*``, ``classifier.*``): ``classifier(pooler(h))`` for
  every (example, choice) sequence, one logit each

``pooler(h) = pooler_hidden_act(dense(h[:, 0]))`` (no tanh unless configured). Dropout is the
identity at inference, so it does not appear.
"""

import numpy as np

from .functional import (bce_with_logits, cross_entropy, get_activation, layer_norm, linear, mse_loss,
                         soft_cross_entropy)
from .inputs import as_integer_array, check_labels
from .model import DebertaV2PreTrainedModel
from .outputs import (MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringModelOutput,
                      SequenceClassifierOutput, TokenClassifierOutput)


# --------------------------------------------------------------------------- pure functions
def context_pooler(hidden, params, config):
    """``ContextPooler``: ``act(dense(hidden[:, 0]))``; ``[B, N, C] -> [B, C]``."""
    return get_activation(config.pooler_hidden_act)(linear(hidden[:, 0], **params["dense"]))  # [B, C]


def masked_lm_head(hidden, params, word_embeddings, config):
    """Masked-LM logits ``[B, N, V]`` from ``hidden [B, N, C]``, either checkpoint layout.

    legacy (``cls.predictions``)::  LN_E(act(transform.dense(h))) @ word_embeddings.T + bias
    Microsoft's (``lm_predictions.lm_head``)::  LN_C(act(dense(h))) @ word_embeddings.T + bias
    """
    head = params["predictions"]["transform"] if config.legacy else params["lm_head"]
    t = get_activation(config.hidden_act)(linear(hidden, **head["dense"]))  # [B, N, E] or [B, N, C]
    t = layer_norm(t, **head["LayerNorm"], eps=config.layer_norm_eps)
    bias = params["predictions"]["bias"] if config.legacy else params["lm_head"]["bias"]
    return linear(t, word_embeddings, bias)  # [B, N, V]: the tied decoder


def check_class_labels(labels, shape, num_classes, name="labels", ignore_index=-100):
    """Integer labels of ``shape`` in ``[0, num_classes)`` or equal to ``ignore_index``."""
    labels = check_labels(labels, shape, name)
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(f"{name} must lie in [0, {num_classes}) or be {ignore_index} (ignored), "
                         f"got {np.unique(labels[bad])[:5].tolist()}")
    return labels


def sequence_classification_loss(logits, labels, config):
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
    """
    B, L = logits.shape
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
            return mse_loss(scores, labels)
        if labels.shape != (B, L):
            raise ValueError(f"regression labels must have shape {(B, L)}, got {labels.shape}")
        return mse_loss(logits, labels.astype(logits.dtype))
    if problem == "multi_label_classification":
        labels = np.asarray(labels)
        if labels.shape != (B, L):
            raise ValueError(f"multi-label labels must have shape {(B, L)}, got {labels.shape}")
        return bce_with_logits(logits, labels.astype(logits.dtype))
    labels = np.asarray(labels)
    if labels.shape == (B, 1):
        labels = labels.reshape(B)
    if problem == "single_label_classification":
        return cross_entropy(logits, check_class_labels(labels, (B,), L))
    if labels.shape == (B, L) and L > 1:  # soft labels
        return soft_cross_entropy(logits, labels.astype(logits.dtype))
    labels = check_labels(labels, (B,), "labels (class indices [B] or soft labels [B, num_labels])")
    keep = labels >= 0  # negative labels are ignored
    if np.any(labels[keep] >= L):
        raise ValueError(f"labels must lie in [0, {L}) (negative ones are ignored), got {labels[keep].max()}")
    if not keep.any():
        return np.zeros((), logits.dtype)
    return cross_entropy(logits[keep].astype(np.float32), labels[keep])


# --------------------------------------------------------------------------- classes
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

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False):
        """Run the model (arguments as :meth:`DebertaV2Model.forward`); ``labels [B, N]`` in
        ``[0, V)`` or -100 (ignored) give ``loss``, the mean cross-entropy."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study)
        head = self.tree["cls"] if self.config.legacy else self.tree["lm_predictions"]
        word_embeddings = self.tree["deberta"]["embeddings"]["word_embeddings"]["weight"]
        logits = masked_lm_head(out.last_hidden_state, head, word_embeddings, self.config)  # [B, N, V]
        loss = None
        if labels is not None:
            labels = check_class_labels(labels, logits.shape[:2], self.config.vocab_size)
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions, out.study)


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    """Sentence (pair) classification or regression: ``logits [B, num_labels]``."""

    head = "sequence_classification"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False):
        """Run the model; ``labels`` give ``loss`` (see :func:`sequence_classification_loss`)."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study)
        pooled = context_pooler(out.last_hidden_state, self.tree["pooler"], self.config)  # [B, C]
        logits = linear(pooled, **self.tree["classifier"])  # [B, num_labels]
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        if loss is not None and self.config.problem_type is None and self.config.num_labels == 1:
            logits = logits.reshape(-1).astype(np.asarray(labels).dtype)  # transformers returns these, [B]
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions, out.study)


class DebertaV2ForTokenClassification(DebertaV2PreTrainedModel):
    """Per-token classification (e.g. NER): ``logits [B, N, num_labels]``."""

    head = "token_classification"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False):
        """Run the model; ``labels [B, N]`` (-100 ignored) give the mean cross-entropy ``loss``."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study)
        logits = linear(out.last_hidden_state, **self.tree["classifier"])  # [B, N, num_labels]
        loss = None
        if labels is not None:
            labels = check_class_labels(labels, logits.shape[:2], self.config.num_labels)
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions, out.study)


class DebertaV2ForQuestionAnswering(DebertaV2PreTrainedModel):
    """Extractive QA: ``start_logits``/``end_logits [B, N]``."""

    head = "question_answering"

    @classmethod
    def check_config(cls, config):
        if config.num_labels != 2:
            raise ValueError(f"question answering needs num_labels == 2 (start and end), got {config.num_labels}")

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=False,
                output_hidden_states=False, output_study=False):
        """Run the model; ``start_positions``/``end_positions [B]`` give ``loss``: the mean of the
        two cross-entropies, positions clamped to ``[0, N]`` and ``N`` ignored, as transformers."""
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                output_attentions, output_hidden_states, output_study)
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
        return QuestionAnsweringModelOutput(loss, np.ascontiguousarray(start_logits),
                                            np.ascontiguousarray(end_logits), out.hidden_states, out.attentions,
                                            out.study)


class DebertaV2ForMultipleChoice(DebertaV2PreTrainedModel):
    """Multiple choice: inputs ``[B, num_choices, N]``, ``logits [B, num_choices]``."""

    head = "multiple_choice"

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                output_study=False):
        """Run the model on every (example, choice) sequence; ``labels [B]`` (choice index) give
        the cross-entropy ``loss``."""
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

        out = self.run_backbone(flat(input_ids, "input_ids"), flat(attention_mask, "attention_mask"),
                                flat(token_type_ids, "token_type_ids"), flat(position_ids, "position_ids"),
                                flat(inputs_embeds, "inputs_embeds", 1), output_attentions, output_hidden_states,
                                output_study)
        pooled = context_pooler(out.last_hidden_state, self.tree["pooler"], self.config)  # [B*num_choices, C]
        logits = linear(pooled, **self.tree["classifier"]).reshape(B, num_choices)  # [B, num_choices]
        loss = None
        if labels is not None:
            loss = cross_entropy(logits, check_class_labels(labels, (B,), num_choices))
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions, out.study)
