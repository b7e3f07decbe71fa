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
    read_state_dict(folder, lazy=False) the folder's weights, float16/bfloat16 upcast to float32
    open_safetensors(path)              a file's tensors from its checked header, read when used
    read_safetensors(path), write_safetensors(path, state_dict)
    read_json(path)                     any JSON file of the folder (config, index, tokenizer files)
    read_json_object(path)              the same, required to hold an object (config.json, tokenizer files)
"""

from __future__ import annotations

import functools
import json
import math
import os
import reprlib
from pathlib import Path

import numpy as np
import safetensors.numpy

from .errors import CheckpointError
from .torch_pickle import bfloat16_to_float32, read_torch_bin

__all__ = ["CHECKPOINT_FILES", "SafetensorsTensor", "open_safetensors", "read_json", "read_safetensors",
           "read_state_dict", "write_safetensors"]


CHECKPOINT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""The weight files `read_state_dict` looks for, first found wins (transformers' order)."""


# The JSON files of a checkpoint nest three or four levels; deeper values would exhaust Python's
# recursion in whatever copies or prints them (copy.deepcopy, repr).
MAX_JSON_NESTING = 32


def read_json(path):
    """The value of a JSON file of a checkpoint folder (``config.json``, an index, a tokenizer file).

    Raises:
        FileNotFoundError / OSError: the file cannot be opened.
        CheckpointError: naming the file: not UTF-8, not JSON, or nested more than
            :data:`MAX_JSON_NESTING` levels deep.
    """
    with open(path, "rb") as file:
        return _parse_json(file.read(), str(path))


def read_json_object(path):
    """:func:`read_json` of a file that must hold a JSON object (``config.json``, the tokenizer's
    files); a :class:`CheckpointError` naming the file otherwise."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _parse_json(data: bytes, where):
    """:func:`read_json` of bytes already read; errors begin with ``where`` (the file, or the part of it)."""
    too_deep = CheckpointError(f"{where} nests JSON values more than {MAX_JSON_NESTING} levels deep")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{where} is not UTF-8 text ({error})") from None
    except ValueError as error:
        raise CheckpointError(f"{where} is not valid JSON ({error})") from None
    except RecursionError:  # deeper than the parser goes
        raise too_deep from None
    if _nesting(value) > MAX_JSON_NESTING:
        raise too_deep
    return value


def _nesting(value) -> int:
    """How many lists and objects deep ``value`` goes (0 for a number or a string), counted without
    recursion and only to one level past :data:`MAX_JSON_NESTING`."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= MAX_JSON_NESTING:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_state_dict(folder, lazy=False) -> dict[str, np.ndarray]:
    """Read the weights of a model folder, whichever of `CHECKPOINT_FILES` it holds.

    Keys are returned exactly as stored (no renaming). float16 and bfloat16 tensors are upcast to
    float32; float32, float64, integer and bool tensors keep their dtype.

    Args:
        folder: str or os.PathLike of a folder (see `resolve_model_folder`).
        lazy: tensors come back as :class:`SafetensorsTensor` (header read and checked, weights
            read when used: a model copies them straight into its buffer, so loading needs no
            second copy of the weights) or :class:`~pydeberta.torch_pickle.TorchTensor` (``.bin``:
            the file is read, each tensor made only when used, after its shape was matched).

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
    if ".safetensors" in name:
        read_file = open_safetensors if lazy else read_safetensors
    else:
        read_file = functools.partial(read_torch_bin, lazy=lazy)
    state = _read_sharded(path, read_file) if name.endswith(".index.json") else read_file(path)
    if lazy:
        return state
    return {key: value.astype(np.float32) if value.dtype == np.float16 else value for key, value in state.items()}


def _read_sharded(index_path: Path, read_file) -> dict[str, np.ndarray]:
    """Read every shard named in an index's ``weight_map`` (in the index's folder) with `read_file`."""
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise CheckpointError(f"{index_path}: expected a JSON object with a \"weight_map\" object "
                              f"{{key: shard file name}}, got {reprlib.repr(index)}")
    shards = dict.fromkeys(weight_map.values())  # unique, in order of first mention
    state = {}
    for shard in shards:
        if Path(shard).name != shard:
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


# A header larger than this is refused before it is read (transformers' largest models have
# headers of a few hundred KiB; the format allows 100 MB).
_MAX_HEADER_BYTES = 100 << 20
_MAX_DIMS = 64  # NumPy's limit


class SafetensorsTensor:
    """One tensor of a .safetensors file, known by its header entry and read only when asked.

    ``shape`` and ``dtype`` (the array's after reading: BF16 becomes float32) come from the
    header, checked against the file's size, so a state dict of these can be matched against a
    config before a byte of weights is read; :meth:`read_into` then copies the tensor straight
    into its place (a model's packed buffer), converting the dtype on the way.
    """

    def __init__(self, path, key, dtype_name, shape, begin, end):
        self.path, self.key, self.dtype_name = path, key, dtype_name
        self.shape = tuple(shape)
        self.offset, self.nbytes = begin, end - begin
        self.file_dtype = _SAFETENSORS_DTYPES[dtype_name]
        self.dtype = np.dtype(np.float32) if dtype_name == "BF16" else self.file_dtype.newbyteorder("=")

    def _fill(self, array):
        """Read the tensor's bytes from disk into the C-contiguous ``array`` of the file's dtype."""
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            if file.readinto(array.reshape(-1).view(np.uint8)) != self.nbytes:
                raise CheckpointError(f"{self.path}: truncated: tensor {self.key!r} ends past the end of the file")
        return array

    def _raw(self):
        """The tensor's bytes as a new array of the file's dtype."""
        return self._fill(np.empty(self.shape, self.file_dtype))

    def read(self):
        """The tensor as a new array (BF16 widened to float32 exactly, native byte order)."""
        raw = self._raw()
        return bfloat16_to_float32(raw) if self.dtype_name == "BF16" else raw.astype(self.dtype, copy=False)

    def read_into(self, out):
        """Fill ``out`` (an array of this shape, any float dtype) with the tensor; a tensor already
        of ``out``'s dtype goes from the file into ``out`` with no copy in between."""
        if out.shape != self.shape:
            raise ValueError(f"{self.key}: out has shape {out.shape}, the tensor {self.shape}")
        if self.dtype_name != "BF16" and out.dtype == self.file_dtype and out.flags.c_contiguous:
            return self._fill(out)
        out[...] = self.read()
        return out

    def __array__(self, dtype=None, copy=None):
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self):
        return f"SafetensorsTensor({str(self.path)!r}, {self.key!r}, {self.dtype_name}, {self.shape})"


def open_safetensors(path) -> dict[str, SafetensorsTensor]:
    """The tensors of a .safetensors file from its header alone, checked, nothing else read.

    The header is ``[u64 little-endian N][N bytes of JSON]``; each entry names a dtype, a shape
    and ``data_offsets [begin, end]`` into the bytes after the header. Checked before anything is
    allocated: N against the file's size, each dtype, each shape's size against its byte range,
    every range inside the file and no two overlapping.

    Raises:
        FileNotFoundError / OSError: the file cannot be opened.
        CheckpointError: truncated or corrupt (the message names the file and what is wrong),
            or a dtype NumPy cannot hold (float8, ...).
    """
    path = Path(path)
    size = path.stat().st_size

    def corrupt(what):
        return CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {what}")

    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise corrupt(f"{size} bytes, shorter than the 8-byte header size")
        header_size = int.from_bytes(head, "little")
        if header_size > min(size - 8, _MAX_HEADER_BYTES):
            raise corrupt(f"the header claims {header_size} bytes, the file has {size - 8} after the size")
        header = _parse_json(file.read(header_size), f"{path}: the header")
    if not isinstance(header, dict):
        raise corrupt(f"the header is a JSON {type(header).__name__}, not an object")
    start, tensors, ranges = 8 + header_size, {}, []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise corrupt(f"tensor {key!r}: expected {{dtype, shape, data_offsets: [begin, end]}}") from None
        if not isinstance(dtype_name, str) or dtype_name not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {dtype_name!r}; NumPy reads only "
                                  f"{', '.join(_SAFETENSORS_DTYPES)}")
        numbers = [*shape, begin, end] if isinstance(shape, list) and len(shape) <= _MAX_DIMS else None
        if numbers is None or not all(type(n) is int and n >= 0 for n in numbers) or begin > end:
            raise corrupt(f"tensor {key!r}: shape {reprlib.repr(shape)} (at most {_MAX_DIMS} dimensions) and "
                          f"data_offsets {[begin, end]!r} must be integers >= 0")
        if math.prod(shape) * _SAFETENSORS_DTYPES[dtype_name].itemsize != end - begin:
            raise corrupt(f"tensor {key!r}: shape {shape} of {dtype_name} needs "
                          f"{math.prod(shape) * _SAFETENSORS_DTYPES[dtype_name].itemsize} bytes, "
                          f"data_offsets give {end - begin}")
        if start + end > size:
            raise corrupt(f"tensor {key!r} ends at byte {start + end}, the file has {size}")
        tensors[key] = SafetensorsTensor(path, key, dtype_name, shape, start + begin, start + end)
        ranges.append((begin, end, key))
    ranges.sort()
    for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
        if begin < end:
            raise corrupt(f"tensors {first!r} and {second!r} overlap")
    return tensors


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Read a .safetensors file into NumPy arrays (:func:`open_safetensors`, then each tensor).

    dtypes are kept (F16 stays float16) except BF16, which NumPy lacks: it becomes float32,
    exactly.

    Returns:
        dict key -> writable np.ndarray.
    """
    return {key: tensor.read() for key, tensor in open_safetensors(path).items()}


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
