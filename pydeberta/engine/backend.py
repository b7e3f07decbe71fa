"""Which implementation runs a forward pass: the one place where that is decided.

=============  =========================================================================
backend        what a model call runs
=============  =========================================================================
``reference``  the book: :func:`pydeberta.model.backbone` and :mod:`pydeberta.heads`, as written
``numpy``      the engine (:mod:`pydeberta.engine.model`) with its NumPy kernels
``cython``     the engine with its compiled kernels (``_ext/``), when the extension is built
``auto``       the fastest available: ``cython`` when built, else ``numpy`` (the default)
=============  =========================================================================

The engine swaps whole kernels, listed in :data:`KERNELS`: ``linear``, ``quantized_linear``,
``gelu``, ``layer_norm`` and ``disentangled_attention_probs`` for the forward, and for the training
pass (:mod:`pydeberta.engine.training`, which :func:`pydeberta.training.value_and_grad` runs under
``numpy`` and ``cython``) ``linear_backward``, ``gelu_backward``, ``layer_norm_backward`` and
``disentangled_attention_probs_backward``; every backend gives the same numbers within float
rounding (``tests/test_engine_kernels.py``, ``tests/test_modeling.py``, ``tests/test_gradients.py``),
and the same bits for the int8 layers. ``output_study=True`` always runs the book, whose intermediates it returns.

int8 layers (a model after ``quantize("int8")``): the ``cython`` backend runs them with the AVX2
kernel (``_ext/int8_gemm.h``) when the CPU has AVX2, else with the NumPy reference
:func:`pydeberta.quantization.quantized_linear`, which the ``numpy`` backend always uses;
``PYDEBERTA_INT8_KERNEL`` = ``auto`` (default) | ``avx2`` | ``numpy`` forces one (``avx2`` on a CPU
without it: ``RuntimeError``). ``backend_info()["int8"]`` says which runs.

Choosing: ``PYDEBERTA_BACKEND`` (read once, at first use; default ``auto``), or :func:`use_backend`
for a ``with`` block; :func:`backend_info` says what runs. ``PYDEBERTA_BLOCK_CACHE=0`` turns the
``cython`` backend's block cache off (:func:`block_cache`).

Threads: the compiled kernels run on :func:`set_num_threads` threads (``PYDEBERTA_NUM_THREADS`` at
first use; default: the cores this process may use). In a child made by ``fork()`` they run on one
thread: the OpenMP runtime cannot restart its thread pool there (a parallel region in the child
of a process that used it would wait forever), so the child keeps working, serially.
"""

import contextlib
import contextvars
import functools
import importlib
import os
from typing import Callable, NamedTuple

from .. import functional, quantization
from . import kernels

BACKENDS = ("auto", "reference", "numpy", "cython")
_COMPILED_MODULES = ("_cy_functional", "_cy_attention", "_cy_threads", "_cy_allocator", "_cy_int8")
INT8_KERNELS = ("auto", "avx2", "numpy")


class Kernels(NamedTuple):
    """The kernels the engine calls; one set per backend (:data:`KERNELS`)."""

    linear: Callable
    quantized_linear: Callable
    gelu: Callable
    layer_norm: Callable
    disentangled_attention_probs: Callable
    linear_backward: Callable
    gelu_backward: Callable
    layer_norm_backward: Callable
    disentangled_attention_probs_backward: Callable

    def dense(self, x, module):
        """A linear layer's parameters ``module`` (``weight``, ``bias``, and ``weight_scale`` when
        it is int8) applied to ``x [..., in]``: ``[..., out]``."""
        return self.quantized_linear(x, **module) if "weight_scale" in module else self.linear(x, **module)


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

KERNELS = {"numpy": Kernels(kernels.linear, quantization.quantized_linear, kernels.gelu, kernels.layer_norm,
                            kernels.disentangled_attention_probs, kernels.linear_backward, kernels.gelu_backward,
                            kernels.layer_norm_backward, kernels.disentangled_attention_probs_backward)}
if _COMPILED is not None:
    KERNELS["cython"] = Kernels(kernels.linear, _COMPILED["_cy_int8"].quantized_linear, _COMPILED["_cy_functional"].gelu,
                                _COMPILED["_cy_functional"].layer_norm,
                                _COMPILED["_cy_attention"].disentangled_attention_probs, kernels.linear_backward,
                                _COMPILED["_cy_functional"].gelu_backward,
                                _COMPILED["_cy_functional"].layer_norm_backward,
                                _COMPILED["_cy_attention"].disentangled_attention_probs_backward)


def max_threads():
    """The most threads the kernels may use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _check_threads(n, source):
    """``n`` as a thread count: an int >= 1, capped at :func:`max_threads` (more threads than
    cores only make compute kernels wait for each other), and 1 in a forked child."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{source} must be an integer >= 1, got {n!r}")
    return 1 if _FORKED_CHILD else min(n, max_threads())


def set_num_threads(n):
    """Run the compiled kernels on ``n`` threads (an integer >= 1; more than :func:`max_threads`
    is capped there; 1 in a forked child). Results do not depend on it. Returns the count set."""
    _environment()  # PYDEBERTA_NUM_THREADS first, so that this call wins over it
    return _apply_threads(_check_threads(n, "num_threads"))


def _apply_threads(n):
    if _COMPILED is not None:
        _COMPILED["_cy_threads"].set_num_threads(n)
    return n


def _after_fork_in_child():
    """The OpenMP pool of the parent does not exist in a forked child: use one thread there."""
    global _FORKED_CHILD
    _FORKED_CHILD = True
    if _COMPILED is not None:
        _COMPILED["_cy_threads"].set_num_threads(1)


_FORKED_CHILD = False
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


class Environment(NamedTuple):
    """The settings read from the environment: ``requested`` (``PYDEBERTA_BACKEND``), ``backend``
    (what it resolves to), ``block_cache`` (``PYDEBERTA_BLOCK_CACHE``), ``int8``
    (``PYDEBERTA_INT8_KERNEL``: ``auto``, ``avx2`` or ``numpy``)."""

    requested: str
    backend: str
    block_cache: bool
    int8: str


@functools.lru_cache(maxsize=None)
def _environment():
    """Read and check ``PYDEBERTA_BACKEND``, ``PYDEBERTA_BLOCK_CACHE`` and ``PYDEBERTA_NUM_THREADS``
    on first use, not at import: a bad value is then a ``ValueError`` of the call that meets it
    (which the command line reports in one line), not of ``import pydeberta``. The thread count
    is applied here (the extension's default, capped, when the variable is unset). A failed
    check is not cached: it fails again at the next use."""
    requested = os.environ.get("PYDEBERTA_BACKEND", "auto").strip().lower() or "auto"
    backend = _resolve(requested, "PYDEBERTA_BACKEND")
    block_cache = os.environ.get("PYDEBERTA_BLOCK_CACHE", "1").strip()
    if block_cache not in ("0", "1"):
        raise ValueError(f"PYDEBERTA_BLOCK_CACHE must be 0 or 1, got {block_cache!r}")
    int8 = os.environ.get("PYDEBERTA_INT8_KERNEL", "auto").strip().lower() or "auto"
    if int8 not in INT8_KERNELS:
        raise ValueError(f"PYDEBERTA_INT8_KERNEL must be one of {', '.join(INT8_KERNELS)}, got {int8!r}")
    if int8 == "avx2" and not _have_avx2():
        raise RuntimeError("PYDEBERTA_INT8_KERNEL=avx2 but " + ("the compiled extension is not available"
                           if _COMPILED is None else "this CPU has no AVX2"))
    if "PYDEBERTA_NUM_THREADS" in os.environ:
        text = os.environ["PYDEBERTA_NUM_THREADS"].strip()
        _apply_threads(_check_threads(int(text) if text.isdigit() else text, "PYDEBERTA_NUM_THREADS"))
    elif _COMPILED is not None:
        _apply_threads(1 if _FORKED_CHILD else min(_COMPILED["_cy_threads"].max_threads(), max_threads()))
    return Environment(requested, backend, block_cache == "1", int8)


_active = contextvars.ContextVar("pydeberta_backend", default=None)  # None: the environment's backend


def available_backends():
    """The concrete backends this installation can run, fastest first."""
    return ("numpy", "reference") if _COMPILED is None else ("cython", "numpy", "reference")


def active_backend():
    """``"reference"``, ``"numpy"`` or ``"cython"``: what a model call runs now."""
    return _active.get() or _environment().backend


def _have_avx2():
    return _COMPILED is not None and _COMPILED["_cy_int8"].have_avx2()


def int8_kernel():
    """``"avx2"`` or ``"numpy"``: what runs the int8 layers under the active backend."""
    if active_backend() != "cython" or _environment().int8 == "numpy" or not _have_avx2():
        return "numpy"
    return "avx2"


def active_kernels():
    """The :class:`Kernels` of the active engine backend (``numpy``'s under ``reference``), with
    the int8 kernel :func:`int8_kernel` names."""
    chosen = KERNELS.get(active_backend(), KERNELS["numpy"])
    if int8_kernel() == "numpy":
        chosen = chosen._replace(quantized_linear=quantization.quantized_linear)
    return chosen


def activation(name, kernel_set):
    """The engine's activation for ``config.hidden_act``: the compiled GELU when the name means
    exact GELU, else the book's function."""
    function = functional.get_activation(name)
    return kernel_set.gelu if function is functional.gelu else function


def activation_backward(name, kernel_set):
    """The engine's backward of :func:`activation`: the kernel set's ``gelu_backward`` for exact
    GELU, else the book's (:func:`pydeberta.functional.get_activation_backward`)."""
    function = functional.get_activation(name)
    return kernel_set.gelu_backward if function is functional.gelu else functional.get_activation_backward(name)


@contextlib.contextmanager
def use_backend(name, num_threads=None):
    """Run a ``with`` block on backend ``name`` (``auto``, ``reference``, ``numpy`` or ``cython``).

    ``num_threads`` also sets the threads of the compiled kernels inside the block, as
    :func:`set_num_threads` (results do not depend on it). ``cython`` without the extension
    raises ``RuntimeError``.

    >>> with use_backend("reference"):
    ...     active_backend()
    'reference'
    """
    if num_threads is not None:
        _check_threads(num_threads, "num_threads")
        _environment()  # PYDEBERTA_NUM_THREADS applied first: the count restored after the block is the real one
    token = _active.set(_resolve(name, "backend"))
    threads = _COMPILED["_cy_threads"] if (_COMPILED is not None and num_threads is not None) else None
    previous = threads.max_threads() if threads is not None else None
    try:
        if threads is not None:
            set_num_threads(num_threads)
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
    if active_backend() != "cython" or not _environment().block_cache:
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
    - ``openmp``: whether it was compiled with OpenMP; ``threads``: threads of its kernels
      (1 without OpenMP or without the extension; :func:`set_num_threads`); ``max_threads``: the
      cap; ``forked_child``: whether this process is a ``fork()`` child (kernels on one thread);
    - ``vector_math``: whether erf/exp run as glibc's SIMD variants;
    - ``block_cache``: whether a forward takes NumPy's large blocks from the extension's cache
      (:func:`block_cache`); ``block_cache_bytes``: what it holds now (:func:`release_memory`);
    - ``int8``: what runs int8 layers, ``"avx2"`` or ``"numpy"`` (:func:`int8_kernel`);
    - ``kernels``: the active engine kernels, ``module.name`` each.
    """
    threads = _COMPILED["_cy_threads"] if _COMPILED is not None else None
    return {
        "backend": active_backend(),
        "requested": _environment().requested,
        "available": available_backends(),
        "compiled": _COMPILED is not None,
        "reason": _UNAVAILABLE,
        "openmp": threads is not None and threads.openmp_enabled(),
        "threads": threads.max_threads() if threads is not None else 1,
        "max_threads": max_threads(),
        "forked_child": _FORKED_CHILD,
        "vector_math": threads is not None and threads.vector_math(),
        "block_cache": active_backend() == "cython" and _environment().block_cache,
        "block_cache_bytes": _COMPILED["_cy_allocator"].cached_bytes() if _COMPILED is not None else 0,
        "int8": int8_kernel(),
        "kernels": {name: f"{function.__module__}.{function.__name__}"
                    for name, function in active_kernels()._asdict().items()},
    }
