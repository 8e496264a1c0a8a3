"""The metrics walker: per-row measures, top-layer measures, shared bootstrap resamples and derived intervals, on
synthetic views (no activation file)."""

import numpy as np
import pytest

from repshift import catalog
from repshift.metrics import View, walk_layers
from repshift.uncertainty import percentile_interval, sentence_resamples

LAYERS, SENTENCES, PER_SENTENCE = 3, 60, 8
SHARED = {"seed": 0, "n_boot": 30, "interval_layers": "all", "layer_by_layer": [], "probe_role": "dev",
          "probe_test_fraction": 0.25, "probe_l2": 1e-3, "probe_iterations": 50, "head": None}


def token_view(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(SENTENCES), PER_SENTENCE)
    scales = np.linspace(3.0, 0.5, 12)
    layers = [rng.normal(size=(len(groups), 12)) * scales * (1 + layer) for layer in range(LAYERS)]
    frequency = rng.integers(1, 50, len(groups))
    return View(layers, {"frequency": frequency, "frequency_bin": frequency % 5}, groups)


def walk(names, view, shared=SHARED):
    chosen = {name: dict(catalog.get(name).settings) for name in names}
    return walk_layers(lambda representation: view, chosen, shared)


SHARED_WORK = ["top_pc_variance_ratio", "dominant_directions", "pcs_for_90pct_variance", "frequency_pc1_abs_spearman",
               "frequency_top5pc_max_abs_spearman", "isoscore", "average_cosine", "average_cosine_standardized",
               "rogue_top1_share", "isotropy_raw", "isotropy_centred"]


def test_every_layer_of_a_bootstrap_measure_gets_the_interval_of_its_own_recomputation():
    """Measures of one resample share its copy and what isotropy computes from it once; each replicate must still
    equal the measure recomputed alone on that resample."""
    view = token_view()
    rows = walk(SHARED_WORK, view)
    draws = sentence_resamples(view.groups, SHARED["n_boot"], SHARED["seed"])
    for row in rows:
        measure = catalog.get(row["measure"])
        compute = measure.bind(measure.settings, SHARED)
        x, y = view.layers[row["layer"]], view.targets["frequency"]
        expected = [compute(x[d], y[d], view.groups[d]) if measure.target else compute(x[d]) for d in draws]
        assert np.allclose(np.array(row["replicates"].split(), dtype=float), expected, rtol=1e-5), row["measure"]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(percentile_interval(expected), rel=1e-5)
    assert len(rows) == len(SHARED_WORK) * LAYERS


def test_claims_layers_of_the_claims_probe_sets_only_by_default_and_none_without_n_boot():
    view = token_view()
    claims_layers = walk(["isotropy_raw"], view, {**SHARED, "interval_layers": "claims"})
    assert [("ci_low" in r) for r in claims_layers] == [False, True, True]
    assert not any("ci_low" in r for r in walk(["isotropy_raw"], view, {**SHARED, "n_boot": 0}))
    out_of_domain = {**SHARED, "interval_layers": "claims", "probe_role": catalog.OUT_OF_DOMAIN}
    assert catalog.OUT_OF_DOMAIN not in catalog.get("isotropy_raw").bootstrap, "no claim reads it out of domain"
    assert not any("ci_low" in r for r in walk(["isotropy_raw"], view, out_of_domain))
    assert all("ci_low" in r for r in walk(["isotropy_raw"], view, {**out_of_domain, "interval_layers": "all"}))


def sentence_view(seed=1, n=200, d=10):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    layers = [rng.normal(size=(n, d)) + strength * labels[:, None] for strength in (0.0, 1.0, 3.0)]
    return View(layers, {"label": labels}, np.arange(n))


def test_a_per_row_probe_is_the_mean_of_its_scores_with_a_sentence_interval_at_every_layer():
    view = sentence_view()
    rows = walk(["task_probe_accuracy"], view, {**SHARED, "interval_layers": "claims"})
    cls = [r for r in rows if r["representation"] == "cls"]
    assert [r["layer"] for r in cls] == [0, 1, 2]
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in cls)
    assert cls[0]["ci_low"] < 0.6 and cls[2]["value"] > 0.9
    replicates = np.array(cls[1]["replicates"].split(), dtype=float)
    assert np.all((replicates >= 0) & (replicates <= 1)) and replicates.std() > 0


def test_a_top_layer_measure_is_read_only_at_the_top_and_needs_a_head():
    view = sentence_view()
    head = lambda X: np.column_stack([-X.sum(axis=1), X.sum(axis=1) - 15.0])  # noqa: E731
    rows = walk(["head_accuracy"], view, {**SHARED, "head": head})
    assert [(r["representation"], r["layer"]) for r in rows] == [("cls", LAYERS - 1)]
    expected = (head(view.layers[-1]).argmax(axis=1) == view.targets["label"]).mean()
    assert rows[0]["value"] == pytest.approx(expected) and rows[0]["value"] > 0.9
    assert walk(["head_accuracy"], view) == [], "the pre-trained model has no head"


def test_a_derived_measure_takes_its_interval_from_its_inputs_paired_replicates():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(150), 4)
    tags = rng.integers(0, 3, len(groups))
    layers = [rng.normal(size=(len(groups), 6)) + 2.0 * np.eye(6)[tags] for _ in range(2)]
    view = View(layers, {"tag": tags, "control_tag": rng.integers(0, 3, len(groups))}, groups)
    rows = walk(["pos_probe_accuracy", "pos_control_accuracy", "pos_selectivity"], view)
    by = {(r["measure"], r["layer"]): r for r in rows}
    for layer in range(2):
        task, control, selectivity = (by[name, layer] for name in
                                      ("pos_probe_accuracy", "pos_control_accuracy", "pos_selectivity"))
        paired = (np.array(task["replicates"].split(), dtype=float)
                  - np.array(control["replicates"].split(), dtype=float))
        assert selectivity["value"] == pytest.approx(task["value"] - control["value"])
        assert (selectivity["ci_low"], selectivity["ci_high"]) == pytest.approx(percentile_interval(paired), rel=1e-5)
        assert selectivity["ci_low"] > 0.3


def test_linear_and_debiased_cka_stream_every_token_once_and_equal_their_all_pairs_forms():
    from repshift import similarity

    view, reads = token_view(), []
    rows = np.arange(len(view.groups))
    every = [layer[rows] for layer in view.layers]

    def chunks():
        reads.append(1)
        yield from ([layer[lo:lo + 100] for layer in every] for lo in range(0, len(rows), 100))

    streamed = View(view.layers[:], view.targets, view.groups, stream=chunks)
    shared = {**SHARED, "layer_by_layer": ["linear_cka", "debiased_cka"], "n_boot": 0}
    chosen = {name: dict(catalog.get(name).settings) for name in ("linear_cka", "debiased_cka")}
    found = {(r["measure"], r["layer"], r["layer_b"]): r["value"]
             for r in walk_layers(lambda representation: streamed, chosen, shared) if r.get("layer_b") is not None}
    assert len(reads) == 1, "the second CKA takes the first one's sums"
    for debiased, name in ((False, "linear_cka"), (True, "debiased_cka")):
        expected = similarity.cka_matrix(every, debiased=debiased, form="gram")
        for a in range(LAYERS):
            for b in range(LAYERS):
                if (name, a, b) in found:
                    assert found[(name, a, b)] == pytest.approx(expected[a, b], rel=1e-9), (name, a, b)
    assert {key[0] for key in found} == {"linear_cka", "debiased_cka"}
