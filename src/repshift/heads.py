"""The task head of a fine-tuned sequence classifier (or multiple-choice scorer), read from its model.safetensors:
logits as a function of the top layer's [CLS] vectors, so a measure can ask what the model itself predicts from an
edited representation, and layer drop what it predicts from a lower layer."""

from collections.abc import Callable
from pathlib import Path

import json

import numpy as np
from scipy.special import erf

from .errors import UserError

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))),
    "gelu_new": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
}
ACTIVATIONS["gelu_pytorch_tanh"] = ACTIVATIONS["gelu_new"]
ACTIVATIONS["linear"] = lambda z: z

# (first layer, its activation, output layer) parameter prefixes of the sequence-classification heads transformers
# writes: BERT and DeBERTa, ALBERT, RoBERTa / MPNet / ELECTRA-style, DistilBERT, ELECTRA's multiple choice.
LAYOUTS = (
    ("pooler.dense", "tanh", "classifier"),
    ("pooler", "tanh", "classifier"),
    ("classifier.dense", "tanh", "classifier.out_proj"),
    ("pre_classifier", "relu", "classifier"),
    ("sequence_summary.summary", "linear", "classifier"),
)


def _activation(first: str, default: str, config: dict):
    """A layout's activation for the model that wrote the weights: ELECTRA's head and DeBERTa's pooler use gelu
    (DeBERTa: its pooler_hidden_act) where BERT and RoBERTa use tanh; a sequence summary, its summary_activation."""
    model_type = config.get("model_type")
    if first == "sequence_summary.summary":
        return ACTIVATIONS[config.get("summary_activation") or default]
    if first == "classifier.dense" and model_type == "electra":
        return ACTIVATIONS["gelu"]
    if first == "pooler.dense" and model_type in ("deberta", "deberta-v2"):
        return ACTIVATIONS[config.get("pooler_hidden_act", "gelu")]
    return ACTIVATIONS[default]


def _linear(tensors: dict, prefix: str):
    weight, bias = tensors.get(f"{prefix}.weight"), tensors.get(f"{prefix}.bias")
    return None if weight is None or bias is None else (weight.astype(np.float64), bias.astype(np.float64))


def _short(key: str) -> str:
    """A parameter name from its head module on: bert.pooler.dense.weight -> pooler.dense.weight."""
    parts = key.split(".")
    return ".".join(parts[parts.index("pooler"):]) if "pooler" in parts else key


def load_head(weights) -> Callable[[np.ndarray], np.ndarray]:
    """head(X) = act(X W1^T + b1) W2^T + b2 for [CLS] rows X, with the parameters of the first LAYOUTS entry the
    weights hold and the activation of the model type in the config.json beside them (dropout is off at
    evaluation). Raises UserError naming the file when none matches."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        tensors = {_short(k): handle.get_tensor(k) for k in handle.keys()
                   if "pooler" in k.split(".") or k.startswith(("classifier.", "pre_classifier.", "sequence_summary."))}
    config_file = Path(weights).parent / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    for first, default, out in LAYOUTS:
        hidden, output = _linear(tensors, first), _linear(tensors, out)
        activation = _activation(first, default, config)
        if hidden is not None and output is not None:
            return lambda X: activation(np.asarray(X, np.float64) @ hidden[0].T + hidden[1]) @ output[0].T + output[1]
    raise UserError(f"{Path(weights)}: no sequence-classification head (pooler + classifier, classifier.dense + "
                     "out_proj, or pre_classifier + classifier) among its weights")
