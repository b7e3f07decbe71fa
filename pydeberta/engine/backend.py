"""Which implementation runs a forward pass: the one place where that is decided.

=============  =========================================================================
backend        what a model call runs
=============  =========================================================================
``reference``  the book: :func:`pydeberta.model.backbone` and :mod:`pydeberta.heads`, as written
``numpy``      the engine (:mod:`pydeberta.engine.model`) with its NumPy kernels
``cython``     the engine with its compiled kernels (``_ext/``), when the extension is built
``auto``       the fastest available: ``cython`` when built, else ``numpy`` (the default)
=============  =========================================================================

The engine swaps whole kernels, listed in :data:`KERNELS`: ``linear``, ``gelu``, ``layer_norm`` and
``disentangled_attention_probs``; every backend gives the same numbers within float rounding
(``tests/test_engine_kernels.py``, ``tests/test_modeling.py``). ``output_study=True`` always runs
the book, whose intermediates it returns.

Choosing: ``PYDEBERTA_BACKEND`` (read once, at import; default ``auto``), or :func:`use_backend`
for a ``with`` block; :func:`backend_info` says what runs. ``PYDEBERTA_BLOCK_CACHE=0`` turns the
``cython`` backend's block cache off (:func:`block_cache`).
"""

import contextlib
import contextvars
import importlib
import os
from typing import Callable, NamedTuple

from .. import functional
from . import kernels

BACKENDS = ("auto", "reference", "numpy", "cython")
_COMPILED_MODULES = ("_cy_functional", "_cy_attention", "_cy_threads", "_cy_allocator")


class Kernels(NamedTuple):
    """The kernels the engine calls; one set per backend (:data:`KERNELS`)."""

    linear: Callable
    gelu: Callable
    layer_norm: Callable
    disentangled_attention_probs: Callable


def _import_compiled():
    """``({name: compiled module}, None)``, or ``(None, why not)``."""
    # The twins' OpenMP threads take turns with OpenBLAS's threads many times per layer. By default
    # libgomp keeps its threads spinning for a while after each parallel region, on the cores BLAS
    # needs next (measured: a forward 25x slower on 2 cores). Sleeping at once costs microseconds
    # per region. Set before libgomp loads; a user's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    modules = {}
    for name in _COMPILED_MODULES:
        try:
            modules[name] = importlib.import_module(f"{__package__}.{name}")
        except ImportError as exc:
            return None, f"{name}: {exc}"
    return modules, None


_COMPILED, _UNAVAILABLE = _import_compiled()

KERNELS = {"numpy": Kernels(kernels.linear, kernels.gelu, kernels.layer_norm, kernels.disentangled_attention_probs)}
if _COMPILED is not None:
    KERNELS["cython"] = Kernels(kernels.linear, _COMPILED["_cy_functional"].gelu,
                                _COMPILED["_cy_functional"].layer_norm,
                                _COMPILED["_cy_attention"].disentangled_attention_probs)


def _resolve(name, source):
    """The concrete backend (``reference``, ``numpy`` or ``cython``) that ``name`` asks for."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "cython" and _COMPILED is None:
        raise RuntimeError(f"{source}='cython' but the compiled extension is not available ({_UNAVAILABLE}); "
                           f"reinstall with a C compiler and Cython, or use 'auto', 'numpy' or 'reference'")
    if name == "auto":
        return "numpy" if _COMPILED is None else "cython"
    return name


_REQUESTED = os.environ.get("PYDEBERTA_BACKEND", "auto").strip().lower() or "auto"
_BLOCK_CACHE = os.environ.get("PYDEBERTA_BLOCK_CACHE", "1").strip()
if _BLOCK_CACHE not in ("0", "1"):
    raise ValueError(f"PYDEBERTA_BLOCK_CACHE must be 0 or 1, got {_BLOCK_CACHE!r}")
_BLOCK_CACHE = _BLOCK_CACHE == "1"
_active = contextvars.ContextVar("pydeberta_backend", default=_resolve(_REQUESTED, "PYDEBERTA_BACKEND"))


def available_backends():
    """The concrete backends this installation can run, fastest first."""
    return ("numpy", "reference") if _COMPILED is None else ("cython", "numpy", "reference")


def active_backend():
    """``"reference"``, ``"numpy"`` or ``"cython"``: what a model call runs now."""
    return _active.get()


def active_kernels():
    """The :class:`Kernels` of the active engine backend (``numpy``'s under ``reference``)."""
    return KERNELS.get(_active.get(), KERNELS["numpy"])


def activation(name, kernel_set):
    """The engine's activation for ``config.hidden_act``: the compiled GELU when the name means
    exact GELU, else the book's function."""
    function = functional.get_activation(name)
    return kernel_set.gelu if function is functional.gelu else function


@contextlib.contextmanager
def use_backend(name, num_threads=None):
    """Run a ``with`` block on backend ``name`` (``auto``, ``reference``, ``numpy`` or ``cython``).

    ``num_threads`` also sets the OpenMP threads of the compiled kernels inside the block
    (results do not depend on it). ``cython`` without the extension raises ``RuntimeError``.

    >>> with use_backend("reference"):
    ...     active_backend()
    'reference'
    """
    token = _active.set(_resolve(name, "backend"))
    threads = _COMPILED["_cy_threads"] if (_COMPILED is not None and num_threads is not None) else None
    previous = threads.max_threads() if threads is not None else None
    try:
        if threads is not None:
            threads.set_num_threads(num_threads)
        yield
    finally:
        if threads is not None:
            threads.set_num_threads(previous)
        _active.reset(token)


def block_cache():
    """A context in which NumPy allocates large arrays from the extension's block cache
    (``_ext/block_cache.h``): blocks one forward frees are reused by the next instead of being
    faulted in again from the kernel. Only with the ``cython`` backend and unless
    ``PYDEBERTA_BLOCK_CACHE=0``; a no-op otherwise. Values never change."""
    if _active.get() != "cython" or not _BLOCK_CACHE:
        return contextlib.nullcontext()
    return _COMPILED["_cy_allocator"].use_block_cache()


def release_memory():
    """Give the memory the block cache holds back to the C library; returns the bytes released."""
    return _COMPILED["_cy_allocator"].clear() if _COMPILED is not None else 0


def backend_info():
    """What runs: a dict with

    - ``backend``: ``"reference"``, ``"numpy"`` or ``"cython"`` (active now);
      ``requested``: ``PYDEBERTA_BACKEND``; ``available``: :func:`available_backends`;
    - ``compiled``: whether the extension is built and imports (``reason`` says why not);
    - ``openmp``: whether it was compiled with OpenMP; ``threads``: OpenMP threads of its kernels
      (1 without OpenMP or without the extension);
    - ``vector_math``: whether erf/exp run as glibc's SIMD variants;
    - ``block_cache``: whether a forward takes NumPy's large blocks from the extension's cache
      (:func:`block_cache`); ``block_cache_bytes``: what it holds now (:func:`release_memory`);
    - ``kernels``: the active engine kernels, ``module.name`` each.
    """
    threads = _COMPILED["_cy_threads"] if _COMPILED is not None else None
    return {
        "backend": active_backend(),
        "requested": _REQUESTED,
        "available": available_backends(),
        "compiled": _COMPILED is not None,
        "reason": _UNAVAILABLE,
        "openmp": threads is not None and threads.openmp_enabled(),
        "threads": threads.max_threads() if threads is not None else 1,
        "vector_math": threads is not None and threads.vector_math(),
        "block_cache": active_backend() == "cython" and _BLOCK_CACHE,
        "block_cache_bytes": _COMPILED["_cy_allocator"].cached_bytes() if _COMPILED is not None else 0,
        "kernels": {name: f"{function.__module__}.{function.__name__}"
                    for name, function in active_kernels()._asdict().items()},
    }
