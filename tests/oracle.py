"""The outside oracle: tiny transformers models on torch, and comparisons that say where they differ.

Every parity test builds a model with transformers, moves its weights away from their initial
values (zero biases and unit LayerNorm weights hide bugs), hands the same weights to pydeberta
and compares every output tensor.
"""

import numpy as np
import torch
import transformers
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pydeberta

torch.set_num_threads(1)

TOLERANCE = {np.float32: 1e-4, np.float64: 1e-8}

# (position_buckets, max_relative_positions) pairs on which pydeberta's float64 log buckets and
# transformers' float32 ones agree over [-4096, 4096] (tests/test_positions.py checks this).
BUCKET_PAIRS = [(4, 16), (8, 32), (8, 64), (16, 64), (32, 128), (64, 512), (256, 512)]
ACTIVATIONS = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu", "swish",
               "tanh", "sigmoid", "linear", "mish"]


@st.composite
def configs(draw, **fixed):
    """A random tiny ``DebertaV2Config`` dict covering every optional part of the architecture."""
    heads = draw(st.sampled_from([1, 2, 4]))
    hidden = heads * draw(st.sampled_from([2, 4, 8]))
    cfg = dict(
        vocab_size=draw(st.integers(5, 60)), hidden_size=hidden, num_attention_heads=heads,
        num_hidden_layers=draw(st.integers(1, 3)), intermediate_size=draw(st.integers(1, 40)),
        hidden_act=draw(st.sampled_from(ACTIVATIONS)), max_position_embeddings=64,
        type_vocab_size=draw(st.sampled_from([0, 0, 3])), position_biased_input=draw(st.booleans()),
        relative_attention=draw(st.booleans()), pooler_hidden_act=draw(st.sampled_from(ACTIVATIONS)),
        layer_norm_eps=draw(st.sampled_from([1e-7, 1e-5])),
    )
    cfg.update({key: value for key, value in fixed.items() if key in cfg})  # before the parts that depend on them
    if draw(st.booleans()):
        cfg["embedding_size"] = draw(st.sampled_from([3, 8, hidden]))
    if cfg["relative_attention"]:
        cfg["pos_att_type"] = draw(st.sampled_from(["p2c|c2p", "c2p", "p2c", "None", ["c2p", "p2c"]]))
        cfg["share_att_key"] = draw(st.booleans())
        cfg["norm_rel_ebd"] = draw(st.sampled_from(["layer_norm", "none"]))
        if draw(st.booleans()):
            cfg["position_buckets"], cfg["max_relative_positions"] = draw(st.sampled_from(BUCKET_PAIRS))
        else:
            cfg["max_relative_positions"] = draw(st.sampled_from([-1, 4, 16]))
    if draw(st.booleans()):
        cfg["conv_kernel_size"] = draw(st.sampled_from([1, 3, 5]))
        cfg["conv_groups"] = draw(st.sampled_from([g for g in (1, 2, 4) if hidden % g == 0]))
        cfg["conv_act"] = draw(st.sampled_from(["gelu", "tanh", "relu"]))
    cfg.update(fixed)
    return cfg


@st.composite
def batches(draw, vocab_size, type_vocab_size=0, max_length=24):
    """Random ``(input_ids, attention_mask, token_type_ids)`` with padding; every row has at
    least one real token and the first row is sometimes a single real token."""
    B = draw(st.integers(1, 3))
    N = draw(st.integers(1, max_length))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, vocab_size, (B, N))
    lengths = rng.integers(1, N + 1, B)
    if draw(st.booleans()):
        lengths[0] = 1
    mask = (np.arange(N)[None, :] < lengths[:, None]).astype(np.int64)
    if draw(st.booleans()):  # holes anywhere, not only right padding
        mask = mask * (rng.random((B, N)) < 0.8)
        mask[:, 0] = 1
    types = rng.integers(0, max(type_vocab_size, 1), (B, N))
    return ids, mask, types


def inputs_of(batch):
    """A drawn ``(input_ids, attention_mask, token_type_ids)`` as model keyword arguments."""
    ids, mask, types = batch
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def choices_of(batch, choices):
    """Multiple-choice inputs ``[B, choices, N]``: choice ``c`` is the batch rolled by ``c`` tokens
    (its first token always visible)."""
    stacked = {k: np.stack([np.roll(v, c, axis=1) for c in range(choices)], axis=1)
               for k, v in inputs_of(batch).items()}  # [B, choices, N]
    stacked["attention_mask"][..., 0] = 1
    return stacked


def sequence_labels(problem, num_labels, soft, B, dtype, seed=1):
    """Labels of ``B`` rows for a sequence classifier with ``problem_type=problem``: float targets
    for regression, 0/1 for multi-label, soft labels (``soft`` with no problem type), else class
    indices (some -1, which transformers ignores, when the problem type is None)."""
    rng = np.random.default_rng(seed)
    if problem == "regression" or (problem is None and num_labels == 1):
        return rng.normal(size=(B, num_labels) if num_labels > 1 else (B,)).astype(dtype)
    if problem == "multi_label_classification":
        return (rng.random((B, num_labels)) < 0.5).astype(dtype)
    if problem is None and soft:
        return rng.dirichlet(np.ones(num_labels), B).astype(dtype)
    return rng.integers(-1 if problem is None else 0, num_labels, B)  # negative labels are ignored


def build_transformers_model(cls_name, cfg, dtype=np.float32, seed=0):
    """A transformers model of class ``cls_name`` with perturbed weights, in eval mode."""
    torch.manual_seed(seed)
    config = transformers.DebertaV2Config(**cfg)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.double() if dtype == np.float64 else model


def state_dict_numpy(model):
    """The model's state dict as NumPy arrays (tied tensors included once per key)."""
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def to_pydeberta(model, cls_name=None, dtype=np.float32):
    """The same weights and config in pydeberta's class of the same name."""
    config = pydeberta.DebertaV2Config.from_dict(model.config.to_dict())
    cls = getattr(pydeberta, cls_name or type(model).__name__)
    state = {k: v for k, v in state_dict_numpy(model).items() if not k.startswith("cls.predictions.decoder")}
    return cls(config, params=state, dtype=dtype)


def torch_call(model, **inputs):
    """Run a transformers model on NumPy inputs without gradients."""
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items() if v is not None}
    with torch.no_grad():
        return model(**tensors)


def assert_close(name, ours, theirs, atol):
    """Assert two arrays agree within ``atol``; the message names the tensor and the worst spot."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)
    if theirs.dtype == np.float32:  # e.g. a float64 model's classification loss, which transformers takes in float32
        atol = max(atol, TOLERANCE[np.float32])
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} != transformers' {theirs.shape}"
    if ours.size == 0:
        return
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    diff = np.where(np.isnan(ours) & np.isnan(theirs), 0.0, diff)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff[worst] <= atol, (f"{name}: max |diff| {diff[worst]:.3g} > {atol:g} at {worst} "
                                 f"(ours {ours[worst]!r}, transformers {theirs[worst]!r})")


def assert_outputs_close(ours, theirs, atol, label=""):
    """Compare every output field transformers returned (tuples element by element); ``label``
    starts every message (e.g. the backend)."""
    for key in theirs.keys():
        if isinstance(theirs[key], tuple):
            assert len(ours[key]) == len(theirs[key]), f"{label}{key}: {len(ours[key])} entries != {len(theirs[key])}"
            for i, (a, b) in enumerate(zip(ours[key], theirs[key])):
                assert_close(f"{label}{key}[{i}]", a, b, atol)
        else:
            assert_close(f"{label}{key}", ours[key], theirs[key], atol)


def assert_relative_close(what, ours, ref, tol):
    """|ours - ref| <= tol * (1 + |ref|) where ref is finite; identical values elsewhere."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    finite = np.isfinite(ref)
    assert np.array_equal(ours[~finite], ref[~finite], equal_nan=True), (
        f"{what}: non-finite values differ: {ours[~finite]} vs {ref[~finite]}"
    )
    finite_ref = np.where(finite, ref, 0.0)
    err = np.where(finite, np.abs(ours - finite_ref), 0.0) / (1.0 + np.abs(finite_ref))
    err = np.where(np.isnan(err), np.inf, err)  # ours is nan where ref is finite
    if err.size and not err.max() <= tol:
        where = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(
            f"{what}: |ours - ref| / (1 + |ref|) = {err[where]:.3e} > {tol:.1e} at index {where}: "
            f"ours={ours[where]!r}, ref={ref[where]!r}"
        )


def to_torch(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def float_arrays(max_abs=1e4, max_dims=3):
    """float64 arrays whose elements are exact float32 values, so both dtypes see the same data."""
    return hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=max_dims, max_side=7),
        elements=st.floats(-max_abs, max_abs, width=32),
    )
