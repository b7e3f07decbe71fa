"""pydeberta.model (the book's backbone) against transformers' modules, one block at a time, and
the intermediates it returns.

Each hypothesis example builds a tiny transformers model with perturbed weights and calls one of its
modules (embeddings, a layer) and the book's function of the same name on the same inputs:
within 1e-4 (float32) / 1e-8 (float64). The whole forward is compared in tests/test_modeling.py.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pydeberta
from oracle import TOLERANCE, assert_close, batches, build_transformers_model, configs
from pydeberta.functional import masked_softmax
from pydeberta.inputs import prepare_inputs
from pydeberta.model import backbone, embeddings, encoder_layer, relative_embeddings
from pydeberta.positions import relative_index
from pydeberta.weights import unflatten

V2_XLARGE_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                      max_position_embeddings=64, relative_attention=True, position_buckets=8,
                      max_relative_positions=32, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
                      position_biased_input=False, type_vocab_size=0, conv_kernel_size=3, conv_act="gelu",
                      attention_head_size=4)


def book_of(hf_model, dtype):
    """``(config, parameter tree)`` of a transformers model, in ``dtype``."""
    config = pydeberta.DebertaV2Config.from_dict(hf_model.config.to_dict())
    return config, unflatten({k: v.detach().numpy().astype(dtype) for k, v in hf_model.state_dict().items()})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=20)
@given(cfg=configs(), data=st.data())
def test_embeddings_match_transformers(dtype, cfg, data):
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    config, params = book_of(hf_model, dtype)
    ids, mask, types = data.draw(batches(cfg["vocab_size"], cfg.get("type_vocab_size", 0)))
    inputs = prepare_inputs(config, np.dtype(dtype), ids, mask, types)
    with torch.no_grad():
        theirs = hf_model.embeddings(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                                     mask=torch.from_numpy(mask))
    assert_close("embeddings", embeddings(params["embeddings"], config, inputs), theirs, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=20)
@given(cfg=configs(), data=st.data())
def test_encoder_layer_matches_transformers(dtype, cfg, data):
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    config, params = book_of(hf_model, dtype)
    ids, mask, _ = data.draw(batches(cfg["vocab_size"]))
    B, N = ids.shape
    hidden = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(
        (B, N, cfg["hidden_size"])).astype(dtype)
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)
    encoder = hf_model.encoder
    with torch.no_grad():
        h = torch.from_numpy(hidden)
        theirs, their_probs = encoder.layer[0](h, encoder.get_attention_mask(torch.from_numpy(mask)),
                                               relative_pos=encoder.get_rel_pos(h),
                                               rel_embeddings=encoder.get_rel_embedding(), output_attentions=True)
    P = index = None
    if config.relative_attention:
        P = relative_embeddings(params["encoder"], config)
        index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
    y, probs, _ = encoder_layer(hidden, params["encoder"]["layer"][0], config, visible, P, index)
    assert_close("layer output", y, theirs, TOLERANCE[dtype])
    assert_close("probs", probs, their_probs, TOLERANCE[dtype])


def test_backbone_returns_its_intermediates_which_reassemble_the_attention():
    """The study dict's c2c + c2p + p2c, masked and soft-maxed, are the returned attentions; the
    relative positions and index are the bucketed distances worked out by hand."""
    config = pydeberta.DebertaV2Config(**V2_XLARGE_LIKE)
    params = unflatten(pydeberta.DebertaV2Model(config, dtype=np.float64, seed=0).params)
    ids = np.array([[1, 4, 9, 16, 25, 36, 2], [1, 5, 2, 0, 0, 0, 0]])
    mask = (ids > 0).astype(int)
    mask[:, 0] = 1
    hidden_states, attentions, study = backbone(params, config, prepare_inputs(config, np.dtype(np.float64), ids, mask))
    assert len(hidden_states) == 3 and len(attentions) == 2
    visible = (mask[:, None, :, None] * mask[:, None, None, :]) > 0
    for layer in range(2):
        scores = study["c2c"][layer] + study["c2p"][layer] + study["p2c"][layer]
        np.testing.assert_allclose(masked_softmax(scores, visible), attentions[layer], atol=1e-12)
    assert study["conv_output"].shape == (2, 7, 16)
    rel = np.arange(7)[:, None] - np.arange(7)[None, :]
    expected = np.where(np.abs(rel) <= 4, rel, np.sign(rel) * 5)  # bucket(5) = bucket(6) = 5 for (8, 32), by hand
    np.testing.assert_array_equal(study["relative_positions"], expected)
    np.testing.assert_array_equal(study["rel_index"], expected + 8)


def test_the_model_returns_the_book_s_intermediates_when_asked_and_nothing_otherwise(backend):
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**V2_XLARGE_LIKE), dtype=np.float64, seed=0)
    ids = np.array([[1, 4, 9, 2]])
    out = model(input_ids=ids, output_study=True, output_attentions=True)
    _, attentions, study = backbone(model.tree, model.config, prepare_inputs(model.config, model.dtype, ids))
    for name in ("c2c", "c2p", "p2c"):
        for ours, book in zip(getattr(out.study, name), study[name]):
            np.testing.assert_array_equal(ours, book)
    np.testing.assert_array_equal(out.study.conv_output, study["conv_output"])
    assert model(input_ids=ids).study is None
