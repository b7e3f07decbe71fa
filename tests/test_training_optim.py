"""pydeberta.training.optim against its oracles: torch.optim.AdamW, transformers'
get_linear_schedule_with_warmup and Trainer weight-decay rule, torch.nn.utils.clip_grad_norm_."""

import math

import numpy as np
import pytest
import torch
import transformers
from hypothesis import assume, example, given
from hypothesis import strategies as st

from pydeberta.training.optim import AdamW, LinearSchedule, clip_grad_norm, transformers_no_decay

# Checkpoint-style keys: two of them (bias, LayerNorm) get no weight decay under transformers' rule.
KEYS = ("deberta.encoder.layer.0.attention.self.query_proj.weight",
        "deberta.encoder.layer.0.attention.self.query_proj.bias",
        "deberta.encoder.layer.0.output.LayerNorm.weight", "classifier.weight")
SHAPES = ((6, 5), (6,), (5,), (3, 5))


def random_problem(seed, shapes=SHAPES, steps=10, dtype=np.float64, scale=1.0):
    """Parameters and one fixed random gradient dict per step."""
    rng = np.random.default_rng(seed)
    keys = KEYS[:len(shapes)]
    params = {key: rng.standard_normal(shape).astype(dtype) for key, shape in zip(keys, shapes)}
    grads = [{key: (scale * rng.standard_normal(shape)).astype(dtype) for key, shape in zip(keys, shapes)}
             for _ in range(steps)]
    return params, grads


def torch_adamw(params, grads_per_step, lr, betas, eps, weight_decay, no_decay=None, warmup=None, total=None,
                max_norm=None):
    """torch's AdamW run over the gradients (parameter groups with weight_decay 0 for the no_decay
    keys, as transformers' Trainer builds them; LambdaLR from transformers; clip_grad_norm_ before
    each step). Returns the final parameters and the norms clip_grad_norm_ returned."""
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}
    decayed = [t for key, t in tensors.items() if not (no_decay and no_decay(key))]
    exempt = [t for key, t in tensors.items() if no_decay and no_decay(key)]
    groups = [group for group in ({"params": decayed, "weight_decay": weight_decay},
                                  {"params": exempt, "weight_decay": 0.0}) if group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    scheduler = None if warmup is None else transformers.get_linear_schedule_with_warmup(optimizer, warmup, total)
    norms = []
    for grads in grads_per_step:
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[key])
        if max_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm)))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return {key: tensor.detach().numpy() for key, tensor in tensors.items()}, norms


def our_adamw(params, grads_per_step, lr, betas, eps, weight_decay, no_decay=None, warmup=None, total=None,
              max_norm=None):
    """The same run with pydeberta's optimiser."""
    schedule = None if warmup is None else LinearSchedule(warmup, total)
    optimizer = AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_decay=no_decay,
                      schedule=schedule)
    norms = []
    for grads in grads_per_step:
        if max_norm is not None:
            grads, norm = clip_grad_norm(grads, max_norm)
            norms.append(float(norm))
        params = optimizer.step(params, grads)
    return params, norms


def assert_params_close(ours, theirs, tolerance):
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype, key
        np.testing.assert_allclose(ours[key], theirs[key], rtol=tolerance, atol=tolerance, err_msg=key)


# --------------------------------------------------------------------------- AdamW
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("no_decay", [None, transformers_no_decay])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_ten_adamw_steps_equal_torch(weight_decay, no_decay, clip):
    params, grads = random_problem(seed=1)
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, no_decay=no_decay,
                    warmup=3, total=10, max_norm=clip)
    ours, our_norms = our_adamw(params, grads, **settings)
    theirs, their_norms = torch_adamw(params, grads, **settings)
    assert_params_close(ours, theirs, 1e-10)
    np.testing.assert_allclose(our_norms, their_norms, rtol=1e-12)
    if clip is not None:
        assert min(their_norms) > clip  # the clipping did clip
    moved = {key: np.abs(ours[key] - params[key]).max() for key in params}
    assert min(moved.values()) > 1e-3  # after the lr-0 warm-up step, every parameter moved


def test_adamw_without_schedule_equals_torch_and_leaves_inputs_alone():
    params, grads = random_problem(seed=2, steps=4)
    for array in [*params.values(), *(g for step in grads for g in step.values())]:
        array.flags.writeable = False  # a loaded model's arrays are read-only
    before = {key: value.copy() for key, value in params.items()}
    ours, _ = our_adamw(params, grads, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3)
    theirs, _ = torch_adamw(params, grads, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3)
    assert_params_close(ours, theirs, 1e-10)
    for key in params:
        np.testing.assert_array_equal(params[key], before[key])
        assert ours[key] is not params[key] and ours[key].flags.writeable


def test_adamw_float32_stays_float32_and_equals_torch():
    params, grads = random_problem(seed=3, steps=5, dtype=np.float32)
    ours, _ = our_adamw(params, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, warmup=1, total=5)
    theirs, _ = torch_adamw(params, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, warmup=1, total=5)
    assert_params_close(ours, theirs, 1e-6)


def test_current_lr_follows_the_schedule():
    params, grads = random_problem(seed=4, steps=6)
    optimizer = AdamW(params, lr=0.5, schedule=LinearSchedule(2, 6))
    seen = []
    for step_grads in grads:
        seen.append(optimizer.current_lr())
        params = optimizer.step(params, step_grads)
    assert seen == [0.0, 0.25, 0.5, 0.375, 0.25, 0.125]
    assert optimizer.steps == 6


@given(data=st.data(), shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
                                       min_size=1, max_size=4),
       lr=st.floats(0.0, 0.5), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.999),
       eps=st.floats(1e-10, 1e-2), weight_decay=st.floats(0.0, 1.0), total=st.integers(1, 6),
       max_norm=st.one_of(st.none(), st.floats(0.0, 5.0)), scale=st.sampled_from([1e-6, 1.0, 100.0]))
@example(data=None, shapes=[(3,)], lr=0.1, beta1=0.0, beta2=0.0, eps=1e-8, weight_decay=0.0, total=3, max_norm=None,
         scale=1.0)  # betas 0: plain sign-like steps
@example(data=None, shapes=[(2, 2), ()], lr=0.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.5, total=2,
         max_norm=0.0, scale=1.0)  # lr 0 and max_norm 0: nothing moves
def test_adamw_equals_torch_for_any_shapes_and_hyperparameters(data, shapes, lr, beta1, beta2, eps, weight_decay,
                                                                total, max_norm, scale):
    warmup = total if data is None else data.draw(st.integers(0, total), label="warmup")
    params, grads = random_problem(seed=len(shapes) + total, shapes=shapes, steps=total + 1, scale=scale)
    settings = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, no_decay=transformers_no_decay,
                    warmup=warmup, total=total, max_norm=max_norm)
    ours, our_norms = our_adamw(params, grads, **settings)
    theirs, their_norms = torch_adamw(params, grads, **settings)
    assert_params_close(ours, theirs, 1e-10)
    np.testing.assert_allclose(our_norms, their_norms, rtol=1e-12)


def test_weight_decay_exemptions_are_transformers_trainers():
    """transformers_no_decay picks exactly the parameters Trainer.get_decay_parameter_names leaves
    out, on DeBERTa models with every kind of parameter (conv, legacy MLM head, classifier)."""
    config = transformers.DebertaV2Config(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=24, max_position_embeddings=32, relative_attention=True,
                                          position_buckets=8, pos_att_type="p2c|c2p", share_att_key=False,
                                          norm_rel_ebd="layer_norm", conv_kernel_size=3, type_vocab_size=2,
                                          position_biased_input=True)
    for cls in (transformers.DebertaV2ForSequenceClassification, transformers.DebertaV2ForMaskedLM,
                transformers.DebertaV2ForTokenClassification):
        model = cls(config)
        names = [name for name, _ in model.named_parameters()]
        # Trainer also lists the tied alias cls.predictions.decoder.weight, which named_parameters
        # (and a checkpoint's keys) give once, as the word embeddings
        decayed = set(transformers.Trainer.get_decay_parameter_names(None, model)) & set(names)
        assert {name for name in names if not transformers_no_decay(name)} == decayed, cls.__name__
        assert len(decayed) not in (0, len(names))


# --------------------------------------------------------------------------- schedule
def transformers_lambda(warmup, total):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return transformers.get_linear_schedule_with_warmup(optimizer, warmup, total).lr_lambdas[0]


@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 10), (10, 10), (0, 1), (1, 1), (0, 0), (7, 100)])
def test_schedule_equals_transformers_at_every_step(warmup, total):
    ours, theirs = LinearSchedule(warmup, total), transformers_lambda(warmup, total)
    for step in range(total + 3):  # warm-up, decay, the end and past it
        assert ours(step) == theirs(step), step
    assert ours(0) == (1.0 if total and not warmup else 0.0) and ours(total) == 0.0


@given(total=st.integers(0, 10_000), data=st.data())
def test_schedule_equals_transformers_for_any_lengths(total, data):
    warmup = data.draw(st.integers(0, total))
    step = data.draw(st.integers(0, total + 5))
    assert LinearSchedule(warmup, total)(step) == transformers_lambda(warmup, total)(step)


# --------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.3, 1e6])  # clips / does not
def test_clip_equals_torch(dtype, norm_type, max_norm):
    _, [grads] = random_problem(seed=5, steps=1, dtype=dtype)
    tensors = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(grad)
    their_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type)
    before = {key: grad.copy() for key, grad in grads.items()}
    clipped, our_norm = clip_grad_norm(grads, max_norm, norm_type=norm_type)
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    assert our_norm.dtype == dtype
    np.testing.assert_allclose(our_norm, their_norm.numpy(), rtol=tolerance)
    for (key, ours), tensor in zip(clipped.items(), tensors):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, tensor.grad.numpy(), rtol=tolerance, atol=tolerance, err_msg=key)
        np.testing.assert_array_equal(grads[key], before[key])  # left alone
    if max_norm > 1e5:
        for key in grads:
            np.testing.assert_array_equal(clipped[key], grads[key])


@given(shapes=st.lists(st.lists(st.integers(0, 5), max_size=3).map(tuple), min_size=1, max_size=4),
       max_norm=st.floats(0.0, 10.0), scale=st.sampled_from([0.0, 1e-3, 1.0, 1e3]),
       norm_type=st.sampled_from([1.0, 2.0, 2.5, math.inf]))
@example(shapes=[(0,)], max_norm=1.0, scale=1.0, norm_type=2.0)  # an empty gradient: norm 0
@example(shapes=[(3,)], max_norm=0.0, scale=1.0, norm_type=2.0)  # max_norm 0: all zero
def test_clip_equals_torch_for_any_shapes(shapes, max_norm, scale, norm_type):
    assume(norm_type != math.inf or all(math.prod(shape) for shape in shapes))  # both refuse max() of nothing
    _, [grads] = random_problem(seed=len(shapes), shapes=shapes, steps=1, scale=scale)
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(grad)
    their_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type))
    clipped, our_norm = clip_grad_norm(grads, max_norm, norm_type=norm_type)
    assert float(our_norm) == pytest.approx(their_norm, rel=1e-12, abs=1e-300)
    for ours, tensor in zip(clipped.values(), tensors):
        np.testing.assert_allclose(ours, tensor.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_clip_nonfinite_like_torch_or_refused():
    grads = {"a": np.array([1.0, np.nan]), "b": np.array([2.0])}
    clipped, norm = clip_grad_norm(grads, 1.0)
    tensors = [torch.zeros(len(g), dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(grad)
    assert np.isnan(norm) and torch.isnan(torch.nn.utils.clip_grad_norm_(tensors, 1.0))
    for ours, tensor in zip(clipped.values(), tensors):
        np.testing.assert_array_equal(ours, tensor.grad.numpy())  # nan everywhere, as torch
    with pytest.raises(ValueError, match=r"total norm of order 2.0 of the gradients is nan"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)


# --------------------------------------------------------------------------- bad arguments
PARAMS = {"w": np.zeros((2, 3)), "b": np.zeros(3)}


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(lr=-1e-3), ValueError, r"lr must lie in \[0, inf\], got -0.001"),
    (dict(lr=float("nan")), ValueError, r"lr must lie in \[0, inf\], got nan"),
    (dict(lr="0.1"), TypeError, r"lr must be a number, got str '0.1'"),
    (dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must lie in \[0, 1\), got 1.0"),
    (dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must lie in \[0, 1\), got -0.1"),
    (dict(betas=0.9), ValueError, r"betas must be a pair \(beta1, beta2\), got 0.9"),
    (dict(eps=0.0), ValueError, r"eps must lie in \(0, inf\], got 0.0"),
    (dict(eps=-1e-8), ValueError, r"eps must lie in \(0, inf\], got -1e-08"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay must lie in \[0, inf\], got -0.1"),
    (dict(no_decay="bias"), TypeError, r"no_decay must be a function key -> bool or None, got str"),
    (dict(schedule=0.5), TypeError, r"schedule must be a function step -> multiplier or None, got float"),
])
def test_bad_hyperparameters_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        AdamW(PARAMS, **kwargs)


@pytest.mark.parametrize("grads,error,message", [
    ({"w": np.ones((2, 3))}, ValueError,
     r"grads must have the keys of the optimiser's params \(2 keys\): 1 missing \(e.g. \['b'\]\)"),
    ({"w": np.ones((2, 3)), "b": np.ones(3), "x": np.ones(1)}, ValueError,
     r"grads must have the keys of the optimiser's params \(2 keys\): 1 unexpected \(e.g. \['x'\]\)"),
    ({"w": np.ones((3, 2)), "b": np.ones(3)}, ValueError,
     r"grads\['w'\] must have shape \(2, 3\) like the optimiser's params, got \(3, 2\)"),
    ({"w": np.ones((2, 3)), "b": np.ones(3, dtype=np.int64)}, TypeError,
     r"grads\['b'\] must hold floating-point numbers, got dtype int64"),
    ([np.ones((2, 3)), np.ones(3)], TypeError, r"grads must be a dict checkpoint key -> array, got list"),
])
def test_bad_grads_are_named(grads, error, message):
    with pytest.raises(error, match=message):
        AdamW(PARAMS).step(PARAMS, grads)


def test_bad_params_and_clip_arguments_are_named():
    with pytest.raises(ValueError, match=r"params must have the keys of the optimiser's params \(2 keys\): "
                                         r"1 missing \(e.g. \['b'\]\)"):
        AdamW(PARAMS).step({"w": PARAMS["w"]}, PARAMS)
    with pytest.raises(ValueError, match=r"params must be a non-empty dict checkpoint key -> array, got \{\}"):
        AdamW({})
    with pytest.raises(ValueError, match=r"max_norm must lie in \[0, inf\], got -1.0"):
        clip_grad_norm(PARAMS, -1.0)
    with pytest.raises(ValueError, match=r"norm_type must lie in \(0, inf\], got 0.0"):
        clip_grad_norm(PARAMS, 1.0, norm_type=0)
    with pytest.raises(ValueError, match=r"num_warmup_steps must be <= num_training_steps \(5\), got 6"):
        LinearSchedule(6, 5)
    with pytest.raises(ValueError, match=r"num_training_steps must be an integer >= 0, got 2.5"):
        LinearSchedule(0, 2.5)
