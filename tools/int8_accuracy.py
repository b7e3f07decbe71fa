"""How much int8 inference changes pydeberta's answers: float32 against ``model.quantize("int8")``.

int8 here is what ``quantize`` does: per-output-channel symmetric int8 weights for the linear
layers of the encoder layers, per-row dynamic int8 activations, int32 accumulation, everything
else in float32. Three measurements, each on the float32 model and on an int8 copy:

(a) The bundled masked LM ``pydeberta/tiny``: held-out top-1 / top-5 exactly as its model card
    scores them (``tools/train_tiny.py``'s ``masked_accuracy``: each source's held-out lines
    packed into 128-token rows, 15% of the non-special tokens replaced by [MASK] with the card's
    seed, pooled over the sources), on the full held-out split when the corpus work folder
    (``--work``, default /tmp/pydeberta_tiny) has it, else on the shipped slice
    ``pydeberta/models/tiny/heldout_sample.txt``. The float32 figures should equal the card's
    (``eval_results.json``, scored with transformers) up to argmax ties.
(b) A classifier fine-tuned here from ``pydeberta/tiny`` with ``pydeberta.training.finetune``: which
    of the tiny model's first three corpora (python3.11-doc, bible-kjv, fortunes) a line comes
    from. Training lines: balanced, sampled (seeded) from the corpus's training split
    (``train.txt``, labelled by re-reading the sources with ``tools/train_tiny.py``'s readers);
    test lines: balanced, sampled from the held-out files ``heldout_<source>.txt`` (fortunes has
    the fewest, so it sets the count per class, at most 500). Lines of at least 20 characters.
    The fine-tuned model is kept in ``--classifier`` (default
    ~/.cache/pydeberta/source-classifier, with ``training.json``) and reused; ``--retrain``
    trains it again (``TRAINING``: about 10 minutes on one thread of a loaded 2-core machine).
    Reported: accuracy, and how many test lines get a different prediction in int8.
(c) Base-sized random weights (``BASE_CONFIG`` below: benchmarks/bench_model.py's deberta-v3-base
    shape, vocabulary cut to 1000), ``DebertaV2Model(config, seed=0)`` in float32 and quantized,
    on random ids B=2 N=128: for every hidden state (the embeddings, then each layer) the largest
    absolute difference, that difference over the float32 state's largest magnitude, and the
    cosine similarity of the flattened states. The headline is the default initialisation
    (std 0.02); it hides much of the error, because at that scale attention is nearly uniform
    and every layer changes its input little (measured: cosine ~0.94 between consecutive hidden
    states), so the per-layer table repeats the measurement with std 0.05 (``LARGER_STD``), where
    attention is peaked and each layer rewrites the state (cosine 0.08-0.31 between consecutive states).

Everything runs on one BLAS thread, with the pydeberta of this checkout (not an installed one).
Prints a Markdown table (float32 | int8 | difference) and the per-layer table of (c).

Usage (from the repository root)::

    nice -n 10 python tools/int8_accuracy.py                        # all three parts
    nice -n 10 python tools/int8_accuracy.py --parts a,c --json int8.json
    nice -n 10 python tools/int8_accuracy.py --parts b --retrain    # fine-tune the classifier again
    nice -n 10 python tools/train_tiny.py --step corpus             # the full held-out split for (a);
                                                                    # (b) builds it when missing
"""

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads OpenBLAS

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's pydeberta

from pydeberta import (AutoTokenizer, DebertaV2Config, DebertaV2ForMaskedLM,  # noqa: E402
                       DebertaV2ForSequenceClassification, DebertaV2Model)
from pydeberta.training import finetune  # noqa: E402
from train_tiny import (DEFAULT_WORK, FIRST_SOURCES, PACKAGE_FOLDER, SOURCES, bible_documents,  # noqa: E402
                        build_corpus, fortune_documents, load_tokenizer, masked_accuracy, pack_rows,
                        python_doc_documents, read_lines)

PRECISIONS = ("float32", "int8")
CORPUS_SEED = 0  # train_tiny.py's --seed for the corpus

# (b)
READERS = {"python3.11-doc": python_doc_documents, "bible-kjv": bible_documents, "fortunes": fortune_documents}
MIN_CHARS = 20
TRAIN_PER_CLASS = 1200
TEST_PER_CLASS = 500  # at most: the held-out files hold fewer fortunes
SAMPLE_SEED = 0
TRAINING = dict(epochs=1, batch_size=16, lr=1e-4, warmup_ratio=0.1, max_length=64, seed=0)
DEFAULT_CLASSIFIER = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pydeberta" / "source-classifier"

# (c): benchmarks/bench_model.py's BASE_CONFIG (that script reads its command line when imported)
BASE_CONFIG = dict(
    vocab_size=1000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0, layer_norm_eps=1e-7,
    relative_attention=True, position_buckets=256, max_relative_positions=-1, pos_att_type="p2c|c2p",
    share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
)
DEFAULT_STD = 0.02  # DebertaV2Config's initializer_range
LARGER_STD = 0.05
SHAPE = (2, 128)  # B, N


def as_precision(model, precision):
    """``model`` itself for float32, else quantized in place to ``precision``."""
    return model if precision == "float32" else model.quantize(precision)


# --------------------------------------------------------------------------- (a)
def masked_lm_accuracy(work):
    """(a): top-1 / top-5 of ``pydeberta/tiny`` on the held-out split, float32 and int8."""
    tokenizer = load_tokenizer(PACKAGE_FOLDER)
    card = json.loads((PACKAGE_FOLDER / "eval_results.json").read_text())
    paths = [work / f"heldout_{source}.txt" for source in SOURCES]
    if all(path.exists() for path in paths):
        split, claimed = f"full held-out split ({work}/heldout_<source>.txt)", card["heldout"]
    else:
        paths = [PACKAGE_FOLDER / "heldout_sample.txt"]
        split, claimed = "shipped slice (pydeberta/models/tiny/heldout_sample.txt)", card["heldout_sample"]
    texts = [read_lines(path) for path in paths]
    rows = [pack_rows(tokenizer, lines) for lines in texts]  # one packing per source, as the card
    result = {"split": split, "lines": sum(map(len, texts)),
              "card_float32": {key: claimed[key] for key in ("top1", "top5")}}
    for precision in PRECISIONS:
        model = as_precision(DebertaV2ForMaskedLM.from_pretrained(PACKAGE_FOLDER), precision)
        parts = [masked_accuracy(model, tokenizer, part, card["baseline_token_ids"], card["mask_seed"])
                 for part in rows]
        n = sum(part["masked_tokens"] for part in parts)
        result[precision] = {"masked_tokens": n, **{key: sum(part[key] * part["masked_tokens"] for part in parts) / n
                                                    for key in ("top1", "top5")}}
    return result


# --------------------------------------------------------------------------- (b)
def ensure_corpus(work):
    """Build the tiny model's corpus in ``work`` (train_tiny.py --step corpus) if it is not there."""
    if not all((work / name).exists() for name in ["train.txt", *(f"heldout_{s}.txt" for s in FIRST_SOURCES)]):
        build_corpus(work, CORPUS_SEED)


def balanced(lines_by_source, per_class, seed):
    """``per_class`` lines of each source, sampled with ``seed``, as finetune's examples."""
    rng = random.Random(seed)
    return [{"text": line, "label": source}
            for source in FIRST_SOURCES for line in rng.sample(lines_by_source[source], per_class)]


def train_examples(work):
    """Balanced training examples from the corpus's training split. ``train.txt`` does not say
    where a line came from, so the sources are read again, duplicates dropped in build_corpus's
    order (the first source to give a line keeps it), and a line kept if it is in ``train.txt``."""
    trained = set(read_lines(work / "train.txt"))
    seen, lines = set(), {}
    for source in FIRST_SOURCES:
        lines[source] = []
        for _, document in READERS[source]():
            for line in document:
                if line.lower() not in seen:
                    seen.add(line.lower())
                    if line in trained and len(line) >= MIN_CHARS:
                        lines[source].append(line)
    return balanced(lines, TRAIN_PER_CLASS, SAMPLE_SEED)


def test_examples(work):
    """Balanced test examples from the held-out files (as many per class as the smallest allows,
    at most ``TEST_PER_CLASS``)."""
    lines = {source: [line for line in read_lines(work / f"heldout_{source}.txt") if len(line) >= MIN_CHARS]
             for source in FIRST_SOURCES}
    return balanced(lines, min(TEST_PER_CLASS, *map(len, lines.values())), SAMPLE_SEED + 1)


def train_classifier(work, folder):
    """Fine-tune ``pydeberta/tiny`` on the training examples and save it, with ``training.json``
    (settings, time, history), to ``folder``."""
    model = DebertaV2ForSequenceClassification.from_pretrained(PACKAGE_FOLDER, id2label=dict(enumerate(FIRST_SOURCES)))
    tokenizer = AutoTokenizer.from_pretrained(PACKAGE_FOLDER)
    train = train_examples(work)
    start = time.time()
    history = finetune(model, tokenizer, train, task="text-classification", out=folder, **TRAINING)
    record = {"examples": len(train), "per_class": TRAIN_PER_CLASS, "min_chars": MIN_CHARS, **TRAINING,
              "threads": 1, "minutes": (time.time() - start) / 60, "history": history}
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def predict(model, tokenizer, texts, max_length, batch_size=32):
    """The predicted label ids of ``texts``."""
    predictions = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="np")
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [B, 3]
        predictions.append(logits.argmax(-1))
    return np.concatenate(predictions)


def classifier_accuracy(work, folder, retrain):
    """(b): accuracy of the source classifier on the held-out lines, float32 and int8."""
    ensure_corpus(work)
    if retrain or not (folder / "training.json").exists():
        train_classifier(work, folder)
    training = json.loads((folder / "training.json").read_text())
    test = test_examples(work)
    labels = np.array([FIRST_SOURCES.index(example["label"]) for example in test])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    result = {"classifier": str(folder), "training": training, "test_lines": len(test)}
    predictions = {}
    for precision in PRECISIONS:
        model = as_precision(DebertaV2ForSequenceClassification.from_pretrained(folder), precision)
        predictions[precision] = predict(model, tokenizer, [example["text"] for example in test],
                                         training["max_length"])
        result[precision] = {"accuracy": float((predictions[precision] == labels).mean())}
    result["predictions_differ"] = int((predictions["float32"] != predictions["int8"]).sum())
    return result


# --------------------------------------------------------------------------- (c)
def compare(reference, other):
    """Largest |difference|, that over max |reference|, and the cosine of the flattened arrays."""
    reference, other = reference.astype(np.float64).ravel(), other.astype(np.float64).ravel()
    largest = float(np.abs(other - reference).max())
    return {"max_abs_diff": largest, "relative_diff": largest / float(np.abs(reference).max()),
            "cosine": float(reference @ other / (np.linalg.norm(reference) * np.linalg.norm(other))),
            "max_abs_float32": float(np.abs(reference).max()), "max_abs_int8": float(np.abs(other).max())}


def hidden_state_drift(std):
    """(c): every hidden state of the base-sized random model (weights ~ N(0, std)), float32
    against int8, on random ids of ``SHAPE``."""
    config = DebertaV2Config(**BASE_CONFIG, initializer_range=std)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, SHAPE)
    states = {precision: as_precision(DebertaV2Model(config, seed=0), precision)(
        input_ids=ids, output_hidden_states=True).hidden_states for precision in PRECISIONS}
    return {"std": std, "shape": list(SHAPE),
            "layers": [compare(a, b) for a, b in zip(states["float32"], states["int8"])]}


# --------------------------------------------------------------------------- report
def markdown(results):
    """The summary table (float32 | int8 | difference) and the per-layer table of (c)."""
    rows = []
    if "a" in results:
        a = results["a"]
        n = a["float32"]["masked_tokens"]
        where = f"{a['split'].split(' (')[0]}, {n:,} masked tokens"
        for key, name in (("top1", "top-1"), ("top5", "top-5")):
            change = a["int8"][key] - a["float32"][key]
            rows.append(f"| (a) `pydeberta/tiny` masked LM, held-out {name} ({where}) | {a['float32'][key]:.3f} | "
                        f"{a['int8'][key]:.3f} | {change:+.4f} ({round(change * n):+d} correct) |")
    if "b" in results:
        b = results["b"]
        rows.append(f"| (b) source classifier (python3.11-doc / bible-kjv / fortunes), accuracy on "
                    f"{b['test_lines']} held-out lines | {b['float32']['accuracy']:.3f} | {b['int8']['accuracy']:.3f} | "
                    f"{b['int8']['accuracy'] - b['float32']['accuracy']:+.4f} |")
        rows.append(f"| (b) held-out lines whose predicted source changes | | | {b['predictions_differ']} of "
                    f"{b['test_lines']} |")
    if "c" in results:
        last = results["c"][0]["layers"][-1]
        what = f"(c) base-sized random weights (std {results['c'][0]['std']}), last hidden state"
        rows += [f"| {what}: largest magnitude | {last['max_abs_float32']:.3g} | {last['max_abs_int8']:.3g} | |",
                 f"| {what}: largest absolute difference | | | {last['max_abs_diff']:.3g} |",
                 f"| {what}: largest difference / largest float32 magnitude | | | {last['relative_diff']:.2%} |",
                 f"| {what}: cosine similarity | | | {last['cosine']:.6f} |"]
    text = "| | float32 | int8 | difference |\n|---|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    if "a" in results:
        card = results["a"]["card_float32"]
        text += (f"\n(a) on the {results['a']['split']}, {results['a']['lines']:,} lines; the model card's float32 "
                 f"figures (transformers) are top-1 {card['top1']:.3f}, top-5 {card['top5']:.3f}.\n")
    if "b" in results:
        t = results["b"]["training"]
        text += (f"\n(b) fine-tuned on {t['examples']:,} training lines ({t['per_class']} per source), {t['epochs']} "
                 f"epoch(s), batch {t['batch_size']}, lr {t['lr']:g}, warmup {t['warmup_ratio']:g}, max_length "
                 f"{t['max_length']}, {t['minutes']:.1f} minutes on {t['threads']} thread; cached in "
                 f"{results['b']['classifier']}.\n")
    if "c" in results:
        runs = results["c"]
        head = " | ".join(f"max abs diff (std {run['std']}) | relative | cosine" for run in runs)
        text += (f"\n(c) per hidden state, `DebertaV2Model(config, seed=0)`, random ids B={runs[0]['shape'][0]} "
                 f"N={runs[0]['shape'][1]}:\n\n| hidden state | {head} |\n|---|" + "---:|---:|---:|" * len(runs) + "\n")
        for index, layers in enumerate(zip(*(run["layers"] for run in runs))):
            cells = " | ".join(f"{m['max_abs_diff']:.3g} | {m['relative_diff']:.2%} | {m['cosine']:.6f}" for m in layers)
            text += f"| {'embeddings' if index == 0 else f'layer {index}'} | {cells} |\n"
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="a,b,c", help="comma-separated subset of a, b, c (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--retrain", action="store_true", help="(b): fine-tune the classifier again")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="train_tiny.py's corpus folder (default: %(default)s)")
    parser.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER,
                        help="(b): where the fine-tuned classifier is kept (default: %(default)s)")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.parts.split(",")]
    if set(parts) - {"a", "b", "c"}:
        parser.error(f"--parts: expected a, b and/or c, got {args.parts!r}")
    measure = {"a": lambda: masked_lm_accuracy(args.work),
               "b": lambda: classifier_accuracy(args.work, args.classifier, args.retrain),
               "c": lambda: [hidden_state_drift(DEFAULT_STD), hidden_state_drift(LARGER_STD)]}
    results = {}
    for part in sorted(set(parts)):
        start = time.time()
        results[part] = measure[part]()
        print(f"[{part}] {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    print(markdown(results), end="")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
