"""pydeberta.pretokenize: what the tokenizers do to a text before sentencepiece sees it.

Oracles: transformers 4.57's ``_is_punctuation`` and ``_run_split_on_punc``; the strings its slow
``DebertaV2Tokenizer`` hands to sentencepiece, recorded while it tokenizes (on the bundled tiny
vocabulary, so no download is needed); Python's per-character ``str.lower``; hand-worked examples.
"""

import sys

import pytest
import transformers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers.models.deberta_v2 import tokenization_deberta_v2

from pydeberta.hub import BUNDLED_MODELS
from pydeberta.pretokenize import added_token_pattern, is_punctuation, lower_case, segments, split_on_punctuation

TINY = BUNDLED_MODELS["pydeberta/tiny"]
FLAGS = [(lower, punct) for lower in (False, True) for punct in (False, True)]
# Letters whose lower case is longer (İ) or context-dependent in str.lower (Σ), punctuation of
# both kinds (ASCII symbols, Unicode P*), whitespace, added tokens and near misses.
ATOMS = (list("abcXYZ019 .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`") + ["Hello", " the ", "don't", "naïve"]
         + ["İ", "İİ", "Σ", "ΣΑΣ", "ß", "ﬁ", "Å", "e\u0301", "¿", "·", "、", "«", "»", "€", "™", "東京", "😀"]
         + ["\u00a0", "\u200b", "\u3000", "\t", "\n", "\r\n", "  "]
         + ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK", "[mask]", "MASK]", "[[MASK]]"])
texts = st.lists(st.one_of(st.sampled_from(ATOMS), st.characters(exclude_categories=("Cs",))),
                 max_size=25).map("".join)


@pytest.fixture(scope="module")
def hf_slow():
    """transformers' slow tokenizer on the bundled vocabulary, per (do_lower_case, split_by_punct)."""
    return {(lower, punct): transformers.DebertaV2Tokenizer.from_pretrained(TINY, do_lower_case=lower,
                                                                             split_by_punct=punct)
            for lower, punct in FLAGS}


def handed_to_sentencepiece(hf, text):
    """``(strings, tokens)``: the strings transformers' slow tokenizer passes to sentencepiece
    while it tokenizes ``text``, in order, and the tokens it returns."""
    handed, spm = [], hf._tokenizer.spm
    encode = spm.encode
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spm, "encode", lambda string, **kwargs: handed.append(string) or encode(string, **kwargs))
        tokens = hf.tokenize(text)
    return handed, tokens


def source_of(segment):
    """``(start, stop)`` of the characters of the text a segment was made from."""
    start, string, _, index_map = segment
    return start, start + (len(string) if index_map is None else index_map[-1])


# ---------------------------------------------------------------------------------- punctuation


def test_is_punctuation_equals_transformers_on_every_character():
    differ = [hex(cp) for cp in range(sys.maxunicode + 1)
              if is_punctuation(chr(cp)) != tokenization_deberta_v2._is_punctuation(chr(cp))]
    assert differ == []


@pytest.mark.parametrize("char, expected", [
    ("a", False), ("7", False), (" ", False), ("\n", False), ("é", False), ("東", False),
    (",", True), ("-", True), ("_", True), ("'", True),  # ASCII, Unicode category P*
    ("$", True), ("^", True), ("`", True), ("+", True), ("~", True),  # ASCII symbols count too
    ("€", False), ("™", False), ("©", False),  # ... but other symbols do not
    ("¿", True), ("·", True), ("、", True), ("«", True), ("‐", True),  # Unicode P*
])
def test_is_punctuation_hand_checked(char, expected):
    assert is_punctuation(char) is expected


@settings(max_examples=300, deadline=None)
@given(text=texts)
@example(text="")
@example(text="...")
@example(text="I was born in 92000, and this is falsé.")
def test_split_on_punctuation_equals_transformers(hf_slow, text):
    runs = split_on_punctuation(text)
    assert [run for _, run in runs] == hf_slow[False, True]._tokenizer._run_split_on_punc(text)
    starts = [sum(len(run) for _, run in runs[:i]) for i in range(len(runs))]
    assert [start for start, _ in runs] == starts  # each run at its place: they tile the text


def test_split_on_punctuation_hand_checked():
    assert split_on_punctuation("I was born in 92000, and this is falsé.") == [
        (0, "I was born in 92000"), (19, ","), (20, " and this is falsé"), (38, ".")]
    assert split_on_punctuation("¿Qué?!") == [(0, "¿"), (1, "Qué"), (4, "?"), (5, "!")]
    assert split_on_punctuation("a$b") == [(0, "a"), (1, "$"), (2, "b")]
    assert split_on_punctuation("") == []


# ---------------------------------------------------------------------------------- lower case


def test_lower_case_hand_checked():
    # character by character: a final Σ becomes σ, not the final sigma ς of str.lower()
    assert lower_case("ΣΑΣ") == ("σασ", None) and "ΣΑΣ".lower() == "σας"
    assert lower_case("HeLLo, WORLD") == ("hello, world", None)
    # "İ".lower() is "i" + U+0307: both characters map back to their İ
    assert lower_case("İİ Fox") == ("i\u0307i\u0307 fox", [0, 0, 1, 1, 2, 3, 4, 5, 6])
    assert lower_case("") == ("", None)


@settings(max_examples=300, deadline=None)
@given(text=texts)
@example(text="İstanbul İ")
def test_lower_case_is_str_lower_of_each_character(text):
    lowered, index_map = lower_case(text)
    if index_map is None:
        assert len(lowered) == len(text)
        index_map = list(range(len(text) + 1))
    assert len(index_map) == len(lowered) + 1 and index_map[-1] == len(text)
    for i, char in enumerate(text):  # the characters mapped to text[i] are its lower case
        assert "".join(low for low, source in zip(lowered, index_map) if source == i) == char.lower()


# ---------------------------------------------------------------------------------- added tokens


def test_added_token_pattern_prefers_the_longest_token():
    pattern = added_token_pattern(["[MASK", "[MASK]", "[MASK]]"])
    assert pattern.findall("a[MASK]]b[MASK]c[MASK") == ["[MASK]]", "[MASK]", "[MASK"]
    assert pattern.findall("[mask] MASK]") == []
    assert added_token_pattern([]) is None
    assert added_token_pattern(["a.b"]).findall("a.b axb") == ["a.b"]  # tokens are literal text


def test_segments_hand_checked():
    ids = {"[CLS]": 1, "[SEP]": 2, "[MASK]": 128000}
    pattern = added_token_pattern(ids)
    assert segments("The [MASK] sat.", pattern, ids) == [
        (0, "The ", None, None), (4, "[MASK]", 128000, None), (10, " sat.", None, None)]
    # no text between two added tokens, none before the first: nothing to encode there
    assert segments("[CLS][SEP]x", pattern, ids) == [(0, "[CLS]", 1, None), (5, "[SEP]", 2, None),
                                                     (10, "x", None, None)]
    assert segments("[MASK", pattern, ids) == [(0, "[MASK", None, None)]  # a near miss is text
    assert segments("", pattern, ids) == [] and segments("ab", None, {}) == [(0, "ab", None, None)]
    # flags apply between added tokens, never to them
    assert segments("A.[MASK]İ!", pattern, ids, do_lower_case=True, split_by_punct=True) == [
        (0, "a", None, None), (1, ".", None, None), (2, "[MASK]", 128000, None),
        (8, "i\u0307", None, [0, 0, 1]), (9, "!", None, [0, 1])]


@settings(max_examples=200, deadline=None)
@given(text=texts)
@example(text="The [MASK] sat on the mat.")
@example(text="hello[MASK]world")
@example(text=" \tHeLLo!how  \n Are yoU?  ")
@example(text="ΣΑΣ İstanbul [MASK]İ, [[MASK]]")
@example(text="[CLS][SEP] [UNK]")
def test_segments_are_what_transformers_slow_hands_to_sentencepiece(hf_slow, text):
    for (lower, punct), hf in hf_slow.items():
        added = hf.get_added_vocab()
        found = segments(text, added_token_pattern(added), added, do_lower_case=lower, split_by_punct=punct)
        handed, tokens = handed_to_sentencepiece(hf, text)
        assert [string for _, string, token_id, _ in found if token_id is None] == handed, (lower, punct)
        assert [(string, token_id) for _, string, token_id, _ in found if token_id is not None] == [
            (token, added[token]) for token in tokens if token in added], (lower, punct)
        # every segment says where it came from: the segments tile the text, in order
        sources = [source_of(segment) for segment in found]
        assert [start for start, _ in sources] + [len(text)] == [0] + [stop for _, stop in sources]
        for segment, (start, stop) in zip(found, sources):
            original = text[start:stop]
            if lower and segment[2] is None:
                original = "".join(char.lower() for char in original)
            assert original == segment[1], (lower, punct, segment)
