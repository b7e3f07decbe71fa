"""The engine's kernels, on every engine backend (``numpy`` and ``cython``), against the book.

The oracle is the book (:mod:`pydeberta.functional`, :mod:`pydeberta.attention`): floats within
a tight tolerance, measured as |kernel - book| / (1 + |book|): float32 1e-6, float64 1e-13
(LayerNorm: times the rows' conditioning 1 + |mean| / std, since the twin sums in another order).
Inputs cover both dtypes, odd shapes, length 1 and lengths beyond the bucket span, fully masked
rows and non-contiguous views (copied by the twins, never misread); the compiled kernels give
bit-identical results on 1 and 2 threads. A failure names the quantity and prints the largest
difference and where it is.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from oracle import assert_relative_close
from pydeberta import attention, functional, positions
from pydeberta.engine import backend
from pydeberta.engine.attention import relative_scores
from pydeberta.engine.relative import RelativeIndex, identity_band, relative_index

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-6, np.float64: 1e-13}
COMPILED = "cython" in backend.available_backends()


def assert_close(what, ours, ref, tol):
    """Same dtype and shape as the book's result, and |ours - ref| <= tol * (1 + |ref|)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (
        f"{what}: {ours.dtype}{ours.shape} != book {ref.dtype}{ref.shape}")
    assert_relative_close(what, ours, ref, tol)


def threads(n):
    return backend.use_backend("cython", num_threads=n)


needs_compiled = pytest.mark.skipif(not COMPILED, reason="thread counts are a property of the compiled kernels")


def views(draw, array):
    """``array`` itself, or the same values behind a non-contiguous view: strided, reversed or
    transposed in the last axis (copied by the twins), or strided in the first axis only (read in place)."""
    kind = draw(st.sampled_from(["contiguous", "strided", "reversed", "transposed", "rows"]))
    if kind == "rows" and array.ndim >= 2:
        spread = np.empty((2 * array.shape[0],) + array.shape[1:], array.dtype)
        spread[1::2] = array
        return spread[1::2]
    if kind == "strided":
        spread = np.empty(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        spread[..., ::2] = array
        return spread[..., ::2]
    if kind == "reversed":
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if kind == "transposed" and array.ndim >= 2:
        return np.ascontiguousarray(array.swapaxes(-1, -2)).swapaxes(-1, -2)
    return array


# ------------------------------------------------------------------------------------- linear
@settings(max_examples=30)
@given(data=st.data())
def test_linear_equals_the_book(kernels, data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5), label="lead")
    n_in, n_out = data.draw(st.integers(1, 9), label="in"), data.draw(st.integers(1, 9), label="out")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.standard_normal(lead + (n_in,)).astype(dtype)
    weight, bias = rng.standard_normal((n_out, n_in)).astype(dtype), rng.standard_normal(n_out).astype(dtype)
    for b in (bias, None):
        assert_close("linear", kernels.linear(x, weight, b), functional.linear(x, weight, b), 10 * TOL[dtype])


# ------------------------------------------------------------------------------------- GELU, LayerNorm
SPECIALS = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 3.0e38, -3.0e38, 6.0, -6.0, 20.0, -20.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_gelu_equals_the_book(kernels, dtype, data):
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
                             elements=st.floats(-60, 60, width=32)), label="x")
    if x.ndim:
        x = views(data.draw, x)
    assert_close("gelu", kernels.gelu(x), functional.gelu(x), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_gelu_on_a_dense_grid_and_specials(kernels, dtype):
    x = np.concatenate([np.linspace(-12.0, 12.0, 300_001), SPECIALS]).astype(dtype)
    ours = kernels.gelu(x)
    ref = functional.gelu(x)
    assert_close("gelu", ours, ref, TOL[dtype])
    if dtype is np.float32:  # both are float64 evaluations rounded once: at most one float32 ulp apart,
        # plus the float64 cancellation in 1 + erf(x) that both share in the far negative tail
        finite = np.isfinite(ref)
        gap = np.abs(ours[finite].astype(np.float64) - ref[finite])
        assert (gap <= np.spacing(np.abs(ref[finite])) + 1e-15).all()


@needs_compiled
def test_compiled_gelu_is_the_same_on_one_and_two_threads():
    x = np.linspace(-12.0, 12.0, 300_001).astype(np.float32)
    gelu = backend.KERNELS["cython"].gelu
    with threads(1):
        one = gelu(x)
    with threads(2):
        two = gelu(x)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_layer_norm_with_residual_equals_the_book(kernels, dtype, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=24), label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    loc = data.draw(st.sampled_from([0.0, 3.0, -1e3]), label="loc")
    scale = data.draw(st.sampled_from([1e-3, 1.0, 50.0]), label="scale")
    x = (loc + scale * rng.standard_normal(shape)).astype(dtype)
    weight, bias = (1 + rng.standard_normal(shape[-1])).astype(dtype), rng.standard_normal(shape[-1]).astype(dtype)
    eps = data.draw(st.sampled_from([1e-7, 1e-5, 0.5]), label="eps")
    x = views(data.draw, x)
    # The residual: none, one of x's dtype and shape (added in the kernel), or one NumPy adds first
    # (broadcast row, other dtype).
    residual = data.draw(st.sampled_from(["none", "same", "row", "float16"]), label="residual")
    residual = {"none": None, "same": views(data.draw, scale * rng.standard_normal(shape).astype(dtype)),
                "row": rng.standard_normal(shape[-1]).astype(dtype),
                "float16": rng.standard_normal(shape).astype(np.float16)}[residual]
    ours = kernels.layer_norm(x, weight, bias, eps, residual=residual)
    ref = functional.layer_norm(x if residual is None else x + residual, weight, bias, eps)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    # Both evaluate in double; only the order of the sums differs, which matters in proportion
    # to the conditioning |mean| / std of the rows.
    assert_close("layer_norm", ours, ref, TOL[dtype] * (1 + abs(loc) / scale))


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_compiled_layer_norm_threads_give_identical_rows(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 129, 768)).astype(dtype)
    w, b = rng.standard_normal(768).astype(dtype), rng.standard_normal(768).astype(dtype)
    layer_norm = backend.KERNELS["cython"].layer_norm
    with threads(1):
        one = layer_norm(x, w, b, 1e-7)
    with threads(2):
        two = layer_norm(x, w, b, 1e-7)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(two[1], layer_norm(x[1], w, b, 1e-7))


@needs_compiled
def test_compiled_float_kernels_name_the_bad_argument():
    kernels = backend.KERNELS["cython"]
    with pytest.raises(TypeError, match="x must be a float32 or float64 array, got dtype float16"):
        kernels.gelu(np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"weight and bias must have shape \(4,\).*got \(3,\)"):
        kernels.layer_norm(np.ones((2, 4)), np.ones(3), np.zeros(4), 1e-7)


# ------------------------------------------------------------------------------------- attention probs
def index_of_line(line, Q, K):
    """A :class:`RelativeIndex` of ``[Q, K]`` holding ``line`` (values already in ``[0, R)``)."""
    line = np.asarray(line, np.int64)
    line.flags.writeable = False
    return RelativeIndex(Q, K, 0, int(line.max()), line, identity_band(line, K))


def expected_probs(c2c, visible, c2p, p2c, index):
    """The kernel's formula written out with the book's masked softmax:
    ``masked_softmax(c2c + (c2p[i, c(i, j)] + p2c[j, c(i, j)]), visible)``."""
    table = index.table() if index is not None else None
    relative = []
    if c2p is not None:
        relative.append(np.take_along_axis(c2p, table[None, None], axis=-1))
    if p2c is not None:
        relative.append(np.take_along_axis(p2c, table.T[None, None], axis=-1).swapaxes(-1, -2))
    return functional.masked_softmax(c2c + sum(relative) if relative else c2c, visible)


@st.composite
def score_terms(draw, dtype):
    """Random inputs of ``disentangled_attention_probs``: terms on or off, any lengths, masks with
    fully hidden rows, any index line (runs of consecutive values included), and any of the
    terms behind a non-contiguous view."""
    B, H, Q, K = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 13)), draw(st.integers(1, 13)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([1.0, 30.0]))
    c2c = (spread * rng.standard_normal((B, H, Q, K))).astype(dtype)
    terms = draw(st.sampled_from([("c2p", "p2c"), ("c2p",), ("p2c",), ()]))
    R = draw(st.integers(1, 20))
    c2p = (spread * rng.standard_normal((B, H, Q, R))).astype(dtype) if "c2p" in terms else None
    p2c = (spread * rng.standard_normal((B, H, K, R))).astype(dtype) if "p2c" in terms else None
    line = rng.integers(0, R, Q + K - 1)
    start, length = draw(st.integers(0, Q + K - 2)), min(draw(st.integers(0, 20)), R)
    length = min(length, Q + K - 1 - start)  # a run c0, c0 + 1, ...: the identity band, read without the index
    line[start:start + length] = rng.integers(0, R - length + 1) + np.arange(length)
    index = index_of_line(line, Q, K) if terms else None
    shape = draw(st.sampled_from([(B, 1, Q, K), (B, H, Q, K), (1, 1, Q, K), (Q, K), (B, 1, 1, K)]))
    visible = rng.random(shape) < draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    if len(shape) == 4 and shape[2] == Q and Q > 1:
        visible[..., 0, :] = False  # a fully masked (padded) query row
    c2c, c2p, p2c = (None if a is None else views(draw, a) for a in (c2c, c2p, p2c))
    return c2c, visible, c2p, p2c, index


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=80)
@given(data=st.data())
def test_attention_probs_equal_the_formula(kernels, dtype, data):
    inputs = data.draw(score_terms(dtype))
    ours, ref = kernels.disentangled_attention_probs(*inputs), expected_probs(*inputs)
    assert_close("probs", ours, ref, TOL[dtype])
    np.testing.assert_array_equal(ours == 0, ref == 0)  # hidden keys of a row with a visible key: exactly 0
    padded = np.broadcast_to(~np.asarray(inputs[1]).any(-1, keepdims=True), ours.shape)
    np.testing.assert_array_equal(ours[padded], ours.dtype.type(1) / ours.shape[-1])  # uniform rows


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("N", [1, 7, 300])
def test_engine_attention_probs_equal_the_book_at_model_shapes(kernels, dtype, N):
    """The engine's arrangement (scaled query, products with the reachable table rows only,
    gathered through the index's line) against the book's :func:`attention_score_terms` with the
    whole table, on the released layout: N = 300 reaches beyond the identity band of the buckets."""
    rng = np.random.default_rng(N)
    B, H, D, S = 2, 3, 8, 256
    query, key = (rng.standard_normal((B, H, N, D)).astype(dtype) for _ in range(2))
    pos_key, pos_query = (rng.standard_normal((H, 2 * S, D)).astype(dtype) for _ in range(2))
    mask = np.ones((B, N), bool)
    mask[1, N // 2 + 1:] = False
    visible = mask[:, None, :, None] & mask[:, None, None, :]
    scale = attention.attention_scale(D, {"c2p", "p2c"}, np.dtype(dtype))
    terms = attention.attention_score_terms(query, key, scale, pos_key, pos_query,
                                            positions.relative_index(N, N, S, 256, 512))
    book = functional.masked_softmax(terms["c2c"] + (terms["c2p"] + terms["p2c"]), visible)

    index = relative_index(N, N, S, 256, 512)
    rows = slice(index.lo, index.hi + 1)
    c2c = (query / scale) @ key.swapaxes(-1, -2)
    c2p, p2c = relative_scores(query / scale, pos_key[:, rows]), relative_scores(key / scale, pos_query[:, rows])
    ours = kernels.disentangled_attention_probs(c2c, visible, c2p, p2c, index)
    assert_close("probs", ours, book, 10 * TOL[dtype])

    in_place = c2c.copy()
    assert kernels.disentangled_attention_probs(in_place, visible, c2p, p2c, index, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, ours)
    heads = np.zeros((B, H + 2, N, N), dtype)  # out: a slice of heads of a larger array, strided
    kernels.disentangled_attention_probs(c2c, visible, c2p, p2c, index, out=heads[:, 1:H + 1])
    np.testing.assert_array_equal(heads[:, 1:H + 1], ours)
    assert not heads[:, [0, H + 1]].any()


@needs_compiled
@pytest.mark.parametrize("N", [7, 300])
def test_compiled_attention_probs_are_the_same_on_one_and_two_threads(N):
    rng = np.random.default_rng(N)
    index = relative_index(N, N, 256, 256, 512)
    c2c = rng.standard_normal((2, 3, N, N)).astype(np.float32)
    c2p, p2c = (rng.standard_normal((2, 3, N, index.rows)).astype(np.float32) for _ in range(2))
    visible = np.ones((2, 1, N, N), bool)
    probs = backend.KERNELS["cython"].disentangled_attention_probs
    with threads(1):
        one = probs(c2c, visible, c2p, p2c, index)
    with threads(2):
        two = probs(c2c, visible, c2p, p2c, index)
    np.testing.assert_array_equal(one, two)


@settings(max_examples=60)
@given(data=st.data())
@example(data=None)
def test_attention_probs_with_an_identity_band_equal_the_formula(kernels, data):
    """Index lines with runs of consecutive values (the identity zone of the buckets, read
    without the index) anywhere, of any length, Q != K, blocks of query rows cut by the band."""
    if data is None:  # the released layout: N = 300 reaches the log buckets on both sides of the band
        index = relative_index(300, 300, 256, 256, 512)
        band_lo, band_hi, band_c = index.band
        assert band_lo <= -127 and band_hi >= 127  # at least the identity zone |i - j| < bucket_size / 2
        distance = np.arange(300)[:, None] - np.arange(300)[None, :]
        in_band = (distance >= band_lo) & (distance <= band_hi)
        np.testing.assert_array_equal(index.table()[in_band], band_c + distance[in_band])
        Q = K = 300
        R = index.rows
        rng = np.random.default_rng(0)
    else:
        Q, K = data.draw(st.integers(1, 40), label="Q"), data.draw(st.integers(1, 40), label="K")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        R = data.draw(st.integers(1, 90), label="R")
        start, length = data.draw(st.integers(0, Q + K - 2), label="start"), data.draw(st.integers(0, 90), label="length")
        length = min(length, Q + K - 1 - start, R)
        line = rng.integers(0, R, Q + K - 1)  # line[i - j + K - 1]
        line[start:start + length] = rng.integers(0, R - length + 1) + np.arange(length)
        index = index_of_line(line, Q, K)
    c2c = rng.standard_normal((2, 2, Q, K))
    c2p, p2c = rng.standard_normal((2, 2, Q, R)), rng.standard_normal((2, 2, K, R))
    visible = np.ones((2, 1, Q, K), bool)
    assert_close("probs", kernels.disentangled_attention_probs(c2c, visible, c2p, p2c, index),
                 expected_probs(c2c, visible, c2p, p2c, index), TOL[np.float64])


@needs_compiled
def test_compiled_attention_probs_reject_bad_inputs_before_work():
    probs = backend.KERNELS["cython"].disentangled_attention_probs
    c2c, term = np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 5))
    index = relative_index(3, 4, 2)  # rows 0..3
    visible = np.ones((1, 1, 3, 4), bool)
    bad_line = RelativeIndex(3, 4, 0, 3, np.full(6, 7), (1, 0, 0))  # claims 4 rows, reads row 7
    cases = [
        (dict(visible=visible.astype(int)), TypeError, "visible must be a bool array, got dtype int"),
        (dict(visible=np.ones((2, 1, 3, 4), bool)), ValueError, "does not broadcast to the scores"),
        (dict(c2p=term.astype(np.float32)), TypeError, "c2p must have c2c's dtype float64, got float32"),
        (dict(c2p=np.zeros((1, 2, 4, 5))), ValueError, r"c2p must have shape \[1, 2, 3, R >= 1\], got \(1, 2, 4, 5\)"),
        (dict(c2p=term, index=None), ValueError, "index is required"),
        (dict(c2p=term, index=np.zeros((3, 4), int)), TypeError, "index must be a RelativeIndex"),
        (dict(c2p=term[..., :3]), ValueError, r"index values must lie in \[0, 3\) \(the rows of c2p / p2c\), got \[0, 3\]"),
        (dict(c2p=term, index=relative_index(3, 3, 2)), ValueError, r"index is for \[Q, K\] = \(3, 3\)"),
        (dict(c2p=term, index=bad_line), ValueError, r"index values must lie in \[0, 5\)"),
        (dict(out=np.zeros((1, 2, 4, 3)).swapaxes(-1, -2)), ValueError, "out must be writeable, with a contiguous last axis"),
        (dict(out=np.zeros((1, 2, 3, 4), np.float32)), ValueError, "out must be a float64 array"),
    ]
    for kwargs, error, message in cases:
        args = dict(c2c=c2c, visible=visible, index=index) | kwargs
        with pytest.raises(error, match=message):
            probs(**args)
    with pytest.raises(TypeError, match="c2c must be a float32 or float64 array, got dtype int64"):
        probs(np.zeros((1, 1, 2, 2), int), np.ones((2, 2), bool))
    buffer = np.zeros(60)
    c2p, out = buffer[:30].reshape(1, 2, 3, 5), buffer[20:44].reshape(1, 2, 3, 4)  # overlapping, contiguous
    with pytest.raises(ValueError, match="out must not overlap c2p"):
        probs(c2c, visible, c2p, None, index, out=out)
