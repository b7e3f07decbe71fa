"""The ``pydeberta`` command: run a task pipeline, inspect a checkpoint, draw attention.

::

    pydeberta fill-mask "Raise an [MASK] if the argument is invalid."
    pydeberta classify --model FOLDER "I loved it."            (pairs: --pair "second text")
    pydeberta zero-shot --model NLI_FOLDER --labels sports,politics "The match ended 2-2."
    pydeberta ner --model NER_FOLDER "Ada Lovelace was born in London."
    pydeberta qa --model QA_FOLDER --question "Where?" --context "Ada was born in London."
    pydeberta embed --file lines.txt --normalize --npy vectors.npy     (or --output FILE.jsonl)
    pydeberta inspect pydeberta/tiny
    pydeberta attention pydeberta/tiny "The cat sat." --layer 0 --head 1 --out fig.png
    pydeberta finetune --model pydeberta/tiny --train train.jsonl --eval dev.jsonl --out DIR

Texts come from the arguments, else from ``--file`` (one text per line, or JSON lines whose
objects carry ``text``/``text_pair`` or ``question``/``context``), else from standard input,
all as UTF-8. They are run ``--batch-size`` rows per model call, ordered by length within
windows of 16 batches so that padding stays small; results keep the input order. Output is
human-readable; ``--json`` prints one JSON document per input line instead, and ``--output
FILE`` writes those lines to FILE as each window completes: a run interrupted and started again
with the same inputs resumes after the last complete line (a half-written one is cut off).
``--dask ADDRESS`` runs the windows on a Dask cluster (:mod:`pydeberta.distributed`). A
progress bar goes to standard error when it is a terminal. Every failure is one line on
standard error and a non-zero exit status, never a traceback; warnings are one line each.
"""

import argparse
import contextlib
import json
import os
import sys
import warnings

import numpy as np

DEFAULT_MODEL = "pydeberta/tiny"
WINDOW = 16  # batches per window: inputs are ordered by length within a window of WINDOW * batch size

# task -> (pipeline task, the model classes whose head fits it, as in config.json "architectures")
TASKS = {
    "fill-mask": ("fill-mask", ("DebertaV2ForMaskedLM",)),
    "classify": ("text-classification", ("DebertaV2ForSequenceClassification",)),
    "zero-shot": ("zero-shot-classification", ("DebertaV2ForSequenceClassification",)),
    "ner": ("token-classification", ("DebertaV2ForTokenClassification",)),
    "qa": ("question-answering", ("DebertaV2ForQuestionAnswering",)),
    "embed": ("feature-extraction", None),  # any checkpoint: the backbone's hidden states, pooled
}


class CommandError(Exception):
    """A problem to report in one line (exit status 1)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the usage itself is in ``--help``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Options holding text (paths such as --model, --file and --out may be any bytes the system allows).
TEXT_OPTIONS = ("texts", "text", "pair", "labels", "template", "targets", "question", "context")


# --------------------------------------------------------------------------- inputs
def read_inputs(args):
    """The inputs of one run: a list of str (or dicts for pairs and QA) from args, file or stdin."""
    if args.command == "qa" and (args.question or args.context):
        if not (args.question and args.context):
            raise CommandError("qa needs both --question and --context (or a --file of JSON lines)")
        return [{"question": args.question, "context": args.context}]
    if args.texts:
        lines = list(args.texts)
    elif args.file:
        try:
            with open(args.file, "rb") as f:
                lines = read_lines(f, f"--file {args.file}")
        except OSError as exc:
            raise CommandError(f"cannot read --file {args.file}: {exc.strerror}") from None
    elif not sys.stdin.isatty():
        lines = read_lines(sys.stdin.buffer, "standard input")
    else:
        raise CommandError(f"{args.command}: give texts as arguments, --file FILE, or on standard input")
    inputs = [parse_line(line, args.command) for line in lines]
    if args.command == "classify" and args.pair is not None:
        inputs = [{"text": x, "text_pair": args.pair} if isinstance(x, str) else x for x in inputs]
    if not inputs:
        raise CommandError(f"{args.command}: no input text")
    return inputs


def decode_utf8(raw, where):
    """``raw`` bytes as UTF-8 text; a :class:`CommandError` naming ``where`` and the bad byte otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{where}: not UTF-8 text ({exc.reason}: byte 0x{raw[exc.start]:02x} at byte "
                           f"{exc.start + 1})") from None


def read_lines(stream, source):
    """The lines of a binary stream that are not blank, decoded as UTF-8 (errors name ``source``
    and the line's number)."""
    lines = [decode_utf8(raw, f"{source}, line {number}").rstrip("\r\n") for number, raw in enumerate(stream, 1)]
    return [line for line in lines if line.strip()]


def check_text_arguments(args):
    """Refuse a text argument or option that is not UTF-8, naming it. Python hands over the
    undecodable bytes of a command line as lone surrogates (PEP 383); encoding them back with
    ``surrogateescape`` gives the bytes that came."""
    for name in TEXT_OPTIONS:
        values = getattr(args, name, None)
        values = [values] if isinstance(values, str) else values or []
        for index, value in enumerate(values):
            where = (f"text argument {index + 1}" if name == "texts" else "the text argument" if name == "text"
                     else f"--{name}")
            decode_utf8(value.encode("utf-8", "surrogateescape"), where)


def parse_line(line, command):
    """A line is plain text, or a JSON object (``text``/``text_pair``, ``question``/``context``)."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise CommandError(f"invalid JSON line {stripped[:40]!r}: {exc.msg}") from None
        if command == "qa":
            if not {"question", "context"} <= set(record):
                raise CommandError(f"qa JSON lines need 'question' and 'context', got keys {sorted(record)}")
            return {"question": record["question"], "context": record["context"]}
        if "text" not in record:
            raise CommandError(f"JSON lines need a 'text' key, got keys {sorted(record)}")
        return {"text": record["text"], "text_pair": record["text_pair"]} if "text_pair" in record else record["text"]
    if command == "qa":
        raise CommandError("qa reads JSON lines with 'question' and 'context' from --file or standard input")
    return line


# --------------------------------------------------------------------------- models
def load_pipeline(args):
    """The task's pipeline on ``--model`` (default: the bundled model), after checking its head fits."""
    from .hub import resolve_model_folder
    from .config import DebertaV2Config
    from .pipelines import pipeline

    task, classes = TASKS[args.command]
    name = args.model or DEFAULT_MODEL
    folder = resolve_model_folder(name)
    architectures = getattr(DebertaV2Config.from_pretrained(folder), "architectures", None) or []
    if classes is not None and not set(architectures) & set(classes):
        raise CommandError(
            f"{args.command}: model {name!r} is a {', '.join(architectures) or 'model without a task head'}; "
            f"this task needs a {' or '.join(classes)} checkpoint (pass --model FOLDER)")
    return pipeline(task, model=folder, batch_size=args.batch_size, quantize=args.quantize)


def task_options(args):
    """Per-call pipeline options from the command line."""
    options = {}
    if getattr(args, "top_k", None) is not None:
        options["top_k"] = args.top_k
    if args.command == "fill-mask" and args.targets is not None:
        options["targets"] = [target.strip() for target in args.targets.split(",") if target.strip()]
        if not options["targets"]:
            raise CommandError(f"--targets needs at least one word (comma-separated), got {args.targets!r}")
    if args.command == "classify" and args.function_to_apply:
        options["function_to_apply"] = args.function_to_apply
    if args.command == "zero-shot":
        options["candidate_labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
        options["multi_label"] = args.multi_label
        if args.template:
            options["hypothesis_template"] = args.template
    if args.command == "ner":
        options["aggregation_strategy"] = args.aggregation
    if args.command == "embed":
        options["pooling"], options["normalize"] = args.pooling, args.normalize
    return options


# --------------------------------------------------------------------------- output
def format_result(command, item, result):
    """Human-readable lines for one input's result."""
    if command == "fill-mask":
        groups = result if result and isinstance(result[0], list) else [result]
        lines = []
        for mask_index, group in enumerate(groups):
            if len(groups) > 1:
                lines.append(f"mask {mask_index + 1}:")
            lines += [f"  {r['score']:.4f}  {r['token_str']!s:<15} {r['sequence']}" for r in group]
        return lines
    if command == "classify":
        results = result if isinstance(result, list) else [result]
        return [f"  {r['label']:<20} {r['score']:.4f}" for r in results]
    if command == "zero-shot":
        return [f"  {label:<20} {score:.4f}" for label, score in zip(result["labels"], result["scores"])]
    if command == "embed":
        shown = ", ".join(f"{value:.4f}" for value in result[:4])
        return [f"  [{shown}, ...]  ({len(result)} dimensions, norm {float(np.linalg.norm(result)):.4f})"]
    if command == "ner":
        key = "entity_group" if result and "entity_group" in result[0] else "entity"
        return [f"  {r[key]:<10} {r['score']:.4f}  {r['word']!s:<20} [{r['start']}:{r['end']}]" for r in result] \
            or ["  (no entities)"]
    answers = result if isinstance(result, list) else [result]
    return [f"  {a['score']:.4f}  {a['answer']!r} [{a['start']}:{a['end']}]" for a in answers]


def resume_point(path, inputs):
    """How many leading ``inputs`` the JSON-lines file ``path`` already holds results for (0 when
    it does not exist). A half-written last line (no newline: the run was interrupted while
    writing it) is cut off; a line for another input is an error, so a restart with other
    inputs never mixes two runs in one file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise CommandError(f"cannot read --output {path}: {exc.strerror}") from None
    complete = data.rfind(b"\n") + 1  # every finished line ends with a newline
    lines = data[:complete].splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(decode_utf8(line, f"--output {path}, line {number}"))
        except json.JSONDecodeError:
            raise CommandError(f"--output {path}, line {number} is not a result line of pydeberta") from None
        if number > len(inputs) or not isinstance(record, dict) or record.get("input") != inputs[number - 1]:
            raise CommandError(f"--output {path} holds results of other inputs (line {number}); "
                               "give another --output, or delete it to start again")
    if complete < len(data):
        with open(path, "r+b") as f:
            f.truncate(complete)
        print(f"pydeberta: --output {path}: removed a half-written last line", file=sys.stderr)
    return len(lines)


def target_pieces(pipe, targets):
    """The vocabulary pieces for ``--targets`` words: each word as it is tokenized inside a text
    (``"earth"`` -> ``"▁earth"``); a word of several pieces is scored by its first piece, as
    transformers does, and said so in one line."""
    pieces = []
    for word in targets:
        tokens = pipe.tokenizer.tokenize(word)
        if not tokens:
            raise CommandError(f"--targets: {word!r} gives no token")
        if len(tokens) > 1:
            print(f"pydeberta fill-mask: note: target {word!r} is {len(tokens)} pieces ({' '.join(tokens)}); "
                  f"it is scored by its first piece {tokens[0]!r}, as transformers does", file=sys.stderr)
        pieces.append(tokens[0])
    return pieces


def results_of(pipe, items, options, args, client):
    """The results for ``items``, in order: one batched pipeline call (rows grouped by length),
    or, with ``--dask``, partitions run on the cluster."""
    if client is None:
        return pipe.map(items, batch_size=args.batch_size, **options)
    from .distributed import map_pipeline

    return map_pipeline(pipe, items, client=client, partition_size=WINDOW * args.batch_size,
                        batch_size=args.batch_size, **options)


def run_task(args):
    """Run a task command over its inputs, a window of them at a time, writing each window's
    results as it completes (to ``--output`` as JSON lines, resuming after its last complete
    line, else to standard output); a progress bar on standard error when it is a terminal."""
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    npy = getattr(args, "npy", None)  # embed only
    if npy and (args.output or args.json):
        raise CommandError("embed: --npy writes one array; it does not combine with --output or --json")
    inputs = read_inputs(args)
    done = resume_point(args.output, inputs) if args.output else 0
    pipe = load_pipeline(args)
    options = task_options(args)
    if "targets" in options:
        options["targets"] = target_pieces(pipe, options["targets"])
    with contextlib.ExitStack() as stack:
        client = None
        window = WINDOW * args.batch_size
        if args.dask:
            from .distributed import connect

            client = stack.enter_context(connect(args.dask))
            window *= 4 * max(1, len(client.scheduler_info()["workers"]))  # a few partitions per worker
        sink = stack.enter_context(open(args.output, "a", encoding="utf-8")) if args.output else None
        progress = stack.enter_context(progress_bar(args, total=len(inputs), initial=done))
        vectors = []  # --npy: every embedding, saved when all are done
        for start in range(done, len(inputs), window):
            items = inputs[start:start + window]
            for item, result in zip(items, results_of(pipe, items, options, args, client)):
                if npy:
                    vectors.append(result)
                elif sink is not None:
                    print(json.dumps({"input": item, "result": result}, ensure_ascii=False), file=sink)
                elif args.json:
                    progress.write(json.dumps({"input": item, "result": result}, ensure_ascii=False), file=sys.stdout)
                else:
                    progress.write(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False),
                                   file=sys.stdout)
                    progress.write("\n".join(format_result(args.command, item, result)), file=sys.stdout)
            if sink is not None:
                sink.flush()
            progress.update(len(items))
    if npy:
        save_npy(npy, np.asarray(vectors, dtype=np.float32))
        print(f"pydeberta embed: {len(vectors)} embeddings ({len(vectors[0])} dimensions) written to {npy}",
              file=sys.stderr)
    if args.output:
        print(f"pydeberta {args.command}: {len(inputs) - done} results written to {args.output}"
              + (f" after the {done} it held" if done else ""), file=sys.stderr)


def save_npy(path, array):
    """``np.save`` to ``path`` all or nothing: a temporary file beside it, renamed when complete."""
    from .saving import atomic_files

    folder, name = os.path.split(os.path.abspath(path))
    with atomic_files(folder, caller="--npy") as target:
        with open(target(name), "wb") as f:
            np.save(f, array)


def progress_bar(args, total, initial):
    """A tqdm bar on standard error, shown when it is a terminal (or with ``--progress``); its
    ``write`` prints results without tearing the bar."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="text", file=sys.stderr, dynamic_ncols=True,
                disable=not (args.progress or sys.stderr.isatty()), desc=f"pydeberta {args.command}")


def run_inspect(args):
    """Print a checkpoint's architecture and where its parameters are."""
    from .engine import backend_info
    from .checkpoint import read_state_dict
    from .hub import resolve_model_folder
    from .config import DebertaV2Config
    from .weights import is_quantized

    folder = resolve_model_folder(args.model)
    config = DebertaV2Config.from_pretrained(folder)
    state = read_state_dict(folder, lazy=True)  # shapes and dtypes from the headers; no weight is read
    groups = {"embeddings": 0, "encoder": 0, "head": 0}
    for key, value in state.items():
        bare = key[len("deberta."):] if key.startswith("deberta.") else key
        group = bare.split(".", 1)[0] if bare.split(".", 1)[0] in ("embeddings", "encoder") else "head"
        groups[group] += int(np.prod(value.shape))
    total = sum(groups.values())
    stored = sorted({"float32" if v.dtype == np.float16 else str(v.dtype) for v in state.values()})  # as loaded
    info = {
        "model": str(args.model), "folder": str(folder),
        "architectures": getattr(config, "architectures", None) or ["(none recorded)"],
        "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
        "heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size, "embedding_size": config.embedding_size,
        "relative_attention": config.relative_attention, "position_buckets": config.position_buckets,
        "pos_att_type": sorted(config.pos_att), "share_att_key": config.share_att_key,
        "conv_kernel_size": config.conv_kernel_size,
        "parameters": {**groups, "total": total},
        "checkpoint_dtype_loaded_as": stored,
        "compute_dtype": ("float32, the encoder's linear layers in int8 (quantized)" if is_quantized(config)
                          else "float32 (float64 with dtype=np.float64; int8 with quantize='int8')"),
        "backend": backend_info(),
    }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "parameters":
            print(f"{'parameters':<{width}}  {total:,} in all")
            for group in ("embeddings", "encoder", "head"):
                print(f"{'':<{width}}    {group:<11} {groups[group]:>13,}  ({100 * groups[group] / max(total, 1):.1f}%)")
        else:
            print(f"{key:<{width}}  {value}")


def run_attention(args):
    """Draw one head's attention and its c2c / c2p / p2c score terms for a text (``--out``, a
    matplotlib figure), and/or write the interactive page of every layer, head and term
    (``--html``, opening at ``--layer``/``--head``; needs no matplotlib)."""
    out = args.out if args.out or args.html else "attention.png"
    if out:
        try:
            import matplotlib  # noqa: F401  (checked before the model is loaded and run)
        except ImportError as exc:
            raise CommandError(f"attention needs matplotlib, which is not installed: pip install 'pydeberta[viz]' "
                               f"({exc}); --html alone needs no matplotlib") from None
    from .viz import AttentionView, plot_attention_terms
    from .hub import resolve_model_folder
    from .modeling import DebertaV2Model
    from .tokenizer import DebertaV2TokenizerFast

    folder = resolve_model_folder(args.model)
    tokenizer = DebertaV2TokenizerFast.from_pretrained(folder)
    model = DebertaV2Model.from_pretrained(folder)
    if not 0 <= args.layer < model.config.num_hidden_layers:
        raise CommandError(f"--layer must lie in [0, {model.config.num_hidden_layers}), got {args.layer}")
    if not 0 <= args.head < model.config.num_attention_heads:
        raise CommandError(f"--head must lie in [0, {model.config.num_attention_heads}), got {args.head}")
    enc = tokenizer(args.text, return_tensors="np")
    output = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_attentions=True,
                   output_study=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    if args.html:
        AttentionView(output, tokens, text=args.text, layer=args.layer, head=args.head).save(args.html)
        print(f"wrote {args.html}")
    if out:
        fig, _ = plot_attention_terms(output, tokens, layer=args.layer, head=args.head,
                                      shared_scale=args.shared_scale)
        fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
        print(f"wrote {out}")


# --------------------------------------------------------------------------- parser
def build_parser():
    """The argument parser of the ``pydeberta`` command."""
    parser = ArgumentParser(prog="pydeberta", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def task_parser(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("texts", nargs="*", help="input texts (else --file, else standard input)")
        p.add_argument("--model", help=f"checkpoint folder, hub id or bundled name (default {DEFAULT_MODEL})")
        p.add_argument("--file", help="read inputs from FILE: one text per line, or JSON lines")
        p.add_argument("--json", action="store_true", help="print one JSON document per input")
        p.add_argument("--batch-size", type=int, default=32,
                       help=f"model rows per call (default 32); rows are grouped by length within windows of "
                            f"{WINDOW} batches")
        p.add_argument("--output", help="write JSON lines to OUTPUT as they are done; a run restarted with the "
                                        "same inputs resumes after its last complete line")
        p.add_argument("--dask", metavar="ADDRESS",
                       help="run on a Dask cluster: a scheduler address, or local:N for N local worker processes "
                            "(pip install 'pydeberta[dask]')")
        p.add_argument("--progress", action="store_true",
                       help="show a progress bar on standard error even when it is not a terminal")
        p.add_argument("--quantize", choices=["int8"],
                       help="run the encoder's linear layers in int8 (faster on CPUs, slightly different numbers)")
        return p

    p = task_parser("fill-mask", "predict the [MASK] tokens")
    p.add_argument("--top-k", type=int)
    p.add_argument("--targets", help="comma-separated candidate words")
    p = task_parser("classify", "text (pair) classification")
    p.add_argument("--pair", help="second text of a pair (cross-encoders, NLI)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--function-to-apply", choices=["softmax", "sigmoid", "none"])
    p = task_parser("zero-shot", "zero-shot classification with an NLI model")
    p.add_argument("--labels", required=True, help="comma-separated candidate labels")
    p.add_argument("--template", help="hypothesis template, default 'This example is {}.'")
    p.add_argument("--multi-label", action="store_true")
    p = task_parser("ner", "token classification / named entities")
    p.add_argument("--aggregation", default="simple", choices=["none", "simple", "first", "average", "max"])
    p = task_parser("embed", "sentence embeddings: the backbone's hidden states, pooled")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls"], help="mean of the tokens (default) or [CLS]")
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings (dot product = cosine)")
    p.add_argument("--npy", metavar="FILE", help="write all embeddings as one float32 array [texts, dimensions]")
    p = task_parser("qa", "extractive question answering")
    p.add_argument("--question")
    p.add_argument("--context")
    p.add_argument("--top-k", type=int)

    p = sub.add_parser("inspect", help="architecture and parameter counts of a checkpoint")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("attention", help="heatmaps of one head's attention and its c2c/c2p/p2c terms")
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--head", type=int, default=0)
    p.add_argument("--out", help="the figure's file (default attention.png, none when only --html is given)")
    p.add_argument("--html", metavar="FILE",
                   help="write an interactive page of every layer, head and term (c2c, c2p, p2c, sum) to FILE, "
                        "opening at --layer/--head; self-contained, no matplotlib needed")
    p.add_argument("--dpi", type=int, default=120)
    p.add_argument("--shared-scale", action="store_true",
                   help="one colour scale for the c2c, c2p and p2c maps, so their sizes compare")
    from .training.finetune import add_arguments as finetune_arguments
    finetune_arguments(sub.add_parser("finetune", help="fine-tune a model on JSON-lines examples"))
    return parser


def one_line(text):
    """``text`` with its lines joined by "; " (a message listing keys spans several)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def main(argv=None):
    """Entry point of the ``pydeberta`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores showwarning when done
            warnings.showwarning = lambda message, *_, **__: print(
                f"pydeberta {args.command}: warning: {one_line(message)}", file=sys.stderr)
            check_text_arguments(args)
            if args.command == "inspect":
                run_inspect(args)
            elif args.command == "attention":
                run_attention(args)
            elif args.command == "finetune":
                from .training.finetune import run as run_finetune
                run_finetune(args)
            else:
                run_task(args)
    except (CommandError, ValueError, TypeError, OSError, KeyError, RuntimeError, ImportError, MemoryError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"pydeberta {args.command}: error: {one_line(message) or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
