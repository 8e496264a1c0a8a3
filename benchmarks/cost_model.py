"""What a config costs, extrapolated from a finished run of the default config on this machine.

    python benchmarks/cost_model.py RUN_DIR [--config configs/paper.yaml] [--out cost.csv]

RUN_DIR is a finished `snakemake --cores all` of the default config (its logs, training records and activation
files). Each rule's measured cost is turned into a unit cost and scaled to the target config's jobs (planned by
`snakemake -n`), one estimate per rule:

- finetune: core-seconds per training token of the measured encoder, times the target's training tokens
  (epochs x min(train - dev_size, max_train) x the pieces the encoder reads per example, below) and the ratio of
  encoder FLOPs per token (non-embedding parameters: ALBERT's shared block once per layer). GPU-hours: the same
  training FLOPs (6 x those parameters per token) at SUSTAINED_FLOPS. epochs is an upper bound where the config
  sets a patience (early stopping).
- pieces per training example, by the task's kind (its encode()): one text or pair, cut at finetune.max_length;
  multiple choice: the context with each choice, choices x (context + choice pieces); extractive QA: question +
  context, in windows of max_length overlapping by max_length // 3 context pieces when longer, each window
  repeating the question. A dev probe set stores one sequence per example (its kind's probe(): a multiple-choice
  context with its right answer, a question with its context), cut at extract.max_length.
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
(their published values): those of configs/paper.yaml and of the per-study configs (merchant2020, phang2021,
zhou2022, rajaee2021). Mean lengths of target sentences that are not on this machine are stated estimates.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dry_run import parse_dry_run  # noqa: E402

from repshift import config as rc  # noqa: E402
from repshift.activations import Activations  # noqa: E402
from repshift.readme import run_logs, run_timings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
# layers, hidden size, encoder parameters without the embeddings (the FLOPs per token), all parameters. From each
# model's config.json (num_hidden_layers, hidden_size h, intermediate_size f, vocabulary, embedding size): a layer
# holds 4h^2 + 4h (attention) + 2hf + h + f (feed-forward) + 4h (two LayerNorms) parameters; all parameters add the
# embeddings and the pooler (ElectraModel has none). The published totals agree: BERT-Tiny 4.4M (Turc et al. 2019),
# roberta-large 355M, ELECTRA-large 335M with its discriminator head (Clark et al. 2020).
ARCHITECTURES = {"sentence-transformers/all-MiniLM-L6-v2": (6, 384, 10.6e6, 22.7e6),
                 "bert-base-uncased": (12, 768, 85.0e6, 109.5e6), "FacebookAI/roberta-base": (12, 768, 85.0e6, 124.6e6),
                 "sentence-transformers/all-mpnet-base-v2": (12, 768, 85.0e6, 109.5e6),
                 "FacebookAI/roberta-large": (24, 1024, 302.3e6, 355.4e6),
                 "google/electra-large-discriminator": (24, 1024, 302.3e6, 334.1e6),
                 # one 4096-wide block (f 16384) shared by all 12 layers: run 12 times per token, so 12 x its 201.4M
                 # parameters of FLOPs, although the model holds only 222.6M (128-wide embeddings)
                 "albert/albert-xxlarge-v2": (12, 4096, 2416.6e6, 222.6e6),
                 "google/bert_uncased_L-2_H-128_A-2": (2, 128, 0.40e6, 4.4e6),
                 "google/bert_uncased_L-4_H-256_A-4": (4, 256, 3.16e6, 11.2e6),
                 "google/bert_uncased_L-4_H-512_A-8": (4, 512, 12.6e6, 28.8e6),
                 "google/bert_uncased_L-8_H-512_A-8": (8, 512, 25.2e6, 41.4e6)}


class TaskSize(NamedTuple):
    """A task's published training examples and the mean word pieces of one encoder sequence, special tokens included:
    a text or a pair; a multiple-choice context with one choice; an extractive-QA question with its whole context."""

    train: int
    pieces: float
    choices: int = 1  # multiple choice: the encoder reads the context once with each choice
    question: float = 0  # extractive QA: the question's pieces and the 3 special tokens, repeated in every window


# Train sizes: GLUE (Wang et al. 2019), SuperGLUE (Wang et al. 2019), TREC (Li & Roth 2002), SQuAD v1.1, UD English-EWT
# train and English-PUD (sentences), HellaSwag, Cosmos QA, CommonsenseQA and Social IQa (their dataset cards). Pieces
# are estimates: mean words x 1.3 (x 1.2 for UD, already split at punctuation) plus 2 special tokens for a text, 3 for
# a pair (words in the comments).
TASK_SIZES = {"sst2": TaskSize(67_349, 13), "cola": TaskSize(8_551, 11), "trec": TaskSize(5_452, 13),
              "trec50": TaskSize(5_452, 13),  # the same questions, fine labels
              "mnli": TaskSize(392_702, 46),  # premise 22 + hypothesis 11 words
              "rte": TaskSize(2_490, 71),  # 43 + 9 words
              "qqp": TaskSize(363_846, 32),  # 11 + 11 words
              "mrpc": TaskSize(3_668, 60),  # 22 + 22 words
              "boolq": TaskSize(9_427, 155),  # question 9 + passage 108 words
              "cb": TaskSize(250, 91),  # premise 60 + hypothesis 8 words
              "wic": TaskSize(5_428, 26),  # 9 + 9 words
              "copa": TaskSize(400, 19, choices=2),  # premise 6 + choice 6 words
              "hellaswag": TaskSize(39_905, 62, choices=4),  # context 30 + ending 15 words
              "cosmosqa": TaskSize(25_262, 106, choices=4),  # context 70 + answer 9 words (the question is not read)
              "commonsenseqa": TaskSize(9_741, 22, choices=5),  # question 13 + answer 1.5 words
              "socialiqa": TaskSize(33_410, 26, choices=3),  # context 14 + answer 4 words (the question is not read)
              "squad": TaskSize(87_599, 177, question=17),  # question 11 words; context 120 words, 160 pieces
              # UD English-EWT train: 12,543 sentences of 16.3 words (about 204,600 words)
              "ewt_parse": TaskSize(12_543, 22),
              # UD English-PUD, its one split: 1,000 sentences of 21.2 words (21,176 words)
              "pos": TaskSize(1_000, 28), "dep": TaskSize(1_000, 28)}
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


def task_size(config: dict, task: str, run_dir: Path) -> TaskSize:
    """A task's training examples as the target config splits them and its mean pieces: its published size (TASK_SIZES)
    less split.dev_size, which prepare_task carves from it; a task not there as the measured run split it (the
    offline tasks). At most split.max_train either way."""
    split = rc.task_preparation(config, task)
    if task in TASK_SIZES:
        size = TASK_SIZES[task]._replace(train=TASK_SIZES[task].train - split["dev_size"])
    else:
        train = json.loads((run_dir / f"results/data/tasks/{task}.json").read_text())["train"]["text"]
        size = TaskSize(len(train), _mean_pieces(train))
    return size._replace(train=min(size.train, split["max_train"] or size.train))


def example_pieces(size: TaskSize, kind: str, max_length: int) -> float:
    """Pieces the encoder reads to train on one example, as the task's kind encodes it: each of its choices, cut at
    max_length; an extractive-QA question with a context too long for one window in windows of max_length that
    overlap by max_length // 3 context pieces, each repeating the question (extractive_qa.py)."""
    if kind == "extractive_qa" and size.pieces > max_length:
        stride = max_length // 3
        windows = 1 + math.ceil((size.pieces - max_length) / (max_length - size.question - stride))
        return size.pieces + (windows - 1) * (size.question + stride)
    return size.choices * min(size.pieces, max_length)


def probe_size(config: dict, probe: str, run_dir: Path) -> tuple[int, float]:
    """Sentences an extract job of `probe` stores and their mean pieces, cut at extract.max_length: a task's dev
    examples (at most extract.dev_sentences), each the one sequence its kind's probe() stores (a text or a pair; a
    multiple-choice context with its right answer; an extractive-QA question with its context); a probe set on this
    machine (a pattern corpus) counted and tokenized; another from its max_sentences and PROBE_PIECES."""
    spec = config["probes"].get(probe)
    if spec is None:  # a task's dev set (rc.probe_role)
        task = probe.removeprefix("dev-")
        dev = rc.task_preparation(config, task)["dev_size"]
        count, pieces = min(dev, config["extract"]["dev_sentences"] or dev), task_size(config, task, run_dir).pieces
    elif spec["source"]["kind"] != "pattern":
        count, pieces = spec["max_sentences"], PROBE_PIECES[probe]
    else:
        from repshift import data

        texts = [" ".join(words) for words in data.load_source(spec["source"], run_dir / "resources/corpora").words]
        count, pieces = min(len(texts), spec.get("max_sentences") or len(texts)), _mean_pieces(texts)
    return count, min(pieces, config["extract"]["max_length"])


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
                size = task_size(config, variant.task, run_dir)
                settings = rc.finetune_settings(config, variant)
                examples = settings["epochs"] * size.train
                tokens = examples * example_pieces(size, config["tasks"][variant.task]["kind"], settings["max_length"])
                core += units["train_token"] * tokens * flops / flops0
                steps = examples / settings["batch_size"]
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
