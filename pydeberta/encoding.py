"""From token ids to model inputs: template, truncation, overflow windows, padding, BatchEncoding.

The tokenizers (``tokenizer.py``) turn each text into a :class:`TokenSequence` (ids, and where
asked character offsets and word ids). Everything after that is independent of sentencepiece and
lives here::

    TokenSequence A (, B)
      -> truncation_windows   which slices of A and B fit in max_length (several with overflow)
      -> Encoding             one row: [CLS] A [SEP] (B [SEP]), its token types, masks, offsets
      -> pad                  rows padded to the longest row or to max_length
      -> collate              the requested columns in a BatchEncoding (lists, or NumPy arrays)

The conventions are transformers 4.x's (``PreTrainedTokenizerBase``):

* template: single ``[CLS] A [SEP]``, pair ``[CLS] A [SEP] B [SEP]``; ``token_type_ids`` are 0
  up to and including the first ``[SEP]`` and 1 after it (all 0 without special tokens);
  ``special_tokens_mask`` is 1 on the template's tokens and on padding.
* ``truncation="longest_first"`` on a pair removes tokens from the longer sequence until both
  have the same length, then one from each, the first sequence losing the odd one only when it
  was the longer (the slow tokenizer's arithmetic, see :func:`truncation_windows`).
* overflow (``return_overflowing_tokens=True``): the truncated sequence is cut into windows of
  ``max_length - specials - len(other sequence)`` tokens, each starting ``stride`` tokens before
  the previous one ended, as transformers' fast tokenizers do; ``overflow_to_sample_mapping``
  gives the input each row came from.

Worked example, ``max_length=6, stride=2`` on a single text of 10 tokens ``t0 .. t9``: a window
holds ``6 - 2 = 4`` tokens and advances by ``4 - 2 = 2``::

    [CLS] t0 t1 t2 t3 [SEP]
    [CLS] t2 t3 t4 t5 [SEP]
    [CLS] t4 t5 t6 t7 [SEP]
    [CLS] t6 t7 t8 t9 [SEP]          overflow_to_sample_mapping = [0, 0, 0, 0]
"""

import warnings

import numpy as np

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
PADDING_SIDES = ("right", "left")

#: transformers' ``model_max_length`` for "no limit" (``int(1e30)``).
VERY_LARGE_INTEGER = int(1e30)
#: Above this a ``model_max_length`` counts as "no limit" (transformers' ``LARGE_INTEGER``).
LARGE_INTEGER = int(1e20)

#: Columns of a BatchEncoding, in the order transformers' fast tokenizers return them.
COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping", "length")


class TokenSequence:
    """The tokens of one text (or one list of pre-split words) before special tokens are added.

    Attributes:
        ids: token ids.
        offsets: ``(start, end)`` character span of each token in the text, or None when the
            tokenizer was not asked for offsets.
        word_ids: index of the word each token belongs to. Given as a list, or worked out on
            first use from ``segment_starts`` (token indices where a word must start) and
            ``word_start_table`` (bytes indexed by id: nonzero if that token begins a word).
    """

    __slots__ = ("ids", "offsets", "_word_ids", "_segment_starts", "_word_start_table")

    def __init__(self, ids, offsets=None, word_ids=None, segment_starts=(0,), word_start_table=b""):
        self.ids = ids
        self.offsets = offsets
        self._word_ids = word_ids
        self._segment_starts = segment_starts
        self._word_start_table = word_start_table

    @property
    def word_ids(self):
        """Word index of every token (computed once, on first use)."""
        if self._word_ids is None:
            starts, table = set(self._segment_starts), self._word_start_table
            word, out = -1, []
            for i, token_id in enumerate(self.ids):
                if i in starts or (token_id < len(table) and table[token_id]):
                    word += 1
                out.append(word)
            self._word_ids = out
        return self._word_ids

    def __len__(self):
        return len(self.ids)


class Encoding:
    """One model input row, laid out as ``[CLS] A [SEP] (B [SEP])`` plus padding.

    Mirrors the per-row ``tokenizers.Encoding`` of transformers' fast tokenizers: ``ids`` is
    built at once; the other views (``type_ids``, ``attention_mask``, ``special_tokens_mask``,
    ``offsets``, ``word_ids``, ``sequence_ids``) are computed from the layout when asked.

    Args:
        a: first TokenSequence; ``a_span`` the ``(start, stop)`` slice of it in this row.
        b, b_span: second TokenSequence and its slice, or None for a single sequence.
        cls_id, sep_id: ids of the template's special tokens.
        add_special_tokens: False leaves out the template (``A B`` only).
    """

    __slots__ = ("ids", "_a", "_a_span", "_b", "_b_span", "_special", "_pad", "_pad_left")

    def __init__(self, a, a_span, b=None, b_span=None, *, cls_id, sep_id, add_special_tokens=True):
        self._a, self._a_span, self._b, self._b_span = a, a_span, b, b_span
        self._special = add_special_tokens
        self._pad = 0
        self._pad_left = False
        first = a.ids[a_span[0]:a_span[1]]
        if b is None:
            self.ids = [cls_id] + first + [sep_id] if add_special_tokens else first
        else:
            second = b.ids[b_span[0]:b_span[1]]
            self.ids = [cls_id] + first + [sep_id] + second + [sep_id] if add_special_tokens else first + second

    def __len__(self):
        return len(self.ids)

    @property
    def n_tokens(self):
        """Number of real (non-padding) tokens."""
        return len(self.ids) - self._pad

    def pad(self, length, pad_id, side="right"):
        """Pad (once, in place) to ``length`` tokens with ``pad_id`` on ``side`` ("right"/"left")."""
        if self._pad:
            raise ValueError("this Encoding is already padded")
        extra = length - len(self.ids)
        if extra > 0:
            self._pad, self._pad_left = extra, side == "left"
            self.ids = self._padded(self.ids, pad_id)

    def _padded(self, values, filler):
        if not self._pad:
            return values
        fill = [filler] * self._pad
        return fill + values if self._pad_left else values + fill

    def _assemble(self, view, special_value, pad_value):
        """A per-token view: ``view(sequence, start, stop, sequence_index)`` over A and B,
        ``special_value`` on the template's tokens, ``pad_value`` on padding."""
        out = view(self._a, *self._a_span, 0)
        if self._special:
            out = [special_value] + out + [special_value]
        if self._b is not None:
            out = out + view(self._b, *self._b_span, 1)
            if self._special:
                out.append(special_value)
        return self._padded(out, pad_value)

    def _lengths(self):
        """Tokens of ``[CLS] A [SEP]`` and of ``B [SEP]`` (without the template: A and B)."""
        first = self._a_span[1] - self._a_span[0] + (2 if self._special else 0)
        second = 0 if self._b is None else self._b_span[1] - self._b_span[0] + (1 if self._special else 0)
        return first, second

    @property
    def type_ids(self):
        """``token_type_ids``: 0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]`` (0 without the
        template, as transformers), 0 on padding."""
        first, second = self._lengths()
        return self._padded([0] * first + [1 if self._special else 0] * second, 0)

    @property
    def attention_mask(self):
        """1 on real tokens, 0 on padding."""
        return self._padded([1] * self.n_tokens, 0)

    @property
    def special_tokens_mask(self):
        """1 on the template's special tokens and on padding, 0 on the texts' tokens."""
        return self._assemble(lambda seq, start, stop, index: [0] * (stop - start), 1, 1)

    @property
    def sequence_ids(self):
        """0 for tokens of A, 1 for tokens of B, None for special tokens and padding."""
        return self._assemble(lambda seq, start, stop, index: [index] * (stop - start), None, None)

    @property
    def offsets(self):
        """Character spans in each token's own text; ``(0, 0)`` for special tokens and padding."""
        def view(seq, start, stop, index):
            if seq.offsets is None:
                raise ValueError("offsets were not computed: call the fast tokenizer with return_offsets_mapping=True")
            return seq.offsets[start:stop]
        return self._assemble(view, (0, 0), (0, 0))

    @property
    def word_ids(self):
        """Word index of each token within its own text; None for special tokens and padding."""
        return self._assemble(lambda seq, start, stop, index: seq.word_ids[start:stop], None, None)


def _strategy(name, value, when_true, when_false, choices):
    """Canonical strategy name: True -> ``when_true``, False/None -> ``when_false``, else one of ``choices``."""
    if value is True:
        return when_true
    if value is False or value is None:
        return when_false
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(f"{name} must be True, False or one of {choices}; got {value!r}")


def padding_strategy(padding):
    """Canonical padding strategy: True -> "longest", False/None -> "do_not_pad"."""
    return _strategy("padding", padding, "longest", "do_not_pad", PADDING_STRATEGIES)


def truncation_strategy(truncation):
    """Canonical truncation strategy: True -> "longest_first", False/None -> "do_not_truncate"."""
    return _strategy("truncation", truncation, "longest_first", "do_not_truncate", TRUNCATION_STRATEGIES)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def resolve_lengths(padding, truncation, max_length, *, model_max_length, num_special_tokens,
                    stride=0, pad_to_multiple_of=None, verbose=True):
    """Resolve the padding/truncation arguments the way transformers 4.x does.

    * ``max_length`` alone (padding and truncation left at their defaults) turns on
      ``"longest_first"`` truncation;
    * ``padding="max_length"`` or truncation without ``max_length`` use ``model_max_length``;
      when that is "no limit" (> 1e20) they are switched off with a warning;
    * ``padding=True`` with ``max_length`` but no truncation ignores ``max_length`` (warning).

    Bad values raise: an unknown strategy, a non-int or negative length, or a ``max_length``
    smaller than the ``num_special_tokens`` the template needs.

    Returns:
        ``(padding, truncation, max_length)`` with canonical strategy names.
    """
    if max_length is not None:
        max_length = _check_int("max_length", max_length, 0)
    _check_int("stride", stride, 0)
    if pad_to_multiple_of is not None:
        _check_int("pad_to_multiple_of", pad_to_multiple_of, 1)
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"
    if padding is True and max_length is not None and truncation in (None, False, "do_not_truncate") and verbose:
        warnings.warn("max_length is ignored when padding=True and there is no truncation; "
                      "use padding='max_length' to pad to max_length", stacklevel=3)
    padding = padding_strategy(padding)
    truncation = truncation_strategy(truncation)
    if max_length is None:
        no_limit = model_max_length > LARGE_INTEGER
        if padding == "max_length":
            if no_limit:
                if verbose:
                    warnings.warn("padding='max_length' without max_length and the tokenizer has no "
                                  "model_max_length: not padding", stacklevel=3)
                padding = "do_not_pad"
            else:
                max_length = model_max_length
        if truncation != "do_not_truncate":
            if no_limit:
                if verbose:
                    warnings.warn("truncation without max_length and the tokenizer has no "
                                  "model_max_length: not truncating", stacklevel=3)
                truncation = "do_not_truncate"
            else:
                max_length = model_max_length
    if max_length is not None and max_length < num_special_tokens:
        raise ValueError(f"max_length={max_length} is smaller than the {num_special_tokens} special tokens "
                         f"the template adds; use max_length >= {num_special_tokens} or add_special_tokens=False")
    if (truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of is not None
            and max_length is not None and max_length % pad_to_multiple_of):
        raise ValueError(f"max_length={max_length} is not a multiple of pad_to_multiple_of={pad_to_multiple_of}, "
                         "needed when truncating and padding together")
    return padding, truncation, max_length


def _windows(n, size, stride, overflow):
    """Slices ``(start, stop)`` of ``n`` tokens in windows of ``size``, overlapping by ``stride``."""
    if n <= size:
        return [(0, n)]
    if not overflow:
        return [(0, size)]
    if stride >= size:
        raise ValueError(f"stride={stride} must be smaller than the {size} tokens a window holds "
                         "(max_length minus the special tokens and the other sequence)")
    spans, start = [], 0
    while True:
        spans.append((start, min(start + size, n)))
        if start + size >= n:
            return spans
        start += size - stride


def truncation_windows(len_a, len_b, *, strategy, max_length, num_special_tokens, stride=0, overflow=False):
    """Which slices of A and B make the output rows.

    Args:
        len_a: number of tokens of the first sequence; ``len_b`` of the second, None if single.
        strategy: canonical truncation strategy (see :func:`truncation_strategy`).
        max_length: row length limit including the ``num_special_tokens``; None for no limit.
        stride, overflow: with ``overflow`` the truncated sequence is cut into overlapping windows
            (one row each); without it only the first window is kept.
    Returns:
        list of ``((a_start, a_stop), (b_start, b_stop))``, one per row; ``b`` spans are
        ``(0, 0)`` for a single sequence.

    Example: ``truncation_windows(5, 4, strategy="longest_first", max_length=8,
    num_special_tokens=3)`` must remove 4 tokens: 1 from the longer A to even them up, then
    3 more split as 1 from A and 2 from B -> ``[((0, 3), (0, 2))]``.
    """
    pair = len_b is not None
    len_b = len_b or 0
    if strategy == "only_second" and not pair:
        raise ValueError("truncation='only_second' needs a second sequence (text_pair)")
    if strategy == "longest_first" and pair and overflow:
        raise ValueError("return_overflowing_tokens=True with a pair of sequences needs "
                         "truncation='only_first' or 'only_second', not 'longest_first'")
    full = [((0, len_a), (0, len_b))]
    if strategy == "do_not_truncate" or max_length is None:
        return full
    budget = max_length - num_special_tokens  # tokens left for A and B together
    excess = len_a + len_b - budget
    if excess <= 0:
        return full
    if strategy == "longest_first" and pair:
        first_remove = min(abs(len_b - len_a), excess)
        second_remove = excess - first_remove
        if len_a > len_b:
            cut_a, cut_b = first_remove + second_remove // 2, second_remove - second_remove // 2
        else:
            cut_a, cut_b = second_remove // 2, first_remove + second_remove - second_remove // 2
        return [((0, len_a - cut_a), (0, len_b - cut_b))]
    if strategy == "only_second":
        size = budget - len_a
        if size < 1:
            raise ValueError(f"truncation='only_second' cannot fit max_length={max_length}: the first "
                             f"sequence alone has {len_a} tokens (+{num_special_tokens} special)")
        return [((0, len_a), span) for span in _windows(len_b, size, stride, overflow)]
    size = budget - len_b  # only_first, or longest_first on a single sequence
    if size < 1:
        raise ValueError(f"truncation={strategy!r} cannot fit max_length={max_length}: "
                         + (f"the second sequence alone has {len_b} tokens (+{num_special_tokens} special)"
                            if pair else f"no room for text after the {num_special_tokens} special tokens"))
    return [(span, (0, len_b)) for span in _windows(len_a, size, stride, overflow)]


def pad(encodings, *, strategy, max_length, pad_id, pad_to_multiple_of=None, side="right"):
    """Pad rows in place: to the longest row ("longest") or to ``max_length`` ("max_length").

    The target length is rounded up to a multiple of ``pad_to_multiple_of``. Rows already longer
    than the target are left as they are (as in transformers).
    """
    if strategy == "do_not_pad" or not encodings:
        return
    target = max(len(e) for e in encodings) if strategy == "longest" else max_length
    if pad_to_multiple_of and target % pad_to_multiple_of:
        target += pad_to_multiple_of - target % pad_to_multiple_of
    for encoding in encodings:
        encoding.pad(target, pad_id, side)


class BatchEncoding(dict):
    """The tokenizer's result: a dict of columns (``enc["input_ids"]``, ``enc.input_ids``).

    Values are lists (one list per row for batches) or int64 NumPy arrays after
    ``return_tensors="np"``. ``enc.encodings`` holds the per-row :class:`Encoding` objects
    behind ``word_ids()`` and ``sequence_ids()``; ``enc[i]`` with an int returns row ``i``'s.
    """

    def __init__(self, data=None, encodings=None, n_sequences=None):
        super().__init__(data or {})
        self._encodings = encodings
        self._n_sequences = n_sequences

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return self._rows()[key]
        return super().__getitem__(key)

    def __getstate__(self):
        return {"data": dict(self), "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state):
        self.update(state["data"])
        self._encodings = state["encodings"]
        self._n_sequences = state["n_sequences"]

    @property
    def encodings(self):
        """Per-row :class:`Encoding` objects (None when built from plain data)."""
        return self._encodings

    @property
    def n_sequences(self):
        """1 for single texts, 2 for pairs."""
        return self._n_sequences

    def _rows(self):
        if self._encodings is None:
            raise ValueError("this BatchEncoding carries no per-row encodings (it was built from plain data)")
        return self._encodings

    def _row(self, batch_index):
        rows = self._rows()
        if not isinstance(batch_index, (int, np.integer)) or not -len(rows) <= batch_index < len(rows):
            raise IndexError(f"batch_index must be an int in [0, {len(rows)}); got {batch_index!r}")
        return rows[batch_index]

    def word_ids(self, batch_index=0):
        """Word index of each token of row ``batch_index`` (None for special tokens and padding).

        For raw text a word is what follows a space (a piece starting with ``▁``), an added token
        found in the text, or a punctuation character with ``split_by_punct``; for
        ``is_split_into_words=True`` it is the index of the input word.
        """
        return self._row(batch_index).word_ids

    def sequence_ids(self, batch_index=0):
        """0/1 for tokens of the first/second sequence of row ``batch_index``, None elsewhere."""
        return self._row(batch_index).sequence_ids


def collate(encodings, *, columns, batched, return_tensors=None, overflow_mapping=None, n_sequences=1):
    """Gather the requested columns of the rows into a :class:`BatchEncoding`.

    Args:
        encodings: the rows.
        columns: names from :data:`COLUMNS` to return ("length" is the unpadded length).
        batched: False for a single input without overflow: values are the row's lists.
        return_tensors: None for lists, "np" for int64 arrays (a single input gets a batch axis).
        overflow_mapping: input index of every row, returned as ``overflow_to_sample_mapping``.
    """
    getters = {
        "input_ids": lambda e: e.ids,
        "token_type_ids": lambda e: e.type_ids,
        "attention_mask": lambda e: e.attention_mask,
        "special_tokens_mask": lambda e: e.special_tokens_mask,
        "offset_mapping": lambda e: e.offsets,
        "length": lambda e: e.n_tokens,
    }
    data = {name: [getters[name](e) for e in encodings] for name in COLUMNS if name in columns}
    if overflow_mapping is not None:
        data["overflow_to_sample_mapping"] = list(overflow_mapping)
    if return_tensors == "np":
        data = {name: _as_array(name, values, len(encodings)) for name, values in data.items()}
    elif not batched:
        data = {name: values[0] for name, values in data.items()}
    return BatchEncoding(data, encodings=encodings, n_sequences=n_sequences)


def _as_array(name, values, n_rows):
    """int64 array of a column; rows must have equal length (``padding=True`` ensures it)."""
    if name in ("length", "overflow_to_sample_mapping"):
        return np.asarray(values, dtype=np.int64).reshape(n_rows)
    lengths = {len(row) for row in values}
    if len(lengths) > 1:
        raise ValueError(f"return_tensors='np' needs rows of equal length, but {name} has lengths "
                         f"{sorted(lengths)}; pass padding=True (or padding='max_length')")
    width = lengths.pop() if lengths else 0
    shape = (n_rows, width, 2) if name == "offset_mapping" else (n_rows, width)
    return np.asarray(values, dtype=np.int64).reshape(shape)

