"""The elementwise and row-wise pieces of DeBERTa, as small pure NumPy functions (the book).

Every function here matches its PyTorch / Hugging Face transformers counterpart (transformers
4.57, torch 2.13): the activations of ``transformers.activations.ACT2FN``, ``nn.Linear``,
``nn.LayerNorm``, and softmax with DeBERTa's attention mask. The task losses are in
:mod:`pydeberta.losses`; the engine's faster versions of ``linear``, ``gelu`` and ``layer_norm``
in :mod:`pydeberta.engine.kernels`.

Conventions
-----------
* Inputs are converted with ``np.asarray``; floating dtypes are kept and anything else (ints,
  bools) becomes float64. Outputs have the input's floating dtype: float32 in, float32 out;
  float64 in, float64 out. (float16 runs but is not a target.)
* ``erf`` and the activations built on it (``gelu``, ``gelu_10``, ``laplace``) and
  ``layer_norm`` evaluate in float64 and round once to the input dtype; everything else computes
  in the input dtype, in the same order of operations as the PyTorch code it mirrors.
* Shape letters follow the project: ``N`` rows, ``C`` classes, ``Q``/``K`` query/key length.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .quantization import quantized_linear

__all__ = [
    "ACT2FN",
    "ACT2GRAD",
    "erf",
    "gelu",
    "gelu_10",
    "gelu_fast",
    "gelu_new",
    "get_activation",
    "get_activation_backward",
    "identity",
    "laplace",
    "layer_norm",
    "layer_norm_backward",
    "leaky_relu",
    "linear",
    "linear_backward",
    "log_softmax",
    "masked_softmax",
    "masked_softmax_backward",
    "mish",
    "quick_gelu",
    "relu",
    "relu2",
    "relu6",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_backward",
    "swish",
    "tanh",
]


def as_floating(x) -> np.ndarray:
    """``x`` as an ndarray of a floating dtype: float dtypes are kept, others become float64."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return x
    return x.astype(np.float64)


# --------------------------------------------------------------------------------------------
# erf
# --------------------------------------------------------------------------------------------
# W. J. Cody's rational Chebyshev approximations, as in his routine CALERF (SPECFUN, netlib;
# ACM TOMS Algorithm 715, 1993). Coefficients are listed highest degree first, for _horner;
# the denominators are monic. _horner performs the same operations in the same order as
# CALERF's loops.
_ERF_A = (  # numerator of erf(y)/y in z = y*y, |y| <= 0.46875
    1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
    3.77485237685302021e02, 3.20937758913846947e03,
)
_ERF_B = (
    1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERFC_C = (  # numerator of erfc(y)*exp(y*y) in y, 0.46875 < y <= 4
    2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
    6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
    1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
)
_ERFC_D = (
    1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
    1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
    3.43936767414372164e03, 1.23033935480374942e03,
)
_ERFC_P = (  # numerator of the asymptotic correction in z = 1/(y*y), y > 4
    1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
    1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4,
)
_ERFC_Q = (
    1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
    6.05183413124413191e-2, 2.33520497626869185e-3,
)
_ERF_THRESH = 0.46875
_ERF_XBIG = 26.543  # erfc(y) underflows to 0 in float64 beyond this (Cody's XBIG)
_SQRPI = 5.6418958354775628695e-1  # 1/sqrt(pi)


def _horner(coefficients, t: np.ndarray) -> np.ndarray:
    """c[0] t^n + c[1] t^(n-1) + ... + c[n] by Horner's rule, (((c[0] t + c[1]) t + c[2]) t ...),
    updating one buffer in place (the same arithmetic as np.polyval, without its temporaries)."""
    result = np.full_like(t, coefficients[0])
    for c in coefficients[1:]:
        result *= t
        result += c
    return result


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """exp(-y*y) without the rounding error of forming y*y: split y = s + r with s = trunc(16y)/16,
    so s*s is exact and exp(-y*y) = exp(-s*s) * exp(-(y - s)(y + s)) (Cody's trick)."""
    s = np.trunc(y * 16.0) / 16.0
    return np.exp(-s * s) * np.exp(-(y - s) * (y + s))


def erf(x) -> np.ndarray:
    """The error function, erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise.

    W. J. Cody's rational Chebyshev approximations (Cody, "Rational Chebyshev approximations
    for the error function", Math. Comp. 23 (1969) 631-637; the routine CALERF of SPECFUN,
    ACM TOMS Algorithm 715 (1993)), with y = |x|:

    * y <= 0.46875:       erf(x)  = x * A(y^2) / B(y^2)
    * 0.46875 < y <= 4:   erfc(y) = exp(-y^2) * C(y) / D(y)
    * y > 4:              erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - z * P(z) / Q(z)),  z = 1/y^2

    and erf(x) = sign(x) * (1 - erfc(y)) in the last two ranges; exp(-y^2) is formed without
    the rounding error of y^2 (see ``_exp_minus_square``). Measured against mpmath in float64:
    |error| <= 2^-52 = 2.2e-16 (one ulp of 1; two ulps of values in [0.5, 1)), i.e.
    <= 1.5e-16 * (1 + |erf(x)|). erf(+-0) = +-0, erf(+-inf) = +-1, erf(nan) = nan.

    Shape: any; returns the same shape. float32 input is evaluated in float64 and rounded once.

    >>> print(erf(np.array([-np.inf, -1.0, 0.0, 0.5, 2.0])))
    [-1.         -0.84270079  0.          0.52049988  0.99532227]
    """
    x = as_floating(x)
    x64 = x.astype(np.float64, copy=False)
    y = np.abs(x64)
    out = x64.copy()  # nan stays nan: it falls in none of the three ranges below

    small = y <= _ERF_THRESH
    z = y[small] * y[small]
    out[small] = x64[small] * _horner(_ERF_A, z) / _horner(_ERF_B, z)

    middle = (y > _ERF_THRESH) & (y <= 4.0)
    ym = y[middle]
    erfc = _horner(_ERFC_C, ym) / _horner(_ERFC_D, ym) * _exp_minus_square(ym)
    out[middle] = np.copysign((0.5 - erfc) + 0.5, x64[middle])

    large = y > 4.0
    yl = np.minimum(y[large], _ERF_XBIG)  # erf is +-1 beyond XBIG; keeps inf out of the sums
    z = 1.0 / (yl * yl)
    erfc = (_SQRPI - z * _horner(_ERFC_P, z) / _horner(_ERFC_Q, z)) / yl
    erfc = erfc * _exp_minus_square(yl)
    out[large] = np.copysign((0.5 - erfc) + 0.5, x64[large])
    return out.astype(x.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# Activations (transformers.activations.ACT2FN)
# --------------------------------------------------------------------------------------------
_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(x) -> np.ndarray:
    """Exact GELU: gelu(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))), elementwise.

    transformers' ``"gelu"`` (and ``"gelu_python"``), torch's ``F.gelu(x)``; DeBERTa's default
    ``hidden_act``. Not the tanh approximation (that is ``gelu_new``). Evaluated in float64.

    Shape: any; returns the same shape and dtype.

    >>> print(gelu(np.array([-3.0, -1.0, 0.0, 1.0, 3.0])))
    [-0.00404969 -0.15865525  0.          0.84134475  2.99595031]
    """
    x = as_floating(x)
    x64 = x.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):  # gelu(-inf) = -inf * 0 = nan, as in torch
        return (0.5 * x64 * (1.0 + erf(x64 * _SQRT1_2))).astype(x.dtype, copy=False)


def gelu_10(x) -> np.ndarray:
    """GELU clipped to [-10, 10]: clip(gelu(x), -10, 10) (transformers' ``"gelu_10"``).

    Shape: any; returns the same shape and dtype.
    """
    return np.clip(gelu(x), -10, 10)


def gelu_new(x) -> np.ndarray:
    """Tanh approximation of GELU:
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), elementwise.

    transformers' ``"gelu_new"`` (NewGELUActivation), ``"gelu_pytorch_tanh"`` (torch's
    ``F.gelu(x, approximate="tanh")``), ``"gelu_python_tanh"`` and ``"gelu_accurate"``: the same
    formula, differing only in rounding. For huge |x| the cube overflows to inf and tanh
    saturates at +-1, as in torch; that overflow is expected and not reported.

    Shape: any; returns the same shape and dtype.

    >>> print(gelu_new(np.array([-1.0, 0.0, 1.0])))
    [-0.15880801  0.          0.84119199]
    """
    x = as_floating(x)
    with np.errstate(over="ignore"):
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))


def gelu_fast(x) -> np.ndarray:
    """transformers' ``"gelu_fast"`` (FastGELUActivation), with its constants as written there:
    0.5 * x * (1 + tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))), elementwise. As in
    ``gelu_new``, overflow of x * x for huge |x| saturates tanh and is not reported.

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    with np.errstate(over="ignore"):
        return 0.5 * x * (1.0 + np.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def sigmoid(x) -> np.ndarray:
    """Logistic sigmoid: sigmoid(x) = 1 / (1 + exp(-x)), elementwise.

    Evaluated as 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, with e = exp(-|x|) <= 1, so
    exp never overflows.

    Shape: any; returns the same shape and dtype.

    >>> print(sigmoid(np.array([-1000.0, 0.0, 1000.0])))
    [0.  0.5 1. ]
    """
    x = as_floating(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def quick_gelu(x) -> np.ndarray:
    """transformers' ``"quick_gelu"``: x * sigmoid(1.702 * x), elementwise.

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    return x * sigmoid(1.702 * x)


def silu(x) -> np.ndarray:
    """SiLU / swish: silu(x) = x * sigmoid(x), elementwise (transformers' ``"silu"``, ``"swish"``).

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    return x * sigmoid(x)


swish = silu


def relu(x) -> np.ndarray:
    """relu(x) = max(x, 0), elementwise; nan stays nan.

    Shape: any; returns the same shape and dtype.
    """
    return np.maximum(as_floating(x), 0)


def relu2(x) -> np.ndarray:
    """Squared ReLU: relu(x)^2, elementwise (transformers' ``"relu2"``).

    Shape: any; returns the same shape and dtype.
    """
    return np.square(relu(x))


def relu6(x) -> np.ndarray:
    """relu6(x) = min(max(x, 0), 6), elementwise (torch's ``nn.ReLU6``).

    Shape: any; returns the same shape and dtype.
    """
    return np.minimum(relu(x), 6)


def leaky_relu(x, negative_slope: float = 0.01) -> np.ndarray:
    """leaky_relu(x) = x if x > 0 else negative_slope * x, elementwise (torch's ``nn.LeakyReLU``;
    transformers' ``"leaky_relu"`` uses the default slope 0.01).

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    return np.where(x > 0, x, x * negative_slope)


def tanh(x) -> np.ndarray:
    """Hyperbolic tangent, elementwise.

    Shape: any; returns the same shape and dtype.
    """
    return np.tanh(as_floating(x))


def mish(x) -> np.ndarray:
    """Mish: x * tanh(softplus(x)), softplus(x) = log(1 + exp(x)), elementwise.

    softplus is evaluated as ``np.logaddexp(0, x)``, which neither overflows nor loses the tiny
    values for very negative x.

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    return x * np.tanh(np.logaddexp(0, x))


def identity(x) -> np.ndarray:
    """identity(x) = x (transformers' ``"linear"`` activation).

    Shape: any; returns the same shape and dtype.
    """
    return as_floating(x)


def laplace(x, mu: float = 0.707107, sigma: float = 0.282095) -> np.ndarray:
    """transformers' ``"laplace"`` activation (MEGA):
    0.5 * (1 + erf((x - mu) / (sigma * sqrt(2)))), elementwise, i.e. the normal CDF with mean mu
    and standard deviation sigma. Evaluated in float64.

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    z = (x.astype(np.float64, copy=False) - mu) / (sigma * math.sqrt(2.0))
    return (0.5 * (1.0 + erf(z))).astype(x.dtype, copy=False)


ACT2FN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": gelu,
    "gelu_10": gelu_10,
    "gelu_fast": gelu_fast,
    "gelu_new": gelu_new,
    "gelu_python": gelu,
    "gelu_pytorch_tanh": gelu_new,
    "gelu_python_tanh": gelu_new,
    "gelu_accurate": gelu_new,
    "laplace": laplace,
    "leaky_relu": leaky_relu,
    "linear": identity,
    "mish": mish,
    "quick_gelu": quick_gelu,
    "relu": relu,
    "relu2": relu2,
    "relu6": relu6,
    "sigmoid": sigmoid,
    "silu": silu,
    "swish": silu,
    "tanh": tanh,
}
"""Activation functions keyed by transformers' ``ACT2FN`` names (``config.hidden_act``).

Every parameter-free entry of transformers 4.57's table; ``"prelu"`` and ``"xielu"`` are left
out because they carry learned parameters, which no DeBERTa config uses.
"""


def get_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The activation function called ``name`` in ``ACT2FN`` (e.g. ``config.hidden_act``).

    Raises ValueError naming the argument, its value and the accepted names when ``name`` is
    not in ``ACT2FN``.

    >>> get_activation("gelu") is gelu
    True
    """
    try:
        return ACT2FN[name]
    except (KeyError, TypeError):
        choices = ", ".join(repr(key) for key in ACT2FN)
        raise ValueError(
            f"get_activation: unknown activation name={name!r}; expected one of {choices}"
        ) from None


# --------------------------------------------------------------------------------------------
# Activation derivatives: act_backward(grad, x) = grad * act'(x), as torch's autograd computes it
# --------------------------------------------------------------------------------------------
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_backward(grad, x) -> np.ndarray:
    """d gelu / dx = Phi(x) + x * phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi); returns
    ``grad * gelu'(x)``, evaluated in float64 as :func:`gelu`.

    Shapes: grad and x of one shape; returns it, in x's dtype.
    """
    x = as_floating(x)
    x64 = x.astype(np.float64, copy=False)
    cdf = 0.5 * (1.0 + erf(x64 * _SQRT1_2))
    pdf = np.exp(-0.5 * x64 * x64) * _INV_SQRT_2PI
    return (grad * (cdf + x64 * pdf)).astype(x.dtype, copy=False)


def gelu_10_backward(grad, x) -> np.ndarray:
    """``grad * gelu'(x)`` where ``gelu(x)`` lies inside [-10, 10], 0 where the clip holds it
    (torch's clamp passes the gradient at the bounds themselves)."""
    y = gelu(x)
    return np.where((y >= -10) & (y <= 10), gelu_backward(grad, x), 0)


def _tanh_gelu_backward(grad, x, k) -> np.ndarray:
    """The derivative of 0.5 x (1 + tanh(k (x + 0.044715 x^3))):
    0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2), t = tanh(k (x + 0.044715 x^3))."""
    x = as_floating(x)
    with np.errstate(over="ignore"):
        t = np.tanh(k * (x + 0.044715 * (x * x * x)))
    return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x))


def gelu_new_backward(grad, x) -> np.ndarray:
    """``grad * gelu_new'(x)`` (:func:`_tanh_gelu_backward` with k = sqrt(2/pi))."""
    return _tanh_gelu_backward(grad, x, _SQRT_2_OVER_PI)


def gelu_fast_backward(grad, x) -> np.ndarray:
    """``grad * gelu_fast'(x)`` (:func:`_tanh_gelu_backward` with k = 0.7978845608)."""
    return _tanh_gelu_backward(grad, x, 0.7978845608)


def sigmoid_backward(grad, x) -> np.ndarray:
    """sigmoid'(x) = s (1 - s), s = sigmoid(x); returns ``grad * s (1 - s)``."""
    s = sigmoid(x)
    return grad * s * (1.0 - s)


def quick_gelu_backward(grad, x) -> np.ndarray:
    """d/dx x s(1.702 x) = s + 1.702 x s (1 - s), s = sigmoid(1.702 x)."""
    x = as_floating(x)
    s = sigmoid(1.702 * x)
    return grad * (s + 1.702 * x * s * (1.0 - s))


def silu_backward(grad, x) -> np.ndarray:
    """d/dx x s(x) = s + x s (1 - s), s = sigmoid(x)."""
    x = as_floating(x)
    s = sigmoid(x)
    return grad * (s + x * s * (1.0 - s))


def relu_backward(grad, x) -> np.ndarray:
    """relu'(x) = 1 for x > 0, else 0 (0 at x = 0, as torch)."""
    x = as_floating(x)
    return grad * (x > 0).astype(x.dtype)


def relu2_backward(grad, x) -> np.ndarray:
    """d/dx relu(x)^2 = 2 relu(x)."""
    return grad * 2 * relu(x)


def relu6_backward(grad, x) -> np.ndarray:
    """relu6'(x) = 1 for 0 < x < 6, else 0 (torch's hardtanh: 0 at both bounds)."""
    x = as_floating(x)
    return grad * ((x > 0) & (x < 6)).astype(x.dtype)


def leaky_relu_backward(grad, x, negative_slope: float = 0.01) -> np.ndarray:
    """leaky_relu'(x) = 1 for x > 0, else ``negative_slope``."""
    x = as_floating(x)
    return grad * np.where(x > 0, 1.0, negative_slope).astype(x.dtype)


def tanh_backward(grad, x) -> np.ndarray:
    """tanh'(x) = 1 - tanh(x)^2."""
    t = tanh(x)
    return grad * (1.0 - t * t)


def mish_backward(grad, x) -> np.ndarray:
    """d/dx x tanh(sp(x)) = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x)."""
    x = as_floating(x)
    t = np.tanh(np.logaddexp(0, x))
    return grad * (t + x * (1.0 - t * t) * sigmoid(x))


def identity_backward(grad, x) -> np.ndarray:
    """identity'(x) = 1."""
    return np.asarray(grad)


def laplace_backward(grad, x, mu: float = 0.707107, sigma: float = 0.282095) -> np.ndarray:
    """The normal density: exp(-z^2) / (sigma sqrt(2 pi)), z = (x - mu) / (sigma sqrt(2));
    evaluated in float64 as :func:`laplace`."""
    x = as_floating(x)
    z = (x.astype(np.float64, copy=False) - mu) / (sigma * math.sqrt(2.0))
    return (grad * np.exp(-z * z) * (_INV_SQRT_2PI / sigma)).astype(x.dtype, copy=False)


ACT2GRAD: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    name: {gelu: gelu_backward, gelu_10: gelu_10_backward, gelu_new: gelu_new_backward,
           gelu_fast: gelu_fast_backward, laplace: laplace_backward, leaky_relu: leaky_relu_backward,
           identity: identity_backward, mish: mish_backward, quick_gelu: quick_gelu_backward,
           relu: relu_backward, relu2: relu2_backward, relu6: relu6_backward, sigmoid: sigmoid_backward,
           silu: silu_backward, tanh: tanh_backward}[forward]
    for name, forward in ACT2FN.items()
}
"""``ACT2FN``'s names -> ``act_backward(grad, x) = grad * act'(x)``."""


def get_activation_backward(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The backward of :func:`get_activation` ``(name)`` (same names, same error)."""
    get_activation(name)
    return ACT2GRAD[name]


# --------------------------------------------------------------------------------------------
# Linear, LayerNorm
# --------------------------------------------------------------------------------------------
def linear(x, weight, bias=None, weight_scale=None) -> np.ndarray:
    """Affine map of ``nn.Linear``: y = x @ weight.T + bias.

    Shapes: x [..., in], weight [out, in] (as stored in checkpoints), bias [out] or None;
    returns [..., out], in the promoted dtype of x and weight (x's dtype when they agree).
    A layer quantized to int8 has ``weight_scale`` [out] beside its int8 ``weight``: the product
    is then :func:`pydeberta.quantization.quantized_linear`, in float32.

    >>> x = np.array([[1.0, 2.0]])                 # [1, in=2]
    >>> w = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])   # [out=3, in=2]
    >>> print(linear(x, w, np.array([0.0, 0.5, 1.0])))         # [1, out=3]
    [[ 1.   3.5 -1. ]]
    """
    if weight_scale is not None:
        return quantized_linear(x, weight, weight_scale, bias)
    y = as_floating(x) @ np.asarray(weight).T  # [..., out]
    return y if bias is None else y + bias


def linear_backward(grad, x, weight, bias=None):
    """Backward of :func:`linear`, y = x @ weight.T + bias::

        dx = dy @ weight        dweight = sum over rows of dy^T x        dbias = sum over rows of dy

    Shapes: grad ``[..., out]``, x ``[..., in]``, weight ``[out, in]``; returns
    ``(dx [..., in], {"weight": [out, in], "bias": [out]})`` (no ``"bias"`` when bias is None).
    """
    x = as_floating(x)
    rows = grad.reshape(-1, grad.shape[-1])  # [M, out]
    grads = {"weight": rows.T @ x.reshape(-1, x.shape[-1])}  # [out, in]
    if bias is not None:
        grads["bias"] = rows.sum(axis=0)  # [out]
    return grad @ np.asarray(weight), grads  # [..., in]


def layer_norm(x, weight, bias, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, as ``nn.LayerNorm(C, eps)``:

        y = (x - mean) / sqrt(var + eps) * weight + bias

    with mean and the biased (population) variance var = mean((x - mean)^2) taken over the last
    axis, and eps inside the square root: two passes (mean, then the variance of the centred
    values) in float64, rounded once to x's dtype. DeBERTa's blocks call it on ``x + residual``
    (post-LayerNorm "add & norm"), with eps = 1e-7.

    Shapes: x [..., C], weight [C], bias [C]; returns [..., C].

    >>> print(layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3), np.zeros(3), eps=0.0))
    [[-1.22474487  0.          1.22474487]]
    """
    x = as_floating(x)
    x64 = x.astype(np.float64, copy=False)
    centred = x64 - x64.mean(axis=-1, keepdims=True)  # [..., C]
    var = np.mean(centred * centred, axis=-1, keepdims=True)  # [..., 1]
    y = centred / np.sqrt(var + eps) * weight + bias  # [..., C]
    return y.astype(x.dtype, copy=False)


def layer_norm_backward(grad, x, weight, bias, eps: float):
    """Backward of :func:`layer_norm`. With xhat = (x - mean) / sigma, sigma = sqrt(var + eps)::

        dweight = sum over rows of dy * xhat          dbias = sum over rows of dy
        g       = dy * weight
        dx      = (g - mean(g) - xhat * mean(g * xhat)) / sigma          (means over the last axis)

    In float64, rounded once to x's dtype, as the forward.

    Shapes: grad and x ``[..., C]``, weight and bias ``[C]``; returns
    ``(dx [..., C], {"weight": [C], "bias": [C]})``.
    """
    x = as_floating(x)
    x64 = x.astype(np.float64, copy=False)
    centred = x64 - x64.mean(axis=-1, keepdims=True)  # [..., C]
    sigma = np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps)  # [..., 1]
    xhat = centred / sigma  # [..., C]
    dy = np.asarray(grad, dtype=np.float64).reshape(-1, x.shape[-1])  # [M, C]
    grads = {"weight": (dy * xhat.reshape(dy.shape)).sum(axis=0).astype(x.dtype),
             "bias": dy.sum(axis=0).astype(x.dtype)}  # [C] each
    g = np.asarray(grad, dtype=np.float64) * weight  # [..., C]
    dx = (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / sigma
    return dx.astype(x.dtype, copy=False), grads


# --------------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------------
def softmax(x, axis: int = -1) -> np.ndarray:
    """softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m) along ``axis``, m = max_j x_j.

    Subtracting the maximum keeps exp from overflowing; the result is unchanged.

    Shape: any; returns the same shape and dtype.

    >>> print(softmax(np.array([1000.0, 1000.0, -np.inf])))
    [0.5 0.5 0. ]
    """
    x = as_floating(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1) -> np.ndarray:
    """log_softmax(x)_i = (x_i - m) - log(sum_j exp(x_j - m)) along ``axis``, m = max_j x_j.

    Shape: any; returns the same shape and dtype.
    """
    x = as_floating(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def masked_softmax(scores, visible) -> np.ndarray:
    """Attention probabilities of DeBERTa (transformers >= 4.47):

        probs = softmax(where(visible, scores, finfo(dtype).min), axis=-1)

    Hidden keys get the most negative finite score, so in a row with at least one visible key
    they receive exactly 0; a row with no visible key (a padded query) becomes uniform, 1/K over
    all keys. (transformers <= 4.46 zeroed the hidden entries afterwards; 4.47+ does not.)

    Shapes: scores [..., Q, K]; visible bool, broadcastable to scores (e.g. [B, 1, Q, K]
    against [B, H, Q, K]); returns the broadcast shape, in the scores' dtype.

    >>> scores = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    >>> visible = np.array([[True, True, False], [False, False, False]])
    >>> print(masked_softmax(scores, visible).round(4))
    [[0.2689 0.7311 0.    ]
     [0.3333 0.3333 0.3333]]
    """
    scores = as_floating(scores)
    visible = np.asarray(visible)
    if visible.dtype != np.bool_:
        raise TypeError(f"masked_softmax: visible must be a bool array, got dtype {visible.dtype}")
    return softmax(np.where(visible, scores, np.finfo(scores.dtype).min), axis=-1)


def softmax_backward(grad, probs) -> np.ndarray:
    """Backward of :func:`softmax` along the last axis, from its output p:
    dx_i = p_i (dy_i - sum_j dy_j p_j).

    Shapes: grad and probs ``[..., K]``; returns ``[..., K]``.
    """
    return probs * (grad - (grad * probs).sum(axis=-1, keepdims=True))


def masked_softmax_backward(grad, probs, visible) -> np.ndarray:
    """Backward of :func:`masked_softmax`: :func:`softmax_backward` on the visible scores, 0 on
    the hidden ones (their score was replaced by a constant; a fully masked row gets 0 everywhere).

    Shapes: grad and probs ``[..., Q, K]``, visible bool broadcastable to them; returns ``[..., Q, K]``.
    """
    return np.where(visible, softmax_backward(grad, probs), 0).astype(probs.dtype, copy=False)
