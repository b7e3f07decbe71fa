"""Shared test settings: hypothesis profiles and the oracle helpers every test module uses."""

import os

from hypothesis import HealthCheck, settings

# CI runs a fixed, reproducible set of examples; locally hypothesis explores afresh each run.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# tests/oracle.py (building transformers models, comparing outputs) is imported by several test
# modules; with --import-mode=importlib the test folder is not on sys.path by itself.
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

# Fixtures shared by the checkpoint-reading tests (a tiny transformers model saved in several layouts).
pytest_plugins = ["checkpoints"]
