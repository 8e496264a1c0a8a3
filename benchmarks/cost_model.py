"""What a config costs, extrapolated from a finished run of the default config on this machine.

    python benchmarks/cost_model.py RUN_DIR [--config configs/paper.yaml] [--out cost.csv]

RUN_DIR is a finished `snakemake --cores all` of the default config (its logs, training records and activation
files). Each rule's measured cost is turned into a unit cost and scaled to the target config's jobs (planned by
`snakemake -n`), one estimate per rule:

- finetune: core-seconds per training token of the measured encoder, times the target's training tokens
  (epochs x min(train, max_train) x mean pieces per sentence) and the ratio of encoder FLOPs per token
  (layers x hidden^2). GPU-hours: the same training FLOPs (6 x encoder parameters per token) at SUSTAINED_FLOPS.
- extract: core-seconds per stored token, times the target's stored tokens and the FLOP ratio; GPU: 2 x
  parameters per token at SUSTAINED_FLOPS.
- metrics, compare, seed_floor, layer_drop, baseline: the measured mean core-seconds of a job of that rule, times
  (target layers / measured layers) x (target hidden / measured hidden)^2 x (target token sample / measured): the
  cost of covariance and Gram products over the token sample. On all-mpnet-base-v2 (12 layers, 768-d) measured
  here this, and the FLOP ratio of fine-tuning and extraction, overstated the CPU cost about 2x (README): an
  upper estimate.
- GPU-hours also never go below STEP_SECONDS per training step (small batches leave a GPU launch-bound).
- peak memory of one job: 16 bytes per parameter (weights, gradients, AdamW moments) plus RUNTIME_GB to fine-tune,
  4 bytes per parameter plus RUNTIME_GB to extract; the float64 token sample of every layer (two for a comparison)
  plus 1 GB (the metrics step's measured floor, benchmarks/run.py memory rows) for the metrics rules.
- disk: float32 activations, tokens x (layers + 1) x hidden x 4 bytes per file, plus the fine-tuned weights.

Architectures and dataset sizes the target names but this machine cannot load are in ARCHITECTURES and TASK_SIZES
(their published values); mean lengths of target sentences that are not on this machine are stated estimates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dry_run import parse_dry_run  # noqa: E402

from repshift import config as rc  # noqa: E402
from repshift.activations import Activations  # noqa: E402
from repshift.readme import run_logs, run_timings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
# layers, hidden size, encoder parameters without the embeddings (the FLOPs per token), all parameters
ARCHITECTURES = {"sentence-transformers/all-MiniLM-L6-v2": (6, 384, 10.6e6, 22.7e6),
                 "bert-base-uncased": (12, 768, 85.0e6, 109.5e6), "FacebookAI/roberta-base": (12, 768, 85.0e6, 124.6e6),
                 "sentence-transformers/all-mpnet-base-v2": (12, 768, 85.0e6, 109.5e6)}
# training sentences (before the config's max_train) and mean word pieces per sentence with [CLS] and [SEP]:
# train sizes from GLUE (Wang et al. 2019) and TREC (Li & Roth 2002); lengths are estimates from their mean words
TASK_SIZES = {"sst2": (67_349, 13), "cola": (8_551, 11), "trec": (5_452, 13)}
PROBE_PIECES = {"ud": 17}  # UD English-EWT validation: 12.6 words per sentence
SUSTAINED_FLOPS = 100e12  # one A100-class GPU in bfloat16: a third of its 312 TFLOP/s peak, typical for BERT-base
STEP_SECONDS = 0.02  # the least a 12-layer training step takes on such a GPU (kernel launches, small batches)
RUNTIME_GB = 1.7  # peak RSS of a MiniLM fine-tuning job on this machine less its 16 bytes per parameter
SCALED_RULES = ("metrics", "compare", "seed_floor", "layer_drop", "baseline")


def measured_jobs(run_dir: Path) -> pd.DataFrame:
    """Every job of the run: rule, wildcards and core-seconds (wall seconds x threads)."""
    jobs = run_timings(run_logs(run_dir))[1]
    return jobs.assign(core_seconds=jobs["seconds"] * jobs["threads"])


def planned_jobs(config_file: Path) -> pd.DataFrame:
    """The target config's jobs from `snakemake -n` in an empty directory."""
    with tempfile.TemporaryDirectory() as directory:
        text = subprocess.run(["snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile",
                               str(config_file.resolve()), "--directory", directory], capture_output=True, text=True,
                              check=True).stdout
    jobs, _ = parse_dry_run(text)
    return pd.DataFrame(jobs, columns=["rule", "wildcards"])


def _wildcard(wildcards: str, name: str) -> str:
    return dict(part.split("=", 1) for part in wildcards.split(", ") if "=" in part).get(name, "")


def _mean_pieces(texts: list[str]) -> float:
    """Mean word pieces per text with [CLS] and [SEP], by MiniLM's tokenizer (bert-base-uncased's vocabulary)."""
    from transformers import AutoTokenizer

    from repshift.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("sentence-transformers/all-MiniLM-L6-v2").path)
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"]) / len(texts)


def task_size(task: str, run_dir: Path) -> tuple[int, float]:
    """Training sentences and mean pieces of a task: its published size (TASK_SIZES), or as the measured run split
    it (the offline tasks)."""
    if task in TASK_SIZES:
        return TASK_SIZES[task]
    train = json.loads((run_dir / f"results/data/tasks/{task}.json").read_text())["train"]["text"]
    return len(train), _mean_pieces(train)


def probe_size(config: dict, probe: str, run_dir: Path) -> tuple[int, float]:
    """Sentences an extract job of `probe` stores and their mean pieces: a task's dev sentences (lengths as its
    training sentences); a probe set on this machine (a pattern corpus) counted and tokenized; another from its
    max_sentences and PROBE_PIECES."""
    if probe.startswith("dev-"):
        return config["extract"]["dev_sentences"], task_size(probe.removeprefix("dev-"), run_dir)[1]
    spec = config["probes"][probe]
    if spec["source"]["kind"] != "pattern":
        return spec["max_sentences"], PROBE_PIECES[probe]
    from repshift import data

    texts = [" ".join(words) for words in data.load_source(spec["source"], run_dir / "resources/corpora").words]
    return min(len(texts), spec.get("max_sentences") or len(texts)), _mean_pieces(texts)


def unit_costs(run_dir: Path, jobs: pd.DataFrame) -> dict:
    """Core-seconds per training token and per stored token, per-job means of the scaled rules, and the measured
    run's sizes."""
    config = rc.load_config(run_dir / "config.yaml", SCHEMA)
    (model,) = config["models"].values()
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("results/models/*/*/train_metrics.json"))]
    pieces = {task: _mean_pieces(json.loads((run_dir / f"results/data/tasks/{task}.json").read_text())["train"]["text"])
              for task in config["tasks"]}
    tuned = jobs[jobs["rule"] == "finetune"]
    tokens = sum(len(r["loss"]) * config["finetune"]["batch_size"] * pieces[r["provenance"]["task"]]
                 for r in records)
    stored = 0
    for path in run_dir.glob("results/activations/*/*/*.h5"):
        with Activations(path) as act:
            stored += len(act.token_meta("piece_id"))
    extract = jobs[jobs["rule"] == "extract"]["core_seconds"].sum()
    return {"architecture": ARCHITECTURES[model["id"]], "train_token": tuned["core_seconds"].sum() / tokens,
            "stored_token": extract / stored, "max_tokens": config["metrics"]["max_tokens"],
            "per_job": jobs[jobs["rule"].isin(SCALED_RULES)].groupby("rule")["core_seconds"].mean().to_dict()}


def target_costs(config_file: Path, units: dict, planned: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """One row per rule of the target config: jobs, CPU core-hours, GPU-hours where a GPU runs it, disk."""
    config = rc.load_config(config_file, SCHEMA)
    sizes = {}
    layers0, hidden0, flops0, _ = units["architecture"]
    rows = []
    for rule, group in planned.groupby("rule"):
        core, gpu, disk, peak = 0.0, None, 0.0, 0.0
        for wildcards in group["wildcards"]:
            model = config["models"].get(_wildcard(wildcards, "model"))
            layers, hidden, flops, params = ARCHITECTURES[model["id"]] if model else units["architecture"]
            if rule == "finetune":
                variant = rc.parse_variant(_wildcard(wildcards, "finetuned"))
                train, pieces = task_size(variant.task, run_dir)
                settings = rc.finetune_settings(config, variant)
                tokens = settings["epochs"] * min(train, config["split"].get("max_train") or train) * pieces
                core += units["train_token"] * tokens * flops / flops0
                steps = tokens / pieces / settings["batch_size"]
                gpu = (gpu or 0) + max(6 * flops * tokens / SUSTAINED_FLOPS, steps * STEP_SECONDS * layers / 12) / 3600
                disk += 4 * params
                peak = max(peak, 16 * params / 1e9 + RUNTIME_GB)
            elif rule == "extract":
                probe = _wildcard(wildcards, "probe")
                if probe not in sizes:
                    sizes[probe] = probe_size(config, probe, run_dir)
                tokens = sizes[probe][0] * sizes[probe][1]
                core += units["stored_token"] * tokens * flops / flops0
                gpu = (gpu or 0) + 2 * flops * tokens / SUSTAINED_FLOPS / 3600
                disk += tokens * (layers + 1) * hidden * 4
                peak = max(peak, 4 * params / 1e9 + RUNTIME_GB)
            elif rule in units["per_job"]:
                core += units["per_job"][rule] * (layers / layers0) * (hidden / hidden0) ** 2 * (
                    config["metrics"]["max_tokens"] / units["max_tokens"] if rule != "layer_drop" else 1)
                sample = config["metrics"]["max_tokens"] * (layers + 1) * hidden * 8 / 1e9
                peak = max(peak, 4 * params / 1e9 + RUNTIME_GB if rule in ("layer_drop", "baseline")
                           else (1 if rule == "metrics" else 2) * sample + 1.0)
        if not (core or gpu or disk):
            continue
        rows.append({"rule": rule, "jobs": len(group), "cpu_core_hours": core / 3600,
                     "gpu_hours": gpu, "peak_gb": peak or None, "disk_gb": disk / 1e9})
    return pd.DataFrame(rows).sort_values("cpu_core_hours", ascending=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "configs/paper.yaml")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    units = unit_costs(args.run_dir, measured_jobs(args.run_dir))
    table = target_costs(args.config, units, planned_jobs(args.config), args.run_dir)
    print(f"basis: {units['train_token'] * 1e3:.3f} core-ms per training token and "
          f"{units['stored_token'] * 1e3:.3f} core-ms per stored token (measured encoder), "
          f"per-job core-seconds {({k: round(v, 1) for k, v in units['per_job'].items()})}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print("(data preparation, figures, tables and claims: seconds, left out)")
    print(f"total: {table['cpu_core_hours'].sum():,.1f} CPU core-hours, {table['gpu_hours'].sum():,.2f} GPU-hours, "
          f"{table['disk_gb'].sum():,.1f} GB")
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
