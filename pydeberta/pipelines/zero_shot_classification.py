"""``zero-shot-classification``: classify a text into labels chosen at call time, with an NLI model.

transformers' ``ZeroShotClassificationPipeline``. Each candidate label becomes a hypothesis,
``hypothesis_template.format(label)`` (default ``"This example is {}."``), and the model reads
the pair ``[CLS] text [SEP] hypothesis [SEP]`` (the text is truncated first when the tokenizer
has a ``model_max_length``). With ``L`` labels a text costs ``L`` rows.

The NLI head's label ids are found in ``config.label2id`` as transformers finds them: entailment
is the first label whose lower case starts with ``"entail"``; contradiction is the last label
when entailment is label 0, else label 0. A model without such a label cannot do zero-shot
classification and is refused when the pipeline is built (transformers only warns, then reads
the last logit as entailment).

Post-processing of one text's ``logits [L, num_labels]``:

* ``multi_label=False`` (and more than one label): ``softmax`` of the entailment logits over the
  ``L`` labels, so the scores sum to 1;
* ``multi_label=True`` or a single label: for each label on its own, the softmax of
  ``(contradiction, entailment)`` logits, keeping the entailment probability.

The result is ``{"sequence": text, "labels": [...], "scores": [...]}`` with labels sorted by
score, highest first (equal scores: the later label first, as transformers' reversed argsort).
A list of texts gives a list of such dicts.
"""

import numpy as np

from ..functional import softmax
from ..modeling import DebertaV2ForSequenceClassification
from .base import MODEL_INPUTS, Pipeline, as_texts, split_rows, truncation_limit


def entailment_id(config):
    """The entailment label id, found as transformers finds it; ValueError when there is none."""
    for label, index in config.label2id.items():
        if label.lower().startswith("entail"):
            return index
    raise ValueError("Failed to determine 'entailment' label id from the label2id mapping in the model config "
                     f"(labels: {list(config.label2id)}). zero-shot-classification needs an NLI model with a label "
                     "starting with 'entail'; define a descriptive label2id mapping in the model config.")


def parse_labels(labels):
    """Candidate labels as a list: a list as given, a string split on commas (empty parts dropped)."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    return list(labels or [])


class ZeroShotClassificationPipeline(Pipeline):
    """``pipeline("zero-shot-classification", model=nli_folder)``; call as
    ``classifier(text_or_texts, candidate_labels, hypothesis_template=..., multi_label=...)``."""

    task = "zero-shot-classification"
    model_class = DebertaV2ForSequenceClassification
    DEFAULTS = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False}
    per_token = False

    def __init__(self, model, tokenizer, batch_size=1, **options):
        super().__init__(model, tokenizer, batch_size, **options)
        self.entailment_id = entailment_id(model.config)
        self.contradiction_id = model.config.num_labels - 1 if self.entailment_id == 0 else 0

    def check_options(self, options):
        """Candidate labels parsed (see :func:`parse_labels`)."""
        options = super().check_options(options)
        if "candidate_labels" in options:
            options["candidate_labels"] = parse_labels(options["candidate_labels"])
        return options

    def __call__(self, sequences, candidate_labels=None, batch_size=None, **options):
        """Score ``candidate_labels`` for ``sequences`` (a text or a list of texts)."""
        if candidate_labels is not None:
            options["candidate_labels"] = candidate_labels
        batch_size, options = self.settings(batch_size, options)
        labels, template = options["candidate_labels"], options["hypothesis_template"]
        texts = as_texts(sequences, "zero-shot-classification", "sequences")
        if not labels or not texts:
            raise ValueError("You must include at least one label and at least one sequence.")
        try:
            template.format(labels[0])
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(f"hypothesis_template {template!r} must hold one empty slot {{}} for the label; "
                             f"formatting it failed ({type(error).__name__}: {error})") from None
        if template.format(labels[0]) == template:
            raise ValueError(f'The provided hypothesis_template "{template}" was not able to be formatted with the '
                             "target labels. Make sure the passed template includes formatting syntax such as {} "
                             "where the label should go.")
        hypotheses = [template.format(label) for label in labels]
        limit = truncation_limit(self.tokenizer)
        encoding = self.tokenizer([text for text in texts for _ in labels], hypotheses * len(texts),
                                  truncation="only_first" if limit else False, max_length=limit)
        outputs = self.run_model(split_rows(encoding, MODEL_INPUTS), batch_size)
        logits = np.stack([out["logits"] for out in outputs]).reshape(len(texts), len(labels), -1)
        results = [self.postprocess(text, labels, text_logits, options["multi_label"])
                   for text, text_logits in zip(texts, logits)]
        return results[0] if isinstance(sequences, str) else results

    def postprocess(self, text, labels, logits, multi_label):
        """The result dict of one text from its ``logits [L, num_labels]``."""
        if multi_label or len(labels) == 1:
            scores = softmax(logits[:, [self.contradiction_id, self.entailment_id]])[:, 1]  # [L]
        else:
            scores = softmax(logits[:, self.entailment_id])  # [L]
        order = np.argsort(scores, kind="stable")[::-1]
        return {"sequence": text, "labels": [labels[i] for i in order], "scores": [float(scores[i]) for i in order]}
