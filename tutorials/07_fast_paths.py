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
# # 07 · Fast paths: the book, the engine and the product
#
# pydeberta is arranged in three layers ([docs/architecture.md](../docs/architecture.md) draws them
# and the data flow):
#
# - **The book**: `pydeberta.functional`, `losses`, `positions`, `attention`, `conv`, `model` and
#   `heads`. The model written out as the paper writes it, in plain NumPy: every term computed in
#   full, nothing cached, nothing computed in place. Notebooks 02–05 read it. The book imports
#   nothing from the other two layers.
# - **The engine**: `pydeberta.engine`. The same forward pass with the same names, giving the same
#   numbers to float rounding, arranged for speed. `backend.py` decides in one place which
#   implementation runs; `kernels.py` holds the NumPy kernels and `_ext/` their compiled twins
#   (Cython and C, built by `pip install .`); `relative.py` builds the relative index once per
#   length; `attention.py` runs attention a chunk of heads at a time; `model.py` holds the forward
#   pass and the `Engine`, which derives a model's relative tables once; `pack.py` lays the
#   parameters out in one aligned buffer.
# - **The product**: `pydeberta.modeling` (`DebertaV2Model` and the task classes) with the config,
#   the checkpoint readers, `pydeberta.hub`, the tokenizer, the pipelines and `viz`, under
#   transformers' names. A call checks its inputs, runs the book or the engine, then the task head
#   and its loss.
#
# Which implementation a model call runs is the **backend**:
#
# | backend | what a model call runs |
# |---|---|
# | `reference` | the book: `pydeberta.model.backbone` and `pydeberta.heads`, as written |
# | `numpy` | the engine with its NumPy kernels (`pydeberta.engine.kernels`) |
# | `cython` | the engine with its compiled kernels, when the extension is built |
# | `auto` | `cython` when built, else `numpy` (the default) |
#
# Choose one with the environment variable `PYDEBERTA_BACKEND` (read at import) or for a `with`
# block with `pydeberta.use_backend(name)`; `pydeberta.backend_info()` says what runs.
# `output_study=True` always runs the book, whose intermediates it returns.
#
# The engine calls four kernels, one set per engine backend: `linear` (the same NumPy kernel in
# both sets: one BLAS product for all leading axes), `gelu`, `layer_norm` (with the residual sum
# fused in) and, the main one, the attention softmax of notebook 03:
#
# $$\text{probs}_{ij} = \operatorname{softmax}_j\Big(\text{where}\big(\text{visible}_{ij},\;
#   \text{c2c}_{ij} + \text{c2p}_{i,\,c(i,j)} + \text{p2c}_{j,\,c(i,j)},\; \text{finfo.min}\big)\Big)$$
#
# The NumPy kernel gathers each relative term into a new `[B, H, N, N]` array, adds, masks and
# runs the book's `masked_softmax`, each a full pass over memory; the compiled twin does the
# gather, the sum, the mask and the softmax for a block of rows at a time, in one pass, on OpenMP
# threads. Matrix products stay NumPy's `@` (BLAS) in every backend.

# %%
# %matplotlib inline
import inspect
import os
import platform
import timeit

import matplotlib.pyplot as plt
import numpy as np

import pydeberta
from pydeberta import attention, functional, positions
from pydeberta.engine import kernels as numpy_kernels
from pydeberta.engine.attention import relative_scores
from pydeberta.engine.backend import KERNELS, available_backends
from pydeberta.engine.relative import relative_index as engine_relative_index
from pydeberta.hub import resolve_model_folder
from pydeberta.model import relative_embeddings

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## What runs
#
# The backends this installation has, fastest first, and the kernels of each engine backend
# (`KERNELS` in `pydeberta.engine.backend`). Then the NumPy attention kernel, and the first line of
# its compiled twin's documentation. (Under `cython`, NumPy's large temporaries also come from the
# extension's block cache, reused from one forward to the next, unless `PYDEBERTA_BLOCK_CACHE=0`;
# `pydeberta.release_memory()` gives that memory back.)

# %%
info = pydeberta.backend_info()
for key, value in info.items():
    print(f"{key:<18} {value}")
engine_backends = [name for name in available_backends() if name != "reference"]
for name in engine_backends:
    print(f"{name} kernels:", {kernel: f"{f.__module__}.{f.__name__}" for kernel, f in KERNELS[name]._asdict().items()})
print(inspect.getsource(numpy_kernels.disentangled_attention_probs))
compiled = "cython" in available_backends()
if compiled:
    print("twin:", KERNELS["cython"].disentangled_attention_probs.__doc__.splitlines()[0])
else:
    print("the compiled extension is not built:", info["reason"])

# %% [markdown]
# ## The relative index, built once per length
#
# The book's `relative_index(Q, K, S, ...)` is a `[Q, K]` table of the rows $c(i, j)$ of the
# relative-embedding table (notebook 02). It depends on $i - j$ only, so the engine
# (`pydeberta.engine.relative`) keeps its $Q + K - 1$ distinct values, one per distance, as a
# **line**, and builds it once per length (an LRU cache). A `RelativeIndex` holds
#
# - `lo`, `hi`: the first and last table row some pair reaches. For short inputs that is far fewer
#   than the $2S$ rows of the table, and attention needs only rows `lo..hi` of $K^r$ and $Q^r$;
#   the line holds $c(i, j) - \text{lo}$;
# - `band = (band_lo, band_hi, band_c)`: the distances $d$ in `band_lo..band_hi` where
#   `line[d + K - 1] == band_c + d`, the **identity band** the log buckets leave as they are;
#   inside it the compiled kernel reads rows straight, without the index;
# - `table()`: the `[Q, K]` index again, as a read-only view of the line with strides
#   `(s, -s)`: `table()[i, j] == line[i - j + K - 1]`, no copy.
#
# A small example (`S = 4`, 4 buckets, `max_position = 8`): seven tokens, thirteen distances.

# %%
small = engine_relative_index(7, 7, 4, 4, 8)
print("lo", small.lo, " hi", small.hi, " rows", small.rows, " band", small.band)
print("line (d = -6..6):", small.line)
print("table() + lo, strides", small.table().strides)
print(small.table() + small.lo)
print("the book's relative_index:")
print(positions.relative_index(7, 7, 4, 4, 8))

# %% [markdown]
# The bundled model's sizes at a few lengths: up to $N = 34$ every distance keeps its own row
# ($|i - j| \le 33$; distances 33 and 34 are the first to share a bucket),
# so the band covers all of them; beyond, the band stays at $\pm 33$ while the log buckets reach
# further rows, and at $N = 512$ the index reaches almost the whole table.

# %%
model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
config = model.config
sizes = (config.att_span, config.position_buckets, config.max_relative_span)
print(f"S = {config.att_span} (2S = {2 * config.att_span} table rows), position_buckets = {config.position_buckets}, "
      f"max_relative_span = {config.max_relative_span}")
lengths = (8, 34, 35, 128, 512)
for n in lengths:
    index = engine_relative_index(n, n, *sizes)
    print(f"N = {n:<4} rows {index.lo:>3}..{index.hi:<3} ({index.rows:>3} of {2 * config.att_span})  band {index.band}")

# %% [markdown]
# **Check**: at every length the engine's index is the book's exactly, and the band holds what it
# claims.

# %%
for n in lengths:
    index = engine_relative_index(n, n, *sizes)
    book = positions.relative_index(n, n, *sizes)
    diff = np.abs(index.table() + index.lo - book).max()
    band_lo, band_hi, band_c = index.band
    d = np.arange(band_lo, band_hi + 1)
    print(f"largest difference, engine index vs book relative_index (N = {n}): {diff}")
    assert diff == 0 and (index.line[d + n - 1] == band_c + d).all(), (n, diff)

# %% [markdown]
# ## One figure: the line at N = 512
#
# The row each distance reads, with the identity band shaded: outside it the log buckets make
# the line flatter and flatter, and the clip to the table ends it.

# %%
n = 512
index = engine_relative_index(n, n, *sizes)
d = np.arange(-(n - 1), n)
fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
ax.plot(d, index.line + index.lo, color="#333333", lw=1.5, label="c(i, j) along the line")
ax.axvspan(index.band[0], index.band[1], color="#a6cee3", alpha=0.6, lw=0, label=f"identity band {index.band[:2]}")
for row, name in ((index.lo, "lo"), (index.hi, "hi")):
    ax.axhline(row, color="grey", lw=0.8, ls=":")
    ax.text(d[0], row, f" {name} = {row}", va="bottom", fontsize=8)
ax.set_xlabel("distance d = i − j")
ax.set_ylabel("table row")
ax.set_title(f"RelativeIndex of the bundled model, N = {n}")
ax.legend(fontsize=8, loc="lower right")

# %% [markdown]
# ## Tables derived once per model
#
# The engine's other saving: $K^r$ and $Q^r$, each layer's projections of the relative table,
# depend on the parameters only. `model.engine().relative_tables()` computes them on first use,
# with the book's `relative_projections`, and keeps them. The arrays they come from (the relative
# embeddings, their LayerNorm and the layers' projections) then become read-only, so that an
# in-place edit cannot leave a stale table behind; assigning a new array always works, and the
# next call derives the tables again.

# %%
encoder_params = model.tree["deberta"]["encoder"]
tables = model.engine().relative_tables()  # per layer (Kr, Qr), each [H, 2S, D]
P = relative_embeddings(encoder_params, config)
book_tables = [attention.relative_projections(P, layer["attention"]["self"], config) for layer in encoder_params["layer"]]
diff = max(np.abs(ours - book).max() for pair, book_pair in zip(tables, book_tables) for ours, book in zip(pair, book_pair))
print(f"{len(tables)} layers of (Kr, Qr) {tables[0][0].shape};  largest difference vs the book's relative_projections: {diff:.2e}")
assert diff == 0, diff  # the book's own functions, computed once

weight = encoder_params["rel_embeddings"]["weight"]
print("rel_embeddings.weight writeable:", weight.flags.writeable)
try:
    weight[0, 0] = weight[0, 0]  # any in-place write, even of the same value
except ValueError as error:
    print("in place:", error)
assert not weight.flags.writeable
encoder_params["rel_embeddings"]["weight"] = weight.copy()  # a new (writable) array with the same values
rebuilt = model.engine().relative_tables()
print("after assigning a new array, the tables are derived again:", rebuilt is not tables)
assert rebuilt is not tables

# %% [markdown]
# ## Parity: every engine kernel against the book
#
# Random inputs of the bundled model's shapes (4 heads of 64, hidden 256, feed-forward 1024) on a
# batch of 2 × 128 tokens, the second padded after 100. Each kernel of each engine backend is
# compared with the book function it stands for; for the attention kernel, with the masked softmax
# of the three terms as the book computes them (`attention_score_terms` over the whole table and
# the `[N, N]` index), while the kernel gets the products with rows `lo..hi` only and the
# `RelativeIndex`, as the engine calls it. Float32, so the bound is 1e-5.

# %%
rng = np.random.default_rng(0)
B, H, N, D, C, F = 2, config.num_attention_heads, 128, 64, config.hidden_size, config.intermediate_size
S = config.att_span
index = engine_relative_index(N, N, *sizes)
visible = np.ones((B, 1, N, N), dtype=bool)
visible[1, :, :, 100:] = visible[1, :, 100:, :] = False  # the second row is padded after 100 tokens
x = rng.standard_normal((B, N, F), dtype=np.float32)
h, r = rng.standard_normal((2, B, N, C), dtype=np.float32)
w, b = rng.standard_normal((2, C), dtype=np.float32)
weight_matrix = (0.03 * rng.standard_normal((C, C))).astype(np.float32)
q, k = rng.standard_normal((2, B, H, N, D), dtype=np.float32)
kr, qr = rng.standard_normal((2, H, 2 * S, D), dtype=np.float32)
scale = attention.attention_scale(D, config.pos_att, q.dtype)
terms = attention.attention_score_terms(q, k, scale, kr, qr, positions.relative_index(N, N, *sizes))
c2c = (q / scale) @ k.swapaxes(-1, -2)  # [B, H, N, N]
c2p = relative_scores(q / scale, kr[:, index.lo:index.hi + 1])  # [B, H, N, R]: only the rows reached
p2c = relative_scores(k / scale, qr[:, index.lo:index.hi + 1])  # [B, H, N, R]

book = {
    "linear": functional.linear(h, weight_matrix, b),
    "gelu": functional.gelu(x),
    "layer_norm": functional.layer_norm(h + r, w, b, 1e-7),
    "disentangled_attention_probs": functional.masked_softmax(terms["c2c"] + terms["c2p"] + terms["p2c"], visible),
}
calls = {
    "linear": lambda kernels: kernels.linear(h, weight_matrix, b),
    "gelu": lambda kernels: kernels.gelu(x),
    "layer_norm": lambda kernels: kernels.layer_norm(h, w, b, 1e-7, residual=r),
    "disentangled_attention_probs": lambda kernels: kernels.disentangled_attention_probs(c2c, visible, c2p, p2c,
                                                                                         index),
}
for name, call in calls.items():
    for backend in engine_backends:
        diff = np.abs(call(KERNELS[backend]) - book[name]).max()
        print(f"largest difference, {name:<28} {backend:<6} kernel vs book: {diff:.2e}")
        assert diff <= 1e-5, (name, backend, diff)

# %% [markdown]
# **The whole model under each backend.** The engine against the book on a padded batch:
# attention probabilities within 1e-5, logits (up to about 15) within 1e-5 relative to their size.
# And with `output_study=True` every backend runs the book, so those logits are the book's exactly.

# %%
enc = tokenizer(["In the beginning was the Word, and the Word was with God.", "Flat is better than nested."],
                padding=True, return_tensors="np")
outputs = {}
for backend in available_backends():
    with pydeberta.use_backend(backend):
        outputs[backend] = model(**enc, output_attentions=True)
reference = outputs["reference"]
size = np.abs(reference.logits).max()
for backend in engine_backends:
    diff = np.abs(outputs[backend].logits - reference.logits).max()
    print(f"largest difference, whole-model logits, {backend} vs reference: {diff:.2e} (logits up to {size:.1f})")
    assert diff <= 1e-5 * (1 + size), (backend, diff)
    diff = max(np.abs(ours - book).max() for ours, book in zip(outputs[backend].attentions, reference.attentions))
    print(f"largest difference, whole-model attentions, {backend} vs reference: {diff:.2e}")
    assert diff <= 1e-5, (backend, diff)
    with pydeberta.use_backend(backend):
        diff = np.abs(model(**enc, output_study=True).logits - reference.logits).max()
    print(f"largest difference, output_study=True under {backend} vs reference: {diff:.2e}")
    assert diff == 0, (backend, diff)

# %% [markdown]
# ## Timing, measured here
#
# Median of a few repeats per call (small shapes, so the table takes a few seconds): the three
# kernels the two engine backends do not share, on the inputs of the parity cell, and the whole
# model under every backend. Absolute numbers depend on the machine named below and on what else
# it is running.

# %%
cpu = platform.processor() or platform.machine()
if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
print(f"machine: {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
      f"Python {platform.python_version()}, NumPy {np.__version__}, OpenMP threads {info['threads']}")


def median_seconds(call, repeats=5):
    number = max(1, int(0.02 / max(timeit.timeit(call, number=1), 1e-7)))  # ~20 ms per repeat
    return float(np.median(timeit.repeat(call, number=number, repeat=repeats))) / number


rows = {}
for name, call in calls.items():
    if name == "linear":
        continue  # the same NumPy kernel in both engine backends
    rows[name] = {backend: median_seconds(lambda c=call, k=KERNELS[backend]: c(k)) for backend in engine_backends}
long_enc = tokenizer(["word " * 126] * 2, return_tensors="np")  # [2, 128]
whole = f"whole model, B=2 N={long_enc['input_ids'].shape[1]}"
rows[whole] = {}
for backend in available_backends():
    with pydeberta.use_backend(backend):
        rows[whole][backend] = median_seconds(lambda: model(**long_enc), repeats=3)

columns = ("reference", "numpy", "cython")
print(f"{'':<32}" + "".join(f"{c:>12}" for c in columns) + f"{'numpy/cython':>14}")
for name, t in rows.items():
    cells = "".join(f"{t[c] * 1e3:10.3f}ms" if c in t else f"{'-':>12}" for c in columns)
    speedup = f"{t['numpy'] / t['cython']:13.1f}x" if "cython" in t else f"{'-':>14}"
    print(f"{name:<32}{cells}{speedup}")

# %% [markdown]
# ## One figure: time per call under each backend
#
# The kernels have no `reference` bar: the book has no function of their arguments (it computes
# the attention terms in full, notebook 03).

# %%
names = list(rows)
fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
y = np.arange(len(names))
for offset, backend, color in ((-0.27, "reference", "#d95f02"), (0.0, "numpy", "#7570b3"), (0.27, "cython", "#1b9e77")):
    present = [n for n in names if backend in rows[n]]
    if present:
        ax.barh([y[names.index(n)] + offset for n in present], [rows[n][backend] * 1e3 for n in present], 0.27,
                color=color, label=backend)
ax.set_xscale("log")
ax.set_yticks(y, names)
ax.invert_yaxis()
ax.set_xlabel("milliseconds per call (log scale)")
ax.set_title(f"{cpu}, {os.cpu_count()} cores", fontsize=9)
ax.legend();

# %% [markdown]
# ## Exercises
#
# 1. Time `disentangled_attention_probs` for N = 32, 128 and 512. Where does the fused kernel gain
#    most, and why (think of the size of the `[B, H, N, N]` temporaries against the cache)?
# 2. Run the parity cell in float64 (`astype(np.float64)` on the float inputs). How small do the
#    differences get?
# 3. `pydeberta.use_backend("cython", num_threads=1)`: how much of the whole model's speed-up is
#    threads, how much is fusion?
# 4. For which lengths does the bundled model's identity band cover every distance? What do `lo`
#    and `hi` become when $N$ exceeds the 512 of `max_relative_span`?
