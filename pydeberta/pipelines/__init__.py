"""Task pipelines without a framework: transformers' ``pipeline(...)`` on NumPy.

::

    from pydeberta.pipelines import pipeline
    classifier = pipeline("zero-shot-classification", model="path/to/nli-checkpoint")
    classifier("The match ended in a draw.", candidate_labels=["sports", "politics"])
    # {'sequence': 'The match ended in a draw.', 'labels': ['sports', 'politics'], 'scores': [0.97, 0.03]}

Tasks, their options and the post-processing each applies are described in their modules:

=============================  ==========================================  ===============================
task (alias)                   options                                     module
=============================  ==========================================  ===============================
``fill-mask``                  ``top_k``, ``targets``                      ``fill_mask``
``text-classification``        ``top_k``, ``function_to_apply``            ``text_classification``
(``sentiment-analysis``)
``zero-shot-classification``   ``candidate_labels``,                       ``zero_shot_classification``
                               ``hypothesis_template``, ``multi_label``
``token-classification``       ``aggregation_strategy``, ``ignore_labels``  ``token_classification``
(``ner``)
``question-answering``         ``top_k``, ``max_answer_len``,              ``question_answering``
                               ``handle_impossible_answer``,
                               ``max_seq_len``, ``doc_stride``,
                               ``align_to_words``
``feature-extraction``         ``return_tensors``, ``truncation``,         ``feature_extraction``
                               ``pooling``, ``normalize``
=============================  ==========================================  ===============================

Arguments, results (lists of dicts with transformers' keys, scores as Python floats) and their
ordering are transformers 4.57's; the shared machinery (options, batching with padding) is in
``base``. Every pipeline also takes ``batch_size``, when built and per call.
"""

import os

import numpy as np

from ..hub import resolve_model_folder
from ..tokenizer import DebertaV2TokenizerFast
from .base import Pipeline
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline
from .zero_shot_classification import ZeroShotClassificationPipeline

TASKS = {cls.task: cls for cls in (FillMaskPipeline, TextClassificationPipeline, ZeroShotClassificationPipeline,
                                   TokenClassificationPipeline, QuestionAnsweringPipeline, FeatureExtractionPipeline)}
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

__all__ = ["pipeline", "Pipeline", "TASKS", "TASK_ALIASES", "FillMaskPipeline", "TextClassificationPipeline",
           "ZeroShotClassificationPipeline", "TokenClassificationPipeline", "QuestionAnsweringPipeline",
           "FeatureExtractionPipeline"]


def pipeline(task, model=None, tokenizer=None, batch_size=1, dtype=np.float32, quantize=None, **options):
    """A callable running ``task`` with ``model``, as transformers' ``pipeline(task, model=...)``.

    Args:
        task: one of :data:`TASKS` or :data:`TASK_ALIASES`.
        model: a checkpoint folder or Hub id (the task's model class is loaded from it, and,
            unless ``tokenizer`` is given, a ``DebertaV2TokenizerFast`` from the same folder), or
            a model object of the task's class (then ``tokenizer`` is required).
        tokenizer: a pydeberta tokenizer, or a folder / Hub id to load ``DebertaV2TokenizerFast`` from.
        batch_size: model rows per call (results do not depend on it).
        dtype: ``np.float32`` or ``np.float64``, when ``model`` is loaded here.
        quantize: ``"int8"`` to quantize the model loaded here (``from_pretrained(..., quantize=)``).
        **options: the task's options, used by every call that does not give them.
    Returns:
        The task's :class:`~pydeberta.pipelines.base.Pipeline`.
    Raises:
        ValueError: unknown task, no model, no tokenizer for a model object, bad options, or a
            model whose head does not fit the task (TypeError for a model of the wrong class).
    """
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"Unknown task {task!r}; supported tasks: {sorted(TASKS)} "
                         f"(aliases: {', '.join(f'{a!r} -> {t!r}' for a, t in TASK_ALIASES.items())})")
    cls = TASKS[name]
    if model is None:
        raise ValueError(f"pipeline({task!r}) needs model=: a checkpoint folder, a Hub id or a "
                         f"{cls.model_class.__name__}")
    if isinstance(model, (str, os.PathLike)):
        folder = resolve_model_folder(model)
        model = cls.model_class.from_pretrained(folder, dtype=dtype, quantize=quantize)
        if tokenizer is None:
            tokenizer = folder
    elif quantize is not None:
        raise ValueError(f"pipeline({task!r}): quantize= applies to a model loaded here; call "
                         f"model.quantize({quantize!r}) on the model object instead")
    elif tokenizer is None:
        raise ValueError(f"pipeline({task!r}) was given a model object without tokenizer=: pass a tokenizer "
                         "or the folder to load DebertaV2TokenizerFast from")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(tokenizer))
    return cls(model, tokenizer, batch_size=batch_size, **options)
