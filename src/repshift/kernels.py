"""Kernel CKA with an RBF kernel (Kornblith et al. 2019, google-research representation_similarity conventions).

Rows are examples (the same examples, in the same order, in both arguments); float64 throughout.
Memory is O(n^2): callers keep n to a few thousand.
"""

from __future__ import annotations

import numpy as np

from repshift.shape import checked_pair


def _rbf_gram(A: np.ndarray, threshold: float, name: str) -> np.ndarray:
    """exp(-d_ij^2 / (2 threshold^2 median(d^2))), the median over all n^2 entries (zero diagonal included)."""
    A = A - A.mean(axis=0)  # distances are translation invariant; centring only reduces rounding
    gram = A @ A.T
    sq_norms = np.diag(gram).copy()
    sq_distances = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, 0.0)
    np.fill_diagonal(sq_distances, 0.0)
    median = np.median(sq_distances)
    if median <= 0:
        raise ValueError(f"The median squared distance between rows of {name} is 0 "
                         "(more than half the pairs coincide): the RBF bandwidth is undefined.")
    return np.exp(-sq_distances / (2.0 * threshold**2 * median))


def _double_centred(K: np.ndarray) -> np.ndarray:
    """HKH with H = I - 11^T/n."""
    row = K.mean(axis=1, keepdims=True)
    return K - row - row.T + K.mean()


def rbf_cka(X, Y, threshold: float = 0.5) -> float:
    """RBF-kernel CKA in [0, 1]: <HKH, HLH>_F / (||HKH||_F ||HLH||_F), H = I - 11^T/n, with
    K_ij = exp(-||x_i - x_j||^2 / (2 threshold^2 median_kl ||x_k - x_l||^2)) (google gram_rbf), L likewise from Y.
    """
    if not (isinstance(threshold, (int, float, np.floating, np.integer)) and np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}.")
    X, Y = checked_pair(X, Y, min_rows=2)
    K = _double_centred(_rbf_gram(X, float(threshold), "X"))
    L = _double_centred(_rbf_gram(Y, float(threshold), "Y"))
    norm_k, norm_l = np.linalg.norm(K), np.linalg.norm(L)
    if norm_k == 0 or norm_l == 0:
        raise ValueError("A centred RBF Gram matrix is zero (all rows equivalent): CKA is undefined.")
    return float(np.vdot(K, L) / (norm_k * norm_l))
