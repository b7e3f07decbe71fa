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
# # 08 · After the probabilities: context, output, feed-forward
#
# Notebook 03 ends at the attention probabilities $A$. The rest of a layer turns them into the
# layer's output, in four steps (each head $h$ has its values $V_h = X W^V_h$, $D$ numbers per token):
#
# $$\text{context}_h = A_h V_h \qquad [N, D] \qquad\qquad \text{context} = [\text{context}_1, \dots, \text{context}_H] \qquad [N, C]$$
#
# $$a = \operatorname{LayerNorm}\big(\text{context}\, W^O + b^O + X\big) \qquad \text{(attention output, residual)}$$
#
# $$f = \operatorname{gelu}(a W^1 + b^1) \qquad [N, F], \qquad \operatorname{gelu}(z) = \tfrac{z}{2}\big(1 + \operatorname{erf}(z/\sqrt{2})\big) \quad \text{(exact, not the tanh form)}$$
#
# $$Y = \operatorname{LayerNorm}\big(f W^2 + b^2 + a\big) \qquad [N, C] \qquad \text{(feed-forward, residual)}$$
#
# Each token's vector is *added to* twice (the residuals) and renormalised twice; the
# feed-forward block acts on every token alone, widening it to $F = 4C$ and back. Below, each
# step with the book's function on the bundled model, then how one token's vector changes through
# a layer and through the stack, and a check against transformers.

# %%
# %matplotlib inline
import inspect
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta.attention import attention_output, disentangled_self_attention, merge_heads, split_heads
from pydeberta.functional import gelu, layer_norm, linear
from pydeberta.hub import resolve_model_folder
from pydeberta.model import encoder_layer, relative_embeddings

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library functions
#
# `encoder_layer` is the whole layer; `attention_output` is the first residual block.

# %%
print(inspect.getsource(encoder_layer))
print(inspect.getsource(attention_output))

# %% [markdown]
# ## A tiny example, step by step
#
# Layer 1 of the bundled model on one sentence. Its input $X$ is `hidden_states[1]` (layer 0's
# output); the probabilities come from `disentangled_self_attention` (notebook 03).

# %%
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
model = pydeberta.DebertaV2Model.from_pretrained(MODEL)
config = model.config
enc = tokenizer("The lamp shone on the old wooden table in the quiet room.", return_tensors="np")
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
out = model(**enc, output_hidden_states=True, output_attentions=True, output_study=True)

layer = 1
params = model.tree["encoder"]["layer"][layer]
X = out.hidden_states[layer]  # [B, N, C]
mask = enc["attention_mask"]
visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
R = relative_embeddings(model.tree["encoder"], config)  # [2S, C]
context, probs, terms = disentangled_self_attention(X, params["attention"]["self"], config, visible, R,
                                                    out.study.rel_index)

V = split_heads(linear(X, **params["attention"]["self"]["value_proj"]), config.num_attention_heads)  # [B, H, N, D]
per_head = probs @ V  # [B, H, N, D]: each head's weighted average of its values
print("X", X.shape, " A", probs.shape, " V", V.shape, " A @ V", per_head.shape, " context", context.shape)
assert np.allclose(merge_heads(per_head), context, atol=1e-6)  # the context is the heads' A @ V side by side

update = linear(context, **params["attention"]["output"]["dense"])  # [B, N, C]: what attention adds
a = attention_output(context, X, params["attention"]["output"], config.layer_norm_eps)  # [B, N, C]
f = gelu(linear(a, **params["intermediate"]["dense"]))  # [B, N, F]
ffn_update = linear(f, **params["output"]["dense"])  # [B, N, C]: what the feed-forward block adds
Y = layer_norm(ffn_update + a, **params["output"]["LayerNorm"], eps=config.layer_norm_eps)  # [B, N, C]
print("a", a.shape, " f", f.shape, f" (F = {config.intermediate_size} = {config.intermediate_size // config.hidden_size}C)",
      " Y", Y.shape)
print(f"{np.mean(np.abs(f) < 1e-2):.0%} of the feed-forward activations are within 0.01 of zero: GELU lets a "
      "negative input through only as a small negative value, so each token uses a part of the F units")

# %% [markdown]
# ## One figure: one token's vector through a layer and through the stack
#
# Left: for every token of the sentence, the size of what each residual block adds compared with
# what it adds to (attention: $\lVert \text{context}\,W^O + b^O \rVert / \lVert X \rVert$; feed-forward:
# $\lVert f W^2 + b^2 \rVert / \lVert a \rVert$): the share of a token's vector each block rewrites.
# Right: through the whole stack, how similar each layer's output is to the token's embedding
# $E^0$ (cosine similarity), token by token, and their mean.

# %% tags=["readme:residual_updates.png"]
def row_norm(x):
    return np.linalg.norm(x[0], axis=-1)  # [N]


def cosine_rows(x, y):
    return (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


attention_share = row_norm(update) / row_norm(X)
ffn_share = row_norm(ffn_update) / row_norm(a)
E0 = out.hidden_states[0][0]  # [N, C]
similarity = np.array([cosine_rows(h[0], E0) for h in out.hidden_states])  # [L + 1, N]

fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
positions = np.arange(len(tokens))
axes[0].bar(positions - 0.2, attention_share, width=0.4, label="attention block: ‖context W + b‖ / ‖X‖")
axes[0].bar(positions + 0.2, ffn_share, width=0.4, label="feed-forward block: ‖f W + b‖ / ‖a‖")
axes[0].set_xticks(positions, tokens, rotation=90)
axes[0].set_ylabel("update size / input size")
axes[0].set_title(f"what each residual block adds, layer {layer}")
axes[0].legend(fontsize=8)
for t in range(len(tokens)):
    axes[1].plot(range(len(out.hidden_states)), similarity[:, t], color="0.75", linewidth=0.8)
axes[1].plot(range(len(out.hidden_states)), similarity.mean(axis=1), color="black", linewidth=2, label="mean over tokens")
axes[1].set_xticks(range(len(out.hidden_states)), ["E0"] + [f"layer {i}" for i in range(config.num_hidden_layers)])
axes[1].set_ylabel("cosine similarity to the token's embedding")
axes[1].set_title("a token's vector drifting from its embedding")
axes[1].legend(fontsize=8)

# %% [markdown]
# Each layer rewrites part of each token's vector and keeps the rest (the residual); layer by
# layer the vectors move away from the embeddings, most for the tokens whose meaning depends on
# their neighbours.
#
# ## Check
#
# 1. The four steps above give the model's own layer output `hidden_states[layer + 1]`, and
#    `encoder_layer` on $X$ gives it too: exactly, since `output_study=True` runs these same
#    functions.
# 2. transformers' `DebertaV2Layer` on the same weights: its attention output $a$ (the
#    `attention.output` module), its GELU activations $f$ (`intermediate`) and the layer's output
#    $Y$, captured with forward hooks, equal ours to float32 rounding (at most 1e-4).

# %%
diff = np.abs(Y - out.hidden_states[layer + 1]).max()
print(f"largest difference, the four steps vs out.hidden_states[{layer + 1}]: {diff:.2e}")
assert diff == 0, diff
y_layer, _, _ = encoder_layer(X, params, config, visible, R, out.study.rel_index)
diff = np.abs(y_layer - out.hidden_states[layer + 1]).max()
print(f"largest difference, encoder_layer vs out.hidden_states[{layer + 1}]: {diff:.2e}")
assert diff == 0, diff

warnings.filterwarnings("ignore", message="IProgress not found")
try:
    import torch
    import transformers
except ImportError:
    print("transformers/torch are not installed: skipping the comparisons with them (pip install transformers torch)")
else:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        hf = transformers.DebertaV2Model.from_pretrained(folder).eval()
    captured = {}
    block = hf.encoder.layer[layer]
    hooks = [block.attention.output.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o)),
             block.intermediate.register_forward_hook(lambda m, i, o: captured.__setitem__("f", o)),
             block.register_forward_hook(lambda m, i, o: captured.__setitem__("Y", o[0] if isinstance(o, tuple) else o))]
    with torch.no_grad():
        hf(**{name: torch.from_numpy(value) for name, value in enc.items()})
    for hook in hooks:
        hook.remove()
    for name, ours in (("a", a), ("f", f), ("Y", Y)):
        diff = np.abs(ours - captured[name].numpy()).max()
        print(f"largest difference vs transformers' layer {layer}, {name} {tuple(ours.shape)}: {diff:.2e}")
        assert diff <= 1e-4, diff  # float32

# %% [markdown]
# ## Exercises
#
# 1. Replace `gelu` by the tanh approximation (`pydeberta.functional.gelu_new`) in the
#    feed-forward step. How large is the difference in $Y$, and in the model's final output
#    when every layer does it?
# 2. Drop the first residual ($a = \operatorname{LayerNorm}(\text{context}\,W^O + b^O)$). Which
#    tokens' vectors change the most?
# 3. Which layer of the bundled model rewrites its tokens' vectors the most (the mean of
#    `attention_share` and `ffn_share`)? Is it the layer whose output is least similar to the
#    embeddings?
