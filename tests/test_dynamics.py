"""Training dynamics: snapshots at fractions of the planned steps, measured as variants, and what adding one reruns."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FRACTIONS, REPO
from repshift import config as rc
from repshift.catalog import MEASURES, versus
from repshift.claims import full_finetuning
from repshift.errors import UserError
from repshift.finetune import finetune

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SETTINGS = {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.01,
            "warmup_ratio": 0.1, "max_length": 32, "freeze_layers": 0, "checkpoint_every": 500, "patience": None,
            "precision": "auto"}


def test_snapshot_names_round_trip_and_are_not_finished_fine_tunes():
    for variant in (rc.Variant("mr", 2, fraction=0.05), rc.Variant("mr", 0, fraction=1.0), rc.Variant("a-b", 1)):
        assert rc.parse_variant(variant.name) == variant
    assert rc.Variant("mr", 2, fraction=0.05).name == "mr-s2-at0.05"
    assert rc.is_snapshot("mr-s2-at0.05") and not rc.is_snapshot("mr-s2") and not rc.is_snapshot("base")
    assert not rc.is_snapshot("mr-s0-vs-s1")
    assert not full_finetuning("mr-s2-at1") and full_finetuning("mr-s2")


def test_snapshot_settings_and_the_followed_seeds():
    config = rc.check_config(yaml.safe_load((REPO / "config.yaml").read_text()) | {
        "dynamics": {"tasks": ["mr"], "fractions": [0.5, 0.01]}}, SCHEMA)
    snapshots = rc.snapshot_variants(config, "mr")
    assert [v.name for v in snapshots] == ["mr-s0-at0.01", "mr-s0-at0.5"]
    assert rc.snapshot_variants(config, "hedge") == []
    assert rc.finetune_settings(config, snapshots[1])["stop_fraction"] == 0.5
    assert "stop_fraction" not in rc.finetune_settings(config, rc.Variant("mr", 0))
    assert set(rc.variants(config)) >= {"mr-s0-at0.01", "mr-s0-at0.5"}


@pytest.mark.parametrize("dynamics, culprit", [
    ({"tasks": ["mr"], "fractions": [0]}, "config key dynamics.fractions.0: 0 is less than or equal to the minimum"),
    ({"tasks": ["mr"], "fractions": [0.5, 1.5]}, "config key dynamics.fractions.1: 1.5 is greater than the maximum"),
    ({"tasks": ["nope"]}, "config key dynamics.tasks: nope not among the config's tasks (mr, hedge)"),
    ({"tasks": ["mr"], "seeds": [7]}, "config key dynamics.seeds: 7 not among the config's seeds (0, 1, 2)"),
])
def test_bad_dynamics_is_one_line_naming_the_key_and_the_known_values(dynamics, culprit):
    config = yaml.safe_load((REPO / "config.yaml").read_text()) | {"dynamics": dynamics}
    with pytest.raises(UserError) as error:
        rc.check_config(config, SCHEMA)
    assert str(error.value).startswith(culprit) and "\n" not in str(error.value)


def weights(model_dir):
    from safetensors.numpy import load_file

    return load_file(model_dir / "model.safetensors")


def test_a_snapshot_takes_the_steps_of_the_uninterrupted_run_up_to_its_fraction(tiny_assets, task_file, tmp_path):
    model_dir, _ = tiny_assets
    runs = {}
    for name, extra in (("full", {}), ("half", {"stop_fraction": 0.5}), ("end", {"stop_fraction": 1.0})):
        provenance = {"model": "tiny", "variant": name, "task": "sent", "seed": 0}
        finetune({"id": str(model_dir)}, task_file, tmp_path / name, 0, SETTINGS | extra, threads=1,
                 provenance=provenance)
        runs[name] = json.loads((tmp_path / name / "train_metrics.json").read_text())
    planned = runs["full"]["planned_steps"]
    assert planned == len(runs["full"]["loss"]) > 2
    assert len(runs["half"]["loss"]) == round(planned / 2) and runs["half"]["planned_steps"] == planned
    assert runs["half"]["loss"] == runs["full"]["loss"][: round(planned / 2)]
    assert len(runs["half"]["dev_metric"]) == 1 and len(runs["half"]["dev_replicates"]) > 0
    full, end, half = (weights(tmp_path / name) for name in ("full", "end", "half"))
    assert all(np.array_equal(full[k], end[k]) for k in full)
    assert runs["end"]["dev_metric"] == runs["full"]["dev_metric"]
    assert any(not np.array_equal(full[k], half[k]) for k in full)


@pytest.mark.workflow
def test_every_measure_is_tabled_at_every_snapshot_and_its_weights_are_gone(followed):
    table = pd.read_csv(followed.root / "results/tables/metrics.csv")
    for fraction in FRACTIONS:
        variant = rc.Variant("sent", 0, fraction=fraction).name
        rows = table[table["variant"] == variant]
        assert {versus(m.name) for m in MEASURES if m.figure == "similarity"} <= set(rows["measure"])
        assert set(table.loc[table["variant"] == "sent-s0", "measure"]) == set(rows["measure"])
        assert rows["ci_low"].notna().any() and (rows["n_boot"] > 0).any()
        model_dir = followed.root / "results/models/tiny" / variant
        assert (model_dir / "train_metrics.json").is_file() and not (model_dir / "model.safetensors").exists()
    assert (followed.root / "results/models/tiny/sent-s0/model.safetensors").is_file()
    assert (followed.root / "results/figures/tiny/sent/dynamics.png").stat().st_size > 20_000
    log = (followed.root / "logs/figures/tiny/sent-dynamics.log").read_text()
    assert log.count("linear CKA below its seed floor") == 3  # the tiny model's 2 layers and its embeddings
    claims = pd.read_csv(followed.root / "results/tables/claims.csv")
    assert not claims.astype(str).apply(lambda c: c.str.contains("s0-at")).any().any()


@pytest.mark.workflow
def test_deleted_snapshot_weights_rerun_nothing_and_a_new_fraction_runs_only_its_jobs(followed):
    assert followed.planned_jobs() == []
    jobs = followed.planned_after(lambda config: config["dynamics"].update(fractions=[0.25, *FRACTIONS]))
    per_snapshot = [(rule, w) for rule, w in jobs if rule not in ("all", "table", "claims", "dynamics")]
    assert sorted(rule for rule, _ in per_snapshot) == ["compare", "compare", "extract", "extract", "metrics",
                                                        "metrics", "snapshot"]
    assert all("sent-s0-at0.25" in w for _, w in per_snapshot), per_snapshot
    assert sorted(rule for rule, _ in jobs if rule in ("all", "table", "claims", "dynamics")) == [
        "all", "claims", "dynamics", "table"]
