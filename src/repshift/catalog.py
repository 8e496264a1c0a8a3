"""The catalog: every measure repshift computes, its function, inputs, settings, label and invariances.

metrics.py computes by walking it, figures.py and claims.py name measures through `get`, and the config check
refuses a measure or a setting it does not list. A new measure is one function and one row here.

What a measure takes:
- "layer": f(X, **settings) -> float, one layer's matrix (rows = tokens, words or sentences);
- "labelled": f(X, y, groups, **settings) -> float (or a dict, one value per `outputs`), with per-row targets y
  ("frequency", "frequency_bin", "tag", "control_tag", "label") and groups (the sentence of each row);
- "pair": f(X, Y, **settings) -> float, two matrices with the same rows: layer x layer within a model
  (`layer_by_layer`) and the same layer of the pre-trained and the fine-tuned model (`base_vs_finetuned`); a
  measure that is not symmetric (PWCCA, CKNNA) takes the lower layer, or the pre-trained model, as X;
- "derived": f(values_a, values_b) per layer, from the measures named in `inputs`;
- "matrix": f(M) -> (score, layer) from the layer x layer matrix of the measure named in `inputs`.

A pair measure may also give `all_pairs(layers, **settings)`, the whole layer x layer matrix at once, and
`stream(**settings)`, an accumulator (add(layers) per chunk of rows, then matrix()) that the walker feeds with
every token of a probe set, chunk by chunk, when its setting all_tokens is true.
The walker settings (WALKER) are not passed on: max_rows gives the function a seeded sample of that many rows.
Settings named in SHARED come from the config's `metrics` section, the same for every measure, except `head`: the
fine-tuned model's task head (heads.py; None for the pre-trained model), which the metrics step reads from its weights.

A per-layer row with `bootstrap` (the probe-set roles whose claims read it) also gets a 95% interval from
metrics.n_boot resamples of its sentences (uncertainty.py): at the middle and top layer of the probe sets with those
roles, or at every layer of every probe set with metrics.interval_layers "all". A `per_row` measure returns one
score per row (NaN where it scores none, e.g. a probe's training rows): its value is their mean and its interval
resamples the sentences of the scored rows, at every layer, without recomputing. A `weighted` bootstrap measure's
function takes weights= (row multiplicities) and gives its value on the rows repeated that many times, so a
replicate passes each drawn row once with its count instead of a copy (cheaper, the same value). A `top_layer`
measure is computed at the top layer only. A pair row with `seed_floor` is also computed between two fine-tuning
seeds (the noise floor of a pre-trained vs fine-tuned change).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from .lazy import Deferred

if TYPE_CHECKING:  # read by provenance.code_version: a rule that walks the catalog reruns when these change
    from . import cca, directprobe, isotropy, kernels, neighbours, probing, shape, similarity


cca, directprobe, isotropy, kernels, neighbours, probing, shape, similarity = map(
    Deferred, ("cca", "directprobe", "isotropy", "kernels", "neighbours", "probing", "shape", "similarity"))

KINDS = ("score", "similarity", "distance")
TAKES = ("layer", "labelled", "pair", "derived", "matrix")
INVARIANCES = ("orthogonal", "isotropic_scaling", "translation", "permutation", "invertible_linear")
WALKER = ("max_rows", "all_tokens")
SHARED = ("seed", "probe_test_fraction", "probe_l2", "probe_iterations", "head")
HELD_OUT = ("seed", "probe_test_fraction", "probe_l2", "probe_iterations")
CROSS_VALIDATED = ("seed", "probe_iterations")
VERSUS = "_base_vs_finetuned"
SEED_FLOOR = "_seed_vs_seed"
BETWEEN = "_between_variants"
DEV_ROLE, TAGGED, OUT_OF_DOMAIN = "dev", "tagged", "out_of_domain"
ON_DEV, ON_DEV_AND_OUT_OF_DOMAIN = (DEV_ROLE,), (DEV_ROLE, OUT_OF_DOMAIN)
CENTRED = frozenset({"orthogonal", "isotropic_scaling", "translation", "permutation"})
ABOUT_ORIGIN = frozenset({"orthogonal", "isotropic_scaling", "permutation"})


@dataclass(frozen=True)
class Measure:
    """One row of the catalog: a measure's function and everything the walker, the figures and the config check
    need to know about it (see the module docstring for `takes`)."""

    name: str
    family: str
    takes: str
    function: Callable
    label: str
    unit: str = ""
    kind: str = "score"
    representations: tuple[str, ...] = ("token",)
    settings: Mapping = field(default_factory=dict)
    shared: tuple[str, ...] = ()
    target: str | None = None
    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    invariances: frozenset = frozenset()
    layer_by_layer: bool = False
    base_vs_finetuned: bool = False
    figure: str | None = None
    all_pairs: Callable | None = None
    stream: Callable | None = None
    bootstrap: tuple[str, ...] = ()
    per_row: bool = False
    top_layer: bool = False
    seed_floor: bool = False
    weighted: bool = False

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        assert self.kind in KINDS and self.takes in TAKES and set(self.invariances) <= set(INVARIANCES), self.name
        assert set(self.shared) <= set(SHARED), self.name
        assert not (self.bootstrap and (self.outputs or self.takes not in ("layer", "labelled", "pair"))), self.name
        assert not (self.per_row and (self.bootstrap or self.takes != "labelled")), self.name
        assert not (self.weighted and not self.bootstrap), self.name

    @property
    def names(self) -> tuple[str, ...]:
        """The measure names this row writes to the tables: its own, or one per output."""
        return tuple(f"{self.name}_{o}" for o in self.outputs) if self.outputs else (self.name,)

    def bind(self, settings: Mapping, shared: Mapping) -> Callable:
        """The function with its settings (WALKER settings left to the walker) and the shared settings it reads."""
        return self._bound(self.function, settings, shared)

    def bind_all_pairs(self, settings: Mapping, shared: Mapping) -> Callable:
        return self._bound(self.all_pairs, settings, shared)

    def bind_stream(self, settings: Mapping, shared: Mapping) -> Callable:
        return self._bound(self.stream, settings, shared)

    def _bound(self, function: Callable, settings: Mapping, shared: Mapping) -> Callable:
        fixed = {**{k: v for k, v in settings.items() if k not in WALKER}, **{k: shared[k] for k in self.shared}}
        return lambda *arrays, **weights: function(*arrays, **fixed, **weights)


def _probe_without_top(X, y, groups, remove, folds, seed, probe_iterations):
    """The cross-validated probe after all-but-the-top, fit on each fold's training rows."""
    def features(train, test):
        removal = isotropy.fit_remove_top(X[train], remove)
        return removal(X[train]), removal(X[test])

    return probing.cross_validated_correct(X, y, groups, folds, seed=seed, probe_iterations=probe_iterations,
                                           features=features)


def _probe_enhanced_tokens(X, y, groups, clusters, remove, n_init, folds, seed, probe_iterations):
    """Cluster-based removal (Rajaee & Pilehvar's notebook) on tokens, then the cross-validated probe on each
    sentence's mean token: the clusters and their directions are fit on the tokens of each fold's training
    sentences. A sentence's score sits on its first row, NaN on its others. n_init 1 is scikit-learn's default for
    k-means++ initialisation."""
    _, first, sentence = np.unique(groups, return_index=True, return_inverse=True)
    sizes = np.bincount(sentence)

    def means(rows_of, chosen):
        tokens = np.isin(sentence, chosen)
        total = np.zeros((len(first), X.shape[1]))
        np.add.at(total, sentence[tokens], rows_of(tokens))
        return total[chosen] / sizes[chosen, None]

    def features(train, test):
        apply, labels = isotropy.fit_cluster_remove(X[np.isin(sentence, train)], clusters, remove, seed, n_init)
        return means(lambda tokens: apply(X[tokens], labels), train), means(lambda tokens: apply(X[tokens]), test)

    scores = np.full(len(y), np.nan)
    scores[first] = probing.cross_validated_correct(None, y[first], folds=folds, seed=seed,
                                                    probe_iterations=probe_iterations, features=features)
    return scores


def _head_correct(X, y, groups, remove, head):
    """1 where the fine-tuned model's own head, reading X with its top `remove` principal directions projected out
    (the mean kept), predicts the row's label; ValueError for a model without a task head."""
    if head is None:
        raise ValueError("the pre-trained model has no task head")
    kept = X if remove == 0 else isotropy.remove_top_directions(X, remove) + X.mean(axis=0)
    return (head(kept).argmax(axis=1) == y).astype(np.float64)


ROWS = {"max_rows": 2000}
QUADRATIC_ROWS = {"max_rows": 1000}

MEASURES: tuple[Measure, ...] = (
    # Isotropy (Rajaee & Pilehvar 2021) on sampled content tokens.
    Measure("isotropy_raw", "isotropy", "layer",
            lambda X, weights=None: isotropy.partition_isotropy(X, centre=False, weights=weights),
            "Partition isotropy I(W), raw", "I(W)", figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("isotropy_centred", "isotropy", "layer",
            lambda X, weights=None: isotropy.partition_isotropy(X, centre=True, weights=weights),
            "I(W), centred", "I(W)", figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("isoscore", "isotropy", "layer", isotropy.isoscore, "IsoScore", "IsoScore", figure="isotropy",
            bootstrap=ON_DEV, weighted=True),
    Measure("average_cosine", "isotropy", "layer", isotropy.average_cosine, "Average cosine", "cosine",
            figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("average_cosine_standardized", "isotropy", "layer",
            lambda X, weights=None: isotropy.average_cosine(isotropy.standardize(X, weights), weights),
            "Average cosine, standardized", "cosine", bootstrap=ON_DEV, weighted=True),
    Measure("top_pc_variance_ratio", "isotropy", "layer", isotropy.top_pc_ratio, "Variance share of the top PC",
            "share", figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("dominant_directions", "isotropy", "layer", isotropy.dominant_directions,
            "Dominant directions (PCs above the mean variance)", "PCs", figure="isotropy", bootstrap=ON_DEV,
            weighted=True),
    Measure("pcs_for_90pct_variance", "isotropy", "layer",
            lambda X, weights=None: isotropy.pcs_for_variance(X, 0.9, weights), "PCs for 90% of variance", "PCs",
            figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("rogue_top1_share", "isotropy", "layer",
            lambda X, weights=None: isotropy.rogue_dimensions(X, 1, weights)[1][0],
            "Share of cosine from the top rogue dim.", "share", figure="isotropy", bootstrap=ON_DEV, weighted=True),
    Measure("frequency_pc1_abs_spearman", "isotropy", "labelled",
            lambda X, y, groups, weights=None: abs(isotropy.frequency_pc_correlation(X, y, 1, weights)[0]),
            "|Spearman(frequency, PC1)|", "|rho|", target="frequency", figure="isotropy", bootstrap=ON_DEV,
            weighted=True),
    Measure("frequency_top5pc_max_abs_spearman", "isotropy", "labelled",
            lambda X, y, groups, weights=None: np.abs(isotropy.frequency_pc_correlation(X, y, 5, weights)).max(),
            "max |Spearman(frequency, PC1..5)|", "|rho|", target="frequency", bootstrap=ON_DEV, weighted=True),
    Measure("cluster_purity_frequency", "isotropy", "labelled",
            lambda X, y, groups, seed: isotropy.cluster_purity(X, y, int(y.max()) + 1, seed=seed),
            "k-means purity by frequency bin", "purity", settings=ROWS, shared=("seed",), target="frequency_bin",
            figure="isotropy"),
    Measure("cluster_purity_pos", "isotropy", "labelled",
            lambda X, y, groups, clusters, seed: isotropy.cluster_purity(X, y, clusters, seed=seed),
            "k-means purity by POS tag", "purity", settings={**ROWS, "clusters": 10}, shared=("seed",),
            target="tag"),
    # Probing (Merchant et al. 2020; Hewitt & Liang 2019) and isotropy enhancement (Rajaee & Pilehvar 2021).
    Measure("pos_probe_accuracy", "probing", "labelled", probing.held_out_correct, "POS probe", "held-out accuracy",
            representations=("word",), shared=HELD_OUT, target="tag", figure="probing", per_row=True),
    Measure("pos_control_accuracy", "probing", "labelled", probing.held_out_correct, "POS control task",
            "held-out accuracy", representations=("word",), shared=HELD_OUT, target="control_tag", figure="probing",
            per_row=True),
    Measure("pos_selectivity", "probing", "derived", probing.selectivity, "POS selectivity (task - control)",
            "accuracy difference", representations=("word",), inputs=("pos_probe_accuracy", "pos_control_accuracy"),
            figure="probing"),
    Measure("task_probe_accuracy", "probing", "labelled",
            lambda X, y, groups, folds, seed, probe_iterations: probing.cross_validated_correct(
                X, y, groups, folds, seed=seed, probe_iterations=probe_iterations),
            "Task probe (cross-validated L2)", "held-out accuracy", representations=("cls", "mean"),
            settings={"folds": 5}, shared=CROSS_VALIDATED, target="label", figure="probing", per_row=True),
    Measure("task_probe_accuracy_top_pcs_removed", "isotropy", "labelled", _probe_without_top,
            "Task probe, top PCs removed", "held-out accuracy", representations=("mean",),
            settings={"remove": 5, "folds": 5}, shared=CROSS_VALIDATED, target="label", figure="isotropy",
            per_row=True),
    Measure("task_probe_accuracy_cluster_pcs_removed", "isotropy", "labelled", _probe_enhanced_tokens,
            "Task probe, cluster PCs removed (tokens)", "held-out accuracy", representations=("sentence_tokens",),
            settings={"clusters": 27, "remove": 12, "n_init": 1, "folds": 5}, shared=CROSS_VALIDATED, target="label",
            figure="isotropy", per_row=True, top_layer=True),
    Measure("head_accuracy", "isotropy", "labelled", lambda X, y, groups, head: _head_correct(X, y, groups, 0, head),
            "Fine-tuned model's own head", "dev accuracy", representations=("cls",), shared=("head",),
            target="label", figure="isotropy", per_row=True, top_layer=True),
    Measure("head_accuracy_top_pcs_removed", "isotropy", "labelled", _head_correct,
            "Own head, top PCs removed", "dev accuracy", representations=("cls",), settings={"remove": 5},
            shared=("head",), target="label", figure="isotropy", per_row=True, top_layer=True),
    # DirectProbe (Zhou & Srikumar 2022) on [CLS].
    Measure("directprobe", "directprobe", "labelled",
            lambda X, y, groups, max_points, seed: directprobe.directprobe(X, y, max_points=max_points, seed=seed),
            "DirectProbe", "", representations=("cls",), settings={"max_points": 300}, shared=("seed",),
            target="label", outputs=("n_clusters", "n_labels", "n_points", "dimensions", "min_distance_all",
                                                           "mean_distance_all", "label_spread"),
            figure="directprobe"),
    # Similarity of representations (Phang et al. 2021; Merchant et al. 2020; peers' measures).
    Measure("linear_cka", "similarity", "pair", similarity.linear_cka, "Linear CKA", "CKA", "similarity",
            ("token", "cls"), {"all_tokens": True, **ROWS}, invariances=CENTRED, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity", all_pairs=similarity.cka_matrix, stream=similarity.CKAStream,
            bootstrap=ON_DEV, seed_floor=True, weighted=True),
    Measure("debiased_cka", "similarity", "pair", similarity.debiased_cka, "Debiased CKA", "CKA", "similarity",
            ("token", "cls"), {"all_tokens": True}, invariances=CENTRED, layer_by_layer=True, base_vs_finetuned=True,
            figure="similarity", all_pairs=lambda layers: similarity.cka_matrix(layers, debiased=True),
            stream=lambda: similarity.CKAStream(debiased=True)),
    Measure("minibatch_cka", "similarity", "pair", similarity.minibatch_cka, "Minibatch CKA (Nguyen et al.)",
            "CKA", "similarity", ("token",), {"all_tokens": True, "batch_size": 1000}, invariances=CENTRED,
            layer_by_layer=True, base_vs_finetuned=True, stream=similarity.MinibatchCKA),
    Measure("linear_cka_permuted", "similarity", "pair",
            similarity.permuted_linear_cka, "Linear CKA, rows permuted (expected baseline)", "CKA", "similarity",
            ("token", "cls"), invariances=CENTRED, base_vs_finetuned=True),
    Measure("rbf_cka", "similarity", "pair", kernels.rbf_cka, "RBF CKA", "CKA", "similarity", ("token", "cls"),
            {**QUADRATIC_ROWS, "threshold": 0.5}, invariances=CENTRED, layer_by_layer=True, base_vs_finetuned=True,
            figure="similarity"),
    Measure("rsa_pearson", "similarity", "pair", lambda X, Y, weights=None: similarity.rsa(X, Y, "pearson", weights),
            "RSA (Pearson)", "Pearson r", "similarity", ("token",), ROWS, invariances=ABOUT_ORIGIN,
            base_vs_finetuned=True, bootstrap=ON_DEV_AND_OUT_OF_DOMAIN, seed_floor=True, weighted=True),
    Measure("rsa_spearman", "similarity", "pair", lambda X, Y: similarity.rsa(X, Y, "spearman"), "RSA (Spearman)",
            "Spearman rho", "similarity", ("token",), ROWS, invariances=ABOUT_ORIGIN, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity", seed_floor=True),
    Measure("svcca", "similarity", "pair", cca.svcca, "SVCCA", "mean canonical correlation", "similarity",
            ("token", "cls"), {**ROWS, "keep": 0.99}, invariances=CENTRED, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity"),
    Measure("pwcca", "similarity", "pair", cca.pwcca, "PWCCA",
            "weighted canonical correlation", "similarity", ("token", "cls"), ROWS,
            invariances=frozenset({"isotropic_scaling", "translation", "permutation"}), base_vs_finetuned=True, figure="similarity"),
    Measure("procrustes", "similarity", "pair", shape.procrustes_distance, "Orthogonal Procrustes distance",
            "distance", "distance", ("token", "cls"), ROWS, invariances=CENTRED, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity"),
    Measure("angular_shape", "similarity", "pair", shape.angular_shape_distance, "Angular shape metric",
            "radians", "distance", ("token", "cls"), ROWS, invariances=CENTRED, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity"),
    Measure("mutual_knn", "similarity", "pair", neighbours.mutual_knn, "Mutual kNN alignment", "shared share",
            "similarity", ("token", "cls"), {**QUADRATIC_ROWS, "k": 10}, invariances=ABOUT_ORIGIN, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity"),
    Measure("cknna", "similarity", "pair", neighbours.cknna, "CKNNA", "alignment", "similarity", ("token", "cls"),
            {**QUADRATIC_ROWS, "k": 10}, invariances=ABOUT_ORIGIN, layer_by_layer=True, base_vs_finetuned=True,
            figure="similarity"),
    Measure("jaccard_knn", "similarity", "pair", neighbours.jaccard_knn, "Jaccard kNN similarity", "Jaccard",
            "similarity", ("token", "cls"), {**QUADRATIC_ROWS, "k": 10}, invariances=ABOUT_ORIGIN, layer_by_layer=True,
            base_vs_finetuned=True, figure="similarity"),
    # Block structure of a layer x layer matrix (Phang et al. 2021).
    Measure("block_diagonality_linear_cka", "similarity", "matrix", similarity.block_diagonality,
            "Block-diagonality of linear CKA", "within - between blocks", representations=("token", "cls"),
            inputs=("linear_cka",), figure="cka"),
    Measure("block_diagonality_debiased_cka", "similarity", "matrix", similarity.block_diagonality,
            "Block-diagonality of debiased CKA", "within - between blocks", representations=("token", "cls"),
            inputs=("debiased_cka",), figure="cka"),
)

CATALOG: Mapping[str, Measure] = MappingProxyType({m.name: m for m in MEASURES})
OUTPUTS: Mapping[str, Measure] = MappingProxyType({name: m for m in MEASURES for name in m.names})
assert len(CATALOG) == len(MEASURES), "a measure is listed twice"


def get(name: str) -> Measure:
    """The catalog row that writes measure `name` (a row's name, or one of its outputs)."""
    try:
        return OUTPUTS.get(name) or CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown measure {name!r}; the catalog lists: {', '.join(CATALOG)}") from None


def table_names() -> set[str]:
    """Every measure name the metrics, compare and seed-floor tables can hold."""
    return (set(OUTPUTS) | {m.name + suffix for m in MEASURES if m.base_vs_finetuned for suffix in (VERSUS, BETWEEN)}
            | {m.name + SEED_FLOOR for m in MEASURES if m.seed_floor})


def named(name: str) -> str:
    """`name` once checked to be a measure name of the tables (KeyError otherwise): how other modules name one."""
    if name not in table_names():
        raise KeyError(f"unknown measure {name!r}; the tables hold: {', '.join(sorted(table_names()))}")
    return name


def versus(name: str) -> str:
    """The table name of a pair measure computed between the pre-trained and the fine-tuned model."""
    return named(get(name).name + VERSUS)


def seed_floor(name: str) -> str:
    """The table name of a pair measure computed between two fine-tuning seeds of one variant."""
    return named(get(name).name + SEED_FLOOR)


def between(name: str) -> str:
    """The table name of a pair measure computed between two fine-tuned variants of a configured comparison."""
    return named(get(name).name + BETWEEN)


def _type_name(value) -> str:
    return "true/false" if isinstance(value, bool) else "an integer" if isinstance(value, int) else "a number"


def _accepts(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and value >= 1
    return isinstance(value, (int, float)) and value > 0


def resolve(chosen: Mapping | None, layer_by_layer=()) -> dict[str, dict]:
    """The measures a config runs, each with its settings: every catalog row with its defaults, overridden by
    `measures.<name>: {setting: value}`, or left out by `measures.<name>: false`.

    Raises ValueError (naming the config key and what is known) for an unknown measure or setting or a bad value,
    or a name in `layer_by_layer` (the pair measures computed layer x layer) that has no such form or is off.
    """
    chosen = dict(chosen or {})
    resolved = {}
    for name, override in chosen.items():
        if name not in CATALOG:
            raise ValueError(f"config key measures.{name}: unknown measure; known: {', '.join(CATALOG)}")
        if override in (True, False, None):
            continue
        if not isinstance(override, Mapping):
            raise ValueError(f"config key measures.{name}: give a mapping of settings, true or false")
        defaults = CATALOG[name].settings
        for key, value in override.items():
            if key not in defaults:
                takes = ", ".join(defaults) if defaults else "none"
                raise ValueError(f"config key measures.{name}.{key}: {name} takes no setting {key!r}; "
                                 f"its settings: {takes}")
            if not _accepts(defaults[key], value):
                raise ValueError(f"config key measures.{name}.{key}: {value!r} is not valid; "
                                 f"give {_type_name(defaults[key])} like the default {defaults[key]!r}")
    for measure in MEASURES:
        override = chosen.get(measure.name)
        if override is False:
            continue
        resolved[measure.name] = {**measure.settings, **(override if isinstance(override, Mapping) else {})}
    for name in layer_by_layer or ():
        if name not in CATALOG or not CATALOG[name].layer_by_layer:
            known = ", ".join(m.name for m in MEASURES if m.layer_by_layer)
            raise ValueError(f"config key metrics.layer_by_layer: {name} has no layer x layer form; known: {known}")
        if name not in resolved:
            raise ValueError(f"config key metrics.layer_by_layer: {name} is turned off in measures")
    for name in resolved:
        missing = [i for i in CATALOG[name].inputs if i not in resolved]
        if missing:
            raise ValueError(f"config key measures.{missing[0]}: {name} needs it; turn both off or neither")
    return resolved


def compare(X, Y, method: str, **settings) -> float:
    """The pair measure `method` of X and Y on all their rows (rsatoolbox's compare(method=) dispatcher), with the
    catalog's defaults overridden by `settings`; e.g. compare(X, Y, "cknna", k=20). Shared settings: `seed` only."""
    measure = get(method)
    if measure.takes != "pair":
        raise ValueError(f"{method} is not a pair measure; pair measures: "
                         f"{', '.join(m.name for m in MEASURES if m.takes == 'pair')}")
    chosen = resolve({method: {k: v for k, v in settings.items() if k != "seed"}})[method]
    return float(measure.bind(chosen, {"seed": settings.get("seed", 0)})(X, Y))
