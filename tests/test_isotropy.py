"""Tests for repshift.isotropy: known geometries, invariances, and independent references."""

import itertools

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics.pairwise import cosine_similarity

from repshift import isotropy


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rotation(d: int, seed: int = 1) -> np.ndarray:
    return np.linalg.qr(_rng(seed).standard_normal((d, d)))[0]


def _anisotropic(n: int, d: int, decay: float, seed: int = 0) -> np.ndarray:
    """Gaussian with standard deviations exp(-decay * t), t in [0, 1], in a random orientation."""
    scales = np.exp(-decay * np.linspace(0.0, 1.0, d))
    return (_rng(seed).standard_normal((n, d)) * scales) @ _rotation(d, seed + 1)


def _one_direction(n: int = 2000, d: int = 20) -> np.ndarray:
    """Points spread along one random unit direction with tiny noise elsewhere."""
    rng = _rng(3)
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    return np.outer(10.0 * rng.standard_normal(n), direction) + 1e-3 * rng.standard_normal((n, d))


def test_isotropic_gaussian_scores_near_one():
    X = _rng().standard_normal((5000, 20))
    assert isotropy.partition_isotropy(X, centre=True) > 0.8
    assert isotropy.isoscore(X) > 0.98


def test_one_direction_scores_near_zero():
    X = _one_direction()
    assert isotropy.partition_isotropy(X, centre=True) < 1e-6
    assert isotropy.partition_isotropy(X) < 1e-6
    assert isotropy.isoscore(X) < 0.01
    assert isotropy.top_pc_ratio(X) > 0.99


def test_uncentred_common_mean_lowers_only_raw_partition_isotropy():
    X = _rng().standard_normal((3000, 10)) + 5.0
    assert isotropy.partition_isotropy(X) < 1e-3
    assert isotropy.partition_isotropy(X, centre=True) > 0.7


def test_partition_isotropy_outlier_dimension_does_not_overflow():
    X = _rng().standard_normal((1000, 16))
    X[:, 0] = 1e4 + 1e3 * X[:, 0]
    assert np.abs(X @ np.linalg.svd(X)[2].T).max() > np.log(np.finfo(np.float64).max)
    for centre in (False, True):
        value = isotropy.partition_isotropy(X, centre=centre)
        assert np.isfinite(value) and 0.0 <= value <= 1.0


def test_partition_isotropy_exact_where_exp_overflows():
    scales = 800.0 + 0.1 * np.arange(5)
    W = np.vstack([np.diag(scales), -np.diag(scales)])
    assert isotropy.partition_isotropy(W) == pytest.approx(np.exp(scales[0] - scales[-1]), rel=1e-12)


@pytest.mark.parametrize("centre", [False, True])
def test_partition_isotropy_matches_direct_exponentials(centre):
    X = 0.5 * _anisotropic(300, 6, decay=1.5) + 0.3
    W = X - X.mean(axis=0) if centre else X
    projections = W @ np.linalg.svd(W)[2].T
    z = np.concatenate([np.exp(projections).sum(axis=0), np.exp(-projections).sum(axis=0)])
    assert isotropy.partition_isotropy(X, centre=centre) == pytest.approx(z.min() / z.max(), rel=1e-10)


def test_partition_isotropy_matches_notebook_formula_over_both_eigenvector_signs():
    """Notebook I(W): W uncentred, c the eigenvectors of W^T W, whose arbitrary signs move its value; repshift takes Z
    over +c and -c (Mu & Viswanath minimise over all unit c). A common mean makes one-sign or centred versions fail."""
    def z_of_plus_and_minus_eigenvectors(V):
        eigenvectors = np.linalg.eig(V.T @ V)[1].real
        return np.exp(V @ eigenvectors).sum(axis=0), np.exp(-V @ eigenvectors).sum(axis=0)

    W = 0.4 * _rng().standard_normal((200, 4)) * [1.0, 0.7, 0.5, 0.3] + [1.5, -0.5, 0.8, 0.2]
    z_plus, z_minus = z_of_plus_and_minus_eigenvectors(W)
    both_signs = min(z_plus.min(), z_minus.min()) / max(z_plus.max(), z_minus.max())
    one_sign_each = [np.where(signs, z_plus, z_minus) for signs in itertools.product([True, False], repeat=4)]
    notebook_values = np.array([z.min() / z.max() for z in one_sign_each])
    centred = np.concatenate(z_of_plus_and_minus_eigenvectors(W - W.mean(axis=0)))
    assert np.ptp(notebook_values) > 0.01 and notebook_values.min() > 5 * both_signs
    assert centred.min() / centred.max() > 5 * both_signs
    assert isotropy.partition_isotropy(W, centre=False) == pytest.approx(both_signs, rel=1e-10)


def test_partition_isotropy_is_orthogonally_invariant():
    X = _anisotropic(500, 8, decay=1.0) + 0.2
    expected = isotropy.partition_isotropy(X)
    assert isotropy.partition_isotropy(-X) == pytest.approx(expected, rel=1e-9)
    assert isotropy.partition_isotropy(X @ _rotation(8, seed=7)) == pytest.approx(expected, rel=1e-9)


def test_rotation_invariance():
    X = _anisotropic(800, 12, decay=2.0) + 1.0
    Y = X @ _rotation(12, seed=5)
    assert isotropy.isoscore(Y) == pytest.approx(isotropy.isoscore(X), abs=1e-10)
    assert isotropy.pcs_for_variance(Y, 0.9) == isotropy.pcs_for_variance(X, 0.9)
    assert isotropy.average_cosine(Y) == pytest.approx(isotropy.average_cosine(X), abs=1e-12)


def test_average_cosine_common_mean_versus_centred():
    rng = _rng()
    X = rng.standard_normal((2000, 30))
    assert abs(isotropy.average_cosine(X)) < 0.02
    assert isotropy.average_cosine(X + 20.0 * rng.standard_normal(30)) > 0.9


def test_average_cosine_is_the_mean_over_every_pair_of_distinct_rows():
    """scikit-learn's cosine_similarity matrix is the reference: the mean of its off-diagonal entries."""
    X = _rng().standard_normal((40, 5)) + 0.5
    similarities = cosine_similarity(X)
    assert isotropy.average_cosine(X) == pytest.approx(similarities[~np.eye(40, dtype=bool)].mean(), rel=1e-12)
    cosine = X[0] @ X[1] / np.linalg.norm(X[0]) / np.linalg.norm(X[1])
    assert isotropy.average_cosine(X[:2]) == pytest.approx(cosine, rel=1e-12)


def test_explained_variance_ratio_recovers_a_constructed_spectrum():
    """X = Q diag(s) V^T with Q orthonormal and centred: the variance shares are exactly s^2 / sum(s^2)."""
    rng = _rng()
    centred = rng.standard_normal((400, 5))
    Q = np.linalg.qr(centred - centred.mean(axis=0))[0]
    s = np.array([5.0, 1.0, 3.0, 0.5, 2.0])
    X = Q * s @ _rotation(5, seed=3).T + 7.0
    expected = np.sort(s**2)[::-1] / np.sum(s**2)
    np.testing.assert_allclose(isotropy.explained_variance_ratio(X), expected, rtol=1e-10)
    assert isotropy.top_pc_ratio(X) == pytest.approx(25 / 39.25, rel=1e-10)
    assert isotropy.pcs_for_variance(X, 0.9) == 3


def test_pcs_for_variance_with_exactly_equal_variances():
    X = np.vstack([np.eye(10), -np.eye(10)])
    assert isotropy.pcs_for_variance(X, 0.9) == 9
    assert isotropy.pcs_for_variance(X, 1.0) == 10
    assert isotropy.pcs_for_variance(X, 0.05) == 1
    assert isotropy.pcs_for_variance(_one_direction(), 0.9) == 1


def test_remove_top_directions_makes_space_more_isotropic():
    X = _anisotropic(2000, 20, decay=3.0) + 2.0
    Y = isotropy.remove_top_directions(X, 3)
    assert np.allclose(Y.mean(axis=0), 0.0, atol=1e-12)
    assert np.linalg.matrix_rank(Y) == 17
    assert isotropy.top_pc_ratio(Y) < isotropy.top_pc_ratio(X)
    assert isotropy.partition_isotropy(Y) > isotropy.partition_isotropy(X)
    assert isotropy.partition_isotropy(Y, centre=True) > isotropy.partition_isotropy(X, centre=True)


def test_rogue_dimension_found_and_standardize_removes_it():
    rng = _rng()
    X = rng.standard_normal((3000, 40)) + 0.2
    X[:, 7] = 30.0 + 5.0 * rng.standard_normal(3000)
    indices, shares = isotropy.rogue_dimensions(X, k=3)
    assert indices[0] == 7 and shares[0] > 0.9
    assert shares.shape == (3,) and shares[0] >= shares[1] >= shares[2]
    assert isotropy.average_cosine(X) > 0.8
    Z = isotropy.standardize(X)
    assert abs(isotropy.average_cosine(Z)) < 0.02
    assert np.mean(Z[:, 7] ** 2) / np.mean(np.sum(Z**2, axis=1)) == pytest.approx(1 / 40, rel=1e-9)


def test_rogue_shares_of_one_pair_computed_by_hand():
    """Two rows make one pair: dimension i contributes x_i y_i / (|x| |y|) = (3, 2, 0) / sqrt(55) of the cosine."""
    indices, shares = isotropy.rogue_dimensions(np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 1.0]]), k=3)
    assert indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(shares, [0.6, 0.4, 0.0], atol=1e-12)


def test_standardize_scales_columns_and_zeroes_constant_ones():
    X = _rng().standard_normal((1000, 4)) * [1.0, 50.0, 1e-3, 0.0] + [0.0, 3.0, -2.0, 0.1]
    Z = isotropy.standardize(X)
    assert np.allclose(Z[:, :3].mean(axis=0), 0.0, atol=1e-12)
    assert np.allclose(Z[:, :3].std(axis=0), 1.0, atol=1e-12)
    assert np.array_equal(Z[:, 3], np.zeros(1000))


def test_frequency_pc_correlation_recovers_planted_correlation():
    rng = _rng()
    n, d = 2000, 10
    frequency = np.exp(rng.normal(3.0, 1.5, n)).round() + 1.0
    direction = _rotation(d, seed=4)[:, 0]
    X = np.outer(np.log(frequency), 5.0 * direction) + rng.standard_normal((n, d))
    rho = isotropy.frequency_pc_correlation(X, frequency, n_pcs=3)
    assert rho.shape == (3,)
    assert abs(rho[0]) > 0.9
    assert np.all(np.abs(rho[1:]) < 0.1)


def _blobs(n_per: int, d: int, n_groups: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed)
    centres = 50.0 * rng.standard_normal((n_groups, d))
    groups = np.repeat(np.arange(n_groups), n_per)
    return centres[groups] + _anisotropic(n_per * n_groups, d, decay=2.0, seed=seed + 1), groups


def test_cluster_purity_separated_and_random_groups():
    X, groups = _blobs(100, 5, 4)
    assert isotropy.cluster_purity(X, groups, n_clusters=4) == 1.0
    random_groups = _rng(9).integers(0, 2, groups.size)
    assert isotropy.cluster_purity(X, random_groups, n_clusters=4) < 0.7


def test_cluster_remove_centres_and_flattens_each_cluster():
    X, groups = _blobs(80, 10, 3)
    Y = isotropy.cluster_remove(X, n_clusters=3, n_remove=2)
    for group in range(3):
        members = Y[groups == group]
        assert np.allclose(members.mean(axis=0), 0.0, atol=1e-10)
        assert np.linalg.matrix_rank(members) == 8
    assert isotropy.isoscore(Y) > isotropy.isoscore(X)


def test_cluster_remove_zeroes_clusters_too_small_for_n_remove():
    X, groups = _blobs(60, 6, 2)
    far = 1e3 + _rng(2).standard_normal((3, 6))
    Y = isotropy.cluster_remove(np.vstack([X, far]), n_clusters=3, n_remove=2)
    assert np.array_equal(Y[-3:], np.zeros((3, 6)))
    assert np.all(np.linalg.norm(Y[:-3], axis=1) > 0)


@pytest.mark.parametrize("shape", [(500, 10), (60, 100), (1000, 64), (300, 2)])
@pytest.mark.parametrize("decay", [0.0, 1.0, 4.0])
def test_isoscore_matches_reference_package(shape, decay):
    reference = pytest.importorskip("IsoScore.IsoScore")
    X = _anisotropic(*shape, decay=decay) + 3.0
    assert isotropy.isoscore(X) == pytest.approx(float(reference.IsoScore(X)), abs=1e-6)


@pytest.mark.parametrize("function", [
    isotropy.partition_isotropy, isotropy.average_cosine, isotropy.explained_variance_ratio,
    isotropy.pcs_for_variance, isotropy.top_pc_ratio, isotropy.isoscore, isotropy.rogue_dimensions,
    isotropy.standardize, lambda X: isotropy.remove_top_directions(X, 1),
    lambda X: isotropy.cluster_remove(X, n_clusters=1, n_remove=1),
])
def test_invalid_points_raise(function):
    X = _rng().standard_normal((10, 3))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        function(X)
    with pytest.raises(ValueError, match="n >= 2"):
        function(np.ones((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        function(np.ones(5))


def test_invalid_parameters_raise():
    X = _rng().standard_normal((20, 4))
    with pytest.raises(ValueError, match="zero variance"):
        isotropy.isoscore(np.ones((5, 3)))
    with pytest.raises(ValueError, match="all-zero row"):
        isotropy.average_cosine(np.vstack([X, np.zeros(4)]))
    with pytest.raises(ValueError, match="fraction"):
        isotropy.pcs_for_variance(X, 1.5)
    with pytest.raises(ValueError, match="k must be"):
        isotropy.remove_top_directions(X, 5)
    with pytest.raises(ValueError, match="n_clusters"):
        isotropy.cluster_purity(X, np.zeros(20, dtype=int), n_clusters=21)
    with pytest.raises(ValueError, match="groups"):
        isotropy.cluster_purity(X, np.zeros(19, dtype=int), n_clusters=2)
    with pytest.raises(ValueError, match="frequency"):
        isotropy.frequency_pc_correlation(X, -np.ones(20))
    with pytest.raises(ValueError, match="2 dimensions"):
        isotropy.isoscore(X[:, :1])


@pytest.mark.parametrize("centre", [False, True])
def test_row_weights_give_the_isotropy_of_the_rows_repeated(centre):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 5)) * np.array([3.0, 2.0, 1.0, 0.5, 0.2]) + 1.0
    counts = rng.integers(1, 4, 60)
    repeated = isotropy.partition_isotropy(np.repeat(X, counts, axis=0), centre=centre)
    assert isotropy.partition_isotropy(X, centre=centre, weights=counts) == pytest.approx(repeated, rel=1e-9)
    assert isotropy.partition_isotropy(X, centre=centre, weights=counts) != pytest.approx(
        isotropy.partition_isotropy(X, centre=centre), rel=1e-3)


WEIGHTED = {
    "isoscore": isotropy.isoscore,
    "top_pc_ratio": isotropy.top_pc_ratio,
    "dominant_directions": isotropy.dominant_directions,
    "pcs_for_variance": lambda X, weights=None: isotropy.pcs_for_variance(X, 0.8, weights),
    "frequency_pc_correlation": lambda X, weights=None: isotropy.frequency_pc_correlation(
        X, np.arange(len(X)) % 7, 3, weights),
    "average_cosine": isotropy.average_cosine,
    "average_cosine_standardized": lambda X, weights=None: isotropy.average_cosine(isotropy.standardize(X, weights),
                                                                                   weights),
    "rogue_shares": lambda X, weights=None: isotropy.rogue_dimensions(X, 3, weights)[1],
}


@pytest.mark.parametrize("name", WEIGHTED)
def test_row_weights_give_the_principal_component_measures_of_the_rows_repeated(name):
    """The weighted covariance, and for the frequency correlation the mid-ranks of tied frequencies, must equal
    scipy's rankdata and numpy's covariance on the repeated rows."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(80, 6)) * np.array([1.0, 0.8, 0.6, 0.5, 0.3, 0.1])
    X[:40, 0] += 4 * np.sign(rng.normal(size=40))
    X[40:, 1] += 4 * np.sign(rng.normal(size=40)) + 0.3 * (np.arange(40) % 7)
    X += 2.0
    counts = rng.integers(1, 5, 80)
    counts[40:] = np.arange(40) % 10 == 0  # the second spread direction nearly leaves: 2 dominant directions -> 1
    function, repeated = WEIGHTED[name], np.repeat(X, counts, axis=0)
    if name == "frequency_pc_correlation":
        frequency = np.repeat(np.arange(80) % 7, counts)
        mean = repeated.mean(axis=0)
        directions = np.linalg.eigh(np.cov(repeated, rowvar=False))[1][:, ::-1][:, :3]
        ranks = rankdata(np.column_stack([frequency, (repeated - mean) @ directions]), axis=0)
        expected = np.abs(np.corrcoef(ranks, rowvar=False)[0, 1:])
        assert np.abs(function(X, weights=counts)) == pytest.approx(expected, rel=1e-9)
    else:
        assert function(X, weights=counts) == pytest.approx(function(repeated), rel=1e-9)
    assert not np.allclose(function(X, weights=counts), function(X), rtol=1e-3, atol=0), "the weights must matter"
