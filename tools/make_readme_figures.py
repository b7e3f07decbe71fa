"""Draw the README's figures from the bundled model with ``pydeberta.viz``.

::

    python tools/make_readme_figures.py                  # writes docs/figures/*.png
    python tools/make_readme_figures.py --attention-view # ... and attention_view.png (a browser)
    python tools/make_readme_figures.py --notebooks      # ... and the tagged figures of tutorials 04, 08
    python tools/make_readme_figures.py --out /tmp/figs --model path/to/checkpoint

Figures (the same calls as tutorials 03 and 00):

- ``attention_terms.png``: c2c, c2p and p2c score terms of one head and their sum
  (:func:`pydeberta.viz.plot_score_terms`), for the head whose relative terms move the scores most
  relative to c2c;
- ``model_view.png``: every layer's and head's attention (:func:`pydeberta.viz.plot_model_view`).
- ``relative_positions.png``: ``i - j``, its log bucket and the table row over 300 positions, the
  identity band marked (:func:`pydeberta.viz.plot_relative_positions`);
- ``relative_gradient.png``: the gradient a masked-LM loss sends into each row of the relative
  table (each layer's share from :func:`pydeberta.model.encoder_layer_backward`, their sum), the
  (b, i, j) pairs of the batch reading each row, and the gradient per pair (tutorial 09), on eight
  held-out lines of the model's ``heldout_sample.txt`` with 15% of their tokens masked;
- ``attention_view.png``, with ``--attention-view``: the interactive page of
  :func:`pydeberta.viz.attention_view`, at the same head, with the query "light" clicked (else the
  middle token), screenshot in headless Chromium (needs selenium and Debian's ``chromium`` +
  ``chromium-driver``; without them it is skipped, said so).

- with ``--notebooks``: the figures of the tutorials' cells tagged ``readme:<file name>``, from the
  notebook run top to bottom in a fresh kernel (as tests/test_tutorials.py runs it), so that the
  README shows exactly what the notebook draws: ``ngie_shift.png`` (tutorial 04, a hand-set nGiE
  kernel whose n-gram mixing can be read) and ``residual_updates.png`` (tutorial 08, what each
  residual block adds and each token's drift from its embedding).

The PNGs carry no software-version metadata, so re-running with the same libraries gives the
same files.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import pydeberta  # noqa: E402
from pydeberta import viz  # noqa: E402
from pydeberta.heads import masked_lm_head_backward  # noqa: E402
from pydeberta.hub import resolve_model_folder  # noqa: E402
from pydeberta.losses import cross_entropy_backward  # noqa: E402
from pydeberta.model import encoder_layer_backward, relative_embeddings  # noqa: E402
from pydeberta.positions import relative_index  # noqa: E402
from pydeberta.training import value_and_grad  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXT = "And God said, Let there be light: and there was light."
QUERY = "▁light"  # the token clicked in attention_view.png (its first occurrence; else the middle token)


def screenshot_view(view, path, query):
    """Open ``view``'s page in headless Chromium (Debian's chromedriver; Selenium Manager never
    runs), click the query token at index ``query`` and write a PNG of the view to ``path``;
    False when selenium or Chromium is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        return False
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return False
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        with tempfile.TemporaryDirectory() as folder:
            page = view.save(Path(folder) / "view.html")
            driver.get(page.as_uri())
            driver.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")[query].click()
            driver.find_element(By.ID, "pydeberta-view").screenshot(str(path))
    finally:
        driver.quit()
    return True


def relative_gradient_figure(name, tokenizer):
    """Tutorial 09's figure: each layer's gradient of the masked-LM loss on the relative table
    (the LayerNorm-ed ``P``), row by row, the pairs reading each row and the gradient per pair."""
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(name, dtype=np.float64)
    config = model.config
    sample = (resolve_model_folder(name) / "heldout_sample.txt").read_text(encoding="utf-8").splitlines()
    lines = [line for line in sample if len(line.split()) >= 25][:8]
    batch = tokenizer(lines, padding=True, truncation=True, max_length=96, return_tensors="np")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    chosen = np.random.default_rng(0).random(ids.shape) < 0.15
    masked = (mask == 1) & ~np.isin(ids, tokenizer.all_special_ids) & chosen
    labels = np.where(masked, ids, -100)
    outputs, _ = value_and_grad(model, input_ids=np.where(masked, tokenizer.mask_token_id, ids), attention_mask=mask,
                                labels=labels, output_hidden_states=True)
    V = outputs.logits.shape[-1]
    dlogits = cross_entropy_backward(outputs.logits.reshape(-1, V), labels.reshape(-1)).reshape(outputs.logits.shape)
    tree = model.tree["deberta"]
    dh, _, _ = masked_lm_head_backward(dlogits, outputs.hidden_states[-1], model.tree["lm_predictions"],
                                       tree["embeddings"]["word_embeddings"]["weight"], config)  # [B, N, C]
    N, S = ids.shape[1], config.att_span
    visible = (mask[:, None, :, None] * mask[:, None, None, :]).astype(bool)  # [B, 1, N, N]
    index = relative_index(N, N, config.att_span, config.position_buckets, config.max_relative_span)  # [N, N]
    R = relative_embeddings(tree["encoder"], config)  # [2S, C]
    dP_layers = [None] * config.num_hidden_layers
    for i in reversed(range(config.num_hidden_layers)):
        dh, _, dP_layers[i] = encoder_layer_backward(dh, outputs.hidden_states[i], tree["encoder"]["layer"][i], config,
                                                     visible, R, index)
    pairs = sum(np.bincount(index[:n, :n].ravel(), minlength=2 * S) for n in mask.sum(1))  # [2S]
    offsets_ij = np.arange(N)[:, None] - np.arange(N)  # [N, N], i - j
    distances = np.array([len(np.unique(offsets_ij[index == r])) for r in range(2 * S)])  # [2S]
    return viz.plot_relative_gradient(dP_layers, pairs, distances, config.position_buckets)


def notebook_figures(folder):
    """Run the tutorials whose cells carry a ``readme:<name>`` tag and write each such cell's
    PNG output to ``folder/<name>``; returns the paths written."""
    import base64

    import jupytext
    from nbclient import NotebookClient

    written = []
    for script in sorted((REPO / "tutorials").glob("*.py")):
        notebook = jupytext.read(script)
        tagged = [cell for cell in notebook.cells
                  if any(tag.startswith("readme:") for tag in cell.metadata.get("tags", []))]
        if not tagged:
            continue
        NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(script.parent)}}).execute()
        for cell in tagged:
            name = next(tag for tag in cell.metadata["tags"] if tag.startswith("readme:"))[len("readme:"):]
            images = [o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
            if len(images) != 1:
                raise RuntimeError(f"{script.name}: the cell tagged readme:{name} drew {len(images)} figures, not one")
            (folder / name).write_bytes(base64.b64decode(images[0]))
            written.append(folder / name)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pydeberta/tiny", help="checkpoint folder or bundled name")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures"), help="folder to write the PNGs to")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--dpi", type=int, default=110)
    parser.add_argument("--attention-view", action="store_true",
                        help="also screenshot the interactive view in headless Chromium (attention_view.png)")
    parser.add_argument("--notebooks", action="store_true",
                        help="also run tutorials 04 and 08 and write their tagged figures")
    args = parser.parse_args(argv)

    tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(args.model))
    model = pydeberta.DebertaV2Model.from_pretrained(args.model)
    enc = tokenizer(args.text, return_tensors="np")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    out = model(**enc, output_attentions=True, output_study=True)

    spread = viz.term_magnitudes(out)
    layer, head = (int(i) for i in np.unravel_index(
        np.argmax((spread["c2p"] + spread["p2c"]) / spread["c2c"]), spread["c2c"].shape))

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "attention_terms.png": viz.plot_score_terms(out, tokens, layer=layer, head=head)[0],
        "model_view.png": viz.plot_model_view(out, tokens)[0],
        "relative_positions.png": viz.plot_relative_positions(model.config, length=300)[0],
        "relative_gradient.png": relative_gradient_figure(args.model, tokenizer),
    }
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=args.dpi, bbox_inches="tight", metadata={"Software": None})
        print(f"wrote {folder / name}")
    if args.notebooks:
        for path in notebook_figures(folder):
            print(f"wrote {path}")
    if not args.attention_view:
        return
    view = viz.attention_view(model, tokenizer, args.text, layer=layer, head=head)
    query = view.tokens.index(QUERY) if QUERY in view.tokens else len(view.tokens) // 2
    if screenshot_view(view, folder / "attention_view.png", query):
        print(f"wrote {folder / 'attention_view.png'}")
    else:
        print("skipped attention_view.png: it needs selenium (pip install '.[test]') and Debian's chromium and "
              "chromium-driver (apt-get install chromium chromium-driver)")


if __name__ == "__main__":
    main()
