"""DebertaV2Model against transformers on random tiny configs, and properties of the forward pass."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pydeberta
from oracle import (TOLERANCE, assert_close, assert_outputs_close, batches, build_transformers_model, configs,
                    to_pydeberta, torch_call)

V3_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
               max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=32,
               pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
               type_vocab_size=0)
V2_XLARGE_LIKE = dict(V3_LIKE, conv_kernel_size=3, conv_act="gelu", attention_head_size=4)


def run_both(cfg, data, dtype, **extra):
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    ours = to_pydeberta(hf_model, dtype=dtype)
    ids, mask, types = data
    kwargs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types, **extra)
    theirs = torch_call(hf_model, output_hidden_states=True, output_attentions=True, **kwargs)
    mine = ours(output_hidden_states=True, output_attentions=True, **kwargs)
    return mine, theirs


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
    mine, theirs = run_both(cfg, batch, dtype)
    assert len(mine.hidden_states) == cfg["num_hidden_layers"] + 1
    assert mine.last_hidden_state.dtype == dtype
    assert_outputs_close(mine, theirs, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_sequence_beyond_bucket_span_matches_transformers(dtype):
    """N = 70 > max_relative_positions = 32: buckets saturate and the index clamps, as in transformers."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 40, (2, 70))
    mask = np.ones((2, 70), int)
    mask[1, 50:] = 0
    mine, theirs = run_both(V2_XLARGE_LIKE, (ids, mask, np.zeros_like(ids)), dtype)
    assert_outputs_close(mine, theirs, TOLERANCE[dtype])


def test_inputs_embeds_and_position_ids_match_transformers():
    cfg = dict(V3_LIKE, position_biased_input=True, embedding_size=8, type_vocab_size=2)
    hf_model = build_transformers_model("DebertaV2Model", cfg)
    ours = to_pydeberta(hf_model)
    rng = np.random.default_rng(1)
    embeds = rng.normal(size=(2, 5, 8)).astype(np.float32)
    positions = np.array([[3, 4, 5, 6, 7], [0, 2, 4, 6, 8]])
    types = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    theirs = torch_call(hf_model, inputs_embeds=embeds, position_ids=positions, token_type_ids=types)
    mine = ours(inputs_embeds=embeds, position_ids=positions, token_type_ids=types)
    assert_close("last_hidden_state", mine.last_hidden_state, theirs.last_hidden_state, 1e-4)


def test_published_anchor_shape_of_hf_integration_test():
    """transformers' integration test masks position 0; padded query rows follow >= 4.47
    (uniform attention), so whole tensors match, not just real positions."""
    cfg = dict(V2_XLARGE_LIKE, vocab_size=100)
    ids = np.array([[0, 31, 14, 4, 9, 40, 12, 69, 46, 58, 2]])
    mask = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    mine, theirs = run_both(cfg, (ids, mask, np.zeros_like(ids)), np.float32)
    assert_outputs_close(mine, theirs, 1e-4)
    np.testing.assert_allclose(mine.attentions[0][0, :, 0], 1 / 11, rtol=1e-6)  # the masked query row is uniform


# ----------------------------------------------------------------------------- properties
def _model(cfg=V2_XLARGE_LIKE, dtype=np.float64):
    return pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**cfg), dtype=dtype, seed=0)


@settings(max_examples=15)
@given(data=batches(40))
def test_attention_rows_sum_to_one(data):
    ids, mask, _ = data
    out = _model()(input_ids=ids, attention_mask=mask, output_attentions=True)
    for probs in out.attentions:
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
        assert (probs[np.broadcast_to((mask[:, None, :, None] * (1 - mask[:, None, None, :])) > 0, probs.shape)] == 0).all()


@settings(max_examples=15)
@given(data=batches(40), pad=st.integers(1, 6))
def test_padding_does_not_change_real_positions(data, pad):
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
def test_batch_of_one_equals_batched(data):
    ids, mask, _ = data
    model = _model()
    batched = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    for b in range(ids.shape[0]):
        single = model(input_ids=ids[b:b + 1], attention_mask=mask[b:b + 1], output_attentions=True)
        np.testing.assert_allclose(single.last_hidden_state[0], batched.last_hidden_state[b], atol=1e-10)
        np.testing.assert_allclose(single.attentions[-1][0], batched.attentions[-1][b], atol=1e-12)


def test_study_terms_reassemble_the_attention():
    """The study output's c2c + c2p + p2c, masked and soft-maxed, are the returned attentions,
    and its conv output is what layer 0's output was mixed with."""
    from pydeberta.functional import masked_softmax

    model = _model()
    ids = np.array([[1, 4, 9, 16, 25, 36, 2], [1, 5, 2, 0, 0, 0, 0]])
    mask = (ids > 0).astype(int)
    mask[:, 0] = 1
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True, output_study=True)
    visible = (mask[:, None, :, None] * mask[:, None, None, :]) > 0
    for layer in range(2):
        scores = out.study.c2c[layer] + out.study.c2p[layer] + out.study.p2c[layer]
        np.testing.assert_allclose(masked_softmax(scores, visible), out.attentions[layer], atol=1e-12)
    assert out.study.conv_output.shape == (2, 7, 16)
    rel = np.arange(7)[:, None] - np.arange(7)[None, :]
    expected = np.where(np.abs(rel) <= 4, rel, np.sign(rel) * 5)  # bucket(5) = bucket(6) = 5 for (8, 32), by hand
    np.testing.assert_array_equal(out.study.relative_positions, expected)
    np.testing.assert_array_equal(out.study.rel_index, expected + 8)
    assert model(input_ids=ids).study is None


def test_relative_tables_are_computed_once_and_follow_replaced_weights():
    model = _model(dtype=np.float32)
    ids = np.array([[1, 2, 3]])
    first = model.relative_tables()
    model(input_ids=ids)
    assert model.relative_tables() is first  # reused across calls
    layer = model.tree["encoder"]["layer"][0]["attention"]["self"]["key_proj"]
    with pytest.raises(ValueError):
        layer["weight"][0, 0] = 1.0  # parameters are read-only: in-place edits cannot go stale
    layer["weight"] = layer["weight"] * 2  # replacing an array is noticed
    assert model.relative_tables() is not first
