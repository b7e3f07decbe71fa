"""Texts the tokenizer tests draw from (hypothesis strategies over hard Unicode), and the real
DeBERTa-v3 vocabulary they need, found through ``PYDEBERTA_SPM_MODEL``."""

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import strategies as st

SPM_MODEL = Path(os.environ.get(
    "PYDEBERTA_SPM_MODEL",
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deberta-v3" / "spm.model"))

SPECIAL_TEXT = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]
# Pieces of text the corpus is built from: mixed scripts, CJK, emoji (with ZWJ sequences and
# skin tones), combining marks, zero-width and non-breaking spaces, full-width forms, NFKC
# expansions, control characters, runs of whitespace, literal special-token text and near misses.
ATOMS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`")
    + list("éèêëàâäôöûüçñßøåæœÉÀİ") + list("αβγδεζηθΩΣσςΔ") + list("абвгдейкЖ")
    + list("東京日本語中文字龘𠀀한국어ひらがなカタカナ")
    + ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤\ufe0f"]
    + ["\u0301", "\u0308", "\u0323", "\u0302\u0300", "e\u0301", "A\u0302\u0300"]
    + ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad", "\u00a0", "\u202f", "\u3000"]
    + list("ＡＢＣａｂｃ１２３！？（）") + ["①", "½", "㎏", "㍿", "ﬁ", "™", "…"]
    + ["\x00", "\x01", "\x07", "\x0b", "\x1f", "\x7f", "\x85", "\x9f"]
    + [" ", "  ", "   ", "\t", "\n", "\r\n", "\x0c", "\u2028", "\u2581"]
    + SPECIAL_TEXT + ["[MASK", "[mask]", "MASK]", "[ CLS]"]
    + [" hello", " world", " the ", "transformers", "DeBERTa", " don't"]
)
corpus_texts = st.lists(st.one_of(st.sampled_from(ATOMS), st.characters(exclude_categories=("Cs",))),
                        max_size=30).map("".join)
plain_texts = corpus_texts.filter(lambda text: not any(token in text for token in SPECIAL_TEXT))
# Texts on which transformers' fast tokenizer aligns offsets by its usual rules (see
# ``hf_alignment_is_regular``): letters, digits, punctuation, symbols, ordinary spaces.
REGULAR_ATOMS = [atom for atom in ATOMS if all(
    unicodedata.category(char)[0] in "LNPS" or char in " \t\n\u00a0\u3000" for char in atom)]
regular_texts = st.lists(st.one_of(st.sampled_from(REGULAR_ATOMS),
                                   st.characters(categories=("L", "N", "P", "S", "Zs"))), max_size=30).map("".join)


def fail_without_vocabulary():
    if not SPM_MODEL.is_file():
        pytest.fail(f"DeBERTa-v3 vocabulary missing: no file at {SPM_MODEL}. Set PYDEBERTA_SPM_MODEL to the "
                    "spm.model of ../shared/data/deberta-v3 (see its README.md); these tests must not be skipped.")
