"""DirectProbe (Zhou & Srikumar 2022): label-pure convex clusters of a representation space and their margins.

Points are the rows of X (n, d), worked in float64. Clusters grow by greedily merging the same-label pair with
the closest centroids unless the merged convex hull would overlap the hull of a cluster of another label; the
final number of clusters equals the number of labels exactly when the labels are linearly separable. The
distance between two clusters is the width of the hard-margin linear SVM separating them, which equals the
Euclidean distance between their convex hulls. Overlap is decided by an LP (HiGHS); the hull distance is found
by Wolfe's finite nearest-point algorithm.

Cost of cluster_labels on n points: O(n^2) memory for the centroid distances and O(n^2) per merge attempt to find
the closest pair (at most n - 1 merges plus one attempt per refused pair), plus the overlap checks, which dominate:
per attempt, one LP with |merged| + |other| rows and d + 2 columns against each other-label cluster that neither
the plane normal to the centroid difference nor a plane kept from an earlier check separates. Label pairs whose
whole point sets are separable (one LP each, up front) are never checked, and a refused pair is never retried.
Every labelling of n <= d + 1 points in general position is separable, and most are for n < 2 (d + 1) (Cover 1965):
probe well above 2 d points, or the cluster count says little.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

_GAP_RTOL = 1e-12
_TOUCH_TOL = 1e-9


def _check_points(X: np.ndarray, name: str) -> np.ndarray:
    """Return X as a float64 (n, d) array.
    Raise ValueError unless X is two-dimensional with at least one row and column, all finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (n, d) array with n >= 1 and d >= 1, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def _check_pair(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return A and B as float64 point arrays of the same dimension.
    Raise ValueError if either is malformed or their numbers of columns differ."""
    A, B = _check_points(A, "A"), _check_points(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A and B must have the same number of columns, got {A.shape[1]} and {B.shape[1]}.")
    return A, B


def _normalise(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(A - m) / s, (B - m) / s and s, with m the mean of all rows and s = max |x - m| (1 if 0).
    Solver tolerances then act relative to the size of the point cloud, whatever its offset and units."""
    mean = np.concatenate([A, B]).mean(axis=0)
    scale = max(np.abs(A - mean).max(), np.abs(B - mean).max()) or 1.0
    return (A - mean) / scale, (B - mean) / scale, scale


def _separating_plane(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """(w, b) with w.a + b > 0 > w.x + b on rows of A and of B, or None if t* <= 1e-9: LP max t s.t. w.a + b >= t,
    w.x + b <= -t, |w|_inf <= 1, t <= 1 (normalised points); by duality t* = min(1, min |A^T lambda - B^T mu|_1 / 2)."""
    A, B = _check_pair(A, B)
    A_n, B_n, scale = _normalise(A, B)
    d = A.shape[1]
    margins = np.vstack([np.hstack([-A_n, np.tile([-1.0, 1.0], (len(A), 1))]), np.hstack([B_n, np.ones((len(B), 2))])])
    result = linprog(
        -np.eye(d + 2)[-1],
        A_ub=margins,
        b_ub=np.zeros(len(margins)),
        bounds=[(-1.0, 1.0)] * d + [(None, None), (None, 1.0)],
        method="highs-ds",
    )
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed on the hull separation LP: {result.message}")
    return _centred(result.x[:d] / scale, A, B) if result.x[-1] > _TOUCH_TOL else None


def _centred(w: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The plane (w, b) with b placing w.x + b = 0 midway between the rows of A and of B along w.
    b = -(min_a w.a + max_x w.x) / 2."""
    return np.append(w, -((A @ w).min() + (B @ w).max()) / 2)


def hulls_overlap(A: np.ndarray, B: np.ndarray) -> bool:
    """Whether the convex hulls of the rows of A and of B intersect: lambda, mu >= 0, sum 1, A^T lambda = B^T mu.
    Decided by the LP of _separating_plane; hulls within an L1 distance of 2e-9 of the cloud's extent touch."""
    return _separating_plane(A, B) is None


def _affine_minimum(gram: np.ndarray) -> np.ndarray:
    """Weights alpha (sum 1, any sign) of the point of least norm in the affine hull of vectors with Gram matrix gram.
    Solution of the bordered system [[gram, 1], [1^T, 0]] [alpha; nu] = [0; 1]."""
    k = len(gram)
    bordered = np.block([[gram, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
    return np.linalg.solve(bordered, np.eye(k + 1)[-1])[:k]


def _hull_gap(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Shortest x = a - b, a in hull(A), b in hull(B): Wolfe's nearest-point method on the vertices A[i] - B[j].
    Add argmin_v x.v to the corral, go to its affine minimum shedding negative weights, until x.x - x.v <= 1e-12 |x||v|."""
    A, B, scale = _normalise(A, B)
    direction = A.mean(axis=0) - B.mean(axis=0)
    vertices = A[[np.argmin(A @ direction)]] - B[[np.argmax(B @ direction)]]
    gram, weights, best = vertices @ vertices.T, np.ones(1), np.inf
    while (x := weights @ vertices) @ x < best:
        best = x @ x
        vertex = A[(A @ x).argmin()] - B[(B @ x).argmax()]
        if best - x @ vertex <= _GAP_RTOL * np.sqrt(best) * np.linalg.norm(vertex):
            break
        column = vertices @ vertex
        gram = np.block([[gram, column[:, None]], [column[None, :], np.array([[vertex @ vertex]])]])
        vertices, weights = np.vstack([vertices, vertex]), np.append(weights, 0.0)
        while True:
            alpha = _affine_minimum(gram)
            negative = np.flatnonzero(alpha < 0)
            if len(negative):
                ratios = weights[negative] / (weights[negative] - alpha[negative])
                alpha = ratios.min() * alpha + (1 - ratios.min()) * weights
                alpha[negative[ratios.argmin()]] = 0.0
            keep = alpha > 0
            vertices, gram, weights = vertices[keep], gram[np.ix_(keep, keep)], alpha[keep]
            if not len(negative):
                break
    return x * scale


def max_margin_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Width 2/|w| of the hard-margin linear SVM separating the rows of A from those of B; 0 if their hulls overlap.
    It equals the Euclidean distance |a - b| between the nearest points of the two convex hulls (_hull_gap)."""
    A, B = _check_pair(A, B)
    return 0.0 if hulls_overlap(A, B) else float(np.linalg.norm(_hull_gap(A, B)))


def _clears(plane: np.ndarray, P: np.ndarray, Q: np.ndarray) -> bool:
    """Whether plane (w, b) has every row of P strictly on its positive side and every row of Q on its negative side.
    min_p w.p + b > 0 > max_q w.q + b certifies that the hulls of P and Q are disjoint."""
    return bool((P @ plane[:-1]).min() + plane[-1] > 0 > (Q @ plane[:-1]).max() + plane[-1])


def _certify_disjoint(
    X: np.ndarray, merged: np.ndarray, others: list[np.ndarray], centroids: np.ndarray, known: list[list[np.ndarray]]
) -> dict[int, np.ndarray] | None:
    """Planes keyed by k proving hull(X[merged]) misses hull(X[others[k]]) beyond the cheap test; None on an overlap.
    Per cluster: the plane normal to the centroid difference, else a known[k] plane, else the LP (nearest first)."""
    found: dict[int, np.ndarray] = {}
    if not others:
        return found
    points = X[merged]
    directions = points.mean(axis=0) - centroids
    lowest_merged = (points @ directions.T).min(axis=0)
    owner = np.repeat(np.arange(len(others)), [len(rows) for rows in others])
    highest_other = np.full(len(others), -np.inf)
    np.maximum.at(highest_other, owner, np.einsum("ij,ij->i", X[np.concatenate(others)], directions[owner]))
    uncleared = np.flatnonzero(lowest_merged <= highest_other)
    for k in uncleared[np.argsort(np.linalg.norm(directions[uncleared], axis=1), kind="stable")]:
        other = X[others[k]]
        plane = next((plane for plane in known[k] if _clears(plane, points, other)), None)
        if plane is None and (plane := _separating_plane(points, other)) is None:
            return None
        found[int(k)] = plane
    return found


def _check_labelled(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return X as float64 points and y as a 1-D array with one label per row of X.
    Raise ValueError if X is malformed or y does not have one entry per row."""
    X, y = _check_points(X, "X"), np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must be a 1-D array with one label per row of X ({X.shape[0]}), got shape {y.shape}.")
    return X, y


def cluster_labels(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """DirectProbe cluster id per row (0, 1, ... by first row): from singletons, merge the same-label pair with the
    closest centroids unless its hull meets another label's cluster hull; a refused pair stays refused (hulls grow)."""
    X, y = _check_labelled(X, y)
    n = len(X)
    codes = np.unique(y, return_inverse=True)[1].reshape(-1)
    separable = np.eye(codes.max() + 1, dtype=bool)
    for a in range(len(separable)):
        for b in range(a + 1, len(separable)):
            separable[a, b] = separable[b, a] = not hulls_overlap(X[codes == a], X[codes == b])
    members, centroids = [np.array([i]) for i in range(n)], X.copy()
    planes: dict[tuple[int, int], np.ndarray] = {}
    distance = np.where(codes[:, None] == codes[None, :], cdist(X, X), np.inf)
    np.fill_diagonal(distance, np.inf)
    while np.isfinite(distance.flat[closest := int(distance.argmin())]):
        a, b = divmod(closest, n)
        merged = np.concatenate([members[a], members[b]])
        checked = [k for k, rows in enumerate(members) if rows is not None and not separable[codes[a], codes[k]]]
        known = [[planes[key] for key in ((a, k), (b, k)) if key in planes] for k in checked]
        found = _certify_disjoint(X, merged, [members[k] for k in checked], centroids[checked], known)
        if found is None:
            distance[a, b] = distance[b, a] = np.inf
            continue
        planes = {key: plane for key, plane in planes.items() if a not in key and b not in key}
        for index, plane in found.items():
            planes[a, checked[index]], planes[checked[index], a] = plane, -plane
        open_pairs = np.isfinite(distance[a]) & np.isfinite(distance[b])
        open_pairs[[a, b]] = False
        members[a], members[b], centroids[a] = merged, None, X[merged].mean(axis=0)
        distance[[a, b], :] = np.inf
        distance[:, [a, b]] = np.inf
        distance[a, open_pairs] = np.linalg.norm(centroids[open_pairs] - centroids[a], axis=1)
        distance[:, a] = distance[a]
    owner = np.empty(n, dtype=np.int64)
    for slot, rows in enumerate(members):
        if rows is not None:
            owner[rows] = slot
    return np.unique(owner, return_inverse=True)[1].reshape(-1)


def _stratified_sample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of size rows keeping every label: 1 row each plus, by largest remainder,
    (size - L) (n_label - 1) / (n - L) more, which never exceeds what the label has."""
    codes, counts = np.unique(y, return_inverse=True, return_counts=True)[1:]
    share = (size - len(counts)) * (counts - 1) / (len(y) - len(counts))
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(quota - share, kind="stable")[: size - len(counts) - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(codes == k), q + 1, replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(picks))


def label_spread(X: np.ndarray, y: np.ndarray) -> float:
    """Mean over labels of the root-mean-square distance of a label's points to their centroid.
    mean_l sqrt(mean_{i: y_i = l} ||x_i - mu_l||^2)."""
    return float(np.mean([np.sqrt(((X[y == label] - X[y == label].mean(axis=0)) ** 2).sum(axis=1).mean())
                          for label in np.unique(y)]))


def directprobe(X: np.ndarray, y: np.ndarray, max_points: int | None = None, seed: int = 0) -> dict:
    """Cluster count and min/mean max-margin distance between clusters of different labels, per label pair and all,
    with the within-label spread (label_spread) they can be compared with. Over max_points rows, a seeded
    label-stratified sample of exactly max_points rows is probed (n_points and dimensions say how many of each)."""
    X, y = _check_labelled(X, y)
    if np.ptp(X, axis=0).max() == 0:
        raise ValueError("X is the same vector in every row (as the layer-0 [CLS] is): DirectProbe clusters are "
                         "undefined.")
    labels = np.unique(y)
    if len(labels) < 2:
        raise ValueError("y must contain at least two distinct labels for DirectProbe distances.")
    if max_points is not None:
        if not isinstance(max_points, (int, np.integer)) or max_points < len(labels):
            raise ValueError(f"max_points must be an integer >= the {len(labels)} labels, got {max_points!r}.")
        if len(y) > max_points:
            keep = _stratified_sample(y, int(max_points), seed)
            X, y = X[keep], y[keep]
    ids = cluster_labels(X, y)
    clusters = [np.flatnonzero(ids == k) for k in range(ids.max() + 1)]
    code, names = np.searchsorted(labels, [y[rows[0]] for rows in clusters]), labels.tolist()
    by_pair: dict[tuple, list[float]] = {}
    for i, j in combinations(np.argsort(code, kind="stable"), 2):
        if code[i] != code[j]:
            key = (names[code[i]], names[code[j]])
            by_pair.setdefault(key, []).append(max_margin_distance(X[clusters[i]], X[clusters[j]]))
    everything = np.concatenate(list(by_pair.values()))
    return {
        "n_clusters": len(clusters),
        "n_labels": len(labels),
        "n_points": len(y),
        "dimensions": X.shape[1],
        "label_spread": label_spread(X, y),
        "min_distance": {key: float(np.min(values)) for key, values in by_pair.items()},
        "mean_distance": {key: float(np.mean(values)) for key, values in by_pair.items()},
        "min_distance_all": float(everything.min()),
        "mean_distance_all": float(everything.mean()),
    }
