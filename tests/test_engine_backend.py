"""pydeberta.engine.backend: choosing what runs, the block cache, and what CI requires.

With ``PYDEBERTA_REQUIRE_EXTENSION=1`` (set by ``.ci/run``) the compiled kernels must be built and
the ``cython`` backend active: a failed build then fails here rather than being skipped.
"""

import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import pydeberta
from pydeberta.engine import backend as dispatch

COMPILED = "cython" in dispatch.available_backends()
needs_compiled = pytest.mark.skipif(not COMPILED, reason=f"compiled kernels not built: {dispatch.backend_info()['reason']}")


def test_the_extension_is_built_when_required():
    if os.environ.get("PYDEBERTA_REQUIRE_EXTENSION") != "1":
        assert dispatch.backend_info()["compiled"] == COMPILED  # whatever was built is reported truthfully
        return
    info = dispatch.backend_info()
    assert info["compiled"], f"PYDEBERTA_REQUIRE_EXTENSION=1 but the compiled kernels did not import: {info['reason']}"
    assert info["backend"] == "cython" and info["openmp"], info
    assert all(".engine._cy_" in name or name.endswith(("kernels.linear", "kernels.linear_backward"))
               for name in info["kernels"].values()), info  # the products are BLAS's in every backend
    with open("/proc/cpuinfo") as cpuinfo:  # CI's machines are x86-64 Linux
        if " avx2" in cpuinfo.read():
            assert info["int8"] == "avx2", info  # so the int8 kernel tests run rather than skip


def test_use_backend_switches_and_restores():
    outer = dispatch.active_backend()
    with dispatch.use_backend("numpy"):
        assert dispatch.active_backend() == "numpy"
        with dispatch.use_backend("reference"):
            assert dispatch.active_backend() == "reference"
        with dispatch.use_backend("auto"):
            assert dispatch.active_backend() == dispatch.available_backends()[0]
        assert dispatch.active_backend() == "numpy"
    assert dispatch.active_backend() == outer
    with pytest.raises(ValueError, match="backend must be one of auto, reference, numpy, cython, got 'fast'"):
        with dispatch.use_backend("fast"):
            pass


def test_forcing_cython_without_the_extension_is_an_error(monkeypatch):
    monkeypatch.setattr(dispatch, "_COMPILED", None)
    monkeypatch.setattr(dispatch, "_UNAVAILABLE", "not built")
    with pytest.raises(RuntimeError, match="backend='cython' but the compiled extension is not available"):
        with dispatch.use_backend("cython"):
            pass
    with dispatch.use_backend("auto"):
        assert dispatch.active_backend() == "numpy"


def test_each_backend_runs_its_own_kernels(backend):
    kernels = dispatch.backend_info()["kernels"]
    if backend == "cython":
        assert kernels["gelu"].startswith("pydeberta.engine._cy_functional")
        assert kernels["disentangled_attention_probs"].startswith("pydeberta.engine._cy_attention")
        assert kernels["gelu_backward"].startswith("pydeberta.engine._cy_functional")
        assert kernels["layer_norm_backward"].startswith("pydeberta.engine._cy_functional")
        assert kernels["disentangled_attention_probs_backward"].startswith("pydeberta.engine._cy_attention")
        assert kernels["quantized_linear"] == {"avx2": "pydeberta.engine._cy_int8.quantized_linear",
                                               "numpy": "pydeberta.quantization.quantized_linear"}[dispatch.int8_kernel()]
    else:  # the NumPy kernels; exact GELU, the int8 layer and two backwards are the book's own
        assert kernels == {name: f"pydeberta.engine.kernels.{name}" for name in kernels} | {
            "gelu": "pydeberta.functional.gelu", "quantized_linear": "pydeberta.quantization.quantized_linear",
            "gelu_backward": "pydeberta.functional.gelu_backward",
            "layer_norm_backward": "pydeberta.functional.layer_norm_backward"}


def test_backend_info_says_what_runs():
    info = dispatch.backend_info()
    assert info["backend"] in ("reference", "numpy", "cython") and info["compiled"] == COMPILED
    assert isinstance(info["threads"], int) and info["threads"] >= 1
    assert set(info["kernels"]) == {"linear", "quantized_linear", "gelu", "layer_norm", "disentangled_attention_probs",
                                    "linear_backward", "gelu_backward", "layer_norm_backward",
                                    "disentangled_attention_probs_backward"}
    assert info["int8"] in ("avx2", "numpy")
    if not COMPILED:
        assert info["reason"] and not info["openmp"] and info["block_cache_bytes"] == 0


# ------------------------------------------------------------------------------------- block cache
def handler_name(array):
    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 / 1
    return core.multiarray.get_handler_name(array)


@needs_compiled
def test_block_cache_reuses_freed_blocks_in_its_context_only():
    allocator = dispatch._COMPILED["_cy_allocator"]
    allocator.clear()
    big = allocator.MIN_BYTES // 8 + 1  # float64 elements just above the caching threshold
    with allocator.use_block_cache():
        a = np.arange(big, dtype=np.float64)
        assert handler_name(a) == "pydeberta_block_cache"
        address = a.ctypes.data
        assert address % 64 == 0
        del a
        assert allocator.cached_bytes() == big * 8
        b = np.ones(big)  # the same size: the same block, with its new values
        assert b.ctypes.data == address and allocator.cached_bytes() == 0
        np.testing.assert_array_equal(b, 1.0)
        small = np.zeros(10)  # below the threshold: malloc, never cached
        z = np.zeros((big,))  # calloc path: zeroed even when the block is reused
        np.testing.assert_array_equal(z, 0.0)
        r = np.arange(big, dtype=np.float64)
        r.resize(2 * big, refcheck=False)  # realloc: the data moves with it
        np.testing.assert_array_equal(r[:big], np.arange(big))
        assert handler_name(np.ones(3)) == "pydeberta_block_cache"
    assert handler_name(np.ones(3)) != "pydeberta_block_cache"
    seen = []
    with allocator.use_block_cache():
        thread = threading.Thread(target=lambda: seen.append(handler_name(np.ones(3))))
        thread.start()
        thread.join()
    assert seen and seen[0] != "pydeberta_block_cache"  # another thread keeps its own handler
    del b, small, z, r  # arrays outlive the context and still return their blocks to the cache
    assert allocator.cached_bytes() > 0 and dispatch.backend_info()["block_cache_bytes"] == allocator.cached_bytes()
    released = pydeberta.release_memory()
    assert released > 0 and allocator.cached_bytes() == 0 and dispatch.backend_info()["block_cache_bytes"] == 0


@needs_compiled
def test_model_forward_allocates_from_the_block_cache_with_the_cython_backend_only():
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(
        vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        relative_attention=True, position_buckets=16, max_relative_positions=64, pos_att_type="p2c|c2p"), seed=0)
    ids = np.arange(2 * 200).reshape(2, 200) % 50
    with dispatch.use_backend("cython"):
        out = model(ids).last_hidden_state
        assert handler_name(out) == "pydeberta_block_cache" and dispatch.backend_info()["block_cache"]
        again = model(ids).last_hidden_state  # reused blocks give the same numbers
    with dispatch.use_backend("numpy"):
        ref = model(ids).last_hidden_state
        assert handler_name(ref) != "pydeberta_block_cache" and not dispatch.backend_info()["block_cache"]
    np.testing.assert_array_equal(out, again)
    np.testing.assert_allclose(out, ref, atol=1e-5)


# ------------------------------------------------------------------------------------- environment
HIDE_EXTENSION = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("pydeberta.engine._cy_"):
            raise ImportError("hidden by the test")
sys.meta_path.insert(0, Hide())
"""


FIRST_USE = "import pydeberta\nprint('imported', flush=True)\npydeberta.backend_info()\n"
"""Import, then use: the environment is read at first use, so a bad value fails the use, not the import."""


def run_python(code, backend_name):
    env = {k: v for k, v in os.environ.items() if k != "PYDEBERTA_BACKEND"}
    if backend_name is not None:
        env["PYDEBERTA_BACKEND"] = backend_name
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())  # cwd: import the installed package, not the source tree


@pytest.mark.parametrize("name,expected", [(None, "numpy"), ("auto", "numpy"), ("numpy", "numpy"),
                                           ("reference", "reference")])
def test_without_the_extension_auto_falls_back_silently(name, expected):
    done = run_python(HIDE_EXTENSION + "import pydeberta; print(pydeberta.backend_info()['backend'])", name)
    assert done.returncode == 0 and done.stdout.strip() == expected and not done.stderr, done.stderr


def test_environment_variable_errors_come_at_first_use_not_at_import():
    done = run_python(HIDE_EXTENSION + FIRST_USE, "cython")
    assert done.returncode != 0 and done.stdout == "imported\n"
    assert "PYDEBERTA_BACKEND='cython' but the compiled extension is not available" in done.stderr
    done = run_python(FIRST_USE, "fastest")
    assert done.returncode != 0 and done.stdout == "imported\n"
    assert "PYDEBERTA_BACKEND must be one of auto, reference, numpy, cython, got 'fastest'" in done.stderr


def test_environment_variable_selects_the_backend():
    for name in dispatch.available_backends():
        done = run_python("import pydeberta; print(pydeberta.backend_info()['backend'])", name)
        assert done.stdout.strip() == name, done.stderr


@pytest.mark.parametrize("value, on", [("1", True), ("0", False)])
def test_block_cache_switch(value, on):
    code = ("import numpy as np, pydeberta\n"
            "core = np._core if hasattr(np, '_core') else np.core\n"
            "m = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(vocab_size=9, hidden_size=64, num_hidden_layers=1,"
            " num_attention_heads=2, intermediate_size=8, position_biased_input=False), seed=0)\n"
            "out = m(np.ones((1, 1024), int)).last_hidden_state  # 256 KiB: a block the cache takes\n"
            "print(pydeberta.backend_info()['block_cache'], core.multiarray.get_handler_name(out))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, "PYDEBERTA_BLOCK_CACHE": value, "PYDEBERTA_BACKEND": "auto"})
    assert done.returncode == 0, done.stderr
    expected = on and COMPILED
    assert done.stdout.split() == [str(expected), "pydeberta_block_cache" if expected else "default_allocator"]
    bad = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), env={**os.environ, "PYDEBERTA_BLOCK_CACHE": "maybe"})
    assert bad.returncode != 0 and bad.stdout == "imported\n"
    assert "PYDEBERTA_BLOCK_CACHE must be 0 or 1, got 'maybe'" in bad.stderr


# ------------------------------------------------------------------------------------- threads, fork, spawn
@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_thread_count_is_checked_and_named(bad):
    with pytest.raises(ValueError, match=r"num_threads must be an integer >= 1, got"):
        pydeberta.set_num_threads(bad)
    if bad is not None:  # None: use_backend leaves the count as it is
        with pytest.raises(ValueError, match=r"num_threads must be an integer >= 1, got"):
            with dispatch.use_backend("auto", num_threads=bad):
                pass


def test_thread_count_is_capped_at_the_cores_and_reported():
    before = dispatch.backend_info()["threads"]
    try:
        assert pydeberta.set_num_threads(100_000) == dispatch.max_threads()
        if COMPILED:
            assert dispatch.backend_info()["threads"] == dispatch.max_threads()
        with dispatch.use_backend(dispatch.available_backends()[0], num_threads=100_000):  # was a segfault
            model = pydeberta.DebertaV2Model.from_pretrained("pydeberta/tiny")
            out = model(input_ids=[[1, 5, 9, 2]]).last_hidden_state
        assert np.isfinite(out).all()
        assert pydeberta.set_num_threads(1) == 1
        if COMPILED:
            assert dispatch.backend_info()["threads"] == 1
    finally:
        pydeberta.set_num_threads(before)


@pytest.mark.parametrize("value, expected", [("1", "1"), ("100000", "max")])
def test_thread_count_from_the_environment(value, expected):
    done = subprocess.run([sys.executable, "-c", "import pydeberta; i = pydeberta.backend_info(); "
                           "print(i['threads'], i['max_threads'], i['compiled'])"],
                          capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, "PYDEBERTA_NUM_THREADS": value})
    assert done.returncode == 0, done.stderr
    threads, cap, compiled = done.stdout.split()
    if compiled == "True":
        assert threads == (cap if expected == "max" else expected)
    bad = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), env={**os.environ, "PYDEBERTA_NUM_THREADS": "two"})
    assert bad.returncode != 0 and bad.stdout == "imported\n"
    assert "PYDEBERTA_NUM_THREADS must be an integer >= 1, got 'two'" in bad.stderr


CHILD_RUN = """
import multiprocessing as mp, sys
import numpy as np
import pydeberta

def forward(ids):
    return MODEL(input_ids=ids).last_hidden_state

def load():
    global MODEL
    MODEL = pydeberta.DebertaV2Model.from_pretrained("pydeberta/tiny")

if __name__ == "__main__":
    method = sys.argv[1]
    load()
    ids = np.arange(3 * 40).reshape(3, 40) % 500
    parent = forward(ids)  # the parent runs the compiled kernels (and their thread pool) first
    ctx = mp.get_context(method)
    with ctx.Pool(2, initializer=None if method == "fork" else load) as pool:
        children = pool.map(forward, [ids[i:i + 1] for i in range(3)], chunksize=1)
    worst = max(float(np.abs(child[0] - parent[i]).max()) for i, child in enumerate(children))
    print(worst)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_model_used_in_the_parent_runs_in_child_processes(method, tmp_path):
    """A forward in the parent, then the same model in a pool of children: fork (children inherit
    the model and run their kernels on one thread) and spawn (children load it). Results equal the
    parent's; a hang fails the test through the timeout."""
    script = tmp_path / "children.py"
    script.write_text(CHILD_RUN)
    done = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) <= 1e-5
