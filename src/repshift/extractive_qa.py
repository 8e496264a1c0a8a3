"""Extractive question answering (SQuAD v1.1): a question, a context and answer spans in it. As transformers'
run_qa.py reads them, each question is paired with its context ([CLS] question [SEP] context [SEP]), a context
longer than max_length split into windows that overlap by a third of max_length; the head (a linear layer on every
piece, AutoModelForQuestionAnswering) scores each piece as the answer's start and end, and a window whose context
does not hold the first answer is taught to point at [CLS]. An answer is the best span over all of a question's
windows (start and end in the context, start <= end, at most MAX_ANSWER_PIECES pieces), cut from the context by
the pieces' character offsets. Dropping the top k layers gives the head layer L-k's pieces. The dev metrics are
SQuAD v1.1's own: F1 (deciding) and exact match of the normalised answer, the best over the gold answers.
Extracted for the measures: each question paired with its context, as fine-tuned (truncated to extract.max_length,
no windows), without labels. The trivial answer is the context's first words, as many as the median training
answer has; a frozen probe would need a span head over whole windows, so it is not measured (the bar is the
fine-tune with every layer frozen, ablations.freeze_layers)."""

import collections
import functools
import re
import string

import numpy as np

from .errors import UserError
from .tasks import Encoded, TaskKind

F1, EXACT_MATCH = "f1", "exact_match"
MAX_ANSWER_PIECES, N_BEST = 30, 20
PUNCTUATION = set(string.punctuation)


def normalise(text: str) -> list[str]:
    """SQuAD v1.1's answer normalisation: lower case, punctuation and the articles a, an, the removed, whitespace
    collapsed; returned as its words."""
    text = "".join(c for c in text.lower() if c not in PUNCTUATION)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def answer_scores(predicted: str, answers) -> tuple[float, float]:
    """(F1, exact match) of a predicted answer: the best over the gold answers; F1 on normalised words."""
    return _answer_scores(predicted, tuple(answers))


@functools.lru_cache(maxsize=None)
def _answer_scores(predicted: str, answers: tuple[str, ...]) -> tuple[float, float]:
    """answer_scores, computed once per answer and gold answers: the dev bootstrap scores each question in 2,000
    resamples."""
    guess = normalise(predicted)
    best_f1, best_em = 0.0, 0.0
    for answer in answers:
        gold = normalise(answer)
        best_em = max(best_em, float(guess == gold))
        common = sum((collections.Counter(guess) & collections.Counter(gold)).values())
        if common:
            precision, recall = common / len(guess), common / len(gold)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
    return best_f1, best_em


def best_span(start: np.ndarray, end: np.ndarray, offsets: list) -> tuple[float, int, int] | None:
    """The best-scoring (start + end logit) span of one window with both ends in the context (offsets not None),
    start <= end and at most MAX_ANSWER_PIECES pieces, among the N_BEST starts and ends; None if none is valid."""
    best = None
    for s in np.argsort(start)[::-1][:N_BEST]:
        for e in np.argsort(end)[::-1][:N_BEST]:
            if (s < len(offsets) and e < len(offsets) and offsets[s] is not None and offsets[e] is not None
                    and s <= e < s + MAX_ANSWER_PIECES):
                score = float(start[s] + end[e])
                if best is None or score > best[0]:
                    best = (score, offsets[s][0], offsets[e][1])
    return best


class ExtractiveQA(TaskKind):
    name = "extractive_qa"
    auto_model = "SpanModel"
    metrics = (F1, EXACT_MATCH)
    trivial_name = "context's first words"
    frozen_probe_reason = ("a span head reads whole windows, not one vector per unit: the bar on a frozen encoder is "
                           "the fine-tune with every layer frozen (ablations.freeze_layers)")

    def __init__(self, reference: list | None = None):
        self.reference = reference

    def load_model(self, path, trust_remote_code: bool = False, labels: int | None = None):
        from .span_model import SpanModel

        return SpanModel.load(path, trust_remote_code)

    def prepare(self, corpus, where: str):
        """Start and end as the two outputs, and the split of given question indices: id, question, context and
        answers."""
        if corpus.questions is None:
            raise UserError(f"{where}: no questions with answers in a context, which kind {self.name} needs: a SQuAD "
                            "JSON file, or a source.answers_column")

        def split(ids) -> dict:
            return {key: [corpus.questions[i][key] for i in ids] for key in ("id", "question", "context", "answers")}

        return ["start", "end"], split

    def label_summary(self, train: dict, label_names: list[str], where: str) -> str:
        lengths = [len(answers["text"][0].split()) for answers in train["answers"]]
        return f"{len(lengths)} questions, median answer {np.median(lengths):g} words"

    def encode(self, tokenizer, split: dict, max_length: int) -> Encoded:
        """One row per question holding its windows: their features, each window's (start, end) piece of the first
        answer ((0, 0), [CLS], where the window's context does not hold it) and, for scoring, each window's
        character offsets of its context pieces (None elsewhere)."""
        encoded = tokenizer(split["question"], split["context"], truncation="only_second", max_length=max_length,
                            stride=max_length // 3, return_overflowing_tokens=True, return_offsets_mapping=True)
        keys = [key for key in encoded.keys() if key not in ("attention_mask", "offset_mapping",
                                                               "overflow_to_sample_mapping")]
        features = [{key: [] for key in keys} for _ in split["question"]]
        targets, offsets = [[] for _ in split["question"]], [[] for _ in split["question"]]
        for window, example in enumerate(encoded["overflow_to_sample_mapping"]):
            context = [o if sequence == 1 else None
                       for o, sequence in zip(encoded["offset_mapping"][window], encoded.sequence_ids(window))]
            start = split["answers"][example]["answer_start"][0]
            end = start + len(split["answers"][example]["text"][0])
            inside = [i for i, o in enumerate(context) if o is not None and o[0] < end and o[1] > start]
            whole = inside and context[inside[0]][0] <= start and context[inside[-1]][1] >= end
            targets[example].append((inside[0], inside[-1]) if whole else (0, 0))
            offsets[example].append(context)
            for key in keys:
                features[example][key].append(encoded[key][window])
        lengths = np.array([max(len(ids) for ids in f["input_ids"]) for f in features])
        truncated = sum(len(windows) > 1 for windows in targets)
        reference = [{"context": c, "answers": a["text"], "offsets": o}
                     for c, a, o in zip(split["context"], split["answers"], offsets)]
        return Encoded(features, targets, lengths, truncated, reference)

    def collate(self, tokenizer, encoded: Encoded, rows, device) -> dict:
        """Every window of the rows, padded together; labels (windows, 3): the question's row, start and end."""
        import torch

        flat = [{key: values[w] for key, values in encoded.features[i].items()}
                for i in rows for w in range(len(encoded.targets[i]))]
        batch = tokenizer.pad(flat, return_tensors="pt")
        batch["labels"] = torch.as_tensor([(i, *target) for i in rows for target in encoded.targets[i]])
        return batch.to(device)

    def encoder_inputs(self, batch: dict) -> dict:
        return {key: value for key, value in batch.items() if key != "labels"}

    def bind(self, encoded: Encoded) -> "ExtractiveQA":
        return ExtractiveQA(encoded.reference)

    def _questions(self, labels: np.ndarray) -> np.ndarray:
        return labels[np.sort(np.unique(labels[:, 0], return_index=True)[1]), 0]

    def gold(self, labels: np.ndarray) -> np.ndarray:
        """Per question (in batch order): its context and gold answers."""
        gold = np.empty(len(self._questions(labels)), dtype=object)
        gold[:] = [(self.reference[i]["context"], tuple(self.reference[i]["answers"]))
                   for i in self._questions(labels)]
        return gold

    def unit_examples(self, labels: np.ndarray) -> np.ndarray:
        return np.arange(len(self._questions(labels)))

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per question: the text of its best span over its windows ("" when no window has a valid span)."""
        answers = np.empty(len(self._questions(labels)), dtype=object)
        for n, question in enumerate(self._questions(labels)):
            reference = self.reference[question]
            windows = np.nonzero(labels[:, 0] == question)[0]
            spans = [best_span(logits[w, :, 0], logits[w, :, 1], reference["offsets"][k])
                     for k, w in enumerate(windows)]
            spans = [span for span in spans if span is not None]
            best = max(spans, default=None)
            answers[n] = "" if best is None else reference["context"][best[1] : best[2]]
        return answers

    def scores(self, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """SQuAD v1.1: mean F1 and exact match over questions, each the best over its gold answers."""
        if not len(gold):
            return {F1: float("nan"), EXACT_MATCH: float("nan")}
        pairs = np.array([answer_scores(p, answers) for p, (_, answers) in zip(predicted, gold)])
        return {F1: float(pairs[:, 0].mean()), EXACT_MATCH: float(pairs[:, 1].mean())}

    def trivial(self, train_gold: np.ndarray, dev_gold: np.ndarray) -> float:
        words = int(np.median([len(answers[0].split()) for _, answers in train_gold]))
        guesses = np.array([" ".join(context.split()[:words]) for context, _ in dev_gold], dtype=object)
        return self.dev_metric(guesses, dev_gold)

    def units(self, hidden, batch, special_ids) -> np.ndarray:
        raise UserError(f"kind {self.name}: {self.frozen_probe_reason}")

    def depth_head(self, model, weights):
        head = model.qa.qa_outputs
        return lambda hidden, batch: head(hidden.to(head.weight.dtype)).float().cpu().numpy()

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": [question.split() for question in split["question"]],
                "pairs": [context.split() for context in split["context"]]}


KIND = ExtractiveQA()
