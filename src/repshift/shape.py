"""Shape metrics between representations (Williams et al. 2021, netrep conventions).

Rows are examples (the same examples, in the same order, in both arguments). Each
representation is centred column-wise and scaled to unit Frobenius norm; widths may
differ (the narrower one is zero-padded, as netrep does; the nuclear norm of X^T Y is unchanged by it).
Also holds `checked_pair`, the input checker the other peer-measure modules share.
"""

from __future__ import annotations

import numpy as np


def checked_pair(X, Y, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as float64 arrays, after checking: 2-D, >= 1 column, the same rows (>= min_rows), finite.

    Raises ValueError with a message naming the failed condition.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    for name, a in (("X", X), ("Y", Y)):
        if a.ndim != 2 or a.shape[1] == 0:
            raise ValueError(f"{name} must be a 2-D array (rows = examples) with at least one column, "
                             f"got shape {a.shape}.")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (examples), got {X.shape[0]} and {Y.shape[0]}.")
    if X.shape[0] < min_rows:
        raise ValueError(f"This measure needs at least {min_rows} rows (examples), got {X.shape[0]}.")
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    for name, a in (("X", X), ("Y", Y)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must contain only finite values.")
    return X, Y


def _standardised(A: np.ndarray, name: str) -> np.ndarray:
    """A with centred columns, scaled to unit Frobenius norm; a compact n x n stand-in when A is wider than tall."""
    A = A - A.mean(axis=0)
    norm = np.linalg.norm(A)
    if norm == 0 or not np.isfinite(norm):
        raise ValueError(f"{name} is constant across rows (zero variance after centring): "
                         "the shape metric is undefined.")
    A = A / norm
    if A.shape[1] > A.shape[0]:
        # A = R^T Q^T with A^T = QR: ||A^T B||_* = ||R B||_*, so R^T (n x n) stands in for A.
        A = np.linalg.qr(A.T, mode="r").T
    return A


def _procrustes_residual(X, Y) -> float:
    """min_Q ||X~ - Y~ Q||_F, evaluated as the residual itself (not sqrt(2 - 2 ||X~^T Y~||_*), which loses
    half the digits near 0): the compact stand-ins are zero-padded to one width, Q = U V^T from the SVD of X~^T Y~.
    """
    X, Y = checked_pair(X, Y)
    Xs, Ys = _standardised(X, "X"), _standardised(Y, "Y")
    width = max(Xs.shape[1], Ys.shape[1])
    Xs = np.pad(Xs, ((0, 0), (0, width - Xs.shape[1])))
    Ys = np.pad(Ys, ((0, 0), (0, width - Ys.shape[1])))
    U, _, Vt = np.linalg.svd(Ys.T @ Xs)
    return float(min(np.sqrt(2.0), np.linalg.norm(Xs - Ys @ (U @ Vt))))


def procrustes_distance(X, Y) -> float:
    """Orthogonal Procrustes distance in [0, sqrt 2]: min_Q ||X~ - Y~ Q||_F = sqrt(2 - 2 ||X~^T Y~||_*),
    X~, Y~ the column-centred inputs scaled to unit Frobenius norm, Q orthogonal (reflections allowed).
    """
    return _procrustes_residual(X, Y)


def angular_shape_distance(X, Y) -> float:
    """Angular Procrustes shape distance in [0, pi/2] (netrep LinearMetric(alpha=1), score_method='angular'):
    arccos(||X~^T Y~||_*), X~, Y~ the column-centred inputs scaled to unit Frobenius norm.
    """
    # For unit-norm X~, Y~ Q the chord d and the angle satisfy d = 2 sin(angle / 2): exact near 0, unlike arccos.
    return float(2.0 * np.arcsin(min(1.0, _procrustes_residual(X, Y) / 2.0)))
