"""``token-classification`` (alias ``ner``): a label for every token, or grouped entities.

transformers' ``TokenClassificationPipeline``. Post-processing of one text's ``logits [n, L]``:

1. ``scores = softmax(logits)`` per token; special tokens are dropped. Each remaining token keeps
   its piece (``"▁Paris"``; an ``[UNK]`` piece is replaced by the text it covers), its character
   span ``start:end`` from the fast tokenizer's offsets (a piece's span includes the space its
   ``▁`` stands for, as transformers' DeBERTa offsets do) and whether it is a *subword*. DeBERTa's
   sentencepiece vocabulary has no "continuing subword" marker, so transformers' fallback rule is
   used: a token is a subword when it does not start the text and the character before its span
   and its first character are both not spaces.
2. ``aggregation_strategy``:

   * ``"none"``: one entity per token, ``{"entity": label of argmax, "score", "index" (token
     position in the row), "word", "start", "end"}``.
   * ``"simple"``: tokens labelled as above, then grouped.
   * ``"first"`` / ``"max"`` / ``"average"``: first a token and its following subwords form a
     word, labelled from the first token's scores, from the token with the highest score, or from
     the mean of the tokens' scores; then the words are grouped.

   Grouping joins consecutive entities with the same tag (``B-PER`` and ``I-PER`` both have tag
   ``PER``; a label without a ``B-``/``I-`` prefix is its own tag) unless the next one is a
   ``B-``; a group is ``{"entity_group": tag, "score": mean score, "word": the pieces joined
   into text, "start", "end"}``.
3. Entities whose label (or group tag) is in ``ignore_labels`` (default ``["O"]``) are dropped.

A text gives a list of entity dicts, a list of texts a list of such lists. Texts longer than the
tokenizer's ``model_max_length`` (when it has one) are truncated, as in transformers.
"""

import numpy as np

from ..functional import softmax
from ..modeling import DebertaV2ForTokenClassification
from .base import MODEL_INPUTS, Pipeline, as_texts, split_rows, truncation_limit

STRATEGIES = ("none", "simple", "first", "average", "max")


def tag_of(label):
    """``("B", "PER")`` for ``"B-PER"``, ``("I", "PER")`` for ``"I-PER"``, ``("I", label)`` otherwise."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


class TokenClassificationPipeline(Pipeline):
    """``pipeline("ner", model=folder)``; call with a text or a list of texts.

    Options: ``aggregation_strategy`` (``"none"``, ``"simple"``, ``"first"``, ``"average"``,
    ``"max"``; default ``"none"``) and ``ignore_labels`` (default ``["O"]``).
    """

    task = "token-classification"
    model_class = DebertaV2ForTokenClassification
    DEFAULTS = {"aggregation_strategy": "none", "ignore_labels": None}
    needs_offsets = True

    def check_options(self, options):
        """``aggregation_strategy`` one of :data:`STRATEGIES` (any case); ``ignore_labels`` a list."""
        options = super().check_options(options)
        strategy = options.get("aggregation_strategy")
        if strategy is not None:
            if not isinstance(strategy, str) or strategy.lower() not in STRATEGIES:
                raise ValueError(f"aggregation_strategy must be one of {STRATEGIES}, got {strategy!r}")
            options["aggregation_strategy"] = strategy.lower()
        if options.get("ignore_labels") is not None:
            options["ignore_labels"] = list(options["ignore_labels"])
        return options

    def __call__(self, inputs, batch_size=None, **options):
        """Label the tokens of ``inputs`` (a text or a list of texts); see the module docstring."""
        batch_size, options = self.settings(batch_size, options)
        texts = as_texts(inputs, "token-classification")
        if not texts:
            return []
        limit = truncation_limit(self.tokenizer)
        encoding = self.tokenizer(texts, truncation=bool(limit), max_length=limit,
                                  return_offsets_mapping=True, return_special_tokens_mask=True)
        rows = split_rows(encoding, MODEL_INPUTS + ("offset_mapping", "special_tokens_mask"))
        ignore = ["O"] if options["ignore_labels"] is None else options["ignore_labels"]
        results = []
        for text, row, out in zip(texts, rows, self.run_model(rows, batch_size)):
            tokens = self.gather_tokens(text, row, softmax(out["logits"]))
            entities = self.aggregate(tokens, options["aggregation_strategy"])
            results.append([entity for entity in entities
                            if entity.get("entity") not in ignore and entity.get("entity_group") not in ignore])
        return results[0] if isinstance(inputs, str) else results

    def gather_tokens(self, text, row, scores):
        """Per non-special token: ``word`` (piece), ``scores [L]``, ``start``, ``end``, ``index``, ``is_subword``."""
        tokens = []
        for index, (token_id, (start, end), special) in enumerate(
                zip(row["input_ids"], row["offset_mapping"], row["special_tokens_mask"])):
            if special:
                continue
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            is_subword = start > 0 and " " not in text[start - 1:start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word, is_subword = text[start:end], False
            tokens.append({"word": word, "scores": scores[index], "start": start, "end": end, "index": index,
                           "is_subword": is_subword})
        return tokens

    def aggregate(self, tokens, strategy):
        """Entities of one text before ``ignore_labels``: per token (``"none"``) or grouped."""
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for token in tokens:
                best = int(token["scores"].argmax())
                entities.append({"entity": id2label[best], "score": float(token["scores"][best]),
                                 "index": token["index"], "word": token["word"], "start": token["start"],
                                 "end": token["end"]})
            if strategy == "none":
                return entities
        else:
            words, word = [], []
            for token in tokens:
                if word and not token["is_subword"]:
                    words.append(word)
                    word = []
                word.append(token)
            if word:
                words.append(word)
            entities = [self.aggregate_word(word, strategy) for word in words]
        return self.group_entities(entities)

    def aggregate_word(self, tokens, strategy):
        """One entity for the tokens of one word, labelled by ``strategy`` (first/max/average)."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda token: token["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([token["scores"] for token in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([token["word"] for token in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def group_entities(self, entities):
        """Consecutive entities of the same tag, not interrupted by a ``B-``, as one group each."""
        groups, group = [], []
        for entity in entities:
            if group:
                bi, tag = tag_of(entity["entity"])
                if tag != tag_of(group[-1]["entity"])[1] or bi == "B":
                    groups.append(self.group(group))
                    group = []
            group.append(entity)
        if group:
            groups.append(self.group(group))
        return groups

    def group(self, entities):
        """The group dict of consecutive entities of one tag."""
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([entity["score"] for entity in entities])),
                "word": self.tokenizer.convert_tokens_to_string([entity["word"] for entity in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}
