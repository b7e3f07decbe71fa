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
# # 02 · Relative positions and log buckets
#
# ## Why relative
#
# BERT adds an absolute position vector $p_i$ to each token, so the score between "the" and
# "cat" depends on *where* the pair stands. DeBERTa-v2/v3 add no position to the tokens at all
# (`position_biased_input = False`); instead each attention score looks up an embedding of the
# **relative distance** $i - j$ between query $i$ and key $j$ (notebook 03 shows how). The same
# pair of words at the same distance then gets the same position contribution anywhere in the
# text. (He et al., *DeBERTa: Decoding-enhanced BERT with Disentangled Attention*, ICLR 2021,
# section 3.1; the log buckets below are those of the released DeBERTa-v2/v3 code.)
#
# ## Log buckets
#
# Near distances matter most, so they keep their own row; far ones share rows whose width grows
# logarithmically. With $m = \texttt{position\_buckets}/2$ and $M = $ `max_relative_positions`:
#
# $$\mathrm{bucket}(r) = \begin{cases} r & |r| \le m \\
#   \operatorname{sign}(r)\left(\left\lceil \dfrac{\log(|r|/m)}{\log((M-1)/m)}\,(m-1) \right\rceil + m\right) & |r| > m \end{cases}$$
#
# and the row of the relative-embedding table (of $2S$ rows, $S$ = `position_buckets`) that the
# pair $(i, j)$ reads is
#
# $$c(i, j) = \operatorname{clip}\big(\mathrm{bucket}(i - j) + S,\; 0,\; 2S - 1\big),$$
#
# the paper's relative distance $\delta(i, j)$ of eq. (3), with $k = S$ and the bucket in place
# of $i - j$.

# %%
# %matplotlib inline
import inspect
import warnings

import numpy as np

import pydeberta
from pydeberta import viz
from pydeberta.hub import resolve_model_folder
from pydeberta.model import relative_embeddings
from pydeberta.positions import build_relative_position, make_log_bucket_position, relative_index

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library functions

# %%
print(inspect.getsource(make_log_bucket_position))
print(inspect.getsource(relative_index))

# %% [markdown]
# ## A tiny example
#
# With 8 buckets and `max_position = 16` ($m = 4$): distances up to 4 are themselves, then two
# distances share a bucket, then more and more.

# %%
r = np.arange(0, 20)
print("r      ", r)
print("bucket ", make_log_bucket_position(r, 8, 16))
print("odd:   ", bool((make_log_bucket_position(-r, 8, 16) == -make_log_bucket_position(r, 8, 16)).all()))

# %% [markdown]
# The bundled model's sizes, and the matrices of a 12-token sentence:

# %%
model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
config = model.config
print(f"position_buckets = {config.position_buckets}, max_relative_span M = {config.max_relative_span}, "
      f"att_span S = {config.att_span}, table rows 2S = {2 * config.att_span}")

text = "the cat sat on the mat and the cat slept."
enc = tokenizer(text, return_tensors="np")
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
N = len(tokens)
rel = build_relative_position(N, N, config.position_buckets, config.max_relative_span)
index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
print("N =", N, " rel", rel.shape, rel.dtype, " index", index.shape, f"rows {index.min()}..{index.max()}")

# %% [markdown]
# ## One figure: the bucket function
#
# The identity band (blue), the log band (orange) up to $M$, and beyond it the unclamped tail:
# buckets keep growing there, and it is the clip in $c(i, j)$ that saturates.

# %%
fig, ax = viz.plot_log_buckets(config.position_buckets, config.max_relative_span)

# %% [markdown]
# **How far does the trained model look?** The mean distance each token attends over,
# $\sum_j p_{ij}\,|i - j|$ (averaged over heads), against what uniform attention would give
# (about $N/3$). Heads and tokens well below it rely on near distances, the ones that keep a
# bucket each; attention to `[CLS]`, `[SEP]` and punctuation far away pulls the average up.

# %%
passage = ("And God said, Let there be light: and there was light. And God saw the light, that it was good: "
           "and God divided the light from the darkness. And God called the light Day, and the darkness he "
           "called Night.")
passage_enc = tokenizer(passage, return_tensors="np")
passage_tokens = tokenizer.convert_ids_to_tokens(passage_enc["input_ids"][0].tolist())
passage_out = model(**passage_enc, output_attentions=True)
distance = viz.attention_distance(passage_out.attentions)  # [L, B, H, N]
n = len(passage_tokens)
uniform = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).mean()
print(f"{n} tokens; mean attended distance per layer {distance.mean(axis=(1, 2, 3)).round(2)}, "
      f"uniform attention {uniform:.2f}")
fig, ax = viz.plot_attention_distance(passage_out, passage_tokens)

# %% [markdown]
# ## What the table holds
#
# For this sentence, `i − j`, its bucket (the same here: every distance is below $m$) and the table
# row each (query, key) pair reads. The model returns the last two itself in
# `out.study.relative_positions` and `out.study.rel_index`.

# %%
out = model(**enc, output_attentions=True, output_study=True)
fig, axes = viz.plot_relative_positions(config, tokens=tokens)

# %% [markdown]
# That sentence is shorter than $m$, so its buckets equal `i − j` and the log region never shows.
# The same maps for 300 positions: inside the dashed diagonals ($|i - j| \le m$, the identity band)
# each distance has its own bucket and table row; outside, the colours change ever more slowly
# along a row, because ever more distances share a bucket.

# %%
long_fig, long_axes = viz.plot_relative_positions(config, length=300)
m = config.position_buckets // 2
long_rel = build_relative_position(300, 300, config.position_buckets, config.max_relative_span)
distance = np.subtract.outer(np.arange(300), np.arange(300))
assert (long_rel[np.abs(distance) <= m] == distance[np.abs(distance) <= m]).all()  # the band: bucket = i - j
assert len(np.unique(long_rel[np.abs(distance) > m])) < len(np.unique(distance[np.abs(distance) > m]))
print(f"m = {m}: {len(np.unique(distance))} distances fall into {len(np.unique(long_rel))} buckets")

# %% [markdown]
# The table itself is `encoder.rel_embeddings.weight`, `[2S, C]`, layer-normed before use
# (`norm_rel_ebd = "layer_norm"`). A sentence of $N \le m$ tokens reads only the $2N-1$ rows
# around row $S$; the rows far from the centre serve long inputs.

# %%
R = relative_embeddings(model.tree["deberta"]["encoder"], config)
print("R", R.shape, " rows read by this sentence:", np.unique(out.study.rel_index).size, "of", R.shape[0])

# %% [markdown]
# ## Check
#
# 1. The model's matrices are the library functions' (and transformers' `make_log_bucket_position`
#    over every distance up to 4M): integers, so exactly.
# 2. *Why relative*, measured: in layer 0 a token's vector does not depend on its position, so
#    the pair "the → cat" gets the same score (c2c + c2p + p2c) at both of its places in the
#    sentence — each time at distance −1. The same up to float32 rounding: the two pairs are other
#    rows of the same matrix products, which BLAS may sum in another order.

# %%
diff = np.abs(out.study.relative_positions - rel).max()
print("largest difference, study.relative_positions vs build_relative_position:", diff)
assert diff == 0, diff  # integers: equal or wrong
diff = np.abs(out.study.rel_index - index).max()
print("largest difference, study.rel_index vs relative_index:", diff)
assert diff == 0, diff

warnings.filterwarnings("ignore", message="IProgress not found")
try:
    import torch
    from transformers.models.deberta_v2 import modeling_deberta_v2 as hf
except ImportError:
    print("transformers is not installed: skipping the comparison with it (pip install transformers torch)")
else:
    M = config.max_relative_span
    distances = np.arange(-4 * M, 4 * M + 1)
    theirs = hf.make_log_bucket_position(torch.tensor(distances), config.position_buckets, M).numpy()
    ours = make_log_bucket_position(distances, config.position_buckets, M)
    diff = np.abs(ours - theirs).max()
    print(f"largest difference vs transformers' make_log_bucket_position over |r| <= {4 * M}:", diff)
    assert diff == 0, diff

first, second = [(i, i + 1) for i in range(N - 1) if tokens[i:i + 2] == ["▁the", "▁cat"]]
print("pairs at", first, "and", second)
score = out.study.c2c[0] + out.study.c2p[0] + out.study.p2c[0]  # [B, H, N, N], layer 0
diff = np.abs(score[0, :, first[0], first[1]] - score[0, :, second[0], second[1]]).max()
print(f"largest difference between the two pairs' layer-0 scores (every head): {diff:.2e}"
      f"  (the scores themselves are up to {np.abs(score[0, :, first[0], first[1]]).max():.2f})")
assert diff <= 1e-5, diff  # the same numbers in other rows of the matrix products: float32 rounding only

# %% [markdown]
# ## Exercises
#
# 1. At what distance does the bucket first differ from the distance for the released models'
#    `(position_buckets, max_relative_positions) = (256, 512)`? Which bucket does $r = 1000$ get,
#    and which table row?
# 2. Repeat the last check in layer 1. Why does the difference stop being zero?
# 3. Without buckets (`position_buckets = -1`) $S = M$. Plot `relative_index(N, N, S)` for
#    $N > S$: which rows saturate, and is the clip symmetric?
