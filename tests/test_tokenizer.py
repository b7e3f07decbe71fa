"""DebertaV2Tokenizer and DebertaV2TokenizerFast on the real DeBERTa-v3 vocabulary.

Oracles:
* the ``sentencepiece`` package for ids and pieces (the checkpoints were trained with it);
* transformers 4.57's slow ``DebertaV2Tokenizer`` for the calling conventions: special-token
  splitting, padding, truncation, pairs, masks, decode strings, files;
* transformers' fast tokenizer for offsets, word ids and overflow windows, on inputs where its
  ids agree with sentencepiece (it drops byte fallback) and its alignment is regular;
* hand-worked expectations for a fixed list of sentences.

The vocabulary is found through ``PYDEBERTA_SPM_MODEL`` (default ``../shared/data/deberta-v3/
spm.model`` next to the repository). A missing vocabulary fails the tests; it never skips them.
"""

import json
import pickle
import re
import unicodedata
import warnings
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import sentencepiece
import transformers
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from checkpoints import COMMIT, hf_cache
from pydeberta.hub import BUNDLED_MODELS
from texts import SPECIAL_TEXT, SPM_MODEL, corpus_texts, fail_without_vocabulary, plain_texts, regular_texts
from pydeberta.tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

# Sentences whose pieces were checked by hand (ids come from sentencepiece).
HAND_CHECKED = [
    ("Hello world", ["▁Hello", "▁world"]),
    ("The quick brown fox jumps over the lazy dog.",
     ["▁The", "▁quick", "▁brown", "▁fox", "▁jumps", "▁over", "▁the", "▁lazy", "▁dog", "."]),
    ("The [MASK] sat on the mat.", ["▁The", "[MASK]", "▁sat", "▁on", "▁the", "▁mat", "."]),
    ("hello[MASK]world", ["▁hello", "[MASK]", "▁world"]),  # a chunk after [MASK] starts a word
    ("is [MASK].", ["▁is", "[MASK]", "▁."]),
    ("[CLS]", ["[CLS]"]),
    ("", []),
    ("  spaced   out  ", ["▁spaced", "▁out"]),  # whitespace stripped and collapsed
    ("tab\there", ["▁tab", "▁here"]),
    ("non\u00a0breaking", ["▁non", "▁breaking"]),  # NBSP is a space to nmt_nfkc
    ("a\u200b", ["▁a"]),  # trailing ZWSP: dropped (transformers' fast tokenizer keeps a "▁")
    ("ｆｕｌｌ width", ["▁full", "▁width"]),  # full-width forms -> ASCII
    ("naïve café ①", ["▁naïve", "▁café", "▁1"]),  # ① -> 1 (NFKC)
    ("ﬁne", ["▁fine"]),  # ligature expanded
    ("e\u0301", ["▁é"]),  # combining accent composed
    ("㍿", ["▁", "株", "式", "会", "社"]),  # one character, four pieces
    ("x😀y 龘", ["▁x", "😀", "y", "▁", "<0xE9>", "<0xBE>", "<0x98>"]),  # 龘 = E9 BE 98: byte fallback
    ("don't", ["▁don", "'", "t"]),
]


@pytest.fixture(scope="module")
def v3_folder(tmp_path_factory):
    """A folder holding (a link to) the v3 spm.model, as from_pretrained expects."""
    fail_without_vocabulary()
    folder = tmp_path_factory.mktemp("deberta-v3")
    (folder / "spm.model").symlink_to(SPM_MODEL)
    return folder


@pytest.fixture(scope="module")
def sp(v3_folder):
    return sentencepiece.SentencePieceProcessor(model_file=str(v3_folder / "spm.model"))


@pytest.fixture(scope="module")
def slow(v3_folder):
    return DebertaV2Tokenizer.from_pretrained(v3_folder)


@pytest.fixture(scope="module")
def fast(v3_folder):
    return DebertaV2TokenizerFast.from_pretrained(v3_folder)


@pytest.fixture(scope="module")
def hf_slow(v3_folder):
    return transformers.DebertaV2Tokenizer.from_pretrained(v3_folder)


@pytest.fixture(scope="module")
def hf_fast(v3_folder):
    return transformers.DebertaV2TokenizerFast.from_pretrained(v3_folder)


@pytest.fixture(scope="module")
def hf_alignment_is_regular(sp):
    """Inputs on which transformers' fast tokenizer aligns offsets by its usual rules.

    Left out: characters the normaliser deletes (sentencepiece leaves them to the previous
    character, transformers to none), characters that are whitespace to only one of
    sentencepiece and Rust (transformers strips before normalising), combining marks and CR
    (its charsmap alignment of merged characters varies), and ``[UNK]`` followed by whitespace
    (``[UNK]`` is a "normalised" added token there), and characters whose normal form starts a
    new word (``"¨"`` becomes space + combining diaeresis: which of two merged spaces the ``▁``
    stands for is a matter of convention).
    """
    cache = {}

    def irregular(char):
        if char not in cache:
            normalized = sp.normalize("x" + char + "x")
            deleted, space = normalized == "▁xx", normalized == "▁x▁x"
            expands_to_space = "▁" in normalized[2:-1] and not space  # e.g. "¨" -> " \u0308" under NFKC
            cache[char] = (deleted or space != char.isspace() or char == "\r" or expands_to_space
                           or unicodedata.category(char).startswith("M"))
        return cache[char]

    return lambda text: not any(irregular(char) for char in text) and not re.search(r"\[UNK\]\s", text)


# ---------------------------------------------------------------------------------- vocabulary


def test_v3_vocabulary_sizes_and_special_token_ids(slow, fast):
    for tok in (slow, fast):
        assert tok.vocab_size == 128000
        assert len(tok) == 128001
        assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id, tok.mask_token_id) == (
            0, 1, 2, 3, 128000)
        assert (tok.bos_token, tok.eos_token, tok.mask_token) == ("[CLS]", "[SEP]", "[MASK]")
        assert tok.model_max_length == int(1e30)


def test_vocabulary_and_special_tokens_equal_transformers(slow, hf_slow):
    assert slow.get_vocab() == hf_slow.get_vocab()
    assert slow.get_added_vocab() == hf_slow.get_added_vocab()
    assert slow.all_special_tokens == hf_slow.all_special_tokens
    assert slow.all_special_ids == hf_slow.all_special_ids
    assert slow.special_tokens_map == hf_slow.special_tokens_map
    assert slow.num_special_tokens_to_add() == 2 and slow.num_special_tokens_to_add(pair=True) == 3


def test_token_id_conversions_equal_transformers(slow, fast, hf_slow):
    ids = [0, 1, 2, 3, 4, 5, 127, 260, 12018, 127999, 128000, 128001, 128099]
    tokens = ["[MASK]", "▁hello", "<0xE9>", "[CLS]", "not-a-piece", "▁", "[UNK]"]
    for tok in (slow, fast):
        assert tok.convert_ids_to_tokens(ids) == hf_slow.convert_ids_to_tokens(ids)
        assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True) == hf_slow.convert_ids_to_tokens(
            ids, skip_special_tokens=True)
        assert tok.convert_ids_to_tokens(128000) == "[MASK]"
        assert tok.convert_tokens_to_ids(tokens) == hf_slow.convert_tokens_to_ids(tokens)
        assert tok.convert_tokens_to_ids("[MASK]") == 128000
        assert tok.convert_tokens_to_ids(None) is None


# ---------------------------------------------------------------------------------- ids


@pytest.mark.parametrize("text, pieces", HAND_CHECKED)
def test_hand_checked_sentences(slow, fast, sp, text, pieces):
    expected_ids = [slow.convert_tokens_to_ids(piece) for piece in pieces]
    for tok in (slow, fast):
        assert tok.tokenize(text) == pieces
        assert tok(text)["input_ids"] == [1] + expected_ids + [2]
    if not any(token in text for token in SPECIAL_TEXT):
        assert sp.encode(text, out_type=str) == pieces


def test_special_token_text_splits_even_without_spaces(slow):
    assert slow.encode("hello[MASK]world") == slow.encode("hello [MASK] world") == [1, 12018, 128000, 447, 2]
    assert slow.tokenize("a[SEP][SEP]b") == ["▁a", "[SEP]", "[SEP]", "▁b"]
    assert slow.tokenize("[MASK") == ["▁[", "MAS", "K"]  # near misses are text


def test_tokenize_with_special_tokens_matches_the_ids(fast, hf_fast):
    tokens = fast.tokenize("Hello [MASK]", "world", add_special_tokens=True)
    assert tokens == ["[CLS]", "▁Hello", "[MASK]", "[SEP]", "▁world", "[SEP]"]
    assert tokens == fast.convert_ids_to_tokens(fast("Hello [MASK]", "world")["input_ids"])
    assert tokens == hf_fast.tokenize("Hello [MASK]", "world", add_special_tokens=True)


@settings(max_examples=300, deadline=None)
@given(text=plain_texts)
@example(text="")
@example(text=" \t\n ")
@example(text="x\u200b")
@example(text="\u200b\u200bab")
@example(text="A\u0302\u0300 A\u0302\u0300")
@example(text="龘𠀀 👨\u200d👩\u200d👧")
def test_ids_and_pieces_equal_sentencepiece(slow, fast, sp, text):
    for tok in (slow, fast):
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text)
        assert tok.tokenize(text) == sp.encode(text, out_type=str)


@settings(max_examples=300, deadline=None)
@given(text=corpus_texts)
@example(text="[MASK]")
@example(text="[CLS][SEP]")
@example(text="x\u200b[SEP]")
@example(text="is [MASK].")
@example(text="[UNK]  1p")
def test_ids_and_tokens_equal_transformers_slow(slow, fast, hf_slow, text):
    expected = hf_slow(text)["input_ids"]
    assert slow(text)["input_ids"] == expected
    assert fast(text)["input_ids"] == expected
    assert slow.tokenize(text) == fast.tokenize(text) == hf_slow.tokenize(text)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(corpus_texts, max_size=12), pairs=st.lists(corpus_texts, min_size=12, max_size=12))
def test_fast_batch_equals_slow_one_by_one(slow, fast, texts, pairs):
    pairs = pairs[:len(texts)]
    assert fast(texts)["input_ids"] == [slow(text)["input_ids"] for text in texts]
    assert fast(texts, pairs)["input_ids"] == [slow(a, b)["input_ids"] for a, b in zip(texts, pairs)]


def test_fast_encodes_a_batch_in_one_sentencepiece_call(fast, monkeypatch):
    calls = []
    real_encode = fast._sp.encode

    def counting_encode(inputs, **kwargs):
        calls.append(inputs)
        return real_encode(inputs, **kwargs)

    monkeypatch.setattr(fast._sp, "encode", counting_encode)
    texts = [f"sentence number {i} [MASK] with a special token" for i in range(50)]
    ids = fast(texts, texts)["input_ids"]
    assert len(calls) == 1 and len(calls[0]) == 200  # 2 chunks per text, texts and pairs
    monkeypatch.setattr(fast, "num_threads", 1)
    assert fast(texts, texts)["input_ids"] == ids


# ---------------------------------------------------------------------------------- decode


@settings(max_examples=200, deadline=None)
@given(text=corpus_texts, skip=st.booleans(), clean_up=st.sampled_from([None, True, False]))
@example(text="Hello [MASK] world.  Ok?", skip=False, clean_up=None)
@example(text="[CLS][CLS] a", skip=False, clean_up=True)
def test_decode_equals_transformers_slow(slow, fast, hf_slow, text, skip, clean_up):
    ids = hf_slow(text)["input_ids"]
    expected = hf_slow.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean_up)
    assert slow.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean_up) == expected
    assert fast.decode(np.array(ids), skip_special_tokens=skip, clean_up_tokenization_spaces=clean_up) == expected


@settings(max_examples=200, deadline=None)
@given(text=plain_texts)
def test_decode_of_encode_is_sentencepieces_round_trip(slow, sp, text):
    # transformers' decode strips the result (Python's whitespace, e.g. U+0085 too)
    assert slow.decode(slow.encode(text), skip_special_tokens=True) == sp.decode(sp.encode(text)).strip()


@pytest.mark.parametrize("text", ["Hello world, this is DeBERTa.", "naïve café 東京 😀", "x😀y 龘 𠀀",
                                  "a-b (c) [d]"])
def test_decode_of_encode_round_trips_normalised_text(fast, text):
    assert fast.decode(fast.encode(text), skip_special_tokens=True) == text
    assert fast.batch_decode(fast([text, text], padding=True, return_tensors="np")["input_ids"],
                             skip_special_tokens=True) == [text, text]


def test_decode_spacing_around_special_tokens_follows_transformers_slow(slow):
    ids = slow.encode("Hello [MASK] world.  Ok?")
    assert slow.decode(ids) == "[CLS] Hello[MASK] world. Ok?[SEP]"
    assert slow.decode(ids, skip_special_tokens=True) == "Hello world. Ok?"
    assert slow.decode([12018, 128050, 447]) == "hello[UNK]world"  # ids past the vocabulary read as [UNK]
    assert slow.decode([12018, 128050, 447], skip_special_tokens=True) == "hello world"
    assert slow.convert_tokens_to_string(["▁a", "<0xE9>", "<0xBE>", "<0x98>"]) == "a龘"


# ---------------------------------------------------------------------------------- offsets


@settings(max_examples=300, deadline=None)
@given(text=regular_texts)
@example(text="  hello   world  ")
@example(text="x [MASK]  here")
@example(text="Iﬁ4 x\u00a0…0 ㎏ ㍿x")
@example(text="a \t\n b")
def test_offsets_and_word_ids_equal_transformers_fast(fast, hf_fast, hf_alignment_is_regular, text):
    expected = hf_fast(text, return_offsets_mapping=True)
    ours = fast(text, return_offsets_mapping=True)
    # transformers has no byte fallback (other ids), or aligns this input by other rules
    assume(expected["input_ids"] == ours["input_ids"] and hf_alignment_is_regular(text))
    assert ours["offset_mapping"] == [tuple(span) for span in expected["offset_mapping"]]
    assert ours.word_ids() == expected.word_ids()
    assert ours.sequence_ids() == expected.sequence_ids()


def test_offsets_are_not_available_on_the_slow_tokenizer(slow):
    with pytest.raises(NotImplementedError, match="DebertaV2TokenizerFast"):
        slow("hello", return_offsets_mapping=True)


def test_word_ids_and_sequence_ids_of_a_pair(fast):
    encoding = fast("Hello brave new world", "naïve [MASK]x", return_offsets_mapping=True)
    assert fast.convert_ids_to_tokens(encoding["input_ids"]) == [
        "[CLS]", "▁Hello", "▁brave", "▁new", "▁world", "[SEP]", "▁naïve", "[MASK]", "▁x", "[SEP]"]
    assert encoding.word_ids() == [None, 0, 1, 2, 3, None, 0, 1, 2, None]
    assert encoding.sequence_ids() == [None, 0, 0, 0, 0, None, 1, 1, 1, None]
    assert encoding["offset_mapping"] == [(0, 0), (0, 5), (5, 11), (11, 15), (15, 21), (0, 0),
                                          (0, 5), (6, 12), (12, 13), (0, 0)]


def test_pre_split_words_follow_transformers(slow, fast, hf_slow, hf_fast):
    words = ["Hello", "New York", "[MASK]x", "", "café", "ﬁne"]
    encoding = fast(words, is_split_into_words=True, return_offsets_mapping=True)
    expected = hf_fast(words, is_split_into_words=True, return_offsets_mapping=True)
    assert encoding["input_ids"] == slow(words, is_split_into_words=True)["input_ids"] == hf_slow(
        words, is_split_into_words=True)["input_ids"]
    assert encoding.word_ids() == expected.word_ids() == [None, 0, 1, 1, 2, 2, 4, 5, None]
    assert encoding["offset_mapping"] == [tuple(span) for span in expected["offset_mapping"]]
    batch = [["a", "b"], ["c"]], [["d"], ["e", "f"]]
    assert fast(*batch, is_split_into_words=True)["input_ids"] == hf_slow(*batch, is_split_into_words=True)["input_ids"]


# ---------------------------------------------------------------------------------- calling conventions

SENTENCES = ["one two three four five six seven eight nine ten", "alpha beta gamma", "x", ""]


def _as_plain(encoding):
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in encoding.items()}


@pytest.mark.parametrize("padding", [False, True, "longest", "max_length", "do_not_pad"])
@pytest.mark.parametrize("truncation", [None, False, True, "longest_first", "only_first", "do_not_truncate"])
@pytest.mark.parametrize("max_length", [None, 7, 16])
@pytest.mark.parametrize("pair", [False, True])
def test_padding_truncation_and_masks_equal_transformers_slow(slow, hf_slow, padding, truncation, max_length, pair):
    texts = SENTENCES[:3]
    pairs = ["gamma delta", "six five four", "y"] if pair else None
    kwargs = dict(padding=padding, truncation=truncation, max_length=max_length, return_special_tokens_mask=True,
                  return_length=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = hf_slow(texts, pairs, **kwargs)
        assert _as_plain(slow(texts, pairs, **kwargs)) == dict(expected)
        for i, text in enumerate(texts):  # one example at a time (no batch axis)
            expected = dict(hf_slow(text, pairs[i] if pair else None, **kwargs))
            # "length" counts real tokens; transformers' slow tokenizer counts the padding too
            # when it pads a single example (but not in batches, nor does its fast one)
            expected["length"] = expected["attention_mask"].count(1)
            assert _as_plain(slow(text, pairs[i] if pair else None, **kwargs)) == expected


@pytest.mark.parametrize("kwargs", [
    dict(padding=True),
    dict(padding="max_length", max_length=20, truncation=True),
    dict(padding=True, pad_to_multiple_of=8),
    dict(padding=True, padding_side="left"),
    dict(padding=True, return_token_type_ids=False, return_attention_mask=False),
])
def test_numpy_tensors_equal_transformers(slow, fast, hf_slow, kwargs):
    expected = hf_slow(SENTENCES, return_tensors="np", **kwargs)
    for tok in (slow, fast):
        ours = tok(SENTENCES, return_tensors="np", **kwargs)
        assert set(ours) == set(expected)
        for key in expected:
            assert ours[key].dtype == np.int64 and np.array_equal(ours[key], expected[key]), key
    single = fast("hello world", return_tensors="np")
    assert single["input_ids"].shape == (1, 4) and single.input_ids.tolist() == [[1, 12018, 447, 2]]


LONG = ["one two three four five six seven eight nine ten eleven twelve", "alpha beta", "a b c d e f g h i j k l"]
SHORT = ["x y", "z", "u v w"]


@pytest.mark.parametrize("truncation, first, second", [
    (True, LONG, None), ("longest_first", LONG, None), ("only_first", LONG, None), ("only_first", LONG, SHORT),
    ("only_second", SHORT, LONG)])
@pytest.mark.parametrize("max_length, stride", [(8, 0), (8, 1), (12, 0), (12, 3)])
def test_overflow_windows_equal_transformers_fast(fast, hf_fast, truncation, first, second, max_length, stride):
    kwargs = dict(truncation=truncation, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                  return_offsets_mapping=True, return_special_tokens_mask=True, padding=True)
    expected = hf_fast(first, second, **kwargs)
    ours = fast(first, second, **kwargs)
    expected_plain = dict(expected)
    expected_plain["offset_mapping"] = [[tuple(span) for span in row] for row in expected["offset_mapping"]]
    assert dict(ours) == expected_plain
    for row in range(len(ours["input_ids"])):
        assert ours.word_ids(row) == expected.word_ids(row)
        assert ours.sequence_ids(row) == expected.sequence_ids(row)


def test_pair_batch_padding_truncation_hand_worked(fast):
    ids = {word: fast.encode(word, add_special_tokens=False) for word in "one two three four five six x y".split()}
    one, two, three, four, five, six, x, y = (ids[w][0] for w in "one two three four five six x y".split())
    encoding = fast(["one two three four five six", "x"], ["y", "x y"], truncation="longest_first", max_length=7,
                    padding=True, return_special_tokens_mask=True, return_length=True)
    # 6 + 1 tokens + 3 special = 10 > 7: remove 3, all from the longer first sequence
    assert encoding["input_ids"] == [[1, one, two, three, 2, y, 2], [1, x, 2, x, y, 2, 0]]
    assert encoding["token_type_ids"] == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 0]]
    assert encoding["attention_mask"] == [[1] * 7, [1] * 6 + [0]]
    assert encoding["special_tokens_mask"] == [[1, 0, 0, 0, 1, 0, 1], [1, 0, 1, 0, 0, 1, 1]]
    assert encoding["length"] == [7, 6]
    # only_second with a window of 2 tokens (8 - 3 special - 3 of the first) and stride 1
    overflow = fast("one two three", "one two three four five six", truncation="only_second", max_length=8,
                    stride=1, return_overflowing_tokens=True)
    head = [1, one, two, three, 2]
    assert overflow["input_ids"] == [head + [one, two, 2], head + [two, three, 2], head + [three, four, 2],
                                     head + [four, five, 2], head + [five, six, 2]]
    assert overflow["overflow_to_sample_mapping"] == [0, 0, 0, 0, 0]


def test_template_helpers_equal_transformers(slow, hf_slow):
    a, b = [10, 11, 12], [20, 21]
    for args in ((a,), (a, b)):
        assert slow.build_inputs_with_special_tokens(*args) == hf_slow.build_inputs_with_special_tokens(*args)
        assert slow.create_token_type_ids_from_sequences(*args) == hf_slow.create_token_type_ids_from_sequences(*args)
        assert slow.get_special_tokens_mask(*args) == hf_slow.get_special_tokens_mask(*args)
    with_specials = [1, 10, 128000, 2, 0]
    assert slow.get_special_tokens_mask(with_specials, already_has_special_tokens=True) == [1, 0, 1, 1, 1]


def test_result_is_dict_like_with_attribute_access(fast):
    encoding = fast(["hello world", "x"], padding=True)
    assert encoding.input_ids is encoding["input_ids"]
    assert list(encoding) == ["input_ids", "token_type_ids", "attention_mask"]
    assert encoding[1].ids == [1, 1204, 2, 0]
    assert encoding.n_sequences == 1
    assert pickle.loads(pickle.dumps(encoding)).word_ids(0) == [None, 0, 1, None]
    with pytest.raises(AttributeError):
        encoding.offset_mapping


def test_empty_batch_gives_empty_columns(fast):
    assert dict(fast([])) == {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    assert fast([], padding=True, return_tensors="np")["input_ids"].shape == (0, 0)


# ---------------------------------------------------------------------------------- files


def test_reads_the_folder_transformers_save_pretrained_writes(tmp_path, v3_folder):
    hf = transformers.DebertaV2Tokenizer.from_pretrained(v3_folder, do_lower_case=True, model_max_length=512)
    hf.save_pretrained(tmp_path)
    for cls in (DebertaV2Tokenizer, DebertaV2TokenizerFast):
        ours = cls.from_pretrained(tmp_path)
        assert ours.do_lower_case and ours.model_max_length == 512
        assert ours.get_vocab() == hf.get_vocab() and ours.all_special_tokens == hf.all_special_tokens
        text = "Hello [MASK] WORLD, ΣΑΣ"
        assert ours(text)["input_ids"] == hf(text)["input_ids"]
        assert ours(text, truncation=True)["input_ids"] == hf(text, truncation=True)["input_ids"]


def test_transformers_reads_the_folder_we_save(tmp_path, v3_folder):
    ours = DebertaV2TokenizerFast.from_pretrained(v3_folder, split_by_punct=True, model_max_length=256,
                                                  vocab_type="spm")
    paths = ours.save_pretrained(tmp_path)
    assert sorted(Path(path).name for path in paths) == [
        "added_tokens.json", "special_tokens_map.json", "spm.model", "tokenizer_config.json"]
    assert (tmp_path / "spm.model").read_bytes() == SPM_MODEL.read_bytes()
    assert json.loads((tmp_path / "added_tokens.json").read_text()) == {"[MASK]": 128000}
    text = "Hello, [MASK] world! (ok)"
    assert ours(text)["input_ids"] != DebertaV2TokenizerFast.from_pretrained(v3_folder)(text)["input_ids"]
    hf = transformers.DebertaV2Tokenizer.from_pretrained(tmp_path)
    assert hf.split_by_punct and hf.model_max_length == 256 and hf.mask_token_id == 128000
    assert hf(text)["input_ids"] == ours(text)["input_ids"]
    hf_fast = transformers.DebertaV2TokenizerFast.from_pretrained(tmp_path)  # its split_by_punct differs
    assert hf_fast.model_max_length == 256 and hf_fast.mask_token_id == 128000
    assert hf_fast("plain [MASK] words")["input_ids"] == ours("plain [MASK] words")["input_ids"]
    again = DebertaV2Tokenizer.from_pretrained(tmp_path)
    assert again.init_kwargs == {"vocab_type": "spm"} and again.split_by_punct
    assert again(text)["input_ids"] == ours(text)["input_ids"]


def test_added_tokens_from_transformers_split_and_decode_alike(tmp_path, v3_folder):
    hf = transformers.DebertaV2Tokenizer.from_pretrained(v3_folder)
    hf.add_tokens(["<extra>", "new_word"])
    hf.add_special_tokens({"additional_special_tokens": ["<special>"]})
    hf.save_pretrained(tmp_path)
    ours = DebertaV2TokenizerFast.from_pretrained(tmp_path)
    assert len(ours) == len(hf) == 128004 and ours.get_added_vocab() == hf.get_added_vocab()
    assert ours.all_special_tokens == hf.all_special_tokens
    text = "a<extra>b new_word [MASK]<special> c"
    ids = hf(text)["input_ids"]
    assert ours(text)["input_ids"] == ids
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)


def test_save_vocabulary_writes_the_sentencepiece_model(tmp_path, slow):
    (path,) = slow.save_vocabulary(tmp_path, filename_prefix="v3")
    assert Path(path).name == "v3-spm.model" and Path(path).read_bytes() == SPM_MODEL.read_bytes()


def test_pickled_tokenizer_gives_the_same_ids(fast):
    text = "Pickled [MASK] café 龘"
    restored = pickle.loads(pickle.dumps(fast))
    assert restored(text, return_offsets_mapping=True) == fast(text, return_offsets_mapping=True)


def test_from_pretrained_resolves_names_as_models_do(tmp_path, monkeypatch):
    """A Hub id found in the offline Hugging Face cache, the bundled name and a file inside the
    folder load the tokenizer the folder itself gives (pydeberta.hub.resolve_model_folder)."""
    tiny = BUNDLED_MODELS["pydeberta/tiny"]
    cache = tmp_path / "hub"
    files = ("spm.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
    snapshot = hf_cache(cache, "org/tiny-tokenizer", {name: (tiny / name).read_bytes() for name in files})
    # the cache is laid out as huggingface_hub itself reads it
    found = huggingface_hub.try_to_load_from_cache("org/tiny-tokenizer", "spm.model", cache_dir=cache)
    assert found == str(snapshot / "spm.model")
    assert [repo.repo_id for repo in huggingface_hub.scan_cache_dir(cache).repos] == ["org/tiny-tokenizer"]

    texts = ["Hello [MASK] world, naïve ﬁsh.", "  İstanbul   龘"]
    reference = DebertaV2TokenizerFast.from_pretrained(tiny)
    expected = reference(texts, return_offsets_mapping=True)
    assert reference.mask_token_id == 8000 and len(reference) == 8001
    hub_kwargs = dict(revision=COMMIT, cache_dir=cache, local_files_only=True)
    loaded = [DebertaV2TokenizerFast.from_pretrained("org/tiny-tokenizer", **hub_kwargs),
              DebertaV2TokenizerFast.from_pretrained("pydeberta/tiny"),
              DebertaV2TokenizerFast.from_pretrained(tiny / "spm.model")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline without local_files_only: the cache, no network
    loaded.append(DebertaV2TokenizerFast.from_pretrained("org/tiny-tokenizer", cache_dir=cache, do_lower_case=True))
    assert loaded[0].name_or_path == str(snapshot)
    for tokenizer in loaded[:3]:
        assert tokenizer(texts, return_offsets_mapping=True) == expected
        assert tokenizer.init_kwargs == reference.init_kwargs  # revision, cache_dir, ... are not config
        assert tokenizer.get_vocab() == reference.get_vocab()
    lowered = DebertaV2TokenizerFast.from_pretrained(tiny, do_lower_case=True)
    assert loaded[3].do_lower_case and loaded[3](texts)["input_ids"] == lowered(texts)["input_ids"]
    slow = DebertaV2Tokenizer.from_pretrained("org/tiny-tokenizer", cache_dir=cache)
    assert slow(texts)["input_ids"] == expected["input_ids"]
    with pytest.raises(FileNotFoundError, match="org/missing"):
        DebertaV2TokenizerFast.from_pretrained("org/missing", cache_dir=cache)
    with pytest.raises(TypeError, match="pretrained_model_name_or_path"):
        DebertaV2TokenizerFast.from_pretrained(5)


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, names", [
    (lambda tok: tok(None), ValueError, "text"),
    (lambda tok: tok(5), TypeError, "text"),
    (lambda tok: tok(b"bytes"), TypeError, "text"),
    (lambda tok: tok(["ok", 5]), TypeError, r"text\[1\]"),
    (lambda tok: tok(["a", "b"], ["c"]), ValueError, "text_pair"),
    (lambda tok: tok("a", ["b"]), ValueError, "text_pair"),
    (lambda tok: tok([["a"], "b"], is_split_into_words=True), TypeError, r"text\[1\]"),
    (lambda tok: tok("a", padding="longer"), ValueError, "padding"),
    (lambda tok: tok("a", truncation="only_third"), ValueError, "truncation"),
    (lambda tok: tok("a", max_length=1), ValueError, "max_length"),
    (lambda tok: tok("a", "b", max_length=2, truncation=True), ValueError, "max_length"),
    (lambda tok: tok("a", max_length="8"), TypeError, "max_length"),
    (lambda tok: tok("a", max_length=-1), ValueError, "max_length"),
    (lambda tok: tok("a b c d", max_length=4, truncation=True, stride=2, return_overflowing_tokens=True),
     ValueError, "stride"),
    (lambda tok: tok("a", "b", truncation=True, max_length=8, return_overflowing_tokens=True), ValueError,
     "only_first"),
    (lambda tok: tok("a", truncation="only_second", max_length=8), ValueError, "text_pair"),
    (lambda tok: tok("one two three", "x", truncation="only_first", max_length=4), ValueError, "max_length"),
    (lambda tok: tok("a", return_tensors="pt"), ValueError, "return_tensors"),
    (lambda tok: tok(["a", "b c"], return_tensors="np"), ValueError, "padding"),
    (lambda tok: tok("a", padding_side="middle"), ValueError, "padding_side"),
    (lambda tok: tok("a", unknown_option=True), TypeError, "unknown_option"),
    (lambda tok: tok.encode(["a", "b"]), TypeError, "encode"),
    (lambda tok: tok.decode("1 2"), TypeError, "token_ids"),
    (lambda tok: tok.decode([1, "2"]), TypeError, r"token_ids\[1\]"),
    (lambda tok: tok.decode([-1]), ValueError, ">= 0"),
    (lambda tok: tok.tokenize(None), TypeError, "text"),
    (lambda tok: tok.convert_tokens_to_ids([1]), TypeError, "tokens"),
])
def test_bad_input_raises_naming_the_argument(slow, fast, call, error, names):
    for tok in (slow, fast):
        with pytest.raises(error, match=names):
            call(tok)


def test_missing_or_unreadable_vocabulary_raises(tmp_path, v3_folder):
    with pytest.raises(ValueError, match="vocab_file.*no sentencepiece model file"):
        DebertaV2Tokenizer(tmp_path / "missing.model")
    (tmp_path / "spm.model").write_text("not a model")
    with pytest.raises(ValueError, match="vocab_file.*not a readable sentencepiece model"):
        DebertaV2TokenizerFast(tmp_path / "spm.model")
    with pytest.raises(TypeError, match="vocab_file"):
        DebertaV2Tokenizer(None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="vocab_file"):
        DebertaV2TokenizerFast.from_pretrained(empty)
    with pytest.raises(FileNotFoundError, match="nowhere.*no such folder or file"):
        DebertaV2TokenizerFast.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="sp_model_kwargs"):
        DebertaV2Tokenizer(v3_folder / "spm.model", sp_model_kwargs={"no_such_option": 1})
