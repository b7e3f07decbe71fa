"""Gradients against torch autograd through transformers' models, on hypothesis-drawn configs
covering every optional part, for every head with labels, with dropout off (eval) and on
(training, transformers replaying pydeberta's masks), on every backend: the book's backward
functions (``reference``) and the engine's training pass (``numpy``, ``cython``).

A gradient is compared relative to its largest entry (torch's), as
``max |ours - torch| <= tol * max(max |torch|, floor)``: float64 within 1e-7, float32 within 1e-3.
``floor`` (1e-9 in float64, 1e-2 in float32, of the largest entry over all parameters) covers
gradients that are mathematically zero or nearly so, where both sides hold rounding noise: the
bias of the c2p key projection (it adds ``q_i · b``, the same for every key, which the softmax
cancels; ~1e-19 in float64), or a LayerNorm over 2 channels, whose output is +-1 whatever its
input. Any difference within an absolute 16 ulps of 1 (3.6e-15 in float64, 1.9e-6 in float32)
passes too: weights and activations are of order 1 here, and some batches make every gradient 0
or nearly (one class; one repeated token; one token in every choice), where both sides sum
rounding noise (5 ulps seen).
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from oracle import batches, build_transformers_model, choices_of, configs, inputs_of, sequence_labels, to_pydeberta

from pydeberta.dropout import Dropout
from pydeberta.engine.backend import available_backends, use_backend
from pydeberta.training import value_and_grad

GRAD_TOLERANCE = {np.float32: 1e-3, np.float64: 1e-7}
NOISE_FLOOR = {np.float32: 1e-2, np.float64: 1e-9}
ABSOLUTE_FLOOR = {dtype: 16 * float(np.finfo(dtype).eps) for dtype in (np.float32, np.float64)}  # 16 ulps of 1
DTYPES = [np.float32, np.float64]
BACKENDS = available_backends()
V3_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
               relative_attention=True, pos_att_type="p2c|c2p", position_buckets=8, max_relative_positions=32,
               share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)
V2_XLARGE_LIKE = dict(V3_LIKE, conv_kernel_size=3, conv_act="gelu", conv_groups=2, embedding_size=8)


def torch_gradients(hf_model, batch):
    """transformers' loss and the gradient of every named parameter (zeros where autograd gives None)."""
    hf_model.zero_grad()
    out = hf_model(**{key: torch.as_tensor(value) for key, value in batch.items()})
    out.loss.backward()
    return out, {name: np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()
                 for name, p in hf_model.named_parameters()}


def compare_gradients(cls_name, cfg, batch, dtype, tolerance=None):
    """pydeberta's value_and_grad against transformers' loss.backward() on the same weights.

    float32 skips hidden size 2: a LayerNorm over two channels outputs +-weight + bias whatever
    its input, so every gradient through it is rounding noise on both sides (float64 keeps them).
    """
    assume(dtype == np.float64 or cfg["hidden_size"] > 2)
    hf_model = build_transformers_model(cls_name, cfg, dtype)
    ours = to_pydeberta(hf_model, dtype=dtype)
    out, grads = value_and_grad(ours, **batch)
    theirs, expected = torch_gradients(hf_model, batch)
    tol = tolerance or GRAD_TOLERANCE[dtype]
    loss, expected_loss = float(out.loss), float(theirs.loss)
    assert abs(loss - expected_loss) <= tol * (1 + abs(expected_loss)) or (np.isnan(loss) and np.isnan(expected_loss))
    assert set(grads) == set(ours.params)
    assert set(expected) <= set(grads), f"parameters transformers has and we do not: {set(expected) - set(grads)}"
    floor = NOISE_FLOOR[dtype] * max(np.nanmax(np.abs(g), initial=0) for g in expected.values())
    for name, reference in expected.items():
        mine = grads[name]
        assert mine.shape == reference.shape and mine.dtype == dtype, name
        assert np.array_equal(np.isnan(mine), np.isnan(reference)), f"{name}: nan in different places"
        scale = max(np.nanmax(np.abs(reference), initial=0), floor)
        diff = np.nanmax(np.abs(mine.astype(np.float64) - reference), initial=0)
        assert diff <= max(tol * scale, ABSOLUTE_FLOOR[dtype]), (
            f"{name}: max |ours - torch| = {diff:.3g} > {tol:g} x the largest entry {scale:.3g}")
    for name in set(grads) - set(expected):  # keys transformers ties to another parameter
        assert name.startswith("cls.predictions.decoder"), name
    return out, grads


FIXED_BATCH = (np.array([[1, 5, 9, 3, 2, 0], [1, 7, 0, 0, 0, 0]]), np.array([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]]),
               np.zeros((2, 6), int))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("legacy", [True, False])
@settings(max_examples=10)
@given(cfg=configs(), data=st.data())
@example(cfg=V3_LIKE, data=None)
@example(cfg=V2_XLARGE_LIKE, data=None)
def test_masked_lm_gradients_match_autograd(backend, dtype, legacy, cfg, data):
    cfg = dict(cfg, legacy=legacy)
    if not legacy:  # transformers 4.57 crashes on tied non-legacy heads; Microsoft's layout needs E == C
        cfg.update(tie_word_embeddings=False, embedding_size=cfg["hidden_size"])
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"])) if data else FIXED_BATCH
    labels = np.where(np.random.default_rng(0).random(batch[0].shape) < 0.5, batch[0], -100)
    labels[0, 0] = batch[0][0, 0]  # at least one labelled token
    compare_gradients("DebertaV2ForMaskedLM", cfg, dict(inputs_of(batch), labels=labels), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(cfg=configs(), data=st.data(), num_labels=st.integers(1, 4),
       problem=st.sampled_from([None, "regression", "single_label_classification", "multi_label_classification"]),
       soft=st.booleans())
@example(cfg=V2_XLARGE_LIKE, data=None, num_labels=3, problem=None, soft=False)
def test_sequence_classification_gradients_match_autograd(backend, dtype, cfg, data, num_labels, problem, soft):
    cfg = dict(cfg, num_labels=num_labels, problem_type=problem)
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"])) if data else FIXED_BATCH
    labels = sequence_labels(problem, num_labels, soft, batch[0].shape[0], dtype)
    tolerance = None
    if np.issubdtype(labels.dtype, np.integer):
        labels[0] = 0  # at least one row counts
        if problem is None:  # transformers takes this cross-entropy in float32, whatever the model's dtype
            tolerance = GRAD_TOLERANCE[np.float32] if dtype == np.float32 else 1e-5
    compare_gradients("DebertaV2ForSequenceClassification", cfg, dict(inputs_of(batch), labels=labels), dtype,
                      tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=8)
@given(cfg=configs(), data=st.data(), num_labels=st.integers(1, 5))
def test_token_classification_gradients_match_autograd(backend, dtype, cfg, data, num_labels):
    cfg = dict(cfg, num_labels=num_labels)
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    labels = np.where(batch[1] > 0, np.random.default_rng(2).integers(0, num_labels, batch[0].shape), -100)
    compare_gradients("DebertaV2ForTokenClassification", cfg, dict(inputs_of(batch), labels=labels), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=8)
@given(cfg=configs(), data=st.data())
def test_question_answering_gradients_match_autograd(backend, dtype, cfg, data):
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    B, N = batch[0].shape
    rng = np.random.default_rng(3)
    starts = rng.integers(0, N, B)
    ends = rng.integers(0, N + 3, B)  # beyond N: clamped to N and ignored, as transformers
    compare_gradients("DebertaV2ForQuestionAnswering", cfg,
                      dict(inputs_of(batch), start_positions=starts, end_positions=ends), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=8)
@given(cfg=configs(), data=st.data(), choices=st.integers(1, 3))
def test_multiple_choice_gradients_match_autograd(backend, dtype, cfg, data, choices):
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    B = batch[0].shape[0]
    stacked = choices_of(batch, choices)
    labels = np.random.default_rng(4).integers(0, choices, B)
    compare_gradients("DebertaV2ForMultipleChoice", cfg, dict(stacked, labels=labels), dtype)


HEAD_LABELS = {
    "DebertaV2ForMaskedLM": lambda ids, mask, rng: dict(labels=np.where(mask > 0, ids, -100)),
    "DebertaV2ForSequenceClassification": lambda ids, mask, rng: dict(labels=rng.integers(0, 2, len(ids))),
    "DebertaV2ForTokenClassification": lambda ids, mask, rng: dict(
        labels=np.where(mask > 0, rng.integers(0, 2, ids.shape), -100)),
    "DebertaV2ForQuestionAnswering": lambda ids, mask, rng: dict(
        start_positions=rng.integers(0, ids.shape[1], len(ids)), end_positions=rng.integers(0, ids.shape[1], len(ids))),
}


@pytest.mark.parametrize("engine", [name for name in BACKENDS if name != "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls_name", sorted(HEAD_LABELS))
@settings(max_examples=6)
@given(cfg=configs(), data=st.data())
@example(cfg=V3_LIKE, data=None)
@example(cfg=V2_XLARGE_LIKE, data=None)
def test_engine_gradients_equal_the_books(engine, dtype, cls_name, cfg, data):
    """The engine's training pass (forward keeping a tape, the backward kernels) against the
    book's backward, in training mode on the same dropout masks: loss and every gradient within
    1e-10 (float64) / 1e-4 (float32) of the largest entry, with the noise floors above."""
    cfg = dict(cfg, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3, pooler_dropout=0.25, legacy=True)
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"])) if data else FIXED_BATCH
    ids, mask, _ = batch
    model = to_pydeberta(build_transformers_model(cls_name, cfg, dtype), dtype=dtype).train(seed=0)
    arguments = dict(inputs_of(batch), **HEAD_LABELS[cls_name](ids, mask, np.random.default_rng(6)))
    results = {}
    for name in ("reference", engine):
        with use_backend(name):
            results[name] = value_and_grad(model, rng=np.random.default_rng(7), **arguments)
    (book, book_grads), (out, grads) = results["reference"], results[engine]
    tol = {np.float32: 1e-4, np.float64: 1e-10}[dtype]
    assert abs(float(out.loss) - float(book.loss)) <= tol * (1 + abs(float(book.loss)))
    floor = NOISE_FLOOR[dtype] * max(np.abs(g).max(initial=0) for g in book_grads.values())
    for name, reference in book_grads.items():
        assert grads[name].dtype == reference.dtype, name
        diff = np.abs(grads[name].astype(np.float64) - reference).max(initial=0)
        scale = max(np.abs(reference).max(initial=0), floor)
        assert diff <= max(tol * scale, ABSOLUTE_FLOOR[dtype]), f"{name}: {diff:.3g} against the largest {scale:.3g}"


def test_value_and_grad_returns_the_forward_outputs():
    """The outputs are the forward's (same loss and logits as a plain call), hidden states only
    when asked, and the tuple form with return_dict=False."""
    hf_model = build_transformers_model("DebertaV2ForTokenClassification", V3_LIKE)
    ours = to_pydeberta(hf_model)
    batch = dict(input_ids=FIXED_BATCH[0], attention_mask=FIXED_BATCH[1], labels=np.where(FIXED_BATCH[1] > 0, 1, -100))
    out, _ = value_and_grad(ours, **batch)
    plain = ours(**batch)
    np.testing.assert_allclose(out.logits, plain.logits, atol=1e-5)
    np.testing.assert_allclose(out.loss, plain.loss, atol=1e-6)
    assert out.hidden_states is None
    assert len(value_and_grad(ours, output_hidden_states=True, **batch)[0].hidden_states) == 3
    assert isinstance(value_and_grad(ours, return_dict=False, **batch)[0], tuple)


@pytest.mark.parametrize("engine", [name for name in BACKENDS if name != "reference"])
def test_engine_pass_returns_the_books_attentions_and_study(engine):
    """In training mode the engine's pass returns the attention probabilities after dropout, as
    the book does; ``output_study=True`` runs the book, whose intermediates it returns."""
    cfg = dict(V3_LIKE, attention_probs_dropout_prob=0.3)
    model = to_pydeberta(build_transformers_model("DebertaV2ForSequenceClassification", cfg),
                         dtype=np.float64).train(seed=0)
    batch = dict(input_ids=FIXED_BATCH[0], attention_mask=FIXED_BATCH[1], labels=np.array([0, 1]))
    with use_backend("reference"):
        book, _ = value_and_grad(model, rng=np.random.default_rng(3), output_attentions=True, **batch)
    with use_backend(engine):
        out, _ = value_and_grad(model, rng=np.random.default_rng(3), output_attentions=True, **batch)
        study, _ = value_and_grad(model, rng=np.random.default_rng(3), output_study=True, **batch)
    assert len(out.attentions) == 2 and np.any(out.attentions[0] == 0)  # dropped entries
    for mine, theirs in zip(out.attentions, book.attentions):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)
    assert study.study is not None and len(study.study.c2p) == 2
    assert float(study.loss) == float(book.loss)


def test_value_and_grad_names_what_is_missing():
    ours = to_pydeberta(build_transformers_model("DebertaV2ForQuestionAnswering", V3_LIKE))
    with pytest.raises(ValueError, match="start_positions and end_positions.*missing end_positions"):
        value_and_grad(ours, input_ids=[[1, 2, 3]], start_positions=[0])
    with pytest.raises(TypeError, match="task model with a loss"):
        value_and_grad(to_pydeberta(build_transformers_model("DebertaV2Model", V3_LIKE)), input_ids=[[1, 2]])


def replay_dropout(hf_model, masks):
    """Make every ``nn.Dropout`` of ``hf_model`` apply, in call order, the masks pydeberta drew
    (``x * keep / (1 - p)``; a module with ``p = 0`` stays the identity, as pydeberta draws none)."""
    queue = list(masks)

    def forward(module, x):
        if module.p == 0:
            return x
        keep = torch.as_tensor(queue.pop(0))
        assert tuple(keep.shape) == tuple(x.shape), f"mask {tuple(keep.shape)} for a tensor {tuple(x.shape)}"
        return x * keep.to(x.dtype) / (1 - module.p)

    for module in hf_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.forward = forward.__get__(module)
    return queue


@pytest.mark.parametrize("cls_name", ["DebertaV2ForMaskedLM", "DebertaV2ForSequenceClassification",
                                      "DebertaV2ForTokenClassification", "DebertaV2ForQuestionAnswering",
                                      "DebertaV2ForMultipleChoice"])
@pytest.mark.parametrize("cfg", [V3_LIKE, V2_XLARGE_LIKE], ids=["v3", "v2-xlarge"])
def test_gradients_with_dropout_match_autograd_on_the_same_masks(backend, cls_name, cfg):
    """In training mode every dropout site draws a mask; transformers run on the same masks (its
    nn.Dropout modules replaying ours in call order) gives the same loss and gradients in float64,
    so the sites, their order, their rates and the backward through them all agree."""
    cfg = dict(cfg, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3, pooler_dropout=0.25, cls_dropout=0.15,
               legacy=True)
    hf_model = build_transformers_model(cls_name, cfg, np.float64)
    ours = to_pydeberta(hf_model, dtype=np.float64).train(seed=1)
    ids, mask, _ = FIXED_BATCH
    rng = np.random.default_rng(5)
    batch = {"DebertaV2ForMaskedLM": dict(labels=np.where(mask > 0, ids, -100)),
             "DebertaV2ForSequenceClassification": dict(labels=np.array([1, 0])),
             "DebertaV2ForTokenClassification": dict(labels=np.where(mask > 0, 1, -100)),
             "DebertaV2ForQuestionAnswering": dict(start_positions=np.array([1, 0]), end_positions=np.array([3, 1])),
             "DebertaV2ForMultipleChoice": dict(labels=np.array([1, 0]))}[cls_name]
    if cls_name == "DebertaV2ForMultipleChoice":
        batch.update(input_ids=np.stack([ids, rng.integers(0, 40, ids.shape)], 1),
                     attention_mask=np.stack([mask, mask], 1))
    else:
        batch.update(input_ids=ids, attention_mask=mask)
    out, grads = value_and_grad(ours, rng=np.random.default_rng(7), **batch)
    recorder = Dropout(ours.config, np.random.default_rng(7))  # the same generator draws the same masks in order
    with ours.pinned_dropout(recorder):
        again = ours(**batch)  # the book's forward on this backend's masks
    assert abs(float(again.loss) - float(out.loss)) <= 1e-12 * abs(float(out.loss))
    hf_model.train()
    left = replay_dropout(hf_model, recorder.masks.values())
    theirs, expected = torch_gradients(hf_model, batch)
    assert left == [], f"{len(left)} masks transformers never asked for"
    tol = 1e-5 if cls_name == "DebertaV2ForSequenceClassification" else 1e-7  # its cross-entropy is float32
    assert abs(float(out.loss) - float(theirs.loss)) <= tol * (1 + abs(float(theirs.loss)))
    for name, reference in expected.items():
        diff = np.abs(grads[name] - reference).max()
        assert diff <= max(tol * np.abs(reference).max(), 1e-15), f"{name}: {diff:.3g}"
    eval_loss = ours.eval()(**batch).loss
    assert float(eval_loss) != float(out.loss)  # eval mode: no dropout


def test_train_mode_forward_draws_fresh_masks_and_eval_turns_them_off():
    hf_model = build_transformers_model("DebertaV2ForSequenceClassification", dict(V3_LIKE, hidden_dropout_prob=0.3))
    ours = to_pydeberta(hf_model)
    reference = ours(input_ids=FIXED_BATCH[0]).logits
    ours.train(seed=0)
    first, second = ours(input_ids=FIXED_BATCH[0]).logits, ours(input_ids=FIXED_BATCH[0]).logits
    assert not np.allclose(first, second) and not np.allclose(first, reference)
    assert np.array_equal(to_pydeberta(hf_model).train(seed=0)(input_ids=FIXED_BATCH[0]).logits, first)  # seeded
    np.testing.assert_array_equal(ours.eval()(input_ids=FIXED_BATCH[0]).logits, reference)
    with pytest.raises(TypeError, match="must be True or False"):
        ours.train("yes")
