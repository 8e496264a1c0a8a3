"""Configured comparisons: any two fine-tuned variants compared with every pair measure of the catalog."""


import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import COMPARISONS, REPO
from repshift import catalog
from repshift import config as rc
from repshift.errors import UserError

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def default_config(**extra):
    return rc.check_config(yaml.safe_load((REPO / "config.yaml").read_text()) | extra, SCHEMA)


@pytest.mark.parametrize("pairs, culprit", [
    ([["mr-s0", "mr-s9"]], "config key comparisons.0: mr-s9 is not a fine-tuned variant of this config; the variants "
                           "are mr-s0, mr-s1, mr-s2, mr-f3-s0"),
    ([["mr-s0", "hedge-s1"], ["mr-s1", "mr-s1"]], "config key comparisons.1: a variant with itself; the variants are"),
    ([["mr-s0", "base"]], "config key comparisons.0: base is not a fine-tuned variant of this config"),
    ([["mr-s0"]], "config key comparisons.0: ['mr-s0'] is too short"),
])
def test_a_bad_comparison_names_its_key_and_the_known_variants(pairs, culprit):
    with pytest.raises(UserError) as error:
        default_config(comparisons=pairs)
    assert str(error.value).startswith(culprit) and "\n" not in str(error.value)


def test_a_comparison_is_named_and_read_back_and_runs_on_the_probe_sets_both_variants_have():
    config = default_config(methods={"lora": {"kind": "lora"}}, comparisons=[["mr-s0", "hedge+lora-s1"]])
    name = rc.comparison_name("mr-s0", "hedge+lora-s1")
    assert rc.comparison_variants(name) == ("mr-s0", "hedge+lora-s1") and rc.is_comparison(name)
    assert rc.tuned(name) is None and rc.tuned("mr-s0-vs-s1") is None and rc.tuned("mr+lora-s1").method == "lora"
    assert rc.shared_probe_sets(config, "mr-s0", "hedge+lora-s1") == ["pos", "ood"]
    assert rc.shared_probe_sets(config, "mr-s0", "mr-f3-s2") == ["dev-mr", "pos", "ood"]


@pytest.mark.workflow
def test_every_pair_measure_is_computed_between_each_comparison_and_drawn(followed):
    root = followed.root
    table = pd.read_csv(root / "results/tables/metrics.csv")
    compared = set(table.loc[table["variant"] == "sent-s0", "measure"])
    expected = {catalog.between(m.name) for m in catalog.MEASURES
                if m.base_vs_finetuned and catalog.versus(m.name) in compared}
    for pair in COMPARISONS:
        rows = table[table["variant"] == rc.comparison_name(*pair)]
        assert set(rows["measure"]) == expected and set(rows["probe"]) == {"dev-sent", "pos"}, pair
    same = table[(table["variant"] == rc.comparison_name("sent-s0", "sent-s0-at1"))
                 & (table["measure"] != catalog.between("linear_cka_permuted"))].dropna(subset=["value"])  # a control
    kinds = same["measure"].map(lambda m: catalog.get(m.removesuffix(catalog.BETWEEN)).kind)
    assert np.allclose(same.loc[kinds == "similarity", "value"], 1, atol=1e-6)
    assert np.allclose(same.loc[kinds == "distance", "value"], 0, atol=1e-3)
    lora = table[(table["variant"] == rc.comparison_name(*COMPARISONS[0]))
                 & (table["measure"] == catalog.between("linear_cka"))]
    assert (lora["value"] < 1 - 1e-6).any()
    assert (root / "results/figures/tiny/comparisons.png").stat().st_size > 20_000


@pytest.mark.workflow
def test_a_new_comparison_runs_only_its_own_jobs(followed):
    jobs = followed.planned_after(lambda config: config.update(comparisons=[*COMPARISONS, ["sent-s1", "sent+lora-s1"]]))
    assert sorted(rule for rule, _ in jobs) == ["all", "between", "between", "claims", "compared", "table"]
    assert all("sent-s1__vs__sent+lora-s1" in w for rule, w in jobs if rule == "between")
