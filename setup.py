"""Build script: the pure-Python package, plus the engine's compiled kernels in ``pydeberta/engine/_ext/``.

Every ``pydeberta/engine/_ext/<name>.pyx`` is compiled into ``pydeberta.engine._cy_<name>``. The
build falls back to a NumPy-only package when ``PYDEBERTA_PUREPYTHON=1`` is set, when Cython is
missing, or when no C compiler works; ``import pydeberta`` then runs the engine's NumPy kernels.

``PYDEBERTA_REQUIRE_EXTENSION=1`` turns that fallback into a failure: any C or Cython error (or a
missing compiler or Cython) fails ``pip install``, and the tests assert that the ``cython``
backend is active. CI sets it (``.ci/run``); a user without a compiler leaves it unset and gets a
working NumPy-only install.

Compiler directives live here, in one place. ``PYDEBERTA_CYTHON_DEBUG=1`` turns bounds checks,
wrap-around and initialised-memory checks back on. No fast-math flags: they break erf/GELU.
``-fno-math-errno`` is not one: it changes no value, it only tells the compiler that nothing reads
``errno`` after a math call, so loops over ``exp`` can use glibc's SIMD variants (libmvec, linked
through ``-lm``; see ``_ext/vector_math.h``).

OpenMP: the twins' ``prange`` loops use it when the compiler builds a test program with
``-fopenmp``; otherwise (or with ``PYDEBERTA_NO_OPENMP=1``) they compile without it and run on one
thread (``_ext/omp_compat.h`` stands in for the OpenMP runtime).
"""

import glob
import os
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("PYDEBERTA_PUREPYTHON", "0") == "1"
DEBUG = os.environ.get("PYDEBERTA_CYTHON_DEBUG", "0") == "1"
REQUIRED = os.environ.get("PYDEBERTA_REQUIRE_EXTENSION", "0") == "1"
SOURCES = os.path.join("pydeberta", "engine", "_ext")

if PURE and REQUIRED:
    sys.exit("pydeberta: PYDEBERTA_PUREPYTHON=1 and PYDEBERTA_REQUIRE_EXTENSION=1 contradict each other")

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}


OPENMP_FLAGS = [] if os.environ.get("PYDEBERTA_NO_OPENMP") == "1" else ["-fopenmp"]
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"


class OptionalBuildExt(build_ext):
    """Build the compiled kernels if possible; fail the install because of them only when
    ``PYDEBERTA_REQUIRE_EXTENSION=1``."""

    def openmp_works(self):
        """Whether this compiler compiles and links an OpenMP program with ``OPENMP_FLAGS``."""
        if not OPENMP_FLAGS:
            return False
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=OPENMP_FLAGS)
                self.compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=OPENMP_FLAGS)
            except Exception:
                return False
        return True

    def build_extensions(self):
        if not self.openmp_works():
            print("pydeberta: OpenMP not available; the compiled twins run on one thread", file=sys.stderr)
            for ext in self.extensions:
                ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP_FLAGS]
                ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP_FLAGS]
        super().build_extensions()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain
            if REQUIRED:
                raise
            print(f"pydeberta: compiled extensions not built ({exc}); using NumPy only", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRED:
                raise
            print(f"pydeberta: {ext.name} not built ({exc}); using NumPy only", file=sys.stderr)


def extensions():
    sources = sorted(glob.glob(os.path.join(SOURCES, "*.pyx")))
    if PURE:
        return []
    if REQUIRED and not sources:
        sys.exit(f"pydeberta: PYDEBERTA_REQUIRE_EXTENSION=1 but there is no {SOURCES}/*.pyx")
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        if REQUIRED:
            raise
        print("pydeberta: Cython or numpy missing at build time; using NumPy only", file=sys.stderr)
        return []
    exts = [
        Extension(
            "pydeberta.engine._cy_" + os.path.splitext(os.path.basename(src))[0],
            [src],
            include_dirs=[numpy.get_include(), SOURCES],
            libraries=["m", "pthread"],
            extra_compile_args=["-O3", "-fno-math-errno"] + OPENMP_FLAGS + (["-O0", "-g"] if DEBUG else []),
            extra_link_args=list(OPENMP_FLAGS),
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for src in sources
    ]
    try:
        return cythonize(exts, compiler_directives=DIRECTIVES, include_path=[SOURCES])
    except Exception as exc:  # a Cython compile error
        if REQUIRED:
            raise
        print(f"pydeberta: Cython could not translate the kernels ({exc}); using NumPy only", file=sys.stderr)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
