"""Figures of what the model computes (matplotlib, the optional extra ``viz``).

Every function takes what the model returned and returns ``(figure, axes)`` without showing
it, so a notebook can restyle it. One colour map is used for probabilities and one diverging,
zero-centred map for signed scores, everywhere.
"""

import numpy as np

PROBABILITY_CMAP = "viridis"
SCORE_CMAP = "RdBu_r"


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _heatmap(ax, matrix, tokens, title, cmap, symmetric):
    """One ``[Q, K]`` heatmap with tokens as tick labels (queries down, keys across)."""
    limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit if symmetric else 0.0, vmax=limit if symmetric else None)
    ax.set_title(title)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


def plot_attention_terms(output, tokens, layer=0, head=0, batch_index=0):
    """One head's attention probabilities beside its c2c, c2p and p2c score terms.

    Args:
        output: a model output called with ``output_attentions=True, output_study=True``.
        tokens: the ``N`` token strings of row ``batch_index``.
    Returns:
        ``(figure, axes)`` with four axes: probabilities, c2c, c2p, p2c (the terms are the
        pre-softmax scores already divided by ``sqrt(D · sf)``; an absent term is drawn as zeros).
    """
    if output.attentions is None or output.study is None:
        raise ValueError("plot_attention_terms needs a model output from output_attentions=True, output_study=True")
    plt = _pyplot()
    probs = output.attentions[layer][batch_index, head]  # [N, N]
    terms = {name: getattr(output.study, name)[layer] for name in ("c2c", "c2p", "p2c")}
    fig, axes = plt.subplots(1, 4, figsize=(4 * 4.2, 4.4), constrained_layout=True)
    _heatmap(axes[0], probs, tokens, f"attention, layer {layer} head {head}", PROBABILITY_CMAP, symmetric=False)
    for ax, (name, term) in zip(axes[1:], terms.items()):
        matrix = np.zeros_like(probs) if term is None else term[batch_index, head]
        _heatmap(ax, matrix, tokens, name + ("" if term is not None else " (off)"), SCORE_CMAP, symmetric=True)
    return fig, axes
