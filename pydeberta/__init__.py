"""pydeberta: DeBERTa-v2/v3 in NumPy, with Hugging Face transformers' names and numbers.

Switch from transformers by changing one import::

    from pydeberta import DebertaV2ForMaskedLM
    model = DebertaV2ForMaskedLM.from_pretrained("path/to/checkpoint")
    out = model(input_ids=[[1, 7, 128000, 2]])
"""

__version__ = "0.1.0"

from .auto import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForMultipleChoice, AutoModelForQuestionAnswering,
                   AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer)
from .engine import backend_info, release_memory, set_num_threads, use_backend
from .errors import CheckpointError, UnsafeCheckpointError
from .config import DebertaV2Config
from .encoding import BatchEncoding
from .modeling import (DebertaV2ForMaskedLM, DebertaV2ForMultipleChoice, DebertaV2ForQuestionAnswering,
                       DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification, DebertaV2Model,
                       DebertaV2PreTrainedModel)
from .pipelines import pipeline
from .tokenizer import DebertaV2Tokenizer, DebertaV2TokenizerFast

__all__ = [
    "DebertaV2Config",
    "DebertaV2Model",
    "DebertaV2PreTrainedModel",
    "DebertaV2ForMaskedLM",
    "DebertaV2ForSequenceClassification",
    "DebertaV2ForTokenClassification",
    "DebertaV2ForQuestionAnswering",
    "DebertaV2ForMultipleChoice",
    "DebertaV2Tokenizer",
    "DebertaV2TokenizerFast",
    "BatchEncoding",
    "AutoConfig",
    "AutoTokenizer",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModelForMultipleChoice",
    "pipeline",
    "backend_info",
    "use_backend",
    "release_memory",
    "set_num_threads",
    "CheckpointError",
    "UnsafeCheckpointError",
]
