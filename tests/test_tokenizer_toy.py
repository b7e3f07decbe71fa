"""The tokenizer options on small sentencepiece models trained here (a few KB of text).

The models have the DeBERTa special layout ([PAD] [CLS] [SEP] [UNK] = 0..3) and the nmt_nfkc
normaliser; one has byte fallback like v3, the other maps characters it never saw to the
unknown id (merging runs of them into one piece), which v3 cannot show. Oracles: transformers
4.57's slow DebertaV2Tokenizer and the sentencepiece package; hand-worked expectations.
"""

import io
import re

import pytest
import sentencepiece
import transformers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pydeberta.tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

SENTENCES = """The quick brown fox jumps over the lazy dog.
I was born in 92000, and this is falsé.
Hello! How are you today? I'm fine, thanks.
DeBERTa improves BERT and RoBERTa using disentangled attention.
Tokenizers turn text into ids; models turn ids into predictions.
She sells sea shells by the sea shore (mostly on Sundays).
"Quotes", 'apostrophes', and hyphen-ated words are common.
Numbers like 3.14, 2,718 and 1/2 appear in text too.
Never gonna give you up, never gonna let you down.
All work and no play makes Jack a dull boy.""".splitlines()
CORPUS = SENTENCES * 8 + [s.lower() for s in SENTENCES] + [s.upper() for s in SENTENCES]  # ~5 KB

ATOMS = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]-/")
         + ["Hello", " the ", " fox", "İ", "ΣΑΣ", "Ω", "ΩΩ", "é", "e\u0301", "ﬁ", "①", "東京", "😀"]
         + ["\u00a0", "\u200b", " ", "  ", "\t", "\n", "[MASK]", "[UNK]", "[CLS]"])
texts = st.lists(st.one_of(st.sampled_from(ATOMS), st.characters(exclude_categories=("Cs",))),
                 max_size=25).map("".join)
FLAGS = [(lower, punct) for lower in (False, True) for punct in (False, True)]


def _train(folder, byte_fallback):
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, model_type="unigram",
        vocab_size=400 if byte_fallback else 150, hard_vocab_limit=False, byte_fallback=byte_fallback,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1,
        minloglevel=2)
    folder.mkdir()
    (folder / "spm.model").write_bytes(model.getvalue())
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Folders of the two trained models: {"bytes": with byte fallback, "unknown": without}."""
    root = tmp_path_factory.mktemp("toy")
    return {"bytes": _train(root / "bytes", True), "unknown": _train(root / "unknown", False)}


@pytest.fixture(scope="module")
def tokenizers(models):
    """(ours slow, ours fast, transformers slow) per (model, do_lower_case, split_by_punct)."""
    return {(name, lower, punct): tuple(cls.from_pretrained(folder, do_lower_case=lower, split_by_punct=punct)
                                        for cls in (DebertaV2Tokenizer, DebertaV2TokenizerFast,
                                                    transformers.DebertaV2Tokenizer))
            for name, folder in models.items() for lower, punct in FLAGS}


@settings(max_examples=120, deadline=None)
@given(text=texts)
@example(text=" \tHeLLo!how  \n Are yoU?  ")
@example(text="I was born in 92000, and this is falsé.")
@example(text="ΣΑΣ İstanbul [MASK]İ")
def test_lower_case_and_punctuation_split_equal_transformers_slow(tokenizers, text):
    for (name, lower, punct), (slow, fast, hf_slow) in tokenizers.items():
        expected = hf_slow(text)["input_ids"]
        assert slow(text)["input_ids"] == expected, (name, lower, punct)
        assert fast(text)["input_ids"] == expected, (name, lower, punct)
        assert slow.tokenize(text) == hf_slow.tokenize(text), (name, lower, punct)
        assert slow.decode(expected) == hf_slow.decode(expected), (name, lower, punct)


def test_lower_case_lowers_each_character_like_transformers(tokenizers):
    slow, _, _ = tokenizers["unknown", True, False]
    plain, _, _ = tokenizers["unknown", False, False]
    text = " \tHeLLo!how  \n Are yoU?  "
    assert slow.tokenize(text) == plain.tokenize(text.lower())
    # character by character: Σ at the end of a word becomes σ, not the final-sigma ς of str.lower()
    assert "".join(slow.tokenize("ΣΑΣ")).lstrip("▁") == "σασ"
    assert slow.tokenize("[MASK] ΣΑΣ") == ["[MASK]"] + slow.tokenize("ΣΑΣ")  # special tokens keep their case


def test_split_by_punct_encodes_each_run_on_its_own(tokenizers, models):
    slow, _, _ = tokenizers["bytes", False, True]
    sp = sentencepiece.SentencePieceProcessor(model_file=str(models["bytes"] / "spm.model"))
    text = "I was born in 92000, and this is falsé."
    runs = ["I was born in 92000", ",", " and this is falsé", "."]  # worked out by hand
    assert slow.tokenize(text) == [piece for run in runs for piece in sp.encode(run, out_type=str)]
    assert slow.tokenize(text)[-2:] == ["▁", "."]  # the punctuation run gets its own dummy prefix


def test_split_by_punct_makes_each_punctuation_character_a_word(tokenizers, models):
    _, fast, _ = tokenizers["bytes", False, True]
    sp = sentencepiece.SentencePieceProcessor(model_file=str(models["bytes"] / "spm.model"))
    runs = ["fox", ",", "dog", "!"]
    encoding = fast("".join(runs), add_special_tokens=False)
    assert encoding.word_ids() == [word for word, run in enumerate(runs) for _ in sp.encode(run)]


def test_unknown_characters_merge_into_one_unknown_piece(tokenizers):
    slow, fast, hf_slow = tokenizers["unknown", False, False]
    assert slow.tokenize("ΩΩΩ fox") == ["▁", "ΩΩΩ", "▁f", "o", "x"]
    encoding = fast("ΩΩΩ fox", add_special_tokens=False, return_offsets_mapping=True)
    assert encoding["input_ids"] == hf_slow.encode("ΩΩΩ fox", add_special_tokens=False)
    assert encoding["input_ids"][1] == 3  # [UNK]
    assert encoding["offset_mapping"] == [(0, 1), (0, 3), (3, 5), (5, 6), (6, 7)]
    assert slow.decode(encoding["input_ids"]) == hf_slow.decode(encoding["input_ids"])


@settings(max_examples=120, deadline=None)
@given(text=texts)
@example(text="İstanbul ΩΩ fox")
@example(text="a,b  ,c")
def test_offsets_point_at_the_text_each_piece_came_from(tokenizers, models, text):
    for (name, lower, punct), (_, fast, _) in tokenizers.items():
        sp = fast._sp
        encoding = fast(text, return_offsets_mapping=True, add_special_tokens=False)
        for token_id, piece, (begin, end) in zip(encoding["input_ids"], fast.tokenize(text),
                                                 encoding["offset_mapping"]):
            source = text[begin:end]
            assert 0 <= begin < end <= len(text)
            if piece in ("[MASK]", "[UNK]", "[CLS]") and source == piece:
                continue
            if lower:  # character by character, as the tokenizer does
                source = "".join(char.lower() for char in source)
            normalized = sp.normalize(source).replace("▁", "")
            if re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
                assert int(piece[3:5], 16) in normalized.encode("utf-8")
            else:
                assert piece.lstrip("▁") in normalized, (name, lower, punct, piece, source)


def test_lower_case_offsets_map_back_to_the_original_characters(tokenizers):
    _, fast, _ = tokenizers["bytes", True, False]
    text = "İİ Fox"  # "İ".lower() is two characters, i + U+0307: both map back to the one İ
    encoding = fast(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = fast.convert_ids_to_tokens(encoding["input_ids"])
    sources = [text[begin:end] for begin, end in encoding["offset_mapping"]]
    assert "".join(pieces) == "▁i<0xCC><0x87>i<0xCC><0x87>▁fox"
    for piece, source in zip(pieces, sources):
        expected = {"▁i": "İ", "i": "İ", "<0xCC>": "İ", "<0x87>": "İ"}.get(piece)
        assert source == expected if expected else piece.replace("▁", " ") in source.lower()


@pytest.mark.parametrize("cls", [DebertaV2Tokenizer, DebertaV2TokenizerFast])
def test_subword_sampling_varies_the_segmentation_not_the_text(models, cls):
    sampling = {"enable_sampling": True, "nbest_size": -1, "alpha": 0.5}
    tok = cls.from_pretrained(models["unknown"], sp_model_kwargs=sampling)
    plain = cls.from_pretrained(models["unknown"])
    text = "Tokenizers turn text into predictions."
    sentencepiece.set_random_generator_seed(0)
    segmentations = {tuple(tok.tokenize(text)) for _ in range(50)}
    assert len(segmentations) > 5
    expected = plain.decode(plain.encode(text), skip_special_tokens=True)
    for pieces in segmentations:
        assert "".join(pieces).replace("▁", " ").strip() == "Tokenizers turn text into predictions."
        assert tok.decode(tok.convert_tokens_to_ids(list(pieces))) == expected
    batch = tok([text] * 20)["input_ids"]
    assert len({tuple(ids) for ids in batch}) > 1  # each text sampled on its own, in batches too
    assert {tuple(plain.tokenize(text)) for _ in range(5)} == {tuple(plain.tokenize(text))}  # no sampling: fixed
    assert tok.sp_model_kwargs == sampling


def test_sampled_offsets_still_cover_the_text(models):
    tok = DebertaV2TokenizerFast.from_pretrained(
        models["bytes"], sp_model_kwargs={"enable_sampling": True, "nbest_size": -1, "alpha": 0.5})
    text = "hyphen-ated words are common"
    for _ in range(20):
        encoding = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        spans = encoding["offset_mapping"]
        pieces = tok.convert_ids_to_tokens(encoding["input_ids"])
        covered = {i for begin, end in spans for i in range(begin, end)}
        assert covered >= {i for i, char in enumerate(text) if char != " "}
        assert all(piece.lstrip("▁") in text[begin:end] for piece, (begin, end) in zip(pieces, spans))
        assert spans == sorted(spans)
