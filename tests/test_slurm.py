"""Cluster execution through a real one-node SLURM started by the test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Project, tiny_config
from slurm_cluster import SlurmCluster, slurm_cluster, slurm_unavailable_reason

REPO = Path(__file__).resolve().parents[1]
NOACCT_PROFILE = REPO / "profiles" / "slurm-noacct"
SNAKEMAKE_TIMEOUT_S = 900

pytestmark = pytest.mark.slurm

@dataclass
class Runs:
    local_dir: Path
    slurm_dir: Path
    local: subprocess.CompletedProcess
    slurm: subprocess.CompletedProcess
    slurm_seconds: float


def snakemake(directory: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(directory), *args]
    return subprocess.run(
        cmd, cwd=directory, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S
    )


def slurm_args(cluster: SlurmCluster, cores: int) -> list[str]:
    return [
        "--executor", "slurm",
        "--workflow-profile", str(NOACCT_PROFILE),
        "--default-resources", f"slurm_partition={cluster.partition}", "slurm_account=test",
        "--cores", str(cores),
        "--resources", f"mem_mb={cluster.mem_mb}",
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--jobs", "4",
    ]


def run_local_and_slurm(
    cluster: SlurmCluster, local_dir: Path, slurm_dir: Path, workflow_args: list[str], cores: int = 1
) -> Runs:
    """Run one workflow command line locally in local_dir and through SLURM in slurm_dir.

    Both runs get the same --cores, which caps every job's threads, so both compute alike.
    """
    local = snakemake(local_dir, [*workflow_args, "--cores", str(cores), "--workflow-profile", "none"])
    assert local.returncode == 0, f"local run failed:\n{local.stderr[-4000:]}"
    start = time.monotonic()
    slurm = snakemake(slurm_dir, [*workflow_args, *slurm_args(cluster, cores)], env=cluster.env)
    seconds = time.monotonic() - start
    assert slurm.returncode == 0, f"SLURM run failed:\n{slurm.stderr[-6000:]}\n{cluster.diagnostics()}"
    return Runs(local_dir, slurm_dir, local, slurm, seconds)


def submitted_slurm_ids(log: str) -> set[str]:
    return set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))


def slurm_log_ids(directory: Path) -> set[str]:
    return {p.stem for p in (directory / ".snakemake" / "slurm_logs").rglob("*.log")}


def file_contents(directory: Path, subdir: str) -> dict[str, bytes]:
    root = directory / subdir
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_ran_through_slurm(cluster: SlurmCluster, runs: Runs) -> set[str]:
    """Every submitted job has a SLURM log and COMPLETED in SLURM's job-completion record; returns their ids."""
    ids = submitted_slurm_ids(runs.slurm.stderr)
    assert ids, f"no 'submitted with SLURM jobid' lines in the snakemake log:\n{runs.slurm.stderr[-4000:]}"
    assert "steps (100%) done" in runs.slurm.stderr, runs.slurm.stderr[-4000:]
    assert ids <= slurm_log_ids(runs.slurm_dir), "a submitted job has no .snakemake/slurm_logs/**/<id>.log"
    records = cluster.jobcomp_records()
    missing = ids - records.keys()
    assert not missing, f"jobs {sorted(missing)} are not in the jobcomp file {cluster.jobcomp}"
    failed = {i: records[i] for i in ids if records[i] != "COMPLETED"}
    assert not failed, f"jobs not COMPLETED according to SLURM: {failed}"
    return ids


def slurm_config(config: dict) -> dict:
    """The tiny workflow cut to one task, one seed and one probe set, so the SLURM run stays short."""
    return {**config, "tasks": {"sent": config["tasks"]["sent"]}, "probes": {"pos": config["probes"]["pos"]},
            "ablations": {"freeze_layers": []}}


def test_tiny_workflow_through_slurm(tmp_path: Path, tiny_assets) -> None:
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    model_dir, files = tiny_assets
    config = slurm_config(tiny_config(model_dir, files))
    local, remote = Project(tmp_path / "local", config), Project(tmp_path / "slurm_run", config)
    targets = ["results/tables/metrics.csv"]
    started = time.monotonic()
    with slurm_cluster(tmp_path) as cluster:
        runs = run_local_and_slurm(cluster, local.root, remote.root, targets, cores=cluster.cpus)
        ids = assert_ran_through_slurm(cluster, runs)
        planned = [rule for rule, _ in local.planned_jobs("--forceall", *targets)]
        assert len(ids) >= len(set(planned)) - 1, f"{len(ids)} SLURM jobs for rules {sorted(set(planned))}"
        daemons = dict(cluster.procs)
    for table in targets:
        assert (runs.local_dir / table).read_bytes() == (runs.slurm_dir / table).read_bytes()
    assert all(proc.returncode is not None for proc in daemons.values())
    assert not [name for name, proc in daemons.items() if os.path.exists(f"/proc/{proc.pid}")]
    print(
        f"\nSLURM job ids {sorted(ids, key=int)} for {len(planned)} jobs ({', '.join(sorted(set(planned)))}); "
        f"{targets[0]} byte-identical to the local run; snakemake via SLURM {runs.slurm_seconds:.0f}s, "
        f"test {time.monotonic() - started:.0f}s"
    )
