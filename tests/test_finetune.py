"""pydeberta.training.finetune against transformers and torch: the batches equal transformers'
tokenizer and data collators, the training steps equal torch's (AdamW, Trainer's weight-decay
groups, transformers' linear schedule, clip_grad_norm_) on every task, a small model learns a
task a bag of words cannot solve, and the checkpoint it writes gives transformers the same
logits; the command's runner end to end; bad example files named by file and line.

The models are tiny and random (2 layers, hidden 32) over the bundled model's tokenizer (only
its tokenizer: the bundled weights are not used, they are being retrained).
"""

import json

import numpy as np
import pytest
import torch
import transformers

from oracle import build_transformers_model, to_pydeberta
from pydeberta import (AutoModelForSequenceClassification, AutoTokenizer, DebertaV2Config, DebertaV2ForMaskedLM,
                       DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification)
from pydeberta.hub import resolve_model_folder
from pydeberta import cli
from pydeberta.training.finetune import encode, evaluate, examples_for, finetune, read_records

TOKENIZER = "pydeberta/tiny"
MODEL_CLASSES = {"text-classification": "DebertaV2ForSequenceClassification",
                 "token-classification": "DebertaV2ForTokenClassification",
                 "multiple-choice": "DebertaV2ForMultipleChoice"}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER)


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' fast tokenizer of the same files (the oracle for batches)."""
    return transformers.AutoTokenizer.from_pretrained(str(resolve_model_folder(TOKENIZER)))


def tiny_config(tokenizer, dropout=0.1, **fields):
    """A 2-layer DeBERTa-v3-style config over ``tokenizer``'s vocabulary."""
    return dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, relative_attention=True, position_buckets=16,
                max_relative_positions=64, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True,
                position_biased_input=False, type_vocab_size=0, hidden_dropout_prob=dropout,
                attention_probs_dropout_prob=dropout, pooler_dropout=dropout, **fields)


# --------------------------------------------------------------------------- synthetic tasks
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry"]
GROUP = set(NAMES[:4])


def who_acts(n, seed):
    """"[prefix] A verb B." labelled 1 when A, the one who acts, is one of the first four names.
    Both names are in every sentence, so a bag of words cannot tell "alice saw frank" (1) from
    "frank saw alice" (0): its best accuracy is 10/14 (it is right only when both names are on
    the same side)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        a, b = rng.choice(NAMES, 2, replace=False)
        prefix = rng.choice(["", "", "yesterday", "then", "later"])
        words = [prefix, a, rng.choice(["saw", "met", "called", "helped"]), b]
        examples.append({"text": " ".join(word for word in words if word) + ".", "label": int(a in GROUP)})
    return examples


def tagged_names(n, seed):
    """Token classification: words tagged PER (a name) or O."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        words = [str(w) for w in rng.choice(["the", "cat", "sat", "on", "a", "mat", "unbelievably", "left"], 4)]
        labels = ["O"] * 4
        position = int(rng.integers(0, 5))
        words.insert(position, str(rng.choice(NAMES)))
        labels.insert(position, "PER")
        examples.append({"tokens": words, "labels": labels})
    return examples


def pick_the_name(n, seed):
    """Multiple choice: which of three words is a name."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        choices = [str(w) for w in rng.choice(["cat", "mat", "hat", "dog"], 2, replace=False)]
        label = int(rng.integers(0, 3))
        choices.insert(label, str(rng.choice(NAMES)))
        examples.append({"question": "who is it?", "choices": choices, "label": label})
    return examples


TASK_DATA = {"text-classification": who_acts, "token-classification": tagged_names, "multiple-choice": pick_the_name}
TASK_LABELS = {"text-classification": {}, "token-classification": {"id2label": {0: "O", 1: "PER"}},
               "multiple-choice": {}}


# --------------------------------------------------------------------------- batches
def transformers_batch(hf_tokenizer, examples, task, max_length):
    """The batch transformers' examples build (run_glue / run_ner / run_swag preprocessing, then
    DataCollatorWithPadding / ForTokenClassification / ForMultipleChoice), as NumPy."""
    if task == "text-classification":
        features = [dict(hf_tokenizer(e["text"], truncation=True, max_length=max_length), labels=e["label"])
                    for e in examples]
        batch = transformers.DataCollatorWithPadding(hf_tokenizer, return_tensors="pt")(features)
    elif task == "token-classification":
        features = []
        for e in examples:  # run_ner's tokenize_and_align_labels, label_all_tokens=False
            encoding = hf_tokenizer(e["tokens"], truncation=True, max_length=max_length, is_split_into_words=True)
            labels, previous = [], None
            for word in encoding.word_ids():
                labels.append(-100 if word is None or word == previous else e["labels"][word])
                previous = word
            features.append(dict(encoding, labels=labels))
        batch = transformers.DataCollatorForTokenClassification(hf_tokenizer, return_tensors="pt")(features)
    else:
        features = []
        for e in examples:  # run_swag: the prompt paired with each choice
            encoding = hf_tokenizer([e["question"]] * len(e["choices"]), e["choices"], truncation=True,
                                    max_length=max_length)
            features.append({**{k: v for k, v in encoding.items()}, "labels": e["label"]})
        batch = transformers.DataCollatorForMultipleChoice(hf_tokenizer, return_tensors="pt")(features)
    return {k: v.numpy() for k, v in batch.items()}


@pytest.mark.parametrize("task", sorted(TASK_DATA))
@pytest.mark.parametrize("max_length", [128, 7])
def test_batches_equal_transformers_collators(tokenizer, hf_tokenizer, task, max_length):
    raw = TASK_DATA[task](6, seed=3)
    config = DebertaV2Config(**tiny_config(tokenizer, **TASK_LABELS[task]))
    ours = encode(tokenizer, examples_for(read_records(raw, task), task, config), task, max_length)
    if task == "token-classification":
        raw = [{**e, "labels": [config.label2id[label] for label in e["labels"]]} for e in raw]
    theirs = transformers_batch(hf_tokenizer, raw, task, max_length)
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


# --------------------------------------------------------------------------- training steps
def torch_steps(model, batch, steps, lr, warmup, weight_decay, max_grad_norm):
    """What transformers' Trainer does for ``steps`` steps on one batch: AdamW over its two
    parameter groups, get_linear_schedule_with_warmup, clip_grad_norm_. Returns the losses and
    the gradients' norms before clipping."""
    decayed = set(transformers.Trainer.get_decay_parameter_names(None, model))
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([{"params": [p for n, p in named if n in decayed], "weight_decay": weight_decay},
                                   {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0}], lr=lr)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup, steps)
    tensors = {key: torch.as_tensor(value) for key, value in batch.items()}
    model.train()
    losses, norms = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**tensors).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)))
        optimizer.step()
        scheduler.step()
        losses.append(float(loss))
    return losses, norms


@pytest.mark.parametrize("task", sorted(TASK_DATA))
def test_finetune_steps_equal_transformers_trainer(tokenizer, task):
    """Three epochs of one batch (the whole set: the shuffle does not change it) with warm-up,
    weight decay and clipping: every parameter and every loss equal torch's, in float64."""
    fields = tiny_config(tokenizer, dropout=0.0, **TASK_LABELS[task])
    if task == "text-classification":
        fields["problem_type"] = "single_label_classification"  # the loss in float64 (None: float32)
    theirs = build_transformers_model(MODEL_CLASSES[task], fields, dtype=np.float64, seed=1)
    ours = to_pydeberta(theirs, dtype=np.float64)
    raw = TASK_DATA[task](6, seed=4)
    initial = {key: value.copy() for key, value in ours.params.items()}
    history = finetune(ours, tokenizer, raw, task=task, epochs=3, batch_size=6, lr=3e-3, warmup_ratio=0.3,
                       weight_decay=0.1, max_grad_norm=0.5, seed=0)
    batch = encode(tokenizer, examples_for(read_records(raw, task), task, ours.config), task, 128)
    losses, norms = torch_steps(theirs, batch, steps=3, lr=3e-3, warmup=1, weight_decay=0.1, max_grad_norm=0.5)
    assert max(norms) > 0.5  # the clipping clipped
    np.testing.assert_allclose([entry["train_loss"] for entry in history], losses, rtol=1e-10)
    state = {key: value.detach().numpy() for key, value in theirs.state_dict().items()}
    for key, value in ours.params.items():
        np.testing.assert_allclose(value, state[key], rtol=1e-8, atol=1e-9, err_msg=key)
    assert max(np.abs(value - initial[key]).max() for key, value in ours.params.items()) > 1e-3  # they moved


def test_gradient_accumulation_equals_transformers_trainer(tokenizer):
    """Seven examples in batches of 2 (2, 2, 2, 1 after each shuffle), 3 batches a step: the
    epoch's steps take 3 batches and 1, each batch's loss divided by its window's batch count,
    as transformers' Trainer does (``loss / current_gradient_accumulation_steps``); two epochs
    with warm-up and decay equal that loop in torch on the same shuffles, in float64. No clipping
    here: it would rescale every step to the same norm and hide a wrong share."""
    fields = dict(tiny_config(tokenizer, dropout=0.0), problem_type="single_label_classification")
    theirs = build_transformers_model(MODEL_CLASSES["text-classification"], fields, dtype=np.float64, seed=1)
    ours = to_pydeberta(theirs, dtype=np.float64)
    raw = who_acts(7, seed=4)
    history = finetune(ours, tokenizer, raw, epochs=2, batch_size=2, gradient_accumulation_steps=3, lr=3e-3,
                       warmup_ratio=0.25, weight_decay=0.1, max_grad_norm=None, seed=0)
    assert [entry["step"] for entry in history] == [2, 4]

    examples = examples_for(read_records(raw, "text-classification"), "text-classification", ours.config)
    decayed = set(transformers.Trainer.get_decay_parameter_names(None, theirs))
    named = list(theirs.named_parameters())
    optimizer = torch.optim.AdamW([{"params": [p for n, p in named if n in decayed], "weight_decay": 0.1},
                                   {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0}], lr=3e-3)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, 1, 4)  # ceil(0.25 * 4) warm-up steps
    order_rng = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])  # finetune's shuffles
    theirs.train()
    for _ in range(2):
        order = order_rng.permutation(len(examples))
        batches = [encode(tokenizer, [examples[i] for i in order[start:start + 2]], "text-classification", 128)
                   for start in range(0, len(order), 2)]
        for window in (batches[:3], batches[3:]):
            optimizer.zero_grad()
            for batch in window:
                loss = theirs(**{key: torch.as_tensor(value) for key, value in batch.items()}).loss / len(window)
                loss.backward()
            optimizer.step()
            scheduler.step()
    state = {key: value.detach().numpy() for key, value in theirs.state_dict().items()}
    for key, value in ours.params.items():
        np.testing.assert_allclose(value, state[key], rtol=1e-8, atol=1e-9, err_msg=key)


# --------------------------------------------------------------------------- learning
def test_learns_who_acts_and_transformers_loads_the_checkpoint(tokenizer, hf_tokenizer, tmp_path):
    """A random 2-layer model (dropout 0.1) learns a task that needs word order (a bag of words
    reaches at most 10/14 = 0.71): held-out accuracy >= 0.95 after three epochs (measured 1.0 at
    the second and third epoch for model seeds 0-4; 0.48-0.97 after the first), also on the
    sentences a bag of words cannot tell apart. transformers loads the checkpoint and gives the
    same logits within 1e-4, and the history's eval loss and accuracy."""
    model = DebertaV2ForSequenceClassification(DebertaV2Config(**tiny_config(tokenizer)), seed=0)
    train, dev = who_acts(400, seed=1), who_acts(200, seed=2)
    out = tmp_path / "who-acts"
    history = finetune(model, tokenizer, train, dev, epochs=3, batch_size=16, lr=2e-3, warmup_ratio=0.1,
                       weight_decay=0.01, seed=0, out=out)
    assert [entry["epoch"] for entry in history] == [1, 2, 3] and history[-1]["step"] == 3 * 25
    assert history[-1]["eval_accuracy"] >= 0.95
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(theirs).__name__ == "DebertaV2ForSequenceClassification"
    hf_loaded = transformers.AutoTokenizer.from_pretrained(out)
    encoding = hf_loaded([e["text"] for e in dev], padding=True, return_tensors="pt")
    with torch.no_grad():
        their_logits = theirs(**encoding).logits.numpy()
    ours = model(**tokenizer([e["text"] for e in dev], padding=True, return_tensors="np")).logits
    np.testing.assert_allclose(ours, their_logits, atol=1e-4)
    labels = np.array([e["label"] for e in dev])
    right = their_logits.argmax(-1) == labels
    assert right.mean() == pytest.approx(history[-1]["eval_accuracy"])
    their_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(their_logits), torch.from_numpy(labels)))
    assert history[-1]["eval_loss"] == pytest.approx(their_loss, abs=1e-4)
    bag_cannot_tell = np.array([(e["text"].split()[-3] in GROUP) != (e["text"].split()[-1][:-1] in GROUP)
                                for e in dev])
    assert bag_cannot_tell.sum() > 80 and right[bag_cannot_tell].mean() >= 0.9

    reloaded = AutoModelForSequenceClassification.from_pretrained(out)  # and pydeberta reads it back
    np.testing.assert_array_equal(reloaded(**AutoTokenizer.from_pretrained(out)(
        [e["text"] for e in dev], padding=True, return_tensors="np")).logits, ours)


def test_token_classification_learns_and_evaluate_counts_first_pieces(tokenizer):
    """PER/O tags after two epochs: token accuracy >= 0.93 over the first pieces of words (tagging
    every word O gives 0.8; measured 0.963-0.977 for model seeds 0-2); evaluate's accuracy equals
    the share counted from the logits here."""
    model = DebertaV2ForTokenClassification(DebertaV2Config(**tiny_config(tokenizer, id2label={0: "O", 1: "PER"})),
                                            seed=0)
    train, dev = tagged_names(200, seed=1), tagged_names(60, seed=2)
    history = finetune(model, tokenizer, train, dev, task="token-classification", epochs=2, batch_size=16, lr=2e-3,
                       seed=0)
    assert history[-1]["eval_accuracy"] >= 0.93
    batch = encode(tokenizer, examples_for(read_records(dev, "token-classification"), "token-classification",
                                           model.config), "token-classification", 128)
    predicted = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
    labelled = batch["labels"] != -100
    assert labelled.sum() == sum(len(e["tokens"]) for e in dev)  # one label per word
    assert evaluate(model, tokenizer, dev, "token-classification")["accuracy"] == pytest.approx(
        (predicted == batch["labels"])[labelled].mean())


def test_the_seed_makes_a_run_repeatable(tokenizer):
    """The same seed gives the same shuffles and dropout masks, hence the same parameters; another
    seed does not (dropout 0.1 is on in training)."""
    def trained(seed):
        model = DebertaV2ForSequenceClassification(DebertaV2Config(**tiny_config(tokenizer)), seed=0)
        finetune(model, tokenizer, who_acts(24, seed=7), epochs=2, batch_size=8, lr=1e-3, seed=seed)
        return model.params

    first, again, other = trained(3), trained(3), trained(4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert any(not np.array_equal(first[key], other[key]) for key in first)


# --------------------------------------------------------------------------- the command
def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_command_end_to_end(tokenizer, tmp_path, capsys):
    """``pydeberta finetune`` from a masked-LM folder with label names, two batches a step: the new
    head gets the names, every epoch is printed, and transformers loads the folder and gets the printed eval
    loss and accuracy on the eval file."""
    start = tmp_path / "start"
    DebertaV2ForMaskedLM(DebertaV2Config(**tiny_config(tokenizer)), seed=0).save_pretrained(start)
    tokenizer.save_pretrained(start)
    names = {0: "others", 1: "first four"}
    train = write_jsonl(tmp_path / "train.jsonl", [{**e, "label": names[e["label"]]} for e in who_acts(48, seed=5)])
    dev_records = [{**e, "label": names[e["label"]]} for e in who_acts(16, seed=6)]
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_records)
    out = tmp_path / "out"
    status = cli.main(["finetune", "--model", str(start), "--train", str(train), "--eval", str(dev), "--out", str(out),
                       "--epochs", "2", "--batch-size", "8", "--gradient-accumulation-steps", "2", "--lr", "1e-3",
                       "--json", "--seed", "1"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and lines[-1]["step"] == 6  # 6 batches of 8 an epoch, 2 a step
    assert f"written to {out}" in captured.err

    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert theirs.config.id2label == {0: "first four", 1: "others"}  # sorted names
    encoding = transformers.AutoTokenizer.from_pretrained(out)([r["text"] for r in dev_records], padding=True,
                                                               return_tensors="pt")
    with torch.no_grad():
        logits = theirs(**encoding).logits
    labels = torch.tensor([theirs.config.label2id[r["label"]] for r in dev_records])
    assert lines[-1]["eval_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), abs=1e-4)
    assert lines[-1]["eval_accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("task,lines,message", [
    ("text-classification", [b'{"text": "a", "label": 0}', b'{"text": "b", "label": 0'],
     r"line 2: not JSON \(Expecting ',' delimiter at column 25\)"),
    ("text-classification", [b'{"text": "a", "label": 0}', b'', b'{"label": 1}'],
     r"line 3: text-classification examples need 'text' \(a string\); got keys \['label'\]"),
    ("text-classification", [b'{"text": "a", "label": "maybe"}'],
     r"line 1: label 'maybe' is not a label name of the model \(config.label2id has \['LABEL_0', 'LABEL_1'\]\)"),
    ("text-classification", [b'{"text": "a", "label": 2}'],
     r"line 1: label must be an id in \[0, 2\) \(config.num_labels\) or a name of config.label2id, got 2"),
    ("text-classification", [b'{"text": "a", "label": true}'], r"line 1: 'label' must be a label id \(int\) or name"),
    ("text-classification", [b'{"text": "a", "text_pair": "b", "label": 0}', b'{"text": "c", "label": 1}'],
     r"line 2: every example needs a text_pair or none does \(.*line 1 has one\)"),
    ("text-classification", [b'["a", 0]'], r"line 1: an example must be a JSON object, got list"),
    ("text-classification", [b'{"text": "caf\xe9", "label": 0}'],
     r"line 1: not UTF-8 text \(invalid continuation byte at byte 14\)"),
    ("text-classification", [b'', b'  '], r"train.jsonl: no examples"),
    ("token-classification", [b'{"tokens": ["a", "b"], "labels": [0]}'],
     r"line 1: 'labels' must hold one label id \(int\) or name \(str\) per word: 2 words, got \[0\]"),
    ("multiple-choice", [b'{"question": "q", "choices": ["a", "b"], "label": 0}',
                         b'{"prompt": "q", "choices": ["a", "b", "c"], "label": 0}'],
     r"line 2: every example needs the same number of choices: 2 as in .*line 1, got 3"),
    ("multiple-choice", [b'{"question": "q", "choices": ["a", "b"], "label": 2}'],
     r"line 1: label must be a choice index in \[0, 2\), got 2"),
    ("multiple-choice", [b'{"question": "q", "choices": ["a"], "label": 0}'],
     r"line 1: 'choices' must be a list of at least 2 strings, got \['a'\]"),
])
def test_bad_example_files_name_file_and_line(tokenizer, tmp_path, task, lines, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    config = DebertaV2Config(**tiny_config(tokenizer))
    with pytest.raises(ValueError, match=message) as error:
        examples_for(read_records(path, task), task, config)
    assert str(path) in str(error.value)
    if task == "text-classification":  # finetune says the same before any step
        with pytest.raises(ValueError, match=message):
            finetune(DebertaV2ForSequenceClassification(config, seed=0), tokenizer, path, task=task)


def test_bad_arguments_are_named(tokenizer):
    config = DebertaV2Config(**tiny_config(tokenizer))
    classifier = DebertaV2ForSequenceClassification(config, seed=0)
    train = who_acts(4, seed=0)
    with pytest.raises(TypeError, match=r"task 'token-classification' needs a DebertaV2ForTokenClassification model, "
                                        r"got DebertaV2ForSequenceClassification"):
        finetune(classifier, tokenizer, train, task="token-classification")
    with pytest.raises(ValueError, match=r"task must be one of \['multiple-choice', 'text-classification', "
                                         r"'token-classification'\], got 'ner'"):
        finetune(classifier, tokenizer, train, task="ner")
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1, got 0"):
        finetune(classifier, tokenizer, train, epochs=0)
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps must be an integer >= 1, got 0"):
        finetune(classifier, tokenizer, train, gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match=r"warmup_ratio must lie in \[0, 1\], got 1.5"):
        finetune(classifier, tokenizer, train, warmup_ratio=1.5)
    with pytest.raises(ValueError, match=r"lr must lie in \[0, inf\], got -1.0"):
        finetune(classifier, tokenizer, train, lr=-1.0)
    with pytest.raises(TypeError, match=r"train must be a list of dicts or the path of a JSON-lines file, got dict"):
        finetune(classifier, tokenizer, train[0])
    with pytest.raises(OSError, match=r"out must be a folder to write the model to; '.*' is a file"):
        finetune(classifier, tokenizer, train, out=__file__)
    regression = DebertaV2ForSequenceClassification(DebertaV2Config(**tiny_config(tokenizer, num_labels=1)), seed=0)
    with pytest.raises(ValueError, match=r"finetune trains classifiers: text-classification needs config.num_labels "
                                         r">= 2 and problem_type None or 'single_label_classification', "
                                         r"got 1 and None"):
        finetune(regression, tokenizer, train)
