"""Training-step benchmark: pydeberta's training pass + AdamW against transformers eager + torch.

One training step = forward with dropout, backward, global-norm clipping and an AdamW step, on a
``DebertaV2ForSequenceClassification`` of deberta-v3-base shape (hidden 768, 12 layers, 12
heads, FFN 3072, 256 buckets, max_position 512, p2c|c2p, share_att_key, LayerNorm-ed relative
table; vocabulary cut to 1000 as in bench_model.py), random weights, batch ``B x N`` of random
ids with labels, float32, the same thread count for both.

Each engine runs in its own subprocess (its own thread pools), which builds the model, takes
``--warmup`` steps, then ``--steps`` timed steps and prints their times and its memory: the
resident set after building the model and optimiser, and the high-water mark during the steps
(``VmHWM`` after ``clear_refs``). The engines take turns, process by process, for ``--rounds``
rounds; the ratio pydeberta / transformers is the median over rounds of the two medians of that
round, so a slow phase of a shared host slows both alike.

Usage::

    python benchmarks/bench_training.py                       # B=8 N=128, 3 rounds of 3 steps
    python benchmarks/bench_training.py --shape 2x64 --rounds 2 --steps 2
    python benchmarks/bench_training.py --engines pydeberta,pydeberta-book,transformers   # the book too
    python benchmarks/bench_training.py --engines pydeberta,pydeberta-numpy,transformers  # NumPy kernels
"""

import argparse
import json
import os
import subprocess
import sys
import time

BASE = dict(vocab_size=1000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512, relative_attention=True, position_buckets=256, pos_att_type="p2c|c2p",
            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
            max_relative_positions=-1, num_labels=3)


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def clear_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def batch_of(B, N, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(5, BASE["vocab_size"], (B, N)), np.ones((B, N), np.int64), rng.integers(0, 3, B)


def worker_pydeberta(B, N, warmup, steps, config, backend="auto"):
    import pydeberta
    from pydeberta.engine.backend import use_backend
    from pydeberta.training import value_and_grad
    from pydeberta.training.optim import AdamW, clip_grad_norm, transformers_no_decay

    model = pydeberta.DebertaV2ForSequenceClassification(pydeberta.DebertaV2Config(**config), seed=0).train(seed=0)
    optimiser = AdamW(model.params, lr=2e-5, weight_decay=0.01, no_decay=transformers_no_decay)
    ids, mask, labels = batch_of(B, N)

    def step():
        with use_backend(backend):
            _, grads = value_and_grad(model, input_ids=ids, attention_mask=mask, labels=labels)
        grads, _ = clip_grad_norm(grads, 1.0)
        model.load_state_dict(optimiser.step(model.params, grads))

    return run_steps(step, warmup, steps)


def worker_pydeberta_numpy(B, N, warmup, steps, config):
    """The engine's pass with its NumPy kernels (the ``numpy`` backend): what the compiled ones add."""
    return worker_pydeberta(B, N, warmup, steps, config, backend="numpy")


def worker_pydeberta_book(B, N, warmup, steps, config):
    """The book's backward (the ``reference`` backend), for the engine's before/after."""
    return worker_pydeberta(B, N, warmup, steps, config, backend="reference")


def worker_transformers(B, N, warmup, steps, config):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.DebertaV2ForSequenceClassification(transformers.DebertaV2Config(**config)).train()
    decay = set(transformers.Trainer.get_decay_parameter_names(None, model))
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW(groups, lr=2e-5)
    ids, mask, labels = (torch.as_tensor(x) for x in batch_of(B, N))

    def step():
        optimiser.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()

    return run_steps(step, warmup, steps)


def run_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    loaded = status_kib("VmRSS")
    clear_peak()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"times": times, "rss_mib": loaded / 1024, "peak_mib": status_kib("VmHWM") / 1024}


WORKERS = {"pydeberta": worker_pydeberta, "pydeberta-numpy": worker_pydeberta_numpy,
           "pydeberta-book": worker_pydeberta_book, "transformers": worker_transformers}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8x128", help="BxN (default 8x128)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 for base; fewer for a quick look)")
    parser.add_argument("--engines", default="pydeberta,transformers",
                        help=f"comma-separated, from {', '.join(WORKERS)} (default: pydeberta,transformers)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    B, N = (int(x) for x in args.shape.split("x"))
    if args.worker:
        import torch
        torch.set_num_threads(args.threads)
        config = dict(BASE, num_hidden_layers=args.layers)
        print(json.dumps(WORKERS[args.worker](B, N, args.warmup, args.steps, config)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               PYDEBERTA_NUM_THREADS=str(args.threads))
    engines = args.engines.split(",")
    unknown = sorted(set(engines) - set(WORKERS)) + ([] if "transformers" in engines else ["(transformers missing)"])
    if unknown:
        parser.error(f"--engines: unknown {', '.join(unknown)}; choose from {', '.join(WORKERS)}, with transformers")
    rounds = []
    for r in range(args.rounds):
        result = {}
        for engine in engines:
            out = subprocess.run([sys.executable, __file__, "--worker", engine, "--shape", args.shape,
                                  "--warmup", str(args.warmup), "--steps", str(args.steps),
                                  "--threads", str(args.threads), "--layers", str(args.layers)],
                                 env=env, capture_output=True, text=True, check=True)
            result[engine] = json.loads(out.stdout.strip().splitlines()[-1])
        rounds.append(result)
        median = {engine: sorted(v["times"])[len(v["times"]) // 2] for engine, v in result.items()}
        print(f"round {r + 1}: " + ", ".join(f"{e} {t * 1000:.0f} ms" for e, t in median.items()) + "  ratios "
              + ", ".join(f"{e} {median[e] / median['transformers']:.2f}" for e in engines if e != "transformers"),
              flush=True)
    print(f"\ntraining step B={B} N={N}, {args.layers} layers, {args.threads} threads, "
          f"{args.rounds} rounds x {args.steps} steps")
    for engine in engines:
        times = sorted(t for x in rounds for t in x[engine]["times"])
        print(f"  {engine:14s} median {times[len(times) // 2] * 1000:7.0f} ms  fastest {times[0] * 1000:7.0f} ms  "
              f"after set-up {rounds[-1][engine]['rss_mib']:6.0f} MiB  peak {rounds[-1][engine]['peak_mib']:6.0f} MiB")
    for engine in engines:
        if engine != "transformers":
            ratios = sorted(sorted(x[engine]["times"])[len(x[engine]["times"]) // 2]
                            / sorted(x["transformers"]["times"])[len(x["transformers"]["times"]) // 2] for x in rounds)
            print(f"  {engine} / transformers: {ratios[len(ratios) // 2]:.2f} (median of per-round ratios "
                  f"{[round(r, 2) for r in ratios]})")


if __name__ == "__main__":
    main()
