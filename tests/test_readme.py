"""The README's measured numbers are generated from the committed snapshot of a default run and cannot drift."""

import shutil

import pandas as pd
import pytest

from conftest import REPO
from repshift import readme
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


def test_a_number_that_moved_is_caught_naming_its_block(tmp_path):
    snapshot = tmp_path / "snapshot"
    shutil.copytree(SNAPSHOT, snapshot)
    claims = pd.read_csv(snapshot / "claims.csv")
    claims.loc[claims.index[-1], "number"] = claims["number"].iloc[-1] + 0.5
    claims.to_csv(snapshot / "claims.csv", index=False)
    with pytest.raises(UserError, match="generated block 'claims'"):
        readme.refresh(REPO, snapshot, REPO / "README.md", check=True)


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
