"""End-to-end runs of the tiny workflow, and what a change reruns."""

import copy
import json
import shutil

import h5py
import pandas as pd
import pytest

from repshift import catalog
from repshift.tables import read_tables

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_assets):
    """The tiny workflow run to completion once; tests below dry-run changes against it."""
    from conftest import Project, tiny_config

    model_dir, files = tiny_assets
    project = Project(tmp_path_factory.mktemp("finished") / "project", tiny_config(model_dir, files))
    project.snakemake()
    return project


def rules(jobs):
    return sorted(rule for rule, _ in jobs)


FIGURES = ("isotropy", "directprobe", "probing", "rsa", "cka", "similarity")


def test_run_produces_figures_and_tidy_table(finished):
    root = finished.root
    for task in ("sent", "length"):
        for name in FIGURES:
            for ext in ("png", "pdf"):
                assert (root / f"results/figures/tiny/{task}/{name}.{ext}").stat().st_size > 1000
    table = read_tables([root / "results/tables/metrics.csv"])
    assert set(table["variant"]) == {"base", "sent-s0", "length-s0", "sent-f1-s0", "length-f1-s0"}
    assert set(table["layer"]) == {0, 1, 2}
    for measure in ("isoscore", "pos_probe_accuracy", "pos_selectivity", "task_probe_accuracy",
                    "directprobe_n_clusters", "debiased_cka", "block_diagonality_linear_cka", "svcca", "mutual_knn_base_vs_finetuned",
                    "rsa_spearman_base_vs_finetuned", "linear_cka_permuted_base_vs_finetuned"):
        assert (table["measure"] == measure).any(), measure
    assert set(table["measure"]) <= catalog.table_names()
    expected = {catalog.versus(m.name) for m in catalog.MEASURES if m.base_vs_finetuned}
    expected |= {name for m in catalog.MEASURES if m.takes != "pair" for name in m.names}
    expected |= set(finished.config["metrics"]["layer_by_layer"])
    assert expected <= set(table["measure"]), f"catalog measures missing from the run: {expected - set(table['measure'])}"
    assert set(table["probe_role"]) == {"dev", "tagged", "out_of_domain"}
    within = table[(table["measure"] == "linear_cka") & (table["layer"] == table["layer_b"])]
    assert within["value"].sub(1).abs().max() < 1e-9
    undefined = table[table["value"].isna()]
    assert (undefined["representation"] == "cls").all(), "only the constant layer-0 [CLS] may lack a value"
    assert ((undefined["layer"] == 0) | (undefined["layer_b"] == 0)).all()
    log = (root / "logs/compare/tiny/sent-s0/dev-sent.log").read_text()
    assert "svcca cls layer 0: undefined, recorded as NaN" in log and "wrote " in log
    assert table["code_version"].str.len().eq(16).all()


def test_finetune_records_loss_and_accuracy(finished):
    metrics = json.loads((finished.root / "results/models/tiny/sent-s0/train_metrics.json").read_text())
    assert len(metrics["loss"]) == 9
    assert 0 <= metrics["dev_accuracy"][-1] <= 1
    assert metrics["provenance"]["settings"]["learning_rate"] == 1.0e-3
    assert metrics["provenance"]["seed"] == 0


def test_activation_file_has_all_layers_and_provenance(finished):
    path = finished.root / "results/activations/tiny/sent-s0/pos.h5"
    with h5py.File(path) as handle:
        assert handle["tokens/hidden"].shape[0] == 3
        assert handle.attrs["complete"]
        provenance = json.loads(handle.attrs["provenance"])
        assert provenance["variant"] == "sent-s0"
        assert len(provenance["weights_sha256"]) == 64
        assert (handle["tokens/pos_tag"][:] >= 0).sum() > 0


def test_second_run_does_nothing(finished):
    assert finished.planned_jobs() == []
    dry = finished.snakemake("-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_task_setting_reruns_only_that_task(finished):
    original = finished.config
    config = copy.deepcopy(original)
    config["tasks"]["sent"]["finetune"] = {"learning_rate": 5.0e-4}
    finished.write_config(config)
    try:
        jobs = finished.planned_jobs()
    finally:
        finished.write_config(original)
    variants = len(config["seeds"]) * (1 + len(config["ablations"]["freeze_layers"]))
    probes = 1 + len(config["probes"])
    assert rules(jobs) == sorted(["all", "figures", "table", "claims"] + ["finetune", "layer_drop"] * variants
                                 + ["extract", "metrics", "compare"] * variants * probes)
    for rule, wildcards in jobs:
        if rule not in ("all", "table", "claims"):
            assert "sent" in wildcards and "length" not in wildcards, (rule, wildcards)


def test_new_seed_runs_only_new_jobs(finished):
    original = finished.config
    finished.write_config(original | {"seeds": [0, 1]})
    try:
        jobs = finished.planned_jobs()
    finally:
        finished.write_config(original)
    new = [(r, w) for r, w in jobs if r in ("finetune", "extract", "metrics", "compare")]
    assert all("seed=1" in w or "-s1" in w for _, w in new), new
    assert rules(jobs).count("finetune") == 4
    assert rules(jobs).count("figures") == 2


def test_code_edit_reruns_the_rules_that_run_it(finished):
    module = finished.root / "src/repshift/figures.py"
    original = module.read_text()
    module.write_text(original + "\nEDITED = True\n")
    try:
        jobs = finished.planned_jobs()
    finally:
        module.write_text(original)
    assert rules(jobs) == ["all", "figures", "figures"]


def test_report_has_every_figure_and_both_tables(finished):
    result = finished.snakemake("--report", "report.html")
    assert "ERROR" not in result.stderr, result.stderr[-2000:]
    html = (finished.root / "report.html").read_text(errors="ignore")
    for name in FIGURES:
        assert f"{name}.png" in html, name
    assert "claims.csv" in html and "metrics.csv" in html


def test_renaming_every_probe_set_changes_no_verdict(finished, tmp_path):
    """A copy of the finished run with the tagged and out-of-domain probe sets renamed (roles kept)."""
    renamed = shutil.copytree(finished.root, tmp_path / "renamed", symlinks=True)
    config = copy.deepcopy(finished.config)
    config["probes"] = {"wsj_tagged": config["probes"]["pos"], "oanc_sample": config["probes"]["ood"]}
    from conftest import Project

    project = Project.__new__(Project)
    project.root = renamed
    project.write_config(config)
    project.snakemake()
    claims = [read_tables([root / "results/tables/claims.csv"]) for root in (finished.root, renamed)]
    assert claims[0][["claim", "verdict", "deciding_number"]].equals(claims[1][["claim", "verdict", "deciding_number"]])
    assert (claims[0]["verdict"] != "not measured").sum() >= 20
    table = read_tables([renamed / "results/tables/metrics.csv"])
    assert {"wsj_tagged", "oanc_sample"} <= set(table["probe"]) and not {"pos", "ood"} & set(table["probe"])
