"""Configuration: schema validation with one-line errors, defaults, and the derived DAG vocabulary."""

import re
from pathlib import Path

import jsonschema
import yaml

from .errors import UserError

BASE = "base"
RESOURCE_DEFAULTS = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
HEAVY_RULES = ("finetune", "extract")


def _fill_defaults(validator, properties, instance, schema):
    if isinstance(instance, dict):
        for name, sub in properties.items():
            if "default" in sub and name not in instance:
                instance[name] = yaml.safe_load(yaml.safe_dump(sub["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_defaults})


def _describe(error) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key {key}: {error.message}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    return f"config key {key}: {error.message}"


def check_config(config: dict, schema_path) -> dict:
    """Validate `config` against the schema in place (filling defaults); raise UserError naming the bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(config))
    if error is not None:
        raise UserError(_describe(error))
    for group in ("tasks", "probes"):
        for name, entry in config[group].items():
            source = entry["source"]
            if source["kind"] == "local" and not Path(source["path"]).exists():
                raise UserError(f"config key {group}.{name}.source.path: {source['path']} does not exist")
    clash = {f"dev-{t}" for t in config["tasks"]} & set(config["probes"])
    if clash:
        raise UserError(f"config key probes: {', '.join(sorted(clash))} clashes with a task's dev probe set name")
    return config


def load_config(path, schema_path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the config ({exc.__class__.__name__})") from None
    return check_config(config, schema_path)


def finetune_settings(config: dict, task: str) -> dict:
    """The global finetune settings with the task's own overrides on top."""
    return {**config["finetune"], **config["tasks"][task].get("finetune", {})}


def finetuned_variant(task: str, seed) -> str:
    return f"{task}-s{seed}"


def parse_variant(variant: str) -> tuple[str, int] | None:
    """(task, seed) of a fine-tuned variant name; None for the pre-trained model."""
    match = re.fullmatch(r"(.+)-s(\d+)", variant)
    return None if variant == BASE else (match.group(1), int(match.group(2)))


def variants(config: dict) -> list[str]:
    return [BASE] + [finetuned_variant(t, s) for t in config["tasks"] for s in config["seeds"]]


def dev_probe(task: str) -> str:
    return f"dev-{task}"


def probe_sets(config: dict, variant: str) -> list[str]:
    """Probe sets extracted for a variant: every task's dev set for the base model, its own task's otherwise."""
    parsed = parse_variant(variant)
    tasks = list(config["tasks"]) if parsed is None else [parsed[0]]
    return [dev_probe(t) for t in tasks] + list(config["probes"])


def pattern_files(config: dict) -> list[str]:
    entries = [*config["tasks"].values(), *config["probes"].values()]
    return sorted({e["source"]["file"] for e in entries if e["source"]["kind"] == "pattern"})


def rule_resources(config: dict, rule: str) -> dict:
    """Threads, mem_mb, runtime and gpu of a rule; fine-tune and extract take every core they are given."""
    table = config["resources"]
    heavy = {"threads": 64, "mem_mb": 8000} if rule in HEAVY_RULES else {}
    return {**RESOURCE_DEFAULTS, **table.get("default", {}), **heavy, **table.get(rule, {})}
