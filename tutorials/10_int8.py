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
# # 10 · int8: integers inside the linear layers
#
# Nearly all of a forward's multiply-adds are in six linear layers per encoder layer (query, key,
# value, attention output, feed-forward in and out). `model.quantize("int8")` runs them on 8-bit
# integers ([docs/int8.md](../docs/int8.md)): for `y = x W^T + b` with `W [out, in]`,
#
# $$W_{o,:} \approx s^W_o\, W^q_{o,:},\qquad x_{r,:} \approx s^x_r\, x^q_{r,:},\qquad
#   s = \frac{\max|\cdot|}{127},\qquad q = \operatorname{round}(v / s) \in [-127, 127]$$
#
# $$y_{r,o} = \text{float32}\Big(\sum_i x^q_{r,i}\, W^q_{o,i}\Big)\cdot\big(s^x_r\, s^W_o\big) + b_o$$
#
# one scale per output channel of the weight (once), one per token of the input (at every call),
# and the sum in exact integers. This notebook takes the book's functions
# (`pydeberta.quantization`) one at a time, shows why a fast integer kernel can give a wrong sum,
# measures what int8 changes in the bundled model layer by layer, and checks the whole model
# against transformers doing the same steps in torch.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta import quantization
from pydeberta.hub import resolve_model_folder
from pydeberta.weights import INT8_LAYERS

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## One weight, by hand
#
# Each row of the weight (an output channel) gets its own scale, its largest magnitude over 127;
# its values become integers in [−127, 127], rounded half to even (`np.rint`). Dequantized, each
# value is off by at most half a step of its row. A row of small weights keeps its resolution,
# which one scale for the whole matrix would take away.

# %%
W = np.array([[0.50, -1.27, 0.02, 0.00],
              [0.01, 0.002, -0.03, 0.004],
              [2.00, 1.00, 3.00, 5.00]], np.float32)  # [out=3, in=4]
Wq, w_scale = quantization.quantize_weight(W)  # [3, 4] int8, [3]
print("scales  ", w_scale)
print("integers\n", Wq)
step_error = np.abs(quantization.dequantize(Wq, w_scale) - W) / w_scale[:, None]  # in steps of each row
diff = step_error.max()
print(f"largest difference, dequantized vs W, in steps of the row's scale: {diff:.3f}")
assert diff <= 0.5 + 1e-6, diff

# ties: 254 sets the scale to 2, and 1/2, 3/2, 5/2 round to the even 0, 2, 2
print("round half to even:", quantization.quantize_symmetric(np.array([[254, 1, 3, 5]], np.float32))[0])

# %% [markdown]
# ## The integer sum, and the layer
#
# `integer_matmul` sums the products of two int8 matrices exactly, as int32. The book runs it as a
# float64 product: every product and partial sum is an integer far below $2^{53}$, so float64
# holds each exactly whatever the order of the sums. The layer, `quantized_linear`, quantizes each
# input row, sums in integers and scales back in float32. Against the float layer, the difference
# is the rounding of both operands.

# %%
rng = np.random.default_rng(0)
xq = rng.integers(-127, 128, (5, 3072)).astype(np.int8)
wq = rng.integers(-127, 128, (7, 3072)).astype(np.int8)
diff = np.abs(quantization.integer_matmul(xq, wq).astype(np.int64) - xq.astype(np.int64) @ wq.astype(np.int64).T).max()
print(f"largest difference, integer_matmul vs NumPy's int64 product: {diff}")
assert diff == 0, diff

x = rng.standard_normal((4, 256)).astype(np.float32)  # [rows, in]
W = rng.standard_normal((8, 256)).astype(np.float32) * 0.05  # [out, in]
y_float = x @ W.T  # [4, 8]
y_int8 = quantization.quantized_linear(x, *quantization.quantize_weight(W))  # [4, 8]
relative = np.abs(y_int8 - y_float).max() / np.abs(y_float).max()
print(f"float layer vs int8 layer: largest difference {relative:.2%} of the largest output")
assert relative <= 0.02, relative  # about one step of each operand's 127 per row

# %% [markdown]
# ## Why a fast kernel can get the sum wrong
#
# CPUs without VNNI multiply bytes with `vpmaddubsw`: unsigned bytes times signed bytes, each pair
# of products summed into a 16-bit integer that **saturates** at 32767. Kernels that store
# activations as unsigned bytes (`x + 128`, 0..255) can hit that: 255 · 127 + 255 · 127 = 64770.
# pydeberta's kernel uses $a\,w = |a| \cdot (\operatorname{sign}(a)\, w)$ instead: both factors
# are at most 127, so a pair is at most 32258 and never saturates. The cell below does both in
# NumPy, on one row, the way the instruction does them.

# %%
def maddubs(unsigned, signed):
    """vpmaddubsw: pairs of u8 * s8 products, each pair's sum saturated to int16."""
    products = unsigned.astype(np.int32) * signed.astype(np.int32)  # [n]
    return np.clip(products[0::2] + products[1::2], -32768, 32767)  # [n / 2]


a = np.full(32, 127, np.int8)  # an activation row at its largest
w = np.full(32, 127, np.int8)
exact = int(a.astype(np.int64) @ w.astype(np.int64))
offset = int(maddubs((a.astype(np.int16) + 128).astype(np.uint8), w).sum()) - 128 * int(w.astype(np.int64).sum())
sign_trick = int(maddubs(np.abs(a).astype(np.uint8), np.sign(a) * w).sum())
print(f"exact {exact}, unsigned-offset form {offset}, |a| * sign(a) w form {sign_trick}")
diff = abs(sign_trick - exact)
print(f"largest difference, sign form vs exact: {diff}")
assert diff == 0 and offset != exact, (offset, sign_trick, exact)

# %% [markdown]
# ## What int8 changes in the bundled model, layer by layer
#
# The same text through the float32 model and its int8 copy. Each layer adds its own rounding and
# carries the earlier layers' on; the figure shows how far the hidden states drift apart, as the
# largest difference over the largest value, and as 1 − cosine similarity.

# %%
folder = resolve_model_folder(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(folder)
float_model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(folder)
int8_model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(folder, quantize="int8")
print("int8 layers:", ", ".join(INT8_LAYERS))
batch = tokenizer(["In the beginning God created the heaven and the [MASK].",
                   "The [MASK] statement is used to leave a loop early."], padding=True, return_tensors="np")
inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
float_states = float_model(**inputs, output_hidden_states=True).hidden_states
int8_states = int8_model(**inputs, output_hidden_states=True).hidden_states
real = batch["attention_mask"].astype(bool)  # [B, N]: the padded rows are not compared
drift, cosine = [], []
for f, q in zip(float_states, int8_states):
    f, q = f[real].astype(np.float64).ravel(), q[real].astype(np.float64).ravel()
    drift.append(np.abs(q - f).max() / np.abs(f).max())
    cosine.append(f @ q / (np.linalg.norm(f) * np.linalg.norm(q)))

fig, ax = plt.subplots(figsize=(6, 3))
labels = ["embeddings"] + [f"layer {i}" for i in range(1, len(drift))]
ax.bar(np.arange(len(drift)) - 0.2, np.array(drift) * 100, width=0.4, label="largest difference, % of largest value")
ax.bar(np.arange(len(drift)) + 0.2, (1 - np.array(cosine)) * 1e4, width=0.4, label="(1 − cosine) × 10⁴")
ax.set_xticks(range(len(drift)), labels)
ax.set_title("float32 vs int8 hidden states, pydeberta/tiny")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

mask_positions = batch["input_ids"] == tokenizer.mask_token_id
for name, model in (("float32", float_model), ("int8", int8_model)):
    logits = model(**inputs).logits[mask_positions]  # [masks, V]
    print(f"{name:8s}", [tokenizer.convert_ids_to_tokens(int(i)) for i in logits.argmax(-1)])
print(f"largest difference of the last hidden state: {drift[-1]:.2%} of its largest value, cosine {cosine[-1]:.6f}")
assert drift[0] == 0 and cosine[-1] >= 0.999, (drift, cosine)

# %% [markdown]
# ## Checked against transformers
#
# transformers has no such int8 mode, so the check gives it one: every linear layer pydeberta
# quantizes is replaced in transformers' model by the same steps written in torch (`torch.round`
# also rounds half to even). Float rounding elsewhere (LayerNorm, softmax, GELU) can move an
# activation across a rounding boundary, so the two agree to about one quantization step at the
# worst entry, not to float rounding everywhere.

# %%
try:
    import torch
    import transformers
except ImportError:
    print("transformers/torch are not installed: skipping the comparison with them (pip install transformers torch)")
else:
    class TorchInt8Linear(torch.nn.Module):
        """quantized_linear's steps in torch, on the weights quantize_weight gives."""

        def __init__(self, linear):
            super().__init__()
            q, s = quantization.quantize_weight(linear.weight.detach().numpy())
            self.q, self.s, self.b = torch.from_numpy(q).double(), torch.from_numpy(s), linear.bias.detach()

        def forward(self, x):
            scale = x.abs().amax(dim=-1) / 127
            xq = torch.clamp(torch.round(x / torch.where(scale > 0, scale, 1.0)[..., None]), -127, 127)
            return (xq.double() @ self.q.T).float() * (scale[..., None] * self.s) + self.b

    hf = transformers.DebertaV2ForMaskedLM.from_pretrained(folder).eval()
    for layer in hf.deberta.encoder.layer:
        for name in INT8_LAYERS:
            *path, last = name.split(".")
            parent = layer
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, TorchInt8Linear(getattr(parent, last)))
    with torch.no_grad():
        theirs = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True).hidden_states
    ours = int8_model(**inputs, output_hidden_states=True).hidden_states
    diff = max(np.abs(o[real] - t.numpy()[real]).max() / np.abs(t.numpy()[real]).max() for o, t in zip(ours, theirs))
    print(f"largest difference, pydeberta int8 vs transformers with the torch int8 layers: {diff:.2e} "
          f"of the largest value")
    assert diff <= 0.02, diff
