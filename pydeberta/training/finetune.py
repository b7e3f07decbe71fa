"""Fine-tuning a task model on a CPU with no framework: examples -> batches -> gradients ->
clipping -> AdamW with a linear schedule, an evaluation after each epoch, and a checkpoint both
pydeberta and transformers load. The loop is transformers' ``Trainer`` with its defaults where
they apply (AdamW betas 0.9/0.999, eps 1e-8; linear schedule, warm-up steps
``ceil(warmup_ratio * total steps)``; clipping to ``max_grad_norm``; no weight decay for biases
and LayerNorm weights)::

    from pydeberta import AutoTokenizer, DebertaV2ForSequenceClassification
    from pydeberta.training.finetune import finetune

    model = DebertaV2ForSequenceClassification.from_pretrained(folder, num_labels=2)
    history = finetune(model, AutoTokenizer.from_pretrained(folder), "train.jsonl", "dev.jsonl",
                       epochs=3, batch_size=16, lr=5e-5, out="finetuned")

Examples are a list of dicts or a JSON-lines file, one object a line:

* ``text-classification``: ``{"text": ..., "text_pair": ... (optional), "label": id or name}``
  (a name is looked up in ``config.label2id``);
* ``token-classification``: ``{"tokens": [words], "labels": [one id or name per word]}``; the
  label goes on the first piece of each word, -100 (ignored) on the others and on special
  tokens, as transformers' examples do;
* ``multiple-choice``: ``{"prompt" (or "question"): ..., "choices": [texts], "label": index}``;
  each choice is the second text of a pair after the prompt; every example has the same number
  of choices.

The command line's ``pydeberta finetune`` is :func:`add_arguments` and :func:`run`.
"""

import json
import math
import os
import sys

import numpy as np
from tqdm import tqdm

from .. import modeling
from ..auto import AutoTokenizer
from ..config import DebertaV2Config
from ..hub import resolve_model_folder
from .gradients import value_and_grad
from .optim import AdamW, LinearSchedule, check_number, clip_grad_norm, transformers_no_decay

__all__ = ["TASKS", "add_arguments", "encode", "evaluate", "examples_for", "finetune", "label_overrides", "read_records",
           "run", "save"]

TASKS = {
    "text-classification": ("sequence_classification", "DebertaV2ForSequenceClassification"),
    "token-classification": ("token_classification", "DebertaV2ForTokenClassification"),
    "multiple-choice": ("multiple_choice", "DebertaV2ForMultipleChoice"),
}
"""task -> (the model's ``head``, its class name)."""


# --------------------------------------------------------------------------- examples
def read_records(source, task, name="train"):
    """The examples of ``source`` checked against ``task``'s format (module docstring), labels as
    given (ids or names): a list of ``(where, record)``, ``where`` naming the file and line
    (``"dev.jsonl, line 7"``) or the list item (``"train[6]"``) for messages.

    Args:
        source: a list of dicts, or the path of a JSON-lines file (UTF-8; blank lines skipped).
        task: a key of :data:`TASKS`.
        name: what the examples are called when they come as a list.
    Raises:
        ValueError: a line that is not UTF-8 or JSON, or an example of the wrong form, naming
            where and what was expected; no examples at all.
        OSError: the file cannot be read (naming it).
    """
    check_task_name(task)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        items = list(json_lines(path))
        origin = path
    elif isinstance(source, (list, tuple)):
        items = [(f"{name}[{index}]", item) for index, item in enumerate(source)]
        origin = name
    else:
        raise TypeError(f"{name} must be a list of dicts or the path of a JSON-lines file, got {type(source).__name__}")
    if not items:
        raise ValueError(f"{origin}: no examples")
    records = [(where, check_record(item, task, where)) for where, item in items]
    first_where, first = records[0]
    for where, record in records[1:]:
        if task == "text-classification" and (record["text_pair"] is None) != (first["text_pair"] is None):
            raise ValueError(f"{where}: every example needs a text_pair or none does ({first_where} "
                             f"{'has one' if first['text_pair'] is not None else 'has none'})")
        if task == "multiple-choice" and len(record["choices"]) != len(first["choices"]):
            raise ValueError(f"{where}: every example needs the same number of choices: {len(first['choices'])} "
                             f"as in {first_where}, got {len(record['choices'])}")
    return records


def json_lines(path):
    """``(where, object)`` for every line of the JSON-lines file ``path`` that is not blank."""
    try:
        with open(path, "rb") as handle:
            raw_lines = handle.readlines()
    except OSError as error:
        raise OSError(f"cannot read {path}: {error.strerror or error}") from None
    for number, raw in enumerate(raw_lines, 1):
        where = f"{path}, line {number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start + 1})") from None
        if not line.strip():
            continue
        try:
            yield where, json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not JSON ({error.msg} at column {error.colno})") from None


def check_record(item, task, where):
    """One example in its normal form (the keys of ``task``'s format), or a ``ValueError``
    naming ``where``, the key, what was expected and what came."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: an example must be a JSON object, got {type(item).__name__} {item!r:.40}")

    def field(key, kinds, expected, required=True):
        value = item.get(key)
        if value is None and not required:
            return None
        if key not in item:
            raise ValueError(f"{where}: {task} examples need {key!r} ({expected}); got keys {sorted(item)}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{where}: {key!r} must be {expected}, got {type(value).__name__} {value!r:.40}")
        return value

    def string_list(key, expected, min_size):
        values = field(key, list, expected)
        bad = [value for value in values if not isinstance(value, str)]
        if bad or len(values) < min_size:
            raise ValueError(f"{where}: {key!r} must be {expected}, got {values!r:.60}")
        return values

    label = "a label id (int) or name (str)"
    if task == "text-classification":
        return {"text": field("text", str, "a string"), "text_pair": field("text_pair", str, "a string", False),
                "label": field("label", (int, str), label)}
    if task == "token-classification":
        tokens = string_list("tokens", "a non-empty list of words (strings)", 1)
        labels = field("labels", list, f"a list of labels, one per word: {label}")
        if len(labels) != len(tokens) or any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in labels):
            raise ValueError(f"{where}: 'labels' must hold one label id (int) or name (str) per word: "
                             f"{len(tokens)} words, got {labels!r:.60}")
        return {"tokens": tokens, "labels": labels}
    prompt_key = "prompt" if "prompt" in item else "question"
    return {"prompt": field(prompt_key, str, "a string (the prompt or question)"),
            "choices": string_list("choices", "a list of at least 2 strings", 2),
            "label": field("label", int, "the index of the right choice (int)")}


def label_id(value, config, where, key="label"):
    """A label as an id of ``config``'s labels: an int in ``[0, num_labels)``, or a name of
    ``config.label2id``."""
    if isinstance(value, str):
        if value not in config.label2id:
            names = sorted(map(str, config.label2id))
            raise ValueError(f"{where}: {key} {value!r:.40} is not a label name of the model (config.label2id has "
                             f"{names[:8]}{' ...' if len(names) > 8 else ''})")
        return int(config.label2id[value])
    if not 0 <= value < config.num_labels:
        raise ValueError(f"{where}: {key} must be an id in [0, {config.num_labels}) (config.num_labels) or a name "
                         f"of config.label2id, got {value}")
    return value


def examples_for(records, task, config):
    """``records`` (from :func:`read_records`) with their labels as ids of ``config``."""
    out = []
    for where, record in records:
        if task == "text-classification":
            record = {**record, "label": label_id(record["label"], config, where)}
        elif task == "token-classification":
            record = {**record, "labels": [label_id(value, config, where, f"labels[{index}]")
                                           for index, value in enumerate(record["labels"])]}
        elif not 0 <= record["label"] < len(record["choices"]):
            raise ValueError(f"{where}: label must be a choice index in [0, {len(record['choices'])}), "
                             f"got {record['label']}")
        out.append(record)
    return out


def label_overrides(records, task, config):
    """The config fields that give a new head the labels of ``records``: none when ``config``
    is already a checkpoint of ``task``'s class (its labels stand) or for multiple choice;
    otherwise ``id2label`` over the sorted label names, or ``num_labels`` = largest id + 1
    (at least 2), as transformers' ``run_glue``/``run_ner`` examples set them up."""
    if task == "multiple-choice" or TASKS[task][1] in (getattr(config, "architectures", None) or []):
        return {}
    values = [(where, value) for where, record in records
              for value in (record["labels"] if task == "token-classification" else [record["label"]])]
    names = sorted({value for _, value in values if isinstance(value, str)})
    if names:
        number = next(((where, value) for where, value in values if not isinstance(value, str)), None)
        if number is not None:
            raise ValueError(f"{number[0]}: labels must all be names or all ids, got {number[1]!r} beside names "
                             f"such as {names[0]!r}")
        return {"id2label": dict(enumerate(names))}
    for where, value in values:
        if value < 0:
            raise ValueError(f"{where}: a label id must be >= 0, got {value}")
    return {"num_labels": max(2, 1 + max(value for _, value in values))}


# --------------------------------------------------------------------------- batches
def encode(tokenizer, examples, task, max_length):
    """The model's arguments for a batch of examples, padded to its longest row and truncated
    to ``max_length`` tokens: ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[B, N]``
    (``[B, K, N]`` for ``K`` choices) and ``labels`` (``[B]``, or ``[B, N]`` for tokens)."""
    options = dict(padding=True, truncation=True, max_length=max_length, return_tensors="np")
    if task == "text-classification":
        pairs = None if examples[0]["text_pair"] is None else [example["text_pair"] for example in examples]
        encoding = tokenizer([example["text"] for example in examples], pairs, **options)
        labels = np.array([example["label"] for example in examples], dtype=np.int64)  # [B]
    elif task == "token-classification":
        encoding = tokenizer([example["tokens"] for example in examples], is_split_into_words=True, **options)
        labels = np.full(encoding["input_ids"].shape, -100, dtype=np.int64)  # [B, N]
        for row, example in enumerate(examples):
            previous = None
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:  # the first piece of a word
                    labels[row, position] = example["labels"][word]
                previous = word
    else:
        K = len(examples[0]["choices"])
        encoding = tokenizer([example["prompt"] for example in examples for _ in range(K)],
                             [choice for example in examples for choice in example["choices"]], **options)
        encoding = {name: column.reshape(len(examples), K, -1) for name, column in encoding.items()}  # [B, K, N]
        labels = np.array([example["label"] for example in examples], dtype=np.int64)  # [B]
    return {**{name: encoding[name] for name in ("input_ids", "token_type_ids", "attention_mask")}, "labels": labels}


def evaluate(model, tokenizer, examples, task, batch_size=32, max_length=128):
    """Loss and accuracy of ``model`` (in inference mode) on ``examples`` (a list of dicts or a
    JSON-lines path, as :func:`read_records` reads them).

    ``loss`` is the mean over examples of their batch's mean loss (transformers' ``Trainer``
    weighs each batch's loss by its number of examples); ``accuracy`` is the share of right
    argmax predictions: over examples for text classification and multiple choice, over the
    labelled tokens (first pieces of words) for token classification.
    """
    check_model(model, task)
    examples = examples_for(read_records(examples, task, "eval"), task, model.config)
    model.eval()
    loss_sum, right, counted = 0.0, 0, 0
    for start in range(0, len(examples), batch_size):
        batch = encode(tokenizer, examples[start:start + batch_size], task, max_length)
        outputs = model(**batch)
        loss_sum += float(outputs.loss) * len(batch["labels"])
        labelled = batch["labels"] != -100
        right += int(((outputs.logits.argmax(-1) == batch["labels"]) & labelled).sum())
        counted += int(labelled.sum())
    return {"loss": loss_sum / len(examples), "accuracy": right / max(counted, 1)}


# --------------------------------------------------------------------------- the loop
def check_task_name(task):
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r:.40}")


def check_model(model, task):
    """``model`` has ``task``'s head and a classification loss."""
    check_task_name(task)
    head, class_name = TASKS[task]
    if getattr(model, "head", None) != head:
        raise TypeError(f"task {task!r} needs a {class_name} model, got {type(model).__name__}")
    config = model.config
    if task != "multiple-choice" and (config.num_labels < 2 or config.problem_type not in
                                      (None, "single_label_classification")):
        raise ValueError(f"finetune trains classifiers: {task} needs config.num_labels >= 2 and problem_type None or "
                         f"'single_label_classification', got {config.num_labels} and {config.problem_type!r}")


def _whole(value, name, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r:.40}")
    return int(value)


def finetune(model, tokenizer, train, eval=None, *, task="text-classification", epochs=3, batch_size=8, lr=5e-5,
             warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, max_length=128, no_decay=transformers_no_decay,
             gradient_accumulation_steps=1, seed=42, out=None, progress=None, on_epoch=None):
    """Fine-tune ``model`` on ``train``; returns the history, one dict per epoch.

    Each epoch visits the training examples in a new order (shuffled with ``seed``) in batches
    of ``batch_size`` (the last one smaller), each padded to its own longest row. A step takes a
    window of ``k = gradient_accumulation_steps`` batches (the epoch's last window may hold fewer,
    ``n``) and averages their gradients, as transformers' ``Trainer`` (it divides each batch's
    loss by ``n``)::

        grads = sum over the window's batches of value_and_grad(model, rng=dropout_rng, **batch)[1] / n
        grads = clip_grad_norm(grads, max_grad_norm)                       (skipped when None or 0)
        model.load_state_dict(AdamW.step(model.params, grads))

    (dropout on: ``model.train()``), with learning rate ``lr * LinearSchedule(ceil(warmup_ratio * T), T)(t)``
    at step ``t`` of ``T = epochs * ceil(ceil(len(train) / batch_size) / k)``, and weight decay for
    the parameters ``no_decay`` does not exempt (default: transformers' rule, biases and LayerNorm weights).
    After each epoch the model is evaluated on ``eval`` (:func:`evaluate`). At the end the model
    is left in inference mode and, with ``out``, written there (:func:`save`).

    Args:
        model: a task model with ``task``'s head (:data:`TASKS`); its config's labels are the
            ones the examples' label names and ids refer to (:func:`label_overrides` sets up a
            new head).
        tokenizer: pydeberta's tokenizer (``AutoTokenizer.from_pretrained(folder)``).
        train, eval: examples, a list of dicts or a JSON-lines path (module docstring).
        gradient_accumulation_steps: batches per optimiser step (memory of one batch, the step of
            ``k`` batches).
        seed: the shuffling and dropout (two generators spawned from it).
        progress: a tqdm bar on standard error: None shows it when standard error is a terminal.
        on_epoch: called with each epoch's history entry as soon as it is complete.
    Returns:
        ``[{"epoch", "step", "learning_rate", "train_loss", "eval_loss", "eval_accuracy"}, ...]``:
        ``train_loss`` is the mean of the epoch's batch losses, ``learning_rate`` that of its last
        step, ``step`` the optimiser steps so far; the ``eval_`` entries only with ``eval``.
    """
    check_model(model, task)
    epochs, batch_size = _whole(epochs, "epochs", 1), _whole(batch_size, "batch_size", 1)
    max_length = _whole(max_length, "max_length", 4)
    accumulation = _whole(gradient_accumulation_steps, "gradient_accumulation_steps", 1)
    warmup_ratio = check_number(warmup_ratio, "warmup_ratio", 0.0, 1.0)
    if max_grad_norm is not None:
        max_grad_norm = check_number(max_grad_norm, "max_grad_norm", 0.0)
    if out is not None and os.path.isfile(out):  # said now, not after the training
        raise OSError(f"out must be a folder to write the model to; {os.fspath(out)!r} is a file")
    train_examples = examples_for(read_records(train, task, "train"), task, model.config)
    eval_examples = None if eval is None else examples_for(read_records(eval, task, "eval"), task, model.config)
    batch_starts = range(0, len(train_examples), batch_size)
    total = epochs * math.ceil(len(batch_starts) / accumulation)
    optimizer = AdamW(model.params, lr=lr, weight_decay=weight_decay, no_decay=no_decay,
                      schedule=LinearSchedule(math.ceil(warmup_ratio * total), total))
    order_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
    order_rng, dropout_rng = np.random.default_rng(order_seed), np.random.default_rng(dropout_seed)
    history = []
    show = sys.stderr.isatty() if progress is None else bool(progress)
    with tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True, disable=not show,
              desc=f"finetune {task}") as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            order = order_rng.permutation(len(train_examples))
            losses = []
            for first in range(0, len(batch_starts), accumulation):
                window = batch_starts[first:first + accumulation]
                grads = {}
                for start in window:
                    batch = encode(tokenizer, [train_examples[i] for i in order[start:start + batch_size]], task,
                                   max_length)
                    outputs, batch_grads = value_and_grad(model, rng=dropout_rng, **batch)
                    loss = float(outputs.loss)
                    if not math.isfinite(loss):
                        raise RuntimeError(f"finetune: the training loss is {loss} at epoch {epoch}, step "
                                           f"{optimizer.steps + 1}: try a smaller learning rate (lr={lr})")
                    if len(window) > 1:  # each batch's share of the step, as Trainer's loss / n
                        batch_grads = {key: value / len(window) for key, value in batch_grads.items()}
                    grads = {key: grads[key] + value for key, value in batch_grads.items()} if grads else batch_grads
                    losses.append(loss)
                if max_grad_norm:
                    grads, _ = clip_grad_norm(grads, max_grad_norm)
                learning_rate = optimizer.current_lr()
                model.load_state_dict(optimizer.step(model.params, grads))
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-len(window):]):.4f}", refresh=False)
                bar.update(1)
            entry = {"epoch": epoch, "step": optimizer.steps, "learning_rate": learning_rate,
                     "train_loss": float(np.mean(losses))}
            if eval_examples is not None:
                scores = evaluate(model, tokenizer, eval_examples, task, batch_size=max(batch_size, 32),
                                  max_length=max_length)
                entry.update({f"eval_{name}": value for name, value in scores.items()})
            history.append(entry)
            if on_epoch is not None:
                on_epoch(entry)
    model.eval()
    if out is not None:
        save(model, tokenizer, out)
    return history


def save(model, tokenizer, out):
    """Write ``model`` and ``tokenizer`` to the folder ``out`` (``save_pretrained`` of each),
    after recording the model's class in ``config.architectures`` and its dtype in
    ``config.dtype``, as transformers' ``save_pretrained`` does (the head and dtype a loader
    picks)."""
    model.config.architectures = [type(model).__name__]
    model.config.dtype = model.dtype.name
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --------------------------------------------------------------------------- command line
def add_arguments(parser):
    """The options of ``pydeberta finetune`` (defaults: transformers' ``TrainingArguments``)."""
    parser.add_argument("--model", required=True, help="checkpoint folder, hub id or bundled name to start from")
    parser.add_argument("--train", required=True, help="training examples, JSON lines")
    parser.add_argument("--eval", help="evaluation examples, JSON lines (loss and accuracy after each epoch)")
    parser.add_argument("--task", default="text-classification", choices=sorted(TASKS))
    parser.add_argument("--out", required=True, help="folder to write the fine-tuned model and tokenizer to")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1,
                        help="batches per optimiser step: the step of k batches in the memory of one")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    parser.add_argument("--warmup-ratio", type=float, default=0.0, help="share of the steps spent warming up")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="AdamW weight decay, not applied to biases and LayerNorm weights")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradients' global norm (0: off)")
    parser.add_argument("--max-length", type=int, default=128, help="truncate rows to this many tokens")
    parser.add_argument("--seed", type=int, default=42, help="shuffling and dropout")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", action="store_true", help="print each epoch's results as a JSON line")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on standard error even when it is not a terminal")
    return parser


def run(args):
    """``pydeberta finetune``: load ``--model`` with ``--task``'s head (a new head gets the
    training file's labels, :func:`label_overrides`), fine-tune, print each epoch's results on
    standard output, write the model and tokenizer to ``--out``."""
    folder = resolve_model_folder(args.model)
    overrides = label_overrides(read_records(args.train, args.task), args.task, DebertaV2Config.from_pretrained(folder))
    model = getattr(modeling, TASKS[args.task][1]).from_pretrained(folder, dtype=np.dtype(args.dtype), **overrides)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def report(entry):
        line = json.dumps(entry) if args.json else f"epoch {entry['epoch']}: " + ", ".join(
            f"{name} {value:.4g}" for name, value in entry.items() if name not in ("epoch", "step"))
        tqdm.write(line, file=sys.stdout)

    finetune(model, tokenizer, args.train, args.eval, task=args.task, epochs=args.epochs, batch_size=args.batch_size,
             lr=args.lr, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
             max_grad_norm=args.max_grad_norm, max_length=args.max_length,
             gradient_accumulation_steps=args.gradient_accumulation_steps, seed=args.seed, out=args.out,
             progress=True if args.progress else None, on_epoch=report)
    print(f"pydeberta finetune: model and tokenizer written to {args.out}", file=sys.stderr)
