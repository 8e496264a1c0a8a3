"""CCA-based similarity: SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018), google/svcca conventions.

google/svcca takes neurons x datapoints; here rows are examples (n x d), the same examples in the
same order in both arguments. CCA is computed from orthonormal bases of the centred column spaces:
the canonical correlations are the singular values of Q_X^T Q_Y, so rank-deficient inputs (d > n,
duplicated or constant neurons) need no covariance inverse; directions whose singular value is
negligible (numpy's matrix_rank tolerance) are dropped.
"""

from __future__ import annotations

import numpy as np

from repshift.shape import checked_pair


def _centred_basis(A: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(U, s): orthonormal basis (n x r) of the centred columns' span and its r non-negligible singular values."""
    A = A - A.mean(axis=0)
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    tol = (s[0] if s.size else 0.0) * max(A.shape) * np.finfo(np.float64).eps
    rank = int(np.count_nonzero(s > tol)) if s.size and s[0] > 0 else 0
    if rank == 0:
        raise ValueError(f"{name} is constant across rows (no variance after centring): CCA is undefined.")
    return U[:, :rank], s[:rank]


def _correlations(Qx: np.ndarray, Qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical correlations (descending, min(r_x, r_y) of them, clipped to [0, 1]) and X's rotation U."""
    U, rho, _ = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    return np.clip(rho, 0.0, 1.0), U


def svcca(X, Y, keep: float = 0.99) -> float:
    """SVCCA in [0, 1]: mean_i rho_i, the canonical correlations of X' and Y', where X' (Y') is the centred X (Y)
    SVD-reduced to its fewest top directions whose singular values s satisfy sum_top s^2 >= keep * sum s^2.
    """
    if not (isinstance(keep, (int, float, np.floating, np.integer)) and 0 < keep <= 1):
        raise ValueError(f"keep (fraction of variance kept) must lie in (0, 1], got {keep!r}.")
    X, Y = checked_pair(X, Y, min_rows=2)
    bases = []
    for name, A in (("X", X), ("Y", Y)):
        U, s = _centred_basis(A, name)
        explained = np.cumsum(s**2) / np.sum(s**2)
        top = min(int(np.searchsorted(explained, keep, side="left")) + 1, s.size)
        bases.append(U[:, :top])
    rho, _ = _correlations(*bases)
    return float(rho.mean())


def pwcca(X, Y) -> float:
    """Projection-weighted CCA in [0, 1] (Morcos et al. 2018, weights from X): sum_i a_i rho_i / sum_i a_i,
    a_i = sum_j |<h_i, x_j>|, h_i X's unit-norm canonical variates, x_j X's centred columns (asymmetric in X, Y).
    """
    X, Y = checked_pair(X, Y, min_rows=2)
    Qx, _ = _centred_basis(X, "X")
    Qy, _ = _centred_basis(Y, "Y")
    rho, U = _correlations(Qx, Qy)
    variates = Qx @ U[:, : rho.size]  # n x min(r_x, r_y), orthonormal, centred
    weights = np.abs(variates.T @ (X - X.mean(axis=0))).sum(axis=1)
    return float(np.dot(weights, rho) / weights.sum())
