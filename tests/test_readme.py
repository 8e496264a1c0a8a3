"""The README's measured numbers are generated from the committed snapshot of a default run and cannot drift."""

import shutil

import pandas as pd
import pytest

from conftest import REPO
from repshift import readme
from repshift.cli import main
from repshift.errors import UserError

SNAPSHOT = REPO / "benchmarks/default_run"

LOG = """Date: 2026-11-30 09:00:00
Provided cores: 2
[Mon Nov 30 09:00:00 2026]
localrule fetch_corpora:
    jobid: 3
[Mon Nov 30 09:00:00 2026]
rule finetune:
    input: x
    jobid: 7
    wildcards: model=m
[Mon Nov 30 09:00:04 2026]
Finished jobid: 3 (Rule: fetch_corpora)
[Mon Nov 30 09:01:30 2026]
Finished jobid: 7 (Rule: finetune)
2 of 2 steps (100%) done
Elapsed time: 0:01:31.4
"""


def test_the_readme_agrees_with_the_committed_snapshot():
    readme.refresh(REPO, SNAPSHOT, REPO / "README.md", check=True)


def test_the_readme_command_checks_the_default_snapshot_without_naming_it(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["readme", "--check"]) == 0
    assert "README.md agrees with benchmarks/default_run" in capsys.readouterr().out


def test_a_number_that_moved_is_caught_naming_its_block(tmp_path):
    snapshot = tmp_path / "snapshot"
    shutil.copytree(SNAPSHOT, snapshot)
    claims = pd.read_csv(snapshot / "claims.csv")
    claims.loc[claims.index[-1], "number"] = claims["number"].iloc[-1] + 0.5
    claims.to_csv(snapshot / "claims.csv", index=False)
    with pytest.raises(UserError, match="generated block 'claims'"):
        readme.refresh(REPO, snapshot, REPO / "README.md", check=True, kept=readme.SNAPSHOTS[0])


def test_run_timings_read_wall_time_and_each_jobs_seconds(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG)
    run, jobs = readme.run_timings([log])
    assert run == {"date": "2026-11-30", "cores": 2, "jobs": 2, "wall_seconds": 91, "invocations": 1}
    assert jobs.set_index("rule")["seconds"].to_dict() == {"fetch_corpora": 4.0, "finetune": 90.0}
    stopped = tmp_path / "stopped.snakemake.log"
    stopped.write_text(LOG.replace("2 of 2 steps (100%) done", "1 of 2 steps (50%) done"))
    with pytest.raises(UserError, match="not a finished run"):
        readme.run_timings([stopped])
    run, jobs = readme.run_timings([stopped, log])
    assert (run["jobs"], run["wall_seconds"], run["invocations"]) == (4, 183, 2), "a resumed run's parts add up"


def test_a_readme_without_a_block_is_refused():
    with pytest.raises(UserError, match="no generated block named claims"):
        readme.render("# title\n", {"claims": "| a |\n"})


def test_a_second_snapshot_gets_its_own_blocks_and_a_column_per_model_beside_the_first(tmp_path):
    second = tmp_path / "offline_base_run"
    shutil.copytree(SNAPSHOT, second)
    for name in ("claims.csv", "learning.csv", "top_layer.csv"):
        frame = pd.read_csv(second / name)
        frame["model"] = "twelve"
        frame.to_csv(second / name, index=False)
    shutil.rmtree(second / "figures")
    (second / "figures").mkdir()
    (second / "figures" / "twelve-mr-cka.png").write_bytes(b"png")
    blocks = readme.all_sections({readme.SNAPSHOTS[0]: SNAPSHOT, readme.SNAPSHOTS[1]: second})
    assert {"offline_base_claims", "offline_base_wall", "offline_base_figures", "side_by_side"} <= set(blocks)
    assert "benchmarks/default_run/figures/minilm-mr-cka.png" in blocks["figures"], "each snapshot its own figures"
    assert "default_run" not in blocks["offline_base_figures"]
    assert blocks["offline_base_wall"].startswith("Wall time of configs/offline-base.yaml")
    assert "benchmarks/offline_base_run/figures/twelve-mr-cka.png" in blocks["offline_base_figures"]
    header = blocks["side_by_side"].splitlines()[0]
    assert header.index("minilm / hedge") < header.index("twelve / hedge") < header.index("minilm / mr")
    c1 = next(line for line in blocks["side_by_side"].splitlines() if line.startswith("| C1 |"))
    cells = [cell.strip() for cell in c1.strip("|").split("|")][1:]
    assert len(cells) == 4 and all(cells) and cells[0] == cells[1] and cells[2] == cells[3], "same data, same cell"


def test_an_unknown_snapshot_folder_is_refused_naming_the_known_ones():
    with pytest.raises(UserError, match="--out benchmarks/elsewhere: .*benchmarks/default_run"):
        readme.snapshot_at("benchmarks/elsewhere")


def test_two_runs_of_one_model_and_task_get_a_column_each_named_by_its_run(tmp_path):
    second = tmp_path / "offline_dynamics_run"
    shutil.copytree(SNAPSHOT, second)
    claims = pd.read_csv(second / "claims.csv")
    claims.loc[claims["claim"] == "C1", "verdict"] = "inconclusive"
    claims.to_csv(second / "claims.csv", index=False)
    dynamics = next(s for s in readme.SNAPSHOTS if s.folder.endswith("offline_dynamics_run"))
    blocks = readme.all_sections({readme.SNAPSHOTS[0]: SNAPSHOT, dynamics: second})
    header = [cell.strip() for cell in blocks["side_by_side"].splitlines()[0].strip("|").split("|")]
    assert header == ["claim", "minilm / hedge (configs/offline-dynamics.yaml)", "minilm / hedge (the default run)",
                      "minilm / mr (configs/offline-dynamics.yaml)", "minilm / mr (the default run)"]
    c1 = next(line for line in blocks["side_by_side"].splitlines() if line.startswith("| C1 |"))
    cells = [cell.strip() for cell in c1.strip("|").split("|")][1:]
    assert cells[0].startswith("inconclusive") and not cells[1].startswith("inconclusive")
