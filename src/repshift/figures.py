"""One figure per study, pre-trained vs fine-tuned, in one shared style."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .catalog import MEASURES, get, named, versus
from .claims import full_finetuning
from .config import DEV_ROLE, OUT_OF_DOMAIN, TAGGED, parse_variant
from .provenance import atomic_path

COLOURS = {"pre-trained": "#4c72b0", "fine-tuned": "#dd8452", "frozen": "#55a868", "control": "#8c8c8c"}
ROLE_STYLES = {DEV_ROLE: "-", OUT_OF_DOMAIN: "--", TAGGED: ":"}
ROLE_LABELS = {DEV_ROLE: "in-domain (dev)", OUT_OF_DOMAIN: "out-of-domain", TAGGED: "tagged"}
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
    keep = frame["measure"] == named(measure)
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


def panel_grid(count: int, columns: int, height: float):
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, height * rows), constrained_layout=True,
                             squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def present(frame: pd.DataFrame, measures) -> list:
    return [m for m in measures if (frame["measure"] == m.name).any()]


def isotropy_figure(tables, dev, dest, title):
    """One panel per isotropy measure the catalog draws here, and one for the task probe after enhancement."""
    drawn = [m for m in MEASURES if m.figure == "isotropy"]
    panels = present(tables, [m for m in drawn if m.target != "label"])
    enhanced = [get("task_probe_accuracy")] + [m for m in drawn if m.target == "label"]
    fig, axes = panel_grid(len(panels) + 1, 5, 2.8)
    for ax, measure in zip(axes, panels):
        pre_and_fine(ax, tables, measure.name, dev, "token", measure.label, measure.unit)
        if measure.name == named("average_cosine"):
            pre_and_fine(ax, tables, "average_cosine_standardized", dev, "token", measure.label, style="--",
                         labels="standardized")
            ax.legend(loc="best", fontsize=5.5)
    ax = axes[len(panels)]
    for measure, style in zip(enhanced, ("-", "--", ":")):
        pre_and_fine(ax, tables, measure.name, dev, "mean", "Task probe after isotropy enhancement", "accuracy",
                     style, labels=measure.label)
    axes[0].legend(loc="best")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6, ncol=2)
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


def role_probe(frame: pd.DataFrame, role: str) -> str | None:
    """The probe set with `role` (the config allows one per role that a figure reads), or None."""
    named_sets = sorted(frame.loc[frame["probe_role"] == role, "probe"].unique())
    return named_sets[0] if named_sets else None


def probing_figure(tables, training, dest, title):
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), constrained_layout=True)
    tagged = role_probe(tables, TAGGED)
    pre_and_fine(axes[0], tables, "pos_probe_accuracy", tagged, "word", f"POS probe on {tagged} (words)",
                 "held-out accuracy")
    pre_and_fine(axes[0], tables, "pos_control_accuracy", tagged, "word", f"POS probe on {tagged} (words)",
                 style=":", labels="control task")
    measure = get("pos_selectivity")
    pre_and_fine(axes[1], tables, measure.name, tagged, "word", measure.label, measure.unit)
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


def probe_lines(frame: pd.DataFrame):
    """(probe set, legend label, line style) of every probe set in `frame`, by role."""
    roles = frame.groupby("probe")["probe_role"].first()
    for probe, role in sorted(roles.items(), key=lambda item: (item[1] != DEV_ROLE, item[0])):
        label = ROLE_LABELS[role] if role == DEV_ROLE else f"{ROLE_LABELS.get(role, 'extra')} ({probe})"
        yield probe, label, ROLE_STYLES.get(role, "-.")


def rsa_figure(comparisons, dest, title):
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3), constrained_layout=True)
    full = comparisons[comparisons["variant"].map(full_finetuning)]
    for probe, label, style in probe_lines(full):
        band(axes[0], select(full, versus("rsa_spearman"), probe, "token"), label, COLOURS["fine-tuned"], style)
        band(axes[1], select(full, versus("linear_cka"), probe, "token"), label, COLOURS["fine-tuned"], style)
    band(axes[1], select(full, versus("linear_cka_permuted"), None, "token"),
         "permutation baseline", COLOURS["control"], ":")
    axes[0].set(title="RSA (Spearman) pre-trained vs fine-tuned", xlabel=LAYER, ylabel="Spearman rho")
    axes[1].set(title="Linear CKA pre-trained vs fine-tuned", xlabel=LAYER, ylabel="CKA")
    in_domain = comparisons[comparisons["probe_role"] == DEV_ROLE]
    for variant_freeze, part in in_domain.groupby(in_domain["variant"].map(lambda v: parse_variant(v).freeze or 0)):
        colour = COLOURS["fine-tuned"] if variant_freeze == 0 else COLOURS["frozen"]
        band(axes[2], select(part, versus("linear_cka"), None, "token"),
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
    for measure in (m for m in MEASURES if m.figure == "cka"):
        part = select(tables, measure.name, dev, "token")
        for label, chosen in (("pre-trained", part["variant"] == "base"),
                              ("fine-tuned", part["variant"].map(full_finetuning))):
            scores.append((f"{measure.inputs[0]}\n{label}", part[chosen]["value"], COLOURS[label]))
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


def similarity_figure(comparisons, dest, title):
    """Every pair measure the catalog draws here, pre-trained vs fine-tuned per layer, one line per probe set."""
    full = comparisons[comparisons["variant"].map(full_finetuning)]
    measures = [m for m in MEASURES if m.figure == "similarity" and (full["measure"] == versus(m.name)).any()]
    fig, axes = panel_grid(len(measures) + 1, 4, 2.9)
    for ax, measure in zip(axes, measures):
        for probe, label, style in probe_lines(full):
            band(ax, select(full, versus(measure.name), probe, "token"), label, COLOURS["fine-tuned"], style)
        reading = "1" if measure.kind == "similarity" else "0"
        ax.set(title=measure.label, xlabel=LAYER, ylabel=f"{measure.unit} ({reading} = unchanged)")
    key = axes[len(measures)]
    key.set_visible(True)
    key.axis("off")
    key.legend(*axes[0].get_legend_handles_labels(), loc="center", title="probe set", fontsize=7)
    fig.suptitle(f"{title}: pre-trained vs fine-tuned, same layer, every similarity measure (tokens)")
    save(fig, dest, "similarity")


def study_figures(tables, comparisons, layerdrop, training, dest, title) -> None:
    """Render the study figures of one model and task into `dest` (PNG and PDF each)."""
    dev = sorted(tables.loc[tables["probe_role"] == DEV_ROLE, "probe"].unique())[0]
    isotropy_figure(tables, dev, dest, title)
    directprobe_figure(tables, dev, dest, title)
    probing_figure(tables, training, dest, title)
    rsa_figure(comparisons, dest, title)
    cka_figure(tables, layerdrop, dev, dest, title)
    similarity_figure(comparisons, dest, title)
