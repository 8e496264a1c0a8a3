"""Claim verdicts follow their deciding numbers and thresholds, both ways."""

import pandas as pd
import pytest

from repshift.claims import FAILS, HOLDS, MISSING, NOT_LEARNED, THRESHOLDS, claims_table
from repshift.config import DEV_ROLE, OUT_OF_DOMAIN, TAGGED

LAYERS = 4
ROLES = {"dev-t": DEV_ROLE, "pos": TAGGED, "ood": OUT_OF_DOMAIN}


def rows(measure, probe, representation, base, tuned, variant="t-s0"):
    """Per-layer rows of one measure for the base model (None: absent) and one fine-tuned variant."""
    out = []
    for name, values in (("base", base), (variant, tuned)):
        if values is None:
            continue
        out += [{"model": "m", "variant": name, "task": "" if name == "base" else "t", "seed": 0, "probe": probe,
                 "probe_role": ROLES[probe], "representation": representation, "layer": layer, "measure": measure, "value": value}
                for layer, value in enumerate(values)]
    return out


def table(*parts):
    return pd.DataFrame([r for part in parts for r in part])


TRAINING = pd.DataFrame([{"model": "m", "variant": "t-s0", "task": "t", "seed": 0, "freeze_layers": 0,
                          "dev_accuracy": 0.9}])
LAYERDROP = pd.DataFrame([{"model": "m", "variant": "t-s0", "task": "t", "seed": 0, "layers_dropped": k,
                           "dev_accuracy": acc} for k, acc in enumerate([0.90, 0.895, 0.7, 0.5])])


MARGIN = 0.02
BASELINES = pd.DataFrame([{"model": "m", "task": "t", "majority_accuracy": 0.5, "frozen_probe_accuracy": 0.7,
                           "frozen_probe_layer": 2}])


def verdicts(frame, layerdrop=LAYERDROP, training=TRAINING, baselines=BASELINES):
    claims = claims_table(frame, layerdrop, training, baselines, MARGIN)
    return dict(zip(claims["claim"], claims["verdict"])), claims


def test_isotropy_claims_follow_top_layer():
    flat = [0.5] * LAYERS
    frame = table(rows("isotropy_raw", "dev-t", "token", flat, [0.5, 0.5, 0.5, 0.4]),
                  rows("top_pc_variance_ratio", "dev-t", "token", flat, [0.5, 0.5, 0.5, 0.6]))
    result, _ = verdicts(frame)
    assert result["C1"] == HOLDS and result["C2"] == HOLDS
    frame = table(rows("isotropy_raw", "dev-t", "token", flat, [0.5, 0.5, 0.5, 0.6]),
                  rows("top_pc_variance_ratio", "dev-t", "token", flat, [0.5, 0.5, 0.5, 0.4]))
    result, _ = verdicts(frame)
    assert result["C1"] == FAILS and result["C2"] == FAILS


def test_frequency_change_threshold():
    base = [0.3] * LAYERS
    small = [0.3, 0.3, 0.3, 0.3 + THRESHOLDS["frequency_change"] / 2]
    large = [0.3, 0.3, 0.3, 0.3 + THRESHOLDS["frequency_change"] * 2]
    assert verdicts(table(rows("frequency_pc1_abs_spearman", "dev-t", "token", base, small)))[0]["C4"] == FAILS
    assert verdicts(table(rows("frequency_pc1_abs_spearman", "dev-t", "token", base, large)))[0]["C4"] == HOLDS


def test_merchant_depth_and_domain():
    frame = table(rows("rsa_spearman_base_vs_finetuned", "dev-t", "token", None, [0.99, 0.9, 0.7, 0.4]),
                  rows("rsa_spearman_base_vs_finetuned", "ood", "token", None, [0.99, 0.95, 0.8, 0.6]))
    result, claims = verdicts(frame)
    assert result["C9"] == HOLDS and result["C11"] == HOLDS
    assert "last layer 0.40" in claims.set_index("claim").loc["C9", "deciding_number"]
    frame = table(rows("rsa_spearman_base_vs_finetuned", "dev-t", "token", None, [0.9, 0.9, 0.9, 0.9]),
                  rows("rsa_spearman_base_vs_finetuned", "ood", "token", None, [0.9, 0.8, 0.7, 0.6]))
    result, _ = verdicts(frame)
    assert result["C9"] == FAILS and result["C11"] == FAILS


def test_forgetting_and_probe_fall_are_two_thresholds():
    frame = table(rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.87]))
    result, _ = verdicts(frame)
    assert result["C8"] == HOLDS and result["C10"] == HOLDS
    frame = table(rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.7]))
    assert verdicts(frame)[0]["C10"] == FAILS


def test_layer_drop_and_missing_freezing():
    result, claims = verdicts(table(rows("isotropy_raw", "dev-t", "token", [1] * LAYERS, [1] * LAYERS)))
    assert result["C14"] == HOLDS and result["C12"] == MISSING
    steep = LAYERDROP.assign(dev_accuracy=[0.9, 0.6, 0.5, 0.5])
    assert verdicts(table(rows("isotropy_raw", "dev-t", "token", [1] * LAYERS, [1] * LAYERS)), steep)[0]["C14"] == FAILS


def test_freezing_cost():
    training = pd.concat([TRAINING, TRAINING.assign(variant="t-f2-s0", freeze_layers=2, dev_accuracy=0.89)])
    assert verdicts(table(rows("isotropy_raw", "dev-t", "token", [1] * LAYERS, [1] * LAYERS)),
                    training=training)[0]["C12"] == HOLDS
    training = pd.concat([TRAINING, TRAINING.assign(variant="t-f2-s0", freeze_layers=2, dev_accuracy=0.7)])
    assert verdicts(table(rows("isotropy_raw", "dev-t", "token", [1] * LAYERS, [1] * LAYERS)),
                    training=training)[0]["C12"] == FAILS


def test_unmeasured_claims_say_so():
    result, _ = verdicts(table(rows("isotropy_raw", "dev-t", "token", [1] * LAYERS, [1] * LAYERS)))
    assert result["C5"] == MISSING and result["C13"] == MISSING
    assert set(result) == {f"C{i}" for i in range(0, 15)}


@pytest.mark.parametrize("lowest, verdict", [(0.3, FAILS), (0.9, HOLDS)])
def test_structure_kept(lowest, verdict):
    frame = table(rows("linear_cka_base_vs_finetuned", "dev-t", "token", None, [0.95, 0.95, 0.95, lowest]))
    result, claims = verdicts(frame)
    assert result["C7"] == verdict
    assert f"{lowest:.2f}" in claims.set_index("claim").loc["C7", "deciding_number"]


def test_verdicts_follow_roles_not_probe_names():
    """Renaming the tagged and out-of-domain probe sets (their roles kept) changes no verdict or number."""
    frame = table(rows("rsa_spearman_base_vs_finetuned", "dev-t", "token", None, [0.99, 0.9, 0.7, 0.4]),
                  rows("rsa_spearman_base_vs_finetuned", "ood", "token", None, [0.99, 0.95, 0.8, 0.6]),
                  rows("pos_probe_accuracy", "pos", "word", [0.9] * LAYERS, [0.9, 0.9, 0.9, 0.87]))
    renamed = frame.assign(probe=frame["probe"].replace({"ood": "oanc", "pos": "wsj"}))
    before, after = verdicts(frame)[1], verdicts(renamed)[1]
    assert before[["verdict", "deciding_number"]].equals(after[["verdict", "deciding_number"]])
    assert (before["verdict"] != MISSING).sum() >= 4
    swapped = frame.assign(probe_role=frame["probe_role"].replace({TAGGED: OUT_OF_DOMAIN, OUT_OF_DOMAIN: TAGGED}))
    assert verdicts(swapped)[0]["C11"] == MISSING


@pytest.mark.parametrize("majority, probe", [(0.89, 0.5), (0.5, 0.89), (0.5, 0.95)])
def test_a_model_that_does_not_clear_its_baselines_makes_every_claim_unmeasurable(majority, probe):
    frame = table(rows("isotropy_raw", "dev-t", "token", [0.5] * LAYERS, [0.5, 0.5, 0.5, 0.4]))
    assert verdicts(frame)[0]["C0"] == HOLDS and verdicts(frame)[0]["C1"] == HOLDS
    result, claims = verdicts(frame, baselines=BASELINES.assign(majority_accuracy=majority,
                                                                 frozen_probe_accuracy=probe))
    assert result.pop("C0") == FAILS
    assert set(result.values()) == {NOT_LEARNED}
    assert f"{0.9 - max(majority, probe):+.3f} over the better" in claims.set_index("claim").loc["C0", "deciding_number"]


def test_the_learning_margin_is_a_strict_bar():
    frame = table(rows("isotropy_raw", "dev-t", "token", [0.5] * LAYERS, [0.5] * LAYERS))
    just = 0.9 - MARGIN * 1.01
    short = 0.9 - MARGIN * 0.99
    assert verdicts(frame, baselines=BASELINES.assign(frozen_probe_accuracy=just))[0]["C0"] == HOLDS
    assert verdicts(frame, baselines=BASELINES.assign(frozen_probe_accuracy=short))[0]["C0"] == FAILS


def test_no_baseline_leaves_the_claims_decided():
    frame = table(rows("isotropy_raw", "dev-t", "token", [0.5] * LAYERS, [0.5, 0.5, 0.5, 0.4]))
    result, _ = verdicts(frame, baselines=BASELINES.iloc[:0])
    assert result["C0"] == MISSING and result["C1"] == HOLDS
