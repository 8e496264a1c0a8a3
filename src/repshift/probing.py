"""Linear probes on frozen representations (Merchant et al. 2020; Hewitt & Liang 2019).

The probe minimises mean softmax cross-entropy + (l2 / 2) * ||W||_F^2 (the
intercept is not penalised) on features standardised with training statistics
in float64, then fitted in float32 by full-batch L-BFGS.
This is sklearn's ``LogisticRegression(C=1 / (l2 * n_train))`` with more than two
classes, since sklearn minimises C * sum(cross-entropy) + ||W||_F^2 / 2. The
cross-validated probe fits that sklearn model with the same objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def _check_features(X: np.ndarray, name: str) -> np.ndarray:
    """Return X as a float64 (n, d) array.
    Raise ValueError unless X is two-dimensional and all finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def _standardise(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale both arrays by the training mean and standard deviation.
    Constant training features are only centred."""
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    return (X_train - mean) / std, (X_test - mean) / std


def _fit_softmax(X: torch.Tensor, y: torch.Tensor, k: int, l2: float, seed: int,
                 max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit softmax regression weights (d, k) and intercept (k,) by full-batch L-BFGS.
    Minimises mean cross-entropy + (l2 / 2) * ||W||^2 from a seeded small random start."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    W = (1e-3 * torch.randn(X.shape[1], k, generator=generator, dtype=X.dtype)).requires_grad_()
    b = torch.zeros(k, dtype=X.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-5, tolerance_change=1e-9,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, y) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return W.detach(), b.detach()


def linear_probe_predict(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, l2: float = 1e-3,
                         seed: int = 0, max_iter: int = 200) -> np.ndarray:
    """Labels an L2-penalised multinomial logistic regression probe fit on (X_train, y_train) predicts for X_test.
    Features are standardised with training statistics; the probe is fit by _fit_softmax."""
    X_train = _check_features(X_train, "X_train")
    X_test = _check_features(X_test, "X_test")
    y_train = np.asarray(y_train)
    if y_train.shape != X_train.shape[:1]:
        raise ValueError("Labels must be 1-D with one entry per feature row.")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError("X_train and X_test must have the same number of features.")
    if X_test.shape[0] == 0:
        raise ValueError("The test set is empty.")
    if not l2 > 0:
        raise ValueError("l2 must be positive.")
    import torch

    classes, train_codes = np.unique(y_train, return_inverse=True)
    if classes.size < 2:
        raise ValueError("Training labels contain a single class; a probe needs at least two.")
    Z_train, Z_test = _standardise(X_train, X_test)
    W, b = _fit_softmax(torch.from_numpy(Z_train.astype(np.float32)),
                        torch.from_numpy(train_codes), classes.size, l2, seed, max_iter)
    return classes[(torch.from_numpy(Z_test.astype(np.float32)) @ W + b).argmax(dim=1).numpy()]


def linear_probe_accuracy(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                          y_test: np.ndarray, l2: float = 1e-3, seed: int = 0,
                          max_iter: int = 200) -> float:
    """Held-out accuracy of the probe of linear_probe_predict; test labels unseen in training count as errors.
    acc = mean_i [predicted_i = y_test_i]."""
    y_test = np.asarray(y_test)
    if y_test.shape != np.shape(X_test)[:1]:
        raise ValueError("Labels must be 1-D with one entry per feature row.")
    return float(np.mean(linear_probe_predict(X_train, y_train, X_test, l2, seed, max_iter) == y_test))


def probe_layers(layers: Sequence[np.ndarray] | np.ndarray, labels: np.ndarray,
                 train_idx: np.ndarray, test_idx: np.ndarray, **kw) -> np.ndarray:
    """Held-out accuracy of a fresh linear probe on each layer's (n, d) features.
    Returns an (L,) array; keyword arguments go to linear_probe_accuracy."""
    labels = np.asarray(labels)
    if np.intersect1d(train_idx, test_idx).size:
        raise ValueError("train_idx and test_idx overlap.")
    accuracies = []
    for layer in layers:
        layer = np.asarray(layer)
        if layer.shape[0] != labels.shape[0]:
            raise ValueError("Every layer must have one row per label.")
        accuracies.append(linear_probe_accuracy(layer[train_idx], labels[train_idx],
                                                layer[test_idx], labels[test_idx], **kw))
    return np.array(accuracies)


def control_labels(word_types: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang (2019) control task: one random label per word type, for all its occurrences.
    Each type's label is drawn from the empirical distribution of ``labels``."""
    word_types, labels = np.asarray(word_types), np.asarray(labels)
    if word_types.shape != labels.shape or word_types.ndim != 1:
        raise ValueError("word_types and labels must be 1-D arrays of the same length.")
    if labels.size == 0:
        raise ValueError("labels is empty.")
    _, type_codes = np.unique(word_types, return_inverse=True)
    values, counts = np.unique(labels, return_counts=True)
    drawn = np.random.default_rng(seed).choice(values, size=type_codes.max() + 1,
                                               p=counts / counts.sum())
    return drawn[type_codes]


def selectivity(task_accuracy, control_accuracy):
    """Hewitt & Liang (2019) selectivity: task accuracy minus control-task accuracy.
    High selectivity means the probe reads the property rather than memorising word types."""
    return np.subtract(task_accuracy, control_accuracy)


def split_indices(n: int, test_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split of range(n) keeping each group wholly on one side.
    Shuffled groups fill the test set until it holds at least round(test_fraction * n) items."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must lie strictly between 0 and 1.")
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError("groups must be a 1-D array of length n.")
    _, group_codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if sizes.size < 2:
        raise ValueError("A split needs at least two groups (or items).")
    order = np.random.default_rng(seed).permutation(sizes.size)
    n_test_groups = np.searchsorted(np.cumsum(sizes[order]), round(test_fraction * n)) + 1
    test_groups = order[:min(n_test_groups, sizes.size - 1)]
    in_test = np.isin(group_codes, test_groups)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def held_out_correct(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, seed: int = 0,
                     probe_test_fraction: float = 0.25, probe_l2: float = 1e-3,
                     probe_iterations: int = 100) -> np.ndarray:
    """Per row, 1 where the probe fit on the other side of a seeded group split predicts its label, 0 where not,
    NaN on the training rows; the mean of the scored rows is the held-out accuracy (linear_probe_predict)."""
    X, y = np.asarray(X), np.asarray(y)
    train, test = split_indices(len(y), probe_test_fraction, seed, groups=groups)
    scores = np.full(len(y), np.nan)
    scores[test] = linear_probe_predict(X[train], y[train], X[test], l2=probe_l2, seed=seed,
                                        max_iter=probe_iterations) == y[test]
    return scores


def _folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified folds that keep each group on one side (plain stratified folds when every row is its own
    group: the same guarantee, without StratifiedGroupKFold's search); ValueError when a class has too few groups."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    per_class = [np.unique(groups[y == c]).size for c in np.unique(y)]
    if min(per_class) < n_folds:
        raise ValueError(f"a class has {min(per_class)} groups, fewer than the {n_folds} cross-validation folds")
    if np.unique(groups).size == len(groups):
        return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(y, y))
    return list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(y, y, groups))


def _path_predict(X_train, y_train, X_test, l2_grid: Sequence[float], max_iter: int) -> list[np.ndarray]:
    """The test rows' predictions of the probe at each penalty of l2_grid (in its order), fit from the strongest
    penalty to the weakest, each fit starting from the previous one's weights (the same convex optimum)."""
    from sklearn.linear_model import LogisticRegression

    Z_train, Z_test = _standardise(X_train, X_test)
    model, predicted = LogisticRegression(max_iter=max_iter, warm_start=True), {}
    for l2 in sorted(l2_grid, reverse=True):
        predicted[l2] = model.set_params(C=1 / (l2 * len(y_train))).fit(Z_train, y_train).predict(Z_test)
    return [predicted[l2] for l2 in l2_grid]


def cross_validated_correct(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, folds: int = 5,
                            l2_grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), seed: int = 0,
                            probe_iterations: int = 100, features=None) -> np.ndarray:
    """Per row, 1 where the probe of the outer fold that holds it out predicts its label, else 0 (every row scored).
    Each fold's L2 penalty (objective of the module docstring) maximises accuracy over inner folds of its training
    rows (nested cross-validation), so the reported accuracy never saw the rows that chose it. features(train,
    test) -> (train matrix, test matrix) is a preprocessing step fit on the training rows only (default: X's rows);
    one fit on all rows would leak the held-out rows into it (a projection fit on every row can make a probe
    score below chance)."""
    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if features is None:
        X = _check_features(X, "X")
        if X.shape[:1] != y.shape:
            raise ValueError("y must be 1-D with one entry per row of X.")
        features = lambda train, test: (X[train], X[test])  # noqa: E731
    if groups.shape != y.shape:
        raise ValueError("groups must be 1-D with one entry per label.")
    if np.unique(y).size < 2:
        raise ValueError("y holds a single class; a probe needs at least two.")
    scores = np.zeros(len(y))
    for train, test in _folds(y, groups, folds, seed):
        F_train, F_test = features(train, test)
        inner = _folds(y[train], groups[train], max(2, folds - 2), seed)
        accuracy = np.mean([[np.mean(p == y[train][b]) for p in _path_predict(
            F_train[a], y[train][a], F_train[b], l2_grid, probe_iterations)] for a, b in inner], axis=0)
        best = l2_grid[int(np.argmax(accuracy))]
        scores[test] = _path_predict(F_train, y[train], F_test, [best], probe_iterations)[0] == y[test]
    return scores
