"""The task head read from model.safetensors gives the logits transformers' own model computes from the same
top-layer [CLS] vectors."""

import numpy as np
import pytest
import torch
from transformers import (
    AlbertConfig,
    BertForMultipleChoice,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ElectraConfig,
    ElectraForMultipleChoice,
    ElectraForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from repshift.errors import UserError
from repshift.heads import load_head

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "num_labels": 3, "vocab_size": 100}


@pytest.mark.parametrize("make", [
    lambda: BertForSequenceClassification(BertConfig(**SMALL)),
    lambda: RobertaForSequenceClassification(RobertaConfig(**SMALL, pad_token_id=1)),
    lambda: AlbertForSequenceClassification(AlbertConfig(**SMALL, embedding_size=16)),
    lambda: ElectraForSequenceClassification(ElectraConfig(**SMALL, embedding_size=16)),
    lambda: DebertaV2ForSequenceClassification(DebertaV2Config(**SMALL)),
    lambda: MPNetForSequenceClassification(MPNetConfig(**SMALL)),
])
def test_head_matches_the_model_logits(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    ids = torch.randint(5, 100, (4, 7))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    cls = out.hidden_states[-1][:, 0].numpy()
    assert np.allclose(load_head(tmp_path / "model.safetensors")(cls), out.logits.numpy(), atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: BertForMultipleChoice(BertConfig(**SMALL)),
    lambda: ElectraForMultipleChoice(ElectraConfig(**SMALL, embedding_size=16)),
])
def test_a_multiple_choice_head_scores_each_answer_as_the_model_does(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    ids = torch.randint(5, 100, (4, 3, 7))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    cls = out.hidden_states[-1][:, 0].numpy()
    assert np.allclose(load_head(tmp_path / "model.safetensors")(cls).reshape(4, 3), out.logits.numpy(), atol=1e-5)


def test_weights_without_a_head_are_named(tmp_path):
    from safetensors.numpy import save_file

    save_file({"bert.encoder.weight": np.zeros((2, 2), np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match="model.safetensors: no sequence-classification head"):
        load_head(tmp_path / "model.safetensors")


def test_a_model_without_a_known_head_leaves_only_the_head_measures_out(tmp_path):
    from safetensors.numpy import save_file

    from repshift.metrics import View, _head, walk_layers

    save_file({"bert.encoder.weight": np.zeros((2, 2), np.float32)}, tmp_path / "model.safetensors")
    shared = {"seed": 0, "n_boot": 0, "layer_by_layer": [], **_head(tmp_path / "model.safetensors")}
    assert shared["head"] is None and "no sequence-classification head" in shared["no_head"]
    labels = np.arange(40) % 2
    view = View([np.random.default_rng(0).normal(size=(40, 3)) + labels[:, None]], {"label": labels}, np.arange(40))
    assert walk_layers(lambda representation: view, {"head_accuracy": {}}, shared) == []
