"""``fill-mask``: the most likely tokens for each ``[MASK]`` of a text (transformers' ``FillMaskPipeline``).

The model's vocabulary projection runs on the mask positions only (the rest of the sequence
needs none), giving the same numbers as the full ``logits [B, N, V]`` at a fraction of the
head's cost. Post-processing, for each mask position of a text (in text order):

1. ``p = softmax(logits[mask])`` over the whole vocabulary;
2. with ``targets``, only the target ids' probabilities are kept (not renormalised) and
   ``top_k`` is capped at the number of targets;
3. the ``top_k`` most likely ids, each reported as ``{"score": p, "token": id, "token_str":
   decode([id]), "sequence": ...}`` where ``sequence`` decodes the text's ids with this mask
   replaced by the id. With one mask the special tokens are skipped; with several they are kept,
   so the other masks stay visible (``"[CLS] The[MASK] sat on the mat.[SEP]"``).

A text with one mask gives a list of ``top_k`` dicts, a text with several masks one such list per
mask; a list of texts gives one result per text, except that a list of one text gives that
text's result alone. Scores of several masks are each mask's own marginal probabilities, not a
joint distribution (as in transformers).

``targets`` are tokens of the vocabulary (``"▁dog"``); a target that is not one is tokenized and
its first token used instead, with a warning (``"dog"`` may become ``"▁dog"``).
"""

import warnings

import numpy as np

from ..functional import softmax
from ..modeling import DebertaV2ForMaskedLM
from .base import MODEL_INPUTS, Pipeline, as_texts, check_positive_int, split_rows


class FillMaskPipeline(Pipeline):
    """``pipeline("fill-mask", model=folder)``; call with a text or a list of texts.

    Options: ``top_k`` (default 5) predictions per mask; ``targets`` (a token or a list of
    tokens) to score only those.
    """

    task = "fill-mask"
    model_class = DebertaV2ForMaskedLM
    DEFAULTS = {"top_k": 5, "targets": None}
    outputs = ("mask_logits",)
    unwraps_one_item_list = True
    per_token = False

    def __init__(self, model, tokenizer, batch_size=1, **options):
        if tokenizer is not None and getattr(tokenizer, "mask_token_id", None) is None:
            raise ValueError("the fill-mask pipeline needs a tokenizer that defines a mask_token")
        super().__init__(model, tokenizer, batch_size, **options)

    def check_options(self, options):
        """``top_k`` an int >= 1; ``targets`` resolved to token ids (an int array)."""
        options = super().check_options(options)
        if "top_k" in options:
            options["top_k"] = check_positive_int("top_k", options["top_k"])
        if options.get("targets") is not None:
            options["targets"] = self.target_ids(options["targets"])
        return options

    def target_ids(self, targets):
        """Ids of ``targets``: a token's own id, else the first id of its tokenization
        (with a warning), skipping targets that tokenize to nothing; duplicates removed."""
        if isinstance(targets, str):
            targets = [targets]
        ids = []
        for target in targets:
            index = self.tokenizer.convert_tokens_to_ids(target)
            if self.tokenizer.convert_ids_to_tokens(index) != target:  # not a token of the vocabulary
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False)["input_ids"]
                if not pieces:
                    warnings.warn(f"The specified target token `{target}` does not exist in the model vocabulary. "
                                  "We cannot replace it with anything meaningful, ignoring it", stacklevel=5)
                    continue
                index = pieces[0]
                warnings.warn(f"The specified target token `{target}` does not exist in the model vocabulary. "
                              f"Replacing with `{self.tokenizer.convert_ids_to_tokens(index)}`.", stacklevel=5)
            ids.append(index)
        if not ids:
            raise ValueError("At least one target must be provided when passed.")
        return np.array(sorted(set(ids)))

    def __call__(self, inputs, batch_size=None, **options):
        """Fill the masks of ``inputs`` (a text or a list of texts); see the module docstring."""
        batch_size, options = self.settings(batch_size, options)
        texts = as_texts(inputs, "fill-mask")
        if not texts:
            return []
        encoding = self.tokenizer(texts)
        rows = split_rows(encoding, MODEL_INPUTS)
        for text, row in zip(texts, rows):
            if self.tokenizer.mask_token_id not in row["input_ids"]:
                raise ValueError(f"No mask_token ({self.tokenizer.mask_token}) found on the input: {text!r}")
        results = [self.postprocess(row["input_ids"], out["mask_logits"], options["top_k"], options["targets"])
                   for row, out in zip(rows, self.run_model(rows, batch_size))]
        return results[0] if isinstance(inputs, str) or len(results) == 1 else results

    def call_model(self, batch):
        """Each row's logits at its mask positions only, ``[masks, V]``: the backbone runs on the
        batch, the vocabulary projection (the largest product of the head) on the masked rows."""
        hidden = self.model.run_backbone(**batch).last_hidden_state  # [B, N, C]
        rows, positions = np.nonzero(batch["input_ids"] == self.tokenizer.mask_token_id)
        logits = self.model.lm_logits(hidden[rows, positions])  # [all masks, V]
        return {"mask_logits": np.split(logits, np.cumsum(np.bincount(rows, minlength=len(hidden)))[:-1])}

    def postprocess(self, input_ids, logits, top_k, target_ids):
        """The predictions for each mask of one text, from its ``logits [masks, V]`` at the mask
        positions, in text order."""
        input_ids = np.asarray(input_ids)
        masks = np.flatnonzero(input_ids == self.tokenizer.mask_token_id)
        probs = softmax(logits)  # [masks, V]
        candidates = np.arange(probs.shape[-1])
        if target_ids is not None:
            probs, candidates = probs[:, target_ids], target_ids  # [masks, targets]
            top_k = min(top_k, len(target_ids))
        single = len(masks) == 1
        result = []
        for position, mask_probs in zip(masks, probs):
            predictions = []
            for choice in np.argsort(-mask_probs, kind="stable")[:top_k]:
                token = int(candidates[choice])
                tokens = input_ids.copy()
                tokens[position] = token
                tokens = tokens[tokens != self.tokenizer.pad_token_id]
                predictions.append({"score": float(mask_probs[choice]), "token": token,
                                    "token_str": self.tokenizer.decode([token]),
                                    "sequence": self.tokenizer.decode(tokens, skip_special_tokens=single)})
            result.append(predictions)
        return result[0] if single else result
