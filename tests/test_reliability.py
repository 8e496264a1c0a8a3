"""Faults injected (SIGKILL mid-step, corrupted, truncated or mismatched artifacts) and bad input tried."""

import ast
import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import jsonschema
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REPO, Project, sentences, tiny_config
from repshift import config as rc
from repshift import data
from repshift.activations import Activations, extract
from repshift.errors import UserError
from repshift.finetune import checkpoint_fingerprint, finetune, load_checkpoint
from repshift.metrics import expected_provenance, layer_metrics
from repshift.provenance import file_sha256

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
FINETUNE = {"epochs": 12, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.01,
            "warmup_ratio": 0.1, "max_length": 32, "freeze_layers": 0, "checkpoint_every": 3, "patience": None,
            "precision": "auto"}
BASE_ACT = {"model": "tiny", "variant": "base", "probe": "pos"}
# a config methods entry as finetune_settings passes it; dropout draws from the RNG state a resume must restore
LORA = {"name": "lora", "kind": "lora", "rank": 2, "alpha": 4, "dropout": 0.1, "target_modules": ["query", "value"]}
PROMPT = {"name": "prompt", "kind": "prompt", "virtual_tokens": 3}


def repshift(step: str, **options) -> list[str]:
    """The command line of `python -m repshift <step>`, with dict options as JSON."""
    command = [sys.executable, "-m", "repshift", step]
    for name, value in options.items():
        command += [f"--{name}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return command


def kill_when(command: list[str], ready, log: Path, timeout: float = 120) -> None:
    """Start `command`; SIGKILL its process group the moment `ready()` holds, while it still runs."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=ENV, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before the fault was injected:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the fault's trigger never came"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def run(command: list[str]) -> str:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=True)


def tensors(model_dir: Path) -> dict:
    """Every saved tensor of a fine-tuned model (weights, and a prompt-tuned one's prompt), by file and name."""
    from safetensors.numpy import load_file

    return {(path.name, name): tensor for path in sorted(model_dir.glob("*.safetensors"))
            for name, tensor in load_file(path).items()}


def temporaries(path: Path) -> list[Path]:
    """The temporary siblings that atomic writes of `path` use."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def metrics_settings(tiny_assets) -> dict:
    model_dir, files = tiny_assets
    return rc.metric_settings(rc.check_config(tiny_config(model_dir, files), SCHEMA))


@pytest.fixture(scope="module")
def activations(tmp_path_factory, tiny_assets):
    """A complete extraction of the tiny model on the POS probe set."""
    model_dir, files = tiny_assets
    root = tmp_path_factory.mktemp("act")
    data.prepare_probe(root / "pos.json", {}, max_sentences=None, seed=0,
                       source={"kind": "local", "path": str(files["tagged.txt"])})
    extract({"id": str(model_dir)}, root / "pos.json", root / "pos.h5",
            {"max_length": 32, "batch_tokens": 256, "dtype": "float32"},
            threads=1, provenance=BASE_ACT)
    return root / "pos.h5"


@pytest.fixture
def damaged(activations, tmp_path):
    """A writable copy of the extraction, to damage."""
    path = tmp_path / "pos.h5"
    shutil.copy(activations, path)
    return path


# Crash safety: SIGKILL in the middle of a step.

@pytest.mark.parametrize("method", [None, LORA, PROMPT], ids=["full", "lora", "prompt"])
def test_finetune_killed_twice_resumes_to_the_uninterrupted_result(tiny_assets, task_file, tmp_path, method):
    model_dir, _ = tiny_assets
    provenance = {"model": "tiny", "variant": "sent-s0", "task": "sent", "seed": 0}
    settings = FINETUNE | ({"method": method} if method else {})
    finetune({"id": str(model_dir)}, task_file, tmp_path / "reference", 0, settings, threads=1, provenance=provenance)
    out = tmp_path / "killed"
    command = repshift("finetune", model={"id": str(model_dir)}, task=task_file, out=out, seed=0, threads=1,
                       settings=settings, provenance=provenance)
    state = out / ".checkpoint/state.pt"
    kill_when(command, state.exists, tmp_path / "first.log")
    first = torch_load(state)
    written = state.stat().st_mtime_ns
    kill_when(command, lambda: state.stat().st_mtime_ns != written, tmp_path / "second.log")
    second = torch_load(state)
    assert "resuming from the checkpoint at step" in (tmp_path / "second.log").read_text()
    assert 0 < len(first["losses"]) < len(second["losses"]) < FINETUNE["epochs"] * 9
    assert not (out / "train_metrics.json").exists() and not (out / "model.safetensors").exists()

    log = run(command)
    assert f"resuming from the checkpoint at step {len(second['losses'])} of {FINETUNE['epochs'] * 9}" in log
    reference, resumed = tensors(tmp_path / "reference"), tensors(out)
    assert reference.keys() == resumed.keys()
    assert all(np.array_equal(reference[name], resumed[name]) for name in reference)
    curves = [json.loads((d / "train_metrics.json").read_text()) for d in (tmp_path / "reference", out)]
    assert curves[0]["loss"] == curves[1]["loss"] and curves[0]["dev_metric"] == curves[1]["dev_metric"]
    assert curves[0]["dev_replicates"] == curves[1]["dev_replicates"]
    assert not (out / ".checkpoint").exists()


def test_checkpoint_of_other_settings_or_unreadable_is_not_resumed(task_file, tmp_path, capsys):
    fingerprint = checkpoint_fingerprint(FINETUNE, 0, task_file, "a" * 64, {"variant": "sent-s0"})
    assert checkpoint_fingerprint({**FINETUNE, "checkpoint_every": 7}, 0, task_file, "a" * 64,
                                  {"variant": "sent-s0"}) == fingerprint
    for changed in (checkpoint_fingerprint({**FINETUNE, "learning_rate": 2e-3}, 0, task_file, "a" * 64,
                                           {"variant": "sent-s0"}),
                    checkpoint_fingerprint(FINETUNE, 1, task_file, "a" * 64, {"variant": "sent-s0"}),
                    checkpoint_fingerprint(FINETUNE, 0, task_file, "b" * 64, {"variant": "sent-s0"})):
        assert changed != fingerprint
    import torch

    state = tmp_path / "state.pt"
    torch.save({"fingerprint": fingerprint, "losses": [1.0]}, state)
    assert load_checkpoint(state, fingerprint)["losses"] == [1.0]
    assert load_checkpoint(state, "other") is None
    state.write_bytes(state.read_bytes()[:40])
    assert load_checkpoint(state, fingerprint) is None
    assert "unreadable checkpoint" in capsys.readouterr().out


def test_extract_killed_mid_write_leaves_no_file_and_the_partial_one_is_refused(tiny_assets, tmp_path):
    model_dir, _ = tiny_assets
    probe = {"provenance": {}, "words": [w for w, _ in sentences(2000, seed=7)], "tags": None, "labels": None,
             "tag_names": [], "label_names": []}
    (tmp_path / "big.json").write_text(json.dumps(probe))
    out, options = tmp_path / "act/big.h5", {"max_length": 32, "batch_tokens": 64, "dtype": "float32"}
    command = repshift("extract", model={"id": str(model_dir)}, probe=tmp_path / "big.json", out=out, threads=1,
                       settings=options, provenance=BASE_ACT)
    kill_when(command, lambda: bool(temporaries(out)), tmp_path / "extract.log")
    assert not out.exists()
    [partial] = temporaries(out)
    with pytest.raises(UserError, match=rf"{re.escape(str(partial))}: .*rerun the extract rule"):
        Activations(partial)

    extract({"id": str(model_dir)}, tmp_path / "big.json", out, options, threads=1, provenance=BASE_ACT)
    with Activations(out, expect=BASE_ACT) as act:
        assert len(act.sentence_meta("sentence_id")) == 2000


CSV_KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
import pandas
from repshift import cli

write = pandas.DataFrame.to_csv

def half_then_hang(frame, path, **options):
    write(frame.iloc[: len(frame) // 2], path, **options)
    Path(sys.argv[1]).touch()
    time.sleep(600)

pandas.DataFrame.to_csv = half_then_hang
cli.main(sys.argv[2:])
"""


def test_metrics_killed_mid_write_leaves_no_csv(activations, tiny_assets, tmp_path):
    out, options = tmp_path / "metrics/pos.csv", metrics_settings(tiny_assets)
    identity = {**BASE_ACT, "task": "", "seed": ""}
    args = repshift("metrics", out=out, activations=activations, settings=options, provenance=identity)[3:]
    marker = tmp_path / "half-written"
    kill_when([sys.executable, "-c", CSV_KILLED_MID_WRITE, str(marker), *args], marker.exists, tmp_path / "m.log")
    assert not out.exists()
    [partial] = temporaries(out)
    assert partial.read_text().count("\n") > 10

    layer_metrics(activations, out, options, identity)
    assert out.read_text().startswith(partial.read_text()) and len(out.read_text()) > len(partial.read_text())


# Integrity: what a step reads is what it expects.

def test_activations_of_another_variant_probe_or_weights_are_refused(activations, tiny_assets, tmp_path):
    model_dir, _ = tiny_assets
    with Activations(activations, expect=expected_provenance(BASE_ACT, model_dir / "model.safetensors")) as act:
        assert act.n_layers == 3
    for identity, culprit in (({**BASE_ACT, "variant": "sent-s0"}, "variant is 'base', expected 'sent-s0'"),
                              ({**BASE_ACT, "probe": "ood"}, "probe is 'pos', expected 'ood'"),
                              ({**BASE_ACT, "model": "other"}, "model is 'tiny', expected 'other'")):
        with pytest.raises(UserError, match=rf"^{re.escape(str(activations))}: provenance {culprit}; delete it "
                                            "and rerun the extract rule that makes it$"):
            layer_metrics(activations, tmp_path / "m.csv", {}, identity)
    retrained = tmp_path / "model.safetensors"
    retrained.write_bytes(b"other weights")
    with pytest.raises(UserError, match=f"provenance weights_sha256 is .*expected '{file_sha256(retrained)}'"):
        layer_metrics(activations, tmp_path / "m.csv", {}, BASE_ACT, weights=retrained)
    with pytest.raises(UserError, match="provenance n_layers is 3, expected 4"):
        Activations(activations, expect={"n_layers": 4})
    assert not (tmp_path / "m.csv").exists()


def test_corrupted_chunk_is_detected_by_its_checksum(damaged):
    with h5py.File(damaged) as handle:
        chunk = handle["tokens/hidden"].id.get_chunk_info(1)
    with open(damaged, "r+b") as raw:
        raw.seek(chunk.byte_offset + chunk.size // 2)
        byte = raw.read(1)
        raw.seek(-1, os.SEEK_CUR)
        raw.write(bytes([byte[0] ^ 0xFF]))
    with Activations(damaged) as act:
        act.tokens(0)
        with pytest.raises(UserError, match=rf"{re.escape(str(damaged))}: corrupt data in tokens/hidden .*extract"):
            act.tokens(1)


@pytest.mark.parametrize("damage, culprit", [
    (lambda h: h.__delitem__("sentences/label"), "damaged metadata"),
    (lambda h: h.attrs.__setitem__("provenance", "{not json"), "damaged metadata"),
    (lambda h: h.attrs.__setitem__("provenance", json.dumps({**json.loads(h.attrs["provenance"]), "n_layers": 5})),
     "tokens/hidden has shape"),
    (lambda h: h.attrs.__setitem__("complete", False), "incomplete"),
])
def test_damaged_file_is_refused_in_one_line(damaged, damage, culprit):
    with h5py.File(damaged, "a") as handle:
        damage(handle)
    with pytest.raises(UserError, match=rf"^{re.escape(str(damaged))}: {culprit}[^\n]*extract rule[^\n]*$"):
        Activations(damaged)


def test_truncated_file_is_refused(damaged):
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(UserError, match=rf"^{re.escape(str(damaged))}: not a readable HDF5 file"):
        Activations(damaged)


def test_nan_activations_stop_the_metrics(damaged, tiny_assets, tmp_path):
    with h5py.File(damaged, "a") as handle:
        handle["tokens/hidden"][1, 5, 0] = np.nan
    out = tmp_path / "m.csv"
    with pytest.raises(UserError, match=r"non-finite activations in tokens/hidden layer 1; the model diverged"):
        layer_metrics(damaged, out, metrics_settings(tiny_assets), BASE_ACT)
    assert not out.exists() and not temporaries(out)


# Bad input.

def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return all(finite(v) for v in items)


SCALARS = (st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats() | st.text(max_size=10)
           | st.sampled_from(["local", "hub", "pattern", "tagged-en-wsj.txt", str(SCHEMA), "/no/such", "a\0b", "x" * 300]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3), max_leaves=6)
KEYS = st.sampled_from(["kind", "path", "file", "source", "epochs", "learning_rate", "seeds", "finetune", "extract",
                        "metrics", "max_length", "id", "revision", "trust_remote_code", "resources", "threads",
                        "max_sentences", "freeze_layers", "checkpoint_every", "sha256", "split", "dev_size"])


def valid_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["tasks"]["local"] = {"source": {"kind": "local", "path": str(SCHEMA)}, "finetune": {"epochs": 2}}
    return config


@st.composite
def mutated_configs(draw):
    """The default config with a few keys anywhere set to arbitrary YAML values, added or deleted."""
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)
    config = valid_config()
    for _ in range(draw(st.integers(1, 3))):
        node = config
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node, key=str)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            continue
        key = draw(st.sampled_from(sorted(node, key=str)) | KEYS) if node else draw(KEYS)
        if draw(st.integers(0, 4)) == 0:
            node.pop(key, None)
        else:
            node[key] = draw(VALUES)
    return config


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_fuzzed_config_is_valid_or_one_line_naming_the_key(config):
    try:
        checked = rc.check_config(config, SCHEMA)
    except UserError as error:
        message = str(error)
        assert message.startswith("config key ") and "\n" not in message
        return
    jsonschema.validate(checked, yaml.safe_load(SCHEMA.read_text()))
    assert finite(checked)
    assert rc.check_config(copy.deepcopy(checked), SCHEMA) == checked


BAD_CORPORA = [
    ("t.csv", b"text,label\ngood film,pos\n,neg\n", "t.csv:3: empty text"),
    ("t.csv", b"text,label\ngood film,pos\nbad film,neg,extra\n", "t.csv:3: expected 2 columns as in the header, found 3"),
    ("t.csv", b"text,label\ngood film,pos\nbad film\n", "t.csv:3: expected 2 columns as in the header, found 1"),
    ("t.csv", b"text,label\ngood film,pos\nbad \xff film,neg\n", "t.csv:3: invalid UTF-8 at byte 29"),
    ("t.csv", b"text,label\n\"" + b"x" * 200_000 + b"\",pos\n", "t.csv:2: malformed CSV"),
    ("t.csv", b"", "t.csv: empty file"),
    ("t.csv", b"text,label\ngood film,pos\nbad film, \n", "t.csv:3: empty label"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0\n', "t.jsonl:2: not valid JSON"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n["bad", 0]\n', "t.jsonl:2: a JSON list, not an object"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n{"text": 5, "label": 0}\n', "t.jsonl:2: the text is a int"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n{"text": "bad", "label": [0]}\n', "t.jsonl:2: the label is a list"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n{"text": "  ", "label": 0}\n', "t.jsonl:2: empty text"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n\n{"text": "b\xc3", "label": 0}\n', "t.jsonl:3: invalid UTF-8"),
    ("t.jsonl", b'{"text": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n', "t.jsonl:2: no column text"),
    ("t.txt", b"a/DT film/NN\nthe/DT \xe9t\xe9/NN\n", "t.txt:2: invalid UTF-8 at byte 20"),
    ("t.txt", b"a/DT film/NN\nthe/DT /NN\n", "t.txt:2: a token is not of the form word/TAG"),
]


@pytest.mark.parametrize("name, content, culprit", BAD_CORPORA, ids=[c for _, _, c in BAD_CORPORA])
def test_bad_corpus_names_file_and_row(tmp_path, name, content, culprit):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError) as error:
        data.load_source({"kind": "local", "path": str(tmp_path / name)}, None)
    assert str(error.value).startswith(f"{tmp_path}/{culprit}") and "\n" not in str(error.value)


def test_pattern_corpus_with_bad_encoding_names_row(tmp_path):
    (tmp_path / "p.csv").write_bytes(b'\xef\xbb\xbf"1","a fine film ."\n"-1","a \xe9 film ."\n')
    with pytest.raises(UserError, match=r"p.csv:2: invalid UTF-8 at byte 31"):
        data.load_source({"kind": "pattern", "file": "p.csv"}, tmp_path)


def test_unlabelled_rows_of_a_class_label_dataset_are_refused(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    split = datasets.Dataset.from_dict({"text": ["a good film", "a film"], "label": [1, -1]}, features=features)
    split.save_to_disk(str(tmp_path / "test"))
    with pytest.raises(UserError, match=r"test: row 2: label -1 is not one of the 2 classes \(neg, pos\)"):
        data.load_source({"kind": "local", "path": str(tmp_path / "test")}, None)


def test_single_label_task_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\n" + "".join(f"film {i},pos\n" for i in range(10)))
    with pytest.raises(UserError, match="only one label"):
        data.prepare_task({"kind": "local", "path": str(tmp_path / "t.csv")}, None, tmp_path / "t.json", dev_size=2,
                          max_train=None, seed=0, provenance={})


def test_overlong_inputs_are_truncated_with_a_logged_count(tiny_assets, task_file, tmp_path, capsys):
    from repshift.models import load_tokenizer

    model_dir, files = tiny_assets
    tokenizer = load_tokenizer(model_dir)
    task = json.loads(task_file.read_text())
    expected = sum(len(ids) > 10 for ids in tokenizer(task["train"]["text"])["input_ids"])
    assert 0 < expected < len(task["train"]["text"])
    finetune({"id": str(model_dir)}, task_file, tmp_path / "ft", 0, {**FINETUNE, "epochs": 1, "max_length": 10},
             threads=1, provenance={})
    assert f"{expected} of {len(task['train']['text'])} training and " in (out := capsys.readouterr().out)
    assert "examples cut at 10 pieces" in out

    data.prepare_probe(tmp_path / "pos.json", {}, max_sentences=None, seed=0,
                       source={"kind": "local", "path": str(files["tagged.txt"])})
    words = json.loads((tmp_path / "pos.json").read_text())["words"]
    expected = sum(len(tokenizer(w, is_split_into_words=True)["input_ids"]) > 10 for w in words)
    assert 0 < expected < len(words)
    extract({"id": str(model_dir)}, tmp_path / "pos.json", tmp_path / "pos.h5",
            {"max_length": 10, "batch_tokens": 64, "dtype": "float32"},
            threads=1, provenance=BASE_ACT)
    assert f"{len(words)} sentences, " in (out := capsys.readouterr().out) and f"{expected} truncated at 10 pieces" in out
    with Activations(tmp_path / "pos.h5") as act:
        assert act.provenance["truncated_sentences"] == expected


def test_diverged_finetune_is_flagged_and_writes_nothing(tiny_assets, task_file, tmp_path):
    model_dir, _ = tiny_assets
    with pytest.raises(UserError, match=r"fine-tuning diverged: loss nan at step \d+; lower the task's "
                                        r"finetune.learning_rate"):
        finetune({"id": str(model_dir)}, task_file, tmp_path / "ft", 0,
                 {**FINETUNE, "epochs": 1, "learning_rate": 1e4, "warmup_ratio": 0.0}, threads=1, provenance={})
    assert not (tmp_path / "ft/model.safetensors").exists() and not (tmp_path / "ft/train_metrics.json").exists()


# Safety.

SOURCES = sorted((REPO / "src/repshift").glob("*.py"))


def test_no_code_is_run_from_config_values_or_unpickled():
    """No eval/exec, no pickle, yaml only through safe_load, torch.load only with weights_only, no shell=True."""
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"pickle", "marshal", "shelve", "dill"}, path
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            where, func = f"{path}:{node.lineno}", node.func
            assert not (isinstance(func, ast.Name) and func.id in {"eval", "exec", "compile", "__import__"}), where
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            name = func.attr if isinstance(func, ast.Attribute) else ""
            assert not (owner == "yaml" and name in {"load", "load_all", "unsafe_load", "full_load"}), where
            if owner == "torch" and name == "load":
                assert any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                           for k in node.keywords), where
            assert not any(k.arg == "shell" for k in node.keywords), where
    for path in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        assert not re.search(r"\b(eval|exec)\s*\(", path.read_text()), path


UNQUOTED_OK = {"REPSHIFT", "log", "threads", "params.seed", "params.args"}


def test_config_values_reach_the_shell_only_quoted():
    """Every placeholder in a rule's shell command is shell-quoted (:q), or is the interpreter, the log path
    (wildcards restricted to the schema's name pattern), the thread count, the integer seed, or built with shlex."""
    for path in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.findall(r"\n    shell:\n((?:        .*\n?)+)", path.read_text()):
            command = "".join(ast.literal_eval(line.strip()) for line in block.splitlines())
            for placeholder in re.findall(r"\{([^{}]+)\}", command):
                assert placeholder.endswith(":q") or placeholder in UNQUOTED_OK, f"{path.name}: {{{placeholder}}}"


def test_remote_code_is_off_unless_a_model_opts_in(tiny_assets, task_file, monkeypatch, tmp_path):
    from repshift import activations, finetune as finetuning, models

    model_dir, files = tiny_assets
    seen = []

    class Stop(Exception):
        pass

    def spy(path, trust_remote_code=False, head=None, labels=None):
        seen.append(trust_remote_code)
        raise Stop

    with monkeypatch.context() as patched:
        patched.setattr(activations, "load_encoder", spy)
        patched.setattr(models, "load_encoder", spy)  # what every task kind's load_model calls
        for spec in ({"id": str(model_dir)}, {"id": str(model_dir), "trust_remote_code": True}):
            with pytest.raises(Stop):
                activations.extract(spec, task_file, tmp_path / "x.h5", {"max_length": 8}, 1, {})
            with pytest.raises(Stop):
                finetuning.finetune(spec, task_file, tmp_path / "ft", 0, FINETUNE, 1, {})
    assert seen == [False, False, True, True]

    from transformers import AutoModel

    loaded = {}
    real = AutoModel.from_pretrained

    def recorded(path, **kwargs):
        loaded.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", recorded)
    models.load_encoder(model_dir)
    assert loaded == {"use_safetensors": True, "trust_remote_code": False}
    config = rc.check_config(tiny_config(model_dir, files), SCHEMA)
    assert config["models"]["tiny"]["trust_remote_code"] is False


def test_pickled_weights_are_refused(tiny_assets, tmp_path):
    import torch
    from transformers import AutoModel

    from repshift.models import load_encoder, resolve_model

    model_dir, _ = tiny_assets
    shutil.copy(model_dir / "config.json", tmp_path)
    torch.save(AutoModel.from_pretrained(str(model_dir)).state_dict(), tmp_path / "pytorch_model.bin")
    assert AutoModel.from_pretrained(str(tmp_path)) is not None, "transformers alone would load the pickle"
    with pytest.raises(UserError, match=r"has no model.safetensors; only safetensors weights are loaded"):
        resolve_model(str(tmp_path))
    with pytest.raises(OSError, match="model.safetensors"):
        load_encoder(tmp_path)


# Determinism and crash recovery of the workflow itself (the corpus checksum: tests/test_data.py
# ::test_fetch_from_local_deb_checks_sha256).

TARGETS = ["results/metrics/tiny/sent-s0/pos.csv", "results/compare/tiny/sent-s0/pos.csv",
           "results/metrics/tiny/base/pos.csv"]


def workflow_config(tiny_assets) -> dict:
    model_dir, files = tiny_assets
    config = tiny_config(model_dir, files)
    config["finetune"] |= {"epochs": 8, "checkpoint_every": 2}
    return config


def tables(project: Project) -> dict:
    return {target: (project.root / target).read_bytes() for target in TARGETS}


@pytest.mark.workflow
def test_same_config_twice_gives_identical_tables_even_when_killed_mid_finetune(tiny_assets, tmp_path):
    """Two runs of one config on CPU, the second SIGKILLed (snakemake and its jobs) while fine-tuning, then
    unlocked and rerun with --rerun-incomplete: it resumes from the checkpoint and every table is byte-identical."""
    clean, killed = (Project(tmp_path / name, workflow_config(tiny_assets)) for name in ("clean", "killed"))
    clean.snakemake(*TARGETS)

    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--workflow-profile", "none", *TARGETS]
    state = killed.root / "results/models/tiny/sent-s0/.checkpoint/state.pt"
    with open(tmp_path / "killed.log", "w") as output:
        process = subprocess.Popen(command, cwd=killed.root, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    while not state.exists():
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGSTOP)
    for pid in [process.pid, *descendants(process.pid)]:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    assert not (state.parent.parent / "train_metrics.json").exists()

    killed.snakemake("--unlock")
    killed.snakemake("--rerun-incomplete", *TARGETS)
    assert "resuming from the checkpoint" in (killed.root / "logs/finetune/tiny/sent-s0.log").read_text()
    assert tables(killed) == tables(clean)


def descendants(root: int) -> list[int]:
    """The processes `root` started, and theirs (snakemake's jobs)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found
