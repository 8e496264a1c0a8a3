"""The per-pair feature-space CKA of Kornblith et al. (2019), the computation that the google-research
representation_similarity reference performs for every pair of layers: centre X and Y, form X^T Y, X^T X and
Y^T Y, and take the (optionally debiased, Song et al. 2012) HSIC ratio. Written from the formulas, for timing
and for checking values; repshift's own code is repshift.similarity."""

import numpy as np


def _debiased(cross_norm2, row_norms_a, row_norms_b, n):
    """Unbiased HSIC estimate from ||A^T B||_F^2 of centred A, B and their squared row norms."""
    total_a, total_b = row_norms_a.sum(), row_norms_b.sum()
    return cross_norm2 - n / (n - 2.0) * (row_norms_a @ row_norms_b) + total_a * total_b / ((n - 1) * (n - 2))


def feature_space_linear_cka(x, y, debiased=False):
    """Linear CKA of one pair in feature space: ||X^T Y||^2 / (||X^T X|| ||Y^T Y||) on centred X, Y."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    xy = np.linalg.norm(x.T @ y) ** 2
    xx = np.linalg.norm(x.T @ x) ** 2
    yy = np.linalg.norm(y.T @ y) ** 2
    if debiased:
        n = x.shape[0]
        rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        xy, xx, yy = _debiased(xy, rows_x, rows_y, n), _debiased(xx, rows_x, rows_x, n), _debiased(yy, rows_y, rows_y, n)
    return xy / np.sqrt(xx * yy)
