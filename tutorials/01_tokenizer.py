# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The tokenizer: sentencepiece unigram, normalisation, byte fallback, special tokens, offsets
#
# DeBERTa-v2/v3 read text through a sentencepiece **unigram** model. Every piece $x$ of the
# vocabulary has a log-probability $\log p(x)$ learnt with the model; a text $t$ is cut into the
# segmentation with the highest total log-probability,
#
# $$x^\* = \operatorname*{arg\,max}_{x_1 \dots x_n \,\in\, S(t)} \; \sum_{i=1}^{n} \log p(x_i),$$
#
# found by the Viterbi algorithm over $S(t)$, all ways of writing $t$ as a sequence of pieces.
# Before that the text is **normalised** (NFKC and a few rules), spaces become `▁` (a piece
# starting with `▁` starts a word), and a character the vocabulary lacks is spelled as its UTF-8
# **bytes** (`<0xE9>`). pydeberta then adds DeBERTa's **special tokens** and can say which
# characters each piece came from (**offsets**).

# %%
# %matplotlib inline
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
import sentencepiece

import pydeberta
from pydeberta.hub import resolve_model_folder
from pydeberta.tokenizer import DebertaV2Tokenizer

MODEL = "pydeberta/tiny"

tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
print(tokenizer)

# %% [markdown]
# ## The library function
#
# A text is first cut at the added tokens (`[CLS]`, `[MASK]`, ...), then each chunk goes to
# sentencepiece, which normalises it and runs the unigram Viterbi:

# %%
print(inspect.getsource(DebertaV2Tokenizer._segments))
print(inspect.getsource(DebertaV2Tokenizer._tokenize_one))

# %% [markdown]
# ## A tiny example: the unigram model's choice
#
# The same `spm.model` file, opened with sentencepiece itself, lists the best segmentations of a
# word with their piece log-probabilities. The tokenizer's answer is the first one.

# %%
sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer.vocab_file)
word = "unbelievable"
candidates = sp.nbest_encode_as_pieces(word, 6)
totals = [sum(sp.get_score(sp.piece_to_id(piece)) for piece in pieces) for pieces in candidates]
for pieces, total in zip(candidates, totals):
    print(f"{total:8.3f}  {pieces}")
print("tokenizer:", tokenizer.tokenize(word), " vocabulary size", tokenizer.vocab_size, " len", len(tokenizer))

# %% [markdown]
# ## One figure: Viterbi picks the most probable segmentation

# %%
relative = np.exp(np.array(totals) - max(totals))  # p(segmentation) / p(best)
fig, ax = plt.subplots(figsize=(7, 3), constrained_layout=True)
ax.barh(range(len(totals)), relative, color=["#1b9e77"] + ["#bbbbbb"] * (len(totals) - 1))
ax.set_title(f"segmentations of {word!r}: the tokenizer's is the most probable")
ax.set_xlabel("p(segmentation) / p(best) = exp(Σ log p − best Σ log p)")
ax.set_yticks(range(len(totals)), [" ".join(pieces) for pieces in candidates], fontsize=9)
ax.invert_yaxis()

# %% [markdown]
# ## Normalisation and byte fallback
#
# Full-width letters, ligatures and no-break spaces are normalised (nmt_nfkc) before the
# segmentation; `é` and `龘` are not in this small English vocabulary, so they are spelled as
# bytes: one piece per UTF-8 byte, which `decode` puts back together.

# %%
for text in ["Ｆｕｌｌ\u00a0width", "ﬁne", "café", "龘", "🙂"]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    print(f"{text!r:<16} normalised {sp.normalize(text)!r:<12} -> {tokenizer.convert_ids_to_tokens(ids)}"
          f"  decode {tokenizer.decode(ids)!r}")

# %% [markdown]
# ## Special tokens
#
# `[CLS] a [SEP]` for one text, `[CLS] a [SEP] b [SEP]` for a pair, with `token_type_ids` 0 then 1
# (DeBERTa-v3 ignores them: `type_vocab_size = 0`). Special tokens written in the text are
# recognised, and the text after one starts a new `▁` word.

# %%
pair = tokenizer("The cat sat.", "It slept.")
print(tokenizer.convert_ids_to_tokens(pair["input_ids"]))
print("token_type_ids", pair["token_type_ids"])
print(tokenizer.tokenize("hello[MASK]world"), tokenizer.tokenize("hello [MASK] world"))
print({name: getattr(tokenizer, name) for name in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")})
print("ids", tokenizer.all_special_ids)

# %% [markdown]
# ## Offsets
#
# `return_offsets_mapping=True` gives each token's `(start, end)` characters in the original
# text; special tokens get `(0, 0)`. Pieces of one byte-fallback character all point at it.

# %%
text = "The naïve cat sat on the mat."
enc = tokenizer(text, return_offsets_mapping=True)
for token, (start, end) in zip(tokenizer.convert_ids_to_tokens(enc["input_ids"]), enc["offset_mapping"]):
    print(f"{token:<10} ({start:2d}, {end:2d})  {text[start:end]!r}")

# %% [markdown]
# ## Check
#
# pydeberta's two tokenizers, one sentencepiece call per string and one multi-threaded call per
# batch, give the same ids. Then transformers' own `DebertaV2Tokenizer` (sentencepiece through transformers) reads the same
# folder; the ids must agree. Its `DebertaV2TokenizerFast` (the Rust `tokenizers` conversion) has
# no byte fallback (it gives `[UNK]` where sentencepiece spells bytes), so offsets are compared on
# the texts where its ids agree with ours.

# %%
texts = ["In the beginning God created the heaven and the earth.", "Ｆｕｌｌ\u00a0width ﬁne café 龘 🙂",
         "hello[MASK]world", "  spaces   and\ttabs  ", "def f(x):\n    return x ** 2", "The naïve cat."]
warnings.filterwarnings("ignore", message="IProgress not found")  # transformers' progress bars
warnings.filterwarnings("ignore", message=".*uses the byte fallback option")  # said above
slow = DebertaV2Tokenizer.from_pretrained(resolve_model_folder(MODEL))
fast_ids = tokenizer(texts, padding=True, return_tensors="np")["input_ids"]
slow_ids = slow(texts, padding=True, return_tensors="np")["input_ids"]
diff = np.abs(fast_ids - slow_ids).max()
print("largest difference, ids of DebertaV2TokenizerFast vs DebertaV2Tokenizer:", diff)
assert diff == 0, diff  # integer ids: equal or wrong
ours = tokenizer(texts, return_offsets_mapping=True)
try:
    import transformers
except ImportError:
    print("transformers is not installed: skipping the comparison with it (pip install transformers)")
else:
    folder = resolve_model_folder(MODEL)
    theirs = transformers.DebertaV2Tokenizer.from_pretrained(folder)
    theirs_fast = transformers.DebertaV2TokenizerFast.from_pretrained(folder)
    differ = [text for text, ids in zip(texts, ours["input_ids"]) if ids != theirs(text)["input_ids"]]
    print("texts whose ids differ from transformers' DebertaV2Tokenizer:", len(differ), differ)
    assert not differ, differ
    largest, compared = 0, 0
    for text, ids, offsets in zip(texts, ours["input_ids"], ours["offset_mapping"]):
        fast = theirs_fast(text, return_offsets_mapping=True)
        if fast["input_ids"] == ids:
            largest = max(largest, int(np.abs(np.array(offsets) - np.array(fast["offset_mapping"])).max()))
            compared += 1
    print(f"largest difference, offsets vs transformers' DebertaV2TokenizerFast ({compared} texts):", largest)
    assert compared > 0 and largest == 0, (compared, largest)

# %% [markdown]
# ## Exercises
#
# 1. Find a word whose second-best segmentation is within 0.5 of the best. Does
#    `DebertaV2Tokenizer(vocab_file, sp_model_kwargs={"enable_sampling": True, "alpha": 0.1, "nbest_size": -1})`
#    ever choose it?
# 2. Tokenize `"ＡＢＣ１２３"` and `"ABC123"`. Why are the ids equal, and what do the offsets of
#    the first say?
# 3. How many byte pieces does the vocabulary hold (`tokenizer.convert_ids_to_tokens(range(len(tokenizer)))`)?
#    Why does that number guarantee that no text ever needs `[UNK]`?
