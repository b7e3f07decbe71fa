"""Hostile files and careless callers: every loader, every public call and the command line fail
with the library's own, short, named errors, and never crash, hang or balloon.

Every case runs in a child process limited to MEMORY_LIMIT of address space and CASE_TIMEOUT
seconds, so a segfault, a hang or a blow-up fails the case instead of the test run. Library cases
go to a long-lived worker (tests/hostile_worker.py: one case per line, one JSON result per line,
restarted after a crash); each command-line case is a process of its own, run a few at a time.
Each case asserts the class of the exception, a fragment of its message, that the message is
short (MESSAGE_LINES lines, MESSAGE_CHARS characters) and that the resident memory rose by less
than PEAK_MIB while it ran. The hostile files are made here, with torch, transformers and the
byte layouts of the formats; the worker imports neither.
"""

import base64
import io
import json
import math
import os
import pickle
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pydeberta
from pydeberta.errors import CheckpointError, UnsafeCheckpointError

MEMORY_LIMIT = 2 << 30  # bytes of address space of every child (importing NumPy + pydeberta maps ~320 MiB)
CASE_TIMEOUT = 60  # seconds
PEAK_MIB = 256  # resident memory a case may add (the models here are kilobytes)
MESSAGE_LINES, MESSAGE_CHARS = 12, 2000
WORKER = Path(__file__).with_name("hostile_worker.py")
SPM = Path(os.environ.get("PYDEBERTA_SPM_MODEL",
                          Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deberta-v3" / "spm.model"))


def limit_child():
    """preexec_fn of every child: MEMORY_LIMIT of address space, no core file."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Worker:
    """A hostile_worker.py process: :meth:`run` sends a case and waits CASE_TIMEOUT for its result."""

    def __init__(self):
        self.start()

    def start(self):
        """A new worker process, its standard error kept in a file for when it dies."""
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, preexec_fn=limit_child,
                                        cwd=tempfile.gettempdir())  # the installed package, not the source tree

    def run(self, name, *args, **kwargs):
        """The result dict of ``CASES[name](*args, **kwargs)`` in the worker; AssertionError if the
        worker died or did not answer (then a new worker takes over)."""
        case = f"{name}{args!r:.300}{kwargs!r:.300}"
        self.process.stdin.write(base64.b64encode(pickle.dumps((name, args, kwargs))).decode() + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], CASE_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            code = self.process.wait()
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-1500:]
            self.start()
            problem = f"died (exit status {code})" if ready else f"gave no answer within {CASE_TIMEOUT} s"
            raise AssertionError(f"{case}: the worker {problem}; its standard error ends:\n{tail}")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=CASE_TIMEOUT)


@pytest.fixture(scope="module")
def worker():
    worker = Worker()
    yield worker
    worker.close()


def expect(result, error, fragment):
    """``result`` (from :meth:`Worker.run`) is ``error`` with ``fragment`` in a short message, and
    the case stayed within PEAK_MIB."""
    assert result["error"] == error.__name__, f"expected {error.__name__} ({fragment!r}), got {result}"
    message = result["message"]
    assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) <= MESSAGE_CHARS and message.count("\n") < MESSAGE_LINES, f"a long message: {message!r:.3000}"
    assert result["peak_mib"] < PEAK_MIB, f"{result['peak_mib']:.0f} MiB for {message!r}"


def folder_with(source, target, **files):
    """A copy of the folder ``source`` as ``target`` with ``files`` (name -> bytes, or a JSON value)
    written over it; returns the path as a str."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for name, content in files.items():
        (target / name).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(target)


def edited_config(folder, **fields):
    """The folder's config.json with ``fields`` replaced, as a JSON value."""
    return {**json.loads((folder / "config.json").read_text()), **fields}


# ------------------------------------------------------------------------------------------------
# Folders
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    """The DeBERTa-v3 tokenizer's files, as pydeberta saves them."""
    assert SPM.is_file(), f"the DeBERTa-v3 vocabulary is missing: {SPM} (set PYDEBERTA_SPM_MODEL)"
    folder = tmp_path_factory.mktemp("tokenizer")
    pydeberta.DebertaV2Tokenizer(str(SPM)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task_folders(tmp_path_factory, tokenizer_folder):
    """A one-layer NLI and NER checkpoint made by transformers, each with the v3 tokenizer."""
    from oracle import build_transformers_model

    cfg = dict(vocab_size=128100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               relative_attention=True, position_buckets=8, pos_att_type="p2c|c2p")
    heads = {"nli": ("DebertaV2ForSequenceClassification", {0: "entailment", 1: "neutral", 2: "contradiction"}),
             "ner": ("DebertaV2ForTokenClassification", {0: "O", 1: "B-PER", 2: "I-PER"})}
    folders = {}
    for name, (class_name, labels) in heads.items():
        folder = tmp_path_factory.mktemp(name)
        build_transformers_model(class_name, dict(cfg, id2label=labels)).save_pretrained(folder)
        shutil.copytree(tokenizer_folder, folder, dirs_exist_ok=True)
        folders[name] = str(folder)
    return folders


def legacy_stream(*pickles):
    """A pre-1.6 torch.save stream: magic number, protocol, system info, then ``pickles`` (raw bytes)."""
    head = [pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})]
    return b"".join(head) + b"".join(pickles)


def zip_with_pickle(body):
    """A torch.save-style zip archive whose archive/data.pkl is ``body``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", body)
    return buffer.getvalue()


def deflate_bomb(inflated_mib):
    """A zip archive whose archive/data.pkl inflates to ``inflated_mib`` MiB of zeros, in about
    1 KiB per MiB: one deflated MiB repeated (a full flush makes each copy stand alone) and an
    empty final block. The CRC is left 0: a reader that inflates the entry runs out of memory
    long before it could check it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = (compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)) * inflated_mib + b"\x03\x00"
    name, size = b"archive/data.pkl", inflated_mib << 20
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(data), size, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def expanded_bin(model):
    """A state dict of ``model`` whose word embeddings are a 50000 x 40000 expanded tensor: 8 GB
    if made, one float in the file (torch.save writes the storage, not the view)."""
    import torch

    state = dict(model.state_dict())
    state["embeddings.word_embeddings.weight"] = torch.zeros(1).expand(50000, 40000)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def safetensors_bytes(header, data=b"", size_field=None):
    """``[u64 header size][header JSON][data]``; ``size_field`` overrides the size."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if size_field is None else size_field).to_bytes(8, "little") + text + data


# ------------------------------------------------------------------------------------------------
# Resources out of all proportion to the file
# ------------------------------------------------------------------------------------------------

def test_an_expanded_tensor_is_refused_before_it_is_made(worker, model, safetensors_folder, tmp_path):
    folder = folder_with(safetensors_folder, tmp_path / "expanded", **{"pytorch_model.bin": expanded_bin(model)})
    os.remove(Path(folder) / "model.safetensors")
    assert (Path(folder) / "pytorch_model.bin").stat().st_size < 1 << 20
    expect(worker.run("load_model", folder), ValueError, "embeddings.word_embeddings.weight: checkpoint has "
                                                          "(50000, 40000), the config expects (50, 16)")
    expect(worker.run("read_folder", folder), CheckpointError, "its tensors would take 8000")
    expect(worker.run("read_bin", folder + "/pytorch_model.bin"), CheckpointError, "expanded tensors")


def test_a_zip_bomb_is_refused_before_it_is_inflated(worker, safetensors_folder, tmp_path):
    bomb = deflate_bomb(4095)  # 4 GiB of zeros in 4 MB
    assert len(bomb) < 5 << 20
    folder = folder_with(safetensors_folder, tmp_path / "bomb", **{"pytorch_model.bin": bomb})
    os.remove(Path(folder) / "model.safetensors")
    expect(worker.run("read_bin", folder + "/pytorch_model.bin"), CheckpointError,
           "zip entry 'archive/data.pkl' declares 4293918720 bytes")
    expect(worker.run("load_model", folder), CheckpointError, "refusing to read it")


@pytest.mark.parametrize("layers", [10**6, 10**9])
def test_absurd_layer_counts_are_refused_at_once(worker, safetensors_folder, tmp_path, layers):
    folder = folder_with(safetensors_folder, tmp_path / "layers",
                         **{"config.json": edited_config(safetensors_folder, num_hidden_layers=layers)})
    result = worker.run("load_model", folder)
    expect(result, ValueError, f"config.num_hidden_layers must be a positive integer (at most 1024), got {layers}")
    assert result["seconds"] < 1


def test_a_config_far_from_its_checkpoint_gets_a_short_error(worker, safetensors_folder, tmp_path):
    """1000 layers (allowed) against a 2-layer checkpoint: ten keys and a count, not 16,000 lines."""
    folder = folder_with(safetensors_folder, tmp_path / "far",
                         **{"config.json": edited_config(safetensors_folder, num_hidden_layers=1000)})
    expect(worker.run("load_model", folder), ValueError, "lacks backbone tensors the config requires")


# ------------------------------------------------------------------------------------------------
# Pickles: nesting, cycles, code
# ------------------------------------------------------------------------------------------------

class _RunsShell:
    def __reduce__(self):
        return os.system, ("echo pwned",)


# {((...(None,)...),): None}, a million deep: hash() of the key overflowed the C stack (a segfault)
DEEP_TUPLE_KEY = b"\x80\x02}" + b"N" + b"\x85" * 10**6 + b"Ns."
# [[[...]]], 100,000 deep: printing it in an error message raised RecursionError
NESTED_KEYS = b"\x80\x02" + b"]" * 10**5 + b"a" * (10**5 - 1) + b"."


PICKLES = {  # name: (file, error, fragment)
    "legacy storage keys nested 100,000 deep": (legacy_stream(pickle.dumps({}, protocol=2), NESTED_KEYS),
                                                CheckpointError, "the pickle nests values more than 64 levels deep"),
    "a dict key nested a million deep": (zip_with_pickle(DEEP_TUPLE_KEY), CheckpointError, "nests values more than 64"),
    "a list changed after it was nested": (zip_with_pickle(b"\x80\x02]q\x00]q\x01h\x00h\x01ah\x01Na."),
                                           CheckpointError, "changes a container after putting it into another"),
    "a parameter that is a list": (zip_with_pickle(b"\x80\x02ctorch._utils\n_rebuild_parameter\n]\x89}\x87R."),
                                   CheckpointError, "a parameter's data is list, not a tensor"),
    "os.system": (zip_with_pickle(pickle.dumps({"w": _RunsShell()}, protocol=2)), UnsafeCheckpointError,
                  "refusing to load the global posix.system"),
    "a truncated pickle": (zip_with_pickle(b"\x80\x02]"), CheckpointError,
                           "not a valid torch.save pickle (truncated or corrupt?)"),
}


@pytest.mark.parametrize("name", PICKLES)
def test_hostile_pickles_are_refused_before_they_are_unpickled(worker, tmp_path, name):
    content, error, fragment = PICKLES[name]
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    expect(worker.run("read_bin", str(path)), error, fragment)


# ------------------------------------------------------------------------------------------------
# config.json
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, error, fragment", [
    (b'{"hidden_size": "\xff"}', CheckpointError, "config.json is not UTF-8 text"),
    (b"[" * 10**5 + b"]" * 10**5, CheckpointError, "config.json nests JSON values more than 32 levels deep"),
    (b'{"x": ' + b"[" * 500 + b"]" * 500 + b"}", CheckpointError, "nests JSON values"),  # parsed, then deep-copied
    (b"[]", CheckpointError, "config.json must hold a JSON object, got list"),
    ({"norm_rel_ebd": 5}, ValueError, "config.norm_rel_ebd must be 'none', 'layer_norm' or both"),
    ({"norm_rel_ebd": "layer_nrom"}, ValueError, "got 'layer_nrom'"),
    ({"pos_att_type": 5}, ValueError, "config.pos_att_type must be a list of names"),
    ({"hidden_act": ["gelu"]}, ValueError, "config.hidden_act must be one of"),
    ({"id2label": []}, ValueError, "config.id2label must map label numbers to names"),
    ({"id2label": {"0": ["a"]}}, ValueError, "config.id2label must map label numbers to names"),
    ({"num_labels": 10**12}, ValueError, "config.num_labels must be a positive integer (at most 1048576)"),
    ({"relative_attention": "yes"}, ValueError, "config.relative_attention must be true or false"),
    ({"vocab_size": 1e400}, ValueError, "config.vocab_size must be a positive integer"),
    ({"architectures": 5}, ValueError, "config.architectures must be a list of class names, got 5"),
], ids=["utf8", "deep", "deep for deepcopy", "list", "norm_rel_ebd 5", "layer_nrom", "pos_att_type", "hidden_act",
        "id2label []", "id2label list", "num_labels", "relative_attention", "vocab_size inf", "architectures"])
@pytest.mark.parametrize("loader", ["DebertaV2ForMaskedLM", "AutoModel", "AutoConfig"])
def test_a_bad_config_json_is_named(worker, safetensors_folder, tmp_path, content, error, fragment, loader):
    if isinstance(content, dict):
        content = json.dumps(edited_config(safetensors_folder, **content)).replace("Infinity", "1e400").encode()
    folder = folder_with(safetensors_folder, tmp_path / "config", **{"config.json": content})
    expect(worker.run("load_model", folder, loader), error, fragment)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def is_json_object(data):
    """True if ``data`` is UTF-8 JSON holding an object, by Python's own json module."""
    try:
        return isinstance(json.loads(data.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


@pytest.fixture(scope="module")
def playground(safetensors_folder, tmp_path_factory):
    """A copy of the tiny checkpoint whose files the property tests overwrite, example after example."""
    return folder_with(safetensors_folder, tmp_path_factory.mktemp("playground"))


@settings(max_examples=120)
@given(data=st.binary(max_size=80) | JSON_VALUES.map(lambda value: json.dumps(value).encode()))
@example(data=b"\xef\xbb\xbf{}")  # a byte-order mark
@example(data=b"\xff\xfe{\x00}\x00")  # UTF-16
@example(data=b'{"a": ' * 2000 + b"1" + b"}" * 2000)
@example(data=b"{}")
@example(data=b"null")
@example(data=b'{"num_hidden_layers": 1e999}')
def test_any_bytes_as_config_json_give_the_library_s_own_errors(worker, playground, data):
    """Not a JSON object -> CheckpointError naming the file; an object -> a ValueError or TypeError
    about a field or the checkpoint (the defaults describe another model); nothing else, ever."""
    Path(playground, "config.json").write_bytes(data)
    result = worker.run("load_model", playground)
    if not is_json_object(data):
        expect(result, CheckpointError, "config.json")
    else:
        assert result["error"] in ("ValueError", "TypeError", "CheckpointError"), result
        assert result["message"] and len(result["message"]) <= MESSAGE_CHARS, result


CONFIG_FIELDS = sorted(set(pydeberta.DebertaV2Config().to_dict()) - {"model_type", "label2id"} | {
    "embedding_size", "position_buckets", "norm_rel_ebd", "share_att_key", "attention_head_size", "conv_kernel_size",
    "conv_groups", "conv_act", "num_labels"})


@settings(max_examples=150)
@given(field=st.sampled_from(CONFIG_FIELDS), value=JSON_VALUES)
@example(field="num_hidden_layers", value=10**9)
@example(field="num_labels", value=10**12)
@example(field="hidden_size", value=float("nan"))
@example(field="intermediate_size", value=1 << 20)
@example(field="pos_att_type", value=[["c2p"]])
@example(field="id2label", value={"0": {"a": 1}})
def test_any_value_of_a_config_field_is_taken_or_refused_naming_it(worker, field, value):
    result = worker.run("make_config", **{field: value})
    if result["error"] is not None:
        assert result["error"] in ("ValueError", "TypeError"), result
        assert field in result["message"] or "parameters" in result["message"], result
        assert result["seconds"] < 2 and result["peak_mib"] < PEAK_MIB, result


# ------------------------------------------------------------------------------------------------
# safetensors headers and shard indexes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragment", [
    (b"\x05\x00", "shorter than the 8-byte header size"),
    (safetensors_bytes({}, size_field=10**12), "the header claims 1000000000000 bytes"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
     "tensors 'w' and 'v' overlap"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "ends at byte"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}}, bytes(16)),
     "needs 4000000000000000000 bytes, data_offsets give 16"),
    (safetensors_bytes({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "has dtype ['F32']"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}}, bytes(4)),
     "at most 64 dimensions"),
    (safetensors_bytes(b'{"w": ' + b"[" * 10**5 + b"]" * 10**5 + b"}"), "the header nests JSON values"),
    (safetensors_bytes(b'{"w": "\xff"}'), "the header is not UTF-8 text"),
], ids=["short", "claims", "overlap", "past the end", "shape", "dtype", "dims", "deep", "utf8"])
def test_a_bad_safetensors_header_is_named(worker, tmp_path, content, fragment):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    expect(worker.run("open_header", str(path)), CheckpointError, fragment)
    expect(worker.run("read_folder", str(tmp_path)), CheckpointError, fragment)


DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
               "U16": 2, "U8": 1, "BOOL": 1, "C64": 8}  # the safetensors format's dtypes NumPy holds
HEADER_ENTRIES = st.fixed_dictionaries({
    "dtype": st.sampled_from([*DTYPE_SIZES, "F8_E4M3"]) | JSON_VALUES,
    "shape": st.lists(st.integers(-1, 6), max_size=3) | st.lists(st.integers(0, 1 << 62), max_size=2) | JSON_VALUES,
    "data_offsets": st.lists(st.integers(-1, 70), max_size=3) | JSON_VALUES,
})


@settings(max_examples=150)
@given(header=st.dictionaries(st.text(max_size=3), HEADER_ENTRIES, max_size=3) | st.binary(max_size=40),
       data_size=st.integers(0, 64), size_field=st.none() | st.integers(0, (1 << 64) - 1))
@example(header={"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, data_size=12, size_field=None)
@example(header={"a": {"dtype": "I8", "shape": [], "data_offsets": [0, 1]}}, data_size=1, size_field=None)
@example(header={}, data_size=0, size_field=(1 << 64) - 1)
def test_any_safetensors_header_is_read_by_the_format_s_rules_or_refused(worker, tmp_path, header, data_size,
                                                                       size_field):
    """What is accepted keeps the format's rules (a known dtype, shape x item size = byte count, every
    range inside the file after the header, no two overlapping); the rest is a CheckpointError."""
    path = tmp_path / "model.safetensors"
    content = safetensors_bytes(header, bytes(data_size), size_field)
    path.write_bytes(content)
    result = worker.run("open_header", str(path))
    if result["error"] is not None:
        expect(result, CheckpointError, str(path))
        return
    start, ranges = 8 + int.from_bytes(content[:8], "little"), []
    for key, dtype, shape, first, nbytes in result["value"]:
        assert math.prod(shape) * DTYPE_SIZES[dtype] == nbytes, (key, dtype, shape, nbytes)
        assert start <= first and first + nbytes <= len(content), (key, first, nbytes, len(content))
        ranges.append((first, first + nbytes))
    ranges.sort()
    assert all(end <= begin for (_, end), (begin, _) in zip(ranges, ranges[1:])), ranges


@pytest.mark.parametrize("weight_map, error, fragment", [
    ({"w": "../outside.safetensors"}, CheckpointError, "shard '../outside.safetensors' is not a file name"),
    ({"w": "/etc/passwd"}, CheckpointError, "shard '/etc/passwd' is not a file name"),
    ({"w": "sub/model.safetensors"}, CheckpointError, "is not a file name in the index's folder"),
    ({"w": ["model.safetensors"]}, CheckpointError, 'expected a JSON object with a "weight_map" object'),
    ({"w": 5}, CheckpointError, 'expected a JSON object with a "weight_map" object'),
    ({"w": "missing.safetensors"}, FileNotFoundError, "lists shard 'missing.safetensors'"),
])
def test_a_shard_index_reaching_outside_its_folder_is_refused(worker, tmp_path, weight_map, error, fragment):
    (tmp_path / "outside.safetensors").write_bytes(safetensors_bytes({}))
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    expect(worker.run("read_folder", str(folder)), error, fragment)


# ------------------------------------------------------------------------------------------------
# Tokenizers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("class_name", ["DebertaV2Tokenizer", "DebertaV2TokenizerFast"])
@pytest.mark.parametrize("method, args, kwargs, error, fragment", [
    ("__call__", (None,), {}, ValueError, "text is required (a str or a list of str); got None"),
    ("__call__", (5,), {}, TypeError, "text must be a str or a list/tuple of str (a batch); got int"),
    ("__call__", (b"bytes",), {}, TypeError, "got bytes"),
    ("__call__", (["fine", 5],), {}, TypeError, "text[1] must be a str; got int 5"),
    ("__call__", ([b"x"],), {}, TypeError, "text[0] must be a str; got bytes b'x'"),
    ("__call__", ("a\ud800b",), {}, ValueError, "text holds a lone surrogate '\\ud800' at index 1"),
    ("__call__", (["fine", "\udcff"],), {}, ValueError, "text[1] holds a lone surrogate"),
    ("__call__", ("fine", "\udc80"), {}, ValueError, "text_pair holds a lone surrogate"),
    ("__call__", ("fine", 5), {}, TypeError, "text_pair must be a str or a list/tuple of str"),
    ("__call__", (["a", "\ud800"],), {"is_split_into_words": True}, ValueError, "text[1] holds a lone surrogate"),
    ("__call__", ([["a"], [7]],), {"is_split_into_words": True}, TypeError, "text[1] is list [7]"),
    ("tokenize", (None,), {}, TypeError, "text must be a str; got NoneType"),
    ("tokenize", ("\ud800",), {}, ValueError, "text holds a lone surrogate"),
    ("encode", (5,), {}, TypeError, "text must be a str or a list/tuple of str"),
    ("convert_tokens_to_ids", (["[CLS]", 5],), {}, TypeError, "tokens must be a str; got int 5"),
])
def test_tokenizer_inputs_that_are_not_text_are_named(worker, tokenizer_folder, class_name, method, args, kwargs,
                                                      error, fragment):
    expect(worker.run("tokenizer_call", str(tokenizer_folder), class_name, method, *args, **kwargs), error, fragment)


@settings(max_examples=100)
@given(text=st.text(st.characters(exclude_categories=()), max_size=12), batched=st.booleans())
@example(text="\ud800", batched=False)
@example(text="\U0001f600", batched=True)  # a pair of surrogates in UTF-16, one character here: fine
def test_a_text_is_encoded_unless_it_holds_a_lone_surrogate(worker, tokenizer_folder, text, batched):
    """Unicode: U+D800..U+DFFF are surrogate code points, never characters, and UTF-8 cannot encode them."""
    result = worker.run("tokenizer_call", str(tokenizer_folder), "DebertaV2TokenizerFast", "__call__",
                        ["fine", text] if batched else text)
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        expect(result, ValueError, f"{'text[1]' if batched else 'text'} holds a lone surrogate")
    else:
        assert result["error"] is None, result


@pytest.fixture(scope="module")
def spm_without_unknown(tmp_path_factory):
    """The v3 spm.model with its unknown piece ([UNK]) turned into a normal piece."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(SPM.read_bytes())
    for piece in proto.pieces:
        if piece.type == piece.UNKNOWN:
            piece.type = piece.NORMAL
    return proto.SerializeToString()


@pytest.mark.parametrize("files, kwargs, error, fragment", [
    ({"spm.model": "no unknown piece"}, {}, ValueError, "has no unknown piece"),
    ({"spm.model": b"garbage"}, {}, ValueError, "is not a readable sentencepiece model"),
    ({"tokenizer_config.json": b'{"do_lower_case": "\xff"}'}, {}, CheckpointError,
     "tokenizer_config.json is not UTF-8 text"),
    ({"tokenizer_config.json": []}, {}, CheckpointError, "tokenizer_config.json must hold a JSON object, got list"),
    ({"tokenizer_config.json": {"do_lower_case": "no"}}, {}, TypeError, "do_lower_case must be True or False; got str"),
    ({"tokenizer_config.json": {"model_max_length": "big"}}, {}, ValueError, "model_max_length must be an int >= 1"),
    ({}, {"mask_token": ""}, ValueError, "mask_token must not be empty"),
    ({"tokenizer_config.json": {"added_tokens_decoder": {"5": {"content": ""}}}}, {}, ValueError,
     "added_tokens_decoder[5] must not be empty"),
    ({"tokenizer_config.json": {"added_tokens_decoder": {"x": {"content": "a"}}}}, {}, ValueError,
     "added_tokens_decoder keys must be token ids"),
    ({"tokenizer_config.json": {"sp_model_kwargs": {"out_type": "str"}}}, {}, TypeError,
     "sp_model_kwargs takes enable_sampling, nbest_size, alpha; got 'out_type'"),
    ({"tokenizer_config.json": {}, "added_tokens.json": {"[X]": "one"}}, {}, CheckpointError,
     "added_tokens.json must map tokens to ids"),
    ({}, {"split_by_punct": "yes"}, TypeError, "split_by_punct must be True or False"),
])
def test_a_bad_tokenizer_file_or_setting_is_named(worker, tokenizer_folder, spm_without_unknown, tmp_path, files,
                                                  kwargs, error, fragment):
    files = {name: spm_without_unknown if content == "no unknown piece" else content for name, content in files.items()}
    folder = folder_with(tokenizer_folder, tmp_path / "tokenizer", **files)
    expect(worker.run("load_tokenizer", folder, **kwargs), error, fragment)


# ------------------------------------------------------------------------------------------------
# Pipelines, from_pretrained options, positions
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, model, args, kwargs, error, fragment", [
    ("fill-mask", "pydeberta/tiny", (None,), {}, TypeError, "fill-mask: inputs must be a text or a list of texts"),
    ("fill-mask", "pydeberta/tiny", ({"text": "A [MASK]."},), {}, TypeError, "got dict"),
    ("fill-mask", "pydeberta/tiny", ("A [MASK] \ud800.",), {}, ValueError, "lone surrogate"),
    ("fill-mask", "pydeberta/tiny", ("A [MASK].",), {"targets": [""]}, ValueError, "At least one target"),
    ("text-classification", "nli", (5,), {}, TypeError, "text-classification: inputs must be a text, a dict"),
    ("text-classification", "nli", ({"txt": "a"},), {}, ValueError, "inputs: a text pair is a dict with keys"),
    ("text-classification", "nli", (["a", {"text": None}],), {}, TypeError, "inputs[1]['text'] must be a text"),
    ("zero-shot-classification", "nli", ("A text.", ["sports"]), {"hypothesis_template": "It is {1}."}, ValueError,
     "hypothesis_template"),
    ("zero-shot-classification", "nli", (None, ["sports"]), {}, TypeError, "sequences must be a text"),
    ("ner", "ner", (3.5,), {}, TypeError, "token-classification: inputs must be a text or a list of texts"),
])
def test_pipeline_inputs_that_are_not_text_are_named(worker, task_folders, task, model, args, kwargs, error,
                                                     fragment):
    expect(worker.run("pipeline_call", task, task_folders.get(model, model), *args, **kwargs), error, fragment)


@pytest.mark.parametrize("case, args, kwargs, error, fragment", [
    ("load_model", (), {"load_in_8bit": True}, TypeError, "unexpected keyword argument(s) ['load_in_8bit']"),
    ("load_model", (), {"quantize": "int4"}, ValueError, "quantize: method must be 'int8', got 'int4'"),
    ("load_model", (), {"num_hidden_layer": 3}, TypeError, "['num_hidden_layer']"),
    ("load_model", (), {"dtype": "float16"}, ValueError, "dtype must be float32 or float64"),
    ("load_model", (), {"class_name": "AutoModelForMaskedLM", "load_in_8bit": True}, TypeError, "['load_in_8bit']"),
    ("load_tokenizer", (), {"do_lower_case": "yes"}, TypeError, "do_lower_case must be True or False"),
    ("load_tokenizer", (), {"class_name": "AutoTokenizer", "mask_token": 5}, TypeError, "mask_token must be a str"),
    ("relative_index", (4.5, 4, 2), {}, TypeError, "query_size must be an integer, got float 4.5"),
    ("relative_index", (4, 4, 0), {}, ValueError, "att_span must be >= 1"),
])
def test_careless_keywords_and_sizes_are_named(worker, safetensors_folder, tokenizer_folder, case, args, kwargs,
                                               error, fragment):
    folder = {"load_model": (str(safetensors_folder),), "load_tokenizer": (str(tokenizer_folder),)}.get(case, ())
    expect(worker.run(case, *folder, *args, **kwargs), error, fragment)


# ------------------------------------------------------------------------------------------------
# The command line: one line on standard error, a non-zero exit status, no traceback
# ------------------------------------------------------------------------------------------------

def cli_cases(tmp, safetensors_folder, tokenizer_folder, model):
    """id -> (command, standard input, extra environment, fragment of the one error line)."""
    python_m = [sys.executable, "-m", "pydeberta.cli"]
    bad_file = tmp / "texts.txt"
    bad_file.write_bytes(b"A [MASK] sat.\nThe \xff [MASK].\n")
    no_matplotlib = tmp / "no_matplotlib" / "matplotlib"
    no_matplotlib.mkdir(parents=True)
    (no_matplotlib / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'matplotlib'\")\n")
    labels = folder_with(safetensors_folder, tmp / "labels",
                         **{"config.json": edited_config(safetensors_folder, id2label=[])})
    nested = folder_with(safetensors_folder, tmp / "nested", **{"pytorch_model.bin": zip_with_pickle(DEEP_TUPLE_KEY)})
    os.remove(Path(nested) / "model.safetensors")
    far = folder_with(tokenizer_folder, tmp / "far")
    folder_with(safetensors_folder, tmp / "far", **{"config.json": edited_config(
        safetensors_folder, num_hidden_layers=300, architectures=["DebertaV2ForMaskedLM"])})
    expanded = folder_with(tokenizer_folder, tmp / "expanded", **{
        "pytorch_model.bin": expanded_bin(model),
        "config.json": edited_config(safetensors_folder, architectures=["DebertaV2ForMaskedLM"])})
    return {
        "standard input": (python_m + ["fill-mask"], b"A [MASK] sat.\n\xffA [MASK].\n", {},
                           "standard input, line 2: not UTF-8 text (invalid start byte: byte 0xff at byte 1)"),
        "argument": (["pydeberta", "fill-mask", b"The \xe9 [MASK]."], None, {}, "text argument 1: not UTF-8 text"),
        "option": (python_m + ["zero-shot", "--labels", b"sp\xf6rts", "A text."], None, {}, "--labels: not UTF-8"),
        "--file": (python_m + ["fill-mask", "--file", str(bad_file)], None, {},
                   f"--file {bad_file}, line 2: not UTF-8 text"),
        "attention without matplotlib": (python_m + ["attention", "/no/such/folder", "A text."], None,
                                         {"PYTHONPATH": str(no_matplotlib.parent)},
                                         "attention needs matplotlib, which is not installed: pip install "
                                         "'pydeberta[viz]'"),
        "inspect id2label []": (python_m + ["inspect", labels], None, {},
                                "config.id2label must map label numbers to names"),
        "--targets ,": (["pydeberta", "fill-mask", "--targets", ",", "A [MASK]."], None, {},
                        "--targets needs at least one word (comma-separated), got ','"),
        "usage": (python_m + ["fill-mask", "--top-k", "many"], None, {}, "argument --top-k: invalid int value"),
        "nested pickle": (python_m + ["inspect", nested], None, {}, "nests values more than 64 levels deep"),
        "a message of many lines": (python_m + ["fill-mask", "--model", far, "A [MASK]."], None, {},
                                    "lacks backbone tensors the config requires:"),
        "expanded tensor": (python_m + ["fill-mask", "--model", expanded, "A [MASK]."], None, {},
                            "shape mismatch between"),
        "PYDEBERTA_BACKEND": (python_m + ["fill-mask", "A [MASK]."], None, {"PYDEBERTA_BACKEND": "fast"},
                              "PYDEBERTA_BACKEND must be one of auto, reference, numpy, cython, got 'fast'"),
        "PYDEBERTA_NUM_THREADS": (python_m + ["inspect"], None, {"PYDEBERTA_NUM_THREADS": "two"},
                                  "PYDEBERTA_NUM_THREADS must be an integer >= 1, got 'two'"),
        "PYDEBERTA_BLOCK_CACHE": (python_m + ["fill-mask", "A [MASK]."], None, {"PYDEBERTA_BLOCK_CACHE": "yes"},
                                  "PYDEBERTA_BLOCK_CACHE must be 0 or 1, got 'yes'"),
    }


def run_cli(command, stdin, environment):
    """``command`` as a user would run it, under the children's limits."""
    return subprocess.run(command, input=stdin if stdin is not None else b"", capture_output=True,
                          timeout=CASE_TIMEOUT, env={**os.environ, **environment}, preexec_fn=limit_child,
                          cwd=tempfile.gettempdir())


CLI_IDS = ["standard input", "argument", "option", "--file", "attention without matplotlib", "inspect id2label []",
           "--targets ,", "usage", "nested pickle", "a message of many lines", "expanded tensor", "PYDEBERTA_BACKEND",
           "PYDEBERTA_NUM_THREADS", "PYDEBERTA_BLOCK_CACHE"]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, safetensors_folder, tokenizer_folder, model):
    """Every command-line case's completed process, three at a time."""
    cases = cli_cases(tmp_path_factory.mktemp("cli"), safetensors_folder, tokenizer_folder, model)
    assert sorted(cases) == sorted(CLI_IDS)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = {name: pool.submit(run_cli, *case[:3]) for name, case in cases.items()}
    return {name: (future.result(), cases[name][3]) for name, future in done.items()}


@pytest.mark.parametrize("name", CLI_IDS)
def test_a_command_line_failure_is_one_line(cli_results, name):
    done, fragment = cli_results[name]
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode > 0, f"exit status {done.returncode}: {stderr}"
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert fragment in stderr and not done.stdout, stderr
