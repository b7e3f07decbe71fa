"""Draw the README's figures from the bundled model with ``pydeberta.viz``.

::

    python tools/make_readme_figures.py                  # writes docs/figures/*.png
    python tools/make_readme_figures.py --out /tmp/figs --model path/to/checkpoint

Figures (the same calls as tutorials 03 and 00):

- ``attention_terms.png``: c2c, c2p and p2c score terms of one head and their sum
  (:func:`pydeberta.viz.plot_score_terms`), for the head whose relative terms move the scores most
  relative to c2c;
- ``model_view.png``: every layer's and head's attention (:func:`pydeberta.viz.plot_model_view`).
- ``relative_positions.png``: ``i - j``, its log bucket and the table row over 300 positions, the
  identity band marked (:func:`pydeberta.viz.plot_relative_positions`).

The PNGs carry no software-version metadata, so re-running with the same libraries gives the
same files.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import pydeberta  # noqa: E402
from pydeberta import viz  # noqa: E402
from pydeberta.hub import resolve_model_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXT = "And God said, Let there be light: and there was light."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pydeberta/tiny", help="checkpoint folder or bundled name")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures"), help="folder to write the PNGs to")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--dpi", type=int, default=110)
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
    }
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=args.dpi, bbox_inches="tight", metadata={"Software": None})
        print(f"wrote {folder / name}")


if __name__ == "__main__":
    main()
