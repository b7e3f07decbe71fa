"""Training without a framework: gradients of every parameter (:mod:`.gradients`: the book's
backward, or the engine's training pass, :mod:`pydeberta.engine.training`), AdamW with the
linear schedule and gradient clipping (:mod:`.optim`), and fine-tuning on examples (:mod:`.finetune`)."""

from .finetune import finetune
from .gradients import value_and_grad
from .optim import AdamW, LinearSchedule, clip_grad_norm, transformers_no_decay

__all__ = ["AdamW", "LinearSchedule", "clip_grad_norm", "finetune", "transformers_no_decay", "value_and_grad"]
