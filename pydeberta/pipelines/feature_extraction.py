"""``feature-extraction``: the backbone's hidden states of a text, and sentence embeddings.

As transformers' ``FeatureExtractionPipeline``, a text gives its last hidden state with a batch
axis of one, ``[1, n, C]`` for its ``n`` tokens (special tokens included), as nested lists of
floats, or as a float array with ``return_tensors=True``; a list of texts gives one such result
per text. The model may be any pydeberta model: features are the backbone's
``last_hidden_state`` (a task model's head is not run).

Sentence embeddings, beyond transformers (what ``sentence-transformers`` computes from the same
hidden states ``h [n, C]``), with the ``pooling`` option:

* ``"mean"``: ``e = sum_t m_t h_t / sum_t m_t`` over the text's tokens (mask ``m``: 1 on every
  token of the text, special tokens included, 0 on padding);
* ``"cls"``: ``e = h_0``, the ``[CLS]`` token's vector;
* ``normalize=True`` then divides by the Euclidean norm, ``e / max(||e||, 1e-12)``, so that dot
  products are cosine similarities.

A pooled text gives ``[C]`` (a list of floats, or an array with ``return_tensors=True``); a list
of texts with ``return_tensors=True`` gives one ``[T, C]`` array. ``truncation=True`` cuts texts to
the tokenizer's ``model_max_length``.
"""

import numpy as np

from ..modeling import DebertaV2Model, DebertaV2PreTrainedModel
from .base import MODEL_INPUTS, Pipeline, as_texts, split_rows, truncation_limit

POOLINGS = (None, "mean", "cls")


def pool(hidden, pooling, normalize):
    """A sentence embedding ``[C]`` from one text's hidden states ``hidden [n, C]`` (padding
    already removed); ``pooling`` ``"mean"`` or ``"cls"``, see the module docstring."""
    embedding = hidden.mean(axis=0) if pooling == "mean" else hidden[0]  # [C]
    if normalize:
        embedding = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
    return embedding


class FeatureExtractionPipeline(Pipeline):
    """``pipeline("feature-extraction", model=folder)``; call with a text or a list of texts.

    Options: ``return_tensors`` (False: nested lists, True: NumPy arrays), ``truncation``
    (cut to the tokenizer's ``model_max_length``), ``pooling`` (None, ``"mean"``, ``"cls"``) and
    ``normalize`` (with pooling: unit-length embeddings).
    """

    task = "feature-extraction"
    model_class = DebertaV2Model
    accepts = DebertaV2PreTrainedModel
    DEFAULTS = {"return_tensors": False, "truncation": False, "pooling": None, "normalize": False}
    outputs = ("last_hidden_state",)

    def check_options(self, options):
        """``pooling`` one of :data:`POOLINGS`; the three switches True or False; ``normalize``
        only with a pooling."""
        options = super().check_options(options)
        for name in ("return_tensors", "truncation", "normalize"):
            if name in options and not isinstance(options[name], (bool, np.bool_)):
                raise TypeError(f"the feature-extraction option {name} must be True or False, got {options[name]!r}")
        if options.get("pooling") not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {options['pooling']!r}")
        return options

    def call_model(self, batch):
        """The backbone's ``last_hidden_state [B, N, C]`` (a task model's head is not run)."""
        return {"last_hidden_state": self.model.run_backbone(**batch).last_hidden_state}

    def __call__(self, inputs, batch_size=None, **options):
        """Hidden states (or embeddings) of ``inputs``; see the module docstring for the shapes."""
        batch_size, options = self.settings(batch_size, options)
        if options["normalize"] and options["pooling"] is None:
            raise ValueError("normalize=True needs pooling='mean' or pooling='cls'")
        texts = as_texts(inputs, "feature-extraction")
        if not texts:
            return []
        limit = truncation_limit(self.tokenizer) if options["truncation"] else None
        encoding = self.tokenizer(texts, truncation=limit is not None, max_length=limit)
        results = []
        for out in self.run_model(split_rows(encoding, MODEL_INPUTS), batch_size):
            hidden = out["last_hidden_state"]  # [n, C]
            results.append(hidden[None] if options["pooling"] is None
                           else pool(hidden, options["pooling"], options["normalize"]))  # [1, n, C] or [C]
        if options["return_tensors"]:
            if options["pooling"] is not None and not isinstance(inputs, str):
                return np.stack(results)  # [T, C]
        else:
            results = [result.tolist() for result in results]
        return results[0] if isinstance(inputs, str) else results
