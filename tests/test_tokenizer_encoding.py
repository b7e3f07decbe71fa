"""pydeberta.encoding: template, truncation windows, padding and BatchEncoding, on hand-worked
examples (no vocabulary needed: token ids are plain numbers, [CLS]=1 [SEP]=2 [PAD]=0)."""

import pickle
import warnings

import numpy as np
import pytest

from pydeberta.encoding import (
    VERY_LARGE_INTEGER,
    BatchEncoding,
    Encoding,
    TokenSequence,
    collate,
    pad,
    resolve_lengths,
    truncation_windows,
)

CLS, SEP, PAD = 1, 2, 0


def _sequence(ids, words=None):
    offsets = [(3 * i, 3 * i + 2) for i in range(len(ids))]
    return TokenSequence(list(ids), offsets, words if words is not None else list(range(len(ids))))


def _windows(len_a, len_b=None, **kwargs):
    kwargs.setdefault("num_special_tokens", 2 if len_b is None else 3)
    return truncation_windows(len_a, len_b, **kwargs)


# ---------------------------------------------------------------------------------- truncation


def test_no_truncation_keeps_everything():
    assert _windows(10, strategy="do_not_truncate", max_length=4) == [((0, 10), (0, 0))]
    assert _windows(10, 5, strategy="longest_first", max_length=None) == [((0, 10), (0, 5))]
    assert _windows(3, 2, strategy="only_first", max_length=8) == [((0, 3), (0, 2))]  # fits


def test_longest_first_evens_the_lengths_then_takes_from_both():
    # 5 + 4 + 3 special = 12 > 8: remove 4; 1 evens 5 and 4, the other 3 go 1 to A and 2 to B
    assert _windows(5, 4, strategy="longest_first", max_length=8) == [((0, 3), (0, 2))]
    # A not longer than B: B loses the odd token (4 + 4 + 3 = 11 > 8: A loses 1, B loses 2)
    assert _windows(4, 4, strategy="longest_first", max_length=8) == [((0, 3), (0, 2))]
    assert _windows(2, 9, strategy="longest_first", max_length=8) == [((0, 2), (0, 3))]
    assert _windows(6, 1, strategy="longest_first", max_length=3) == [((0, 0), (0, 0))]
    assert _windows(7, strategy="longest_first", max_length=5) == [((0, 3), (0, 0))]  # single: only A


def test_only_first_and_only_second_cut_one_sequence():
    assert _windows(10, 2, strategy="only_first", max_length=9) == [((0, 4), (0, 2))]
    assert _windows(2, 10, strategy="only_second", max_length=9) == [((0, 2), (0, 4))]


def test_overflow_windows_overlap_by_stride():
    # the worked example of the module docstring: 10 tokens, max_length 6, stride 2
    assert _windows(10, strategy="longest_first", max_length=6, stride=2, overflow=True) == [
        ((0, 4), (0, 0)), ((2, 6), (0, 0)), ((4, 8), (0, 0)), ((6, 10), (0, 0))]
    # window of 3 advancing by 2; the last one is short
    assert _windows(10, 4, strategy="only_first", max_length=10, stride=1, overflow=True) == [
        ((0, 3), (0, 4)), ((2, 5), (0, 4)), ((4, 7), (0, 4)), ((6, 9), (0, 4)), ((8, 10), (0, 4))]
    assert _windows(2, 5, strategy="only_second", max_length=8, stride=0, overflow=True) == [
        ((0, 2), (0, 3)), ((0, 2), (3, 5))]
    assert _windows(3, strategy="only_first", max_length=6, stride=3, overflow=True) == [((0, 3), (0, 0))]  # fits


@pytest.mark.parametrize("kwargs, message", [
    (dict(len_a=5, len_b=None, strategy="only_second", max_length=4), "needs a second sequence"),
    (dict(len_a=1, len_b=None, strategy="only_second", max_length=None), "needs a second sequence"),
    (dict(len_a=5, len_b=5, strategy="longest_first", max_length=20, overflow=True), "only_first"),
    (dict(len_a=5, len_b=6, strategy="only_first", max_length=8), "cannot fit max_length=8"),
    (dict(len_a=6, len_b=5, strategy="only_second", max_length=8), "cannot fit max_length=8"),
    (dict(len_a=5, len_b=None, strategy="longest_first", max_length=2), "no room for text"),
    (dict(len_a=9, len_b=None, strategy="longest_first", max_length=5, stride=3, overflow=True), "stride=3"),
])
def test_impossible_truncations_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _windows(**kwargs)


# ---------------------------------------------------------------------------------- one row


def test_encoding_of_a_pair_lays_out_the_template():
    a, b = _sequence([10, 11, 12], words=[0, 0, 1]), _sequence([20, 21])
    row = Encoding(a, (0, 3), b, (0, 2), cls_id=CLS, sep_id=SEP)
    assert row.ids == [1, 10, 11, 12, 2, 20, 21, 2]
    assert row.type_ids == [0, 0, 0, 0, 0, 1, 1, 1]
    assert row.special_tokens_mask == [1, 0, 0, 0, 1, 0, 0, 1]
    assert row.attention_mask == [1] * 8
    assert row.sequence_ids == [None, 0, 0, 0, None, 1, 1, None]
    assert row.word_ids == [None, 0, 0, 1, None, 0, 1, None]
    assert row.offsets == [(0, 0), (0, 2), (3, 5), (6, 8), (0, 0), (0, 2), (3, 5), (0, 0)]


def test_encoding_of_a_slice_with_padding_on_either_side():
    a = _sequence([10, 11, 12, 13])
    row = Encoding(a, (1, 3), cls_id=CLS, sep_id=SEP)
    row.pad(7, PAD, "right")
    assert row.ids == [1, 11, 12, 2, 0, 0, 0] and row.n_tokens == 4
    assert row.attention_mask == [1, 1, 1, 1, 0, 0, 0]
    assert row.special_tokens_mask == [1, 0, 0, 1, 1, 1, 1]
    assert row.word_ids == [None, 1, 2, None, None, None, None]
    left = Encoding(a, (1, 3), cls_id=CLS, sep_id=SEP)
    left.pad(6, PAD, "left")
    assert left.ids == [0, 0, 1, 11, 12, 2]
    assert left.type_ids == [0] * 6 and left.sequence_ids == [None, None, None, 0, 0, None]
    assert left.offsets == [(0, 0), (0, 0), (0, 0), (3, 5), (6, 8), (0, 0)]


def test_encoding_without_special_tokens_has_zero_token_types():
    row = Encoding(_sequence([10]), (0, 1), _sequence([20, 21]), (0, 2), cls_id=CLS, sep_id=SEP,
                   add_special_tokens=False)
    assert row.ids == [10, 20, 21]
    assert row.type_ids == [0, 0, 0]  # as transformers' slow tokenizer
    assert row.special_tokens_mask == [0, 0, 0] and row.sequence_ids == [0, 1, 1]


def test_word_ids_from_segment_starts_and_word_start_table():
    # ids 5 and 7 begin words ("▁..." pieces); a segment (added token, chunk) always starts one
    table = bytes([0, 0, 0, 0, 0, 1, 0, 1])
    sequence = TokenSequence([5, 6, 6, 99, 6, 7, 6], segment_starts=(0, 3, 4), word_start_table=table)
    assert sequence.word_ids == [0, 0, 0, 1, 2, 3, 3]


def test_offsets_of_a_sequence_without_offsets_raise():
    row = Encoding(TokenSequence([10]), (0, 1), cls_id=CLS, sep_id=SEP)
    with pytest.raises(ValueError, match="return_offsets_mapping"):
        row.offsets


# ---------------------------------------------------------------------------------- padding


def _rows(*lengths):
    return [Encoding(_sequence(range(10, 10 + n)), (0, n), cls_id=CLS, sep_id=SEP) for n in lengths]


def test_pad_to_longest_to_max_length_and_to_a_multiple():
    rows = _rows(1, 4)
    pad(rows, strategy="longest", max_length=None, pad_id=PAD)
    assert [len(row) for row in rows] == [6, 6]
    rows = _rows(1, 4)
    pad(rows, strategy="max_length", max_length=5, pad_id=PAD)
    assert [len(row) for row in rows] == [5, 6]  # a longer row is left as it is
    rows = _rows(1, 4)
    pad(rows, strategy="longest", max_length=None, pad_id=PAD, pad_to_multiple_of=4)
    assert [len(row) for row in rows] == [8, 8] and rows[0].ids == [1, 10, 2, 0, 0, 0, 0, 0]
    rows = _rows(1, 4)
    pad(rows, strategy="do_not_pad", max_length=9, pad_id=PAD)
    assert [len(row) for row in rows] == [3, 6]


# ---------------------------------------------------------------------------------- arguments


def test_resolve_lengths_follows_transformers_defaults():
    resolve = lambda *args, **kwargs: resolve_lengths(*args, num_special_tokens=2, **kwargs)  # noqa: E731
    assert resolve(False, None, None, model_max_length=VERY_LARGE_INTEGER) == ("do_not_pad", "do_not_truncate", None)
    assert resolve(True, True, 8, model_max_length=VERY_LARGE_INTEGER) == ("longest", "longest_first", 8)
    # max_length alone turns truncation on
    assert resolve(False, None, 8, model_max_length=VERY_LARGE_INTEGER) == ("do_not_pad", "longest_first", 8)
    # no max_length: the tokenizer's model_max_length, if it has one
    assert resolve("max_length", "only_first", None, model_max_length=512) == ("max_length", "only_first", 512)
    with pytest.warns(UserWarning, match="not padding"):
        assert resolve("max_length", False, None, model_max_length=VERY_LARGE_INTEGER)[0] == "do_not_pad"
    with pytest.warns(UserWarning, match="not truncating"):
        assert resolve(False, True, None, model_max_length=VERY_LARGE_INTEGER)[1] == "do_not_truncate"
    with pytest.warns(UserWarning, match="max_length is ignored"):
        resolve(True, None, 8, model_max_length=VERY_LARGE_INTEGER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve(True, None, 8, model_max_length=VERY_LARGE_INTEGER, verbose=False)


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("longer", None, None), {}, ValueError, "padding"),
    ((False, "first", None), {}, ValueError, "truncation"),
    ((False, None, 1), {}, ValueError, "max_length=1 is smaller than the 2 special tokens"),
    ((False, None, 8.0), {}, TypeError, "max_length must be an int"),
    ((False, None, True), {}, TypeError, "max_length"),
    ((False, None, None), {"stride": -1}, ValueError, "stride"),
    ((True, True, 10), {"pad_to_multiple_of": 4}, ValueError, "pad_to_multiple_of=4"),
    ((True, None, None), {"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of"),
])
def test_resolve_lengths_rejects_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        resolve_lengths(*args, model_max_length=VERY_LARGE_INTEGER, num_special_tokens=2, **kwargs)


# ---------------------------------------------------------------------------------- BatchEncoding


def test_collate_returns_lists_or_int64_arrays():
    rows = _rows(1, 3)
    pad(rows, strategy="longest", max_length=None, pad_id=PAD)
    columns = ["input_ids", "attention_mask", "offset_mapping", "length"]
    lists = collate(rows, columns=columns, batched=True, overflow_mapping=[0, 0])
    assert lists["input_ids"] == [[1, 10, 2, 0, 0], [1, 10, 11, 12, 2]]
    assert lists["length"] == [3, 5] and lists["overflow_to_sample_mapping"] == [0, 0]
    arrays = collate(rows, columns=columns, batched=True, return_tensors="np")
    assert arrays["input_ids"].dtype == np.int64 and arrays["input_ids"].shape == (2, 5)
    assert arrays["offset_mapping"].shape == (2, 5, 2) and arrays["length"].tolist() == [3, 5]
    single = collate(rows[:1], columns=columns, batched=False)
    assert single["input_ids"] == [1, 10, 2, 0, 0] and single["length"] == 3
    assert collate(rows[:1], columns=columns, batched=False, return_tensors="np")["input_ids"].shape == (1, 5)


def test_collate_refuses_ragged_arrays():
    with pytest.raises(ValueError, match="padding=True"):
        collate(_rows(1, 3), columns=["input_ids"], batched=True, return_tensors="np")


def test_batch_encoding_is_a_dict_with_row_views():
    rows = _rows(2)
    encoding = collate(rows, columns=["input_ids"], batched=True, n_sequences=1)
    assert isinstance(encoding, dict) and encoding.input_ids == [[1, 10, 11, 2]]
    assert encoding[0] is rows[0] and encoding.encodings == rows
    assert encoding.word_ids(0) == [None, 0, 1, None] and encoding.sequence_ids() == [None, 0, 0, None]
    assert pickle.loads(pickle.dumps(encoding)).word_ids(0) == [None, 0, 1, None]
    with pytest.raises(IndexError, match="batch_index"):
        encoding.word_ids(1)
    with pytest.raises(ValueError, match="no per-row encodings"):
        BatchEncoding({"input_ids": [[1]]}).word_ids()
