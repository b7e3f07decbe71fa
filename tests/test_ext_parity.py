"""The model's parity suite against transformers, once more under the other backend.

``pytest`` runs every test on the backend ``PYDEBERTA_BACKEND`` selects (``auto``: the Cython
twins when they are built). This module re-runs the parity modules (``tests/test_model.py``,
``tests/test_heads.py``: every output of the backbone and of every head within 1e-4 / 1e-8 of
transformers, padded batches, both dtypes) in a subprocess on each *other* backend, so CI checks
the model both ways in one ``pytest`` call. The subprocess keeps the hypothesis profile (``CI``).
"""

import os
import subprocess
import sys

import pytest

from pydeberta import _backend

PARITY_MODULES = ["test_model.py", "test_heads.py"]
OTHER_BACKENDS = [b for b in _backend.available_backends() if b != _backend.active_backend()]


@pytest.mark.skipif(not OTHER_BACKENDS, reason="only one backend is available here")
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_parity_suite_under_the_other_backend(backend):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYDEBERTA_BACKEND=backend)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *(os.path.join(here, m) for m in PARITY_MODULES)],
                          capture_output=True, text=True, env=env, cwd=here)  # cwd: import the installed package
    assert done.returncode == 0, f"parity suite under PYDEBERTA_BACKEND={backend} failed:\n{done.stdout[-6000:]}"
