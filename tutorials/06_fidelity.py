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
# # 06 · Fidelity: the whole model, layer by layer, against transformers
#
# pydeberta is only useful for study if it computes what transformers computes. Here both load
# the same checkpoint folder and run the same padded batch; for every stage $\ell$ (the embedding
# output, each layer's output, each layer's attention, the logits) we print
#
# $$\Delta_\ell = \max_{b,\,t,\,c} \big| h^{\text{pydeberta}}_{\ell} - h^{\text{transformers}}_{\ell} \big|,$$
#
# in float32 (the default) and float64. Differences come only from the order of floating-point
# operations: about $10^{-6}$ in float32 and $10^{-14}$ in float64, and they do not grow with
# depth. The check asserts at most $10^{-4}$ in float32 and $10^{-10}$ in float64 at every stage
# (the logits, up to about 15, have the largest).
#
# A model call runs the engine by default (notebook 07). To compare the book itself, build `ours`
# below inside `with pydeberta.use_backend("reference"):`; it passes the same check.

# %%
# %matplotlib inline
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta.hub import resolve_model_folder
from pydeberta.model import encoder_layer

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library function
#
# One encoder layer: disentangled attention (notebook 03), its output projection and LayerNorm,
# then the feed-forward block.

# %%
print(inspect.getsource(encoder_layer))

# %% [markdown]
# ## A tiny example
#
# A padded batch of two texts through pydeberta, asking for every hidden state and attention.

# %%
folder = resolve_model_folder(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(folder)
texts = ["For God so loved the world, that he gave his only begotten Son.",
         "Errors should never pass silently."]
enc = tokenizer(texts, padding=True, return_tensors="np")
ours = {dtype: pydeberta.DebertaV2ForMaskedLM.from_pretrained(folder, dtype=dtype)(
    **enc, output_hidden_states=True, output_attentions=True) for dtype in (np.float32, np.float64)}
out = ours[np.float32]
print("input_ids", enc["input_ids"].shape, " hidden_states", len(out.hidden_states), "x", out.hidden_states[0].shape,
      " attentions", len(out.attentions), "x", out.attentions[0].shape, " logits", out.logits.shape)

# %% [markdown]
# ## Check against transformers, stage by stage
#
# (This cell and the next are skipped, saying so, only when transformers is not installed.)

# %%
warnings.filterwarnings("ignore", message="IProgress not found")
try:
    import torch
    import transformers
except ImportError:
    transformers = None
    print("transformers/torch are not installed: skipping the comparison (pip install transformers torch)")


def largest_differences(dtype):
    """Stage name -> largest |pydeberta - transformers| for one dtype."""
    theirs_model = transformers.DebertaV2ForMaskedLM.from_pretrained(folder).eval()
    theirs_model = theirs_model.double() if dtype == np.float64 else theirs_model.float()
    with torch.no_grad():
        theirs = theirs_model(**{k: torch.from_numpy(v) for k, v in enc.items()},
                              output_hidden_states=True, output_attentions=True)
    mine = ours[dtype]
    result = {"embeddings": np.abs(mine.hidden_states[0] - theirs.hidden_states[0].numpy()).max()}
    for layer in range(len(mine.attentions)):
        result[f"attention {layer}"] = np.abs(mine.attentions[layer] - theirs.attentions[layer].numpy()).max()
        result[f"layer {layer}"] = np.abs(mine.hidden_states[layer + 1] - theirs.hidden_states[layer + 1].numpy()).max()
    result["logits"] = np.abs(mine.logits - theirs.logits.numpy()).max()
    return result


if transformers is not None:
    transformers.logging.set_verbosity_error()
    differences = {np.dtype(dtype).name: largest_differences(dtype) for dtype in (np.float32, np.float64)}
    for stage in differences["float32"]:
        print(f"largest difference, {stage:<12}  float32 {differences['float32'][stage]:.2e}   "
              f"float64 {differences['float64'][stage]:.2e}")
    worst = {name: max(values.values()) for name, values in differences.items()}
    assert worst["float32"] <= 1e-4 and worst["float64"] <= 1e-10, worst

# %% [markdown]
# ## One figure: the largest difference per stage

# %%
if transformers is not None:
    stages = list(differences["float32"])
    fig, ax = plt.subplots(figsize=(9, 3.6), constrained_layout=True)
    x = np.arange(len(stages))
    for offset, (name, color) in zip((-0.2, 0.2), (("float32", "#1b9e77"), ("float64", "#7570b3"))):
        ax.bar(x + offset, [max(differences[name][s], 1e-18) for s in stages], 0.4, color=color, label=name)
    ax.set_yscale("log")
    ax.set_xticks(x, stages, rotation=45, ha="right")
    ax.set_ylabel("max |pydeberta − transformers|")
    ax.set_title(f"{MODEL}: pydeberta vs transformers {transformers.__version__}, stage by stage")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

# %% [markdown]
# ## Exercises
#
# 1. Compare only the real (unpadded) positions. Are the padded positions' hidden states equal
#    too? (Hint: notebook 03's `masked_softmax` and transformers ≥ 4.47.)
# 2. Run a 300-token input. Does the float32 difference grow with the length?
# 3. Load the folder with `dtype=np.float64` but keep transformers in float32. Which of the two
#    is then closer to the float64 truth?
