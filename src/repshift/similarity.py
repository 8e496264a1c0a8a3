"""Similarity of representation spaces: linear and debiased CKA, RSA, block structure.

Every function takes arrays whose rows are examples (the same examples, in the
same order, in every argument) and accumulates in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_CHUNK_VALUES = 1 << 24


def average_ranks(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Ranks 1..m of a 1-d array, tied values sharing their mean rank (scipy.stats.rankdata's 'average'); with
    weights (multiplicities), each value's mean rank among the values repeated that many times.

    One unstable argsort: the order among equal values does not matter once they share a rank.
    """
    order = np.argsort(values)
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(first) - 1
    counts = np.bincount(group, weights=None if weights is None else np.asarray(weights, np.float64)[order])
    ranks = np.empty(len(values))
    ranks[order] = (np.cumsum(counts) - (counts - 1) / 2)[group]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r = sum(a' b') / sqrt(sum(a'^2) sum(b'^2)), a' = a - mean(a); NaN when either is constant (what
    scipy.stats.pearsonr returns, in a fifth of its time on 2 million pairs)."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else np.nan


RSA_METHODS = ("pearson", "spearman")


def _checked(arrays: Sequence[np.ndarray], min_rows: int = 2) -> list[np.ndarray]:
    checked = [np.asarray(a) for a in arrays]
    if not checked:
        raise ValueError("At least one representation is needed.")
    if any(a.ndim != 2 or a.shape[1] == 0 for a in checked):
        raise ValueError("Each representation must be a 2-D array (rows = examples) with at least one column.")
    n = checked[0].shape[0]
    if any(a.shape[0] != n for a in checked):
        raise ValueError("All representations must have the same number of rows (examples).")
    if n < min_rows:
        raise ValueError(f"This measure needs at least {min_rows} rows (examples), got {n}.")
    if not all(np.isfinite(a).all() for a in checked):
        raise ValueError("Representations must contain only finite values.")
    return checked


class CrossSums:
    """The sums behind exact linear and debiased CKA between L layers, accumulated from row chunks: memory
    O((sum d_i)^2), not O(n). One set serves both estimators (CKAStream), so they read the rows once.

    Rows are shifted by the first chunk's column means (exact, and well conditioned); the centred cross-covariance
    blocks and the products of centred squared row norms are recovered from the shifted sums at the first estimate,
    which keeps only those L x L totals.
    """

    def __init__(self):
        self.n, self.totals = 0, None

    def add(self, layers: Sequence[np.ndarray]) -> None:
        """Accumulate one chunk: the same rows of every layer, in the same layer order as earlier chunks."""
        if self.totals is not None:
            raise ValueError("CrossSums: rows added after an estimate; start new sums")
        chunk = [np.asarray(a, dtype=np.float64) for a in layers]
        if self.n == 0:
            widths = [a.shape[1] for a in chunk]
            self.starts = np.cumsum([0, *widths[:-1]])
            self.shift = np.concatenate([a.mean(axis=0) for a in chunk])
            size, n_layers = sum(widths), len(chunk)
            self.gram, self.sums = np.zeros((size, size)), np.zeros(size)
            self.norm_products, self.norm_sums = np.zeros((n_layers, n_layers)), np.zeros(n_layers)
            self.rows_by_norms = np.zeros((size, n_layers))
        step = max(1, _CHUNK_VALUES // len(self.shift))
        for lo in range(0, len(chunk[0]), step):
            z = np.hstack([a[lo : lo + step] for a in chunk]) - self.shift
            norms = np.add.reduceat(z**2, self.starts, axis=1)
            self.gram += z.T @ z
            self.sums += z.sum(axis=0)
            self.norm_products += norms.T @ norms
            self.norm_sums += norms.sum(axis=0)
            self.rows_by_norms += z.T @ norms
            self.n += len(z)

    def _blocks(self, M: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(M, self.starts, axis=0), self.starts, axis=1)

    def _totals(self) -> tuple:
        n = self.n
        delta = self.sums / n
        cross = self._blocks((self.gram - n * np.outer(delta, delta)) ** 2)
        offset = np.add.reduceat(delta**2, self.starts)
        shifted_dot_norms = np.add.reduceat(delta[:, None] * self.rows_by_norms, self.starts, axis=0)
        products = (self.norm_products - 2 * (shifted_dot_norms + shifted_dot_norms.T)
                    + 4 * self._blocks(self.gram * np.outer(delta, delta))
                    + np.outer(self.norm_sums, offset) + np.outer(offset, self.norm_sums) - 3 * n * np.outer(offset, offset))
        del self.gram, self.rows_by_norms
        return cross, products, self.norm_sums - n * offset

    def cka(self, debiased: bool) -> np.ndarray:
        """The L x L CKA matrix (linear, or debiased) of every row added (see cka_matrix)."""
        if self.n < (4 if debiased else 2):
            raise ValueError(f"This measure needs at least {4 if debiased else 2} rows (examples), got {self.n}.")
        if self.totals is None:
            self.totals = self._totals()
        return _normalised(*self.totals, self.n, debiased)


class CKAStream:
    """Exact linear (or debiased) CKA between L layers from row chunks, on CrossSums that another CKAStream of the
    same rows may have accumulated already (`sums`)."""

    def __init__(self, debiased: bool = False):
        self.debiased, self.sums = debiased, CrossSums()

    def add(self, layers: Sequence[np.ndarray]) -> None:
        self.sums.add(layers)

    def matrix(self) -> np.ndarray:
        return self.sums.cka(self.debiased)


class MinibatchCKA:
    """Minibatch CKA (Nguyen et al. 2021): unbiased HSIC averaged over minibatches of k rows, then normalised.

    CKA_mb = mean_b HSIC_u(K_b, L_b) / sqrt(mean_b HSIC_u(K_b, K_b) mean_b HSIC_u(L_b, L_b)).
    Batches are consecutive runs of batch_size rows in the order added; a last, shorter run is dropped unless it is
    the only one (then it needs 4 rows). Never mix its values with exact CKA: it estimates a different quantity.
    """

    def __init__(self, batch_size: int = 1000):
        if batch_size < 4:
            raise ValueError(f"batch_size must be at least 4, got {batch_size}.")
        self.batch_size, self.pending, self.total, self.batches = batch_size, [], 0.0, 0

    def add(self, layers: Sequence[np.ndarray]) -> None:
        """Add rows (the same rows of every layer); full batches are folded in as they fill."""
        self.pending.append([np.asarray(a, dtype=np.float64) for a in layers])
        rows = [np.concatenate(parts) for parts in zip(*self.pending)]
        full = len(rows[0]) // self.batch_size * self.batch_size
        for lo in range(0, full, self.batch_size):
            self._fold([a[lo : lo + self.batch_size] for a in rows])
        self.pending = [[a[full:] for a in rows]]

    def _fold(self, batch: list[np.ndarray]) -> None:
        k = len(batch[0])
        cross, products, totals = _gram_cross_terms(_checked(batch, min_rows=4))
        self.total = self.total + _unbiased_hsic(cross, products, totals, k) / (k * (k - 3))
        self.batches += 1

    def matrix(self) -> np.ndarray:
        if not self.batches:
            self._fold(self.pending[0])
        return _normalised(self.total, None, None, None, debiased=False)


def minibatch_cka(X: np.ndarray, Y: np.ndarray, batch_size: int = 1000) -> float:
    """Minibatch CKA of X and Y over consecutive batches of their rows (see MinibatchCKA).

    CKA_mb = sum_b HSIC_u(X_b, Y_b) / sqrt(sum_b HSIC_u(X_b, X_b) sum_b HSIC_u(Y_b, Y_b)).
    """
    stream = MinibatchCKA(batch_size)
    stream.add(_checked([X, Y], min_rows=4))
    return float(stream.matrix()[0, 1])


def _gram_cross_terms(layers: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """<HK_iH, HK_jH>_F with K_i = X_i X_i^T and H = I - 11^T/n, and the products and sums of the squared row norms.

    HK_iH is formed as X_i' X_i'^T from the column-centred X_i' (the same matrix, with less rounding).
    """
    centred = [np.asarray(a, dtype=np.float64) - a.mean(axis=0, dtype=np.float64) for a in layers]
    grams = np.stack([c @ c.T for c in centred])
    flat = grams.reshape(len(layers), -1)
    norms = np.diagonal(grams, axis1=1, axis2=2)
    return flat @ flat.T, norms @ norms.T, norms.sum(axis=1)


def _unbiased_hsic(cross: np.ndarray, products: np.ndarray, totals: np.ndarray, n: int) -> np.ndarray:
    """n(n-3) HSIC_u(K_i, K_j) from the centred cross terms (Song et al. 2012, linear kernel, centred rows).

    T_ij = ||X_i^T X_j||^2 - n/(n-2) s_i.s_j + ||X_i||^2 ||X_j||^2 / ((n-1)(n-2)), s_i = squared row norms.
    """
    return cross - n / (n - 2) * products + np.outer(totals, totals) / ((n - 1) * (n - 2))


def _normalised(cross: np.ndarray, products, totals, n, debiased: bool) -> np.ndarray:
    """S_ij = T_ij / sqrt(T_ii T_jj), T = symmetrised HSIC (debiased: n(n-3) times Song et al.'s unbiased HSIC)."""
    if debiased:
        cross = _unbiased_hsic(cross, products, totals, n)
    cross = (cross + cross.T) / 2
    diagonal = np.outer(np.diag(cross), np.diag(cross))
    positive = diagonal > 0
    return np.where(positive, cross / np.sqrt(np.where(positive, diagonal, 1.0)), np.nan)


def cka_matrix(layers: Sequence[np.ndarray] | np.ndarray, debiased: bool = False, form: str = "auto") -> np.ndarray:
    """Symmetric L x L matrix of linear (or debiased) CKA between all pairs of L layers (n x d_i each, same rows).

    CKA_ij = ||X_j^T X_i||_F^2 / (||X_i^T X_i||_F ||X_j^T X_j||_F), columns centred; see linear_cka, debiased_cka.

    form "feature" accumulates the cross-covariance blocks over row chunks (memory O((sum d_i)^2));
    "gram" uses the centred n x n Gram matrices (memory O(L n^2)); "auto" picks "feature" when n > max d_i.
    An entry is nan when its denominator is not positive (a constant layer; see debiased_cka).
    """
    checked = _checked(layers, min_rows=4 if debiased else 2)
    if form == "auto":
        form = "feature" if checked[0].shape[0] > max(a.shape[1] for a in checked) else "gram"
    if form not in ("feature", "gram"):
        raise ValueError(f"form must be 'auto', 'feature' or 'gram', got {form!r}.")
    if form == "gram":
        return _normalised(*_gram_cross_terms(checked), len(checked[0]), debiased)
    stream = CKAStream(debiased)
    stream.add(checked)
    return stream.matrix()


def linear_cka(X: np.ndarray, Y: np.ndarray, form: str = "auto", weights: np.ndarray | None = None) -> float:
    """Linear CKA of column-centred X (n x d1) and Y (n x d2).

    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F), K = XX^T, L = YY^T.

    form: "feature" (cost n d^2), "gram" (cost n^2 d) or "auto" ("feature" when n > max(d1, d2)).
    weights: row multiplicities (a bootstrap resample without copying rows): the CKA of the rows repeated that
    many times, from weighted centring and cross-covariances. nan when X or Y is constant.
    """
    if weights is None:
        return float(cka_matrix([X, Y], form=form)[0, 1])
    X, Y = (_weighted_centred(a, weights) for a in _checked([X, Y]))
    return _centred_linear_cka(X, Y)


def _weighted_centred(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sqrt(w_i) (x_i - mean_w(x)): its cross-products are the weighted, centred ones."""
    weights = np.asarray(weights, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    return (X - weights @ X / weights.sum()) * np.sqrt(weights)[:, None]


def _centred_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of centred X and Y: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F); nan when X or Y is constant."""
    denominator = _gram_norm(X) * _gram_norm(Y)
    return float(np.sum((Y.T @ X) ** 2) / denominator) if denominator > 0 else np.nan


def _gram_norm(X: np.ndarray) -> float:
    """||X^T X||_F, from X^T X or X X^T, whichever is smaller (both have that norm)."""
    return float(np.sqrt(np.sum((X.T @ X if X.shape[0] >= X.shape[1] else X @ X.T) ** 2)))


def debiased_cka(X: np.ndarray, Y: np.ndarray, form: str = "auto") -> float:
    """Linear CKA from the unbiased HSIC estimator (Song et al. 2012; Kornblith et al. 2019, appendix).

    CKA_u = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)), K = XX^T, L = YY^T, K~ = K with zero diagonal,
    HSIC_u(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).

    Needs n >= 4. HSIC_u(K, L) and so CKA_u can be negative (near 0 for independent data).
    The self terms HSIC_u(K, K) equal ||U-centred K||_F^2 / (n(n-3)) >= 0, so the square root is
    guarded only against zero (a constant representation) or rounding below zero: then nan, with no warning.
    """
    return float(cka_matrix([X, Y], debiased=True, form=form)[0, 1])


def cka_between(
    layers_a: Sequence[np.ndarray] | np.ndarray, layers_b: Sequence[np.ndarray] | np.ndarray, debiased: bool = False
) -> np.ndarray:
    """Per-layer CKA of model A's layer l with model B's layer l (e.g. base vs fine-tuned), shape (L,).

    out[l] = CKA(A_l, B_l), linear or debiased (see linear_cka, debiased_cka).
    """
    if len(layers_a) != len(layers_b):
        raise ValueError(f"Both models need the same number of layers, got {len(layers_a)} and {len(layers_b)}.")
    return np.array([cka_matrix([a, b], debiased=debiased)[0, 1] for a, b in zip(layers_a, layers_b)])


def permuted_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of X with Y's rows in a uniformly random order, in expectation over every order (the baseline).
    E_pi CKA(X, Y_pi) = ||X||_F^2 ||Y||_F^2 / ((n - 1) ||X^T X||_F ||Y^T Y||_F), X and Y column-centred; nan if constant.

    Exact: for centred Y, E_pi[P_pi Y Y^T P_pi^T] = tr(YY^T) / (n - 1) (I - 11^T / n), so no permutation is drawn.
    """
    X, Y = (np.asarray(a, dtype=np.float64) - np.mean(a, axis=0) for a in _checked([X, Y]))
    denominator = (len(X) - 1) * _gram_norm(X) * _gram_norm(Y)
    return float(np.sum(X**2) * np.sum(Y**2) / denominator) if denominator > 0 else np.nan


def block_diagonality(M: np.ndarray, min_block: int = 2) -> tuple[float, int]:
    """Best contiguous two-block split of a square layer-by-layer similarity matrix M (L x L, L >= 2 min_block).

    score = max over k in min_block..L-min_block of mean{M_ij : i != j in the same block}
    - mean{M_ij : i, j in different blocks}, blocks [0, k) and [k, L); returns (score, k), the smallest k on ties.

    Each block holds at least min_block layers (Phang et al.'s blocks are groups of layers: a single outlier layer
    is not a block). Any similarity that decays with layer distance scores above 0, so compare scores (e.g.
    before vs after fine-tuning) rather than reading one against 0; equal off-diagonal entries score 0.
    """
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2 * min_block or min_block < 1:
        raise ValueError(f"block_diagonality needs a square matrix of at least {2 * min_block} x {2 * min_block} "
                         f"(two blocks of {min_block} layers), got shape {M.shape}.")
    if not np.isfinite(M).all():
        raise ValueError("The similarity matrix must contain only finite values.")
    n_layers = M.shape[0]
    off_diagonal = ~np.eye(n_layers, dtype=bool)
    splits = range(min_block, n_layers - min_block + 1)
    scores = []
    for k in splits:
        first = np.arange(n_layers) < k
        same = first[:, None] == first[None, :]
        scores.append(M[same & off_diagonal].mean() - M[~same].mean())
    best = int(np.argmax(scores))
    return float(scores[best]), splits[best]


def unit_rows(X: np.ndarray) -> np.ndarray:
    """The rows of X scaled to length 1 (float64); ValueError for an all-zero row, whose cosine is undefined."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    if not (norms > 0).all():
        raise ValueError("Cosine similarity is undefined for an all-zero row.")
    return X / norms[:, None]


def _cosine_similarities(X: np.ndarray) -> np.ndarray:
    unit = unit_rows(X)
    return unit @ unit.T


def _pearson_rsa(X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None) -> float:
    """Pearson RSA in feature space, O(n d^2) instead of O(n^2 d): over the distinct pairs of the rows repeated w_i
    times, sum S_ij T_ij = (||U^T D V||_F^2 - sum_i w_i S_ii T_ii) / 2 (U, V the unit rows, D = diag(w)), and so
    for the sums of S, T, S^2 and T^2; NaN when either matrix is constant over the pairs (to rounding)."""
    U, V = unit_rows(X), unit_rows(Y)
    w = np.ones(len(U)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    pairs = total * (total - 1) / 2
    s, t = np.einsum("ij,ij->i", U, U), np.einsum("ij,ij->i", V, V)

    def over_pairs(gram: np.ndarray, own: np.ndarray) -> float:
        return (np.sum(gram**2) - w @ own) / 2 / pairs

    mean_s, mean_t = over_pairs(w @ U, s), over_pairs(w @ V, t)
    UW = U * w[:, None]
    square_s, square_t, cross = over_pairs(UW.T @ U, s**2), over_pairs((V * w[:, None]).T @ V, t**2), over_pairs(
        UW.T @ V, s * t)
    var_s, var_t = square_s - mean_s**2, square_t - mean_t**2
    if var_s <= 1e-12 * square_s or var_t <= 1e-12 * square_t:
        return np.nan
    return float((cross - mean_s * mean_t) / np.sqrt(var_s * var_t))


def rsa(X: np.ndarray, Y: np.ndarray, method: str = "spearman", weights: np.ndarray | None = None) -> float:
    """Representational similarity analysis: correlation of the rows' cosine-similarity matrices of X and Y.

    RSA = corr(triu(S_X), triu(S_Y)), S_X[i, j] = x_i.x_j / (||x_i|| ||x_j||), triu = strict upper triangle,
    corr = Pearson or Spearman.

    Equal to the same correlation of cosine-distance (1 - S) RDMs; needs n >= 3 rows, none all-zero.
    weights (Pearson only): row multiplicities, giving the RSA of the rows repeated that many times (_pearson_rsa,
    which never builds the n x n matrices).
    """
    if method not in RSA_METHODS:
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}.")
    if weights is not None and method != "pearson":
        raise ValueError("Row weights are supported for Pearson RSA only.")
    X, Y = _checked([X, Y], min_rows=3)
    if method == "pearson":
        return _pearson_rsa(X, Y, weights)
    upper = np.triu(np.ones((X.shape[0], X.shape[0]), dtype=bool), k=1)
    return _pearson(average_ranks(_cosine_similarities(X)[upper]), average_ranks(_cosine_similarities(Y)[upper]))
