import json
import re
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from repshift import config as rc
from repshift.errors import UserError
from repshift.provenance import code_version

try:
    rc.check_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except UserError as error:
    sys.exit(f"repshift: error: {error}")

REPSHIFT = f"PYTHONPATH={SRC} {sys.executable} -m repshift"
MODELS, TASKS, PROBES, SEEDS = config["models"], config["tasks"], config["probes"], config["seeds"]


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


wildcard_constraints:
    model=alternatives(MODELS),
    task=alternatives(TASKS),
    seed=r"\d+",
    variant=f"base|(?:{alternatives(TASKS)})-s\\d+",
    probe=alternatives([rc.dev_probe(t) for t in TASKS] + list(PROBES)),


def res(rule, key):
    return rc.rule_resources(config, rule)[key]


def as_json(value):
    return json.dumps(value, sort_keys=True)


def provenance(stage, **identity):
    return as_json({**identity, "code_version": code_version(stage)})


def source_input(entry):
    source = entry["source"]
    if source["kind"] == "pattern":
        return [f"resources/corpora/{source['file']}"]
    if source["kind"] == "local" and Path(source["path"]).is_file():
        return [source["path"]]
    return []


def model_spec(wildcards):
    parsed = rc.parse_variant(wildcards.variant)
    if parsed is None:
        return as_json(MODELS[wildcards.model])
    return as_json({"id": str(Path(finetuned_dir(wildcards.model, *parsed)).resolve())})


def finetuned_dir(model, task, seed):
    return f"results/models/{model}/{rc.finetuned_variant(task, seed)}"


def extract_inputs(wildcards):
    inputs = {"probe": f"results/data/probes/{wildcards.probe}.json"}
    parsed = rc.parse_variant(wildcards.variant)
    if parsed is not None:
        inputs["weights"] = f"{finetuned_dir(wildcards.model, *parsed)}/model.safetensors"
    return inputs


def metric_tables(model, task):
    variants = ["base"] + [rc.finetuned_variant(task, s) for s in SEEDS]
    return [f"results/metrics/{model}/{v}/{rc.dev_probe(task)}.csv" for v in variants]


def comparison_tables(model, task, probes=None):
    probes = probes or [rc.dev_probe(task)]
    return [f"results/compare/{model}/{rc.finetuned_variant(task, s)}/{p}.csv" for s in SEEDS for p in probes]


def all_tables():
    tables = [f"results/metrics/{m}/{v}/{p}.csv" for m in MODELS for v in rc.variants(config)
              for p in rc.probe_sets(config, v)]
    tables += [c for m in MODELS for t in TASKS for c in comparison_tables(m, t, rc.probe_sets(config, t + "-s0"))]
    return tables


def final_outputs():
    figures = [f"results/figures/{m}/{t}/{name}.{ext}" for m in MODELS for t in TASKS
               for name in ("isotropy", "cka") for ext in ("png", "pdf")]
    return figures + ["results/tables/metrics.csv"]
