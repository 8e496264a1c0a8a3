"""Extraction to HDF5 and the reader: round trip against a naive per-sentence forward pass."""

import json

import h5py
import numpy as np
import pytest
import torch

from repshift import activations
from repshift.activations import Activations, extract, length_batches
from repshift.data import prepare_probe
from repshift.errors import UserError
from repshift.models import load_encoder, load_tokenizer

SETTINGS = {"max_length": 9, "batch_tokens": 64, "dtype": "float32"}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, tiny_assets):
    model_dir, files = tiny_assets
    root = tmp_path_factory.mktemp("extract")
    prepare_probe(root / "probe.json", {}, max_sentences=25, seed=0,
                  source={"kind": "local", "path": str(files["tagged.txt"])})
    extract({"id": str(model_dir)}, root / "probe.json", root / "act.h5", SETTINGS, threads=1,
            provenance={"variant": "base", "probe": "pos"})
    return model_dir, root


def test_float16_store_is_half_the_size_and_reads_back_as_float32_within_its_rounding(extracted):
    model_dir, root = extracted
    extract({"id": str(model_dir)}, root / "probe.json", root / "half.h5", {**SETTINGS, "dtype": "float16"},
            threads=1, provenance={"variant": "base", "probe": "pos"})
    with Activations(root / "act.h5") as single, Activations(root / "half.h5") as half, \
            h5py.File(root / "half.h5") as raw:
        assert half.provenance["dtype"] == "float16" and single.provenance["dtype"] == "float32"
        assert {raw[name].dtype for name in activations.LAYERED} == {np.dtype("float16")}
        assert raw["tokens/hidden"].nbytes * 2 == h5py.File(root / "act.h5")["tokens/hidden"].nbytes
        rows = np.arange(0, len(half.token_meta("piece_id")), 3)
        for layer in range(half.n_layers):
            for read in (lambda a: a.tokens(layer), lambda a: a.tokens(layer, rows),
                         lambda a: a.sentences(layer, "cls"), lambda a: a.sentences(layer, "mean")):
                wide, narrow = read(single), read(half)
                assert narrow.dtype == np.float32
                np.testing.assert_allclose(narrow, wide, rtol=2**-11, atol=2**-24)
                assert not np.array_equal(narrow, wide), "the values did go through float16"


def test_float16_store_refuses_activations_beyond_its_range(extracted, monkeypatch):
    model_dir, root = extracted
    monkeypatch.setattr(activations, "HALF_MAX", 0.5)
    with pytest.raises(UserError, match="config key extract.dtype: float16 cannot hold .* set extract.dtype to float32"):
        extract({"id": str(model_dir)}, root / "probe.json", root / "over.h5", {**SETTINGS, "dtype": "float16"},
                threads=1, provenance={"variant": "base", "probe": "pos"})
    assert not (root / "over.h5").exists()


def test_length_batches_respect_token_budget():
    lengths = np.array([5, 3, 9, 9, 2, 7, 1])
    batches = list(length_batches(lengths, max_tokens=18))
    assert sorted(np.concatenate(batches)) == list(range(7))
    assert all(lengths[b].max() * len(b) <= 18 for b in batches)
    assert [lengths[i] for i in np.concatenate(batches)] == sorted(lengths)


def test_matches_naive_per_sentence_forward(extracted):
    model_dir, root = extracted
    probe = json.loads((root / "probe.json").read_text())
    tokenizer, model = load_tokenizer(model_dir), load_encoder(model_dir).eval()
    with Activations(root / "act.h5") as act:
        assert act.n_layers == 3
        assert len(np.unique(act.token_meta("piece_id"))) > 10, "the tokenizer maps words to distinct pieces"
        sentence_ids, token_sentence = act.sentence_meta("sentence_id"), act.token_meta("sentence_id")
        special, tags = act.token_meta("special"), act.token_meta("pos_tag")
        for layer in range(act.n_layers):
            tokens, cls, mean = act.tokens(layer), act.sentences(layer, "cls"), act.sentences(layer, "mean")
            for row, sentence in enumerate(sentence_ids[:8]):
                encoded = tokenizer(probe["words"][sentence], is_split_into_words=True, truncation=True,
                                    max_length=SETTINGS["max_length"], return_tensors="pt")
                with torch.inference_mode():
                    expected = model(**encoded, output_hidden_states=True).hidden_states[layer][0].numpy()
                mine = token_sentence == sentence
                np.testing.assert_allclose(tokens[mine], expected, atol=1e-5)
                np.testing.assert_allclose(cls[row], expected[0], atol=1e-5)
                np.testing.assert_allclose(mean[row], expected[~special[mine]].mean(0), atol=1e-5)
                words = encoded.word_ids()
                assert [tags[mine][i] >= 0 for i in range(len(words))] == [w is not None for w in words]


def test_tags_follow_words(extracted):
    _, root = extracted
    probe = json.loads((root / "probe.json").read_text())
    with Activations(root / "act.h5") as act:
        sentence, word = act.token_meta("sentence_id"), act.token_meta("word_index")
        tags = act.token_meta("pos_tag")
        for i in np.flatnonzero(word >= 0)[:50]:
            assert act.tag_names[tags[i]] == probe["tags"][sentence[i]][word[i]]


def test_provenance_and_truncation_recorded(extracted):
    _, root = extracted
    with Activations(root / "act.h5") as act:
        assert act.provenance["variant"] == "base" and act.provenance["n_layers"] == 3
        assert act.provenance["settings"] == SETTINGS
        assert act.provenance["truncated_sentences"] > 0
        assert act.sentence_meta("n_tokens").max() <= SETTINGS["max_length"]


def test_incomplete_or_corrupt_file_is_refused(extracted, tmp_path):
    _, root = extracted
    copy = tmp_path / "copy.h5"
    copy.write_bytes((root / "act.h5").read_bytes())
    with h5py.File(copy, "a") as handle:
        handle.attrs["complete"] = False
    with pytest.raises(UserError, match="incomplete"):
        Activations(copy)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes((root / "act.h5").read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated.h5: not a readable HDF5 file"):
        Activations(truncated)


def test_token_blocks_stream_every_layer_of_the_selected_rows(extracted, monkeypatch):
    _, root = extracted
    monkeypatch.setattr(activations, "CHUNK_ROWS", 5)
    with Activations(root / "act.h5") as act:
        rows = np.flatnonzero(~act.token_meta("special"))
        blocks = list(act.token_blocks(rows))
        assert len(blocks) > 3 and all(len(block) == act.n_layers for block in blocks)
        for layer in range(act.n_layers):
            np.testing.assert_array_equal(np.concatenate([block[layer] for block in blocks]), act.tokens(layer)[rows])


def test_selected_rows_are_read_block_by_block(extracted, monkeypatch):
    _, root = extracted
    monkeypatch.setattr(activations, "READ_BLOCK_ROWS", 7)
    with Activations(root / "act.h5") as act:
        full = act.tokens(2)
        index = np.random.default_rng(0).permutation(len(full))[: len(full) // 2]
        np.testing.assert_array_equal(act.tokens(2, index), full[index])
        np.testing.assert_array_equal(act.tokens(2, np.array([], dtype=int)), full[:0])
