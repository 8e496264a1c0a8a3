"""Sequence classification of one text, or of a pair of texts (premise and hypothesis; RTE, MNLI, QQP, SNLI), the
way transformers' run_glue.py keeps pairs cheap: a kind names its text keys. A pair is encoded as a pair wherever
the model reads it (fine-tuning, dev evaluation, layer drop, the baselines, extraction): [CLS] text [SEP] pair
[SEP], truncated longest-first at max_length. The head reads the top layer's [CLS] vector (heads.load_head);
dropping the top k layers gives it layer L-k's [CLS]. The dev metric is accuracy over examples."""

import numpy as np

from .errors import UserError
from .tasks import Encoded, TaskKind


TEXT_KEYS = ("text", "text_pair")


class SequenceClassification(TaskKind):
    auto_model = "AutoModelForSequenceClassification"

    def __init__(self, name: str, keys: tuple[str, ...]):
        self.name, self.keys = name, keys

    def prepare(self, corpus, where: str):
        """The label names, and the split of given example indices: each text key joined from its words, and the
        label's index."""
        if corpus.labels is None:
            raise UserError(f"{where}: no label per example, which kind {self.name} needs")
        if len(self.keys) == 2 and corpus.pairs is None:
            raise UserError(f"{where}: kind {self.name} needs a second text per example: name its column with "
                            "source.text_pair_column")
        if len(self.keys) == 1 and corpus.pairs is not None:
            raise UserError(f"{where}: every example has a second text; set the task's kind to pair_classification")
        label_names = sorted(set(corpus.labels))
        index = {name: i for i, name in enumerate(label_names)}
        texts = {"text": corpus.words, "text_pair": corpus.pairs}

        def split(ids) -> dict:
            return {**{key: [" ".join(texts[key][i]) for i in ids] for key in self.keys},
                    "label": [index[corpus.labels[i]] for i in ids]}

        return label_names, split

    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded:
        texts = [split[key] for key in TEXT_KEYS if key in split]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        keys = [key for key in encoded.keys() if key != "attention_mask"]
        features = [{key: encoded[key][i] for key in keys} for i in range(len(split["label"]))]
        truncated = sum(len(ids) > max_length for ids in tokenizer(*texts)["input_ids"])
        return Encoded(features, list(split["label"]), np.array([len(f["input_ids"]) for f in features]), truncated)

    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict:
        import torch

        batch = tokenizer.pad([encoded.features[i] for i in rows], return_tensors="pt")
        batch["labels"] = torch.as_tensor([encoded.targets[i] for i in rows])
        return batch.to(device)

    def gold(self, labels: np.ndarray) -> np.ndarray:
        return np.atleast_1d(labels)

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return logits.argmax(-1)

    def units(self, hidden, batch, special_ids) -> np.ndarray:
        """Each example's mean over its content pieces (the added [CLS] / [SEP] / <s> / </s> and padding left out)."""
        import torch

        from .activations import content_means

        content = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], special_ids)
        return content_means([hidden], content)[0].cpu().numpy()

    def depth_head(self, model, weights):
        from .heads import load_head

        head = load_head(weights)
        return lambda hidden, batch: head(hidden[:, 0].float().cpu().numpy())

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": [text.split() for text in split["text"]],
                "pairs": [text.split() for text in split["text_pair"]] if "text_pair" in self.keys else None,
                "labels": [label_names[y] for y in split["label"]]}


SINGLE = SequenceClassification("classification", TEXT_KEYS[:1])
PAIR = SequenceClassification("pair_classification", TEXT_KEYS)
