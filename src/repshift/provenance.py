"""Code versions, content hashes and atomic writes shared by every artifact."""

import ast
import functools
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def _local_imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("repshift."):
            found.add(node.module.split(".")[1])
    return {m for m in found if (PACKAGE_DIR / f"{m}.py").exists()}


def module_closure(module: str) -> list[str]:
    """The package modules `module` runs: itself and its transitive relative imports."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_local_imports(name))
    return sorted(seen)


@functools.cache
def code_version(module: str) -> str:
    """Content hash of the package code a stage runs; a Snakemake param, so code edits rerun it.
    Computed once per process: a workflow asks for it once per job."""
    digest = hashlib.sha256(__version__.encode())
    for name in module_closure(module):
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def atomic_path(path):
    """Yield a temporary sibling of `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
