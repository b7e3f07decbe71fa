"""``pytorch_model.bin`` without torch: a restricted unpickler that runs no code from the file.

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
downloaded file can run anyone's code. :func:`read_torch_bin` never does that: its unpickler
resolves only the handful of names a state dict needs, to harmless stand-ins, and refuses every
other name with :class:`~pydeberta.errors.UnsafeCheckpointError`. Tensors come back as NumPy
arrays copied out of their storage through (offset, size, stride), so views, transposes and tied
weights give exactly torch's values.

A pickle can also nest values a million deep in a few bytes; building one is harmless, but
hashing a deeply nested tuple (a dict key) overflows the C stack and kills the process, and
printing one raises ``RecursionError``. So each pickle's opcodes are first read without building
anything (:func:`check_nesting`), and one nesting deeper than a state dict ever does is refused.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ["TorchTensor", "bfloat16_to_float32", "check_nesting", "read_torch_bin"]


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top 16 bits of a float32: shift the stored uint16 up and reinterpret.

    >>> bfloat16_to_float32(np.array([0x3F80, 0xC020], np.uint16))   # 1.0 and -2.5
    array([ 1. , -2.5], dtype=float32)
    """
    widened = bits.astype(np.uint32)
    widened <<= 16  # in place: a 0-d array stays an array
    return widened.view(np.float32)


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


class TorchTensor:
    """One tensor of a ``torch.save`` file: its shape and dtype from the pickle, its values made
    only when asked (:meth:`read`, :meth:`read_into`), so a state dict of these can be matched
    against a config before anything of the tensor's size is allocated (an expanded tensor, stride
    0, may claim far more elements than its storage holds)."""

    def __init__(self, ref, data, byteorder, path, key):
        self._ref, self._data, self._byteorder, self.path, self.key = ref, data, byteorder, path, key
        self.shape = ref.size
        self.dtype = np.dtype(np.float32) if ref.dtype == "bfloat16" else _TORCH_DTYPES[ref.dtype]

    def read(self):
        """The tensor as a new C-contiguous array (bfloat16 widened to float32)."""
        return _tensor_to_numpy(self._ref, self._data, self._byteorder, self.path, self.key)

    def read_into(self, out):
        """Fill ``out`` (an array of this shape) with the tensor, converting its dtype."""
        out[...] = self.read()
        return out

    def __array__(self, dtype=None, copy=None):
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)


def read_torch_bin(path, lazy=False) -> dict[str, np.ndarray]:
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
        lazy: return :class:`TorchTensor` objects (values made when read) instead of arrays.

    Returns:
        dict key -> writable, C-contiguous np.ndarray (the file must hold a flat dict of tensors).

    Raises:
        FileNotFoundError / OSError: the file cannot be opened.
        UnsafeCheckpointError: the pickle names any other global (the message names it).
        CheckpointError: truncated, corrupt, not a torch.save file, not a flat dict of tensors,
            a view reaching outside its storage, a dtype NumPy cannot hold (float8, ...), a
            pickle nested too deeply (:func:`check_nesting`), or (not lazy) tensors that would
            take more than 4x the file's size + 64 MiB.
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
        arrays[key] = TorchTensor(tensor, storages[tensor.storage.key], byteorder, path, key)
    if lazy:
        return arrays
    made = sum(math.prod(tensor.shape) * tensor.dtype.itemsize for tensor in arrays.values())
    if made > _expansion_budget(path.stat().st_size):
        raise CheckpointError(f"{path}: its tensors would take {made} bytes, more than {_EXPANSION}x the file's "
                              f"size + 64 MiB (expanded tensors, stride 0?); refusing to make them "
                              f"(from_pretrained matches each tensor against the config before making it)")
    return {key: tensor.read() for key, tensor in arrays.items()}


# torch.save stores its tensors uncompressed and once; what a file holds may grow to at most this
# many times its size (plus 64 MiB) when read: zip entries, checked from their declared sizes
# before anything is inflated, and the tensors read_torch_bin makes (views and tied weights
# repeat storage).
_EXPANSION = 4


def _expansion_budget(file_size):
    """Bytes a file of ``file_size`` bytes may grow to when read (see :data:`_EXPANSION`)."""
    return _EXPANSION * file_size + (64 << 20)


def _read_zip(file, path: Path):
    """The unpickled state (with _TensorRef stand-ins), storage key -> bytes, and byte order of a zip file."""
    budget = [_expansion_budget(os.fstat(file.fileno()).st_size)]  # bytes all entries may inflate to

    def read(archive, name):
        declared = archive.getinfo(name).file_size
        if declared > budget[0]:
            raise CheckpointError(f"{path}: zip entry {name!r} declares {declared} bytes, more than the archive's "
                                  f"entries may inflate to ({_EXPANSION}x its size + 64 MiB); refusing to read it")
        budget[0] -= declared
        return archive.read(name)

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
            unpickler = _StateDictUnpickler(io.BytesIO(read(archive, pickles[0])), path)
            state = _unpickle(unpickler)
            storages = {}
            for key in unpickler.storages:
                if f"{prefix}data/{key}" not in names:
                    raise CheckpointError(f"{path}: the pickle uses storage {key!r}, but {prefix}data/{key} is missing")
                storages[key] = read(archive, f"{prefix}data/{key}")
            byteorder = read(archive, prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
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


# A state dict nests a few levels (dict -> tensor -> its arguments -> a size tuple); this is far
# beyond that, and far below the depth at which Python's recursion fails.
MAX_NESTING = 64
# About 30 opcodes per tensor: 130,000 tensors in one file. Bounds the time and memory a pickle
# can take before it is refused (a few bytes per opcode, a Python object each when run).
MAX_OPCODES = 1 << 22
# Opcodes that change a container already on the stack rather than making a new value.
_CHANGES_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


class _Value:
    """What :func:`check_nesting` knows of a value on the pickle's stack: how deeply it nests
    (0 for a scalar) and whether a container holds it yet."""

    __slots__ = ("depth", "held")

    def __init__(self):
        self.depth, self.held = 0, False


def check_nesting(file, path) -> None:
    """Read one pickle's opcodes from ``file`` (pickletools; nothing is built, nothing called)
    and refuse it if a value nests more than :data:`MAX_NESTING` levels deep, or it has more
    than :data:`MAX_OPCODES` opcodes.

    The pickle machine is followed with one :class:`_Value` per stack entry: a new value nests
    one level deeper than the deepest it was built from; an in-place change (APPEND, SETITEM,
    BUILD ...) deepens its container. A container changed after another one took it in (a cycle,
    or a structure deepened behind its holder's back) is refused too: Python's pickler never
    writes that for a state dict, and refusing it keeps every depth recorded here an upper bound
    of the real one (every callable :class:`_StateDictUnpickler` resolves returns a new value).

    Leaves ``file`` just after the pickle's STOP.

    Raises:
        CheckpointError: naming ``path``: nested too deeply, too long, changed after being nested, or
            malformed (unknown opcode, truncated, stack or memo out of step).
    """
    stack, marks, memo = [], [], {}
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(file)):
            if count == MAX_OPCODES:
                raise CheckpointError(f"{path}: the pickle has more than {MAX_OPCODES} opcodes; a state dict "
                                      f"has about 30 per tensor")
            name, before = opcode.name, opcode.stack_before
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET", "DUP"):
                stack.append(stack[-1] if name == "DUP" else memo[arg])
                continue
            if name == "MARK":
                marks.append(len(stack))
                continue
            if name == "POP" and marks and marks[-1] == len(stack):  # POP at a mark pops the mark
                marks.pop()
                continue
            if pickletools.markobject in before:  # [k values below the mark, mark, the values above it]
                first = marks.pop() - before.index(pickletools.markobject)
            else:
                first = len(stack) - len(before)
            if first < 0:
                raise IndexError("the stack is shorter than the opcode needs")
            taken = stack[first:]
            del stack[first:]
            if not opcode.stack_after:  # POP, POP_MARK, STOP
                continue
            if name in _CHANGES_IN_PLACE:
                value, parts = taken[0], taken[1:]
                if value.held:
                    raise CheckpointError(f"{path}: the pickle changes a container after putting it into another "
                                          f"one (a cycle?); a state dict never does")
            else:
                value, parts = _Value(), taken
            for part in parts:
                part.held = True
                value.depth = max(value.depth, part.depth + 1)
            if value.depth > MAX_NESTING:
                raise CheckpointError(f"{path}: the pickle nests values more than {MAX_NESTING} levels deep; "
                                      f"a state dict nests a few")
            stack.append(value)
    except CheckpointError:
        raise
    except (ValueError, IndexError, KeyError) as error:  # genops: unknown opcode, truncated; stack or memo
        detail = f"memo entry {error} is read before it is written" if isinstance(error, KeyError) else error
        raise CheckpointError(f"{path}: not a valid torch.save pickle (truncated or corrupt?): {detail}") from None


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
        self.file, self.path = file, path
        self.storages: dict[str, _Storage] = {}

    def load(self):
        """The pickle's value, after :func:`check_nesting` has read it once without building it."""
        start = self.file.tell()
        check_nesting(self.file, self.path)
        self.file.seek(start)
        return super().load()

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
        """Stand-in for torch._utils._rebuild_parameter: an nn.Parameter is its tensor (and only
        a tensor: passing anything else through would let the pickle alias a container)."""
        if not isinstance(data, _TensorRef):
            raise CheckpointError(f"{self.path}: a parameter's data is {type(data).__name__}, not a tensor")
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
    return bfloat16_to_float32(array) if tensor.dtype == "bfloat16" else array
