"""Multiple choice (COPA, CommonsenseQA, HellaSwag, CosmosQA, SocialIQA): a context and n candidate answers, one of
them right. As transformers' AutoModelForMultipleChoice reads them, each answer is encoded as a pair with the
context ([CLS] context [SEP] answer [SEP], truncated longest-first), the head scores each pair's top-layer [CLS]
(heads.load_head) and the answers compete in a softmax; dropping the top k layers scores layer L-k's [CLS]. The
dev metric is accuracy over examples. Extracted for the measures: each example's context paired with its right
answer (the pair the model is taught to prefer), without sentence labels. The frozen baseline is a linear probe
that reads every answer's mean vector side by side and names the right one's position."""

import numpy as np

from .classification import PAIR
from .errors import UserError
from .tasks import Encoded, TaskKind


class MultipleChoice(TaskKind):
    name = "multiple_choice"
    auto_model = "AutoModelForMultipleChoice"

    def prepare(self, corpus, where: str):
        """Position names (answer 1 .. n) as labels, and the split of given example indices: context, the answers
        and the right one's index."""
        if corpus.choices is None:
            raise UserError(f"{where}: no candidate answers per example, which kind {self.name} needs: name them "
                            "with source.choices_column (a list) or source.choice_columns")
        label_names = [f"answer {i + 1}" for i in range(len(corpus.choices[0]))]

        def split(ids) -> dict:
            return {"context": [" ".join(corpus.words[i]) for i in ids],
                    "choices": [[" ".join(choice) for choice in corpus.choices[i]] for i in ids],
                    "label": [int(corpus.labels[i]) for i in ids]}

        return label_names, split

    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded:
        features, lengths, truncated = [], [], 0
        for context, choices in zip(split["context"], split["choices"]):
            contexts = [context] * len(choices)
            encoded = tokenizer(contexts, choices, truncation=True, max_length=max_length)
            features.append({key: encoded[key] for key in encoded.keys() if key != "attention_mask"})
            lengths.append(max(len(ids) for ids in encoded["input_ids"]))
            truncated += any(len(ids) > max_length for ids in tokenizer(contexts, choices)["input_ids"])
        return Encoded(features, list(split["label"]), np.array(lengths), truncated)

    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict:
        import torch

        n_choices = len(encoded.features[rows[0]]["input_ids"])
        flat = [{key: values[choice] for key, values in encoded.features[i].items()}
                for i in rows for choice in range(n_choices)]
        batch = tokenizer.pad(flat, return_tensors="pt")
        batch = {key: value.view(len(rows), n_choices, -1) for key, value in batch.items()}
        batch["labels"] = torch.as_tensor([encoded.targets[i] for i in rows])
        return {key: value.to(device) for key, value in batch.items()}

    def encoder_inputs(self, batch: dict) -> dict:
        return {key: value.flatten(0, 1) for key, value in batch.items() if key != "labels"}

    def gold(self, labels: np.ndarray) -> np.ndarray:
        return np.atleast_1d(labels)

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return logits.argmax(-1)

    def units(self, hidden, batch, special_ids) -> np.ndarray:
        """Each example's answers' mean content vectors, side by side (answer 1's first)."""
        means = PAIR.units(hidden, self.encoder_inputs(batch), special_ids)
        return means.reshape(batch["input_ids"].shape[0], -1)

    def depth_head(self, model, weights):
        from .heads import load_head

        head = load_head(weights)
        return lambda hidden, batch: head(hidden[:, 0].float().cpu().numpy()).reshape(batch["input_ids"].shape[:2])

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": [context.split() for context in split["context"]],
                "pairs": [choices[label].split() for choices, label in zip(split["choices"], split["label"])]}


KIND = MultipleChoice()
