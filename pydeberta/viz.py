"""Figures of what the model computes (matplotlib, the optional extra ``viz``).

Every function takes what the model returned (called with ``output_attentions=True`` and, for
the score terms and the convolution, ``output_study=True``) or the sizes of the position
functions, draws it, and returns ``(figure, axes)`` without showing it, so a notebook can
restyle it. Nothing is recomputed that the model already returned: the arrays drawn are the
model's own (``ax.images[0].get_array()`` equals them). The one exception to matplotlib is
:func:`attention_view`: it runs a model on a text and returns an interactive HTML view
(:class:`AttentionView`) of the same arrays, for Jupyter or a standalone page.

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
``plot_relative_gradient``             the gradient flowing into each relative-table row, by layer
``plot_attention``                     one head's attention probabilities
``plot_score_terms``                   c2c, c2p, p2c side by side with their sum, one scale
``plot_attention_terms``               probabilities beside c2c, c2p, p2c (``pydeberta attention``)
``plot_term_magnitudes``               spread of each term per layer (bars in the term colours)
``plot_model_view``                    layers x heads grid of attention maps
``plot_attention_entropy``             per-token attention entropy by layer (mean over heads)
``plot_attention_distance``            per-token mean attended distance by layer
``plot_conv_contribution``             the nGiE convolution's output per token and channel
``to_bertviz``                         attentions as bertviz's ``head_view``/``model_view`` take them
``attention_view``                     an interactive :class:`AttentionView` (HTML, no matplotlib or
                                       torch): every layer, head and term, tokens to click
=====================================  ==========================================================

The numbers behind three of them are functions of their own: :func:`term_magnitudes`,
:func:`attention_entropy` and :func:`attention_distance`.
"""

import base64
import html
import json
import os
import sys
import uuid

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


def plot_relative_gradient(dP_layers, pairs, distances, position_buckets):
    """The gradient flowing into the relative table, by distance (tutorial 09), three panels over
    the table rows ``r`` (x axis: ``r - S``, the bucketed distance ``i - j``):

    * each layer's ``||dP_r||`` and their sum (the gradient of one loss with respect to the
      table ``P``, from :func:`pydeberta.model.encoder_layer_backward`, per layer);
    * how many token pairs read row ``r`` (log scale) and how many distinct distances it holds
      (one inside the identity band, several in the log buckets beyond it);
    * the gradient per pair.

    Args:
        dP_layers: per layer, ``[2S, C]``; pairs, distances: int ``[2S]``;
        position_buckets: the config's, whose half ``±position_buckets // 2`` bounds the band.
    Returns:
        the figure.
    """
    plt = _pyplot()
    S, mid = len(pairs) // 2, position_buckets // 2
    offsets = np.arange(2 * S) - S
    total = np.linalg.norm(sum(dP_layers), axis=1)  # [2S]
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
    for i, d in enumerate(dP_layers):
        axes[0].plot(offsets, np.linalg.norm(d, axis=1), linewidth=1, label=f"layer {i}")
    axes[0].plot(offsets, total, color="black", linewidth=2, label="sum of the layers")
    axes[0].set_ylabel("‖dP_r‖")
    axes[0].set_title("gradient of the masked-LM loss flowing into each row of the relative table")
    axes[0].legend(fontsize=8, ncol=5)
    axes[1].bar(offsets, pairs, width=0.9, color="tab:gray")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("(b, i, j) pairs reading row r")
    twin = axes[1].twinx()
    twin.step(offsets, distances, where="mid", color="tab:red", linewidth=1)
    twin.set_ylabel("distances in the row", color="tab:red")
    with np.errstate(invalid="ignore", divide="ignore"):
        axes[2].plot(offsets, np.where(pairs > 0, total / pairs, np.nan), color="tab:blue", marker=".")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("‖dP_r‖ / pairs")
    axes[2].set_xlabel("table row r − S  (bucket of the distance i − j)")
    for ax in axes:
        for bound in (-mid, mid):
            ax.axvline(bound, color="black", linestyle="--", linewidth=0.8)
    return fig


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


# --------------------------------------------------------------------------- interactive view
VIEW_MAPS = ("attention",) + TERMS
"""What the interactive view stores per layer and head (a term the model leaves off is not
stored); the page adds ``"sum"``, the three terms added."""
MAX_VIEW_BYTES = 8_000_000
"""Default ``max_bytes`` of :class:`AttentionView`: the numbers a page embeds, before base64."""
_VIEW_DTYPES = {"float16": "<f2", "float32": "<f4"}
VIEW_ATTENTION_COLOR = "#3e4989"  # a viridis blue: the probabilities' button and lines


def _check_view_size(n_tokens, n_layers, n_heads, n_maps, dtype, max_bytes):
    """Refuse a view whose numbers (``L x H x maps x N x N`` values of ``dtype``) exceed ``max_bytes``."""
    if dtype not in _VIEW_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_VIEW_DTYPES)}, got {dtype!r}")
    values = n_layers * n_heads * n_maps * n_tokens * n_tokens
    size = values * np.dtype(_VIEW_DTYPES[dtype]).itemsize
    if size > max_bytes:
        raise ValueError(f"attention view: {n_tokens} tokens x {n_layers} layers x {n_heads} heads x {n_maps} maps "
                         f"is {values:,} values, {size:,} bytes as {dtype}, over max_bytes={max_bytes:,} (the "
                         f"limit of a page's numbers); give a shorter text, or in Python keep fewer layers= or "
                         f"heads=, or raise max_bytes")


def _json_for_script(value):
    """``value`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&``
    escaped as ``\\u003c`` ..., non-ASCII as ``\\uXXXX``, so no string can close the element."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class AttentionView:
    """An interactive view of every layer's and head's attention and score terms: self-contained
    HTML with inline JavaScript (no network), shown by Jupyter (``_repr_html_``; like any output
    with a script, it runs in a trusted notebook, which a cell run in the session is) or saved
    as a page (:meth:`save`). torch and matplotlib are not needed.

    The page has a layer, a head and a term selector (attention probabilities, c2c, c2p, p2c
    and their sum), the tokens twice (queries left, keys right) joined by lines, and the
    ``[N, N]`` matrix as a heatmap. Hover a query token for its lines, click it to keep them
    (click again to let go); the keys then show that query's values. Probabilities are drawn
    from 0 to the head's largest probability (:data:`PROBABILITY_CMAP`); the terms on a
    zero-centred scale of their own largest magnitude (:data:`SCORE_CMAP`, red positive).

    The numbers are the model's own (``output.attentions`` and ``output.study``), stored once
    as little-endian ``dtype`` in base64, so a page is 4/3 of its numbers and 12 kB: 4 layers x
    4 heads x 4 maps at 40 tokens is 205 kB of float16, a 285 kB page (2.8 MB at 128 tokens). The
    default ``max_bytes`` admits 250 tokens of such a model, 83 of a 12-layer, 12-head one
    (deberta-v3-base; keep fewer ``layers`` for longer texts). Tokens and text reach the page as
    escaped JSON and are inserted as text, never as markup.

    Args:
        output: a model output from ``output_attentions=True, output_study=True``.
        tokens: the ``N`` token strings of row ``batch_index``.
        batch_index: the row of the batch to show (its padding, if any, is shown too).
        text: optional caption (the input text).
        layers, heads: the layer and head indices to store (default all).
        layer, head, term: what the page opens at (default the first stored layer and head,
            ``"attention"``; ``term`` one of ``"attention"``, ``"c2c"``, ``"c2p"``, ``"p2c"``,
            ``"sum"``, not a term the model leaves off).
        dtype: ``"float16"`` (default; numbers to 2^-11 relative, 3e-8 absolute below 6e-5,
            magnitudes up to 65504) or ``"float32"`` (the model's numbers exactly, twice the size).
        max_bytes: largest size of the stored numbers, before base64 (default
            :data:`MAX_VIEW_BYTES`); a larger view is refused with a ``ValueError`` that gives
            the sizes.
    Attributes:
        tokens: the token strings; layers, heads: the stored indices; maps: the stored maps
            (:data:`VIEW_MAPS` less the terms that are off); data: the stored numbers
            ``[len(layers), len(heads), len(maps), N, N]`` of ``dtype``.
    """

    def __init__(self, output, tokens, batch_index=0, *, text=None, layers=None, heads=None, layer=None, head=None,
                 term="attention", dtype="float16", max_bytes=MAX_VIEW_BYTES):
        attentions, study = _attentions(output), _study(output)
        n_layers, n_heads = len(attentions), attentions[0].shape[1]
        _check_index(batch_index, attentions[0].shape[0], "batch_index")
        self.tokens = _check_tokens(tokens, attentions[0].shape[-1])
        self.layers = list(range(n_layers)) if layers is None else [int(i) for i in layers]
        self.heads = list(range(n_heads)) if heads is None else [int(i) for i in heads]
        for name, chosen, size in (("layers", self.layers, n_layers), ("heads", self.heads, n_heads)):
            if not chosen:
                raise ValueError(f"{name} must name at least one index, got {chosen}")
            for index in chosen:
                _check_index(index, size, name)
        stored = {"attention": attentions, **{name: getattr(study, name) for name in TERMS}}
        self.maps = [name for name in VIEW_MAPS if stored[name][0] is not None]
        self.initial = {"layer": self.layers[0] if layer is None else int(layer),
                        "head": self.heads[0] if head is None else int(head), "term": term}
        for name, chosen in (("layer", self.layers), ("head", self.heads)):
            if self.initial[name] not in chosen:
                raise ValueError(f"{name} must be one of the stored {name}s {chosen}, got {self.initial[name]}")
        if term not in self.maps + ["sum"]:
            raise ValueError(f"term must be one of {self.maps + ['sum']} (the maps this model has), got {term!r}")
        _check_view_size(len(self.tokens), len(self.layers), len(self.heads), len(self.maps), dtype, max_bytes)
        data = np.stack([np.stack([np.stack([stored[name][i][batch_index, h] for name in self.maps])
                                   for h in self.heads]) for i in self.layers])  # [L, H, maps, N, N]
        if dtype == "float16" and np.abs(data).max() > np.finfo(np.float16).max:
            raise ValueError(f"attention view: a value of magnitude {np.abs(data).max():.4g} is beyond float16 "
                             f"(|x| <= 65504); give dtype='float32'")
        self.data = data.astype(_VIEW_DTYPES[dtype])
        self.dtype = dtype
        self.text = text

    def _spec(self):
        """What the page's script reads: tokens, indices, maps, colours and the base64 numbers."""
        return {"tokens": self.tokens, "text": self.text, "layers": self.layers, "heads": self.heads,
                "maps": self.maps, "initial": self.initial, "dtype": self.dtype, "shape": list(self.data.shape),
                "colors": {"attention": VIEW_ATTENTION_COLOR, **TERM_COLORS}, "scoreLabel": SCORE_LABEL,
                "data": base64.b64encode(self.data.tobytes()).decode("ascii")}

    def _fragment(self, element_id):
        """The view as an HTML fragment: one ``<div id=element_id>`` with its style and scripts."""
        return (_VIEW_TEMPLATE.replace("__ID__", element_id)
                .replace("__SPEC__", _json_for_script(self._spec())))

    def _repr_html_(self):
        """The fragment Jupyter shows; a fresh element id each time, so a view shown twice works twice."""
        return self._fragment(f"pydeberta-view-{uuid.uuid4().hex[:12]}")

    @property
    def html(self):
        """A standalone HTML page with the view (no external resources)."""
        title = html.escape(f"pydeberta attention: {self.text}" if self.text else "pydeberta attention")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
                f'<body style="margin:12px;background:#fff">\n{self._fragment("pydeberta-view")}\n</body></html>\n')

    def save(self, path):
        """Write :attr:`html` to ``path`` all or nothing (a temporary file beside it, renamed
        when complete; a failure raises ``OSError`` and leaves ``path`` as it was); returns ``path``."""
        from .saving import atomic_files

        folder, name = os.path.split(os.path.abspath(path))
        with atomic_files(folder, caller="AttentionView.save") as target:
            with open(target(name), "w", encoding="utf-8") as f:
                f.write(self.html)
        return path

    def __repr__(self):
        return (f"AttentionView({len(self.tokens)} tokens, layers {self.layers}, heads {self.heads}, "
                f"maps {self.maps}, {self.dtype})")


def attention_view(model, tokenizer, text, text_pair=None, **options):
    """Run ``model`` on ``text`` (and ``text_pair``) and return its interactive
    :class:`AttentionView`, which a notebook cell shows and :meth:`AttentionView.save` writes::

        from pydeberta.viz import attention_view
        view = attention_view(model, tokenizer, "The cat sat.")
        view                          # in Jupyter: layers, heads, terms, click a token
        view.save("attention.html")   # a standalone page

    Args:
        model: any pydeberta model (``DebertaV2Model``, ``DebertaV2ForMaskedLM``, ...).
        tokenizer: its tokenizer; text, text_pair: one text or text pair.
        options: :class:`AttentionView`'s keywords (``layers``, ``heads``, ``layer``, ``head``,
            ``term``, ``dtype``, ``max_bytes``); the size is checked before the model runs.
    Returns:
        :class:`AttentionView`.
    """
    enc = tokenizer(text, text_pair, return_tensors="np")
    config = model.config
    n_maps = 2 + (len(config.pos_att) if config.relative_attention else 0)  # attention, c2c, c2p/p2c in use
    _check_view_size(enc["input_ids"].shape[1], len(options.get("layers") or range(config.num_hidden_layers)),
                     len(options.get("heads") or range(config.num_attention_heads)), n_maps,
                     options.get("dtype", "float16"), options.get("max_bytes", MAX_VIEW_BYTES))
    output = model(**enc, output_attentions=True, output_study=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    caption = text if text_pair is None else f"{text} | {text_pair}"
    return AttentionView(output, tokens, text=caption, **options)


# The page: __ID__ is the root's id, __SPEC__ the JSON of AttentionView._spec(). Everything the
# data brings (tokens, text) is inserted with textContent. The root's data-layer, data-head,
# data-term and data-query attributes, and each key's data-value, say what is drawn.
_VIEW_TEMPLATE = """<div id="__ID__" class="pdv" data-ready="0">
<style>
#__ID__ {font: 13px/1.3 "DejaVu Sans", Verdana, Arial, sans-serif; color: #222; background: #fff;
  padding: 8px; display: inline-block; text-align: left}
#__ID__ .pdv-controls {display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-bottom: 8px}
#__ID__ select {font: inherit}
#__ID__ .pdv-term {font: inherit; border: 2px solid var(--c); background: #fff; color: var(--c);
  border-radius: 4px; padding: 1px 8px; cursor: pointer}
#__ID__ .pdv-term[aria-pressed="true"] {background: var(--c); color: #fff}
#__ID__ .pdv-body {display: flex; align-items: flex-start; gap: 4px}
#__ID__ .pdv-column {display: flex; flex-direction: column}
#__ID__ .pdv-token {height: 20px; line-height: 20px; padding: 0 4px; white-space: pre; cursor: pointer;
  max-width: 11em; overflow: hidden; text-overflow: ellipsis; border-radius: 3px}
#__ID__ .pdv-queries .pdv-token {text-align: right}
#__ID__ .pdv-keys .pdv-token {max-width: 17em}
#__ID__ .pdv-token.pdv-active {outline: 2px solid #333}
#__ID__ .pdv-value {display: inline-block; min-width: 4.2em; text-align: right; color: #555;
  font-variant-numeric: tabular-nums; margin-right: 6px}
#__ID__ .pdv-matrix-box {margin-left: 18px}
#__ID__ .pdv-note, #__ID__ .pdv-readout {color: #555; font-size: 12px; min-height: 16px}
#__ID__ .pdv-caption {color: #333; margin-bottom: 6px; max-width: 60em; overflow-wrap: anywhere}
</style>
<div class="pdv-caption"></div>
<div class="pdv-controls">
<label>layer <select class="pdv-layer"></select></label>
<label>head <select class="pdv-head"></select></label>
<span class="pdv-terms"></span>
<span class="pdv-scale pdv-note"></span>
</div>
<div class="pdv-body">
<div class="pdv-column pdv-queries"></div>
<canvas class="pdv-lines"></canvas>
<div class="pdv-column pdv-keys"></div>
<div class="pdv-matrix-box"><canvas class="pdv-matrix"></canvas>
<div class="pdv-note">rows: queries, columns: keys; click a row or a token</div>
<div class="pdv-readout"></div></div>
</div>
<script type="application/json" class="pdv-data">__SPEC__</script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("__ID__");
  var spec = JSON.parse(root.querySelector("script.pdv-data").textContent);
  var N = spec.tokens.length, H = spec.shape[1], M = spec.shape[2], ROW = 20;
  var TERMS = ["c2c", "c2p", "p2c"];
  var VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                 "#b5de2b", "#fde725"];
  var RDBU_R = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582",
                "#d6604d", "#b2182b", "#67001f"];

  function decode(b64, dtype) {
    var raw = atob(b64), bytes = new Uint8Array(raw.length), i;
    for (i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var view = new DataView(bytes.buffer), out;
    if (dtype === "float32") {
      out = new Float32Array(bytes.length / 4);
      for (i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    out = new Float32Array(bytes.length / 2);
    for (i = 0; i < out.length; i++) {
      var h = view.getUint16(2 * i, true), s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
      out[i] = e === 0 ? s * Math.pow(2, -14) * f / 1024
             : e === 31 ? (f ? NaN : s * Infinity) : s * Math.pow(2, e - 15) * (1 + f / 1024);
    }
    return out;
  }
  var values = decode(spec.data, spec.dtype);
  var state = {layer: spec.layers.indexOf(spec.initial.layer), head: spec.heads.indexOf(spec.initial.head),
               term: spec.initial.term, query: null, hover: null};

  function matrix() {
    var offset = function (name) { return ((state.layer * H + state.head) * M + spec.maps.indexOf(name)) * N * N; };
    if (state.term !== "sum") return values.subarray(offset(state.term), offset(state.term) + N * N);
    var sum = new Float32Array(N * N);
    TERMS.forEach(function (name) {
      if (spec.maps.indexOf(name) < 0) return;
      var start = offset(name);
      for (var k = 0; k < N * N; k++) sum[k] += values[start + k];
    });
    return sum;
  }
  function rgb(c) { return [1, 3, 5].map(function (i) { return parseInt(c.substr(i, 2), 16); }); }
  VIRIDIS = VIRIDIS.map(rgb); RDBU_R = RDBU_R.map(rgb);
  function ramp(stops, t) {
    t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    var i = Math.min(stops.length - 2, Math.floor(t)), a = stops[i], b = stops[i + 1], u = t - i;
    return [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * u); });
  }
  function colour(v, scale) {  // [r, g, b] of a value on the drawn scale
    return state.term === "attention" ? ramp(VIRIDIS, v / scale) : ramp(RDBU_R, 0.5 + v / (2 * scale));
  }
  function format(v) {
    return state.term === "attention" ? v.toFixed(3) : (v >= 0 ? "+" : "") + v.toFixed(2);
  }
  function canvas(el, width, height) {
    var ratio = window.devicePixelRatio || 1;
    el.width = Math.round(width * ratio); el.height = Math.round(height * ratio);
    el.style.width = width + "px"; el.style.height = height + "px";
    var ctx = el.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  root.querySelector(".pdv-caption").textContent = spec.text || "";
  function option(select, label, index) {
    var o = document.createElement("option");
    o.value = index; o.textContent = label; select.appendChild(o);
  }
  var layerSelect = root.querySelector(".pdv-layer"), headSelect = root.querySelector(".pdv-head");
  spec.layers.forEach(function (l, i) { option(layerSelect, l, i); });
  spec.heads.forEach(function (h, i) { option(headSelect, h, i); });
  layerSelect.value = state.layer; headSelect.value = state.head;
  layerSelect.addEventListener("change", function () { state.layer = +layerSelect.value; render(); });
  headSelect.addEventListener("change", function () { state.head = +headSelect.value; render(); });
  var termButtons = spec.maps.concat(["sum"]).map(function (name) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "pdv-term"; b.dataset.term = name; b.textContent = name;
    b.style.setProperty("--c", spec.colors[name]);
    b.addEventListener("click", function () { state.term = name; render(); });
    root.querySelector(".pdv-terms").appendChild(b);
    return b;
  });
  TERMS.forEach(function (name) {
    if (spec.maps.indexOf(name) < 0) {
      var b = document.createElement("button");
      b.type = "button"; b.className = "pdv-term"; b.disabled = true; b.textContent = name + " (off)";
      b.style.setProperty("--c", "#999");
      root.querySelector(".pdv-terms").appendChild(b);
    }
  });

  function tokenColumn(selector, withValues) {
    return spec.tokens.map(function (token, i) {
      var el = document.createElement("div");
      el.className = "pdv-token"; el.dataset.index = i; el.title = token;
      if (withValues) {
        var value = document.createElement("span");
        value.className = "pdv-value"; el.appendChild(value);
        el.appendChild(document.createTextNode(token));
      } else {
        el.textContent = token;
        el.addEventListener("mouseenter", function () { state.hover = i; render(); });
        el.addEventListener("mouseleave", function () { state.hover = null; render(); });
        el.addEventListener("click", function () { select(i); });
      }
      root.querySelector(selector).appendChild(el);
      return el;
    });
  }
  var queries = tokenColumn(".pdv-queries", false), keys = tokenColumn(".pdv-keys", true);
  function select(i) { state.query = state.query === i ? null : i; render(); }

  var lines = root.querySelector(".pdv-lines"), LINES_WIDTH = 180;
  var grid = root.querySelector(".pdv-matrix"), CELL = Math.max(2, Math.min(18, Math.floor(360 / N)));
  var readout = root.querySelector(".pdv-readout");
  function cellAt(event) {
    var box = grid.getBoundingClientRect();
    var j = Math.floor((event.clientX - box.left) / CELL), i = Math.floor((event.clientY - box.top) / CELL);
    return i >= 0 && i < N && j >= 0 && j < N ? [i, j] : null;
  }
  grid.addEventListener("mousemove", function (event) {
    var cell = cellAt(event);
    readout.textContent = cell ? spec.tokens[cell[0]] + " \\u2192 " + spec.tokens[cell[1]] + ": " +
                                 format(matrix()[cell[0] * N + cell[1]]) : "";
  });
  grid.addEventListener("mouseleave", function () { readout.textContent = ""; });
  grid.addEventListener("click", function (event) { var cell = cellAt(event); if (cell) select(cell[0]); });

  function render() {
    var m = matrix(), scale = 0, i, j, k;
    for (k = 0; k < m.length; k++) scale = Math.max(scale, Math.abs(m[k]));
    scale = scale || 1;
    var active = state.query !== null ? state.query : state.hover;
    var attention = state.term === "attention";
    function ink(v) { return attention ? spec.colors.attention : v >= 0 ? "#b2182b" : "#2166ac"; }
    var ctx = canvas(lines, LINES_WIDTH, N * ROW);
    ctx.lineWidth = active === null ? 1.5 : 3;
    for (i = 0; i < N; i++) {
      if (active !== null && i !== active) continue;
      for (j = 0; j < N; j++) {
        var v = m[i * N + j];
        ctx.strokeStyle = ink(v);
        ctx.globalAlpha = Math.min(1, Math.abs(v) / scale) * (active === null ? 0.5 : 1);
        ctx.beginPath(); ctx.moveTo(0, (i + 0.5) * ROW); ctx.lineTo(LINES_WIDTH, (j + 0.5) * ROW); ctx.stroke();
      }
    }
    var pixels = document.createElement("canvas"), image = new ImageData(N, N);
    for (k = 0; k < N * N; k++) { image.data.set(colour(m[k], scale), 4 * k); image.data[4 * k + 3] = 255; }
    pixels.width = pixels.height = N;
    pixels.getContext("2d").putImageData(image, 0, 0);
    var g = canvas(grid, N * CELL, N * CELL);
    g.imageSmoothingEnabled = false;
    g.drawImage(pixels, 0, 0, N * CELL, N * CELL);
    if (active !== null) {  // the query's row: white inside black, visible on any colour
      g.lineWidth = 3; g.strokeStyle = "#000"; g.strokeRect(1.5, active * CELL - 0.5, N * CELL - 3, CELL + 1);
      g.lineWidth = 1; g.strokeStyle = "#fff"; g.strokeRect(1.5, active * CELL - 0.5, N * CELL - 3, CELL + 1);
    }
    queries.forEach(function (el, q) { el.classList.toggle("pdv-active", q === active); });
    keys.forEach(function (el, key) {
      var value = el.firstChild;
      if (active === null) {
        value.textContent = ""; el.style.background = ""; delete el.dataset.value;
      } else {
        var v = m[active * N + key], alpha = (0.6 * Math.min(1, Math.abs(v) / scale)).toFixed(3);
        value.textContent = format(v); el.dataset.value = String(v);
        el.style.background = "rgba(" + rgb(ink(v)).join(",") + "," + alpha + ")";
      }
    });
    termButtons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.term === state.term)); });
    root.querySelector(".pdv-scale").textContent = attention ? "colour: probability 0 \\u2026 " + scale.toFixed(3)
      : "colour: " + spec.scoreLabel + " \\u00b1" + scale.toFixed(2) + " (red positive)";
    root.dataset.layer = spec.layers[state.layer]; root.dataset.head = spec.heads[state.head];
    root.dataset.term = state.term; root.dataset.query = active === null ? "" : active;
    root.dataset.locked = String(state.query !== null);
  }
  render();
  root.dataset.ready = "1";
})();
</script>
</div>"""
