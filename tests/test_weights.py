"""Loading real checkpoint folders written by transformers, the key table, and saving back."""

import subprocess
import tempfile
import sys
import warnings

import numpy as np
import pytest
import torch
import transformers

import pydeberta
from oracle import assert_close, assert_outputs_close, build_transformers_model, state_dict_numpy, torch_call
from pydeberta.checkpoint import read_state_dict, write_safetensors
from pydeberta.errors import CheckpointError
from pydeberta.weights import expected_shapes

V3_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
               max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=32,
               pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
               num_labels=3)
IDS = np.array([[1, 5, 9, 3, 2, 0], [1, 7, 11, 2, 0, 0]])
MASK = (IDS > 0).astype(int)
MASK[:, 0] = 1

CLASSES = ["DebertaV2Model", "DebertaV2ForMaskedLM", "DebertaV2ForSequenceClassification",
           "DebertaV2ForTokenClassification", "DebertaV2ForQuestionAnswering", "DebertaV2ForMultipleChoice"]


def inputs_for(cls_name):
    if cls_name == "DebertaV2ForMultipleChoice":
        return dict(input_ids=np.stack([IDS, IDS[::-1]], 1), attention_mask=np.stack([MASK, MASK[::-1]], 1))
    return dict(input_ids=IDS, attention_mask=MASK)


def config_for(cls_name, **extra):
    cfg = dict(V3_LIKE, **extra)
    if cls_name == "DebertaV2ForQuestionAnswering":
        cfg["num_labels"] = 2
    return cfg


def load_quietly(cls_name, folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete checkpoint loads without any warning
        return getattr(pydeberta, cls_name).from_pretrained(folder, **kwargs)


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("layout", ["safetensors", "bin", "safetensors-sharded", "bin-sharded"])
def test_every_class_loads_every_layout_transformers_writes(tmp_path, cls_name, layout):
    extra = dict(legacy=False, tie_word_embeddings=False) if layout.startswith("bin") else {}
    hf_model = build_transformers_model(cls_name, config_for(cls_name, **extra))
    hf_model.save_pretrained(tmp_path, safe_serialization=layout.startswith("safetensors"),
                             max_shard_size="8KB" if layout.endswith("sharded") else "5GB")
    assert any(p.name.endswith(".index.json") for p in tmp_path.iterdir()) == layout.endswith("sharded")
    ours = load_quietly(cls_name, tmp_path)
    assert_outputs_close(ours(**inputs_for(cls_name)), torch_call(hf_model, **inputs_for(cls_name)), 1e-4)
    assert ours.num_parameters() == hf_model.num_parameters()


def test_float64_from_pretrained_matches_transformers_in_double(tmp_path):
    hf_model = build_transformers_model("DebertaV2ForSequenceClassification", V3_LIKE)
    hf_model.save_pretrained(tmp_path)
    ours = load_quietly("DebertaV2ForSequenceClassification", tmp_path, dtype=np.float64)
    theirs = torch_call(hf_model.double(), input_ids=IDS, attention_mask=MASK, output_hidden_states=True)
    mine = ours(input_ids=IDS, attention_mask=MASK, output_hidden_states=True)
    assert mine.logits.dtype == np.float64
    assert_outputs_close(mine, theirs, 1e-8)


@pytest.mark.parametrize("torch_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("safe", [True, False])
def test_half_precision_checkpoints_are_upcast(tmp_path, torch_dtype, safe):
    hf_model = build_transformers_model("DebertaV2Model", V3_LIKE).to(torch_dtype)
    hf_model.save_pretrained(tmp_path, safe_serialization=safe)
    ours = load_quietly("DebertaV2Model", tmp_path)
    for key, value in hf_model.state_dict().items():
        np.testing.assert_array_equal(ours.params[key], value.float().numpy(), err_msg=key)
    reference = build_transformers_model("DebertaV2Model", V3_LIKE)
    reference.load_state_dict({k: v.float() for k, v in hf_model.state_dict().items()})
    assert_close("last_hidden_state", ours(input_ids=IDS).last_hidden_state,
                 torch_call(reference, input_ids=IDS).last_hidden_state, 1e-4)


def test_backbone_checkpoint_into_a_task_class_initialises_the_head_with_a_warning(tmp_path):
    hf_backbone = build_transformers_model("DebertaV2Model", V3_LIKE)
    hf_backbone.save_pretrained(tmp_path)  # keys without "deberta."
    with pytest.warns(UserWarning, match=r"no \['classifier.bias', 'classifier.weight', 'pooler.dense.bias'"):
        ours = pydeberta.DebertaV2ForSequenceClassification.from_pretrained(tmp_path)
    np.testing.assert_array_equal(ours.params["classifier.bias"], 0)  # initialised as transformers: zero bias,
    assert 0.005 < ours.params["classifier.weight"].std() < 0.05  # N(0, initializer_range=0.02) weights
    backbone = ours.run_backbone(input_ids=IDS, attention_mask=MASK).last_hidden_state
    assert_close("backbone", backbone, torch_call(hf_backbone, input_ids=IDS, attention_mask=MASK).last_hidden_state,
                 1e-4)


def test_task_checkpoint_into_the_bare_model_strips_the_prefix_and_leaves_the_head_quietly(tmp_path):
    """The head of another task is expected in a checkpoint: transformers logs it at info level
    (a warning only when the class is the checkpoint's own architecture), and so is ours silent."""
    hf_model = build_transformers_model("DebertaV2ForTokenClassification", V3_LIKE)
    hf_model.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = pydeberta.DebertaV2Model.from_pretrained(tmp_path)
    theirs = torch_call(hf_model.deberta, input_ids=IDS, attention_mask=MASK)
    assert_close("last_hidden_state", ours(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                 theirs.last_hidden_state, 1e-4)


def microsoft_like_folder(tmp_path, extra):
    """A folder like Microsoft's checkpoints: transformers' tensors plus the extras they carry."""
    hf_model = build_transformers_model("DebertaV2ForSequenceClassification", V3_LIKE)
    hf_model.config.save_pretrained(tmp_path)
    state = state_dict_numpy(hf_model)
    state.update(extra)
    write_safetensors(tmp_path / "model.safetensors", state)
    return hf_model


def test_microsoft_extras_are_ignored_quietly(tmp_path):
    rng = np.random.default_rng(0)
    extras = {
        "deberta.embeddings.position_embeddings.weight": rng.normal(size=(64, 16)).astype(np.float32),
        "deberta.embeddings.word_embeddings._weight": rng.normal(size=(40, 16)).astype(np.float32),
        "mask_predictions.dense.weight": rng.normal(size=(16, 16)).astype(np.float32),
        "mask_predictions.classifier.bias": np.zeros(1, np.float32),
        "lm_predictions.lm_head.dense.weight": rng.normal(size=(16, 16)).astype(np.float32),
        "lm_predictions.lm_head.bias": np.zeros(40, np.float32),
    }
    hf_model = microsoft_like_folder(tmp_path, extras)
    ours = load_quietly("DebertaV2ForSequenceClassification", tmp_path)
    assert_close("logits", ours(input_ids=IDS).logits, torch_call(hf_model, input_ids=IDS).logits, 1e-4)


def test_other_unexpected_tensors_are_reported(tmp_path):
    microsoft_like_folder(tmp_path, {"deberta.encoder.mystery.weight": np.zeros(3, np.float32)})
    with pytest.warns(UserWarning, match=r"does not use \(ignored\): \['deberta.encoder.mystery.weight'\]"):
        pydeberta.DebertaV2ForSequenceClassification.from_pretrained(tmp_path)


def test_missing_backbone_tensor_is_an_error_naming_it(tmp_path):
    hf_model = build_transformers_model("DebertaV2Model", V3_LIKE)
    hf_model.config.save_pretrained(tmp_path)
    state = state_dict_numpy(hf_model)
    del state["encoder.layer.1.attention.self.key_proj.bias"]
    write_safetensors(tmp_path / "model.safetensors", state)
    with pytest.raises(ValueError, match=r"(?s)lacks backbone tensors.*encoder.layer.1.attention.self.key_proj.bias \(16,\)"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path)


def test_shape_mismatch_is_an_error_naming_both_shapes(tmp_path):
    build_transformers_model("DebertaV2Model", V3_LIKE).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"(?s)encoder.rel_embeddings.weight: checkpoint has \(16, 16\), the config "
                                         r"expects \(32, 16\)"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path, position_buckets=16)


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    build_transformers_model("DebertaV2Model", V3_LIKE).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        pydeberta.DebertaV2Model.from_pretrained(tmp_path / "does-not-exist")


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("legacy", [True, False])
def test_save_pretrained_round_trips_through_transformers(tmp_path, cls_name, legacy):
    cfg = config_for(cls_name, legacy=legacy, tie_word_embeddings=legacy)
    ours = getattr(pydeberta, cls_name)(pydeberta.DebertaV2Config(**cfg), seed=1)
    ours.save_pretrained(tmp_path)
    theirs = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    for key, value in ours.params.items():
        np.testing.assert_array_equal(theirs.state_dict()[key].numpy(), value, err_msg=key)
    assert_outputs_close(ours(**inputs_for(cls_name)), torch_call(theirs, **inputs_for(cls_name)), 1e-4)
    again = getattr(pydeberta, cls_name).from_pretrained(tmp_path)
    assert again.config == ours.config
    assert set(read_state_dict(tmp_path)) == set(expected_shapes(ours.config, ours.head))


def test_loading_and_running_import_neither_torch_nor_transformers(tmp_path):
    hf_model = build_transformers_model("DebertaV2ForMaskedLM", dict(V3_LIKE, legacy=False, tie_word_embeddings=False))
    hf_model.save_pretrained(tmp_path, safe_serialization=False)  # the .bin path must not need torch either
    code = (
        "import sys, numpy as np, pydeberta\n"
        f"m = pydeberta.DebertaV2ForMaskedLM.from_pretrained({str(tmp_path)!r})\n"
        "print(m(input_ids=np.array([[1, 2, 3]])).logits.shape)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tempfile.gettempdir())  # the installed package, not the source tree
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 3, 40)"


def test_a_checkpoint_far_from_its_config_gets_a_short_error(tmp_path):
    """A config asking for 1000 layers against a 2-layer checkpoint: the error lists ten missing
    tensors and counts the rest, instead of thousands of lines."""
    from pydeberta.weights import match_state_dict

    small = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**V3_LIKE), seed=0)
    big = pydeberta.DebertaV2Config(**dict(V3_LIKE, num_hidden_layers=1000))
    with pytest.raises(ValueError) as error:
        match_state_dict(small.params, big, source="small")
    message = str(error.value)
    assert message.count("\n") <= 12 and "... and 15958 more" in message, message
