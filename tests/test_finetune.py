"""Fine-tuning: early stopping keeps the best dev epoch, freezing freezes, layer drop starts from the trained model;
and the baselines a fine-tuned model has to beat."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from repshift import finetune as finetuning
from repshift.baselines import task_baselines
from repshift.tasks import ACCURACY, KINDS
from repshift.uncertainty import DEV_BOOT, replicates_from_text

SETTINGS = {"epochs": 6, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0,
            "warmup_ratio": 0.0, "max_length": 32, "freeze_layers": 0, "checkpoint_every": 1000, "patience": 2,
            "precision": "auto"}
PROVENANCE = {"model": "tiny", "variant": "sent-s0", "task": "sent", "seed": 0}


def test_majority_class_accuracy_counts_the_most_frequent_training_label():
    assert KINDS["classification"].trivial(["a", "a", "b"], ["a", "b", "b", "b"]) == 0.25
    assert KINDS["classification"].trivial([1, 0, 0], [0, 0, 1, 0]) == 0.75


def scripted(monkeypatch, curve):
    """Make fine-tuning's dev evaluation return `curve`, one value per epoch."""
    values = iter(curve)
    monkeypatch.setattr(finetuning, "evaluate", lambda *args: (lambda v: finetuning.DevScores({ACCURACY: v}, [v]))(
        next(values)))


def trained(tiny_assets, task_file, out, settings):
    model_dir, _ = tiny_assets
    finetuning.finetune({"id": str(model_dir)}, task_file, out, 0, settings, 1, PROVENANCE)
    return json.loads((out / "train_metrics.json").read_text()), load_file(out / "model.safetensors")


def test_a_plateau_stops_training_after_patience_epochs(tiny_assets, task_file, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.5, 0.7, 0.6, 0.7, 0.8, 0.9])
    record, _ = trained(tiny_assets, task_file, tmp_path / "stopped", SETTINGS)
    assert record["dev_metric"] == [0.5, 0.7, 0.6, 0.7] and record["best_epoch"] == 2
    assert record["metric"] == ACCURACY and record["dev_replicates"] == [0.7]
    assert len(record["loss"]) == 4 * math.ceil(record["n_train"] / SETTINGS["batch_size"])


def test_the_weights_kept_are_the_best_epochs(tiny_assets, task_file, tmp_path, monkeypatch):
    """An early-stopped run keeps the same weights as a full run whose best epoch is the same; another best epoch
    gives other weights."""
    scripted(monkeypatch, [0.5, 0.7, 0.6, 0.6])
    _, stopped = trained(tiny_assets, task_file, tmp_path / "stopped", SETTINGS)
    scripted(monkeypatch, [0.5, 0.7, 0.6, 0.6, 0.6, 0.6])
    _, full = trained(tiny_assets, task_file, tmp_path / "full", {**SETTINGS, "patience": None})
    scripted(monkeypatch, [0.5, 0.6, 0.6, 0.6, 0.6, 0.7])
    record, last = trained(tiny_assets, task_file, tmp_path / "last", {**SETTINGS, "patience": None})
    assert record["best_epoch"] == 6
    assert all(np.array_equal(stopped[key], full[key]) for key in full)
    assert not all(np.array_equal(last[key], full[key]) for key in full)


def test_without_patience_every_epoch_runs(tiny_assets, task_file, tmp_path):
    record, _ = trained(tiny_assets, task_file, tmp_path / "all", {**SETTINGS, "epochs": 3, "patience": None})
    assert len(record["dev_metric"]) == 3 and len(record["dev_scores"]) == 3


def test_frozen_layers_leave_training_bit_identical_and_the_rest_moves(tiny_assets, task_file, tmp_path):
    model_dir, _ = tiny_assets
    _, tuned = trained(tiny_assets, task_file, tmp_path / "f1", {**SETTINGS, "epochs": 2, "patience": None,
                                                                 "freeze_layers": 1})
    base = load_file(model_dir / "model.safetensors")
    frozen = [key for key in base if key.startswith(("embeddings.", "encoder.layer.0."))]
    trainable = [key for key in base if key.startswith("encoder.layer.1.")]
    assert frozen and trainable
    assert all(np.array_equal(tuned[f"bert.{key}"], base[key]) for key in frozen)
    assert not any(np.array_equal(tuned[f"bert.{key}"], base[key]) for key in trainable if key.endswith("weight"))


def test_layer_drop_with_nothing_dropped_is_the_kept_weights_dev_metric(tiny_assets, task_file, tmp_path):
    """Its value and its resamples over dev examples both: the same draws score the same predictions."""
    record, _ = trained(tiny_assets, task_file, tmp_path / "ft", {**SETTINGS, "epochs": 2, "patience": None})
    out = tmp_path / "drop.csv"
    finetuning.layer_drop(tmp_path / "ft", task_file, out, SETTINGS, 1, {"variant": "sent-s0"})
    dropped = pd.read_csv(out).set_index("layers_dropped")
    assert list(dropped.index) == [0, 1]
    assert dropped.loc[0, "dev_metric"] == record["dev_metric"][record["best_epoch"] - 1]
    assert np.allclose(replicates_from_text(dropped.loc[0, "replicates"]), record["dev_replicates"])
    assert len(record["dev_replicates"]) == DEV_BOOT


@pytest.fixture(scope="module")
def baselines(tiny_assets, task_file, tmp_path_factory):
    model_dir, _ = tiny_assets
    out = tmp_path_factory.mktemp("baselines") / "sent.json"
    settings = {"max_length": 32, "eval_batch_size": 64, "probe_l2": 1e-3, "probe_iterations": 100, "seed": 0}
    task_baselines({"id": str(model_dir)}, task_file, out, settings, 1, {"model": "tiny", "task": "sent"})
    return json.loads(out.read_text()), json.loads(task_file.read_text())


def test_baselines_record_the_majority_class_and_every_layer_of_the_frozen_probe(baselines):
    record, task = baselines
    assert record["trivial"] == KINDS["classification"].trivial(task["train"]["label"], task["dev"]["label"])
    assert record["metric"] == ACCURACY and record["trivial_name"] == "majority class"
    assert len(record["frozen_probe"]) == 3
    assert record["frozen_probe_best_layer"] == int(np.argmax(record["frozen_probe"]))
    assert record["n_dev"] == len(task["dev"]["text"]) and record["provenance"]["task"] == "sent"


def test_a_frozen_probe_reads_a_label_that_is_one_word_away(baselines):
    """The tiny task's label is decided by one sentiment word: even a random encoder's embeddings carry it."""
    record, _ = baselines
    assert record["frozen_probe"][0] > record["trivial"] + 0.1


def test_layer_drop_in_one_pass_equals_running_the_truncated_model(tiny_assets, task_file, tmp_path):
    import torch

    trained(tiny_assets, task_file, tmp_path / "ft", {**SETTINGS, "epochs": 2, "patience": None})
    out = tmp_path / "drop.csv"
    finetuning.layer_drop(tmp_path / "ft", task_file, out, SETTINGS, 1, {"variant": "sent-s0"})
    task = json.loads(task_file.read_text())
    kind = finetuning.kind_of(task)
    model = kind.load_model(tmp_path / "ft", labels=len(task["label_names"])).eval()
    tokenizer = finetuning.load_tokenizer(tmp_path / "ft")
    dev = kind.encode(tokenizer, task["dev"], SETTINGS["max_length"])
    blocks = list(model.base_model.encoder.layer)
    for dropped, accuracy in pd.read_csv(out).set_index("layers_dropped")["dev_metric"].items():
        model.base_model.encoder.layer = torch.nn.ModuleList(blocks[: len(blocks) - dropped])
        truncated = finetuning.evaluate(model, tokenizer, kind, dev, SETTINGS, finetuning.select_device(1))
        assert accuracy == truncated.scores[ACCURACY], dropped
