"""pydeberta.conv (the book's nGiE convolution) against torch's conv1d and transformers' ConvLayer."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import pydeberta
from oracle import TOLERANCE, assert_close, build_transformers_model
from pydeberta.conv import conv1d, conv_layer
from pydeberta.weights import unflatten


@settings(max_examples=40)
@given(B=st.integers(1, 3), N=st.integers(1, 9), groups=st.sampled_from([1, 2, 4]), per_group=st.integers(1, 3),
       k=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**32 - 1))
def test_conv1d_is_torch_conv1d_with_same_padding(B, N, groups, per_group, k, seed):
    C = groups * per_group
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, N, C))
    weight, bias = rng.standard_normal((C, C // groups, k)), rng.standard_normal(C)
    theirs = TF.conv1d(torch.from_numpy(x).permute(0, 2, 1), torch.from_numpy(weight), torch.from_numpy(bias),
                       padding=(k - 1) // 2, groups=groups).permute(0, 2, 1)
    assert_close("conv1d", conv1d(x, weight, bias, groups), theirs, 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act, groups, k", [("gelu", 1, 3), ("tanh", 2, 5), ("relu", 4, 1)])
def test_conv_layer_matches_transformers(dtype, act, groups, k):
    cfg = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
               conv_kernel_size=k, conv_groups=groups, conv_act=act)
    hf_model = build_transformers_model("DebertaV2Model", cfg, dtype)
    config = pydeberta.DebertaV2Config.from_dict(hf_model.config.to_dict())
    params = unflatten({k: v.detach().numpy() for k, v in hf_model.state_dict().items()})
    rng = np.random.default_rng(0)
    embedding_output, layer_output = (rng.standard_normal((2, 6, 8)).astype(dtype) for _ in range(2))
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    embedding_output = embedding_output * mask[..., None].astype(dtype)  # padded rows of E0 are zero
    with torch.no_grad():
        theirs = hf_model.encoder.conv(torch.from_numpy(embedding_output), torch.from_numpy(layer_output),
                                       torch.from_numpy(mask))
    ours, out = conv_layer(embedding_output, layer_output, mask.astype(dtype), params["encoder"]["conv"], config)
    assert_close("conv layer", ours, theirs, TOLERANCE[dtype])
    assert not out[1, 3:].any()  # the convolution is zero at padded positions before the activation
