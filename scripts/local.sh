#!/usr/bin/env bash
# The whole platform on this machine, no Docker needed:
#
#   scripts/local.sh up     build, start a local control plane, install the CRDs and the chart's
#                           RBAC, run the operator under the chart's ServiceAccount, apply
#                           manifests/samples into namespace team-a, start Postgres/Redis/NATS
#                           and `faas-runtime serve --service all`, then show what came up
#   scripts/local.sh down   stop everything `up` started and remove its state
#   scripts/local.sh status show the resources and the processes
#
# The operator's and the runtime's logs are in .cache/local/logs/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$repo/.cache/local"
logs="$state/logs"
ns=team-a
cluster=local
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '[local] %s\n' "$*" >&2; }
die() { log "error: $*"; log "logs: $logs"; exit 1; }

cluster_env() { eval "$("$repo/tests/e2e/cluster.sh" --name "$cluster" env)"; }

stop_pid() {
  local f="$1"
  [[ -f "$f" ]] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

up() {
  mkdir -p "$logs"
  log "building faas-operator and faas-runtime"
  cargo build --quiet -p faas-operator -p faas-runtime
  local bin="$CARGO_TARGET_DIR/debug"

  log "starting the local control plane"
  "$repo/tests/e2e/cluster.sh" --name "$cluster" up >/dev/null
  cluster_env

  log "installing the CRDs and the chart's ServiceAccount and RBAC"
  "$KUBECTL" apply --server-side -f "$repo/manifests/crds/" >/dev/null
  "$KUBECTL" wait --for=condition=Established --timeout=60s crd --all >/dev/null
  "$KUBECTL" create namespace faas-system --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  "$HELM" template faas-operator "$repo/charts/faas-operator" --namespace faas-system --kube-version 1.37.2 \
    --set crds.install=false --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml \
    --show-only templates/leader-election-rbac.yaml | "$KUBECTL" apply --server-side -f - >/dev/null

  log "starting Postgres, Redis and NATS"
  "$repo/scripts/services.sh" install
  "$repo/scripts/services.sh" up >/dev/null
  # shellcheck disable=SC1090
  . "$("$repo/scripts/services.sh" env)"
  log "installing the embedding model's files (all-MiniLM-L6-v2)"
  # shellcheck disable=SC1090
  . "$("$repo/scripts/models.sh" env)"

  log "creating namespace $ns and the Secrets the samples reference"
  "$KUBECTL" create namespace "$ns" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  secret() { "$KUBECTL" -n "$ns" create secret generic "$1" "${@:2}" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null; }
  secret faas-database --from-literal=url="$DATABASE_URL"
  secret faas-cache --from-literal=url="$REDIS_URL"
  secret faas-nats --from-literal=url="$NATS_URL"
  secret faas-auth --from-literal=jwt-hs256-secret="$(head -c 32 /dev/urandom | base64)"
  secret llm-providers --from-literal=openai-api-key=local-development
  secret helpdesk-api --from-literal=authorization='Bearer local-development'

  log "starting faas-operator under the chart's ServiceAccount"
  local token; token="$("$KUBECTL" -n faas-system create token faas-operator --duration=24h)"
  local server; server="$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  local ca; ca="$("$KUBECTL" config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  cat >"$state/operator.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: faas-operator, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: faas-operator, namespace: faas-system}}]
current-context: local
KCFG
  chmod 600 "$state/operator.kubeconfig"
  stop_pid "$state/operator.pid"
  KUBECONFIG="$state/operator.kubeconfig" POD_NAMESPACE=faas-system POD_NAME=local-operator \
    nohup "$bin/faas-operator" --http-addr 127.0.0.1:18080 --log-format text >"$logs/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"

  log "starting faas-runtime serve --service all on 127.0.0.1:18090"
  stop_pid "$state/runtime.pid"
  # rag's answers go through the gateway this same process serves.
  FAAS_LISTEN=127.0.0.1:18090 FAAS_AUTH=disabled FAAS_LOG_FORMAT=text \
    FAAS_GATEWAY_URL=http://127.0.0.1:18090 \
    nohup "$bin/faas-runtime" serve --service all >"$logs/runtime.log" 2>&1 &
  echo $! >"$state/runtime.pid"

  log "applying manifests/samples"
  "$KUBECTL" -n "$ns" apply -f "$repo/manifests/samples/" >/dev/null
  log "waiting for the FaasServices to become Ready"
  "$KUBECTL" -n "$ns" wait --for=condition=Ready --timeout=180s faasservices --all >/dev/null \
    || die "not every FaasService became Ready; see kubectl -n $ns describe faasservices and $logs/operator.log"
  status
  cat <<MSG

The local platform is up.
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get faas -A
  curl -s http://127.0.0.1:18090/healthz        # the runtime, every component
  curl -s http://127.0.0.1:18080/metrics         # the operator
Stop everything with: make down
MSG
}

status() {
  cluster_env
  "$KUBECTL" get faas -A
  echo
  "$KUBECTL" -n "$ns" get deployments,services,hpa,ingresses,configmaps,serviceaccounts,pdb -l app.kubernetes.io/managed-by=faas-operator
  echo
  "$KUBECTL" -n "$ns" get faasservices -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.conditions[?(@.type=="Ready")].message'
  for p in operator runtime; do
    if [[ -f "$state/$p.pid" ]] && kill -0 "$(cat "$state/$p.pid")" 2>/dev/null; then
      echo "$p: running (pid $(cat "$state/$p.pid"), log $logs/$p.log)"
    else
      echo "$p: not running"
    fi
  done
}

down() {
  stop_pid "$state/runtime.pid"
  stop_pid "$state/operator.pid"
  "$repo/scripts/services.sh" down >/dev/null 2>&1 || true
  "$repo/tests/e2e/cluster.sh" --name "$cluster" down >/dev/null 2>&1 || true
  rm -rf "$state"
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/local.sh up|down|status" >&2; exit 2 ;;
esac
