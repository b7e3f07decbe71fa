"""Checkpoint files <-> ``dict[str, np.ndarray]``, without torch.

A Hugging Face model folder holds its weights in one of four layouts, looked for in this order:

    model.safetensors                  one safetensors file
    model.safetensors.index.json       sharded: {"weight_map": {key: "model-00001-of-00002.safetensors"}}
    pytorch_model.bin                  one torch.save file
    pytorch_model.bin.index.json       sharded: {"weight_map": {key: "pytorch_model-00001-of-00002.bin"}}

safetensors (https://github.com/huggingface/safetensors) is a little-endian byte buffer behind a
JSON header::

    [8 bytes: header size N, u64 little-endian]
    [N bytes: JSON {"key": {"dtype": "F32", "shape": [50, 16], "data_offsets": [begin, end]},
                    "__metadata__": {"format": "pt"}}]
    [the tensors' bytes, back to back]

The `safetensors` package validates the header and hands back each tensor's bytes; NumPy reads
them. NumPy has no bfloat16, so BF16 is widened to float32 here (see `_bfloat16_to_float32`).

torch.save (PyTorch >= 1.6) writes a zip archive; ``<dir>`` is "archive" or the file's stem::

    <dir>/data.pkl       a pickle of the state dict; every tensor is a call
                         torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
                         whose storage is a "persistent id" ("storage", torch.FloatStorage, "0", "cpu", numel)
    <dir>/data/0         the raw bytes of storage "0" (one storage may back many tensors: tied weights)
    <dir>/byteorder      "little" or "big" (absent in old files: little)

Older files (``_use_new_zipfile_serialization=False``) are a stream of pickles instead: a magic
number, a protocol version, system info, the state dict, the list of storage keys, then each
storage as [numel: int64 little-endian][numel elements, little-endian].

A pickle can name any Python callable and have the loader call it, so ``pickle.load`` on a
downloaded file can run anyone's code. `read_torch_bin` never does that: its unpickler resolves
only the handful of names a state dict needs, to harmless stand-ins, and refuses every other name
with `UnsafeCheckpointError`. Tensors come back as NumPy arrays copied out of their storage through
(offset, size, stride), so views, transposes and tied weights give exactly torch's values.

Public API:
    resolve_model_folder(name_or_path)  local folder, file, or Hub id -> folder
    read_state_dict(folder)             the folder's weights, float16/bfloat16 upcast to float32
    read_safetensors(path), read_torch_bin(path), write_safetensors(path, state_dict)
    CheckpointError, UnsafeCheckpointError, BUNDLED_MODELS
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import safetensors
import safetensors.numpy

__all__ = [
    "BUNDLED_MODELS",
    "CHECKPOINT_FILES",
    "HUB_FILES",
    "CheckpointError",
    "UnsafeCheckpointError",
    "read_safetensors",
    "read_state_dict",
    "read_torch_bin",
    "resolve_model_folder",
    "write_safetensors",
]


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read: truncated, corrupt, or not what was expected."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global that a state dict of tensors does not need; nothing was run."""


# ------------------------------------------------------------------------------------------------
# Finding the folder
# ------------------------------------------------------------------------------------------------

BUNDLED_MODELS: dict[str, Path] = {"pydeberta/tiny": Path(__file__).parent / "models" / "tiny"}
"""Model names shipped inside the package: name -> folder. `resolve_model_folder` looks here first.

``"pydeberta/tiny"``: the small DeBERTa-v3-style masked LM trained by ``tools/train_tiny.py`` on
Debian-shipped English text (see ``pydeberta/models/tiny/README.md``). Register another bundled
model with ``BUNDLED_MODELS["name"] = Path(...)``.
"""

HUB_FILES = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "spm.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
)
"""The files fetched from a Hub repository (``allow_patterns`` of ``snapshot_download``)."""

# "org/name" as the Hub spells it: letters, digits, "_", "-", "."; no "--" or ".."; "-" and "."
# neither first nor last. "./x" and "../x" are therefore paths, never Hub ids.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?!.*(?:--|\.\.)){_HUB_PART}/{_HUB_PART}")


def resolve_model_folder(name_or_path, *, revision=None, cache_dir=None, local_files_only=None) -> Path:
    """Turn a model name or path into the local folder holding its config and weights.

    Tried in order:
      1. a name registered in `BUNDLED_MODELS` -> its folder;
      2. an existing folder -> itself;
      3. an existing file (e.g. ``.../config.json``) -> the folder it is in;
      4. a Hugging Face Hub id ``"org/name"`` -> ``huggingface_hub.snapshot_download`` of `HUB_FILES`
         into the HF cache (``cache_dir`` or the default cache), or the cached snapshot when
         offline. Offline means ``local_files_only=True``, or ``local_files_only=None`` (the
         default) with ``HF_HUB_OFFLINE=1`` in the environment. A connection error while online
         retries once from the cache.

    Args:
        name_or_path: str or os.PathLike.
        revision: branch, tag or commit of a Hub repository (default: "main").
        cache_dir: Hugging Face cache folder (default: huggingface_hub's, e.g. ~/.cache/huggingface/hub).
        local_files_only: True never touches the network; None follows HF_HUB_OFFLINE.

    Returns:
        pathlib.Path of the folder.

    Raises:
        FileNotFoundError: none of the above found it. The message names the argument and what
            was tried, and says ``pip install huggingface_hub`` when a Hub id could not be tried.
        Other huggingface_hub errors propagate.
    """
    name = os.fspath(name_or_path)
    if name in BUNDLED_MODELS:
        return Path(BUNDLED_MODELS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    if not _HUB_ID.fullmatch(name):
        raise FileNotFoundError(
            f"resolve_model_folder({name!r}): no such folder or file, and not a Hugging Face Hub id "
            f"of the form 'org/name'"
        )
    return _snapshot_download(name, revision, cache_dir, local_files_only)


def _snapshot_download(repo_id, revision, cache_dir, local_files_only) -> Path:
    """Fetch (or find in the HF cache) the `HUB_FILES` of a Hub repository; see `resolve_model_folder`."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise FileNotFoundError(
            f"resolve_model_folder({repo_id!r}): no such folder or file. It looks like a Hugging Face "
            f"Hub id, but huggingface_hub is not installed: pip install huggingface_hub "
            f"(or pip install 'pydeberta[hub]')"
        ) from None
    if local_files_only is None:
        local_files_only = _hub_offline()

    def download(local_files_only):
        return huggingface_hub.snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir,
            allow_patterns=list(HUB_FILES), local_files_only=local_files_only,
        )

    where = "in the local Hugging Face cache" if local_files_only else "on the Hugging Face Hub or in its local cache"
    try:
        try:
            return Path(download(local_files_only))
        except _connection_errors():
            where = "on the Hugging Face Hub (connection failed) or in its local cache"
            return Path(download(local_files_only=True))
    except (LocalEntryNotFoundError, HfHubHTTPError) as error:
        raise FileNotFoundError(
            f"resolve_model_folder({repo_id!r}, revision={revision!r}): no such folder or file, "
            f"and no model {repo_id!r} {where}"
            f"{f' (cache_dir={str(cache_dir)!r})' if cache_dir is not None else ''}: {error}"
        ) from error


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE read now (huggingface_hub itself reads it once, when imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the network is unreachable", for whichever HTTP client is installed."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import requests  # huggingface_hub < 1.0
        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    try:
        import httpx  # huggingface_hub >= 1.0
        errors += [httpx.TransportError]
    except ImportError:
        pass
    return tuple(errors)


# ------------------------------------------------------------------------------------------------
# A folder's state dict
# ------------------------------------------------------------------------------------------------

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


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top 16 bits of a float32: shift the stored uint16 up and reinterpret.

    >>> _bfloat16_to_float32(np.array([0x3F80, 0xC020], np.uint16))   # 1.0 and -2.5
    array([ 1. , -2.5], dtype=float32)
    """
    widened = bits.astype(np.uint32)
    widened <<= 16  # in place: a 0-d array stays an array
    return widened.view(np.float32)


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
        state[key] = _bfloat16_to_float32(array) if view["dtype"] == "BF16" else array
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


# ------------------------------------------------------------------------------------------------
# torch .bin, without torch
# ------------------------------------------------------------------------------------------------

# torch dtype name -> how NumPy reads one element (bfloat16 as raw uint16 bits, then widened)
_TORCH_DTYPES = {
    "float64": np.dtype("f8"), "float32": np.dtype("f4"), "float16": np.dtype("f2"), "bfloat16": np.dtype("u2"),
    "int64": np.dtype("i8"), "int32": np.dtype("i4"), "int16": np.dtype("i2"), "int8": np.dtype("i1"),
    "uint64": np.dtype("u8"), "uint32": np.dtype("u4"), "uint16": np.dtype("u2"), "uint8": np.dtype("u1"),
    "bool": np.dtype("?"), "complex64": np.dtype("c8"), "complex128": np.dtype("c16"),
}
# torch.<Name>Storage -> dtype of its elements. An UntypedStorage is bytes; the tensor brings its
# dtype (torch._utils._rebuild_tensor_v3, used for uint16/32/64).
_STORAGE_TYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a non-zip torch.save file
_LEGACY_PROTOCOL = 1001


class _StorageType(NamedTuple):
    """Stand-in for a torch.<Name>Storage class named in a pickle."""
    dtype: str


class _TorchDtype(NamedTuple):
    """Stand-in for a torch dtype object (torch.uint16) named in a pickle."""
    name: str


class _Storage(NamedTuple):
    """A storage a pickle refers to by key; its bytes are in data/<key> (zip) or after the pickle."""
    key: str
    dtype: str


class _TensorRef(NamedTuple):
    """What torch._utils._rebuild_tensor_v2 would build: a strided view of a storage (in elements)."""
    storage: _Storage
    dtype: str
    offset: int
    size: tuple
    stride: tuple


def read_torch_bin(path) -> dict[str, np.ndarray]:
    """Read a torch.save state dict (a pytorch_model.bin) without importing or trusting torch.

    Reads the zip format (torch.save's default since PyTorch 1.6) and the older stream format
    (``_use_new_zipfile_serialization=False``). The pickle inside may name only what a state dict
    needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2/_v3, _rebuild_parameter,
    torch.<Name>Storage, torch dtypes); those become inert stand-ins, so no code from the file runs.

    dtypes are kept (float16 stays float16) except bfloat16, which becomes float32 exactly.
    Every tensor is copied out of its storage through its offset, size and stride, so a transposed
    or sliced view and tied weights sharing one storage each get torch's values.

    Args:
        path: str or os.PathLike of the file.

    Returns:
        dict key -> writable, C-contiguous np.ndarray (the file must hold a flat dict of tensors).

    Raises:
        FileNotFoundError / OSError: the file cannot be opened.
        UnsafeCheckpointError: the pickle names any other global (the message names it).
        CheckpointError: truncated, corrupt, not a torch.save file, not a flat dict of tensors,
            a view reaching outside its storage, or a dtype NumPy cannot hold (float8, ...).
    """
    path = Path(path)
    with open(path, "rb") as file:
        if file.read(4) == b"PK\x03\x04":
            state, storages, byteorder = _read_zip(file, path)
        else:
            file.seek(0)
            state, storages, byteorder = _read_legacy(file, path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    arrays = {}
    for key, tensor in dict.items(state):  # not state.items(): a crafted pickle can set attributes on it
        if not isinstance(key, str) or not isinstance(tensor, _TensorRef):
            raise CheckpointError(
                f"{path}: expected a flat dict str -> tensor, but {key!r} holds {type(tensor).__name__}"
            )
        arrays[key] = _tensor_to_numpy(tensor, storages[tensor.storage.key], byteorder, path, key)
    return arrays


def _read_zip(file, path: Path):
    """The unpickled state (with _TensorRef stand-ins), storage key -> bytes, and byte order of a zip file."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(
                    f"{path}: expected one '<dir>/data.pkl' in the zip archive (torch.save layout), "
                    f"found {sorted(pickles)}"
                )
            prefix = pickles[0][: -len("data.pkl")]
            unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), path)
            state = _unpickle(unpickler)
            storages = {}
            for key in unpickler.storages:
                if f"{prefix}data/{key}" not in names:
                    raise CheckpointError(f"{path}: the pickle uses storage {key!r}, but {prefix}data/{key} is missing")
                storages[key] = archive.read(f"{prefix}data/{key}")
            byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a valid zip archive (truncated or corrupt?): {error}") from error
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: {prefix}byteorder should be 'little' or 'big', got {byteorder!r}")
    return state, storages, byteorder


def _read_legacy(file, path: Path):
    """The same as `_read_zip` for the pre-1.6 stream format; its storages are always little-endian."""
    if _unpickle(_StateDictUnpickler(file, path)) != _LEGACY_MAGIC:
        raise CheckpointError(
            f"{path}: not a torch.save file: neither a zip archive nor a legacy stream (wrong magic number)"
        )
    protocol = _unpickle(_StateDictUnpickler(file, path))
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: legacy torch.save protocol {protocol!r}; expected {_LEGACY_PROTOCOL}")
    _unpickle(_StateDictUnpickler(file, path))  # system info: endianness and C type sizes of the writer
    unpickler = _StateDictUnpickler(file, path)
    state = _unpickle(unpickler)
    keys = _unpickle(_StateDictUnpickler(file, path))
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise CheckpointError(f"{path}: expected the list of storage keys after the state dict, got {str(keys)[:200]}")
    file_size = os.fstat(file.fileno()).st_size
    storages = {}
    for key in keys:
        if key not in unpickler.storages:
            raise CheckpointError(f"{path}: storage {key!r} is listed but no tensor uses it")
        numel = int.from_bytes(file.read(8), "little")
        nbytes = numel * _TORCH_DTYPES[unpickler.storages[key].dtype].itemsize
        if nbytes > file_size - file.tell():
            raise CheckpointError(
                f"{path}: truncated: storage {key!r} should hold {nbytes} bytes, the file has "
                f"{max(file_size - file.tell(), 0)} left"
            )
        storages[key] = file.read(nbytes)
    missing = set(unpickler.storages) - set(storages)
    if missing:
        raise CheckpointError(f"{path}: the pickle uses storage(s) {sorted(missing)} that the file does not hold")
    return state, storages, "little"


def _unpickle(unpickler: _StateDictUnpickler):
    """unpickler.load(), any failure but ours reported as a CheckpointError naming the file."""
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except Exception as error:  # a damaged pickle can fail in many ways: EOFError, UnpicklingError, TypeError...
        raise CheckpointError(
            f"{unpickler.path}: not a valid torch.save pickle (truncated or corrupt?): {type(error).__name__}: {error}"
        ) from error


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that knows only the names of a state dict, each mapped to an inert stand-in.

    find_class is the only way a pickle reaches a Python object it did not build itself (GLOBAL,
    STACK_GLOBAL, and the copyreg extension codes all go through it), so refusing everything else
    there means a crafted file cannot make the loader call anything of its choosing.
    """

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
            return getattr(self, name)
        if module in ("torch", "torch.storage") and name in _STORAGE_TYPES:
            return _StorageType(_STORAGE_TYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        raise UnsafeCheckpointError(
            f"{self.path}: refusing to load the global {module}.{name}. A state dict needs only "
            f"collections.OrderedDict, torch._utils._rebuild_tensor_v2/_v3/_rebuild_parameter, "
            f"torch.<Name>Storage and torch dtypes with a NumPy equivalent; anything else may run "
            f"code or is not representable here."
        )

    def persistent_load(self, pid):
        """("storage", torch.<Name>Storage, key, location, numel[, legacy view]) -> a `_Storage`."""
        if not (
            isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
        ):
            raise CheckpointError(
                f"{self.path}: expected a persistent id ('storage', torch.<Name>Storage, key, location, numel), "
                f"got {str(pid)[:200]}"
            )
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError(
                f"{self.path}: uses storage views (PyTorch < 1.0 files); re-save it with a recent torch: "
                f"torch.save(torch.load(path, weights_only=True), path)"
            )
        key, dtype = pid[2], pid[1].dtype
        storage = self.storages.setdefault(key, _Storage(key, dtype))
        if storage.dtype != dtype:
            raise CheckpointError(f"{self.path}: storage {key!r} is used as both {storage.dtype} and {dtype}")
        return storage

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                           metadata=None):
        """Stand-in for torch._utils._rebuild_tensor_v2: the tensor's dtype is its storage's."""
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"{self.path}: a tensor's storage is {type(storage).__name__}, not a storage")
        return self._tensor(storage, storage.dtype, storage_offset, size, stride)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                           metadata=None):
        """Stand-in for torch._utils._rebuild_tensor_v3: bytes (UntypedStorage) read as ``dtype``."""
        if not isinstance(storage, _Storage) or not isinstance(dtype, _TorchDtype):
            raise CheckpointError(f"{self.path}: _rebuild_tensor_v3 needs a storage and a torch dtype")
        return self._tensor(storage, dtype.name, storage_offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        """Stand-in for torch._utils._rebuild_parameter: an nn.Parameter is its tensor."""
        return data

    def _tensor(self, storage, dtype, offset, size, stride) -> _TensorRef:
        shape_ok = (
            isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
            and all(type(n) is int and n >= 0 for n in (offset, *size, *stride))
        )
        if not shape_ok:
            raise CheckpointError(
                f"{self.path}: a tensor needs a non-negative int offset and equally long non-negative "
                f"int size and stride; got offset={offset!r}, size={size!r}, stride={stride!r}"
            )
        return _TensorRef(storage, dtype, offset, tuple(size), tuple(stride))


def _tensor_to_numpy(tensor: _TensorRef, data: bytes, byteorder: str, path: Path, key: str) -> np.ndarray:
    """Copy a strided view out of a storage's bytes: element [i, j] is storage[offset + i*stride0 + j*stride1]."""
    dtype = _TORCH_DTYPES[tensor.dtype].newbyteorder("<" if byteorder == "little" else ">")
    if len(data) % dtype.itemsize:
        raise CheckpointError(
            f"{path}: {key!r}: storage {tensor.storage.key!r} has {len(data)} bytes, not a whole number of "
            f"{tensor.dtype} elements"
        )
    storage = np.frombuffer(data, dtype)
    if math.prod(tensor.size) == 0:
        array = np.zeros(tensor.size, dtype.newbyteorder("="))
    else:
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
        if last >= storage.size:
            raise CheckpointError(
                f"{path}: {key!r} (offset {tensor.offset}, size {tensor.size}, stride {tensor.stride}) reaches "
                f"element {last} of storage {tensor.storage.key!r}, which holds {storage.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            storage[tensor.offset:], tensor.size, [s * dtype.itemsize for s in tensor.stride], writeable=False
        )
        array = view.astype(dtype.newbyteorder("="), order="C")  # a copy, in native byte order
    return _bfloat16_to_float32(array) if tensor.dtype == "bfloat16" else array
