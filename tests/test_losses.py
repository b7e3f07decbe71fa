"""pydeberta.losses against torch 2.13 (CPU) and transformers' formulas.

Closeness is "relative-ish": |ours - ref| <= tol * (1 + |ref|); a failure names the loss and the
largest difference.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import example, given, settings
from hypothesis import strategies as st

from oracle import assert_relative_close as assert_close
from oracle import float_arrays, to_torch
from pydeberta import losses as F

DTYPES = [np.float32, np.float64]
EXTREMES = [-1e4, -50.0, -20.0, -5.0, -3.47, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 5.0, 50.0, 1e4]


def assert_loss(what, ours, ref, dtype):
    assert isinstance(ours, np.ndarray) and ours.shape == () and ours.dtype == dtype, (
        f"{what}: expected a 0-d {dtype.__name__} array, got {type(ours)} {np.shape(ours)}"
    )
    # float32: torch's own float32 reduction rounds differently from ours (e.g. a mean over logits
    # of size 1e3 moves by several 1e-6); the project's float32 tolerance applies, and the
    # float64 case checks the arithmetic tightly.
    assert_close(what, ours, ref.numpy(), 1e-4 if dtype is np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 12),
    classes=st.integers(1, 8),
    logit_scale=st.sampled_from([1.0, 30.0, 1e3]),
    ignored=st.sampled_from(["none", "some", "all"]),
    ignore_index=st.sampled_from([-100, "classes"]),
)
def test_cross_entropy_matches_torch(
    dtype, seed, rows, classes, logit_scale, ignored, ignore_index
):
    rng = np.random.default_rng(seed)
    if ignore_index == "classes":  # the question-answering heads ignore position N of N classes
        ignore_index = classes
    logits = (logit_scale * rng.normal(size=(rows, classes))).astype(dtype)  # [N, C]
    labels = rng.integers(0, classes, size=rows)  # [N]
    if ignored == "some":
        labels[rng.random(rows) < 0.4] = ignore_index
    elif ignored == "all":
        labels[:] = ignore_index
    ours = F.cross_entropy(logits, labels, ignore_index=ignore_index)
    ref = TF.cross_entropy(to_torch(logits), to_torch(labels), ignore_index=ignore_index)
    assert_loss("cross_entropy", ours, ref, dtype)
    assert np.isnan(ours) == np.all(labels == ignore_index)


def test_cross_entropy_rejects_bad_labels():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        F.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 12), classes=st.integers(1, 8))
def test_soft_cross_entropy_matches_transformers_formula(dtype, seed, rows, classes):
    rng = np.random.default_rng(seed)
    logits = (3.0 * rng.normal(size=(rows, classes))).astype(dtype)  # [N, C]
    probs = rng.dirichlet(np.ones(classes), size=rows).astype(dtype)  # [N, C]
    ours = F.soft_cross_entropy(logits, probs)
    ref = -(torch.log_softmax(to_torch(logits), dim=-1) * to_torch(probs)).sum(-1).mean()
    assert_loss("soft_cross_entropy", ours, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40, deadline=None)
@given(x=float_arrays(max_abs=1e3), seed=st.integers(0, 2**32 - 1))
def test_mse_loss_matches_torch(dtype, x, seed):
    x = x.astype(dtype)
    target = np.random.default_rng(seed).normal(size=x.shape).astype(dtype)
    ref = TF.mse_loss(to_torch(x), to_torch(target))
    assert_loss("mse_loss", F.mse_loss(x, target), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=60, deadline=None)
@given(x=float_arrays(), seed=st.integers(0, 2**32 - 1))
@example(x=np.array(EXTREMES), seed=0)
def test_bce_with_logits_matches_torch(dtype, x, seed):
    x = x.astype(dtype)
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random(x.shape) < 0.3, rng.integers(0, 2, x.shape), rng.random(x.shape))
    targets = targets.astype(dtype)
    ours = F.bce_with_logits(x, targets)
    ref = TF.binary_cross_entropy_with_logits(to_torch(x), to_torch(targets))
    assert_loss("bce_with_logits", ours, ref, dtype)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="shape"):
        F.bce_with_logits(np.zeros(3), np.zeros((3, 1)))
