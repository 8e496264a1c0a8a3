"""The shipped configurations build their DAGs (a dry run needs no hub and downloads nothing), locally and through
the SLURM profile."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dry_run(tmp_path, *args, config="configs/paper.yaml", overlays=()):
    shutil.copyfile(REPO / "config.yaml", tmp_path / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--configfile", str(REPO / config), *(str(REPO / o) for o in overlays),
               *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout + result.stderr


def job_counts(out: str) -> dict:
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@pytest.mark.workflow
def test_paper_dag_builds(tmp_path):
    counts = job_counts(dry_run(tmp_path, "--cores", "8", "--workflow-profile", "none"))
    assert "assemble_model" not in counts
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


PAPERS = {"merchant2020": (1, 3, 3, 2), "phang2021": (3, 12, 3, 0), "zhou2022": (5, 3, 3, 0),
          "rajaee2021": (1, 3, 3, 0)}  # models, tasks, seeds, partial-freezing variants


@pytest.mark.workflow
@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_each_paper_config_builds_its_dag_locally_and_through_slurm(tmp_path, paper):
    """A fine-tune per model, task, seed and freezing variant, and a figure set per model and task; through the
    SLURM profile the GPU rules ask for a GPU."""
    config = f"configs/{paper}.yaml"
    models, tasks, seeds, frozen = PAPERS[paper]
    counts = job_counts(dry_run(tmp_path, "--cores", "8", "--workflow-profile", "none", config=config))
    assert counts["finetune"] == models * tasks * seeds * (1 + frozen)
    assert counts["figures"] == models * tasks and counts["claims"] == 1
    (tmp_path / "slurm").mkdir()
    out = dry_run(tmp_path / "slurm", "--workflow-profile", str(REPO / "profiles/slurm"), config=config)
    finetune = out[out.index("rule finetune:"):]
    assert "gpu=1" in finetune[: finetune.index("\n\n")] and "slurm_partition=" in out


@pytest.mark.workflow
def test_the_streusle_overlay_adds_zhou_s_two_supersense_tasks_read_from_a_local_release(tmp_path):
    release = tmp_path / "data/streusle/train/streusle.ud_train.conllulex"
    release.parent.mkdir(parents=True)
    release.write_text("1\tof\tof\tADP\tIN\t_\t0\troot\t_\t_\t_\tP\tof\tp.Topic\tp.Topic\t_\t_\t_\tO-P-p.Topic\n\n")
    counts = job_counts(dry_run(tmp_path, "--cores", "8", "--workflow-profile", "none", config="configs/zhou2022.yaml",
                                overlays=["configs/zhou2022-streusle.yaml"]))
    models, tasks, seeds, _ = PAPERS["zhou2022"]
    assert counts["finetune"] == models * (tasks + 2) * seeds and counts["prepare_task"] == tasks + 2


@pytest.mark.workflow
def test_offline_base_assembles_mpnet_once_before_everything_that_loads_it(tmp_path):
    out = dry_run(tmp_path, "--cores", "2", "--workflow-profile", "none", config="configs/offline-base.yaml")
    counts = job_counts(out)
    assert counts["assemble_model"] == 1
    assert counts["finetune"] == 2 * 3 * 2, "two tasks, three seeds, full and frozen: mpnet only, not the default's"
    assert "model=minilm" not in out
    jobs = re.split(r"^rule ", out, flags=re.M)[1:]
    loads = {job.split(":")[0] for job in jobs if re.search(r"input: .*resources/models/all-mpnet-base-v2", job)}
    assert loads == {"finetune", "baseline", "extract"}
    loading = [job for job in jobs if job.startswith("extract:") and "all-mpnet-base-v2" in job]
    assert len(loading) == 2 + 2 < counts["extract"], "only the pre-trained model's (two dev sets, two probe sets)"


@pytest.mark.workflow
def test_offline_kinds_fetches_snli_once_and_fine_tunes_a_pair_and_a_token_task(tmp_path):
    out = dry_run(tmp_path, "--cores", "2", "--workflow-profile", "none", config="configs/offline-kinds.yaml")
    counts = job_counts(out)
    assert counts["fetch_snli"] == 1 and counts["finetune"] == 2 * 3
    jobs = re.split(r"^rule ", out, flags=re.M)[1:]
    snli = [job for job in jobs if job.startswith("prepare_task:") and "task=snli" in job]
    assert len(snli) == 1 and "resources/corpora/snli/snli_1.0_test.jsonl" in snli[0]


@pytest.mark.workflow
def test_offline_dynamics_follows_one_fine_tune_and_runs_each_method_and_comparison(tmp_path):
    out = dry_run(tmp_path, "--cores", "2", "--workflow-profile", "none", config="configs/offline-dynamics.yaml")
    counts = job_counts(out)
    assert counts["finetune"] == 3 * 2, "full, LoRA and BitFit, two seeds each"
    assert counts["snapshot"] == 6 and counts["dynamics"] == 1 and counts["compared"] == 1
    assert counts["between"] == 4 * 3, "four comparisons within mr, each on its dev set and both probe sets"
    assert counts["figures"] == 1 and counts["claims"] == 1


@pytest.mark.workflow
def test_offline_methods_runs_every_method_beside_full_fine_tuning_and_compares_each(tmp_path):
    out = dry_run(tmp_path, "--cores", "2", "--workflow-profile", "none", config="configs/offline-methods.yaml")
    counts = job_counts(out)
    assert counts["finetune"] == 4 * 2, "full, LoRA, BitFit and prompt tuning, two seeds each"
    assert "snapshot" not in counts and counts["compared"] == 1
    assert counts["between"] == 4 * 3, "seed vs seed and full vs each method, each on its dev set and both probe sets"
    assert "finetuned=mr+prompt-s1" in out
