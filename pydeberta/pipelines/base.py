"""What every task pipeline shares: options, and running the model over rows in padded batches.

A pipeline call has three steps, as in transformers:

1. **preprocess** -- the task turns its inputs into *rows*, one model input sequence each (a text;
   a premise/hypothesis pair of zero-shot; a window of a long question-answering context), as
   lists from the tokenizer (``input_ids``, ``token_type_ids``, ``attention_mask``, plus whatever
   the task needs later: offsets, special-token masks ...);
2. **forward** -- :meth:`Pipeline.run_model` runs the model over the rows ``batch_size`` at a
   time, taking them in order of length so that rows of similar length share a batch: the rows
   of a batch are right-padded to the longest one (pad id, attention mask 0, token type 0), and
   after the call each row's per-token outputs are cut back to its own length and put back in
   the rows' order;
3. **postprocess** -- the task turns each input's rows' outputs into transformers' result dicts.

Padding is masked out by attention, so a row's outputs equal those of a batch of one (to float
rounding) and post-processing never sees padding: results do not depend on ``batch_size``.
transformers pads the same way and makes its post-processing skip the padding instead.

Options (``top_k``, ``targets`` ...) may be given when the pipeline is built and again, winning,
at call time; each task lists its options with their defaults in ``DEFAULTS``.
"""

import numpy as np

from ..encoding import LARGE_INTEGER

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def pad_batch(rows, pad_id):
    """The model inputs of ``rows`` as int64 ``[B, N]`` arrays, right-padded to the longest row.

    >>> pad_batch([{"input_ids": [1, 7, 2], "token_type_ids": [0, 0, 0], "attention_mask": [1, 1, 1]},
    ...            {"input_ids": [1, 2], "token_type_ids": [0, 0], "attention_mask": [1, 1]}], 0)["input_ids"]
    array([[1, 7, 2],
           [1, 2, 0]])
    """
    N = max(len(row["input_ids"]) for row in rows)
    batch = {}
    for name, filler in zip(MODEL_INPUTS, (pad_id, 0, 0)):
        array = np.full((len(rows), N), filler, dtype=np.int64)  # [B, N]
        for i, row in enumerate(rows):
            array[i, :len(row[name])] = row[name]
        batch[name] = array
    return batch


def check_positive_int(name, value, allow_none=False):
    """``value`` if it is an int >= 1 (or None when allowed); a clear error otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def truncation_limit(tokenizer):
    """The tokenizer's ``model_max_length``, or None when it sets no limit (above ``LARGE_INTEGER``,
    as transformers' default ``int(1e30)``)."""
    limit = tokenizer.model_max_length
    return None if limit is None or limit > LARGE_INTEGER else int(limit)


def as_texts(inputs, task, name="inputs"):
    """``inputs`` (a text or a list/tuple of texts) as a list of texts; ``TypeError`` naming
    ``task``, the argument and what came otherwise (None, a number, a dict, a list holding one)."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs) if isinstance(inputs, (list, tuple)) else None
    if texts is None or not all(isinstance(text, str) for text in texts):
        culprit = inputs if texts is None else next(text for text in texts if not isinstance(text, str))
        raise TypeError(f"{task}: {name} must be a text or a list of texts, got {type(culprit).__name__} "
                        f"{culprit!r:.60}")
    return texts


def split_rows(encoding, columns):
    """The rows of a batched tokenizer result as a list of dicts holding ``columns``."""
    return [dict(zip(columns, values)) for values in zip(*(encoding[name] for name in columns))]


class Pipeline:
    """Base of the task pipelines: a model, its tokenizer, a batch size and default options.

    Subclasses set ``task`` (transformers' name), ``model_class`` (the head the task needs, the
    class loaded from a folder; ``accepts``, when set, is the wider class a model object may be),
    ``DEFAULTS`` (option -> default), ``outputs`` (the model output fields post-processing reads),
    ``per_token`` (whether those fields have a sequence axis) and ``needs_offsets`` (whether the
    task needs the fast tokenizer's character offsets), and implement ``__call__``.
    """

    task = None
    model_class = None
    accepts = None
    DEFAULTS = {}
    outputs = ("logits",)
    per_token = True
    needs_offsets = False
    unwraps_one_item_list = False  # True where transformers returns a list of one input as that input's result

    def __init__(self, model, tokenizer, batch_size=1, **options):
        """Check that the model has the task's head and the tokenizer what the task needs.

        Args:
            model: an instance of ``model_class``.
            tokenizer: a pydeberta tokenizer (``DebertaV2TokenizerFast`` where offsets are needed).
            batch_size: rows per model call.
            **options: the task's options (see ``DEFAULTS``), used when a call does not give them.
        """
        accepted = self.accepts or self.model_class
        if not isinstance(model, accepted):
            raise TypeError(f"the {self.task!r} pipeline needs a {accepted.__name__}, got {type(model).__name__}")
        if tokenizer is None or not hasattr(tokenizer, "pad_token_id"):
            raise TypeError(f"the {self.task!r} pipeline needs a pydeberta tokenizer, got {type(tokenizer).__name__}")
        if self.needs_offsets and not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"the {self.task!r} pipeline needs character offsets: pass a DebertaV2TokenizerFast, "
                             f"not a {type(tokenizer).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.options = self.check_options(options)

    def check_options(self, options):
        """Validate ``options`` (a dict) and return them normalised; subclasses check values."""
        unknown = sorted(set(options) - set(self.DEFAULTS))
        if unknown:
            raise TypeError(f"the {self.task!r} pipeline has no option {', '.join(map(repr, unknown))}; "
                            f"its options are {sorted(self.DEFAULTS)}")
        return dict(options)

    def settings(self, batch_size, options):
        """The batch size and full options of one call: call-time values over the pipeline's
        own, over ``DEFAULTS``."""
        batch_size = self.batch_size if batch_size is None else check_positive_int("batch_size", batch_size)
        return batch_size, {**self.DEFAULTS, **self.options, **self.check_options(options)}

    def call_model(self, batch):
        """The fields of ``outputs`` for one padded batch (``[B, N]`` model inputs), each indexed
        by batch row first; tasks that need less than the whole output override this."""
        out = self.model(**batch)
        return {name: getattr(out, name) for name in self.outputs}

    def run_model(self, rows, batch_size):
        """Run the model over ``rows``, ``batch_size`` rows per call, shortest rows together.

        The rows are taken in order of length (stable), so that each batch pads to about its
        own length rather than to the longest row of the call; results come back in the rows'
        order. transformers pads the rows in the order given.

        Returns:
            One dict per row: each field of ``outputs`` for that row alone, cut to the row's
            length when ``per_token`` (e.g. ``logits [n, num_labels]`` of an n-token row).
        """
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        results = [None] * len(rows)
        for first in range(0, len(rows), batch_size):
            chunk = order[first:first + batch_size]
            out = self.call_model(pad_batch([rows[i] for i in chunk], self.tokenizer.pad_token_id))
            for b, i in enumerate(chunk):
                n = len(rows[i]["input_ids"])
                results[i] = {name: value[b][:n] if self.per_token else value[b] for name, value in out.items()}
        return results

    def map(self, inputs, batch_size=None, **options):
        """The results of a list of inputs, one per input, in order: the call on ``inputs``,
        except that a list of one input gives a list of its result (the call gives the result
        alone in the tasks where transformers does, ``unwraps_one_item_list``)."""
        inputs = list(inputs)
        if not inputs:
            return []
        results = self(inputs, batch_size=batch_size, **options)
        return [results] if len(inputs) == 1 and self.unwraps_one_item_list else results

    def __repr__(self):
        return (f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, "
                f"batch_size={self.batch_size}, options={self.options})")

