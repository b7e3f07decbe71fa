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
# # 03 · Disentangled attention: three terms, one index, √(3d)
#
# DeBERTa keeps *what* a token is (its content vector) apart from *where* it is relative to
# another (an embedding of the bucketed distance, notebook 02). For query $i$ and key $j$ of one
# head of size $d$ (He et al., *DeBERTa: Decoding-enhanced BERT with Disentangled Attention*,
# ICLR 2021, eq. (4)):
#
# $$A_{ij} = \frac{\overbrace{q_i \cdot k_j}^{\text{c2c}} \;+\; \overbrace{q_i \cdot K^r_{c(i,j)}}^{\text{c2p}}
#   \;+\; \overbrace{k_j \cdot Q^r_{c(i,j)}}^{\text{p2c}}}{\sqrt{3d}},
# \qquad \text{probs}_{i} = \operatorname{softmax}_j(A_{ij}) $$
#
# - **c2c** content-to-content: $q = xW_q + b_q$, $k = xW_k + b_k$, as in BERT.
# - **c2p** content-to-position: how much query $i$'s content wants a key at distance $i-j$.
# - **p2c** position-to-content: how much key $j$'s content wants to be seen from distance $i-j$.
# - $K^r = RW_k + b_k$ and $Q^r = RW_q + b_q$ project the relative-embedding table $R$ `[2S, C]`
#   with **the same projections as the content** (`share_att_key`, DeBERTa-v3): no extra weights.
# - **The index rule**: *both* relative terms read the same table row
#   $c(i,j) = \operatorname{clip}(\mathrm{bucket}(i-j) + S, 0, 2S-1)$, the paper's relative
#   distance $\delta(i, j)$ of eq. (3) with log buckets (notebook 02). (transformers writes p2c
#   with $-\mathrm{rel}[j, i]$, which is the same row because the bucket function is odd.)
# - **Why $\sqrt{3d}$**: each term is a dot product of $d$ roughly unit-variance products, so it
#   has variance about $d$; three independent terms sum to about $3d$. Dividing by $\sqrt{3d}$
#   brings the scores back to unit variance, as $\sqrt{d}$ does for BERT's single term.

# %%
# %matplotlib inline
import inspect

import numpy as np

import pydeberta
from pydeberta import viz
from pydeberta.attention import (attention_scale, attention_score_terms, relative_projections, split_heads)
from pydeberta.hub import resolve_model_folder
from pydeberta.functional import linear, masked_softmax
from pydeberta.model import encoder_layer, relative_embeddings
from pydeberta.positions import relative_index

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library functions

# %%
print(inspect.getsource(relative_projections))
print(inspect.getsource(attention_score_terms))

# %% [markdown]
# ## A tiny example, step by step
#
# Run the model once, asking for everything, then recompute one layer's attention from its input
# with the library's functions.

# %%
model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
config = model.config
enc = tokenizer("And God said, Let there be light: and there was light.", return_tensors="np")
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
out = model(**enc, output_attentions=True, output_hidden_states=True, output_study=True)

# the head where the relative terms move the scores most, relative to c2c
spread = viz.term_magnitudes(out)
layer, head = np.unravel_index(np.argmax((spread["c2p"] + spread["p2c"]) / spread["c2c"]), spread["c2c"].shape)
layer, head = int(layer), int(head)
print(f"N = {len(tokens)} tokens; looking at layer {layer}, head {head}")

# %%
encoder_params = model.tree["deberta"]["encoder"]
params = encoder_params["layer"][layer]["attention"]["self"]
H, C = config.num_attention_heads, config.hidden_size
N = len(tokens)

x = out.hidden_states[layer]  # the layer's input [B, N, C]
query = split_heads(linear(x, **params["query_proj"]), H)  # [B, H, N, D]
key = split_heads(linear(x, **params["key_proj"]), H)  # [B, H, N, D]
D = query.shape[-1]
R = relative_embeddings(encoder_params, config)  # [2S, C], layer-normed
pos_key, pos_query = relative_projections(R, params, config)  # [H, 2S, D] each
index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)  # [N, N]
scale = attention_scale(D, config.pos_att, query.dtype)
terms = attention_score_terms(query, key, scale, pos_key, pos_query, index)  # each [B, H, N, N]

print("x", x.shape, " query/key", query.shape, " R", R.shape, " Kr/Qr", pos_key.shape, " index", index.shape)
print(f"scale = sqrt(D * sf) = sqrt({D} * {1 + len(config.pos_att)}) = {scale:.4f}")
print("terms:", {name: t.shape for name, t in terms.items()})
print("this layer's parameters:", sorted(params), "(no pos_key_proj / pos_query_proj: shared)")

# %% [markdown]
# **The index rule on one element.** c2p at $(i, j)$ is query $i$ against row $c(i,j)$ of $K^r$;
# p2c is key $j$ against the *same* row of $Q^r$. Reading row $c(j, i)$ instead gives another
# number.

# %%
i, j = 6, 2
row = index[i, j]
print(f"c({i}, {j}) = {row},  c({j}, {i}) = {index[j, i]}")
print("c2p:", terms["c2p"][0, head, i, j], "=", query[0, head, i] @ pos_key[head, row] / scale)
print("p2c:", terms["p2c"][0, head, i, j], "=", key[0, head, j] @ pos_query[head, row] / scale,
      " (row c(j, i) would give", key[0, head, j] @ pos_query[head, index[j, i]] / scale, ")")

# %% [markdown]
# **Why √(3d), measured.** With unit-variance random vectors, each unscaled term has variance
# about $d$, their sum about $3d$, and the library's scale brings it back to about 1.

# %%
rng = np.random.default_rng(0)
q, k = rng.standard_normal((2, 1, 64, N, D))  # 64 random "heads" [B, H, N, D]
kr, qr = rng.standard_normal((2, 64, 2 * config.att_span, D))  # [H, 2S, D]
unscaled = attention_score_terms(q, k, 1.0, kr, qr, index)
total = sum(unscaled.values())
print({name: round(float(t.var()), 1) for name, t in unscaled.items()}, f"d = {D}")
print(f"var(sum) = {total.var():.1f} ≈ 3d = {3 * D};  var(sum / scale) = {(total / scale).var():.2f}")

# %% [markdown]
# ## One figure: the three terms and their sum
#
# On one colour scale. c2c is content against content. Each row of c2p is one query's preference
# over distances (query $i$ against the table rows $c(i, \cdot)$), each column of p2c one key's
# preference over the distances it is seen from; the sum is what the softmax sees.

# %%
fig, axes = viz.plot_score_terms(out, tokens, layer=layer, head=head)

# %% [markdown]
# How much each term moves the scores, in every layer (bars: mean over heads; dots: heads):

# %%
fig, ax = viz.plot_term_magnitudes(out)

# %% [markdown]
# ## Check against the model
#
# `output_study=True` runs the book (`pydeberta.model`), the functions used above, so the
# step-by-step terms are the model's `out.study` terms exactly; the masked softmax of their sum is
# the model's attention up to the order of the additions; and the book's whole layer,
# `encoder_layer`, applied to `x` gives the next hidden state and the same attention exactly.

# %%
mask = enc["attention_mask"]
visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
probs = masked_softmax(terms["c2c"] + terms["c2p"] + terms["p2c"], visible)
for name in ("c2c", "c2p", "p2c"):
    diff = np.abs(terms[name] - getattr(out.study, name)[layer]).max()
    print(f"largest difference, {name} vs out.study.{name}[{layer}]: {diff:.2e}")
    assert diff == 0, diff  # the same functions on the same arrays
diff = np.abs(probs - out.attentions[layer]).max()
print(f"largest difference, probs vs out.attentions[{layer}]: {diff:.2e}")
assert diff <= 1e-6, diff  # the three terms summed in another order

y, layer_probs, _ = encoder_layer(x, encoder_params["layer"][layer], config, visible, R, index)
diff = np.abs(y - out.hidden_states[layer + 1]).max()
print(f"largest difference, encoder_layer(x) vs out.hidden_states[{layer + 1}]: {diff:.2e}")
assert diff == 0, diff
diff = np.abs(layer_probs - out.attentions[layer]).max()
print(f"largest difference, encoder_layer's probabilities vs out.attentions[{layer}]: {diff:.2e}")
assert diff == 0, diff

# %% [markdown]
# ## Exercises
#
# 1. Set `pos_key = None` (turn c2p off) and recompute the probabilities. Which tokens' attention
#    changes most in this head?
# 2. Sum `terms["c2p"][0, head]` along each diagonal $i - j = \text{const}$. Is every diagonal
#    constant? Why not, although it reads a single table row?
# 3. `config.share_att_key` is True here. How many parameters per layer would separate
#    `pos_key_proj` and `pos_query_proj` add?
