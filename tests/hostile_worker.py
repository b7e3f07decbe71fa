"""The process tests/test_hostile.py runs its cases in, under a memory limit the parent sets.

One case per line on standard input, ``(name, args, kwargs)`` pickled and base64-encoded (the
parent is trusted; NaN, bytes and lone surrogates pass unchanged), ``name`` one of :data:`CASES`;
one JSON line per case on the standard output the process started with::

    {"error": "CheckpointError" or null, "message": "...", "value": ..., "seconds": 0.01, "peak_mib": 3}

``error`` is the class name of what the case raised (null if it returned ``value``), ``peak_mib``
how far the resident memory rose above where it was before the case. Anything a case prints goes
to standard error, so the parent reads exactly one line per case. A case taking longer than
:data:`CASE_SECONDS` is interrupted (``TimeoutError``); one stuck inside C code is the parent's to
kill. Imports the standard library, NumPy and pydeberta only (no torch, no transformers).
"""

import base64
import json
import os
import pickle
import signal
import sys
import time

import pydeberta
from pydeberta import checkpoint, positions, torch_pickle

CASE_SECONDS = 30
_LOADED = {}  # (class name, folder, options) -> tokenizer or pipeline, loaded once per process


def load_model(folder, class_name="DebertaV2Model", **kwargs):
    """``<class_name>.from_pretrained(folder, **kwargs)`` (a model, AutoModel..., AutoConfig); the
    class of what it gave."""
    return type(getattr(pydeberta, class_name).from_pretrained(folder, **kwargs)).__name__


def make_config(**fields):
    """``DebertaV2Config(**fields)``; its ``to_dict()`` keys."""
    return sorted(pydeberta.DebertaV2Config(**fields).to_dict())


def read_bin(path, lazy=False):
    """:func:`~pydeberta.torch_pickle.read_torch_bin`; key -> shape."""
    return {key: list(tensor.shape) for key, tensor in torch_pickle.read_torch_bin(path, lazy=lazy).items()}


def read_folder(folder):
    """:func:`~pydeberta.checkpoint.read_state_dict`; key -> shape."""
    return {key: list(array.shape) for key, array in checkpoint.read_state_dict(folder).items()}


def open_header(path):
    """:func:`~pydeberta.checkpoint.open_safetensors`; [key, dtype, shape, first byte, byte count] per
    tensor, for the parent to hold against the format's rules."""
    return [[key, tensor.dtype_name, list(tensor.shape), tensor.offset, tensor.nbytes]
            for key, tensor in checkpoint.open_safetensors(path).items()]


def load_tokenizer(folder, class_name="DebertaV2TokenizerFast", **kwargs):
    """``<class_name>.from_pretrained(folder, **kwargs)`` (AutoTokenizer too); its vocabulary size."""
    return getattr(pydeberta, class_name).from_pretrained(folder, **kwargs).vocab_size


def tokenizer_call(folder, class_name, method, *args, **kwargs):
    """``tokenizer.<method>(*args, **kwargs)`` on a tokenizer loaded once; the result's repr, cut."""
    key = (class_name, folder)
    if key not in _LOADED:
        _LOADED[key] = getattr(pydeberta, class_name).from_pretrained(folder)
    call = _LOADED[key] if method == "__call__" else getattr(_LOADED[key], method)
    return repr(call(*args, **kwargs))[:200]


def pipeline_call(task, folder, *args, **kwargs):
    """``pipeline(task, model=folder)(*args, **kwargs)`` on a pipeline built once; the result's repr, cut."""
    key = (task, folder)
    if key not in _LOADED:
        _LOADED[key] = pydeberta.pipeline(task, model=folder)
    return repr(_LOADED[key](*args, **kwargs))[:200]


def relative_index(*args):
    """The book's :func:`~pydeberta.positions.relative_index`; its shape."""
    return list(positions.relative_index(*args).shape)


CASES = {function.__name__: function for function in (
    load_model, make_config, read_bin, read_folder, open_header, load_tokenizer, tokenizer_call, pipeline_call,
    relative_index)}


def _kib(field):
    """``field`` of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def run(name, args, kwargs):
    """One case's result dict (see the module docstring)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS: the peak is measured from here
    before, start = _kib("VmRSS"), time.perf_counter()
    signal.alarm(CASE_SECONDS)
    try:
        result = {"error": None, "value": CASES[name](*args, **kwargs)}
    except Exception as error:  # noqa: BLE001 -- what the case raised is the result
        result = {"error": type(error).__name__, "message": str(error)}
    finally:
        signal.alarm(0)
    result.update(seconds=time.perf_counter() - start, peak_mib=(_kib("VmHWM") - before) / 1024)
    return result


def _interrupt(signum, frame):
    raise TimeoutError(f"the case ran longer than {CASE_SECONDS} s")


def main():
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a case prints, from Python or C, goes to standard error
    sys.stdout = sys.stderr
    signal.signal(signal.SIGALRM, _interrupt)
    for line in sys.stdin:
        name, args, kwargs = pickle.loads(base64.b64decode(line))
        results.write(json.dumps(run(name, args, kwargs), default=repr) + "\n")
        results.flush()


if __name__ == "__main__":
    main()
