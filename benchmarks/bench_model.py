"""Forward-pass benchmark: pydeberta (each backend) against transformers eager and ONNX Runtime.

One run measures, on the same random deberta-v3-base-shaped weights (hidden 768, 12 layers,
12 heads, FFN 3072, 256 buckets, max_position 512, p2c|c2p, share_att_key, LayerNorm-ed
relative table, no absolute positions; vocab cut to 1000) and the same thread count:

* pydeberta with every engine backend that is available here (``cython`` when the extension is
  built, ``numpy`` always; ``reference``, the book, on request with ``--engines pydeberta-reference``),
* ``pydeberta-int8``: the cython backend on the model loaded with ``from_pretrained(folder,
  quantize="int8")``; its note names the int8 kernel that runs (``backend_info()["int8"]``:
  ``avx2`` or ``numpy``),
* ``baseline-cython`` with ``--baseline DIR``: another pydeberta (e.g. an earlier commit,
  ``pip install --no-deps --target DIR .`` from its checkout) imported from ``DIR``, default backend,
  so a change is measured against what it changes in the same run,
* ``pydeberta-cython-t16``: the cython backend with ``OPENBLAS_THREAD_TIMEOUT=16`` in its environment,
* ``pydeberta-cython-nocache`` (on request): the cython backend with ``PYDEBERTA_BLOCK_CACHE=0``,
* transformers eager (``torch.inference_mode``, ``torch.set_num_threads(threads)``),
* ``blas-floor``: not a model, only the six weight products of each layer through NumPy's BLAS,
  the time no implementation whose matrix products are NumPy's can beat (its output is not
  compared),
* ONNX Runtime when ``onnxruntime`` and ``onnx`` are installed (the transformers model exported
  once with ``torch.onnx.export`` into the cache folder, CPU provider, ``intra_op`` = threads),
* ``onnxruntime-int8``: that export through ONNX Runtime's dynamic quantization
  (``quantize_dynamic``, per-channel ``QInt8`` weights, ORT's default op types: what a user
  running "ORT dynamic int8" gets), made once into the cache folder. ORT quantizes the MatMuls
  with a constant weight, six a layer (query, key, value, attention output, FFN in, FFN out:
  ``MatMulInteger``, their input quantized to uint8 per call by ``DynamicQuantizeLinear``, one
  shared by query, key and value) and the word-embedding table (int8 ``Gather`` then
  ``DequantizeLinear``); the attention products and the relative-position projections stay
  float32 ``MatMul``. The counts are printed when the file is made and in the engine's note.
  ORT's pre-processing (``quant_pre_process``, which ``quantize_dynamic`` advises in a warning)
  is not run: its symbolic shape inference fails on this export ("Incomplete symbolic shape
  inference": it cannot broadcast an ``If`` node's output with N). With ``auto_merge=True`` it
  passes after minutes, and with ``skip_symbolic_shape=True`` in seconds, but the quantized graph
  has the same integer ops either way (and without symbolic shapes the same outputs as without
  pre-processing).

Time: each engine runs in its own worker process (its own BLAS / OpenMP thread pools: in one
process, the pools of NumPy's OpenBLAS and of torch slow each other down, by ~25% for torch at
B=1 N=128 here). After a warm-up the workers take turns call by call (``--repeats`` rounds, a
short pause between turns so the last engine's threads are asleep), so a noisy neighbour slows
all engines alike. Reported: the median and fastest call, and the ratios to transformers, to
ONNX Runtime and to ``onnxruntime-int8`` (and, for ``pydeberta-int8``, to ``pydeberta-cython``,
its float32 self, on a line under the table), each the median over rounds of (this engine's time
/ the other's time in the same round), which a slow phase of the host lasting a few rounds
leaves alone. Every engine's last hidden state is compared with transformers' (largest absolute
difference; for the int8 engines, whose differences are large by design, also the cosine
similarity of the flattened outputs).

Memory: each engine runs again in a fresh subprocess (``--memory-worker``) that loads the
model, reads its resident set size (``VmRSS``), resets the kernel's high-water mark
(``echo 5 > /proc/self/clear_refs``), runs the forward ``--memory-calls`` times and reads the
high-water mark (``VmHWM``). Reported: the peak increase during the forward over the loaded
model (activations, BLAS buffers, caches built on the first call) and the process's peak total.
tracemalloc would miss BLAS and torch buffers; RSS sees them. Linux only (``/proc``).

BLAS: ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (set on some machines for old OpenBLAS
builds) slow a current NumPy; this script removes them from its own environment before NumPy is
imported (``--keep-blas-env`` keeps them) and prints the kernel OpenBLAS runs (threadpoolctl).

Usage::

    python benchmarks/bench_model.py                       # the three shapes, every engine
    python benchmarks/bench_model.py --shapes 1x128 --repeats 5 --engines pydeberta-cython,transformers
    python benchmarks/bench_model.py --engines pydeberta-cython,pydeberta-int8,onnxruntime-int8   # int8
    python benchmarks/bench_model.py --json results.json   # also write the figures and the engines' notes
    python benchmarks/bench_model.py --shapes 1x128 --load 1   # with one competing busy process
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ENGINES = ("pydeberta-cython", "pydeberta-cython-t16", "pydeberta-cython-nocache", "pydeberta-numpy",
           "pydeberta-reference", "pydeberta-int8", "baseline-cython",
           "transformers", "onnxruntime", "onnxruntime-int8", "blas-floor")
DEFAULT_ENGINES = ("pydeberta-cython", "pydeberta-cython-t16", "pydeberta-numpy", "pydeberta-int8", "transformers",
                   "onnxruntime", "onnxruntime-int8", "blas-floor")
# Environment of an engine's worker processes, on top of this script's: ``pydeberta-cython-t16`` is
# the cython backend with NumPy's OpenBLAS told to let its idle worker sleep after ~2^16 cycles
# instead of spinning ~0.1 s (read when NumPy loads; the README's "Fast paths" explains why).
ENGINE_ENV = {"pydeberta-cython-t16": {"OPENBLAS_THREAD_TIMEOUT": "16"},
              "pydeberta-cython-nocache": {"PYDEBERTA_BLOCK_CACHE": "0"}}
BASE_CONFIG = dict(
    vocab_size=1000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0, layer_norm_eps=1e-7,
    relative_attention=True, position_buckets=256, max_relative_positions=-1, pos_att_type="p2c|c2p",
    share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
)
SEED = 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="1x128,8x128,1x512", help="comma-separated BxN (default: %(default)s)")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                        help="comma-separated subset of " + ", ".join(ENGINES) + " (default: %(default)s)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="a folder holding another pydeberta install, run as the engine baseline-cython")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per engine and shape (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--memory-calls", type=int, default=2, help="forward calls in each memory subprocess")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--cache-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                             "pydeberta", "bench"),
                        help="weights and ONNX export are kept here (default: %(default)s)")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between two engines' turns (default: %(default)s)")
    parser.add_argument("--load", type=int, default=0, metavar="K",
                        help="start K busy processes (a Python loop each) for the timing: a machine shared with "
                             "other work (default: %(default)s)")
    parser.add_argument("--worker", metavar="ENGINE", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", metavar="ENGINE", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
    args.engines = [e.strip() for e in args.engines.split(",")]
    unknown = set(args.engines) - set(ENGINES)
    if unknown:
        parser.error(f"--engines: unknown {sorted(unknown)}; expected names from {list(ENGINES)}")
    if args.baseline and "baseline-cython" not in args.engines:
        args.engines.append("baseline-cython")
    if "baseline-cython" in args.engines and not args.baseline:
        parser.error("--engines baseline-cython needs --baseline DIR")
    return args


ARGS = parse_args()
# Before NumPy, torch or ONNX Runtime load their thread pools and BLAS kernels.
if not ARGS.keep_blas_env:
    for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_name, None)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = str(ARGS.threads)

import numpy as np  # noqa: E402


# ------------------------------------------------------------------------------------------ weights
def model_folder(cache_dir):
    """A folder with ``config.json`` + ``model.safetensors`` of the random model (made once)."""
    folder = os.path.join(cache_dir, "deberta-v3-base-shaped-v1000-seed0")
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        import torch
        import transformers

        torch.manual_seed(SEED)
        model = transformers.DebertaV2Model(transformers.DebertaV2Config(**BASE_CONFIG)).eval()
        model.save_pretrained(folder, safe_serialization=True)
    return folder


def onnx_path(cache_dir, folder):
    """``model.onnx`` exported once from the transformers model in ``folder``."""
    path = os.path.join(cache_dir, "deberta-v3-base-shaped-v1000-seed0.onnx")
    if not os.path.exists(path):
        import warnings

        import torch
        import transformers

        model = transformers.DebertaV2Model.from_pretrained(folder).eval()
        ids = torch.randint(0, BASE_CONFIG["vocab_size"], (1, 16))
        dynamic = {"input_ids": {0: "B", 1: "N"}, "attention_mask": {0: "B", 1: "N"},
                   "last_hidden_state": {0: "B", 1: "N"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids, torch.ones_like(ids)), path + ".tmp", input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
        os.replace(path + ".tmp", path)
    return path


def onnx_int8_path(cache_dir, folder):
    """ONNX Runtime's dynamic int8 quantization of :func:`onnx_path`'s model, made once next to it."""
    fp32 = onnx_path(cache_dir, folder)
    path = os.path.splitext(fp32)[0] + "-int8.onnx"
    if not os.path.exists(path):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(model_input=fp32, model_output=path + ".tmp", per_channel=True, weight_type=QuantType.QInt8)
        os.replace(path + ".tmp", path)
        print(f"quantized {fp32} -> {path} (no quant_pre_process, see the module docstring): {quantized_ops(path)}",
              flush=True)
    return path


def quantized_ops(path):
    """How many nodes of each integer / (de)quantizing op type the ONNX graph at ``path`` has, and
    how many float32 MatMuls are left."""
    import collections

    import onnx

    counts = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
    return ", ".join(f"{'float MatMul' if op == 'MatMul' else op} {n}" for op, n in sorted(counts.items())
                     if op == "MatMul" or "Integer" in op or "quantize" in op.lower() or op.startswith("Q"))


# ------------------------------------------------------------------------------------------ engines
def pydeberta_backends():
    """``(available backends, use_backend)`` of the pydeberta this process imports; older
    versions kept them in ``pydeberta._backend`` (and had no ``reference``)."""
    try:
        from pydeberta.engine import backend
    except ImportError:
        from pydeberta import _backend as backend
    return backend.available_backends(), backend.use_backend


def load_engine(name, folder, cache_dir, threads):
    """``(forward(ids, mask) -> last_hidden_state ndarray, note)``, or ``(None, reason)``."""
    if name.startswith("pydeberta-") or name == "baseline-cython":
        backend = "cython" if name == "pydeberta-int8" else name.split("-")[1]
        available, use_backend = pydeberta_backends()
        if backend not in available:
            return None, f"backend {backend!r} not available here"
        import pydeberta

        if name == "pydeberta-int8":
            try:
                model = pydeberta.DebertaV2Model.from_pretrained(folder, quantize="int8")
            except (TypeError, AttributeError) as exc:
                return None, f"from_pretrained(quantize='int8') not available here: {exc}"
            from pydeberta.engine import backend_info

            kernel = f"int8 kernel {backend_info().get('int8')}"
        else:
            model = pydeberta.DebertaV2Model.from_pretrained(folder)
            kernel = ""

        def forward(ids, mask):
            with use_backend(backend):
                return model(input_ids=ids, attention_mask=mask).last_hidden_state
        timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
        where = f"from {os.path.dirname(os.path.dirname(pydeberta.__file__))}" if name == "baseline-cython" else ""
        return forward, " ".join(filter(None, [where, kernel, f"OPENBLAS_THREAD_TIMEOUT={timeout}" if timeout else ""]))
    if name == "transformers":
        import torch
        import transformers

        torch.set_num_threads(threads)
        model = transformers.DebertaV2Model.from_pretrained(folder).eval()

        def forward(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
        return forward, f"torch {torch.__version__}, transformers {transformers.__version__}"
    if name in ("onnxruntime", "onnxruntime-int8"):
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
            import onnxruntime as ort
        except ImportError as exc:
            return None, f"not installed ({exc.name})"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = onnx_int8_path(cache_dir, folder) if name == "onnxruntime-int8" else onnx_path(cache_dir, folder)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def forward(ids, mask):
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        quantized = f", dynamic int8 (per-channel QInt8): {quantized_ops(path)}" if name == "onnxruntime-int8" else ""
        return forward, f"onnxruntime {ort.__version__}{quantized}"
    if name == "blas-floor":
        # Not a model: only the six weight products of every layer (query, key, value, attention
        # output, FFN in, FFN out, with their biases) through the engine's linear, i.e. NumPy's BLAS.
        # No implementation whose matrix products are NumPy's can be faster than this.
        import pydeberta
        from pydeberta.engine.kernels import linear

        layers = pydeberta.DebertaV2Model.from_pretrained(folder).tree["encoder"]["layer"]
        hidden, ffn = BASE_CONFIG["hidden_size"], BASE_CONFIG["intermediate_size"]

        def forward(ids, mask):
            x = np.zeros(ids.shape + (hidden,), np.float32)
            h = np.zeros(ids.shape + (ffn,), np.float32)
            for layer in layers:
                for proj in layer["attention"]["self"].values():
                    linear(x, **proj)
                linear(x, **layer["attention"]["output"]["dense"])
                linear(x, **layer["intermediate"]["dense"])
                out = linear(h, **layer["output"]["dense"])
            return out
        return forward, "the linear layers alone (NumPy matmul): a lower bound"
    raise ValueError(f"engine: unknown {name!r}")


def inputs(B, N):
    rng = np.random.default_rng(1)
    return rng.integers(0, BASE_CONFIG["vocab_size"], (B, N)).astype(np.int64), np.ones((B, N), np.int64)


# ------------------------------------------------------------------------------------------ workers
def timing_worker(args):
    """Subprocess body: load one engine, then answer JSON commands on stdin, one per line.

    ``{"B", "N", "calls", "save"}`` runs ``calls`` forwards and answers their times in seconds;
    with ``save`` the last output is written there (``.npy``) for the comparison.
    """
    folder = model_folder(args.cache_dir)
    forward, note = load_engine(args.worker, folder, args.cache_dir, args.threads)
    print(json.dumps({"ok": forward is not None, "note": note}), flush=True)
    if forward is None:
        return
    for line in sys.stdin:
        command = json.loads(line)
        ids, mask = inputs(command["B"], command["N"])
        times = []
        for _ in range(command["calls"]):
            start = time.perf_counter()
            out = forward(ids, mask)
            times.append(time.perf_counter() - start)
        if command.get("save"):
            np.save(command["save"], out)
        print(json.dumps({"times": times}), flush=True)


class Worker:
    """The parent's handle on one timing worker process."""

    def __init__(self, engine, args):
        command = [sys.executable, os.path.abspath(__file__), "--worker", engine] + common_flags(args)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=engine_env(engine))
        self.engine = engine
        hello = self.process.stdout.readline()
        if not hello:
            raise RuntimeError(f"{engine}: worker died while loading (see its stderr above)")
        hello = json.loads(hello)
        self.ok, self.note = hello["ok"], hello["note"]

    def run(self, B, N, calls, save=None):
        self.process.stdin.write(json.dumps({"B": B, "N": N, "calls": calls, "save": save}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"{self.engine}: worker died at B={B} N={N} (see its stderr above)")
        return json.loads(answer)["times"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def engine_env(engine):
    env = {**os.environ, **ENGINE_ENV.get(engine, {})}
    if engine == "baseline-cython":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ARGS.baseline, env.get("PYTHONPATH")]))
    return env


def common_flags(args):
    flags = ["--threads", str(args.threads), "--cache-dir", args.cache_dir, "--memory-calls", str(args.memory_calls)]
    return flags + (["--keep-blas-env"] if args.keep_blas_env else [])


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_worker(args):
    """Subprocess body: load one engine, run it, print its RSS figures as JSON."""
    B, N = (int(v) for v in args.shape.split("x"))
    folder = model_folder(args.cache_dir)
    forward, note = load_engine(args.memory_worker, folder, args.cache_dir, args.threads)
    ids, mask = inputs(B, N)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    for _ in range(args.memory_calls):
        forward(ids, mask)
    peak = _status_kib("VmHWM")
    print(json.dumps({"loaded_mib": before / 1024, "peak_mib": peak / 1024, "forward_mib": (peak - before) / 1024}))


def measure_memory(engine, B, N, args):
    command = [sys.executable, os.path.abspath(__file__), "--memory-worker", engine, "--shape", f"{B}x{N}"] + common_flags(args)
    done = subprocess.run(command, capture_output=True, text=True, env=engine_env(engine))
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ report
def environment():
    info = {"threads": ARGS.threads, "loadavg": os.getloadavg()[0], "numpy": np.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [f"{p['internal_api']} {p.get('version')} {p.get('architecture', '')} x{p['num_threads']}"
                        for p in threadpool_info() if p["user_api"] == "blas"]
    except ImportError:
        info["blas"] = ["(threadpoolctl not installed)"]
    import pydeberta

    info["pydeberta_backend"] = pydeberta.backend_info()
    return info


def main(args):
    folder = model_folder(args.cache_dir)
    try:
        for engine, make in (("onnxruntime", onnx_path), ("onnxruntime-int8", onnx_int8_path)):
            if engine in args.engines:
                make(args.cache_dir, folder)
    except ImportError:
        pass  # the worker reports it as not installed
    workers = {}
    for name in args.engines:
        worker = Worker(name, args)
        print(f"  {name:20s} {'ok' if worker.ok else 'SKIPPED'} {worker.note}", flush=True)
        if worker.ok:
            workers[name] = worker
        else:
            worker.close()
    env = environment()
    print("environment:", json.dumps(env, default=str), flush=True)
    notes = {name: worker.note for name, worker in workers.items()}

    results = []
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    env["load"] = args.load
    try:
        measure_shapes(workers, args, results)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    for worker in workers.values():
        worker.close()
    env["loadavg_end"] = os.getloadavg()[0]
    print(f"load average (1 min) at start {env['loadavg']:.2f}, at end {env['loadavg_end']:.2f}"
          + (f" ({args.load} busy processes during the timing)" if args.load else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "engines": notes, "results": results}, f, indent=1, default=str)


def measure_shapes(workers, args, results):
    """Time every engine at every shape (engines taking turns), compare outputs, add memory."""
    with tempfile.TemporaryDirectory() as tmp:
        for B, N in args.shapes:
            saved = {name: os.path.join(tmp, f"{name}-{B}x{N}.npy") for name in workers}
            for name, worker in workers.items():
                worker.run(B, N, args.warmup, save=saved[name])
                time.sleep(args.pause)
            times = {name: [] for name in workers}
            for _ in range(args.repeats):
                for name, worker in workers.items():
                    times[name] += worker.run(B, N, 1)
                    time.sleep(args.pause)
            reference = np.load(saved["transformers"]) if "transformers" in workers else None
            rows = []
            for name in workers:
                row = {"B": B, "N": N, "engine": name, "median_ms": float(np.median(times[name])) * 1e3,
                       "min_ms": min(times[name]) * 1e3, "times_ms": [t * 1e3 for t in times[name]],
                       "max_abs_diff": None, "cosine": None}
                if reference is not None and name != "blas-floor":
                    out = np.load(saved[name])
                    row["max_abs_diff"] = float(np.abs(out - reference).max())
                    if name.endswith("-int8"):
                        a, b = out.ravel().astype(np.float64), reference.ravel().astype(np.float64)
                        row["cosine"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
                rows.append(row)
            for r in rows:
                # Each round's time over the competitor's time in the same round, then the median:
                # a slow phase of the host, lasting a few rounds, cancels out of the ratio.
                competitors = [("ratio", "transformers"), ("ratio_ort", "onnxruntime"),
                               ("ratio_ort_int8", "onnxruntime-int8")]
                if r["engine"] == "pydeberta-int8":
                    competitors.append(("ratio_f32", "pydeberta-cython"))
                for key, competitor in competitors:
                    base = times.get(competitor)
                    r[key] = None if base is None else float(np.median(np.array(times[r["engine"]]) / np.array(base)))
            if not args.no_memory:
                for r in rows:
                    r.update(measure_memory(r["engine"], B, N, args))
            results += rows
            print_table(rows)


def print_table(rows):
    B, N = rows[0]["B"], rows[0]["N"]
    print(f"\nB={B} N={N}")
    print(f"  {'engine':20s} {'median ms':>10s} {'min ms':>9s} {'x transformers':>15s} {'x onnxruntime':>14s} "
          f"{'x ort-int8':>11s} {'fwd peak MiB':>13s} {'total peak MiB':>15s} {'max |diff|':>10s} {'cosine':>9s}")
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        ratio_ort = "-" if r.get("ratio_ort") is None else f"{r['ratio_ort']:.3f}"
        ratio_ort_int8 = "-" if r.get("ratio_ort_int8") is None else f"{r['ratio_ort_int8']:.3f}"
        fwd = f"{r['forward_mib']:.0f}" if "forward_mib" in r else r.get("error", "-")
        total = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        cosine = "-" if r["cosine"] is None else f"{r['cosine']:.6f}"
        print(f"  {r['engine']:20s} {r['median_ms']:10.1f} {r['min_ms']:9.1f} {ratio:>15s} {ratio_ort:>14s} "
              f"{ratio_ort_int8:>11s} {fwd:>13s} {total:>15s} {diff:>10s} {cosine:>9s}")
    for r in rows:
        if r.get("ratio_f32") is not None:
            print(f"  {r['engine']} x pydeberta-cython (its float32 self, same rounds): {r['ratio_f32']:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    if ARGS.worker:
        timing_worker(ARGS)
    elif ARGS.memory_worker:
        memory_worker(ARGS)
    else:
        main(ARGS)
