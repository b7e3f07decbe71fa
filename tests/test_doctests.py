"""Every worked example in a docstring of the package runs and prints what it says (doctest),
on the installed package."""

import doctest
import importlib

import pytest

from package_map import MODULES


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"
