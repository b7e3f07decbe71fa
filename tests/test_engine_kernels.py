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


VIEWS = ["contiguous", "strided", "reversed", "transposed", "rows"]


def views(draw, array):
    """``array`` itself, or the same values behind a non-contiguous view (:func:`view`)."""
    return view(array, draw(st.sampled_from(VIEWS)))


def view(array, kind):
    """``array`` itself (``contiguous``, or any kind for a 0-d array), or the same values behind a
    non-contiguous view: strided, reversed or transposed in the last axis (copied by the twins), or
    strided in the first axis only (``rows``: read in place)."""
    if array.ndim == 0:
        return array
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


# ------------------------------------------------------------------------------------- backward
# The training step's kernels against the book's backward functions, within float32 1e-5, float64
# 1e-12 of the largest entry of the book's result (a gradient's small entries are differences of
# large ones), or, where every entry may cancel to rounding noise (LayerNorm's dx, gelu' in its
# far tail, a bucket's sum of a softmax backward row), of the largest term those are made of. The
# compiled kernels run on one and on two threads, which must give the same bits (run_threads).
BACKWARD_TOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close_to_largest(what, ours, ref, tol, largest=None):
    """Same dtype and shape as the book's result, the same non-finite entries, and
    |ours - ref| <= tol * largest over the finite ones; ``largest`` is max |ref| unless given (the
    largest term of a sum whose results may cancel to nothing). Exactly 0 where that is 0."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (
        f"{what}: {ours.dtype}{ours.shape} != book {ref.dtype}{ref.shape}")
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(ours[~finite], ref[~finite], err_msg=f"{what}: non-finite entries differ")
    gap = np.abs(ours[finite].astype(np.float64) - ref[finite])
    if largest is None:
        largest = np.abs(ref[finite].astype(np.float64)).max(initial=0.0)
    if gap.size and not gap.max() <= tol * largest:
        k = np.argmax(np.where(np.isnan(gap), np.inf, gap))
        raise AssertionError(f"{what}: |ours - ref| = {gap[k]:.3e} > {tol:.0e} * largest {largest:.3e}: "
                             f"ours={ours[finite][k]!r}, ref={ref[finite][k]!r}")


def leaves(result, name="result"):
    """The arrays (and Nones) of a kernel's result, nested tuples and dicts, with their place in it."""
    if isinstance(result, dict):
        return [leaf for key, value in result.items() for leaf in leaves(value, f"{name}[{key!r}]")]
    if isinstance(result, tuple):
        return [leaf for k, value in enumerate(result) for leaf in leaves(value, f"{name}[{k}]")]
    return [(name, result)]


def run_threads(kernels, call):
    """``call()``; on the compiled kernel set once on one thread and once on two, whose results must
    be the same bits (the result on two threads is returned)."""
    if kernels is not backend.KERNELS.get("cython"):
        return call()
    with threads(1):
        one = call()
    with threads(2):
        two = call()
    for (name, a), (_, b) in zip(leaves(one), leaves(two), strict=True):
        assert (a is None and b is None) or (a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()), (
            f"{name} differs between one and two threads")
    return two


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40), scale=st.sampled_from([1.0, 6.0, 60.0]),
       grad_dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1), grad_view=st.sampled_from(VIEWS),
       x_view=st.sampled_from(VIEWS))
@example(shape=(), scale=1.0, grad_dtype=np.float64, seed=0, grad_view="contiguous", x_view="contiguous")
@example(shape=(0,), scale=1.0, grad_dtype=np.float32, seed=0, grad_view="strided", x_view="contiguous")
@example(shape=(3, 40), scale=60.0, grad_dtype=np.float32, seed=1, grad_view="transposed", x_view="reversed")
@example(shape=(5, 2, 33), scale=6.0, grad_dtype=np.float64, seed=2, grad_view="rows", x_view="strided")
def test_gelu_backward_equals_the_book(kernels, dtype, shape, scale, grad_dtype, seed, grad_view, x_view):
    """grad * gelu'(x), grad of x's dtype or of the other (then both are read in float64). Measured
    against the largest |grad|: gelu'(x) = Phi(x) + x phi(x) lies in [-0.17, 1.13], and in the far
    negative tail it is a difference of two terms that cancel (and 1 + erf(x / sqrt(2)) cancels too)."""
    rng = np.random.default_rng(seed)
    x = view((scale * rng.standard_normal(shape)).astype(dtype), x_view)
    grad = view(rng.standard_normal(shape).astype(grad_dtype), grad_view)
    ours = run_threads(kernels, lambda: kernels.gelu_backward(grad, x))
    assert_close_to_largest("gelu_backward", ours, functional.gelu_backward(grad, x), BACKWARD_TOL[dtype],
                            np.abs(grad.astype(np.float64)).max(initial=0.0))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_gelu_backward_on_a_dense_grid_and_specials(kernels, dtype):
    """Across the erf and exp ranges, the far tails, inf (nan: inf * 0, as the book) and nan."""
    x = np.concatenate([np.linspace(-40.0, 40.0, 300_001), SPECIALS]).astype(dtype)
    for grad in (np.random.default_rng(0).standard_normal(x.shape).astype(dtype), np.ones_like(x)):
        with np.errstate(invalid="ignore"):
            ref = functional.gelu_backward(grad, x)
        ours = run_threads(kernels, lambda: kernels.gelu_backward(grad, x))
        assert_close_to_largest("gelu_backward", ours, ref, BACKWARD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=24), loc=st.sampled_from([0.0, 3.0, -1e3]),
       scale=st.sampled_from([1e-3, 1.0, 50.0]), eps=st.sampled_from([1e-7, 1e-5, 0.5]),
       grad_dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1), grad_view=st.sampled_from(VIEWS),
       x_view=st.sampled_from(VIEWS))
@example(shape=(1,), loc=0.0, scale=1.0, eps=1e-7, grad_dtype=np.float64, seed=0, grad_view="contiguous",
         x_view="contiguous")  # C = 1: xhat = 0, dx = 0
@example(shape=(0, 4), loc=0.0, scale=1.0, eps=1e-7, grad_dtype=np.float64, seed=0, grad_view="contiguous",
         x_view="contiguous")  # no rows: zero parameter gradients
@example(shape=(2, 64, 7), loc=3.0, scale=1.0, eps=1e-5, grad_dtype=np.float64, seed=1, grad_view="rows",
         x_view="transposed")  # two whole blocks of rows
@example(shape=(129, 24), loc=-1e3, scale=50.0, eps=1e-7, grad_dtype=np.float32, seed=2, grad_view="strided",
         x_view="reversed")  # a block and a row beyond the second
def test_layer_norm_backward_equals_the_book(kernels, dtype, shape, loc, scale, eps, grad_dtype, seed, grad_view,
                                             x_view):
    rng = np.random.default_rng(seed)
    x = view((loc + scale * rng.standard_normal(shape)).astype(dtype), x_view)
    grad = view(rng.standard_normal(shape).astype(grad_dtype), grad_view)
    weight, bias = (1 + rng.standard_normal(shape[-1])).astype(dtype), rng.standard_normal(shape[-1]).astype(dtype)
    dx, grads = run_threads(kernels, lambda: kernels.layer_norm_backward(grad, x, weight, bias, eps))
    ref_dx, ref_grads = functional.layer_norm_backward(grad, x, weight, bias, eps)
    # Both evaluate in double; the order of the sums differs, which matters in proportion to the
    # conditioning |mean| / std of the rows (as for the forward). dx is a difference of terms up to
    # |g| / sigma, which may cancel to almost nothing (C = 2: dx ~ eps), so it is measured against them.
    tol = BACKWARD_TOL[dtype] * (1 + abs(loc) / scale)
    x64 = x.astype(np.float64)
    sigma = np.sqrt(x64.var(axis=-1, keepdims=True) + eps)
    assert_close_to_largest("layer_norm_backward dx", dx, ref_dx, tol, np.abs(grad * weight / sigma).max(initial=0.0))
    assert sorted(grads) == ["bias", "weight"]
    for name in ("weight", "bias"):
        assert_close_to_largest(f"layer_norm_backward d{name}", grads[name], ref_grads[name], tol)


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_compiled_layer_norm_backward_threads_give_identical_sums(dtype):
    """387 rows (six whole blocks and a part) of 768: the parameter sums do not depend on the
    threads; each row's dx does not depend on the other rows."""
    rng = np.random.default_rng(0)
    x, grad = (rng.standard_normal((3, 129, 768)).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(768).astype(dtype), rng.standard_normal(768).astype(dtype)
    layer_norm_backward = backend.KERNELS["cython"].layer_norm_backward
    dx, grads = run_threads(backend.KERNELS["cython"], lambda: layer_norm_backward(grad, x, w, b, 1e-7))
    np.testing.assert_array_equal(dx[1], layer_norm_backward(grad[1], x[1], w, b, 1e-7)[0])
    ref_dx, ref_grads = functional.layer_norm_backward(grad, x, w, b, 1e-7)
    for name in ("weight", "bias"):
        assert_close_to_largest(f"d{name}", grads[name], ref_grads[name], BACKWARD_TOL[dtype])


def probs_backward_index(kind, Q, K, buckets, rng):
    """The relative index of a test: the log buckets of ``buckets`` (4 to 8: distances beyond
    buckets / 2 share rows), plain clipping at ``|i - j| >= buckets``, or a random line."""
    if kind == "buckets":
        return relative_index(Q, K, buckets, buckets, 512)
    if kind == "clipped":
        return relative_index(Q, K, buckets)
    return index_of_line(rng.integers(0, 2 * buckets, Q + K - 1), Q, K)


def probs_backward_mask(kind, B, H, Q, K, rng):
    """``visible`` of a test: padded sequences (the model's ``[B, 1, Q, K]``; the last batch item
    all padding), random with the first query row hidden, a ``[Q, K]`` mask, all or nothing visible."""
    if kind == "padded":
        queries, keys = rng.integers(0, Q + 1, B), rng.integers(0, K + 1, B)
        if B > 1:
            queries[-1] = keys[-1] = 0
        return (np.arange(Q) < queries[:, None])[:, None, :, None] & (np.arange(K) < keys[:, None])[:, None, None, :]
    if kind == "random":
        visible = rng.random((B, H, Q, K)) < 0.7
        visible[..., 0, :] = False
        return visible
    if kind == "2-D":
        return rng.random((Q, K)) < 0.5
    return np.full((B, 1, 1, K), kind == "all")


def expected_probs_backward(dprobs, probs, visible, index, c2p, p2c):
    """The book's masked softmax backward, then the scatter-add backward of the two gathers, in
    float64 on the inputs' values, rounded to their dtype: the exact result within 1e-15 (in float32
    the book sums in float32, about 1e-5 of the largest entry off where the buckets' sums cancel)."""
    dtype = probs.dtype
    dscores = functional.masked_softmax_backward(dprobs.astype(np.float64), probs.astype(np.float64), visible)
    dc2p = attention.gather_backward(dscores, index.table(), index.rows) if c2p else None
    dp2c = attention.gather_backward(dscores.swapaxes(-1, -2), index.table().T, index.rows) if p2c else None
    return tuple(None if term is None else term.astype(dtype) for term in (dscores, dc2p, dp2c))


def assert_probs_backward_close(ours, ref, tol):
    """``(dscores, dc2p, dp2c)`` against the book's: dscores relative to its largest entry, the
    relative terms' gradients relative to the largest dscores entry they sum (a softmax backward's
    row sums to 0, so a bucket's sum may cancel to rounding noise)."""
    largest = np.abs(ref[0].astype(np.float64)).max(initial=0.0)
    for name, mine, book in zip(("dscores", "dc2p", "dp2c"), ours, ref, strict=True):
        if book is None:
            assert mine is None, f"{name}: the term is off, got an array"
        else:
            assert_close_to_largest(name, mine, book, tol, largest)


TERMS = [("c2p", "p2c"), ("c2p",), ("p2c",), ()]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=60)
@given(B=st.integers(1, 3), H=st.integers(1, 3), Q=st.integers(1, 40), K=st.integers(1, 40),
       index_kind=st.sampled_from(["buckets", "clipped", "line"]), buckets=st.integers(4, 8),
       terms=st.sampled_from(TERMS), mask=st.sampled_from(["padded", "random", "2-D", "all", "none"]),
       seed=st.integers(0, 2**32 - 1), dprobs_view=st.sampled_from(VIEWS), probs_view=st.sampled_from(VIEWS))
@example(B=2, H=3, Q=40, K=40, index_kind="buckets", buckets=4, terms=("c2p", "p2c"), mask="padded", seed=0,
         dprobs_view="contiguous", probs_view="contiguous")  # 79 distances on 7 rows
@example(B=3, H=2, Q=7, K=33, index_kind="buckets", buckets=6, terms=("c2p",), mask="padded", seed=1,
         dprobs_view="rows", probs_view="strided")  # Q < K, c2p only
@example(B=1, H=2, Q=33, K=5, index_kind="clipped", buckets=8, terms=("p2c",), mask="random", seed=2,
         dprobs_view="transposed", probs_view="reversed")  # Q > K, p2c only
@example(B=2, H=1, Q=9, K=9, index_kind="line", buckets=5, terms=(), mask="2-D", seed=3,
         dprobs_view="strided", probs_view="rows")  # no relative term: index None
@example(B=1, H=1, Q=1, K=1, index_kind="buckets", buckets=4, terms=("c2p", "p2c"), mask="none", seed=4,
         dprobs_view="contiguous", probs_view="contiguous")  # one entry, hidden
def test_attention_probs_backward_equals_the_book(kernels, dtype, B, H, Q, K, index_kind, buckets, terms, mask, seed,
                                                  dprobs_view, probs_view):
    rng = np.random.default_rng(seed)
    visible = probs_backward_mask(mask, B, H, Q, K, rng)
    probs = view(functional.masked_softmax(3 * rng.standard_normal((B, H, Q, K)), visible).astype(dtype), probs_view)
    dprobs = view(rng.standard_normal((B, H, Q, K)).astype(dtype), dprobs_view)
    index = probs_backward_index(index_kind, Q, K, buckets, rng) if terms else None
    c2p, p2c = "c2p" in terms, "p2c" in terms
    ours = run_threads(kernels, lambda: kernels.disentangled_attention_probs_backward(dprobs, probs, visible, index,
                                                                                      c2p=c2p, p2c=p2c))
    assert_probs_backward_close(ours, expected_probs_backward(dprobs, probs, visible, index, c2p, p2c),
                                BACKWARD_TOL[dtype])
    assert not ours[0][~np.broadcast_to(visible, ours[0].shape)].any()  # hidden scores: exactly 0


@needs_compiled
@pytest.mark.parametrize("N, buckets", [(40, 4), (300, 256)])
def test_compiled_attention_probs_backward_is_the_same_on_one_and_two_threads(N, buckets):
    """B * H = 5 score matrices (an odd count for two threads), padded, on the log buckets: few
    buckets at N = 40, the released layout at N = 300 (the identity band and the buckets beyond)."""
    rng = np.random.default_rng(N)
    index = relative_index(N, N, buckets, buckets, 512)
    mask = np.arange(N) < np.array([N, N // 3, N - 1, 0, N])[:, None]
    visible = mask[:, None, :, None] & mask[:, None, None, :]
    probs = functional.masked_softmax(rng.standard_normal((5, 1, N, N)), visible).astype(np.float32)
    dprobs = rng.standard_normal((5, 1, N, N)).astype(np.float32)
    compiled = backend.KERNELS["cython"]
    ours = run_threads(compiled, lambda: compiled.disentangled_attention_probs_backward(dprobs, probs, visible, index,
                                                                                        c2p=True, p2c=True))
    assert_probs_backward_close(ours, expected_probs_backward(dprobs, probs, visible, index, True, True),
                                BACKWARD_TOL[np.float32])


@needs_compiled
def test_compiled_backward_kernels_name_the_bad_argument():
    kernels = backend.KERNELS["cython"]
    x = np.ones((2, 4))
    cases = [
        (lambda: kernels.gelu_backward(x.astype(np.float16), x), TypeError,
         "grad must be a float32 or float64 array, got dtype float16"),
        (lambda: kernels.gelu_backward(x, x.astype(int)), TypeError, "x must be a float32 or float64 array, got dtype int"),
        (lambda: kernels.gelu_backward(x, x[0]), ValueError, r"grad and x must have one shape, got grad \(2, 4\) and x \(4,\)"),
        (lambda: kernels.layer_norm_backward(x.astype(np.float16), x, np.ones(4), np.zeros(4), 1e-7), TypeError,
         "grad must be a float32 or float64 array"),
        (lambda: kernels.layer_norm_backward(x, x.T, np.ones(4), np.zeros(4), 1e-7), ValueError,
         r"grad and x must have one shape, got grad \(2, 4\) and x \(4, 2\)"),
        (lambda: kernels.layer_norm_backward(x, x, np.ones(3), np.zeros(4), 1e-7), ValueError,
         r"weight must have shape \(4,\) to match x \(2, 4\), got \(3,\)"),
        (lambda: kernels.layer_norm_backward(x[0, 0], x[0, 0], np.ones(1), np.zeros(1), 1e-7), ValueError,
         "x must have at least one axis"),
    ]
    probs, visible = np.full((1, 2, 3, 4), 0.25), np.ones((1, 1, 3, 4), bool)
    index = relative_index(3, 4, 2)  # rows 0..3
    bad_line = RelativeIndex(3, 4, 0, 3, np.full(6, 7), (1, 0, 0))  # claims 4 rows, reads row 7
    attention_cases = [
        (dict(probs=probs.astype(int)), TypeError, "probs must be a float32 or float64 array, got dtype int"),
        (dict(probs=probs[0]), ValueError, r"probs must have 4 axes, got shape \(2, 3, 4\)"),
        (dict(dprobs=probs.astype(np.float32)), TypeError, "dprobs must have probs's dtype float64, got float32"),
        (dict(dprobs=probs[:, :1]), ValueError,
         r"dprobs and probs must have one shape, got dprobs \(1, 1, 3, 4\) and probs \(1, 2, 3, 4\)"),
        (dict(visible=visible.astype(int)), TypeError, "visible must be a bool array, got dtype int"),
        (dict(visible=np.ones((2, 1, 3, 4), bool)), ValueError, "does not broadcast to the scores"),
        (dict(index=None), ValueError, "index is required"),
        (dict(index=index.table()), TypeError, "index must be a RelativeIndex"),
        (dict(index=relative_index(4, 3, 2)), ValueError, r"index is for \[Q, K\] = \(4, 3\)"),
        (dict(index=bad_line), ValueError, r"index values must lie in \[0, 4\)"),
    ]
    for kwargs, error, message in attention_cases:
        args = dict(dprobs=probs, probs=probs, visible=visible, index=index, c2p=False, p2c=True) | kwargs
        cases.append((lambda args=args: kernels.disentangled_attention_probs_backward(**args), error, message))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


@needs_compiled
def test_the_cython_kernel_set_runs_the_compiled_backward_kernels():
    from pydeberta.engine import _cy_attention, _cy_functional
    from pydeberta.engine import kernels as numpy_kernels

    compiled = backend.KERNELS["cython"]
    assert compiled.gelu_backward is _cy_functional.gelu_backward
    assert compiled.layer_norm_backward is _cy_functional.layer_norm_backward
    assert compiled.disentangled_attention_probs_backward is _cy_attention.disentangled_attention_probs_backward
    assert compiled.linear_backward is numpy_kernels.linear_backward  # already one BLAS product per term
