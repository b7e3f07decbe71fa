"""Training by the book: gradients of every parameter (:mod:`.gradients`)."""

from .gradients import value_and_grad

__all__ = ["value_and_grad"]
