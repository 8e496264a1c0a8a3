"""Claim verdicts follow their deciding numbers, intervals and thresholds: holds, does not hold, inconclusive when
the interval straddles the threshold, not measurable with the reason; every claim can come out either way."""

import numpy as np
import pandas as pd
import pytest

from repshift.claims import (FAILS, HOLDS, INCONCLUSIVE, MISSING, NOT_LEARNED, NOT_MEASURABLE, RULES, Estimate,
                             claims_table, decide, seed_estimate, verdict_summary)
from repshift.catalog import versus
from repshift.config import DEV_ROLE, FULL, OUT_OF_DOMAIN, TAGGED
from repshift.tasks import ACCURACY, KINDS
from repshift.uncertainty import DEV_BOOT, DEV_SEED, metric_replicates, replicates_text, sentence_resamples

LAYERS = 4
ROLES = {"dev-t": DEV_ROLE, "pos": TAGGED, "ood": OUT_OF_DOMAIN}


def rows(measure, probe, representation, base, *tuned, replicates=None, variants=None):
    """Per-layer rows of one measure: the base model's values (None: absent) and one list per fine-tuned seed;
    `replicates` maps (variant, layer) to that row's sentence replicates."""
    out = []
    names = ["base"] * (base is not None) + (variants or [f"t-s{seed}" for seed in range(len(tuned))])
    for name, values in zip(names, [v for v in (base, *tuned) if v is not None]):
        for layer, value in enumerate(values):
            draws = (replicates or {}).get((name, layer))
            out.append({"model": "m", "variant": name, "task": "" if name == "base" else "t",
                        "seed": 0 if name == "base" else int(name.rsplit("-s", 1)[1]), "probe": probe,
                        "probe_role": ROLES[probe], "representation": representation, "layer": layer,
                        "measure": measure, "value": value,
                        "replicates": None if draws is None else " ".join(map(str, draws))})
    return out


def table(*parts):
    return pd.DataFrame([r for part in parts for r in part])


def resampled(correct: int, n_dev: int) -> str:
    """The replicates fine-tuning stores for a model right on the first `correct` of n_dev dev examples: its accuracy
    on the example resamples every model on that dev set draws."""
    kind = KINDS["classification"]
    gold = np.zeros(n_dev, int)
    predicted = np.where(np.arange(n_dev) < correct, 0, 1)
    draws = sentence_resamples(np.arange(n_dev), DEV_BOOT, DEV_SEED)
    return replicates_text(metric_replicates(kind.dev_metric, predicted, gold, draws))


TRAINING = pd.DataFrame([{"model": "m", "variant": "t-s0", "task": "t", "seed": 0, "freeze_layers": 0, "method": FULL,
                          "fraction": np.nan, "trainable_parameters": 1000, "metric": ACCURACY, "dev_metric": 0.9,
                          "replicates": None}])
LAYERDROP = pd.DataFrame([{"model": "m", "variant": "t-s0", "task": "t", "seed": 0, "layers_dropped": k,
                           "metric": ACCURACY, "dev_metric": acc} for k, acc in enumerate([0.90, 0.895, 0.7, 0.5])])
MARGIN = 0.02
BASELINES = pd.DataFrame([{"model": "m", "task": "t", "metric": ACCURACY, "trivial_name": "majority class",
                           "trivial": 0.5, "frozen_probe": 0.7, "frozen_probe_layer": 2}])
FLAT = [0.5] * LAYERS


def verdicts(frame, layerdrop=LAYERDROP, training=TRAINING, baselines=BASELINES):
    claims = claims_table(frame, layerdrop, training, baselines, MARGIN)
    return dict(zip(claims["claim"], claims["verdict"])), claims.set_index("claim")


def test_a_verdict_reads_the_whole_interval_against_the_threshold():
    rule = RULES["C11"]
    assert decide(Estimate(0.3, np.linspace(0.1, 0.5, 101)), rule, 0.0) == HOLDS
    assert decide(Estimate(-0.3, np.linspace(-0.5, -0.1, 101)), rule, 0.0) == FAILS
    assert decide(Estimate(0.1, np.linspace(-0.1, 0.3, 101)), rule, 0.0) == INCONCLUSIVE
    assert decide(Estimate(0.1), rule, 0.0) == HOLDS, "without an interval the point decides"
    assert decide(Estimate(np.nan), rule, 0.0) == MISSING
    assert decide(Estimate(0.02, np.linspace(0.0, 0.04, 101)), RULES["C12"], 0.02) == INCONCLUSIVE


def test_every_claim_states_its_threshold_and_a_reason_from_the_paper():
    _, claims = verdicts(table(rows("isotropy_raw", "dev-t", "token", FLAT, FLAT)))
    assert list(claims.index) == [f"C{i}" for i in range(15)]
    for claim, row in claims.iterrows():
        assert row["threshold"][0] in "<>" and len(row["reason"]) > 40, claim
    assert claims.loc["C0", "threshold"] == f"> {MARGIN:g}"
    for column in ("number", "ci_low", "ci_high", "n_boot", "verdict", "deciding_number"):
        assert column in claims


def test_isotropy_claims_decide_on_paired_replicates_and_fail_the_other_way():
    """Base and fine-tuned replicates come from the same sentence draws: shared noise cancels in their difference."""
    noise = np.random.default_rng(0).normal(scale=0.05, size=200)
    fall = rows("isotropy_raw", "dev-t", "token", FLAT, [0.5, 0.5, 0.5, 0.45], replicates={
        ("base", 3): 0.5 + noise, ("t-s0", 3): 0.45 + noise})
    result, claims = verdicts(table(fall))
    assert result["C1"] == HOLDS
    assert claims.loc["C1", "ci_high"] < 0 and claims.loc["C1", "n_boot"] > 0
    rise = rows("isotropy_raw", "dev-t", "token", FLAT, [0.5, 0.5, 0.5, 0.55])
    assert verdicts(table(rise))[0]["C1"] == FAILS
    unpaired = rows("isotropy_raw", "dev-t", "token", FLAT, [0.5, 0.5, 0.5, 0.45], replicates={
        ("base", 3): 0.5 + noise, ("t-s0", 3): 0.45 + noise[::-1]})
    assert verdicts(table(unpaired))[0]["C1"] == INCONCLUSIVE


@pytest.mark.parametrize("after, verdict", [(7, HOLDS), (6, FAILS)])
def test_elongated_directions_must_more_than_double(after, verdict):
    frame = table(rows("dominant_directions", "dev-t", "token", [3] * LAYERS, [3, 3, 3, after]))
    result, claims = verdicts(frame)
    assert result["C2"] == verdict and claims.loc["C2", "number"] == pytest.approx(after / 3)


@pytest.mark.parametrize("after, verdict", [(0.14, HOLDS), (0.65, HOLDS), (0.15, FAILS), (0.6, FAILS)])
def test_frequency_structure_must_more_than_halve_or_double(after, verdict):
    frame = table(rows("frequency_pc1_abs_spearman", "dev-t", "token", [0.3] * LAYERS, [0.3, 0.3, 0.3, after]))
    assert verdicts(frame)[0]["C4"] == verdict


def test_clusters_moving_apart_is_judged_against_the_within_label_spread():
    """Distance 2 -> 3 while the spread grows 1 -> 2: raw distance rose, but relative to the spread it fell."""
    frame = table(rows("directprobe_min_distance_all", "dev-t", "cls", [2] * LAYERS, [2, 2, 2, 3]),
                  rows("directprobe_label_spread", "dev-t", "cls", [1] * LAYERS, [1, 1, 1, 2]))
    result, claims = verdicts(frame)
    assert result["C5"] == FAILS and claims.loc["C5", "number"] == pytest.approx(0.75)
    assert "raw 2 -> 3" in claims.loc["C5", "deciding_number"]
    frame = table(rows("directprobe_min_distance_all", "dev-t", "cls", [2] * LAYERS, [2, 2, 2, 3]),
                  rows("directprobe_label_spread", "dev-t", "cls", [1] * LAYERS, [1, 1, 1, 1]))
    assert verdicts(frame)[0]["C5"] == HOLDS


def directprobe_sizes(points, dims, before, after):
    return table(*(rows(f"directprobe_{name}", "dev-t", "cls", [value] * LAYERS, [value] * LAYERS)
                   for name, value in (("n_labels", 2), ("n_points", points), ("dimensions", dims))),
                 rows("directprobe_n_clusters", "dev-t", "cls", [before] * LAYERS, [before] * 3 + [after]))


def test_fewer_clusters_can_hold_or_fail_where_enough_points_make_it_measurable():
    assert verdicts(directprobe_sizes(1000, 32, 5, 2))[0]["C6"] == HOLDS
    assert verdicts(directprobe_sizes(1000, 32, 5, 5))[0]["C6"] == FAILS


def test_fewer_clusters_is_not_measurable_when_any_labelling_is_separable_or_already_was():
    result, claims = verdicts(directprobe_sizes(300, 384, 2, 2))
    assert result["C6"].startswith(NOT_MEASURABLE) and "n <= 2(d + 1)" in result["C6"]
    result, _ = verdicts(directprobe_sizes(1000, 32, 2, 2))
    assert result["C6"].startswith(NOT_MEASURABLE) and "nothing to simplify" in result["C6"]
    assert "Not measurable here" in verdict_summary(claims_table(
        directprobe_sizes(300, 384, 2, 2), LAYERDROP, TRAINING, BASELINES, MARGIN))


@pytest.mark.parametrize("top, verdict", [(0.3, FAILS), (0.9, HOLDS)])
def test_structure_kept_reads_the_top_layer_cls_cka(top, verdict):
    frame = table(rows("linear_cka_base_vs_finetuned", "dev-t", "cls", None, [np.nan, 0.95, 0.95, top]))
    result, claims = verdicts(frame)
    assert result["C7"] == verdict and f"{top:.2f}" in claims.loc["C7", "deciding_number"]


@pytest.mark.parametrize("after, verdict", [(0.7, HOLDS), (0.9, FAILS)])
def test_an_exception_is_a_task_probe_that_does_not_improve(after, verdict):
    frame = table(rows("task_probe_accuracy", "dev-t", "cls", [0.8] * LAYERS, [0.8, 0.8, 0.8, after]))
    assert verdicts(frame)[0]["C8"] == verdict


def rsa(probe, *tuned, floor=None):
    parts = [rows("rsa_pearson_base_vs_finetuned", probe, "token", None, *tuned)]
    if floor is not None:
        parts.append(rows("rsa_pearson_seed_vs_seed", probe, "token", None, floor, variants=["t-s0-vs-s1"]))
    return [r for part in parts for r in part]


def test_change_must_be_larger_at_the_top_than_in_the_middle_beyond_the_seed_floor():
    deep = rsa("dev-t", [1.0, 0.9, 0.8, 0.4], [1.0, 0.9, 0.8, 0.5], floor=[1.0, 0.95, 0.9, 0.85])
    result, claims = verdicts(table(deep))
    assert result["C9"] == HOLDS and "seed floor 0.90, 0.85" in claims.loc["C9", "deciding_number"]
    noise_at_the_top = rsa("dev-t", [1.0, 0.9, 0.6, 0.4], [1.0, 0.9, 0.6, 0.4], floor=[1.0, 0.95, 0.9, 0.45])
    assert verdicts(table(noise_at_the_top))[0]["C9"] == FAILS
    layer_0_untouched = rsa("dev-t", [1.0, 0.5, 0.5, 0.5], [1.0, 0.5, 0.5, 0.5], floor=[1.0, 0.9, 0.9, 0.9])
    assert verdicts(table(layer_0_untouched))[0]["C9"] == FAILS, "a flat change past layer 0 is not concentrated"


def test_out_of_domain_changes_less_both_ways():
    assert verdicts(table(rsa("dev-t", [1, 0.9, 0.7, 0.4]), rsa("ood", [1, 0.95, 0.8, 0.6])))[0]["C11"] == HOLDS
    assert verdicts(table(rsa("dev-t", [1, 0.9, 0.7, 0.6]), rsa("ood", [1, 0.95, 0.8, 0.4])))[0]["C11"] == FAILS


def test_forgetting_is_the_largest_fall_over_layers():
    pos = rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.87])
    assert verdicts(table(pos))[0]["C10"] == HOLDS
    pos = rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.7])
    assert verdicts(table(pos))[0]["C10"] == FAILS


def test_forgetting_reads_each_replicate_s_largest_fall_over_layers():
    """Replicate b's fall is the largest over layers of that draw's paired difference: a fall of 0.03 at one layer
    whose draws reach 0.07 is inconclusive against the 0.05 threshold, though each layer's mean is below it."""
    spread = np.linspace(-0.04, 0.04, 41)
    draws = {(v, layer): 0.9 + (spread if (v, layer) == ("t-s0", LAYERS - 1) else 0 * spread)
             for v in ("base", "t-s0") for layer in range(LAYERS)}
    pos = rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.87],
               replicates={key: value - (0.03 if key == ("t-s0", LAYERS - 1) else 0.0) for key, value in draws.items()})
    result, claims = verdicts(table(pos))
    assert result["C10"] == INCONCLUSIVE
    assert claims.loc["C10", "ci_high"] == pytest.approx(0.07, abs=2e-3)


def test_block_diagonality_is_judged_per_seed_then_over_seeds():
    frame = table(rows("block_diagonality_linear_cka", "dev-t", "cls", [0.1], [0.3], [0.35], [0.32]))
    result, claims = verdicts(frame)
    assert result["C13"] == HOLDS and claims.loc["C13", "n_boot"] > 0
    split = table(rows("block_diagonality_linear_cka", "dev-t", "cls", [0.1], [0.4], [0.0], [0.05]))
    assert verdicts(split)[0]["C13"] == INCONCLUSIVE, "seeds that disagree cannot decide it"


def test_layer_drop_and_freezing_costs_both_ways():
    frame = table(rows("isotropy_raw", "dev-t", "token", FLAT, FLAT))
    result, _ = verdicts(frame)
    assert result["C14"] == HOLDS and result["C12"] == MISSING
    assert verdicts(frame, LAYERDROP.assign(dev_metric=[0.9, 0.6, 0.5, 0.5]))[0]["C14"] == FAILS
    frozen = TRAINING.assign(variant="t-f2-s0", freeze_layers=2)
    assert verdicts(frame, training=pd.concat([TRAINING, frozen.assign(dev_metric=0.89)]))[0]["C12"] == HOLDS
    assert verdicts(frame, training=pd.concat([TRAINING, frozen.assign(dev_metric=0.7)]))[0]["C12"] == FAILS


@pytest.mark.parametrize("lora_cka, lora_dev, verdict_m1, verdict_m2", [
    (0.95, 0.89, HOLDS, HOLDS), (0.6, 0.7, FAILS, FAILS)])
def test_a_method_is_judged_against_full_fine_tuning_on_change_and_on_learning(lora_cka, lora_dev, verdict_m1,
                                                                               verdict_m2):
    cka = rows(versus("linear_cka"), "dev-t", "token", None, [1, 0.9, 0.8, 0.7], [1, 0.98, 0.9, lora_cka],
               variants=["t-s0", "t+lora-s0"])
    lora = TRAINING.assign(variant="t+lora-s0", method="lora", trainable_parameters=10, dev_metric=lora_dev)
    result, claims = verdicts(table(cka, rows("isotropy_raw", "dev-t", "token", FLAT, FLAT)),
                              training=pd.concat([TRAINING, lora]))
    assert (result["M1 (lora)"], result["M2 (lora)"]) == (verdict_m1, verdict_m2)
    assert claims.loc["M1 (lora)", "number"] == pytest.approx(lora_cka - 0.7)
    assert "10 parameters trained" in claims.loc["M1 (lora)", "deciding_number"]
    assert "M1 (lora)" not in verdicts(table(cka))[0], "no method configured, no method claim"


def test_a_dev_set_of_a_hundred_leaves_a_small_freezing_cost_inconclusive():
    """One example of 100 that only the full model gets right: resampled, it counts 0 to 3 times, so a 0.01 cost
    can be neither ruled in nor out against the 0.02 bar; on 10,000 examples the same share is decided."""
    for n_dev, verdict in ((100, INCONCLUSIVE), (10_000, HOLDS)):
        full = TRAINING.assign(replicates=resampled(n_dev * 90 // 100, n_dev))
        frozen = full.assign(variant="t-f2-s0", freeze_layers=2, dev_metric=0.89,
                             replicates=resampled(n_dev * 89 // 100, n_dev))
        assert verdicts(table(rows("isotropy_raw", "dev-t", "token", FLAT, FLAT)),
                        training=pd.concat([full, frozen]))[0]["C12"] == verdict, n_dev


def test_verdicts_follow_roles_not_probe_names():
    """Renaming the tagged and out-of-domain probe sets (their roles kept) changes no verdict or number."""
    frame = table(rsa("dev-t", [0.99, 0.9, 0.7, 0.4]), rsa("ood", [0.99, 0.95, 0.8, 0.6]),
                  rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.87]))
    renamed = frame.assign(probe=frame["probe"].replace({"ood": "oanc", "pos": "wsj"}))
    before, after = verdicts(frame)[1], verdicts(renamed)[1]
    assert before[["verdict", "deciding_number"]].equals(after[["verdict", "deciding_number"]])
    assert (before["verdict"] != MISSING).sum() >= 4
    swapped = frame.assign(probe_role=frame["probe_role"].replace({TAGGED: OUT_OF_DOMAIN, OUT_OF_DOMAIN: TAGGED}))
    assert verdicts(swapped)[0]["C11"] == MISSING


@pytest.mark.parametrize("majority, probe", [(0.89, 0.5), (0.5, 0.89), (0.5, 0.95)])
def test_a_model_that_does_not_clear_its_baselines_makes_every_claim_unmeasurable(majority, probe):
    frame = table(rows("isotropy_raw", "dev-t", "token", FLAT, [0.5, 0.5, 0.5, 0.4]))
    assert verdicts(frame)[0]["C0"] == HOLDS and verdicts(frame)[0]["C1"] == HOLDS
    result, claims = verdicts(frame, baselines=BASELINES.assign(trivial=majority, frozen_probe=probe))
    assert result.pop("C0") == FAILS
    assert set(result.values()) == {NOT_LEARNED}
    assert f"{0.9 - max(majority, probe):+.3f} over the better" in claims.loc["C0", "deciding_number"]


def test_the_learning_margin_is_a_strict_bar_and_a_small_dev_set_leaves_it_open():
    frame = table(rows("isotropy_raw", "dev-t", "token", FLAT, FLAT))
    just, short = 0.9 - MARGIN * 1.01, 0.9 - MARGIN * 0.99
    assert verdicts(frame, baselines=BASELINES.assign(frozen_probe=just))[0]["C0"] == HOLDS
    assert verdicts(frame, baselines=BASELINES.assign(frozen_probe=short))[0]["C0"] == FAILS
    result, _ = verdicts(frame, training=TRAINING.assign(replicates=resampled(90, 100)),
                         baselines=BASELINES.assign(frozen_probe=0.86))
    assert result["C0"] == INCONCLUSIVE and result["C1"] != NOT_LEARNED


def test_no_baseline_leaves_the_claims_decided():
    frame = table(rows("isotropy_raw", "dev-t", "token", FLAT, [0.5, 0.5, 0.5, 0.4]))
    result, _ = verdicts(frame, baselines=BASELINES.iloc[:0])
    assert result["C0"] == MISSING and result["C1"] == HOLDS


def test_seeds_without_sentence_replicates_still_get_an_interval_over_seeds():
    estimate = seed_estimate([0.1, 0.2, 0.3])
    assert estimate.value == pytest.approx(0.2) and len(estimate.replicates) > 100
    assert 0.1 <= estimate.replicates.min() and estimate.replicates.max() <= 0.3
    assert seed_estimate([0.4]).replicates is None


def test_the_report_summary_shows_each_number_with_its_interval_and_each_threshold_with_its_reason():
    frame = table(rsa("dev-t", [1, 0.9, 0.7, 0.4], [1, 0.9, 0.7, 0.45]), rsa("ood", [1, 0.95, 0.8, 0.6],
                                                                           [1, 0.95, 0.8, 0.62]))
    claims = claims_table(frame, LAYERDROP, TRAINING, BASELINES, MARGIN)
    summary = verdict_summary(claims)
    c11 = claims.set_index("claim").loc["C11"]
    assert f"{c11['verdict']}: {c11['number']:.3g} [{c11['ci_low']:.3g}, {c11['ci_high']:.3g}]" in summary
    assert f"- C11: > 0, {RULES['C11'].reason}." in summary


@pytest.mark.parametrize("tuned_removed, verdict", [(0.5, HOLDS), (0.9, FAILS), (0.87, INCONCLUSIVE)])
def test_dominant_directions_carry_task_knowledge_when_removing_them_costs_the_tuned_probe_more(tuned_removed,
                                                                                              verdict):
    top = LAYERS - 1

    def probe(measure, base, tuned, spread):
        draws = np.linspace(-spread, spread, 41)
        return rows(measure, "dev-t", "mean", [base] * LAYERS, *[[tuned] * LAYERS] * 3,
                    replicates={(v, top): value + draws for v, value in
                                [("base", base)] + [(f"t-s{s}", tuned) for s in range(3)]})

    head = [rows(name, "dev-t", "cls", None, *[[np.nan] * top + [value]] * 3)
            for name, value in (("head_accuracy", 0.9), ("head_accuracy_top_pcs_removed", 0.55))]
    frame = table(probe("task_probe_accuracy", 0.8, 0.9, 0.01),
                  probe("task_probe_accuracy_top_pcs_removed", 0.78, tuned_removed, 0.05), *head)
    result, claims = verdicts(frame)
    assert result["C3"] == verdict
    assert claims.loc["C3", "number"] == pytest.approx((0.9 - tuned_removed) - 0.02)
    assert "own head loses +0.350" in claims.loc["C3", "deciding_number"]
