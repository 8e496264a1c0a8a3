"""Task kinds: the one interface through which preparing, fine-tuning, evaluating, dropping layers, the baselines and
probing read a task, whatever its examples are. A kind is one module (classification.py, token_classification.py)
holding a TaskKind; KINDS maps the config's tasks.<name>.kind to it.

What a kind says:
- prepare(corpus, where): the label names and a function from example indices to the split stored in the task file;
- encode(tokenizer, split, max_length): per example the model inputs (as fine-tuned: a pair as a pair) and targets;
- collate(tokenizer, encoded, rows, device): one padded batch, with `labels` for the loss;
- gold(labels) and predicted(logits, labels): the answers its dev metric compares, one per scored unit (an
  example's class; a word's tag, read at its first piece);
- units(hidden, batch, special_ids): one layer's vectors of those units (a frozen probe's features);
- encoder_inputs(batch): the batch as the bare encoder reads it (multiple choice: one row per choice);
- depth_head(model, weights): head(hidden, batch), the task head read on any layer's hidden states, for dropping
  the top layers;
- probe(split, label_names): the dev split as probing sentences (words, and pairs, labels or tags), extracted as
  fine-tuned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

IGNORED = -100  # the label transformers' losses skip (special tokens, a word's later pieces, padding)


@dataclass
class Encoded:
    """A split encoded for one model: each example's tokenizer features (input_ids, and token_type_ids where the
    model has them), its target (a class, or a label per piece), its length in pieces, and how many examples
    max_length cut short."""

    features: list[dict]
    targets: list
    lengths: np.ndarray
    truncated: int


class TaskKind(ABC):
    """The interface every kind implements (see the module docstring); the dev metric is accuracy unless a kind
    says otherwise."""

    name: str
    auto_model: str

    @abstractmethod
    def prepare(self, corpus, where: str): ...

    @abstractmethod
    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded: ...

    @abstractmethod
    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict: ...

    @abstractmethod
    def gold(self, labels: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def units(self, hidden, batch, special_ids) -> np.ndarray: ...

    @abstractmethod
    def depth_head(self, model, weights): ...

    def encoder_inputs(self, batch: dict) -> dict:
        return batch

    @abstractmethod
    def probe(self, split: dict, label_names: list[str]) -> dict: ...

    def dev_metric(self, predicted: np.ndarray, gold: np.ndarray) -> float:
        """Accuracy: the share of scored units predicted right."""
        return float(np.mean(predicted == gold)) if len(gold) else float("nan")


def _kinds() -> dict[str, TaskKind]:
    from . import classification, multiple_choice, token_classification

    return {kind.name: kind for kind in (classification.SINGLE, classification.PAIR, token_classification.KIND,
                                         multiple_choice.KIND)}


KINDS = _kinds()
DEFAULT = "classification"


def kind_of(task: dict) -> TaskKind:
    """The kind of a prepared task file's contents."""
    return KINDS[task.get("kind", DEFAULT)]
