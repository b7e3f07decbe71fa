"""pydeberta.checkpoint: folders and safetensors files written by torch, transformers and
safetensors read back exactly.

The oracle is the library that wrote each file: every array must equal torch's tensor bit for bit
(bfloat16 compared after torch's own widening to float32).
"""

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpoints import TORCH_DTYPES, assert_same, to_numpy, torch_save
from pydeberta import checkpoint
from pydeberta.checkpoint import read_safetensors, read_state_dict, write_safetensors
from pydeberta.errors import CheckpointError

# ------------------------------------------------------------------------------------------------
# read_state_dict on transformers' own files
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shard_size", [None, "8KB"])  # 8KB shards even the float16 model
@pytest.mark.parametrize("safe", [True, False])
def test_read_state_dict_equals_transformers_state_dict(model, tmp_path, safe, shard_size, dtype):
    model = copy.deepcopy(model).to(dtype)
    model.save_pretrained(tmp_path, safe_serialization=safe, **({"max_shard_size": shard_size} if shard_size else {}))
    stem = "model.safetensors" if safe else "pytorch_model.bin"
    expected_file = f"{stem}.index.json" if shard_size else stem
    assert (tmp_path / expected_file).is_file()

    state = read_state_dict(tmp_path)

    assert_same(state, {key: to_numpy(value, upcast_half=True) for key, value in model.state_dict().items()})
    assert all(array.dtype == np.float32 for array in state.values())


def test_read_state_dict_prefers_safetensors_over_bin(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"w": np.ones(2, np.float32)})
    torch_save(tmp_path, {"w": torch.zeros(2)}, name="pytorch_model.bin")
    assert read_state_dict(tmp_path)["w"].tolist() == [1.0, 1.0]


def test_read_state_dict_without_checkpoint_lists_the_files_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        read_state_dict(tmp_path)
    for name in checkpoint.CHECKPOINT_FILES:
        assert name in str(error.value)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_state_dict(tmp_path / "nothing-here")


def copy_folder(source, target):
    target.mkdir()
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def test_missing_shard_is_named(bin_folder, tmp_path):
    folder = copy_folder(bin_folder, tmp_path / "model")
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        read_state_dict(folder)


def test_index_key_missing_from_its_shard_is_an_error(bin_folder, tmp_path):
    folder = copy_folder(bin_folder, tmp_path / "model")
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shard = next(iter(index["weight_map"].values()))
    index["weight_map"]["encoder.not_there.weight"] = shard
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="encoder.not_there.weight"):
        read_state_dict(folder)


@pytest.mark.parametrize("index_text", ['{"weight_map": {"w": "../outside.bin"}}', '{"no_map": 1}', "{not json"])
def test_malformed_index_is_an_error(tmp_path, index_text):
    (tmp_path / "pytorch_model.bin.index.json").write_text(index_text)
    with pytest.raises(CheckpointError, match="pytorch_model.bin.index.json"):
        read_state_dict(tmp_path)


def test_truncated_shard_is_named(bin_folder, tmp_path):
    folder = copy_folder(bin_folder, tmp_path / "model")
    shard = sorted(folder.glob("pytorch_model-*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=shard.name):
        read_state_dict(folder)


# ------------------------------------------------------------------------------------------------
# safetensors: reading torch's files, writing files transformers reads
# ------------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(TORCH_DTYPES),
    st.lists(st.integers(0, 4), max_size=3),
    st.integers(0, 2**31),
)
def test_read_safetensors_equals_torch(dtype, shape, seed):
    tensor = (torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 100).to(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.safetensors"
        safetensors.torch.save_file({"t": tensor}, path)
        assert_same(read_safetensors(path), {"t": to_numpy(tensor)})


def test_write_safetensors_loads_in_transformers(model, tmp_path):
    rng = np.random.default_rng(0)
    ours = {key: rng.standard_normal(value.shape).astype(np.float32) for key, value in model.state_dict().items()}
    ours["embeddings.word_embeddings.weight"] = np.asfortranarray(ours["embeddings.word_embeddings.weight"])
    model.config.save_pretrained(tmp_path)
    write_safetensors(tmp_path / "model.safetensors", ours)

    loaded = transformers.DebertaV2Model.from_pretrained(tmp_path)

    assert_same({key: to_numpy(value) for key, value in loaded.state_dict().items()}, ours)


def test_write_safetensors_round_trip_keeps_dtypes_and_metadata(tmp_path):
    ours = {
        "f64": np.linspace(0, 1, 6).reshape(2, 3), "f16": np.arange(4, dtype=np.float16),
        "big_endian": np.arange(3, dtype=">i4"), "bool": np.array([True, False]),
        "u64": np.array([2**64 - 1], np.uint64), "scalar": np.float32(2.5), "transposed": np.ones((2, 3), np.int8).T,
    }
    path = tmp_path / "x.safetensors"
    write_safetensors(path, ours, metadata={"source": "test"})
    assert_same(read_safetensors(path), {key: np.asarray(value).astype(np.asarray(value).dtype.newbyteorder("="))
                                         for key, value in ours.items()})
    with safetensors.safe_open(path, framework="numpy") as file:
        assert file.metadata() == {"format": "pt", "source": "test"}


@pytest.mark.parametrize("bad", [{"s": np.array(["text"])}, {"o": np.array([object()])}, {1: np.zeros(1)}])
def test_write_safetensors_refuses_what_it_cannot_store(tmp_path, bad):
    with pytest.raises(TypeError, match="write_safetensors"):
        write_safetensors(tmp_path / "x.safetensors", bad)



def halve(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path

def test_truncated_safetensors_names_the_file(safetensors_folder, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes((safetensors_folder / "model.safetensors").read_bytes())
    halve(path)
    with pytest.raises(CheckpointError, match="model.safetensors") as error:
        read_safetensors(path)
    assert "truncated" in str(error.value)


# ------------------------------------------------------------------------------------------------
# No torch needed
# ------------------------------------------------------------------------------------------------

def test_reading_checkpoints_does_not_import_torch(bin_folder, safetensors_folder, tmp_path):
    legacy = torch_save(tmp_path, {"w": torch.randn(3, 2).t()}, zip_format=False, name="pytorch_model.bin")
    code = (
        "import sys\n"
        "from pydeberta.checkpoint import read_state_dict\n"
        f"for folder in {[str(bin_folder), str(safetensors_folder), str(legacy.parent)]!r}:\n"
        "    assert read_state_dict(folder)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------
# Reading lazily: headers checked first, weights read straight into place
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lazy_tensors_read_what_the_eager_reader_reads(model, tmp_path, dtype):
    copy.deepcopy(model).to(dtype).save_pretrained(tmp_path, safe_serialization=True)
    eager = read_state_dict(tmp_path)
    lazy = read_state_dict(tmp_path, lazy=True)
    assert sorted(lazy) == sorted(eager)
    for key, tensor in lazy.items():
        assert isinstance(tensor, checkpoint.SafetensorsTensor) and tensor.shape == eager[key].shape
        out = np.empty(tensor.shape, np.float64)  # another dtype: converted on the way
        np.testing.assert_array_equal(tensor.read_into(out), eager[key])
        same = np.empty(tensor.shape, tensor.dtype)
        np.testing.assert_array_equal(tensor.read_into(same), np.asarray(tensor))


def safetensors_file(tmp_path, header, data=b"", size_field=None):
    """A file made by hand: [u64 header size][JSON header][data]."""
    text = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes((len(text) if size_field is None else size_field).to_bytes(8, "little") + text + data)
    return path


@pytest.mark.parametrize("header, data, size_field, message", [
    ({}, b"", 10**12, "the header claims 1000000000000 bytes"),
    ({"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}}, bytes(16), None, "needs"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), None, "ends at byte"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), None, "overlap"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), None, "integers >= 0"),
    ({"w": {"dtype": "F32", "shape": [1]}}, bytes(4), None, "data_offsets"),
    ({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, bytes(1), None, "NumPy reads only"),
    ([1, 2], b"", None, "not an object"),
])
def test_bad_headers_are_refused_before_anything_is_read(tmp_path, header, data, size_field, message):
    path = safetensors_file(tmp_path, header, data, size_field)
    with pytest.raises(CheckpointError, match=message) as error:
        checkpoint.open_safetensors(path)
    assert "model.safetensors" in str(error.value)


LOAD_MEMORY = """
import sys
import pydeberta

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

before = kib("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts again from here
model = pydeberta.DebertaV2Model.from_pretrained(sys.argv[1])
weights = sum(array.nbytes for array in model.params.values())
print((kib("VmHWM") - before) * 1024 / weights)
"""


def test_loading_holds_one_copy_of_the_weights(tmp_path):
    """A float32 safetensors checkpoint of ~40 MB: the process's peak memory while loading grows
    by at most 1.25x the weights (they go from the file straight into the model's buffer)."""
    cfg = dict(vocab_size=2000, hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024,
               relative_attention=True, position_buckets=64, pos_att_type="p2c|c2p", share_att_key=True)
    transformers.DebertaV2Model(transformers.DebertaV2Config(**cfg)).save_pretrained(tmp_path, safe_serialization=True)
    script = tmp_path / "load.py"
    script.write_text(LOAD_MEMORY)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) <= 1.25, f"loading peaked at {float(done.stdout):.2f}x the weights"
