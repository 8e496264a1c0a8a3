"""The task head of a fine-tuned sequence classifier, read from its model.safetensors: logits as a function of the
top layer's [CLS] vectors, so a measure can ask what the model itself predicts from an edited representation."""

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import UserError

# (first layer, its activation, output layer) parameter prefixes of the sequence-classification heads transformers
# writes: BERT, ALBERT, RoBERTa / MPNet / ELECTRA-style, DistilBERT.
LAYOUTS = (
    ("pooler.dense", np.tanh, "classifier"),
    ("pooler", np.tanh, "classifier"),
    ("classifier.dense", np.tanh, "classifier.out_proj"),
    ("pre_classifier", lambda z: np.maximum(z, 0), "classifier"),
)


def _linear(tensors: dict, prefix: str):
    weight, bias = tensors.get(f"{prefix}.weight"), tensors.get(f"{prefix}.bias")
    return None if weight is None or bias is None else (weight.astype(np.float64), bias.astype(np.float64))


def _short(key: str) -> str:
    """A parameter name from its head module on: bert.pooler.dense.weight -> pooler.dense.weight."""
    parts = key.split(".")
    return ".".join(parts[parts.index("pooler"):]) if "pooler" in parts else key


def load_head(weights) -> Callable[[np.ndarray], np.ndarray]:
    """head(X) = act(X W1^T + b1) W2^T + b2 for [CLS] rows X, with the parameters of the first LAYOUTS entry the
    weights hold (dropout is off at evaluation). Raises UserError naming the file when none matches."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        tensors = {_short(k): handle.get_tensor(k) for k in handle.keys()
                   if "pooler" in k.split(".") or k.startswith(("classifier.", "pre_classifier."))}
    for first, activation, out in LAYOUTS:
        hidden, output = _linear(tensors, first), _linear(tensors, out)
        if hidden is not None and output is not None:
            return lambda X: activation(np.asarray(X, np.float64) @ hidden[0].T + hidden[1]) @ output[0].T + output[1]
    raise UserError(f"{Path(weights)}: no sequence-classification head (pooler + classifier, classifier.dense + "
                     "out_proj, or pre_classifier + classifier) among its weights")
