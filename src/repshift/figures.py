"""Figures: isotropy per layer and CKA heatmaps, pre-trained vs fine-tuned, in one shared style."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .provenance import atomic_path

COLOURS = {"pre-trained": "#4c72b0", "fine-tuned": "#dd8452"}
TITLES = {
    "isotropy_raw": "Partition isotropy I(W), raw",
    "isotropy_centred": "Partition isotropy I(W), centred",
    "average_cosine": "Average cosine similarity",
    "pcs_for_90pct_variance": "PCs for 90% of variance",
    "top_pc_variance_ratio": "Variance share of the top PC",
}
plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "font.size": 9})


def read_tables(paths) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def save(fig, png, pdf) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight")
    plt.close(fig)


def _band(ax, frame: pd.DataFrame, label: str) -> None:
    """Mean over seeds as a line; the across-seed range as a band when there is more than one seed."""
    stats = frame.groupby("layer")["value"].agg(["mean", "min", "max"]).reset_index()
    n_seeds = frame["seed"].nunique()
    colour = COLOURS[label]
    ax.plot(stats["layer"], stats["mean"], marker="o", ms=3, color=colour,
            label=label if n_seeds < 2 else f"{label} (mean, range over {n_seeds} seeds)")
    if n_seeds > 1:
        ax.fill_between(stats["layer"], stats["min"], stats["max"], color=colour, alpha=0.25, lw=0)


def _split(frame: pd.DataFrame):
    return frame[frame["variant"] == "base"], frame[frame["variant"] != "base"]


def isotropy_figure(tables, png, pdf, title: str) -> None:
    frame = read_tables(tables)
    frame = frame[frame["measure"].isin(TITLES)]
    base, tuned = _split(frame)
    fig, axes = plt.subplots(1, len(TITLES), figsize=(3.0 * len(TITLES), 2.8), constrained_layout=True)
    for ax, (measure, measure_title) in zip(axes, TITLES.items()):
        _band(ax, base[base["measure"] == measure], "pre-trained")
        _band(ax, tuned[tuned["measure"] == measure], "fine-tuned")
        ax.set(title=measure_title, xlabel="layer (0 = embeddings)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(loc="best", fontsize=7)
    fig.suptitle(title)
    save(fig, png, pdf)


def _matrix(frame: pd.DataFrame) -> np.ndarray:
    mean = frame.groupby(["layer", "layer_b"])["value"].mean().unstack()
    return mean.to_numpy()


def heatmap(ax, matrix: np.ndarray):
    """A layer-by-layer similarity matrix with integer layer ticks, annotated when small enough to read."""
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    ticks = np.arange(len(matrix))
    ax.set(xticks=ticks, yticks=ticks, xlabel="layer", ylabel="layer")
    ax.grid(False)
    if len(matrix) <= 13:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.6 else "white")
    return image


def cka_figure(tables, comparisons, png, pdf, title: str) -> None:
    frame = read_tables(tables)
    frame = frame[(frame["measure"] == "linear_cka") & (frame["representation"] == "token")]
    base, tuned = _split(frame)
    versus = read_tables(comparisons)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    for ax, part, label in ((axes[0], base, "pre-trained"), (axes[1], tuned, "fine-tuned")):
        image = heatmap(ax, _matrix(part))
        ax.set_title(f"{label}: linear CKA, tokens")
    fig.colorbar(image, ax=axes[:2], shrink=0.85, label="linear CKA")
    for representation, style, marker in (("token", "-", "o"), ("cls", "--", "s")):
        part = versus[versus["representation"] == representation]
        stats = part.groupby("layer")["value"].agg(["mean", "min", "max"]).reset_index()
        axes[2].plot(stats["layer"], stats["mean"], style, marker=marker, ms=3, color=COLOURS["fine-tuned"],
                     label=f"{representation} vectors")
        axes[2].fill_between(stats["layer"], stats["min"], stats["max"], color=COLOURS["fine-tuned"], alpha=0.2, lw=0)
    axes[2].set(title="CKA(pre-trained, fine-tuned) per layer", xlabel="layer (0 = embeddings)", ylabel="CKA",
                ylim=(0, 1.02))
    axes[2].xaxis.get_major_locator().set_params(integer=True)
    axes[2].legend(fontsize=7)
    fig.suptitle(title)
    save(fig, png, pdf)
