"""The ``pydeberta`` command end to end, in subprocesses: every command, every input form, errors."""

import fcntl
import json
import os
import pty
import struct
import subprocess
import tempfile
import sys
import termios
import time
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


# --------------------------------------------------------------------------- batches, resuming, progress
BUNDLED = Path(pydeberta.__file__).parent / "models" / "tiny"
HELDOUT = [line.split() for line in (BUNDLED / "heldout_sample.txt").read_text(encoding="utf-8").splitlines()
           if len(line.split()) >= 4]
MASKED = [" ".join(words[:len(words) // 2] + ["[MASK]"] + words[len(words) // 2 + 1:]) for words in HELDOUT]


def assert_same_predictions(ours, expected):
    """Same inputs, tokens and sequences, scores within 1e-5 (batches differ only by rounding)."""
    assert [r["input"] for r in ours] == [r["input"] for r in expected]
    for mine, theirs in zip(ours, expected):
        assert [p["token"] for p in mine["result"]] == [p["token"] for p in theirs["result"]]
        np.testing.assert_allclose([p["score"] for p in mine["result"]], [p["score"] for p in theirs["result"]],
                                   atol=1e-5)


def test_batches_give_the_one_at_a_time_results_in_input_order(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(MASKED[:70]) + "\n", encoding="utf-8")
    one = json_lines(cli("fill-mask", "--file", source, "--json", "--batch-size", "1", "--top-k", "2"))
    many = json_lines(cli("fill-mask", "--file", source, "--json", "--batch-size", "16", "--top-k", "2"))
    assert_same_predictions(many, one)
    pipe = pydeberta.pipeline("fill-mask", model="pydeberta/tiny")
    assert [r["result"][0]["token"] for r in one] == [pipe(text)[0]["token"] for text in MASKED[:70]]


def test_an_interrupted_output_resumes_after_its_last_complete_line(tmp_path):
    """Kill a run once it has written some lines, leave half a line as a crash mid-write would,
    restart with the same arguments: every input has exactly one line, in order, equal to an
    uninterrupted run's."""
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    inputs = (MASKED * 3)[:600]
    source.write_text("\n".join(inputs) + "\n", encoding="utf-8")
    args = [sys.executable, "-m", "pydeberta.cli", "fill-mask", "--file", str(source), "--output", str(output),
            "--batch-size", "1", "--top-k", "2"]
    run = subprocess.Popen(args, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (not output.exists() or output.read_bytes().count(b"\n") < 16) and time.monotonic() < deadline:
        time.sleep(0.02)
    run.kill()
    run.wait()
    written = output.read_bytes().count(b"\n")
    assert 16 <= written < len(inputs), "the run must be killed in the middle"
    with open(output, "ab") as f:
        f.write(b'{"input": "half a li')  # as if killed while writing
    resumed = subprocess.run(args, cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "removed a half-written last line" in resumed.stderr
    assert f"{len(inputs) - written} results written to {output} after the {written} it held" in resumed.stderr
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    whole = json_lines(cli("fill-mask", "--file", source, "--json", "--batch-size", "8", "--top-k", "2"))
    assert_same_predictions(lines, whole)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(MASKED[1:20]) + "\n", encoding="utf-8")
    refused = cli("fill-mask", "--file", other, "--output", output)
    assert refused.returncode == 1 and "holds results of other inputs (line 1)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_progress_bar_goes_to_a_terminal_and_never_into_results(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(MASKED[:40]) + "\n", encoding="utf-8")
    piped = cli("fill-mask", "--file", source, "--json")
    assert piped.returncode == 0 and piped.stderr == ""  # standard error is no terminal: no bar
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with_terminal = subprocess.run([sys.executable, "-m", "pydeberta.cli", "fill-mask", "--file", str(source),
                                    "--json"], stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300,
                                   cwd=tempfile.gettempdir())
    os.close(follower)
    chunks = []
    while True:  # everything the command wrote to the terminal, until its end (EIO once drained)
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    terminal = b"".join(chunks).decode()
    assert "40/40" in terminal and "pydeberta fill-mask" in terminal
    assert with_terminal.stdout == piped.stdout  # results untouched by the bar


def test_targets_are_words_and_a_word_of_several_pieces_is_said_in_one_line():
    result = cli("fill-mask", "--json", "--targets", "earth,sea,aardvarkian",
                 "In the beginning God created the heaven and the [MASK].")
    assert result.returncode == 0
    notes = result.stderr.strip().splitlines()
    assert notes == ["pydeberta fill-mask: note: target 'aardvarkian' is 5 pieces (▁a ard var k ian); it is scored "
                     "by its first piece '▁a', as transformers does"]
    pipe = pydeberta.pipeline("fill-mask", model="pydeberta/tiny")
    expected = pipe("In the beginning God created the heaven and the [MASK].", targets=["▁earth", "▁sea", "▁a"])
    predictions = json.loads(result.stdout)["result"]
    assert [p["token_str"] for p in predictions] == [p["token_str"] for p in expected]
    np.testing.assert_allclose([p["score"] for p in predictions], [p["score"] for p in expected], atol=1e-6)


def test_embed_writes_transformers_hidden_states_pooled(folders, tmp_path):
    """``pydeberta embed`` on a masked-LM checkpoint: transformers' DebertaV2Model hidden states of
    the same ids, mean-pooled and normalised, as an .npy array and as JSON lines."""
    import torch
    import transformers

    texts = ["The cat sat on the mat.", "A much longer sentence about the weather in Berlin tomorrow.", "Hi."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    array_file, lines_file = tmp_path / "vectors.npy", tmp_path / "vectors.jsonl"
    done = cli("embed", "--model", folders["mlm"], "--file", source, "--normalize", "--npy", array_file)
    assert done.returncode == 0 and f"3 embeddings (16 dimensions) written to {array_file}" in done.stderr
    assert cli("embed", "--model", folders["mlm"], "--file", source, "--normalize", "--output",
               lines_file).returncode == 0
    tokenizer = pydeberta.DebertaV2Tokenizer.from_pretrained(folders["mlm"])
    reference = transformers.DebertaV2Model.from_pretrained(folders["mlm"]).eval()
    expected = []
    for text in texts:
        with torch.no_grad():
            hidden = reference(input_ids=torch.tensor([tokenizer(text)["input_ids"]])).last_hidden_state[0]
        expected.append(torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).numpy())
    np.testing.assert_allclose(np.load(array_file), np.array(expected), atol=1e-5)
    records = [json.loads(line) for line in lines_file.read_text(encoding="utf-8").splitlines()]
    assert [r["input"] for r in records] == texts
    np.testing.assert_allclose([r["result"] for r in records], np.array(expected), atol=1e-5)
    refused = cli("embed", "--file", source, "--npy", array_file, "--json")
    assert refused.returncode == 1 and "--npy writes one array" in refused.stderr
