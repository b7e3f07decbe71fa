"""Optimisation in NumPy: AdamW, the linear warm-up / decay schedule and global-norm gradient
clipping, each step for step what torch and transformers do (``torch.optim.AdamW``,
``transformers.get_linear_schedule_with_warmup``, ``torch.nn.utils.clip_grad_norm_``).

Parameters and gradients are dicts ``checkpoint key -> array`` (``model.params`` and the grads of
:func:`pydeberta.training.value_and_grad`). Nothing here changes an array it is given: a loaded
model's arrays are read-only, and the engine derives tables from some of them, so a step
returns new arrays for the model to take::

    opt = AdamW(model.params, lr=5e-5, weight_decay=0.01, no_decay=transformers_no_decay,
                schedule=LinearSchedule(num_warmup_steps=10, num_training_steps=100))
    outputs, grads = value_and_grad(model, **batch)
    grads, total_norm = clip_grad_norm(grads, max_norm=1.0)
    model.load_state_dict(opt.step(model.params, grads))

Shapes: every gradient has its parameter's shape; the optimiser's moments ``m``, ``v`` too.
"""

import math
import re

import numpy as np

__all__ = ["AdamW", "LinearSchedule", "clip_grad_norm", "transformers_no_decay"]

# transformers' Trainer (get_decay_parameter_names): no weight decay for parameters of LayerNorm
# modules, nor for names matching these patterns, searched in the lower-cased name.
_NO_DECAY = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


def transformers_no_decay(key):
    """True for the parameters transformers' ``Trainer`` exempts from weight decay: biases and
    normalisation weights. Its rule (``Trainer.get_decay_parameter_names``) excludes the
    parameters of ``nn.LayerNorm`` modules and every name whose lower-cased form contains
    ``bias``, ``layernorm``, ``rmsnorm``, ``norm`` as a dotted component, or ``_norm``; every
    LayerNorm of DeBERTa is named ``LayerNorm``, so the name says it.

    >>> [transformers_no_decay(k) for k in ("deberta.encoder.layer.0.output.LayerNorm.weight",
    ...                                     "classifier.bias", "classifier.weight")]
    [True, True, False]
    """
    return _NO_DECAY.search(key.lower()) is not None


def check_number(value, name, low, high=math.inf, low_open=False, high_open=False):
    """``value`` as a float after checking it is a real number in the interval (bounds named)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r:.40}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):  # also refuses nan
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


def _step_count(value, name):
    """``value`` as an int >= 0 (an integer of any kind, not a bool or a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r:.40}")
    return int(value)


def check_like(arrays, shapes, name, reference_name):
    """Check that ``arrays`` is a dict of floating-point arrays with exactly the keys of
    ``shapes`` (key -> shape) and those shapes; the error names ``name``, what was expected
    and what came."""
    if not isinstance(arrays, dict):
        raise TypeError(f"{name} must be a dict checkpoint key -> array, got {type(arrays).__name__}")
    missing = [key for key in shapes if key not in arrays]
    extra = [key for key in arrays if key not in shapes]
    if missing or extra:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})"] if missing else []
        parts += [f"{len(extra)} unexpected (e.g. {extra[:3]})"] if extra else []
        raise ValueError(f"{name} must have the keys of {reference_name} ({len(shapes)} keys): " + " and ".join(parts))
    for key, shape in shapes.items():
        array = np.asarray(arrays[key])
        if array.shape != shape:
            raise ValueError(f"{name}[{key!r}] must have shape {shape} like {reference_name}, got {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{name}[{key!r}] must hold floating-point numbers, got dtype {array.dtype}")


class LinearSchedule:
    """The learning-rate multiplier of transformers' ``get_linear_schedule_with_warmup``:
    linear from 0 to 1 over ``num_warmup_steps``, then linear down to 0 at ``num_training_steps``
    (0 after it). For the step that follows ``t`` completed steps (``t = 0, 1, ...``)::

        W = num_warmup_steps, T = num_training_steps
        schedule(t) = t / max(1, W)                        t < W
                    = max(0, (T - t) / max(1, T - W))      t >= W

    so with a warm-up the first step has learning rate 0, as with transformers' ``LambdaLR``
    (the optimiser steps, then the scheduler).

    >>> s = LinearSchedule(num_warmup_steps=2, num_training_steps=6)
    >>> [s(t) for t in range(7)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """

    def __init__(self, num_warmup_steps, num_training_steps):
        self.num_warmup_steps = _step_count(num_warmup_steps, "num_warmup_steps")
        self.num_training_steps = _step_count(num_training_steps, "num_training_steps")
        if self.num_warmup_steps > self.num_training_steps:
            raise ValueError(f"num_warmup_steps must be <= num_training_steps ({self.num_training_steps}), "
                             f"got {self.num_warmup_steps}")

    def __call__(self, step):
        step = _step_count(step, "step")
        warmup, total = self.num_warmup_steps, self.num_training_steps
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))

    def __repr__(self):
        return f"LinearSchedule(num_warmup_steps={self.num_warmup_steps}, num_training_steps={self.num_training_steps})"


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their global norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``::

        total = || (||g_1||_p, ..., ||g_K||_p) ||_p        (p = norm_type; inf: the largest |g|)
        coef  = min(max_norm / (total + 1e-6), 1)
        g_k  <- coef * g_k                                  (every gradient, also when coef = 1)

    Args:
        grads: dict key -> float array (left unchanged).
        max_norm: float >= 0.
        norm_type: p > 0, or ``inf``.
        error_if_nonfinite: raise ``ValueError`` when the total norm is nan or inf (torch raises
            ``RuntimeError``); otherwise the gradients are scaled by it anyway, as torch does.
    Returns:
        ``(clipped, total_norm)``: a new dict of new arrays (same keys, shapes and dtypes) and the
        total norm before clipping as a 0-d array of the gradients' dtype (torch changes the
        gradients in place and returns the norm).

    >>> clipped, total = clip_grad_norm({"a": np.array([3.0]), "b": np.array([4.0])}, max_norm=1.0)
    >>> float(total), [round(float(g[0]), 6) for g in clipped.values()]
    (5.0, [0.6, 0.8])
    """
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict checkpoint key -> array, got {type(grads).__name__}")
    max_norm = check_number(max_norm, "max_norm", 0.0)
    norm_type = check_number(norm_type, "norm_type", 0.0, low_open=True)
    arrays = {key: np.asarray(grad) for key, grad in grads.items()}
    for key, grad in arrays.items():
        if not np.issubdtype(grad.dtype, np.floating):
            raise TypeError(f"grads[{key!r}] must hold floating-point numbers, got dtype {grad.dtype}")
    if not arrays:
        return {}, np.zeros(())
    dtype = np.result_type(*arrays.values())
    norms = np.array([np.linalg.norm(grad.ravel(), ord=norm_type) for grad in arrays.values()], dtype=dtype)  # [K]
    total = np.linalg.norm(norms, ord=norm_type).astype(dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise ValueError(f"the total norm of order {norm_type} of the gradients is {float(total)}: it cannot be "
                         "clipped (pass error_if_nonfinite=False to scale by it anyway)")
    coef = np.minimum(max_norm / (total + 1e-6), 1.0)  # nan stays nan, as torch.clamp
    return {key: grad * grad.dtype.type(coef) for key, grad in arrays.items()}, total


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), step for step
    ``torch.optim.AdamW`` (``amsgrad=False``, ``maximize=False``; AMSGrad is not offered).

    With ``t`` the number of this step (1, 2, ...), ``g`` a parameter's gradient and
    ``lr_t = lr * schedule(t - 1)`` (``lr`` when there is no schedule)::

        θ <- θ (1 - lr_t λ)                    λ = weight_decay (0 for keys no_decay(key) is True for)
        m <- m + (1 - β1) (g - m)               first moment (torch's lerp)
        v <- β2 v + (1 - β2) g²                 second moment
        θ <- θ - (lr_t / (1 - β1^t)) m / (√v / √(1 - β2^t) + ε)

    ``m`` and ``v`` start at zero and have each parameter's shape and dtype; everything is
    computed in the parameters' dtype, as torch does.

    Args:
        params: dict checkpoint key -> array, e.g. ``model.params``: the keys, shapes and dtypes
            the optimiser will update (the arrays themselves are never written).
        lr: learning rate >= 0 (torch's default 1e-3).
        betas: (β1, β2), each in [0, 1).
        eps: ε > 0 (torch also takes 0, which divides 0 by 0 for a parameter whose gradients
            were all zero; refused here).
        weight_decay: λ >= 0 (torch's default 0.01).
        no_decay: ``key -> bool``, True for the parameters that get no weight decay; None decays
            all of them (torch's single parameter group). :func:`transformers_no_decay` is the
            rule of transformers' ``Trainer`` (biases and LayerNorm weights).
        schedule: ``t -> multiplier`` of ``lr`` for the step after ``t`` completed steps, e.g.
            :class:`LinearSchedule`; None keeps ``lr``.

    Use: ``new_params = opt.step(params, grads)`` returns new arrays (see the module docstring).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, no_decay=None,
                 schedule=None):
        if not isinstance(params, dict) or not params:
            raise ValueError(f"params must be a non-empty dict checkpoint key -> array, got {params!r:.60}")
        self.lr = check_number(lr, "lr", 0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r:.60}")
        self.betas = (check_number(betas[0], "betas[0]", 0.0, 1.0, high_open=True),
                      check_number(betas[1], "betas[1]", 0.0, 1.0, high_open=True))
        self.eps = check_number(eps, "eps", 0.0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        if no_decay is not None and not callable(no_decay):
            raise TypeError(f"no_decay must be a function key -> bool or None, got {type(no_decay).__name__}")
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a function step -> multiplier or None, got {type(schedule).__name__}")
        self.schedule = schedule
        self.shapes = {key: np.shape(value) for key, value in params.items()}
        check_like(params, self.shapes, "params", "params")  # floating point
        self.decay = {key: self.weight_decay if no_decay is None or not no_decay(key) else 0.0 for key in params}
        dtypes = {key: np.asarray(value).dtype for key, value in params.items()}
        self.exp_avg = {key: np.zeros(self.shapes[key], dtypes[key]) for key in params}  # m
        self.exp_avg_sq = {key: np.zeros(self.shapes[key], dtypes[key]) for key in params}  # v
        self.steps = 0  # completed steps

    def current_lr(self):
        """The learning rate of the next step: ``lr * schedule(steps)`` (transformers' ``get_last_lr``)."""
        return self.lr if self.schedule is None else self.lr * float(self.schedule(self.steps))

    def step(self, params, grads):
        """One AdamW step: returns a new dict of new arrays (``params``' keys, shapes and dtypes);
        ``params`` and ``grads`` are left as they are. Both must have exactly the keys and shapes
        of the ``params`` the optimiser was made with; gradients are cast to their parameter's
        dtype."""
        check_like(params, self.shapes, "params", "the optimiser's params")
        check_like(grads, self.shapes, "grads", "the optimiser's params")
        lr = self.current_lr()
        beta1, beta2 = self.betas
        t = self.steps + 1
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        step_size = lr / bias_correction1
        new = {}
        for key, value in params.items():
            theta = np.asarray(value)
            g = np.asarray(grads[key], dtype=theta.dtype)
            m, v = self.exp_avg[key], self.exp_avg_sq[key]
            if self.decay[key] != 0:
                theta = theta * (1 - lr * self.decay[key])
            m += (1 - beta1) * (g - m)
            v *= beta2
            v += (1 - beta2) * g * g
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            new[key] = theta - step_size * (m / denom)
        self.steps = t
        return new
