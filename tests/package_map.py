"""The modules of the installed package, for the tests that walk all of them (imports, doctests)."""

import pkgutil
from pathlib import Path

import pydeberta

PACKAGE = Path(pydeberta.__file__).parent


def module_names():
    """Every Python module of the installed package (compiled kernels are leaves: no imports)."""
    names = ["pydeberta"]
    names += [info.name for info in pkgutil.walk_packages([str(PACKAGE)], prefix="pydeberta.")
              if (PACKAGE / Path(*info.name.split(".")[1:])).with_suffix(".py").exists()
              or (PACKAGE / Path(*info.name.split(".")[1:]) / "__init__.py").exists()]
    return names


def source_of(name):
    parts = name.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    return (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")


MODULES = set(module_names())
"""Every Python module of the installed package, by dotted name."""
