"""Dependency parsing (UD English-EWT, CoNLL-U; Merchant et al. 2020's most reconfiguring task): a head and a
relation per word, read at its first piece, by the biaffine head of biaffine.py (Dozat & Manning 2017; greedy
heads). Relations are the universal ones, subtypes stripped (nmod:poss -> nmod), as the CoNLL 2018 shared task
scores them. Words cut off at max_length are not scored, nor are words whose head was cut off (the log counts the
sentences). The dev metrics are LAS (deciding: right head and relation) and UAS (right head) over every word,
punctuation included. Dropping the top k layers gives the biaffine head layer L-k's pieces. Extracted for the
measures: each dev sentence with its words' relations as tags, so the dev set is a tagged probe set (Zhou &
Srikumar probe dependency relations on word vectors). The frozen probe reads one word's first-piece vector and
names its head by offset (-4..4 words, or the root; farther heads count as wrong) with its relation; the trivial
answer hangs every word from the word before it (the first from the root) with the most frequent relation."""

import numpy as np

from .errors import UserError
from .tasks import IGNORED, Encoded, TaskKind

LAS, UAS = "las", "uas"
OFFSETS = 4
ROOT_OFFSET = 0  # a word is never its own head, so offset 0 stands for "hangs from the root"


def offset_classes(gold: np.ndarray, relations: int) -> np.ndarray:
    """Each (word, head, relation) row as one class: its head's offset in -OFFSETS..OFFSETS (ROOT_OFFSET for the
    root, 2 * OFFSETS + 1 for farther) times the number of relations, plus the relation."""
    offset = np.where(gold[:, 1] == 0, ROOT_OFFSET, gold[:, 1] - gold[:, 0])
    bucket = np.where(np.abs(offset) <= OFFSETS, offset + OFFSETS, 2 * OFFSETS + 1)
    return bucket * relations + gold[:, 2]


def from_offset_classes(classes: np.ndarray, words: np.ndarray, relations: int) -> np.ndarray:
    """(word, head, relation) rows from offset_classes; a farther head is -1, which no gold head equals."""
    bucket, relation = np.divmod(classes, relations)
    offset = bucket - OFFSETS
    head = np.where(bucket == 2 * OFFSETS + 1, -1, np.where(offset == ROOT_OFFSET, 0, words + offset))
    return np.stack([words, head, relation], axis=1)


class DependencyParsing(TaskKind):
    name = "dependency_parsing"
    auto_model = "BiaffineParser"
    metrics = (LAS, UAS)
    trivial_name = "previous word as head"

    def load_model(self, path, trust_remote_code: bool = False, labels: int | None = None):
        from .biaffine import load_parser

        return load_parser(path, trust_remote_code, labels)

    def prepare(self, corpus, where: str):
        """The relation names, and the split of given sentence indices: words, heads and relation indices."""
        if corpus.heads is None:
            raise UserError(f"{where}: no head per word, which kind {self.name} needs: a CoNLL-U file, or a "
                            "source.heads_column with its tokens_column and relations_column")
        names = sorted({relation for relations in corpus.relations for relation in relations})
        index = {name: i for i, name in enumerate(names)}

        def split(ids) -> dict:
            return {"words": [corpus.words[i] for i in ids], "heads": [corpus.heads[i] for i in ids],
                    "relations": [[index[r] for r in corpus.relations[i]] for i in ids]}

        return names, split

    def label_summary(self, train: dict, label_names: list[str], where: str) -> str:
        counts = np.bincount(np.concatenate(train["relations"]), minlength=len(label_names))
        return f"{len(label_names)} relations, " + ", ".join(
            f"{label_names[i]} {counts[i]}" for i in np.argsort(-counts)[:5]) + ", ..."

    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded:
        """Per piece: its word's number at a first piece (0 at position 0, the root; -1 elsewhere) as the feature
        word_index, and the target (word, head, relation), IGNORED where not scored."""
        encoded = tokenizer(split["words"], is_split_into_words=True, truncation=True, max_length=max_length)
        keys = [key for key in encoded.keys() if key != "attention_mask"]
        features, targets, truncated = [], [], 0
        for i, (heads, relations) in enumerate(zip(split["heads"], split["relations"])):
            word_ids = encoded.word_ids(i)
            if word_ids[0] is not None:
                raise UserError(f"{type(tokenizer).__name__}: the first piece is a word, so no [CLS] or <s> can stand "
                                "for the root; dependency parsing needs a tokenizer that adds one")
            present = {word for word in word_ids if word is not None}
            word_index, target, previous = [0], [[IGNORED] * 3], None
            for word in word_ids[1:]:
                first = word is not None and word != previous
                previous = word
                word_index.append(word + 1 if first else -1)
                scored = first and (heads[word] == 0 or heads[word] - 1 in present)
                target.append([word + 1, heads[word], relations[word]] if scored else
                              [word + 1 if first else IGNORED, IGNORED, IGNORED])
            features.append({**{key: encoded[key][i] for key in keys}, "word_index": word_index})
            targets.append(target)
            truncated += len(present) < len(heads)
        return Encoded(features, targets, np.array([len(f["input_ids"]) for f in features]), truncated)

    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict:
        import torch

        batch = tokenizer.pad([{k: v for k, v in encoded.features[i].items() if k != "word_index"} for i in rows],
                              return_tensors="pt")
        shape = batch["input_ids"].shape
        word_index = torch.full(shape, -1, dtype=torch.long)
        labels = torch.full((*shape, 3), IGNORED, dtype=torch.long)
        for row, i in enumerate(rows):
            word_index[row, : len(encoded.targets[i])] = torch.as_tensor(encoded.features[i]["word_index"])
            labels[row, : len(encoded.targets[i])] = torch.as_tensor(encoded.targets[i])
        batch["word_index"], batch["labels"] = word_index, labels
        return batch.to(device)

    def encoder_inputs(self, batch: dict) -> dict:
        return {key: value for key, value in batch.items() if key not in ("word_index", "labels")}

    def gold(self, labels: np.ndarray) -> np.ndarray:
        return labels[labels[..., 1] != IGNORED]

    def unit_examples(self, labels: np.ndarray) -> np.ndarray:
        return np.nonzero(labels[..., 1] != IGNORED)[0]

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(word, head, relation) of each scored word: its best head's word number and the best relation there."""
        pieces = labels.shape[1]
        word_at = np.where(labels[..., 0] != IGNORED, labels[..., 0], -1)
        word_at[:, 0] = 0
        heads = np.take_along_axis(word_at, logits[..., :pieces].argmax(-1), axis=1)
        rows = np.stack([labels[..., 0], heads, logits[..., pieces:].argmax(-1)], axis=-1)
        return rows[labels[..., 1] != IGNORED]

    def scores(self, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """LAS: the share of words with the right head and relation; UAS: with the right head."""
        if not len(gold):
            return {LAS: float("nan"), UAS: float("nan")}
        head = predicted[:, 1] == gold[:, 1]
        return {LAS: float(np.mean(head & (predicted[:, 2] == gold[:, 2]))), UAS: float(np.mean(head))}

    def trivial(self, train_gold: np.ndarray, dev_gold: np.ndarray) -> float:
        relation = np.bincount(np.asarray(train_gold)[:, 2]).argmax()
        dev_gold = np.asarray(dev_gold)
        guess = np.stack([dev_gold[:, 0], dev_gold[:, 0] - 1, np.full(len(dev_gold), relation)], axis=1)
        return self.dev_metric(guess, dev_gold)

    def frozen_probe(self, X_train, y_train, X_dev, y_dev, settings: dict) -> float:
        """A linear probe on each word's own first-piece vector naming its head's offset and its relation
        (offset_classes)."""
        from .probing import linear_probe_predict

        y_train, y_dev = np.asarray(y_train), np.asarray(y_dev)
        relations = int(max(y_train[:, 2].max(), y_dev[:, 2].max())) + 1
        classes = linear_probe_predict(X_train, offset_classes(y_train, relations), X_dev, l2=settings["probe_l2"],
                                       seed=settings["seed"], max_iter=settings["probe_iterations"])
        return self.dev_metric(from_offset_classes(classes, y_dev[:, 0], relations), y_dev)

    def units(self, hidden, batch, special_ids) -> np.ndarray:
        """Each scored word's first-piece vector, in the order gold() reads them."""
        return hidden[batch["labels"][..., 1] != IGNORED].float().cpu().numpy()

    def depth_head(self, model, weights):
        return lambda hidden, batch: model.head(hidden.float(), batch["word_index"]).float().cpu().numpy()

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": split["words"],
                "tags": [[label_names[r] for r in relations] for relations in split["relations"]]}


KIND = DependencyParsing()
