"""The book's backward functions against central finite differences (float64), one function at a
time: for a forward ``y = f(x)`` and a random ``dy``, the backward's ``dx`` must equal the
numerical derivative of ``L(x) = sum(dy * f(x))``. The whole-model gradients are checked against
torch autograd in tests/test_gradients.py.
"""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pydeberta import functional as F
from pydeberta import losses
from pydeberta.attention import attention_score_terms, attention_score_terms_backward, gather_backward
from pydeberta.conv import conv1d, conv1d_backward
from pydeberta.positions import relative_index


def numerical_grad(loss, x, step=1e-6):
    """Central differences of the scalar ``loss`` at every entry of ``x`` (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + step
        up = loss()
        x[i] = saved - step
        down = loss()
        x[i] = saved
        grad[i] = (up - down) / (2 * step)
    return grad


def assert_matches_differences(name, analytic, numeric, tol=1e-6):
    scale = max(np.abs(numeric).max(), 1.0)
    err = np.abs(analytic - numeric).max() / scale
    assert err <= tol, f"{name}: max |backward - finite differences| = {err:.3g} (relative to {scale:.3g})"


@pytest.mark.parametrize("name", sorted(F.ACT2GRAD))
def test_activation_backward_matches_torch_and_differences(name):
    """Every activation's derivative against torch autograd of transformers' ACT2FN module and
    finite differences, away from the kinks (relu at 0, relu6 at 0 and 6, gelu_10's clip)."""
    from transformers.activations import ACT2FN

    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=200)
    x = x[(np.abs(x) > 1e-3) & (np.abs(x - 6) > 1e-3)]
    dy = rng.normal(size=x.shape)
    ours = F.get_activation_backward(name)(dy, x)
    t = torch.tensor(x, requires_grad=True)
    ACT2FN[name](t).backward(torch.tensor(dy))
    np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)
    act = F.get_activation(name)
    assert_matches_differences(name, ours, numerical_grad(lambda: np.sum(dy * act(x)), x), tol=1e-5)


def test_activation_backward_names_unknown_activations():
    with pytest.raises(ValueError, match="unknown activation name='nope'"):
        F.get_activation_backward("nope")


@settings(max_examples=20)
@given(rows=st.integers(1, 4), inputs=st.integers(1, 5), outputs=st.integers(1, 5), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_linear_backward(rows, inputs, outputs, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(2, rows, inputs)), rng.normal(size=(outputs, inputs))
    b = rng.normal(size=outputs) if bias else None
    dy = rng.normal(size=(2, rows, outputs))
    dx, grads = F.linear_backward(dy, x, w, b)
    loss = lambda: np.sum(dy * F.linear(x, w, b))  # noqa: E731
    assert_matches_differences("dx", dx, numerical_grad(loss, x))
    assert_matches_differences("dweight", grads["weight"], numerical_grad(loss, w))
    assert ("bias" in grads) == bias
    if bias:
        assert_matches_differences("dbias", grads["bias"], numerical_grad(loss, b))


@settings(max_examples=20)
@given(channels=st.integers(2, 6), eps=st.sampled_from([1e-7, 1e-5, 1.0]), seed=st.integers(0, 2**32 - 1))
@example(channels=2, eps=1e-7, seed=0)
def test_layer_norm_backward(channels, eps, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(3, channels)), rng.normal(size=channels), rng.normal(size=channels)
    dy = rng.normal(size=(3, channels))
    dx, grads = F.layer_norm_backward(dy, x, w, b, eps)
    loss = lambda: np.sum(dy * F.layer_norm(x, w, b, eps))  # noqa: E731
    assert_matches_differences("dx", dx, numerical_grad(loss, x), tol=1e-5)
    assert_matches_differences("dweight", grads["weight"], numerical_grad(loss, w))
    assert_matches_differences("dbias", grads["bias"], numerical_grad(loss, b))


@settings(max_examples=20)
@given(keys=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_masked_softmax_backward(keys, seed):
    """Visible scores get softmax's derivative; hidden ones, and every score of a fully hidden row, 0."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(3, keys))
    visible = rng.random((3, keys)) < 0.7
    visible[0] = True
    visible[2] = False  # a padded query: uniform, no gradient
    dy = rng.normal(size=(3, keys))
    ds = F.masked_softmax_backward(dy, F.masked_softmax(scores, visible), visible)
    numeric = numerical_grad(lambda: np.sum(dy * F.masked_softmax(scores, visible)), scores)
    assert_matches_differences("dscores", ds, numeric)
    assert np.all(ds[~visible] == 0)


@settings(max_examples=20)
@given(rows=st.integers(1, 5), cols=st.integers(1, 5), size=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_gather_backward_is_the_scatter_add(rows, cols, size, seed):
    """Several (i, j) reading one table column add up there (what the log buckets do)."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(2, rows, size))
    index = rng.integers(0, size, (rows, cols))
    dy = rng.normal(size=(2, rows, cols))
    loss = lambda: np.sum(dy * np.take_along_axis(table, index[None], axis=-1))  # noqa: E731
    assert_matches_differences("dtable", gather_backward(dy, index, size), numerical_grad(loss, table))


@settings(max_examples=15)
@given(n=st.integers(1, 12), span=st.sampled_from([1, 2, 4]), buckets=st.sampled_from([-1, 2]),
       seed=st.integers(0, 2**32 - 1))
@example(n=12, span=4, buckets=2, seed=0)
def test_attention_score_terms_backward(n, span, buckets, seed):
    """c2c, c2p and p2c against finite differences in q, k, Kr and Qr, on a bucketed index."""
    rng = np.random.default_rng(seed)
    H, D = 2, 3
    q, k = rng.normal(size=(2, H, n, D)), rng.normal(size=(2, H, n, D))
    pos_key, pos_query = rng.normal(size=(H, 2 * span, D)), rng.normal(size=(H, 2 * span, D))
    index = relative_index(n, n, span, buckets, 4 * span if buckets > 0 else -1)
    scale = np.float64(1.7)
    dy = {name: rng.normal(size=(2, H, n, n)) for name in ("c2c", "c2p", "p2c")}
    dq, dk, dkr, dqr = attention_score_terms_backward(dy, q, k, scale, pos_key, pos_query, index)

    def loss():
        terms = attention_score_terms(q, k, scale, pos_key, pos_query, index)
        return sum(np.sum(dy[name] * terms[name]) for name in terms)

    for name, analytic, x in (("dquery", dq, q), ("dkey", dk, k), ("dpos_key", dkr, pos_key),
                              ("dpos_query", dqr, pos_query)):
        assert_matches_differences(name, analytic, numerical_grad(loss, x))


@settings(max_examples=15)
@given(n=st.integers(1, 6), kernel=st.sampled_from([1, 3, 5]), groups=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**32 - 1))
def test_conv1d_backward(n, kernel, groups, seed):
    rng = np.random.default_rng(seed)
    C = 4
    x, w, b = rng.normal(size=(2, n, C)), rng.normal(size=(C, C // groups, kernel)), rng.normal(size=C)
    dy = rng.normal(size=(2, n, C))
    dx, grads = conv1d_backward(dy, x, w, b, groups)
    loss = lambda: np.sum(dy * conv1d(x, w, b, groups))  # noqa: E731
    assert_matches_differences("dx", dx, numerical_grad(loss, x))
    assert_matches_differences("dweight", grads["weight"], numerical_grad(loss, w))
    assert_matches_differences("dbias", grads["bias"], numerical_grad(loss, b))


@pytest.mark.parametrize("loss, backward, targets", [
    (losses.cross_entropy, losses.cross_entropy_backward, np.array([2, -100, 0])),
    (losses.soft_cross_entropy, losses.soft_cross_entropy_backward, np.array([[0.2, 0.3, 0.5]] * 3)),
    (losses.mse_loss, losses.mse_loss_backward, np.arange(9.0).reshape(3, 3) / 9),
    (losses.bce_with_logits, losses.bce_with_logits_backward, np.array([[0, 1, 1], [1, 0, 0], [0.5, 0, 1]])),
])
def test_loss_backward(loss, backward, targets):
    logits = np.random.default_rng(5).normal(size=(3, 3))
    assert_matches_differences(loss.__name__, backward(logits, targets),
                               numerical_grad(lambda: float(loss(logits, targets)), logits))


def test_cross_entropy_backward_with_every_row_ignored_is_zero():
    """The loss is nan (0/0, as torch); the gradient is 0, as torch's, which touches only kept rows."""
    logits = np.ones((2, 3))
    assert np.isnan(losses.cross_entropy(logits, np.array([-100, -100])))
    assert np.array_equal(losses.cross_entropy_backward(logits, np.array([-100, -100])), np.zeros((2, 3)))
