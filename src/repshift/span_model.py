"""transformers' question-answering model (a linear start and end scorer on every piece) behind the interface
fine-tuning, evaluation and layer drop call every task model through: labels in, loss and logits out."""

from types import SimpleNamespace

import torch
from torch import nn

QA_HEAD = "AutoModelForQuestionAnswering"


class SpanModel(nn.Module):
    """labels (windows, 3): the question's row, the answer's start and end piece; logits (windows, pieces, 2): the
    start and end scores of every piece."""

    def __init__(self, qa):
        super().__init__()
        self.qa = qa

    @property
    def base_model(self):
        return self.qa.base_model

    @property
    def config(self):
        return self.qa.config

    def forward(self, labels: torch.Tensor | None = None, **inputs) -> SimpleNamespace:
        targets = {} if labels is None else {"start_positions": labels[:, 1], "end_positions": labels[:, 2]}
        out = self.qa(**inputs, **targets)
        return SimpleNamespace(loss=out.loss, logits=torch.stack([out.start_logits, out.end_logits], -1))

    def save_pretrained(self, path, safe_serialization: bool = True) -> None:
        self.qa.save_pretrained(path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, path, trust_remote_code: bool = False) -> "SpanModel":
        from .models import load_encoder

        return cls(load_encoder(path, trust_remote_code, QA_HEAD, 2))
