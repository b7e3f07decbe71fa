"""pydeberta.saving: a failed save_pretrained (model, config, tokenizer) leaves the folder exactly as
it was and raises OSError naming the file; a good one replaces the files."""

import os

import numpy as np
import pytest
import safetensors

import pydeberta
from pydeberta import modeling, saving

CFG = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     safetensors.SafetensorError("I/O error: No space left on device")])
def test_a_failed_model_save_leaves_the_folder_as_it_was(tmp_path, monkeypatch, failure):
    first = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**CFG), seed=0)
    first.save_pretrained(tmp_path)
    before = snapshot(tmp_path)
    second = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**dict(CFG, vocab_size=31)), seed=1)

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")  # something reached the disk before it filled up
        raise failure
    monkeypatch.setattr(modeling, "write_safetensors", full_disk)
    with pytest.raises(OSError, match=r"save_pretrained: could not write .*the folder was left as it was"):
        second.save_pretrained(tmp_path)
    assert snapshot(tmp_path) == before  # config.json untouched, no temporary left behind
    reloaded = pydeberta.DebertaV2Model.from_pretrained(tmp_path)
    np.testing.assert_array_equal(reloaded.params["embeddings.word_embeddings.weight"],
                                  first.params["embeddings.word_embeddings.weight"])


def test_a_good_save_replaces_the_files(tmp_path):
    pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**CFG), seed=0).save_pretrained(tmp_path)
    pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**dict(CFG, vocab_size=31)), seed=1).save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    assert pydeberta.DebertaV2Model.from_pretrained(tmp_path).config.vocab_size == 31


def test_a_failed_tokenizer_save_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained("pydeberta/tiny")
    tokenizer.save_pretrained(tmp_path)
    before = snapshot(tmp_path)
    real_replace = saving.os.replace

    def refuse(source, target):  # the first rename fails: nothing may have been replaced
        raise PermissionError(13, "Permission denied", target)
    monkeypatch.setattr(saving.os, "replace", refuse)
    with pytest.raises(OSError, match="could not write"):
        tokenizer.save_pretrained(tmp_path)
    monkeypatch.setattr(saving.os, "replace", real_replace)
    assert snapshot(tmp_path) == before


def test_saving_into_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(OSError, match="is a file, not a folder"):
        pydeberta.DebertaV2Config(**CFG).save_pretrained(path)
