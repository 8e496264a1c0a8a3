"""The claims of the four studies, each decided on this model and task by one number, its 95% interval (sentences
resampled within each seed, then seeds resampled: uncertainty.py) and a threshold read from the paper's wording."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import named, seed_floor, versus
from .config import DEV_ROLE, FULL, OUT_OF_DOMAIN, TAGGED, dev_probe, is_seed_pair, parse_variant, tuned
from .provenance import atomic_path
from .tables import write_csv
from .uncertainty import percentile_interval, replicates_from_text, replicates_text, seed_replicates

HOLDS, FAILS, INCONCLUSIVE, MISSING = "holds", "does not hold", "inconclusive", "not measured"
NOT_MEASURABLE = "not measurable"
NOT_LEARNED = f"{NOT_MEASURABLE}: the model did not learn the task"
CLAIM_BOOT, CLAIM_SEED = 2000, 0
RSA = "rsa_pearson"


@dataclass(frozen=True)
class Rule:
    """How a claim is decided: it holds when its number is above (`above`) or below the threshold over the
    whole 95% interval, does not hold when the interval lies wholly on the other side, and is inconclusive else."""

    study: str
    statement: str
    threshold: float
    above: bool
    reason: str

    def describe(self, threshold=None) -> str:
        return f"{'>' if self.above else '<'} {self.threshold if threshold is None else threshold:g}"


RULES = {
    "C0": Rule("all", "the fine-tuned model learned its task", 0.02, True,
               "a model that does not beat a probe on its own frozen encoder (or the trivial answer) by "
               "claims.learned_margin has learned nothing fine-tuning could explain"),
    "C1": Rule("isotropy", "fine-tuning does not necessarily raise isotropy", 0.0, False,
               "'does not necessarily result in isotropy enhancements' is met by one model and task whose top-layer "
               "I(W) does not rise"),
    "C2": Rule("isotropy", "elongated directions multiply after fine-tuning", 2.0, True,
               "'dramatic growth in the number of elongated directions': the number of principal directions above "
               "the mean variance more than doubles"),
    "C3": Rule("isotropy", "after fine-tuning the dominant directions carry task knowledge", 0.0, True,
               "'carry the essential linguistic knowledge ... making isotropy enhancement ineffective': removing the "
               "top PCs costs the fine-tuned task probe (cross-validated L2) more than the pre-trained one; the "
               "fine-tuned model's own head on the edited [CLS] is the second reading, shown beside it"),
    "C4": Rule("isotropy", "frequency structure changes massively", 1.0, True,
               "'undergo a massive change': |Spearman(frequency, PC1)| more than halves or doubles (|log2 ratio| "
               "above 1)"),
    "C5": Rule("DirectProbe", "label clusters move apart", 1.0, True,
               "clusters move apart (not just the space growing) when the minimum inter-label distance divided by "
               "the within-label spread rises (ratio after / before above 1)"),
    "C6": Rule("DirectProbe", "the space becomes simpler for the task", 0.0, True,
               "'the number of clusters decreases': fewer clusters after than before, testable only where labels "
               "were not already separable and n > 2(d + 1) (Cover 1965)"),
    "C7": Rule("DirectProbe", "the original spatial structure is largely kept", 0.5, True,
               "Zhou & Srikumar call a correlation above 0.5 between the spaces before and after fine-tuning "
               "'surprisingly high'; the same bar on the top layer's [CLS] CKA"),
    "C8": Rule("DirectProbe", "fine-tuning does not always help: this task is an exception", 0.0, False,
               "the paper's exception is a probe on the fine-tuned task's own labels that does not improve after "
               "fine-tuning; this task is one when the top-layer task probe does not rise"),
    "C9": Rule("Merchant", "change concentrates in the top layers", 0.0, True,
               "'fine-tuning primarily affects the top layers': the change beyond the seed floor (floor RSA - base "
               "vs fine-tuned RSA) is larger at the top layer than at the middle one"),
    "C10": Rule("Merchant", "no catastrophic forgetting of POS", 0.05, False,
                "'does not lead to catastrophic forgetting': no layer's POS probe loses 5 points of accuracy"),
    "C11": Rule("Merchant", "out-of-domain sentences change less", 0.0, True,
                "'a weaker effect on representations of out-of-domain sentences': top-layer base vs fine-tuned RSA "
                "is higher out of domain than in domain"),
    "C12": Rule("Merchant", "freezing the lower layers costs little", 0.02, False,
                "freezing the bottom layers costs less than 2 points of the task's dev metric"),
    "C13": Rule("Phang", "fine-tuned models show block-diagonal layer similarity", 0.0, True,
                "'early layer representations and later layer representations form two distinct clusters': the "
                "block-diagonality of the [CLS] CKA matrix (blocks of at least 2 layers) rises"),
    "C14": Rule("Phang", "the top layers can be dropped without re-tuning", 0.02, False,
                "'the top few layers ... can be discarded without hurting performance': dropping the top layer "
                "costs less than 2 points of the task's dev metric"),
    "M1": Rule("methods", "this method changes the top layer less than full fine-tuning", 0.0, True,
               "parameter-efficient methods are said to stay close to the pre-trained model: top-layer linear CKA "
               "to the pre-trained model (dev tokens) is higher after this method than after full fine-tuning"),
    "M2": Rule("methods", "this method learns the task as well as full fine-tuning", 0.02, False,
               "a method is a substitute when it costs less than 2 points of the task's dev metric against full "
               "fine-tuning, the margin C12 and C14 use"),
}


@dataclass(frozen=True)
class Estimate:
    """A deciding number and its aligned bootstrap replicates (None when only the point is known)."""

    value: float
    replicates: np.ndarray | None = None

    def combine(self, other: "Estimate", op) -> "Estimate":
        if self.replicates is None and other.replicates is None:
            return Estimate(float(op(self.value, other.value)))
        mine = self.value if self.replicates is None else self.replicates
        theirs = other.value if other.replicates is None else other.replicates
        return Estimate(float(op(self.value, other.value)), op(mine, theirs))

    def __sub__(self, other: "Estimate") -> "Estimate":
        return self.combine(other, np.subtract)

    def __truediv__(self, other: "Estimate") -> "Estimate":
        return self.combine(other, np.divide)

    def map(self, function) -> "Estimate":
        return Estimate(float(function(self.value)), None if self.replicates is None else function(self.replicates))


def seed_estimate(values, per_seed_replicates=None) -> Estimate:
    """The mean over seeds, with replicates that resample seeds and, where given, each seed's sentence
    replicates (uncertainty.seed_replicates); a single seed without replicates is a point."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(np.nan)
    if per_seed_replicates is None:
        if len(values) < 2:
            return Estimate(float(values.mean()))
        per_seed_replicates = values[:, None]
    return Estimate(float(values.mean()), seed_replicates(per_seed_replicates, CLAIM_BOOT, CLAIM_SEED))


def rows_estimate(rows: pd.DataFrame, column: str = "value") -> Estimate:
    """One value per seed (or the pre-trained model's one) with their sentence (or dev example) replicates where
    every row has them."""
    replicates = [replicates_from_text(r) for r in rows.get("replicates", pd.Series([None] * len(rows)))]
    if replicates and all(r is not None for r in replicates) and len({len(r) for r in replicates}) == 1:
        return seed_estimate(rows[column], np.vstack(replicates))
    return seed_estimate(rows[column])


def dev_estimate(rows: pd.DataFrame) -> Estimate:
    """The mean dev metric over the seeds in `rows` (training or layer-drop rows), each seed's resampled over its
    dev examples."""
    return rows_estimate(rows, "dev_metric")


def read_training(paths) -> pd.DataFrame:
    """One row per fine-tuned variant: its kind's deciding dev metric at the best epoch with its replicates over dev
    examples, dev size, loss and settings."""
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        provenance = record["provenance"]
        variant = parse_variant(provenance["variant"])
        rows.append({"model": provenance["model"], "variant": provenance["variant"], "task": provenance["task"],
                     "seed": provenance["seed"], "freeze_layers": provenance["settings"]["freeze_layers"],
                     "method": variant.how, "fraction": variant.fraction,
                     "trainable_parameters": record.get("trainable_parameters"),
                     "metric": record["metric"], "dev_metric": record["dev_metric"][record["best_epoch"] - 1],
                     "replicates": replicates_text(record["dev_replicates"]), "n_dev": record["n_dev"],
                     "best_epoch": record["best_epoch"], "epochs_run": len(record["dev_metric"]),
                     "final_loss": record["loss"][-1], "steps": len(record["loss"]), "seconds": record["seconds"]})
    return pd.DataFrame(rows)


def read_baselines(paths) -> pd.DataFrame:
    """One row per model and task: the trivial answer's (the majority class) and the best frozen probe's dev
    metric."""
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        best = record["frozen_probe_best_layer"]
        probe = np.nan if best is None else record["frozen_probe"][best]
        rows.append({"model": record["provenance"]["model"], "task": record["provenance"]["task"],
                     "metric": record["metric"], "trivial_name": record["trivial_name"], "trivial": record["trivial"],
                     "frozen_probe": probe, "frozen_probe_layer": np.nan if best is None else best})
    return pd.DataFrame(rows, columns=["model", "task", "metric", "trivial_name", "trivial", "frozen_probe",
                                       "frozen_probe_layer"])


def margin_over_baselines(score, trivial: float, probe: float):
    """How far a dev metric clears the better of the trivial answer and the frozen pre-trained probe (the trivial
    answer alone for a kind without a frozen probe)."""
    return score - np.nanmax([trivial, probe])


def frozen_probe_text(bar) -> str:
    """The frozen probe's bar in words: its dev metric and layer, or that the kind has none."""
    if not np.isfinite(bar["frozen_probe"]):
        return "no frozen probe (not defined for this kind)"
    return f"frozen pre-trained probe {bar['frozen_probe']:.3f} (layer {int(bar['frozen_probe_layer'])})"


def full_finetuning(variant: str) -> bool:
    """Whether a variant is a finished full fine-tune: every parameter trained, no layer frozen (not a seed pair, a
    snapshot, another method or the base)."""
    parsed = tuned(variant)
    return parsed is not None and parsed.freeze is None and parsed.fraction is None and parsed.method is None


def probe_rows(frame: pd.DataFrame, role: str, task: str) -> pd.Series:
    """Rows of the probe set with `role`: the task's own dev set for the dev role, else the one set with that role."""
    return frame["probe"] == dev_probe(task) if role == DEV_ROLE else frame["probe_role"] == role


def layer_rows(frame: pd.DataFrame, measure: str, role: str, task: str, representation: str, which: str):
    """The rows of one measure for the pre-trained model ("base"), the fully fine-tuned seeds ("tuned") or the
    seed-floor pairs ("floor")."""
    part = frame[(frame["measure"] == named(measure)) & probe_rows(frame, role, task)
                 & (frame["representation"] == representation)]
    if which == "base":
        return part[part["variant"] == "base"]
    if which == "floor":
        return part[part["variant"].map(is_seed_pair)]
    return part[part["variant"].map(full_finetuning).astype(bool)]


def per_layer(frame, measure, role, task, representation, finetuned: bool) -> pd.Series:
    """Mean over seeds of one measure per layer, for the base model or the fully fine-tuned variants."""
    rows = layer_rows(frame, measure, role, task, representation, "tuned" if finetuned else "base")
    return rows.groupby("layer")["value"].mean()


def at_layer(rows: pd.DataFrame, layer: str | int = "top") -> Estimate:
    """The estimate at `layer` ("top", "middle" or a number) of one measure's rows."""
    if rows.empty:
        return Estimate(np.nan)
    top = int(rows["layer"].max())
    layer = {"top": top, "middle": (top + 1) // 2}.get(layer, layer)
    return rows_estimate(rows[rows["layer"] == layer])


def largest_fall(base: pd.DataFrame, tuned: pd.DataFrame) -> Estimate:
    """The largest fall over layers from the pre-trained to each fine-tuned seed's values, averaged over seeds; per
    replicate (the same sentence draws for both models) where every row has them."""
    def by_layer(rows):
        rows = rows.sort_values("layer")
        draws = [replicates_from_text(r) for r in rows.get("replicates", pd.Series([None] * len(rows)))]
        paired = all(d is not None for d in draws) and len({len(d) for d in draws}) == 1
        return rows["value"].to_numpy(), np.vstack(draws) if paired else None

    before, before_draws = by_layer(base)
    values, draws = [], []
    for _, part in tuned.groupby("variant"):
        after, after_draws = by_layer(part)
        values.append(float((before - after).max()))
        draws.append(None if before_draws is None or after_draws is None else (before_draws - after_draws).max(0))
    return seed_estimate(values, None if any(d is None for d in draws) else np.vstack(draws))


def interval(estimate: Estimate) -> tuple[float, float]:
    return (np.nan, np.nan) if estimate.replicates is None else percentile_interval(estimate.replicates)


def decide(estimate: Estimate, rule: Rule, threshold: float) -> str:
    """holds / does not hold / inconclusive: where the 95% interval (the point without one) lies against the
    threshold; not measured when the number is missing."""
    if not np.isfinite(estimate.value):
        return MISSING
    low, high = interval(estimate)
    ends = (low, high) if np.isfinite(low) and np.isfinite(high) else (estimate.value, estimate.value)
    passes = [end > threshold if rule.above else end < threshold for end in ends]
    return HOLDS if all(passes) else INCONCLUSIVE if any(passes) else FAILS


def claim_row(claim: str, estimate: Estimate, detail: str, before=np.nan, after=np.nan, threshold=None,
              unmeasurable: str | None = None) -> dict:
    """One claims.csv row: the verdict (or why it cannot be measured), the number with its interval, the threshold
    and its reason, and the numbers behind it in words."""
    rule = RULES[claim]
    threshold = rule.threshold if threshold is None else threshold
    low, high = interval(estimate)
    verdict = f"{NOT_MEASURABLE}: {unmeasurable}" if unmeasurable else decide(estimate, rule, threshold)
    return {"claim": claim, "study": rule.study, "statement": rule.statement, "verdict": verdict,
            "number": estimate.value, "ci_low": low, "ci_high": high,
            "n_boot": 0 if estimate.replicates is None else len(estimate.replicates),
            "threshold": rule.describe(threshold), "reason": rule.reason, "deciding_number": detail,
            "before": before, "after": after}


def _ci(estimate: Estimate) -> str:
    low, high = interval(estimate)
    return "" if not np.isfinite(low) else f" [{low:.3g}, {high:.3g}]"


def learned_claim(training: pd.DataFrame, baselines: pd.DataFrame, task: str, learned_margin: float) -> dict:
    """C0: the fully fine-tuned model beats both the majority class and the frozen pre-trained probe by the margin."""
    tuned = training[(training["task"] == task) & training["variant"].map(full_finetuning).astype(bool)]
    bars = baselines[baselines["task"] == task]
    if bars.empty or tuned.empty:
        return claim_row("C0", Estimate(np.nan), "no baseline or fine-tuned model to compare",
                         threshold=learned_margin)
    bar = bars.iloc[0]
    score = dev_estimate(tuned)
    margin = score.map(lambda a: margin_over_baselines(a, bar["trivial"], bar["frozen_probe"]))
    return claim_row("C0", margin,
                     f"dev {tuned['metric'].iloc[0]} {score.value:.3f}{_ci(score)} (mean of {len(tuned)} seeds) vs "
                     f"{bar['trivial_name']} {bar['trivial']:.3f} and {frozen_probe_text(bar)}: {margin.value:+.3f} "
                     "over the better", np.nanmax([bar["trivial"], bar["frozen_probe"]]), score.value,
                     threshold=learned_margin)


def report_learning(training: pd.DataFrame, baselines: pd.DataFrame, learned_margin: float) -> None:
    """Log every fine-tuned variant's dev metric against its task's baselines; flag those that do not clear them."""
    for row in training.merge(baselines, on=["model", "task", "metric"]).itertuples():
        margin = margin_over_baselines(row.dev_metric, row.trivial, row.frozen_probe)
        flag = "" if margin >= learned_margin else "  <- did not learn the task"
        print(f"{row.model} {row.variant}: dev {row.metric} {row.dev_metric:.4f}, {row.trivial_name} "
              f"{row.trivial:.4f}, {frozen_probe_text(row._asdict())}: {margin:+.4f}{flag}", flush=True)


def _before_after(frame, task, measure, representation="token", role=DEV_ROLE, layer="top"):
    return tuple(at_layer(layer_rows(frame, measure, role, task, representation, which), layer)
                 for which in ("base", "tuned"))


def isotropy_claims(frame: pd.DataFrame, task: str) -> list[dict]:
    before, after = _before_after(frame, task, "isotropy_raw")
    centred = _before_after(frame, task, "isotropy_centred")
    rows = [claim_row("C1", after - before,
                      f"I(W) top layer {before.value:.3g} -> {after.value:.3g}{_ci(after)} (centred "
                      f"{centred[0].value:.3g} -> {centred[1].value:.3g})", before.value, after.value)]
    before, after = _before_after(frame, task, "dominant_directions")
    share = _before_after(frame, task, "top_pc_variance_ratio")
    rows.append(claim_row("C2", after / before,
                          f"principal directions above the mean variance, top layer {before.value:.0f} -> "
                          f"{after.value:.1f}{_ci(after)}; top-PC variance share {share[0].value:.3f} -> "
                          f"{share[1].value:.3f}", before.value, after.value))
    plain = _before_after(frame, task, "task_probe_accuracy", "mean")
    removed = _before_after(frame, task, "task_probe_accuracy_top_pcs_removed", "mean")
    before, after = (p - r for p, r in zip(plain, removed))
    head = (at_layer(layer_rows(frame, name, DEV_ROLE, task, "cls", "tuned"))
            for name in ("head_accuracy", "head_accuracy_top_pcs_removed"))
    head_drop = next(head) - next(head)
    rows.append(claim_row("C3", after - before.map(lambda d: np.maximum(d, 0)),
                          f"cross-validated task-probe accuracy lost when the top PCs are removed: pre-trained "
                          f"{before.value:+.3f}{_ci(before)}, fine-tuned {after.value:+.3f}{_ci(after)}"
                          + (f"; the fine-tuned model's own head loses {head_drop.value:+.3f}{_ci(head_drop)}"
                             if np.isfinite(head_drop.value) else ""),
                          before.value, after.value))
    before, after = _before_after(frame, task, "frequency_pc1_abs_spearman")
    rows.append(claim_row("C4", (after / before).map(lambda r: np.abs(np.log2(r))),
                          f"|Spearman(frequency, PC1)| top layer {before.value:.2f} -> {after.value:.2f}{_ci(after)}",
                          before.value, after.value))
    return rows


def directprobe_claims(frame: pd.DataFrame, task: str) -> list[dict]:
    def top_values(measure, which):
        rows = layer_rows(frame, measure, DEV_ROLE, task, "cls", which)
        return rows[rows["layer"] == rows["layer"].max()].set_index("variant")["value"] if len(rows) else pd.Series()

    raw, spread, clusters = ({w: top_values(name, w) for w in ("base", "tuned")}
                             for name in ("directprobe_min_distance_all", "directprobe_label_spread",
                                          "directprobe_n_clusters"))
    if any(part.empty for part in (*raw.values(), *spread.values())):
        rows = [claim_row("C5", Estimate(np.nan), "no DirectProbe distances and spreads")]
    else:
        normalised_before = float((raw["base"] / spread["base"]).iloc[0])
        normalised = seed_estimate((raw["tuned"] / spread["tuned"]).to_numpy())
        rows = [claim_row("C5", normalised.map(lambda n: n / normalised_before),
                          f"min inter-label distance / within-label spread, top layer [CLS] {normalised_before:.3g} "
                          f"-> {normalised.value:.3g}{_ci(normalised)} (raw {raw['base'].iloc[0]:.3g} -> "
                          f"{raw['tuned'].mean():.3g}, spread {spread['base'].iloc[0]:.3g} -> "
                          f"{spread['tuned'].mean():.3g})", normalised_before, normalised.value)]
    sizes = [top_values(name, "base") for name in ("directprobe_n_labels", "directprobe_n_points",
                                                   "directprobe_dimensions")]
    if any(part.empty for part in (*clusters.values(), *sizes)):
        rows.append(claim_row("C6", Estimate(np.nan), "no DirectProbe clusters"))
    else:
        labels, points, dims = (float(part.iloc[0]) for part in sizes)
        after = seed_estimate(clusters["tuned"].to_numpy())
        before = float(clusters["base"].iloc[0])
        unmeasurable = (f"{points:.0f} points in {dims:.0f} dimensions: n <= 2(d + 1), so any labelling is linearly "
                        "separable and the count cannot fall (Cover 1965)" if points <= 2 * (dims + 1) else
                        f"already {before:.0f} clusters for {labels:.0f} labels before fine-tuning: nothing to simplify"
                        if before <= labels else None)
        rows.append(claim_row("C6", after.map(lambda a: before - a),
                              f"clusters at the top layer {before:.0f} -> {after.value:.1f}{_ci(after)} for "
                              f"{labels:.0f} labels ({points:.0f} points, {dims:.0f} dimensions)", before, after.value,
                              unmeasurable=unmeasurable))
    kept = at_layer(layer_rows(frame, versus("linear_cka"), DEV_ROLE, task, "cls", "tuned"))
    rows.append(claim_row("C7", kept, f"top-layer CKA(pre-trained, fine-tuned) on dev [CLS] {kept.value:.2f}"
                                      f"{_ci(kept)}", np.nan, kept.value))
    before, after = _before_after(frame, task, "task_probe_accuracy", "cls")
    rows.append(claim_row("C8", after - before,
                          f"top-layer task probe on [CLS] {before.value:.3f} -> {after.value:.3f}{_ci(after)}",
                          before.value, after.value))
    return rows


def merchant_claims(frame: pd.DataFrame, training: pd.DataFrame, task: str) -> list[dict]:
    def change(layer, role=DEV_ROLE):
        """1 - RSA beyond the seed floor: floor RSA - base vs fine-tuned RSA (1 - RSA without a floor)."""
        tuned = at_layer(layer_rows(frame, versus(RSA), role, task, "token", "tuned"), layer)
        floor = at_layer(layer_rows(frame, seed_floor(RSA), role, task, "token", "floor"), layer)
        return (floor if np.isfinite(floor.value) else Estimate(1.0)) - tuned, tuned, floor

    (top, rsa_top, floor_top), (middle, rsa_middle, floor_middle) = change("top"), change("middle")
    spearman = per_layer(frame, versus("rsa_spearman"), DEV_ROLE, task, "token", True)
    rows = [claim_row("C9", top - middle,
                      f"RSA (Pearson) pre-trained vs fine-tuned, middle layer {rsa_middle.value:.2f}{_ci(rsa_middle)}, "
                      f"top layer {rsa_top.value:.2f}{_ci(rsa_top)}; seed floor {floor_middle.value:.2f}, "
                      f"{floor_top.value:.2f} (Spearman top {spearman.iloc[-1] if len(spearman) else np.nan:.2f})",
                      middle.value, top.value)]
    pos = {w: layer_rows(frame, "pos_probe_accuracy", TAGGED, task, "word", w) for w in ("base", "tuned")}
    if pos["base"].empty or pos["tuned"].empty:
        rows.append(claim_row("C10", Estimate(np.nan), "no POS probe"))
    else:
        falls = largest_fall(pos["base"], pos["tuned"])
        rows.append(claim_row("C10", falls, f"largest POS-probe accuracy fall over layers {falls.value:+.3f}"
                                            f"{_ci(falls)}", np.nan, falls.value))
    out_domain = at_layer(layer_rows(frame, versus(RSA), OUT_OF_DOMAIN, task, "token", "tuned"))
    rows.append(claim_row("C11", out_domain - rsa_top,
                          f"top-layer RSA (Pearson): in-domain {rsa_top.value:.2f}{_ci(rsa_top)}, out-of-domain "
                          f"{out_domain.value:.2f}{_ci(out_domain)}", rsa_top.value, out_domain.value))
    trained = training[(training["task"] == task) & (training["method"] == FULL)]
    frozen = trained[trained["freeze_layers"] > trained["freeze_layers"].min()]
    if frozen.empty:
        rows.append(claim_row("C12", Estimate(np.nan), "no ablations.freeze_layers configured"))
    else:
        full = trained[trained["freeze_layers"] == trained["freeze_layers"].min()]
        deepest = frozen[frozen["freeze_layers"] == frozen["freeze_layers"].max()]
        full_score, frozen_score = dev_estimate(full), dev_estimate(deepest)
        rows.append(claim_row("C12", full_score - frozen_score,
                              f"dev {full['metric'].iloc[0]} full {full_score.value:.3f}{_ci(full_score)} vs bottom "
                              f"{deepest['freeze_layers'].iloc[0]} frozen {frozen_score.value:.3f}"
                              f"{_ci(frozen_score)}", full_score.value, frozen_score.value))
    return rows


def phang_claims(frame: pd.DataFrame, layerdrop: pd.DataFrame, task: str) -> list[dict]:
    block = {w: layer_rows(frame, "block_diagonality_linear_cka", DEV_ROLE, task, "cls", w) for w in ("base", "tuned")}
    if block["base"].empty or block["tuned"].empty:
        rows = [claim_row("C13", Estimate(np.nan), "no block-diagonality of the [CLS] CKA matrix")]
    else:
        before = float(block["base"]["value"].iloc[0])
        after = seed_estimate(block["tuned"]["value"])
        rows = [claim_row("C13", after.map(lambda a: a - before),
                          f"block-diagonality of the [CLS] CKA matrix {before:.3f} -> {after.value:.3f}{_ci(after)} "
                          f"(per seed: {', '.join(f'{v:.3f}' for v in block['tuned']['value'])})", before, after.value)]
    dropped = layerdrop[(layerdrop["task"] == task) & layerdrop["variant"].map(full_finetuning).astype(bool)]
    score = {k: dev_estimate(part) for k, part in dropped.groupby("layers_dropped")}
    if 0 not in score or 1 not in score:
        return rows + [claim_row("C14", Estimate(np.nan), "no layer-drop dev metric")]
    two = score.get(2, Estimate(np.nan)).value
    return rows + [claim_row("C14", score[0] - score[1],
                             f"dev {dropped['metric'].iloc[0]} all layers {score[0].value:.3f}, top 1 dropped "
                             f"{score[1].value:.3f}{_ci(score[1])}, top 2 dropped {two:.3f}", score[0].value,
                             score[1].value)]


def method_claims(frame: pd.DataFrame, training: pd.DataFrame, task: str) -> list[dict]:
    """M1 and M2 for each configured fine-tuning method beside full fine-tuning (config methods), named "M1 (name)"."""
    trained = training[(training["task"] == task) & training["fraction"].isna() & (training["freeze_layers"] == 0)]
    cka = frame[(frame["measure"] == versus("linear_cka")) & probe_rows(frame, DEV_ROLE, task)
                & (frame["representation"] == "token")]
    full_cka = at_layer(cka[cka["variant"].map(full_finetuning).astype(bool)])
    full_dev = dev_estimate(trained[trained["method"] == FULL])
    rows = []
    for method in sorted(set(trained["method"]) - {FULL}):
        chosen = trained[trained["method"] == method]
        method_cka = at_layer(cka[cka["variant"].isin(chosen["variant"])])
        method_dev = dev_estimate(chosen)
        parameters = f"{chosen['trainable_parameters'].iloc[0]:,.0f} parameters trained"
        rows.append({**claim_row("M1", method_cka - full_cka,
                                 f"top-layer linear CKA to the pre-trained model: {method} {method_cka.value:.3f}"
                                 f"{_ci(method_cka)} ({parameters}), full {full_cka.value:.3f}{_ci(full_cka)}",
                                 full_cka.value, method_cka.value), "claim": f"M1 ({method})"})
        rows.append({**claim_row("M2", full_dev - method_dev,
                                 f"dev {chosen['metric'].iloc[0]}: {method} {method_dev.value:.3f}{_ci(method_dev)}, "
                                 f"full {full_dev.value:.3f}{_ci(full_dev)}", full_dev.value, method_dev.value),
                     "claim": f"M2 ({method})"})
    return rows


def task_claims(frame: pd.DataFrame, layerdrop: pd.DataFrame, training: pd.DataFrame, task: str) -> list[dict]:
    """The claims C1-C14 (README "The four studies") for one model and task, and M1-M2 for each configured method,
    from its tidy metric rows, layer-drop and training tables."""
    return (isotropy_claims(frame, task) + directprobe_claims(frame, task) + merchant_claims(frame, training, task)
            + phang_claims(frame, layerdrop, task) + method_claims(frame, training, task))


def claims_table(tables: pd.DataFrame, layerdrop: pd.DataFrame, training: pd.DataFrame, baselines: pd.DataFrame,
                 learned_margin: float) -> pd.DataFrame:
    """The claims table: one row per model, task and claim; C0 first, and when C0 does not hold every other verdict
    reads NOT_LEARNED, since a model that did not learn its task says nothing about what fine-tuning does."""
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


def _rst(text: str) -> str:
    """Text with the characters rst reads as markup (|substitution|, *emphasis*, `literal`) escaped."""
    return re.sub(r"([|*`\\])", r"\\\1", str(text))


def verdict_cell(row) -> str:
    """A verdict in a few words with its number and 95% interval."""
    verdict = "not measurable (C0)" if row.verdict == NOT_LEARNED else row.verdict.split(":")[0]
    if not np.isfinite(row.number):
        return verdict
    bounds = f" [{row.ci_low:.3g}, {row.ci_high:.3g}]" if np.isfinite(row.ci_low) else ""
    return f"{verdict}: {row.number:.3g}{bounds}"


def verdict_summary(claims: pd.DataFrame) -> str:
    """The claims as an rst table for the report's landing page: one row per claim, one column per model and task,
    each cell the verdict, the deciding number and its 95% interval; then each claim's threshold and its reason,
    and each model and task's learning check (C0) in words."""
    columns = list(claims.groupby(["model", "task"], sort=False).groups)
    lines = [".. list-table:: Verdicts: deciding number [95% interval] (the numbers behind them: claims.csv)",
             "   :header-rows: 1", "", "   * - claim", "     - threshold"]
    lines += [f"     - {model} / {task}" for model, task in columns]
    for claim, rows in claims.groupby("claim", sort=False):
        cells = {(row.model, row.task): verdict_cell(row) for row in rows.itertuples()}
        lines += [f"   * - {claim}: {rows['statement'].iloc[0]}", f"     - {rows['threshold'].iloc[0]}"]
        lines += [f"     - {cells.get(column, MISSING)}" for column in columns]
    lines += ["", "Why each threshold (from the paper's wording):", ""]
    lines += [f"- {claim}: {rows['threshold'].iloc[0]}, {_rst(rows['reason'].iloc[0])}."
              for claim, rows in claims.groupby("claim", sort=False)]
    unmeasurable = claims[claims["verdict"].str.startswith(NOT_MEASURABLE) & (claims["verdict"] != NOT_LEARNED)]
    if len(unmeasurable):
        lines += ["", "Not measurable here:", ""]
        lines += [f"- {row.claim}, {row.model} / {row.task}: {_rst(row.verdict.split(': ', 1)[1])}"
                  for row in unmeasurable.itertuples()]
    learned = claims[claims["claim"] == "C0"]
    lines += ["", "Did each model learn its task (C0)?", ""]
    lines += [f"- {row.model} / {row.task}: {row.verdict}; {_rst(row.deciding_number)}" for row in learned.itertuples()]
    return "\n".join(lines) + "\n"


def write_claims(claims: pd.DataFrame, out, summary) -> None:
    """claims.csv and its rst verdict summary, each written atomically."""
    write_csv(claims, out)
    with atomic_path(summary) as tmp:
        tmp.write_text(verdict_summary(claims))
    print(f"wrote {out} and {summary}: {len(claims)} claims, "
          f"{claims['verdict'].value_counts().to_dict()}", flush=True)
