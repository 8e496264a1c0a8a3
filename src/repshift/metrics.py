"""The metrics step: every per-layer measure of one activation file, and base-vs-fine-tuned comparisons, as tidy CSV."""

import numpy as np
import pandas as pd

from . import directprobe, isotropy, probing, similarity
from .activations import Activations
from .errors import UserError
from .provenance import file_sha256
from .tables import write_csv

COLUMNS = ["model", "variant", "task", "seed", "probe", "representation", "layer", "layer_b", "measure", "value",
           "model_id", "weights_sha256", "code_version"]

ISOTROPY = {
    "isotropy_raw": lambda x, s: isotropy.partition_isotropy(x, centre=False),
    "isotropy_centred": lambda x, s: isotropy.partition_isotropy(x, centre=True),
    "isoscore": lambda x, s: isotropy.isoscore(x),
    "average_cosine": lambda x, s: isotropy.average_cosine(x, n_pairs=s["cosine_pairs"], seed=s["seed"]),
    "average_cosine_standardized": lambda x, s: isotropy.average_cosine(
        isotropy.standardize(x), n_pairs=s["cosine_pairs"], seed=s["seed"]),
    "rogue_top1_share": lambda x, s: isotropy.rogue_dimensions(x, 1, n_pairs=s["cosine_pairs"], seed=s["seed"])[1][0],
    "pcs_for_90pct_variance": lambda x, s: isotropy.pcs_for_variance(x, 0.9),
    "top_pc_variance_ratio": lambda x, s: isotropy.top_pc_ratio(x),
}
FREQUENCY_BINS = 5


def sample_rows(rows: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of at most max_rows of `rows` (all of them when there are no more)."""
    if len(rows) <= max_rows:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))


def token_sample(act: Activations, max_tokens: int, seed: int) -> np.ndarray:
    """A seeded sample of non-special token rows; identical for every model on the same probe set."""
    content = np.flatnonzero(~act.token_meta("special"))
    if len(content) < 2:
        raise UserError(f"{act.path}: fewer than 2 content tokens")
    return sample_rows(content, max_tokens, seed)


def sentence_sample(act: Activations, settings: dict) -> np.ndarray:
    """The seeded sample of sentence rows that sentence-level CKA uses (metrics.max_sentences)."""
    return sample_rows(np.arange(len(act.sentence_meta("sentence_id"))), settings["max_sentences"], settings["seed"])


def _layers(act: Activations, representation: str, index: np.ndarray | None = None) -> list[np.ndarray]:
    """Every layer's matrix of one representation (token, word, cls, mean) as float64, rows limited to `index`
    for tokens and sentences."""
    if representation == "token":
        return [act.tokens(layer, index).astype(np.float64) for layer in range(act.n_layers)]
    if representation == "word":
        return [act.word_vectors(layer) for layer in range(act.n_layers)]
    rows = slice(None) if index is None else index
    return [act.sentences(layer, representation)[rows].astype(np.float64) for layer in range(act.n_layers)]


def undefined_as_nan(measure: str, compute, n_layers: int):
    """Per-layer values of a measure, or NaN for every layer (with the reason logged) where it is undefined."""
    try:
        return compute()
    except ValueError as reason:
        print(f"{measure}: undefined here, recorded as NaN ({reason})", flush=True)
        return [np.nan] * n_layers


def _rows(representation: str, measure: str, values, **extra) -> list[dict]:
    return [{"representation": representation, "layer": layer, "measure": measure, "value": float(v), **extra}
            for layer, v in enumerate(values)]


def _frame(rows: list[dict], act: Activations, identity: dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for key, value in identity.items():
        frame[key] = value
    frame["model_id"] = act.provenance["model_id"]
    frame["weights_sha256"] = act.provenance["weights_sha256"][:16]
    return frame.reindex(columns=COLUMNS)


def frequency_bins(pieces: np.ndarray, bins: int = FREQUENCY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Each token's word-piece frequency in the probe set, and its frequency quantile bin (0 = rarest)."""
    _, inverse, counts = np.unique(pieces, return_inverse=True, return_counts=True)
    frequency = counts[inverse]
    edges = np.quantile(frequency, np.linspace(0, 1, bins + 1)[1:-1])
    return frequency, np.searchsorted(edges, frequency, side="right")


def isotropy_rows(act: Activations, tokens: list[np.ndarray], index: np.ndarray, settings: dict) -> list[dict]:
    """Rajaee & Pilehvar's suite on sampled content tokens, with frequency and token-type structure."""
    frequency, frequency_bin = frequency_bins(act.token_meta("piece_id")[index])
    tags = act.token_meta("pos_tag")[index]
    rows = []
    for name, measure in ISOTROPY.items():
        rows += _rows("token", name, [measure(x, settings) for x in tokens])
    correlations = [np.abs(isotropy.frequency_pc_correlation(x, frequency, n_pcs=5)) for x in tokens]
    rows += _rows("token", "frequency_pc1_abs_spearman", [c[0] for c in correlations])
    rows += _rows("token", "frequency_top5pc_max_abs_spearman", [c.max() for c in correlations])
    groupings = {"cluster_purity_frequency": (frequency_bin, FREQUENCY_BINS)}
    if (tags >= 0).all() and len(act.tag_names) > 1:
        groupings["cluster_purity_pos"] = (tags, settings["clusters"])
    sample = np.random.default_rng(settings["seed"]).permutation(len(index))[: settings["cluster_tokens"]]
    for name, (groups, k) in groupings.items():
        rows += _rows("token", name, [isotropy.cluster_purity(x[sample], groups[sample], k, seed=settings["seed"])
                                      for x in tokens])
    return rows


def similarity_rows(act: Activations, tokens: list[np.ndarray], settings: dict) -> list[dict]:
    """Layer-by-layer linear and debiased CKA on tokens and [CLS], and each matrix's block-diagonality."""
    rows = []
    for representation, layers in (("token", tokens), ("cls", _layers(act, "cls", sentence_sample(act, settings)))):
        for kind in ("linear", "debiased"):
            matrix = similarity.cka_matrix(layers, debiased=kind == "debiased")
            size = len(layers)
            rows += [{"representation": representation, "layer": a, "layer_b": b, "measure": f"{kind}_cka",
                      "value": matrix[a, b]} for a in range(size) for b in range(size)]
            finite = np.isfinite(matrix).all(axis=0)
            if finite.sum() >= 3:
                score, split = similarity.block_diagonality(matrix[np.ix_(finite, finite)])
                first = int(np.flatnonzero(finite)[0])
                rows.append({"representation": representation, "layer": first + split, "measure":
                             f"block_diagonality_{kind}", "value": score})
    return rows


def probe_options(settings: dict) -> dict:
    return {"seed": settings["seed"], "l2": settings["probe_l2"], "max_iter": settings["probe_iterations"]}


def pos_probe_rows(act: Activations, settings: dict) -> list[dict]:
    """POS probe per layer on words (mean of pieces), its Hewitt & Liang control task, and selectivity."""
    rows_, starts = act.words()
    tags = act.token_meta("pos_tag")[rows_][starts]
    pieces = act.token_meta("piece_id")[rows_]
    types = np.array([pieces[a:b].tobytes() for a, b in zip(starts, np.r_[starts[1:], len(rows_)])])
    sentence = act.token_meta("sentence_id")[rows_][starts]
    train, test = probing.split_indices(len(tags), settings["probe_test_fraction"], settings["seed"], groups=sentence)
    words = _layers(act, "word")
    control_tags = probing.control_labels(types, tags, seed=settings["seed"])
    task, control = (undefined_as_nan(name, lambda y=y: probing.probe_layers(words, y, train, test,
                                                                               **probe_options(settings)), len(words))
                     for name, y in (("pos_probe_accuracy", tags), ("pos_control_accuracy", control_tags)))
    return (_rows("word", "pos_probe_accuracy", task) + _rows("word", "pos_control_accuracy", control)
            + _rows("word", "pos_selectivity", probing.selectivity(task, control)))


def sentence_rows(act: Activations, settings: dict) -> list[dict]:
    """Task-label probes on [CLS] and mean vectors, DirectProbe on [CLS], and isotropy enhancement vs probe accuracy."""
    labels = act.sentence_meta("label")
    train, test = probing.split_indices(len(labels), settings["probe_test_fraction"], settings["seed"])
    rows = []
    for representation in ("cls", "mean"):
        layers = _layers(act, representation)
        rows += _rows(representation, "task_probe_accuracy",
                      probing.probe_layers(layers, labels, train, test, **probe_options(settings)))
        if representation == "mean":
            enhanced = {
                "task_probe_accuracy_top_pcs_removed": [
                    isotropy.remove_top_directions(x, settings["remove_top_pcs"]) for x in layers],
                "task_probe_accuracy_cluster_pcs_removed": [
                    isotropy.cluster_remove(x, settings["clusters"], settings["cluster_pcs"], seed=settings["seed"])
                    for x in layers],
            }
            for name, spaces in enhanced.items():
                rows += _rows(representation, name, probing.probe_layers(spaces, labels, train, test,
                                                                         **probe_options(settings)))
    for layer, x in enumerate(_layers(act, "cls")):
        if np.ptp(x, axis=0).max() == 0:
            continue
        found = directprobe.directprobe(x, labels, max_points=settings["directprobe_points"], seed=settings["seed"])
        rows += [{"representation": "cls", "layer": layer, "measure": f"directprobe_{key}", "value": found[key]}
                 for key in ("n_clusters", "n_labels", "min_distance_all", "mean_distance_all")]
    return rows


def expected_provenance(identity: dict, weights=None) -> dict:
    """What an activation file must have been made from: the step's model, variant and probe set, and for a
    fine-tuned variant the sha256 of `weights`, the model.safetensors that the finetune rule wrote."""
    expect = {key: identity[key] for key in ("model", "variant", "probe")}
    return expect if weights is None else {**expect, "weights_sha256": file_sha256(weights)}


def layer_metrics(activation_file, out, settings: dict, identity: dict, weights=None) -> None:
    """Every per-layer measure of one activation file: isotropy, structure, CKA, probes, DirectProbe."""
    with Activations(activation_file, expect=expected_provenance(identity, weights)) as act:
        index = token_sample(act, settings["max_tokens"], settings["seed"])
        tokens = _layers(act, "token", index)
        rows = isotropy_rows(act, tokens, index, settings) + similarity_rows(act, tokens, settings)
        if act.tag_names:
            rows += pos_probe_rows(act, settings)
        if len(act.label_names) > 1:
            rows += sentence_rows(act, settings)
        write_csv(_frame(rows, act, identity), out)


def compare_metrics(base_file, finetuned_file, weights, out, settings: dict, identity: dict) -> None:
    """Per layer, pre-trained vs fine-tuned on the same tokens and sentences: CKA (with a permutation baseline) and RSA."""
    with (Activations(base_file, expect=expected_provenance({**identity, "variant": "base"})) as base,
          Activations(finetuned_file, expect={**expected_provenance(identity, weights), "n_layers": base.n_layers})
          as tuned):
        if not np.array_equal(base.token_meta("piece_id"), tuned.token_meta("piece_id")):
            raise UserError(f"{base_file} and {finetuned_file} hold different tokens; re-extract both")
        index = {"token": token_sample(base, settings["max_tokens"], settings["seed"]),
                 "cls": sentence_sample(base, settings)}
        rsa_index = np.arange(min(len(index["token"]), settings["rsa_tokens"]))
        rows = []
        for representation in ("token", "cls"):
            a, b = (_layers(act, representation, index[representation]) for act in (base, tuned))
            rows += _rows(representation, "linear_cka_base_vs_finetuned", similarity.cka_between(a, b))
            rows += _rows(representation, "debiased_cka_base_vs_finetuned", similarity.cka_between(a, b, debiased=True))
            rows += _rows(representation, "linear_cka_permuted_base_vs_finetuned", [
                similarity.cka_permutation_baseline(x, y, settings["permutations"], settings["seed"]).mean()
                if np.ptp(x, axis=0).max() > 0 else np.nan for x, y in zip(a, b)])
            if representation == "token":
                for method in ("pearson", "spearman"):
                    rows += _rows(representation, f"rsa_{method}_base_vs_finetuned",
                                  [similarity.rsa(x[rsa_index], y[rsa_index], method) for x, y in zip(a, b)])
        write_csv(_frame(rows, tuned, identity), out)
