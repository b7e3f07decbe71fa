"""int8 inference: the book's quantized linear layer, the compiled kernel, and quantized models.

Oracles: NumPy's int64 matrix product for the integer sums; torch, doing the quantized layer's
float32 steps itself, for the book (bit for bit); the book for the AVX2 kernel (bit for bit, on
1 and 2 threads, over hypothesis shapes with odd widths, ties, zeros and subnormals); and for a
whole model, transformers with its linear layers replaced by that torch layer (within float
rounding, which can move a value across a rounding boundary of the quantization). Saving and
loading round trips, and the refusals (float64, training, unknown quantization methods).
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pydeberta
from oracle import batches, build_transformers_model, configs, inputs_of, to_pydeberta
from pydeberta import quantization
from pydeberta.engine import backend
from pydeberta.training import value_and_grad
from pydeberta.weights import INT8_LAYERS

AVX2_KERNEL = "cython" in backend.available_backends() and backend.KERNELS["cython"].quantized_linear.__module__.endswith(
    "_cy_int8") and backend._have_avx2()
# CI builds the extension on an AVX2 machine (PYDEBERTA_REQUIRE_EXTENSION=1, and
# tests/test_engine_backend.py asserts the compiled backend there); elsewhere the kernel may not exist
needs_compiled = pytest.mark.skipif(not AVX2_KERNEL, reason="the AVX2 kernel needs the compiled extension and an AVX2 CPU")
TINY = os.path.join(os.path.dirname(pydeberta.__file__), "models", "tiny")


def torch_quantized_linear(x, weight, weight_scale, bias=None):
    """The quantized layer's steps in torch (float32 division, round half to even, clamp; exact
    integer sums in float64; float32 scaling), an implementation independent of the book's."""
    x = torch.as_tensor(x)
    scale = x.abs().amax(dim=-1) / 127 if x.shape[-1] else torch.zeros(x.shape[:-1])
    q = torch.clamp(torch.round(x / torch.where(scale > 0, scale, 1.0)[..., None]), -127, 127)
    acc = (q.double() @ torch.as_tensor(weight).double().T).float()
    y = acc * (scale[..., None] * torch.as_tensor(weight_scale))
    return y if bias is None else y + torch.as_tensor(bias)


class TorchQuantizedLinear(torch.nn.Module):
    """An ``nn.Linear`` of transformers' model replaced by :func:`torch_quantized_linear`."""

    def __init__(self, linear):
        super().__init__()
        q, s = quantization.quantize_weight(linear.weight.detach().numpy())
        self.q, self.s, self.b = torch.from_numpy(q), torch.from_numpy(s), linear.bias.detach()

    def forward(self, x):
        return torch_quantized_linear(x, self.q, self.s, self.b)


def quantize_transformers(model):
    """transformers' model with the layers pydeberta quantizes (INT8_LAYERS) replaced in place."""
    for layer in model.base_model.encoder.layer:
        for name in INT8_LAYERS:
            *path, last = name.split(".")
            parent = layer
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, TorchQuantizedLinear(getattr(parent, last)))
    return model


def weights_and_input(M, K, N, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(np.float32)
    weight, scale = quantization.quantize_weight(rng.standard_normal((N, K)).astype(np.float32))
    return x, weight, scale, rng.standard_normal(N).astype(np.float32)


# ------------------------------------------------------------------------------------------ the book
def test_quantize_rounds_half_to_even_and_keeps_zero_rows():
    # max |x| = 254 gives scale 2: x / 2 = 127, 0.5, 1.5, 2.5, -2.5 -> 127, 0, 2, 2, -2
    q, scale = quantization.quantize_symmetric(np.array([[254, 1, 3, 5, -5], [0, 0, 0, 0, 0]], np.float32))
    np.testing.assert_array_equal(q, [[127, 0, 2, 2, -2], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(scale, np.array([2, 0], np.float32))


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                  elements=st.floats(-2.0**100, 2.0**100, width=32)))
def test_quantize_stays_in_range_and_within_half_a_step(x):
    q, scale = quantization.quantize_symmetric(x)
    assert q.dtype == np.int8 and q.shape == x.shape and scale.shape == x.shape[:-1]
    assert np.abs(q.astype(int)).max(initial=0) <= 127
    error = np.abs(quantization.dequantize(q, scale).astype(np.float64) - x)
    # normal scales: within half a step; a row whose largest value is below 127 * 2**-149 has
    # scale 0 (it underflows) and quantizes to zeros, and subnormal scales round coarsely
    normal = (scale >= np.finfo(np.float32).tiny)[..., None]
    assert np.all(np.where(normal, error <= 0.5 * scale[..., None] * (1 + 1e-5), error <= np.abs(x).max(initial=0)))


def test_a_row_with_nan_or_infinity_gives_nan_never_a_number():
    x = np.array([[1, np.nan, 2], [np.inf, 1, 1], [-np.inf, 0, 0], [1, 2, -4]], np.float32)
    q, scale = quantization.quantize_symmetric(x)
    np.testing.assert_array_equal(q[:3], 0)
    assert np.isnan(scale[:3]).all() and scale[3] == np.float32(4) / 127
    w, w_scale = quantization.quantize_weight(np.ones((2, 3), np.float32))
    y = quantization.quantized_linear(x, w, w_scale, np.ones(2, np.float32))
    assert np.isnan(y[:3]).all() and np.isfinite(y[3]).all()


def test_quantizing_a_weight_with_nan_names_the_layer():
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY)
    key = "deberta.encoder.layer.2.intermediate.dense.weight"
    weight = np.array(model.params[key])
    weight[0, 0] = np.nan
    model.load_state_dict({key: weight}, strict=False)
    with pytest.raises(ValueError, match=rf"{key}: quantize_weight: the weight has 1 NaN or infinite values"):
        model.quantize("int8")


@given(st.integers(1, 6), st.integers(0, 3000), st.integers(1, 6), st.integers(0, 2**32 - 1))
@example(M=2, K=3000, N=2, seed=0)
def test_integer_matmul_equals_int64_product(M, K, N, seed):
    rng = np.random.default_rng(seed)
    xq = rng.integers(-127, 128, (M, K)).astype(np.int8)
    wq = rng.integers(-127, 128, (N, K)).astype(np.int8)
    if K:
        xq[0], wq[0] = 127, -127  # the largest sum in magnitude: K * 127**2
    acc = quantization.integer_matmul(xq, wq)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, xq.astype(np.int64) @ wq.astype(np.int64).T)


def test_integer_matmul_refuses_widths_that_could_overflow():
    with pytest.raises(ValueError, match="in=133145"):
        quantization.integer_matmul(np.zeros((1, 133145), np.int8), np.zeros((1, 133145), np.int8))


@given(st.integers(1, 5), st.integers(0, 40), st.integers(1, 7), st.booleans(), st.integers(0, 2**32 - 1))
def test_book_equals_torch_bit_for_bit(M, K, N, with_bias, seed):
    x, weight, scale, bias = weights_and_input(M, K, N, seed)
    bias = bias if with_bias else None
    ours = quantization.quantized_linear(x.reshape(1, M, K), weight, scale, bias)
    theirs = torch_quantized_linear(torch.from_numpy(x.reshape(1, M, K)), weight, scale, bias).numpy()
    assert ours.dtype == np.float32 and ours.shape == (1, M, N)
    np.testing.assert_array_equal(ours, theirs)


def test_quantized_weight_is_close_to_the_float_weight():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    q, scale = quantization.quantize_weight(w)
    np.testing.assert_array_equal(scale, np.abs(w).max(axis=1) / np.float32(127))
    assert np.abs(quantization.dequantize(q, scale) - w).max() <= scale.max() / 2 * (1 + 1e-6)


# ------------------------------------------------------------------------------------------ the kernel
SPECIAL = {"ties": lambda x: np.round(x * 4) / 4,            # many x / scale at exact halves
           "zero_rows": lambda x: x * (np.arange(len(x)) % 3 != 0)[:, None],
           "subnormal": lambda x: x * np.float32(1e-39),     # scales and values below float32's normal range
           "huge": lambda x: x * np.float32(1e37),
           "nonfinite": lambda x: np.where((np.arange(x.size) % 7 == 3).reshape(x.shape),
                                           np.array([np.nan, np.inf, -np.inf], np.float32)[np.arange(x.size).reshape(x.shape) % 3], x)}


@needs_compiled
@settings(max_examples=60)
@given(st.integers(1, 100), st.integers(0, 300), st.integers(1, 80), st.booleans(), st.booleans(),
       st.sampled_from([None, *SPECIAL]), st.sampled_from([1, 2]), st.integers(0, 2**32 - 1))
@example(M=128, K=768, N=96, with_bias=True, transposed=False, special=None, threads=2, seed=0)
@example(M=3, K=16, N=3, with_bias=False, transposed=False, special="ties", threads=1, seed=1)
@example(M=50, K=17, N=49, with_bias=True, transposed=True, special="zero_rows", threads=2, seed=2)
@example(M=97, K=1, N=1, with_bias=True, transposed=False, special="subnormal", threads=2, seed=3)
@example(M=4, K=0, N=5, with_bias=True, transposed=False, special=None, threads=1, seed=4)
@example(M=9, K=40, N=4, with_bias=True, transposed=False, special="nonfinite", threads=2, seed=5)
def test_kernel_equals_book_bit_for_bit(M, K, N, with_bias, transposed, special, threads, seed):
    x, weight, scale, bias = weights_and_input(M, K, N, seed)
    if special:
        x = SPECIAL[special](x).astype(np.float32)
    if transposed:  # non-contiguous views are copied, never misread
        x = np.asfortranarray(x)
        weight = np.asfortranarray(weight)
    bias = bias if with_bias else None
    with backend.use_backend("cython", num_threads=threads):
        ours = backend.KERNELS["cython"].quantized_linear(x.reshape(1, M, K), weight, scale, bias)
    ref = quantization.quantized_linear(x.reshape(1, M, K), weight, scale, bias)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape == (1, M, N)
    np.testing.assert_array_equal(ours, ref)


@needs_compiled
@pytest.mark.parametrize("change, error, message", [
    (dict(x=np.zeros((2, 8), np.float64)), TypeError, "x must be float32, got float64"),
    (dict(weight=np.zeros((4, 8), np.float32)), TypeError, "weight must be int8, got float32"),
    (dict(weight_scale=np.zeros(4, np.float64)), TypeError, "weight_scale must be float32"),
    (dict(x=np.zeros((2, 7), np.float32)), ValueError, r"x \[..., in\], weight \[out, in\].*x \(2, 7\)"),
    (dict(weight_scale=np.zeros(3, np.float32)), ValueError, r"weight_scale \(3,\)"),
    (dict(bias=np.zeros(5, np.float32)), ValueError, r"bias must be float32 \[4\]"),
    (dict(x=np.float32(1)), ValueError, "at least one axis"),
])
def test_kernel_names_the_bad_argument(change, error, message):
    arguments = dict(x=np.zeros((2, 8), np.float32), weight=np.zeros((4, 8), np.int8),
                     weight_scale=np.ones(4, np.float32), bias=None)
    arguments.update(change)
    with pytest.raises(error, match=message):
        backend.KERNELS["cython"].quantized_linear(**arguments)


def run_with_int8_kernel(kernel, script, folder):
    """Run ``script`` in a fresh interpreter (in ``folder``, so that it imports the installed
    package) with ``PYDEBERTA_INT8_KERNEL=kernel``; returns what it printed."""
    environment = dict(os.environ, PYDEBERTA_INT8_KERNEL=kernel, PYDEBERTA_BACKEND="cython")
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300,
                          cwd=folder)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_compiled
def test_environment_switch_forces_each_path_and_both_give_the_same_bits(tmp_path):
    """PYDEBERTA_INT8_KERNEL=avx2 | numpy under the cython backend: everything else is the same
    code, so the whole model's outputs are the same bits."""
    script = (f"import numpy as np, pydeberta\nfrom pydeberta.engine import backend_info\n"
              f"m = pydeberta.DebertaV2ForMaskedLM.from_pretrained({TINY!r}, quantize='int8')\n"
              f"ids = np.random.default_rng(0).integers(5, 8000, (3, 40))\n"
              f"np.save({str(tmp_path)!r} + '/' + backend_info()['int8'] + '.npy', m(input_ids=ids).logits)\n"
              f"print(backend_info()['int8'])")
    assert run_with_int8_kernel("avx2", script, tmp_path).strip() == "avx2"
    assert run_with_int8_kernel("numpy", script, tmp_path).strip() == "numpy"
    np.testing.assert_array_equal(np.load(tmp_path / "avx2.npy"), np.load(tmp_path / "numpy.npy"))


def test_environment_switch_rejects_unknown_values(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import pydeberta.engine as e; e.backend_info()"], cwd=tmp_path,
                          env=dict(os.environ, PYDEBERTA_INT8_KERNEL="vnni"), capture_output=True, text=True)
    assert done.returncode != 0 and "PYDEBERTA_INT8_KERNEL must be one of auto, avx2, numpy, got 'vnni'" in done.stderr


# ------------------------------------------------------------------------------------------ models
@settings(max_examples=15)
@given(st.data())
def test_quantized_model_equals_transformers_with_the_torch_layer(backend, data):
    cfg = data.draw(configs())
    ids, mask, types = data.draw(batches(cfg["vocab_size"], cfg.get("type_vocab_size", 0)))
    theirs_model = build_transformers_model("DebertaV2Model", cfg)
    ours = to_pydeberta(theirs_model).quantize("int8")
    with torch.no_grad():
        theirs = quantize_transformers(theirs_model)(**{k: torch.as_tensor(v) for k, v in inputs_of((ids, mask, types)).items()
                                                        if v is not None}, output_hidden_states=True)
    got = ours(**inputs_of((ids, mask, types)), output_hidden_states=True)
    for i, (a, b) in enumerate(zip(got.hidden_states, theirs.hidden_states)):
        a, b = a.astype(np.float64).ravel(), b.numpy().astype(np.float64).ravel()
        # Float rounding elsewhere (LayerNorm, softmax, GELU sum in another order) can move an
        # activation across a rounding boundary of its quantization: that row of the product then
        # differs by one quantization step, and later layers carry it on. Hence no per-entry bound;
        # a wrong formula (scale, rounding, clipping, a missing or transposed scale) fails these.
        cosine = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)
        worst = np.abs(a - b).max(initial=0) / (1e-6 + np.abs(b).max(initial=0))
        assert cosine >= 0.9999 and worst <= 0.02, f"hidden_states[{i}]: cosine {cosine:.6f}, max |diff| / max |b| {worst:.3g}"


def test_quantized_model_equals_transformers_with_the_torch_layer_where_no_rounding_moves():
    """A fixed model and input on which no activation sits near a rounding boundary: every
    hidden state agrees within float32 rounding (1e-5)."""
    cfg = dict(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=24,
               max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=32,
               pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False)
    theirs_model = build_transformers_model("DebertaV2Model", cfg, seed=3)
    ours = to_pydeberta(theirs_model).quantize("int8")
    ids = np.array([[1, 7, 23, 5, 40, 2]])
    with torch.no_grad():
        theirs = quantize_transformers(theirs_model)(input_ids=torch.as_tensor(ids), output_hidden_states=True)
    for i, (a, b) in enumerate(zip(ours(input_ids=ids, output_hidden_states=True).hidden_states, theirs.hidden_states)):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5, err_msg=f"hidden_states[{i}]")


@pytest.fixture(scope="module")
def tiny_int8():
    return pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY, quantize="int8")


def test_only_the_encoder_layers_linear_layers_are_int8(tiny_int8):
    params = tiny_int8.params
    int8 = sorted(key for key, value in params.items() if value.dtype == np.int8)
    assert int8 == sorted(f"deberta.encoder.layer.{i}.{name}.weight" for i in range(4) for name in INT8_LAYERS)
    for key in int8:
        scale = params[key.replace(".weight", ".weight_scale")]
        assert scale.dtype == np.float32 and scale.shape == params[key].shape[:1]
    assert {value.dtype for key, value in params.items() if key not in int8} == {np.dtype(np.float32)}


def test_save_and_load_round_trip(tiny_int8, tmp_path):
    tiny_int8.save_pretrained(tmp_path)
    loaded = pydeberta.DebertaV2ForMaskedLM.from_pretrained(tmp_path)
    assert loaded.config.quantization_config == tiny_int8.config.quantization_config
    for key, value in tiny_int8.params.items():
        assert loaded.params[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded.params[key], value, err_msg=key)
    ids = np.array([[1, 300, 4, 700, 2]])
    np.testing.assert_array_equal(loaded(input_ids=ids).logits, tiny_int8(input_ids=ids).logits)
    assert pickle.loads(pickle.dumps(loaded)).params.keys() == loaded.params.keys()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loaded))(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_int8_weights_without_their_config_are_refused(tiny_int8, tmp_path):
    tiny_int8.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["quantization_config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match="is int8 but the config has no quantization_config"):
        pydeberta.DebertaV2ForMaskedLM.from_pretrained(tmp_path)


def test_transformers_refuses_the_quantized_folder(tiny_int8, tmp_path):
    tiny_int8.save_pretrained(tmp_path)
    with pytest.raises(Exception):
        transformers.DebertaV2ForMaskedLM.from_pretrained(tmp_path)


def test_quantize_after_loading_equals_quantize_on_load(tiny_int8):
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY)
    assert model.quantize("int8") is model and model.quantize("int8") is model  # the second is a no-op
    for key, value in tiny_int8.params.items():
        np.testing.assert_array_equal(model.params[key], value, err_msg=key)


def test_load_state_dict_keeps_the_int8_weights(tiny_int8):
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY, quantize="int8")
    model.load_state_dict(tiny_int8.params)
    assert {key: value.dtype for key, value in model.params.items()} == {
        key: value.dtype for key, value in tiny_int8.params.items()}


def test_refusals(tiny_int8):
    with pytest.raises(ValueError, match="method must be 'int8', got 'int4'"):
        pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY).quantize("int4")
    with pytest.raises(ValueError, match="int8 model computes in float32; this model is float64"):
        pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY, dtype=np.float64).quantize("int8")
    with pytest.raises(ValueError, match="value_and_grad: an int8 model has no gradient"):
        value_and_grad(tiny_int8, input_ids=np.array([[1, 2]]), labels=np.array([[1, 2]]))
    config = pydeberta.DebertaV2Config.from_dict(tiny_int8.config.to_dict(), quantization_config={"quant_method": "gptq"})
    with pytest.raises(ValueError, match="only {'quant_method': 'pydeberta-int8'} is supported"):
        pydeberta.DebertaV2ForMaskedLM(config)
    with pytest.raises(TypeError, match="weight must be int8, got float32"):
        pydeberta.DebertaV2ForMaskedLM(tiny_int8.config, params=pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY).params
                                       | {k: v for k, v in tiny_int8.params.items() if k.endswith("weight_scale")})


def test_command_line_and_pipeline_quantize_on_request(tiny_int8, capsys):
    from pydeberta.cli import main
    from pydeberta.pipelines import pipeline

    text = "Raise an [MASK] if the argument is invalid."
    pipe = pipeline("fill-mask", model=TINY, quantize="int8")
    assert pipe.model.config.quantization_config == tiny_int8.config.quantization_config
    expected = pipe(text, top_k=3)
    assert main(["fill-mask", text, "--quantize", "int8", "--json", "--top-k", "3"]) in (0, None)
    printed = json.loads(capsys.readouterr().out)["result"]
    assert [a["token_str"] for a in printed] == [a["token_str"] for a in expected]
    np.testing.assert_allclose([a["score"] for a in printed], [a["score"] for a in expected], rtol=1e-6)
    with pytest.raises(ValueError, match="quantize= applies to a model loaded here"):
        pipeline("fill-mask", model=tiny_int8, tokenizer=TINY, quantize="int8")


def test_bundled_model_keeps_its_heldout_accuracy_in_int8(tiny_int8):
    """The card's held-out slice: int8 within a point of float32 (measured on the full held-out
    split: top-1 0.258 -> 0.258, top-5 0.436 -> 0.435; docs/int8.md)."""
    from test_bundled import FOLDER, slice_accuracy

    results = json.loads((FOLDER / "eval_results.json").read_text())
    tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(TINY)
    float_top1, float_top5, _ = slice_accuracy(pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY), tokenizer, results)
    int8_top1, int8_top5, _ = slice_accuracy(tiny_int8, tokenizer, results)
    assert abs(int8_top1 - float_top1) <= 0.01 and abs(int8_top5 - float_top5) <= 0.01, (
        (float_top1, float_top5), (int8_top1, int8_top5))


def test_inspect_says_a_folder_is_int8(tiny_int8, tmp_path, capsys):
    from pydeberta.cli import main

    tiny_int8.save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path), "--json"]) in (0, None)
    info = json.loads(capsys.readouterr().out)
    assert info["checkpoint_dtype_loaded_as"] == ["float32", "int8"]
    assert info["compute_dtype"] == "float32, the encoder's linear layers in int8 (quantized)"


def test_a_model_quantized_after_loading_pickles_as_its_folder(tiny_int8):
    """A few kilobytes (folder, config, "int8" and the int8 weights' digest), not the weights; the
    unpickled model is quantized again from the folder and equal bit for bit."""
    data = pickle.dumps(tiny_int8)
    assert len(data) < 20_000
    again = pickle.loads(data)
    assert again.config.quantization_config == tiny_int8.config.quantization_config
    for key, value in tiny_int8.params.items():
        np.testing.assert_array_equal(again.params[key], value, err_msg=key)
    changed = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY, quantize="int8")
    changed.tree["lm_predictions"]["lm_head"]["bias"] = changed.tree["lm_predictions"]["lm_head"]["bias"] + 1
    assert len(pickle.dumps(changed)) > 1_000_000  # a changed model goes by value


@pytest.mark.parametrize("seed", [0, 1])
def test_int8_stays_close_to_float32(seed):
    """Float32 against int8 on a 4-layer v3-style random model: measured cosine 0.999993 and
    largest difference 0.36-0.41% of the largest value (seeds 0-2); asserted with a margin. The
    base-sized figures are in docs/int8.md (cosine 0.99972, 2.56%)."""
    cfg = dict(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
               max_position_embeddings=512, relative_attention=True, position_buckets=64, max_relative_positions=-1,
               pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
               type_vocab_size=0)
    ids = np.random.default_rng(seed).integers(0, 1000, (2, 64))
    a = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**cfg), seed=seed)(input_ids=ids).last_hidden_state
    b = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**cfg), seed=seed).quantize("int8")(input_ids=ids).last_hidden_state
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.99995
    assert np.abs(a - b).max() <= 0.01 * np.abs(a).max()
