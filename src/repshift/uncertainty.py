"""Intervals: a bootstrap over sentences within one model, and over seeds then sentences across fine-tuning runs.

Every model compared on a probe set draws the same sentence resamples (seeded by the probe set's rows and the
metrics seed), so replicate b of the pre-trained and of each fine-tuned model saw the same sentences and a
difference between them is bootstrapped pairwise.
"""

import numpy as np

LEVEL = 0.95
DEV_BOOT, DEV_SEED = 2000, 0  # resamples of a dev metric's examples (fine-tuning, layer drop)


def sentence_resamples(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """n_boot row-index arrays, each the rows of len(unique(groups)) sentences drawn with replacement (a sentence
    drawn twice contributes its rows twice): the cluster bootstrap, so tokens of one sentence move together."""
    sentences, inverse = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng([seed, len(groups), len(sentences)])
    rows = np.arange(len(groups))
    return [np.repeat(rows, rng.multinomial(len(sentences), np.full(len(sentences), 1 / len(sentences)))[inverse])
            for _ in range(n_boot)]


def percentile_interval(replicates, level: float = LEVEL) -> tuple[float, float]:
    """The equal-tailed percentile interval of finite bootstrap replicates; NaNs when fewer than two are finite."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def seed_replicates(per_seed: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The two-level bootstrap of a mean over seeds: per_seed is seeds x replicates (each seed's sentence
    replicates, the same sentence draw in column b); replicate b averages column b over seeds drawn with
    replacement. A single seed gives its own sentence replicates (no seed-to-seed spread can be measured)."""
    per_seed = np.atleast_2d(np.asarray(per_seed, dtype=np.float64))
    n_seeds, available = per_seed.shape
    rng = np.random.default_rng(seed)
    columns = np.arange(n_boot) % available
    drawn = rng.integers(0, n_seeds, size=(n_boot, n_seeds)) if n_seeds > 1 else np.zeros((n_boot, 1), int)
    return per_seed[drawn, columns[:, None]].mean(axis=1)


def metric_replicates(metric, predicted: np.ndarray, gold: np.ndarray, resamples: list[np.ndarray]) -> np.ndarray:
    """metric(predicted, gold) on each resample of the units (sentence_resamples of their examples: an example's
    units, e.g. a sentence's words, move together)."""
    return np.array([metric(predicted[rows], gold[rows]) for rows in resamples])


def replicates_text(replicates) -> str:
    """Replicates as a table cell: space-separated, 6 significant digits."""
    return " ".join(f"{r:.6g}" for r in replicates)


def replicates_from_text(text) -> np.ndarray | None:
    """A table cell's replicates; None where the cell holds none."""
    return np.array(text.split(), dtype=np.float64) if isinstance(text, str) and text else None
