#!/usr/bin/env bash
# Every test of the repository, on a fresh machine:
#   1. unit and reconcile tests (model, crds, operator) and the runtime's tests against real
#      Postgres with pgvector, Redis and NATS, which this script installs and starts, and
#      against the embedding model's files (scripts/models.sh installs them);
#   2. schemathesis against every route of the runtime's OpenAPI document;
#   3. the Helm chart checks and the e2e suite against a local Kubernetes control plane
#      (tests/e2e/run.sh builds and starts it).
# Everything started here is stopped on exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n=== %s\n' "$*"; }

started_services=0
cleanup() { if [[ $started_services == 1 ]]; then scripts/services.sh down >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

step "test tools: PyYAML and lua5.1 (chart checks)"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
if ! command -v lua5.1 >/dev/null; then
  as_root=(); [[ "$(id -u)" -eq 0 ]] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq lua5.1 >/dev/null
fi

step "backing services: Postgres (pgvector), Redis, NATS"
scripts/services.sh install
# Servers someone already runs from this checkout are used and left running.
if ! scripts/services.sh status >/dev/null 2>&1; then
  started_services=1
fi
scripts/services.sh up
# shellcheck disable=SC1090
. "$(scripts/services.sh env)"

step "model files: all-MiniLM-L6-v2 (in-process embeddings)"
# shellcheck disable=SC1090
. "$(scripts/models.sh env)"

step "cargo test (model, crds, operator, runtime, encoder)"
cargo test -p faas-model -p faas-crds -p faas-operator -p faas-runtime -p faas-encoder

step "schemathesis against the runtime's OpenAPI document"
tests/schemathesis/run.sh

step "chart and e2e on a local control plane"
tests/e2e/run.sh
