"""The metrics step: the measure catalog walked over one activation file (per layer, layer x layer) and over a
pre-trained / fine-tuned pair (per layer), written as tidy CSV."""

import time

import numpy as np
import pandas as pd

from . import catalog, isotropy, probing
from .activations import Activations
from .errors import UserError
from .heads import load_head
from .models import weights_digest
from .tables import write_csv
from .uncertainty import percentile_interval, replicates_text, sentence_resamples

COLUMNS = ["model", "variant", "task", "seed", "probe", "probe_role", "representation", "layer", "layer_b", "measure",
           "value", "ci_low", "ci_high", "n_boot", "replicates", "model_id", "weights_sha256", "code_version"]
FREQUENCY_BINS = 5
PENDING = "_pending"


def log(message: str) -> None:
    print(message, flush=True)


def sample_rows(rows: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of at most max_rows of `rows` (all of them when there are no more)."""
    if len(rows) <= max_rows:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))


def content_tokens(act: Activations) -> np.ndarray:
    """Token rows that are not special tokens ([CLS], [SEP], ...)."""
    content = np.flatnonzero(~act.token_meta("special"))
    if len(content) < 2:
        raise UserError(f"{act.path}: fewer than 2 content tokens")
    return content


def token_sample(act: Activations, max_tokens: int, seed: int) -> np.ndarray:
    """A seeded sample of non-special token rows; identical for every model on the same probe set."""
    return sample_rows(content_tokens(act), max_tokens, seed)


def sentence_sample(act: Activations, settings: dict) -> np.ndarray:
    """The seeded sample of sentence rows that sentence-level measures use (metrics.max_sentences)."""
    return sample_rows(np.arange(len(act.sentence_meta("sentence_id"))), settings["max_sentences"], settings["seed"])


def frequency_bins(pieces: np.ndarray, bins: int = FREQUENCY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Each token's word-piece frequency in the probe set, and its frequency quantile bin (0 = rarest)."""
    _, inverse, counts = np.unique(pieces, return_inverse=True, return_counts=True)
    frequency = counts[inverse]
    edges = np.quantile(frequency, np.linspace(0, 1, bins + 1)[1:-1])
    return frequency, np.searchsorted(edges, frequency, side="right")


class View:
    """One representation of a probe set: every layer's matrix over the same rows, the per-row targets that
    labelled measures read, the sentence of each row, and (for tokens) the rows to stream when all are wanted."""

    def __init__(self, layers, targets: dict, groups: np.ndarray, stream=None):
        self.layers, self.targets, self.groups, self.stream = layers, targets, groups, stream
        self._subsets, self.streamed = {}, {}

    def subset(self, max_rows: int | None, seed: int) -> "View":
        """This view on a seeded sample of at most max_rows rows (itself when that keeps every row), made once, so
        every measure on the same sample reads the same arrays."""
        if max_rows is None or max_rows >= len(self.groups):
            return self
        if max_rows not in self._subsets:
            rows = sample_rows(np.arange(len(self.groups)), max_rows, seed)
            self._subsets[max_rows] = View([x[rows] for x in self.layers],
                                           {name: y[rows] for name, y in self.targets.items()}, self.groups[rows])
        return self._subsets[max_rows]


def views(act: Activations, settings: dict) -> dict:
    """Lazily built views of an activation file: token, word (POS-tagged probe sets), cls and mean."""
    seed = settings["seed"]

    def token():
        index = token_sample(act, settings["max_tokens"], seed)
        frequency, frequency_bin = frequency_bins(act.token_meta("piece_id")[index])
        tags = act.token_meta("pos_tag")[index]
        targets = {"frequency": frequency, "frequency_bin": frequency_bin}
        if (tags >= 0).all() and len(act.tag_names) > 1:
            targets["tag"] = tags
        all_rows = content_tokens(act)
        return View([act.tokens(layer, index).astype(np.float64) for layer in range(act.n_layers)], targets,
                    act.token_meta("sentence_id")[index], stream=lambda: act.token_blocks(all_rows))

    def word():
        if not act.tag_names:
            return None
        rows, starts = act.words()
        tags = act.token_meta("pos_tag")[rows][starts]
        tagged = tags >= 0
        pieces = act.token_meta("piece_id")[rows]
        types = np.array([pieces[a:b].tobytes() for a, b in zip(starts, np.r_[starts[1:], len(rows)])])[tagged]
        return View([act.word_vectors(layer)[tagged] for layer in range(act.n_layers)],
                    {"tag": tags[tagged], "control_tag": probing.control_labels(types, tags[tagged], seed=seed)},
                    act.token_meta("sentence_id")[rows][starts][tagged])

    def sentences(kind):
        index = sentence_sample(act, settings)
        labels = act.sentence_meta("label")[index]
        targets = {"label": labels} if len(act.label_names) > 1 else {}
        return View([act.sentences(layer, kind)[index].astype(np.float64) for layer in range(act.n_layers)],
                    targets, index)

    def sentence_tokens():
        index = sentence_sample(act, settings)
        if len(act.label_names) < 2:
            return View([], {}, index)
        ids, rows = act.sentence_meta("sentence_id")[index], content_tokens(act)
        of_row, order = act.token_meta("sentence_id")[rows], np.argsort(ids)
        position = np.minimum(np.searchsorted(ids[order], of_row), len(ids) - 1)
        found = ids[order][position] == of_row
        rows, sentence = rows[found], order[position[found]]
        return View([act.tokens(layer, rows).astype(np.float64) for layer in range(act.n_layers)],
                    {"label": act.sentence_meta("label")[index][sentence]}, sentence)

    makers = {"token": token, "word": word, "cls": lambda: sentences("cls"), "mean": lambda: sentences("mean"),
              "sentence_tokens": sentence_tokens}
    made = {}

    def get(representation):
        if representation not in made:
            made[representation] = makers[representation]()
        return made[representation]

    return get


def _value(name: str, where: str, compute):
    """compute(), or NaN with the reason logged when the measure is undefined there."""
    try:
        value = compute()
    except ValueError as reason:
        log(f"{name} {where}: undefined, recorded as NaN ({reason})")
        return np.nan
    if np.ndim(value) == 0 and not isinstance(value, dict) and not np.isfinite(value):
        log(f"{name} {where}: undefined, recorded as NaN (a representation without variance)")
    return value


def interval_layers(measure, n_layers: int, shared: dict) -> set[int]:
    """The layers where a bootstrap measure gets an interval: with metrics.interval_layers "claims", the middle and
    the top layer of the probe sets whose role its claims read (catalog `bootstrap`); with "all", every layer."""
    if shared.get("interval_layers") == "all":
        return set(range(n_layers))
    return {n_layers // 2, n_layers - 1} if shared.get("probe_role") in measure.bootstrap else set()


def _estimate(measure, layer: int, n_layers: int, where: str, compute, arrays: tuple, groups: np.ndarray,
              shared: dict):
    """compute(*arrays) with its interval where the measure gets one (_scored for a per_row measure, else
    _interval)."""
    value = _value(measure.name, where, lambda: compute(*arrays))
    if measure.per_row:
        return _scored(value, groups, shared)
    return _interval(measure, layer, n_layers, value, compute, arrays, groups, shared)


def _with_interval(value: float, replicates, n_boot: int) -> dict:
    low, high = percentile_interval(replicates)
    return {"value": value, "ci_low": low, "ci_high": high, "n_boot": n_boot,
            "replicates": replicates_text(replicates)}


def _scored(scores, groups: np.ndarray, shared: dict):
    """The mean of a per_row measure's scores over the rows it scored, with its 95% percentile interval over
    metrics.n_boot resamples of those rows' sentences (no refit: the scores stay what the measure gave)."""
    if np.ndim(scores) == 0:
        return scores
    scored = np.isfinite(scores)
    scores, n_boot = scores[scored], shared.get("n_boot", 0)
    if not n_boot:
        return float(scores.mean())
    return _with_interval(float(scores.mean()), [scores[rows].mean() for rows in
                                                 sentence_resamples(groups[scored], n_boot, shared["seed"])], n_boot)


def _interval(measure, layer: int, n_layers: int, value: float, compute, arrays: tuple, groups: np.ndarray,
              shared: dict):
    """`value`, and for a measure with `bootstrap` at an interval layer a pending 95% percentile interval over
    metrics.n_boot resamples of the sentences in `groups` (the same draws for every model on these rows), which
    _settle computes."""
    if (not measure.bootstrap or not shared.get("n_boot") or layer not in interval_layers(measure, n_layers, shared)
            or not np.isfinite(value)):
        return value
    return {"value": value, PENDING: (compute, arrays, groups, measure.weighted)}


def _settle(rows: list[dict], shared: dict) -> None:
    """The replicates of every pending interval in `rows`: measures on the same rows share each resample (one copy
    of each array per replicate, so a decomposition isotropy remembers for its input serves them all)."""
    by_rows = {}
    for row in rows:
        if PENDING in row:
            by_rows.setdefault(id(row[PENDING][2]), []).append(row)
    n_boot = shared.get("n_boot", 0)
    with isotropy.sharing_decompositions():
        for members in by_rows.values():
            _replicate(sorted(members, key=lambda row: id(row[PENDING][1][0])), n_boot, shared["seed"])


def _replicate(members: list[dict], n_boot: int, seed: int) -> None:
    """The intervals of pending rows on the same rows: per replicate, one resampled copy of each array they read
    (a weighted measure reads each drawn row once, with its count)."""
    replicates = [[] for _ in members]
    groups = members[0][PENDING][2]
    for drawn_rows in sentence_resamples(groups, n_boot, seed):
        counts = np.bincount(drawn_rows, minlength=len(groups))
        kept = np.flatnonzero(counts)
        weights, drawn = counts[kept], {}
        for row, out in zip(members, replicates):
            compute, arrays, _, weighted = row[PENDING]
            rows, extra = (kept, {"weights": weights}) if weighted else (drawn_rows, {})
            for a in arrays:
                if (id(a), weighted) not in drawn:
                    drawn[id(a), weighted] = a[rows]
            try:
                out.append(float(compute(*(drawn[id(a), weighted] for a in arrays), **extra)))
            except ValueError:
                out.append(np.nan)
    for row, out in zip(members, replicates):
        del row[PENDING]
        row.update(_with_interval(row["value"], out, n_boot))


def _derived(measure, parts: tuple, n_boot: int):
    """A derived measure at one layer from its inputs' rows there, with an interval from their paired replicates
    (the same sentence draws) when every input has them."""
    value = float(measure.function(*(p["value"] for p in parts)))
    if not all(isinstance(p.get("replicates"), str) for p in parts):
        return value
    return _with_interval(value, measure.function(*(np.array(p["replicates"].split(), dtype=np.float64)
                                                    for p in parts)), n_boot)


def _logged_matrix(name: str, representation: str, matrix: np.ndarray) -> np.ndarray:
    for a, b in np.argwhere(~np.isfinite(matrix) & np.triu(np.ones(matrix.shape, dtype=bool))):
        log(f"{name} {representation} layers {a}, {b}: undefined, recorded as NaN (a representation without variance)")
    return matrix


def _stream_matrix(make, chunks) -> np.ndarray:
    stream = make()
    for chunk in chunks:
        stream.add(chunk)
    return stream.matrix()


def _fed(streams: list, chunks, done: dict, rows) -> list:
    """`streams` (of one measure) with every chunk added (a chunk holds one part per stream). Streams that keep
    their sums apart (a `sums` attribute, e.g. CKAStream's CrossSums) take the sums a stream of the same kind
    already read from the same `rows` (a key of `done`): linear and debiased CKA read every token once."""
    kind = type(getattr(streams[0], "sums", None))
    key = None if kind is type(None) else (kind, rows)
    if key in done:
        for stream, sums in zip(streams, done[key]):
            stream.sums = sums
        return streams
    for chunk in chunks:
        for stream, part in zip(streams, chunk):
            stream.add(part)
    if key is not None:
        done[key] = [stream.sums for stream in streams]
    return streams


def _pair_matrix(measure, settings: dict, shared: dict, view: View, representation: str) -> np.ndarray:
    """The layer x layer matrix of a pair measure: streamed over every token, all pairs at once, or pair by pair;
    each undefined entry logged once."""
    if measure.stream and settings.get("all_tokens") and view.stream is not None:
        (stream,) = _fed([measure.bind_stream(settings, shared)()], ([chunk] for chunk in view.stream()),
                         view.streamed, "layers")
        return _logged_matrix(measure.name, representation, stream.matrix())
    layers = view.subset(settings.get("max_rows"), shared["seed"]).layers
    if measure.all_pairs:
        return _logged_matrix(measure.name, representation, measure.bind_all_pairs(settings, shared)(layers))
    if measure.stream:
        return _logged_matrix(measure.name, representation,
                              _stream_matrix(measure.bind_stream(settings, shared), [layers]))
    compute, size = measure.bind(settings, shared), len(layers)
    matrix = np.full((size, size), np.nan)
    for a in range(size):
        for b in range(a, size):
            matrix[a, b] = matrix[b, a] = _value(measure.name, f"{representation} layers {a}, {b}",
                                                 lambda: compute(layers[a], layers[b]))
    return matrix


def _per_layer(name, representation, values, layers=None) -> list[dict]:
    """Tidy rows of per-layer values (at `layers`, every layer by default), each a number or an estimate with its
    interval (_estimate)."""
    layers = range(len(values)) if layers is None else layers
    return [{"representation": representation, "layer": layer, "measure": name,
             **(v if isinstance(v, dict) else {"value": float(v)})} for layer, v in zip(layers, values)]


def _layers(measure, view: "View") -> list[int]:
    return [len(view.layers) - 1] if measure.top_layer else list(range(len(view.layers)))


def _labelled(measure, compute, view: View, settings: dict, shared: dict, representation: str) -> list[dict]:
    y = view.targets.get(measure.target)
    if y is None:
        log(f"{measure.name} {representation}: not measured, this probe set has no {measure.target} per row")
        return []
    if "head" in measure.shared and shared.get("head") is None:
        log(f"{measure.name} {representation}: not measured, {shared.get('no_head', 'no task head')}")
        return []
    sub, layers = view.subset(settings.get("max_rows"), shared["seed"]), _layers(measure, view)
    results = [_estimate(measure, layer, len(view.layers), f"{representation} layer {layer}", compute,
                         (sub.layers[layer], sub.targets[measure.target], sub.groups), sub.groups, shared)
               for layer in layers]
    if not measure.outputs:
        return _per_layer(measure.name, representation, results, layers)
    return [row for name, output in zip(measure.names, measure.outputs) for row in _per_layer(
        name, representation, [r[output] if isinstance(r, dict) else np.nan for r in results], layers)]


def walk_layers(get_view, chosen: dict, shared: dict) -> list[dict]:
    """Every chosen measure of one activation file: per layer, labelled, layer x layer, derived, matrix."""
    rows, matrices = [], {}
    for measure in catalog.MEASURES:
        if measure.name not in chosen or (measure.takes == "pair" and measure.name not in shared["layer_by_layer"]):
            continue
        settings, started = chosen[measure.name], time.perf_counter()
        for representation in measure.representations:
            view = get_view(representation)
            if view is None:
                log(f"{measure.name} {representation}: not measured, this probe set has no {representation} rows")
                continue
            if measure.takes == "layer":
                compute, sub = measure.bind(settings, shared), view.subset(settings.get("max_rows"), shared["seed"])
                rows += _per_layer(measure.name, representation, [
                    _estimate(measure, layer, len(view.layers), f"{representation} layer {layer}", compute,
                              (x,), sub.groups, shared) for layer, x in enumerate(sub.layers)])
            elif measure.takes == "labelled":
                rows += _labelled(measure, measure.bind(settings, shared), view, settings, shared, representation)
            elif measure.takes == "pair":
                matrix = _pair_matrix(measure, settings, shared, view, representation)
                matrices[measure.name, representation] = matrix
                rows += [{"representation": representation, "layer": a, "layer_b": b, "measure": measure.name,
                          "value": matrix[a, b]} for a in range(len(matrix)) for b in range(len(matrix))]
            elif measure.takes == "derived":
                _settle(rows, shared)
                inputs = [[r for r in rows if r["measure"] == name and r["representation"] == representation]
                          for name in measure.inputs]
                if all(inputs):
                    rows += _per_layer(measure.name, representation,
                                       [_derived(measure, parts, shared.get("n_boot", 0)) for parts in zip(*inputs)],
                                       [r["layer"] for r in inputs[0]])
            else:
                rows += _matrix_rows(measure, matrices.get((measure.inputs[0], representation)), representation)
        log(f"{measure.name}: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    _settle(rows, shared)
    log(f"intervals: {time.perf_counter() - started:.1f} s")
    return rows


def _matrix_rows(measure, matrix, representation: str) -> list[dict]:
    """A score of a layer x layer matrix over its defined layers, recorded at the layer it names."""
    if matrix is None:
        return []
    finite = np.isfinite(np.diag(matrix))
    if finite.sum() < 4 or not np.isfinite(matrix[np.ix_(finite, finite)]).all():
        log(f"{measure.name} {representation}: undefined, fewer than 4 layers with defined values (two blocks of 2) "
            "or an undefined pair among them")
        return []
    score, split = measure.function(matrix[np.ix_(finite, finite)])
    return [{"representation": representation, "layer": int(np.flatnonzero(finite)[0]) + split,
             "measure": measure.name, "value": score}]


def _frame(rows: list[dict], act: Activations, identity: dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for key in set(identity) & set(COLUMNS):
        frame[key] = identity[key]
    frame["model_id"] = act.provenance["model_id"]
    frame["weights_sha256"] = act.provenance["weights_sha256"][:16]
    return frame.reindex(columns=COLUMNS)


def expected_provenance(identity: dict, weights=None) -> dict:
    """What an activation file must have been made from: the step's model, variant and probe set, and for a
    fine-tuned variant the digest of `weights`, the model.safetensors that the finetune rule wrote (and its prompt)."""
    expect = {key: identity[key] for key in ("model", "variant", "probe")}
    return expect if weights is None else {**expect, "weights_sha256": weights_digest(weights)}


def _describe(act: Activations, settings: dict) -> None:
    log(f"{act.path}: {act.n_layers} layers, {len(act.token_meta('special'))} tokens, "
        f"{len(act.sentence_meta('sentence_id'))} sentences, {len(act.tag_names)} tags, "
        f"{len(act.label_names)} labels; model {act.provenance['model_id']}")
    log(f"settings: {settings['metrics']}; measures: {', '.join(settings['measures'])}")


def _head(weights) -> dict:
    """The fine-tuned model's task head for the measures that read it, or why there is none (those measures are
    then left out, the rest of the step runs)."""
    if weights is None:
        return {"head": None, "no_head": "the pre-trained model has no task head"}
    try:
        return {"head": load_head(weights)}
    except UserError as missing:
        return {"head": None, "no_head": str(missing)}


def layer_metrics(activation_file, out, settings: dict, identity: dict, weights=None) -> None:
    """Every chosen measure of one activation file (settings: the config's `metrics` and resolved `measures`)."""
    with Activations(activation_file, expect=expected_provenance(identity, weights)) as act:
        _describe(act, settings)
        shared = {**settings["metrics"], "probe_role": identity.get("probe_role"), **_head(weights)}
        rows = walk_layers(views(act, shared), settings["measures"], shared)
        write_csv(_frame(rows, act, identity), out)
        log(f"wrote {len(rows)} values to {out}")


def _versus(measure, settings: dict, shared: dict, base_view: View, tuned_view: View,
            representation: str) -> list:
    """Per layer, a pair measure between two models (pre-trained and fine-tuned, or two seeds) on the same rows;
    with `bootstrap`, an interval from the same rows' sentences (the seeded sample when the value streams them all)."""
    base, tuned = (v.subset(settings.get("max_rows"), shared["seed"]) for v in (base_view, tuned_view))
    if measure.stream and settings.get("all_tokens") and base_view.stream is not None:
        streams = _fed([measure.bind_stream(settings, shared)() for _ in base_view.layers],
                       ([[x, y] for x, y in zip(a, b)] for a, b in zip(base_view.stream(), tuned_view.stream())),
                       base_view.streamed, ("versus", id(tuned_view)))
        values = [_value(measure.name, f"{representation} layer {layer}", lambda s=s: s.matrix()[0, 1])
                  for layer, s in enumerate(streams)]
        if not measure.bootstrap:
            return values
        compute = measure.bind(settings, shared)
        return [_interval(measure, layer, len(values), value, compute, (x, y), base.groups, shared)
                for layer, (x, y, value) in enumerate(zip(base.layers, tuned.layers, values))]
    if measure.weighted or not (measure.all_pairs or measure.stream):
        compute = measure.bind(settings, shared)
    elif measure.all_pairs:
        compute = lambda x, y: measure.bind_all_pairs(settings, shared)([x, y])[0, 1]  # noqa: E731
    else:
        compute = lambda x, y: _stream_matrix(measure.bind_stream(settings, shared), [[x, y]])[0, 1]  # noqa: E731
    return [_estimate(measure, layer, len(base.layers), f"{representation} layer {layer}", compute, (x, y),
                      base.groups, shared)
            for layer, (x, y) in enumerate(zip(base.layers, tuned.layers))]


def _pair_table(first: Activations, second: Activations, out, settings: dict, identity: dict, wanted, name) -> None:
    """Per layer, every chosen pair measure that `wanted(measure)` accepts between two activation files of the
    same rows, written as tidy rows named name(measure)."""
    if not np.array_equal(first.token_meta("piece_id"), second.token_meta("piece_id")):
        raise UserError(f"{first.path} and {second.path} hold different tokens; re-extract both")
    _describe(second, settings)
    shared = {**settings["metrics"], "probe_role": identity.get("probe_role")}
    first_views, second_views = views(first, shared), views(second, shared)
    rows = []
    for measure in catalog.MEASURES:
        if measure.name not in settings["measures"] or not wanted(measure):
            continue
        started = time.perf_counter()
        for representation in measure.representations:
            values = _versus(measure, settings["measures"][measure.name], shared, first_views(representation),
                             second_views(representation), representation)
            rows += _per_layer(name(measure.name), representation, values)
        log(f"{measure.name}: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    _settle(rows, shared)
    log(f"intervals: {time.perf_counter() - started:.1f} s")
    write_csv(_frame(rows, second, identity), out)
    log(f"wrote {len(rows)} values to {out}")


def compare_metrics(base_file, finetuned_file, weights, out, settings: dict, identity: dict) -> None:
    """Per layer, every chosen pair measure between the pre-trained and the fine-tuned model on the same rows."""
    with (Activations(base_file, expect=expected_provenance({**identity, "variant": "base"})) as base,
          Activations(finetuned_file, expect={**expected_provenance(identity, weights), "n_layers": base.n_layers})
          as tuned):
        _pair_table(base, tuned, out, settings, identity, lambda m: m.base_vs_finetuned, catalog.versus)


PAIRS = {"seed_floor": (lambda m: m.seed_floor, catalog.seed_floor),
         "between": (lambda m: m.base_vs_finetuned, catalog.between)}


def variants_metrics(first_file, second_file, weights: list, out, settings: dict, identity: dict, pair: str) -> None:
    """Per layer, the chosen pair measures between two fine-tuned variants (identity's `pair` names them; its variant
    names the pair): `seed_floor`, the catalog's seed-floor measures between two fine-tuning seeds of one variant (how
    much the representations differ when only the seed does); `between`, every pair measure between the two variants
    of a configured comparison."""
    first_variant, second_variant = identity["pair"]
    with (Activations(first_file, expect=expected_provenance({**identity, "variant": first_variant}, weights[0]))
          as first,
          Activations(second_file, expect={**expected_provenance({**identity, "variant": second_variant}, weights[1]),
                                           "n_layers": first.n_layers}) as second):
        _pair_table(first, second, out, settings, identity, *PAIRS[pair])
