"""Every task head against transformers: logits, losses (each problem type), both dtypes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pydeberta
from oracle import (TOLERANCE, assert_close, assert_outputs_close, batches, build_transformers_model, configs,
                    to_pydeberta, torch_call)

DTYPES = [np.float32, np.float64]


def compare(cls_name, cfg, inputs, dtype, labels=None):
    hf_model = build_transformers_model(cls_name, cfg, dtype)
    ours = to_pydeberta(hf_model, dtype=dtype)
    labels = labels or {}
    theirs = torch_call(hf_model, output_hidden_states=True, output_attentions=True, **inputs, **labels)
    mine = ours(output_hidden_states=True, output_attentions=True, **inputs, **labels)
    assert_outputs_close(mine, theirs, TOLERANCE[dtype])
    if labels:
        assert mine.loss is not None and mine.loss.shape == ()
    return mine


def inputs_of(batch):
    ids, mask, types = batch
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("legacy", [True, False])
@settings(max_examples=12)
@given(cfg=configs(), data=st.data())
def test_masked_lm_matches_transformers(dtype, legacy, cfg, data):
    cfg = dict(cfg, legacy=legacy)
    if not legacy:  # transformers 4.57 crashes on tied non-legacy heads; Microsoft's layout needs E == C
        cfg.update(tie_word_embeddings=False, embedding_size=cfg["hidden_size"])
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    labels = np.where(np.random.default_rng(0).random(batch[0].shape) < 0.5, batch[0], -100)
    compare("DebertaV2ForMaskedLM", cfg, inputs_of(batch), dtype, {"labels": labels})


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=12)
@given(cfg=configs(), data=st.data(), num_labels=st.integers(1, 4),
       problem=st.sampled_from([None, "regression", "single_label_classification", "multi_label_classification"]),
       soft=st.booleans())
def test_sequence_classification_matches_transformers(dtype, cfg, data, num_labels, problem, soft):
    cfg = dict(cfg, num_labels=num_labels, problem_type=problem)
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    B = batch[0].shape[0]
    rng = np.random.default_rng(1)
    if problem == "regression" or (problem is None and num_labels == 1):
        labels = rng.normal(size=(B, num_labels) if num_labels > 1 else (B,)).astype(dtype)
    elif problem == "multi_label_classification":
        labels = (rng.random((B, num_labels)) < 0.5).astype(dtype)
    elif problem is None and soft:
        labels = rng.dirichlet(np.ones(num_labels), B).astype(dtype)
    else:
        labels = rng.integers(-1 if problem is None else 0, num_labels, B)  # negative labels are ignored
    compare("DebertaV2ForSequenceClassification", cfg, inputs_of(batch), dtype, {"labels": labels})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_classification_with_every_label_ignored_has_zero_loss(dtype):
    cfg = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
               num_labels=3)
    out = compare("DebertaV2ForSequenceClassification", cfg, {"input_ids": np.array([[1, 2, 3], [4, 5, 6]])},
                  dtype, {"labels": np.array([-1, -1])})
    assert out.loss == 0


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=12)
@given(cfg=configs(), data=st.data(), num_labels=st.integers(1, 5))
def test_token_classification_matches_transformers(dtype, cfg, data, num_labels):
    cfg = dict(cfg, num_labels=num_labels)
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    rng = np.random.default_rng(2)
    labels = np.where(batch[1] > 0, rng.integers(0, num_labels, batch[0].shape), -100)
    compare("DebertaV2ForTokenClassification", cfg, inputs_of(batch), dtype, {"labels": labels})


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=12)
@given(cfg=configs(), data=st.data())
def test_question_answering_matches_transformers(dtype, cfg, data):
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    B, N = batch[0].shape
    rng = np.random.default_rng(3)
    starts = rng.integers(0, N + 3, B)  # beyond N: clamped to N and ignored, as transformers
    ends = rng.integers(0, N + 3, B)
    compare("DebertaV2ForQuestionAnswering", cfg, inputs_of(batch), dtype,
            {"start_positions": starts, "end_positions": ends})


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=12)
@given(cfg=configs(), data=st.data(), choices=st.integers(1, 3))
def test_multiple_choice_matches_transformers(dtype, cfg, data, choices):
    batch = data.draw(batches(cfg["vocab_size"], cfg["type_vocab_size"]))
    B = batch[0].shape[0]
    stacked = {k: np.stack([np.roll(v, c, axis=1) for c in range(choices)], axis=1)
               for k, v in inputs_of(batch).items()}  # [B, choices, N]
    stacked["attention_mask"][..., 0] = 1
    labels = np.random.default_rng(4).integers(0, choices, B)
    out = compare("DebertaV2ForMultipleChoice", cfg, stacked, dtype, {"labels": labels})
    assert out.logits.shape == (B, choices)


def test_question_answering_rejects_a_head_without_two_outputs():
    with pytest.raises(ValueError, match="num_labels == 2"):
        pydeberta.DebertaV2ForQuestionAnswering(pydeberta.DebertaV2Config(
            vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
            num_labels=3))


def test_outputs_read_by_attribute_key_and_index():
    cfg = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    hf_model = build_transformers_model("DebertaV2ForSequenceClassification", cfg)
    ours = to_pydeberta(hf_model)
    out = ours(input_ids=[[1, 2, 3]], labels=[1])
    theirs = torch_call(hf_model, input_ids=np.array([[1, 2, 3]]), labels=np.array([1]))
    assert out.keys() == ["loss", "logits"]
    assert out["logits"] is out.logits and out[1] is out.logits and out[0] is out.loss
    assert_close("loss", out[0], theirs[0], 1e-5)
