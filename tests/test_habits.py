"""What a transformers user reaches for in the first hour, against transformers doing the same:
the Auto classes, outputs read as mappings or tuples (``return_dict=False``), ``eval()``, and a
``repr`` that shows the architecture with transformers' parameter names and counts."""

import json
import re

import numpy as np
import pytest
import transformers

import pydeberta
from oracle import assert_close, build_transformers_model, to_pydeberta, torch_call

CFG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
           max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=32,
           pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
           type_vocab_size=0)
IDS = np.array([[1, 5, 9, 2, 0], [1, 7, 3, 8, 2]])
MASK = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
HEADS = {  # model class -> (transformers' Auto class, labels keyword and value)
    "DebertaV2Model": ("AutoModel", {}),
    "DebertaV2ForMaskedLM": ("AutoModelForMaskedLM", {"labels": np.array([[-100, 4, -100, -100, -100]] * 2)}),
    "DebertaV2ForSequenceClassification": ("AutoModelForSequenceClassification", {"labels": np.array([1, 0])}),
    "DebertaV2ForTokenClassification": ("AutoModelForTokenClassification", {"labels": np.ones((2, 5), int)}),
    "DebertaV2ForQuestionAnswering": ("AutoModelForQuestionAnswering",
                                      {"start_positions": np.array([1, 2]), "end_positions": np.array([3, 3])}),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """class name -> (folder saved by transformers, the transformers model)."""
    root = tmp_path_factory.mktemp("habits")
    models = {}
    for name in HEADS:
        model = build_transformers_model(name, CFG, seed=len(models))
        model.save_pretrained(root / name)
        models[name] = (root / name, model)
    return models


@pytest.mark.parametrize("name", list(HEADS))
def test_auto_classes_load_what_transformers_auto_classes_load(saved, name):
    folder, reference = saved[name]
    auto, _ = HEADS[name]
    theirs = getattr(transformers, auto).from_pretrained(folder).eval()
    ours = getattr(pydeberta, auto).from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__ == name
    out, expected = ours(input_ids=IDS, attention_mask=MASK), torch_call(theirs, input_ids=IDS, attention_mask=MASK)
    for key in expected.keys():
        assert_close(key, out[key], expected[key], 1e-4)
    config = pydeberta.AutoConfig.from_pretrained(folder)
    assert config.to_dict()["hidden_size"] == transformers.AutoConfig.from_pretrained(folder).hidden_size
    assert pydeberta.auto.model_class_for(config).__name__ == name


def test_the_task_picks_the_head_as_in_transformers(saved):
    """A masked-LM checkpoint loaded for sequence classification: the backbone is the checkpoint's,
    the classifier new (a warning says so), as transformers does."""
    folder, _ = saved["DebertaV2ForMaskedLM"]
    with pytest.warns(UserWarning, match="initialised randomly"):
        ours = pydeberta.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.params["classifier.weight"].shape == tuple(theirs.classifier.weight.shape)
    np.testing.assert_array_equal(ours.params["deberta.encoder.layer.1.output.dense.weight"],
                                  theirs.deberta.encoder.layer[1].output.dense.weight.detach().numpy())


def test_auto_tokenizer_loads_what_a_model_loads():
    for use_fast, cls in ((True, pydeberta.DebertaV2TokenizerFast), (False, pydeberta.DebertaV2Tokenizer)):
        tokenizer = pydeberta.AutoTokenizer.from_pretrained("pydeberta/tiny", use_fast=use_fast)
        assert type(tokenizer) is cls
        direct = cls.from_pretrained("pydeberta/tiny")
        assert tokenizer("The cat sat.")["input_ids"] == direct("The cat sat.")["input_ids"]


@pytest.mark.parametrize("model_type", ["deberta", "bert"])
def test_auto_classes_refuse_another_architecture_by_name(saved, tmp_path, model_type):
    folder, _ = saved["DebertaV2Model"]
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, model_type=model_type)))
    for load in (pydeberta.AutoConfig.from_pretrained, pydeberta.AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=f"model_type '{model_type}'; pydeberta implements DeBERTa-v2/v3"):
            load(tmp_path)
    with pytest.raises(TypeError, match="is used through AutoModel.from_pretrained"):
        pydeberta.AutoModel()


@pytest.mark.parametrize("name", list(HEADS))
def test_return_dict_false_gives_transformers_tuple(saved, name):
    _, reference = saved[name]
    ours = to_pydeberta(reference)
    labels = HEADS[name][1]
    inputs = dict(input_ids=IDS, attention_mask=MASK, output_hidden_states=True, **labels)
    theirs = torch_call(reference, return_dict=False, **inputs)
    mine = ours(return_dict=False, **inputs)
    assert isinstance(mine, tuple) and len(mine) == len(theirs)
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if isinstance(b, tuple):
            assert len(a) == len(b)
            for j, (x, y) in enumerate(zip(a, b)):
                assert_close(f"[{i}][{j}]", x, y, 1e-4)
        else:
            assert_close(f"[{i}]", a, b, 1e-4)
    ours.config.return_dict = False  # the config's field, as transformers reads it
    assert isinstance(ours(input_ids=IDS), tuple) and not isinstance(ours(input_ids=IDS, return_dict=True), tuple)
    with pytest.raises(TypeError, match="return_dict must be True, False or None"):
        ours(input_ids=IDS, return_dict="no")


def test_outputs_read_as_mappings_like_transformers(saved):
    _, reference = saved["DebertaV2ForSequenceClassification"]
    inputs = dict(input_ids=IDS, attention_mask=MASK, labels=np.array([1, 0]), output_attentions=True)
    mine, theirs = to_pydeberta(reference)(**inputs), torch_call(reference, **inputs)
    assert mine.keys() == list(theirs.keys()) == ["loss", "logits", "attentions"]
    assert [key for key, _ in mine.items()] == [key for key, _ in theirs.items()]
    assert len(mine.values()) == len(list(theirs.values())) == 3
    as_dict = mine.to_dict()
    assert type(as_dict) is dict and list(as_dict) == mine.keys() and as_dict["logits"] is mine.logits
    assert_close("loss", as_dict["loss"], theirs["loss"], 1e-5)


def test_train_and_eval_switch_the_mode_and_return_the_model(saved):
    """As transformers: ``train()`` / ``eval()`` / ``train(False)`` return the model and set
    ``training`` (dropout itself is tested against transformers in tests/test_gradients.py)."""
    ours = to_pydeberta(saved["DebertaV2Model"][1])
    assert ours.training is False
    assert ours.train() is ours and ours.training is True
    assert ours.eval() is ours and ours.training is False
    assert ours.train(True) is ours and ours.train(False) is ours and ours.training is False


@pytest.mark.parametrize("name", ["DebertaV2ForMaskedLM", "DebertaV2ForSequenceClassification"])
def test_repr_shows_every_parameter_under_transformers_names(saved, name):
    """Each line's tensors are transformers' parameters of that module (layers shown once, with
    their count); the header's total is transformers' ``num_parameters()``."""
    _, reference = saved[name]
    text = repr(to_pydeberta(reference))
    header, *lines = text.splitlines()
    assert header.startswith(f"{name}({reference.num_parameters():,} parameters, float32: 2 layers, hidden 16")
    theirs = {key: tuple(p.shape) for key, p in reference.named_parameters()}
    described = {}
    for line in lines:
        path, shapes, count = re.fullmatch(r"  (\S+)\s+(.+)  \((.+)\)", line).groups()
        layers = re.search(r"\[0\.\.(\d+)\]", path)
        for tensor, shape in re.findall(r"(\w+) \[([\d, ]*)\]", shapes):
            for layer in range(int(layers.group(1)) + 1) if layers else [None]:
                key = re.sub(r"\[0\.\.\d+\]", f".{layer}", path) if layers else path
                described[f"{key}.{tensor}"] = tuple(int(d) for d in shape.split(", ") if d)
    assert described == theirs
