"""Build script: the pure-Python package, plus the optional Cython twins in ``_ext/``.

Every ``_ext/<name>.pyx`` is compiled into ``pydeberta._cy_<name>``. The build falls back to a
NumPy-only package when ``PYDEBERTA_PUREPYTHON=1`` is set, when Cython is missing, or when no C
compiler works; ``import pydeberta`` then uses the NumPy reference functions.

Compiler directives live here, in one place. ``PYDEBERTA_CYTHON_DEBUG=1`` turns bounds checks,
wrap-around and initialised-memory checks back on. No fast-math flags: they break erf/GELU.
"""

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("PYDEBERTA_PUREPYTHON", "0") == "1"
DEBUG = os.environ.get("PYDEBERTA_CYTHON_DEBUG", "0") == "1"

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}


class OptionalBuildExt(build_ext):
    """Build the Cython twins if possible; never fail the install because of them."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain
            print(f"pydeberta: compiled extensions not built ({exc}); using NumPy only", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"pydeberta: {ext.name} not built ({exc}); using NumPy only", file=sys.stderr)


def extensions():
    sources = sorted(glob.glob(os.path.join("_ext", "*.pyx")))
    if PURE or not sources:
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("pydeberta: Cython or numpy missing at build time; using NumPy only", file=sys.stderr)
        return []
    openmp = [] if os.environ.get("PYDEBERTA_NO_OPENMP") == "1" else ["-fopenmp"]
    exts = [
        Extension(
            "pydeberta._cy_" + os.path.splitext(os.path.basename(src))[0],
            [src],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O3"] + openmp + (["-O0", "-g"] if DEBUG else []),
            extra_link_args=openmp,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for src in sources
    ]
    return cythonize(exts, compiler_directives=DIRECTIVES)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
