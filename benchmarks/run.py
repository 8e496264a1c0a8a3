"""repshift performance, measured side by side with the alternatives in one run on this machine.

    python benchmarks/run.py [--quick] [--out results/benchmarks.csv] [--only extraction,cka,...]

Prints one table row per comparison (repshift, the reference, their ratio, the target, whether it holds and
how far the values differ) and writes the same rows as CSV. Sections:

  extraction  repshift.activations.extract (tokenize + forward with all hidden states + HDF5 write) in tokens/s,
              vs the bare forward pass on the same padded batches and vs a naive one-sentence-at-a-time loop
  cka         similarity.cka_matrix over all L x L layer pairs vs ckatorch, torch-cka and the
              google-research feature-space formula, each looped over pairs as they require
  rsa         similarity.rsa vs rsatoolbox (cosine RDMs, Pearson and Spearman)
  isoscore    isotropy.isoscore vs the IsoScore package
  probes      probing.probe_layers vs scikit-learn LogisticRegression on the same standardised features
  layerdrop   finetune.layer_drop (one forward pass for every depth) vs the truncation loop, one pass per depth
  replicates  a bootstrap replicate of I(W), Pearson RSA and linear CKA read with row weights (each drawn row once,
              with its count) vs on the resampled copy, as metrics ran them before
  finetune    a MiniLM training step with finetune's fused AdamW vs the per-tensor AdamW it replaced; two 1-thread
              training processes side by side vs one of 2 threads
  store       extract.dtype float16 vs float32 on real sentences (MiniLM and a copy fine-tuned for a few steps on
              them): file size, extraction speed, metrics time, and every measure's change (value and interval)
  directprobe DirectProbe on MiniLM word vectors of WSJ words (POS tags at layer 0 and the top layer, and two labels
              that separate) at 5,000 points, and beside the previous implementation (from git) at 1,000
  memory      peak RSS of the metrics step on synthetic activation files of growing size (one subprocess each)
  streaming   exact linear CKA over every token of those files (Activations.token_blocks + similarity.CKAStream):
              peak RSS and time per token at 10^5 and 10^6 tokens, against the default's 8,000-token sample,
              minibatch CKA (a different estimator) and, where their n x n Grams fit, ckatorch and torch-cka
  workflow    snakemake -n on configs/paper.yaml's DAG in a temporary --directory: planning, no-op, and
              the jobs rerun after one task's setting changes

benchmarks/profile_extract.py is the profile behind the extraction rows (batch sizes, writer variants, cProfile).

--quick uses small sizes (about 4 minutes on 2 cores); the default sizes are those of the issue
(1,000 sentences, n = 20,000 tokens for CKA, 100k/300k/1M-token files; 100k/1M for streaming).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from dry_run import parse_dry_run  # noqa: E402

from repshift.tasks import ACCURACY, KINDS  # noqa: E402

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SEQUENCE_HEAD = KINDS["classification"].auto_model
SECTIONS = ("extraction", "cka", "rsa", "isoscore", "probes", "layerdrop", "replicates", "finetune", "store",
            "directprobe", "memory", "streaming", "workflow")
COLUMNS = ["section", "benchmark", "size", "repshift", "reference", "unit", "ratio", "target", "holds", "load",
           "max_abs_diff", "max_rel_diff", "note"]


@dataclass
class Sizes:
    quick: bool
    sentences: int = 1000          # probe sentences for extraction (and the real activations reused below)
    extract_repeat: int = 3        # best of
    cka_n: int = 20000             # tokens for cka_matrix vs the feature-space formula
    ckatorch_n: int = 5000         # all pairs with ckatorch (at 20,000 one pair: 18 GB, a minute)
    ckatorch_pairs: int = 2        # pairs timed with ckatorch at cka_n
    torchcka_n: int = 1500         # torch-cka multiplies n x n matrices (O(n^3) per pair)
    cka_dims: tuple = (384, 768)
    rsa_n: int = 2000              # metrics.rsa_tokens default
    iso_n: int = 8000              # metrics.max_tokens default
    repeat: int = 3                # best of, for the fast comparisons
    memory_sizes: tuple = (100_000, 300_000, 1_000_000)
    memory_part: str = "metrics"
    memory_max_tokens: int = 8000
    streaming_sizes: tuple = (100_000, 1_000_000)
    streaming_batch: int = 1000    # MinibatchCKA batch size (the catalog's minibatch_cka default)
    streaming_ckatorch_n: int = 20000  # the largest n at which ckatorch's n x n Grams fit (18 GB at 20,000)
    streaming_torchcka_n: int = 1500   # torch-cka: O(n^3) per pair, all 49 pairs
    replicates: int = 20           # bootstrap replicates timed per measure
    train_steps: int = 20          # MiniLM training steps timed per optimizer
    store_sentences: int = 500     # a dev set of the default config
    store_boot: int = 100          # metrics.n_boot default
    store_measures: dict = field(default_factory=dict)  # measure settings over the workflow's defaults
    directprobe_points: int = 5000     # word vectors per layer (the size)
    directprobe_reference: int = 1000  # points at which the previous implementation is timed beside
    reduced_dag: bool = False
    noop_repeat: int = 3
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


def _quick_store_measures() -> dict:
    """Fewer folds, clusters and rows where a measure's cost does not shrink with the sentences: the float16 rows
    compare both stores under the same settings, so these change no conclusion of the quick run."""
    from repshift.catalog import named

    folds = {named(name): {"folds": 3} for name in ("task_probe_accuracy", "task_probe_accuracy_top_pcs_removed")}
    return {**folds, named("task_probe_accuracy_cluster_pcs_removed"): {"folds": 3, "clusters": 5},
            named("cluster_purity_frequency"): {"max_rows": 500},
            named("cluster_purity_pos"): {"clusters": 5, "max_rows": 500}}


def quick_sizes() -> Sizes:
    return Sizes(quick=True, sentences=60, extract_repeat=1, cka_n=1500, ckatorch_n=1000, torchcka_n=300,
                 rsa_n=300, iso_n=1000, repeat=1, memory_sizes=(4_000, 8_000, 16_000), memory_part="cka",
                 memory_max_tokens=1000, streaming_sizes=(4_000, 16_000), streaming_ckatorch_n=1000,
                 streaming_torchcka_n=300, replicates=3, train_steps=3, store_sentences=60, store_boot=5,
                 store_measures=_quick_store_measures(),
                 directprobe_points=400, directprobe_reference=150, reduced_dag=True, noop_repeat=1)


def row(section, benchmark, size="", repshift=None, reference=None, unit="", ratio=None, target="", holds="",
        max_abs_diff=None, max_rel_diff=None, note=""):
    return {"section": section, "benchmark": benchmark, "size": size, "repshift": repshift, "reference": reference,
            "unit": unit, "ratio": ratio, "target": target, "holds": holds, "load": None,
            "max_abs_diff": max_abs_diff, "max_rel_diff": max_rel_diff, "note": note}


def check(value, target: str) -> str:
    """'yes'/'no' for a target written as '>= x' or '<= x'; '' without a target."""
    if not target or value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    op, bound = target.split()
    return "yes" if (value >= float(bound) if op == ">=" else value <= float(bound)) else "no"


def timed(fn, repeat: int = 1):
    """(best wall seconds over `repeat` calls, result of the last call)."""
    best, result = math.inf, None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


# ---------------------------------------------------------------------------------------------- probe sentences

def probe_sentences(count: int, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """POS-tagged sentences: the WSJ sample of the Pattern corpora when fetched, else generated ones."""
    corpus = REPO / "resources" / "corpora" / "tagged-en-wsj.txt"
    if corpus.is_file():
        from repshift.data import read_tagged

        tagged = read_tagged(corpus)
        words, tags = tagged.words, tagged.tags
        if len(words) >= count:
            keep = np.sort(np.random.default_rng(seed).choice(len(words), count, replace=False))
            return [words[i] for i in keep], [tags[i] for i in keep]
    return generated_sentences(count, seed)


LEXICON = {
    "DT": "the a this that every some no another".split(),
    "NN": "market company share price year trader bank plan report week index rate deal fund board".split(),
    "NNS": "shares prices investors analysts sales profits bonds stocks markets results".split(),
    "VBD": "rose fell said reported expected posted agreed declined jumped slipped".split(),
    "JJ": "new big strong weak federal recent major higher lower quarterly".split(),
    "IN": "in of for on at with from by after about".split(),
    "RB": "also still only sharply slightly recently".split(),
    "CD": "two 1989 10 million billion 3.5".split(),
    "CC": "and but or".split(),
}


def generated_sentences(count: int, seed: int = 0):
    """WSJ-like sentences (5 to 45 words) from a small tagged lexicon, for machines without the corpora."""
    rng = np.random.default_rng(seed)
    phrases = [["DT", "JJ", "NN"], ["DT", "NN"], ["NNS"], ["IN", "DT", "NN"], ["VBD"], ["RB", "VBD"],
               ["CD", "NNS"], ["CC", "DT", "NNS"], ["IN", "CD"]]
    words, tags = [], []
    for _ in range(count):
        target = int(np.clip(rng.gamma(4.0, 6.0), 5, 45))
        sentence = []
        while len(sentence) < target:
            sentence += phrases[rng.integers(len(phrases))]
        sentence = sentence[:target] + ["."]
        tags.append(sentence)
        words.append([w if t == "." else LEXICON[t][rng.integers(len(LEXICON[t]))] for w, t in
                      zip(sentence, sentence)])
    return words, tags


def write_probe(path: Path, words, tags) -> Path:
    tag_names = sorted({t for sentence in tags for t in sentence})
    path.write_text(json.dumps({"provenance": {}, "words": words, "tags": tags, "labels": None,
                                "tag_names": tag_names, "label_names": []}))
    return path


# ---------------------------------------------------------------------------------------------- 1. extraction

def padded_batches(tokenizer, ids, word_index, batch_tokens: int):
    """extract()'s batches, as (input ids, attention mask) pairs for a bare forward pass."""
    from repshift import activations

    lengths = np.array([len(x) for x in ids])
    return [activations.padded_batch(ids, word_index, batch, tokenizer.pad_token_id or 0)[:2]
            for batch in activations.length_batches(lengths, batch_tokens)]


def bare_forward(model, batches):
    import torch

    with torch.inference_mode():
        for input_ids, mask in batches:
            model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_alone(stored: Path, out: Path, batch_sizes: list[tuple[int, int]]):
    """extract()'s HDF5 writes without the forward passes: the stored arrays, in its layout, batch by batch."""
    import h5py

    from repshift import activations

    with h5py.File(stored) as source:
        arrays = {name: source[name][:] for name in activations.LAYERED}
    start = time.perf_counter()
    with h5py.File(out, "w", rdcc_nbytes=activations.RDCC_BYTES) as handle:
        datasets = {name: activations._create(handle, name, values.shape, "float32") for name, values in arrays.items()}
        token_at = sentence_at = 0
        for n_tokens, n_sentences in batch_sizes:
            for name, (at, count) in (("tokens/hidden", (token_at, n_tokens)),
                                      ("sentences/cls", (sentence_at, n_sentences)),
                                      ("sentences/mean", (sentence_at, n_sentences))):
                for layer in range(arrays[name].shape[0]):
                    datasets[name][layer, at : at + count] = arrays[name][layer, at : at + count]
            token_at, sentence_at = token_at + n_tokens, sentence_at + n_sentences
    return time.perf_counter() - start


def naive_loop(model, tokenizer, words, out: Path, max_length: int):
    """Extraction as it is often written: one sentence per forward pass, numpy lists, one HDF5 write each."""
    import h5py
    import torch

    cls, mean = [], []
    with h5py.File(out, "w") as handle, torch.no_grad():
        for i, sentence in enumerate(words):
            encoded = tokenizer(sentence, is_split_into_words=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
            hidden = model(**encoded, output_hidden_states=True).hidden_states
            states = np.stack([h[0].numpy() for h in hidden])
            handle.create_dataset(f"tokens/{i}", data=states)
            cls.append(states[:, 0])
            mean.append(states[:, 1:-1].mean(axis=1))
        handle["sentences/cls"] = np.stack(cls, axis=1)
        handle["sentences/mean"] = np.stack(mean, axis=1)


def bench_extraction(sizes: Sizes, work: Path, state: dict) -> list[dict]:
    import h5py
    import torch

    from repshift import activations
    from repshift.models import load_encoder, load_tokenizer, resolve_model

    words, tags = probe_sentences(sizes.sentences)
    probe = write_probe(work / "probe.json", words, tags)
    settings = schema_defaults("extract")
    torch.set_num_threads(sizes.threads)

    def setup():
        resolved = resolve_model(MODEL_ID)
        tokenizer = load_tokenizer(resolved.path)
        model = load_encoder(resolved.path).eval()
        ids, word_index, _, _ = activations.tokenize_probe(tokenizer, words, settings["max_length"])
        return tokenizer, model, ids, word_index

    tokenizer, model, ids, word_index = setup()
    lengths = np.array([len(x) for x in ids])
    n_tokens = int(lengths.sum())
    batches = padded_batches(tokenizer, ids, word_index, settings["batch_tokens"])
    bare_forward(model, batches[:1])  # warm-up

    out = work / "extract.h5"
    naive_out = work / "naive.h5"
    times = {"extract": math.inf, "extract16": math.inf, "setup": math.inf, "bare": math.inf, "naive": math.inf}
    bare_cores = 0.0
    for _ in range(sizes.extract_repeat):
        for name in times:
            gc.collect()
            start, cpu = time.perf_counter(), cpu_seconds()
            if name == "setup":
                setup()
            elif name in ("extract", "extract16"):
                with contextlib.redirect_stdout(io.StringIO()):
                    activations.extract({"id": MODEL_ID}, probe, out if name == "extract" else work / "half.h5",
                                        {**settings, "dtype": "float32" if name == "extract" else "float16"},
                                        sizes.threads, {})
            elif name == "bare":
                bare_forward(model, batches)
            else:
                naive_loop(model, tokenizer, words, naive_out, settings["max_length"])
            wall = time.perf_counter() - start
            if name == "bare" and wall < times[name]:
                bare_cores = (cpu_seconds() - cpu) / wall
            times[name] = min(times[name], wall)
    torch.set_num_threads(sizes.threads)  # extract() sets it too; keep it the same for what follows
    batch_sizes = [(int(mask.sum()), len(mask)) for _, mask in batches]
    write = min(write_alone(out, work / "write-alone.h5", batch_sizes) for _ in range(sizes.extract_repeat))

    with h5py.File(out) as stored, h5py.File(naive_out) as naive:
        sentence_of = stored["tokens/sentence_id"][:]
        hidden = stored["tokens/hidden"][:]
        starts = np.flatnonzero(np.r_[True, sentence_of[1:] != sentence_of[:-1]])
        ends = np.r_[starts[1:], len(sentence_of)]
        diff = max(float(np.abs(hidden[:, a:b] - naive[f"tokens/{sentence_of[a]}"][:]).max())
                   for a, b in zip(starts, ends))
        written = sum(stored[name].nbytes for name in activations.LAYERED) / 2**20
    state["activations"] = out
    rate = {name: n_tokens / seconds for name, seconds in times.items()}
    size = f"{len(words)} sentences, {n_tokens} tokens"
    setup_seconds = times["setup"]
    steady = n_tokens / (times["extract"] - setup_seconds) if times["extract"] > setup_seconds else None
    bound = times["bare"] / (times["bare"] + write)
    return [
        row("extraction", "extract() vs bare forward, same batches", size, rate["extract"], rate["bare"], "tok/s",
            rate["extract"] / rate["bare"], ">= 0.85", check(rate["extract"] / rate["bare"], ">= 0.85"),
            note=f"threads={sizes.threads}; batch_tokens={settings['batch_tokens']}; extract() includes model "
                 f"load+sha256+tokenize ({setup_seconds:.2f} s measured alone)"),
        row("extraction", "extract() without setup vs bare forward", size, steady, rate["bare"], "tok/s",
            steady / rate["bare"] if steady else None, note="extract wall minus the separately timed setup "
                                                             "(resolve_model with sha256, load, tokenize)"),
        row("extraction", "bound: bare forward vs bare forward + extract()'s HDF5 writes timed alone", size,
            n_tokens / (times["bare"] + write), rate["bare"], "tok/s", bound,
            note=f"profile: the bare forward keeps {bare_cores:.2f} of {os.cpu_count()} cores busy (CPU s / wall s), "
                 f"so the {written:.0f} MiB of checksummed chunks ({write:.2f} s written alone) have no idle core "
                 f"to overlap with"),
        row("extraction", "extract() with extract.dtype float16 vs bare forward, same batches", size,
            rate["extract16"], rate["bare"], "tok/s", rate["extract16"] / rate["bare"], ">= 0.85",
            check(rate["extract16"] / rate["bare"], ">= 0.85"),
            note="half the bytes to checksum and write; every measure's change is in the store section"),
        row("extraction", "extract() vs naive per-sentence loop", size, rate["extract"], rate["naive"], "tok/s",
            rate["extract"] / rate["naive"], ">= 3", check(rate["extract"] / rate["naive"], ">= 3"),
            max_abs_diff=diff, note="diff: stored vectors vs the unpadded per-sentence forward; naive loop "
                                    "gets its model and tokenizer preloaded"),
        row("extraction", "bound: bare forward (batched) vs naive per-sentence loop", size, rate["bare"],
            rate["naive"], "tok/s", rate["bare"] / rate["naive"],
            note="the most batching can give over one sentence per forward pass on this machine: extract() would "
                 "need to beat the bare forward pass to reach more"),
    ]


# ---------------------------------------------------------------------------------------------- 2. CKA

def structured_layers(n: int, d: int, n_layers: int = 7, seed: int = 0) -> list[np.ndarray]:
    """Random layers with a decaying spectrum, each a noisy linear map of the one before (CKA well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1.0 + np.arange(d))
    x = rng.standard_normal((n, d)) * scale
    layers = [x]
    for _ in range(n_layers - 1):
        mix = rng.standard_normal((d, d)) / np.sqrt(d)
        x = 0.7 * x + 0.5 * (x @ mix) + 0.2 * rng.standard_normal((n, d)) * scale
        layers.append(x)
    return [a.astype(np.float32).astype(np.float64) for a in layers]


def real_layers(state: dict, n: int, d: int):
    """The first n stored content-token vectors of every layer of the extraction, when it ran and has enough."""
    if d != 384:
        return None
    layers = stored_tokens(state, n)
    return layers if layers is not None and layers[0].shape[0] == n and layers[0].shape[1] == d else None


def rel_diff(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.abs(ours - theirs).max()), float((np.abs(ours - theirs) / np.abs(theirs)).max())


def ckatorch_pairs(layers, pairs):
    """ckatorch's linear CKA (Gram-based, float64) for the given (i, j) layer pairs, one call each."""
    import torch
    from ckatorch.core import cka_base

    tensors = [torch.from_numpy(a) for a in layers]
    return {(i, j): float(cka_base(tensors[i], tensors[j], kernel="linear")) for i, j in pairs}


def upper_pairs(size: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(size) for j in range(i + 1, size)]


def ckatorch_loop(layers):
    size = len(layers)
    out = np.eye(size)
    for (i, j), value in ckatorch_pairs(layers, upper_pairs(size)).items():
        out[i, j] = out[j, i] = value
    return out


def feature_loop(layers, debiased=False):
    from references import feature_space_linear_cka

    size = len(layers)
    out = np.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            out[i, j] = out[j, i] = feature_space_linear_cka(layers[i], layers[j], debiased=debiased)
    return out


def torchcka_matrix(layers):
    """torch-cka's CKA.compare on one batch holding all n rows: its unbiased HSIC, i.e. debiased CKA."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    class Stored(torch.nn.Module):
        def __init__(self, arrays):
            super().__init__()
            self.arrays = [torch.from_numpy(a) for a in arrays]
            self.picks = torch.nn.ModuleList(torch.nn.Identity() for _ in arrays)

        def forward(self, index):
            for pick, array in zip(self.picks, self.arrays):
                pick(array[index])

    names = [f"picks.{i}" for i in range(len(layers))]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its HSIC builds float32 ones vectors otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cka = CKA(Stored(layers), Stored(layers), "A", "B", names, names)
            loader = DataLoader(TensorDataset(torch.arange(layers[0].shape[0])), batch_size=layers[0].shape[0])
            cka.compare(loader, loader)
        return cka.export()["CKA"].numpy()
    finally:
        torch.set_default_dtype(previous)


PERMUTED_BEFORE = "e9c73f1"  # the last commit whose baseline averaged 10 sampled row orders


def permutation_baseline(layers: list[np.ndarray], source: str) -> dict:
    """similarity.permuted_linear_cka (the exact expectation over row orders) of each layer with the top layer,
    against the mean over 10 sampled orders that the catalog's linear_cka_permuted computed before (from git)."""
    from repshift import similarity

    top, (n, d) = layers[-1], layers[0].shape
    name = f"linear CKA permutation baseline, {len(layers)} layers vs the top layer: exact expectation"
    before = previous_module("similarity", PERMUTED_BEFORE)
    ours_t, ours = timed(lambda: [similarity.permuted_linear_cka(x, top) for x in layers])
    if before is None:
        return row("cka", name, f"n={n}, d={d}", ours_t, note=f"not compared: commit {PERMUTED_BEFORE} is not in "
                   "this checkout's history")
    ref_t, ref = timed(lambda: [before.cka_permutation_baseline(x, top, 10, 0).mean() for x in layers])
    a, r = rel_diff(np.array(ours), np.array(ref))
    return row("cka", f"{name} vs the mean of 10 sampled orders ({PERMUTED_BEFORE})", f"n={n}, d={d}", ours_t,
               ref_t, "s", ref_t / ours_t, "", "", a, r, f"{source}; the differences are the sampled mean's error")


def bench_cka(sizes: Sizes, state: dict) -> list[dict]:
    from repshift import similarity

    rows = []
    for d in sizes.cka_dims:
        layers = real_layers(state, sizes.cka_n, d)
        source = "MiniLM token vectors" if layers is not None else "structured random"
        if layers is None:
            layers = structured_layers(sizes.cka_n, d, seed=d)
        L, n_pairs = len(layers), len(layers) * (len(layers) - 1) // 2
        full = f"n={sizes.cka_n}, d={d}"

        linear_t, linear = timed(lambda: similarity.cka_matrix(layers), sizes.repeat)
        for debiased, kind in ((False, "linear"), (True, "debiased")):
            ours_t, ours = (linear_t, linear) if not debiased else timed(
                lambda: similarity.cka_matrix(layers, debiased=True), sizes.repeat)
            ref_t, ref = timed(lambda: feature_loop(layers, debiased=debiased), max(1, sizes.repeat - 1))
            a, r = rel_diff(ours, ref)
            rows.append(row("cka", f"{kind} CKA {L}x{L}: cka_matrix vs google-research feature-space formula, one "
                                   f"call per pair ({n_pairs} pairs)", full, ours_t, ref_t, "s", ref_t / ours_t,
                            max_abs_diff=a, max_rel_diff=r,
                            note=f"{source}; same O(n d^2) algorithm, no target: it forms 3 d x d products per pair "
                                 f"({3 * n_pairs}), cka_matrix one per pair plus one per layer ({n_pairs + L}), so "
                                 f"{3 * n_pairs / (n_pairs + L):.2f}x is the most a faster implementation can gain"))

        rows.append(permutation_baseline([a_[: sizes.iso_n] for a_ in layers], source))
        gc.collect()
        pairs = upper_pairs(L)[: sizes.ckatorch_pairs]
        ref_t, ref = timed(lambda: ckatorch_pairs(layers, pairs), 1)
        a, r = rel_diff([linear[p] for p in pairs], [ref[p] for p in pairs])
        rows.append(row("cka", f"linear CKA: cka_matrix, all {n_pairs} pairs, vs ckatorch cka_base on {len(pairs)} "
                               f"pairs", full, linear_t, ref_t, "s", ref_t / linear_t, ">= 10",
                        check(ref_t / linear_t, ">= 10"), a, r,
                        f"{source}; ckatorch measured on layer pairs {pairs}: its n x n float64 Gram matrices make "
                        f"every pair cost the same, so all {n_pairs} pairs would take {n_pairs / len(pairs):.1f}x "
                        f"this and the ratio understates by that factor"))
        gc.collect()

        small = [a_[: sizes.ckatorch_n] for a_ in layers]
        ours_t, ours = timed(lambda: similarity.cka_matrix(small), sizes.repeat)
        ref_t, ref = timed(lambda: ckatorch_loop(small), 1)
        a, r = rel_diff(ours, ref)
        rows.append(row("cka", f"linear CKA {L}x{L}: cka_matrix vs ckatorch cka_base loop ({n_pairs} pairs)",
                        f"n={sizes.ckatorch_n}, d={d}", ours_t, ref_t, "s", ref_t / ours_t, ">= 10",
                        check(ref_t / ours_t, ">= 10"), a, r, f"{source}; all pairs measured"))
        del small
        gc.collect()

        small = [a_[: sizes.torchcka_n] for a_ in layers]
        ours_t, ours = timed(lambda: similarity.cka_matrix(small, debiased=True), sizes.repeat)
        ref_t, ref = timed(lambda: torchcka_matrix(small), 1)
        a, r = rel_diff(ours, ref)
        rows.append(row("cka", f"debiased CKA {L}x{L}: cka_matrix vs torch-cka CKA.compare (one batch)",
                        f"n={sizes.torchcka_n}, d={d}", ours_t, ref_t, "s", ref_t / ours_t, ">= 10",
                        check(ref_t / ours_t, ">= 10"), a, r,
                        f"{source}; torch-cka multiplies n x n matrices (O(n^3)) for all {L * L} pairs, so n=20,000 "
                        f"is out of reach (hours per pair): compared at this n"))
        del layers, small
        gc.collect()
    return rows


# ---------------------------------------------------------------------------------------------- 3. RSA, IsoScore, probes

def stored_tokens(state: dict, n: int):
    """The first n content-token vectors (no [CLS]/[SEP]) of every layer of the extraction, as float64."""
    path = state.get("activations")
    if path is None:
        return None
    from repshift.activations import Activations

    with Activations(path) as act:
        rows_ = np.flatnonzero(~act.token_meta("special"))[:n]
        return [act.tokens(layer, rows_).astype(np.float64) for layer in range(act.n_layers)]


def rsatoolbox_rsa(X, Y, method):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare

    rdms = [calc_rdm(Dataset(Z / np.linalg.norm(Z, axis=1, keepdims=True)), method="euclidean") for Z in (X, Y)]
    return float(compare(rdms[0], rdms[1], method={"pearson": "corr", "spearman": "spearman"}[method])[0, 0])


def bench_rsa(sizes: Sizes, state: dict) -> list[dict]:
    from repshift import similarity

    layers = stored_tokens(state, sizes.rsa_n) or structured_layers(sizes.rsa_n, 384)
    n = layers[0].shape[0]
    pairs = list(zip(layers[:-1], layers[1:]))
    rows = []
    for method in ("pearson", "spearman"):
        ours_t, ours = timed(lambda: [similarity.rsa(x, y, method) for x, y in pairs], sizes.repeat)
        ref_t, ref = timed(lambda: [rsatoolbox_rsa(x, y, method) for x, y in pairs], sizes.repeat)
        a, r = rel_diff(ours, ref)
        rows.append(row("rsa", f"RSA {method}, layer l vs l+1 ({len(pairs)} pairs): similarity.rsa vs rsatoolbox",
                        f"n={n}, d={layers[0].shape[1]}", ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r,
                        "rsatoolbox: squared-euclidean RDM of unit rows (= 2 - 2 cos), compare corr/spearman"))
    return rows


def bench_isoscore(sizes: Sizes, state: dict) -> list[dict]:
    from IsoScore import IsoScore

    from repshift import isotropy

    layers = stored_tokens(state, sizes.iso_n) or structured_layers(sizes.iso_n, 384)
    ours_t, ours = timed(lambda: [isotropy.isoscore(x) for x in layers], sizes.repeat)
    ref_t, ref = timed(lambda: [float(IsoScore.IsoScore(x)) for x in layers], sizes.repeat)
    a, r = rel_diff(ours, ref)
    return [row("isoscore", f"IsoScore, {len(layers)} layers: isotropy.isoscore vs IsoScore 2.0.1",
                f"n={layers[0].shape[0]}, d={layers[0].shape[1]}", ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r)]


def sklearn_probe_layers(layers, labels, train, test, l2=1e-3, max_iter=200):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    accuracies = []
    for X in layers:
        scaler = StandardScaler().fit(X[train])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=1.0 / (l2 * len(train)), max_iter=max_iter)
            model.fit(scaler.transform(X[train]), labels[train])
        accuracies.append(float(np.mean(model.predict(scaler.transform(X[test])) == labels[test])))
    return np.array(accuracies)


def bench_probes(sizes: Sizes, state: dict) -> list[dict]:
    from repshift import probing
    from repshift.activations import Activations

    path = state.get("activations")
    if path is None:
        return [row("probes", "POS probe, all layers", note="skipped: needs the extraction section")]
    with Activations(path) as act:
        rows_, starts = act.words()
        tags = act.token_meta("pos_tag")[rows_][starts]
        sentence = act.token_meta("sentence_id")[rows_][starts]
        words = [act.word_vectors(layer) for layer in range(act.n_layers)]
    train, test = probing.split_indices(len(tags), 0.25, 0, groups=sentence)
    ours_t, ours = timed(lambda: probing.probe_layers(words, tags, train, test, seed=0), 1)
    ref_t, ref = timed(lambda: sklearn_probe_layers(words, tags, train, test), 1)
    a, r = rel_diff(ours, ref)
    return [row("probes", f"POS probe, {len(words)} layers: probing.probe_layers vs sklearn LogisticRegression",
                f"{len(tags)} words ({len(train)} train), d={words[0].shape[1]}, {len(np.unique(tags))} tags",
                ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r,
                f"accuracies: repshift {np.round(ours, 3).tolist()}, sklearn {np.round(ref, 3).tolist()}; "
                "same objective (C = 1/(l2 n_train)), max_iter 200 each")]


def bench_layerdrop(sizes: Sizes, work: Path) -> list[dict]:
    """finetune.layer_drop (one forward pass, the head reading every layer's [CLS]) against the truncation loop it
    replaced (one pass per depth through the kept blocks), each loading the model, on a classifier whose head is
    seeded at random: the accuracies must agree, whatever they are."""
    import pandas as pd
    import torch

    from repshift import finetune
    from repshift.models import load_encoder, load_tokenizer, resolve_model

    words, _ = probe_sentences(sizes.sentences)
    texts = [" ".join(sentence) for sentence in words]
    labels = [i % 2 for i in range(len(texts))]
    resolved, model_dir = resolve_model(MODEL_ID), work / "layerdrop-model"
    torch.manual_seed(0)
    load_encoder(resolved.path, head=SEQUENCE_HEAD, labels=2).save_pretrained(model_dir, safe_serialization=True)
    load_tokenizer(resolved.path).save_pretrained(model_dir)
    task_file, out = work / "layerdrop-task.json", work / "layerdrop.csv"
    task_file.write_text(json.dumps({"kind": "classification", "label_names": ["a", "b"],
                                     "dev": {"text": texts, "label": labels}}))
    settings = {"max_length": 64, "eval_batch_size": 64}

    def one_pass():
        with contextlib.redirect_stdout(io.StringIO()):
            finetune.layer_drop(model_dir, task_file, out, settings, sizes.threads, {})
        return pd.read_csv(out)["dev_metric"].to_numpy()

    def truncation_loop():
        device = finetune.select_device(sizes.threads)
        model = KINDS["classification"].load_model(model_dir, labels=2).to(device)
        tokenizer = finetune.load_tokenizer(model_dir)
        kind = KINDS["classification"]
        dev = kind.encode(tokenizer, {"text": texts, "label": labels}, settings["max_length"])
        blocks = list(model.base_model.encoder.layer)
        accuracies = []
        for dropped in range(len(blocks)):
            model.base_model.encoder.layer = torch.nn.ModuleList(blocks[: len(blocks) - dropped])
            accuracies.append(finetune.evaluate(model, tokenizer, kind, dev, settings, device).scores[ACCURACY])
        return np.array(accuracies)

    one_pass()
    ours_t, ours = timed(one_pass, sizes.repeat)
    ref_t, ref = timed(truncation_loop, sizes.repeat)
    a, r = rel_diff(ours, ref)
    return [row("layerdrop", "layer drop, every depth: finetune.layer_drop (one pass) vs the truncation loop",
                f"{len(texts)} dev sentences, {len(ours)} depths", ours_t, ref_t, "s", ref_t / ours_t, ">= 2",
                check(ref_t / ours_t, ">= 2"), a, r, f"accuracies {np.round(ours, 3).tolist()}; each loads the model")]


def bench_replicates(sizes: Sizes, state: dict) -> list[dict]:
    """Bootstrap replicates on the top layer's stored tokens (sizes as the metrics step samples them): the weighted
    form (metrics reads each drawn row once, with its count) against the measure on the resampled copy."""
    from repshift import isotropy, similarity

    iso, pair = (stored_tokens(state, n) or structured_layers(n, 384) for n in (sizes.iso_n, sizes.rsa_n))
    measures = [("I(W), raw", iso[-1:], lambda x, **w: isotropy.partition_isotropy(x, **w)),
                ("I(W), centred", iso[-1:], lambda x, **w: isotropy.partition_isotropy(x, centre=True, **w)),
                ("Pearson RSA", [pair[0], pair[-1]], lambda x, y, **w: similarity.rsa(x, y, "pearson", **w)),
                ("linear CKA", [pair[0], pair[-1]], lambda x, y, **w: similarity.linear_cka(x, y, **w))]
    rows = []
    for name, arrays, measure in measures:
        n = arrays[0].shape[0]
        rng = np.random.default_rng(0)
        counts = [rng.multinomial(n, np.full(n, 1 / n)) for _ in range(sizes.replicates)]
        kept = [np.flatnonzero(c) for c in counts]
        ours_t, ours = timed(lambda: [measure(*(a[k] for a in arrays), weights=c[k]) for c, k in zip(counts, kept)],
                             sizes.repeat)
        ref_t, ref = timed(lambda: [measure(*(np.repeat(a, c, axis=0) for a in arrays)) for c in counts],
                           sizes.repeat)
        a, r = rel_diff(np.array(ours), np.array(ref))
        rows.append(row("replicates", f"{name}, {sizes.replicates} bootstrap replicates: row weights vs the copy",
                        f"n={n}, d={arrays[0].shape[1]}", ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r,
                        "top layer of the stored tokens (layer 0 vs top for the pairs); row resamples"))
    return rows + [isotropy_family_replicates(sizes, iso[-1])]


def isotropy_family_replicates(sizes: Sizes, X: np.ndarray) -> dict:
    """Every weighted isotropy measure of the catalog on the same replicates, as metrics settles them (one
    decomposition per replicate shared by all): row weights against the resampled copy."""
    from repshift import catalog, isotropy

    family = [m for m in catalog.MEASURES if m.family == "isotropy" and m.weighted]
    n = X.shape[0]
    frequency = np.random.default_rng(1).integers(1, 60, n)
    rng = np.random.default_rng(0)
    counts = [rng.multinomial(n, np.full(n, 1 / n)) for _ in range(sizes.replicates)]

    def settle(weighted: bool) -> list[float]:
        values = []
        with isotropy.sharing_decompositions():
            for c in counts:
                rows = np.flatnonzero(c) if weighted else np.repeat(np.arange(n), c)
                x, y, extra = X[rows], frequency[rows], ({"weights": c[rows]} if weighted else {})
                for measure in family:
                    inputs = (x, y, rows) if measure.takes == "labelled" else (x,)
                    values.append(float(measure.bind(measure.settings, {"seed": 0})(*inputs, **extra)))
        return values

    ours_t, ours = timed(lambda: settle(True), sizes.repeat)
    ref_t, ref = timed(lambda: settle(False), sizes.repeat)
    a, r = rel_diff(np.array(ours), np.array(ref))
    return row("replicates", f"the {len(family)} weighted isotropy measures together, {sizes.replicates} bootstrap "
               "replicates: row weights vs the copy, one decomposition per replicate either way", f"n={n}, "
               f"d={X.shape[1]}", ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r,
               ", ".join(m.name for m in family) + "; top layer of the stored tokens, random frequencies")


def train_child(threads: str, steps: str) -> None:
    """Run in a subprocess (torch's thread count is per process): seconds per MiniLM training step at `threads`."""
    import torch

    from repshift.models import autocast, load_encoder, resolve_model, training_precision

    torch.set_num_threads(int(threads))
    cpu = torch.device("cpu")
    model = load_encoder(resolve_model(MODEL_ID).path, head=SEQUENCE_HEAD, labels=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    batch, labels = torch.randint(1000, 20000, (32, 30)), torch.randint(0, 2, (32,))
    start = None
    for step in range(int(steps) + 2):
        start = time.perf_counter() if step == 2 else start
        with autocast(cpu, training_precision(cpu, "auto")):
            loss = model(input_ids=batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / int(steps)}))


def thread_split(sizes: Sizes) -> dict:
    """Training throughput of two fine-tunes side by side at 1 thread each against one at 2 threads (the two ways a
    2-core `snakemake --cores 2` can spend its cores on fine-tuning jobs)."""
    def children(threads: int, count: int) -> list[float]:
        command = [sys.executable, __file__, "--train-child", str(threads), str(sizes.train_steps)]
        running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
        return [json.loads(child.communicate()[0].strip().splitlines()[-1])["seconds_per_step"] for child in running]

    (alone,) = children(2, 1)
    side_by_side = children(1, 2)
    ours, ref = sum(1 / s for s in side_by_side), 1 / alone
    return row("finetune", "MiniLM training throughput: two processes of 1 thread side by side vs one of 2 threads",
               f"batch 32 x 30, {sizes.train_steps} steps", ours, ref, "steps/s", ours / ref, "", "", None, None,
               f"s/step: {alone:.3f} alone at 2 threads, {side_by_side[0]:.3f} and {side_by_side[1]:.3f} side by "
               "side at 1; why config.yaml gives finetune and extract 1 thread")


def bench_finetune(sizes: Sizes) -> list[dict]:
    """MiniLM training steps (batch 32 x 30 pieces) from the same start: finetune's fused AdamW against the per-tensor
    AdamW (the weights after the same steps agree to float32 rounding), steps under the bfloat16 autocast that
    finetune.precision "auto" picks on this CPU against float32, and two 1-thread processes against one of 2 threads
    (thread_split)."""
    import torch

    from repshift.finetune import FUSED_ADAMW
    from repshift.models import autocast, load_encoder, resolve_model, training_precision

    path = resolve_model(MODEL_ID).path
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(1000, 20000, (32, 30), generator=generator)
    labels = torch.randint(0, 2, (32,), generator=generator)
    cpu = torch.device("cpu")

    def train(fused, precision="float32"):
        torch.manual_seed(0)
        model = load_encoder(path, head=SEQUENCE_HEAD, labels=2).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=fused)
        start = time.perf_counter()
        for _ in range(sizes.train_steps):
            with autocast(cpu, precision):
                loss = model(input_ids=batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        seconds = (time.perf_counter() - start) / sizes.train_steps
        return seconds, torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()

    def differences(ours, ref):
        largest = float(np.abs(ours - ref).max())
        return largest, largest / float(np.abs(ref).max())

    fused = "cpu" in FUSED_ADAMW
    ours_t, ours = train(fused)
    ref_t, ref = train(False)
    precision = training_precision(cpu, "auto")
    low_t, low = train(fused, precision)
    size = f"batch 32 x 30, {sizes.train_steps} steps"
    return [row("finetune", "MiniLM training step: fused AdamW vs per-tensor AdamW", size, ours_t, ref_t, "s/step",
                ref_t / ours_t, "", "", *differences(ours, ref),
                "dropout on, same seed; diff: every weight after the steps"),
            row("finetune", f"MiniLM training step: {precision} autocast (precision auto) vs float32, fused AdamW",
                size, low_t, ours_t, "s/step", ours_t / low_t, "", "", *differences(low, ours),
                "diff: every weight after the steps (bfloat16 matmuls: not a rounding-level match)"),
            thread_split(sizes)]


# the "CKA, RSA and isotropy": the measures whose float16 change has a target (below 1e-3 absolute)
STORE_TARGET_UNITS = ("I(W)", "IsoScore", "cosine", "CKA", "Pearson r", "Spearman rho")


def tuned_copy(words: list[list[str]], labels: list[int], out: Path, steps: int = 30) -> Path:
    """MiniLM fine-tuned for a few steps on `words` (sequence classification on `labels`), saved with its head."""
    import torch

    from repshift.models import load_encoder, load_tokenizer, resolve_model

    path = resolve_model(MODEL_ID).path
    tokenizer, model = load_tokenizer(path), load_encoder(path, head=SEQUENCE_HEAD, labels=2).train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = rng.choice(len(words), 16, replace=False)
        encoded = tokenizer([words[i] for i in batch], is_split_into_words=True, truncation=True, max_length=64,
                            padding=True, return_tensors="pt")
        model(**encoded, labels=torch.as_tensor([labels[i] for i in batch])).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out / "model.safetensors"


def bench_store(sizes: Sizes, work: Path) -> list[dict]:
    """extract.dtype float16 against float32: the same sentences (POS-tagged, labelled by whether they hold a
    number) extracted from MiniLM and from a copy fine-tuned on those labels, then every catalog measure of both
    models and every pair measure between them (metrics and compare, the workflow's settings), side by side."""
    import pandas as pd

    from repshift import activations, catalog, metrics

    words, tags = probe_sentences(sizes.store_sentences, seed=1)
    labels = [int("CD" in sentence) for sentence in tags]
    probe = write_probe(work / "store-probe.json", words, tags)
    payload = json.loads(probe.read_text())
    probe.write_text(json.dumps({**payload, "labels": labels, "label_names": ["no number", "number"]}))
    weights = tuned_copy(words, labels, work / "store-tuned")
    shared = {**schema_defaults("metrics"), "n_boot": sizes.store_boot}
    settings = {"metrics": shared, "measures": catalog.resolve(sizes.store_measures, shared["layer_by_layer"])}
    identity = {"model": "minilm", "probe": "store", "probe_role": catalog.DEV_ROLE, "task": "", "seed": "",
                "code_version": "benchmark"}
    models = {"base": ({"id": MODEL_ID}, None), "tuned": ({"id": str(weights.parent)}, weights)}
    seconds, tables, stored, n_tokens = {}, {}, {}, 0
    for dtype in ("float32", "float16"):
        extract_seconds = metric_seconds = 0.0
        files = {}
        for variant, (spec, tuned_weights) in models.items():
            files[variant] = work / f"store-{variant}-{dtype}.h5"
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                activations.extract(spec, probe, files[variant], {**schema_defaults("extract"), "dtype": dtype},
                                    sizes.threads, {"model": "minilm", "variant": variant, "probe": "store"})
            extract_seconds += time.perf_counter() - start
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                metrics.layer_metrics(files[variant], work / f"store-{variant}-{dtype}.csv", settings,
                                      {**identity, "variant": variant}, tuned_weights)
            metric_seconds += time.perf_counter() - start
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            metrics.compare_metrics(files["base"], files["tuned"], weights, work / f"store-compare-{dtype}.csv",
                                    settings, {**identity, "variant": "tuned"})
        metric_seconds += time.perf_counter() - start
        tables[dtype] = pd.concat([pd.read_csv(work / f"store-{name}-{dtype}.csv")
                                   for name in ("base", "tuned", "compare")])
        with activations.Activations(files["base"]) as act:
            n_tokens = len(act.token_meta("piece_id"))
        stored[dtype] = sum(f.stat().st_size for f in files.values())
        seconds[dtype] = (extract_seconds, metric_seconds)
    keys = ["variant", "representation", "layer", "layer_b", "measure"]
    joined = tables["float32"].merge(tables["float16"], on=keys, suffixes=("_32", "_16"), validate="one_to_one")
    size = f"{sizes.store_sentences} sentences, {n_tokens} tokens, 2 models"
    rows = [row("store", "activation files: float16 vs float32 store", size, stored["float16"] / 2**20,
                stored["float32"] / 2**20, "MiB", stored["float32"] / stored["float16"],
                note="both models' files; fletcher32-checksummed chunks of 2,048 rows"),
            row("store", "extract(): float16 vs float32 store, both models", size, seconds["float16"][0],
                seconds["float32"][0], "s", seconds["float32"][0] / seconds["float16"][0],
                note="wall, model load and tokenize included"),
            row("store", "metrics + compare on float16 vs float32 files", size, seconds["float16"][1],
                seconds["float32"][1], "s", seconds["float32"][1] / seconds["float16"][1],
                note=f"the catalog's every measure, n_boot={sizes.store_boot}, settings over the defaults: "
                     f"{sizes.store_measures or 'none'}; reads upcast to float32")]
    for name, group in joined.groupby("measure", sort=False):
        unit = catalog.get(name.removesuffix(catalog.VERSUS)).unit
        changes = [np.abs(group[f"{column}_16"] - group[f"{column}_32"]) for column in ("value", "ci_low", "ci_high")]
        largest = max(float(c.max()) if c.notna().any() else 0.0 for c in changes)
        scale = float(np.nanmax(np.abs(group["value_32"]))) if group["value_32"].notna().any() else 0.0
        target = "<= 0.001" if unit in STORE_TARGET_UNITS else ""
        rows.append(row("store", f"{name}: largest change, float16 vs float32 store", size, largest, scale,
                        f"abs change vs largest |value| ({unit or 'value'})", None, target, check(largest, target),
                        largest, largest / scale if scale else None,
                        note=f"{len(group)} values over layers, models and representations, 95% interval ends "
                             "included" + ("" if target else "; no target: a count or a held-out prediction moves in "
                                                              "whole steps")))
    return rows


# ---------------------------------------------------------------------------------------------- 4. memory

# ---------------------------------------------------------------------------------------------- DirectProbe

# The last commit with the previous implementation: every overlap decided by a full LP, the n x n centroid matrix
# scanned at every merge, a bordered solve at every Wolfe step.
DIRECTPROBE_BEFORE = "916d446"
DIRECTPROBE_TARGETS = {"separate": "<= 30", "mix": "<= 300"}  # seconds per layer: "seconds" and "minutes at most"


def previous_module(name: str, commit: str):
    """repshift.<name> as of `commit`, loaded from git to be timed beside the current one; None in a checkout
    without that commit (a shallow clone)."""
    import types

    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:src/repshift/{name}.py"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    module = types.ModuleType(f"{name}_{commit}")
    exec(compile(shown.stdout, module.__name__, "exec"), module.__dict__)
    return module


def word_vectors(count: int, work: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """MiniLM word vectors (mean of each word's pieces) of every layer for at least `count` WSJ words, and their
    POS tags."""
    from repshift import activations

    words, tags = probe_sentences(max(count // 15, 4), seed=2)
    probe = write_probe(work / "directprobe-probe.json", words, tags)
    out = work / "directprobe.h5"
    with contextlib.redirect_stdout(io.StringIO()):
        activations.extract({"id": MODEL_ID}, probe, out, schema_defaults("extract"), 1,
                            {"model": "minilm", "variant": "base", "probe": "directprobe"})
    with activations.Activations(out) as act:
        layers = [act.word_vectors(layer) for layer in range(act.n_layers)]
    return layers, np.array([tag for sentence in tags for tag in sentence])


def shared_point_clusters(X: np.ndarray, y: np.ndarray, ids: np.ndarray) -> int:
    """Clusters of two or more points holding a point that a cluster of another label also holds: their hulls meet,
    so a correct DirectProbe partition has none."""
    copies = np.unique(X, axis=0, return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(ids)
    return sum(1 for k in np.unique(ids) if sizes[k] > 1 and np.isin(copies[ids == k], copies[y != y[ids == k][0]]).any())


def bench_directprobe(sizes: Sizes, work: Path) -> list[dict]:
    """DirectProbe (clusters, margins and spread) on real word vectors, per layer: at the issue's 5,000 points
    against its target, and beside the previous implementation at a size where that one finishes."""
    from repshift import directprobe

    layers, tags = word_vectors(sizes.directprobe_points, work)
    top = layers[-1] - layers[-1].mean(axis=0)
    side = top @ np.linalg.svd(top, full_matrices=False)[2][0]
    clear = np.abs(side) > np.quantile(np.abs(side), 0.1)
    cases = [("POS tags, layer 0", layers[0], tags, "mix"),
             (f"POS tags, layer {len(layers) - 1}", layers[-1], tags, "mix"),
             ("sign of PC 1 (the 10% nearest 0 left out), top layer", layers[-1][clear], side[clear] > 0, "separate")]
    before = previous_module("directprobe", DIRECTPROBE_BEFORE)
    keys = ("min_distance_all", "mean_distance_all", "label_spread")
    rows = []
    for name, X, y, kind in cases:
        n = min(sizes.directprobe_points, len(y))
        seconds, result = timed(lambda: directprobe.directprobe(X, y, max_points=n, seed=0))
        target = DIRECTPROBE_TARGETS[kind]
        rows.append(row("directprobe", f"{name}: repshift at {n} points", f"n={n}, d={X.shape[1]}", seconds, None,
                        "s", None, target, check(seconds, target), note=f"target for labels that {kind}; "
                        f"{result['n_clusters']} clusters for {result['n_labels']} labels"))
        m = min(sizes.directprobe_reference, len(y))
        ours_t, ours = timed(lambda: directprobe.directprobe(X, y, max_points=m, seed=0))
        if before is None:
            rows.append(row("directprobe", f"{name}: repshift vs the previous implementation ({DIRECTPROBE_BEFORE})",
                            f"n={m}, d={X.shape[1]}", ours_t, None, "s", note=f"previous implementation not "
                            f"measured: commit {DIRECTPROBE_BEFORE} is not in this checkout's history"))
            continue
        ref_t, ref = timed(lambda: before.directprobe(X, y, max_points=m, seed=0))
        keep = directprobe._stratified_sample(y, m, 0) if len(y) > m else np.arange(len(y))
        broken = {name: shared_point_clusters(X[keep], y[keep], module.cluster_labels(X[keep], y[keep]))
                  for name, module in (("repshift", directprobe), ("previous", before))}
        same = ours["n_clusters"] == ref["n_clusters"] and broken["previous"] == 0
        a, r = rel_diff(np.array([ours[k] for k in keys]), np.array([ref[k] for k in keys])) if same else (None, None)
        rows.append(row("directprobe", f"{name}: repshift vs the previous implementation ({DIRECTPROBE_BEFORE})",
                        f"n={m}, d={X.shape[1]}", ours_t, ref_t, "s", ref_t / ours_t, "", "", a, r,
                        f"clusters: {ours['n_clusters']} vs {ref['n_clusters']}; clusters holding a point another "
                        f"label's cluster also holds (their hulls overlap): {broken['repshift']} vs "
                        f"{broken['previous']}" + ("; min and mean margins and spread compared" if same else "")))
    return rows


def schema_defaults(section: str) -> dict:
    """The workflow's default settings for one config section (`extract`, `metrics`), from its schema."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    properties = schema["properties"][section]["properties"]
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


SYNTHETIC = {"model": "synthetic", "variant": "base", "probe": "synthetic"}


def make_activation_file(path: Path, n_tokens: int, d: int = 384, n_layers: int = 7, seed: int = 0,
                         sentence_tokens: int = 25) -> Path:
    """A file in repshift's extraction format (activations._create's chunking and compression), written in blocks."""
    import h5py

    from repshift import activations

    rng = np.random.default_rng(seed)
    n_sent = math.ceil(n_tokens / sentence_tokens)
    lengths = np.full(n_sent, sentence_tokens)
    lengths[-1] = n_tokens - sentence_tokens * (n_sent - 1)
    sentence_id = np.repeat(np.arange(n_sent), lengths).astype(np.int32)
    position = np.arange(n_tokens) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    word_index = np.where((position == 0) | (position == np.repeat(lengths, lengths) - 1), -1, position - 1)
    block = 16 * activations.CHUNK_ROWS
    pool_rows = 2 * block
    scale = (1.0 / np.sqrt(1.0 + np.arange(d))).astype(np.float32)
    pool = [rng.standard_normal((pool_rows, d)).astype(np.float32) * scale + 0.5 * scale]
    for _ in range(n_layers - 1):
        mix = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
        pool.append(0.7 * pool[-1] + 0.5 * pool[-1] @ mix
                    + 0.2 * rng.standard_normal((pool_rows, d)).astype(np.float32) * scale)
    with h5py.File(path, "w") as handle:
        hidden = activations._create(handle, "tokens/hidden", (n_layers, n_tokens, d), "float32")
        for kind in ("cls", "mean"):
            sentences = activations._create(handle, f"sentences/{kind}", (n_layers, n_sent, d), "float32")
            for layer in range(n_layers):
                for start in range(0, n_sent, block):
                    stop = min(start + block, n_sent)
                    sentences[layer, start:stop] = pool[layer][start % block: start % block + stop - start]
        for layer in range(n_layers):
            for number, start in enumerate(range(0, n_tokens, block)):
                stop = min(start + block, n_tokens)
                offset = (number * 4099) % block
                hidden[layer, start:stop] = pool[layer][offset: offset + stop - start]
        handle["tokens/sentence_id"] = sentence_id
        handle["tokens/word_index"] = word_index.astype(np.int32)
        handle["tokens/piece_id"] = (rng.zipf(1.3, n_tokens) % 30000).astype(np.int32)
        handle["tokens/special"] = word_index < 0
        handle["tokens/pos_tag"] = np.full(n_tokens, -1, dtype=np.int16)
        handle["sentences/sentence_id"] = np.arange(n_sent, dtype=np.int32)
        handle["sentences/label"] = np.full(n_sent, -1, dtype=np.int32)
        handle["sentences/n_tokens"] = lengths.astype(np.int32)
        handle.attrs.update({
            "format_version": activations.FORMAT_VERSION,
            "provenance": json.dumps({**SYNTHETIC, "task": "", "seed": "", "model_id": "synthetic",
                                      "weights_sha256": "0" * 64, "n_layers": n_layers, "hidden_size": d,
                                      "dtype": "float32"}),
            "tag_names": "[]", "label_names": "[]", "complete": True,
        })
    return path


def high_water_kib() -> int:
    """Peak resident set of this process's own address space since exec (VmHWM), in KiB.

    getrusage(RUSAGE_SELF).ru_maxrss is not that: Linux carries the parent's peak across fork/vfork + exec,
    so a child started by a big parent reports at least the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(path: str, part: str, settings_json: str) -> None:
    """Run in a subprocess: the metrics step (or its CKA part) on one file; print what it took."""
    start = time.perf_counter()
    from repshift import metrics, similarity
    from repshift.activations import Activations

    settings = json.loads(settings_json)
    floor = high_water_kib()
    if part == "metrics":
        identity = {**SYNTHETIC, "task": "", "seed": "", "code_version": "benchmark"}
        with contextlib.redirect_stdout(io.StringIO()):
            metrics.layer_metrics(path, Path(path).with_suffix(".csv"), settings, identity)
    else:
        shared = settings["metrics"]
        with Activations(path) as act:
            index = metrics.token_sample(act, shared["max_tokens"], shared["seed"])
            tokens = [act.tokens(layer, index).astype(np.float64) for layer in range(act.n_layers)]
        for debiased in (False, True):
            similarity.cka_matrix(tokens, debiased=debiased)
    print(json.dumps({"import_kib": floor, "peak_kib": high_water_kib(), "seconds": time.perf_counter() - start}))


# The launcher between this (large) process and the measured child: a small python whose
# getrusage(RUSAGE_CHILDREN) is the child's peak RSS, not inflated by this process's own peak.
LAUNCHER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr[-3000:])
report = json.loads(done.stdout.strip().splitlines()[-1])
report["rusage_children_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(report))
"""


def run_measured(command: list[str]) -> dict:
    """Run `command` (which prints a JSON line) through the launcher; add the child's peak RSS from getrusage."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# What the memory rows have measured since they were written: the isotropy family's token measures on the token sample
# and linear and debiased CKA (with block-diagonality) on the same sample and on [CLS]. Every other measure is off.
MEMORY_CKA = ("linear_cka", "debiased_cka", "block_diagonality_linear_cka", "block_diagonality_debiased_cka")


def memory_settings(max_tokens: int) -> dict:
    """layer_metrics' settings for the memory rows: the schema's shared `metrics` defaults (max_tokens changed) and
    the isotropy family's token measures and MEMORY_CKA; CKA on the sample (all_tokens off), as before streaming."""
    from repshift import catalog

    def kept(m):
        return m.name in MEMORY_CKA or (m.family == "isotropy" and m.representations == ("token",))

    chosen = {m.name: False for m in catalog.MEASURES if not kept(m)}
    chosen.update({name: {"all_tokens": False} for name in ("linear_cka", "debiased_cka")})
    measures = catalog.resolve(chosen)
    shared = {**schema_defaults("metrics"), "max_tokens": max_tokens}
    if "layer_by_layer" in shared:  # the pair measures computed layer x layer: those still on
        shared["layer_by_layer"] = [name for name in shared["layer_by_layer"] if name in measures]
    return {"metrics": shared, "measures": measures}


def bench_memory(sizes: Sizes, work: Path) -> list[dict]:
    settings = memory_settings(sizes.memory_max_tokens)
    results = []
    for n in sizes.memory_sizes:
        path = work / f"synthetic-{n}.h5"
        make_time, _ = timed(lambda: make_activation_file(path, n))
        report = run_measured([sys.executable, str(Path(__file__).resolve()), "--memory-child", str(path),
                               sizes.memory_part, json.dumps(settings)])
        results.append((n, report["rusage_children_kib"], report, path.stat().st_size, make_time))
        path.unlink()
        for extra in path.parent.glob(f"{path.stem}*"):
            extra.unlink()
    rows = []
    smallest = results[0][1]
    what = ("layer_metrics (isotropy suite + token and [CLS] CKA; no tags or labels, so no probes)"
            if sizes.memory_part == "metrics" else "token_sample + token layers + linear and debiased cka_matrix")
    for n, peak_kb, report, file_bytes, make_time in results:
        rows.append(row("memory", f"peak RSS of {what}", f"n={n:,} tokens x 7 layers x 384 "
                                                          f"({file_bytes / 2**30:.2f} GiB file)",
                        peak_kb / 1024, smallest / 1024, "MiB", peak_kb / smallest, "<= 1.25",
                        check(peak_kb / smallest, "<= 1.25"),
                        note=f"max_tokens={sizes.memory_max_tokens}; ratio = peak / peak at the smallest n; "
                             f"getrusage(RUSAGE_CHILDREN) of a small launcher; VmHWM {report['peak_kib'] / 1024:.0f} "
                             f"MiB, after imports {report['import_kib'] / 1024:.0f} MiB; step {report['seconds']:.1f} s"))
    return rows


# ---------------------------------------------------------------------------------------------- 4b. streaming

def streaming_child(path: str, mode: str, settings_json: str) -> None:
    """Run in a subprocess: one CKA estimator on one synthetic file; print its matrix, its time and its peak RSS.

    stream     exact linear CKA over every content token: Activations.token_blocks chunks into CKAStream
    minibatch  MinibatchCKA(batch) over the same chunks (Nguyen et al.'s estimator, not exact CKA)
    sample     the default's seeded token sample (metrics.token_sample) and cka_matrix in memory
    ckatorch   the first n content tokens: CKAStream over their chunks, then ckatorch cka_base on `pairs`
    torchcka   the first n content tokens: CKAStream(debiased=True), then torch-cka CKA.compare (one batch)
    """
    start = time.perf_counter()
    from repshift import metrics, similarity
    from repshift.activations import Activations

    settings = json.loads(settings_json)
    floor = high_water_kib()
    report = {}
    began = time.perf_counter()
    with Activations(path) as act:
        rows_ = metrics.content_tokens(act)
        if mode in ("stream", "minibatch"):
            stream = similarity.CKAStream() if mode == "stream" else similarity.MinibatchCKA(settings["batch"])
            adding = 0.0
            for chunk in act.token_blocks(rows_):
                at = time.perf_counter()
                stream.add(chunk)
                adding += time.perf_counter() - at
            matrix = stream.matrix()
            report.update(add_seconds=adding, rows=len(rows_))
        elif mode == "sample":
            index = metrics.token_sample(act, settings["sample"], settings["seed"])
            matrix = similarity.cka_matrix([act.tokens(layer, index) for layer in range(act.n_layers)])
            report.update(rows=len(index))
        else:
            chunks = list(act.token_blocks(rows_[: settings["n"]]))
            report.update(read_seconds=time.perf_counter() - began, rows=sum(len(c[0]) for c in chunks))
            at = time.perf_counter()
            stream = similarity.CKAStream(debiased=mode == "torchcka")
            for chunk in chunks:
                stream.add(chunk)
            matrix = stream.matrix()
            report.update(stream_seconds=time.perf_counter() - at, stream_peak_kib=high_water_kib())
            layers = [np.concatenate(parts).astype(np.float64) for parts in zip(*chunks)]
            del chunks
            at = time.perf_counter()
            if mode == "ckatorch":
                pairs = [tuple(p) for p in settings["pairs"]]
                found = ckatorch_pairs(layers, pairs)
                report["reference"] = [found[p] for p in pairs]
                report["ours"] = [float(matrix[p]) for p in pairs]
            else:
                report["reference"] = torchcka_matrix(layers).tolist()
                report["ours"] = matrix.tolist()
            report["reference_seconds"] = time.perf_counter() - at
    report.update(matrix=np.asarray(matrix).tolist(), compute_seconds=time.perf_counter() - began,
                  import_kib=floor, peak_kib=high_water_kib(), seconds=time.perf_counter() - start)
    print(json.dumps(report))


def mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_streaming(sizes: Sizes, work: Path) -> list[dict]:
    """Exact CKA over every token, streamed, beside the sample the default uses, minibatch CKA and the Gram-based
    packages; each estimator in its own subprocess (peak RSS as in the memory section)."""
    seed, sample = schema_defaults("metrics").get("seed", 0), sizes.memory_max_tokens
    pairs = upper_pairs(7)[: sizes.ckatorch_pairs]

    def child(path, mode, **extra):
        settings = {"seed": seed, "sample": sample, "batch": sizes.streaming_batch, **extra}
        return run_measured([sys.executable, str(Path(__file__).resolve()), "--streaming-child", str(path), mode,
                             json.dumps(settings)])

    results, references = {}, {}
    for n in sizes.streaming_sizes:
        path = work / f"synthetic-{n}.h5"
        made = not path.exists()
        make_time, _ = timed(lambda: make_activation_file(path, n)) if made else (0.0, None)
        try:
            found = {mode: child(path, mode) for mode in ("stream", "sample", "minibatch")}
            if n == sizes.streaming_sizes[0]:
                references["ckatorch"] = child(path, "ckatorch", n=sizes.streaming_ckatorch_n, pairs=pairs)
                references["torchcka"] = child(path, "torchcka", n=sizes.streaming_torchcka_n)
            results[n] = (found, path.stat().st_size, make_time)
        finally:
            if made:
                path.unlink()

    def mib(report):
        return report["rusage_children_kib"] / 1024

    def matrix(report):
        return np.array(report["matrix"])

    def per_token(report):
        return report["compute_seconds"] / report["rows"] * 1e6

    def size_of(n, report, file_bytes):
        return f"n={n:,} tokens ({report['rows']:,} content) x 7 layers x 384 ({file_bytes / 2**30:.2f} GiB file)"

    rows = []
    small, large = sizes.streaming_sizes[0], sizes.streaming_sizes[-1]
    smallest = mib(results[small][0]["stream"])
    for n, (found, file_bytes, make_time) in results.items():
        stream = found["stream"]
        ratio = mib(stream) / smallest
        rows.append(row(
            "streaming", "peak RSS of exact linear CKA 7x7 over every content token (Activations.token_blocks + "
                         "CKAStream)", size_of(n, stream, file_bytes), mib(stream), smallest, "MiB", ratio, "<= 1.25",
            check(ratio, "<= 1.25"),
            note=f"ratio = peak / peak at the smallest n; getrusage(RUSAGE_CHILDREN) of a small launcher; VmHWM "
                 f"{stream['peak_kib'] / 1024:.0f} MiB, after imports {stream['import_kib'] / 1024:.0f} MiB; "
                 f"{stream['compute_seconds']:.1f} s ({stream['add_seconds']:.1f} s in CKAStream.add, the rest "
                 f"reading and decoding chunks), {per_token(stream):.0f} us/token; file written in {make_time:.0f} s"))
    big, little = results[large][0]["stream"], results[small][0]["stream"]
    rows.append(row("streaming", "time per content token of the streamed exact CKA, largest n vs smallest n",
                    f"n={large:,} vs n={small:,} tokens", per_token(big), per_token(little), "us/token",
                    per_token(big) / per_token(little),
                    note=f"ratio = time per token at {large:,} / at {small:,} (1 = linear in n); "
                         f"{big['compute_seconds']:.1f} s vs {little['compute_seconds']:.1f} s"))
    for key in ("sample", "minibatch"):
        for n, (found, file_bytes, _) in results.items():
            other, seconds = found[key], found["stream"]["compute_seconds"]
            a, r = rel_diff(matrix(other), matrix(found["stream"]))
            if key == "sample":
                what = (f"sampled estimate (seeded {other['rows']:,}-token sample, cka_matrix) vs the streamed "
                        f"exact CKA over every token")
                why = (f"ratio = streamed time / sampled time; diff = the sample's error against exact CKA over every "
                       f"token (metrics.max_tokens={sample:,}, seed {seed}); sampled peak RSS {mib(other):.0f} MiB, "
                       f"streamed {mib(found['stream']):.0f} MiB")
            else:
                what = (f"minibatch CKA (Nguyen et al., MinibatchCKA batch {sizes.streaming_batch:,}) vs the "
                        f"streamed exact CKA, both over every token")
                why = (f"ratio = streamed time / minibatch time; a different estimator (mean of per-batch unbiased "
                       f"HSIC): the diff is what it estimates differently, reported, never mixed with linear_cka; "
                       f"minibatch peak RSS {mib(other):.0f} MiB ({other['add_seconds']:.1f} s in add)")
            rows.append(row("streaming", what, size_of(n, found["stream"], file_bytes), other["compute_seconds"],
                            seconds, "s", seconds / other["compute_seconds"], max_abs_diff=a, max_rel_diff=r,
                            note=why))

    gib = 2**30
    ckatorch, torchcka = references["ckatorch"], references["torchcka"]
    a, r = rel_diff(ckatorch["ours"], ckatorch["reference"])
    m = ckatorch["rows"]
    ratio = ckatorch["reference_seconds"] / ckatorch["stream_seconds"]
    rows.append(row(
        "streaming", f"linear CKA: CKAStream over chunks, all 21 pairs, vs ckatorch cka_base (linear) on "
                     f"{len(pairs)} pairs", f"n={m:,} (first content tokens of the {small:,}-token file), d=384",
        ckatorch["stream_seconds"], ckatorch["reference_seconds"], "s", ratio, ">= 10", check(ratio, ">= 10"), a, r,
        note=f"the largest n at which ckatorch's n x n float64 Grams fit: its child's peak RSS "
             f"{mib(ckatorch) / 1024:.1f} GiB against {ckatorch['stream_peak_kib'] / 2**20:.2f} GiB before it "
             f"(the {m:,} rows held in memory + CKAStream); pairs {pairs}; every ckatorch pair costs the same, so all "
             f"21 would take {21 / len(pairs):.1f}x this"))
    a, r = rel_diff(torchcka["ours"], torchcka["reference"])
    ratio = torchcka["reference_seconds"] / torchcka["stream_seconds"]
    rows.append(row(
        "streaming", "debiased CKA 7x7: CKAStream(debiased=True) over chunks vs torch-cka CKA.compare (one batch)",
        f"n={torchcka['rows']:,} (first content tokens of the {small:,}-token file), d=384",
        torchcka["stream_seconds"], torchcka["reference_seconds"], "s", ratio, ">= 10", check(ratio, ">= 10"), a, r,
        note="torch-cka multiplies n x n matrices (O(n^3)) for all 49 pairs: compared at this n"))
    above = max(ckatorch["rusage_children_kib"] - ckatorch["import_kib"], 0) * 1024
    total = mem_total_bytes()
    for n, (found, file_bytes, _) in results.items():
        content = found["stream"]["rows"]
        gram = 8 * content**2
        least = 2 * gram  # a pair's two n x n float64 Grams, before any centring copy
        scaled = ckatorch["import_kib"] * 1024 + above * (content / m) ** 2
        fits = "does not fit" if least > total else "fits"
        rows.append(row(
            "streaming", f"memory: streamed exact CKA (measured) vs what ckatorch / torch-cka need on every token "
                         f"({fits})", size_of(n, found["stream"], file_bytes), mib(found["stream"]), least / 2**20,
            "MiB", least / (mib(found["stream"]) * 2**20),
            note=f"{fits} in this machine's {total / gib:.0f} GiB; reference = the least either package holds for one "
                 f"pair, two n x n float64 Grams of 8 n^2 = {gram / 1e9:,.1f} GB each (not run); ckatorch's measured "
                 f"peak at n={m:,} ({mib(ckatorch) / 1024:.1f} GiB) scaled by (n/{m:,})^2 gives "
                 f"{scaled / 1e9:,.0f} GB; ratio = reference / the streamed peak"))
    return rows


# ---------------------------------------------------------------------------------------------- 5. workflow

def bench_workflow(sizes: Sizes, work: Path) -> list[dict]:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    label = "configs/paper.yaml"
    if sizes.reduced_dag:
        config["models"] = dict(list(config["models"].items())[:1])
        config["tasks"] = dict(list(config["tasks"].items())[:2])
        config["seeds"] = config["seeds"][:1]
        config["ablations"]["freeze_layers"] = []
        label += " reduced to 1 model, 2 tasks, 1 seed, no ablation"
    directory = work / "paper"
    directory.mkdir()

    def write(cfg):
        (directory / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def snakemake(*args):
        command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(directory),
                   "--cores", str(sizes.threads), "--workflow-profile", "none", *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd=work)
        if done.returncode != 0:
            raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout + done.stderr

    write(config)
    plan_t, text = timed(lambda: snakemake("-n"))
    jobs, outputs = parse_dry_run(text)
    total = len(jobs)
    for output in outputs:
        target = directory / output
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    touch_t, _ = timed(lambda: snakemake("--touch", "--forceall", "--quiet"))
    noop_t, text = timed(lambda: snakemake("-n"), sizes.noop_repeat)
    noop = "Nothing to be done" in text

    task = next(iter(config["tasks"]))
    changed = json.loads(json.dumps(config))
    rate = config.get("finetune", {}).get("learning_rate", 2e-5)
    changed["tasks"][task]["finetune"] = {"learning_rate": rate * 2}
    write(changed)
    try:
        rerun, _ = parse_dry_run(snakemake("-n"))
    finally:
        write(config)
    seeds, freeze = len(config["seeds"]), len(config.get("ablations", {}).get("freeze_layers", []))
    variants = seeds * (1 + freeze)
    probes = 1 + len(config.get("probes", {}))
    models = len(config["models"])
    expected = models * variants * (2 + 3 * probes) + models + 3
    only_task = all(task in wildcards for rule, wildcards in rerun if rule not in ("all", "table", "claims"))
    minimal = len(rerun) == expected and only_task
    return [
        row("workflow", "snakemake -n planning every job (nothing built yet)", f"{label}: {total} jobs", plan_t,
            None, "s"),
        row("workflow", "snakemake -n with every output up to date (no-op)", f"{label}: {total} jobs", noop_t, None,
            "s", holds="yes" if noop else "no", note="holds = it reported 'Nothing to be done'; outputs made by "
                                                     f"--touch --forceall ({touch_t:.0f} s)"),
        row("workflow", f"jobs rerun after tasks.{task}.finetune.learning_rate changes", f"{label}: {total} jobs",
            len(rerun), total, "jobs", len(rerun) / total, f"<= {expected / total:.4f}", "yes" if minimal else "no",
            note=f"minimal set = {expected} ({task}'s fine-tune, layer-drop, extract, metrics, compare and figure "
                 f"jobs + table, claims, all); every rerun job is {task}'s: {only_task}"),
    ]


# ---------------------------------------------------------------------------------------------- table

def fmt(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.1e}"
    return str(value)


def print_table(rows: list[dict], stream=sys.stdout) -> None:
    shown = ["benchmark", "size", "repshift", "reference", "unit", "ratio", "target", "holds", "load", "max_abs_diff",
             "max_rel_diff"]
    cells = [[fmt(r[c]) for c in shown] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(shown)]
    widths[0] = min(widths[0], 90)
    print("  ".join(c.ljust(w) for c, w in zip(shown, widths)), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for line in cells:
        print("  ".join(c.ljust(w) if i < 2 or i == 4 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))),
              file=stream)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})


def loadavg() -> float:
    """1-minute load average (other processes on the machine skew every timing); NaN where unknown."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return math.nan


TIMED_UNITS = ("s", "tok/s", "us/token")


def with_load(r: dict, before: float, after: float) -> dict:
    """A row with the section's highest 1-minute load average beside it; a timed verdict taken while the load
    exceeded the core count is marked unreliable (other processes shared the cores)."""
    load = max(before, after)
    r["load"] = load
    if r["holds"] and r["target"] and r["unit"] in TIMED_UNITS and load > os.cpu_count():
        r["holds"] = f"{r['holds']} (unreliable: load {load:.1f} > {os.cpu_count()} cores)"
    return r


def machine() -> str:
    import platform

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
            f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def run(sizes: Sizes, sections=SECTIONS, work: Path | None = None, log=sys.stdout, out: Path | None = None,
        strict: bool = False) -> list[dict]:
    """Run the sections in order; a failing section leaves one row saying why (raised when strict).
    With `out`, the CSV is rewritten after every section."""
    state: dict = {}
    rows: list[dict] = []
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="repshift-bench-")) if owned else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    steps = {
        "extraction": lambda: bench_extraction(sizes, work, state),
        "cka": lambda: bench_cka(sizes, state),
        "rsa": lambda: bench_rsa(sizes, state),
        "isoscore": lambda: bench_isoscore(sizes, state),
        "probes": lambda: bench_probes(sizes, state),
        "layerdrop": lambda: bench_layerdrop(sizes, work),
        "replicates": lambda: bench_replicates(sizes, state),
        "finetune": lambda: bench_finetune(sizes),
        "store": lambda: bench_store(sizes, work),
        "directprobe": lambda: bench_directprobe(sizes, work),
        "memory": lambda: bench_memory(sizes, work),
        "streaming": lambda: bench_streaming(sizes, work),
        "workflow": lambda: bench_workflow(sizes, work),
    }
    try:
        for name in SECTIONS:
            if name in sections:
                start = time.perf_counter()
                load = loadavg()
                try:
                    new = steps[name]()
                except Exception as exc:
                    if strict:
                        raise
                    new = [row(name, f"{name} section failed", note=f"{type(exc).__name__}: {exc}"[:500])]
                    print(f"[{name} failed: {type(exc).__name__}: {exc}]", file=log, flush=True)
                after = loadavg()
                rows += [with_load(r, load, after) for r in new]
                load = f"load average {load} -> {after}"
                if out is not None:
                    write_csv(rows, out)
                print(f"[{name}: {time.perf_counter() - start:.1f} s, {load}]", file=log, flush=True)
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about 4 minutes)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results" / "benchmarks.csv",
                        help="CSV of the table (default results/benchmarks.csv, untracked; the committed table is "
                             "benchmarks/results.csv: rewrite it only on purpose, with --out benchmarks/results.csv)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--workdir", type=Path, help="keep scratch files here (default: a temp dir, removed)")
    parser.add_argument("--strict", action="store_true", help="stop at the first failing section")
    parser.add_argument("--memory-child", nargs=3, metavar=("FILE", "PART", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--streaming-child", nargs=3, metavar=("FILE", "MODE", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--train-child", nargs=2, metavar=("THREADS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    if args.streaming_child:
        streaming_child(*args.streaming_child)
        return 0
    if args.train_child:
        train_child(*args.train_child)
        return 0
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    sizes = quick_sizes() if args.quick else Sizes(quick=False)
    import torch

    torch.set_num_threads(sizes.threads)
    start = time.perf_counter()
    rows = run(sizes, sections, args.workdir, out=args.out, strict=args.strict)
    print(f"\nrepshift benchmarks{' (--quick)' if args.quick else ''} on {machine()}; "
          f"total {time.perf_counter() - start:.0f} s\n")
    print_table(rows)
    write_csv(rows, args.out)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
