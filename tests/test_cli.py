"""The ``pydeberta`` command end to end, in subprocesses: every command, every input form, errors."""

import json
import os
import subprocess
import tempfile
import sys
from pathlib import Path

import numpy as np
import pytest

import pydeberta
from oracle import build_transformers_model

SPM = Path(os.environ.get("PYDEBERTA_SPM_MODEL",
                          Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deberta-v3" / "spm.model"))
TINY = dict(vocab_size=128100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            relative_attention=True, position_buckets=8, pos_att_type="p2c|c2p", share_att_key=True,
            norm_rel_ebd="layer_norm", position_biased_input=False)
HEADS = {
    "mlm": ("DebertaV2ForMaskedLM", dict(legacy=False, tie_word_embeddings=False)),
    "nli": ("DebertaV2ForSequenceClassification",
            dict(id2label={0: "entailment", 1: "neutral", 2: "contradiction"})),
    "ner": ("DebertaV2ForTokenClassification", dict(id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"})),
    "qa": ("DebertaV2ForQuestionAnswering", {}),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One tiny checkpoint folder per head, each with the real v3 tokenizer files."""
    assert SPM.is_file(), f"the DeBERTa-v3 vocabulary is missing: {SPM} (set PYDEBERTA_SPM_MODEL)"
    tokenizer = pydeberta.DebertaV2Tokenizer(str(SPM))
    out = {}
    for name, (cls_name, extra) in HEADS.items():
        folder = tmp_path_factory.mktemp(name)
        build_transformers_model(cls_name, dict(TINY, **extra)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[name] = folder
    return out


def cli(*args, stdin=None):
    """Run ``pydeberta ARGS`` as a user would; returns the completed process."""
    return subprocess.run([sys.executable, "-m", "pydeberta.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir())  # cwd: run the installed package, not the source tree


def json_lines(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_fill_mask_json_equals_the_pipeline(folders):
    result = json_lines(cli("fill-mask", "--model", folders["mlm"], "--json", "--top-k", "3",
                            "Beautiful is better than [MASK].", "Simple is [MASK] than complex."))
    pipe = pydeberta.pipeline("fill-mask", model=folders["mlm"])
    assert [r["input"] for r in result] == ["Beautiful is better than [MASK].", "Simple is [MASK] than complex."]
    for record in result:
        expected = pipe(record["input"], top_k=3)
        assert [r["token"] for r in record["result"]] == [r["token"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in record["result"]], [r["score"] for r in expected], rtol=1e-6)


def test_fill_mask_human_output_lists_scores_and_sequences(folders):
    result = cli("fill-mask", "--model", folders["mlm"], "--top-k", "2", "A [MASK] day.")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "A [MASK] day." and len(lines) == 3
    assert all(float(line.split()[0]) >= 0 for line in lines[1:])


def test_inputs_from_file_json_lines_and_stdin_agree(folders, tmp_path):
    texts = ["The cat is [MASK].", "I like [MASK] tea."]
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(texts) + "\n")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    from_args = json_lines(cli("fill-mask", "--model", folders["mlm"], "--json", *texts))
    from_file = cli("fill-mask", "--model", folders["mlm"], "--json", "--file", plain, "--progress")
    assert "2/2" in from_file.stderr  # the progress bar goes to standard error
    from_jsonl = json_lines(cli("fill-mask", "--model", folders["mlm"], "--json", "--file", jsonl))
    from_stdin = json_lines(cli("fill-mask", "--model", folders["mlm"], "--json", stdin="\n".join(texts)))
    assert from_args == json_lines(from_file) == from_jsonl == from_stdin


def test_classify_with_pairs(folders):
    result = json_lines(cli("classify", "--model", folders["nli"], "--json", "--pair", "A man eats.",
                            "Someone is eating.", "--top-k", "3"))
    pipe = pydeberta.pipeline("text-classification", model=folders["nli"])
    expected = pipe({"text": "Someone is eating.", "text_pair": "A man eats."}, top_k=3)
    assert [r["label"] for r in result[0]["result"]] == [r["label"] for r in expected]
    assert {r["label"] for r in expected} == {"entailment", "neutral", "contradiction"}


def test_zero_shot(folders):
    result = json_lines(cli("zero-shot", "--model", folders["nli"], "--json", "--labels", "sports, politics,food",
                            "The match ended in a draw."))
    expected = pydeberta.pipeline("zero-shot-classification", model=folders["nli"])(
        "The match ended in a draw.", candidate_labels=["sports", "politics", "food"])
    assert result[0]["result"]["labels"] == expected["labels"]
    np.testing.assert_allclose(result[0]["result"]["scores"], expected["scores"], rtol=1e-6)


def test_ner(folders):
    result = json_lines(cli("ner", "--model", folders["ner"], "--json", "--aggregation", "none",
                            "Ada Lovelace was born in London."))
    expected = pydeberta.pipeline("ner", model=folders["ner"])("Ada Lovelace was born in London.")
    assert [(r["entity"], r["start"], r["end"]) for r in result[0]["result"]] == \
        [(r["entity"], r["start"], r["end"]) for r in expected]


def test_qa_from_arguments_and_json_lines(folders, tmp_path):
    question, context = "Where was Ada born?", "Ada Lovelace was born in London in 1815."
    direct = json_lines(cli("qa", "--model", folders["qa"], "--json", "--question", question, "--context", context))
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": question, "context": context}) + "\n")
    from_file = json_lines(cli("qa", "--model", folders["qa"], "--json", "--file", path))
    expected = pydeberta.pipeline("question-answering", model=folders["qa"])(question=question, context=context)
    assert direct[0]["result"] == from_file[0]["result"]
    assert direct[0]["result"]["answer"] == expected["answer"] == context[expected["start"]:expected["end"]]


def test_inspect_splits_parameters(folders):
    result = cli("inspect", folders["mlm"], "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    params = info["parameters"]
    assert params["embeddings"] == 128100 * 16 + 2 * 16  # word embeddings + LayerNorm
    assert params["embeddings"] + params["encoder"] + params["head"] == params["total"]
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(folders["mlm"])
    assert params["total"] == model.num_parameters()
    assert info["architectures"] == ["DebertaV2ForMaskedLM"] and "backend" in info


def test_attention_writes_a_png(folders, tmp_path):
    out = tmp_path / "fig.png"
    result = cli("attention", folders["mlm"], "The cat sat.", "--layer", "1", "--head", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["fill-mask", "--model", "/no/such/folder", "x [MASK]"], "no such folder"),
    (["ner", "--model", "{mlm}", "text"], "needs a DebertaV2ForTokenClassification checkpoint"),
    (["fill-mask", "--model", "{mlm}", "--file", "/no/such/file.txt"], "cannot read --file"),
    (["fill-mask", "--model", "{mlm}", "no mask here"], "mask"),
    (["qa", "--model", "{qa}", "--question", "q"], "both --question and --context"),
    (["zero-shot", "--model", "{nli}", "--labels", " , ", "text"], "label"),
    (["attention", "{mlm}", "text", "--layer", "7"], "--layer must lie in [0, 2)"),
])
def test_errors_are_one_line_and_a_nonzero_exit(folders, args, message):
    result = cli(*[a.format(**folders) for a in args], stdin="")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
