"""Regression on one text or a pair (STS-B similarity scores): a real-valued score per example, predicted by
transformers' sequence-classification head with one output and a mean-squared-error loss. Texts are encoded as
SequenceClassification encodes them (a pair as a pair); the head reads the top layer's [CLS], and dropping the top
k layers gives it layer L-k's [CLS]. The dev metrics are Pearson's and Spearman's correlation with the gold scores,
Pearson deciding (GLUE reports both for STS-B). Extracted for the measures: the dev texts without sentence labels
(a score is not a class a probe or DirectProbe could read). The frozen baseline is a ridge regression on the mean
vectors; the trivial answer, the training mean, correlates with nothing (0)."""

import numpy as np

from .classification import TEXT_KEYS, SequenceClassification
from .errors import UserError

PEARSON, SPEARMAN = "pearson", "spearman"
RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def _score(value: str, where: str, row: int) -> float:
    try:
        score = float(value)
    except ValueError:
        score = np.nan
    if not np.isfinite(score):
        raise UserError(f"{where}: example {row}: label {value!r} is not a number, which kind regression needs")
    return score


def correlation(predicted: np.ndarray, gold: np.ndarray, ranked: bool = False) -> float:
    """Pearson's r (Spearman's rho with `ranked`: r of the average ranks), 0 where either side is constant (a
    constant prediction carries no information)."""
    from scipy.stats import pearsonr, rankdata

    if len(gold) < 2 or np.ptp(predicted) == 0 or np.ptp(gold) == 0:
        return 0.0
    if ranked:
        predicted, gold = rankdata(predicted), rankdata(gold)
    return float(pearsonr(predicted, gold)[0])


class Regression(SequenceClassification):
    name = "regression"
    metrics = (PEARSON, SPEARMAN)
    trivial_name = "training mean"

    def __init__(self):
        super().__init__(self.name, TEXT_KEYS)

    def prepare(self, corpus, where: str):
        """One output named "score", and the split of given example indices: the text (and its pair, where the
        source has one) and the score."""
        keys = TEXT_KEYS[: 1 if corpus.pairs is None else 2]
        if corpus.labels is None:
            raise UserError(f"{where}: no score per example, which kind {self.name} needs")
        scores = [_score(value, where, row) for row, value in enumerate(corpus.labels, 1)]
        texts = {"text": corpus.words, "text_pair": corpus.pairs}

        def split(ids) -> dict:
            return {**{key: [" ".join(texts[key][i]) for i in ids] for key in keys},
                    "label": [scores[i] for i in ids]}

        return ["score"], split

    def collate(self, tokenizer, encoded, rows, device) -> dict:
        batch = super().collate(tokenizer, encoded, rows, device)
        batch["labels"] = batch["labels"].float()
        return batch

    def predicted(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return logits[:, 0]

    def scores(self, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """Pearson's r and Spearman's rho of predicted with gold scores."""
        return {PEARSON: correlation(predicted, gold), SPEARMAN: correlation(predicted, gold, ranked=True)}

    def label_summary(self, train: dict, label_names: list[str], where: str) -> str:
        scores = np.asarray(train["label"])
        if len(scores) < 2 or np.ptp(scores) == 0:
            raise UserError(f"{where}: every training score is the same; kind {self.name} needs them to vary")
        return f"scores from {scores.min():g} to {scores.max():g}, mean {scores.mean():.3g}"

    def trivial(self, train_gold: np.ndarray, dev_gold: np.ndarray) -> float:
        return self.dev_metric(np.full(len(dev_gold), np.mean(train_gold)), np.asarray(dev_gold))

    def frozen_probe(self, X_train, y_train, X_dev, y_dev, settings: dict) -> float:
        """Pearson's r of a ridge regression on standardised frozen units, its penalty chosen by efficient
        leave-one-out cross-validation over RIDGE_ALPHAS."""
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(X_train, y_train)
        return self.dev_metric(model.predict(X_dev), np.asarray(y_dev))

    def probe(self, split: dict, label_names: list[str]) -> dict:
        return {"words": [text.split() for text in split["text"]],
                "pairs": [text.split() for text in split["text_pair"]] if "text_pair" in split else None}


KIND = Regression()
