"""Batch work as users run it: the command line and the pipeline, one text per model call against
batches, and a local Dask cluster; all measured in one run, taking turns.

Inputs: the bundled model's held-out lines of 5 to 60 words, each masked at four places (a
quarter, half, three quarters in, and the last word), 1200 texts in all, in file order (their
lengths mixed, as a real file's are).

    python benchmarks/bench_batches.py [--rounds 2] [--dask-workers 2]

Prints seconds per run (median over rounds) and the ratios the README quotes.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydeberta
from pydeberta import pipeline

HELDOUT = Path(pydeberta.__file__).parent / "models" / "tiny" / "heldout_sample.txt"


def masked_lines(count=1200):
    """``count`` texts: each held-out line of 5-60 words masked at four places."""
    lines = [line.split() for line in HELDOUT.read_text(encoding="utf-8").splitlines() if 5 <= len(line.split()) <= 60]
    texts = []
    for words in lines:
        for at in (len(words) // 4, len(words) // 2, 3 * len(words) // 4, len(words) - 1):
            texts.append(" ".join(words[:at] + ["[MASK]"] + words[at + 1:]))
    return texts[:count]


def cli_seconds(source, *options):
    """Seconds of one ``pydeberta fill-mask --file SOURCE`` run (the process start included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pydeberta.cli", "fill-mask", "--file", str(source), "--json", *options],
                   check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dask-workers", type=int, default=2)
    args = parser.parse_args()
    texts = masked_lines()
    source = Path(tempfile.mkdtemp()) / "lines.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    fill = pipeline("fill-mask", model="pydeberta/tiny")
    runs = {
        "cli --batch-size 1": lambda: cli_seconds(source, "--batch-size", "1"),
        "cli --batch-size 64": lambda: cli_seconds(source, "--batch-size", "64"),
        f"cli --batch-size 64 --dask local:{args.dask_workers}":
            lambda: cli_seconds(source, "--batch-size", "64", "--dask", f"local:{args.dask_workers}"),
        "pipeline, one call per text": lambda: timed(lambda: [fill(text) for text in texts]),
        "pipeline(texts, batch_size=64)": lambda: timed(lambda: fill(texts, batch_size=64)),
    }
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):  # engines take turns: a round runs each once
        for name, run in runs.items():
            seconds[name].append(run())
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{len(texts)} texts, {args.rounds} rounds, pydeberta backend {pydeberta.backend_info()['backend']}")
    for name, value in median.items():
        print(f"  {name:<42} {value:7.2f} s   {len(texts) / value:7.1f} texts/s")
    print(f"cli --batch-size 64 / --batch-size 1:             {median['cli --batch-size 64'] / median['cli --batch-size 1']:.2f}")
    print("pipeline batch_size=64 / one call per text:       "
          f"{median['pipeline(texts, batch_size=64)'] / median['pipeline, one call per text']:.2f}")


def timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
