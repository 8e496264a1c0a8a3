"""Fine-tuning methods: LoRA, IA3 (through peft), BitFit and prompt tuning train what they claim to, save as plain
encoders (a prompt beside them) that every later step reads, and run for every task kind and encoder family."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import load_file

from conftest import FAMILIES, REPO, encoder_prefix, make_family_model, sentences
from repshift import config as rc
from repshift import data
from repshift import finetune as finetuning
from repshift.activations import Activations, extract
from repshift.claims import full_finetuning
from repshift.errors import UserError
from repshift.metrics import expected_provenance
from repshift.models import PROMPT_FILE, load_encoder, load_tokenizer
from repshift.tasks import kind_of
from test_task_kinds import SETTINGS, SOURCES

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
# the last names of each family's attention query and value projections
QUERY_VALUE = {"bert": ["query", "value"], "roberta": ["query", "value"], "albert": ["query", "value"],
               "electra": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"], "mpnet": ["q", "v"]}
KEY = {"bert": "key", "roberta": "key", "albert": "key", "electra": "key", "deberta-v2": "key_proj", "mpnet": "k"}


def method(kind: str, **settings) -> dict:
    """A config `methods` entry as check_config fills it, with the name finetune_settings gives it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text()) | {"methods": {kind: {"kind": kind, **settings}}}
    return {"name": kind, **rc.check_config(config, SCHEMA)["methods"][kind]}


def test_method_variants_are_named_parsed_and_run_for_every_task_and_seed():
    config = rc.check_config(yaml.safe_load((REPO / "config.yaml").read_text()) | {
        "methods": {"lora": {"kind": "lora"}, "bitfit": {"kind": "bitfit", "learning_rate": 1e-3}}}, SCHEMA)
    assert config["methods"]["lora"] == {"kind": "lora", "rank": 8, "alpha": 16, "dropout": 0.1,
                                         "target_modules": ["query", "value"]}
    variant = rc.Variant("mr", 1, method="lora")
    assert variant.name == "mr+lora-s1" and rc.parse_variant(variant.name) == variant
    assert not full_finetuning(variant.name)
    names = [v.name for v in rc.task_variants(config, "mr")]
    assert {"mr+lora-s0", "mr+lora-s2", "mr+bitfit-s1", "mr-s0", "mr-f3-s0"} <= set(names)
    assert [v.name for v in rc.task_variants(config, "mr", full_only=True)] == ["mr-s0", "mr-s1", "mr-s2"]
    assert rc.finetune_settings(config, variant)["method"] == {"name": "lora", **config["methods"]["lora"]}
    assert rc.finetune_settings(config, variant)["learning_rate"] == config["finetune"]["learning_rate"]
    assert rc.finetune_settings(config, rc.Variant("mr", 0, method="bitfit"))["learning_rate"] == 1e-3


@pytest.mark.parametrize("entry, culprit", [
    ({"kind": "prefix"}, "config key methods.x"),
    ({"kind": "lora", "rank": 0}, "config key methods.x"),
    ({"kind": "bitfit", "rank": 4}, "config key methods.x"),
])
def test_a_bad_method_is_one_line_naming_its_key(entry, culprit):
    config = yaml.safe_load((REPO / "config.yaml").read_text()) | {"methods": {"x": entry}}
    with pytest.raises(UserError) as error:
        rc.check_config(config, SCHEMA)
    assert str(error.value).startswith(culprit) and "\n" not in str(error.value)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    return request.param, make_family_model(request.param, tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def sentiment(tiny_assets, tmp_path_factory):
    _, files = tiny_assets
    path = tmp_path_factory.mktemp("sentiment") / "task.json"
    data.prepare_task(SOURCES["classification"](files), None, path, dev_size=20, max_train=60, seed=3,
                      provenance={"task": "sent"}, kind="classification")
    return path


def test_lora_changes_only_the_layers_it_targets_and_folds_into_the_family_s_own_weights(family, sentiment,
                                                                                          tmp_path):
    name, model_dir = family
    lora = method("lora", rank=2, alpha=4, dropout=0.0, target_modules=QUERY_VALUE[name])
    finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0, {**SETTINGS, "method": lora}, 1,
                        {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = encoder_prefix(tuned)
    assert not any("lora" in key for key in tuned), name
    kept = [k for k in base if prefix + k in tuned]  # RoBERTa's classifier has no use for the pooler
    targeted = [k for k in kept if k.endswith(tuple(f".{t}.weight" for t in QUERY_VALUE[name]))]
    untouched = [k for k in kept if k.endswith(f".{KEY[name]}.weight") or k.endswith("bias")]
    assert targeted and not any(np.array_equal(base[k], tuned[prefix + k]) for k in targeted), name
    assert untouched and all(np.array_equal(base[k], tuned[prefix + k]) for k in untouched), name
    record = json.loads((tmp_path / "ft/train_metrics.json").read_text())
    assert 0 < record["trainable_parameters"] < record["parameters"] / 5


def test_bitfit_trains_the_biases_and_the_head_only(family, sentiment, tmp_path):
    name, model_dir = family
    finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0,
                        {**SETTINGS, "method": method("bitfit")}, 1, {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = encoder_prefix(tuned)
    kept = [k for k in base if prefix + k in tuned]
    weights = [k for k in kept if not k.endswith("bias")]
    biases = [k for k in kept if k.endswith("bias") and k.startswith("encoder.")]
    assert all(np.array_equal(base[k], tuned[prefix + k]) for k in weights), name
    # a key projection's bias adds the same score to every key of a query, which softmax ignores: it gets no gradient
    moved = [k for k in biases if not np.array_equal(base[k], tuned[prefix + k])]
    assert len(moved) >= len(biases) / 2, (name, sorted(set(biases) - set(moved)))


def test_a_lora_target_the_encoder_lacks_names_the_key_and_its_linear_layers(sentiment, tiny_assets, tmp_path):
    model_dir, _ = tiny_assets
    lora = method("lora", target_modules=["q_proj"])
    with pytest.raises(UserError, match=r"config key methods\.lora\.target_modules: q_proj not among the linear "
                                        r"layers of BertModel \(.*query.*value"):
        finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0, {**SETTINGS, "method": lora}, 1,
                            {"variant": "x"})
    with pytest.raises(UserError, match=r"config key methods\.bitfit: a bitfit fine-tune .* bottom 1 layers"):
        finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0,
                            {**SETTINGS, "freeze_layers": 1, "method": method("bitfit")}, 1, {"variant": "x"})


@pytest.mark.workflow
def test_each_method_is_measured_like_full_fine_tuning_and_drawn_beside_it(followed):
    root = followed.root
    table = pd.read_csv(root / "results/tables/metrics.csv")
    records = {v: json.loads((root / f"results/models/tiny/{v}/train_metrics.json").read_text())
               for v in ("sent-s0", "sent+lora-s0", "sent+prompt-s0")}
    for name in ("lora", "prompt"):
        for seed in (0, 1):
            full, tuned = (set(table.loc[table["variant"] == v, "measure"])
                           for v in (f"sent-s{seed}", f"sent+{name}-s{seed}"))
            assert tuned and tuned == full, name
        assert records[f"sent+{name}-s0"]["trainable_parameters"] < records["sent-s0"]["trainable_parameters"] / 5
        assert (root / f"results/layerdrop/tiny/sent+{name}-s0.csv").is_file()
    assert (root / "results/figures/tiny/sent/methods.png").stat().st_size > 20_000
    assert "methods.png and .pdf: 6 panels" in (root / "logs/figures/tiny/sent.log").read_text()


@pytest.mark.workflow
def test_a_new_method_runs_only_its_own_jobs(followed):
    jobs = followed.planned_after(lambda config: config["methods"].update(bitfit={"kind": "bitfit"}))
    own = [(rule, w) for rule, w in jobs if rule not in ("all", "figures", "table", "claims")]
    assert sorted(rule for rule, _ in own) == sorted(["finetune", "layer_drop"] * 2 + ["extract", "metrics",
                                                                                      "compare"] * 4)
    assert all("sent+bitfit-s" in w for _, w in own), own
    assert sorted(rule for rule, _ in jobs if rule in ("all", "figures", "table", "claims")) == [
        "all", "claims", "figures", "table"]


def test_ia3_scales_the_layers_it_targets_and_folds_them_into_their_weights(sentiment, tiny_assets, tmp_path):
    model_dir, _ = tiny_assets
    ia3 = method("ia3", learning_rate=1e-2)
    assert (ia3["target_modules"], ia3["feedforward_modules"]) == (["key", "value", "output.dense"], ["output.dense"])
    finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0, {**SETTINGS, "method": ia3}, 1,
                        {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = encoder_prefix(tuned)
    assert not any("ia3" in key for key in tuned)
    targeted = [k for k in base if k.endswith((".key.weight", ".value.weight", ".output.dense.weight"))]
    untouched = [k for k in base if k.endswith((".query.weight", ".intermediate.dense.weight", "bias"))]
    assert targeted and not any(np.array_equal(base[k], tuned[prefix + k]) for k in targeted)
    assert untouched and all(np.array_equal(base[k], tuned[prefix + k]) for k in untouched)
    # IA3 multiplies a weight's output rows (or a feed-forward layer's input columns) by its learned vector
    for key in targeted:
        axis = 0 if ".output.dense." not in key else 1
        ratio = tuned[prefix + key] / np.where(base[key] == 0, np.nan, base[key])
        spread = np.nanmax(ratio, axis=1 - axis) - np.nanmin(ratio, axis=1 - axis)
        assert np.nanmax(spread) < 1e-4, key
    lopsided = method("ia3", feedforward_modules=["intermediate.dense"])
    with pytest.raises(UserError, match=r"config key methods\.ia3\.feedforward_modules: each must also be in"):
        finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "bad", 0,
                            {**SETTINGS, "method": lopsided}, 1, {"variant": "x"})


def test_prompt_tuning_trains_the_prompt_and_the_head_and_the_encoder_loads_with_its_prompt(family, sentiment,
                                                                                          tmp_path):
    import torch

    name, model_dir = family
    n = 4
    finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0,
                        {**SETTINGS, "method": method("prompt", virtual_tokens=n, learning_rate=1e-2)}, 1,
                        {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = encoder_prefix(tuned)
    kept = [k for k in base if prefix + k in tuned]
    assert kept and all(np.array_equal(base[k], tuned[prefix + k]) for k in kept), name
    assert not any("prompt" in key for key in tuned)
    [prompt] = load_file(tmp_path / "ft" / PROMPT_FILE).values()
    plain = load_encoder(model_dir).eval()
    assert prompt.shape == (n, plain.get_input_embeddings().embedding_dim)
    head = sum(tensor.size for key, tensor in tuned.items() if not key.startswith(prefix))
    assert json.loads((tmp_path / "ft/train_metrics.json").read_text())["trainable_parameters"] == prompt.size + head

    # the prompted encoder's states of the real pieces, against the plain encoder run on the spliced input
    prompted = load_encoder(tmp_path / "ft").eval()
    batch = load_tokenizer(model_dir)([" ".join(words) for words, _ in sentences(3, seed=5)], padding=True,
                                      return_tensors="pt")
    inserted = torch.from_numpy(prompt).expand(len(batch["input_ids"]), -1, -1)
    with torch.no_grad():
        ours = prompted(**batch, output_hidden_states=True).hidden_states
        words = plain.get_input_embeddings()(batch["input_ids"])
        spliced = {key: torch.cat([value[:, :1], value[:, :1].expand(-1, n), value[:, 1:]], 1)
                   for key, value in batch.items() if key != "input_ids"}
        direct = plain(inputs_embeds=torch.cat([words[:, :1], inserted, words[:, 1:]], 1), **spliced,
                       output_hidden_states=True).hidden_states
        unprompted = plain(**batch).last_hidden_state
    real = [0, *range(n + 1, n + batch["input_ids"].shape[1])]
    assert len(ours) == len(direct)
    for layer, (states, reference) in enumerate(zip(ours, direct)):
        torch.testing.assert_close(states, reference[:, real], msg=f"{name} layer {layer}")
    assert ours[-1].shape == unprompted.shape and not torch.allclose(ours[-1], unprompted, atol=1e-3)

    # extraction reads the prompt: the same folder without it gives other states, and another weights hash
    shutil.copytree(tmp_path / "ft", tmp_path / "unprompted")
    (tmp_path / "unprompted" / PROMPT_FILE).unlink()
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"provenance": {}, "words": [words for words, _ in sentences(6, seed=5)], "tags": None,
                                 "labels": None, "tag_names": [], "label_names": []}))
    stored = []
    for folder in ("ft", "unprompted"):
        extract({"id": str(tmp_path / folder)}, probe, tmp_path / f"{folder}.h5",
                {"max_length": 32, "batch_tokens": 256, "dtype": "float32"}, 1, {})
        with Activations(tmp_path / f"{folder}.h5") as states:
            stored.append((states.provenance["weights_sha256"], states.sentences(0, "cls"), states.tokens(2)))
    (prompted_hash, prompted_first, prompted_top), (plain_hash, plain_first, plain_top) = stored
    assert prompted_hash != plain_hash and not np.allclose(prompted_top, plain_top, atol=1e-3)
    # and the steps that read an extraction expect the hash it recorded, the prompt's included
    for folder, digest in (("ft", prompted_hash), ("unprompted", plain_hash)):
        assert expected_provenance({"model": "m", "variant": "v", "probe": "p"},
                                   tmp_path / folder / "model.safetensors")["weights_sha256"] == digest
    # the first piece keeps its position, so its embedding-layer state is the plain encoder's
    np.testing.assert_allclose(prompted_first, plain_first, atol=1e-5)


# each method's settings for the tiny model, and the encoder weights it changes
ON_EVERY_KIND = {"lora": ({"rank": 2, "dropout": 0.0}, (".query.weight", ".value.weight")),
                 "prompt": ({"virtual_tokens": 3, "learning_rate": 1e-2}, ())}


@pytest.mark.parametrize("kind", list(SOURCES))
@pytest.mark.parametrize("name", list(ON_EVERY_KIND))
def test_each_method_fine_tunes_every_kind_and_layer_drop_reads_the_saved_model(name, kind, tiny_assets, tmp_path):
    model_dir, files = tiny_assets
    data.prepare_task(SOURCES[kind](files), None, tmp_path / "task.json", dev_size=20, max_train=60, seed=3,
                      provenance={"task": kind}, kind=kind)
    settings, changes = ON_EVERY_KIND[name]
    finetuning.finetune({"id": str(model_dir)}, tmp_path / "task.json", tmp_path / "ft", 0,
                        {**SETTINGS, "method": method(name, **settings)}, 1, {"variant": "x"})
    base, tuned = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "ft/model.safetensors")
    prefix = encoder_prefix(tuned)
    kept = [k for k in base if prefix + k in tuned]  # a token-level head has no use for the pooler
    changed = [k for k in kept if not np.array_equal(base[k], tuned[prefix + k])]
    assert kept and changed == [k for k in kept if k.endswith(changes)], kind
    task = json.loads((tmp_path / "task.json").read_text())
    loaded = kind_of(task).load_model(tmp_path / "ft", labels=len(task["label_names"]))
    assert hasattr(loaded.base_model, "soft_prompt") == (name == "prompt"), kind
    finetuning.layer_drop(tmp_path / "ft", tmp_path / "task.json", tmp_path / "drop.csv", SETTINGS, 1, {})
    record = json.loads((tmp_path / "ft/train_metrics.json").read_text())
    dropped = pd.read_csv(tmp_path / "drop.csv").set_index("layers_dropped")["dev_metric"]
    assert dropped[0] == pytest.approx(record["dev_metric"][record["best_epoch"] - 1], abs=1e-3)


def test_a_prompt_longer_than_the_encoder_s_positions_allow_names_the_key(sentiment, tiny_assets, tmp_path):
    model_dir, _ = tiny_assets
    with pytest.raises(UserError, match=r"^config key methods\.prompt\.virtual_tokens: 63 and \d+ pieces exceed the 64 "
                                        r"positions of BertModel; lower it or the max_length of finetune and extract$"):
        finetuning.finetune({"id": str(model_dir)}, sentiment, tmp_path / "ft", 0,
                            {**SETTINGS, "method": method("prompt", virtual_tokens=63)}, 1, {"variant": "x"})
