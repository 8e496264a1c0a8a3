"""The claims of the four studies, each decided on this model and task by one stated number and threshold."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import named, versus
from .config import DEV_ROLE, OUT_OF_DOMAIN, TAGGED, dev_probe, parse_variant
from .provenance import atomic_path
from .tables import write_csv

HOLDS, FAILS, MISSING = "holds", "does not hold", "not measured"
NOT_LEARNED = "not measurable: the model did not learn the task"
THRESHOLDS = {"frequency_change": 0.1, "cka_kept": 0.5, "probe_drop": 0.01, "rsa_depth_drop": 0.05,
              "forgetting": 0.05, "freeze_cost": 0.02, "layer_drop_cost": 0.02}


def read_training(paths) -> pd.DataFrame:
    """One row per fine-tuned variant: its final dev accuracy, loss and settings."""
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        provenance = record["provenance"]
        rows.append({"model": provenance["model"], "variant": provenance["variant"], "task": provenance["task"],
                     "seed": provenance["seed"], "freeze_layers": provenance["settings"]["freeze_layers"],
                     "dev_accuracy": record["dev_accuracy"][record["best_epoch"] - 1], "best_epoch": record["best_epoch"],
                     "epochs_run": len(record["dev_accuracy"]), "final_loss": record["loss"][-1],
                     "steps": len(record["loss"]), "seconds": record["seconds"]})
    return pd.DataFrame(rows)


def read_baselines(paths) -> pd.DataFrame:
    """One row per model and task: the majority-class and the best frozen-probe dev accuracy."""
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        best = record["frozen_probe_best_layer"]
        rows.append({"model": record["provenance"]["model"], "task": record["provenance"]["task"],
                     "majority_accuracy": record["majority_accuracy"],
                     "frozen_probe_accuracy": record["frozen_probe_accuracy"][best], "frozen_probe_layer": best})
    return pd.DataFrame(rows, columns=["model", "task", "majority_accuracy", "frozen_probe_accuracy",
                                       "frozen_probe_layer"])


def margin_over_baselines(accuracy: float, majority: float, probe: float) -> float:
    """How far a dev accuracy clears the better of the majority class and the frozen pre-trained probe."""
    return accuracy - max(majority, probe)


def learned_claim(training: pd.DataFrame, baselines: pd.DataFrame, task: str, learned_margin: float) -> dict:
    """C0: the fully fine-tuned model beats both the majority class and the frozen pre-trained probe by the margin."""
    tuned = training[(training["task"] == task) & training["variant"].map(full_finetuning).astype(bool)]
    bars = baselines[baselines["task"] == task]
    statement = "the fine-tuned model learned its task"
    if bars.empty or tuned.empty:
        return _claim("C0", "all", statement, None, "no baseline or fine-tuned model to compare")
    accuracy, majority, probe = tuned["dev_accuracy"].mean(), *bars[["majority_accuracy",
                                                                     "frozen_probe_accuracy"]].iloc[0]
    margin = margin_over_baselines(accuracy, majority, probe)
    return _claim("C0", "all", statement, margin >= learned_margin,
                  f"dev accuracy {accuracy:.3f} (mean of {len(tuned)} seeds) vs majority class {majority:.3f} and "
                  f"frozen pre-trained probe {probe:.3f} (layer {bars['frozen_probe_layer'].iloc[0]}): {margin:+.3f} "
                  f"over the better (needs >= {learned_margin})", max(majority, probe), accuracy)


def report_learning(training: pd.DataFrame, baselines: pd.DataFrame, learned_margin: float) -> None:
    """Log every fine-tuned variant's dev accuracy against its task's baselines; flag those that do not clear them."""
    for row in training.merge(baselines, on=["model", "task"]).itertuples():
        margin = margin_over_baselines(row.dev_accuracy, row.majority_accuracy, row.frozen_probe_accuracy)
        flag = "" if margin >= learned_margin else "  <- did not learn the task"
        print(f"{row.model} {row.variant}: dev accuracy {row.dev_accuracy:.4f}, majority {row.majority_accuracy:.4f}, "
              f"frozen probe {row.frozen_probe_accuracy:.4f}: {margin:+.4f}{flag}", flush=True)


def full_finetuning(variant: str) -> bool:
    parsed = parse_variant(variant)
    return parsed is not None and parsed.freeze is None


def probe_rows(frame: pd.DataFrame, role: str, task: str) -> pd.Series:
    """Rows of the probe set with `role`: the task's own dev set for the dev role, else the one set with that role."""
    return frame["probe"] == dev_probe(task) if role == DEV_ROLE else frame["probe_role"] == role


def per_layer(frame: pd.DataFrame, measure: str, role: str, task: str, representation: str,
              finetuned: bool) -> pd.Series:
    """Mean over seeds of one measure per layer, for the base model or the fully fine-tuned variants."""
    part = frame[(frame["measure"] == named(measure)) & probe_rows(frame, role, task)
                 & (frame["representation"] == representation)]
    chosen = part["variant"].map(full_finetuning).astype(bool) if finetuned else part["variant"] == "base"
    return part[chosen].groupby("layer")["value"].mean()


def _verdict(condition) -> str:
    if condition is None or (isinstance(condition, float) and np.isnan(condition)):
        return MISSING
    return HOLDS if condition else FAILS


def _claim(claim, study, statement, condition, number, before=np.nan, after=np.nan) -> dict:
    return {"claim": claim, "study": study, "statement": statement, "verdict": _verdict(condition),
            "deciding_number": number, "before": before, "after": after}


def _top(series: pd.Series) -> float:
    return float(series.iloc[-1]) if len(series) else np.nan


def task_claims(frame: pd.DataFrame, layerdrop: pd.DataFrame, training: pd.DataFrame, task: str) -> list[dict]:
    """The claims C1-C14 (README "The four studies") for one model and task, from its tidy metric rows, layer-drop and
    training tables."""
    def both(measure, representation="token", role=DEV_ROLE):
        return tuple(per_layer(frame, measure, role, task, representation, tuned) for tuned in (False, True))

    def changed(measure, role=DEV_ROLE):
        return per_layer(frame, versus(measure), role, task, "token", True)

    rows = []

    before, after = map(_top, both("isotropy_raw"))
    centred = list(map(_top, both("isotropy_centred")))
    rows.append(_claim("C1", "isotropy", "fine-tuning does not necessarily raise isotropy",
                       None if np.isnan(after) else after <= before,
                       f"I(W) top layer {before:.3g} -> {after:.3g} (centred {centred[0]:.3g} -> {centred[1]:.3g})",
                       before, after))
    before, after = map(_top, both("top_pc_variance_ratio"))
    pcs = list(map(_top, both("pcs_for_90pct_variance")))
    rows.append(_claim("C2", "isotropy", "elongated directions multiply after fine-tuning",
                       None if np.isnan(after) else after > before,
                       f"top-PC variance share {before:.3f} -> {after:.3f}; PCs for 90% {pcs[0]:.0f} -> {pcs[1]:.0f}",
                       before, after))
    drops = []
    for finetuned in (False, True):
        plain = _top(per_layer(frame, "task_probe_accuracy", DEV_ROLE, task, "mean", finetuned))
        removed = _top(per_layer(frame, "task_probe_accuracy_top_pcs_removed", DEV_ROLE, task, "mean", finetuned))
        drops.append(plain - removed)
    rows.append(_claim("C3", "isotropy", "after fine-tuning the dominant directions carry task knowledge",
                       None if np.isnan(drops[1]) else drops[1] > max(drops[0], 0),
                       f"probe accuracy lost when top PCs are removed: pre-trained {drops[0]:+.3f}, "
                       f"fine-tuned {drops[1]:+.3f}", drops[0], drops[1]))
    before, after = map(_top, both("frequency_pc1_abs_spearman"))
    rows.append(_claim("C4", "isotropy", "frequency structure changes massively",
                       None if np.isnan(after) else abs(after - before) >= THRESHOLDS["frequency_change"],
                       f"|Spearman(frequency, PC1)| top layer {before:.2f} -> {after:.2f} "
                       f"(threshold: change >= {THRESHOLDS['frequency_change']})", before, after))
    before, after = map(_top, both("directprobe_min_distance_all", "cls"))
    rows.append(_claim("C5", "DirectProbe", "label clusters move apart", None if np.isnan(after) else after > before,
                       f"min inter-label cluster distance, top layer [CLS] {before:.3g} -> {after:.3g}", before, after))
    before, after = map(_top, both("directprobe_n_clusters", "cls"))
    labels = _top(per_layer(frame, "directprobe_n_labels", DEV_ROLE, task, "cls", False))
    rows.append(_claim("C6", "DirectProbe", "the space becomes simpler for the task",
                       None if np.isnan(after) else after <= before,
                       f"clusters at the top layer {before:.1f} -> {after:.1f} for {labels:.0f} labels", before, after))
    kept = changed("linear_cka")
    rows.append(_claim("C7", "DirectProbe", "the original spatial structure is largely kept",
                       None if kept.empty else kept.min() > THRESHOLDS["cka_kept"],
                       f"min over layers of CKA(pre-trained, fine-tuned) on dev tokens {kept.min():.2f} "
                       f"(threshold {THRESHOLDS['cka_kept']})", np.nan, kept.min()))
    pos_before, pos_after = both("pos_probe_accuracy", "word", TAGGED)
    fall = (pos_before - pos_after).max() if len(pos_after) else np.nan
    rows.append(_claim("C8", "DirectProbe", "fine-tuning does not always help (some probe falls)",
                       None if np.isnan(fall) else fall > THRESHOLDS["probe_drop"],
                       f"largest POS-probe accuracy fall over layers {fall:+.3f} "
                       f"(threshold {THRESHOLDS['probe_drop']})", np.nan, fall))
    rsa = changed("rsa_spearman")
    rows.append(_claim("C9", "Merchant", "change concentrates in the top layers",
                       None if rsa.empty else rsa.iloc[0] - rsa.iloc[-1] > THRESHOLDS["rsa_depth_drop"],
                       f"RSA (Spearman) pre-trained vs fine-tuned: layer 0 {rsa.iloc[0] if len(rsa) else np.nan:.2f}, "
                       f"last layer {_top(rsa):.2f}", rsa.iloc[0] if len(rsa) else np.nan, _top(rsa)))
    rows.append(_claim("C10", "Merchant", "no catastrophic forgetting of POS",
                       None if np.isnan(fall) else fall < THRESHOLDS["forgetting"],
                       f"largest POS-probe accuracy fall over layers {fall:+.3f} "
                       f"(threshold {THRESHOLDS['forgetting']})", np.nan, fall))
    in_domain, out_domain = _top(rsa), _top(changed("rsa_spearman", OUT_OF_DOMAIN))
    rows.append(_claim("C11", "Merchant", "out-of-domain sentences change less",
                       None if np.isnan(out_domain) else out_domain > in_domain,
                       f"top-layer RSA: in-domain {in_domain:.2f}, out-of-domain {out_domain:.2f}",
                       in_domain, out_domain))
    trained = training[training["task"] == task]
    full = trained[trained["freeze_layers"] == trained["freeze_layers"].min()]["dev_accuracy"].mean()
    frozen = trained[trained["freeze_layers"] > trained["freeze_layers"].min()]
    if frozen.empty:
        rows.append(_claim("C12", "Merchant", "freezing the lower layers costs little", None,
                           "no ablations.freeze_layers configured"))
    else:
        deepest = frozen[frozen["freeze_layers"] == frozen["freeze_layers"].max()]
        cost = full - deepest["dev_accuracy"].mean()
        rows.append(_claim("C12", "Merchant", "freezing the lower layers costs little",
                           cost < THRESHOLDS["freeze_cost"],
                           f"dev accuracy full {full:.3f} vs bottom {deepest['freeze_layers'].iloc[0]} frozen "
                           f"{deepest['dev_accuracy'].mean():.3f} (threshold {THRESHOLDS['freeze_cost']})", full,
                           deepest["dev_accuracy"].mean()))
    before, after = both("block_diagonality_linear_cka")
    before, after = (float(s.max()) if len(s) else np.nan for s in (before, after))
    rows.append(_claim("C13", "Phang", "fine-tuned models show block-diagonal layer similarity",
                       None if np.isnan(after) else after > before,
                       f"block-diagonality of the token CKA matrix {before:.3f} -> {after:.3f}", before, after))
    dropped = layerdrop[(layerdrop["task"] == task) & layerdrop["variant"].map(full_finetuning).astype(bool)]
    accuracy = dropped.groupby("layers_dropped")["dev_accuracy"].mean()
    cost = accuracy.get(0, np.nan) - accuracy.get(1, np.nan)
    rows.append(_claim("C14", "Phang", "the top layers can be dropped without re-tuning",
                       None if np.isnan(cost) else cost < THRESHOLDS["layer_drop_cost"],
                       f"dev accuracy all layers {accuracy.get(0, np.nan):.3f}, top 1 dropped "
                       f"{accuracy.get(1, np.nan):.3f}, top 2 dropped {accuracy.get(2, np.nan):.3f} "
                       f"(threshold {THRESHOLDS['layer_drop_cost']})", accuracy.get(0, np.nan), accuracy.get(1, np.nan)))
    return rows


def claims_table(tables: pd.DataFrame, layerdrop: pd.DataFrame, training: pd.DataFrame, baselines: pd.DataFrame,
                 learned_margin: float) -> pd.DataFrame:
    """The claims table: one row per model, task and claim; C0 first, and when C0 fails every other verdict reads
    NOT_LEARNED, since a model that did not learn its task says nothing about what fine-tuning does."""
    report_learning(training, baselines, learned_margin)
    rows = []
    for (model, task), _ in training.groupby(["model", "task"]):
        frame = tables[(tables["model"] == model) & ((tables["task"] == task) | (tables["variant"] == "base"))]
        learned = learned_claim(training[training["model"] == model], baselines[baselines["model"] == model], task,
                                learned_margin)
        claims = task_claims(frame, layerdrop[layerdrop["model"] == model], training[training["model"] == model], task)
        if learned["verdict"] == FAILS:
            claims = [{**claim, "verdict": NOT_LEARNED} for claim in claims]
            print(f"{model} {task}: {NOT_LEARNED} ({learned['deciding_number']})", flush=True)
        rows += [{"model": model, "task": task, **row} for row in [learned, *claims]]
    return pd.DataFrame(rows)


def verdict_summary(claims: pd.DataFrame) -> str:
    """The claims as an rst table for the report's landing page: one row per claim, one column per model and task;
    then each model and task's learning check (C0) in words."""
    columns = list(claims.groupby(["model", "task"], sort=False).groups)
    lines = [".. list-table:: Verdicts (deciding numbers and thresholds: claims.csv)", "   :header-rows: 1", "",
             "   * - claim"] + [f"     - {model} / {task}" for model, task in columns]
    for claim, rows in claims.groupby("claim", sort=False):
        verdicts = rows.set_index(["model", "task"])["verdict"]
        lines += [f"   * - {claim}: {rows['statement'].iloc[0]}"]
        lines += [f"     - {verdicts.get((model, task), MISSING).replace(NOT_LEARNED, 'not measurable (C0)')}"
                  for model, task in columns]
    learned = claims[claims["claim"] == "C0"]
    lines += ["", "Did each model learn its task (C0)?", ""]
    lines += [f"- {row.model} / {row.task}: {row.verdict}; {row.deciding_number}" for row in learned.itertuples()]
    return "\n".join(lines) + "\n"


def write_claims(claims: pd.DataFrame, out, summary) -> None:
    """claims.csv and its rst verdict summary, each written atomically."""
    write_csv(claims, out)
    with atomic_path(summary) as tmp:
        tmp.write_text(verdict_summary(claims))
    print(f"wrote {out} and {summary}: {len(claims)} claims, "
          f"{claims['verdict'].value_counts().to_dict()}", flush=True)
