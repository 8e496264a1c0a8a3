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
                    "directprobe_n_clusters", "debiased_cka", "svcca", "mutual_knn_base_vs_finetuned",
                    "rsa_spearman_base_vs_finetuned", "linear_cka_permuted_base_vs_finetuned"):
        assert (table["measure"] == measure).any(), measure
    assert set(table["measure"]) <= catalog.table_names()
    expected = {catalog.versus(m.name) for m in catalog.MEASURES if m.base_vs_finetuned}
    expected |= {name for m in catalog.MEASURES if m.takes not in ("pair", "matrix") for name in m.names}
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


def test_every_rule_log_says_what_happened(finished):
    logs = sorted((finished.root / "logs").rglob("*.log"))
    assert {log.relative_to(finished.root / "logs").parts[0] for log in logs} == {
        "prepare_task", "prepare_probe", "finetune", "baseline", "layer_drop", "extract", "metrics", "compare",
        "figures", "table.log", "claims.log"}
    assert [log for log in logs if not log.read_text().strip()] == []
    assert all("\r" not in log.read_text() for log in logs), "progress bars must write lines into logs"
    claims = (finished.root / "logs/claims.log").read_text()
    assert "tiny sent-s0: dev accuracy" in claims and "majority class" in claims
    assert "frozen pre-trained probe" in claims


def test_finetune_records_loss_and_accuracy(finished):
    metrics = json.loads((finished.root / "results/models/tiny/sent-s0/train_metrics.json").read_text())
    assert len(metrics["loss"]) == 9
    dropped = pd.read_csv(finished.root / "results/layerdrop/tiny/sent-s0.csv").set_index("layers_dropped")
    assert metrics["best_epoch"] == 1 and dropped.loc[0, "dev_metric"] == metrics["dev_metric"][0]
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
    new = [(r, w) for r, w in jobs if r in ("finetune", "extract", "metrics", "compare", "seed_floor")]
    assert all("seed=1" in w or "-s1" in w for _, w in new), new
    assert rules(jobs).count("finetune") == 4
    floors = sorted(w for r, w in jobs if r == "seed_floor")
    assert len(floors) == 2 * 3 and all("-s0-vs-s1" in w for w in floors), floors
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


def test_report_lands_on_the_claims_in_a_real_browser(finished, tmp_path):
    """Debian's chromium opens report.html: the landing page shows the verdicts and links every key figure, the page
    logs no error, and its screenshot is not blank."""
    import subprocess

    import matplotlib.image

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium renders the report in this test: bash envs/install.sh --tests installs it"
    report = tmp_path / "report.html"
    result = finished.snakemake("--report", str(report))
    assert "ERROR" not in result.stderr, result.stderr[-2000:]
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
               "--window-size=1280,900", "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    page = subprocess.run(browser + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert page.returncode == 0, page.stderr[-2000:]
    landing = page.stdout
    assert "What fine-tuning changed" in landing and "C0: the fine-tuned model learned its task" in landing
    for claim in pd.read_csv(finished.root / "results/tables/claims.csv")["claim"].unique():
        assert f"{claim}:" in landing, claim
    for task in ("sent", "length"):
        for name in ("isotropy", "directprobe", "rsa", "cka"):
            assert f"showResultInfo('results/figures/tiny/{task}/{name}.png')" in landing, (task, name)
    assert "System Message" not in landing, "the landing page's rst has an error"
    console = [line for line in page.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console, console
    shot = tmp_path / "landing.png"
    subprocess.run(browser + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=180, check=True)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1280) and pixels[..., :3].std() > 0.05


def test_every_figure_is_embedded_whole_in_the_report(finished, tmp_path):
    """Each figure's PNG is inside report.html byte for byte (base64), so every figure loads from the one file."""
    import base64

    report = tmp_path / "report.html"
    finished.snakemake("--report", str(report))
    html = report.read_text()
    for png in sorted((finished.root / "results/figures").rglob("*.png")):
        assert base64.b64encode(png.read_bytes()).decode() in html, png


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


def drawn_figures(root, task, monkeypatch):
    """Every study figure of one task of the finished run, as matplotlib figures (not saved)."""
    from repshift import claims, figures

    def found(pattern):
        return sorted(str(p) for p in root.glob(pattern))

    drawn = {}
    monkeypatch.setattr(figures, "save", lambda fig, dest, name: drawn.__setitem__(name, fig))
    figures.study_figures(
        read_tables(found(f"results/metrics/tiny/base/dev-{task}.csv") + found("results/metrics/tiny/base/pos.csv")
                    + found("results/metrics/tiny/base/ood.csv") + found(f"results/metrics/tiny/{task}-*/*.csv")),
        read_tables(found(f"results/compare/tiny/{task}-*/*.csv")),
        read_tables(found(f"results/layerdrop/tiny/{task}-*.csv")),
        claims.read_training(found(f"results/models/tiny/{task}-*/train_metrics.json")),
        claims.read_baselines(found(f"results/baselines/tiny/{task}.json")), root / "unused", task)
    return drawn


@pytest.mark.parametrize("task", ["sent", "length"])
def test_no_legend_or_label_covers_a_panel_and_text_reads_at_report_size(finished, task, monkeypatch):
    """At the report's ~900 px the figures stay at most 10 in wide with text of 6.5 pt or more; legends and axis
    labels stay off every panel's data area."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    drawn = drawn_figures(finished.root, task, monkeypatch)
    assert set(drawn) == set(FIGURES)
    for name, fig in drawn.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
        legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends, f"{name}: no legend"
        for ax in panels:
            area = ax.get_window_extent(renderer)
            for legend in legends:
                assert not legend.get_window_extent(renderer).overlaps(area), f"{name}: legend over a panel"
            for other in panels:
                for text in (other.title, other.xaxis.label, other.yaxis.label):
                    if other is not ax and text.get_text():
                        assert not text.get_window_extent(renderer).overlaps(area), \
                            f"{name}: {text.get_text()!r} runs into another panel"
        assert fig.get_figwidth() <= 10, name
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
        assert min(sizes) >= 6.5, name
    plt.close("all")


def test_seed_floor_of_a_model_with_itself_is_one_and_two_models_carry_intervals(finished, tmp_path):
    """The seed-floor step on one fine-tuned model twice reads 1 with a zero-width interval at every layer it
    bootstraps; on two different fine-tuned models, a value inside its interval, at the middle and top layers."""
    from repshift import config as rc
    from repshift.metrics import variants_metrics

    settings = rc.metric_settings(rc.check_config(copy.deepcopy(finished.config),
                                                  finished.root / "workflow/schemas/config.schema.yaml"))
    root = finished.root / "results"
    files = {v: root / f"activations/tiny/{v}/dev-sent.h5" for v in ("sent-s0", "sent-f1-s0")}
    weights = {v: root / f"models/tiny/{v}/model.safetensors" for v in files}
    identity = {"model": "tiny", "task": "sent", "seed": "", "probe": "dev-sent", "probe_role": "dev",
                "code_version": "test"}
    floors = {}
    for pair in (("sent-s0", "sent-s0"), ("sent-s0", "sent-f1-s0")):
        out = tmp_path / f"{'-'.join(pair)}.csv"
        variants_metrics(files[pair[0]], files[pair[1]], [weights[v] for v in pair], out, settings,
                         {**identity, "variant": rc.pair_name(*pair), "pair": list(pair)}, "seed_floor")
        floors[pair] = read_tables([out])
    same, different = floors.values()
    assert set(same["measure"]) == {catalog.seed_floor(m.name) for m in catalog.MEASURES if m.seed_floor}
    defined = same.dropna(subset=["value"])
    assert (defined["value"] - 1).abs().max() < 1e-9
    top = int(same["layer"].max())
    bootstrapped = different[different["n_boot"] > 0]
    assert set(bootstrapped["layer"]) == {(top + 1) // 2, top}
    assert ((bootstrapped["ci_low"] <= bootstrapped["value"] + 1e-12)
            & (bootstrapped["value"] <= bootstrapped["ci_high"] + 1e-12)).all()
    assert (different.dropna(subset=["value"])["value"] < 1 - 1e-6).any()
    same_intervals = same[same["n_boot"] > 0]
    assert len(same_intervals) and ((same_intervals["ci_high"] - same_intervals["ci_low"]).abs() < 1e-9).all()
