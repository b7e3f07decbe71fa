"""The compiled kernels build for arm64 too (Apple silicon, Linux on ARM): their x86 code is
guarded and chosen at run time, and everything else is plain C.

Each ``pydeberta/engine/_ext/*.pyx`` of the checkout is translated by Cython and compiled, with its
headers, by Debian's cross compiler for aarch64 (``gcc-aarch64-linux-gnu``, installed here with
apt-get when it is missing and this runs as root); the object files must be AArch64 ELF. Linking
and running need an arm64 machine; compiling catches the code that would not build there.
"""

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "pydeberta" / "engine" / "_ext"
CROSS = "aarch64-linux-gnu-gcc"
EM_AARCH64 = 183  # e_machine of an ELF file built for AArch64
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False, "initializedcheck": False,
              "cdivision": True}  # setup.py's release directives


@pytest.fixture(scope="module")
def cross_compiler():
    """The aarch64 cross compiler, installed with apt-get if it is missing (as root)."""
    if shutil.which(CROSS) is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "gcc-aarch64-linux-gnu"], capture_output=True, env=env,
                       timeout=600)
    if shutil.which(CROSS) is None:
        pytest.fail(f"{CROSS} is missing: install Debian's gcc-aarch64-linux-gnu (apt-get install "
                    "gcc-aarch64-linux-gnu); this test must not be skipped")
    return CROSS


@pytest.mark.parametrize("name", sorted(p.stem for p in SOURCES.glob("*.pyx")))
def test_kernels_compile_for_aarch64(name, cross_compiler, tmp_path):
    from Cython.Build import cythonize
    from Cython.Compiler import Options

    Options.fast_fail = True
    source = tmp_path / f"{name}.pyx"
    shutil.copy(SOURCES / f"{name}.pyx", source)
    cythonize([str(source)], include_path=[str(SOURCES)], compiler_directives=DIRECTIVES, quiet=True)
    obj = tmp_path / f"{name}.o"
    done = subprocess.run(
        [cross_compiler, "-c", "-O2", "-fPIC", "-fopenmp", "-fno-math-errno",
         "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION", f"-I{sysconfig.get_paths()['include']}",
         f"-I{np.get_include()}", f"-I{SOURCES}", str(tmp_path / f"{name}.c"), "-o", str(obj)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} does not compile for aarch64:\n{done.stderr[-3000:]}"
    header = obj.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64
