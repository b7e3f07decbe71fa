"""pydeberta.viz: each figure on a tiny model has the expected axes, the tokens as tick labels,
and draws exactly the arrays the model returned."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pydeberta  # noqa: E402
from pydeberta import viz  # noqa: E402
from pydeberta.positions import make_log_bucket_position  # noqa: E402

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=24,
            relative_attention=True, position_buckets=8, max_relative_positions=32, pos_att_type="p2c|c2p",
            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False)
TOKENS = ["[CLS]", "▁the", "▁cat", "▁sat", "▁on", "▁a", "▁mat", ".", "[SEP]", "[PAD]"]
IDS = np.array([[1, 5, 9, 14, 20, 7, 33, 11, 2, 0], [1, 6, 10, 8, 2, 0, 0, 0, 0, 0]])
MASK = (IDS != 0).astype(np.int64)
MASK[0, -1] = 0


def run(config_fields, ids=IDS, mask=MASK):
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**config_fields), seed=0)
    return model, model(input_ids=ids, attention_mask=mask, output_attentions=True, output_study=True)


@pytest.fixture(scope="module")
def tiny():
    return run(TINY)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labels(ticks):
    return [t.get_text() for t in ticks]


def assert_token_axes(ax, tokens, x=True, y=True):
    if x:
        assert labels(ax.get_xticklabels()) == tokens
    if y:
        assert labels(ax.get_yticklabels()) == tokens


def image_data(ax):
    return np.asarray(ax.images[0].get_array())


def test_every_figure_function_returns_its_figure_and_never_shows(tiny, monkeypatch):
    model, out = tiny
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("a viz function called plt.show()"))
    conv_model, conv_out = run(dict(TINY, conv_kernel_size=3, conv_act="gelu"))
    calls = [viz.plot_log_buckets(8, 32), viz.plot_relative_positions(model.config, tokens=TOKENS),
             viz.plot_attention(out, TOKENS), viz.plot_score_terms(out, TOKENS),
             viz.plot_attention_terms(out, TOKENS), viz.plot_term_magnitudes(out),
             viz.plot_model_view(out, TOKENS), viz.plot_attention_entropy(out, TOKENS),
             viz.plot_attention_distance(out, TOKENS), viz.plot_conv_contribution(conv_out, TOKENS)]
    for fig, axes in calls:
        assert isinstance(fig, matplotlib.figure.Figure)
        for ax in np.ravel(axes):
            assert ax.figure is fig


def test_log_buckets_draws_the_bucket_function_with_its_bands():
    fig, ax = viz.plot_log_buckets(8, 32, max_distance=40)
    r, bucket = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    np.testing.assert_array_equal(r, np.arange(-40, 41))
    np.testing.assert_array_equal(bucket, make_log_bucket_position(r, 8, 32))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("identity band |r| ≤ 4" in t for t in legend)
    assert any("log band 4 < |r| < 32" in t for t in legend)
    assert any("not clamped" in t for t in legend)
    assert fig.axes == [ax]


def test_log_buckets_needs_buckets():
    with pytest.raises(ValueError, match="bucket_size > 0"):
        viz.plot_log_buckets(-1, 32)


def test_relative_positions_are_the_model_study_matrices(tiny):
    model, out = tiny
    fig, axes = viz.plot_relative_positions(model.config, tokens=TOKENS)
    assert len(axes) == 3
    for ax in axes:
        assert_token_axes(ax, TOKENS)
    n = len(TOKENS)
    np.testing.assert_array_equal(image_data(axes[0]), np.arange(n)[:, None] - np.arange(n)[None, :])
    np.testing.assert_array_equal(image_data(axes[1]), out.study.relative_positions)
    np.testing.assert_array_equal(image_data(axes[2]), out.study.rel_index)
    assert len(fig.axes) == 3 + 3  # three maps, three colour bars


def test_relative_positions_without_tokens_label_indices(tiny):
    model, _ = tiny
    _, axes = viz.plot_relative_positions(model.config, length=5)
    assert labels(axes[0].get_xticklabels()) == ["0", "1", "2", "3", "4"]


def test_attention_is_one_heads_probabilities(tiny):
    _, out = tiny
    fig, ax = viz.plot_attention(out, TOKENS, layer=2, head=1, batch_index=0)
    assert_token_axes(ax, TOKENS)
    np.testing.assert_array_equal(image_data(ax), out.attentions[2][0, 1])
    assert len(fig.axes) == 2  # the map and its colour bar


def test_attention_draws_on_a_given_axes(tiny):
    _, out = tiny
    fig, (left, right) = plt.subplots(1, 2)
    got_fig, got_ax = viz.plot_attention(out, TOKENS, layer=1, head=0, ax=right)
    assert got_fig is fig and got_ax is right and not left.images


def test_score_terms_are_the_study_terms_and_their_sum(tiny):
    _, out = tiny
    layer, head, b = 1, 0, 0
    fig, axes = viz.plot_score_terms(out, TOKENS, layer=layer, head=head, batch_index=b)
    assert len(axes) == 4 and len(fig.axes) == 5  # four maps, one shared colour bar
    for ax in axes:
        assert_token_axes(ax, TOKENS, y=False)
    assert_token_axes(axes[0], TOKENS)
    terms = [out.study.c2c[layer][b, head], out.study.c2p[layer][b, head], out.study.p2c[layer][b, head]]
    for ax, term in zip(axes, terms):
        np.testing.assert_array_equal(image_data(ax), term)
    np.testing.assert_array_equal(image_data(axes[3]), terms[0] + terms[1] + terms[2])
    # the sum is what the softmax sees: its softmax over the visible keys is the model's attention
    visible = MASK[b].astype(bool)
    s = image_data(axes[3])[visible][:, visible]
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(-1, keepdims=True), out.attentions[layer][b, head][visible][:, visible],
                               atol=1e-6)
    # one colour scale, zero-centred, and each term in its colour
    limits = {ax.images[0].get_clim() for ax in axes}
    assert len(limits) == 1 and sum(next(iter(limits))) == 0
    assert [ax.title.get_color() for ax in axes] == [viz.TERM_COLORS[k] for k in ("c2c", "c2p", "p2c", "sum")]


def test_score_terms_draw_an_absent_term_as_zeros():
    _, out = run(dict(TINY, pos_att_type="c2p"))
    _, axes = viz.plot_score_terms(out, TOKENS)
    assert "(off)" in axes[2].get_title()
    np.testing.assert_array_equal(image_data(axes[2]), 0)
    np.testing.assert_array_equal(image_data(axes[3]), out.study.c2c[0][0, 0] + out.study.c2p[0][0, 0])


def test_attention_terms_keep_the_command_line_layout(tiny):
    _, out = tiny
    fig, axes = viz.plot_attention_terms(out, TOKENS, layer=2, head=1, batch_index=1)
    assert len(axes) == 4 and len(fig.axes) == 8  # four maps, four colour bars
    np.testing.assert_array_equal(image_data(axes[0]), out.attentions[2][1, 1])
    for ax, name in zip(axes[1:], ("c2c", "c2p", "p2c")):
        assert_token_axes(ax, TOKENS)
        np.testing.assert_array_equal(image_data(ax), getattr(out.study, name)[2][1, 1])


def test_term_magnitudes_are_the_spread_over_visible_pairs(tiny):
    _, out = tiny
    values = viz.term_magnitudes(out, batch_index=1, attention_mask=MASK)
    visible = MASK[1].astype(bool)
    expected = out.study.p2c[2][1, 0][visible][:, visible].std()
    np.testing.assert_allclose(values["p2c"][2, 0], expected, rtol=1e-6)
    fig, ax = viz.plot_term_magnitudes(out, batch_index=1, attention_mask=MASK)
    assert fig.axes == [ax] and len(ax.containers) == 3
    for container, name in zip(ax.containers, viz.TERMS):
        np.testing.assert_allclose([bar.get_height() for bar in container], values[name].mean(axis=1))
        assert container.get_label() == name


def test_model_view_is_a_layers_by_heads_grid(tiny):
    _, out = tiny
    fig, axes = viz.plot_model_view(out, TOKENS, batch_index=1)
    assert axes.shape == (3, 2) and len(fig.axes) == 3 * 2 + 1
    for layer in range(3):
        assert_token_axes(axes[layer, 0], TOKENS, x=False)
        for head in range(2):
            np.testing.assert_array_equal(image_data(axes[layer, head]), out.attentions[layer][1, head])
    for head in range(2):
        assert_token_axes(axes[-1, head], TOKENS, y=False)
    fig, axes = viz.plot_model_view(out, TOKENS, layers=[2], heads=[1])
    assert axes.shape == (1, 1)
    np.testing.assert_array_equal(image_data(axes[0, 0]), out.attentions[2][0, 1])


def test_entropy_and_distance_by_layer(tiny):
    _, out = tiny
    n = len(TOKENS)
    p = np.stack(out.attentions).astype(np.float64)  # [L, B, H, N, N]
    entropy = -(p * np.log(p, where=p > 0, out=np.zeros_like(p))).sum(-1)
    distance = (p * np.abs(np.arange(n)[:, None] - np.arange(n))).sum(-1)
    np.testing.assert_allclose(viz.attention_entropy(out.attentions), entropy, atol=1e-12)
    np.testing.assert_allclose(viz.attention_distance(out.attentions), distance, atol=1e-12)
    for plot, expected in ((viz.plot_attention_entropy, entropy), (viz.plot_attention_distance, distance)):
        fig, ax = plot(out, TOKENS, batch_index=0)
        assert len(fig.axes) == 2
        assert labels(ax.get_xticklabels()) == TOKENS
        assert labels(ax.get_yticklabels()) == ["layer 0", "layer 1", "layer 2"]
        np.testing.assert_allclose(image_data(ax), expected[:, 0].mean(axis=1))


def test_uniform_attention_has_entropy_log_n():
    p = np.full((1, 1, 2, 4, 4), 0.25)
    np.testing.assert_allclose(viz.attention_entropy(p), np.log(4))


def test_conv_contribution_is_the_study_conv_output():
    _, out = run(dict(TINY, conv_kernel_size=3, conv_act="gelu"))
    fig, axes = viz.plot_conv_contribution(out, TOKENS, batch_index=0)
    assert len(axes) == 2 and len(fig.axes) == 3
    for ax in axes:
        assert labels(ax.get_yticklabels()) == TOKENS
    np.testing.assert_array_equal(image_data(axes[0]), out.study.conv_output[0])
    norms = [bar.get_width() for bar in axes[1].patches]
    np.testing.assert_allclose(norms, np.linalg.norm(out.study.conv_output[0], axis=-1), rtol=1e-6)


def test_conv_contribution_without_conv_says_so(tiny):
    _, out = tiny
    with pytest.raises(ValueError, match="no nGiE convolution"):
        viz.plot_conv_contribution(out, TOKENS)


def test_to_bertviz_gives_head_view_its_tuple_of_tensors(tiny):
    _, out = tiny
    attention, tokens = viz.to_bertviz(out, TOKENS, batch_index=1)
    assert tokens == TOKENS
    assert isinstance(attention, tuple) and len(attention) == 3
    for layer, tensor in enumerate(attention):
        assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == (1, 2, 10, 10)
        np.testing.assert_array_equal(tensor.numpy(), out.attentions[layer][1:2])
    # bertviz's format_attention: squeeze the batch axis of each layer and stack
    assert tuple(torch.stack([a.squeeze(0) for a in attention]).shape) == (3, 2, 10, 10)


def test_to_bertviz_without_torch_raises_a_clear_import_error(tiny, monkeypatch):
    import sys

    _, out = tiny
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch bertviz"):
        viz.to_bertviz(out, TOKENS)


@pytest.mark.parametrize("call, message", [
    (lambda out, m: viz.plot_attention(out, TOKENS[:-1]), "got 9 labels for a sequence of length 10"),
    (lambda out, m: viz.plot_attention(out, TOKENS, layer=3), r"layer must lie in \[0, 3\)"),
    (lambda out, m: viz.plot_score_terms(out, TOKENS, layer=5), r"layer must lie in \[0, 3\)"),
    (lambda out, m: viz.plot_score_terms(out, TOKENS, head=2), r"head must lie in \[0, 2\)"),
    (lambda out, m: viz.plot_attention(out, TOKENS, batch_index=2), r"batch_index must lie in \[0, 2\)"),
    (lambda out, m: viz.plot_model_view(out, TOKENS, heads=[0, 4]), r"head must lie in \[0, 2\)"),
])
def test_bad_arguments_name_the_problem(tiny, call, message):
    model, out = tiny
    with pytest.raises(ValueError, match=message):
        call(out, model)


def test_outputs_without_attentions_or_study_name_the_flag(tiny):
    model, _ = tiny
    plain = model(input_ids=IDS, attention_mask=MASK)
    with pytest.raises(ValueError, match="output_attentions=True"):
        viz.plot_model_view(plain, TOKENS)
    with pytest.raises(ValueError, match="output_study=True"):
        viz.plot_score_terms(plain, TOKENS)


def test_attention_terms_on_a_shared_scale_and_long_sequences(tiny):
    """A shared scale puts c2c, c2p and p2c on one symmetric colour range (the largest magnitude
    of the three) with one colour bar; 200 tokens get a 2 x 2 grid and at most MAX_TICKS labels."""
    model, out = tiny
    fig, axes = viz.plot_attention_terms(out, TOKENS, layer=1, head=0, batch_index=1, shared_scale=True)
    terms = [getattr(out.study, name)[1][1, 0] for name in ("c2c", "c2p", "p2c")]
    limit = max(float(np.abs(term).max()) for term in terms)
    for ax in axes[1:]:
        assert ax.images[0].get_clim() == pytest.approx((-limit, limit))
    assert len(fig.axes) == 6  # four maps, the probabilities' colour bar, one shared bar
    assert "one scale for the terms" in fig.axes[-1].get_ylabel()
    rng = np.random.default_rng(0)
    long_out = model(input_ids=rng.integers(3, 40, (1, 200)), output_attentions=True, output_study=True)
    tokens = [f"t{i}" for i in range(200)]
    fig, axes = viz.plot_attention_terms(long_out, tokens)
    assert axes.shape == (4,) and axes[0].get_subplotspec().get_geometry()[:2] == (2, 2)
    labels = [label.get_text() for label in axes[0].get_xticklabels()]
    assert len(labels) <= viz.MAX_TICKS and labels[:2] == ["t0", "t5"]
    plt.close("all")


def test_relative_positions_mark_the_identity_band_on_a_long_sequence(tiny):
    """Buckets 8 (m = 4) over 40 positions: the two dashed lines are the diagonals i - j = -4 and
    +4, and the bucket map equals i - j exactly between them."""
    model, _ = tiny
    fig, axes = viz.plot_relative_positions(model.config, length=40)
    for ax in axes[1:]:
        offsets = [np.unique(line.get_ydata() - line.get_xdata()).tolist() for line in ax.lines]  # i - j along each
        assert sorted(offsets) == [[-4.0], [4.0]]
    bucket = axes[1].images[0].get_array()
    distance = np.subtract.outer(np.arange(40), np.arange(40))
    np.testing.assert_array_equal(bucket[np.abs(distance) <= 4], distance[np.abs(distance) <= 4])
    assert not axes[0].lines and len(viz.plot_relative_positions(model.config, length=4)[1][1].lines) == 0
    plt.close("all")
