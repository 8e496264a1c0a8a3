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
- load_model(path, ...): the encoder with its task head (a transformers Auto class, or the kind's own);
- encoder_inputs(batch): the batch as the bare encoder reads it (multiple choice: one row per choice);
- bind(encoded): the kind as it scores that split (extractive QA reads contexts and answers);
- depth_head(model, weights): head(hidden, batch), the task head read on any layer's hidden states, for dropping
  the top layers;
- probe(split, label_names): the dev split as probing sentences (words, and pairs, labels or tags), extracted as
  fine-tuned;
- metrics and scores(predicted, gold): the dev metrics it reports, the first deciding (best epoch, baselines,
  claims); unit_examples(labels): the example of each scored unit, which the bootstrap resamples whole;
- trivial(train_gold, dev_gold) and frozen_probe(...): the bars a fine-tuned model must clear (baselines.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .errors import UserError

ACCURACY = "accuracy"
IGNORED = -100  # the label transformers' losses skip (special tokens, a word's later pieces, padding)


@dataclass
class Encoded:
    """A split encoded for one model: each example's tokenizer features (input_ids, and token_type_ids where the
    model has them), its target (a class, or a label per piece), its length in pieces, how many examples
    max_length cut short, and what scoring needs beyond the labels (extractive QA: contexts, answers, offsets)."""

    features: list[dict]
    targets: list
    lengths: np.ndarray
    truncated: int
    reference: list | None = None


class TaskKind(ABC):
    """The interface every kind implements (see the module docstring); the dev metric is accuracy unless a kind
    says otherwise."""

    name: str
    auto_model: str
    metrics: tuple[str, ...] = (ACCURACY,)
    trivial_name = "majority class"
    frozen_probe_reason: str | None = None  # why a kind has no frozen probe (baselines.py)

    def load_model(self, path, trust_remote_code: bool = False, labels: int | None = None):
        """The encoder at `path` with this kind's head (`auto_model`, a transformers Auto class) of `labels`
        outputs."""
        from .models import load_encoder

        return load_encoder(path, trust_remote_code, self.auto_model, labels)

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

    def bind(self, encoded: Encoded) -> "TaskKind":
        """The kind as it scores `encoded` (gold, predicted, scores): itself, unless scoring reads the examples'
        text (extractive QA)."""
        return self

    @abstractmethod
    def probe(self, split: dict, label_names: list[str]) -> dict: ...

    def scores(self, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """Accuracy: the share of scored units predicted right."""
        return {ACCURACY: float(np.mean(predicted == gold)) if len(gold) else float("nan")}

    def dev_metric(self, predicted: np.ndarray, gold: np.ndarray) -> float:
        return self.scores(predicted, gold)[self.metrics[0]]

    def unit_examples(self, labels: np.ndarray) -> np.ndarray:
        """The row of `labels` (the example in its batch) of each unit gold(labels) returns: one unit per example."""
        return np.arange(len(labels))

    def label_summary(self, train: dict, label_names: list[str], where: str) -> str:
        """The training split's count per label, for the log; fewer than two labels is refused."""
        if len(label_names) < 2:
            raise UserError(f"{where}: only one label ({label_names[0]})")
        gold = np.concatenate([np.atleast_1d(v) for v in train.get("label", train.get("tags"))])
        gold = gold[gold != IGNORED]
        counts = np.bincount(gold, minlength=len(label_names))
        return ", ".join(f"{name} {count}" for name, count in zip(label_names, counts))

    def trivial(self, train_gold: np.ndarray, dev_gold: np.ndarray) -> float:
        """The dev metric of always giving the training split's most frequent answer."""
        values, counts = np.unique(np.asarray(train_gold), return_counts=True)
        return self.dev_metric(np.full(len(dev_gold), values[counts.argmax()]), np.asarray(dev_gold))

    def frozen_probe(self, X_train, y_train, X_dev, y_dev, settings: dict) -> float:
        """The dev metric of a linear probe (probing.linear_probe_predict) fit on frozen units."""
        from .probing import linear_probe_predict

        predicted = linear_probe_predict(X_train, y_train, X_dev, l2=settings["probe_l2"], seed=settings["seed"],
                                         max_iter=settings["probe_iterations"])
        return self.dev_metric(predicted, np.asarray(y_dev))


def _kinds() -> dict[str, TaskKind]:
    from . import (classification, dependency_parsing, extractive_qa, multiple_choice, regression,
                   token_classification)

    return {kind.name: kind for kind in (classification.SINGLE, classification.PAIR, regression.KIND,
                                         token_classification.KIND, dependency_parsing.KIND, extractive_qa.KIND,
                                         multiple_choice.KIND)}


KINDS = _kinds()
DEFAULT = "classification"


def kind_of(task: dict) -> TaskKind:
    """The kind of a prepared task file's contents."""
    return KINDS[task.get("kind", DEFAULT)]
