"""Dropout, the one random part of training (Srivastava et al., 2014), at the places DeBERTa has it.

In training, each dropout site multiplies its input by a random mask ``keep`` (each entry kept
with probability ``1 - p``) and rescales, ``y = x * keep / (1 - p)``, so that ``E[y] = x``; at
inference it is the identity. The book's functions take a ``drop`` argument and call
``drop(x, site)``: :data:`NO_DROPOUT` (the default) returns ``x``; a :class:`Dropout` draws the
site's mask once and returns the same mask every time that site is asked again. That makes the
backward simple: the map is linear with a fixed diagonal, so the backward of ``drop(x, site)`` is
``drop(grad, site)``, and a backward that recomputes its forward sees the same masks.

The sites, their rate (a config field) and where they sit, as in transformers' ``nn.Dropout``
modules::

    embeddings         hidden_dropout_prob           after LayerNorm(x) * mask
    attention.rel      hidden_dropout_prob           the relative table, per layer, before its projections
    attention.probs    attention_probs_dropout_prob  the attention probabilities, before @ V
    attention.output   hidden_dropout_prob           attention.output.dense(context), before the residual
    output             hidden_dropout_prob           output.dense(act(...)), before the residual
    conv               hidden_dropout_prob           the nGiE convolution, before conv_act
    pooler             pooler_dropout                hidden[:, 0], before the pooler's dense
    classifier         cls_dropout (else hidden_dropout_prob)   the classifier's input (sequence
                                                     classification, multiple choice)
    token_classifier   hidden_dropout_prob           the token classifier's input
                       (the question-answering and masked-LM heads have none)
"""

import numpy as np

RATES = {"embeddings": "hidden_dropout_prob", "attention.rel": "hidden_dropout_prob",
         "attention.probs": "attention_probs_dropout_prob", "attention.output": "hidden_dropout_prob",
         "output": "hidden_dropout_prob", "conv": "hidden_dropout_prob", "pooler": "pooler_dropout",
         "classifier": "cls_dropout", "token_classifier": "hidden_dropout_prob"}
"""Dropout site -> the config field holding its probability."""


class NoDropout:
    """Inference: every site is the identity."""

    def __call__(self, x, site):
        return x

    def scope(self, name):
        return self


NO_DROPOUT = NoDropout()


class Dropout:
    """Training dropout with one mask per site, drawn from ``rng`` when the site is first asked.

    Args:
        config: the model's config (the rates, :data:`RATES`).
        rng: a ``numpy.random.Generator`` (seed it for reproducible masks).
    """

    def __init__(self, config, rng, prefix="", masks=None):
        self.config, self.rng, self.prefix = config, rng, prefix
        self.masks = {} if masks is None else masks  # site -> bool keep mask, in the order drawn

    def rate(self, site):
        """The probability ``p`` of dropping an entry at ``site``."""
        if site == "classifier":
            p = getattr(self.config, "cls_dropout", None)
            return float(self.config.hidden_dropout_prob if p is None else p)
        return float(getattr(self.config, RATES[site]))

    def __call__(self, x, site):
        """``x * keep / (1 - p)`` with the mask of ``site`` (drawn now if new); ``x`` if ``p == 0``."""
        p = self.rate(site)
        if p == 0:
            return x
        key = self.prefix + site
        if key not in self.masks:
            self.masks[key] = self.rng.random(np.shape(x)) >= p  # keep with probability 1 - p
        keep = self.masks[key]
        if keep.shape != np.shape(x):
            raise ValueError(f"dropout site {key!r} was drawn for shape {keep.shape}, now asked for {np.shape(x)}")
        return x * (keep / x.dtype.type(1 - p)).astype(x.dtype) if p < 1 else np.zeros_like(x)

    def scope(self, name):
        """The same masks and generator, with sites named under ``name`` (e.g. ``"layer.3"``)."""
        return Dropout(self.config, self.rng, f"{self.prefix}{name}.", self.masks)
