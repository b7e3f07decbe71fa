"""``text-classification`` (alias ``sentiment-analysis``): label scores of a text or a text pair.

transformers' ``TextClassificationPipeline``. A text pair (``{"text": ..., "text_pair": ...}``)
is encoded as ``[CLS] text [SEP] text_pair [SEP]``, which is how cross-encoders (rerankers, NLI
models) are called.

Post-processing of one input's ``logits [num_labels]``:

1. ``function_to_apply`` turns them into scores. When it is not given it is chosen from the
   config as transformers chooses it: ``problem_type == "regression"`` -> ``"none"``;
   ``"multi_label_classification"`` or ``num_labels == 1`` -> ``"sigmoid"``;
   otherwise (``"single_label_classification"`` or ``num_labels > 1``) -> ``"softmax"``.
2. Without ``top_k`` the result is the best label, ``{"label": id2label[argmax], "score": max}``.
   With ``top_k`` (an int, or None for all labels) it is the list of ``{"label", "score"}``
   dicts sorted by score, highest first, cut to ``top_k``.

Result shapes (transformers' "legacy" rules, kept as they are): a text without ``top_k`` in the
call gives ``[best]``, a text with ``top_k`` in the call gives the sorted list; a pair dict gives
its result alone; a list of inputs gives one result per input. ``top_k`` given only when the
pipeline is built still wraps a single text's sorted list in a list, as in transformers.
"""

from ..functional import sigmoid, softmax
from ..modeling import DebertaV2ForSequenceClassification
from .base import MODEL_INPUTS, Pipeline, check_positive_int, split_rows

FUNCTIONS = {"sigmoid": sigmoid, "softmax": softmax, "none": lambda logits: logits}
PAIR_KEYS = ("text", "text_pair")


def text_and_pair(item, name):
    """``(text, text_pair)`` of one input, a text (pair None) or a dict ``{"text": ..., "text_pair": ...}``;
    ``TypeError``/``ValueError`` naming ``name`` (``inputs`` or ``inputs[i]``) and what came otherwise."""
    if isinstance(item, str):
        return item, None
    if not isinstance(item, dict):
        raise TypeError(f"text-classification: {name} must be a text, a dict {{'text': ..., 'text_pair': ...}} "
                        f"or a list of them, got {type(item).__name__} {item!r:.60}")
    if set(item) - set(PAIR_KEYS) or "text" not in item:
        raise ValueError(f"text-classification: {name}: a text pair is a dict with keys {PAIR_KEYS}, "
                         f"got keys {[str(key)[:40] for key in item][:10]}")
    text, pair = item["text"], item.get("text_pair")
    for key, value in (("text", text), ("text_pair", pair)):
        if not isinstance(value, str) and (key == "text" or value is not None):
            raise TypeError(f"text-classification: {name}[{key!r}] must be a text, got {type(value).__name__} "
                            f"{value!r:.60}")
    return text, pair


def default_function(config):
    """The ``function_to_apply`` transformers picks from ``problem_type`` and ``num_labels``."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


class TextClassificationPipeline(Pipeline):
    """``pipeline("text-classification", model=folder)``; call with a text, a pair dict
    ``{"text": ..., "text_pair": ...}``, or a list of them.

    Options: ``top_k`` (int, or None for every label; default: the best label only, legacy
    format) and ``function_to_apply`` (``"sigmoid"``, ``"softmax"`` or ``"none"``).
    """

    task = "text-classification"
    model_class = DebertaV2ForSequenceClassification
    DEFAULTS = {"top_k": "", "function_to_apply": None}  # top_k "" means "not given" (legacy format)
    per_token = False

    def check_options(self, options):
        """``top_k`` an int >= 1 or None; ``function_to_apply`` one of :data:`FUNCTIONS`."""
        options = super().check_options(options)
        if "top_k" in options:
            options["top_k"] = check_positive_int("top_k", options["top_k"], allow_none=True)
        function = options.get("function_to_apply")
        if function is not None:
            if not isinstance(function, str) or function.lower() not in FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {sorted(FUNCTIONS)}, got {function!r}")
            options["function_to_apply"] = function.lower()
        return options

    def __call__(self, inputs, batch_size=None, **options):
        """Classify ``inputs``; see the module docstring for the result's shape."""
        legacy_call = "top_k" not in options
        batch_size, options = self.settings(batch_size, options)
        batched = isinstance(inputs, (list, tuple))
        items = list(inputs) if batched else [inputs]
        if not items:
            return []
        texts, pairs = zip(*(text_and_pair(item, f"inputs[{i}]" if batched else "inputs")
                             for i, item in enumerate(items)))
        rows = self.encode(texts, pairs)
        function = FUNCTIONS[options["function_to_apply"] or default_function(self.model.config)]
        results = [self.postprocess(function(out["logits"]), options["top_k"])
                   for out in self.run_model(rows, batch_size)]
        if batched:
            return results
        return [results[0]] if isinstance(inputs, str) and legacy_call else results[0]

    def encode(self, texts, pairs):
        """One row per input; single texts and pairs are tokenized in separate batches."""
        rows = [None] * len(texts)
        for paired in (False, True):
            indices = [i for i, pair in enumerate(pairs) if (pair is not None) == paired]
            if indices:
                encoding = self.tokenizer([texts[i] for i in indices],
                                          [pairs[i] for i in indices] if paired else None)
                for i, row in zip(indices, split_rows(encoding, MODEL_INPUTS)):
                    rows[i] = row
        return rows

    def postprocess(self, scores, top_k):
        """The best label (``top_k`` not given) or the ``top_k`` best (all for None) of ``scores``."""
        id2label = self.model.config.id2label
        if top_k == "":
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        ranked = sorted(({"label": id2label[i], "score": float(score)} for i, score in enumerate(scores)),
                        key=lambda entry: entry["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]
