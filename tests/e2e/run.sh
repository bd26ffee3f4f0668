#!/usr/bin/env bash
# Runs the end-to-end suite on a dedicated local control plane:
#   1. builds the control plane binaries (cached) and the operator, runtime and test binaries
#      (the suite boots the runtime from the pod templates the operator generates),
#   2. starts a cluster of its own (tests/e2e/cluster.sh),
#   3. runs the chart checks against it (tests/e2e/chart.sh) and the Rust suite
#      (cargo test -p faas-e2e) with FAAS_E2E_KUBECONFIG pointing at it,
#   4. then, on the same cluster, the fault tests (faults::…), one at a time: they stop and
#      start its etcd and API server (FAAS_E2E_CLUSTER names it for tests/e2e/cluster.sh),
#   5. always tears the cluster down.
# The suite publishes Agents and PromptTemplates to Postgres and boots the runtime against
# Postgres, Redis and NATS: without DATABASE_URL in the environment it starts the backing
# services (scripts/services.sh) and stops them afterwards; without FAAS_EMBEDDING_MODEL_DIR
# it installs the embedding model's files (scripts/models.sh).
# Exits non-zero when any step fails. Extra arguments go to the test binary
# (for example a test name filter, or --nocapture).
#
# Environment:
#   E2E_CLUSTER_NAME       cluster name (default: e2e-<pid>)
#   E2E_TEST_THREADS       tests run at once (default: 4; they mostly wait on the cluster)
#   E2E_KEEP_CLUSTER=1     leave the cluster running afterwards (prints how to stop it)
#   E2E_SKIP_CHART=1       skip tests/e2e/chart.sh
#   FAAS_E2E_STEADY_SECONDS  steady-state observation window (default 60)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo" || exit 1

name="${E2E_CLUSTER_NAME:-e2e-$$}"
threads="${E2E_TEST_THREADS:-4}"
t_start=$SECONDS
failed=()

say() { echo "[e2e] $*" >&2; }
elapsed() { printf '%dm%02ds' $(((SECONDS - $1) / 60)) $(((SECONDS - $1) % 60)); }

started_services=0
teardown() {
  local rc=$?
  if [[ $started_services == 1 ]]; then "$repo/scripts/services.sh" down >/dev/null 2>&1 || true; fi
  if ((rc != 0 || ${#failed[@]} > 0)) && [[ -d "$repo/.cache/clusters/$name/logs" ]]; then
    local keep="$repo/.cache/e2e-logs/$name"
    mkdir -p "$keep" && cp -r "$repo/.cache/clusters/$name/logs/." "$keep/" &&
      say "control plane logs copied to $keep/ (operator logs: ${TMPDIR:-/tmp}/faas-e2e/<namespace>/)"
  fi
  if [[ "${E2E_KEEP_CLUSTER:-}" == 1 ]]; then
    say "keeping cluster $name; stop it with: tests/e2e/cluster.sh --name $name down"
  else
    "$here/cluster.sh" --name "$name" down || say "WARNING: tearing down cluster $name failed"
  fi
}

# step NAME COMMAND...: runs a step, times it, records a failure.
step() {
  local what=$1 t0=$SECONDS
  shift
  say "== $what"
  if "$@"; then
    say "== $what: ok ($(elapsed "$t0"))"
  else
    say "== $what: FAILED ($(elapsed "$t0"))"
    failed+=("$what")
    return 1
  fi
}

# --- builds (before the cluster starts, so it does not idle) -----------------------------------
step "build the control plane" "$here/controlplane/build.sh" >/dev/null || exit 1
step "build the operator and the runtime" cargo build -p faas-operator -p faas-runtime || exit 1
# The suite starts the runtime from the pod templates the operator generates.
export FAAS_RUNTIME_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/faas-runtime"
step "build the e2e tests" cargo test -p faas-e2e --no-run || exit 1

# --- cluster and Postgres ----------------------------------------------------------------------
trap teardown EXIT
if [[ -z "${DATABASE_URL:-}" ]]; then
  if ! scripts/services.sh status >/dev/null 2>&1; then started_services=1; fi
  step "Postgres for the suite (scripts/services.sh)" bash -c 'scripts/services.sh install && scripts/services.sh up >/dev/null' || exit 1
  # shellcheck disable=SC1090
  . "$(scripts/services.sh env)"
fi
if [[ -z "${FAAS_EMBEDDING_MODEL_DIR:-}" ]]; then
  # shellcheck disable=SC1090
  . "$(scripts/models.sh env)"
fi
t0=$SECONDS
say "== start cluster $name"
kubeconfig="$("$here/cluster.sh" --name "$name" up | tail -n 1)"
if [[ ! -f "$kubeconfig" ]]; then
  say "== start cluster $name: FAILED ($(elapsed "$t0"))"
  exit 1
fi
say "== start cluster $name: ok ($(elapsed "$t0")), KUBECONFIG=$kubeconfig"
eval "$("$here/cluster.sh" --name "$name" env)"
export HELM KUBECTL

# --- CRDs, then the chart checks against the live cluster (with the CRDs installed they also
# dry-run the samples) -------------------------------------------------------------------------
step "install the CRDs" "$KUBECTL" --kubeconfig "$kubeconfig" apply --server-side --field-manager=faas-e2e \
  -f "$repo/manifests/crds/"
if [[ "${E2E_SKIP_CHART:-}" != 1 ]]; then
  step "chart checks (tests/e2e/chart.sh)" env KUBECONFIG="$kubeconfig" "$here/chart.sh"
fi

# --- the suite ---------------------------------------------------------------------------------
# KUBECONFIG is cleared: the suite reads only FAAS_E2E_KUBECONFIG. The tests named faults::…
# stop and start processes of the control plane, which would break every test running beside
# them: they are left out here and run afterwards.
step "e2e suite (cargo test -p faas-e2e)" env -u KUBECONFIG FAAS_E2E_KUBECONFIG="$kubeconfig" \
  cargo test -p faas-e2e -- --test-threads "$threads" --skip faults:: "$@"

# --- faults: on the same cluster, once the rest is done, one test at a time --------------------
# The fault tests the arguments select (all of them without a filter), by exact name; of the
# other arguments only output options are passed on, so a filter never runs a test twice.
mapfile -t fault_tests < <(env -u KUBECONFIG cargo test -q -p faas-e2e --test suite -- --list --format terse "$@" 2>/dev/null |
  sed -n 's/^\(faults::[^:]*::[^:]*\): test$/\1/p')
output=()
for a in "$@"; do
  case "$a" in --nocapture | --show-output) output+=("$a") ;; esac
done
if ((${#fault_tests[@]} > 0)); then
  step "faults, one at a time (${#fault_tests[@]} tests)" env -u KUBECONFIG FAAS_E2E_KUBECONFIG="$kubeconfig" \
    FAAS_E2E_CLUSTER="$name" cargo test -p faas-e2e --test suite -- --test-threads 1 --exact \
    "${output[@]}" "${fault_tests[@]}"
fi

say "total $(elapsed "$t_start")"
if ((${#failed[@]} > 0)); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all passed"
