"""Nearest-neighbour similarity: mutual k-NN and CKNNA (Huh et al. 2024, minyoungg/platonic-rep) and
k-NN Jaccard similarity (Klabunde et al., ReSi repsim.measures JaccardSimilarity).

Rows are examples (the same examples, in the same order, in both arguments). Every measure uses
cosine neighbours: rows are L2-normalised (a zero row stays zero, as torch F.normalize and sklearn's
cosine metric leave it), neighbours of row i are the k other rows with the largest inner product,
i itself excluded; ties go to the lower row index (stable sort), so results are deterministic.
Memory is O(n^2) in float64: callers keep n to a few thousand.
"""

from __future__ import annotations

import numbers

import numpy as np

from repshift.shape import checked_pair


def _checked_k(k, n: int, smallest: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k (number of neighbours) must be an integer, got {k!r}.")
    if not smallest <= k < n:
        raise ValueError(f"k (number of neighbours) must satisfy {smallest} <= k < n = {n}, got k = {k}.")
    return int(k)


def _cosine_gram(A: np.ndarray) -> np.ndarray:
    """Inner products of the L2-normalised rows (zero rows stay zero); ValueError when every row points the same
    way (then every row is every row's nearest neighbour and the neighbour sets are arbitrary)."""
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    if np.ptp(A, axis=0).max() <= 1e-12:
        raise ValueError("every row points the same way (as the layer-0 [CLS] does): nearest neighbours are undefined.")
    return A @ A.T


def _neighbour_mask(gram: np.ndarray, k: int) -> np.ndarray:
    """Boolean n x n: entry (i, j) is True when j is among the k rows most similar to row i (j != i)."""
    scores = gram.copy()
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, nearest, True, axis=1)
    return mask


def _shared_neighbours(X, Y, k) -> tuple[np.ndarray, int]:
    X, Y = checked_pair(X, Y, min_rows=2)
    k = _checked_k(k, X.shape[0])
    shared = (_neighbour_mask(_cosine_gram(X), k) & _neighbour_mask(_cosine_gram(Y), k)).sum(axis=1)
    return shared, k


def mutual_knn(X, Y, k: int = 10) -> float:
    """Mutual k-NN alignment in [0, 1] (platonic-rep mutual_knn): mean_i |N_X(i) & N_Y(i)| / k,
    N_X(i) the k cosine nearest neighbours of row i in X (i excluded), N_Y(i) likewise in Y.
    """
    shared, k = _shared_neighbours(X, Y, k)
    return float(np.mean(shared / k))


def jaccard_knn(X, Y, k: int = 10) -> float:
    """k-NN Jaccard similarity in [0, 1] (ReSi JaccardSimilarity, its default inner='cosine'):
    mean_i |N_X(i) & N_Y(i)| / |N_X(i) | N_Y(i)|, N the k cosine nearest neighbours (i excluded).
    """
    shared, k = _shared_neighbours(X, Y, k)
    return float(np.mean(shared / (2 * k - shared)))


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, as platonic-rep's hsic_unbiased evaluates it (diagonals zeroed first):
    [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2 1'K~L~1 / (n-2)] / (n(n-3)).
    """
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    trace = np.vdot(K, L.T)
    sums = K.sum() * L.sum() / ((n - 1) * (n - 2))
    cross = np.dot(K.sum(axis=0), L.sum(axis=1))
    return float((trace + sums - 2.0 * cross / (n - 2)) / (n * (n - 3)))


def cknna(X, Y, k: int = 10) -> float:
    """CKNNA (platonic-rep cknna, unbiased): HSIC_u(M.K, M.L) / sqrt(HSIC_u(M_K.K, M_K.K) HSIC_u(M_L.L, M_L.L)),
    K, L cosine Gram matrices, M_K, M_L their k-NN masks (self excluded), M = M_K . M_L (elementwise); 2 <= k < n.

    1 for X vs X, usually in [0, 1] but not bounded below by 0, and (as in platonic-rep) not exactly symmetric:
    the masks are not symmetric, so HSIC_u's 1'K~L~1 term changes when X and Y swap.
    """
    X, Y = checked_pair(X, Y, min_rows=4)
    k = _checked_k(k, X.shape[0], smallest=2)
    K, L = _cosine_gram(X), _cosine_gram(Y)
    mask_k, mask_l = _neighbour_mask(K, k), _neighbour_mask(L, k)
    mutual = mask_k & mask_l
    hsic_kl = _hsic_unbiased(K * mutual, L * mutual)
    hsic_kk = _hsic_unbiased(K * mask_k, K * mask_k)
    hsic_ll = _hsic_unbiased(L * mask_l, L * mask_l)
    if not (hsic_kk > 0 and hsic_ll > 0):
        raise ValueError("CKNNA is undefined: the unbiased HSIC of a k-NN-masked Gram matrix with itself is not "
                         f"positive ({hsic_kk:.3g}, {hsic_ll:.3g}); use more rows or another k.")
    return float(hsic_kl / np.sqrt(hsic_kk * hsic_ll))
