"""Beyond one process: models, tokenizers and pipelines pickle cheaply (by folder, checked by a
digest of the weights), and ``map_pipeline`` runs a pipeline on a real local Dask cluster of two
worker processes, giving the single-process results in order, also when a worker is killed
mid-run."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import pydeberta
from pydeberta import pipeline
from pydeberta.distributed import connect, map_pipeline

TINY = Path(pydeberta.__file__).parent / "models" / "tiny"
LINES = [line.strip() for line in (TINY / "heldout_sample.txt").read_text(encoding="utf-8").splitlines()
         if len(line.split()) >= 4]
MASKED = [" ".join(words[:len(words) // 2] + ["[MASK]"] + words[len(words) // 2 + 1:])
          for words in (line.split() for line in LINES)]


def logits(model):
    return model(input_ids=[[1, 260, 300, 2]]).logits


def test_a_loaded_model_pickles_as_its_folder_and_each_process_loads_it_once():
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY)
    data = pickle.dumps(model)
    assert len(data) < 10_000  # folder, config, digest: not the 21 MB of weights
    first, second = pickle.loads(data), pickle.loads(data)
    assert first is second  # loaded once in this process
    np.testing.assert_array_equal(logits(first), logits(model))
    with pytest.raises(ValueError, match="read-only"):
        model.params["deberta.encoder.LayerNorm.weight"][0] = 0  # an in-place edit would diverge from the folder


def test_a_changed_model_pickles_by_value():
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY)
    norm = model.tree["deberta"]["encoder"]["LayerNorm"]
    norm["weight"] = norm["weight"] * 2  # replaced: the folder no longer describes the model
    data = pickle.dumps(model)
    assert len(data) > 20_000_000
    copy = pickle.loads(data)
    np.testing.assert_array_equal(logits(copy), logits(model))
    assert not np.array_equal(logits(copy), logits(pydeberta.DebertaV2ForMaskedLM.from_pretrained(TINY)))


def test_a_folder_that_changed_since_pickling_is_an_error(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    model = pydeberta.DebertaV2Model.from_pretrained(folder)
    data = pickle.dumps(model)
    changed = pydeberta.DebertaV2Model.from_pretrained(folder)
    changed.tree["encoder"]["LayerNorm"]["bias"] = changed.tree["encoder"]["LayerNorm"]["bias"] + 1
    changed.save_pretrained(folder)
    with pytest.raises(ValueError, match="no longer holds the weights this DebertaV2Model was pickled with"):
        pickle.loads(data)


def test_tokenizers_and_pipelines_pickle():
    fill = pipeline("fill-mask", model=TINY, top_k=3)
    copy = pickle.loads(pickle.dumps(fill))
    assert copy(MASKED[:5]) == fill(MASKED[:5])
    assert copy.tokenizer("The cat sat.")["input_ids"] == fill.tokenizer("The cat sat.")["input_ids"]


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as dask_client:  # two worker processes, one thread each
        yield dask_client


@pytest.mark.parametrize("task, inputs, options", [
    ("fill-mask", MASKED[:60], {"top_k": 2}),
    ("feature-extraction", LINES[:40], {"pooling": "mean", "normalize": True})])
def test_map_pipeline_on_two_worker_processes_equals_one_process(client, task, inputs, options):
    pipe = pipeline(task, model=TINY, **options)
    expected = pipe(inputs, batch_size=8)
    results = map_pipeline(pipe, inputs, client=client, partition_size=7, batch_size=8)
    assert len(results) == len(inputs)
    if task == "feature-extraction":
        np.testing.assert_allclose(np.array(results), np.array(expected), atol=1e-5)
    else:
        for ours, theirs in zip(results, expected):
            assert [p["token"] for p in ours] == [p["token"] for p in theirs]
            np.testing.assert_allclose([p["score"] for p in ours], [p["score"] for p in theirs], atol=1e-5)
    workers = client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()  # really other processes


def test_a_worker_killed_mid_run_loses_no_rows(client):
    pipe = pipeline("fill-mask", model=TINY, top_k=1)
    inputs = (MASKED * 4)[:600]
    expected = [result[0]["token"] for result in pipe(inputs, batch_size=16)]
    before = client.run(os.getpid)
    futures = client.compute(map_pipeline(pipe, inputs, partition_size=10, batch_size=16, compute=False))
    deadline = time.monotonic() + 60
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(client.processing().values()), "the run had not started within a minute"
    victim = next(iter(before.values()))
    os.kill(victim, signal.SIGKILL)  # mid-run: tasks are being processed
    results = futures.result(timeout=180)
    assert [result[0]["token"] for result in results] == expected
    after = client.run(os.getpid)
    assert victim not in after.values()  # the killed worker was replaced, its partitions run again



def test_the_command_line_runs_through_a_local_cluster(tmp_path):
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(MASKED[:50]) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "pydeberta.cli", "fill-mask", "--file", str(source), "--top-k", "1",
               "--batch-size", "4", "--output", str(output), "--dask", "local:2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    expected = pipeline("fill-mask", model=TINY, top_k=1).map(MASKED[:50])
    assert [line["input"] for line in lines] == MASKED[:50]
    assert [line["result"][0]["token"] for line in lines] == [result[0]["token"] for result in expected]
