"""``question-answering``: the span of a context that answers a question (extractive QA).

transformers' ``QuestionAnsweringPipeline`` with a fast tokenizer.

Preprocessing: the pair ``[CLS] question [SEP] context [SEP]`` is cut into windows of at most
``max_seq_len`` tokens (default ``min(model_max_length, 384)``); only the context is split, each
window starting ``doc_stride`` tokens (default ``min(max_seq_len // 2, 128)``) before the previous
one ended, so an answer near a window's edge is whole in the next one. Each window is one row.
(transformers puts the context first when the tokenizer pads on the left; here the question is
always first, the layout DeBERTa QA models are trained on.)

Post-processing of one window's ``start_logits``, ``end_logits [n]``:

1. Tokens that cannot be part of an answer (question, ``[SEP]``) get logit -10000; ``[CLS]``
   stays; ``p_start = softmax(start_logits)``, ``p_end = softmax(end_logits)``.
2. ``p_start[0] * p_end[0]`` (the ``[CLS]`` span) is the window's *null* score; the smallest over
   the windows is the score of the empty answer ``{"start": 0, "end": 0, "answer": ""}`` that
   ``handle_impossible_answer=True`` adds. Then ``p_start[0] = p_end[0] = 0``.
3. Span ``(s, e)`` scores ``p_start[s] * p_end[e]`` when ``s <= e < s + max_answer_len``, else 0;
   the ``2 * top_k + 10`` best spans are kept (``top_k`` alone without ``align_to_words``),
   those whose start or end is not a context token (or ``[CLS]``) dropped.
4. A span becomes characters of the context: with ``align_to_words`` (default) from the start of
   the word of token ``s`` to the end of the word of token ``e`` (words as the fast tokenizer
   splits them, on spaces; a word's span includes the space its ``▁`` stands for), else from the
   token offsets; a span at ``[CLS]`` always uses token offsets.
5. Answers are collected window after window; one whose text equals (ignoring case) an answer
   already found adds its score to that answer instead of being listed again. The answers are
   sorted by score, highest first, and cut to ``top_k``.

A question gives a dict when one answer is left, else a list of ``top_k`` dicts ``{"score",
"start", "end", "answer"}``; several questions give one such result each (a list of one
question gives its result alone, as in transformers).
"""

import numpy as np

from ..modeling import DebertaV2ForQuestionAnswering
from .base import MODEL_INPUTS, Pipeline, check_positive_int, split_rows

NULL_SCORE = 1000000  # transformers' starting "minimum null score": large and positive


def span_candidates(start_logits, end_logits, allowed, top_k, max_answer_len, null_score, handle_impossible_answer):
    """The best answer spans of one window (transformers' ``select_starts_ends`` and ``decode_spans``).

    Args:
        start_logits, end_logits: ``[n]``.
        allowed: bool ``[n]``, True where a token may start or end an answer (context, ``[CLS]``).
        top_k: spans to consider; max_answer_len: longest span in tokens.
        null_score: the smallest ``[CLS]`` score of the previous windows.
    Returns:
        ``(starts, ends, scores, null_score)``: token indices and scores of the kept spans, best
        first, and the updated null score.
    """
    start = np.where(allowed, start_logits, np.float32(-10000.0))
    end = np.where(allowed, end_logits, np.float32(-10000.0))
    start = np.exp(start - start.max())
    start = start / start.sum()  # [n]
    end = np.exp(end - end.max())
    end = end / end.sum()  # [n]
    if handle_impossible_answer:
        null_score = min(null_score, float(start[0] * end[0]))
    start[0] = end[0] = 0.0
    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)  # [n, n]: s <= e < s + max_answer_len
    flat = candidates.ravel()
    if top_k == 1:
        best = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        best = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, top_k)[:top_k]
        best = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(best, candidates.shape)
    keep = allowed[starts] & allowed[ends]
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], null_score


def word_chars(row, word):
    """Character span of context word ``word`` in ``row``: its first token's start, last token's end."""
    spans = [offsets for offsets, w, sequence in zip(row["offsets"], row["word_ids"], row["sequence_ids"])
             if w == word and sequence == 1]
    return spans[0][0], spans[-1][1]


def answer_chars(row, s, e, align_to_words):
    """Character ``(start, end)`` in the context of the span of tokens ``s..e`` of ``row``."""
    if align_to_words and row["word_ids"][s] is not None and row["word_ids"][e] is not None:
        return word_chars(row, row["word_ids"][s])[0], word_chars(row, row["word_ids"][e])[1]
    return row["offsets"][s][0], row["offsets"][e][1]


def question_context_pairs(args, question, context):
    """``[(question, context), ...]`` from any of transformers' calling forms.

    ``qa(question=q, context=c)`` with strings, a list of questions and one context, or two
    lists of the same length; ``qa({"question": q, "context": c})`` or a list of such dicts;
    ``qa(q, c)`` with two strings. Returns the pairs and whether the input was a batch.
    """
    if args:
        if question is not None or context is not None:
            raise ValueError("pass question and context either as keywords or as arguments, not both")
        if len(args) == 2 and all(isinstance(arg, str) for arg in args):
            question, context = args
        elif len(args) == 1:
            items = args[0]
            batched = isinstance(items, (list, tuple))
            return [pair_of(item) for item in (items if batched else [items])], batched
        else:
            raise ValueError(f"question-answering takes question= and context=, a dict or a list of dicts; "
                             f"got {len(args)} positional arguments")
    if question is None or context is None:
        raise ValueError("question-answering needs both a question and a context")
    if isinstance(question, list) and isinstance(context, str):
        return [pair_of({"question": q, "context": context}) for q in question], True
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise ValueError("Questions and contexts don't have the same lengths")
        return [pair_of({"question": q, "context": c}) for q, c in zip(question, context)], True
    if isinstance(question, str) and isinstance(context, str):
        return [pair_of({"question": question, "context": context})], False
    raise ValueError("Arguments can't be understood: question and context must be strings or lists of strings")


def pair_of(item):
    """``(question, context)`` of a dict, checked as transformers checks it."""
    if not isinstance(item, dict):
        raise ValueError(f"{item!r} argument needs to be a dict with keys question and context")
    for key in ("question", "context"):
        if key not in item:
            raise KeyError("You need to provide a dictionary with keys {question:..., context:...}")
        if item[key] is None:
            raise ValueError(f"`{key}` cannot be None")
        if not isinstance(item[key], str):
            raise ValueError(f"`{key}` must be a string, got {type(item[key]).__name__}")
        if not item[key]:
            raise ValueError(f"`{key}` cannot be empty")
    return item["question"], item["context"]


class QuestionAnsweringPipeline(Pipeline):
    """``pipeline("question-answering", model=folder)``; call as ``qa(question=..., context=...)``.

    Options: ``top_k`` (1), ``max_answer_len`` (15 tokens), ``handle_impossible_answer``
    (False), ``max_seq_len`` and ``doc_stride`` (tokens; see the module docstring),
    ``align_to_words`` (True).
    """

    task = "question-answering"
    model_class = DebertaV2ForQuestionAnswering
    DEFAULTS = {"top_k": 1, "max_answer_len": 15, "handle_impossible_answer": False, "max_seq_len": None,
                "doc_stride": None, "align_to_words": True}
    outputs = ("start_logits", "end_logits")
    unwraps_one_item_list = True
    needs_offsets = True

    def check_options(self, options):
        """Counts are ints >= 1 (``max_seq_len``/``doc_stride`` may be None: the defaults)."""
        options = super().check_options(options)
        for name in ("top_k", "max_answer_len", "max_seq_len", "doc_stride"):
            if name in options:
                optional = name in ("max_seq_len", "doc_stride")
                options[name] = check_positive_int(name, options[name], allow_none=optional)
        return options

    def __call__(self, *args, question=None, context=None, batch_size=None, **options):
        """Answer each question from its context; see the module docstring."""
        pairs, batched = question_context_pairs(args, question, context)
        batch_size, options = self.settings(batch_size, options)
        if not pairs:
            return []
        rows = self.preprocess(pairs, options)
        outputs = self.run_model(rows, batch_size)
        results = []
        for index, (_, text) in enumerate(pairs):
            windows = [(row, out) for row, out in zip(rows, outputs) if row["overflow_to_sample_mapping"] == index]
            answers = self.postprocess(text, windows, options)
            results.append(answers[0] if len(answers) == 1 else answers)
        return results if batched and len(results) > 1 else results[0]

    def preprocess(self, pairs, options):
        """The windows of every ``(question, context)`` pair as rows, with their offsets, word
        ids, sequence ids and ``overflow_to_sample_mapping`` (the pair they come from)."""
        max_seq_len = options["max_seq_len"] or min(self.tokenizer.model_max_length, 384)
        doc_stride = options["doc_stride"] or min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        encoding = self.tokenizer([q for q, _ in pairs], [c for _, c in pairs], truncation="only_second",
                                  max_length=max_seq_len, stride=doc_stride, return_overflowing_tokens=True,
                                  return_offsets_mapping=True)
        rows = split_rows(encoding, MODEL_INPUTS + ("offset_mapping", "overflow_to_sample_mapping"))
        for i, row in enumerate(rows):
            row.update(offsets=row.pop("offset_mapping"), word_ids=encoding.word_ids(i),
                       sequence_ids=encoding.sequence_ids(i))
        return rows

    def postprocess(self, context, windows, options):
        """The answers of one question from its windows' rows and outputs, best first."""
        top_k, align = options["top_k"], options["align_to_words"]
        null_score, answers, by_text = NULL_SCORE, [], {}
        for row, out in windows:
            allowed = np.array([sequence == 1 for sequence in row["sequence_ids"]])
            allowed[np.asarray(row["input_ids"]) == self.tokenizer.cls_token_id] = True
            starts, ends, scores, null_score = span_candidates(
                out["start_logits"], out["end_logits"], allowed, top_k * 2 + 10 if align else top_k,
                options["max_answer_len"], null_score, options["handle_impossible_answer"])
            for s, e, score in zip(starts, ends, scores):
                start, end = answer_chars(row, s, e, align)
                text = context[start:end]
                if text.lower() in by_text:
                    by_text[text.lower()]["score"] += float(score)
                else:
                    answer = {"score": float(score), "start": int(start), "end": int(end), "answer": text}
                    answers.append(answer)
                    by_text[text.lower()] = answer
        if options["handle_impossible_answer"]:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        return sorted(answers, key=lambda answer: answer["score"], reverse=True)[:top_k]
