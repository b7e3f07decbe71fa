"""How a model crosses a process boundary (multiprocessing, Dask, Ray): by the folder it was
loaded from when that suffices, by value otherwise.

A model loaded with ``from_pretrained`` remembers its :class:`Source`: the folder, the config it
was built with, its dtype, and the very arrays it loaded, which are made read-only (an in-place
edit would silently diverge from the folder; assigning a new array to a place in ``model.tree``
is how a parameter is changed). Pickling such a model, while every parameter is still one of
those arrays, writes only the folder, the config and a digest of the weights (a few kilobytes,
not the weights); unpickling loads the folder through :func:`load_shared`, which keeps the
models it made, so a worker process that receives the same model for many tasks loads it once,
and checks the digest, so a folder that changed (or differs on another machine) is an error,
never a silently different model. A model quantized after loading (``quantize="int8"``) is
pickled the same way, with the quantization to redo (deterministic, so the digest of its int8
weights checks it too). Any other model is pickled by value: config, dtype and every array.
"""

import functools
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from .config import DebertaV2Config


def weights_digest(params):
    """BLAKE2b digest of a model's parameters: keys, dtypes, shapes and bytes, in key order."""
    digest = hashlib.blake2b(digest_size=20)
    for key in sorted(params):
        array = np.ascontiguousarray(params[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@dataclass
class Source:
    """Where a loaded model came from: ``folder`` (str), ``config`` (dict), ``dtype`` (name),
    ``arrays``, its parameters as loaded (key -> the very array objects, read-only), and
    ``quantize``, the quantization applied after loading (None or ``"int8"``)."""

    folder: str
    config: dict
    dtype: str
    arrays: dict
    quantize: str = None
    _digest: str = field(default=None, repr=False)

    def unchanged(self, params):
        """Whether ``params`` still holds exactly the loaded arrays (none was replaced)."""
        return params.keys() == self.arrays.keys() and all(params[k] is self.arrays[k] for k in params)

    def digest(self):
        """The weights' digest, computed on first use (the arrays are read-only)."""
        if self._digest is None:
            self._digest = weights_digest(self.arrays)
        return self._digest


@functools.lru_cache(maxsize=4)
def _load(cls, folder, config_json, dtype, quantize):
    model = cls.from_pretrained(folder, config=DebertaV2Config.from_dict(json.loads(config_json)), dtype=dtype,
                                quantize=quantize)
    return model, model._source.digest()  # kept on the model: pickling it again does not hash again


def load_shared(cls, folder, config, dtype, digest, quantize=None):
    """The model ``cls.from_pretrained(folder, config=config, dtype=dtype, quantize=quantize)``,
    loaded once per process for the same arguments (the last four kept), after checking that its
    weights' digest is ``digest``.

    Raises:
        ValueError: the folder's weights are not the ones the model was pickled with.
    """
    model, found = _load(cls, folder, json.dumps(config, sort_keys=True), dtype, quantize)
    if found != digest:
        raise ValueError(f"{folder} no longer holds the weights this {cls.__name__} was pickled with (digest "
                         f"{found[:12]}..., expected {digest[:12]}...): the folder changed, or differs on this "
                         "machine")
    return model


def rebuild(cls, config, params, dtype):
    """A model pickled by value: ``cls(config, params=params, dtype=dtype)``."""
    return cls(DebertaV2Config.from_dict(config), params=params, dtype=dtype)
