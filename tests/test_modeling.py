"""The model classes against transformers on random tiny configs, under every backend.

Each example builds one transformers model with perturbed weights, runs it once, and compares every
output tensor of pydeberta's class of the same name under each backend this installation has
(``reference``: the book; ``numpy``, ``cython``: the engine): within 1e-4 (float32) / 1e-8 (float64).
Then properties of the forward pass and of the parameters.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pydeberta
from conftest import BACKENDS
from oracle import (TOLERANCE, assert_close, assert_outputs_close, batches, build_transformers_model, choices_of,
                    configs, inputs_of, sequence_labels, to_pydeberta, torch_call)
from pydeberta.engine import backend as dispatch
from pydeberta.engine.attention import head_chunks

V3_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
               max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=32,
               pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
               type_vocab_size=0)
V2_XLARGE_LIKE = dict(V3_LIKE, conv_kernel_size=3, conv_act="gelu", attention_head_size=4)


def every_backend(model, **kwargs):
    """``{backend: model(**kwargs)}`` for each backend this installation has."""
    outputs = {}
    for name in BACKENDS:
        with dispatch.use_backend(name):
            outputs[name] = model(**kwargs)
    return outputs


def compare_backbone(cfg, data, dtype, **extra):
    """transformers' DebertaV2Model and pydeberta's under every backend on the same weights and
    inputs; every output within the dtype's tolerance. Returns pydeberta's outputs by backend."""
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    ours = to_pydeberta(hf_model, dtype=dtype)
    ids, mask, types = data
    kwargs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                  output_attentions=True, **extra)
    theirs = torch_call(hf_model, **kwargs)
    outputs = every_backend(ours, **kwargs)
    for name, mine in outputs.items():
        assert_outputs_close(mine, theirs, TOLERANCE[dtype], f"[{name}] ")
    return outputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30)
@given(cfg=configs(), data=st.data())
@example(cfg=V3_LIKE, data=None)
@example(cfg=V2_XLARGE_LIKE, data=None)
def test_model_matches_transformers(dtype, cfg, data):
    """Every output tensor (last hidden state, all hidden states, all attentions, padded rows
    included) equals transformers' within 1e-4 (float32) / 1e-8 (float64)."""
    batch = data.draw(batches(cfg["vocab_size"], cfg.get("type_vocab_size", 0))) if data else (
        np.array([[1, 5, 9, 3, 2, 0], [1, 7, 0, 0, 0, 0]]), np.array([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]]),
        np.zeros((2, 6), int))
    for mine in compare_backbone(cfg, batch, dtype).values():
        assert len(mine.hidden_states) == cfg["num_hidden_layers"] + 1
        assert mine.last_hidden_state.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_sequence_beyond_bucket_span_matches_transformers(dtype):
    """N = 70 > max_relative_positions = 32: buckets saturate and the index clamps, as in transformers."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 40, (2, 70))
    mask = np.ones((2, 70), int)
    mask[1, 50:] = 0
    compare_backbone(V2_XLARGE_LIKE, (ids, mask, np.zeros_like(ids)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_long_enough_for_several_head_chunks_matches_transformers(dtype):
    """N = 400 with 4 heads: the engine computes attention a chunk of heads at a time
    (pydeberta.engine.attention.head_chunks), here in more than one chunk, and still matches."""
    cfg = dict(V3_LIKE, position_buckets=64, max_relative_positions=512, max_position_embeddings=512)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 40, (2, 400))
    mask = np.ones((2, 400), int)
    mask[1, 300:] = 0
    R = 2 * 64  # the rows of the relative table that N = 400 reaches
    assert len(head_chunks(2, 4, 400, R, np.dtype(dtype).itemsize)) > 1
    compare_backbone(cfg, (ids, mask, np.zeros_like(ids)), dtype)


def test_inputs_embeds_and_position_ids_match_transformers():
    cfg = dict(V3_LIKE, position_biased_input=True, embedding_size=8, type_vocab_size=2)
    hf_model = build_transformers_model("DebertaV2Model", cfg)
    ours = to_pydeberta(hf_model)
    rng = np.random.default_rng(1)
    embeds = rng.normal(size=(2, 5, 8)).astype(np.float32)
    positions = np.array([[3, 4, 5, 6, 7], [0, 2, 4, 6, 8]])
    types = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    theirs = torch_call(hf_model, inputs_embeds=embeds, position_ids=positions, token_type_ids=types)
    for name, mine in every_backend(ours, inputs_embeds=embeds, position_ids=positions, token_type_ids=types).items():
        assert_close(f"[{name}] last_hidden_state", mine.last_hidden_state, theirs.last_hidden_state, 1e-4)


def test_published_anchor_shape_of_hf_integration_test():
    """transformers' integration test masks position 0; padded query rows follow >= 4.47
    (uniform attention), so whole tensors match, not just real positions."""
    cfg = dict(V2_XLARGE_LIKE, vocab_size=100)
    ids = np.array([[0, 31, 14, 4, 9, 40, 12, 69, 46, 58, 2]])
    mask = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    for mine in compare_backbone(cfg, (ids, mask, np.zeros_like(ids)), np.float32).values():
        np.testing.assert_allclose(mine.attentions[0][0, :, 0], 1 / 11, rtol=1e-6)  # the masked query row is uniform


# ----------------------------------------------------------------------------- properties
def _model(cfg=V2_XLARGE_LIKE, dtype=np.float64):
    return pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**cfg), dtype=dtype, seed=0)


@settings(max_examples=15)
@given(data=batches(40))
def test_attention_rows_sum_to_one(backend, data):
    ids, mask, _ = data
    out = _model()(input_ids=ids, attention_mask=mask, output_attentions=True)
    for probs in out.attentions:
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
        assert (probs[np.broadcast_to((mask[:, None, :, None] * (1 - mask[:, None, None, :])) > 0, probs.shape)] == 0).all()


@settings(max_examples=15)
@given(data=batches(40), pad=st.integers(1, 6))
def test_padding_does_not_change_real_positions(backend, data, pad):
    """A row padded on the right gives, at its real positions, what the unpadded row gives."""
    ids, _, _ = data
    model = _model()
    row = ids[:1]
    padded = np.concatenate([row, np.zeros((1, pad), int)], axis=1)
    mask = np.concatenate([np.ones_like(row), np.zeros((1, pad), int)], axis=1)
    alone = model(input_ids=row).last_hidden_state
    with_pads = model(input_ids=padded, attention_mask=mask).last_hidden_state
    np.testing.assert_allclose(with_pads[:, :row.shape[1]], alone, atol=1e-10)


@settings(max_examples=15)
@given(data=batches(40))
def test_batch_of_one_equals_batched(backend, data):
    ids, mask, _ = data
    model = _model()
    batched = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    for b in range(ids.shape[0]):
        single = model(input_ids=ids[b:b + 1], attention_mask=mask[b:b + 1], output_attentions=True)
        np.testing.assert_allclose(single.last_hidden_state[0], batched.last_hidden_state[b], atol=1e-10)
        np.testing.assert_allclose(single.attentions[-1][0], batched.attentions[-1][b], atol=1e-12)


def test_relative_tables_are_computed_once_and_follow_replaced_weights():
    model = _model(dtype=np.float32)
    ids = np.array([[1, 2, 3]])
    layer = model.tree["encoder"]["layer"][0]["attention"]["self"]["key_proj"]
    layer["weight"][0, 0] += 1.0  # before the engine derived anything, parameters are plain writable arrays
    with dispatch.use_backend("numpy"):
        model(input_ids=ids)
        first = model.engine().relative_tables()
        model(input_ids=ids)
        assert model.engine().relative_tables() is first  # reused across calls
        with pytest.raises(ValueError):
            layer["weight"][0, 0] = 1.0  # a source of the tables is read-only now: an edit cannot go stale
        layer["weight"] = layer["weight"] * 2  # replacing an array is noticed
        second = model.engine().relative_tables()
        assert second is not first
        replaced = model(input_ids=ids, output_hidden_states=True).last_hidden_state
    with dispatch.use_backend("reference"):
        np.testing.assert_allclose(replaced, model(input_ids=ids).last_hidden_state, atol=1e-5)
    value = model.tree["encoder"]["layer"][0]["attention"]["self"]["value_proj"]["weight"]
    value[0, 0] += 1.0  # not a source of any table: stays writable, and the engine reads it as it is
    with dispatch.use_backend("numpy"):
        edited = model(input_ids=ids).last_hidden_state
    with dispatch.use_backend("reference"):
        np.testing.assert_allclose(edited, model(input_ids=ids).last_hidden_state, atol=1e-5)
    assert not np.allclose(edited, replaced)


# ----------------------------------------------------------------------------- task models
DTYPES = [np.float32, np.float64]


def compare(cls_name, cfg, inputs, dtype, labels=None):
    """transformers' task model and pydeberta's under every backend: every output (logits, loss,
    hidden states, attentions) within the dtype's tolerance. Returns the reference backend's output."""
    hf_model = build_transformers_model(cls_name, cfg, dtype)
    ours = to_pydeberta(hf_model, dtype=dtype)
    labels = labels or {}
    theirs = torch_call(hf_model, output_hidden_states=True, output_attentions=True, **inputs, **labels)
    outputs = every_backend(ours, output_hidden_states=True, output_attentions=True, **inputs, **labels)
    for name, mine in outputs.items():
        assert_outputs_close(mine, theirs, TOLERANCE[dtype], f"[{name}] ")
        if labels:
            assert mine.loss is not None and mine.loss.shape == ()
    return outputs["reference"]


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
    labels = sequence_labels(problem, num_labels, soft, batch[0].shape[0], dtype)
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
    stacked = choices_of(batch, choices)
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


def test_from_pretrained_refuses_keywords_it_would_ignore(tmp_path):
    """transformers raises TypeError for a keyword that is neither a config field nor an option;
    storing it as a new field would silently ignore it (e.g. a misspelt option)."""
    pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**V3_LIKE), seed=0).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['load_in_8bit'\]"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path, load_in_8bit=True)
    with pytest.raises(TypeError, match="not both"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path, config=pydeberta.DebertaV2Config(**V3_LIKE), num_labels=3)
    model = pydeberta.DebertaV2ForSequenceClassification.from_pretrained(tmp_path, num_labels=3, layer_norm_eps=1e-5)
    assert model.config.num_labels == 3 and model.config.layer_norm_eps == 1e-5


def test_a_config_json_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"hidden_size": "\xff"}')
    with pytest.raises(ValueError, match=r"config.json is not UTF-8 text"):
        pydeberta.DebertaV2Config.from_pretrained(tmp_path)
