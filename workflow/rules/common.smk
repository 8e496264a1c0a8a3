import json
import re
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from repshift import config as rc
from repshift.errors import UserError
from repshift.data import SNLI_DIR, SNLI_FILES, SNLI_SDIST
from repshift.models import ASSEMBLED, ASSEMBLED_DIR, assembled, assembled_dir
from repshift.provenance import code_version

try:
    rc.check_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except UserError as error:
    sys.exit(f"repshift: error: {error}")

REPSHIFT = f"PYTHONPATH={SRC} {sys.executable} -m repshift"
MODELS, TASKS, PROBES, SEEDS = config["models"], config["tasks"], config["probes"], config["seeds"]
# the models of this config that are assembled from PyPI wheels, by folder under ASSEMBLED_DIR
ASSEMBLED_IDS = {ASSEMBLED[m["id"]].folder: m["id"] for m in MODELS.values()
                 if assembled(m["id"], m.get("revision"))}


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


METHODS = config["methods"]
HOW = f"(?:\\+(?:{alternatives(METHODS)}))?" if METHODS else ""
FINETUNED = f"(?:{alternatives(TASKS)}){HOW}(?:-f\\d+)?-s\\d+"
SNAPSHOT = f"(?:{alternatives(TASKS)})-s\\d+-at[\\d.]+"
SEED_PAIR = f"(?:{alternatives(TASKS)})-s\\d+{re.escape(rc.PAIR)}\\d+"
COMPARISONS = [rc.comparison_name(*pair) for pair in config["comparisons"]]
FIGURES = ["isotropy", "directprobe", "probing", "rsa", "cka", "similarity"] + (["methods"] if METHODS else [])
DYNAMICS = "dynamics"
COMPARED = "comparisons"


wildcard_constraints:
    model=alternatives(MODELS),
    task=alternatives(TASKS),
    variant=f"base|{FINETUNED}|{SNAPSHOT}",
    finetuned=f"{FINETUNED}|{SNAPSHOT}",
    pair=SEED_PAIR,
    comparison=alternatives(COMPARISONS) or "(?!)",
    probe=alternatives([rc.dev_probe(t) for t in TASKS] + list(PROBES)),
    figure=alternatives(FIGURES),
    assembled=alternatives(ASSEMBLED_IDS) or "(?!)",


def res(rule, key):
    return rc.rule_resources(config, rule)[key]


def as_json(value):
    return json.dumps(value, sort_keys=True)


def provenance(stage, **identity):
    return as_json({**identity, "code_version": code_version(stage)})


def identity(stage, wildcards, variant, **extra):
    parsed = rc.parse_variant(variant)
    task, seed = (parsed.task, parsed.seed) if parsed else ("", "")
    return provenance(stage, model=wildcards.model, variant=variant, task=task, seed=seed, **extra)


def source_input(entry):
    source = entry["source"]
    if source["kind"] == "pattern":
        return [f"resources/corpora/{source['file']}"]
    if source["kind"] == "snli":
        return [f"resources/corpora/{SNLI_DIR}/{SNLI_FILES[source['file']]}"]
    if source["kind"] == "local" and Path(source["path"]).is_file():
        return [source["path"]]
    return []


def probe_inputs(wildcards):
    for task in TASKS:
        if wildcards.probe == rc.dev_probe(task):
            return {"task": f"results/data/tasks/{task}.json"}
    return {"corpus": source_input(PROBES[wildcards.probe])}


def probe_args(wildcards, input):
    if "task" in input.keys():
        return f"--task {input.task}"
    return "--corpora resources/corpora --source " + shlex.quote(as_json(PROBES[wildcards.probe]["source"]))


def probe_settings(wildcards):
    entry = PROBES.get(wildcards.probe)
    limit = entry["max_sentences"] if entry else config["extract"]["dev_sentences"]
    return as_json({"max_sentences": limit, "seed": config["split"]["seed"]})


def finetuned_dir(model, variant):
    return f"results/models/{model}/{variant}"


def pretrained_files(model):
    """The assembled folder a pre-trained model loads from; none for embedded, hub and local models."""
    model_id = MODELS[model]["id"]
    return [str(assembled_dir(model_id))] if model_id in ASSEMBLED_IDS.values() else []


def model_spec(wildcards):
    if wildcards.variant == rc.BASE:
        return as_json(MODELS[wildcards.model])
    return as_json({"id": finetuned_dir(wildcards.model, wildcards.variant)})


def finetuned_weights(model, variant):
    """The fine-tuned weights that artifacts of `variant` are made from; none for the pre-trained model."""
    return [] if variant == rc.BASE else [f"{finetuned_dir(model, variant)}/model.safetensors"]


def extract_inputs(wildcards):
    return {"probe": f"results/data/probes/{wildcards.probe}.json",
            "weights": finetuned_weights(wildcards.model, wildcards.variant),
            "pretrained": pretrained_files(wildcards.model) if wildcards.variant == rc.BASE else []}


def metric_tables(model, variants):
    return [f"results/metrics/{model}/{v}/{p}.csv" for v in variants for p in rc.probe_sets(config, v)]


def comparison_tables(model, variants):
    return [f"results/compare/{model}/{v}/{p}.csv" for v in variants for p in rc.probe_sets(config, v)]


def floor_tables(model, task):
    pairs = [rc.pair_name(*pair) for pair in rc.seed_pairs(config, task)]
    return [f"results/floor/{model}/{p}/{probe}.csv" for p in pairs
            for probe in rc.probe_sets(config, rc.pair_variants(p)[0])]


def pair_inputs(model, probe, variants):
    """The activation files and fine-tuned weights of two variants on one probe set (a seed pair or a comparison)."""
    return {"activations": [f"results/activations/{model}/{v}/{probe}.h5" for v in variants],
            "weights": [w for v in variants for w in finetuned_weights(model, v)]}


def pair_provenance(model, probe, name, variants):
    return provenance("metrics", model=model, variant=name, task=rc.parse_variant(variants[0]).task, seed="",
                      probe=probe, probe_role=rc.probe_role(config, probe), pair=list(variants))


def between_tables(model):
    """Every table of the configured comparisons, on each probe set both variants have."""
    return [f"results/between/{model}/{rc.comparison_name(*pair)}/{probe}.csv" for pair in config["comparisons"]
            for probe in rc.shared_probe_sets(config, *pair)]


def task_inputs(model, task):
    """Every table the figures of one model and task read."""
    variants = [v.name for v in rc.task_variants(config, task)]
    return {
        "tables": [t for t in metric_tables(model, ["base"]) if Path(t).stem in rc.probe_sets(config, variants[0])]
        + metric_tables(model, variants),
        "comparisons": comparison_tables(model, variants) + floor_tables(model, task),
        "layerdrop": [f"results/layerdrop/{model}/{v}.csv" for v in variants],
        "training": [f"{finetuned_dir(model, v)}/train_metrics.json" for v in variants],
        "baselines": [f"results/baselines/{model}/{task}.json"],
    }


def dynamics_inputs(model, task):
    """Every table the training-dynamics figure of one model and task reads: the pre-trained model's (step 0), each
    snapshot's, the seed floor, and each snapshot's training record (its step and dev metric)."""
    snapshots = [v.name for v in rc.snapshot_variants(config, task)]
    if not snapshots:
        return {}
    return {
        "tables": [t for t in metric_tables(model, ["base"]) if Path(t).stem in rc.probe_sets(config, snapshots[0])]
        + metric_tables(model, snapshots),
        "comparisons": comparison_tables(model, snapshots) + floor_tables(model, task),
        "snapshots": [f"{finetuned_dir(model, v)}/train_metrics.json" for v in snapshots],
    }


def all_inputs(kind):
    return [path for m in MODELS for t in TASKS for inputs in (task_inputs(m, t), dynamics_inputs(m, t))
            for path in inputs.get(kind, [])]


def final_outputs():
    figures = [f"results/figures/{m}/{t}/{name}.{ext}" for m in MODELS for t in TASKS for name in FIGURES
               for ext in ("png", "pdf")]
    dynamics = [f"results/figures/{m}/{t}/{DYNAMICS}.{ext}" for m in MODELS for t in config["dynamics"]["tasks"]
                for ext in ("png", "pdf")]
    compared = [f"results/figures/{m}/{COMPARED}.{ext}" for m in MODELS if COMPARISONS for ext in ("png", "pdf")]
    return figures + dynamics + compared + ["results/tables/metrics.csv", "results/tables/claims.csv"]
