import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.stats import special_ortho_group
from sklearn.svm import SVC

from repshift import directprobe as directprobe_module
from repshift.directprobe import (
    _stratified_sample,
    cluster_labels,
    directprobe,
    hulls_overlap,
    max_margin_distance,
)

TRIANGLE = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])


def blobs(centres, n_per, spread, seed):
    """n_per Gaussian points around each centre with standard deviation spread.
    Returns points (len(centres) * n_per, d) and the index of each point's centre."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    which = np.repeat(np.arange(len(centres)), n_per)
    return centres[which] + spread * rng.normal(size=(len(which), centres.shape[1])), which


def common_point_exists(A, B):
    """The LP of the definition: lambda, mu >= 0, sum lambda = sum mu = 1, A^T lambda = B^T mu.
    Solved directly, as an independent reference for hulls_overlap."""
    equalities = np.vstack([np.hstack([A.T, -B.T]), np.repeat(np.eye(2), [len(A), len(B)], axis=1)])
    rhs = np.concatenate([np.zeros(A.shape[1]), [1.0, 1.0]])
    result = linprog(np.zeros(len(A) + len(B)), A_eq=equalities, b_eq=rhs, bounds=(0, None), method="highs")
    assert result.status in (0, 2)
    return result.status == 0


def naive_clusters(X, y):
    """The DirectProbe greedy loop with no shortcut: every merge checked against every other-label cluster.
    Returns the final clusters as a set of frozensets of row indices."""
    clusters = [[i] for i in range(len(X))]
    refused = set()
    while True:
        pairs = [
            (np.linalg.norm(X[p].mean(axis=0) - X[q].mean(axis=0)), i, j)
            for i, p in enumerate(clusters)
            for j, q in enumerate(clusters)
            if i < j and y[p[0]] == y[q[0]] and (tuple(p), tuple(q)) not in refused
        ]
        if not pairs:
            return {frozenset(rows) for rows in clusters}
        _, i, j = min(pairs)
        merged = clusters[i] + clusters[j]
        if any(y[o[0]] != y[merged[0]] and hulls_overlap(X[merged], X[o]) for o in clusters):
            refused.add((tuple(clusters[i]), tuple(clusters[j])))
            continue
        clusters = [c for k, c in enumerate(clusters) if k not in (i, j)] + [sorted(merged)]


def partition(ids):
    """The clusters of an id array as a set of frozensets of row indices.
    Makes two clusterings comparable whatever their id numbering."""
    return {frozenset(np.flatnonzero(ids == k).tolist()) for k in np.unique(ids)}


def test_overlapping_triangles_overlap():
    assert hulls_overlap(TRIANGLE, TRIANGLE + [1.0, 0.5])


def test_separated_triangles_do_not_overlap():
    assert not hulls_overlap(TRIANGLE, TRIANGLE + [1.5, 1.5])


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e6, 1.0), (0.0, 1e-6), (-3e4, 1e5)])
def test_touching_and_degenerate_hulls_are_stable_under_offset_and_scale(offset, scale):
    def overlap(A, B):
        return hulls_overlap(np.asarray(A, dtype=float) * scale + offset, np.asarray(B, dtype=float) * scale + offset)

    flipped = 2.0 - TRIANGLE
    assert overlap(TRIANGLE, TRIANGLE + [2.0, 0.0])  # a shared vertex
    assert overlap(TRIANGLE, flipped)  # a shared edge
    assert overlap(TRIANGLE, [[1.0, 1.0], [3.0, 3.0]])  # a segment starting on the hypotenuse
    assert not overlap(TRIANGLE, [[1.0, 1.0 + 1e-6], [3.0, 3.0]])
    assert overlap([[0, 0, 0], [2, 0, 0]], [[1, 0, 0], [3, 0, 0]])  # collinear segments in 3-d
    assert not overlap([[0, 0, 0], [1, 0, 0]], [[2, 0, 0], [3, 0, 0]])
    assert overlap([[1, 2]], [[1, 2], [1, 2]])  # one repeated point
    assert not overlap([[1, 2]], [[1, 3]])


def test_hulls_overlap_agrees_with_the_common_point_lp():
    rng = np.random.default_rng(0)
    answers = []
    for shift in np.linspace(0.0, 3.0, 12):
        A, B = rng.normal(size=(25, 5)), rng.normal(size=(20, 5)) + shift
        answers.append(hulls_overlap(A, B))
        assert answers[-1] == common_point_exists(A, B)
    assert 0 < sum(answers) < len(answers)


@pytest.mark.parametrize("gap", [0.3, -0.1])
def test_rows_join_the_lp_until_the_plane_clears_all_or_the_rows_overlap(monkeypatch, gap):
    """Two long parallel bands: the rows nearest each other along the centroid difference sit at opposite ends,
    so the first plane misses rows and more must join before the LP's answer holds for every row."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 10, size=(2, 400))
    A = np.column_stack([x[0], 0.1 * x[0] + gap + rng.uniform(0, 0.5, 400)])
    B = np.column_stack([x[1], 0.1 * x[1] - gap - rng.uniform(0, 0.5, 400)])
    calls = []
    solve = directprobe_module._plane_lp
    monkeypatch.setattr(directprobe_module, "_plane_lp", lambda P, Q: calls.append(len(P) + len(Q)) or solve(P, Q))
    plane = directprobe_module._lp_plane(A, B)
    assert (plane is None) == common_point_exists(A, B) == (gap < 0)
    assert max(calls) < len(A) + len(B), "the LP never needed every row"
    if gap > 0:
        assert len(calls) > 1, "the first rows were not enough"
        assert (A @ plane[:-1] + plane[-1]).min() > 0 > (B @ plane[:-1] + plane[-1]).max()


def test_the_nearest_points_of_the_hulls_decide_without_an_lp_both_ways(monkeypatch):
    rng = np.random.default_rng(4)
    monkeypatch.setattr(directprobe_module, "_plane_lp", lambda P, Q: pytest.fail("an LP was solved"))
    for shift, overlapping in ((0.0, True), (6.0, False)):
        A, B = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + shift
        assert hulls_overlap(A, B) == common_point_exists(A, B) == overlapping


def test_few_points_in_many_dimensions_are_separated_by_least_squares_without_an_lp(monkeypatch):
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(12, 40)), rng.normal(size=(9, 40))
    monkeypatch.setattr(directprobe_module, "_plane_lp", lambda P, Q: pytest.fail("an LP was solved"))
    plane = directprobe_module._separating_plane(A, B)
    assert (A @ plane[:-1] + plane[-1]).min() > 0 > (B @ plane[:-1] + plane[-1]).max()
    assert not common_point_exists(A, B)


def test_separable_labels_give_one_cluster_per_label():
    X, y = blobs([[0, 0, 0, 0], [6, 0, 0, 0], [0, 6, 0, 0]], 50, 1.0, seed=1)
    ids = cluster_labels(X, y)
    assert len(np.unique(ids)) == 3
    assert partition(ids) == partition(y)


def test_xor_checkerboard_needs_four_clusters():
    rng = np.random.default_rng(2)
    corner = rng.integers(0, 2, size=(200, 2))
    X = corner + 0.05 + 0.9 * rng.random((200, 2))
    y = corner[:, 0] ^ corner[:, 1]
    ids = cluster_labels(X, y)
    assert len(np.unique(ids)) == 4
    square = 2 * corner[:, 0] + corner[:, 1]
    assert len({np.bincount(ids[square == s]).argmax() for s in range(4)}) == 4


def test_clusters_are_label_pure_and_no_two_labels_overlap():
    X, y = blobs([[0, 0], [1.5, 0], [0.7, 1.2]], 40, 0.6, seed=3)
    y = y % 2
    ids = cluster_labels(X, y)
    clusters = [np.flatnonzero(ids == k) for k in np.unique(ids)]
    assert len(clusters) > 2
    assert all(len(np.unique(y[rows])) == 1 for rows in clusters)
    for i, p in enumerate(clusters):
        for q in clusters[i + 1 :]:
            if y[p[0]] != y[q[0]]:
                assert not hulls_overlap(X[p], X[q])


@pytest.mark.parametrize("seed, d", [(4, 2), (5, 3)])
def test_clustering_matches_the_naive_greedy_loop(seed, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, d))
    y = (X[:, 0] + 0.8 * rng.normal(size=60) > 0).astype(int) + (rng.random(60) < 0.15)
    assert partition(cluster_labels(X, y)) == naive_clusters(X, y)


def test_margin_of_two_points_is_their_distance():
    assert max_margin_distance([[0.0, 0.0]], [[0.0, 2.0]]) == pytest.approx(2.0, abs=1e-12)


def test_margin_of_parallel_segments_is_their_gap():
    assert max_margin_distance([[0, 0], [1, 0]], [[-5, 3], [7, 3]]) == pytest.approx(3.0, abs=1e-12)


def test_margin_of_overlapping_hulls_is_zero():
    assert max_margin_distance(TRIANGLE, TRIANGLE + [1.0, 0.5]) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_margin_agrees_with_a_hard_margin_svm(seed):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) + rng.normal(size=4) * 2
    if hulls_overlap(A, B):
        B = B + 2 * (B.mean(axis=0) - A.mean(axis=0))
    svm = SVC(kernel="linear", C=1e8, tol=1e-10).fit(np.vstack([A, B]), np.repeat([0, 1], [len(A), len(B)]))
    assert max_margin_distance(A, B) == pytest.approx(2 / np.linalg.norm(svm.coef_), abs=1e-4)


def test_margin_is_below_every_pairwise_distance_and_grows_on_a_subset():
    rng = np.random.default_rng(6)
    A, B = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) + 2.0
    width = max_margin_distance(A, B)
    assert 0 < width < np.linalg.norm(A[:, None] - B[None], axis=2).min()
    assert max_margin_distance(A, B[:5]) > width


def test_directprobe_is_invariant_to_translation_and_rotation():
    X, which = blobs([[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 1]], 25, 0.7, seed=7)
    y = np.array(["a", "b", "b", "a"])[which]
    moved = X @ special_ortho_group.rvs(3, random_state=8) + [50.0, -20.0, 3.0]
    first, second = directprobe(X, y), directprobe(moved, y)
    assert partition(cluster_labels(X, y)) == partition(cluster_labels(moved, y))
    assert first["n_clusters"] == second["n_clusters"] > 2
    assert first["min_distance"].keys() == {("a", "b")}
    for key in ("min_distance", "mean_distance"):
        assert second[key][("a", "b")] == pytest.approx(first[key][("a", "b")], rel=1e-7)
    assert second["mean_distance_all"] == pytest.approx(first["mean_distance_all"], rel=1e-7)


def test_directprobe_summarises_each_label_pair():
    X, y = blobs([[0, 0], [10, 0], [0, 10]], 20, 0.5, seed=9)
    result = directprobe(X, y)
    assert (result["n_clusters"], result["n_labels"], result["n_points"]) == (3, 3, 60)
    assert set(result["min_distance"]) == {(0, 1), (0, 2), (1, 2)}
    for (a, b), value in result["min_distance"].items():
        assert value == pytest.approx(max_margin_distance(X[y == a], X[y == b]))
        assert value == result["mean_distance"][(a, b)]
    assert result["min_distance_all"] == min(result["min_distance"].values())
    assert result["min_distance"][(1, 2)] > result["min_distance"][(0, 1)]


def test_a_point_carrying_two_labels_stays_alone_at_distance_zero():
    X, y = blobs([[0, 0], [5, 0]], 15, 0.5, seed=11)
    X, y = np.vstack([X, X[3]]), np.append(y, 1)
    result = directprobe(X, y)
    assert result["min_distance"][(0, 1)] == 0.0
    assert result["n_clusters"] > 2
    ids = cluster_labels(X, y)
    assert np.sum(ids == ids[3]) == 1 and np.sum(ids == ids[-1]) == 1


def test_subsampling_is_seeded_stratified_and_exact_in_size():
    y = np.repeat([0, 1, 2], [300, 90, 2])
    first, again, other = (_stratified_sample(y, 100, seed) for seed in (1, 1, 2))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(first) == 100 and len(np.unique(first)) == 100
    assert np.unique(y[first]).tolist() == [0, 1, 2]


def test_stratified_allocation_computed_by_hand():
    """9, 6, 2, 1 rows, keep 8: one each, then 4 split 8:5:1:0 = 2.29, 1.43, 0.29, 0; floors 2, 1, 0, 0, last row to the
    largest remainder (b): 3, 3, 1, 1. Pure proportion gives 4, 3, 1, 0; splitting 4 as 9:6:2:1 gives 3, 2, 2, 1."""
    y = np.random.default_rng(0).permutation(np.repeat(np.array(["d", "b", "a", "c"]), [1, 6, 9, 2]))
    for seed in range(3):
        picked = _stratified_sample(y, 8, seed)
        assert len(np.unique(picked)) == 8
        labels, counts = np.unique(y[picked], return_counts=True)
        assert dict(zip(labels.tolist(), counts.tolist())) == {"a": 3, "b": 3, "c": 1, "d": 1}


def test_directprobe_subsample_is_deterministic_given_seed():
    X, which = blobs([[0, 0], [1, 0], [0, 1], [1, 1]], 40, 0.4, seed=10)
    y = which % 2
    first, again = directprobe(X, y, max_points=60, seed=3), directprobe(X, y, max_points=60, seed=3)
    assert first == again and first["n_points"] == 60
    assert directprobe(X, y, max_points=500)["n_points"] == 160


@pytest.mark.parametrize(
    "call",
    [
        lambda: hulls_overlap(np.zeros((3, 2)), np.zeros((3, 3))),
        lambda: hulls_overlap([[0.0, np.nan]], [[1.0, 1.0]]),
        lambda: max_margin_distance(np.zeros((0, 2)), np.ones((1, 2))),
        lambda: cluster_labels(np.zeros((4, 2)), [0, 1, 0]),
        lambda: directprobe(np.eye(3), [1, 1, 1]),
        lambda: directprobe(np.eye(3), [0, 1, 2], max_points=2),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_one_vector_in_every_row_is_refused_at_once():
    """The layer-0 [CLS] vector: every point coincides, so no cluster structure exists (and the search would
    build one cluster per point, slowly)."""
    X = np.tile(np.arange(4.0), (40, 1))
    with pytest.raises(ValueError, match="same vector in every row"):
        directprobe(X, np.arange(40) % 2)


SQUARE = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)


@pytest.mark.parametrize("a_shift, b_shift, clusters, low, mean", [
    ((0, 10), 3, 3, 2.0, 4.0),   # B between the two A squares: A cannot merge over it; gaps 2 and 6
    ((0, 3), 10, 2, 6.0, 6.0),   # both A squares left of B: they merge; one gap of 10 - 4
])
def test_clusters_and_distances_computed_by_hand_in_two_dimensions(a_shift, b_shift, clusters, low, mean):
    """Unit squares on a line: the clusters and the hull-to-hull gaps can be read off a drawing."""
    X = np.vstack([SQUARE + [a_shift[0], 0], SQUARE + [b_shift, 0], SQUARE + [a_shift[1], 0]])
    y = np.repeat([0, 1, 0], 4)
    result = directprobe(X, y)
    assert result["n_clusters"] == clusters
    assert result["min_distance_all"] == pytest.approx(low, abs=1e-6)
    assert result["mean_distance_all"] == pytest.approx(mean, abs=1e-6)
