"""The studies' own configuration builds its DAG (a dry run needs no hub), locally and through the SLURM profile."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dry_run(tmp_path, *args):
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--configfile", str(REPO / "configs/paper.yaml"), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout + result.stderr


@pytest.mark.workflow
def test_paper_dag_builds(tmp_path):
    out = dry_run(tmp_path, "--cores", "8", "--workflow-profile", "none")
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    models, tasks, seeds, frozen = 2, 3, 5, 2
    assert counts["finetune"] == models * tasks * seeds * (1 + frozen)
    assert counts["figures"] == models * tasks
    assert counts["seed_floor"] == counts["compare"] // (seeds * (1 + frozen)) * (seeds - 1), "consecutive seeds"


@pytest.mark.workflow
def test_paper_dry_run_through_slurm_profile_shows_requests(tmp_path):
    out = dry_run(tmp_path, "--workflow-profile", str(REPO / "profiles/slurm"))
    finetune = out[out.index("rule finetune:"):]
    requests = finetune[: finetune.index("\n\n")] if "\n\n" in finetune else finetune
    assert "gpu=1" in requests and "mem_mb=32000" in requests and "runtime=720" in requests
    assert "slurm_partition=" in out
