"""pydeberta.checkpoint: files written by torch, transformers and safetensors read back exactly.

The oracle is the library that wrote each file: every array must equal torch's tensor bit for bit
(bfloat16 compared after torch's own widening to float32).
"""

import copy
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from pydeberta import checkpoint
from pydeberta.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    read_safetensors,
    read_state_dict,
    read_torch_bin,
    resolve_model_folder,
    write_safetensors,
)

TINY = dict(
    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
    max_position_embeddings=32, relative_attention=True, position_buckets=8, pos_att_type="p2c|c2p",
    share_att_key=True, norm_rel_ebd="layer_norm",
)
# torch dtypes a state dict may hold; NumPy has all of them but bfloat16
TORCH_DTYPES = [
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool, torch.complex64, torch.uint16, torch.uint32, torch.uint64,
]


def to_numpy(tensor, upcast_half=False):
    """torch's values as NumPy: bfloat16 (and float16 when upcast_half) widened by torch itself."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16 or (upcast_half and tensor.dtype == torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


def assert_same(ours, theirs):
    """Same keys, dtypes, shapes and values; a failure names the tensor and the largest difference."""
    assert sorted(ours) == sorted(theirs)
    for key, want in theirs.items():
        got = ours[key]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), (
            f"{key}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}"
        )
        if not np.array_equal(got, want):
            diff = np.abs(got.astype(np.complex128) - want.astype(np.complex128))
            where = np.unravel_index(np.argmax(diff), diff.shape)
            raise AssertionError(f"{key}: largest difference {diff.max()} at {where}")


@pytest.fixture(scope="module")
def model():
    """A tiny DebertaV2Model whose weights are moved away from their init (ones and zeros hide bugs)."""
    torch.manual_seed(0)
    model = transformers.DebertaV2Model(transformers.DebertaV2Config(**TINY))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def bin_folder(model, tmp_path_factory):
    """transformers' sharded pytorch_model-0000x-of-0000n.bin + index."""
    folder = tmp_path_factory.mktemp("sharded_bin")
    model.save_pretrained(folder, safe_serialization=False, max_shard_size="20KB")
    return folder


@pytest.fixture(scope="module")
def safetensors_folder(model, tmp_path_factory):
    """transformers' single model.safetensors."""
    folder = tmp_path_factory.mktemp("single_safetensors")
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def torch_save(tmp_path, obj, zip_format=True, name="weights.bin"):
    """torch.save `obj` into tmp_path, as a zip archive or in the legacy stream format."""
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


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
# read_torch_bin: dtypes, views, tied storage, both file formats
# ------------------------------------------------------------------------------------------------

@st.composite
def tensor_views(draw):
    """A random tensor and a view of it: sliced (offset, step), maybe permuted, maybe expanded."""
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    shape = draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    base = (torch.randn(shape, generator=generator, dtype=torch.float64) * 100).to(dtype)
    slices = tuple(slice(draw(st.integers(0, n - 1)), None, draw(st.integers(1, 2))) for n in shape)
    view = base[slices].permute(tuple(draw(st.permutations(range(len(shape))))))
    if draw(st.booleans()):
        view = view.unsqueeze(0).expand(2, *view.shape)  # stride 0
    return base, view


@settings(max_examples=60, deadline=None)
@given(tensor_views(), st.booleans())
def test_read_torch_bin_equals_torch_for_views(base_and_view, zip_format):
    base, view = base_and_view
    with tempfile.TemporaryDirectory() as folder:
        state = read_torch_bin(torch_save(Path(folder), {"base": base, "view": view}, zip_format))
    assert_same(state, {"base": to_numpy(base), "view": to_numpy(view)})
    assert state["view"].flags.c_contiguous and state["view"].flags.writeable


@pytest.mark.parametrize("zip_format", [True, False])
def test_tied_tensors_sharing_one_storage(tmp_path, zip_format):
    weight = torch.randn(4, 6)
    tied = {"a": weight, "b": weight, "t": weight.t(), "slice": weight[1:, ::2], "row": weight[2], "empty": weight[:0]}
    path = torch_save(tmp_path, tied, zip_format)
    if zip_format:
        assert sum("/data/" in name for name in zipfile.ZipFile(path).namelist()) == 1  # one storage on disk
    assert_same(read_torch_bin(path), {key: to_numpy(value) for key, value in tied.items()})


def test_big_endian_archive(tmp_path):
    """A file written on a big-endian machine: byteorder "big" and every storage byte-swapped."""
    state = {"w": torch.randn(3, 4).t(), "i": torch.arange(5)}
    little = torch_save(tmp_path, state)
    big = tmp_path / "big.bin"
    with zipfile.ZipFile(little) as source, zipfile.ZipFile(big, "w") as target:
        storage_dtypes = {"0": "f4", "1": "i8"}  # pickled in dict order: w, then i
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                data = np.frombuffer(data, "<" + storage_dtypes[name.rsplit("/", 1)[1]]).byteswap().tobytes()
            target.writestr(name, data)
    assert_same(read_torch_bin(big), {key: to_numpy(value) for key, value in state.items()})


def test_parameters_and_ordered_dicts(tmp_path):
    state = OrderedDict(p=torch.nn.Parameter(torch.randn(3, 2)), n=torch.tensor(7), b=torch.tensor(1.5).bfloat16())
    assert_same(read_torch_bin(torch_save(tmp_path, state)), {key: to_numpy(value) for key, value in state.items()})


def test_read_torch_bin_agrees_with_torch_load_on_transformers_shards(bin_folder):
    for shard in sorted(bin_folder.glob("pytorch_model-*.bin")):
        theirs = torch.load(shard, weights_only=True)
        assert_same(read_torch_bin(shard), {key: to_numpy(value) for key, value in theirs.items()})


@pytest.mark.parametrize("obj", [[torch.ones(2)], {"nested": {"w": torch.ones(2)}}, {"n": 3}])
def test_non_state_dicts_are_refused(tmp_path, obj):
    with pytest.raises(CheckpointError, match="weights.bin"):
        read_torch_bin(torch_save(tmp_path, obj))


# ------------------------------------------------------------------------------------------------
# Crafted pickles never run code
# ------------------------------------------------------------------------------------------------

class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload", [RunsShell, RunsPython])
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_bare_malicious_pickle_is_refused(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps({"w": payload(marker)}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match=r"(system|exec)") as error:
        read_torch_bin(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [RunsShell, RunsPython])
def test_malicious_pickle_inside_torch_zip_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = torch_save(tmp_path, {"w": torch.ones(2), "evil": payload(marker)})  # torch.save writes it as is
    with pytest.raises(UnsafeCheckpointError, match=r"(system|exec)"):
        read_torch_bin(path)
    with pytest.raises(pickle.UnpicklingError):  # torch's own safe loader agrees
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_malicious_data_pkl_swapped_into_a_real_archive_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    real = torch_save(tmp_path, {"w": torch.ones(2)})
    forged = tmp_path / "forged.bin"
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(forged, "w") as target:
        for name in source.namelist():
            evil = name.endswith("/data.pkl")
            target.writestr(name, pickle.dumps({"w": RunsShell(marker)}, protocol=2) if evil else source.read(name))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_torch_bin(forged)
    assert not marker.exists()


class _Storage:
    """Pickled as a persistent id, the way torch.save pickles a storage."""


class _OutOfBounds:
    """A tensor claiming 100 elements of a 4-element storage."""

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_Storage(), 0, (100,), (1,), False, OrderedDict())


class _StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, _Storage) else None


def test_view_outside_its_storage_is_refused(tmp_path):
    data = io.BytesIO()
    _StoragePickler(data, protocol=2).dump({"w": _OutOfBounds()})
    path = tmp_path / "oob.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data.getvalue())
        archive.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
        archive.writestr("archive/byteorder", "little")
    with pytest.raises(CheckpointError, match="reaches element 99"):
        read_torch_bin(path)


# ------------------------------------------------------------------------------------------------
# Truncated and corrupt files
# ------------------------------------------------------------------------------------------------

def halve(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_bin_names_the_file(tmp_path, zip_format):
    path = halve(torch_save(tmp_path, {"w": torch.randn(64, 64)}, zip_format))
    with pytest.raises(CheckpointError, match="weights.bin") as error:
        read_torch_bin(path)
    assert "truncated" in str(error.value)


def test_corrupt_storage_bytes_fail_the_zip_checksum(tmp_path):
    path = torch_save(tmp_path, {"w": torch.zeros(256)})
    raw = bytearray(path.read_bytes())
    raw[raw.index(bytes(64)) + 10] ^= 0xFF  # flip a byte inside the all-zero storage
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match="weights.bin"):
        read_torch_bin(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.bin"):
        read_torch_bin(path)


def test_truncated_safetensors_names_the_file(safetensors_folder, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes((safetensors_folder / "model.safetensors").read_bytes())
    halve(path)
    with pytest.raises(CheckpointError, match="model.safetensors") as error:
        read_safetensors(path)
    assert "truncated" in str(error.value)


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


# ------------------------------------------------------------------------------------------------
# resolve_model_folder
# ------------------------------------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(cache, repo_id, files):
    """Lay out `files` as huggingface_hub's cache does: refs/main -> commit, snapshots/<commit>/<name>
    a relative symlink to blobs/<hash>. (huggingface_hub >= 0.23, constants.REPO_ID_SEPARATOR "--".)"""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.fixture
def cached_repo(safetensors_folder, tmp_path):
    """A cache holding "org/tiny-deberta", checked against huggingface_hub's own cache readers."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    files = {name: (safetensors_folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    snapshot = hf_cache(cache, "org/tiny-deberta", files)
    found = huggingface_hub.try_to_load_from_cache("org/tiny-deberta", "config.json", cache_dir=cache)
    assert found == str(snapshot / "config.json")
    info = huggingface_hub.scan_cache_dir(cache)
    assert [repo.repo_id for repo in info.repos] == ["org/tiny-deberta"] and not info.warnings
    return cache, snapshot


def test_resolve_hub_id_from_cache_with_local_files_only(cached_repo):
    cache, snapshot = cached_repo
    folder = resolve_model_folder("org/tiny-deberta", cache_dir=cache, local_files_only=True)
    assert folder == snapshot
    assert sorted(read_state_dict(folder)) == sorted(read_state_dict(snapshot.resolve()))
    assert resolve_model_folder("org/tiny-deberta", revision=COMMIT, cache_dir=cache, local_files_only=True) == snapshot


def test_resolve_hub_id_from_cache_with_hf_hub_offline(cached_repo, monkeypatch):
    cache, snapshot = cached_repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_folder("org/tiny-deberta", cache_dir=cache) == snapshot


def test_resolve_missing_hub_id_names_it(cached_repo, monkeypatch):
    cache, _ = cached_repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="org/missing.*local Hugging Face cache"):
        resolve_model_folder("org/missing", cache_dir=cache)


def test_connection_error_retries_from_cache(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def snapshot_download(repo_id, *, local_files_only, **kwargs):
        calls.append((local_files_only, kwargs["allow_patterns"]))
        if not local_files_only:
            raise ConnectionError("network unreachable")
        return str(tmp_path)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_model_folder("org/name") == tmp_path
    assert calls == [(False, list(checkpoint.HUB_FILES)), (True, list(checkpoint.HUB_FILES))]


def test_hub_id_without_huggingface_hub_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(FileNotFoundError, match="pip install huggingface_hub"):
        resolve_model_folder("org/name")


def test_resolve_local_folder_file_and_bundled_name(safetensors_folder, monkeypatch):
    assert resolve_model_folder(safetensors_folder) == safetensors_folder
    assert resolve_model_folder(str(safetensors_folder / "config.json")) == safetensors_folder
    monkeypatch.setitem(checkpoint.BUNDLED_MODELS, "tiny-deberta", safetensors_folder)
    assert resolve_model_folder("tiny-deberta") == safetensors_folder


@pytest.mark.parametrize("name", ["no-such-model", "./no/such/folder", "a/b/c", "../x"])
def test_resolve_neither_path_nor_hub_id(name):
    with pytest.raises(FileNotFoundError, match="not a Hugging Face Hub id"):
        resolve_model_folder(name)


@pytest.mark.parametrize("name, is_hub_id", [
    ("microsoft/deberta-v3-base", True), ("org/name_1.0", True), ("org/name", True),
    ("./name", False), ("../name", False), ("org/a/b", False), ("org/-name", False), ("org/na--me", False),
    ("org/na..me", False), ("name", False), ("org/", False),
])
def test_hub_id_pattern(name, is_hub_id):
    assert bool(checkpoint._HUB_ID.fullmatch(name)) == is_hub_id


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
