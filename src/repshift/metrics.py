"""The metrics step: per-layer measures of one activation file, and base-vs-fine-tuned comparisons, as tidy CSV."""

import numpy as np
import pandas as pd

from . import isotropy, similarity
from .activations import Activations
from .errors import UserError
from .provenance import atomic_path

COLUMNS = ["model", "variant", "task", "seed", "probe", "representation", "layer", "layer_b", "measure", "value",
           "model_id", "weights_sha256", "code_version"]

ISOTROPY = {
    "isotropy_raw": lambda x, s: isotropy.partition_isotropy(x, centre=False),
    "isotropy_centred": lambda x, s: isotropy.partition_isotropy(x, centre=True),
    "average_cosine": lambda x, s: isotropy.average_cosine(x, n_pairs=s["cosine_pairs"], seed=s["seed"]),
    "pcs_for_90pct_variance": lambda x, s: isotropy.pcs_for_variance(x, 0.9),
    "top_pc_variance_ratio": lambda x, s: isotropy.top_pc_ratio(x),
}


def token_sample(act: Activations, max_tokens: int, seed: int) -> np.ndarray:
    """A seeded sample of non-special token rows; identical for every model on the same probe set."""
    content = np.flatnonzero(~act.token_meta("special"))
    if len(content) < 2:
        raise UserError(f"{act.path}: fewer than 2 content tokens")
    if len(content) <= max_tokens:
        return content
    return np.sort(np.random.default_rng(seed).choice(content, size=max_tokens, replace=False))


def _layers(act: Activations, representation: str, index: np.ndarray) -> list[np.ndarray]:
    if representation == "token":
        return [act.tokens(layer, index).astype(np.float64) for layer in range(act.n_layers)]
    return [act.sentences(layer, representation).astype(np.float64) for layer in range(act.n_layers)]


def _frame(rows: list[dict], act: Activations, identity: dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for key, value in identity.items():
        frame[key] = value
    frame["model_id"] = act.provenance["model_id"]
    frame["weights_sha256"] = act.provenance["weights_sha256"][:16]
    return frame.reindex(columns=COLUMNS)


def write_csv(frame: pd.DataFrame, out) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)


def layer_metrics(activation_file, out, settings: dict, identity: dict) -> None:
    """Isotropy suite per layer on sampled tokens; linear CKA layer x layer on tokens and [CLS]."""
    with Activations(activation_file) as act:
        index = token_sample(act, settings["max_tokens"], settings["seed"])
        rows = []
        tokens = _layers(act, "token", index)
        for layer, x in enumerate(tokens):
            rows += [{"representation": "token", "layer": layer, "measure": name, "value": fn(x, settings)}
                     for name, fn in ISOTROPY.items()]
        for representation, layers in (("token", tokens), ("cls", _layers(act, "cls", index))):
            matrix = similarity.cka_matrix(layers)
            rows += [{"representation": representation, "layer": a, "layer_b": b, "measure": "linear_cka",
                      "value": matrix[a, b]} for a in range(len(layers)) for b in range(len(layers))]
        write_csv(_frame(rows, act, identity), out)


def compare_metrics(base_file, finetuned_file, out, settings: dict, identity: dict) -> None:
    """Per-layer linear CKA between the pre-trained and the fine-tuned model on the same tokens and sentences."""
    with Activations(base_file) as base, Activations(finetuned_file) as tuned:
        if not np.array_equal(base.token_meta("piece_id"), tuned.token_meta("piece_id")):
            raise UserError(f"{base_file} and {finetuned_file} hold different tokens; re-extract both")
        if base.n_layers != tuned.n_layers:
            raise UserError(f"{base_file} has {base.n_layers} layers, {finetuned_file} {tuned.n_layers}")
        index = token_sample(base, settings["max_tokens"], settings["seed"])
        rows = []
        for representation in ("token", "cls"):
            values = similarity.cka_between(_layers(base, representation, index), _layers(tuned, representation, index))
            rows += [{"representation": representation, "layer": layer, "measure": "linear_cka_base_vs_finetuned",
                      "value": value} for layer, value in enumerate(values)]
        write_csv(_frame(rows, tuned, identity), out)
