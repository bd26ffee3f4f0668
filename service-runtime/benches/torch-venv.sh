#!/usr/bin/env bash
# The venv with sentence-transformers on torch that the embedding reference vectors
# (tests/fixtures/minilm_reference.py) and the torch side of `faas-runtime-bench
# --only-embed --torch` use. Not part of CI. Prints the venv's python.
#
# PyPI's Linux torch wheel depends on the CUDA libraries (about 4 GB installed, loaded at
# import, unused on a CPU run); --no-cache-dir keeps pip from storing a second copy, and
# TORCH_VENV puts the venv elsewhere (a tmpfs when the disk is short).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${TORCH_VENV:-$repo/.cache/torch-venv}"
if ! "$venv/bin/python" -c 'import torch, sentence_transformers' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    torch sentence-transformers >&2
fi
echo "$venv/bin/python"
