"""DebertaV2Config: transformers' fields and defaults, lossless round trips, clear errors."""

import json

import pytest
import transformers

from pydeberta import DebertaV2Config


def test_defaults_equal_transformers():
    ours, theirs = DebertaV2Config(), transformers.DebertaV2Config()
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                 "type_vocab_size", "initializer_range", "layer_norm_eps", "relative_attention",
                 "max_relative_positions", "pad_token_id", "position_biased_input", "pos_att_type", "pooler_dropout",
                 "pooler_hidden_act", "pooler_hidden_size", "legacy", "num_labels", "id2label", "label2id",
                 "problem_type", "tie_word_embeddings"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_getattr_fields_default_like_transformers_and_are_not_invented():
    config = DebertaV2Config(hidden_size=64, num_attention_heads=4)
    assert (config.embedding_size, config.attention_head_size, config.position_buckets, config.norm_rel_ebd,
            config.share_att_key, config.conv_kernel_size, config.conv_groups, config.conv_act,
            config.cls_dropout) == (64, 16, -1, "none", False, 0, 1, "tanh", None)
    assert "position_buckets" not in config.to_dict() and "embedding_size" not in config.to_dict()


def test_pos_att_type_string_is_split_like_transformers():
    assert DebertaV2Config(pos_att_type="P2C| c2p").pos_att_type == ["p2c", "c2p"]
    assert DebertaV2Config(pos_att_type="None").pos_att == frozenset()
    assert DebertaV2Config(pos_att_type=["c2p"]).pos_att == {"c2p"}


def test_round_trip_is_lossless_and_transformers_reads_it(tmp_path):
    data = dict(vocab_size=100, hidden_size=32, num_attention_heads=4, pos_att_type="p2c|c2p", position_buckets=16,
                relative_attention=True, share_att_key=True, norm_rel_ebd="layer_norm", conv_kernel_size=3,
                architectures=["DebertaV2ForMaskedLM"], torch_dtype="float32", my_unknown_field={"a": [1, 2]},
                id2label={"0": "entailment", "1": "neutral", "2": "contradiction"})
    config = DebertaV2Config.from_dict(data)
    assert config.num_labels == 3 and config.label2id["neutral"] == 1
    config.save_pretrained(tmp_path)
    again = DebertaV2Config.from_pretrained(tmp_path)
    assert again == config and again.to_dict() == config.to_dict()
    assert again.my_unknown_field == {"a": [1, 2]}
    assert DebertaV2Config.from_pretrained(tmp_path / "config.json") == config
    theirs = transformers.DebertaV2Config.from_pretrained(tmp_path)
    assert theirs.position_buckets == 16 and theirs.id2label[2] == "contradiction"
    assert theirs.pos_att_type == ["p2c", "c2p"] and theirs.my_unknown_field == {"a": [1, 2]}


def test_reads_what_transformers_writes(tmp_path):
    theirs = transformers.DebertaV2Config(hidden_size=48, num_attention_heads=6, embedding_size=24,
                                          position_buckets=32, num_labels=4, problem_type="regression")
    theirs.save_pretrained(tmp_path)
    ours = DebertaV2Config.from_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert ours.embedding_size == 24 and ours.position_buckets == 32 and ours.num_labels == 4
    assert ours.problem_type == "regression" and ours.to_dict()["id2label"] == saved["id2label"]


def test_overrides_on_from_pretrained(tmp_path):
    DebertaV2Config(hidden_size=32, num_attention_heads=4).save_pretrained(tmp_path)
    assert DebertaV2Config.from_pretrained(tmp_path, num_labels=5).num_labels == 5


@pytest.mark.parametrize("fields,message", [
    (dict(hidden_size=30, num_attention_heads=4), "multiple of"),
    (dict(hidden_size=32, num_attention_heads=4, attention_head_size=16), "attention_head_size"),
    (dict(conv_kernel_size=4), "odd"),
    (dict(conv_kernel_size=3, conv_groups=5, hidden_size=32, num_attention_heads=4), "conv_groups"),
    (dict(relative_attention=True, position_buckets=1), "position_buckets"),
    (dict(relative_attention=True, position_buckets=600, max_relative_positions=300), "position_buckets"),
    (dict(hidden_act="gelu_tanhh"), "hidden_act"),
    (dict(pos_att_type="c2q"), "pos_att_type"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(vocab_size=2.5), "vocab_size"),
    (dict(problem_type="ranking"), "problem_type"),
    (dict(pooler_hidden_size=12), "pooler_hidden_size"),
    (dict(layer_norm_eps=0), "layer_norm_eps"),
])
def test_impossible_values_raise_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        DebertaV2Config(**fields)


@pytest.mark.parametrize("fields, message", [
    (dict(pos_att_type=5), "config.pos_att_type must be a list of names"),
    (dict(hidden_act=["gelu"]), "config.hidden_act must be one of"),
    (dict(norm_rel_ebd=5), "config.norm_rel_ebd must be 'none', 'layer_norm'"),
    (dict(norm_rel_ebd="layer_nrom"), "config.norm_rel_ebd must be 'none', 'layer_norm'"),
    (dict(relative_attention="yes"), "config.relative_attention must be true or false, got 'yes'"),
    (dict(layer_norm_eps="1e-7"), "config.layer_norm_eps must be a number"),
    (dict(num_hidden_layers=10**6), r"config.num_hidden_layers must be a positive integer \(at most 1024\)"),
    (dict(num_hidden_layers=10**9), "config.num_hidden_layers"),
    (dict(vocab_size=1 << 24, hidden_size=1 << 16, num_attention_heads=1), "parameters"),
    (dict(id2label=[]), "config.id2label must map label numbers to names"),
    (dict(num_labels="3"), "config.num_labels must be a positive integer"),
    (dict(pad_token_id="0"), "config.pad_token_id must be an integer or null"),
])
def test_fields_of_the_wrong_kind_or_size_are_named(fields, message):
    """Checked before anything is computed from them: no 'int object is not iterable', no
    unhashable list, no silent fallback for a misspelt LayerNorm, no minutes spent on 10**6 layers."""
    with pytest.raises(ValueError, match=message):
        DebertaV2Config(**fields)


def test_norm_rel_ebd_is_read_case_insensitively_like_transformers():
    assert DebertaV2Config(norm_rel_ebd="Layer_Norm").norm_rel_ebd_list == ["layer_norm"]
    assert DebertaV2Config(norm_rel_ebd="layer_norm|none").norm_rel_ebd_list == ["layer_norm", "none"]


def test_bad_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DebertaV2Config.from_pretrained(tmp_path)
