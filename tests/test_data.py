"""Corpus loaders, the corpus package fetch, seeded splits."""

import io
import json
import tarfile

import pytest

from repshift import data
from repshift.errors import UserError
from repshift.provenance import file_sha256


def test_pattern_csv_with_bom(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes('\ufeff"1","a fine film ."\n"-1","a dull, long film ."\n'.encode())
    corpus = data.read_pattern_csv(path)
    assert corpus.labels == ["1", "-1"]
    assert corpus.words[1] == ["a", "dull,", "long", "film", "."]


def test_pattern_csv_wrong_column_count_names_row(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('"1","ok"\n"1","a","b"\n')
    with pytest.raises(UserError, match=r"p.csv:2: expected 2 columns"):
        data.read_pattern_csv(path)


def test_tagged_splits_on_last_slash(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1/2/CD cats/NNS\n\nAT&T/NNP ./.\n")
    corpus = data.read_tagged(path)
    assert corpus.words == [["1/2", "cats"], ["AT&T", "."]]
    assert corpus.tags == [["CD", "NNS"], ["NNP", "."]]


def test_tagged_bad_token_names_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a/DT b/NN\nbroken c/NN\n")
    with pytest.raises(UserError, match=r"t.txt:2:"):
        data.read_tagged(path)


def test_local_csv_and_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text("label,text\npos,good film\nneg,bad film\n")
    (tmp_path / "a.jsonl").write_text('{"sentence": "good", "y": 1}\n\n{"sentence": "bad", "y": 0}\n')
    csv_corpus = data.load_source({"kind": "local", "path": str(tmp_path / "a.csv")}, None)
    jsonl_corpus = data.load_source({"kind": "local", "path": str(tmp_path / "a.jsonl"), "text_column": "sentence",
                                     "label_column": "y"}, None)
    assert csv_corpus.labels == ["pos", "neg"]
    assert jsonl_corpus.labels == ["1", "0"] and jsonl_corpus.words == [["good"], ["bad"]]


def test_missing_column_and_empty_text(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\n,pos\n")
    with pytest.raises(UserError, match=r"a.csv:2: empty text"):
        data.read_table(tmp_path / "a.csv", {})
    with pytest.raises(UserError, match=r"no column sentence"):
        data.read_table(tmp_path / "a.csv", {"text_column": "sentence"})


def test_missing_file():
    with pytest.raises(UserError, match="data file not found"):
        data.load_source({"kind": "local", "path": "/nonexistent/x.csv"}, None)


def test_save_to_disk_directory_same_as_hub_format(tmp_path):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    split = datasets.Dataset.from_dict({"sentence": ["a good film", "a bad film"], "label": [1, 0]}, features=features)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "sst2"))
    corpus = data.load_source({"kind": "local", "path": str(tmp_path / "sst2"), "text_column": "sentence"}, None)
    assert corpus.labels == ["positive", "negative"]
    with pytest.raises(UserError, match="no split 'test'"):
        data.load_source({"kind": "local", "path": str(tmp_path / "sst2"), "split": "test"}, None)


def test_hub_dataset_offline_is_one_line():
    with pytest.raises(UserError, match="not available") as error:
        data.load_source({"kind": "hub", "name": "nyu-mll/glue", "subset": "sst2"}, None)
    assert "\n" not in str(error.value)


def make_deb(path, files: dict):
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo("./" + data.PATTERN_CORPORA + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", payload.getvalue())]
    with open(path, "wb") as handle:
        handle.write(b"!<arch>\n")
        for name, blob in members:
            handle.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode())
            handle.write(blob + (b"\n" if len(blob) % 2 else b""))


def test_fetch_from_local_deb_checks_sha256(tmp_path):
    deb = tmp_path / "p.deb"
    make_deb(deb, {"a.csv": b'"1","x"\n', "b.txt": b"x/NN\n"})
    data.fetch_pattern(["a.csv", "b.txt"], tmp_path / "out", "v", file_sha256(deb), deb=str(deb))
    assert (tmp_path / "out/a.csv").read_bytes() == b'"1","x"\n'
    with pytest.raises(UserError, match="does not match pattern.sha256"):
        data.fetch_pattern(["a.csv"], tmp_path / "out2", "v", "0" * 64, deb=str(deb))
    assert not (tmp_path / "out2").exists()
    with pytest.raises(UserError, match="missing .*c.csv"):
        data.fetch_pattern(["c.csv"], tmp_path / "out3", "v", file_sha256(deb), deb=str(deb))


def test_split_is_seeded_disjoint_and_shared(tmp_path):
    rows = "".join(f"s{i} text,{'a' if i % 3 else 'b'}\n" for i in range(50))
    (tmp_path / "t.csv").write_text("text,label\n" + rows)
    source = {"kind": "local", "path": str(tmp_path / "t.csv")}
    for name in ("one", "two"):
        data.prepare_task(source, None, tmp_path / f"{name}.json", dev_size=10, max_train=None, seed=5, provenance={})
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one == two
    assert len(one["dev"]["text"]) == 10 and len(one["train"]["text"]) == 40
    assert not set(one["dev"]["text"]) & set(one["train"]["text"])
    assert one["label_names"] == ["a", "b"]
    data.prepare_task(source, None, tmp_path / "three.json", dev_size=10, max_train=None, seed=6, provenance={})
    assert json.loads((tmp_path / "three.json").read_text())["dev"] != one["dev"]


def test_probe_from_tagged_keeps_tags_aligned(tmp_path):
    (tmp_path / "t.txt").write_text("".join(f"w{i}/NN go/VB\n" for i in range(20)))
    data.prepare_probe(tmp_path / "p.json", {}, max_sentences=5, seed=1,
                       source={"kind": "local", "path": str(tmp_path / "t.txt")})
    probe = json.loads((tmp_path / "p.json").read_text())
    assert len(probe["words"]) == 5 and probe["tag_names"] == ["NN", "VB"]
    assert all(len(w) == len(t) for w, t in zip(probe["words"], probe["tags"]))


def test_token_classification_dataset_gives_tags(tmp_path):
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "upos": datasets.Sequence(datasets.ClassLabel(names=["NOUN", "VERB", "DET"]))})
    split = datasets.Dataset.from_dict({"tokens": [["the", "dog", "runs"]], "upos": [[2, 0, 1]]}, features=features)
    datasets.DatasetDict({"validation": split}).save_to_disk(str(tmp_path / "ewt"))
    corpus = data.load_source({"kind": "local", "path": str(tmp_path / "ewt"), "split": "validation",
                               "tokens_column": "tokens", "tags_column": "upos"}, None)
    assert corpus.words == [["the", "dog", "runs"]] and corpus.tags == [["DET", "NOUN", "VERB"]]
