"""The cost model's scaling (benchmarks/cost_model.py), on stub unit costs: no measured run needed."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cost_model  # noqa: E402

PAPER = Path(__file__).resolve().parents[1] / "configs/paper.yaml"
STUDIES = [PAPER.with_name(f"{study}.yaml") for study in ("merchant2020", "phang2021", "zhou2022", "rajaee2021")]
UNITS = {"architecture": cost_model.ARCHITECTURES["sentence-transformers/all-MiniLM-L6-v2"], "train_token": 1e-3,
         "stored_token": 1e-3, "max_tokens": 8000, "per_job": {"metrics": 60.0, "compare": 40.0}}
JOBS = pd.DataFrame([("finetune", "model=bert_base, finetuned=sst2-s0"),
                     ("finetune", "model=roberta_base, finetuned=sst2-s0"),
                     ("extract", "model=bert_base, variant=base, probe=dev-cola"),
                     ("metrics", "model=bert_base, variant=base, probe=dev-cola")], columns=["rule", "wildcards"])


def costs(config_file, jobs=JOBS):
    return cost_model.target_costs(config_file, UNITS, jobs, Path("unused")).set_index("rule")


def load(config_file):
    return cost_model.rc.load_config(config_file, cost_model.SCHEMA)


def table(*jobs) -> pd.DataFrame:
    return pd.DataFrame(jobs, columns=["rule", "wildcards"])


def study_jobs(config: dict) -> pd.DataFrame:
    """A fine-tune, a dev-set extraction and its metrics per model and task, and the hub probe's extraction per
    model, named as `snakemake -n` names them."""
    rows = []
    for model in config["models"]:
        rows.append(("extract", f"model={model}, variant=base, probe=ud"))
        for task in config["tasks"]:
            dev = f"model={model}, variant=base, probe=dev-{task}"
            rows += [("finetune", f"model={model}, finetuned={task}-s0"), ("extract", dev), ("metrics", dev)]
    return table(*rows)


def finetune_costs(config_file, task: str, models: list[str]) -> pd.DataFrame:
    """One fine-tuning job of `task` per model: a row per model."""
    return pd.concat([costs(config_file, table(("finetune", f"model={m}, finetuned={task}-s0"))) for m in models],
                     keys=models).droplevel(1)


def test_costs_scale_with_epochs_model_size_and_token_sample(tmp_path):
    paper = costs(PAPER)
    config = yaml.safe_load(PAPER.read_text())
    config["finetune"]["epochs"] *= 2
    config["metrics"]["max_tokens"] *= 2
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(yaml.safe_dump(config))
    twice = costs(doubled)
    assert twice.loc["finetune", "cpu_core_hours"] == pytest.approx(2 * paper.loc["finetune", "cpu_core_hours"])
    assert twice.loc["metrics", "cpu_core_hours"] == pytest.approx(2 * paper.loc["metrics", "cpu_core_hours"])
    assert twice.loc["extract", "disk_gb"] == paper.loc["extract", "disk_gb"] > 0
    # a 12-layer, 768-d encoder: 2 x the layers and 4 x the squared width of MiniLM, 2.5 x its token sample
    assert paper.loc["metrics", "cpu_core_hours"] * 3600 == pytest.approx(60.0 * 2 * 4 * 2.5)
    assert paper.loc["finetune", "peak_gb"] > paper.loc["extract", "peak_gb"]
    assert paper.loc["finetune", "gpu_hours"] > 0


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_every_model_and_task_of_a_study_config_is_costed(study):
    config = load(study)
    estimate = costs(study, study_jobs(config))
    pairs = len(config["models"]) * len(config["tasks"])
    assert estimate["jobs"].to_dict() == {"finetune": pairs, "extract": pairs + len(config["models"]), "metrics": pairs}
    assert (estimate["cpu_core_hours"] > 0).all() and (estimate["disk_gb"] >= 0).all()
    assert estimate.loc["finetune", "gpu_hours"] > 0 and estimate.loc["extract", "gpu_hours"] > 0


def test_albert_runs_its_shared_block_per_layer():
    tuned = finetune_costs(STUDIES[1], "mnli", ["albert_xxlarge", "roberta_large"])
    # more FLOPs per token than roberta-large (12 passes of a 4096-wide block), fewer parameters to hold and store
    assert tuned.loc["albert_xxlarge", "cpu_core_hours"] > 7 * tuned.loc["roberta_large", "cpu_core_hours"]
    assert tuned.loc["albert_xxlarge", "gpu_hours"] > tuned.loc["roberta_large", "gpu_hours"]
    assert tuned.loc["albert_xxlarge", "peak_gb"] < tuned.loc["roberta_large", "peak_gb"]
    assert tuned.loc["albert_xxlarge", "disk_gb"] < tuned.loc["roberta_large", "disk_gb"]


def test_tiny_bert_costs_less_than_base_per_token():
    tuned = finetune_costs(STUDIES[2], "pos", ["bert_tiny", "bert_base"])
    assert tuned.loc["bert_tiny", "cpu_core_hours"] < tuned.loc["bert_base", "cpu_core_hours"] / 100
    assert 0 < tuned.loc["bert_tiny", "gpu_hours"] < tuned.loc["bert_base", "gpu_hours"]


def test_multiple_choice_reads_every_choice_and_stores_one(monkeypatch):
    monkeypatch.setitem(cost_model.TASK_SIZES, "hellaswag", cost_model.TaskSize(10_000, 50, choices=4))
    monkeypatch.setitem(cost_model.TASK_SIZES, "mnli", cost_model.TaskSize(10_000, 50))
    choices, pair = (costs(STUDIES[1], table(("finetune", f"model=roberta_large, finetuned={task}-s0"),
                                             ("extract", f"model=roberta_large, variant=base, probe=dev-{task}")))
                     for task in ("hellaswag", "mnli"))
    assert choices.loc["finetune", "cpu_core_hours"] == pytest.approx(4 * pair.loc["finetune", "cpu_core_hours"])
    assert choices.loc["extract", "disk_gb"] == pytest.approx(pair.loc["extract", "disk_gb"])


def test_extractive_qa_splits_long_contexts_into_windows():
    squad = cost_model.TASK_SIZES["squad"]
    assert cost_model.example_pieces(squad, "extractive_qa", 384) == squad.pieces
    # two windows at 128: the question again, and the 128 // 3 context pieces the windows share
    assert cost_model.example_pieces(squad, "extractive_qa", 128) == squad.pieces + squad.question + 42
    assert cost_model.example_pieces(squad, "pair_classification", 128) == 128
    # merchant2020 fine-tunes SQuAD at max_length 384, one window: 3 epochs of its train split less the 2000 dev
    tuned = finetune_costs(STUDIES[0], "squad", ["bert_base"])
    flops = cost_model.ARCHITECTURES["bert-base-uncased"][2] / UNITS["architecture"][2]
    assert tuned["cpu_core_hours"].item() * 3600 == pytest.approx(1e-3 * 3 * (87_599 - 2000) * squad.pieces * flops)


def test_training_and_dev_sets_follow_the_task_split():
    phang = load(STUDIES[1])
    # cb and copa carve their own dev_size from the published train split; max_train caps mnli
    assert [cost_model.task_size(phang, task, Path("unused")).train for task in ("cb", "copa", "mnli")] == [
        200, 300, 100_000]
    assert [cost_model.probe_size(phang, f"dev-{task}", Path("unused"))[0] for task in ("cb", "copa", "mnli")] == [
        50, 100, 1000]
    # a dev probe set is cut at extract.max_length, a multiple-choice one holds one sequence per example
    assert cost_model.probe_size(load(STUDIES[0]), "dev-squad", Path("unused"))[1] == 128
    assert cost_model.probe_size(phang, "dev-hellaswag", Path("unused"))[1] == cost_model.TASK_SIZES["hellaswag"].pieces
