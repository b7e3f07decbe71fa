"""pydeberta.engine.pack: the parameters copied into one aligned buffer, values unchanged."""

import numpy as np
import pytest

import pydeberta
from pydeberta.engine.pack import pack


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_copies_every_tensor_into_one_aligned_buffer(dtype):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 5)), "b": rng.standard_normal(7).astype(np.float32),
              "c": np.arange(4.0).reshape(2, 2)[:, ::-1], "empty": np.zeros((0, 4))}
    packed = pack(params, dtype)
    assert list(packed) == list(params)
    base = packed["a"].base
    for key, value in params.items():
        view = packed[key]
        np.testing.assert_array_equal(view, np.asarray(value, dtype))
        assert view.dtype == dtype and view.flags.c_contiguous and view.flags.writeable
        assert view.base is base  # one buffer
        if view.size:
            assert view.ctypes.data % 64 == 0
    assert not np.may_share_memory(packed["c"], params["c"])  # a copy, never a view of the source


def test_model_parameters_live_in_one_buffer():
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
        relative_attention=True, position_buckets=8, pos_att_type="p2c|c2p"), seed=0)
    bases = {id(value.base) for value in model.params.values()}
    assert len(bases) == 1
