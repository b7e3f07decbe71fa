"""Shared by the checkpoint-reading tests (test_checkpoint, test_torch_pickle, test_hub, the
tokenizer's from_pretrained): a tiny transformers model with perturbed weights, saved by transformers
itself, torch-side helpers, and a Hugging Face cache laid out as huggingface_hub does."""

import hashlib
import os

import numpy as np
import pytest
import torch
import transformers

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
