"""Configuration: one-line errors naming the key, defaults, the DAG vocabulary."""

from pathlib import Path

import pytest
import yaml

from repshift import config as rc
from repshift.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def check(config):
    return rc.check_config(config, SCHEMA)


def test_default_config_is_valid_and_filled():
    config = check(default_config())
    assert config["finetune"]["warmup_ratio"] == 0.1
    assert config["pattern"]["sha256"] == "9bdb8e36c780db9c701fa9519425c0217fbab2bc1af28eb127caaa6bde7fc4b1"
    assert config["extract"]["batch_tokens"] == 2048


@pytest.mark.parametrize("edit, culprit", [
    (lambda c: c["finetune"].update(epochs=0), "config key finetune.epochs: 0 is less than the minimum of 1"),
    (lambda c: c["tasks"]["mr"]["source"].update(file="nope.csv"), "config key tasks.mr.source"),
    (lambda c: c.update(seedz=[1]), "config key (top level): Additional properties"),
    (lambda c: c["tasks"]["mr"].update(finetune={"epoch": 2}), "config key tasks.mr.finetune"),
    (lambda c: c["models"]["minilm"].pop("id"), "config key models.minilm: 'id' is a required property"),
    (lambda c: c.update(seeds=[]), "config key seeds"),
    (lambda c: c["tasks"].update({"bad/name": c["tasks"]["mr"]}), "config key tasks"),
    (lambda c: c["tasks"].update(x={"source": {"kind": "local", "path": "/no/such.csv"}}),
     "config key tasks.x.source.path: /no/such.csv does not exist"),
])
def test_bad_config_is_one_line_naming_the_key(edit, culprit):
    config = default_config()
    edit(config)
    with pytest.raises(UserError) as error:
        check(config)
    assert str(error.value).startswith(culprit)
    assert "\n" not in str(error.value)


def test_task_overrides_only_its_own_settings():
    config = default_config()
    config["tasks"]["mr"]["finetune"] = {"learning_rate": 1e-4}
    check(config)
    assert rc.finetune_settings(config, rc.Variant("mr", 0))["learning_rate"] == 1e-4
    assert rc.finetune_settings(config, rc.Variant("hedge", 0))["learning_rate"] == 5e-5
    assert rc.finetune_settings(config, rc.Variant("mr", 0))["epochs"] == config["finetune"]["epochs"]
    frozen = rc.finetune_settings(config, rc.Variant("mr", 0, freeze=3))
    assert frozen["freeze_layers"] == 3 and frozen["learning_rate"] == 1e-4


def test_variants_and_probe_sets():
    config = check(default_config())
    assert rc.variants(config) == ["base", "mr-s0", "mr-s1", "mr-s2", "mr-f3-s0", "mr-f3-s1", "mr-f3-s2",
                                   "hedge-s0", "hedge-s1", "hedge-s2", "hedge-f3-s0", "hedge-f3-s1", "hedge-f3-s2"]
    assert rc.seed_pairs(config, "mr") == [("mr-s0", "mr-s1"), ("mr-s1", "mr-s2")]
    assert [rc.pair_name(*pair) for pair in rc.seed_pairs(config, "hedge")] == ["hedge-s0-vs-s1", "hedge-s1-vs-s2"]
    assert rc.pair_variants("my_task.v2-s3-vs-s10") == ("my_task.v2-s3", "my_task.v2-s10")
    assert rc.is_seed_pair("mr-s0-vs-s1") and not rc.is_seed_pair("mr-s0")
    assert rc.parse_variant("hedge-s1") == rc.Variant("hedge", 1) and rc.parse_variant("base") is None
    assert rc.parse_variant("hedge-f3-s1") == rc.Variant("hedge", 1, 3)
    assert rc.parse_variant("my_task.v2-f10-s7").name == "my_task.v2-f10-s7"
    assert rc.probe_sets(config, "base") == ["dev-mr", "dev-hedge", "pos", "ood"]
    assert rc.probe_sets(config, "mr-s1") == ["dev-mr", "pos", "ood"]
    assert rc.pattern_files(config) == ["polarity-en-pang&lee2.csv", "tagged-en-oanc.txt", "tagged-en-wsj.txt",
                                        "uncertainty-conll2010.csv"]


def test_resources_layer_defaults_and_rule_entries():
    config = check(default_config())
    assert rc.rule_resources(config, "finetune")["threads"] == 1, "config.yaml's entry"
    assert rc.rule_resources(config, "baseline")["threads"] == 64, "a heavy rule takes every core by default"
    assert rc.rule_resources(config, "metrics") == rc.RESOURCE_DEFAULTS


def test_numbers_written_without_a_dot_are_read_as_numbers(tmp_path):
    """YAML reads 5e-5 as the text '5e-5'; a number key takes it as 5.0e-5, any other text still fails."""
    path = tmp_path / "config.yaml"
    text = (REPO / "config.yaml").read_text().replace("learning_rate: 5.0e-5", "learning_rate: 5e-5")
    path.write_text(text)
    assert rc.load_config(path, SCHEMA)["finetune"]["learning_rate"] == 5.0e-5
    path.write_text(text.replace("learning_rate: 5e-5", "learning_rate: fast"))
    with pytest.raises(UserError, match="config key finetune.learning_rate: 'fast' is not of type 'number'"):
        rc.load_config(path, SCHEMA)
