"""pydeberta.offsets: character spans of sentencepiece pieces, on the bundled tiny vocabulary and
the DeBERTa-v3 one.

Oracles: sentencepiece's own alignment (``encode(..., out_type="proto")`` gives each piece's
byte span in the input), which the spans equal on plain text and differ from elsewhere only by
the documented conventions; sentencepiece's encoder for what is whitespace; Python's
``str.lower`` for spans mapped back through lower-casing; hand-worked examples of transformers'
fast tokenizers' convention. (test_tokenizer.py compares whole offset mappings with
transformers' fast tokenizer.)
"""

import re
import unicodedata

import pytest
import sentencepiece
from hypothesis import example, given, settings
from hypothesis import strategies as st
from texts import SPECIAL_TEXT, SPM_MODEL, corpus_texts, fail_without_vocabulary

from pydeberta.hub import BUNDLED_MODELS
from pydeberta.offsets import OffsetAligner, check_offsets_support, shift_spans
from pydeberta.pretokenize import lower_case
from pydeberta.tokenizer import DebertaV2TokenizerFast

TINY = BUNDLED_MODELS["pydeberta/tiny"]
# Words of ASCII letters, digits and punctuation between single spaces: text that the normaliser
# leaves as it is, where no convention is needed beyond sentencepiece's alignment.
plain_texts = st.lists(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                               max_size=12), max_size=8).map(" ".join)
# Characters that may be whitespace to the normaliser: Unicode separators, controls, format characters.
SPACE_CANDIDATES = [chr(cp) for cp in range(0x10000) if chr(cp).isspace() or unicodedata.category(chr(cp)) in (
    "Zs", "Zl", "Zp", "Cc", "Cf")]


@pytest.fixture(scope="module")
def sp():
    """The DeBERTa-v3 sentencepiece model."""
    fail_without_vocabulary()
    return sentencepiece.SentencePieceProcessor(model_file=str(SPM_MODEL))


@pytest.fixture(scope="module")
def fast():
    """DebertaV2TokenizerFast on the DeBERTa-v3 vocabulary."""
    fail_without_vocabulary()
    return DebertaV2TokenizerFast(SPM_MODEL)


@pytest.fixture(scope="module")
def processors(sp):
    """{"tiny": the bundled model's sentencepiece model, "v3": DeBERTa-v3's}."""
    return {"tiny": sentencepiece.SentencePieceProcessor(model_file=str(TINY / "spm.model")), "v3": sp}


@pytest.fixture(scope="module")
def aligners(processors):
    """An OffsetAligner per vocabulary of ``processors``."""
    return {name: OffsetAligner(processor) for name, processor in processors.items()}


def sentencepiece_spans(processor, text):
    """sentencepiece's own alignment: each piece's ``(begin, end)`` in ``text``, from the UTF-8
    byte offsets of ``encode(..., out_type="proto")``."""
    char_at, offset = {}, 0  # byte offset -> character index
    for index, char in enumerate(text):
        char_at[offset] = index
        offset += len(char.encode("utf-8"))
    char_at[offset] = len(text)
    return [(char_at[piece.begin], char_at[piece.end]) for piece in processor.encode(text, out_type="proto").pieces]


# ---------------------------------------------------------------------------------- OffsetAligner


@pytest.mark.parametrize("text, pieces, spans", [
    ("hello world", ["▁", "hello", "▁world"], [(0, 1), (0, 5), (5, 11)]),  # ▁ alone: the first character
    ("  hello   world  ", ["▁", "hello", "▁world"], [(2, 3), (2, 7), (9, 15)]),  # leading run dropped; last space
    ("é", ["▁", "<0xC3>", "<0xA9>"], [(0, 1)] * 3),  # both bytes of é point at é
    ("Ｈello  ﬁsh", ["▁", "Hello", "▁fish"], [(0, 1), (0, 5), (6, 10)]),  # full-width H and ﬁ are normalised
    ("a\r\n\r\nb", ["▁a", "▁b"], [(0, 1), (3, 6)]),  # CR LF counts as one whitespace character
    ("x\u200b y", ["▁x", "▁y"], [(0, 1), (2, 4)]),  # ZWSP is whitespace to nmt_nfkc: last of the run
    ("ab\x00cd", ["▁a", "b", "<0x00>", "c", "d"], [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_spans_on_the_tiny_vocabulary_hand_checked(processors, aligners, text, pieces, spans):
    ids = processors["tiny"].encode(text)
    assert processors["tiny"].id_to_piece(ids) == pieces
    assert aligners["tiny"].spans(ids, text) == (ids, spans)


@settings(max_examples=200, deadline=None)
@given(text=plain_texts)
@example(text="hello world")
@example(text="")
def test_spans_equal_sentencepieces_alignment_on_plain_text(processors, aligners, text):
    for name, processor in processors.items():
        ids = processor.encode(text)
        expected = sentencepiece_spans(processor, text)
        if expected and expected[0] == (0, 0):  # the dummy-prefix ▁ alone: no width to sentencepiece,
            expected[0] = (0, 1)  # the first character to transformers' fast tokenizers
        assert aligners[name].spans(ids, text) == (ids, expected), name


@settings(max_examples=200, deadline=None)
@given(text=corpus_texts)
@example(text="  hello   world  ")
@example(text="㍿x Iﬁ4 k\u0323i")
@example(text="\x16 x\t\x0b\ufeffñ\x7f")
def test_spans_differ_from_sentencepieces_alignment_only_by_the_conventions(processors, aligners, text):
    for name, processor in processors.items():
        ids = processor.encode(text)
        got_ids, spans = aligners[name].spans(ids, text)
        theirs = sentencepiece_spans(processor, text)
        assert got_ids == ids and len(spans) == len(theirs), name
        for i, ((begin, end), (sp_begin, sp_end)) in enumerate(zip(spans, theirs)):
            assert sp_begin <= begin < end and sp_end <= end, (name, i)
            # a span starts later only past characters the normaliser drops (the whitespace before a word)
            assert all(processor.normalize(char) == "" for char in text[sp_begin:begin]), (name, i)
            # it ends later only inside a character sentencepiece gives to the pieces after it
            # (all but the last of 株 式 会 社 of ㍿; the lone dummy-prefix ▁)
            if end > sp_end:
                assert theirs[i + 1][0] <= sp_end and end <= max(e for _, e in theirs[i + 1:]), (name, i)


@pytest.mark.parametrize("char, expected", [
    (" ", True), ("\t", True), ("\n", True), ("\r", True), ("\u00a0", True), ("\u3000", True),
    ("\u2002", True), ("\u200b", True), ("\u2028", True), ("\u2581", True),  # ▁ is sentencepiece's own space
    ("a", False), ("_", False), ("\x00", False), ("\x85", False), ("\u0301", False),
])
def test_is_space_hand_checked(aligners, char, expected):
    for name, aligner in aligners.items():
        assert aligner.is_space(char) is expected, name


def _encoded_like_a_space(processor, char):
    """sentencepiece's encoder treats ``char`` as a space: nothing alone, a word break between words."""
    return processor.encode(char) == [] and processor.encode(f"hello{char}world") == processor.encode("hello world")


def test_is_space_equals_sentencepieces_encoder_on_separators_and_controls(processors, aligners):
    for name, processor in processors.items():
        differ = [hex(ord(char)) for char in SPACE_CANDIDATES
                  if aligners[name].is_space(char) != _encoded_like_a_space(processor, char)]
        assert differ == [], name


@settings(max_examples=200, deadline=None)
@given(char=st.characters(exclude_categories=("Cs",)))
def test_is_space_equals_sentencepieces_encoder(processors, aligners, char):
    for name, processor in processors.items():
        assert aligners[name].is_space(char) == _encoded_like_a_space(processor, char), name


# ---------------------------------------------------------------------------------- shift_spans


def test_shift_spans_hand_checked():
    assert shift_spans([(0, 5), (5, 11)], 0, None) == [(0, 5), (5, 11)]
    assert shift_spans([(0, 2), (2, 2)], 7, None) == [(7, 9), (9, 9)]
    lowered, index_map = lower_case("İİ Fox")  # "i" U+0307 "i" U+0307 " fox"
    assert index_map == [0, 0, 1, 1, 2, 3, 4, 5, 6]
    # at 3 in the text: "i", its dot, the second İ's two characters, " fox", an empty span
    assert shift_spans([(0, 1), (1, 2), (2, 4), (4, 8), (2, 2)], 3, index_map) == [
        (3, 4), (3, 4), (4, 5), (5, 9), (4, 4)]


@settings(max_examples=200, deadline=None)
@given(text=corpus_texts, start=st.integers(0, 5))
@example(text="İstanbul İİ", start=2)
def test_shift_spans_map_each_lowered_character_to_the_one_it_came_from(text, start):
    lowered, index_map = lower_case(text)
    shifted = shift_spans([(k, k + 1) for k in range(len(lowered))], start, index_map)
    for char, (begin, end) in zip(lowered, shifted):
        assert end == begin + 1 and char in text[begin - start].lower()
    if text:
        assert shift_spans([(0, len(lowered))], start, index_map) == [(start, start + len(text))]


# ---------------------------------------------------------------------------------- sentencepiece version


@pytest.mark.parametrize("version, supported", [
    ("0.1.99", False), ("0.1.9x", False), ("0.2.0", True), ("0.2.1", True), ("1.0.0rc1", True)])
def test_check_offsets_support_reads_the_sentencepiece_version(monkeypatch, version, supported):
    monkeypatch.setattr(sentencepiece, "__version__", version)
    tokenizer = DebertaV2TokenizerFast.from_pretrained("pydeberta/tiny")
    if supported:
        assert check_offsets_support() is None
        assert tokenizer("The cat", return_offsets_mapping=True)["offset_mapping"] == [(0, 0), (0, 3), (3, 7), (0, 0)]
    else:
        for call in (check_offsets_support, lambda: tokenizer("The cat", return_offsets_mapping=True)):
            with pytest.raises(RuntimeError, match=f"sentencepiece >= 0.2.0; found {re.escape(version)}"):
                call()
        assert tokenizer("The cat")["input_ids"] == [1, 281, 2066, 2]  # ids need no alignment


# ---------------------------------------------------------------------------------- through the tokenizer


def _came_from(sp, piece, source):
    """Could ``piece`` have come from the original characters ``source``?"""
    normalized = sp.normalize(source).replace("▁", "")
    if re.fullmatch(r"<0x[0-9A-F]{2}>", piece):  # a byte of the normalised character
        return int(piece[3:5], 16) in normalized.encode("utf-8")
    content = piece.lstrip("▁")
    return content in normalized if content else source != ""


@settings(max_examples=300, deadline=None)
@given(text=corpus_texts)
@example(text="")
@example(text="[MASK]")
@example(text="x\u200b")
@example(text="A\u0302\u0300 龘𠀀 ㍿")
def test_offsets_point_at_the_text_each_piece_came_from(fast, sp, text):
    encoding = fast(text, return_offsets_mapping=True)
    ids, spans = encoding["input_ids"], encoding["offset_mapping"]
    assert spans[0] == spans[-1] == (0, 0)  # [CLS], [SEP]
    previous = (0, 0)
    for token_id, (begin, end) in zip(ids[1:-1], spans[1:-1]):
        piece = fast.convert_ids_to_tokens(token_id)
        assert 0 <= begin < end <= len(text)
        assert begin >= previous[0] and end >= previous[1]  # in text order (pieces of one character share it)
        if piece in SPECIAL_TEXT:
            assert text[begin:end] == piece
        else:
            assert _came_from(sp, piece, text[begin:end]), (piece, text[begin:end])
        previous = (begin, end)


@pytest.mark.parametrize("text, spans", [
    ("hello world", [(0, 5), (5, 11)]),  # ▁world includes the space it stands for
    ("  hello   world  ", [(2, 7), (9, 15)]),  # leading whitespace dropped; last space of a run
    ("is [MASK] here", [(0, 2), (3, 9), (10, 14)]),  # whitespace after an added token dropped
    ("㍿x", [(0, 1)] * 5 + [(1, 2)]),  # ▁ 株 式 会 社 all point at ㍿
    ("x😀y 龘", [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (4, 5), (4, 5)]),  # three byte pieces of 龘
    ("Iﬁ4", [(0, 2), (1, 2), (2, 3)]),  # "▁If" "i" "4": the ligature's two letters in two pieces
    ("k\u0323i", [(0, 2), (0, 2), (2, 3)]),  # "▁" "ḳ" "i": k + combining dot composed into ḳ
    ("a\r\n\r\nb", [(0, 1), (3, 6)]),  # CR LF counts as one whitespace character
])
def test_offsets_hand_checked(fast, text, spans):
    encoding = fast(text, return_offsets_mapping=True, add_special_tokens=False)
    assert encoding["offset_mapping"] == spans
