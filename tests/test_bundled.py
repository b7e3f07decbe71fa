"""The bundled model ``pydeberta/tiny`` (pydeberta/models/tiny, trained by tools/train_tiny.py).

It loads by name, its fill-mask logits equal transformers' on the same folder, the held-out
accuracy its model card claims is reproduced on the shipped held-out slice (heldout_sample.txt),
and the probe sentences' answers recorded in eval_results.json (the card's before/after table)
are transformers' fill-mask pipeline's on the same folder.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import pydeberta
from pydeberta.hub import BUNDLED_MODELS, resolve_model_folder

NAME = "pydeberta/tiny"
FOLDER = Path(pydeberta.__file__).parent / "models" / "tiny"
SENTENCES = [
    "In the beginning God created the heaven and the [MASK].",
    "The [MASK] statement is used to leave a loop early.",
    "A list is a mutable [MASK] of items, and a tuple is [MASK].",
    "Never put off till tomorrow what you can do [MASK].",
    "Beautiful is better than [MASK].",           # [MASK] before punctuation: [MASK] ▁ .
]
SEQ_LEN = 128       # the card's protocol: rows of [CLS] + 126 tokens + [SEP]
MASK_PROB = 0.15


@pytest.fixture(scope="module")
def results():
    return json.loads((FOLDER / "eval_results.json").read_text())


@pytest.fixture(scope="module")
def model():
    return pydeberta.DebertaV2ForMaskedLM.from_pretrained(NAME)


@pytest.fixture(scope="module")
def tokenizer():
    return pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder(NAME))


def test_name_resolves_to_the_package_folder():
    assert resolve_model_folder(NAME) == FOLDER == BUNDLED_MODELS[NAME]


def test_folder_holds_a_transformers_checkpoint_under_15_mb():
    for name in ("config.json", "model.safetensors", "spm.model", "tokenizer_config.json", "README.md"):
        assert (FOLDER / name).is_file(), name
    size = sum(path.stat().st_size for path in FOLDER.iterdir() if path.is_file())
    assert size < 15e6, f"{size / 1e6:.1f} MB"


def test_config_is_deberta_v3_style():
    config = pydeberta.DebertaV2Config.from_pretrained(NAME)
    assert config.relative_attention and config.position_buckets > 0 and config.share_att_key
    assert set(config.pos_att_type) == {"p2c", "c2p"} and not config.position_biased_input
    assert config.legacy is False


def test_tokenizer_layout(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")]
    assert ids == [0, 1, 2, 3]
    assert tokenizer.mask_token_id == tokenizer.vocab_size


def test_tokenizer_loads_by_name():
    tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(NAME)
    assert tokenizer.get_vocab() == pydeberta.DebertaV2Tokenizer.from_pretrained(NAME).get_vocab()
    assert tokenizer.mask_token_id == tokenizer.vocab_size


def test_fill_mask_logits_equal_transformers(model, tokenizer):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference = transformers.DebertaV2ForMaskedLM.from_pretrained(FOLDER, dtype=torch.float32).eval()
    reference_tokenizer = transformers.DebertaV2Tokenizer.from_pretrained(FOLDER)
    for sentence in SENTENCES:
        ids = tokenizer(sentence)["input_ids"]
        assert ids == reference_tokenizer(sentence)["input_ids"], sentence
        assert tokenizer.mask_token_id in ids
        ours = model(input_ids=np.array([ids])).logits
        with torch.no_grad():
            theirs = reference(input_ids=torch.tensor([ids])).logits.numpy()
        worst = np.unravel_index(np.abs(ours - theirs).argmax(), ours.shape)
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0,
                                   err_msg=f"{sentence!r}: largest difference at {worst}")
        masks = np.array(ids) == tokenizer.mask_token_id
        assert (ours[0, masks].argmax(-1) == theirs[0, masks].argmax(-1)).all()


def test_fill_mask_pipeline_accepts_the_name():
    fill = pydeberta.pipeline("fill-mask", model=NAME)
    predictions = fill(SENTENCES[0])
    assert len(predictions) == 5
    assert all(p["sequence"] for p in predictions)


def heldout_rows(tokenizer, lines):
    """The card's packing: token ids of the lines back to back, rows of [CLS] + 126 + [SEP]."""
    ids = [i for row in tokenizer(lines, add_special_tokens=False)["input_ids"] for i in row]
    body = SEQ_LEN - 2
    n = len(ids) // body
    rows = np.asarray(ids[:n * body], dtype=np.int64).reshape(n, body)
    return np.concatenate([np.full((n, 1), tokenizer.cls_token_id), rows,
                           np.full((n, 1), tokenizer.sep_token_id)], axis=1)           # (N, SEQ_LEN)


def slice_accuracy(model, tokenizer, results):
    """``(top1, top5, masked targets)`` of ``model`` on the shipped held-out slice, masked as the card masks it."""
    lines = (FOLDER / "heldout_sample.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == results["heldout_sample"]["lines"]
    rows = heldout_rows(tokenizer, lines)
    rng = np.random.default_rng(results["mask_seed"])
    chosen = (rng.random(rows.shape) < MASK_PROB) & (rows >= 4) & (rows < tokenizer.vocab_size)
    inputs = np.where(chosen, tokenizer.mask_token_id, rows)
    logits = np.concatenate([model(input_ids=inputs[i:i + 16]).logits[chosen[i:i + 16]]
                             for i in range(0, len(rows), 16)])                           # (M, V)
    target = rows[chosen]
    top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
    return float((top5[:, 0] == target).mean()), float((top5 == target[:, None]).any(-1).mean()), target


def test_heldout_accuracy_reproduced_on_the_shipped_slice(model, tokenizer, results):
    claim = results["heldout_sample"]
    top1_acc, top5_acc, target = slice_accuracy(model, tokenizer, results)
    baseline = results["baseline_token_ids"]
    baseline_top1 = float((target == baseline[0]).mean())
    baseline_top5 = float(np.isin(target, baseline[:5]).mean())

    assert len(target) == claim["masked_tokens"]
    assert top1_acc >= 2 * baseline_top1, (top1_acc, baseline_top1)
    assert top5_acc > baseline_top5
    # the slice's own row of the card, up to argmax ties flipped by float rounding
    assert abs(top1_acc - claim["top1"]) <= 0.003 and abs(top5_acc - claim["top5"]) <= 0.003
    assert baseline_top1 == pytest.approx(claim["baseline_top1"]) and baseline_top5 == pytest.approx(claim["baseline_top5"])
    # and the slice agrees with the whole held-out split within sampling error
    full = results["heldout"]
    assert abs(top1_acc - full["top1"]) < 0.06 and abs(top5_acc - full["top5"]) < 0.06


def test_model_card_states_the_heldout_figures(results):
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    full = results["heldout"]
    for key in ("top1", "top5", "baseline_top1", "baseline_top5"):
        assert f"{full[key]:.3f}" in card, key
    assert full["top1"] >= 2 * full["baseline_top1"]


def test_recorded_probe_answers_are_transformers_fill_mask_answers(results):
    """The probe table's "after" column: every recorded top 5 (words and scores) is what
    transformers' fill-mask pipeline answers on this folder, and pydeberta's pipeline agrees."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference = transformers.pipeline(
        "fill-mask", model=transformers.DebertaV2ForMaskedLM.from_pretrained(FOLDER, dtype=torch.float32),
        tokenizer=transformers.DebertaV2Tokenizer.from_pretrained(FOLDER), top_k=5)
    ours = pydeberta.pipeline("fill-mask", model=NAME)
    probes = results["probes"]["sentences"]
    assert len(probes) == results["probes"]["n"] >= 25
    for probe in probes:
        theirs = reference(probe["sentence"])
        recorded = [word for word, _ in probe["top5"]]
        assert [p["token_str"].strip() for p in theirs] == recorded, probe["sentence"]
        np.testing.assert_allclose([p["score"] for p in theirs], [score for _, score in probe["top5"]], atol=2e-4)
        assert [p["token_str"].strip() for p in ours(probe["sentence"])] == recorded, probe["sentence"]
        expected = {word.lower() for word in probe["expected"]}
        assert probe["hit1"] == (recorded[0].lower() in expected)
        assert probe["hit5"] == any(word.lower() in expected for word in recorded)
    assert results["probes"]["hit1"] == sum(p["hit1"] for p in probes)
    assert results["probes"]["hit5"] == sum(p["hit5"] for p in probes)


def test_model_card_states_the_before_and_after_figures(results):
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    before = results["before"]
    for split in ("heldout", "heldout_words"):
        for key in ("top1", "top5"):
            assert f"{before[split][key]:.3f} | {results[split][key]:.3f}" in card, (split, key)
    hits = f"{before['probes']['hit1']} | {results['probes']['hit1']} | {before['probes']['hit5']} | {results['probes']['hit5']}"
    assert hits in card
    for probe in results["probes"]["sentences"]:
        assert probe["sentence"].replace("[MASK]", "`[MASK]`") in card
