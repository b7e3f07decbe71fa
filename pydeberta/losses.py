"""The losses of the task heads, as ``torch.nn.functional`` computes them (mean reduction).

Shapes: ``N`` rows, ``C`` classes.
"""

import numpy as np

from .functional import as_floating, log_softmax, sigmoid, softmax

__all__ = ["bce_with_logits", "bce_with_logits_backward", "cross_entropy", "cross_entropy_backward", "mse_loss",
           "mse_loss_backward", "soft_cross_entropy", "soft_cross_entropy_backward"]


def cross_entropy(logits, labels, ignore_index: int = -100) -> np.ndarray:
    """Mean cross-entropy, as ``F.cross_entropy(logits, labels, ignore_index=ignore_index)``:

        loss = -(1/|kept|) * sum_{n in kept} log_softmax(logits[n])[labels[n]]

    over the rows whose label is not ``ignore_index``. When every row is ignored the loss is
    0/0 = nan, as in torch. A kept label outside [0, C) raises ValueError.

    Shapes: logits [N, C], labels [N] integer; returns a 0-d array of the logits' dtype.

    >>> print(cross_entropy(np.array([[0.0, 0.0], [5.0, 0.0]]), np.array([1, -100])))
    0.6931471805599453
    """
    logits = as_floating(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: expected logits [N, C] and labels [N], "
            f"got {logits.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    kept = labels != ignore_index  # [N]
    targets = labels[kept]  # [n]
    num_classes = logits.shape[1]
    out_of_range = (targets < 0) | (targets >= num_classes)
    if np.any(out_of_range):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {num_classes}) or equal "
            f"ignore_index={ignore_index}, got {np.unique(targets[out_of_range]).tolist()}"
        )
    if targets.size == 0:
        return np.asarray(np.nan, dtype=logits.dtype)
    log_probs = log_softmax(logits[kept])  # [n, C]
    total = -log_probs[np.arange(targets.size), targets].sum()
    return np.asarray(total / logits.dtype.type(targets.size), dtype=logits.dtype)


def cross_entropy_backward(logits, labels, ignore_index: int = -100) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to the logits::

        dlogits[n] = (softmax(logits[n]) - onehot(labels[n])) / |kept|   for kept rows, 0 for ignored ones

    (all zeros when no row is kept: the loss is nan there, but torch's gradient touches only kept
    rows). Labels are checked by the forward.

    Shapes: logits [N, C], labels [N]; returns [N, C].
    """
    logits = as_floating(logits)
    labels = np.asarray(labels)
    kept = labels != ignore_index  # [N]
    grad = softmax(logits) * kept[:, None]  # [N, C]
    grad[np.flatnonzero(kept), labels[kept]] -= 1
    return grad / logits.dtype.type(max(kept.sum(), 1))


def soft_cross_entropy(logits, probs) -> np.ndarray:
    """Cross-entropy against soft labels, as DeBERTa's sequence-classification head computes it:

        loss = mean_n( -sum_c log_softmax(logits)[n, c] * probs[n, c] )

    Shapes: logits [N, C], probs [N, C]; returns a 0-d array of the promoted dtype of the two
    (the logits' dtype when they agree), as torch.
    """
    per_row = -(log_softmax(logits) * as_floating(probs)).sum(axis=-1)  # [N]
    return np.asarray(per_row.mean(), dtype=per_row.dtype)


def soft_cross_entropy_backward(logits, probs) -> np.ndarray:
    """Gradient of :func:`soft_cross_entropy` with respect to the logits:
    ``dlogits[n] = (softmax(logits[n]) * sum_c probs[n, c] - probs[n]) / N``; [N, C]."""
    logits, probs = as_floating(logits), as_floating(probs)
    return (softmax(logits) * probs.sum(axis=-1, keepdims=True) - probs) / logits.dtype.type(logits.shape[0])


def mse_loss(input, target) -> np.ndarray:
    """Mean squared error, as ``F.mse_loss(input, target)``: mean((input - target)^2).

    Shapes: input and target of one shape (a mismatch raises ValueError, where torch would warn
    and broadcast); returns a 0-d array of their promoted dtype.
    """
    input, target = as_floating(input), as_floating(target)
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input {input.shape} and target {target.shape} differ in shape")
    diff = input - target
    return np.asarray(np.mean(diff * diff), dtype=diff.dtype)


def mse_loss_backward(input, target) -> np.ndarray:
    """Gradient of :func:`mse_loss` with respect to ``input``: ``2 (input - target) / size``."""
    diff = as_floating(input) - as_floating(target)
    return 2 * diff / diff.dtype.type(diff.size)


def bce_with_logits(logits, targets) -> np.ndarray:
    """Mean binary cross-entropy on logits, as ``F.binary_cross_entropy_with_logits``:

        loss = mean( max(x, 0) - x * t + log1p(exp(-|x|)) )

    which equals -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] without overflow for any
    finite x.

    Shapes: logits and targets of one shape (else ValueError, as torch); returns a 0-d array of
    their promoted dtype.
    """
    x, t = as_floating(logits), as_floating(targets)
    if x.shape != t.shape:
        raise ValueError(f"bce_with_logits: logits {x.shape} and targets {t.shape} differ in shape")
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return np.asarray(np.mean(loss), dtype=loss.dtype)


def bce_with_logits_backward(logits, targets) -> np.ndarray:
    """Gradient of :func:`bce_with_logits` with respect to the logits: ``(sigmoid(x) - t) / size``."""
    x, t = as_floating(logits), as_floating(targets)
    return (sigmoid(x) - t) / x.dtype.type(x.size)
