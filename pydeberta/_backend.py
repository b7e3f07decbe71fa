"""Which implementation runs: the NumPy references or their compiled Cython twins.

The NumPy functions are the specification. A few of them have a twin in ``_ext/`` (compiled as
``pydeberta._cy_<module>``) with the same name, arguments and results; a reference marked
``@dispatch`` calls its twin while the ``cython`` backend is active:

=====================================  ===========================================
reference                              twin
=====================================  ===========================================
``positions.make_log_bucket_position``  ``_cy_positions.make_log_bucket_position``
``positions.build_relative_position``   ``_cy_positions.build_relative_position``
``positions.relative_index``            ``_cy_positions.relative_index``
``functional.gelu``                     ``_cy_functional.gelu``
``functional.layer_norm``               ``_cy_functional.layer_norm``
``attention.disentangled_attention_probs``  ``_cy_attention.disentangled_attention_probs``
=====================================  ===========================================

The float twins take float32/float64 arrays; other inputs (float16, integers, Python scalars)
always run the reference. The reference itself stays reachable as ``function.__wrapped__``.

Choosing (read once, at import): ``PYDEBERTA_BACKEND=auto`` (default: ``cython`` when the
extension is built, else ``numpy``, silently), ``numpy``, or ``cython`` (an error when the
extension is not built). Inside a program, :func:`use_backend` switches for a ``with`` block, and
:func:`backend_info` says what runs.
"""

import contextlib
import contextvars
import functools
import importlib
import inspect
import os

import numpy as np

BACKENDS = ("auto", "numpy", "cython")
_COMPILED_MODULES = {"positions": "_cy_positions", "functional": "_cy_functional", "attention": "_cy_attention",
                     "threads": "_cy_threads", "allocator": "_cy_allocator"}
_FLOAT_KERNELS = {"gelu", "layer_norm", "disentangled_attention_probs"}


def _import_compiled():
    """``({reference module: compiled module}, None)``, or ``(None, why not)``."""
    # The twins' OpenMP threads take turns with OpenBLAS's threads many times per layer. By default
    # libgomp keeps its threads spinning for a while after each parallel region, on the cores BLAS
    # needs next (measured: a forward 25x slower on 2 cores). Sleeping at once costs microseconds
    # per region. Set before libgomp loads; a user's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    modules = {}
    for name, compiled in _COMPILED_MODULES.items():
        try:
            modules[name] = importlib.import_module(f"{__package__}.{compiled}")
        except ImportError as exc:
            return None, f"{compiled}: {exc}"
    return modules, None


_COMPILED, _UNAVAILABLE = _import_compiled()


def _resolve(name, source):
    """The concrete backend (``numpy`` or ``cython``) that ``name`` asks for."""
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "cython" and _COMPILED is None:
        raise RuntimeError(f"{source}='cython' but the compiled extension is not available ({_UNAVAILABLE}); "
                           f"reinstall with a C compiler and Cython, or use 'auto' or 'numpy'")
    if name == "auto":
        return "numpy" if _COMPILED is None else "cython"
    return name


_REQUESTED = os.environ.get("PYDEBERTA_BACKEND", "auto").strip().lower() or "auto"
_active = contextvars.ContextVar("pydeberta_backend", default=_resolve(_REQUESTED, "PYDEBERTA_BACKEND"))


def available_backends():
    """The concrete backends this installation can run, fastest first."""
    return ("numpy",) if _COMPILED is None else ("cython", "numpy")


def active_backend():
    """``"cython"`` or ``"numpy"``: what ``@dispatch`` functions call now."""
    return _active.get()


@contextlib.contextmanager
def use_backend(name, num_threads=None):
    """Run a ``with`` block on backend ``name`` (``auto``, ``numpy`` or ``cython``).

    ``num_threads`` also sets the OpenMP threads of the compiled kernels inside the block
    (results do not depend on it). ``cython`` without the extension raises ``RuntimeError``.

    >>> with use_backend("numpy"):
    ...     active_backend()
    'numpy'
    """
    token = _active.set(_resolve(name, "backend"))
    threads = _COMPILED["threads"] if (_COMPILED is not None and num_threads is not None) else None
    previous = threads.max_threads() if threads is not None else None
    try:
        if threads is not None:
            threads.set_num_threads(num_threads)
        yield
    finally:
        if threads is not None:
            threads.set_num_threads(previous)
        _active.reset(token)


def backend_info():
    """What runs: a dict with

    - ``backend``: ``"cython"`` or ``"numpy"`` (active now); ``requested``: ``PYDEBERTA_BACKEND``;
    - ``compiled``: whether the extension is built and imports (``reason`` says why not);
    - ``openmp``: whether it was compiled with OpenMP; ``threads``: OpenMP threads of its kernels
      (1 without OpenMP or without the extension);
    - ``vector_math``: whether erf/exp run as glibc's SIMD variants;
    - ``block_cache``: whether the model's forward takes NumPy's large blocks from the
      extension's cache (:func:`block_cache`; the ``cython`` backend);
    - ``twins``: the functions that have a compiled twin.
    """
    threads = _COMPILED["threads"] if _COMPILED is not None else None
    return {
        "backend": active_backend(),
        "requested": _REQUESTED,
        "compiled": _COMPILED is not None,
        "reason": _UNAVAILABLE,
        "openmp": threads is not None and threads.openmp_enabled(),
        "threads": threads.max_threads() if threads is not None else 1,
        "vector_math": threads is not None and threads.vector_math(),
        "block_cache": active_backend() == "cython",
        "twins": sorted(_TWINS),
    }


def block_cache():
    """A context in which NumPy allocates large arrays from the extension's block cache
    (``_ext/block_cache.h``): blocks one forward frees are reused by the next instead of being
    faulted in again from the kernel (7% of a B=8 N=128 forward). Only with the ``cython``
    backend; a no-op otherwise. Values never change."""
    if active_backend() != "cython":
        return contextlib.nullcontext()
    return _COMPILED["allocator"].use_block_cache()


_TWINS = {}


def dispatch(reference):
    """Decorator: call ``reference``'s compiled twin (same module stem, same name) while the
    ``cython`` backend is active, else ``reference`` itself.

    The twin is looked up once, here. Float kernels go to the twin only for float32/float64
    ndarray first arguments.
    """
    name = reference.__name__
    module = reference.__module__.rsplit(".", 1)[-1]
    twin = getattr(_COMPILED[module], name) if _COMPILED is not None else None
    if twin is None:
        return reference
    _TWINS[f"{module}.{name}"] = twin
    float_kernel = name in _FLOAT_KERNELS
    first = next(iter(inspect.signature(reference).parameters))

    @functools.wraps(reference)
    def dispatched(*args, **kwargs):
        if _active.get() == "cython":
            x = args[0] if args else kwargs.get(first)
            if not float_kernel or (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)):
                return twin(*args, **kwargs)
        return reference(*args, **kwargs)

    return dispatched


def twin_of(function):
    """The compiled twin of a ``@dispatch`` function (``None`` when not built)."""
    key = f"{function.__module__.rsplit('.', 1)[-1]}.{function.__name__}"
    return _TWINS.get(key)
