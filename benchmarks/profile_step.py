"""Where a metrics or compare job's time goes, on the files of a finished run of the workflow.

    python benchmarks/profile_step.py RUN_DIR [--step metrics|compare] [--variant mr-s0] [--probe dev-mr]
                                      [--top 30]

Runs the step as its rule would (the run's config.yaml, its activations and weights), writing the table to a
temporary directory, and prints the step's own per-measure log lines (one "name: seconds" per catalog measure and
one for the intervals settled together) and then cProfile's top entries by cumulative time. The per-rule totals
of a whole run are in its logs: `python -m repshift readme --dest RUN_DIR` writes them to
benchmarks/default_run/rules.csv.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from pathlib import Path

from repshift import config as rc
from repshift import metrics

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def profile(run_dir: Path, step: str, variant: str, probe: str, top: int) -> None:
    os.chdir(run_dir)
    config = rc.load_config("config.yaml", SCHEMA)
    parsed = rc.parse_variant(variant)
    model = next(iter(config["models"]))
    identity = {"model": model, "variant": variant, "task": parsed.task, "seed": parsed.seed, "probe": probe,
                "probe_role": rc.probe_role(config, probe)}
    activations = Path("results/activations") / model
    weights = Path("results/models") / model / variant / "model.safetensors"
    settings = rc.metric_settings(config)
    with tempfile.TemporaryDirectory() as out:
        profiler = cProfile.Profile()
        profiler.enable()
        if step == "metrics":
            metrics.layer_metrics(activations / variant / f"{probe}.h5", Path(out) / "table.csv", settings, identity,
                                  weights)
        else:
            metrics.compare_metrics(activations / "base" / f"{probe}.h5", activations / variant / f"{probe}.h5",
                                    weights, Path(out) / "table.csv", settings, identity)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step", choices=("metrics", "compare"), default="metrics")
    parser.add_argument("--variant", default="mr-s0")
    parser.add_argument("--probe", default="dev-mr")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    profile(args.run_dir.resolve(), args.step, args.variant, args.probe, args.top)


if __name__ == "__main__":
    main()
