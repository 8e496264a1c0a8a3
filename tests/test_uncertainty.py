"""Intervals: the sentence bootstrap covers a known value at its nominal rate where a token bootstrap does not, the
draws are shared by every model on the same rows, and seeds add their spread as a second level."""

import numpy as np
import pytest

from repshift.metrics import sample_rows
from repshift.uncertainty import percentile_interval, seed_replicates, sentence_resamples


def clustered(rng, n_sentences=60, mean_length=12):
    """Token values whose sentences share a random offset (sd 1) on top of token noise (sd 1); true mean 0."""
    lengths = rng.integers(mean_length // 2, mean_length * 3 // 2, n_sentences)
    groups = np.repeat(np.arange(n_sentences), lengths)
    return rng.normal(size=n_sentences)[groups] + rng.normal(size=len(groups)), groups


def covered(resample, trials=300, n_boot=200) -> float:
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(trials):
        values, groups = clustered(rng)
        low, high = percentile_interval([values[rows].mean() for rows in resample(groups, n_boot, trial)])
        hits += low <= 0 <= high
    return hits / trials


def token_resamples(groups, n_boot, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, len(groups), len(groups)) for _ in range(n_boot)]


def test_sentence_bootstrap_covers_the_true_value_at_its_nominal_rate_and_a_token_bootstrap_does_not():
    """Tokens of one sentence are correlated: resampling tokens treats ~720 of them as independent and covers the
    true mean about 60% of the time; resampling the 60 sentences covers it about 93% of the time (nominal 95%)."""
    assert 0.90 <= covered(sentence_resamples) <= 0.985
    assert covered(token_resamples) < 0.75


def test_resamples_take_whole_sentences_and_are_the_same_for_every_model_on_the_same_rows():
    groups = np.repeat([7, 3, 9, 4], [2, 3, 1, 4])
    draws = sentence_resamples(groups, 50, seed=1)
    assert [d.tolist() for d in draws] == [d.tolist() for d in sentence_resamples(groups.copy(), 50, seed=1)]
    for rows in draws:
        counts = np.bincount(rows, minlength=len(groups))
        for sentence in np.unique(groups):
            assert len(set(counts[groups == sentence])) == 1, "a sentence's tokens are drawn together"
        assert sum(counts[groups == s][0] for s in np.unique(groups)) == 4, "as many sentences as there are"
    assert len({tuple(d) for d in draws}) > 20


def test_percentile_interval_reads_the_tails_and_skips_undefined_replicates():
    replicates = np.r_[np.arange(1, 1001), np.nan, np.inf]
    assert percentile_interval(replicates) == pytest.approx((25.975, 975.025))
    assert percentile_interval([np.nan, 1.0]) == (pytest.approx(np.nan, nan_ok=True),) * 2


def test_seed_level_keeps_sentence_draws_aligned_and_adds_the_seed_spread():
    sentence = np.random.default_rng(2).normal(scale=0.01, size=400)
    same = np.vstack([sentence, sentence, sentence])
    np.testing.assert_allclose(seed_replicates(same, 400, seed=0), sentence, atol=1e-15)
    apart = np.vstack([sentence, sentence + 1.0, sentence + 2.0])
    low, high = percentile_interval(seed_replicates(apart, 2000, seed=0))
    assert low < 0.5 and high > 1.5, "seeds that disagree widen the interval far beyond the sentence noise"
    np.testing.assert_array_equal(seed_replicates(sentence[None], 400, seed=0), sentence)


def test_seed_level_alone_covers_a_mean_of_many_seeds():
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(300):
        seeds = rng.normal(size=(20, 1))
        low, high = percentile_interval(seed_replicates(seeds, 1000, seed=trial))
        hits += low <= 0 <= high
    assert 0.88 <= hits / 300 <= 0.99


def test_a_sample_from_a_length_sorted_file_is_distributed_like_one_from_a_shuffled_file():
    """metrics samples token rows at random across the file, so the order sentences are stored in (the extract step
    stores them by length) cannot bias which sentences a measure sees."""
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(4)
    lengths = rng.integers(3, 60, 500)
    stored_sorted = np.repeat(np.sort(lengths), np.sort(lengths))
    stored_shuffled = np.repeat(shuffled := rng.permutation(lengths), shuffled)
    samples = [stored[sample_rows(np.arange(len(stored)), 2000, seed=0)] for stored in (stored_sorted,
                                                                                         stored_shuffled)]
    assert ks_2samp(*samples).pvalue > 0.01
    assert abs(samples[0].mean() - samples[1].mean()) < 2
    assert samples[0].max() >= 55 and samples[0].min() <= 5, "long and short sentences both enter the sample"
    first_rows = stored_sorted[:2000]
    assert ks_2samp(first_rows, samples[1]).pvalue < 1e-6, "the first rows of a sorted file would be biased"
