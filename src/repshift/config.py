"""Configuration: schema validation with one-line errors, defaults, and the derived DAG vocabulary."""

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from . import catalog
from .catalog import DEV_ROLE, OUT_OF_DOMAIN, TAGGED  # noqa: F401  (the roles, re-exported)
from .errors import UserError

BASE = "base"
FULL = "full"  # the method of a fine-tune that trains every parameter
PAIR = "-vs-s"
BETWEEN = "__vs__"  # joins the two variants of a configured comparison
SINGLE_ROLES = (TAGGED, OUT_OF_DOMAIN)
RESOURCE_DEFAULTS = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
HEAVY_RULES = ("finetune", "baseline", "extract")


def _fill_defaults(validator, properties, instance, schema):
    if isinstance(instance, dict):
        for name, sub in properties.items():
            if "default" in sub and name not in instance:
                instance[name] = yaml.safe_load(yaml.safe_dump(sub["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


def _one_of(validator, branches, instance, schema):
    """oneOf that fills the defaults of the one matching branch only (each branch is tried on a copy)."""
    matching = [branch for branch in branches if not any(validator.descend(copy.deepcopy(instance), branch))]
    if len(matching) == 1:
        yield from validator.descend(instance, matching[0])
    else:
        yield from jsonschema.Draft202012Validator.VALIDATORS["oneOf"](validator, branches, copy.deepcopy(instance),
                                                                       schema)


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                          {"properties": _fill_defaults, "oneOf": _one_of})


def _describe(error) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key {key}: {error.message}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    return f"config key {key}: {error.message}"


def _non_finite(value, key=()):
    """(key path, value) of the first NaN or infinite number in a config, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for k, v in items if (found := _non_finite(v, (*key, k))) is not None), None)


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _read_numbers_written_as_text(config: dict, errors) -> None:
    """YAML 1.1 reads 5e-5 (no dot) as text: where the schema wants a number, read such text as the number."""
    for error in errors:
        wanted = error.validator_value if error.validator == "type" else ()
        if "number" in wanted and isinstance(error.instance, str) and NUMBER.fullmatch(error.instance.strip()):
            *parents, key = error.absolute_path
            container = config
            for part in parents:
                container = container[part]
            container[key] = float(error.instance)


def check_config(config: dict, schema_path) -> dict:
    """Validate `config` against the schema in place (filling defaults); raise UserError naming the bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    _read_numbers_written_as_text(config, _Validator(schema).iter_errors(config))
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(config))
    if error is not None:
        raise UserError(_describe(error))
    if (found := _non_finite(config)) is not None:
        raise UserError(f"config key {'.'.join(map(str, found[0]))}: {found[1]} is not a finite number")
    for group in ("tasks", "probes"):
        for name, entry in config[group].items():
            source = entry["source"]
            if source["kind"] == "local" and not _exists(source["path"]):
                raise UserError(f"config key {group}.{name}.source.path: {source['path']} does not exist")
    for name, entry in config["tasks"].items():
        _check_task_kind(name, entry)
    clash = {f"dev-{t}" for t in config["tasks"]} & set(config["probes"])
    if clash:
        raise UserError(f"config key probes: {', '.join(sorted(clash))} clashes with a task's dev probe set name")
    for role in SINGLE_ROLES:
        named = [name for name, entry in config["probes"].items() if entry["role"] == role]
        if len(named) > 1:
            raise UserError(f"config key probes: {' and '.join(named)} both have role {role}; the claims read one "
                            f"probe set per role: give the others role extra")
    dynamics = config["dynamics"]
    dynamics.setdefault("seeds", config["seeds"][:1])
    for key, chosen, known in (("tasks", dynamics["tasks"], list(config["tasks"])),
                               ("seeds", dynamics["seeds"], config["seeds"])):
        unknown = [value for value in chosen if value not in known]
        if unknown:
            raise UserError(f"config key dynamics.{key}: {', '.join(map(str, unknown))} not among the config's {key} "
                            f"({', '.join(map(str, known))})")
    known = variants(config)[1:]
    for index, pair in enumerate(config["comparisons"]):
        unknown = [name for name in pair if name not in known]
        if unknown or pair[0] == pair[1]:
            what = f"{unknown[0]} is not a fine-tuned variant of this config" if unknown else "a variant with itself"
            raise UserError(f"config key comparisons.{index}: {what}; the variants are {', '.join(known)}")
    try:
        catalog.resolve(config["measures"], config["metrics"]["layer_by_layer"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return config


SHAPES = {  # what a source's examples are, and the kinds that read them (the first: the one to suggest)
    "pair": ("pair_classification", "regression"),
    "tagged": ("token_classification",),
    "tree": ("dependency_parsing", "token_classification"),
    "choices": ("multiple_choice",),
    "questions": ("extractive_qa",),
    "text": ("classification", "regression"),
}
HOLDS = {"pair": "holds sentence pairs (an SNLI file, or a text_pair_column)",
         "tagged": "holds a tag per word (word/TAG lines, a .conllulex file, or a tokens_column)",
         "tree": "holds dependency trees (a .conllu file, or a heads_column)",
         "choices": "holds candidate answers (a choices_column or choice_columns)",
         "questions": "holds questions with answers in a context (a SQuAD .json file, or an answers_column)",
         "text": "holds one text and a label per example"}


def _shape(source: dict) -> str:
    """What a source's examples are: a key of SHAPES."""
    if "choices_column" in source or "choice_columns" in source:
        return "choices"
    named = Path(source.get("file", source.get("path", "")))
    if "answers_column" in source or (source["kind"] == "local" and named.suffix == ".json"):
        return "questions"
    if source["kind"] == "snli" or "text_pair_column" in source:
        return "pair"
    if "heads_column" in source or (source["kind"] == "local" and named.suffix == ".conllu"):
        return "tree"
    tagged_file = source["kind"] in ("pattern", "local") and named.suffix in (".txt", ".conllulex")
    return "tagged" if tagged_file or "tokens_column" in source else "text"


def _check_task_kind(name: str, entry: dict) -> None:
    """A task's kind must read its source's examples: one line naming the key and the fix otherwise."""
    kind, shape = entry["kind"], _shape(entry["source"])
    if "label_values" in entry["source"] and shape != "choices":
        raise UserError(f"config key tasks.{name}.source.label_values: names the answers of multiple-choice data, "
                        f"and tasks.{name}.source {HOLDS[shape]}; drop it or name the answers' columns")
    if kind not in SHAPES[shape]:
        pair = kind == SHAPES["pair"][0]
        raise UserError(f"config key tasks.{name}.kind: {kind} does not read tasks.{name}.source, which "
                        f"{HOLDS[shape]}; set kind to {' or '.join(SHAPES[shape])}"
                        + (", or name the second text with source.text_pair_column" if pair else ""))


def task_preparation(config: dict, task: str) -> dict:
    """How a task's source becomes its task file: its kind, and the split sizes (the task's overrides on top)."""
    entry = config["tasks"][task]
    return {**config["split"], **entry.get("split", {}), "kind": entry["kind"]}


def load_config(path, schema_path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the config ({exc.__class__.__name__})") from None
    return check_config(config, schema_path)


@dataclass(frozen=True)
class Variant:
    """A fine-tuned model: task, seed, the number of bottom layers frozen (None: the task's setting), the fraction
    of the planned training steps its weights were taken at (None: the finished fine-tune), and the fine-tuning method
    (a config `methods` name; None: every parameter trains)."""

    task: str
    seed: int
    freeze: int | None = None
    fraction: float | None = None
    method: str | None = None

    @property
    def name(self) -> str:
        how = "" if self.method is None else f"+{self.method}"
        frozen = "" if self.freeze is None else f"-f{self.freeze}"
        taken = "" if self.fraction is None else f"-at{self.fraction:g}"
        return f"{self.task}{how}{frozen}-s{self.seed}{taken}"

    @property
    def how(self) -> str:
        """The fine-tuning method's name; FULL where every parameter trains."""
        return self.method or FULL


def task_finetune(config: dict, task: str) -> dict:
    """The global finetune settings with the task's overrides on top."""
    return {**config["finetune"], **config["tasks"][task].get("finetune", {})}


def finetune_settings(config: dict, variant: Variant) -> dict:
    """The task's finetune settings (task_finetune) with the variant's freezing, stopping fraction and method on top."""
    settings = task_finetune(config, variant.task)
    if variant.freeze is not None:
        settings = {**settings, "freeze_layers": variant.freeze}
    if variant.method is not None:
        method = config["methods"][variant.method]
        settings = {**settings, "learning_rate": method.get("learning_rate", settings["learning_rate"]),
                    "method": {"name": variant.method, **method}}
    return settings if variant.fraction is None else {**settings, "stop_fraction": variant.fraction}


def baseline_settings(config: dict, task: str) -> dict:
    """What the task's baselines run with: its fine-tuning encoding settings and the metrics' probe settings."""
    settings, metrics = task_finetune(config, task), config["metrics"]
    return {"max_length": settings["max_length"], "eval_batch_size": settings["eval_batch_size"],
            "probe_l2": metrics["probe_l2"], "probe_iterations": metrics["probe_iterations"], "seed": metrics["seed"]}


def parse_variant(variant: str) -> Variant | None:
    """The fine-tuned variant a name stands for; None for the pre-trained model."""
    if variant == BASE:
        return None
    task, method, freeze, seed, fraction = re.fullmatch(r"(.+?)(?:\+([\w.]+))?(?:-f(\d+))?-s(\d+)(?:-at([\d.]+))?",
                                                      variant).groups()
    return Variant(task, int(seed), None if freeze is None else int(freeze),
                   None if fraction is None else float(fraction), method)


def task_variants(config: dict, task: str, full_only: bool = False) -> list[Variant]:
    """Every seed of a task fully fine-tuned and, unless `full_only`, with each configured frozen depth and each
    fine-tuning method."""
    full = [Variant(task, seed) for seed in config["seeds"]]
    if full_only:
        return full
    return (full + [Variant(task, seed, k) for k in config["ablations"]["freeze_layers"] for seed in config["seeds"]]
            + [Variant(task, seed, method=m) for m in config["methods"] for seed in config["seeds"]])


def snapshot_variants(config: dict, task: str) -> list[Variant]:
    """The followed fine-tunes of a task (config dynamics) at each fraction of their planned steps, in step order."""
    dynamics = config["dynamics"]
    if task not in dynamics["tasks"]:
        return []
    return [Variant(task, seed, fraction=f) for seed in dynamics["seeds"] for f in sorted(dynamics["fractions"])]


def is_snapshot(variant: str) -> bool:
    parsed = tuned(variant)
    return parsed is not None and parsed.fraction is not None


def seed_pairs(config: dict, task: str) -> list[tuple[str, str]]:
    """The fully fine-tuned variants of a task compared with each other for the seed floor: consecutive seeds."""
    tuned = [v.name for v in task_variants(config, task, full_only=True)]
    return list(zip(tuned, tuned[1:]))


def pair_name(first: str, second: str) -> str:
    """The name of a seed-floor pair, e.g. mr-s0-vs-s1 (the first variant, then the second one's seed)."""
    return f"{first}{PAIR}{parse_variant(second).seed}"


def is_seed_pair(variant: str) -> bool:
    return PAIR in variant


def is_comparison(variant: str) -> bool:
    return BETWEEN in variant


def comparison_name(first: str, second: str) -> str:
    return f"{first}{BETWEEN}{second}"


def comparison_variants(comparison: str) -> tuple[str, str]:
    first, second = comparison.split(BETWEEN)
    return first, second


def tuned(variant: str) -> Variant | None:
    """The fine-tuned variant a table's variant column names; None for the base model, a seed pair or a comparison."""
    return None if variant == BASE or is_seed_pair(variant) or is_comparison(variant) else parse_variant(variant)


def shared_probe_sets(config: dict, first: str, second: str) -> list[str]:
    """The probe sets both variants are extracted on: the shared sets, and a task's dev set when both tuned on it."""
    theirs = set(probe_sets(config, second))
    return [probe for probe in probe_sets(config, first) if probe in theirs]


def pair_variants(pair: str) -> tuple[str, str]:
    """The two fine-tuned variants a seed-floor pair name stands for (pair_name's inverse)."""
    first, seed = pair.rsplit(PAIR, 1)
    return first, Variant(parse_variant(first).task, int(seed)).name


def variants(config: dict) -> list[str]:
    return [BASE] + [v.name for t in config["tasks"] for v in task_variants(config, t) + snapshot_variants(config, t)]


def dev_probe(task: str) -> str:
    return f"dev-{task}"


def probe_role(config: dict, probe: str) -> str:
    """What a probe set is to the claims and figures: dev (a task's dev sentences), tagged, out_of_domain, extra."""
    return config["probes"][probe]["role"] if probe in config["probes"] else DEV_ROLE


def metric_settings(config: dict) -> dict:
    """What the metrics and compare steps run: the shared `metrics` settings and each chosen measure's settings."""
    return {"metrics": config["metrics"],
            "measures": catalog.resolve(config["measures"], config["metrics"]["layer_by_layer"])}


def probe_sets(config: dict, variant: str) -> list[str]:
    """Probe sets extracted for a variant: every task's dev set for the base model, its own task's otherwise."""
    parsed = parse_variant(variant)
    tasks = list(config["tasks"]) if parsed is None else [parsed.task]
    return [dev_probe(t) for t in tasks] + list(config["probes"])


def pattern_files(config: dict) -> list[str]:
    entries = [*config["tasks"].values(), *config["probes"].values()]
    return sorted({e["source"]["file"] for e in entries if e["source"]["kind"] == "pattern"})


def rule_resources(config: dict, rule: str) -> dict:
    """Threads, mem_mb, runtime and gpu of a rule; fine-tune and extract take every core they are given."""
    table = config["resources"]
    heavy = {"threads": 64, "mem_mb": 8000} if rule in HEAVY_RULES else {}
    return {**RESOURCE_DEFAULTS, **table.get("default", {}), **heavy, **table.get(rule, {})}
