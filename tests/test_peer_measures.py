"""Peer similarity measures (cca, shape, kernels, neighbours) against independent references, plus invariances.

References (none is this package's code):
  * SVCCA / PWCCA: transcription of google/svcca (tutorial 001 SVD step + cca_core's covariance / inverse-square-root
    CCA; PWCCA weights from the paper, Morcos et al. 2018, with cca_core's compute_dirns canonical directions).
  * Procrustes / angular: scipy.spatial.procrustes and scipy.linalg.orthogonal_procrustes (as netrep's align does).
  * RBF CKA: ckatorch.core.cka_base(kernel="rbf") and a transcription of google-research representation_similarity.
  * mutual k-NN / CKNNA: transcription (in torch) of minyoungg/platonic-rep metrics.py.
  * k-NN Jaccard: transcription of ReSi repsim/measures/nearest_neighbor.py (sklearn NearestNeighbors, cosine).
"""

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
import torch.nn.functional as F
from ckatorch.core import cka_base
from sklearn.neighbors import NearestNeighbors

from repshift.cca import pwcca, svcca
from repshift.kernels import rbf_cka
from repshift.neighbours import _neighbour_mask, cknna, jaccard_knn, mutual_knn
from repshift.shape import angular_shape_distance, procrustes_distance

REL = 1e-6  # agreement tolerance with every reference (measured differences are far smaller; see each test)


def related(n, d1, d2, noise, seed):
    """X (n x d1, anisotropic, off-centre) and Y = X A + noise (n x d2)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) * rng.exponential(size=d1) + rng.normal(size=d1)
    return X, X @ rng.normal(size=(d1, d2)) + noise * rng.normal(size=(n, d2))


# (n, d1, d2): d1 != d2, and d > n where the measure allows it.
SHAPES = [(60, 8, 12), (41, 10, 10), (15, 30, 22), (25, 3, 40)]
TALL_SHAPES = [(80, 6, 9), (61, 10, 10), (120, 15, 7)]  # d < n: covariance-based CCA references need full rank


# ---------------------------------------------------------------- references

def google_cca_coefs(acts1, acts2):
    """google/svcca cca_core.get_cca_similarity (epsilon=0), neurons x datapoints: canonical correlations and,
    for PWCCA, X's canonical directions (rows of coef_x @ invsqrt_xx applied to centred acts, as compute_dirns)."""
    numx = acts1.shape[0]
    covariance = np.cov(acts1, acts2)
    sxx, sxy, syy = covariance[:numx, :numx], covariance[:numx, numx:], covariance[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)

    def invsqrt(a):
        w, v = np.linalg.eigh(np.linalg.pinv(a))
        return v @ np.diag(np.sqrt(w)) @ v.T

    ix, iy = invsqrt(sxx), invsqrt(syy)
    u, s, _ = np.linalg.svd(ix @ sxy @ iy)
    dirns = u.T @ ix @ (acts1 - acts1.mean(axis=1, keepdims=True))
    return np.abs(s), dirns[: s.size]


def google_svcca(X, Y, keep=0.99):
    """google/svcca tutorial 001: centre, SVD, keep the top directions explaining `keep` of the variance, CCA."""
    reduced = []
    for acts in (X.T, Y.T):
        cacts = acts - acts.mean(axis=1, keepdims=True)
        _, s, V = np.linalg.svd(cacts, full_matrices=False)
        k = next(i for i in range(1, s.size + 1) if np.sum(s[:i] ** 2) / np.sum(s**2) >= keep)
        reduced.append(s[:k, None] * V[:k])
    return float(np.mean(google_cca_coefs(*reduced)[0]))


def paper_pwcca(X, Y):
    """Morcos et al. (2018): alpha_i = sum_j |<h_i, x_j>| over X's neurons, h_i unit-norm canonical variates."""
    coefs, dirns = google_cca_coefs(X.T, Y.T)
    Xc = X - X.mean(axis=0)
    weights = []
    for h in dirns:
        h = h / np.linalg.norm(h)
        weights.append(sum(abs(float(h @ Xc[:, j])) for j in range(X.shape[1])))
    weights = np.array(weights)
    return float(np.sum(weights / weights.sum() * coefs))


def standardised_padded(X, Y):
    """Centred, unit-Frobenius-norm X and Y, the narrower zero-padded (netrep check_equal_shapes(zero_pad=True))."""
    width = max(X.shape[1], Y.shape[1])
    out = []
    for A in (X, Y):
        A = A - A.mean(axis=0)
        out.append(np.pad(A / np.linalg.norm(A), ((0, 0), (0, width - A.shape[1]))))
    return out


def google_rbf_cka(X, Y, threshold):
    """google-research representation_similarity: cka(gram_rbf(X, t), gram_rbf(Y, t)), written with loops."""
    def gram(A):
        n = A.shape[0]
        sq = np.array([[np.sum((A[i] - A[j]) ** 2) for j in range(n)] for i in range(n)])
        return np.exp(-sq / (2 * threshold**2 * np.median(sq)))

    def centred(K):
        means = K.mean(axis=0)
        means -= means.mean() / 2
        return K - means[:, None] - means[None, :]

    K, L = centred(gram(X)), centred(gram(Y))
    return float(np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L)))


def platonic_knn(feats, topk):
    """platonic-rep compute_nearest_neighbors."""
    return (feats @ feats.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]


def platonic_mutual_knn(X, Y, topk):
    """platonic-rep AlignmentMetrics.mutual_knn on F.normalize'd features (measure_alignment's normalize=True)."""
    A, B = F.normalize(torch.from_numpy(X), dim=-1), F.normalize(torch.from_numpy(Y), dim=-1)
    knn_A, knn_B = platonic_knn(A, topk), platonic_knn(B, topk)
    n = knn_A.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_A, mask_B = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
    mask_A[rows, knn_A] = 1.0
    mask_B[rows, knn_B] = 1.0
    return ((mask_A * mask_B).sum(dim=1) / topk).mean().item()


def platonic_hsic_unbiased(K, L):
    m = K.shape[0]
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    value = (torch.sum(Kt * Lt.T) + torch.sum(Kt) * torch.sum(Lt) / ((m - 1) * (m - 2))
             - 2 * torch.sum(torch.mm(Kt, Lt)) / (m - 2))
    return value / (m * (m - 3))


def platonic_cknna(X, Y, topk):
    """platonic-rep AlignmentMetrics.cknna (unbiased=True, distance_agnostic=False) on F.normalize'd features,
    without its '+ 1e-6' in the denominator (a guard, not part of the definition)."""
    A, B = F.normalize(torch.from_numpy(X), dim=-1), F.normalize(torch.from_numpy(Y), dim=-1)
    n = A.shape[0]
    K, L = A @ A.T, B @ B.T

    def similarity(K, L):
        _, idx_K = torch.topk(K.clone().fill_diagonal_(float("-inf")), topk, dim=1)
        _, idx_L = torch.topk(L.clone().fill_diagonal_(float("-inf")), topk, dim=1)
        mask = (torch.zeros(n, n, dtype=K.dtype).scatter_(1, idx_K, 1)
                * torch.zeros(n, n, dtype=K.dtype).scatter_(1, idx_L, 1))
        return platonic_hsic_unbiased(mask * K, mask * L)

    return (similarity(K, L) / torch.sqrt(similarity(K, K) * similarity(L, L))).item()


def u_centred_cka(X, Y):
    """Unbiased linear CKA of L2-normalised rows via U-centred Gram matrices (Szekely & Rizzo 2014)."""
    def u_centre(K):
        n = K.shape[0]
        K = K.copy()
        np.fill_diagonal(K, 0)
        U = (K - K.sum(axis=0, keepdims=True) / (n - 2) - K.sum(axis=1, keepdims=True) / (n - 2)
             + K.sum() / ((n - 1) * (n - 2)))
        np.fill_diagonal(U, 0)
        return U

    grams = [u_centre((A / np.linalg.norm(A, axis=1, keepdims=True)) @ (A / np.linalg.norm(A, axis=1, keepdims=True)).T)
             for A in (X, Y)]
    return float(np.sum(grams[0] * grams[1]) / (np.linalg.norm(grams[0]) * np.linalg.norm(grams[1])))


def resi_jaccard(X, Y, k):
    """ReSi jaccard_similarity(inner='cosine'): sklearn k+1 neighbours, first (self) dropped, set Jaccard per row."""
    def neighbour_sets(R):
        _, nns = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(R).kneighbors(R)
        return [set(row) for row in nns[:, 1:]]

    return float(np.mean([len(a & b) / len(a | b) for a, b in zip(neighbour_sets(X), neighbour_sets(Y))]))


# ---------------------------------------------------------------- agreement with the references

def assert_rel(ours, reference):
    assert ours == pytest.approx(reference, rel=REL, abs=1e-12)


@pytest.mark.parametrize("keep", [0.99, 0.9, 1.0])
@pytest.mark.parametrize("shape", SHAPES)
def test_svcca_matches_google_svcca(shape, keep):
    # keep=1.0 on d > n data gives only correlations of 1; the reference then inverts a rank-(n-1) covariance.
    if keep == 1.0 and max(shape[1:]) >= shape[0] - 1:
        pytest.skip("covariance-based reference is singular here")
    X, Y = related(*shape, noise=2.0, seed=sum(shape))
    assert_rel(svcca(X, Y, keep=keep), google_svcca(X, Y, keep=keep))  # measured <= 1e-12 relative


@pytest.mark.parametrize("shape", TALL_SHAPES)
def test_pwcca_matches_paper_definition(shape):
    X, Y = related(*shape, noise=2.0, seed=sum(shape))
    assert_rel(pwcca(X, Y), paper_pwcca(X, Y))  # measured <= 1e-12 relative
    assert_rel(pwcca(Y, X), paper_pwcca(Y, X))


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_distances_match_scipy_procrustes(shape):
    X, Y = related(*shape, noise=1.0, seed=sum(shape))
    Xs, Ys = standardised_padded(X, Y)
    R, _ = scipy.linalg.orthogonal_procrustes(Ys, Xs)  # argmin_R ||Ys R - Xs||_F over orthogonal R
    assert_rel(procrustes_distance(X, Y), np.linalg.norm(Xs - Ys @ R))
    # netrep LinearMetric(alpha=1, score_method="angular"): angle between the aligned, centred representations.
    assert_rel(angular_shape_distance(X, Y), np.arccos(np.clip(np.sum(Xs * (Ys @ R)), -1, 1)))
    # scipy.spatial.procrustes disparity = 1 - ||X~^T Y~||_*^2 (it also fits a scale, which the nuclear norm absorbs).
    _, _, disparity = scipy.spatial.procrustes(*standardised_padded(X, Y))
    assert_rel(procrustes_distance(X, Y), np.sqrt(2 - 2 * np.sqrt(1 - disparity)))  # measured <= 1e-13 relative


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("shape", SHAPES)
def test_rbf_cka_matches_google_and_ckatorch(shape, threshold):
    X, Y = related(*shape, noise=2.0, seed=sum(shape))
    ours = rbf_cka(X, Y, threshold=threshold)
    assert_rel(ours, google_rbf_cka(X, Y, threshold))  # measured <= 1e-13 relative
    if shape[0] % 2:
        # ckatorch takes torch.median (the lower middle value for an even count): it matches np.median only when
        # n^2 is odd, i.e. for odd n.
        reference = cka_base(torch.from_numpy(X), torch.from_numpy(Y), kernel="rbf", threshold=threshold).item()
        assert_rel(ours, reference)  # measured <= 1e-13 relative


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("shape", SHAPES)
def test_knn_measures_match_platonic_rep_and_resi(shape, k):
    X, Y = related(*shape, noise=2.0, seed=sum(shape))
    assert_rel(mutual_knn(X, Y, k=k), platonic_mutual_knn(X, Y, k))
    assert_rel(jaccard_knn(X, Y, k=k), resi_jaccard(X, Y, k))
    if k >= 2:
        assert_rel(cknna(X, Y, k=k), platonic_cknna(X, Y, k))  # measured <= 1e-12 relative


@pytest.mark.parametrize("shape", SHAPES)
def test_cknna_with_all_neighbours_is_unbiased_cka(shape):
    X, Y = related(*shape, noise=2.0, seed=sum(shape))
    assert_rel(cknna(X, Y, k=shape[0] - 1), u_centred_cka(X, Y))


# ---------------------------------------------------------------- invariances and sanity

# name: (function, "similarity" | "distance", invariances it promises)
RIGID = {"orthogonal", "isotropic_scaling", "translation", "permutation"}
MEASURES = {
    "svcca": (svcca, "similarity", RIGID),
    "pwcca": (pwcca, "similarity", {"isotropic_scaling", "translation", "permutation"}),
    "procrustes_distance": (procrustes_distance, "distance", RIGID),
    "angular_shape_distance": (angular_shape_distance, "distance", RIGID),
    "rbf_cka": (rbf_cka, "similarity", RIGID),
    "mutual_knn": (mutual_knn, "similarity", {"orthogonal", "isotropic_scaling", "permutation"}),
    "jaccard_knn": (jaccard_knn, "similarity", {"orthogonal", "isotropic_scaling", "permutation"}),
    "cknna": (cknna, "similarity", {"orthogonal", "isotropic_scaling", "permutation"}),
}


def transforms(d, rng):
    A = rng.normal(size=(d, d))
    Q, _ = np.linalg.qr(A)
    offset = 50.0 * rng.normal(size=d)
    perm = rng.permutation(d)
    while d > 1 and np.all(perm == np.arange(d)):
        perm = rng.permutation(d)
    return {
        "orthogonal": lambda X: X @ Q,
        "isotropic_scaling": lambda X: 3.7 * X,
        "translation": lambda X: X + offset,
        "permutation": lambda X: X[:, perm],
        "invertible_linear": lambda X: X @ (A @ np.diag(np.geomspace(0.05, 20, d))),
    }


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("shape", [(70, 9, 13), (16, 24, 30)])
def test_promised_invariances_hold_on_either_argument(name, shape):
    measure, _, flags = MEASURES[name]
    X, Y = related(*shape, noise=2.0, seed=7)
    base = measure(X, Y)
    tx, ty = transforms(shape[1], np.random.default_rng(1)), transforms(shape[2], np.random.default_rng(2))
    for flag in flags:
        assert measure(tx[flag](X), Y) == pytest.approx(base, abs=1e-10), flag
        assert measure(X, ty[flag](Y)) == pytest.approx(base, abs=1e-10), flag


@pytest.mark.parametrize("name", MEASURES)
def test_unpromised_invariances_can_fail(name):
    """Each transformation a measure does not promise invariance to changes its value on some data."""
    measure, _, flags = MEASURES[name]
    X, Y = related(80, 10, 10, noise=2.0, seed=3)
    X = X - X.mean(axis=0)  # a translation then moves the data off-centre
    tx = transforms(10, np.random.default_rng(4))
    for flag in {"orthogonal", "isotropic_scaling", "translation", "permutation", "invertible_linear"} - flags:
        assert abs(measure(tx[flag](X), Y) - measure(X, Y)) > 1e-3, flag


def test_cca_invariances_beyond_the_flags():
    X, Y = related(90, 8, 11, noise=2.0, seed=5)
    A = transforms(11, np.random.default_rng(6))["invertible_linear"]
    # SVCCA without the SVD truncation is plain CCA: invariant to invertible linear maps of either side.
    assert svcca(X, A(Y), keep=1.0) == pytest.approx(svcca(X, Y, keep=1.0), abs=1e-10)
    # PWCCA weights come from X only: Y enters through the canonical correlations and variates, which ignore any
    # invertible linear map of Y. It is asymmetric.
    assert pwcca(X, A(Y)) == pytest.approx(pwcca(X, Y), abs=1e-10)
    assert abs(pwcca(X, Y) - pwcca(Y, X)) > 1e-3


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("shape", [(50, 6, 6), (40, 60, 60)])
def test_self_similarity_and_unrelated_data(name, shape):
    measure, kind, _ = MEASURES[name]
    options = {"k": 5} if name in {"mutual_knn", "jaccard_knn", "cknna"} else {}
    X, Y = related(*shape, noise=1.0, seed=11)
    Z = np.random.default_rng(12).normal(size=(shape[0], shape[2]))
    identical = 0.0 if kind == "distance" else 1.0
    assert measure(X, X, **options) == pytest.approx(identical, abs=1e-12)
    assert measure(X, X.astype(np.float32), **options) == pytest.approx(identical, abs=1e-5)
    if name in {"svcca", "pwcca"} and shape[1] >= shape[0] - 1:
        # d >= n - 1: the centred columns span every centred direction, so any Y is perfectly correlated with X and
        # untruncated CCA cannot tell related from unrelated data (SVCCA's truncation only partly helps: 0.94 here).
        assert measure(X, Z, **({"keep": 1.0} if name == "svcca" else {})) == pytest.approx(1.0, abs=1e-9)
        return
    related_value, unrelated_value = measure(X, Y, **options), measure(X, Z, **options)
    if kind == "distance":
        assert unrelated_value > related_value + 0.1
    else:
        assert unrelated_value < related_value - 0.1
        # RBF CKA with the narrow default bandwidth stays high (0.83 here) for unrelated data with d > n: pairwise
        # distances concentrate, so both centred Gram matrices are close to multiples of H.
        if not (name == "rbf_cka" and shape[1] > shape[0]):
            assert unrelated_value < 0.75


@pytest.mark.parametrize("name", set(MEASURES) - {"pwcca", "cknna"})
def test_symmetric(name):
    measure = MEASURES[name][0]
    X, Y = related(40, 7, 12, noise=2.0, seed=13)
    assert measure(X, Y) == pytest.approx(measure(Y, X), abs=1e-12)


def test_cknna_is_asymmetric_like_platonic_rep():
    # Masked Gram matrices are not symmetric (k-NN is not a symmetric relation), so the 1'K~L~1 term of
    # platonic-rep's unbiased HSIC changes when X and Y swap; the reference shows the same asymmetry.
    X, Y = related(40, 7, 12, noise=2.0, seed=13)
    assert abs(cknna(X, Y) - cknna(Y, X)) > 1e-3
    assert_rel(cknna(Y, X), platonic_cknna(Y, X, 10))


def test_ranges():
    rng = np.random.default_rng(14)
    for _ in range(20):
        n, d1, d2 = rng.integers(6, 40), rng.integers(1, 30), rng.integers(1, 30)
        X, Y = related(n, d1, d2, noise=rng.uniform(0, 5), seed=int(rng.integers(1000)))
        k = int(rng.integers(2, n))
        for value in (svcca(X, Y), pwcca(X, Y), rbf_cka(X, Y), mutual_knn(X, Y, k), jaccard_knn(X, Y, k)):
            assert -1e-12 <= value <= 1 + 1e-12
        assert 0 <= procrustes_distance(X, Y) <= np.sqrt(2)
        assert 0 <= angular_shape_distance(X, Y) <= np.pi / 2
        assert np.cos(angular_shape_distance(X, Y)) == pytest.approx(1 - procrustes_distance(X, Y) ** 2 / 2, abs=1e-12)


def test_rank_deficiency_is_handled():
    X, Y = related(50, 6, 9, noise=2.0, seed=15)
    padded = np.hstack([X, np.full((50, 1), 3.0), X[:, :2] + X[:, 2:4]])  # a constant and two dependent columns
    # Neither a constant neuron nor a linear combination of existing ones adds a canonical direction.
    assert svcca(padded, Y, keep=1.0) == pytest.approx(svcca(X, Y, keep=1.0), abs=1e-10)
    # A constant neuron has no centred activity, so it adds no projection weight either.
    assert pwcca(np.hstack([X, np.full((50, 1), 3.0)]), Y) == pytest.approx(pwcca(X, Y), abs=1e-10)
    assert np.isfinite(pwcca(padded, Y))
    assert procrustes_distance(padded, padded) == pytest.approx(0, abs=1e-12)


def test_neighbour_ties_are_broken_by_lower_index():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # a zero row stays zero
    norms = np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    mask = _neighbour_mask((X / norms) @ (X / norms).T, 1)
    assert [int(np.flatnonzero(row)[0]) for row in mask] == [1, 0, 0, 0, 0]
    assert mutual_knn(X, X, k=2) == 1.0 == jaccard_knn(X, X[:, ::-1], k=2)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("name", MEASURES)
def test_bad_input_raises(name):
    measure = MEASURES[name][0]
    rng = np.random.default_rng(16)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 5))
    bad_pairs = [
        (X[:, 0], Y),  # 1-D
        (X[None], Y),  # 3-D
        (X[:, :0], Y),  # no columns
        (X, Y[:-1]),  # different numbers of rows
        (np.where(np.eye(20, 4, dtype=bool), np.nan, X), Y),
        (X, np.where(np.eye(20, 5, dtype=bool), np.inf, Y)),
        (X[:1], Y[:1]),  # one row
        (X.astype(str), Y),
    ]
    for A, B in bad_pairs:
        with pytest.raises(ValueError):
            measure(A, B)
    if name not in {"mutual_knn", "jaccard_knn", "cknna"}:  # cosine neighbours of constant rows are all ties, defined
        with pytest.raises(ValueError, match="constant|median"):
            measure(np.ones((20, 4)), Y)


@pytest.mark.parametrize("measure", [mutual_knn, jaccard_knn, cknna])
def test_bad_k_raises(measure):
    X, Y = np.random.default_rng(17).normal(size=(2, 12, 5))
    for k in (0, -1, 12, 13, 2.5, True, "3"):
        with pytest.raises(ValueError, match="k"):
            measure(X, Y, k=k)
    with pytest.raises(ValueError, match="k"):
        cknna(X, Y, k=1)  # platonic-rep: "CKNNA requires topk >= 2"


def test_bad_parameters_raise():
    X, Y = np.random.default_rng(18).normal(size=(2, 12, 5))
    for keep in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="keep"):
            svcca(X, Y, keep=keep)
    for threshold in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            rbf_cka(X, Y, threshold=threshold)
    with pytest.raises(ValueError, match="rows"):
        cknna(X[:3], Y[:3], k=2)  # unbiased HSIC needs n >= 4


@pytest.mark.parametrize("measure", [mutual_knn, jaccard_knn, cknna])
def test_neighbours_of_rows_that_all_point_one_way_are_undefined(measure):
    """The layer-0 [CLS] vector is one vector for every sentence: every row ties, so no neighbour set exists."""
    constant = np.tile(np.random.default_rng(0).normal(size=8), (30, 1))
    with pytest.raises(ValueError, match="every row points the same way"):
        measure(constant * np.arange(1, 31)[:, None], np.random.default_rng(1).normal(size=(30, 5)), k=3)
