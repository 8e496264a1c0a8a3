"""One figure per study, pre-trained vs fine-tuned, in one shared style."""

import os
import textwrap
import time

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .catalog import MEASURES, between as between_name, get, named, seed_floor, versus
from .claims import RSA, Estimate, dev_estimate, full_finetuning, interval, rows_estimate, seed_estimate
from .config import (DEV_ROLE, FULL, OUT_OF_DOMAIN, TAGGED, comparison_variants, is_comparison, is_seed_pair,
                     is_snapshot, parse_variant, tuned)
from .provenance import atomic_path
from .tasks import ACCURACY

COLOURS = {"pre-trained": "#4c72b0", "fine-tuned": "#dd8452", "frozen": "#55a868", "control": "#8c8c8c"}
ROLE_STYLES = {DEV_ROLE: ("-", "o", COLOURS["fine-tuned"]), OUT_OF_DOMAIN: ("--", "s", "#8172b3"),
               TAGGED: (":", "^", COLOURS["frozen"])}
EXTRA_STYLE = ("-.", "D", "#937860")
ROLE_LABELS = {DEV_ROLE: "in-domain (dev)", OUT_OF_DOMAIN: "out-of-domain", TAGGED: "tagged"}
BASELINE_STYLES = {"trivial": ("#222222", (0, (4, 2))), "frozen_probe": ("#4c72b0", (0, (1, 1.5)))}
LAYER = "layer (0 = embeddings)"
REPRESENTATIONS = {"token": "tokens", "cls": "[CLS]", "mean": "mean", "word": "words"}
WIDTH = 9.5
"""Inches: the report shows figures about 900 px wide, so at 110 dpi 8 pt text stays readable."""
COMPARED = "comparisons"
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}
plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "font.size": 8, "legend.fontsize": 7.5,
                     "axes.titlesize": 8.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5})


def save(fig, dest, name) -> None:
    started = time.perf_counter()
    for fmt in ("png", "pdf"):
        with atomic_path(Path(dest) / f"{name}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=METADATA[fmt])
    print(f"wrote {dest}/{name}.png and .pdf: {sum(ax.get_visible() for ax in fig.axes)} panels "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    plt.close(fig)


def band(ax, frame: pd.DataFrame, label: str, colour: str, style: str = "-", marker: str = "o") -> None:
    """Mean over seeds per layer as a line, and its 95% interval (claims.rows_estimate: seeds resampled, and
    sentences where the rows carry replicates): a band over seeds, or a vertical bar for one model's sentence
    interval (a percentile interval need not contain its point estimate, so it is drawn from its own ends)."""
    if frame.empty:
        return
    layers = sorted(frame["layer"].unique())
    means = frame.groupby("layer")["value"].mean().reindex(layers)
    bounds = np.array([interval(rows_estimate(frame[frame["layer"] == layer])) for layer in layers])
    ax.plot(layers, means, ls=style, marker=marker, ms=3, color=colour, label=label)
    if frame["seed"].nunique() > 1:
        ax.fill_between(layers, bounds[:, 0], bounds[:, 1], color=colour, alpha=0.22, lw=0)
    elif np.isfinite(bounds).any():
        ax.vlines(layers, bounds[:, 0], bounds[:, 1], color=colour, lw=1.5)
    ax.xaxis.get_major_locator().set_params(integer=True)


def bars(ax, estimates, colours) -> None:
    """One bar per estimate at its value, with its 95% interval as a whisker where it has one."""
    values = np.array([e.value for e in estimates])
    bounds = np.array([interval(e) for e in estimates]).reshape(-1, 2)
    ax.bar(np.arange(len(values)), values, color=colours, width=0.6)
    ax.vlines(np.arange(len(values)), bounds[:, 0], bounds[:, 1], color="black", lw=1.5)


def undefined_layers(frame: pd.DataFrame) -> str:
    """An x-label note naming the layers whose value was recorded as NaN, and why when it is known."""
    layers = sorted({int(layer) for layer in frame.loc[frame["value"].isna(), "layer"]})
    if not layers:
        return ""
    cls_embedding = layers == [0] and (frame["representation"] == "cls").all()
    why = "[CLS] is one vector there" if cls_embedding else "undefined, see the metrics log"
    return f"\nno value at layer {', '.join(map(str, layers))}: {why}"


def baseline_lines(ax, baselines: pd.DataFrame, frozen: bool = True) -> None:
    """Horizontal lines at the task's trivial answer's (the majority class) and (with `frozen`) the frozen probe's dev
    metric; without `frozen` (a probe's accuracy panel) only a majority-class accuracy, the one comparable bar."""
    if baselines.empty or not (frozen or baselines["metric"].iloc[0] == ACCURACY):
        return
    row = baselines.iloc[0]
    lines = {"trivial": row["trivial_name"], **({"frozen_probe": "frozen pre-trained probe"} if frozen else {})}
    for column, label in lines.items():
        colour, dashes = BASELINE_STYLES[column]
        if np.isfinite(row[column]):
            ax.axhline(row[column], color=colour, ls=dashes, lw=1, label=label)


def dev_metric_name(rows: pd.DataFrame) -> str:
    """The dev metric that training or layer-drop rows report (one per task)."""
    return rows["metric"].iloc[0] if len(rows) else ACCURACY


def log_scale_if_spread(ax, decades: float = 2.0) -> None:
    """A log y axis when the plotted values are positive and span more than `decades` decades."""
    values = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()] or [np.array([])])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and np.log10(values.max() / values.min()) > decades:
        ax.set_yscale("log")


def seeds_note(frame: pd.DataFrame) -> str:
    """How the lines summarise seeds and sentences, for a legend title."""
    n_seeds = frame.loc[frame["variant"].map(full_finetuning), "seed"].nunique()
    seeds = f"fine-tuned lines: mean of {n_seeds} seeds, band = 95% interval (seeds resampled" if n_seeds > 1 else ""
    if "replicates" in frame and frame["replicates"].notna().any():
        return (f"{seeds}, and sentences where bars show a one-model interval); bars: 95% interval over resampled "
                "sentences") if seeds else "bars: 95% interval over resampled sentences"
    return f"{seeds})" if seeds else ""


def legend_below(fig, *notes: str) -> None:
    """One legend for the whole figure, under its panels, so no legend covers data; each label once; `notes`
    (the non-empty ones) as its title."""
    title = "\n".join(textwrap.fill(note, 110) for note in notes if note) or None
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", title=title,
                   ncol=min(3, len(entries)), frameon=False)


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
    ax.set(title=title, xlabel=LAYER + undefined_layers(part), ylabel=ylabel)


def panel_grid(count: int, columns: int, height: float):
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, height * rows), layout="constrained", squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def present(frame: pd.DataFrame, measures) -> list:
    return [m for m in measures if (frame["measure"] == m.name).any()]


def constant(part: pd.DataFrame) -> float | None:
    """The one value every row of `part` holds, or None."""
    values = part["value"].dropna().unique()
    return float(values[0]) if len(values) == 1 else None


def isotropy_figure(tables, baselines, dev, dest, title):
    """One panel per isotropy measure the catalog draws here, and one for the task probe after enhancement."""
    drawn = [m for m in MEASURES if m.figure == "isotropy"]
    panels = present(tables, [m for m in drawn if m.target != "label"])
    enhanced = [get("task_probe_accuracy")] + [m for m in drawn if m.target == "label"]
    fig, axes = panel_grid(len(panels) + 1, 3, 2.3)
    for ax, measure in zip(axes, panels):
        pre_and_fine(ax, tables, measure.name, dev, "token", measure.label, measure.unit)
        if measure.name == named("average_cosine"):
            pre_and_fine(ax, tables, "average_cosine_standardized", dev, "token", measure.label, style="--",
                         labels="dimensions standardized")
        log_scale_if_spread(ax)
    ax = axes[len(panels)]
    for measure, style in zip(enhanced, ("-", "--", ":", "none", "none")):
        representation = "mean" if "mean" in measure.representations else measure.representations[0]
        pre_and_fine(ax, tables, measure.name, dev, representation, "Task probe after isotropy enhancement",
                     "accuracy", style, labels=measure.label)
    baseline_lines(ax, baselines, frozen=False)
    legend_below(fig, seeds_note(tables))
    fig.suptitle(f"{title}: isotropy (Rajaee & Pilehvar 2021), {dev} tokens without [CLS]/[SEP]")
    save(fig, dest, "isotropy")


def directprobe_figure(tables, baselines, dev, dest, title):
    """Cluster count, distances between label clusters and a [CLS] probe; a constant count and identical min and
    mean distances (one pair of labels) are said in words rather than drawn twice."""
    clusters, labels = (select(tables, m, dev, "cls") for m in ("directprobe_n_clusters", "directprobe_n_labels"))
    one_pair = labels["value"].dropna().max() == 2 if not labels.empty else False
    distances = [("directprobe_min_distance_all", "Distance between the two label clusters" if one_pair else
                  "Min distance between label clusters")] + ([] if one_pair else [
                      ("directprobe_mean_distance_all", "Mean distance between label clusters")])
    count = constant(clusters)
    fig, axes = panel_grid(2 + len(distances) + (count is None), 2, 2.9)
    for ax, (measure, panel_title) in zip(axes, distances):
        pre_and_fine(ax, tables, measure, dev, "cls", panel_title, "max-margin width")
        log_scale_if_spread(ax)
    ax = axes[len(distances)]
    keys = ["variant", "seed", "layer"]
    raw, spread = (select(tables, m, dev, "cls").set_index(keys)["value"]
                   for m in ("directprobe_min_distance_all", "directprobe_label_spread"))
    relative = (raw / spread).rename("value").reset_index()
    band(ax, relative[relative["variant"] == "base"], "pre-trained", COLOURS["pre-trained"])
    band(ax, relative[relative["variant"].map(full_finetuning)], "fine-tuned", COLOURS["fine-tuned"])
    ax.set(title="Min distance / within-label spread (C5)", xlabel=LAYER, ylabel="relative distance")
    ax = axes[len(distances) + 1]
    pre_and_fine(ax, tables, "task_probe_accuracy", dev, "cls", "Linear probe on [CLS]", "held-out accuracy")
    baseline_lines(ax, baselines, frozen=False)
    if count is None:
        ax = axes[len(distances) + 2]
        pre_and_fine(ax, tables, "directprobe_n_clusters", dev, "cls", "DirectProbe clusters", "clusters")
        if not labels.empty:
            ax.axhline(labels["value"].dropna().iloc[0], color="black", lw=0.8, ls=":", label="number of labels")
    notes = []
    if count is not None:
        points, dims = (constant(select(tables, m, dev, "cls")) for m in ("directprobe_n_points",
                                                                           "directprobe_dimensions"))
        sizes = f"{points:.0f} points in {dims:.0f} dimensions: " if points and dims else ""
        notes.append(f"DirectProbe finds {count:.0f} clusters for {labels['value'].dropna().max():.0f} labels at every "
                     f"layer, pre-trained and fine-tuned ({sizes}at n <= 2(d + 1) any labelling is linearly "
                     "separable), so the count is not drawn.")
    if one_pair:
        notes.append("With two labels the min and the mean distance are the same pair's.")
    legend_below(fig, seeds_note(tables), *notes)
    fig.suptitle(f"{title}: DirectProbe (Zhou & Srikumar 2022), [CLS] of {dev}")
    save(fig, dest, "directprobe")


def role_probe(frame: pd.DataFrame, role: str) -> str | None:
    """The probe set with `role` (the config allows one per role that a figure reads), or None."""
    named_sets = sorted(frame.loc[frame["probe_role"] == role, "probe"].unique())
    return named_sets[0] if named_sets else None


def probing_figure(tables, training, baselines, dest, title):
    fig, axes = panel_grid(4, 2, 2.9)
    tagged = role_probe(tables, TAGGED)
    pre_and_fine(axes[0], tables, "pos_probe_accuracy", tagged, "word", f"POS probe on {tagged} (words)",
                 "held-out accuracy")
    pre_and_fine(axes[0], tables, "pos_control_accuracy", tagged, "word", f"POS probe on {tagged} (words)",
                 "held-out accuracy", style=":", labels="control task")
    measure = get("pos_selectivity")
    pre_and_fine(axes[1], tables, measure.name, tagged, "word", measure.label, measure.unit)
    dev = sorted(tables.loc[tables["probe_role"] == DEV_ROLE, "probe"].unique())[0]
    pre_and_fine(axes[2], tables, "task_probe_accuracy", dev, "mean", "Task probe (mean vectors)",
                 "held-out accuracy")
    baseline_lines(axes[2], baselines, frozen=False)
    grouped = training[training["method"] == FULL].groupby("freeze_layers")
    positions = np.arange(grouped.ngroups)
    bars(axes[3], [dev_estimate(part) for _, part in grouped],
         [COLOURS["fine-tuned"]] + [COLOURS["frozen"]] * (grouped.ngroups - 1))
    baseline_lines(axes[3], baselines)
    metric = dev_metric_name(training)
    axes[3].set(xticks=positions, xticklabels=[f"{k}" for k, _ in grouped], ylim=(0, 1),
                title=f"Fine-tuned dev {metric} by frozen layers", xlabel="bottom layers frozen",
                ylabel=f"dev {metric} (whisker: 95% interval)")
    legend_below(fig, seeds_note(tables))
    fig.suptitle(f"{title}: probing and partial freezing (Merchant et al. 2020)")
    save(fig, dest, "probing")


def probe_lines(frame: pd.DataFrame):
    """(probe set, legend label, (line style, marker, colour)) of every probe set in `frame`, by role."""
    roles = frame.groupby("probe")["probe_role"].first()
    for probe, role in sorted(roles.items(), key=lambda item: (item[1] != DEV_ROLE, item[0])):
        label = ROLE_LABELS[role] if role == DEV_ROLE else f"{ROLE_LABELS.get(role, 'extra')} ({probe})"
        yield probe, label, ROLE_STYLES.get(role, EXTRA_STYLE)


def floor_lines(ax, comparisons: pd.DataFrame, measure: str) -> None:
    """The seed floor of `measure` (the same measure between two fine-tuning seeds), one grey line per probe set."""
    floors = comparisons[comparisons["variant"].map(is_seed_pair)]
    if not (floors["measure"] == seed_floor(measure)).any():
        return
    for probe, label, (style, marker, _) in probe_lines(floors):
        band(ax, select(floors, seed_floor(measure), probe, "token"), f"seed floor: seed vs seed, {label}",
             COLOURS["control"], style, marker)


def rsa_figure(comparisons, dest, title):
    fig, axes = panel_grid(3, 3, 3.0)
    full = comparisons[comparisons["variant"].map(full_finetuning)]
    for probe, label, (style, marker, colour) in probe_lines(full):
        band(axes[0], select(full, versus(RSA), probe, "token"), label, colour, style, marker)
        band(axes[1], select(full, versus("linear_cka"), probe, "token"), label, colour, style, marker)
    floor_lines(axes[0], comparisons, RSA)
    floor_lines(axes[1], comparisons, "linear_cka")
    band(axes[1], select(full, versus("linear_cka_permuted"), None, "token"),
         "permutation baseline (rows shuffled)", COLOURS["control"], (0, (1, 1)), "x")
    axes[0].set(title=f"{get(RSA).label}, pre-trained vs fine-tuned", xlabel=LAYER, ylabel=get(RSA).unit)
    axes[1].set(title="Linear CKA, pre-trained vs fine-tuned", xlabel=LAYER, ylabel="CKA")
    tuned_rows = comparisons[comparisons["variant"].map(lambda v: (parsed := tuned(v)) is not None
                                                        and parsed.method is None)]
    in_domain = tuned_rows[tuned_rows["probe_role"] == DEV_ROLE]
    for variant_freeze, part in in_domain.groupby(in_domain["variant"].map(lambda v: parse_variant(v).freeze or 0)):
        colour = COLOURS["fine-tuned"] if variant_freeze == 0 else COLOURS["frozen"]
        band(axes[2], select(part, versus("linear_cka"), None, "token"),
             f"dev, bottom {variant_freeze} layers frozen", colour, "-" if variant_freeze == 0 else "--",
             "o" if variant_freeze == 0 else "v")
    axes[2].set(title="Linear CKA by freezing (dev)", xlabel=LAYER, ylabel="CKA")
    for ax in axes[:3]:
        ax.set_ylim(-0.05, 1.05)
    legend_below(fig, seeds_note(comparisons))
    fig.suptitle(f"{title}: what changed beyond seed noise, in and out of domain (Merchant et al. 2020)")
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
                ax.text(j, i, f"{value:.2f}"[1:] if 0 <= value < 1 else f"{value:.1f}", ha="center", va="center",
                        fontsize=8 if len(matrix) <= 8 else 6.5, color="black" if value > 0.6 else "white")
    return image


def cka_figure(tables, layerdrop, baselines, dev, dest, title):
    fig, axes = panel_grid(4, 2, 3.9)
    cka = select(tables, "linear_cka", dev, "token")
    for ax, (label, chosen) in zip(axes[:2], (("pre-trained", cka["variant"] == "base"),
                                              ("fine-tuned", cka["variant"].map(full_finetuning)))):
        matrix = cka[chosen].groupby(["layer", "layer_b"])["value"].mean().unstack().to_numpy()
        image = heatmap(ax, matrix)
        ax.set_title(f"{label}: linear CKA, {dev} tokens")
    fig.colorbar(image, ax=[axes[0], axes[1]], shrink=0.85, label="linear CKA")
    scores = []
    for measure in present(tables, (m for m in MEASURES if m.figure == "cka")):
        for representation in measure.representations:
            part = select(tables, measure.name, dev, representation)
            for label, chosen in (("pre-trained", part["variant"] == "base"),
                                  ("fine-tuned", part["variant"].map(full_finetuning))):
                if chosen.any():
                    scores.append((f"{measure.inputs[0].replace('_cka', '')} {REPRESENTATIONS[representation]}"
                                   f", {label}", seed_estimate(part.loc[chosen, "value"]), COLOURS[label]))
    if scores:
        bars(axes[2], [s for _, s, _ in scores], [c for _, _, c in scores])
    else:
        axes[2].text(0.5, 0.5, "undefined: fewer than 4 layers\n(two blocks of at least 2)", ha="center",
                     va="center", transform=axes[2].transAxes)
    axes[2].set(xticks=range(len(scores)), ylabel="within - between blocks",
                title="Block-diagonality, blocks of 2+ layers (whisker: 95% interval over seeds)")
    axes[2].set_xticklabels([n for n, _, _ in scores], rotation=25, ha="right", fontsize=8)
    full = layerdrop[layerdrop["variant"].map(full_finetuning)]
    band(axes[3], full.rename(columns={"layers_dropped": "layer", "dev_metric": "value"}),
         "fine-tuned, top layers dropped", COLOURS["fine-tuned"])
    baseline_lines(axes[3], baselines)
    axes[3].set(title="Top layers dropped, no re-tuning", xlabel="top layers dropped",
                ylabel=f"dev {dev_metric_name(layerdrop)}", ylim=(0, 1.02))
    legend_below(fig, seeds_note(tables))
    fig.suptitle(f"{title}: layer-by-layer CKA and layer dropping (Phang et al. 2021)")
    save(fig, dest, "cka")


def similarity_figure(comparisons, dest, title):
    """Every pair measure the catalog draws here, pre-trained vs fine-tuned per layer, one line per probe set."""
    full = comparisons[comparisons["variant"].map(full_finetuning)]
    measures = [m for m in MEASURES if m.figure == "similarity" and (full["measure"] == versus(m.name)).any()]
    fig, axes = panel_grid(len(measures), 3, 2.3)
    for ax, measure in zip(axes, measures):
        part = select(full, versus(measure.name), None, "token")
        for probe, label, (style, marker, colour) in probe_lines(full):
            band(ax, part[part["probe"] == probe], label, colour, style, marker)
        if measure.seed_floor:
            floor_lines(ax, comparisons, measure.name)
        reading = "1" if measure.kind == "similarity" else "0"
        ax.set(title=f"{measure.label} ({reading} = unchanged)", xlabel=LAYER + undefined_layers(part),
               ylabel=measure.unit)
    legend_below(fig, "probe set", seeds_note(comparisons))
    fig.suptitle(f"{title}: pre-trained vs fine-tuned, same layer, every similarity measure (tokens)")
    save(fig, dest, "similarity")


METHOD_COLOURS = ("#c44e52", "#8172b3", "#937860", "#da8bc3", "#64b5cd", "#8c613c")


def method_of(variant: str) -> str | None:
    """The fine-tuning method of a finished, unfrozen fine-tune (FULL for full fine-tuning); None for every other
    variant (the base, a frozen variant, a snapshot, a seed pair)."""
    parsed = tuned(variant)
    return parsed.how if parsed and parsed.freeze is None and parsed.fraction is None else None


def methods_figure(tables, comparisons, layerdrop, training, baselines, dev, dest, title):
    """Full fine-tuning beside every configured method (config methods): what each changes per layer (CKA and RSA to
    the pre-trained model, isotropy, a task probe), its layer drop, and its dev metric against the parameters it
    trains."""
    trained = training[training["variant"].map(method_of).notna()]
    order = [FULL] + sorted(set(trained["method"]) - {FULL})
    colours = dict(zip(order, [COLOURS["fine-tuned"], *METHOD_COLOURS]))
    counts = trained.groupby("method")["trainable_parameters"].first()
    labels = {m: f"{m} ({counts[m]:,.0f} parameters trained)" if np.isfinite(counts.get(m, np.nan)) else m
              for m in order}
    fig, axes = panel_grid(6, 3, 2.6)
    panels = [(comparisons, versus("linear_cka"), "token", get("linear_cka"), ", pre-trained vs fine-tuned"),
              (comparisons, versus(RSA), "token", get(RSA), ", pre-trained vs fine-tuned"),
              (tables, "isotropy_centred", "token", get("isotropy_centred"), ""),
              (tables, "task_probe_accuracy", "mean", get("task_probe_accuracy"), " (mean vectors)")]
    for ax, (frame, name, representation, measure, what) in zip(axes, panels):
        rows = select(frame, name, dev, representation)
        if (rows["variant"] == "base").any():
            band(ax, rows[rows["variant"] == "base"], "pre-trained", COLOURS["pre-trained"])
        for method in order:
            band(ax, rows[rows["variant"].map(method_of) == method], labels[method], colours[method])
        ax.set(title=measure.label + what, xlabel=LAYER + undefined_layers(rows), ylabel=measure.unit)
    baseline_lines(axes[3], baselines, frozen=False)
    dropped = layerdrop.rename(columns={"layers_dropped": "layer", "dev_metric": "value"})
    for method in order:
        band(axes[4], dropped[dropped["variant"].map(method_of) == method], labels[method], colours[method])
    baseline_lines(axes[4], baselines)
    axes[4].set(title="Top layers dropped, no re-tuning", xlabel="top layers dropped",
                ylabel=f"dev {dev_metric_name(layerdrop)}")
    for method in order:
        estimate = dev_estimate(trained[trained["method"] == method])
        axes[5].plot([counts.get(method, np.nan)], [estimate.value], color=colours[method], marker="o")
        axes[5].vlines([counts.get(method, np.nan)], *interval(estimate), color=colours[method], lw=1.5)
    baseline_lines(axes[5], baselines)
    axes[5].set(xscale="log", title="Dev metric against parameters trained", xlabel="parameters trained (log)",
                ylabel=f"dev {dev_metric_name(trained)} (whisker: 95% interval)")
    legend_below(fig, "fine-tuning method", seeds_note(tables))
    fig.suptitle(f"{title}: full fine-tuning and parameter-efficient methods, side by side on {dev}")
    save(fig, dest, "methods")


def fraction_of(variant: str) -> float:
    return parse_variant(variant).fraction


def snapshot_steps(training: pd.DataFrame) -> pd.Series:
    """The training step of each snapshot fraction (every followed seed plans the same steps)."""
    return training.groupby(training["variant"].map(fraction_of))["steps"].first()


def over_training(ax, part: pd.DataFrame, steps: pd.Series, start: float, base: pd.DataFrame | float) -> None:
    """One line per layer: the measure at each snapshot's step (mean over the followed seeds; band: its 95% interval),
    from step 0 drawn at x = `start` on the log axis: the pre-trained model's rows, or a pair measure's value for
    two identical models."""
    layers = sorted(part["layer"].unique())
    for layer, colour in zip(layers, plt.cm.viridis(np.linspace(0, 0.92, len(layers)))):
        rows = part[part["layer"] == layer]
        points = [(steps[f], rows_estimate(at)) for f, at in rows.groupby(rows["variant"].map(fraction_of))]
        if isinstance(base, pd.DataFrame):
            if (base["layer"] == layer).any():
                points.insert(0, (start, rows_estimate(base[base["layer"] == layer])))
        else:
            points.insert(0, (start, Estimate(base)))
        x = [step for step, _ in points]
        bounds = np.array([interval(estimate) for _, estimate in points])
        ax.plot(x, [estimate.value for _, estimate in points], color=colour, marker="o", ms=2.5, lw=1.2,
                label=f"layer {layer}")
        ax.fill_between(x, bounds[:, 0], bounds[:, 1], color=colour, alpha=0.12, lw=0)


def step_axis(ax, steps: pd.Series, start: float, training: pd.DataFrame) -> None:
    """A log step axis with step 0 (the pre-trained model) at `start`, and the dev metric of each snapshot on a second
    y axis."""
    ax.set_xscale("log")
    ticks = [start, *steps.to_numpy()]
    ax.set_xticks(ticks, ["0", *(f"{s:d}" for s in steps.to_numpy())], rotation=90)
    ax.minorticks_off()
    ax.set_xlabel("training step (log; 0 = pre-trained)")
    dev = [dev_estimate(rows).value for _, rows in training.groupby(training["variant"].map(fraction_of))]
    twin = ax.twinx()
    twin.plot(steps.to_numpy(), dev, color="black", ls="--", lw=1, marker="x", ms=3,
              label=f"dev {dev_metric_name(training)} (right axis)")
    twin.grid(False)
    twin.spines["right"].set_visible(True)


def floor_crossings(comparisons: pd.DataFrame, steps: pd.Series, probe: str) -> pd.DataFrame:
    """Per layer: the seed floor of linear CKA (two finished seeds, mean over pairs) and the first snapshot step whose
    pre-trained vs snapshot linear CKA (mean over the followed seeds) is below it; NaN where no step is."""
    floors = select(comparisons[comparisons["variant"].map(is_seed_pair)], seed_floor("linear_cka"), probe, "token")
    cka = select(comparisons[comparisons["variant"].map(is_snapshot)], versus("linear_cka"), probe, "token")
    by_step = cka.groupby(["layer", cka["variant"].map(lambda v: steps[fraction_of(v)])])["value"].mean().unstack()
    rows = []
    for layer, floor in floors.groupby("layer")["value"].mean().items():
        below = by_step.columns[by_step.loc[layer] < floor] if layer in by_step.index else []
        rows.append({"layer": layer, "seed_floor": floor, "step": min(below) if len(below) else np.nan})
    return pd.DataFrame(rows, columns=["layer", "seed_floor", "step"])


def dynamics_figure(tables, comparisons, training, dest, title):
    """Every measure per layer against the training step of each snapshot (config dynamics), the dev metric on a
    second axis, and the step at which each layer's pre-trained vs fine-tuned linear CKA falls below its seed floor."""
    print(f"{len(tables)} metric rows, {len(comparisons)} comparison rows, {len(training)} snapshots", flush=True)
    dev = sorted(tables.loc[tables["probe_role"] == DEV_ROLE, "probe"].unique())[0]
    steps = snapshot_steps(training)
    start = steps.min() / 2
    snapshots = comparisons[comparisons["variant"].map(is_snapshot)]
    pairs = [m for m in MEASURES if m.figure == "similarity" and (snapshots["measure"] == versus(m.name)).any()]
    singles = present(tables, [m for m in MEASURES if m.figure == "isotropy" and m.target != "label"])
    probe = get("task_probe_accuracy")
    fig, axes = panel_grid(1 + len(pairs) + len(singles) + 1, 3, 2.3)
    crossings = floor_crossings(comparisons, steps, dev)
    ax = axes[0]
    if crossings.empty:
        ax.text(0.5, 0.5, "no seed floor: it needs 2+ seeds", ha="center", va="center", transform=ax.transAxes)
    else:
        never = crossings["step"].isna()
        ax.bar(crossings["layer"], crossings["step"].fillna(steps.max()), color=np.where(never, "white",
               COLOURS["fine-tuned"]), edgecolor=COLOURS["fine-tuned"], hatch=None, width=0.6)
        for layer in crossings.loc[never, "layer"]:
            ax.text(layer, np.sqrt(steps.min() * steps.max()), "never", ha="center", va="center", rotation=90)
        ax.set_yscale("log")
        ax.set_yticks(steps.to_numpy(), [f"{s:d}" for s in steps.to_numpy()])
        ax.minorticks_off()
        ax.xaxis.get_major_locator().set_params(integer=True)
        for row in crossings.itertuples():
            when = "never" if np.isnan(row.step) else f"from step {row.step:.0f}"
            print(f"layer {row.layer}: pre-trained vs fine-tuned linear CKA below its seed floor "
                  f"({row.seed_floor:.4f}) {when}", flush=True)
    ax.set(title="Linear CKA below its seed floor from step", xlabel=LAYER, ylabel="training step (log)")
    panels = [(m, select(snapshots, versus(m.name), dev, "token"), 1.0 if m.kind == "similarity" else 0.0,
               f"{m.label}, pre-trained vs snapshot") for m in pairs]
    taken, base = (tables[chosen] for chosen in (tables["variant"].map(is_snapshot), tables["variant"] == "base"))
    panels += [(m, select(taken, m.name, dev, "token"), select(base, m.name, dev, "token"), m.label) for m in singles]
    panels.append((probe, select(taken, probe.name, dev, "mean"), select(base, probe.name, dev, "mean"),
                   "Task probe (mean vectors)"))
    for ax, (measure, part, before, panel_title) in zip(axes[1:], panels):
        over_training(ax, part, steps, start, before)
        step_axis(ax, steps, start, training)
        ax.set(title=panel_title, ylabel=measure.unit)
    seeds = training["seed"].nunique()
    legend_below(fig, f"lines: {'mean of ' + str(seeds) + ' followed seeds, ' if seeds > 1 else ''}band = 95% "
                 "interval over resampled sentences" + (" and seeds" if seeds > 1 else ""))
    fig.suptitle(f"{title}: training dynamics on {dev} (tokens), every measure at each saved step")
    save(fig, dest, "dynamics")


def comparisons_figure(comparisons, dest, title):
    """Every pair measure between the two variants of each configured comparison, per layer, one colour per
    comparison and one line style per probe set, beside the seed floor (grey) where the catalog computes one."""
    between = comparisons[comparisons["variant"].map(is_comparison)]
    print(f"{between['variant'].nunique()} comparisons, {len(between)} rows", flush=True)
    pairs = sorted(between["variant"].unique())
    colours = dict(zip(pairs, [COLOURS["fine-tuned"], *METHOD_COLOURS, COLOURS["frozen"], COLOURS["pre-trained"]]))
    measures = [m for m in MEASURES if m.base_vs_finetuned and (between["measure"] == between_name(m.name)).any()]
    fig, axes = panel_grid(len(measures), 3, 2.4)
    for ax, measure in zip(axes, measures):
        part = select(between, between_name(measure.name), None, "token")
        for pair in pairs:
            for probe, label, (style, marker, _) in probe_lines(part[part["variant"] == pair]):
                rows = part[(part["variant"] == pair) & (part["probe"] == probe)]
                band(ax, rows, f"{' vs '.join(comparison_variants(pair))}, {label}", colours[pair], style, marker)
        if measure.seed_floor:
            floor_lines(ax, comparisons, measure.name)
        reading = "1" if measure.kind == "similarity" else "0"
        ax.set(title=f"{measure.label} ({reading} = the same)", xlabel=LAYER + undefined_layers(part),
               ylabel=measure.unit)
    legend_below(fig, "comparison, probe set", "bars: 95% interval over resampled sentences")
    fig.suptitle(f"{title}: the configured comparisons, same layer, every pair measure (tokens)")
    save(fig, dest, COMPARED)


def study_figures(tables, comparisons, layerdrop, training, baselines, dest, title) -> None:
    """Render the study figures of one model and task into `dest` (PNG and PDF each)."""
    print(f"{len(tables)} metric rows, {len(comparisons)} comparison rows, {len(layerdrop)} layer-drop rows, "
          f"{len(training)} fine-tuned variants, {len(baselines)} baseline rows", flush=True)
    dev = sorted(tables.loc[tables["probe_role"] == DEV_ROLE, "probe"].unique())[0]
    isotropy_figure(tables, baselines, dev, dest, title)
    directprobe_figure(tables, baselines, dev, dest, title)
    probing_figure(tables, training, baselines, dest, title)
    rsa_figure(comparisons, dest, title)
    cka_figure(tables, layerdrop, baselines, dev, dest, title)
    similarity_figure(comparisons, dest, title)
    if (training["method"] != FULL).any():
        methods_figure(tables, comparisons, layerdrop, training, baselines, dev, dest, title)
