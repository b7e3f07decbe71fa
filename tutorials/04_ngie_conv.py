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
# # 04 · The nGiE convolution
#
# DeBERTa-v2-xlarge and -xxlarge add an **n-gram induced input encoding** (nGiE): a 1-D
# convolution over the sequence that looks at each token's $k$ neighbours in the *embedding
# output* $E^0$ and is added to the output $Y^0$ of layer 0. With padding $p = (k-1)/2$ and the
# 0/1 mask $m$:
#
# $$\text{out}_t = \operatorname{act}\Big(b + \sum_{\tau=0}^{k-1} W_{\tau}\, E^0_{t+\tau-p}\Big)\, m_t,
# \qquad Y^{0\prime} = \operatorname{LayerNorm}\big(Y^0 + \text{out}\big)\, m $$
#
# ($E^0$ is zero outside the sequence; with `conv_groups = g` the channels split into $g$ blocks
# that only see their own block.) Attention mixes every token with every other; the convolution
# adds a strictly local, n-gram view of the input.
#
# **The bundled model has no convolution**: it is DeBERTa-v3-style, and v3 dropped nGiE
# (`conv_kernel_size = 0`). This notebook therefore builds a small v2-xlarge-style model
# (`conv_kernel_size = 3`, `conv_act = "gelu"`) with **random weights** for the checks (the
# mechanism and the checks are exact, the numbers carry no learned meaning), and for the figure a
# kernel set by hand so that its n-gram mixing can be read.

# %%
# %matplotlib inline
import inspect
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta import viz
from pydeberta.hub import resolve_model_folder
from pydeberta.conv import conv1d, conv_layer
from pydeberta.functional import gelu
from pydeberta.model import encoder_layer, relative_embeddings

MODEL = "pydeberta/tiny"  # only its tokenizer is used here

# %% [markdown]
# ## The library functions

# %%
print(inspect.getsource(conv1d))
print(inspect.getsource(conv_layer))

# %% [markdown]
# ## A tiny example
#
# A 2-layer model of the bundled model's width with a kernel of 3, random weights (seeded).

# %%
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
bundled = pydeberta.DebertaV2Config.from_pretrained(MODEL)
config = pydeberta.DebertaV2Config.from_dict({**bundled.to_dict(), "num_hidden_layers": 2, "conv_kernel_size": 3,
                                              "conv_act": "gelu", "architectures": ["DebertaV2Model"]})
model = pydeberta.DebertaV2Model(config, seed=0)
conv_params = model.tree["encoder"]["conv"]
print("conv.weight", conv_params["conv"]["weight"].shape, " [C, C/g, k];  conv.bias", conv_params["conv"]["bias"].shape)

enc = tokenizer("Blessed are the meek: for they shall inherit the earth.", return_tensors="np")
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
out = model(**enc, output_hidden_states=True, output_study=True)
E0 = out.hidden_states[0]
print("E0", E0.shape, " conv1d(E0)", conv1d(E0, **conv_params["conv"], groups=config.conv_groups).shape,
      " study.conv_output", out.study.conv_output.shape)

# %% [markdown]
# **Local by construction.** Change one token: the convolution's output changes only at that
# token and its two neighbours, while attention (layer 0's output $Y^0$, before the convolution is
# added) changes everywhere.

# %%
t = 5
changed_ids = enc["input_ids"].copy()
changed_ids[0, t] = tokenizer.convert_tokens_to_ids("▁dog")
changed = model(input_ids=changed_ids, attention_mask=enc["attention_mask"], output_hidden_states=True,
                output_study=True)
conv_moved = np.abs(changed.study.conv_output - out.study.conv_output).max(axis=-1)[0] > 1e-6
print(f"replaced {tokens[t]!r} at position {t}")
print("conv output changed at positions:", np.flatnonzero(conv_moved).tolist())

visible = (enc["attention_mask"][:, None, :, None] * enc["attention_mask"][:, None, None, :]).astype(bool)
layer0 = model.tree["encoder"]["layer"][0]
R = relative_embeddings(model.tree["encoder"], config)  # the relative table [2S, C]
Y0, _, _ = encoder_layer(E0, layer0, config, visible, R, out.study.rel_index)  # rows c(i, j) [N, N]
Y0_changed, _, _ = encoder_layer(changed.hidden_states[0], layer0, config, visible, R, out.study.rel_index)
print("layer-0 attention output changed at positions:",
      np.flatnonzero(np.abs(Y0_changed - Y0).max(axis=-1)[0] > 1e-6).tolist())

# %% [markdown]
# ## One figure: a convolution you can read
#
# Random weights mix the three neighbours into noise. To see what the kernel *can* do, set it by
# hand: the first half of the output channels copies channel $c$ of the **previous** token (tap
# $\tau = 0$ reads $E^0_{t-1}$), the second half channel $c$ of the **next** token (tap $\tau = 2$):
#
# $$W_{c,c,0} = 1 \;(c < C/2), \qquad W_{c,c,2} = 1 \;(c \ge C/2), \qquad \text{all other } W = 0,\; b = 0,$$
#
# so $\text{out}_t = \operatorname{gelu}([E^0_{t-1}[{:}C/2],\; E^0_{t+1}[C/2{:}]])$: every token is
# handed its left neighbour's features and its right neighbour's, a bigram view of the input
# that attention would have to learn to build.

# %% tags=["readme:ngie_shift.png"]
C = config.hidden_size
W = np.zeros((C, C, 3), np.float32)
W[np.arange(C // 2), np.arange(C // 2), 0] = 1.0  # previous token
W[np.arange(C // 2, C), np.arange(C // 2, C), 2] = 1.0  # next token
shifted = pydeberta.DebertaV2Model(config, params={**model.params, "encoder.conv.conv.weight": W,
                                                   "encoder.conv.conv.bias": np.zeros(C, np.float32)})
readable = shifted(**enc, output_hidden_states=True, output_study=True)
conv_out, E = readable.study.conv_output[0], readable.hidden_states[0][0]  # [N, C] each
assert np.allclose(conv_out[1:, :C // 2], gelu(E[:-1, :C // 2]), atol=1e-6)  # out_t = gelu(E_{t-1}) ...
assert np.allclose(conv_out[:-1, C // 2:], gelu(E[1:, C // 2:]), atol=1e-6)  # ... and gelu(E_{t+1})
assert np.allclose(conv_out[0, :C // 2], 0) and np.allclose(conv_out[-1, C // 2:], 0)  # zero padding at the ends


def cosine(a, b):
    """Cosine similarity of every row of a with every row of b: [N, N]; NaN (drawn blank) for a
    row that is all zeros."""
    norm_a, norm_b = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    return (a / np.where(norm_a == 0, np.nan, norm_a)) @ (b / np.where(norm_b == 0, np.nan, norm_b)).T


fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
for ax, half, title in ((axes[0], slice(0, C // 2), "first half: out_t vs gelu(E_s)"),
                        (axes[1], slice(C // 2, C), "second half: out_t vs gelu(E_s)")):
    image = ax.imshow(cosine(conv_out[:, half], gelu(E[:, half])), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("input token s")
    ax.set_ylabel("conv output at token t")
    ax.set_title(title)
fig.colorbar(image, ax=list(axes), fraction=0.03, label="cosine similarity")

# %% [markdown]
# The bright line sits one step **left** of the diagonal in the first half ($s = t - 1$: each
# token carries its predecessor) and one step **right** in the second ($s = t + 1$); a word that
# occurs twice (`▁the`) lights up at both places. The first row of the left map and the last row
# of the right map are blank: there the kernel reads the zero padding and the output is zero. A trained kernel mixes many such shifted copies with learned weights; this
# one keeps them apart so that they can be seen. Below, the same model's `study.conv_output` per
# channel, as `pydeberta.viz.plot_conv_contribution` draws any model's.

# %%
fig, axes = viz.plot_conv_contribution(readable, tokens)

# %% [markdown]
# ## Check
#
# 1. Layer 0 recomputed from its input with `encoder_layer` then `conv_layer` is the model's
#    `hidden_states[1]`, and the activated convolution `conv_layer` returns beside it is
#    `study.conv_output`: exactly, since `output_study=True` runs these same functions (the book,
#    `pydeberta.model`).
# 2. `conv1d` equals PyTorch's `Conv1d` (cross-correlation, zero padding), also with groups, to
#    float32 rounding (at most 1e-4).
# 3. The whole model equals transformers' `DebertaV2Model` loaded from the same saved folder, to
#    float32 rounding (at most 1e-4 per hidden state).

# %%
mask = enc["attention_mask"].astype(np.float32)
Y0_conv, conv_output = conv_layer(E0, Y0, mask, conv_params, config)
diff = np.abs(Y0_conv - out.hidden_states[1]).max()
print(f"largest difference, conv_layer vs out.hidden_states[1]: {diff:.2e}")
assert diff == 0, diff  # the book's own functions on the same arrays
diff = np.abs(conv_output - out.study.conv_output).max()
print(f"largest difference, its conv output vs out.study.conv_output: {diff:.2e}")
assert diff == 0, diff

warnings.filterwarnings("ignore", message="IProgress not found")
try:
    import torch
    import transformers
except ImportError:
    print("transformers/torch are not installed: skipping the comparisons with them (pip install transformers torch)")
else:
    rng = np.random.default_rng(0)
    C = config.hidden_size
    for groups in (1, 4):
        w = (0.05 * rng.standard_normal((C, C // groups, 3))).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        theirs = torch.nn.functional.conv1d(torch.from_numpy(E0).transpose(1, 2), torch.from_numpy(w),
                                            torch.from_numpy(b), padding=1, groups=groups).transpose(1, 2).numpy()
        diff = np.abs(conv1d(E0, w, b, groups=groups) - theirs).max()
        print(f"largest difference, conv1d vs torch conv1d (groups={groups}): {diff:.2e}")
        assert diff <= 1e-4, diff  # float32, summed in another order
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        hf = transformers.DebertaV2Model.from_pretrained(folder).eval()
    with torch.no_grad():
        hf_out = hf(**{name: torch.from_numpy(value) for name, value in enc.items()}, output_hidden_states=True)
    for index, (ours, theirs) in enumerate(zip(out.hidden_states, hf_out.hidden_states)):
        diff = np.abs(ours - theirs.numpy()).max()
        print(f"largest difference vs transformers, hidden_states[{index}]: {diff:.2e}")
        assert diff <= 1e-4, diff  # float32

# %% [markdown]
# ## Exercises
#
# 1. Rebuild the model with `conv_kernel_size = 5`. At how many positions does the conv output
#    change when one token changes? And with `conv_kernel_size = 1`?
# 2. Pad the sentence in a batch with a longer one. What is `study.conv_output` at the padded
#    positions, and why does the mask appear twice in the equation?
# 3. With `conv_groups = 4`, which entries of `conv.weight` would have to be zero in an
#    equivalent `groups = 1` convolution?
