"""pydeberta.attention (the book) against transformers' ``DisentangledSelfAttention`` module and a
hand-worked example.

Each hypothesis example builds a tiny transformers model with perturbed weights, takes its first
layer's attention module, and calls it and the book's function on the same hidden states, mask,
relative positions and relative table: the context and the probabilities must agree within 1e-4
(float32) / 1e-8 (float64).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pydeberta
from oracle import TOLERANCE, assert_close, batches, build_transformers_model, configs
from pydeberta.attention import (attention_scale, attention_score_terms, disentangled_self_attention, merge_heads,
                                 split_heads)
from pydeberta.model import relative_embeddings
from pydeberta.positions import relative_index
from pydeberta.weights import unflatten


def book_params(hf_model, dtype):
    """The transformers model's weights as the book's parameter tree, in ``dtype``."""
    state = {k: v.detach().numpy().astype(dtype) for k, v in hf_model.state_dict().items()}
    return unflatten(state)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25)
@given(cfg=configs(relative_attention=True), data=st.data())
def test_disentangled_self_attention_matches_transformers(dtype, cfg, data):
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    config = pydeberta.DebertaV2Config.from_dict(hf_model.config.to_dict())
    params = book_params(hf_model, dtype)
    ids, mask, _ = data.draw(batches(cfg["vocab_size"]))
    B, N = ids.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    hidden = rng.standard_normal((B, N, cfg["hidden_size"])).astype(dtype)
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]

    encoder = hf_model.encoder
    with torch.no_grad():
        h = torch.from_numpy(hidden)
        theirs, their_probs = encoder.layer[0].attention.self(
            h, encoder.get_attention_mask(torch.from_numpy(mask)), output_attentions=True,
            relative_pos=encoder.get_rel_pos(h), rel_embeddings=encoder.get_rel_embedding())
    P = relative_embeddings(params["encoder"], config)  # [2S, C]
    index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)
    context, probs, terms = disentangled_self_attention(hidden, params["encoder"]["layer"][0]["attention"]["self"],
                                                        config, visible, P, index)
    assert_close("context", context, theirs, TOLERANCE[dtype])
    assert_close("probs", probs, their_probs, TOLERANCE[dtype])
    assert set(terms) == {"c2c"} | set(config.pos_att)


def test_score_terms_by_hand():
    """One head, D = 1, N = 2, S = 1 (table rows: distance -1 -> row 0, distance >= 0 -> row 1).

    q = [1, 2], k = [3, 4], Kr = [10, 20], Qr = [100, 200], scale = 2:
      c2c[i, j] = q_i k_j / 2                  = [[1.5, 2], [3, 4]]
      c(i, j) = clip(i - j + 1, 0, 1)          = [[1, 0], [1, 1]]
      c2p[i, j] = q_i Kr[c(i, j)] / 2          = [[10, 5], [20, 20]]
      p2c[i, j] = k_j Qr[c(i, j)] / 2          = [[300, 200], [300, 400]]
    """
    q = np.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    k = np.array([3.0, 4.0]).reshape(1, 1, 2, 1)
    Kr, Qr = np.array([10.0, 20.0]).reshape(1, 2, 1), np.array([100.0, 200.0]).reshape(1, 2, 1)
    index = relative_index(2, 2, 1)
    np.testing.assert_array_equal(index, [[1, 0], [1, 1]])
    terms = attention_score_terms(q, k, 2.0, Kr, Qr, index)
    np.testing.assert_array_equal(terms["c2c"][0, 0], [[1.5, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(terms["c2p"][0, 0], [[10.0, 5.0], [20.0, 20.0]])
    np.testing.assert_array_equal(terms["p2c"][0, 0], [[300.0, 200.0], [300.0, 400.0]])


def test_scale_is_the_float32_square_root_widened():
    """sqrt(D * (1 + #terms)) as transformers takes it: in float32, then cast."""
    assert attention_scale(64, {"c2p", "p2c"}, np.dtype(np.float64)) == np.float64(np.sqrt(np.float32(192)))
    assert attention_scale(64, set(), np.dtype(np.float32)) == np.float32(8)


def test_split_and_merge_heads_are_inverse():
    x = np.arange(2 * 3 * 12, dtype=float).reshape(2, 3, 12)
    heads = split_heads(x, 4)  # [B, H, N, D]
    assert heads.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(heads[1, 2, 0], x[1, 0, 6:9])  # head 2 holds features 6..8
    np.testing.assert_array_equal(merge_heads(heads), x)
