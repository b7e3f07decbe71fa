"""Bad input gets a clear exception that names the argument, what was expected and what came."""

import numpy as np
import pytest

import pydeberta

CFG = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
           max_position_embeddings=16, relative_attention=True, position_buckets=4, max_relative_positions=16,
           pos_att_type="p2c|c2p", position_biased_input=False)


@pytest.fixture(scope="module")
def model():
    return pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**CFG), seed=0)


@pytest.fixture(scope="module")
def biased():
    return pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**{**CFG, "position_biased_input": True, "type_vocab_size": 2}),
                                    seed=0)


IDS = np.array([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(input_ids=[[1, 20, 3]]), ValueError, r"input_ids must lie in \[0, vocab_size=20\), got \[20\]"),
    (dict(input_ids=[[1, -1]]), ValueError, "input_ids must lie in"),
    (dict(input_ids=[[1.0, 2.0]]), TypeError, "input_ids must hold integers, got shape"),
    (dict(input_ids=[[1.5, 2]]), TypeError, "input_ids must hold integers"),
    (dict(input_ids=[["a", "b"]]), TypeError, "input_ids must hold integers"),
    (dict(input_ids=[[True, False]]), TypeError, "input_ids must hold integers"),
    (dict(input_ids=[[1, 2], [3]]), ValueError, "input_ids must be a rectangular array"),
    (dict(input_ids=[1, 2, 3]), ValueError, r"input_ids must have rank 2 \[batch, sequence\]"),
    (dict(), ValueError, "exactly one of input_ids and inputs_embeds, got neither"),
    (dict(input_ids=IDS, inputs_embeds=np.zeros((2, 3, 8))), ValueError, "got both"),
    (dict(inputs_embeds=np.zeros((2, 3, 5))), ValueError, r"inputs_embeds must be \[batch, sequence, embedding_size=8\]"),
    (dict(inputs_embeds=np.zeros((2, 3, 8), int)), TypeError, "inputs_embeds must be floating point"),
    (dict(input_ids=np.zeros((0, 3), int)), ValueError, "at least one sequence of at least one token"),
    (dict(input_ids=np.zeros((2, 0), int)), ValueError, "at least one sequence"),
    (dict(input_ids=IDS, attention_mask=np.ones((2, 4))), ValueError, r"attention_mask must have the shape of the inputs \(2, 3\)"),
    (dict(input_ids=IDS, attention_mask=np.ones((2, 1, 1, 3))), ValueError, "attention_mask must have rank 2"),
    (dict(input_ids=IDS, attention_mask=np.full((2, 3), 2)), ValueError, "attention_mask must contain only 0 and 1"),
    (dict(input_ids=IDS, token_type_ids=np.zeros((2, 2), int)), ValueError, "token_type_ids must have the shape"),
    (dict(input_ids=IDS, position_ids=np.zeros((3, 3), int)), ValueError, "position_ids must have shape"),
])
def test_bad_call_arguments(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model(**kwargs)


def test_positions_beyond_the_absolute_table(biased):
    with pytest.raises(ValueError, match=r"position_ids must lie in \[0, max_position_embeddings=16\)"):
        biased(input_ids=np.ones((1, 17), int))
    with pytest.raises(ValueError, match="position_ids must lie in"):
        biased(input_ids=IDS, position_ids=[[0, 1, 16], [0, 1, 2]])
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, type_vocab_size=2\)"):
        biased(input_ids=IDS, token_type_ids=[[0, 1, 2], [0, 0, 0]])


def test_relative_only_models_take_any_length(model):
    assert model(input_ids=np.ones((1, 40), int)).last_hidden_state.shape == (1, 40, 8)


def test_masks_of_any_numeric_dtype_and_bool_work(model):
    base = model(input_ids=IDS, attention_mask=np.array([[1, 1, 0], [1, 0, 0]])).last_hidden_state
    for mask in ([[True, True, False], [True, False, False]], np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])):
        np.testing.assert_array_equal(model(input_ids=IDS, attention_mask=mask).last_hidden_state, base)


@pytest.mark.parametrize("cls,labels,message", [
    (pydeberta.DebertaV2ForSequenceClassification, [0, 1, 2], r"labels .* must have shape \(2,\)"),
    (pydeberta.DebertaV2ForSequenceClassification, [0, 5], r"labels must lie in \[0, 2\)"),
    (pydeberta.DebertaV2ForTokenClassification, [[0, 1, 0]], r"labels must have shape \(2, 3\)"),
    (pydeberta.DebertaV2ForTokenClassification, [[0, 1, 7], [0, 0, 0]], r"labels must lie in \[0, 2\) or be -100"),
    (pydeberta.DebertaV2ForMaskedLM, [[0, 1, 0], [0, 0, 0.5]], "labels must hold integers"),
    (pydeberta.DebertaV2ForMaskedLM, [[0, 1, 0], [0, 0, 99]], r"labels must lie in \[0, 20\)"),
])
def test_labels_that_do_not_fit(cls, labels, message):
    model = cls(pydeberta.DebertaV2Config(**CFG), seed=0)
    with pytest.raises((ValueError, TypeError), match=message):
        model(input_ids=IDS, labels=labels)


def test_regression_needs_float_labels():
    model = pydeberta.DebertaV2ForSequenceClassification(pydeberta.DebertaV2Config(**CFG, num_labels=1), seed=0)
    with pytest.raises(TypeError, match="regression labels must be floating point"):
        model(input_ids=IDS, labels=[1, 2])


def test_question_answering_needs_both_positions():
    model = pydeberta.DebertaV2ForQuestionAnswering(pydeberta.DebertaV2Config(**CFG), seed=0)
    with pytest.raises(ValueError, match="both start_positions and end_positions"):
        model(input_ids=IDS, start_positions=[0, 1])
    with pytest.raises(ValueError, match=r"end_positions must have shape \(2,\)"):
        model(input_ids=IDS, start_positions=[0, 1], end_positions=[0, 1, 2])


def test_multiple_choice_needs_rank_three():
    model = pydeberta.DebertaV2ForMultipleChoice(pydeberta.DebertaV2Config(**CFG), seed=0)
    with pytest.raises(ValueError, match=r"input_ids must have rank 3 \[batch, num_choices, sequence\]"):
        model(input_ids=IDS)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(input_ids=IDS[:, None], attention_mask=np.ones((2, 3)))


def test_model_dtype_and_config_type_are_checked():
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**CFG), dtype=np.float16)
    with pytest.raises(TypeError, match="config must be a DebertaV2Config"):
        pydeberta.DebertaV2Model(dict(CFG))
