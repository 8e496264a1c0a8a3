import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from dry_run import parse_dry_run  # noqa: E402  (benchmarks/dry_run.py, shared with the workflow benchmark)

POSITIVE = ["good", "great", "fine", "lovely", "superb", "warm"]
NEGATIVE = ["bad", "awful", "poor", "dull", "weak", "cold"]
NOUNS = ["film", "movie", "plot", "cast", "story", "score"]
FILLER = ["the", "a", "this", "that", "really", "very", "was", "is", "and", "but", "it", "of"]
TAGS = {"the": "DT", "a": "DT", "this": "DT", "that": "DT", "really": "RB", "very": "RB", "was": "VBD",
        "is": "VBZ", "and": "CC", "but": "CC", "it": "PRP", "of": "IN", ".": "."}


def sentences(n: int, seed: int):
    """Deterministic tiny sentences: a sentiment word decides the label, hedges decide a second label."""
    import random

    rng = random.Random(seed)
    for _ in range(n):
        label = rng.random() < 0.5
        words = [rng.choice(["the", "this", "that"]), rng.choice(NOUNS), rng.choice(["was", "is"]),
                 rng.choice(["really", "very", ""]), rng.choice(POSITIVE if label else NEGATIVE)]
        words += rng.sample(FILLER, 3) + ["."]
        yield [w for w in words if w], int(label)


def tag(word: str) -> str:
    if word in POSITIVE or word in NEGATIVE:
        return "JJ"
    return "NN" if word in NOUNS else TAGS[word]


def squad(rows: list) -> dict:
    """SQuAD v1.1 JSON from pairs of tiny sentences: the context is both, the question names one's noun, the answer
    is that sentence's sentiment word at its character offset."""
    paragraphs = []
    for n, ((first, _), (second, _)) in enumerate(zip(rows[::2], rows[1::2])):
        context, target = " ".join(first + second), (first, second)[n % 2]
        before = " ".join(first) + " " if target is second else ""
        adjective = next(w for w in target if w in POSITIVE + NEGATIVE)
        start = len(before) + len(" ".join(target[: target.index(adjective)])) + (target.index(adjective) > 0)
        assert context[start : start + len(adjective)] == adjective
        paragraphs.append({"context": context, "qas": [{"id": f"q{n}", "question": f"what about the {target[1]}",
                                                          "answers": [{"text": adjective, "answer_start": start}]}]})
    return {"version": "1.1", "data": [{"title": "tiny", "paragraphs": paragraphs}]}


def tree(words: list[str]) -> list[tuple[int, str]]:
    """A tiny sentence's dependency tree, UD style: the adjective is the root; the noun its subject with its
    determiner, the verb its copula, an adverb its modifier; each filler hangs from the word before, "." from the
    root."""
    root = next(i for i, w in enumerate(words) if w in POSITIVE + NEGATIVE) + 1
    arcs = []
    for i, word in enumerate(words):
        arcs.append((0, "root") if i + 1 == root else (2, "det") if i == 0 else (root, "nsubj") if word in NOUNS
                    else (root, "cop") if word in ("was", "is") else (root, "advmod") if word in ("really", "very")
                    else (root, "punct") if word == "." else (i, "dep"))
    return arcs


def conllu(words: list[str], sent_id: str) -> str:
    lines = [f"# sent_id = {sent_id}", f"# text = {' '.join(words)}"]
    for i, (word, (head, relation)) in enumerate(zip(words, tree(words)), 1):
        lines.append("\t".join([str(i), word, word, tag(word), tag(word), "_", str(head), relation, "_", "_"]))
    return "\n".join(lines) + "\n\n"


def make_tiny_model(path: Path) -> Path:
    """A randomly initialised 2-layer BERT with a word-level vocabulary of the tiny corpus."""
    from transformers import BertConfig, BertModel, BertTokenizerFast
    import torch

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + sorted(set(POSITIVE + NEGATIVE + NOUNS + FILLER))
    vocab += ["##s", "##ly", "##er"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


FAMILIES = ("bert", "roberta", "albert", "electra", "deberta-v2", "mpnet")


def encoder_prefix(weights: dict) -> str:
    """The prefix of the encoder's keys in saved fine-tuned weights: none where the encoder's own keys come first, else
    the head model's name for its encoder (the parser saves the bare encoder under its own)."""
    if any(key.startswith("embeddings.") for key in weights):
        return ""
    return next(key.split(".")[0] + "." for key in weights if key.split(".")[1] in ("embeddings", "encoder"))


def make_family_model(family: str, path: Path) -> Path:
    """A randomly initialised 2-layer encoder of a transformers model family, with the tiny word-level vocabulary
    (families without token types get a tokenizer that gives none, as theirs do)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + sorted(set(POSITIVE + NEGATIVE + NOUNS + FILLER))
    vocab += ["##s", "##ly", "##er"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    typed = family in ("bert", "albert", "electra")
    names = ["input_ids", "token_type_ids", "attention_mask"] if typed else ["input_ids", "attention_mask"]
    tokenizer = transformers.BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True,
                                               model_input_names=names)
    extra = {"albert": {"embedding_size": 16}, "electra": {"embedding_size": 16},
             "deberta-v2": {"type_vocab_size": 0, "relative_attention": True, "position_buckets": 8,
                            "pos_att_type": ["p2c", "c2p"]}}.get(family, {})
    config = AutoConfig.for_model(family, vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=80,
                                  pad_token_id=0, **extra)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_tiny_data(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    rows = list(sentences(160, seed=1))
    with open(root / "sentiment.csv", "w") as handle:
        handle.write("text,label\n" + "".join(f"{' '.join(w)},{'pos' if y else 'neg'}\n" for w, y in rows))
    import json

    with open(root / "length.jsonl", "w") as handle:
        for words, _ in sentences(120, seed=2):
            handle.write(json.dumps({"text": " ".join(words), "label": "long" if len(words) > 8 else "short"}) + "\n")
    for name, seed, n in (("tagged.txt", 3, 60), ("ood.txt", 4, 40)):
        lines = [" ".join(f"{w}/{tag(w)}" for w in words) for words, _ in sentences(n, seed)]
        (root / name).write_text("\n".join(lines) + "\n")
    with open(root / "pairs.jsonl", "w") as handle:
        premises, hypotheses = sentences(160, seed=5), sentences(160, seed=6)
        for (first, a), (second, b) in zip(premises, hypotheses):
            handle.write(json.dumps({"premise": " ".join(first), "hypothesis": " ".join(second),
                                     "label": "same" if a == b else "differ"}) + "\n")
    with open(root / "scores.jsonl", "w") as handle:
        for (first, a), (second, b) in zip(sentences(160, seed=9), sentences(160, seed=10)):
            handle.write(json.dumps({"sentence1": " ".join(first), "sentence2": " ".join(second),
                                     "label": round(a + b - 1 + 0.02 * len(first), 2)}) + "\n")
    (root / "squad.json").write_text(json.dumps(squad(list(sentences(240, seed=12)))))
    (root / "trees.conllu").write_text("".join(conllu(words, f"s{i}") for i, (words, _) in
                                               enumerate(sentences(120, seed=11))))
    import random

    rng = random.Random(7)
    with open(root / "choices.jsonl", "w") as handle:
        for words, label in sentences(160, seed=8):
            right = f"that {rng.choice(POSITIVE if label else NEGATIVE)}"
            answers = [right, f"that {rng.choice(NOUNS)}", f"this {rng.choice(NOUNS)}"]
            rng.shuffle(answers)
            handle.write(json.dumps({"context": " ".join(words), "choices": answers,
                                     "label": answers.index(right)}) + "\n")
    return {name: root / name for name in ("sentiment.csv", "length.jsonl", "tagged.txt", "ood.txt", "pairs.jsonl",
                                           "choices.jsonl", "scores.jsonl", "trees.conllu", "squad.json")}


def tiny_config(model_dir: Path, files: dict) -> dict:
    return {
        "models": {"tiny": {"id": str(model_dir)}},
        "tasks": {
            "sent": {"source": {"kind": "local", "path": str(files["sentiment.csv"])}},
            "length": {"source": {"kind": "local", "path": str(files["length.jsonl"])}},
        },
        "probes": {
            "pos": {"source": {"kind": "local", "path": str(files["tagged.txt"])}, "role": "tagged"},
            "ood": {"source": {"kind": "local", "path": str(files["ood.txt"])}, "max_sentences": 30,
                    "role": "out_of_domain"},
        },
        "seeds": [0],
        "split": {"dev_size": 30, "seed": 3},
        "finetune": {"epochs": 1, "batch_size": 16, "max_length": 32, "learning_rate": 1.0e-3},
        "extract": {"max_length": 32, "batch_tokens": 256, "dtype": "float32"},
        "metrics": {"max_tokens": 300, "layer_by_layer": [
            "linear_cka", "debiased_cka", "minibatch_cka", "rbf_cka", "rsa_spearman", "svcca", "procrustes",
            "angular_shape", "mutual_knn", "cknna", "jaccard_knn"]},
        "measures": {"directprobe": {"max_points": 40},
                     "cluster_purity_pos": {"clusters": 3},
                     "task_probe_accuracy_cluster_pcs_removed": {"clusters": 3, "remove": 2},
                     "task_probe_accuracy_top_pcs_removed": {"remove": 2}, "rsa_pearson": {"max_rows": 100},
                     "rsa_spearman": {"max_rows": 100}},
        "ablations": {"freeze_layers": [1]},
        # The tiny tasks are lexical: a probe on the frozen random encoder is perfect, which no fine-tuned model can
        # beat, so C0 is switched off here to let the workflow tests read every other verdict.
        "claims": {"learned_margin": -1.0},
    }


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_assets")
    return make_tiny_model(root / "model"), write_tiny_data(root / "data")


class Project:
    """A copy of the workflow (Snakefile, workflow/, src/, envs/) in a temp dir, with a tiny config."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        root.mkdir(parents=True)
        for part in ("Snakefile", "workflow", "src", "envs"):
            source = REPO / part
            if source.is_dir():
                shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy(source, root / part)
        self.write_config(config)

    def write_config(self, config: dict) -> None:
        self.config = config
        (self.root / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(self, *args, check=True) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "snakemake", "--cores", "2", "--workflow-profile", "none", *args]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result

    def planned_jobs(self, *args) -> list[tuple[str, str]]:
        """(rule, wildcards) of every job a dry run would execute."""
        out = self.snakemake("-n", *args)
        return parse_dry_run(out.stdout + out.stderr)[0]

    def planned_after(self, edit) -> list[tuple[str, str]]:
        """planned_jobs with `edit` applied to a copy of the config; the config is put back after."""
        original = self.config
        config = copy.deepcopy(original)
        edit(config)
        self.write_config(config)
        try:
            return self.planned_jobs()
        finally:
            self.write_config(original)


FRACTIONS = [0.5, 1.0]
# the third: the snapshot at 100% of a one-epoch fine-tune has the finished fine-tune's weights
COMPARISONS = [["sent-s0", "sent+lora-s0"], ["sent-s0-at0.5", "sent-s0-at1"], ["sent-s0", "sent-s0-at1"],
               ["sent-s0", "sent+prompt-s0"]]


@pytest.fixture(scope="session")
def followed(tmp_path_factory, tiny_assets):
    """The tiny workflow, one task and two seeds, with its first seed followed through training (snapshots at
    FRACTIONS), a LoRA and a prompt fine-tune beside full fine-tuning, and COMPARISONS between them, run to
    completion."""
    model_dir, files = tiny_assets
    config = tiny_config(model_dir, files)
    config["tasks"].pop("length")
    config["probes"].pop("ood")
    config |= {"seeds": [0, 1], "ablations": {"freeze_layers": []},
               "dynamics": {"tasks": ["sent"], "seeds": [0], "fractions": FRACTIONS},
               "methods": {"lora": {"kind": "lora", "rank": 2, "alpha": 4},
                           "prompt": {"kind": "prompt", "virtual_tokens": 2, "learning_rate": 1e-2}},
               "comparisons": COMPARISONS}
    project = Project(tmp_path_factory.mktemp("followed") / "project", config)
    project.snakemake()
    return project


@pytest.fixture
def tiny_project(tmp_path, tiny_assets):
    """A fresh copy of the workflow with the tiny model and data, not yet run."""
    model_dir, files = tiny_assets
    return Project(tmp_path / "project", tiny_config(model_dir, files))


@pytest.fixture(scope="session")
def task_file(tmp_path_factory, tiny_assets):
    """The tiny sentiment task prepared as the workflow's task file (train and dev splits)."""
    from repshift import data

    _, files = tiny_assets
    path = tmp_path_factory.mktemp("task") / "sent.json"
    data.prepare_task({"kind": "local", "path": str(files["sentiment.csv"])}, None, path, dev_size=30,
                      max_train=None, seed=3, provenance={"task": "sent"})
    return path
