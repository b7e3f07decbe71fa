"""Ring 1 of the oracles: every Cython twin against its NumPy reference, and the dispatcher.

Integers must be equal; floats within a tight tolerance of the reference, measured as
|twin - ref| / (1 + |ref|): float32 1e-6, float64 1e-13 (LayerNorm: times the rows' conditioning
1 + |mean| / std, since the twin sums in another order). Inputs cover both dtypes, odd shapes, length 1
and lengths beyond the bucket span, fully masked rows, non-contiguous views (copied by the twin,
never misread), and 1 against 2 OpenMP threads (bit-identical). A failure names the quantity and
prints the largest difference and where it is.
"""

import inspect
import os
import subprocess
import threading
import tempfile
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from oracle import BUCKET_PAIRS
import pydeberta
from pydeberta import _backend, attention, functional, positions

COMPILED = "cython" in _backend.available_backends()
needs_extension = pytest.mark.skipif(not COMPILED, reason=f"compiled twins not built: {_backend.backend_info()['reason']}")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-6, np.float64: 1e-13}


def reference(function):
    """The NumPy reference behind a ``@dispatch`` function (under any lru_cache)."""
    return inspect.unwrap(function)


def twin(function):
    return _backend.twin_of(function)


def assert_close(what, ours, ref, tol):
    """|ours - ref| <= tol * (1 + |ref|) where ref is finite; identical values (nan included) elsewhere."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (
        f"{what}: {ours.dtype}{ours.shape} != reference {ref.dtype}{ref.shape}")
    ours64, ref64 = np.atleast_1d(ours).astype(np.float64), np.atleast_1d(ref).astype(np.float64)
    finite = np.isfinite(ref64)
    assert np.array_equal(ours64[~finite], ref64[~finite], equal_nan=True), (
        f"{what}: non-finite values differ: {ours64[~finite]} vs {ref64[~finite]}")
    err = np.where(finite, np.abs(ours64 - np.where(finite, ref64, 0.0)), 0.0) / (1.0 + np.abs(np.where(finite, ref64, 0)))
    err[np.isnan(err)] = np.inf
    if err.size and not err.max() <= tol:
        where = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(f"{what}: |twin - ref| / (1 + |ref|) = {err[where]:.3e} > {tol:.0e} at {where}: "
                             f"twin={ours64[where]!r}, ref={ref64[where]!r}")


def threads(n):
    return _backend.use_backend("cython", num_threads=n)


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


# ------------------------------------------------------------------------------------- positions
R = np.arange(-100_000, 100_001)
PAIRS = BUCKET_PAIRS + [(128, 512), (256, 1024), (2, 3), (6, 100), (512, 4096)]


@needs_extension
@pytest.mark.parametrize("bucket_size,max_position", PAIRS)
def test_log_buckets_equal_reference_over_a_wide_range(bucket_size, max_position):
    np.testing.assert_array_equal(twin(positions.make_log_bucket_position)(R, bucket_size, max_position),
                                  reference(positions.make_log_bucket_position)(R, bucket_size, max_position))


@needs_extension
@settings(max_examples=60)
@given(data=st.data(), bucket_size=st.integers(2, 600))
def test_log_buckets_equal_reference_for_any_shape_and_sizes(data, bucket_size):
    max_position = data.draw(st.integers(bucket_size // 2 + 2, 8192), label="max_position")
    rel = data.draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9),
                               elements=st.integers(-20_000, 20_000)), label="rel")
    rel = views(data.draw, rel) if rel.ndim else rel
    ours = twin(positions.make_log_bucket_position)(rel, bucket_size, max_position)
    ref = reference(positions.make_log_bucket_position)(rel, bucket_size, max_position)
    assert ours.dtype == np.int64 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


@needs_extension
def test_log_buckets_accept_lists_and_other_integer_types():
    bucket = twin(positions.make_log_bucket_position)
    assert bucket([[-300, 5], [129, 600]], 256, 512).tolist() == [[-207, 5], [129, 270]]
    np.testing.assert_array_equal(bucket(np.arange(-600, 600, dtype=np.int16), 256, 512),
                                  reference(positions.make_log_bucket_position)(np.arange(-600, 600), 256, 512))


@needs_extension
@settings(max_examples=60)
@given(q=st.integers(0, 700), k=st.integers(0, 700), pair=st.sampled_from(PAIRS + [(-1, -1), (8, -1)]),
       span=st.integers(1, 300))
@example(q=1, k=1, pair=(256, 512), span=256)
@example(q=700, k=700, pair=(256, 512), span=256)  # beyond the bucket span: indices clamp at both ends
@example(q=600, k=3, pair=(-1, -1), span=16)
def test_relative_position_tables_equal_reference(q, k, pair, span):
    bucket_size, max_position = pair
    for function, args in ((positions.build_relative_position, (q, k, bucket_size, max_position)),
                           (positions.relative_index, (q, k, span, bucket_size, max_position))):
        ours, ref = twin(function)(*args), reference(function)(*args)
        assert ours.dtype == np.int64 and ours.shape == (q, k) and not ours.flags.writeable, function.__name__
        np.testing.assert_array_equal(ours, ref, err_msg=function.__name__)


@needs_extension
@pytest.mark.parametrize("call,message", [
    (lambda: twin(positions.make_log_bucket_position)(np.arange(3), 1, 512), "bucket_size must be >= 2, got 1"),
    (lambda: twin(positions.make_log_bucket_position)(np.arange(3), 256, 129), "max_position must be > "),
    (lambda: twin(positions.build_relative_position)(-1, 4), "query_size must be >= 0, got -1"),
    (lambda: twin(positions.relative_index)(3, 4, 0), "att_span must be >= 1, got 0"),
])
def test_position_twins_reject_bad_sizes_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------- GELU, LayerNorm
SPECIALS = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 3.0e38, -3.0e38, 6.0, -6.0, 20.0, -20.0])


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_gelu_equals_reference(dtype, data):
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
                             elements=st.floats(-60, 60, width=32)), label="x")
    if x.ndim:
        x = views(data.draw, x)
    ours = twin(functional.gelu)(x)
    assert_close("gelu", ours, reference(functional.gelu)(x), TOL[dtype])


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_gelu_on_a_dense_grid_and_specials(dtype):
    x = np.concatenate([np.linspace(-12.0, 12.0, 300_001), SPECIALS]).astype(dtype)
    ours = twin(functional.gelu)(x)
    ref = reference(functional.gelu)(x)
    assert_close("gelu", ours, ref, TOL[dtype])
    if dtype is np.float32:  # both are float64 evaluations rounded once: at most one float32 ulp apart,
        # plus the float64 cancellation in 1 + erf(x) that both share in the far negative tail
        finite = np.isfinite(ref)
        gap = np.abs(ours[finite].astype(np.float64) - ref[finite])
        assert (gap <= np.spacing(np.abs(ref[finite])) + 1e-15).all()
    with threads(1):
        one = twin(functional.gelu)(x)
    with threads(2):
        two = twin(functional.gelu)(x)
    np.testing.assert_array_equal(one, two)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_layer_norm_equals_reference(dtype, data):
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
    ours = twin(functional.layer_norm)(x, weight, bias, eps, residual=residual)
    ref = reference(functional.layer_norm)(x, weight, bias, eps, residual=residual)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    # Both evaluate in double; only the order of the sums differs, which matters in proportion
    # to the conditioning |mean| / std of the rows.
    assert_close("layer_norm", ours, ref, TOL[dtype] * (1 + abs(loc) / scale))


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_layer_norm_threads_give_identical_rows(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 129, 768)).astype(dtype)
    w, b = rng.standard_normal(768).astype(dtype), rng.standard_normal(768).astype(dtype)
    with threads(1):
        one = twin(functional.layer_norm)(x, w, b, 1e-7)
    with threads(2):
        two = twin(functional.layer_norm)(x, w, b, 1e-7)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(two[1], twin(functional.layer_norm)(x[1], w, b, 1e-7))


@needs_extension
def test_float_twins_name_the_bad_argument():
    with pytest.raises(TypeError, match="x must be a float32 or float64 array, got dtype float16"):
        twin(functional.gelu)(np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"weight and bias must have shape \(4,\).*got \(3,\)"):
        twin(functional.layer_norm)(np.ones((2, 4)), np.ones(3), np.zeros(4), 1e-7)


# ------------------------------------------------------------------------------------- attention probs
@st.composite
def score_terms(draw, dtype):
    """Random inputs of ``disentangled_attention_probs``: terms on or off, any lengths, masks with
    fully hidden rows, and any of them behind a non-contiguous view."""
    B, H, Q, K = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 13)), draw(st.integers(1, 13)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([1.0, 30.0]))
    c2c = (spread * rng.standard_normal((B, H, Q, K))).astype(dtype)
    terms = draw(st.sampled_from([("c2p", "p2c"), ("c2p",), ("p2c",), ()]))
    R = draw(st.integers(1, 20))
    c2p = (spread * rng.standard_normal((B, H, Q, R))).astype(dtype) if "c2p" in terms else None
    p2c = (spread * rng.standard_normal((B, H, K, R))).astype(dtype) if "p2c" in terms else None
    rel_index = rng.integers(0, R, (Q, K)) if terms else None
    shape = draw(st.sampled_from([(B, 1, Q, K), (B, H, Q, K), (1, 1, Q, K), (Q, K), (B, 1, 1, K)]))
    visible = rng.random(shape) < draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    if len(shape) == 4 and shape[2] == Q and Q > 1:
        visible[..., 0, :] = False  # a fully masked (padded) query row
    c2c, c2p, p2c = (None if a is None else views(draw, a) for a in (c2c, c2p, p2c))
    return c2c, visible, c2p, p2c, rel_index


def probs_both(c2c, visible, c2p, p2c, rel_index):
    return (twin(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, rel_index),
            reference(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, rel_index))


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=80)
@given(data=st.data())
def test_attention_probs_equal_reference(dtype, data):
    inputs = data.draw(score_terms(dtype))
    ours, ref = probs_both(*inputs)
    assert_close("probs", ours, ref, TOL[dtype])
    np.testing.assert_array_equal(ours == 0, ref == 0)  # hidden keys of a row with a visible key: exactly 0
    padded = np.broadcast_to(~inputs[1].any(-1, keepdims=True), ours.shape)
    np.testing.assert_array_equal(ours[padded], ours.dtype.type(1) / ours.shape[-1])  # uniform rows


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("N", [1, 7, 300])
def test_attention_probs_at_model_shapes_with_one_and_two_threads(dtype, N):
    """The model's inputs: the relative index of the released config (N = 300 reaches beyond the
    identity band of the buckets), only the reachable rows, a padded batch row."""
    rng = np.random.default_rng(N)
    B, H = 2, 3
    index = positions.relative_index(N, N, 256, 256, 512)
    lo, hi = index.min(), index.max()
    R = hi - lo + 1
    c2c = rng.standard_normal((B, H, N, N)).astype(dtype)
    c2p, p2c = (rng.standard_normal((B, H, N, R)).astype(dtype) for _ in range(2))
    mask = np.ones((B, N), bool)
    mask[1, N // 2 + 1:] = False
    visible = mask[:, None, :, None] & mask[:, None, None, :]
    ref = reference(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, index - lo)
    with threads(1):
        one = twin(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, index - lo)
    with threads(2):
        two = twin(attention.disentangled_attention_probs)(c2c.copy(), visible, c2p, p2c, index - lo, out=None)
    np.testing.assert_array_equal(one, two)
    toeplitz = positions.reachable_rows(N, N, 256, 256, 512)[2]  # the model's view: the linear-band path
    for n in (1, 2):
        with threads(n):
            np.testing.assert_array_equal(twin(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, toeplitz),
                                          one)
    assert_close("probs", one, ref, TOL[dtype])
    in_place = c2c.copy()
    assert twin(attention.disentangled_attention_probs)(in_place, visible, c2p, p2c, index - lo, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, one)
    heads = np.zeros((B, H + 2, N, N), dtype)  # out: a slice of heads of a larger array, strided
    twin(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, index - lo, out=heads[:, 1:H + 1])
    np.testing.assert_array_equal(heads[:, 1:H + 1], one)
    assert not heads[:, [0, H + 1]].any()


@needs_extension
@pytest.mark.parametrize("N", [1, 9, 200])
def test_attention_probs_read_any_index_layout_in_place_or_copied(N):
    """The model's Toeplitz view (strides (s, -s)), reversed and transposed views, int32: all give
    the result of the C-contiguous int64 index, and the Toeplitz bounds check sees every value."""
    rng = np.random.default_rng(N)
    lo, hi, toeplitz = positions.reachable_rows(N, N, 64, 32, 128)
    assert toeplitz.strides == (8, -8)
    R = hi - lo + 1
    c2c = rng.standard_normal((2, 3, N, N)).astype(np.float32)
    c2p, p2c = (rng.standard_normal((2, 3, N, R)).astype(np.float32) for _ in range(2))
    visible = np.ones((2, 1, N, N), bool)
    probs = twin(attention.disentangled_attention_probs)
    expected = probs(c2c, visible, c2p, p2c, np.ascontiguousarray(toeplitz))
    random_index = rng.integers(0, R, (N, N))
    for index, contiguous in [(toeplitz, np.ascontiguousarray(toeplitz)),
                              (random_index[:, ::-1], np.ascontiguousarray(random_index[:, ::-1])),
                              (random_index.T, np.ascontiguousarray(random_index.T)),
                              (random_index.astype(np.int32), random_index)]:
        np.testing.assert_array_equal(probs(c2c, visible, c2p, p2c, index), probs(c2c, visible, c2p, p2c, contiguous))
    np.testing.assert_array_equal(probs(c2c, visible, c2p, p2c, toeplitz), expected)
    if R > 1:  # the largest value sits in the first column only
        with pytest.raises(ValueError, match=r"rel_index values must lie in \[0, "):
            probs(c2c, visible, c2p[..., :R - 1], p2c[..., :R - 1], toeplitz)


@needs_extension
@settings(max_examples=60)
@given(data=st.data())
@example(data=None)
def test_attention_probs_toeplitz_index_with_a_linear_band_equal_reference(data):
    """Toeplitz indices whose line has runs of consecutive values (the identity zone of the
    buckets, read without the index) anywhere, of any length, Q != K, blocks cut by the band."""
    if data is None:  # the released layout: N = 300 reaches the log buckets on both sides of the band
        lo, hi, index = positions.reachable_rows(300, 300, 256, 256, 512)
        Q = K = 300
        R = hi - lo + 1
        band_lo, band_hi, band_c = _backend._COMPILED["attention"]._linear_band(index)
        assert band_lo <= -127 and band_hi >= 127  # at least the identity zone |i - j| < bucket_size / 2
        distance = np.arange(300)[:, None] - np.arange(300)[None, :]
        in_band = (distance >= band_lo) & (distance <= band_hi)
        np.testing.assert_array_equal(index[in_band], band_c + distance[in_band])
        rng = np.random.default_rng(0)
    else:
        Q, K = data.draw(st.integers(1, 40), label="Q"), data.draw(st.integers(1, 40), label="K")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        R = data.draw(st.integers(1, 90), label="R")
        start, length = data.draw(st.integers(0, Q + K - 2), label="start"), data.draw(st.integers(0, 90), label="length")
        length = min(length, Q + K - 1 - start, R)  # a run c0, c0 + 1, ... of values below R
        line = rng.integers(0, R, Q + K - 1)  # line[i - j + K - 1]
        line[start:start + length] = rng.integers(0, R - length + 1) + np.arange(length)
        index = np.lib.stride_tricks.as_strided(line[K - 1:], shape=(Q, K), strides=(8, -8))
    c2c = rng.standard_normal((2, 2, Q, K)).astype(np.float64)
    c2p, p2c = rng.standard_normal((2, 2, Q, R)), rng.standard_normal((2, 2, K, R))
    visible = np.ones((2, 1, Q, K), bool)
    ours = twin(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, index)
    ref = reference(attention.disentangled_attention_probs)(c2c, visible, c2p, p2c, np.ascontiguousarray(index))
    assert_close("probs", ours, ref, TOL[np.float64])


@needs_extension
def test_attention_probs_reject_bad_inputs_before_work():
    probs = twin(attention.disentangled_attention_probs)
    c2c, term, index = np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 5)), np.zeros((3, 4), int)
    visible = np.ones((1, 1, 3, 4), bool)
    cases = [
        (dict(visible=visible.astype(int)), TypeError, "visible must be a bool array, got dtype int"),
        (dict(visible=np.ones((2, 1, 3, 4), bool)), ValueError, "does not broadcast to the scores"),
        (dict(c2p=term.astype(np.float32)), TypeError, "c2p must have c2c's dtype float64, got float32"),
        (dict(c2p=np.zeros((1, 2, 4, 5))), ValueError, r"c2p must have shape \[1, 2, 3, R >= 1\], got \(1, 2, 4, 5\)"),
        (dict(c2p=term, rel_index=None), ValueError, "rel_index is required"),
        (dict(c2p=term, rel_index=index + 5), ValueError, r"rel_index values must lie in \[0, 5\)"),
        (dict(c2p=term, rel_index=index[:, :3]), ValueError, r"rel_index must have shape \[Q, K\] = \(3, 4\)"),
        (dict(c2p=term, rel_index=index * 1.0), TypeError, "rel_index must be an integer array"),
        (dict(out=np.zeros((1, 2, 4, 3)).swapaxes(-1, -2)), ValueError, "out must be writeable, with a contiguous last axis"),
        (dict(out=np.zeros((1, 2, 3, 4), np.float32)), ValueError, "out must be a float64 array"),
    ]
    for kwargs, error, message in cases:
        args = dict(c2c=c2c, visible=visible, rel_index=index) | kwargs
        with pytest.raises(error, match=message):
            probs(**args)
    with pytest.raises(TypeError, match="c2c must be a float32 or float64 array, got dtype int64"):
        probs(np.zeros((1, 1, 2, 2), int), np.ones((2, 2), bool))
    buffer = np.zeros(60)
    c2p, out = buffer[:30].reshape(1, 2, 3, 5), buffer[20:44].reshape(1, 2, 3, 4)  # overlapping, contiguous
    with pytest.raises(ValueError, match="out must not overlap c2p"):
        probs(c2c, visible, c2p, None, index, out=out)


# ------------------------------------------------------------------------------------- dispatch
def test_use_backend_switches_and_restores():
    outer = _backend.active_backend()
    with _backend.use_backend("numpy"):
        assert _backend.active_backend() == "numpy"
        with _backend.use_backend("auto"):
            assert _backend.active_backend() == _backend.available_backends()[0]
        assert _backend.active_backend() == "numpy"
    assert _backend.active_backend() == outer
    with pytest.raises(ValueError, match="backend must be one of auto, numpy, cython, got 'fast'"):
        with _backend.use_backend("fast"):
            pass


def test_forcing_cython_without_the_extension_is_an_error(monkeypatch):
    monkeypatch.setattr(_backend, "_COMPILED", None)
    monkeypatch.setattr(_backend, "_UNAVAILABLE", "not built")
    with pytest.raises(RuntimeError, match="backend='cython' but the compiled extension is not available"):
        with _backend.use_backend("cython"):
            pass
    with _backend.use_backend("auto"):
        assert _backend.active_backend() == "numpy"


@needs_extension
def test_dispatch_calls_the_twin_only_under_cython_and_only_for_float_arrays():
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    with _backend.use_backend("cython"):
        np.testing.assert_array_equal(functional.gelu(x), twin(functional.gelu)(x))
        assert functional.gelu(np.float16(1.0)).dtype == np.float16  # float16 runs the reference
        assert functional.gelu(2) == pytest.approx(1.9544997361036416)
        np.testing.assert_array_equal(functional.layer_norm(x=x, weight=np.ones(11), bias=np.zeros(11), eps=1e-7),
                                      twin(functional.layer_norm)(x, np.ones(11), np.zeros(11), 1e-7))
    with _backend.use_backend("numpy"):
        np.testing.assert_array_equal(functional.gelu(x), reference(functional.gelu)(x))


# ------------------------------------------------------------------------------------- block cache
def handler_name(array):
    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 / 1
    return core.multiarray.get_handler_name(array)


@needs_extension
def test_block_cache_reuses_freed_blocks_in_its_context_only():
    allocator = _backend._COMPILED["allocator"]
    allocator.clear()
    big = allocator.MIN_BYTES // 8 + 1  # float64 elements just above the caching threshold
    with allocator.use_block_cache():
        a = np.arange(big, dtype=np.float64)
        assert handler_name(a) == "pydeberta_block_cache"
        address = a.ctypes.data
        assert address % 64 == 0
        del a
        assert allocator.cached_bytes() == big * 8
        b = np.ones(big)  # the same size: the same block, with its new values
        assert b.ctypes.data == address and allocator.cached_bytes() == 0
        np.testing.assert_array_equal(b, 1.0)
        small = np.zeros(10)  # below the threshold: malloc, never cached
        z = np.zeros((big,))  # calloc path: zeroed even when the block is reused
        np.testing.assert_array_equal(z, 0.0)
        r = np.arange(big, dtype=np.float64)
        r.resize(2 * big, refcheck=False)  # realloc: the data moves with it
        np.testing.assert_array_equal(r[:big], np.arange(big))
        assert handler_name(np.ones(3)) == "pydeberta_block_cache"
    assert handler_name(np.ones(3)) != "pydeberta_block_cache"
    seen = []
    with allocator.use_block_cache():
        thread = threading.Thread(target=lambda: seen.append(handler_name(np.ones(3))))
        thread.start()
        thread.join()
    assert seen and seen[0] != "pydeberta_block_cache"  # another thread keeps its own handler
    del b, small, z, r  # arrays outlive the context and still return their blocks to the cache
    assert allocator.cached_bytes() > 0
    assert allocator.clear() > 0 and allocator.cached_bytes() == 0


@needs_extension
def test_model_forward_allocates_from_the_block_cache_with_the_cython_backend_only():
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(
        vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        relative_attention=True, position_buckets=16, max_relative_positions=64, pos_att_type="p2c|c2p"), seed=0)
    ids = np.arange(2 * 200).reshape(2, 200) % 50
    with _backend.use_backend("cython"):
        out = model(ids).last_hidden_state
        assert handler_name(out) == "pydeberta_block_cache" and _backend.backend_info()["block_cache"]
        again = model(ids).last_hidden_state  # reused blocks give the same numbers
    with _backend.use_backend("numpy"):
        ref = model(ids).last_hidden_state
        assert handler_name(ref) != "pydeberta_block_cache" and not _backend.backend_info()["block_cache"]
    np.testing.assert_array_equal(out, again)
    assert_close("last_hidden_state", out, ref, 1e-5)


def test_backend_info_says_what_runs():
    info = _backend.backend_info()
    assert info["backend"] in ("numpy", "cython") and info["compiled"] == COMPILED
    assert isinstance(info["threads"], int) and info["threads"] >= 1
    if COMPILED:
        assert set(info["twins"]) == {"positions.make_log_bucket_position", "positions.build_relative_position",
                                      "positions.relative_index", "functional.gelu", "functional.layer_norm",
                                      "attention.disentangled_attention_probs"}
    else:
        assert info["reason"] and not info["openmp"]


HIDE_EXTENSION = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("pydeberta._cy_"):
            raise ImportError("hidden by the test")
sys.meta_path.insert(0, Hide())
"""


def run_python(code, backend):
    env = {k: v for k, v in os.environ.items() if k != "PYDEBERTA_BACKEND"}
    if backend is not None:
        env["PYDEBERTA_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())  # cwd: import the installed package, not the source tree


@pytest.mark.parametrize("backend,expected", [(None, "numpy"), ("auto", "numpy"), ("numpy", "numpy")])
def test_without_the_extension_auto_falls_back_silently(backend, expected):
    done = run_python(HIDE_EXTENSION + "import pydeberta._backend as b; print(b.backend_info()['backend'])", backend)
    assert done.returncode == 0 and done.stdout.strip() == expected and not done.stderr, done.stderr


def test_environment_variable_errors():
    done = run_python(HIDE_EXTENSION + "import pydeberta", "cython")
    assert done.returncode != 0 and "PYDEBERTA_BACKEND='cython' but the compiled extension is not available" in done.stderr
    done = run_python("import pydeberta", "fastest")
    assert done.returncode != 0 and "PYDEBERTA_BACKEND must be one of auto, numpy, cython, got 'fastest'" in done.stderr


@needs_extension
def test_environment_variable_selects_the_backend():
    for backend in ("numpy", "cython"):
        done = run_python("import pydeberta._backend as b; print(b.active_backend())", backend)
        assert done.stdout.strip() == backend, done.stderr
