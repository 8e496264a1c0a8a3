"""Pinned packages from a package index (PyPI, or the pip index a user configures): downloaded with pip, checked
against their sha256, refused otherwise."""

import subprocess
import sys
from pathlib import Path

from .errors import UserError
from .provenance import file_sha256


def pip_download(requirement: str, sha256: str, dest: Path, pip_args: list[str], source: bool = False) -> Path:
    """The wheel (or with `source` the sdist) of `requirement`, downloaded into `dest` with no dependencies, its
    sha256 checked against the pinned one; UserError naming the package when pip fails or the hash differs."""
    # an sdist's metadata is built with the setuptools installed here, so a pip index needs no build tools
    form = ["--no-binary", ":all:", "--no-build-isolation"] if source else ["--only-binary", ":all:"]
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *form, "--dest", str(dest),
                             *pip_args, requirement], capture_output=True, text=True)
    name = requirement.split("==")[0]
    stem = name.lower().replace("-", "_")
    found = [p for p in Path(dest).iterdir() if p.name.lower().replace("-", "_").startswith(stem)
             and p.name.endswith((".tar.gz", ".zip") if source else ".whl")]
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"pip download {requirement} failed ({last}); check that PyPI (or your pip index) is "
                        "reachable")
    actual = file_sha256(found[0])
    if actual != sha256:
        raise UserError(f"{found[0].name}: sha256 {actual} does not match the pinned {sha256}; the package "
                        "changed or is corrupt: refusing to use it")
    return found[0]
