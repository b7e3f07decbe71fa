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
# # 00 · A tour: text → ids → model → fill-mask
#
# pydeberta is DeBERTa-v2/v3 written as small NumPy functions, with the class and argument
# names of Hugging Face transformers. This notebook walks one sentence through the whole
# library on the bundled model `pydeberta/tiny`, a small DeBERTa-v3-style masked language model
# trained on English text that Debian ships (the Python documentation, the King James Bible and
# the fortune cookies). Every later notebook opens one of the steps seen here.
#
# The one line to change to use another model: any checkpoint folder written by transformers'
# `save_pretrained` (or a Hub id such as `"microsoft/deberta-v3-base"` when `huggingface_hub`
# is installed) loads the same way.

# %%
# %matplotlib inline
import inspect
import tempfile

import numpy as np

import pydeberta
from pydeberta import viz
from pydeberta.hub import resolve_model_folder
from pydeberta.functional import softmax
from pydeberta.heads import masked_lm_head

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## 1. Text → ids
#
# The tokenizer splits the text into sentencepiece pieces, maps them to ids and adds DeBERTa's
# special tokens: `[CLS] text [SEP]`. `return_tensors="np"` gives NumPy arrays `[B, N]`.
# The name `"pydeberta/tiny"` stands for a checkpoint folder inside the package;
# `resolve_model_folder` says which (the tokenizer is loaded from that folder).

# %%
print(resolve_model_folder(MODEL))
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
text = "In the beginning God created the heaven and the [MASK]."
enc = tokenizer(text, return_tensors="np")
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
print("input_ids     ", enc["input_ids"].shape, enc["input_ids"][0].tolist())
print("attention_mask", enc["attention_mask"].shape)
print("tokens        ", tokens)

# %% [markdown]
# ## 2. Ids → model
#
# The masked LM computes, for every position, a score for every vocabulary entry:
#
# $$\text{logits} = \mathrm{LN}\big(\mathrm{gelu}(h W_1^\top + b_1)\big)\, W_\text{emb}^\top + b,
# \qquad p(w \mid \text{text}) = \mathrm{softmax}(\text{logits}_{\text{mask}})_w$$
#
# where $h$ is the encoder's last hidden state. The class (`pydeberta.modeling`) is a thin holder
# of the config and the parameters; the head is the pure NumPy function below, from the "book"
# (`pydeberta.heads`), the modules that write the model out as the paper does. A model call runs a
# faster twin of the same functions by default, the engine; notebook 07 compares the two, and
# [docs/architecture.md](../docs/architecture.md) maps the whole package.

# %%
model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
print(model.config.num_hidden_layers, "layers,", model.config.num_attention_heads, "heads, hidden",
      model.config.hidden_size, ",", f"{model.num_parameters():,}", "parameters")
print(inspect.getsource(masked_lm_head))

# %%
out = model(**enc, output_attentions=True)
print("logits    ", out.logits.shape, " [B, N, V]")
print("attentions", len(out.attentions), "x", out.attentions[0].shape, " L x [B, H, N, N]")

# %% [markdown]
# ## 3. Fill the mask by hand, then with a pipeline
#
# The softmax of the logits at the `[MASK]` position is the model's guess for the hidden word.

# %%
mask_position = int(np.flatnonzero(enc["input_ids"][0] == tokenizer.mask_token_id)[0])
probs = softmax(out.logits[0, mask_position])  # [V]
top = np.argsort(-probs)[:5]
for i in top:
    print(f"{probs[i]:.4f}  {tokenizer.convert_ids_to_tokens(int(i))}")

# %% [markdown]
# `pipeline` does the same as transformers' `pipeline("fill-mask")`: tokenize, run, softmax,
# top-k, decode.

# %%
fill = pydeberta.pipeline("fill-mask", model=MODEL)
predictions = fill(text, top_k=5)
for p in predictions:
    print(f"{p['score']:.4f}  {p['token_str']!s:<12} {p['sequence']}")

# %% [markdown]
# ## 4. Figures: every head of every layer
#
# `viz.plot_model_view` draws the attention probabilities `out.attentions` as a layers × heads
# grid (queries down, keys across). The trained heads already show structure: some look at the
# previous or next token, some at `[CLS]`/`[SEP]`, some spread evenly.

# %%
fig, axes = viz.plot_model_view(out, tokens)

# %% [markdown]
# The same attentions summarised per token: the entropy of each query's attention, averaged over
# heads (0 = all on one key, $\log N$ = spread evenly), layer by layer.

# %%
fig, ax = viz.plot_attention_entropy(out, tokens)

# %% [markdown]
# For interactive views, `viz.to_bertviz` hands the attentions to
# [bertviz](https://github.com/jessevig/bertviz) in the form its `head_view` and `model_view`
# take (torch tensors `[1, H, N, N]` per layer, and the tokens).

# %%
try:
    attention, bertviz_tokens = viz.to_bertviz(out, tokens)
except ImportError as error:
    print(error)
else:
    print(len(attention), "layers of", tuple(attention[0].shape))
    try:
        from bertviz import head_view
    except ImportError:
        print("pip install bertviz, then: head_view(attention, bertviz_tokens)")
    else:
        head_view(attention, bertviz_tokens)

# %% [markdown]
# ## 5. Check
#
# The pipeline's scores are the probabilities computed by hand above (the pipeline runs the same
# model on the same ids, so they agree to float32 rounding at most); a model saved with
# `save_pretrained` and loaded back from its folder (as any real checkpoint would be) holds the same
# float32 numbers, so it gives exactly the same logits.

# %%
by_hand = np.array([probs[p["token"]] for p in predictions])
pipeline_scores = np.array([p["score"] for p in predictions])
diff = np.abs(by_hand - pipeline_scores).max()
print(f"largest difference, pipeline vs by hand: {diff:.2e}")
assert diff <= 1e-6, diff

with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reloaded = pydeberta.DebertaV2ForMaskedLM.from_pretrained(folder)
    diff = np.abs(reloaded(**enc).logits - out.logits).max()
print(f"largest difference, reloaded folder vs bundled model: {diff:.2e}")
assert diff == 0, diff  # the same float32 parameters through the same computation

# %% [markdown]
# A real checkpoint loads the same way: `DebertaV2ForMaskedLM.from_pretrained("path/to/folder")`
# for a folder with `config.json` and `model.safetensors` (or `pytorch_model.bin`, read without
# torch), and `DebertaV2TokenizerFast.from_pretrained` for its `spm.model`.
#
# ## Exercises
#
# 1. Put two `[MASK]`s in one sentence. What does `fill(...)` return, and are the two lists
#    independent guesses?
# 2. Pass `targets=["▁earth", "▁sea"]` to `fill`. How do the scores relate to `probs` above?
# 3. Call `model(**enc, output_hidden_states=True)` and print the shape of every hidden state.
#    Why are there `L + 1` of them?
