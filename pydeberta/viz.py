"""Figures of what the model computes (matplotlib, the optional extra ``viz``).

Every function takes what the model returned (called with ``output_attentions=True`` and, for
the score terms and the convolution, ``output_study=True``) or the sizes of the position
functions, draws it, and returns ``(figure, axes)`` without showing it, so a notebook can
restyle it. Nothing is recomputed that the model already returned: the arrays drawn are the
model's own (``ax.images[0].get_array()`` equals them).

Colours are the same everywhere:

- :data:`PROBABILITY_CMAP` for attention probabilities (0 to 1);
- :data:`SCORE_CMAP`, diverging and centred on zero, for signed scores (c2c, c2p, p2c, their
  sum, the convolution's output);
- :data:`POSITION_CMAP`, diverging, for relative positions and table rows (centred on 0 / ``S``);
- :data:`STATISTIC_CMAP` for non-negative statistics (entropy, distance);
- :data:`TERM_COLORS`: one colour per score term, used for titles, frames, bars and lines.

Functions:

=====================================  ==========================================================
``plot_log_buckets``                   distance ``r`` -> bucket, identity and log bands marked
``plot_relative_positions``            ``i - j``, its bucket and the table row ``c(i, j)`` [N, N]
``plot_attention``                     one head's attention probabilities
``plot_score_terms``                   c2c, c2p, p2c side by side with their sum, one scale
``plot_attention_terms``               probabilities beside c2c, c2p, p2c (``pydeberta attention``)
``plot_term_magnitudes``               spread of each term per layer (bars in the term colours)
``plot_model_view``                    layers x heads grid of attention maps
``plot_attention_entropy``             per-token attention entropy by layer (mean over heads)
``plot_attention_distance``            per-token mean attended distance by layer
``plot_conv_contribution``             the nGiE convolution's output per token and channel
``to_bertviz``                         attentions as bertviz's ``head_view``/``model_view`` take them
=====================================  ==========================================================

The numbers behind three of them are functions of their own: :func:`term_magnitudes`,
:func:`attention_entropy` and :func:`attention_distance`.
"""

import sys

import numpy as np

from .positions import build_relative_position, make_log_bucket_position, relative_index

PROBABILITY_CMAP = "viridis"
SCORE_CMAP = "RdBu_r"
POSITION_CMAP = "PuOr"
STATISTIC_CMAP = "cividis"
TERM_COLORS = {"c2c": "#1b9e77", "c2p": "#d95f02", "p2c": "#7570b3", "sum": "#333333"}
"""One colour per score term (and their sum), the same in every figure."""
CONV_COLOR = "#e7298a"
BAND_COLORS = {"identity": "#a6cee3", "log": "#fdbf6f", "beyond": "#dddddd"}
TERMS = ("c2c", "c2p", "p2c")
ANNOTATE_MAX = 16  # matrices up to this size get their values written in the cells
MAX_TICKS = 40  # token labels per axis at most: longer sequences label every k-th token
SCORE_LABEL = "score / sqrt(D·sf)"


def _pyplot():
    """``matplotlib.pyplot``; headless scripts get the Agg backend, a backend already chosen
    (notebook inline, ipympl, a desktop GUI) is kept."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:
        backend = matplotlib.get_backend().lower()
        if backend not in ("agg", "module://matplotlib_inline.backend_inline"):
            matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- checks
def _attentions(output):
    if getattr(output, "attentions", None) is None:
        raise ValueError("this figure needs a model output from output_attentions=True")
    return output.attentions


def _study(output):
    if getattr(output, "study", None) is None:
        raise ValueError("this figure needs a model output from output_study=True")
    return output.study


def _check_tokens(tokens, n, what="tokens"):
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"{what}: got {len(tokens)} labels for a sequence of length {n}")
    return tokens


def _check_index(value, size, name):
    if not -size <= value < size:
        raise ValueError(f"{name} must lie in [0, {size}), got {value}")


# --------------------------------------------------------------------------- drawing helpers
def _token_ticks(ax, tokens, x=True, y=True, fontsize=8):
    """Token labels on the axes: every token up to :data:`MAX_TICKS`, else every k-th
    (``k = ceil(N / MAX_TICKS)``), so that 200 tokens stay readable."""
    step = -(-len(tokens) // MAX_TICKS)
    positions, labels = range(0, len(tokens), step), list(tokens)[::step]
    if x:
        ax.set_xticks(positions, labels, rotation=90, fontsize=fontsize)
    if y:
        ax.set_yticks(positions, labels, fontsize=fontsize)


def _frame(ax, color):
    """Colour an axes' title and frame (the term colours)."""
    ax.title.set_color(color)
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2)


def _annotate(ax, matrix, fmt="{:d}"):
    n, m = matrix.shape
    if max(n, m) > ANNOTATE_MAX:
        return
    for i in range(n):
        for j in range(m):
            ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=6)


def _heatmap(ax, matrix, tokens, title, cmap, symmetric, colorbar=True, limit=None, label=None):
    """One ``[Q, K]`` heatmap with tokens as tick labels (queries down, keys across); ``colorbar``
    True draws its own (labelled ``label``), False none."""
    if limit is None:
        limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit if symmetric else 0.0, vmax=limit if symmetric else None)
    ax.set_title(title)
    _token_ticks(ax, tokens)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    return image


def _new_axes(ax, figsize):
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax.figure, ax


# --------------------------------------------------------------------------- positions
def plot_log_buckets(bucket_size, max_position, max_distance=None, ax=None):
    """The log-bucket function ``r -> bucket(r)`` of
    :func:`pydeberta.positions.make_log_bucket_position`, its bands marked.

    ``|r| <= mid = bucket_size // 2`` is the identity band (every distance its own bucket);
    ``mid < |r| < max_position`` is the log band (buckets widen logarithmically, reaching
    ``±(2 mid - 1)`` at ``max_position - 1``); beyond ``max_position`` the function is not clamped
    (the table-row clip ``c(i, j)`` saturates instead). The dashed line is ``bucket = r``.

    Args:
        bucket_size: ``position_buckets``; max_position: ``max_relative_positions`` (the config's
            ``max_relative_span``).
        max_distance: largest ``|r|`` drawn (default ``max_position + max_position // 4``).
        ax: axes to draw on (default: a new figure).
    Returns:
        ``(figure, ax)``; ``ax.lines[0]`` holds ``r`` (x) and ``bucket(r)`` (y).
    """
    if bucket_size <= 0 or max_position <= 0:
        raise ValueError(f"log buckets need bucket_size > 0 and max_position > 0, got {bucket_size}, {max_position}")
    fig, ax = _new_axes(ax, (6.4, 4.4))
    R = int(max_distance if max_distance is not None else max_position + max_position // 4)
    r = np.arange(-R, R + 1)
    bucket = make_log_bucket_position(r, bucket_size, max_position)
    mid = bucket_size // 2
    ax.plot(r, bucket, drawstyle="steps-mid", color=TERM_COLORS["sum"], lw=1.5, label="bucket(r)")
    ax.plot(r, r, ls="--", color="grey", lw=0.8, label="r")
    ax.axvspan(-mid, mid, color=BAND_COLORS["identity"], alpha=0.5, lw=0, label=f"identity band |r| ≤ {mid}")
    for lo, hi in ((mid, min(max_position, R)), (-min(max_position, R), -mid)):
        ax.axvspan(lo, hi, color=BAND_COLORS["log"], alpha=0.5, lw=0,
                   label=f"log band {mid} < |r| < {max_position}" if lo > 0 else None)
    if R > max_position:
        for lo, hi in ((max_position, R), (-R, -max_position)):
            ax.axvspan(lo, hi, color=BAND_COLORS["beyond"], alpha=0.6, lw=0,
                       label=f"|r| ≥ {max_position} (not clamped)" if lo > 0 else None)
    for level in (2 * mid - 1, -(2 * mid - 1)):
        ax.axhline(level, color="grey", lw=0.5, ls=":")
    limit = max(float(np.abs(bucket).max()), 2 * mid) * 1.1
    ax.set_ylim(-limit, limit)
    ax.set_xlim(-R, R)
    ax.set_xlabel("relative distance r = i − j")
    ax.set_ylabel("bucket")
    ax.set_title(f"log buckets (position_buckets={bucket_size}, max_position={max_position})")
    ax.legend(fontsize=7, loc="upper left")
    return fig, ax


def plot_relative_positions(config, length=None, tokens=None):
    """The ``[N, N]`` relative positions of a sequence: ``i - j``, its log bucket (what
    :func:`~pydeberta.positions.build_relative_position` returns, the model's
    ``study.relative_positions``) and the table row ``c(i, j)`` both relative terms read
    (:func:`~pydeberta.positions.relative_index`, the model's ``study.rel_index``).

    With log buckets, the bucket and table-row maps mark the identity band ``|i - j| <= m``
    (``m = position_buckets // 2``) with two dashed diagonals: inside it every distance is its
    own bucket, outside it buckets widen logarithmically. The band shows only on a sequence longer
    than ``m``; a few hundred positions show both regions.

    Args:
        config: a :class:`~pydeberta.DebertaV2Config` (its ``position_buckets``,
            ``max_relative_span`` and ``att_span``).
        length: ``N`` (default ``len(tokens)``); tokens: optional tick labels.
    Returns:
        ``(figure, axes)`` with three axes: ``i - j``, bucket, ``c(i, j)``; the band's two lines
        are ``axes[1].lines`` and ``axes[2].lines`` (none without log buckets).
    """
    if length is None:
        if tokens is None:
            raise ValueError("plot_relative_positions needs length or tokens")
        length = len(tokens)
    labels = _check_tokens(tokens, length) if tokens is not None else [str(i) for i in range(length)]
    plt = _pyplot()
    S, buckets, max_position = config.att_span, config.position_buckets, config.max_relative_span
    raw = build_relative_position(length, length)
    bucketed = build_relative_position(length, length, buckets, max_position)
    rows = relative_index(length, length, S, buckets, max_position)
    fig, axes = plt.subplots(1, 3, figsize=(3 * 4.3, 4.4), constrained_layout=True)
    bucket_title = f"bucket(i − j), {buckets} buckets" if buckets > 0 else "bucket(i − j) (no buckets: = i − j)"
    for ax, matrix, title, centre in ((axes[0], raw, "i − j", 0), (axes[1], bucketed, bucket_title, 0),
                                      (axes[2], rows, f"table row c(i, j) = clip(bucket + {S}, 0, {2 * S - 1})", S)):
        limit = max(float(np.abs(matrix - centre).max()), 1.0)  # each map its own range: the buckets' is narrower
        image = ax.imshow(matrix, cmap=POSITION_CMAP, vmin=centre - limit, vmax=centre + limit)
        ax.set_title(title, fontsize=9)
        _token_ticks(ax, labels)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
        _annotate(ax, matrix)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    mid = buckets // 2
    if buckets > 0 and max_position > 0 and mid < length - 1:
        for ax in axes[1:]:
            for offset in (-mid, mid):  # the diagonals i - j = ±m, in (key j, query i) coordinates
                ax.plot([max(0, -offset), min(length, length - offset) - 1],
                        [max(0, offset), min(length, length + offset) - 1], "--", color="black",
                        linewidth=1.2, label=f"identity band |i − j| ≤ {mid}" if offset < 0 else None)
        axes[1].legend(loc="lower left", fontsize=7)
    return fig, axes


# --------------------------------------------------------------------------- one head
def plot_attention(output, tokens, layer=0, head=0, batch_index=0, ax=None):
    """One head's attention probabilities ``output.attentions[layer][batch_index, head]``.

    Returns:
        ``(figure, ax)``; ``ax.images[0]`` holds the ``[N, N]`` probabilities.
    """
    attentions = _attentions(output)
    _check_index(layer, len(attentions), "layer")
    _check_index(head, attentions[layer].shape[1], "head")
    _check_index(batch_index, attentions[layer].shape[0], "batch_index")
    probs = attentions[layer][batch_index, head]  # [N, N]
    tokens = _check_tokens(tokens, probs.shape[-1])
    fig, ax = _new_axes(ax, (5.2, 4.6))
    _heatmap(ax, probs, tokens, f"attention, layer {layer} head {head}", PROBABILITY_CMAP, symmetric=False)
    return fig, ax


def _terms(output, layer, head, batch_index):
    study = _study(output)
    _check_index(layer, len(study.c2c), "layer")
    _check_index(head, study.c2c[layer].shape[1], "head")
    _check_index(batch_index, study.c2c[layer].shape[0], "batch_index")
    out = {}
    for name in TERMS:
        term = getattr(study, name)[layer]
        out[name] = None if term is None else term[batch_index, head]  # [N, N]
    return out


def plot_score_terms(output, tokens, layer=0, head=0, batch_index=0):
    """The c2c, c2p and p2c score terms of one head side by side with their sum, on one
    zero-centred colour scale, so their sizes compare at a glance.

    Each term is the model's ``study`` array (pre-softmax, already divided by ``sqrt(D · sf)``);
    the sum is what the softmax sees before masked pairs are set to ``finfo.min``. A term the
    config turns off is drawn as zeros and titled "(off)".

    Returns:
        ``(figure, axes)`` with four axes: c2c, c2p, p2c, sum (one shared colour bar).
    """
    terms = _terms(output, layer, head, batch_index)
    n = terms["c2c"].shape[-1]
    tokens = _check_tokens(tokens, n)
    matrices = {name: np.zeros_like(terms["c2c"]) if t is None else t for name, t in terms.items()}
    matrices["sum"] = matrices["c2c"] + matrices["c2p"] + matrices["p2c"]
    limit = max(float(np.abs(m).max()) for m in matrices.values()) or 1.0
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(4 * 3.9, 4.3), constrained_layout=True)
    names = {"c2c": "c2c  q·k", "c2p": "c2p  q·Kr[c]", "p2c": "p2c  k·Qr[c]", "sum": "sum (pre-softmax)"}
    image = None
    for ax, (name, matrix) in zip(axes, matrices.items()):
        off = name in TERMS and terms[name] is None
        image = _heatmap(ax, matrix, tokens, names[name] + (" (off)" if off else ""), SCORE_CMAP, symmetric=True,
                         colorbar=False, limit=limit)
        _frame(ax, TERM_COLORS[name])
        if ax is not axes[0]:
            ax.set_ylabel("")
    fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01, label="score / sqrt(D·sf)")
    fig.suptitle(f"score terms, layer {layer} head {head}")
    return fig, axes


def plot_attention_terms(output, tokens, layer=0, head=0, batch_index=0, shared_scale=False):
    """One head's attention probabilities beside its c2c, c2p and p2c score terms.

    Up to 64 tokens the four maps stand in a row; longer sequences get a 2 x 2 grid of larger
    maps, and token labels thin out past :data:`MAX_TICKS`.

    Args:
        output: a model output called with ``output_attentions=True, output_study=True``.
        tokens: the ``N`` token strings of row ``batch_index``.
        shared_scale: False gives each term its own colour scale (its own largest magnitude);
            True puts the three terms on one symmetric scale, the largest magnitude of the three,
            with one colour bar, so that their sizes compare at a glance.
    Returns:
        ``(figure, axes)`` with four axes: probabilities, c2c, c2p, p2c (the terms are the
        pre-softmax scores already divided by ``sqrt(D · sf)``; an absent term is drawn as zeros).
    """
    if output.attentions is None or output.study is None:
        raise ValueError("plot_attention_terms needs a model output from output_attentions=True, output_study=True")
    plt = _pyplot()
    probs = output.attentions[layer][batch_index, head]  # [N, N]
    terms = {name: getattr(output.study, name)[layer] for name in TERMS}
    matrices = {name: np.zeros_like(probs) if term is None else term[batch_index, head] for name, term in terms.items()}
    N = len(probs)
    if N <= 64:
        fig, axes = plt.subplots(1, 4, figsize=(4 * 4.2, 4.4), constrained_layout=True)
    else:
        side = min(4.2 + N / 40, 9.0)
        fig, axes = plt.subplots(2, 2, figsize=(2 * side + 1.5, 2 * side), constrained_layout=True)
        axes = axes.ravel()
    _heatmap(axes[0], probs, tokens, f"attention, layer {layer} head {head}", PROBABILITY_CMAP, symmetric=False,
             label="probability")
    limit = (max(float(np.abs(m).max()) for m in matrices.values()) or 1.0) if shared_scale else None
    for ax, (name, matrix) in zip(axes[1:], matrices.items()):
        image = _heatmap(ax, matrix, tokens, name + ("" if terms[name] is not None else " (off)"), SCORE_CMAP,
                         symmetric=True, colorbar=not shared_scale, limit=limit, label=SCORE_LABEL)
        _frame(ax, TERM_COLORS[name])
    if shared_scale:
        fig.colorbar(image, ax=list(axes[1:]), fraction=0.02, pad=0.02, label=f"{SCORE_LABEL}, one scale for the terms")
    return fig, axes


def term_magnitudes(output, batch_index=0, attention_mask=None):
    """Standard deviation of each score term over the visible (query, key) pairs, per layer and
    head: how much each term moves the scores (a constant shift does not change the softmax).

    Args:
        attention_mask: optional 0/1 ``[B, N]``; pairs with a padded query or key are left out.
    Returns:
        dict ``{"c2c": [L, H], "c2p": [L, H], "p2c": [L, H]}`` (zeros for a term that is off).
    """
    study = _study(output)
    N = study.c2c[0].shape[-1]
    if attention_mask is None:
        visible = np.ones((N, N), dtype=bool)
    else:
        m = np.asarray(attention_mask)[batch_index].astype(bool)
        visible = m[:, None] & m[None, :]
    result = {}
    for name in TERMS:
        rows = []
        for term, c2c in zip(getattr(study, name), study.c2c):
            if term is None:
                rows.append(np.zeros(c2c.shape[1]))
            else:
                rows.append(term[batch_index][:, visible].std(axis=-1))  # [H]
        result[name] = np.stack(rows)  # [L, H]
    return result


def plot_term_magnitudes(output, batch_index=0, attention_mask=None, ax=None):
    """Bars per layer, one per term in its colour: the spread of c2c, c2p and p2c (mean over
    heads of :func:`term_magnitudes`), with each head's value as a dot.

    Returns:
        ``(figure, ax)``; ``ax.containers[k]`` are the bars of term ``TERMS[k]``.
    """
    values = term_magnitudes(output, batch_index, attention_mask)
    L, H = values["c2c"].shape
    fig, ax = _new_axes(ax, (1.6 + 1.3 * L, 3.8))
    width = 0.8 / len(TERMS)
    x = np.arange(L)
    for k, name in enumerate(TERMS):
        pos = x + (k - 1) * width
        ax.bar(pos, values[name].mean(axis=1), width, color=TERM_COLORS[name], label=name)
        ax.scatter(np.repeat(pos, H), values[name].ravel(), s=8, color="black", zorder=3)
    ax.set_xticks(x, [f"layer {i}" for i in range(L)])
    ax.set_ylabel("std over visible pairs")
    ax.set_title("how much each score term moves the scores")
    ax.legend(fontsize=8)
    return fig, ax


# --------------------------------------------------------------------------- all heads
def plot_model_view(output, tokens, batch_index=0, layers=None, heads=None):
    """A layers x heads grid of attention maps (bertviz's "model view" as a static figure).

    Tokens label the left column (queries) and the bottom row (keys); all maps share one
    probability scale from 0 to the grid's largest value.

    Args:
        layers, heads: indices to draw (default all).
    Returns:
        ``(figure, axes)``, ``axes`` a ``[len(layers), len(heads)]`` array.
    """
    attentions = _attentions(output)
    layers = list(range(len(attentions))) if layers is None else list(layers)
    heads = list(range(attentions[0].shape[1])) if heads is None else list(heads)
    for layer in layers:
        _check_index(layer, len(attentions), "layer")
    for head in heads:
        _check_index(head, attentions[0].shape[1], "head")
    n = attentions[0].shape[-1]
    tokens = _check_tokens(tokens, n)
    top = max(float(attentions[layer][batch_index, heads].max()) for layer in layers) or 1.0
    plt = _pyplot()
    size = min(2.6, max(1.6, 0.16 * n))
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(size * len(heads) + 1.6, size * len(layers) + 1.2),
                             squeeze=False, constrained_layout=True)
    image = None
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            image = ax.imshow(attentions[layer][batch_index, head], cmap=PROBABILITY_CMAP, vmin=0.0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if c == 0:
                ax.set_yticks(range(n), tokens, fontsize=6)
                ax.set_ylabel(f"layer {layer}", fontsize=9)
            if r == len(layers) - 1:
                ax.set_xticks(range(n), tokens, rotation=90, fontsize=6)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="attention")
    return fig, axes


def attention_entropy(attentions):
    """Entropy (nats) of every query's attention distribution: ``-Σ_j p_ij log p_ij``.

    Args:
        attentions: L arrays ``[B, H, N, N]`` (``output.attentions``).
    Returns:
        ``[L, B, H, N]``; ``log N`` is uniform attention, 0 is all on one key.
    """
    p = np.stack([np.asarray(a, dtype=np.float64) for a in attentions])  # [L, B, H, N, N]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def attention_distance(attentions):
    """Mean attended distance of every query: ``Σ_j p_ij |i - j|`` (in tokens).

    Returns:
        ``[L, B, H, N]``.
    """
    p = np.stack([np.asarray(a, dtype=np.float64) for a in attentions])  # [L, B, H, N, N]
    n = p.shape[-1]
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])  # [N, N]
    return (p * distance).sum(axis=-1)


def _plot_statistic(values, tokens, title, label, ax, vmax=None):
    L, N = values.shape
    tokens = _check_tokens(tokens, N)
    fig, ax = _new_axes(ax, (max(5.0, 0.35 * N + 2.0), 1.0 + 0.5 * L))
    image = ax.imshow(values, cmap=STATISTIC_CMAP, aspect="auto", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(N), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(L), [f"layer {i}" for i in range(L)], fontsize=8)
    ax.set_xlabel("query token")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label=label)
    return fig, ax


def plot_attention_entropy(output, tokens, batch_index=0, ax=None):
    """Per-token attention entropy by layer (mean over heads of :func:`attention_entropy`).

    Returns:
        ``(figure, ax)``; ``ax.images[0]`` holds the ``[L, N]`` values.
    """
    values = attention_entropy(_attentions(output))[:, batch_index].mean(axis=1)  # [L, N]
    n = values.shape[-1]
    return _plot_statistic(values, tokens, f"attention entropy (nats; uniform = log {n} = {np.log(n):.2f})",
                           "entropy", ax, vmax=max(float(np.log(n)), 1e-6))


def plot_attention_distance(output, tokens, batch_index=0, ax=None):
    """Per-token mean attended distance ``Σ_j p_ij |i - j|`` by layer (mean over heads).

    Returns:
        ``(figure, ax)``; ``ax.images[0]`` holds the ``[L, N]`` values.
    """
    values = attention_distance(_attentions(output))[:, batch_index].mean(axis=1)  # [L, N]
    return _plot_statistic(values, tokens, "mean attended distance |i − j| (tokens)", "distance", ax)


# --------------------------------------------------------------------------- convolution
def plot_conv_contribution(output, tokens, batch_index=0):
    """The nGiE convolution's contribution: ``study.conv_output`` (the activated convolution
    that is added to layer 0's output) per token and channel, and its norm per token.

    Returns:
        ``(figure, axes)`` with two axes: the ``[N, C]`` heatmap and the per-token norms.
    """
    study = _study(output)
    if study.conv_output is None:
        raise ValueError("the model has no nGiE convolution (conv_kernel_size = 0): study.conv_output is None")
    conv = study.conv_output[batch_index]  # [N, C]
    N, C = conv.shape
    tokens = _check_tokens(tokens, N)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.3 * N + 2.2), constrained_layout=True,
                             gridspec_kw={"width_ratios": [3, 1]})
    limit = float(np.abs(conv).max()) or 1.0
    image = axes[0].imshow(conv, cmap=SCORE_CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    axes[0].set_yticks(range(N), tokens, fontsize=8)
    axes[0].set_xlabel("channel")
    axes[0].set_title("conv output added to layer 0 (per token, channel)")
    fig.colorbar(image, ax=axes[0], fraction=0.046, pad=0.02)
    axes[1].barh(range(N), np.linalg.norm(conv, axis=-1), color=CONV_COLOR)
    axes[1].set_yticks(range(N), tokens, fontsize=8)
    axes[1].set_ylim(N - 0.5, -0.5)
    axes[1].set_xlabel("‖conv output‖")
    axes[1].set_title("norm per token")
    return fig, axes


# --------------------------------------------------------------------------- bertviz
def to_bertviz(output, tokens, batch_index=0):
    """Attentions in the form bertviz's ``head_view`` and ``model_view`` take::

        from bertviz import head_view
        head_view(*pydeberta.viz.to_bertviz(out, tokens))

    Args:
        output: a model output from ``output_attentions=True``.
        tokens: the ``N`` tokens of row ``batch_index`` (bertviz strips the ``▁`` itself).
    Returns:
        ``(attention, tokens)``: a tuple of L ``torch.Tensor [1, H, N, N]`` (row
        ``batch_index``; bertviz shows one sequence) and the list of tokens.
    Raises:
        ImportError: torch is not installed (bertviz's views need torch tensors).
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError("to_bertviz converts attentions to torch tensors, which bertviz's head_view and "
                          "model_view need: pip install torch bertviz") from exc
    attentions = _attentions(output)
    tokens = _check_tokens(tokens, attentions[0].shape[-1])
    attention = tuple(torch.from_numpy(np.ascontiguousarray(a[batch_index][None])) for a in attentions)
    return attention, tokens
