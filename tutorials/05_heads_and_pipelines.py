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
# # 05 · Task heads and pipelines
#
# Every task model is the same backbone (last hidden state $h$ `[B, N, C]`) with a small head:
#
# | class | head | logits |
# |---|---|---|
# | `DebertaV2ForMaskedLM` | $\mathrm{LN}(\mathrm{gelu}(h W_d + b_d))\,E^\top + b$ (tied to the word embeddings $E$) | `[B, N, V]` |
# | `DebertaV2ForSequenceClassification` | $\mathrm{pool}(h) = \mathrm{gelu}(h_{[CLS]} W_p + b_p)$, then $W_c\,\mathrm{pool}(h) + b_c$ | `[B, labels]` |
# | `DebertaV2ForTokenClassification` | $h_t W + b$ for every token | `[B, N, labels]` |
# | `DebertaV2ForQuestionAnswering` | $h_t W + b$ split into start and end | `[B, N]` each |
#
# A **pipeline** wraps a model and its tokenizer the way transformers' `pipeline(...)` does:
# tokenize, batch with padding, run, and post-process the logits: for fill-mask,
# $p = \mathrm{softmax}(\text{logits}_\text{mask})$ and the top $k$ tokens; for classification,
# softmax (or sigmoid) over the labels; for question answering, the best span with start ≤ end.

# %%
# %matplotlib inline
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta.hub import resolve_model_folder
from pydeberta.functional import softmax
from pydeberta.heads import context_pooler, masked_lm_head

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library functions

# %%
print(inspect.getsource(masked_lm_head))
print(inspect.getsource(context_pooler))

# %% [markdown]
# ## A tiny example: one backbone, four heads
#
# The bundled checkpoint is a masked LM. Loading it into another task class reuses the backbone
# and initialises the missing head randomly (with a warning): the shapes are right, the answers
# mean nothing until the head is fine-tuned.

# %%
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
texts = ["In the beginning God created the heaven and the [MASK].", "And the LORD spake unto [MASK], saying"]
enc = tokenizer(texts, padding=True, return_tensors="np")
print("input_ids", enc["input_ids"].shape, " attention_mask rows", enc["attention_mask"].sum(axis=1))

mlm = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    heads = {
        "sequence classification": pydeberta.DebertaV2ForSequenceClassification.from_pretrained(MODEL, num_labels=3),
        "token classification": pydeberta.DebertaV2ForTokenClassification.from_pretrained(MODEL, num_labels=5),
        "question answering": pydeberta.DebertaV2ForQuestionAnswering.from_pretrained(MODEL),
    }
print("warnings:", *sorted({str(w.message).split(";")[0].split(" has ")[-1] for w in caught}), sep="\n  has ")

mlm_out = mlm(**enc, output_hidden_states=True)
print("masked LM            logits", mlm_out.logits.shape)
for name, model in heads.items():
    result = model(**enc)
    shapes = {key: result[key].shape for key in result.keys()}
    print(f"{name:<20}", shapes)

# %% [markdown]
# The masked-LM head applied by hand to the last hidden state gives the model's logits. The model
# call above ran the engine (the default backend), whose twin of `masked_lm_head` computes the
# same products with its own kernels, so the two agree to float32 rounding; under the `reference`
# backend the model runs the book's `masked_lm_head` itself, and they are equal.

# %%
head_params = mlm.tree["lm_predictions"]
word_embeddings = mlm.tree["deberta"]["embeddings"]["word_embeddings"]["weight"]
logits = masked_lm_head(mlm_out.hidden_states[-1], head_params, word_embeddings, mlm.config)
diff = np.abs(logits - mlm_out.logits).max()
size = np.abs(mlm_out.logits).max()
print(f"logits {logits.shape}  largest difference vs the model ({pydeberta.backend_info()['backend']} backend): "
      f"{diff:.2e}, logits up to {size:.1f}")
assert diff <= 1e-5 * (1 + size), diff  # float32 rounding, relative to the logits' size
with pydeberta.use_backend("reference"):
    book_out = mlm(**enc, output_hidden_states=True)
diff = np.abs(masked_lm_head(book_out.hidden_states[-1], head_params, word_embeddings, mlm.config)
              - book_out.logits).max()
print(f"largest difference vs the model (reference backend): {diff:.2e}")
assert diff == 0, diff

# %% [markdown]
# ## Pipelines
#
# `pipeline(task, model=...)` takes a folder, a bundled name or Hub id, or a model object (then
# also a tokenizer). Results are transformers' lists of dicts.

# %%
fill = pydeberta.pipeline("fill-mask", model=MODEL)
results = fill(texts, top_k=8)
for text, result in zip(texts, results):
    print(text, "->", [(r["token_str"], round(r["score"], 3)) for r in result[:3]])

classify = pydeberta.pipeline("text-classification", model=heads["sequence classification"], tokenizer=tokenizer)
print(classify("The match ended in a draw.", top_k=None), "(random head)")

# %% [markdown]
# ## One figure: what the masked LM believes

# %%
fig, axes = plt.subplots(1, len(texts), figsize=(5 * len(texts), 3.2), constrained_layout=True)
for ax, text, result in zip(axes, texts, results):
    ax.barh(range(len(result)), [r["score"] for r in result], color="#1b9e77")
    ax.set_yticks(range(len(result)), [r["token_str"] for r in result])
    ax.invert_yaxis()
    ax.set_xlabel("p(token | text)")
    ax.set_title(text, fontsize=10)

# %% [markdown]
# ## Check
#
# 1. The pipeline's scores are the softmax of the model's logits at the mask, and the
#    classification pipeline's scores the softmax of its logits.
# 2. The same folder in transformers' own `pipeline("fill-mask")` gives the same tokens and scores.

# %%
row = 0
mask_position = int(np.flatnonzero(enc["input_ids"][row] == tokenizer.mask_token_id)[0])
probs = softmax(mlm_out.logits[row, mask_position])
diff = max(abs(r["score"] - probs[r["token"]]) for r in results[row])
print(f"largest difference, fill-mask pipeline vs softmax(logits): {diff:.2e}")
assert diff <= 1e-6, diff  # probabilities of the same model: float32 rounding at most
single = tokenizer("The match ended in a draw.", return_tensors="np")
expected = softmax(heads["sequence classification"](**single).logits[0])
got = {r["label"]: r["score"] for r in classify("The match ended in a draw.", top_k=None)}
config = heads["sequence classification"].config
diff = max(abs(got[config.id2label[i]] - expected[i]) for i in range(config.num_labels))
print(f"largest difference, text-classification pipeline vs softmax(logits): {diff:.2e}")
assert diff <= 1e-6, diff

warnings.filterwarnings("ignore", message="IProgress not found")
try:
    import torch
    import transformers
except ImportError:
    print("transformers/torch are not installed: skipping the comparison with them (pip install transformers torch)")
else:
    transformers.logging.set_verbosity_error()
    folder = resolve_model_folder(MODEL)
    theirs = transformers.pipeline(
        "fill-mask", model=transformers.DebertaV2ForMaskedLM.from_pretrained(folder, dtype=torch.float32),
        tokenizer=transformers.DebertaV2Tokenizer.from_pretrained(folder), device="cpu")
    for text, result in zip(texts, results):
        reference = theirs(text, top_k=8)
        same = [r["token"] for r in result] == [r["token"] for r in reference]
        diff = max(abs(a["score"] - b["score"]) for a, b in zip(result, reference))
        print(f"vs transformers: same top-8 tokens {same}; largest difference of the scores {diff:.2e}")
        assert same and diff <= 1e-4, (same, diff)  # float32 probabilities

# %% [markdown]
# ## Exercises
#
# 1. Fine-tuning aside, what does `pydeberta.pipeline("zero-shot-classification", ...)` need
#    from a checkpoint's `config.json` to know which label means "entailment"?
# 2. Call `fill` on the second text with `targets=["▁him", "▁them"]`. Do the two scores sum to
#    one? Why not?
# 3. Run the question-answering model on a question and a context with `pydeberta.pipeline("question-answering",
#    model=heads["question answering"], tokenizer=tokenizer)`. Which spans can it return at all?
