"""Tokenizer benchmark: pydeberta's DebertaV2Tokenizer and DebertaV2TokenizerFast against
transformers' DebertaV2TokenizerFast (Rust ``tokenizers``), all built from the same spm.model.

The corpus is 10,000 (``--sentences``) mixed sentences drawn reproducibly (seed 0) from English,
accented Latin, Greek, Cyrillic, CJK, emoji, numbers, punctuation and the odd ``[MASK]``, 5 to 40
words each. Workloads, each on the whole corpus in one call:

* ``call``:    ``tok(texts)``, lists of ids, token types and attention masks;
* ``padded``:  ``tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np")``;
* ``offsets``: ``tok(texts, return_offsets_mapping=True)`` (fast tokenizers only).

After one warm-up call per engine the engines take turns (``--repeats`` rounds), so a busy
machine slows them alike; the median time is reported as sentences per second, with its ratio
to transformers' fast tokenizer. All engines use every core (sentencepiece's batch encoder and
``tokenizers`` both default to it). The ids are compared too: pydeberta's two classes must agree
on every sentence; transformers' fast tokenizer differs where byte fallback matters (it has none).

Usage::

    python benchmarks/bench_tokenizer.py
    python benchmarks/bench_tokenizer.py --sentences 2000 --repeats 3 --workloads call
    PYDEBERTA_SPM_MODEL=/path/to/spm.model python benchmarks/bench_tokenizer.py --with-transformers-slow
"""

import argparse
import os
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

DEFAULT_SPM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deberta-v3" / "spm.model"
WORKLOADS = {
    "call": {},
    "padded": dict(padding=True, truncation=True, max_length=128, return_tensors="np"),
    "offsets": dict(return_offsets_mapping=True),
}
WORDS = {
    "english": "the quick brown fox jumps over a lazy dog while models learn language from large text corpora "
               "attention layers compare every token with every other token and weigh them".split(),
    "latin": "naïve café façade über straße déjà vu señor coöperate résumé crème brûlée".split(),
    "greek": "καλημέρα κόσμε γλώσσα μοντέλο".split(),
    "cyrillic": "привет мир язык модель текст".split(),
    "cjk": "東京 日本語 中文 字 龘 한국어 ひらがな カタカナ 株式会社".split(),
    "emoji": ["😀", "👍🏽", "🇫🇷", "❤️", "🚀"],
    "other": ["42", "3.14", "1,000", "(e.g.)", "don't", "state-of-the-art", "[MASK]", "ｆｕｌｌ", "①", "—"],
}
MIX = [("english", 0.6), ("latin", 0.1), ("greek", 0.04), ("cyrillic", 0.06), ("cjk", 0.08), ("emoji", 0.04),
       ("other", 0.08)]


def corpus(size, seed=0):
    """``size`` mixed sentences, the same for a given seed."""
    rng = random.Random(seed)
    groups, weights = zip(*MIX)
    sentences = []
    for _ in range(size):
        words = [rng.choice(WORDS[group]) for group in rng.choices(groups, weights, k=rng.randint(5, 40))]
        sentence = " ".join(words)
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ""]))
    return sentences


def build(engines, spm_model):
    """{engine name: tokenizer}, each read from a folder holding the one spm.model."""
    from pydeberta.tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

    folder = Path(tempfile.mkdtemp(prefix="bench-tokenizer-"))
    (folder / "spm.model").symlink_to(Path(spm_model).resolve())
    builders = {"pydeberta-slow": lambda: DebertaV2Tokenizer.from_pretrained(folder),
                "pydeberta-fast": lambda: DebertaV2TokenizerFast.from_pretrained(folder)}
    if "transformers-fast" in engines or "transformers-slow" in engines:
        import transformers

        builders["transformers-fast"] = lambda: transformers.DebertaV2TokenizerFast.from_pretrained(folder)
        builders["transformers-slow"] = lambda: transformers.DebertaV2Tokenizer.from_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers warns that its converter drops byte fallback
        return {name: builders[name]() for name in engines}


def time_workload(tokenizers, texts, kwargs, repeats):
    """Median seconds per call of each tokenizer, the engines taking turns."""
    times = {name: [] for name in tokenizers}
    for tok in tokenizers.values():
        tok(texts[:100], **kwargs)  # warm-up (caches, thread pools)
    for _ in range(repeats):
        for name, tok in tokenizers.items():
            start = time.perf_counter()
            tok(texts, **kwargs)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def agreement(tokenizers, texts):
    """Lines comparing every engine's ids with pydeberta-fast's."""
    reference = tokenizers["pydeberta-fast"](texts)["input_ids"]
    lines = []
    for name, tok in tokenizers.items():
        ids = tok(texts)["input_ids"]
        same = sum(1 for ours, theirs in zip(reference, ids) if ours == list(theirs))
        lines.append(f"  {name:<18} same ids as pydeberta-fast on {same}/{len(texts)} sentences")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spm", default=os.environ.get("PYDEBERTA_SPM_MODEL", DEFAULT_SPM),
                        help="spm.model (default: $PYDEBERTA_SPM_MODEL or %(default)s)")
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of %(default)s")
    parser.add_argument("--with-transformers-slow", action="store_true", help="also time transformers' slow tokenizer")
    parser.add_argument("--no-transformers", action="store_true", help="pydeberta only")
    args = parser.parse_args(argv)
    if not Path(args.spm).is_file():
        parser.error(f"no spm.model at {args.spm}; pass --spm or set PYDEBERTA_SPM_MODEL")

    engines = ["pydeberta-slow", "pydeberta-fast"]
    if not args.no_transformers:
        engines += ["transformers-fast"] + (["transformers-slow"] if args.with_transformers_slow else [])
    tokenizers = build(engines, args.spm)
    texts = corpus(args.sentences)
    baseline = "transformers-fast" if "transformers-fast" in tokenizers else "pydeberta-slow"
    print(f"{len(texts)} sentences, {sum(map(len, texts)) / len(texts):.0f} characters on average; "
          f"{os.cpu_count()} cores; median of {args.repeats} rounds")
    print("\n".join(agreement(tokenizers, texts)))
    for workload in args.workloads.split(","):
        kwargs = WORKLOADS[workload]
        engaged = {name: tok for name, tok in tokenizers.items()
                   if not (kwargs.get("return_offsets_mapping") and not tok.is_fast)}
        seconds = time_workload(engaged, texts, kwargs, args.repeats)
        print(f"\n{workload}: tok(texts{''.join(f', {key}={value!r}' for key, value in kwargs.items())})")
        for name, value in seconds.items():
            ratio = seconds[baseline] / value if baseline in seconds else float("nan")
            print(f"  {name:<18} {len(texts) / value:>10,.0f} sentences/s  {value * 1000:8.1f} ms  "
                  f"x{ratio:5.2f} vs {baseline}")


if __name__ == "__main__":
    main()
