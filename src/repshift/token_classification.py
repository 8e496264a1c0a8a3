"""Token classification (POS, NER, supersense tags): a tag per word, predicted from the word's first word piece, as
transformers' run_ner.py does by default; a word's later pieces, special tokens, padding and words without a tag
(STREUSLE's non-adpositions) carry no label. Words cut off at max_length are neither trained on nor scored (the log
counts them). The head is a linear classifier on every piece's top-layer vector; dropping the top k layers gives it
layer L-k's vectors. The dev metric is accuracy over words."""

import numpy as np

from .errors import UserError
from .tasks import IGNORED, Encoded, TaskKind


class TokenClassification(TaskKind):
    name = "token_classification"
    auto_model = "AutoModelForTokenClassification"

    def prepare(self, corpus, where: str):
        """The tag names, and the split of given sentence indices: their words and each word's tag index."""
        if corpus.tags is None:
            raise UserError(f"{where}: no tag per word, which kind {self.name} needs: word/TAG lines, or a "
                            "source.tokens_column with its tags_column")
        tag_names = sorted({tag for tags in corpus.tags for tag in tags if tag is not None})
        index = {name: i for i, name in enumerate(tag_names)} | {None: IGNORED}

        def split(ids) -> dict:
            return {"words": [corpus.words[i] for i in ids], "tags": [[index[t] for t in corpus.tags[i]] for i in ids]}

        return tag_names, split

    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded:
        encoded = tokenizer(split["words"], is_split_into_words=True, truncation=True, max_length=max_length)
        keys = [key for key in encoded.keys() if key != "attention_mask"]
        features, targets, truncated = [], [], 0
        for i, tags in enumerate(split["tags"]):
            features.append({key: encoded[key][i] for key in keys})
            previous, labels = None, []
            for word in encoded.word_ids(i):
                labels.append(IGNORED if word is None or word == previous else tags[word])
                previous = word
            targets.append(labels)
            truncated += sum(label != IGNORED for label in labels) < sum(tag != IGNORED for tag in tags)
        return Encoded(features, targets, np.array([len(f["input_ids"]) for f in features]), truncated)

    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict:
        import torch

        batch = tokenizer.pad([encoded.features[i] for i in rows], return_tensors="pt")
        labels = torch.full(batch["input_ids"].shape, IGNORED, dtype=torch.long)
        for row, i in enumerate(rows):
            labels[row, : len(encoded.targets[i])] = torch.as_tensor(encoded.targets[i])
        batch["labels"] = labels
        return batch.to(device)

    def gold(self, labels: np.ndarray) -> np.ndarray:
        return labels[labels != IGNORED]

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return logits.argmax(-1)[labels != IGNORED]

    def unit_examples(self, labels: np.ndarray) -> np.ndarray:
        return np.nonzero(labels != IGNORED)[0]

    def units(self, hidden, batch, special_ids) -> np.ndarray:
        """Each word's first-piece vector, in the order gold() reads them."""
        return hidden[batch["labels"] != IGNORED].float().cpu().numpy()

    def depth_head(self, model, weights):
        classifier = model.classifier
        return lambda hidden, batch: classifier(hidden.to(classifier.weight.dtype)).float().cpu().numpy()

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": split["words"],
                "tags": [[label_names[t] if t != IGNORED else None for t in tags] for tags in split["tags"]]}


KIND = TokenClassification()
