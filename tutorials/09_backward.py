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
# # 09 · Backward: gradients through disentangled attention
#
# Notebooks 03 and 08 run one attention block forward. Training needs the other direction: given
# how a loss $L$ changes with the block's output, how does it change with the block's input and
# with every weight? For one head (notebook 03's symbols; $P$ is the LayerNorm-ed relative table,
# shared by every layer, $s = \sqrt{3d}$):
#
# $$Q = XW_q + b_q,\quad K = XW_k + b_k,\quad V = XW_v + b_v,\qquad K^r = PW_k + b_k,\quad Q^r = PW_q + b_q$$
#
# $$S_{ij} = \big(q_i \cdot k_j + q_i \cdot K^r_{c(i,j)} + k_j \cdot Q^r_{c(i,j)}\big) / s,
# \qquad A = \operatorname{softmax}_j(S \text{ masked}), \qquad \text{context} = A V$$
#
# The chain rule runs these lines backwards. Write $G = \partial L / \partial\,\text{context}$ and
# $dY$ for $\partial L / \partial Y$:
#
# $$dV = A^\top G, \qquad dA = G V^\top, \qquad
#   dS_{ij} = A_{ij}\Big(dA_{ij} - \sum_k dA_{ik} A_{ik}\Big) \text{ if } (i, j) \text{ is visible, else } 0$$
#
# $$\text{c2c:}\quad dQ \mathrel{+}= dS\,K / s, \qquad dK \mathrel{+}= dS^\top Q / s$$
#
# $$\text{c2p:}\quad D^{\text{c2p}}_{i r} = \frac{1}{s}\sum_{j:\,c(i,j) = r} dS_{ij}, \qquad dQ \mathrel{+}= D^{\text{c2p}} K^r, \qquad dK^r = (D^{\text{c2p}})^\top Q$$
#
# $$\text{p2c:}\quad D^{\text{p2c}}_{j r} = \frac{1}{s}\sum_{i:\,c(i,j) = r} dS_{ij}, \qquad dK \mathrel{+}= D^{\text{p2c}} Q^r, \qquad dQ^r = (D^{\text{p2c}})^\top K$$
#
# $$dX = dQ\,W_q + dK\,W_k + dV\,W_v, \qquad dP = dK^r W_k + dQ^r W_q$$
#
# - The **softmax** step: the gradient of a probability row is projected onto the rows that sum
#   to zero (a softmax row cannot change its total); masked pairs had probability 0 and get 0.
# - The **relative terms** were *gathers*: c2p reads entry $(i, c(i,j))$ of $Q K^{r\top}$ for every
#   key $j$. The backward of a gather is a **scatter-add**: every $dS_{ij}$ is added into the table
#   row $c(i, j)$ it was read from. Near distances have a row each; far ones share a log bucket
#   (notebook 02), so a far row collects the gradient of many $(i, j)$ pairs.
# - With `share_att_key` (DeBERTa-v3) $W_k$ and $W_q$ serve content and positions, so they get
#   gradient from both: $dW_k = dK^\top X + (dK^r)^\top P$, and so on.
#
# Below: each step with the book's backward functions on the bundled model, checked by finite
# differences and against torch's autograd; then the gradient a masked-LM loss sends into the
# relative table, row by row; then a short fine-tuning run that uses these gradients.

# %%
# %matplotlib inline
import inspect
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta import viz
from pydeberta.attention import (attention_probabilities, attention_score_terms_backward, disentangled_self_attention,
                                 disentangled_self_attention_backward, gather_backward, merge_heads, project,
                                 relative_projections_backward, split_heads)
from pydeberta.functional import linear_backward, masked_softmax_backward
from pydeberta.heads import masked_lm_head_backward
from pydeberta.hub import resolve_model_folder
from pydeberta.losses import cross_entropy_backward
from pydeberta.model import encoder_layer_backward, relative_embeddings, relative_embeddings_backward
from pydeberta.positions import relative_index
from pydeberta.training import value_and_grad
from pydeberta.training.finetune import evaluate
from pydeberta.training.optim import AdamW, LinearSchedule, clip_grad_norm, transformers_no_decay

MODEL = "pydeberta/tiny"
warnings.filterwarnings("ignore", message="IProgress not found")

# %% [markdown]
# ## The library functions
#
# `gather_backward` is the scatter-add; `attention_score_terms_backward` takes the gradient of
# each term back to $Q$, $K$, $K^r$, $Q^r$; `disentangled_self_attention_backward` is the whole
# block. Like every backward in the book, each takes its forward's arguments and recomputes what
# it needs.

# %%
print(inspect.getsource(gather_backward))
print(inspect.getsource(attention_score_terms_backward))
print(inspect.getsource(disentangled_self_attention_backward))

# %% [markdown]
# ## A tiny example, step by step
#
# Layer 1 of the bundled model (in float64, for the checks), on two sentences: a long one, so that
# some distances fall in the shared log buckets, and a short one padded to its length, so that
# some pairs are masked. The loss is $L = \sum G \odot \text{context}$ for a fixed random $G$,
# so that $\partial L / \partial\,\text{context} = G$.

# %%
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL, dtype=np.float64)
config = model.config
texts = ["The old keeper climbed the narrow stairs every evening, lit the great lamp above the black rocks, and "
         "watched the ships pass slowly through the dark water until the sun rose over the quiet harbour.",
         "The ships came home."]
enc = tokenizer(texts, padding=True, return_tensors="np")
out = model(**enc, output_hidden_states=True)

layer = 1
encoder_params = model.tree["deberta"]["encoder"]
params = encoder_params["layer"][layer]["attention"]["self"]
H, S = config.num_attention_heads, config.att_span
x = out.hidden_states[layer]  # [B, N, C], the block's input
B, N, C = x.shape
mask = enc["attention_mask"]
visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
R = relative_embeddings(encoder_params, config)  # [2S, C], the table P
index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)  # [N, N] rows c(i, j)

# forward (notebook 03)
p = project(x, params, config, R)  # Q, K, V [B, H, N, D], Kr, Qr [H, 2S, D], the scale s
probs, terms = attention_probabilities(p, visible, index)  # A [B, H, N, N]
context = merge_heads(probs @ p.value)  # [B, N, C]
G = np.random.default_rng(0).standard_normal(context.shape)  # dL/dcontext

# backward, step by step
dctx = split_heads(G, H)  # [B, H, N, D]
dV = probs.swapaxes(-1, -2) @ dctx  # [B, H, N, D]
dA = dctx @ p.value.swapaxes(-1, -2)  # [B, H, N, N]
dS = masked_softmax_backward(dA, probs, visible)  # [B, H, N, N]
dQ, dK, dKr, dQr = attention_score_terms_backward({name: dS for name in terms}, p.query, p.key, p.scale,
                                                   p.pos_key, p.pos_query, index)
dP, position_grads = relative_projections_backward(dKr, dQr, R, params, config)  # [2S, C]
dX = np.zeros_like(x)
for name, d in (("query_proj", dQ), ("key_proj", dK), ("value_proj", dV)):
    dX_part, _ = linear_backward(merge_heads(d), x, **params[name])  # [B, N, C]
    dX = dX + dX_part

print(f"B = {B}, N = {N} (the second sentence has {mask[1].sum()} tokens), C = {C}, H = {H}, D = {C // H}, "
      f"2S = {2 * S} table rows, s = {p.scale:.4f}")
print("G", G.shape, " dV", dV.shape, " dA", dA.shape, " dS", dS.shape)
print("dQ", dQ.shape, " dK", dK.shape, " dKr", dKr.shape, " dQr", dQr.shape, " dP", dP.shape, " dX", dX.shape)
print(f"dS is 0 on all {(~np.broadcast_to(visible, dS.shape)).sum()} masked entries:",
      bool(np.all(dS[~np.broadcast_to(visible, dS.shape)] == 0)))

# %% [markdown]
# **The scatter on one row.** Query $i = 0$ (`[CLS]`) reads row $c(0, j)$ for every key $j$. The
# far keys share rows, so the c2p gradient of row $r$ is the sum of $dS_{0j}$ over the keys $j$ with
# $c(0, j) = r$ (divided by $s$). `gather_backward` does this for every query at once.

# %%
head = 0
D_c2p = gather_backward(dS / p.scale, index, 2 * S)  # [B, H, N, 2S]
far = index[0, N - 1]  # the row of the farthest key
keys = np.flatnonzero(index[0] == far)
print(f"c(0, j) = {far} for the keys j = {keys.tolist()} (distances {(-keys).tolist()})")
print(f"D[0, {head}, 0, {far}] = {D_c2p[0, head, 0, far]:.6f} = sum of dS[0, {head}, 0, j] / s over those keys = "
      f"{dS[0, head, 0, keys].sum() / p.scale:.6f}")
near = index[0, 1]
print(f"row {near} (distance -1) is read by key 1 only: D = {D_c2p[0, head, 0, near]:.6f}, "
      f"dS / s = {dS[0, head, 0, 1] / p.scale:.6f}")

# %% [markdown]
# ## One figure: from the score gradient to the table rows
#
# Left: $dS$ of one head for the long sentence, query $i$ against key $j$; each diagonal
# $i - j = \text{const}$ is one distance. Right: $D^{\text{c2p}}$, query $i$ against table row $r$
# (the rows it reaches): the scatter moved every diagonal into one column, and the far columns
# hold the sum of several diagonals. $dK^r = (D^{\text{c2p}})^\top Q$ then adds over the queries.

# %%
n = int(mask[0].sum())
reached = np.unique(index[:n, :n])
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True,
                         gridspec_kw={"width_ratios": [n, len(reached)]})
limit = np.abs(dS[0, head, :n, :n]).max()
axes[0].imshow(dS[0, head, :n, :n], cmap="RdBu_r", vmin=-limit, vmax=limit)
axes[0].set_xlabel("key j")
axes[0].set_ylabel("query i")
axes[0].set_title(f"dS, layer {layer}, head {head}  [N, N]")
limit = np.abs(D_c2p[0, head, :n][:, reached]).max()
image = axes[1].imshow(D_c2p[0, head, :n][:, reached], cmap="RdBu_r", vmin=-limit, vmax=limit)
ticks = np.arange(0, len(reached), 8)
axes[1].set_xticks(ticks, [str(reached[t] - S) for t in ticks])
axes[1].set_xlabel("table row r − S  (= bucket of i − j)")
axes[1].set_title("D (c2p) = dS scattered into the rows  [N, rows reached]")
mid = config.position_buckets // 2
for bound in (-mid, mid):  # beyond ±mid, a row holds several distances
    column = np.searchsorted(reached, bound + S)
    if 0 < column < len(reached):
        axes[1].axvline(column, color="black", linestyle="--", linewidth=0.8)
fig.colorbar(image, ax=axes, shrink=0.8)

# %% [markdown]
# ## Check: the steps, finite differences
#
# 1. The steps above give what `disentangled_self_attention_backward` returns (the same functions,
#    in the same order): exactly.
# 2. The softmax step by its formula, $A \odot (dA - \operatorname{rowsum}(dA \odot A))$ on the
#    visible pairs.
# 3. Finite differences on the table itself: $\big(L(P + h e_{rc}) - L(P - h e_{rc})\big) / 2h$
#    for entries of a near row, of a far (shared) row and of a row no pair reaches (gradient 0),
#    through projections, gathers, softmax and $AV$, against $dP_{rc}$.

# %%
dX_book, grads_book, dP_book = disentangled_self_attention_backward(G, x, params, config, visible, R, index)
for name, ours, book in (("dX", dX, dX_book), ("dP", dP, dP_book)):
    diff = np.abs(ours - book).max()
    print(f"largest difference, {name} step by step vs disentangled_self_attention_backward: {diff:.2e}")
    assert diff == 0, diff

by_hand = np.where(visible, probs * (dA - (dA * probs).sum(-1, keepdims=True)), 0)
diff = np.abs(dS - by_hand).max()
print(f"largest difference, masked_softmax_backward vs A * (dA - rowsum(dA * A)): {diff:.2e}")
assert diff <= 1e-14, diff


def block_loss(table):
    return float(np.sum(G * disentangled_self_attention(x, params, config, visible, table, index)[0]))


h = 1e-5
rng = np.random.default_rng(1)
for row in (S + 1, far, 2 * S - 1):  # distance i - j = +1, the far row, a row no pair reaches
    column = int(rng.integers(C))
    bumped = [R.copy(), R.copy()]
    bumped[0][row, column] += h
    bumped[1][row, column] -= h
    numeric = (block_loss(bumped[0]) - block_loss(bumped[1])) / (2 * h)
    diff = abs(numeric - dP[row, column])
    print(f"largest difference, finite difference vs dP[{row}, {column}] (row r − S = {row - S}): {diff:.2e} "
          f"(dP = {dP[row, column]:+.6f})")
    assert diff <= 1e-8 * max(1.0, abs(numeric)), diff

# %% [markdown]
# ## The whole model: where the relative table's gradient comes from
#
# One table $P$ serves every layer, every head, every sentence and every pair $(i, j)$ of the
# batch: its gradient is the sum of all of their scatters. `value_and_grad` under the `reference`
# backend runs the book's forward, the masked-LM loss and every backward, and returns the gradient
# of each checkpoint key (under the default backend it runs the engine's training pass, whose
# forward keeps each layer's intermediates for the backward: the same numbers within rounding,
# checked below); below, the same walk down the stack by hand (loss → logits → head → each layer's
# `encoder_layer_backward`), keeping each layer's share $dP^{(\ell)}$.
#
# The batch: eight held-out lines of the bundled model's corpus, 15% of their tokens masked,
# the masked-LM loss on those.

# %%
sample = (resolve_model_folder(MODEL) / "heldout_sample.txt").read_text(encoding="utf-8").splitlines()
lines = [line for line in sample if len(line.split()) >= 25][:8]
batch = tokenizer(lines, padding=True, truncation=True, max_length=96, return_tensors="np")
ids, mask = batch["input_ids"], batch["attention_mask"]
masked = (mask == 1) & ~np.isin(ids, tokenizer.all_special_ids) & (np.random.default_rng(0).random(ids.shape) < 0.15)
labels = np.where(masked, ids, -100)
inputs = {"input_ids": np.where(masked, tokenizer.mask_token_id, ids), "attention_mask": mask}
with pydeberta.use_backend("reference"):
    outputs, grads = value_and_grad(model, **inputs, labels=labels, output_hidden_states=True)
key = "deberta.encoder.rel_embeddings.weight"
print(f"{len(lines)} lines, {mask.sum(1).tolist()} tokens, {masked.sum()} masked; loss = {outputs.loss:.4f}")
print(f"{len(grads)} gradients, one per checkpoint key; {key}: {grads[key].shape}")

# by hand: the loss's gradient on the logits, the head, then the layers from the top
V = outputs.logits.shape[-1]
dlogits = cross_entropy_backward(outputs.logits.reshape(-1, V), labels.reshape(-1)).reshape(outputs.logits.shape)
word_embeddings = model.tree["deberta"]["embeddings"]["word_embeddings"]["weight"]
dh, _, _ = masked_lm_head_backward(dlogits, outputs.hidden_states[-1], model.tree["lm_predictions"], word_embeddings,
                                   config)  # [B, N, C]
N = ids.shape[1]
visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)  # [N, N]
dP_layers = [None] * config.num_hidden_layers
for i in reversed(range(config.num_hidden_layers)):
    dh, _, dP_layers[i] = encoder_layer_backward(dh, outputs.hidden_states[i], encoder_params["layer"][i], config,
                                                 visible, R, index)  # dh: [B, N, C], dP: [2S, C]
print("each layer's dP", dP_layers[0].shape)

# how many (b, i, j) pairs of the batch read each row, and how many distances each row holds
pairs = sum(np.bincount(index[:n, :n].ravel(), minlength=2 * S) for n in mask.sum(1))  # [2S]
offsets_ij = np.arange(N)[:, None] - np.arange(N)  # [N, N], i - j
distances = np.array([len(np.unique(offsets_ij[index == r])) for r in range(2 * S)])  # [2S]
print(f"rows reached: {np.count_nonzero(pairs)} of {2 * S}; the farthest row holds {distances.max()} distances")

# %% [markdown]
# ## The figure: the gradient flowing into the relative table, by distance
#
# Top: the size $\lVert dP_r \rVert$ of each row's gradient, each layer's share and their sum,
# against the row's bucket $r - S$ (the bucketed distance $i - j$). Middle: how many pairs of the
# batch read each row: one distance per row inside the dashed lines, several beyond them, where
# the log buckets gather far pairs. Bottom: the gradient per pair.

# %%
fig = viz.plot_relative_gradient(dP_layers, pairs, distances, config.position_buckets)

# %% [markdown]
# Rows no pair reaches (beyond the longest line) get nothing. Inside the dashed lines each row is
# one distance, read by fewer pairs the farther it is; beyond them a row holds several distances
# and collects all of their pairs, up to twice as many as a near row, yet its gradient stays
# small: in this batch the gradient per pair is largest for the few rows around distance 0 (a
# masked token is predicted mostly from its neighbours) and falls off with the distance. Each
# layer sends its own share into the same table; they add. Exercise 2 asks what a longer batch
# changes.
#
# ## Check: the layers add up to value_and_grad, and torch's autograd agrees
#
# 1. The layers' $dP^{(\ell)}$, added and taken back through the table's LayerNorm
#    (`relative_embeddings_backward`), give `value_and_grad`'s gradient of
#    `deberta.encoder.rel_embeddings.weight` (the same functions: exactly).
# 2. transformers' `DisentangledSelfAttention` of layer 1 in float64 on the block's inputs, with
#    `context.backward(G)`: $dX$, $dP$ and every weight's gradient against ours.
# 3. transformers' `DebertaV2ForMaskedLM` in float64 on the masked batch, `loss.backward()`: every
#    parameter's gradient against `value_and_grad`'s, including the relative table's.
# 4. `value_and_grad` on the default backend (the engine's training pass) against the book's.

# %%
dP_sum = np.zeros_like(R)
for d in reversed(dP_layers):  # in the order encoder_backward adds them
    dP_sum = dP_sum + d
table_grad = relative_embeddings_backward(dP_sum, encoder_params, config)["rel_embeddings"]["weight"]
diff = np.abs(table_grad - grads[key]).max()
print(f"largest difference, the layers' dP through relative_embeddings_backward vs value_and_grad: {diff:.2e}")
assert diff == 0, diff
_, engine_grads = value_and_grad(model, **inputs, labels=labels)  # 4. the default backend
diff = max(np.abs(engine_grads[name] - grads[name]).max() for name in grads)
print(f"largest difference over all {len(grads)} gradients, the engine's pass ({pydeberta.backend_info()['backend']}) "
      f"vs the book's: {diff:.2e}")
assert diff <= 1e-12, diff

try:
    import torch
    import transformers
except ImportError:
    print("transformers/torch are not installed: skipping the comparisons with them (pip install transformers torch)")
else:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        hf = transformers.DebertaV2ForMaskedLM.from_pretrained(folder).double().eval()
    # 2. one block
    block_mask = tokenizer(texts, padding=True, return_tensors="np")["attention_mask"]
    x_t = torch.tensor(x, requires_grad=True)
    R_t = torch.tensor(R, requires_grad=True)
    attention = hf.deberta.encoder.layer[layer].attention.self
    context_t = attention(x_t, hf.deberta.encoder.get_attention_mask(torch.from_numpy(block_mask)),
                          relative_pos=hf.deberta.encoder.get_rel_pos(x_t), rel_embeddings=R_t)[0]
    context_t.backward(torch.from_numpy(G))
    diff = np.abs(context_t.detach().numpy() - context).max()
    print(f"largest difference, transformers' context vs ours: {diff:.2e}")
    assert diff <= 1e-12, diff
    theirs = {"dX": x_t.grad, "dP": R_t.grad, **{name: t.grad for name, t in attention.named_parameters()}}
    ours = {"dX": dX, "dP": dP}
    for name in theirs:
        if name not in ours:
            module, kind = name.split(".")
            ours[name] = grads_book[module][kind]
    diff = max(np.abs(ours[name] - theirs[name].numpy()).max() for name in theirs)
    print(f"largest difference, the block's gradients vs torch autograd ({', '.join(theirs)}): {diff:.2e}")
    assert diff <= 1e-12, diff
    # 3. the whole model
    hf.zero_grad()
    loss_t = hf(**{name: torch.from_numpy(value) for name, value in inputs.items()},
                labels=torch.from_numpy(labels)).loss
    loss_t.backward()
    diff = abs(float(loss_t) - float(outputs.loss))
    print(f"largest difference, transformers' loss vs ours: {diff:.2e}")
    assert diff <= 1e-12, diff
    their_grads = {name: t.grad.numpy() for name, t in hf.named_parameters() if t.grad is not None}
    diff = np.abs(their_grads[key] - grads[key]).max()
    print(f"largest difference, {key} gradient vs torch autograd: {diff:.2e} (largest entry "
          f"{np.abs(grads[key]).max():.2e})")
    assert diff <= 1e-12, diff
    diff = max(np.abs(value - grads[name]).max() for name, value in their_grads.items())
    print(f"largest difference over all {len(their_grads)} parameter gradients vs torch autograd: {diff:.2e}")
    assert diff <= 1e-10, diff

# %% [markdown]
# ## Fine-tuning on a task made here
#
# With every gradient at hand, training is a loop (transformers' `Trainer` with its defaults;
# `pydeberta.training.finetune.finetune` runs the same loop over epochs, with shuffling,
# evaluation and saving):
#
# $$g = \nabla_\theta L(\theta; \text{batch}), \qquad g \leftarrow g \cdot \min\!\big(1, \tfrac{1}{\lVert g \rVert}\big),
# \qquad \theta \leftarrow \operatorname{AdamW}(\theta, g, \eta_t)$$
#
# The task needs word order: a few words, among them *cat* and *dog*; the label says whether
# *cat* comes first. Both words are in every sentence, so a bag of words is right half the time;
# DeBERTa adds no absolute positions to its inputs, so the order reaches the model only through
# the relative terms, the table $P$ and the projections that read it.
#
# The model: the bundled backbone with a new classification head (pooler and classifier,
# initialised with a fixed seed), dropout on (`model.train()`), 30 steps of 16 sentences.
#
# Training is thousands of small matrix products. On a machine busy with other work,
# NumPy's BLAS threads can spend most of their time waiting for each other: if this cell crawls,
# start Jupyter with `OPENBLAS_NUM_THREADS=1` (about 20 s for the loop here).

# %%
WORDS = ["the", "a", "red", "small", "old", "house", "tree", "river", "bird", "stone", "bread", "light"]


def cat_before_dog(count, seed):
    """Sentences of 3-7 random words with "cat" and "dog" inserted at random places; label 1 when
    "cat" comes first."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        words = [str(word) for word in rng.choice(WORDS, int(rng.integers(3, 8)))]
        first, second = sorted(rng.choice(len(words) + 2, 2, replace=False))
        order = ("cat", "dog") if rng.random() < 0.5 else ("dog", "cat")
        words.insert(first, order[0])
        words.insert(second, order[1])
        examples.append({"text": " ".join(words), "label": int(order[0] == "cat")})
    return examples


STEPS, BATCH = 30, 16
train, held_out = cat_before_dog(STEPS * BATCH, seed=1), cat_before_dog(128, seed=2)
print(train[:3])

backbone = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)  # float32 for training
classifier_config = pydeberta.DebertaV2Config.from_dict(backbone.config.to_dict(), num_labels=2)
classifier = pydeberta.DebertaV2ForSequenceClassification(classifier_config, seed=0)  # head: seeded init
classifier.load_state_dict({**classifier.params,
                            **{k: v for k, v in backbone.params.items() if k.startswith("deberta.")}})
table_before = classifier.params[key].copy()
before = evaluate(classifier, tokenizer, held_out, "text-classification")
print(f"held-out accuracy before training: {before['accuracy']:.3f} (loss {before['loss']:.4f})")

start = time.perf_counter()
optimizer = AdamW(classifier.params, lr=5e-4, weight_decay=0.01, no_decay=transformers_no_decay,
                  schedule=LinearSchedule(STEPS // 10, STEPS))
classifier.train(seed=0)  # dropout on
losses, norms = [], []
for step in range(STEPS):
    rows = train[step * BATCH:(step + 1) * BATCH]
    batch = dict(tokenizer([row["text"] for row in rows], padding=True, return_tensors="np"),
                 labels=np.array([row["label"] for row in rows]))
    outputs, step_grads = value_and_grad(classifier, **batch)
    step_grads, norm = clip_grad_norm(step_grads, max_norm=1.0)
    classifier.load_state_dict(optimizer.step(classifier.params, step_grads))
    losses.append(float(outputs.loss))
    norms.append(float(norm))
classifier.eval()
after = evaluate(classifier, tokenizer, held_out, "text-classification")
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s; loss {np.mean(losses[:5]):.3f} (first 5 steps) -> "
      f"{np.mean(losses[-5:]):.3f} (last 5)")
print(f"held-out accuracy after training: {after['accuracy']:.3f} (loss {after['loss']:.4f})")

# %% [markdown]
# Left: the training loss per step (dropout on, so it is noisy) and the gradient norm before
# clipping. Right: how far each row of the relative table moved, $\lVert \Delta P_r \rVert$ of
# `rel_embeddings.weight`: the rows of the short distances between the task's words moved; the
# rows no sentence reaches only shrank by the weight decay.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
axes[0].plot(range(1, STEPS + 1), losses, marker=".", label="training loss")
axes[0].axhline(np.log(2), color="0.6", linestyle=":", label="log 2 (guessing)")
axes[0].set_xlabel("step")
axes[0].set_ylabel("cross-entropy")
axes[0].set_title(f"fine-tuning: held-out accuracy {before['accuracy']:.2f} → {after['accuracy']:.2f}")
twin = axes[0].twinx()
twin.plot(range(1, STEPS + 1), norms, color="tab:orange", linewidth=0.8, label="‖g‖ before clipping")
twin.set_ylabel("gradient norm", color="tab:orange")
axes[0].legend(loc="upper right", fontsize=8)
moved = np.linalg.norm(classifier.params[key] - table_before, axis=1)  # [2S]
axes[1].bar(np.arange(2 * S) - S, moved, width=0.9)
axes[1].set_xlim(-20, 20)
axes[1].set_xlabel("table row r − S  (bucket of the distance i − j)")
axes[1].set_ylabel("‖ΔP_r‖")
axes[1].set_title("how far each relative table row moved")

# %% [markdown]
# The checks of this section are of another kind: not a difference to zero, but what the training
# must achieve whatever the exact weights of the bundled model (it is retrained from time to
# time): the held-out accuracy after training at least 0.8 and above the accuracy before (about
# 0.5, guessing), the loss down, and the moved rows being the near ones.

# %%
assert after["accuracy"] >= 0.8 and after["accuracy"] > before["accuracy"], (before, after)
assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
near_rows = np.abs(np.arange(2 * S) - S) <= 8
assert moved[near_rows].mean() > 10 * moved[~near_rows].mean(), moved

# %% [markdown]
# ## Exercises
#
# 1. Call `attention_score_terms_backward` with `{"c2c": dS}` and `pos_key=None, pos_query=None`
#    (no relative terms). Which gradients are gone, and how much does $dQ$ change?
# 2. Take the batch of the figure with `max_length=512` on longer texts. How do the pair counts
#    of the far rows grow compared with the near rows?
# 3. Train the word-order task with the relative table frozen (set its gradient to zero before the
#    optimiser step). Does the model still learn the order? Which parameters carry it then?
