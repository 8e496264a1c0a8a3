"""DirectProbe (Zhou & Srikumar 2022): label-pure convex clusters of a representation space and their margins.

Points are the rows of X (n, d), worked in float64. Clusters grow by greedily merging the same-label pair with
the closest centroids unless the merged convex hull would overlap the hull of a cluster of another label; the
final number of clusters equals the number of labels exactly when the labels are linearly separable. The
distance between two clusters is the width of the hard-margin linear SVM separating them, which equals the
Euclidean distance between their convex hulls. Overlap is decided as an LP (HiGHS) would decide it; the hull
distance is found by Wolfe's finite nearest-point algorithm.

Cost on n points. Up front, labels sharing a point overlap, and one least-squares fit certifies most separable
label pairs; the rest go through the overlap check below. A label separable from every other is one cluster and
never enters the merge loop. The loop keeps the n x n centroid distances (O(n^2) memory) and each cluster's
nearest partner, so a merge costs O(n) to pick, plus its overlap checks, which dominate: one check against each
other-label cluster that neither the plane normal to the centroid difference nor a plane kept from an earlier
check separates. A check tries a least-squares plane, then Wolfe's nearest points (which decide both ways), and
only then an LP that starts from the few rows of each side nearest the other. A refused pair is never retried.
Clusters of different labels are disjoint by construction, so their distances need no LP: Wolfe's method alone,
its corral's affine minimum kept by QR updates.

Every labelling of n <= d + 1 points in general position is separable, and most are for n < 2 (d + 1) (Cover 1965):
probe well above 2 d points, or the cluster count says little.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.linalg import qr_delete, qr_insert, solve_triangular
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

_GAP_RTOL = 1e-12
_TOUCH_TOL = 1e-9
_LP_ROWS = 48


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


def _plane_lp(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(w, b, t) maximising t s.t. w.a + b >= t on rows of A, w.x + b <= -t on rows of B, |w|_inf <= 1, t <= 1.
    Solved by HiGHS' dual simplex."""
    d = A.shape[1]
    margins = np.vstack([np.hstack([-A, np.tile([-1.0, 1.0], (len(A), 1))]), np.hstack([B, np.ones((len(B), 2))])])
    result = linprog(
        -np.eye(d + 2)[-1],
        A_ub=margins,
        b_ub=np.zeros(len(margins)),
        bounds=[(-1.0, 1.0)] * d + [(None, None), (None, 1.0)],
        method="highs-ds",
    )
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed on the hull separation LP: {result.message}")
    return result.x


def _separating_plane(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """(w, b) with w.a + b > 0 > w.x + b on rows of A and of B, or None if t* <= 1e-9 in _plane_lp on the normalised
    points; by duality t* = min(1, min |A^T lambda - B^T mu|_1 / 2).

    Without an LP: a least-squares plane that separates; else the nearest points of the two hulls (_hull_gap), whose
    difference x is a point of hull(A) - hull(B), so t* <= |x|_1 / 2 (overlap when that is <= 1e-9), and whose plane
    normal to x separates when the sets do. Only between those bounds is the LP solved (_lp_plane)."""
    A, B = _check_pair(A, B)
    A_n, B_n, scale = _normalise(A, B)
    if (plane := _least_squares_plane(A_n, B_n)) is not None:
        return _centred(plane[:-1] / scale, A, B)
    gap = _hull_gap(A_n, B_n)
    if np.abs(gap).sum() <= 2 * _TOUCH_TOL:
        return None
    if ((A_n @ gap).min() - (B_n @ gap).max()) / 2 > _TOUCH_TOL * np.abs(gap).max():
        return _centred(gap / scale, A, B)
    return None if (plane := _lp_plane(A_n, B_n)) is None else _centred(plane[:-1] / scale, A, B)


def _lp_plane(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """(w, b) from _plane_lp with t > 1e-9, or None when t* <= 1e-9, adding rows to the LP as the plane needs them.
    It starts from the _LP_ROWS rows of each set nearest the other along the centroid difference. When those rows
    cannot be separated, neither can the sets (more rows only lower t*); when the plane leaves every row outside
    them beyond 1e-9 it is the answer (t* is at least that margin); else the rows it fails join."""
    along = A.mean(axis=0) - B.mean(axis=0)
    rows_a, rows_b = np.argsort(A @ along)[:_LP_ROWS], np.argsort(B @ -along)[:_LP_ROWS]
    while (solution := _plane_lp(A[rows_a], B[rows_b]))[-1] > _TOUCH_TOL:
        plane = solution[:-1]
        failed_a, failed_b = _failed(A @ plane[:-1] + plane[-1], rows_a), _failed(-(B @ plane[:-1] + plane[-1]), rows_b)
        if not len(failed_a) + len(failed_b):
            return plane
        rows_a, rows_b = np.union1d(rows_a, failed_a), np.union1d(rows_b, failed_b)
    return None


def _least_squares_plane(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """(w, b) of least squares fitting w.x + b = 1 on rows of A and -1 on rows of B, if it leaves every row beyond 1e-9
    with |w|_inf = 1 (then t* of _plane_lp is at least that margin); None otherwise. Few points in many dimensions
    (Cover) are fitted exactly, through the smaller of the two Gram matrices, ridged by 1e-10 of its mean diagonal
    so that repeated points keep it positive definite: no LP."""
    rows = np.hstack([np.vstack([A, B]), np.ones((len(A) + len(B), 1))])
    target = np.repeat([1.0, -1.0], [len(A), len(B)])
    few = len(rows) <= rows.shape[1]
    gram = rows @ rows.T if few else rows.T @ rows
    factor = np.linalg.cholesky(gram + 1e-10 * np.trace(gram) / len(gram) * np.eye(len(gram)))

    def solve(v):
        return solve_triangular(factor, solve_triangular(factor, v, lower=True, check_finite=False), lower=True,
                                trans="T", check_finite=False)

    plane = rows.T @ solve(target) if few else solve(rows.T @ target)
    return plane if (target * (rows @ plane)).min() > _TOUCH_TOL * np.abs(plane[:-1]).max() else None


def _failed(margin: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Up to _LP_ROWS rows outside `rows` whose margin is at or below 1e-9, lowest first."""
    outside = np.setdiff1d(np.flatnonzero(margin <= _TOUCH_TOL), rows)
    return outside[np.argsort(margin[outside], kind="stable")[:_LP_ROWS]]


def _centred(w: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The plane (w, b) with b placing w.x + b = 0 midway between the rows of A and of B along w.
    b = -(min_a w.a + max_x w.x) / 2."""
    return np.append(w, -((A @ w).min() + (B @ w).max()) / 2)


def hulls_overlap(A: np.ndarray, B: np.ndarray) -> bool:
    """Whether the convex hulls of the rows of A and of B intersect: lambda, mu >= 0, sum 1, A^T lambda = B^T mu.
    Decided by the LP of _separating_plane; hulls within an L1 distance of 2e-9 of the cloud's extent touch."""
    return _separating_plane(A, B) is None


def _hull_gap(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Shortest x = a - b, a in hull(A), b in hull(B): Wolfe's nearest-point method on the vertices A[i] - B[j].
    Add argmin_v x.v to the corral, go to its affine minimum shedding negative weights, until x.x - x.v <= 1e-12 |x||v|.

    The affine minimum of corral V (columns) is beta / sum(beta) with (1 1^T + V^T V) beta = 1; a thin QR of [1^T; V],
    updated as vertices come and go, gives beta by two triangular solves instead of a new factorisation each step. A
    vertex already in the corral's affine hull (a full corral of d + 1, a column the thin update refuses, or R's new
    diagonal ~ 0 once Q is square) cannot lower |x|: x is the answer."""
    A, B, scale = _normalise(A, B)
    direction = A.mean(axis=0) - B.mean(axis=0)
    vertices = A[[np.argmin(A @ direction)]] - B[[np.argmax(B @ direction)]]
    Q, R = np.linalg.qr(np.append(1.0, vertices[0])[:, None])
    weights, best = np.ones(1), np.inf
    while (x := weights @ vertices) @ x < best:
        best = x @ x
        vertex = A[(A @ x).argmin()] - B[(B @ x).argmax()]
        if best - x @ vertex <= _GAP_RTOL * np.sqrt(best) * np.linalg.norm(vertex):
            break
        if len(vertices) == len(Q):
            break
        try:
            Q, R = qr_insert(Q, R, np.append(1.0, vertex), len(vertices), which="col", check_finite=False)
        except np.linalg.LinAlgError:
            break
        if abs(R[len(vertices), len(vertices)]) <= _GAP_RTOL * np.linalg.norm(R[:, len(vertices)]):
            break
        vertices, weights = np.vstack([vertices, vertex]), np.append(weights, 0.0)
        while True:
            k = len(vertices)
            beta = solve_triangular(R[:k], solve_triangular(R[:k], np.ones(k), trans="T", check_finite=False),
                                    check_finite=False)
            alpha = beta / beta.sum()
            negative = np.flatnonzero(alpha < 0)
            if len(negative):
                ratios = weights[negative] / (weights[negative] - alpha[negative])
                alpha = ratios.min() * alpha + (1 - ratios.min()) * weights
                alpha[negative[ratios.argmin()]] = 0.0
            keep = alpha > 0
            for index in np.flatnonzero(~keep)[::-1]:
                Q, R = qr_delete(Q, R, index, which="col", check_finite=False)
            vertices, weights = vertices[keep], alpha[keep]
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
    X: np.ndarray, merged: np.ndarray, checked: np.ndarray, members: list, owner: np.ndarray, centroids: np.ndarray,
    own: np.ndarray, copies: np.ndarray, known,
) -> dict[int, np.ndarray] | None:
    """Planes keyed by cluster k in checked proving hull(X[merged]) misses hull(X[members[k]]); None on an overlap.
    Per cluster: the plane normal to the centroid difference (clearing both by 1e-9 of the merged points' norm, so
    that rounding never parts a point from its duplicate), else a known(k) plane, else the LP (nearest first).
    own[i] = X[i] . centroids[owner[i]], so x . (mean - c_k) of every other point costs one product with the mean.
    Rows with the same copies[i] are the same point: a cluster holding a copy of a merged point overlaps, no LP."""
    found: dict[int, np.ndarray] = {}
    if not len(checked):
        return found
    in_checked = np.zeros(len(owner), dtype=bool)
    in_checked[checked] = True
    rows = np.flatnonzero(in_checked[owner])
    if np.isin(copies[rows], copies[merged]).any():
        return None
    points = X[merged]
    mean = points.mean(axis=0)
    directions = mean - centroids[checked]
    lowest_merged = (points @ directions.T).min(axis=0)
    highest_other = np.full(len(checked), -np.inf)
    np.maximum.at(highest_other, np.searchsorted(checked, owner[rows]), (X @ mean - own)[rows])
    slack = _TOUCH_TOL * np.linalg.norm(directions, axis=1) * np.linalg.norm(points, axis=1).max()
    uncleared = np.flatnonzero(lowest_merged <= highest_other + slack)
    for k in checked[uncleared[np.argsort(np.linalg.norm(directions[uncleared], axis=1), kind="stable")]]:
        other = X[members[k]]
        plane = next((plane for plane in known(k) if _clears(plane, points, other)), None)
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


def separable_labels(X: np.ndarray, codes: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """Whether the hulls of each two labels' points (codes 0..L-1) are disjoint, as an L x L boolean matrix.
    Labels sharing a point (rows with the same copies[i]) overlap. Other pairs are certified by the difference of
    two least-squares one-vs-rest scores when it clears both sets by more than the LP's tolerance, else decided by
    the LP (hulls_overlap)."""
    n_labels = int(codes.max()) + 1
    shared = np.zeros((n_labels, n_labels), dtype=bool)
    labelled = np.unique(np.column_stack([copies, codes]), axis=0)
    points, count = np.unique(labelled[:, 0], return_counts=True)
    for point in points[count > 1]:
        shared[np.ix_(*[labelled[labelled[:, 0] == point, 1]] * 2)] = True
    centred = X - X.mean(axis=0)
    gram = centred.T @ centred
    ridge = 1e-6 * np.trace(gram) / len(gram) or 1.0
    weights = np.linalg.solve(gram + ridge * np.eye(len(gram)), centred.T @ np.eye(n_labels)[codes])
    scores = centred @ weights
    separable = np.eye(n_labels, dtype=bool)
    for a, b in combinations(range(n_labels), 2):
        if shared[a, b]:
            continue
        in_a, in_b = codes == a, codes == b
        margin, w = scores[:, a] - scores[:, b], weights[:, a] - weights[:, b]
        extent = _normalise(X[in_a], X[in_b])[2]
        certified = margin[in_a].min() - margin[in_b].max() > 2 * _TOUCH_TOL * extent * np.abs(w).max()
        separable[a, b] = separable[b, a] = certified or not hulls_overlap(X[in_a], X[in_b])
    return separable


def _merge(X: np.ndarray, codes: np.ndarray, copies: np.ndarray, separable: np.ndarray) -> np.ndarray:
    """The greedy DirectProbe loop on rows X with label codes: the cluster of each row, named by its first row.
    Each cluster caches its nearest same-label partner, so a step reads n minima instead of the n x n matrix."""
    n = len(X)
    members, owner, alive = [np.array([i]) for i in range(n)], np.arange(n), np.ones(n, dtype=bool)
    centroids, own, planes = X.copy(), np.einsum("ij,ij->i", X, X), {}
    distance = np.where(codes[:, None] == codes[None, :], cdist(X, X), np.inf)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.argmin(axis=1)
    nearest_distance = distance[np.arange(n), nearest]

    def refresh(rows):
        nearest[rows] = distance[rows].argmin(axis=1)
        nearest_distance[rows] = distance[rows, nearest[rows]]

    while np.isfinite(nearest_distance[a := int(nearest_distance.argmin())]):
        b = int(nearest[a])
        merged = np.concatenate([members[a], members[b]])
        checked = np.flatnonzero(alive & ~separable[codes[a]][codes])
        found = _certify_disjoint(X, merged, checked, members, owner, centroids, own, copies, lambda k: [
            plane for slot in (a, b) if (plane := planes.get(slot, {}).get(k)) is not None])
        if found is None:
            distance[a, b] = distance[b, a] = np.inf
            refresh([a, b])
            continue
        for slot in (a, b):
            for k in planes.pop(slot, {}):
                planes[k].pop(slot, None)
        for k, plane in found.items():
            planes.setdefault(a, {})[k], planes.setdefault(k, {})[a] = plane, -plane
        open_pairs = np.isfinite(distance[a]) & np.isfinite(distance[b])
        open_pairs[[a, b]] = False
        members[a], members[b], alive[b], owner[merged] = merged, None, False, a
        centroids[a] = X[merged].mean(axis=0)
        own[merged] = X[merged] @ centroids[a]
        distance[[a, b], :] = np.inf
        distance[:, [a, b]] = np.inf
        distance[a, open_pairs] = np.linalg.norm(centroids[open_pairs] - centroids[a], axis=1)
        distance[:, a] = distance[a]
        stale = np.union1d(np.flatnonzero((nearest == a) | (nearest == b)), [a, b])
        closer = open_pairs & ((distance[:, a] < nearest_distance)
                               | ((distance[:, a] == nearest_distance) & (nearest > a)))
        nearest[closer], nearest_distance[closer] = a, distance[closer, a]
        refresh(stale)
    return owner


def cluster_labels(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """DirectProbe cluster id per row (0, 1, ... by first row): from singletons, merge the same-label pair with the
    closest centroids unless its hull meets another label's cluster hull; a refused pair stays refused (hulls grow).
    A label whose hull misses every other label's is one cluster: no merge of its points is ever refused."""
    X, y = _check_labelled(X, y)
    codes = np.unique(y, return_inverse=True)[1].reshape(-1)
    copies = np.unique(X, axis=0, return_inverse=True)[1].reshape(-1)
    separable = separable_labels(X, codes, copies)
    first = np.array([np.flatnonzero(codes == k)[0] for k in range(len(separable))])
    owner = first[codes]
    mixed = np.flatnonzero(~separable.all(axis=1)[codes])
    if len(mixed):
        owner[mixed] = mixed[_merge(X[mixed], codes[mixed], copies[mixed], separable)]
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
    # Clusters of different labels are disjoint by construction (every merge was certified against the other
    # label's clusters, and labels found separable are whole), so no overlap LP is needed before the hull gap.
    for i, j in combinations(np.argsort(code, kind="stable"), 2):
        if code[i] != code[j]:
            key = (names[code[i]], names[code[j]])
            by_pair.setdefault(key, []).append(float(np.linalg.norm(_hull_gap(X[clusters[i]], X[clusters[j]]))))
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
