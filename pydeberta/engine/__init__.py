"""The engine: the book's forward pass, same names and numbers, faster.

* :mod:`~pydeberta.engine.backend`: which implementation runs (``reference`` | ``numpy`` |
  ``cython``), decided in one place; :func:`use_backend`, :func:`backend_info`.
* :mod:`~pydeberta.engine.model`: the forward pass and :class:`~pydeberta.engine.model.Engine`,
  a model's derived tables computed once; :mod:`~pydeberta.engine.attention`: attention a chunk
  of heads at a time.
* :mod:`~pydeberta.engine.relative`: the relative index built once per length, as one line.
* :mod:`~pydeberta.engine.kernels`: the NumPy kernels; ``_ext/`` their compiled twins (Cython
  and C, built by ``pip install .``), the thread count and the block cache.
* :mod:`~pydeberta.engine.pack`: the parameters in one aligned buffer.

The engine imports the book (:mod:`pydeberta.functional`, :mod:`pydeberta.attention`, ...) only to
reuse what is already fast enough or to fall back; the book never imports the engine.
"""

from .backend import (active_backend, available_backends, backend_info, release_memory, set_num_threads,
                      use_backend)

__all__ = ["active_backend", "available_backends", "backend_info", "release_memory", "set_num_threads",
           "use_backend"]
