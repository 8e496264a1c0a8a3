import itertools
import warnings

import numpy as np
import pytest
import torch
from ckatorch.core import cka_base
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import calc_rdm, compare
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset
from torch_cka import CKA

from repshift import similarity
from repshift.similarity import (
    average_ranks,
    block_diagonality,
    cka_between,
    cka_matrix,
    debiased_cka,
    linear_cka,
    permuted_linear_cka,
    rsa,
)

FORMS = ["feature", "gram"]


def related(n, d1, d2, noise, seed):
    """X (n x d1) and Y = X A + noise (n x d2): a random linear map of X plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) * rng.exponential(size=d1) + rng.normal(size=d1)
    return X, X @ rng.normal(size=(d1, d2)) + noise * rng.normal(size=(n, d2))


def torch_cka(X, Y, batch_size):
    """torch-cka's minibatch CKA (Nguyen et al. 2021) of X and Y over consecutive batches, in float64."""
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        reference = CKA(torch.nn.Sequential(torch.nn.Identity()), torch.nn.Sequential(torch.nn.Identity()),
                        model1_name="a", model2_name="b", model1_layers=["0"], model2_layers=["0"])
        reference.compare(DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=batch_size),
                          DataLoader(TensorDataset(torch.from_numpy(Y)), batch_size=batch_size))
    finally:
        torch.set_default_dtype(default_dtype)
    return reference.hsic_matrix[0, 0].item()


def cka(debiased):
    return debiased_cka if debiased else linear_cka


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(60, 8), (12, 40)])
def test_invariances_and_self_similarity(debiased, shape):
    rng = np.random.default_rng(0)
    X = rng.normal(size=shape)
    Y = rng.normal(size=shape)
    Q, _ = np.linalg.qr(rng.normal(size=(shape[1], shape[1])))
    measure = cka(debiased)
    assert measure(X, X) == pytest.approx(1, abs=1e-12)
    assert measure(X, X @ Q) == pytest.approx(1, abs=1e-12)
    assert measure(X, 1e-3 * X + 5.0) == pytest.approx(1, abs=1e-12)
    assert abs(measure(X, Y)) < 0.9
    assert measure(7.0 * X, 0.01 * Y) == pytest.approx(measure(X, Y), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(50, 7, 11), (9, 30, 14)])
def test_feature_and_gram_forms_agree(debiased, shape):
    X, Y = related(*shape, noise=3.0, seed=1)
    feature = cka(debiased)(X, Y, form="feature")
    assert 0.05 < abs(feature) < 0.99
    assert cka(debiased)(X, Y, form="gram") == pytest.approx(feature, rel=1e-10)


def test_biased_cka_is_inflated_by_many_features_and_debiased_is_not():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(40, 4000)), rng.normal(size=(40, 4000))
    assert linear_cka(X, Y) > 0.5
    assert abs(debiased_cka(X, Y)) < 0.1


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(80, 10, 6), (15, 40, 25)])
def test_agrees_with_ckatorch(debiased, shape):
    X, Y = related(*shape, noise=2.0, seed=3)
    reference = cka_base(torch.from_numpy(X), torch.from_numpy(Y), kernel="linear", unbiased=debiased).item()
    assert cka(debiased)(X, Y) == pytest.approx(reference, rel=1e-6)


def test_debiased_agrees_with_torch_cka_on_one_full_batch():
    """torch-cka is minibatch CKA (Nguyen et al. 2021): with a single batch of all n rows it is debiased CKA."""
    X, Y = related(50, 12, 9, noise=2.0, seed=4)
    assert debiased_cka(X, Y) == pytest.approx(torch_cka(X, Y, batch_size=len(X)), rel=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_cka_matrix_equals_pairwise_cka(debiased, form, monkeypatch):
    monkeypatch.setattr(similarity, "_CHUNK_VALUES", 200)
    rng = np.random.default_rng(5)
    layers = [rng.normal(size=(30, 5))]
    for width in (7, 3, 12):
        mixed = np.tanh(layers[-1] @ rng.normal(size=(layers[-1].shape[1], width)))
        layers.append(mixed + 0.3 * rng.normal(size=(30, width)))
    matrix = cka_matrix(layers, debiased=debiased, form=form)
    pairwise = np.array([[cka(debiased)(a, b, form="gram") for b in layers] for a in layers])
    np.testing.assert_allclose(matrix, pairwise, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert matrix[0, 3] < 0.9


def test_cka_matrix_takes_a_stacked_array():
    rng = np.random.default_rng(6)
    stacked = rng.normal(size=(4, 25, 6)).cumsum(axis=0)
    np.testing.assert_allclose(cka_matrix(stacked), cka_matrix(list(stacked)), atol=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_between_compares_layer_l_with_layer_l(debiased):
    rng = np.random.default_rng(7)
    base = [rng.normal(size=(40, 6)) for _ in range(3)]
    tuned = [layer @ rng.normal(size=(6, 6)) + k * rng.normal(size=(40, 6)) for k, layer in enumerate(base)]
    values = cka_between(base, tuned, debiased=debiased)
    np.testing.assert_allclose(values, [cka(debiased)(a, b) for a, b in zip(base, tuned)], atol=1e-12)
    assert values[0] > values[2]
    with pytest.raises(ValueError, match="same number of layers"):
        cka_between(base, tuned[:2])


def test_permuted_cka_is_the_mean_over_every_row_order():
    """Exact on 6 rows: the mean of the Gram-form CKA over all 720 orders of Y's rows."""
    X, Y = related(6, 3, 2, noise=0.5, seed=3)
    every_order = [gram_cka(X, Y[list(order)], False) for order in itertools.permutations(range(6))]
    assert permuted_linear_cka(X, Y) == pytest.approx(np.mean(every_order), rel=1e-12)
    assert permuted_linear_cka(X, Y) < gram_cka(X, Y, False)


def test_permuted_cka_matches_sampled_orders_and_sits_far_below_related_data():
    X, Y = related(200, 20, 15, noise=1.0, seed=9)
    draws = np.random.default_rng(4)
    sampled = [gram_cka(X, Y[draws.permutation(200)], False) for _ in range(2000)]
    assert permuted_linear_cka(X, Y) == pytest.approx(np.mean(sampled), abs=3 * np.std(sampled) / np.sqrt(2000))
    assert linear_cka(X, Y) > 0.8 and permuted_linear_cka(X, Y) < 0.3 * linear_cka(X, Y)
    assert np.isnan(permuted_linear_cka(X, np.ones((200, 3))))


def test_block_diagonality_finds_a_planted_split():
    rng = np.random.default_rng(10)
    first = np.arange(12) < 5
    M = np.where(first[:, None] == first[None, :], 0.9, 0.3) + 0.05 * rng.normal(size=(12, 12))
    M = (M + M.T) / 2
    np.fill_diagonal(M, 1.0)
    score, split = block_diagonality(M)
    assert split == 5
    assert score == pytest.approx(0.6, abs=0.05)


def test_a_single_outlier_layer_is_not_a_block():
    """Layer 0 unlike every other layer and layers 1-5 alike: with one-layer blocks allowed, splitting off layer 0
    wins (0.6 - 0.1 = 0.5); Phang et al.'s blocks are groups of layers, so the best split keeps 2 or more a side."""
    M = np.full((6, 6), 0.6)
    M[0, 1:] = M[1:, 0] = 0.1
    np.fill_diagonal(M, 1.0)
    assert block_diagonality(M, min_block=1) == (pytest.approx(0.5), 1)
    score, split = block_diagonality(M)
    assert split >= 2 and score < 0.2


def test_block_diagonality_scores_a_uniform_matrix_zero():
    M = np.full((9, 9), 0.7)
    np.fill_diagonal(M, 1.0)
    assert block_diagonality(M)[0] == pytest.approx(0, abs=1e-12)
    noise = np.random.default_rng(11).normal(scale=0.01, size=(9, 9))
    assert abs(block_diagonality(M + (noise + noise.T) / 2)[0]) < 0.02


@pytest.mark.parametrize("method, rsatoolbox_method", [("pearson", "corr"), ("spearman", "spearman")])
def test_rsa_agrees_with_rsatoolbox(method, rsatoolbox_method):
    """rsatoolbox has no cosine RDM; its 'correlation' RDM is 1 - Pearson r of the rows after removing each row's
    mean. The rows of [X, -X] have mean 0, so calc_rdm(Dataset([X, -X]), method='correlation') is exactly
    1 - cosine(x_i, x_j). Pearson and Spearman correlations of 1 - S equal those of S, so
    compare(method='corr' / 'spearman') of these RDMs is rsa(method='pearson' / 'spearman').
    """
    X, Y = related(40, 10, 8, noise=2.0, seed=12)
    rdm_x, rdm_y = (calc_rdm(Dataset(np.hstack([A, -A])), method="correlation") for A in (X, Y))
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(rdm_x.get_matrices()[0], 1 - unit @ unit.T, atol=1e-12)
    reference = compare(rdm_x, rdm_y, method=rsatoolbox_method)[0, 0]
    assert 0.1 < reference < 0.99
    assert rsa(X, Y, method=method) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_rsa_is_one_for_a_scaled_copy_and_ignores_row_norms(method):
    X, Y = related(30, 6, 6, noise=1.0, seed=13)
    assert rsa(X, 3 * X, method=method) == pytest.approx(1, abs=1e-12)
    row_scales = np.random.default_rng(14).uniform(0.1, 10, size=(30, 1))
    assert rsa(X, row_scales * Y, method=method) == pytest.approx(rsa(X, Y, method=method), abs=1e-12)
    assert rsa(X, Y, method=method) < 0.99


def test_constant_representation_gives_nan_without_warning():
    X = np.random.default_rng(15).normal(size=(20, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(linear_cka(X, np.ones((20, 3))))
        assert np.isnan(debiased_cka(X, np.ones((20, 3))))


MEASURES = [
    linear_cka,
    debiased_cka,
    rsa,
    lambda X, Y: cka_matrix([X, Y]),
    lambda X, Y: cka_between([X], [Y]),
    permuted_linear_cka,
]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize(
    "X, Y, message",
    [
        (np.ones((10, 3)), np.ones((11, 3)), "same number of rows"),
        (np.ones((1, 3)), np.ones((1, 3)), "at least"),
        (np.ones((10, 3)), np.ones(10), "2-D"),
        (np.ones((10, 3)), np.full((10, 3), np.nan), "finite"),
    ],
)
def test_bad_input_raises(measure, X, Y, message):
    with pytest.raises(ValueError, match=message):
        measure(X, Y)


def test_measure_specific_bad_input_raises():
    X = np.random.default_rng(16).normal(size=(3, 4))
    with pytest.raises(ValueError, match="at least 4 rows"):
        debiased_cka(X, X)
    with pytest.raises(ValueError, match="all-zero row"):
        rsa(X, np.vstack([X[:2], np.zeros(4)]))
    with pytest.raises(ValueError, match="method"):
        rsa(X, X, method="kendall")
    with pytest.raises(ValueError, match="form"):
        linear_cka(X, X, form="dual")
    with pytest.raises(ValueError, match="square"):
        block_diagonality(np.ones((3, 4)))
    with pytest.raises(ValueError, match="two blocks of 2"):
        block_diagonality(np.eye(3))
    with pytest.raises(ValueError, match="finite"):
        block_diagonality(np.full((4, 4), np.nan))


def test_average_ranks_match_scipy_with_ties():
    rng = np.random.default_rng(5)
    for values in (rng.standard_normal(1000), rng.integers(0, 7, 1000).astype(float), np.ones(5), np.arange(3.0)):
        np.testing.assert_array_equal(average_ranks(values), stats.rankdata(values))


def test_weighted_average_ranks_are_scipys_ranks_of_the_repeated_values():
    rng = np.random.default_rng(6)
    values, counts = rng.integers(0, 9, 300).astype(float), rng.integers(0, 4, 300)
    repeated = stats.rankdata(np.repeat(values, counts))
    first_copy = np.cumsum(counts) - counts
    np.testing.assert_array_equal(average_ranks(values, counts)[counts > 0], repeated[first_copy[counts > 0]])


def test_pearson_rsa_in_feature_space_equals_the_correlation_of_the_similarity_entries():
    """Nearly parallel rows (mean cosine 0.99) are where sums of squares cancel most."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(150, 20)) * 0.1 + 3.0
    Y = X + rng.normal(size=(150, 20)) * 0.05
    upper = np.triu_indices(150, k=1)
    entries = [(Z / np.linalg.norm(Z, axis=1, keepdims=True)) for Z in (X, Y)]
    expected = stats.pearsonr((entries[0] @ entries[0].T)[upper], (entries[1] @ entries[1].T)[upper])[0]
    assert rsa(X, Y, method="pearson") == pytest.approx(expected, rel=1e-8)
    assert np.isnan(rsa(np.ones((5, 3)), rng.normal(size=(5, 3)), method="pearson"))


@pytest.mark.parametrize("debiased", [False, True])
def test_streamed_cka_is_exact_over_chunks_and_large_offsets(debiased):
    """The one-pass shifted accumulator equals the Gram form, also when the mean dwarfs the spread."""
    rng = np.random.default_rng(8)
    layers = [rng.normal(size=(700, d)) * rng.exponential(size=d) + 1e4 * rng.normal(size=d) for d in (6, 9, 4)]
    layers[1][:, :6] += 0.5 * layers[0]
    stream = similarity.CKAStream(debiased)
    for lo in range(0, 700, 97):
        stream.add([a[lo : lo + 97] for a in layers])
    expected = cka_matrix(layers, debiased=debiased, form="gram")
    np.testing.assert_allclose(stream.matrix(), expected, rtol=1e-9, atol=1e-12)
    assert 0.1 < expected[0, 1] < 0.99


def test_minibatch_cka_agrees_with_torch_cka_over_several_batches():
    """torch-cka is Nguyen et al.'s minibatch CKA: the same batches give the same estimate."""
    X, Y = related(120, 10, 7, noise=2.0, seed=9)
    ours = similarity.minibatch_cka(X, Y, batch_size=30)
    assert ours == pytest.approx(torch_cka(X, Y, batch_size=30), rel=1e-6)
    assert abs(ours - debiased_cka(X, Y)) > 1e-4, "four batches of 30 are not the full-data estimate"
    stream = similarity.MinibatchCKA(30)
    for lo in range(0, 120, 17):
        stream.add([X[lo : lo + 17], Y[lo : lo + 17]])
    assert stream.matrix()[0, 1] == pytest.approx(ours, rel=1e-12)


def hsic(K, L, debiased):
    """HSIC of two Gram matrices written out here: biased tr(KHLH)/(n-1)^2, or Song et al.'s (2012) unbiased form."""
    n = len(K)
    if not debiased:
        H = np.eye(n) - np.ones((n, n)) / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    ones = np.ones(n)
    return (np.trace(K @ L) + ones @ K @ ones * (ones @ L @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ K @ L @ ones) / (n * (n - 3))


def gram_cka(X, Y, debiased):
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L, debiased) / np.sqrt(hsic(K, K, debiased) * hsic(L, L, debiased))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(40, 6, 9), (12, 30, 5)])
def test_every_cka_entry_point_agrees_with_hsic_written_out_in_gram_form(debiased, shape):
    """linear/debiased CKA, the layer x layer matrix and the per-layer comparison against an HSIC written in this
    test from its definition, not from the package's centring."""
    X, Y = related(*shape, noise=1.5, seed=11)
    Z = np.tanh(X[:, :3])
    expected = gram_cka(X, Y, debiased)
    assert 0.05 < abs(expected) < 0.99
    assert cka(debiased)(X, Y) == pytest.approx(expected, rel=1e-9)
    matrix = cka_matrix([X, Y, Z], debiased=debiased)
    np.testing.assert_allclose(matrix[[0, 0, 1], [1, 2, 2]],
                               [expected, gram_cka(X, Z, debiased), gram_cka(Y, Z, debiased)], rtol=1e-9)
    np.testing.assert_allclose(cka_between([X, Z], [Y, Y], debiased=debiased),
                               [expected, gram_cka(Z, Y, debiased)], rtol=1e-9)


@pytest.mark.parametrize("measure", [lambda X, Y, **w: similarity.rsa(X, Y, "pearson", **w),
                                     lambda X, Y, **w: similarity.linear_cka(X, Y, **w)])
def test_row_weights_give_the_measure_of_the_rows_repeated(measure):
    """A bootstrap replicate reads each drawn row once with its count: the value must be the one on the copy,
    including the pairs of a row with its own copies."""
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(40, 6)) + 0.5, rng.normal(size=(40, 4)) - 0.3
    Y[:, 0] += X[:, 0]
    counts = rng.integers(1, 4, 40)
    repeated = measure(np.repeat(X, counts, axis=0), np.repeat(Y, counts, axis=0))
    assert measure(X, Y, weights=counts) == pytest.approx(repeated, rel=1e-10)
    assert measure(X, Y, weights=np.ones(40)) == pytest.approx(measure(X, Y), rel=1e-10)
    assert measure(X, Y, weights=counts) != pytest.approx(measure(X, Y), rel=1e-3)
