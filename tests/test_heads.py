"""pydeberta.heads (the book's head functions) against transformers' head modules.

The task models as a whole (logits and losses of every class) are compared in tests/test_modeling.py.
"""

import numpy as np
import pytest
import torch

import pydeberta
from oracle import TOLERANCE, assert_close, build_transformers_model
from pydeberta.heads import context_pooler, masked_lm_head
from pydeberta.weights import unflatten

CFG = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)


def book_of(hf_model, dtype):
    config = pydeberta.DebertaV2Config.from_dict(hf_model.config.to_dict())
    return config, unflatten({k: v.detach().numpy().astype(dtype) for k, v in hf_model.state_dict().items()})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["gelu", "tanh", "relu"])
def test_context_pooler_matches_transformers(dtype, act):
    hf_model = build_transformers_model("DebertaV2ForSequenceClassification", dict(CFG, pooler_hidden_act=act), dtype)
    config, params = book_of(hf_model, dtype)
    hidden = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(dtype)
    with torch.no_grad():
        theirs = hf_model.pooler(torch.from_numpy(hidden))
    ours = context_pooler(hidden, params["pooler"], config)  # [B, C]: token 0 only
    assert_close("pooled", ours, theirs, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("legacy, embedding_size", [(True, 8), (True, 6), (False, 8)])
def test_masked_lm_head_matches_transformers_in_either_layout(dtype, legacy, embedding_size):
    cfg = dict(CFG, legacy=legacy, embedding_size=embedding_size)
    if not legacy:  # transformers 4.57 crashes on tied non-legacy heads
        cfg["tie_word_embeddings"] = False
    hf_model = build_transformers_model("DebertaV2ForMaskedLM", cfg, dtype)
    config, params = book_of(hf_model, dtype)
    hidden = np.random.default_rng(1).standard_normal((2, 4, 8)).astype(dtype)
    word_embeddings = hf_model.deberta.embeddings.word_embeddings
    with torch.no_grad():
        h = torch.from_numpy(hidden)
        theirs = hf_model.cls(h) if legacy else hf_model.lm_predictions(h, word_embeddings)
    head = params["cls"] if legacy else params["lm_predictions"]
    ours = masked_lm_head(hidden, head, params["deberta"]["embeddings"]["word_embeddings"]["weight"], config)  # [B, N, V]
    assert_close("logits", ours, theirs, TOLERANCE[dtype])
