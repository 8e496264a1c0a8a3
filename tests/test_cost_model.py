"""The cost model's scaling (benchmarks/cost_model.py), on stub unit costs: no measured run needed."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cost_model  # noqa: E402

PAPER = Path(__file__).resolve().parents[1] / "configs/paper.yaml"
UNITS = {"architecture": cost_model.ARCHITECTURES["sentence-transformers/all-MiniLM-L6-v2"], "train_token": 1e-3,
         "stored_token": 1e-3, "max_tokens": 8000, "per_job": {"metrics": 60.0, "compare": 40.0}}
JOBS = pd.DataFrame([("finetune", "model=bert_base, finetuned=sst2-s0"),
                     ("finetune", "model=roberta_base, finetuned=sst2-s0"),
                     ("extract", "model=bert_base, variant=base, probe=dev-cola"),
                     ("metrics", "model=bert_base, variant=base, probe=dev-cola")], columns=["rule", "wildcards"])


def costs(config_file):
    return cost_model.target_costs(config_file, UNITS, JOBS, Path("unused")).set_index("rule")


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
