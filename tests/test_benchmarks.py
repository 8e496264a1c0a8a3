"""The benchmark script in --quick mode: every row is there and repshift's values agree with the references.

No timing is asserted: the ratios depend on the machine; benchmarks/run.py prints them.
"""

import csv
import math
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

pytest.importorskip("ckatorch")
pytest.importorskip("torch_cka")
pytest.importorskip("rsatoolbox")
pytest.importorskip("IsoScore")

import run  # noqa: E402  (benchmarks/run.py)

EXPECTED = {"extraction": 6, "cka": 12, "rsa": 2, "isoscore": 1, "probes": 1, "layerdrop": 1, "replicates": 5,
            "finetune": 3, "directprobe": 6, "memory": 3, "streaming": 11, "workflow": 3}
STORE_ROWS = 3  # then one row per measure of the tables


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """benchmarks/run.py --quick, run once through its command line; the CSV it writes, as dicts."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "results.csv"
    assert run.main(["--quick", "--strict", "--out", str(out), "--workdir", str(work / "scratch")]) == 0
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


def number(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def rows_of(table, section):
    return [r for r in table if r["section"] == section]


def is_permutation_baseline(r) -> bool:
    """The cka rows of the exact permutation baseline, whose reference is a sampled mean, not the same number."""
    return "permutation baseline" in r["benchmark"]


def test_table_has_every_row_with_numbers(table):
    assert list(table[0]) == run.COLUMNS
    for section, count in EXPECTED.items():
        rows = rows_of(table, section)
        assert len(rows) == count, (section, [r["benchmark"] for r in rows])
        for r in rows:
            assert number(r["repshift"]) > 0, r
    for r in rows_of(table, "store")[:STORE_ROWS]:
        assert number(r["repshift"]) > 0, r


def test_the_float16_store_has_a_row_for_every_measure_and_keeps_cka_rsa_and_isotropy_within_1e_3(table):
    from repshift import catalog

    rows = rows_of(table, "store")
    files, _, _ = rows[:STORE_ROWS]
    assert 1.9 < number(files["ratio"]) < 2.1, files
    measured = {r["benchmark"].split(":")[0]: r for r in rows[STORE_ROWS:]}
    layer_by_layer = run.schema_defaults("metrics")["layer_by_layer"]
    expected = ({name for m in catalog.MEASURES if m.takes != "pair" or m.name in layer_by_layer for name in m.names}
                | {catalog.versus(m.name) for m in catalog.MEASURES if m.base_vs_finetuned})
    assert set(measured) == expected
    targeted = [r for r in measured.values() if r["target"]]
    assert {catalog.get(name.removesuffix(catalog.VERSUS)).unit for name, r in measured.items() if r["target"]} == set(
        run.STORE_TARGET_UNITS)
    for r in targeted:
        assert r["holds"] == "yes" and 0 < number(r["max_abs_diff"]) <= 1e-3, r


def test_directprobe_agrees_with_the_previous_implementation_where_that_one_keeps_hulls_apart(table):
    if run.previous_module("directprobe", run.DIRECTPROBE_BEFORE) is None:
        pytest.skip(f"commit {run.DIRECTPROBE_BEFORE} is not in this checkout's history (a shallow clone)")
    compared = [r for r in rows_of(table, "directprobe") if r["reference"]]
    assert len(compared) == 3
    for r in compared:
        ours, previous = map(int, re.search(r"also holds \(their hulls overlap\): (\d+) vs (\d+)", r["note"]).groups())
        assert ours == 0, r
        if previous == 0:
            assert number(r["max_abs_diff"]) <= 1e-6, r


def test_the_exact_permutation_baseline_is_what_sampled_orders_average_to(table):
    if run.previous_module("similarity", run.PERMUTED_BEFORE) is None:
        pytest.skip(f"commit {run.PERMUTED_BEFORE} is not in this checkout's history (a shallow clone)")
    rows = [r for r in rows_of(table, "cka") if is_permutation_baseline(r)]
    assert len(rows) == 2
    for r in rows:
        assert 0 < number(r["max_rel_diff"]) < 0.05, r


def test_layer_drop_in_one_pass_gives_the_truncation_loop_s_accuracies(table):
    (r,) = rows_of(table, "layerdrop")
    assert number(r["max_abs_diff"]) == 0, r


def test_weighted_replicates_equal_the_copy_and_fused_adamw_the_per_tensor_one(table):
    for r in rows_of(table, "replicates"):
        assert number(r["max_rel_diff"]) < 1e-9, r
    step, _, threads = rows_of(table, "finetune")
    assert number(step["max_rel_diff"]) < 1e-4, step
    assert number(threads["reference"]) > 0 and "side by side" in threads["benchmark"], threads


def test_cka_matches_every_reference_to_1e_6(table):
    rows = [r for r in rows_of(table, "cka") if not is_permutation_baseline(r)]
    assert {r["size"].split(", d=")[1] for r in rows} == {"384", "768"}
    for r in rows:
        assert number(r["max_rel_diff"]) < 1e-6, r
        assert number(r["ratio"]) > 0, r


def test_rsa_isoscore_probes_agree(table):
    for r in rows_of(table, "rsa"):
        assert number(r["max_rel_diff"]) < 1e-6, r  # the tolerance tests/test_similarity.py states for rsatoolbox
    (iso,) = rows_of(table, "isoscore")
    assert number(iso["max_rel_diff"]) < 1e-5, iso  # IsoScore 2.0.1 takes sqrt(d) of an integer tensor in float32
    (probe,) = rows_of(table, "probes")
    assert number(probe["max_abs_diff"]) <= 0.05, probe  # accuracy; same objective, float32 L-BFGS vs sklearn


def test_extraction_stores_what_a_plain_forward_gives(table):
    rows = rows_of(table, "extraction")
    (naive,) = [r for r in rows if r["benchmark"] == "extract() vs naive per-sentence loop"]
    assert number(naive["max_abs_diff"]) < 1e-3, naive
    assert all(number(r["reference"]) > 0 for r in rows)


def test_memory_rows_cover_three_sizes(table):
    rows = rows_of(table, "memory")
    sizes = [int(r["size"].split(" tokens")[0].removeprefix("n=").replace(",", "")) for r in rows]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert number(rows[0]["ratio"]) == 1.0


def test_streaming_matches_the_gram_packages_and_reports_the_estimators(table):
    rows = rows_of(table, "streaming")
    references = [r for r in rows if "ckatorch cka_base" in r["benchmark"] or "torch-cka CKA.compare" in r["benchmark"]]
    assert len(references) == 2
    for r in references:
        assert number(r["max_rel_diff"]) < 1e-6, r
    estimators = [r for r in rows if r["benchmark"].startswith(("sampled estimate", "minibatch CKA"))]
    assert len(estimators) == 4 and all(number(r["max_abs_diff"]) >= 0 for r in estimators)
    peaks = [r for r in rows if r["benchmark"].startswith("peak RSS")]
    assert len(peaks) == 2 and number(peaks[0]["ratio"]) == 1.0


def test_workflow_noop_and_minimal_rerun(table):
    plan, noop, rerun = rows_of(table, "workflow")
    assert noop["holds"] == "yes", noop
    assert rerun["holds"] == "yes", rerun
    assert 0 < number(rerun["repshift"]) < number(rerun["reference"])


def test_parse_dry_run_reads_jobs_and_outputs():
    text = """
rule finetune:
    input: results/data/tasks/a.json
    output: results/models/m/a-s0/model.safetensors, results/models/m/a-s0/config.json
    wildcards: model=m, finetuned=a-s0
rule all:
    input: x
"""
    jobs, outputs = run.parse_dry_run(text)
    assert jobs == [("finetune", "model=m, finetuned=a-s0"), ("all", "")]
    assert outputs == ["results/models/m/a-s0/model.safetensors", "results/models/m/a-s0/config.json"]


def test_check_reads_targets():
    assert run.check(0.9, ">= 0.85") == "yes"
    assert run.check(2.0, ">= 3") == "no"
    assert run.check(1.3, "<= 1.25") == "no"
    assert run.check(None, ">= 1") == ""


def test_extraction_profile_runs(capsys):
    import profile_extract

    assert profile_extract.main(["--sentences", "20", "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    for line in ("as shipped (background writer)", "writes in the main thread", "writes dropped"):
        ratio = float(printed.split(line)[1].splitlines()[0].split("=")[-1])
        assert math.isfinite(ratio) and ratio > 0, (line, ratio)  # a timing: its size is the script's to print
    assert "function calls" in printed.split("3. cProfile")[1], "the profile table is printed"


def test_rows_carry_their_load_and_a_loaded_timing_is_marked_unreliable(table, monkeypatch):
    assert all(number(r["load"]) >= 0 for r in table)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    timed = run.row("cka", "x", repshift=1.0, reference=2.0, unit="s", ratio=2.0, target=">= 10", holds="no")
    assert run.with_load(dict(timed), 3.1, 1.0)["holds"] == "no (unreliable: load 3.1 > 2 cores)"
    assert run.with_load(dict(timed), 1.5, 1.9)["holds"] == "no"
    memory = run.row("memory", "x", repshift=1.0, unit="MiB", ratio=1.0, target="<= 1.25", holds="yes")
    assert run.with_load(memory, 5.0, 5.0)["holds"] == "yes"


def test_the_committed_table_is_not_the_default_output(monkeypatch):
    """A plain run writes under results/ (untracked), never over the committed benchmarks/results.csv."""
    seen = {}
    monkeypatch.setattr(run, "run", lambda sizes, sections, work, out, strict: seen.setdefault("out", out) and [])
    monkeypatch.setattr(run, "print_table", lambda rows: None)
    monkeypatch.setattr(run, "write_csv", lambda rows, path: None)
    run.main(["--only", "rsa"])
    assert seen["out"] == REPO / "results" / "benchmarks.csv"
