"""Checkpoint files <-> ``dict[str, np.ndarray]``, without torch.

A Hugging Face model folder holds its weights in one of four layouts, looked for in this order:

    model.safetensors                  one safetensors file
    model.safetensors.index.json       sharded: {"weight_map": {key: "model-00001-of-00002.safetensors"}}
    pytorch_model.bin                  one torch.save file (read by :mod:`pydeberta.torch_pickle`)
    pytorch_model.bin.index.json       sharded: {"weight_map": {key: "pytorch_model-00001-of-00002.bin"}}

safetensors (https://github.com/huggingface/safetensors) is a little-endian byte buffer behind a
JSON header::

    [8 bytes: header size N, u64 little-endian]
    [N bytes: JSON {"key": {"dtype": "F32", "shape": [50, 16], "data_offsets": [begin, end]},
                    "__metadata__": {"format": "pt"}}]
    [the tensors' bytes, back to back]

The `safetensors` package validates the header and hands back each tensor's bytes; NumPy reads
them. NumPy has no bfloat16, so BF16 is widened to float32 (see
:func:`pydeberta.torch_pickle.bfloat16_to_float32`).

Public API:
    read_state_dict(folder)             the folder's weights, float16/bfloat16 upcast to float32
    read_safetensors(path), write_safetensors(path, state_dict)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from .errors import CheckpointError
from .torch_pickle import bfloat16_to_float32, read_torch_bin

__all__ = ["CHECKPOINT_FILES", "read_safetensors", "read_state_dict", "write_safetensors"]


CHECKPOINT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""The weight files `read_state_dict` looks for, first found wins (transformers' order)."""


def read_state_dict(folder) -> dict[str, np.ndarray]:
    """Read the weights of a model folder, whichever of `CHECKPOINT_FILES` it holds.

    Keys are returned exactly as stored (no renaming). float16 and bfloat16 tensors are upcast to
    float32; float32, float64, integer and bool tensors keep their dtype.

    Args:
        folder: str or os.PathLike of a folder (see `resolve_model_folder`).

    Returns:
        dict key -> writable np.ndarray; no two arrays share memory.

    Raises:
        FileNotFoundError: the folder does not exist, holds none of `CHECKPOINT_FILES` (the message
            lists them), or an index lists a shard that is not there (the message names it).
        CheckpointError: a file is truncated or corrupt, an index is malformed, or a key listed in
            an index is not in its shard.
        UnsafeCheckpointError: a .bin pickle names a global a state dict does not need.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"read_state_dict: {str(folder)!r} is not a folder")
    for name in CHECKPOINT_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        raise FileNotFoundError(
            f"read_state_dict: no checkpoint in {str(folder)!r}; looked for {', '.join(CHECKPOINT_FILES)}"
        )
    read_file = read_safetensors if ".safetensors" in name else read_torch_bin
    state = _read_sharded(path, read_file) if name.endswith(".index.json") else read_file(path)
    return {key: value.astype(np.float32) if value.dtype == np.float16 else value for key, value in state.items()}


def _read_sharded(index_path: Path, read_file) -> dict[str, np.ndarray]:
    """Read every shard named in an index's ``weight_map`` (in the index's folder) with `read_file`."""
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = dict.fromkeys(weight_map.values())  # unique, in order of first mention
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{index_path}: expected JSON with a \"weight_map\" object {{key: shard file name}}; {error!r}"
        ) from error
    state = {}
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise CheckpointError(f"{index_path}: shard {shard!r} is not a file name in the index's folder")
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index_path} lists shard {shard!r}, but {shard_path} does not exist")
        tensors = read_file(shard_path)
        missing = [key for key, where in weight_map.items() if where == shard and key not in tensors]
        if missing:
            raise CheckpointError(
                f"{index_path} puts {len(missing)} key(s) in {shard!r} that the shard does not hold: "
                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
            )
        state.update(tensors)
    return state


# ------------------------------------------------------------------------------------------------
# safetensors
# ------------------------------------------------------------------------------------------------

# safetensors dtype -> how NumPy reads its bytes (BF16 as raw uint16 bits, then widened)
_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "C64": np.dtype("<c8"),
}
_WRITABLE_DTYPES = {dtype.newbyteorder("=") for name, dtype in _SAFETENSORS_DTYPES.items() if name != "BF16"}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Read a .safetensors file into NumPy arrays.

    dtypes are kept (F16 stays float16) except BF16, which NumPy lacks: it becomes float32,
    exactly. The whole file is read into memory, then each tensor is copied out once.

    Args:
        path: str or os.PathLike of a .safetensors file.

    Returns:
        dict key -> writable np.ndarray.

    Raises:
        FileNotFoundError / OSError: the file cannot be opened.
        CheckpointError: truncated or corrupt (the message names the file and the library's
            complaint), or a dtype NumPy cannot hold (float8, ...).
    """
    path = Path(path)
    with open(path, "rb") as file:
        buffer = file.read()
    try:
        tensors = safetensors.deserialize(buffer)  # validates header and offsets; copies each tensor
    except safetensors.SafetensorError as error:
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {error}") from error
    state = {}
    for key, view in tensors:
        dtype = _SAFETENSORS_DTYPES.get(view["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"{path}: tensor {key!r} has dtype {view['dtype']}; NumPy reads only {', '.join(_SAFETENSORS_DTYPES)}"
            )
        array = np.frombuffer(view["data"], dtype).reshape(view["shape"])
        state[key] = bfloat16_to_float32(array) if view["dtype"] == "BF16" else array
    return state


def write_safetensors(path, state_dict, metadata=None) -> None:
    """Write NumPy arrays to a .safetensors file that transformers' from_pretrained loads.

    Arrays are written contiguous (C order) and little-endian. The header metadata is
    ``{"format": "pt", **metadata}``: transformers requires a "format" entry.

    Args:
        path: str or os.PathLike of the file to write (its folder must exist).
        state_dict: mapping str -> array-like of bool, int8..int64, uint8..uint64, float16,
            float32, float64 or complex64.
        metadata: optional dict str -> str stored in the header.

    Raises:
        TypeError: a key is not a str, or a value's dtype cannot be stored (the message names it).
        OSError: the file cannot be written.
    """
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"write_safetensors: keys must be str, got {key!r}")
        array = np.asarray(value, order="C")
        if array.dtype.newbyteorder("=") not in _WRITABLE_DTYPES:
            raise TypeError(
                f"write_safetensors: {key!r} has dtype {array.dtype}; safetensors stores "
                f"{', '.join(sorted(str(dtype) for dtype in _WRITABLE_DTYPES))}"
            )
        arrays[key] = array
    safetensors.numpy.save_file(arrays, os.fspath(path), metadata={"format": "pt", **(metadata or {})})
