"""Build facts (OpenMP, vector math) and the thread count of the compiled kernels (``pydeberta.engine._cy_threads``).

Every ``prange`` of the twins runs on ``max_threads()`` OpenMP threads. The OpenMP runtime is
shared by all ``pydeberta.engine._cy_*`` modules, so setting it here sets it for all of them. NumPy's
BLAS has its own thread pool (``OPENBLAS_NUM_THREADS``); torch has its own OpenMP runtime.
"""

from omp_compat cimport PYDEBERTA_OPENMP, omp_get_max_threads, omp_set_num_threads
from vector_math cimport PYDEBERTA_LIBMVEC


def openmp_enabled():
    """True when the extension was compiled with OpenMP (``prange`` runs in parallel)."""
    return bool(PYDEBERTA_OPENMP)


def max_threads():
    """Threads an OpenMP parallel region uses now (1 without OpenMP)."""
    return omp_get_max_threads()


def set_num_threads(n):
    """Use ``n`` (>= 1) OpenMP threads in later parallel regions (no-op without OpenMP)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    omp_set_num_threads(n)


def vector_math():
    """True when erf and exp run as glibc's SIMD variants (libmvec) in vectorised loops."""
    return bool(PYDEBERTA_LIBMVEC)
