"""pydeberta.torch_pickle: torch.save files read without torch, exactly, and crafted pickles refused
without running anything.

The oracle is torch: every array must equal torch's tensor bit for bit (bfloat16 compared after
torch's own widening to float32).
"""

import io
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
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpoints import TORCH_DTYPES, assert_same, to_numpy, torch_save
from pydeberta import torch_pickle
from pydeberta.errors import CheckpointError, UnsafeCheckpointError
from pydeberta.torch_pickle import MAX_NESTING, check_nesting, read_torch_bin

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



# ------------------------------------------------------------------------------------------------
# Sizes checked before anything of them is allocated
# ------------------------------------------------------------------------------------------------

def test_a_zip_entry_that_would_inflate_far_beyond_the_file_is_refused(tmp_path):
    """A 300 MB data.pkl deflated into a file of a few hundred KB: refused from its declared size."""
    path = tmp_path / "bomb.bin"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(300 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"bomb.bin: zip entry 'archive/data.pkl' declares 314572800 bytes"):
        read_torch_bin(path)


EXPANDED = """
import sys
import pydeberta

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

before = kib("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
try:
    pydeberta.DebertaV2Model.from_pretrained(sys.argv[1])
except ValueError as error:
    print(type(error).__name__, str(error).splitlines()[0])
print((kib("VmHWM") - before) // 1024)
"""


def test_an_expanded_tensor_is_matched_against_the_config_before_it_is_made(tmp_path):
    """torch.save writes an expanded tensor (stride 0) as its one-element storage: a tiny file may
    claim 1.6 GB. Loading matches its shape against the config first and refuses it, in a few MiB."""
    import transformers

    cfg = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    model = transformers.DebertaV2Model(transformers.DebertaV2Config(**cfg))
    state = dict(model.state_dict())
    state["embeddings.word_embeddings.weight"] = torch.zeros(1).expand(20000, 20000)  # 1.6 GB if made
    model.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert (tmp_path / "pytorch_model.bin").stat().st_size < 1 << 20
    script = tmp_path / "load.py"
    script.write_text(EXPANDED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr
    message, grown = done.stdout.strip().splitlines()
    assert message.startswith("ValueError shape mismatch") and int(grown) < 64, done.stdout


def test_nesting_is_measured_before_unpickling(tmp_path):
    """64 levels are read; 65 are refused before a value is built; so is a container changed after
    being nested (a list appended to itself twice). A real state dict nests 6 levels."""
    tuples = lambda depth: b"\x80\x02N" + b"\x85" * depth + b"."  # None in `depth` 1-tuples
    check_nesting(io.BytesIO(tuples(MAX_NESTING)), "ok.pkl")
    with pytest.raises(CheckpointError, match=f"deep.pkl: the pickle nests values more than {MAX_NESTING} levels"):
        check_nesting(io.BytesIO(tuples(MAX_NESTING + 1)), "deep.pkl")
    with pytest.raises(CheckpointError, match="cycle.pkl: the pickle changes a container after putting it"):
        check_nesting(io.BytesIO(b"\x80\x02]q\x00h\x00ah\x00a."), "cycle.pkl")
    path = torch_save(tmp_path, {"w": torch.nn.Parameter(torch.ones(2, 3).t())})
    assert read_torch_bin(path)["w"].shape == (3, 2)


def test_tensors_far_larger_than_the_file_are_not_made_eagerly(tmp_path):
    """An expanded tensor of 70.6 MB in a file of 1 KB: more than 4x the file + 64 MiB, so the eager
    reader refuses it; the lazy one hands back its shape for a config to be matched against."""
    path = torch_save(tmp_path, {"w": torch.zeros(1).expand(4200, 4200)})
    assert path.stat().st_size < 2048
    with pytest.raises(CheckpointError, match=r"weights.bin: its tensors would take 70560000 bytes, more than 4x"):
        read_torch_bin(path)
    assert read_torch_bin(path, lazy=True)["w"].shape == (4200, 4200)


def test_a_pickle_of_more_opcodes_than_the_limit_is_refused(monkeypatch):
    """The limit (2^22, ~130,000 tensors) bounds the time the nesting check takes; here it is 100."""
    monkeypatch.setattr(torch_pickle, "MAX_OPCODES", 100)
    check_nesting(io.BytesIO(b"\x80\x02" + b"N0" * 48 + b"N."), "short.pkl")  # 99 opcodes
    with pytest.raises(CheckpointError, match="long.pkl: the pickle has more than 100 opcodes"):
        check_nesting(io.BytesIO(b"\x80\x02" + b"N0" * 50 + b"N."), "long.pkl")
