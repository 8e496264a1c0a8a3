"""Entry points called by the workflow's rules: `python -m repshift <step> ...`."""

import argparse
import json
import sys

from .errors import UserError
from .lazy import Deferred


def _steps():
    """Each step imports only the modules it runs (a metrics job loads no torch or transformers)."""
    activations, baselines, claims, data, figures, finetune, metrics, models, readme, tables = (
        Deferred(name) for name in ("activations", "baselines", "claims", "data", "figures", "finetune", "metrics",
                                 "models", "readme", "tables"))

    return {
        "fetch-corpora": lambda a: data.fetch_pattern(a.files, a.dest, **a.settings),
        "fetch-snli": lambda a: data.fetch_snli(a.dest),
        "assemble-model": lambda a: models.assemble_model(a.model["id"], a.dest),
        "prepare-task": lambda a: data.prepare_task(
            a.source, a.corpora, a.out, provenance=a.provenance, **a.settings),
        "prepare-probe": lambda a: data.prepare_probe(
            a.out, a.provenance, task_file=a.task, source=a.source, corpora_dir=a.corpora, **a.settings),
        "finetune": lambda a: finetune.finetune(a.model, a.task, a.out, a.seed, a.settings, a.threads, a.provenance),
        "baseline": lambda a: baselines.task_baselines(a.model, a.task, a.out, a.settings, a.threads, a.provenance),
        "layer-drop": lambda a: finetune.layer_drop(a.model["id"], a.task, a.out, a.settings, a.threads, a.provenance),
        "extract": lambda a: activations.extract(a.model, a.probe, a.out, a.settings, a.threads, a.provenance),
        "metrics": lambda a: metrics.layer_metrics(a.activations[0], a.out, a.settings, a.provenance, a.weights),
        "compare": lambda a: metrics.compare_metrics(*a.activations, a.weights, a.out, a.settings, a.provenance),
        "seed-floor": lambda a: metrics.variants_metrics(*a.activations, a.pair_weights, a.out, a.settings,
                                                         a.provenance, "seed_floor"),
        "between": lambda a: metrics.variants_metrics(*a.activations, a.pair_weights, a.out, a.settings,
                                                      a.provenance, "between"),
        "figures": lambda a: figures.study_figures(
            tables.read_tables(a.tables), tables.read_tables(a.comparisons), tables.read_tables(a.layerdrop),
            claims.read_training(a.training), claims.read_baselines(a.baselines), a.dest, a.title),
        "dynamics": lambda a: figures.dynamics_figure(
            tables.read_tables(a.tables), tables.read_tables(a.comparisons), claims.read_training(a.training), a.dest,
            a.title),
        "compared": lambda a: figures.comparisons_figure(tables.read_tables(a.comparisons), a.dest, a.title),
        "readme": lambda a: readme.refresh(a.dest or ".", a.out, "README.md", a.check),
        "table": lambda a: tables.merge_tables(a.tables, a.out),
        "claims": lambda a: claims.write_claims(claims.claims_table(
            tables.read_tables(a.tables), tables.read_tables(a.layerdrop), claims.read_training(a.training),
            claims.read_baselines(a.baselines), a.settings["learned_margin"]), a.out, a.summary),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repshift", description=__doc__)
    p.add_argument("step")
    p.add_argument("--out")
    p.add_argument("--dest")
    p.add_argument("--files", nargs="*", default=[])
    p.add_argument("--corpora")
    p.add_argument("--task")
    p.add_argument("--probe")
    p.add_argument("--activations", nargs="*", default=[])
    p.add_argument("--weights", nargs="?", help="the fine-tuned model.safetensors the activations must come from")
    p.add_argument("--pair-weights", nargs=2, help="seed-floor, between: the two fine-tuned model.safetensors")
    p.add_argument("--tables", nargs="*", default=[])
    p.add_argument("--comparisons", nargs="*", default=[])
    p.add_argument("--layerdrop", nargs="*", default=[])
    p.add_argument("--training", nargs="*", default=[])
    p.add_argument("--baselines", nargs="*", default=[])
    p.add_argument("--title", default="")
    p.add_argument("--summary", help="where the claims step writes its rst verdict summary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true", help="readme: only check README.md against the snapshot")
    p.add_argument("--threads", type=int, default=1)
    for name in ("model", "source", "settings", "provenance"):
        p.add_argument(f"--{name}", type=json.loads, default={} if name in ("settings", "provenance") else None,
                       help="JSON")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    steps = _steps()
    if args.step not in steps:
        print(f"repshift: error: unknown step {args.step!r}; steps: {', '.join(steps)}", file=sys.stderr)
        return 2
    try:
        steps[args.step](args)
    except UserError as exc:
        print(f"repshift: error: {exc}", file=sys.stderr)
        return 1
    return 0
