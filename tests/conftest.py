"""Shared test settings: hypothesis profiles, the backend fixture, and the oracle helpers every
test module uses."""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# The backend fixture only selects which implementation runs (a context variable); hypothesis may
# reuse it across the examples of one test.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
# CI runs a fixed, reproducible set of examples; locally hypothesis explores afresh each run.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=_SUPPRESSED)
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=_SUPPRESSED)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# tests/oracle.py (building transformers models, comparing outputs) is imported by several test
# modules; with --import-mode=importlib the test folder is not on sys.path by itself.
sys.path.insert(0, os.path.dirname(__file__))

# Fixtures shared by the checkpoint-reading tests (a tiny transformers model saved in several layouts).
pytest_plugins = ["checkpoints"]

from pydeberta.engine import backend as _backend  # noqa: E402

BACKENDS = _backend.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on each backend this installation has (``reference``, ``numpy``, ``cython``)."""
    with _backend.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[name for name in BACKENDS if name != "reference"])
def kernels(request):
    """The kernel set of each engine backend (``numpy``, ``cython``), to test against the book."""
    return _backend.KERNELS[request.param]
