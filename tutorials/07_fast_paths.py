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
# # 07 · Fast paths: the Cython twins
#
# The NumPy functions are the specification. A few of them have a compiled **twin** in `_ext/`
# with the same name, arguments and results; while the `cython` backend is active
# (the default when the extension is built) the reference calls its twin. The twins fuse what
# NumPy does in several passes over memory. The main one is the attention softmax of notebook 03:
#
# $$\text{probs}_{ij} = \operatorname{softmax}_j\Big(\text{where}\big(\text{visible}_{ij},\;
#   \text{c2c}_{ij} + \text{c2p}_{i,\,c(i,j)} + \text{p2c}_{j,\,c(i,j)},\; \text{finfo.min}\big)\Big)$$
#
# NumPy gathers each relative term into a new `[B, H, N, N]` array, adds, masks and runs the
# softmax, each a full pass; the twin does the gather, the sum, the mask and the softmax for one
# row at a time, in one pass, on OpenMP threads. Matrix products stay NumPy's `@` (BLAS). The
# others: GELU and LayerNorm (one pass instead of several temporaries), and the integer position
# functions.

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
from pydeberta._backend import available_backends, backend_info, twin_of, use_backend
from pydeberta.hub import resolve_model_folder

MODEL = "pydeberta/tiny"

# %% [markdown]
# ## The library: what runs, and the reference the twin fuses

# %%
info = backend_info()
for key, value in info.items():
    print(f"{key:<12} {value}")
print(inspect.getsource(attention.disentangled_attention_probs))
twin = twin_of(attention.disentangled_attention_probs)
print("twin:", twin.__doc__.splitlines()[0] if twin is not None else "not built (pure-Python install)")

# %% [markdown]
# ## A tiny example: the kernels' inputs
#
# Shapes as in the bundled model (4 heads of 64) on a batch of 2 × 128 tokens. Each kernel is
# called as the reference (`inspect.unwrap(f)`, always NumPy) and as its twin.

# %%
rng = np.random.default_rng(0)
B, H, N, D, C, F = 2, 4, 128, 64, 256, 1024
S, M = 64, 512
index = np.ascontiguousarray(positions.relative_index(N, N, S, S, M))  # [N, N] in [0, 2S)
R = 2 * S
visible = np.ones((B, 1, N, N), dtype=bool)
visible[1, :, :, 100:] = visible[1, :, 100:, :] = False  # the second row is padded after 100 tokens
x = rng.standard_normal((B, N, F), dtype=np.float32)
h = rng.standard_normal((B, N, C), dtype=np.float32)
kernels = {
    "disentangled_attention_probs": (attention.disentangled_attention_probs,
                                     (rng.standard_normal((B, H, N, N), dtype=np.float32), visible,
                                      rng.standard_normal((B, H, N, R), dtype=np.float32),
                                      rng.standard_normal((B, H, N, R), dtype=np.float32), index)),
    "gelu": (functional.gelu, (x,)),
    "layer_norm": (functional.layer_norm, (h, rng.standard_normal(C, dtype=np.float32),
                                           rng.standard_normal(C, dtype=np.float32), 1e-7)),
    "make_log_bucket_position": (positions.make_log_bucket_position,
                                 (np.arange(N)[:, None] - np.arange(N)[None, :], S, M)),
    "build_relative_position": (positions.build_relative_position, (N, N, S, M)),
    "relative_index": (positions.relative_index, (N, N, S, S, M)),
}
for name, (function, args) in kernels.items():
    shapes = [a.shape if isinstance(a, np.ndarray) else a for a in args]
    print(f"{name:<30} args {shapes} -> {np.shape(inspect.unwrap(function)(*args))}")

# %% [markdown]
# ## Parity with the NumPy reference
#
# First the fused function against the formula: from random queries, keys and tables, the model's
# inputs to `disentangled_attention_probs` (content scores and the products with every table row)
# must give the masked softmax of the three terms of notebook 03, under each backend. Then each
# twin against its reference: integer kernels identical, float kernels equal to rounding. Last,
# the whole model under each backend.

# %%
q, k = rng.standard_normal((2, B, H, N, D), dtype=np.float32)
kr, qr = rng.standard_normal((2, H, R, D), dtype=np.float32)
scale = attention.attention_scale(D, {"c2p", "p2c"}, q.dtype)
terms = attention.attention_score_terms(q, k, scale, kr, qr, index)
step_by_step = functional.masked_softmax(terms["c2c"] + terms["c2p"] + terms["p2c"], visible)
for backend in available_backends():
    with use_backend(backend):
        fused = attention.disentangled_attention_probs(q @ (k / scale).swapaxes(-1, -2), visible,
                                                       attention.relative_scores(q / scale, kr),
                                                       attention.relative_scores(k / scale, qr), index)
    print(f"largest difference, fused probabilities ({backend}) vs masked_softmax(c2c + c2p + p2c):",
          np.abs(fused - step_by_step).max())

compiled = "cython" in available_backends()
if not compiled:
    print("the compiled extension is not built:", info["reason"], "- only the NumPy reference runs here")
for name, (function, args) in kernels.items():
    reference = inspect.unwrap(function)(*args)
    if compiled:
        print(f"largest difference, {name:<30} twin vs reference: {np.abs(twin_of(function)(*args) - reference).max()}")

model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(MODEL)
tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(MODEL))
enc = tokenizer(["In the beginning was the Word, and the Word was with God.", "Flat is better than nested."],
                padding=True, return_tensors="np")
logits = {}
for backend in available_backends():
    with use_backend(backend):
        logits[backend] = model(**enc).logits
if compiled:
    print("largest difference, whole-model logits, cython vs numpy:", np.abs(logits["cython"] - logits["numpy"]).max())

# %% [markdown]
# ## Timing, measured here
#
# Median of a few repeats per call (small shapes, so the table takes a few seconds). Absolute
# numbers depend on the machine named below and on what else it is running.

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
for name, (function, args) in kernels.items():
    rows[name] = {"numpy": median_seconds(lambda f=inspect.unwrap(function), a=args: f(*a))}
    if compiled:
        rows[name]["cython"] = median_seconds(lambda f=twin_of(function), a=args: f(*a))
long_enc = tokenizer(["word " * 126] * 2, return_tensors="np")  # [2, 128]
whole = f"whole model, B=2 N={long_enc['input_ids'].shape[1]}"
rows[whole] = {}
for backend in available_backends():
    with use_backend(backend):
        rows[whole][backend] = median_seconds(lambda: model(**long_enc), repeats=3)

print(f"{'':<32}{'numpy':>12}{'cython':>12}{'speed-up':>10}")
for name, t in rows.items():
    cython = f"{t['cython'] * 1e3:10.3f}ms" if "cython" in t else f"{'-':>12}"
    speedup = f"{t['numpy'] / t['cython']:9.1f}x" if "cython" in t else f"{'-':>10}"
    print(f"{name:<32}{t['numpy'] * 1e3:10.3f}ms{cython}{speedup}")

# %% [markdown]
# ## One figure: time per call, NumPy reference vs Cython twin

# %%
names = list(rows)
fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
y = np.arange(len(names))
for offset, backend, color in ((-0.2, "numpy", "#7570b3"), (0.2, "cython", "#1b9e77")):
    if all(backend in rows[n] for n in names):
        ax.barh(y + offset, [rows[n][backend] * 1e3 for n in names], 0.4, color=color, label=backend)
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
# 3. `use_backend("cython", num_threads=1)`: how much of the whole model's speed-up is threads,
#    how much is fusion?
