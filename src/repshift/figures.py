"""One figure per study, pre-trained vs fine-tuned, in one shared style."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .claims import full_finetuning
from .config import parse_variant
from .provenance import atomic_path

COLOURS = {"pre-trained": "#4c72b0", "fine-tuned": "#dd8452", "frozen": "#55a868", "control": "#8c8c8c"}
PROBE_STYLES = {"in-domain (dev)": "-", "out-of-domain": "--", "POS (WSJ)": ":"}
LAYER = "layer (0 = embeddings)"
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}
plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "font.size": 8, "legend.fontsize": 6.5,
                     "axes.titlesize": 8.5})


def save(fig, dest, name) -> None:
    for fmt in ("png", "pdf"):
        with atomic_path(Path(dest) / f"{name}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=METADATA[fmt])
    plt.close(fig)


def band(ax, frame: pd.DataFrame, label: str, colour: str, style: str = "-") -> None:
    """Mean over seeds per layer as a line; the across-seed range as a band when there is more than one seed."""
    if frame.empty:
        return
    stats = frame.groupby("layer")["value"].agg(["mean", "min", "max"]).reset_index()
    n_seeds = frame["seed"].nunique()
    suffix = f" (mean, range over {n_seeds} seeds)" if n_seeds > 1 else ""
    ax.plot(stats["layer"], stats["mean"], style, marker="o", ms=2.5, color=colour, label=label + suffix)
    if n_seeds > 1:
        ax.fill_between(stats["layer"], stats["min"], stats["max"], color=colour, alpha=0.22, lw=0)
    ax.xaxis.get_major_locator().set_params(integer=True)


def select(frame: pd.DataFrame, measure: str, probe: str | None = None, representation: str | None = None):
    keep = frame["measure"] == measure
    if probe is not None:
        keep &= frame["probe"] == probe
    if representation is not None:
        keep &= frame["representation"] == representation
    return frame[keep]


def pre_and_fine(ax, frame, measure, probe, representation, title, ylabel=None, style="-", labels=True):
    part = select(frame, measure, probe, representation)
    base, tuned = part[part["variant"] == "base"], part[part["variant"].map(full_finetuning)]
    suffix = "" if labels is True else f", {labels}"
    band(ax, base, "pre-trained" + suffix, COLOURS["pre-trained"], style)
    band(ax, tuned, "fine-tuned" + suffix, COLOURS["fine-tuned"], style)
    ax.set(title=title, xlabel=LAYER, ylabel=ylabel)


def isotropy_figure(tables, dev, dest, title):
    panels = [("isotropy_raw", "Partition isotropy I(W), raw"), ("isotropy_centred", "I(W), centred"),
              ("isoscore", "IsoScore"), ("average_cosine", "Average cosine (dashed: standardized)"),
              ("top_pc_variance_ratio", "Variance share of the top PC"),
              ("pcs_for_90pct_variance", "PCs for 90% of variance"),
              ("rogue_top1_share", "Share of cosine from the top rogue dim."),
              ("frequency_pc1_abs_spearman", "|Spearman(frequency, PC1)|"),
              ("cluster_purity_frequency", "k-means purity by frequency bin")]
    fig, axes = plt.subplots(2, 5, figsize=(15, 5.6), constrained_layout=True)
    for ax, (measure, panel_title) in zip(axes.flat, panels):
        pre_and_fine(ax, tables, measure, dev, "token", panel_title)
        if measure == "average_cosine":
            pre_and_fine(ax, tables, "average_cosine_standardized", dev, "token", panel_title, style="--",
                         labels="standardized")
    ax = axes.flat[-1]
    for measure, style, label in (("task_probe_accuracy", "-", "as is"),
                                  ("task_probe_accuracy_top_pcs_removed", "--", "top PCs removed"),
                                  ("task_probe_accuracy_cluster_pcs_removed", ":", "cluster PCs removed")):
        pre_and_fine(ax, tables, measure, dev, "mean", "Task probe after isotropy enhancement", "accuracy",
                     style, labels=label)
    axes.flat[0].legend(loc="best")
    axes.flat[3].legend(loc="best", fontsize=5.5)
    axes.flat[-1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6, ncol=2)
    fig.suptitle(f"{title}: isotropy (Rajaee & Pilehvar 2021), {dev} tokens without [CLS]/[SEP]")
    save(fig, dest, "isotropy")


def directprobe_figure(tables, dev, dest, title):
    panels = [("directprobe_n_clusters", "DirectProbe clusters", "clusters"),
              ("directprobe_min_distance_all", "Min distance between label clusters", "max-margin width"),
              ("directprobe_mean_distance_all", "Mean distance between label clusters", "max-margin width"),
              ("task_probe_accuracy", "Linear probe on [CLS]", "held-out accuracy")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), constrained_layout=True)
    for ax, (measure, panel_title, ylabel) in zip(axes, panels):
        pre_and_fine(ax, tables, measure, dev, "cls", panel_title, ylabel)
    labels = select(tables, "directprobe_n_labels", dev, "cls")["value"]
    if not labels.empty:
        axes[0].axhline(labels.iloc[0], color="black", lw=0.8, ls=":", label="number of labels")
    for ax in axes:
        ax.legend(loc="best")
    fig.suptitle(f"{title}: DirectProbe (Zhou & Srikumar 2022), [CLS] of {dev}")
    save(fig, dest, "directprobe")


def probing_figure(tables, training, dest, title):
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), constrained_layout=True)
    pre_and_fine(axes[0], tables, "pos_probe_accuracy", "pos", "word", "POS probe (words: mean of pieces)",
                 "held-out accuracy")
    pre_and_fine(axes[0], tables, "pos_control_accuracy", "pos", "word", "POS probe (words: mean of pieces)",
                 style=":", labels="control task")
    pre_and_fine(axes[1], tables, "pos_selectivity", "pos", "word", "POS selectivity (task - control)",
                 "accuracy difference")
    dev = sorted(p for p in tables["probe"].unique() if p.startswith("dev-"))[0]
    pre_and_fine(axes[2], tables, "task_probe_accuracy", dev, "mean", "Task probe (mean vectors)",
                 "held-out accuracy")
    grouped = training.groupby("freeze_layers")["dev_accuracy"]
    positions = np.arange(grouped.ngroups)
    axes[3].bar(positions, grouped.mean(), yerr=[grouped.mean() - grouped.min(), grouped.max() - grouped.mean()],
                color=[COLOURS["fine-tuned"]] + [COLOURS["frozen"]] * (grouped.ngroups - 1), capsize=3)
    axes[3].set(xticks=positions, xticklabels=[f"{k}" for k in grouped.mean().index], ylim=(0, 1),
                title="Fine-tuned dev accuracy by frozen layers", xlabel="bottom layers frozen",
                ylabel="dev accuracy (bar: mean, whisker: seed range)")
    for ax in axes[:3]:
        ax.legend(loc="best")
    fig.suptitle(f"{title}: probing and partial freezing (Merchant et al. 2020)")
    save(fig, dest, "probing")


def probe_label(probe: str) -> str:
    return "in-domain (dev)" if probe.startswith("dev-") else "out-of-domain" if probe == "ood" else "POS (WSJ)"


def rsa_figure(comparisons, dest, title):
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3), constrained_layout=True)
    full = comparisons[comparisons["variant"].map(full_finetuning)]
    for probe in sorted(full["probe"].unique()):
        label = probe_label(probe)
        band(axes[0], select(full, "rsa_spearman_base_vs_finetuned", probe, "token"), label,
             COLOURS["fine-tuned"], PROBE_STYLES.get(label, "-"))
        band(axes[1], select(full, "linear_cka_base_vs_finetuned", probe, "token"), label,
             COLOURS["fine-tuned"], PROBE_STYLES.get(label, "-"))
    band(axes[1], select(full, "linear_cka_permuted_base_vs_finetuned", None, "token"),
         "permutation baseline", COLOURS["control"], ":")
    axes[0].set(title="RSA (Spearman) pre-trained vs fine-tuned", xlabel=LAYER, ylabel="Spearman rho")
    axes[1].set(title="Linear CKA pre-trained vs fine-tuned", xlabel=LAYER, ylabel="CKA")
    dev = [p for p in comparisons["probe"].unique() if p.startswith("dev-")]
    for variant_freeze, part in comparisons[comparisons["probe"].isin(dev)].groupby(
            comparisons["variant"].map(lambda v: parse_variant(v).freeze or 0)):
        colour = COLOURS["fine-tuned"] if variant_freeze == 0 else COLOURS["frozen"]
        band(axes[2], select(part, "linear_cka_base_vs_finetuned", None, "token"),
             f"bottom {variant_freeze} frozen", colour, "-" if variant_freeze == 0 else "--")
    axes[2].set(title="CKA pre-trained vs fine-tuned by freezing (dev)", xlabel=LAYER, ylabel="CKA")
    for ax in axes:
        ax.set_ylim(-0.05, 1.05)
        ax.legend(loc="lower left")
    fig.suptitle(f"{title}: what changed, in and out of domain (Merchant et al. 2020)")
    save(fig, dest, "rsa")


def heatmap(ax, matrix: np.ndarray):
    """A layer-by-layer similarity matrix with integer layer ticks, annotated when small enough to read."""
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    ticks = np.arange(len(matrix))
    ax.set(xticks=ticks, yticks=ticks, xlabel="layer", ylabel="layer")
    ax.grid(False)
    if len(matrix) <= 13:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5,
                        color="black" if value > 0.6 else "white")
    return image


def cka_figure(tables, layerdrop, dev, dest, title):
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), constrained_layout=True)
    cka = select(tables, "linear_cka", dev, "token")
    for ax, (label, chosen) in zip(axes[:2], (("pre-trained", cka["variant"] == "base"),
                                              ("fine-tuned", cka["variant"].map(full_finetuning)))):
        matrix = cka[chosen].groupby(["layer", "layer_b"])["value"].mean().unstack().to_numpy()
        image = heatmap(ax, matrix)
        ax.set_title(f"{label}: linear CKA, {dev} tokens")
    fig.colorbar(image, ax=axes[:2], shrink=0.85, label="linear CKA")
    scores = []
    for kind in ("linear", "debiased"):
        part = select(tables, f"block_diagonality_{kind}", dev, "token")
        for label, chosen in (("pre-trained", part["variant"] == "base"),
                              ("fine-tuned", part["variant"].map(full_finetuning))):
            scores.append((f"{kind}\n{label}", part[chosen]["value"], COLOURS[label]))
    axes[2].bar(range(len(scores)), [s.mean() for _, s, _ in scores], color=[c for _, _, c in scores],
                yerr=[[s.mean() - s.min() for _, s, _ in scores], [s.max() - s.mean() for _, s, _ in scores]],
                capsize=3)
    axes[2].set(xticks=range(len(scores)), xticklabels=[n for n, _, _ in scores], ylabel="within - between blocks",
                title="Block-diagonality of the CKA matrix")
    full = layerdrop[layerdrop["variant"].map(full_finetuning)]
    stats = full.groupby("layers_dropped")["dev_accuracy"].agg(["mean", "min", "max"]).reset_index()
    axes[3].plot(stats["layers_dropped"], stats["mean"], marker="o", ms=3, color=COLOURS["fine-tuned"],
                 label=f"mean, range over {full['seed'].nunique()} seeds")
    axes[3].fill_between(stats["layers_dropped"], stats["min"], stats["max"], color=COLOURS["fine-tuned"],
                         alpha=0.22, lw=0)
    axes[3].set(title="Top layers dropped, no re-tuning", xlabel="top layers dropped", ylabel="dev accuracy",
                ylim=(0, 1.02))
    axes[3].xaxis.get_major_locator().set_params(integer=True)
    axes[3].legend(loc="lower left")
    fig.suptitle(f"{title}: layer-by-layer CKA and layer dropping (Phang et al. 2021)")
    save(fig, dest, "cka")


def study_figures(tables, comparisons, layerdrop, training, dest, title) -> None:
    """Render the five study figures of one model and task into `dest` (PNG and PDF each)."""
    dev = sorted(p for p in tables["probe"].unique() if p.startswith("dev-"))[0]
    isotropy_figure(tables, dev, dest, title)
    directprobe_figure(tables, dev, dest, title)
    probing_figure(tables, training, dest, title)
    rsa_figure(comparisons, dest, title)
    cka_figure(tables, layerdrop, dev, dest, title)
