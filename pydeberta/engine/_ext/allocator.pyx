"""NumPy's array data from a cache of large blocks while pydeberta computes (``pydeberta.engine._cy_allocator``).

The cache is ``block_cache.h``: blocks freed by one forward pass are handed to the next instead
of going back to the kernel and being faulted in again page by page. :func:`use_block_cache`
installs it as NumPy's allocation handler for a ``with`` block; NumPy keeps the handler in a
context variable, so other threads and tasks keep theirs. Arrays allocated inside remember the
handler and return their block to the cache whenever they die. Values are never affected.
"""

import contextlib

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

cdef extern from "block_cache.h":
    ctypedef struct PyDataMem_Handler:
        pass
    PyDataMem_Handler pydeberta_block_cache_handler
    size_t PYDEBERTA_CACHE_LIMIT
    size_t PYDEBERTA_CACHE_MIN_BYTES
    size_t pydeberta_cache_clear() nogil
    size_t pydeberta_cache_bytes() nogil

_HANDLER = PyCapsule_New(<void*>&pydeberta_block_cache_handler, "mem_handler", NULL)
LIMIT_BYTES = PYDEBERTA_CACHE_LIMIT
MIN_BYTES = PYDEBERTA_CACHE_MIN_BYTES


@contextlib.contextmanager
def use_block_cache():
    """NumPy allocates from the block cache inside the ``with`` block (this context only)."""
    previous = PyDataMem_SetHandler(_HANDLER)
    try:
        yield
    finally:
        PyDataMem_SetHandler(previous)


def cached_bytes():
    """Bytes held in the cache now (at most ``LIMIT_BYTES``)."""
    return pydeberta_cache_bytes()


def clear():
    """Give every cached block back to the C library; returns the bytes released."""
    return pydeberta_cache_clear()
