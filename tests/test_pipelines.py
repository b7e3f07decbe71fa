"""Task pipelines against transformers 4.57's own pipelines on the same tiny checkpoints.

Every checkpoint is a tiny random DeBERTa-v3-like model built and saved by transformers (weights
moved away from their initial values), next to a tokenizer built from the real DeBERTa-v3
vocabulary (``PYDEBERTA_SPM_MODEL``, default ``../shared/data/deberta-v3/spm.model``; a missing
vocabulary fails the tests, it never skips them). The vocabulary has 128000 pieces, so the models
keep ``vocab_size=128100`` with a hidden size of 16.

transformers' ``pipeline(task, model=folder)`` is the oracle: same labels, same order, same keys,
same offsets, scores within 1e-4 (and ours Python floats). The oracle loads transformers' fast
tokenizer, which drops sentencepiece's byte fallback, so the inputs are plain English and every
comparison first asserts that both tokenizers give the same ids. Orderings compared are checked
to be decided by a clear margin, never by a near tie.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import pydeberta
from oracle import build_transformers_model
from pydeberta.pipelines import TASKS, pipeline
from pydeberta.tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

SPM_MODEL = Path(os.environ.get(
    "PYDEBERTA_SPM_MODEL",
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deberta-v3" / "spm.model"))

TINY = dict(vocab_size=128100, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
            max_position_embeddings=512, relative_attention=True, position_buckets=8, max_relative_positions=32,
            pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
            type_vocab_size=2)  # token types on, so a pair's second segment must reach the model correctly
NLI = {0: "entailment", 1: "neutral", 2: "contradiction"}
MNLI = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}  # entailment last, as microsoft/deberta-*-mnli
NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
ATOL = 1e-4

MASKED = ["The [MASK] sat on the mat.", "A [MASK] walked into the [MASK] today.", "Paris is the [MASK] of France."]
TEXTS = ["I loved this movie, it was wonderful.", "The service was slow and the food was cold.",
         "Tomorrow the weather will be sunny in Berlin."]
PAIRS = [{"text": "A man is playing a guitar.", "text_pair": "Someone is making music."},
         {"text": "The cat sleeps on the sofa.", "text_pair": "A dog is running in the park."}]
NER_TEXTS = ["Angela Merkel visited Johannesburg and Paris with Microsoft engineers.",
             "The Eiffelturm stands in Paris, France, near Zwingenberger Strasse.",
             "Barack Obama met Kazakhstanian diplomats at the United Nations in New York."]
CONTEXT = ("The Amazon rainforest covers much of the Amazon basin of South America. The basin is home to the "
           "river, and the river flows east into the Atlantic Ocean near the city of Belem. Scientists in Brazil "
           "study the forest because it stores carbon, and the forest changes the weather of the whole continent.")
QUESTIONS = ["Where does the river flow?", "What do scientists study?", "What does the forest store?"]


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> folder of every tiny checkpoint, each with the v3 tokenizer saved beside it."""
    assert SPM_MODEL.is_file(), (f"DeBERTa-v3 vocabulary not found at {SPM_MODEL}; set PYDEBERTA_SPM_MODEL "
                                 "to the spm.model file")
    root = tmp_path_factory.mktemp("pipelines")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_tokenizer = transformers.DebertaV2TokenizerFast(vocab_file=str(SPM_MODEL))

    def save(name, model, **config):
        """Save ``model`` with ``config`` fields changed for this folder only."""
        original = {key: getattr(model.config, key) for key in config}
        model.config.update(config)
        model.save_pretrained(root / name)
        hf_tokenizer.save_pretrained(root / name)
        model.config.update(original)

    def labelled(id2label):
        return dict(id2label=id2label, label2id={label: i for i, label in id2label.items()})

    mlm = build_transformers_model("DebertaV2ForMaskedLM", TINY, seed=1)
    with torch.no_grad():  # spread the vocabulary's logits: top predictions then differ clearly
        mlm.cls.predictions.bias.add_(torch.randn_like(mlm.cls.predictions.bias) * 4)
    save("mlm", mlm)
    classifier = build_transformers_model("DebertaV2ForSequenceClassification", dict(TINY, num_labels=3), seed=2)
    with torch.no_grad():
        classifier.classifier.weight.mul_(3)
    save("nli", classifier, **labelled(NLI))
    save("mnli", classifier, **labelled(MNLI))
    save("no-entailment", classifier, **labelled({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}))
    save("multi-label", classifier, problem_type="multi_label_classification", **labelled(NLI))
    save("regression", classifier, problem_type="regression", **labelled(NLI))
    save("one-label", build_transformers_model("DebertaV2ForSequenceClassification", dict(TINY, num_labels=1), seed=3))
    tagger = build_transformers_model("DebertaV2ForTokenClassification", dict(TINY, num_labels=len(NER)), seed=4)
    with torch.no_grad():
        tagger.classifier.weight.mul_(3)
    save("ner", tagger, **labelled(NER))
    save("qa", build_transformers_model("DebertaV2ForQuestionAnswering", dict(TINY, num_labels=2), seed=5))
    return {path.name: path for path in root.iterdir()}


@pytest.fixture(scope="module")
def theirs(folders):
    """``theirs(task, name)``: transformers' pipeline on checkpoint ``name`` (built once)."""
    cache = {}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # loading chatter ("Device set to use cpu", ...)

    def get(task, name):
        if (task, name) not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[task, name] = transformers.pipeline(task, model=str(folders[name]), device="cpu")
        return cache[task, name]
    yield get
    transformers.logging.set_verbosity(verbosity)


@pytest.fixture(scope="module")
def ours(folders):
    """``ours(task, name, **options)``: our pipeline on checkpoint ``name`` (models loaded once)."""
    cache = {}

    def get(task, name, **options):
        if (task, name) not in cache:
            cache[task, name] = pipeline(task, model=folders[name])
        built = cache[task, name]
        return type(built)(built.model, built.tokenizer, **options) if options else built
    return get


# --------------------------------------------------------------------------- comparisons
def assert_same(ours, theirs, where="result"):
    """Same structure, keys in the same order, equal values; floats within ATOL, ours Python floats."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: {type(ours).__name__} where transformers has a dict"
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != transformers' {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{where}: {type(ours).__name__} where transformers has a list"
        assert len(ours) == len(theirs), (f"{where}: {len(ours)} entries != transformers' {len(theirs)}:\n"
                                          f"{ours}\n{theirs}")
        for i, (mine, other) in enumerate(zip(ours, theirs)):
            assert_same(mine, other, f"{where}[{i}]")
    elif isinstance(theirs, (float, np.floating)):
        assert type(ours) is float, f"{where}: {type(ours).__name__} {ours!r}, expected a Python float"
        assert abs(ours - float(theirs)) <= ATOL, f"{where}: {ours} != transformers' {float(theirs)}"
    else:
        expected = theirs.item() if isinstance(theirs, np.generic) else theirs
        assert type(ours) is type(expected) and ours == expected, f"{where}: {ours!r} != transformers' {expected!r}"


def assert_decided(scores, where):
    """Scores listed best first differ by a clear relative margin, so no near tie orders them."""
    for a, b in zip(scores, scores[1:]):
        assert a - b > 1e-4 * abs(a), f"{where}: near tie {a} vs {b}; the ordering would not be a real test"


def rankings(result):
    """The score lists of one input's result that are ordered by score: a list of dicts with a
    "score" (top-k predictions, labels or answers), each such list of a fill-mask text with several
    masks, or zero-shot's "scores"."""
    if isinstance(result, dict):
        return [result["scores"]] if "scores" in result else []
    if result and all(isinstance(item, list) for item in result):
        return [scores for item in result for scores in rankings(item)]
    return [[float(item["score"]) for item in result]]


def assert_matches(mine, reference, batched=False):
    """``assert_same``, after checking that the oracle's score orderings are decided.

    ``batched``: ``reference`` is a list of results, one per input."""
    for result in (reference if batched else [reference]):
        for scores in rankings(result):
            assert_decided(scores, "transformers' result")
    assert_same(mine, reference)


def assert_same_ids(their_pipeline, our_pipeline, texts, pairs=None):
    """Both tokenizers give the same ids, so the pipelines read the same inputs."""
    theirs_ = their_pipeline.tokenizer(texts, pairs)["input_ids"]
    mine = our_pipeline.tokenizer(texts, pairs)["input_ids"]
    assert mine == theirs_, "test inputs must tokenize identically in transformers' fast tokenizer and ours"


# --------------------------------------------------------------------------- the factory and bad input
def test_unknown_task_lists_the_supported_tasks(folders):
    with pytest.raises(ValueError, match="Unknown task 'summarization'.*fill-mask.*question-answering"):
        pipeline("summarization", model=folders["mlm"])


@pytest.mark.parametrize("alias, task", [("ner", "token-classification"),
                                         ("sentiment-analysis", "text-classification")])
def test_aliases_build_the_task_pipeline(folders, alias, task):
    built = pipeline(alias, model=folders["ner" if alias == "ner" else "nli"])
    assert type(built) is TASKS[task] and built.task == task


def test_model_object_with_tokenizer_equals_loading_the_folder(folders, ours):
    model = pydeberta.DebertaV2ForSequenceClassification.from_pretrained(folders["nli"])
    tokenizer = DebertaV2TokenizerFast.from_pretrained(folders["nli"])
    built = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
    assert_same(built(TEXTS), ours("text-classification", "nli")(TEXTS, top_k=None))
    with pytest.raises(ValueError, match="tokenizer="):
        pipeline("text-classification", model=model)
    in_float64 = pipeline("text-classification", model=folders["nli"], dtype=np.float64, top_k=None)
    assert in_float64.model.dtype == np.float64
    assert_same(in_float64(TEXTS), ours("text-classification", "nli")(TEXTS, top_k=None))


def test_a_head_that_does_not_fit_the_task_is_refused(folders, theirs):
    tokenizer = DebertaV2TokenizerFast.from_pretrained(folders["nli"])
    classifier = pydeberta.DebertaV2ForSequenceClassification.from_pretrained(folders["nli"])
    with pytest.raises(TypeError, match="question-answering.*needs a DebertaV2ForQuestionAnswering.*"
                                        "DebertaV2ForSequenceClassification"):
        pipeline("question-answering", model=classifier, tokenizer=tokenizer)
    # transformers only warns here, then reads the last logit as entailment
    with pytest.raises(ValueError, match="Failed to determine 'entailment' label id.*LABEL_0"):
        pipeline("zero-shot-classification", model=folders["no-entailment"])
    assert theirs("zero-shot-classification", "no-entailment").entailment_id == -1


def test_offsets_need_the_fast_tokenizer(folders):
    model = pydeberta.DebertaV2ForTokenClassification.from_pretrained(folders["ner"])
    with pytest.raises(ValueError, match="DebertaV2TokenizerFast"):
        pipeline("ner", model=model, tokenizer=DebertaV2Tokenizer.from_pretrained(folders["ner"]))


def test_bad_options_and_inputs_are_named(ours):
    with pytest.raises(TypeError, match="no option 'topk'.*targets.*top_k"):
        ours("fill-mask", "mlm")("The [MASK] sat.", topk=3)
    with pytest.raises(ValueError, match=r"No mask_token \(\[MASK\]\) found on the input: 'No mask here.'"):
        ours("fill-mask", "mlm")(["The [MASK] sat.", "No mask here."])
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        ours("fill-mask", "mlm")("The [MASK] sat.", top_k=0)
    with pytest.raises(ValueError, match="function_to_apply must be one of"):
        ours("text-classification", "nli")("Fine.", function_to_apply="relu")
    with pytest.raises(ValueError, match="inputs: a text pair is a dict with keys"):
        ours("text-classification", "nli")({"text": "a", "pair": "b"})
    with pytest.raises(ValueError, match="at least one label"):
        ours("zero-shot-classification", "nli")("A text.", candidate_labels=[])
    with pytest.raises(ValueError, match="at least one label"):
        ours("zero-shot-classification", "nli")("A text.", candidate_labels=" , ")
    with pytest.raises(ValueError, match="hypothesis_template"):
        ours("zero-shot-classification", "nli")("A text.", ["sports"], hypothesis_template="No slot.")
    with pytest.raises(ValueError, match="aggregation_strategy must be one of"):
        ours("ner", "ner")("Paris.", aggregation_strategy="longest")
    qa = ours("question-answering", "qa")
    with pytest.raises(ValueError, match="`context` cannot be empty"):
        qa(question="Why?", context="")
    with pytest.raises(KeyError, match="question:..., context:..."):
        qa({"question": "Why?"})
    with pytest.raises(ValueError, match="don't have the same lengths"):
        qa(question=["Why?", "How?"], context=["Because."])
    with pytest.raises(ValueError, match=r"`doc_stride` \(40\) is larger than `max_seq_len` \(32\)"):
        qa(question="Why?", context=CONTEXT, max_seq_len=32, doc_stride=40)
    with pytest.raises(ValueError, match="max_answer_len must be an int >= 1"):
        qa(question="Why?", context=CONTEXT, max_answer_len=0)


# --------------------------------------------------------------------------- fill-mask
@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"targets": ["▁dog", "▁cat", "▁mat", "▁floor"]},
                                     {"targets": "▁floor"}, {"targets": ["▁dog", "▁cat", "▁floor"], "top_k": 2}],
                         ids=["default", "top_k", "targets", "one-target", "targets-top_k"])
def test_fill_mask_matches_transformers(ours, theirs, options):
    mine, reference = ours("fill-mask", "mlm"), theirs("fill-mask", "mlm")
    assert_same_ids(reference, mine, MASKED)
    for inputs in (MASKED[0], MASKED[1], MASKED, MASKED[2:]):  # one mask, two masks, a batch, a batch of one
        assert_matches(mine(inputs, **options), reference(inputs, **options), batched=inputs == MASKED)


def test_fill_mask_target_outside_the_vocabulary_uses_its_first_token(ours, theirs):
    mine, reference = ours("fill-mask", "mlm"), theirs("fill-mask", "mlm")
    targets = ["kittens", "▁dog", "▁cat"]  # "kittens" is no piece; its tokenization "▁kittens" is
    with pytest.warns(UserWarning, match="`kittens` does not exist in the model vocabulary. Replacing with `▁kittens`"):
        result = mine(MASKED[0], targets=targets)
    assert "▁kittens" in [mine.tokenizer.convert_ids_to_tokens(p["token"]) for p in result]
    assert_matches(result, reference(MASKED[0], targets=targets))


def test_fill_mask_options_given_when_built_and_batches(ours, theirs):
    mine = ours("fill-mask", "mlm", top_k=2, batch_size=2)
    reference = theirs("fill-mask", "mlm")
    assert_matches(mine(MASKED), reference(MASKED, top_k=2), batched=True)
    assert_matches(mine(MASKED, top_k=4, batch_size=3), reference(MASKED, top_k=4, batch_size=3), batched=True)
    assert_same(mine(MASKED, batch_size=3), [mine(text) for text in MASKED])


# --------------------------------------------------------------------------- text classification
@pytest.mark.parametrize("name", ["nli", "multi-label", "regression", "one-label"])
@pytest.mark.parametrize("options", [{}, {"top_k": None}, {"top_k": 2}, {"function_to_apply": "sigmoid"},
                                     {"function_to_apply": "softmax", "top_k": None},
                                     {"function_to_apply": "none", "top_k": 1}],
                         ids=["default", "all", "top_k", "sigmoid", "softmax", "none"])
def test_text_classification_matches_transformers(ours, theirs, name, options):
    mine, reference = ours("text-classification", name), theirs("text-classification", name)
    assert_same_ids(reference, mine, TEXTS)
    for inputs in (TEXTS[0], TEXTS, PAIRS[0], PAIRS, [TEXTS[1], PAIRS[1]]):
        assert_matches(mine(inputs, **options), reference(inputs, **options), batched=isinstance(inputs, list))


def test_text_classification_pairs_read_like_cross_encoders(ours, theirs):
    mine, reference = ours("text-classification", "nli"), theirs("text-classification", "nli")
    texts, pairs = [p["text"] for p in PAIRS], [p["text_pair"] for p in PAIRS]
    assert_same_ids(reference, mine, texts, pairs)
    single = mine(texts, top_k=None)
    paired = mine(PAIRS, top_k=None)
    assert single != paired
    assert_matches(paired, reference(PAIRS, top_k=None), batched=True)


def test_text_classification_top_k_given_when_built_keeps_transformers_nesting(folders, ours):
    mine = ours("text-classification", "nli", top_k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.pipeline("text-classification", model=str(folders["nli"]), top_k=2)
    assert_matches(mine(TEXTS[0]), reference(TEXTS[0]))  # [[{...}, {...}]]
    assert_matches(mine(TEXTS), reference(TEXTS), batched=True)


def test_text_classification_batches_equal_one_at_a_time(ours, theirs):
    mine = ours("text-classification", "nli", batch_size=4)
    inputs = TEXTS + PAIRS + [TEXTS[0] + " " + TEXTS[2]]
    batched = mine(inputs, top_k=None)
    assert_same(batched, [mine(item, top_k=None) for item in inputs])
    assert_matches(batched, theirs("text-classification", "nli")(inputs, top_k=None, batch_size=4), batched=True)


# --------------------------------------------------------------------------- zero-shot classification
LABELS = ["sports", "politics", "cooking", "music"]


@pytest.mark.parametrize("name", ["nli", "mnli"])
@pytest.mark.parametrize("options", [{}, {"multi_label": True}, {"hypothesis_template": "The topic is {}."},
                                     {"candidate_labels": "politics, music ,, sports"},
                                     {"candidate_labels": ["cooking"]}],
                         ids=["default", "multi_label", "template", "comma-string", "one-label"])
def test_zero_shot_matches_transformers(ours, theirs, name, options):
    mine, reference = ours("zero-shot-classification", name), theirs("zero-shot-classification", name)
    options = {"candidate_labels": LABELS, **options}
    template = options.get("hypothesis_template", "This example is {}.")
    assert_same_ids(reference, mine, [TEXTS[0]] * 2, [template.format("sports"), template.format("music")])
    for inputs in (TEXTS[0], TEXTS):
        assert_matches(mine(inputs, **options), reference(inputs, **options), batched=isinstance(inputs, list))


def test_zero_shot_finds_entailment_and_contradiction_as_transformers(ours, theirs):
    for name, entailment, contradiction in (("nli", 0, 2), ("mnli", 2, 0)):
        mine = ours("zero-shot-classification", name)
        assert (mine.entailment_id, mine.contradiction_id) == (entailment, contradiction)
        assert theirs("zero-shot-classification", name).entailment_id == entailment


def test_zero_shot_positional_labels_options_when_built_and_batches(ours, theirs):
    mine = ours("zero-shot-classification", "nli", candidate_labels=LABELS, multi_label=True, batch_size=3)
    reference = theirs("zero-shot-classification", "nli")
    expected = reference(TEXTS, candidate_labels=LABELS, multi_label=True, batch_size=5)
    assert_matches(mine(TEXTS), expected, batched=True)
    assert_matches(mine(TEXTS, LABELS[:2], multi_label=False), reference(TEXTS, LABELS[:2]), batched=True)
    assert_same(mine(TEXTS, batch_size=5), [mine(text, batch_size=1) for text in TEXTS])


# --------------------------------------------------------------------------- token classification
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
@pytest.mark.parametrize("ignore_labels", [None, [], ["O", "B-LOC", "LOC"]], ids=["default", "keep-all", "ignore"])
def test_token_classification_matches_transformers(ours, theirs, strategy, ignore_labels):
    mine, reference = ours("ner", "ner"), theirs("ner", "ner")
    assert_same_ids(reference, mine, NER_TEXTS)
    options = {"aggregation_strategy": strategy}
    if ignore_labels is not None:
        options["ignore_labels"] = ignore_labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers: "Tokenizer does not support real words"
        expected = reference(NER_TEXTS, **options)
    assert any(expected), "the tiny tagger should find some entities"
    assert_same(mine(NER_TEXTS, **options), expected)  # entities in text order, not ranked
    assert_same(mine(NER_TEXTS[1], **options), expected[1])


def test_token_classification_offsets_point_at_the_words(ours):
    for strategy in ("none", "simple"):  # first/average/max join whole words' strings without spaces, as transformers
        for text, entities in zip(NER_TEXTS, ours("ner", "ner")(NER_TEXTS, aggregation_strategy=strategy,
                                                                 ignore_labels=[])):
            assert entities
            for entity in entities:
                assert text[entity["start"]:entity["end"]].strip() == entity["word"].lstrip("▁")


def test_token_classification_batches_equal_one_at_a_time(ours, theirs):
    mine = ours("ner", "ner", aggregation_strategy="average", batch_size=2)
    batched = mine(NER_TEXTS)
    assert_same(batched, [mine(text, batch_size=1) for text in NER_TEXTS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs("ner", "ner")(NER_TEXTS, aggregation_strategy="average", batch_size=2)
    assert_same(batched, expected)


# --------------------------------------------------------------------------- question answering
@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_k": 4, "max_answer_len": 3},
                                     {"top_k": 3, "handle_impossible_answer": True},
                                     {"top_k": 3, "align_to_words": False}],
                         ids=["default", "top_k", "max_answer_len", "impossible", "tokens"])
def test_question_answering_matches_transformers(ours, theirs, options):
    mine, reference = ours("question-answering", "qa"), theirs("question-answering", "qa")
    assert_same_ids(reference, mine, QUESTIONS, [CONTEXT] * len(QUESTIONS))
    assert_matches(mine(question=QUESTIONS[0], context=CONTEXT, **options),
                   reference(question=QUESTIONS[0], context=CONTEXT, **options))
    assert_matches(mine(question=QUESTIONS, context=CONTEXT, **options),
                   reference(question=QUESTIONS, context=CONTEXT, **options), batched=True)


@pytest.mark.parametrize("options", [{"max_seq_len": 40, "doc_stride": 12, "top_k": 5},
                                     {"max_seq_len": 32, "doc_stride": 5, "top_k": 3, "max_answer_len": 4},
                                     {"max_seq_len": 48, "top_k": 4, "handle_impossible_answer": True}],
                         ids=["stride-12", "stride-5", "default-stride"])
def test_question_answering_long_contexts_span_several_windows(ours, theirs, options):
    mine, reference = ours("question-answering", "qa"), theirs("question-answering", "qa")
    split = dict(truncation="only_second", max_length=options["max_seq_len"], return_overflowing_tokens=True,
                 stride=options.get("doc_stride", options["max_seq_len"] // 2))
    windows = mine.tokenizer(QUESTIONS[0], CONTEXT, **split)["input_ids"]
    assert len(windows) >= 3
    assert windows == reference.tokenizer(QUESTIONS[0], CONTEXT, **split)["input_ids"]
    assert_matches(mine(question=QUESTIONS, context=CONTEXT, **options),
                   reference(question=QUESTIONS, context=CONTEXT, **options), batched=True)
    # the windows overlap, so some answer text is found in two windows (its scores are then summed)
    settings = mine.settings(None, options)[1]
    rows = mine.preprocess([(QUESTIONS[0], CONTEXT)], settings)
    found = [{answer["answer"].lower() for answer in mine.postprocess(CONTEXT, [window], dict(settings, top_k=20))}
             for window in zip(rows, mine.run_model(rows, 1))]
    assert any(found[i] & found[j] for i in range(len(found)) for j in range(i))


def test_question_answering_calling_forms_and_batches(ours, theirs):
    mine = ours("question-answering", "qa", top_k=2, batch_size=4)
    reference = theirs("question-answering", "qa")
    pairs = [{"question": q, "context": c} for q, c in zip(QUESTIONS, [CONTEXT, CONTEXT[:150], CONTEXT[100:]])]
    expected = reference(pairs, top_k=2, max_seq_len=40, doc_stride=10)
    assert_matches(mine(pairs, max_seq_len=40, doc_stride=10), expected, batched=True)
    assert_same(mine(pairs, max_seq_len=40, doc_stride=10, batch_size=1), expected)
    assert_same(mine(question=[p["question"] for p in pairs], context=[p["context"] for p in pairs],
                     max_seq_len=40, doc_stride=10), expected)
    assert_same(mine(pairs[1], max_seq_len=40, doc_stride=10), expected[1])
    assert_same(mine([pairs[1]], max_seq_len=40, doc_stride=10), expected[1])  # a list of one: its result alone
    assert_same(mine(QUESTIONS[1], CONTEXT[:150], max_seq_len=40, doc_stride=10), expected[1])


# --------------------------------------------------------------------------- model_max_length
@pytest.mark.parametrize("task, name, options", [
    ("ner", "ner", {"aggregation_strategy": "simple", "ignore_labels": []}),
    ("zero-shot-classification", "nli", {"candidate_labels": LABELS, "multi_label": True}),
], ids=["ner", "zero-shot"])
def test_texts_longer_than_model_max_length_are_truncated_as_transformers(folders, task, name, options):
    folder = folders[name]
    mine = pipeline(task, model=folder, tokenizer=DebertaV2TokenizerFast.from_pretrained(folder, model_max_length=14))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.pipeline(task, model=str(folder), device="cpu", tokenizer=transformers.AutoTokenizer
                                          .from_pretrained(str(folder), model_max_length=14))
    expected = reference(NER_TEXTS, **options)
    if task == "ner":  # entities in text order, not ranked; only the first 12 tokens are read
        assert_same(mine(NER_TEXTS, **options), expected)
        assert max(entity["end"] for entity in expected[2]) <= NER_TEXTS[2].index(" York")
    else:
        assert_matches(mine(NER_TEXTS, **options), expected, batched=True)


@pytest.mark.parametrize("task, model, bad", [
    ("fill-mask", "mlm", None), ("fill-mask", "mlm", 5), ("fill-mask", "mlm", {"text": "A [MASK]."}),
    ("fill-mask", "mlm", ["A [MASK].", None]), ("ner", "ner", None), ("ner", "ner", 3.5),
    ("zero-shot-classification", "nli", None), ("zero-shot-classification", "nli", {"x": 1}),
])
def test_inputs_that_are_not_texts_are_named(ours, task, model, bad):
    """None, numbers and dicts are refused naming the argument, not read as their keys or iterated."""
    args = (bad, ["sports"]) if task == "zero-shot-classification" else (bad,)
    with pytest.raises(TypeError, match=r"(inputs|sequences) must be a text or a list of texts, got"):
        ours(task, model)(*args)


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, r"text-classification: inputs must be a text, a dict .* got NoneType None"),
    (5, TypeError, r"inputs must be a text, a dict \{'text': ..., 'text_pair': ...\} or a list of them, got int 5"),
    (("Fine.", 3.5), TypeError, r"inputs\[1\] must be a text, .* got float 3.5"),
    ({"txt": "Fine."}, ValueError, r"inputs: a text pair is a dict with keys \('text', 'text_pair'\), got keys \['txt'\]"),
    ({"text": 5}, TypeError, r"inputs\['text'\] must be a text, got int 5"),
    ([{"text": "a", "text_pair": ["b"]}], TypeError, r"inputs\[0\]\['text_pair'\] must be a text, got list"),
])
def test_text_classification_inputs_that_are_not_texts_are_named(ours, bad, error, message):
    with pytest.raises(error, match=message):
        ours("text-classification", "nli")(bad)


@pytest.mark.parametrize("template", ["The topic is {1}.", "The topic is {label}.", "The topic is {"])
def test_a_hypothesis_template_that_cannot_take_the_label_is_named(ours, template):
    with pytest.raises(ValueError, match=r"hypothesis_template .* must hold one empty slot"):
        ours("zero-shot-classification", "nli")("A text.", ["sports"], hypothesis_template=template)


# --------------------------------------------------------------------------- feature extraction, embeddings
LENGTHS = ["Short.", "A somewhat longer sentence about the weather in Berlin today.", "Mid length text here.",
           "One more line, long enough to need padding when it shares a batch with the short ones above."]


def test_feature_extraction_matches_transformers(ours, theirs):
    mine, reference = ours("feature-extraction", "mlm"), theirs("feature-extraction", "mlm")
    assert_same_ids(reference, mine, TEXTS)
    assert_same(mine(TEXTS[0]), reference(TEXTS[0]))  # [1, n, C] nested lists of Python floats
    # transformers' batches keep their padding rows ([1, longest, C]); each of ours is its text's own
    assert_same(mine(TEXTS, batch_size=2), reference(TEXTS))
    array, tensor = mine(TEXTS[1], return_tensors=True), reference(TEXTS[1], return_tensors=True)
    assert isinstance(array, np.ndarray) and array.shape == tuple(tensor.shape)
    np.testing.assert_allclose(array, tensor.numpy(), atol=ATOL)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("normalize", [False, True])
def test_sentence_embeddings_pool_transformers_hidden_states(ours, theirs, pooling, normalize):
    reference = theirs("feature-extraction", "mlm")
    expected = []
    for text in LENGTHS:
        hidden = reference(text, return_tensors=True)[0]  # [n, C], transformers' hidden states
        vector = hidden.mean(dim=0) if pooling == "mean" else hidden[0]
        expected.append(torch.nn.functional.normalize(vector, dim=0) if normalize else vector)
    mine = ours("feature-extraction", "mlm", pooling=pooling, normalize=normalize)
    matrix = mine(LENGTHS, batch_size=3, return_tensors=True)
    assert matrix.shape == (len(LENGTHS), TINY["hidden_size"])
    np.testing.assert_allclose(matrix, torch.stack(expected).numpy(), atol=ATOL)
    assert_same(mine(LENGTHS[1]), expected[1].tolist())
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, rtol=1e-6)


def test_feature_extraction_takes_any_model_and_checks_its_options(folders, ours):
    base = ours("feature-extraction", "mlm")
    masked_lm = pydeberta.DebertaV2ForMaskedLM.from_pretrained(folders["mlm"])
    from_head = pipeline("feature-extraction", model=masked_lm, tokenizer=folders["mlm"])
    np.testing.assert_array_equal(from_head(TEXTS[0], return_tensors=True), base(TEXTS[0], return_tensors=True))
    with pytest.raises(ValueError, match="pooling must be one of"):
        base(TEXTS[0], pooling="max")
    with pytest.raises(ValueError, match="normalize=True needs pooling"):
        base(TEXTS[0], normalize=True)
    with pytest.raises(TypeError, match="return_tensors must be True or False"):
        base(TEXTS[0], return_tensors="np")


@pytest.mark.parametrize("task, name, inputs", [
    ("fill-mask", "mlm", ["The [MASK] sat.", MASKED[1] + " " + MASKED[2], "[MASK].", MASKED[0] + " " + TEXTS[0]]),
    ("text-classification", "nli", LENGTHS),
    ("feature-extraction", "mlm", LENGTHS)])
def test_batches_are_formed_by_length_and_results_come_back_in_input_order(ours, theirs, task, name, inputs):
    """Rows of similar length share a batch (the shortest first), whatever the input order; each
    result is the one transformers gives that input alone."""
    mine = ours(task, name)
    lengths = []
    call_model = type(mine).call_model
    mine.call_model = lambda batch: (lengths.append(batch["input_ids"].shape[1]), call_model(mine, batch))[1]
    try:
        results = mine(inputs, batch_size=2)
    finally:
        del mine.call_model
    rows = sorted(len(ids) for ids in mine.tokenizer(inputs)["input_ids"])
    assert lengths == [max(rows[i:i + 2]) for i in range(0, len(rows), 2)]
    reference = theirs(task, name)
    assert_same(results, reference(inputs))  # transformers, one input per call (its default batch_size)


def test_fill_mask_projects_only_the_masked_rows(ours):
    mine = ours("fill-mask", "mlm")
    seen = []
    lm_logits = type(mine.model).lm_logits
    mine.model.lm_logits = lambda hidden, book=False: (seen.append(hidden.shape),
                                                       lm_logits(mine.model, hidden, book))[1]
    try:
        mine(MASKED, batch_size=3)
    finally:
        del mine.model.lm_logits
    assert seen == [(4, TINY["hidden_size"])]  # four masks in three texts, no other row
