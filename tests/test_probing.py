import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from repshift.probing import (
    control_labels,
    cross_validated_correct,
    held_out_correct,
    linear_probe_accuracy,
    probe_layers,
    selectivity,
    split_indices,
)


def blobs(n, d, k, spread, seed):
    """Gaussian blobs: k centres at distance ~spread * sqrt(2d), unit-variance noise.
    Returns features (n, d) and labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return spread * rng.normal(size=(k, d))[y] + rng.normal(size=(n, d)), y


def test_separable_blobs_are_probed_accurately():
    X, y = blobs(2000, 16, 5, spread=3.0, seed=0)
    assert linear_probe_accuracy(X[:1500], y[:1500], X[1500:], y[1500:]) > 0.95


def test_random_labels_give_chance_accuracy():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(8000, 10)), rng.integers(0, 4, 8000)
    assert abs(linear_probe_accuracy(X[:4000], y[:4000], X[4000:], y[4000:]) - 0.25) < 0.05


def test_agrees_with_sklearn_logistic_regression():
    X, y = blobs(3000, 100, 5, spread=0.2, seed=2)
    X_train, y_train, X_test, y_test = X[:200], y[:200], X[200:], y[200:]
    l2 = 1.0
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)

    def sklearn_accuracy(C):
        probe = LogisticRegression(C=C, max_iter=2000, tol=1e-8)
        return probe.fit((X_train - mean) / std, y_train).score((X_test - mean) / std, y_test)

    reference = sklearn_accuracy(1 / (l2 * len(y_train)))
    assert abs(sklearn_accuracy(2 / (l2 * len(y_train))) - reference) > 0.01
    assert abs(sklearn_accuracy(0.5 / (l2 * len(y_train))) - reference) > 0.01
    assert abs(linear_probe_accuracy(X_train, y_train, X_test, y_test, l2=l2) - reference) <= 0.01


def test_standardisation_makes_probe_invariant_to_feature_scale():
    X, y = blobs(3000, 100, 5, spread=0.2, seed=2)
    scales = np.logspace(-3, 3, X.shape[1])
    plain = linear_probe_accuracy(X[:200], y[:200], X[200:], y[200:], l2=1.0)
    rescaled = linear_probe_accuracy(X[:200] * scales + 50, y[:200], X[200:] * scales + 50,
                                     y[200:], l2=1.0)
    assert abs(plain - rescaled) <= 0.005


def test_is_deterministic_given_seed():
    X, y = blobs(1000, 8, 3, spread=0.5, seed=3)
    first = linear_probe_accuracy(X[:600], y[:600], X[600:], y[600:], seed=7)
    assert first == linear_probe_accuracy(X[:600], y[:600], X[600:], y[600:], seed=7)


def test_unseen_test_label_counts_as_error():
    X, y = blobs(400, 4, 2, spread=4.0, seed=4)
    y_test = np.where(np.arange(100) < 50, 9, y[300:])
    assert linear_probe_accuracy(X[:300], y[:300], X[300:], y_test) <= 0.5


def test_probe_layers_picks_out_the_informative_layer():
    X, y = blobs(1500, 12, 4, spread=1.0, seed=5)
    rng = np.random.default_rng(6)
    layers = np.stack([rng.normal(size=X.shape), X, rng.normal(size=X.shape)])
    train_idx, test_idx = split_indices(len(y), 0.3, seed=0)
    accuracies = probe_layers(layers, y, train_idx, test_idx)
    assert accuracies.shape == (3,)
    assert np.argmax(accuracies) == 1
    assert accuracies[1] > 0.8 and accuracies[[0, 2]].max() < 0.4
    as_list = probe_layers(list(layers), y, train_idx, test_idx)
    np.testing.assert_array_equal(as_list, accuracies)


def test_control_labels_are_constant_per_type():
    rng = np.random.default_rng(7)
    word_types = rng.integers(0, 300, 5000)
    labels = rng.integers(0, 5, 5000)
    control = control_labels(word_types, labels, seed=0)
    for word_type in np.unique(word_types):
        assert np.unique(control[word_types == word_type]).size == 1
    np.testing.assert_array_equal(control, control_labels(word_types, labels, seed=0))


def test_control_labels_follow_the_label_distribution():
    word_types = np.arange(20000)
    labels = np.repeat(np.array(["NOUN", "VERB", "DET"]), [10000, 6000, 4000])
    control = control_labels(word_types, labels, seed=1)
    for tag, share in [("NOUN", 0.5), ("VERB", 0.3), ("DET", 0.2)]:
        assert abs(np.mean(control == tag) - share) < 0.02


def test_selectivity_is_task_minus_control():
    np.testing.assert_allclose(selectivity([0.9, 0.8], [0.7, 0.75]), [0.2, 0.05])


def test_split_keeps_groups_whole_and_is_seeded():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(200), rng.integers(1, 30, 200))
    train_idx, test_idx = split_indices(len(groups), 0.25, seed=3, groups=groups)
    assert np.intersect1d(groups[train_idx], groups[test_idx]).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, test_idx])),
                                  np.arange(len(groups)))
    assert abs(len(test_idx) / len(groups) - 0.25) < 0.05
    again = split_indices(len(groups), 0.25, seed=3, groups=groups)
    np.testing.assert_array_equal(again[0], train_idx)
    np.testing.assert_array_equal(again[1], test_idx)
    other = split_indices(len(groups), 0.25, seed=4, groups=groups)
    assert not np.array_equal(other[1], test_idx)


def test_split_without_groups_has_requested_size():
    train_idx, test_idx = split_indices(1000, 0.2, seed=0)
    assert (len(train_idx), len(test_idx)) == (800, 200)
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert len(split_indices(10, 0.7, seed=0)[1]) == 7
    assert len(split_indices(10, 0.01, seed=0)[1]) == 1


def bad_probe_calls():
    X, y = blobs(100, 3, 2, spread=1.0, seed=9)
    with_nan = X.copy()
    with_nan[5, 1] = np.nan
    return {
        "mismatched lengths": (X[:60], y[:59], X[60:], y[60:]),
        "mismatched test lengths": (X[:60], y[:60], X[60:], y[61:]),
        "single class": (X[:60], np.zeros(60), X[60:], y[60:]),
        "non-finite train": (with_nan[:60], y[:60], X[60:], y[60:]),
        "infinite test": (X[:60], y[:60], np.full((40, 3), np.inf), y[60:]),
        "feature count": (X[:60], y[:60], X[60:, :2], y[60:]),
    }


@pytest.mark.parametrize("case", list(bad_probe_calls()))
def test_probe_rejects_bad_input(case):
    with pytest.raises(ValueError):
        linear_probe_accuracy(*bad_probe_calls()[case])


def test_other_functions_reject_bad_input():
    with pytest.raises(ValueError):
        control_labels(np.arange(5), np.arange(4))
    with pytest.raises(ValueError):
        split_indices(10, 0.2, seed=0, groups=np.arange(9))
    with pytest.raises(ValueError):
        split_indices(10, 0.2, seed=0, groups=np.zeros(10))
    with pytest.raises(ValueError):
        split_indices(10, 1.0, seed=0)
    X, y = blobs(50, 3, 2, spread=1.0, seed=10)
    with pytest.raises(ValueError):
        probe_layers([X, X[:40]], y, np.arange(30), np.arange(30, 50))
    with pytest.raises(ValueError):
        probe_layers([X], y, np.arange(30), np.arange(25, 50))


def test_cross_validated_probe_scores_every_row_and_reads_a_signal():
    X, y = blobs(300, 20, 2, spread=1.0, seed=3)
    scores = cross_validated_correct(X, y)
    assert scores.shape == y.shape and set(np.unique(scores)) <= {0.0, 1.0}
    assert scores.mean() > 0.95


def test_cross_validated_probe_keeps_groups_on_one_side():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(60), 5)
    y = np.repeat(rng.integers(0, 2, 60), 5)
    # each group is a tight copy of one point: a probe that saw a group's other rows would memorise it
    X = np.repeat(rng.normal(size=(60, 40)), 5, axis=0) + 1e-3 * rng.normal(size=(300, 40))
    assert abs(cross_validated_correct(X, y, groups).mean() - 0.5) < 0.15
    assert cross_validated_correct(X, y).mean() > 0.95, "without groups the copies leak across folds"


def _label_in_top_direction(n=200, d=30, seed=5):
    """Two balanced classes apart along the largest direction only, isotropic noise elsewhere."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, d))
    X[:, 0] = 10.0 * (2 * y - 1) + rng.normal(size=n)
    return X, y


def test_a_projection_fit_on_held_out_rows_scores_below_chance_and_one_fit_in_fold_does_not():
    from repshift.isotropy import fit_remove_top, remove_top_directions

    X, y = _label_in_top_direction()

    def in_fold(train, test):
        removal = fit_remove_top(X[train], 1)
        return removal(X[train]), removal(X[test])

    leaked = [cross_validated_correct(remove_top_directions(X, 1), y, seed=s).mean() for s in range(5)]
    fitted = [cross_validated_correct(None, y, seed=s, features=in_fold).mean() for s in range(5)]
    assert np.mean(leaked) < 0.42, "removing directions fit on every row makes the folds anti-learn"
    assert abs(np.mean(fitted) - 0.5) < 0.08


def test_cross_validation_refuses_too_few_rows_per_class():
    X, y = blobs(40, 5, 2, spread=1.0, seed=6)
    y[:] = 0
    y[:3] = 1
    with pytest.raises(ValueError, match="fewer than the 5"):
        cross_validated_correct(X, y)


def test_held_out_scores_mark_training_rows_nan_and_average_to_the_accuracy():
    X, y = blobs(400, 10, 3, spread=1.0, seed=7)
    scores = held_out_correct(X, y, seed=2)
    train, test = split_indices(len(y), 0.25, 2)
    assert np.isnan(scores[train]).all() and np.isfinite(scores[test]).all()
    assert np.nanmean(scores) == linear_probe_accuracy(X[train], y[train], X[test], y[test], seed=2, max_iter=100)
