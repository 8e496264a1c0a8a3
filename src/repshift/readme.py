"""The README's measured numbers, rendered from a committed snapshot of one run, so the README cannot drift."""

import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import MEASURES, SEED_FLOOR, VERSUS, seed_floor, versus
from .claims import full_finetuning, read_baselines, read_training, verdict_cell
from .config import DEV_ROLE, FULL, OUT_OF_DOMAIN, is_seed_pair, parse_variant
from .errors import UserError
from .provenance import write_json
from .tables import read_tables, write_csv

BLOCK = re.compile(r"(<!-- begin generated: (\w+) -->\n)(.*?)(<!-- end generated: \2 -->)", re.S)


@dataclass(frozen=True)
class Snapshot:
    """A committed snapshot of one full run: its folder, what the README calls the run, and its blocks' prefix."""

    folder: str
    run: str
    prefix: str
    figures: tuple[str, ...] = ("cka", "isotropy")


SNAPSHOTS = (Snapshot("benchmarks/default_run", "the default run", ""),
             Snapshot("benchmarks/offline_base_run", "configs/offline-base.yaml", "offline_base_"),
             Snapshot("benchmarks/offline_kinds_run", "configs/offline-kinds.yaml", "offline_kinds_"),
             Snapshot("benchmarks/offline_dynamics_run", "configs/offline-dynamics.yaml", "offline_dynamics_",
                      ("dynamics", "methods", "comparisons")),
             Snapshot("benchmarks/offline_methods_run", "configs/offline-methods.yaml", "offline_methods_",
                      ("methods", "comparisons")))


def run_timings(logs: list[Path]) -> tuple[dict, pd.DataFrame]:
    """The run's start, wall time and job count, and each job's rule, wildcards, threads and seconds, from its
    Snakemake logs (more than one when a stopped run was resumed: their wall times add up); the last must be a
    finished run."""
    if "(100%) done" not in logs[-1].read_text():
        raise UserError(f"{logs[-1]}: not a finished run (no '100% done'); run the workflow to the end first")
    jobs, wall = [], 0
    for log in logs:
        text, started, stamp, job = log.read_text(), {}, None, None
        for line in text.splitlines():
            if match := re.fullmatch(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line):
                stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            elif match := re.fullmatch(r"(?:local)?rule (\w+):", line):
                job = {"rule": match.group(1), "wildcards": "", "threads": 1, "start": stamp}
            elif job and (match := re.fullmatch(r"\s+jobid: (\d+)", line)):
                started[match.group(1)] = job
            elif job and (match := re.fullmatch(r"\s+wildcards: (.*)", line)):
                job["wildcards"] = match.group(1)
            elif job and (match := re.fullmatch(r"\s+threads: (\d+)", line)):
                job["threads"] = int(match.group(1))
            elif match := re.fullmatch(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line):
                finished = started.pop(match.group(1))
                seconds = (stamp - finished.pop("start")).total_seconds()
                jobs.append({**finished, "seconds": seconds})
                job = None
        hours, minutes, seconds = re.search(r"Elapsed time: (\d+):(\d+):([\d.]+)", text).groups()
        wall += int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    first = logs[0].read_text()
    run = {"date": re.search(r"Date: (\d{4}-\d\d-\d\d)", first).group(1), "cores": int(re.search(
        r"Provided cores: (\d+)", first).group(1)), "jobs": len(jobs), "wall_seconds": round(wall),
           "invocations": len(logs)}
    return run, pd.DataFrame(jobs)


def run_logs(root: Path) -> list[Path]:
    logs = sorted((root / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        raise UserError(f"{root}/.snakemake/log has no Snakemake log; run `snakemake --cores all` first")
    return logs


def snapshot(root: Path, dest: Path, figures: tuple[str, ...]) -> None:
    """Copy what the README quotes from the run in `root` (results/, its Snakemake logs, the `figures` it shows) into
    `dest`."""
    results = root / "results"
    run, jobs = run_timings(run_logs(root))
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "run.json", run)
    write_csv(jobs.groupby("rule")["seconds"].agg(jobs="count", job_seconds="sum").reset_index()
              .sort_values("job_seconds", ascending=False), dest / "rules.csv")
    shutil.copyfile(results / "tables/claims.csv", dest / "claims.csv")
    training = read_training(sorted(results.glob("models/*/*/train_metrics.json")))
    baselines = read_baselines(sorted(results.glob("baselines/*/*.json")))
    learning = training[training["fraction"].isna()].drop(columns="replicates").merge(
        baselines, on=["model", "task", "metric"], how="left")
    write_csv(learning.sort_values(["model", "task", "variant"]), dest / "learning.csv")
    table = read_tables([results / "tables/metrics.csv"])
    top = table[(table["representation"] == "token") & table["layer_b"].isna()
                & table["measure"].isin(compared_names())
                & table["variant"].map(lambda v: full_finetuning(v) or is_seed_pair(v)).astype(bool)
                & table["probe_role"].isin([DEV_ROLE, OUT_OF_DOMAIN])]
    top = top[top["layer"] == top.groupby("model")["layer"].transform("max")]
    write_csv(top.groupby(["model", "task", "probe_role", "measure"])["value"].mean().reset_index(),
              dest / "top_layer.csv")
    for name in figures:
        for figure in sorted(results.glob(f"figures/**/{name}.png")):
            (dest / "figures").mkdir(exist_ok=True)
            shutil.copyfile(figure, dest / "figures" / "-".join(figure.relative_to(results / "figures").parts))


def compared_names() -> list[str]:
    """Every pair measure's name pre-trained vs fine-tuned, each followed by its seed floor where it has one."""
    return [name for m in MEASURES if m.base_vs_finetuned
            for name in [versus(m.name)] + ([seed_floor(m.name)] if m.seed_floor else [])]


def label(name: str) -> str:
    """How the README's similarity table names a measure of the tables."""
    return (f"`{name.removesuffix(VERSUS)}`" if name.endswith(VERSUS) else
            f"`{name.removesuffix(SEED_FLOOR)}`, seed vs seed (floor)")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]) + "\n"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def sections(dest: Path, snapshot: Snapshot = SNAPSHOTS[0]) -> dict[str, str]:
    """The README's generated blocks, each rendered from the snapshot in `dest` and named with its prefix."""
    run = json.loads((dest / "run.json").read_text())
    rules = pd.read_csv(dest / "rules.csv")
    claims = pd.read_csv(dest / "claims.csv")
    learning = pd.read_csv(dest / "learning.csv")
    top = pd.read_csv(dest / "top_layer.csv")
    resumed = (f", in {run['invocations']} invocations: a stopped run resumed, their wall times added"
               if run.get("invocations", 1) > 1 else "")
    wall = (f"Wall time of {snapshot.run} on {run['cores']} cores: **{_minutes(run['wall_seconds'])}** "
            f"({run['jobs']} jobs, measured {run['date']}{resumed}; see [Measured](#measured)).\n")
    timing = wall + "\n" + _table(["rule", "jobs", "job-seconds", "mean"], [
        [r.rule, r.jobs, f"{r.job_seconds:,.0f}", f"{r.job_seconds / r.jobs:.0f} s"] for r in rules.itertuples()])
    rows = []
    learning["method"] = learning["variant"].map(lambda v: parse_variant(v).how)
    for (model, task), part in learning.groupby(["model", "task"], sort=False):
        groups = sorted(part.groupby(["method", "freeze_layers"]), key=lambda group: (group[0][0] != FULL, group[0]))
        for (method, frozen), variants in groups:
            scores = ", ".join(f"{a:.3f}" for a in variants["dev_metric"])
            first = variants.iloc[0]
            how = method if method != FULL else FULL if frozen == 0 else f"bottom {frozen} frozen"
            rows.append([f"{model} / {task}", how,
                         f"{first['metric']} {variants['dev_metric'].mean():.3f} ({scores})",
                         ", ".join(f"{b} of {n}" for b, n in zip(variants["best_epoch"], variants["epochs_run"])),
                         f"{first['trivial']:.3f} ({first['trivial_name']})",
                         f"{first['frozen_probe']:.3f} (layer {first['frozen_probe_layer']:.0f})"
                         if np.isfinite(first["frozen_probe"]) else "not defined for this kind"])
    learned = _table(["model / task", "fine-tuning", "dev metric, mean (seeds)", "best epoch of those run (seeds)",
                      "trivial answer", "frozen pre-trained probe"], rows)
    columns = list(claims.groupby(["model", "task"], sort=False).groups)
    cells = {(row.claim, row.model, row.task): verdict_cell(row) for row in claims.itertuples()}
    claims_block = _table(["claim", "threshold", *(f"{m} / {t}" for m, t in columns)], [
        [f"{claim} {rows['statement'].iloc[0]}", rows["threshold"].iloc[0], *(cells[claim, m, t] for m, t in columns)]
        for claim, rows in claims.groupby("claim", sort=False)])
    names = [name for name in compared_names() if name in set(top["measure"])]
    pairs = list(top.groupby(["model", "task"], sort=False).groups)
    values = top.set_index(["model", "task", "probe_role", "measure"])["value"]
    similarity = _table(["measure", *(f"{t} {where}" for _, t in pairs for where in ("in", "out"))], [
        [label(name), *(f"{values.get((m, t, role, name), float('nan')):.2f}"
                                                  for m, t in pairs for role in (DEV_ROLE, OUT_OF_DOMAIN))]
        for name in names])
    figures = "".join(f"![{path.stem}]({snapshot.folder}/figures/{path.name})\n"
                      for path in sorted((dest / "figures").glob("*.png")))
    blocks = {"wall": wall, "timing": timing, "learning": learned, "claims": claims_block, "similarity": similarity,
              **({"figures": figures} if figures else {})}
    return {snapshot.prefix + name: text for name, text in blocks.items()}


def side_by_side(folders: dict[Snapshot, Path]) -> str:
    """The verdicts of several snapshots in one table, a column per run, model and task (the run named where two
    runs share a model and task): the verdict and its number."""
    claims = pd.concat([pd.read_csv(folder / "claims.csv").assign(run=s.run) for s, folder in folders.items()])
    columns = sorted(claims.groupby(["task", "model", "run"], sort=False).groups)
    shared = claims.groupby(["task", "model"])["run"].nunique()
    cells = {(row.claim, row.model, row.task, row.run): verdict_cell(row) for row in claims.itertuples()}
    return _table(["claim", *(f"{m} / {t}" + (f" ({run})" if shared[t, m] > 1 else "") for t, m, run in columns)], [
        [claim, *(cells.get((claim, m, t, run), "") for t, m, run in columns)] for claim in claims["claim"].unique()])


def all_sections(folders: dict[Snapshot, Path]) -> dict[str, str]:
    """The blocks of every snapshot whose folder exists, and their verdicts side by side when there are several."""
    present = {s: folder for s, folder in folders.items() if folder.is_dir()}
    blocks = {name: text for s, folder in present.items() for name, text in sections(folder, s).items()}
    return {**blocks, **({"side_by_side": side_by_side(present)} if len(present) > 1 else {})}


def snapshot_at(folder) -> Snapshot:
    """The snapshot the README keeps in `folder`; a folder it does not know is refused naming those it does."""
    match = [s for s in SNAPSHOTS if Path(folder).as_posix().rstrip("/").endswith(s.folder)]
    if not match:
        raise UserError(f"--out {folder}: the README quotes runs from {', '.join(s.folder for s in SNAPSHOTS)} only")
    return match[0]


def render(readme: str, blocks: dict[str, str]) -> str:
    """`readme` with each generated block replaced by its new text; every block must be there."""
    missing = set(blocks) - {match.group(2) for match in BLOCK.finditer(readme)}
    if missing:
        raise UserError(f"README has no generated block named {', '.join(sorted(missing))}: add "
                        "'<!-- begin generated: NAME -->' and '<!-- end generated: NAME -->' lines")
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + m.group(4), readme)


def refresh(root, dest, readme, check: bool = False, kept: Snapshot | None = None) -> None:
    """Snapshot the run in `root` into `dest` (None: the default run's folder beside the README), the folder of
    snapshot `kept` (by default the one `dest` names), and rewrite the README's generated blocks from it and the
    other committed snapshots (with `check`: only compare the README with the snapshots, and fail naming the first
    block that differs)."""
    root, readme = Path(root), Path(readme)
    dest = readme.parent / SNAPSHOTS[0].folder if dest is None else Path(dest)
    kept = kept or snapshot_at(dest)
    if not check:
        snapshot(root, dest, kept.figures)
    text = readme.read_text()
    updated = render(text, all_sections({s: readme.parent / s.folder for s in SNAPSHOTS} | {kept: dest}))
    if check:
        for old, new in zip(BLOCK.finditer(text), BLOCK.finditer(updated)):
            if old.group(3) != new.group(3):
                raise UserError(f"{readme}: generated block {old.group(2)!r} disagrees with the snapshots; run "
                                f"`python -m repshift readme --dest RUN --out SNAPSHOT` after a full run")
        print(f"{readme} agrees with {dest}")
        return
    readme.write_text(updated)
    print(f"wrote {dest} and the generated blocks of {readme}")
