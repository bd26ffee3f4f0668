#!/usr/bin/env bash
# The whole platform on this machine, no Docker needed:
#
#   scripts/local.sh up     build, start a local control plane, install the CRDs and the chart's
#                           RBAC, start Postgres/Redis/NATS, a local stand-in for the LLM
#                           provider (scripts/dev-llm.py) and `faas-runtime serve --service all`,
#                           run the operator under the chart's ServiceAccount with the database,
#                           apply manifests/samples into namespace team-a, wait until they are
#                           Ready, then invoke the sample Agent and show its answer and steps
#   scripts/local.sh demo   invoke the sample Agent again (fails unless it answers through a tool)
#   scripts/local.sh down   stop everything `up` started and remove its state
#   scripts/local.sh status show the resources and the processes
#
# There is no hosted LLM here: the gateway's `openai` provider of tenant team-a is the stand-in
# on 127.0.0.2, the only address the runtime's egress policy lets tenants' calls reach.
# The logs of the operator, the runtime and the stand-in are in .cache/local/logs/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$repo/.cache/local"
logs="$state/logs"
ns=team-a
cluster=local
runtime=http://127.0.0.1:18090
# The stand-in gets a loopback address of its own, so allowing it lets nothing else in.
llm_host=127.0.0.2
llm_port=18091
agent=support-assistant
question='When is the next maintenance window? Check the current time first.'
wish='An assistant that tells the on-call engineer the current time in UTC.'
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

# wait_http WHAT URL: waits up to a minute until URL answers 2xx.
wait_http() {
  for _ in $(seq 240); do
    curl -fsS -o /dev/null --max-time 2 "$2" 2>/dev/null && return 0
    sleep 0.25
  done
  die "$1 did not answer at $2"
}

# The sample Secret helpdesk-api's value, in the cluster and in the runtime's Secrets folder.
helpdesk_token='Bearer local-development'

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
  secret helpdesk-api --from-literal=authorization="$helpdesk_token"

  log "starting the local stand-in for the LLM provider on http://$llm_host:$llm_port/v1 (scripts/dev-llm.py)"
  stop_pid "$state/dev-llm.pid"
  nohup python3 "$repo/scripts/dev-llm.py" --host "$llm_host" --port "$llm_port" --model gpt-4o-mini \
    >"$logs/dev-llm.log" 2>&1 &
  echo $! >"$state/dev-llm.pid"
  wait_http "the LLM stand-in" "http://$llm_host:$llm_port/v1/models"

  # What the kubelet puts in an agent pod (see the operator's agent-secrets volume): the keys
  # the sample Agent's tools name, at <tenant>/<secret>/<key>, readable by this user only.
  local secrets="$state/agent-secrets"
  rm -rf "$secrets"
  (umask 077 && mkdir -p "$secrets/$ns/helpdesk-api" && printf '%s' "$helpdesk_token" >"$secrets/$ns/helpdesk-api/authorization")
  chmod 0600 "$secrets/$ns/helpdesk-api/authorization"

  log "starting faas-runtime serve --service all on ${runtime#http://}"
  stop_pid "$state/runtime.pid"
  # The components call each other in this same process. The gateway's credential `openai`
  # is bound to tenant team-a and to the stand-in's URL, the only address FAAS_EGRESS_ALLOW
  # opens besides the public Internet (which has no route here).
  FAAS_LISTEN="${runtime#http://}" FAAS_AUTH=disabled FAAS_LOG_FORMAT=text \
    FAAS_GATEWAY_URL="$runtime" FAAS_RAG_URL="$runtime" FAAS_PROMPT_URL="$runtime" \
    FAAS_AGENT_SECRETS_DIR="$secrets" \
    FAAS_EGRESS_ALLOW="$llm_host" \
    LLM_API_KEY_OPENAI=local-development \
    FAAS_GATEWAY_CREDENTIALS="[{name: openai, tenants: [$ns], base_url: 'http://$llm_host:$llm_port/v1', key_env: LLM_API_KEY_OPENAI}]" \
    nohup "$bin/faas-runtime" serve --service all >"$logs/runtime.log" 2>&1 &
  echo $! >"$state/runtime.pid"
  # Ready once its migrations ran: the operator publishes into the tables they create.
  wait_http "faas-runtime" "$runtime/readyz"

  log "registering the gateway provider openai of tenant $ns (the stand-in, through the credential)"
  local code
  code="$(curl -sS -o "$state/provider.json" -w '%{http_code}' -X POST "$runtime/v1/gateway/providers" \
    -H "X-Tenant-ID: $ns" -H 'Content-Type: application/json' \
    -d '{"name": "openai", "kind": "openai", "credential": "openai", "models": ["gpt-4o-mini"]}')"
  [[ "$code" == 201 || "$code" == 409 ]] || die "registering the provider answered $code: $(cat "$state/provider.json")"

  log "starting faas-operator under the chart's ServiceAccount, with the database"
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
  # The URL goes in the environment, not on the command line, where ps would show it.
  KUBECONFIG="$state/operator.kubeconfig" POD_NAMESPACE=faas-system POD_NAME=local-operator \
    FAAS_OPERATOR_DATABASE_URL="$DATABASE_URL" \
    nohup "$bin/faas-operator" --http-addr 127.0.0.1:18080 --log-format text >"$logs/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"

  log "applying manifests/samples"
  "$KUBECTL" -n "$ns" apply -f "$repo/manifests/samples/" >/dev/null
  log "waiting for the FaasServices to become Ready"
  "$KUBECTL" -n "$ns" wait --for=condition=Ready --timeout=180s faasservices --all >/dev/null \
    || die "not every FaasService became Ready; see kubectl -n $ns describe faasservices and $logs/operator.log"
  log "waiting for the PromptTemplate and the Agent to become Ready"
  "$KUBECTL" -n "$ns" wait --for=condition=Ready --timeout=120s prompttemplates,agents --all >/dev/null \
    || die "not every PromptTemplate and Agent became Ready; see kubectl -n $ns describe prompttemplates,agents and $logs/operator.log"
  status
  echo
  demo
  cat <<MSG

The local platform is up, and the sample Agent answered through a tool.
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get faas -A
  curl -s $runtime/healthz        # the runtime, every component
  curl -s http://127.0.0.1:18080/metrics         # the operator
Ask the sample Agent yourself (the model is the local stand-in, scripts/dev-llm.py):
  $(invoke_command)
Stop everything with: make down
MSG
}

invoke_command() {
  printf "curl -s -X POST %s/v1/agents/%s/invoke -H 'X-Tenant-ID: %s' -H 'Content-Type: application/json' -d '{\"input\": \"%s\"}'" \
    "$runtime" "$agent" "$ns" "$question"
}

# Invokes the sample Agent, reads the run back, shows the answer and the steps, and fails
# unless a tool was called and the answer came from what it gave.
demo() {
  log "invoking Agent $agent: $question"
  local result="$state/invoke.json" run="$state/run.json" code
  code="$(curl -sS -o "$result" -w '%{http_code}' --max-time 150 -X POST "$runtime/v1/agents/$agent/invoke" \
    -H "X-Tenant-ID: $ns" -H 'Content-Type: application/json' \
    -d "{\"input\": \"$question\"}")" || die "the invocation failed"
  [[ "$code" == 200 ]] || die "the invocation answered $code: $(cat "$result")"
  local id
  id="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["runId"])' "$result")" \
    || die "the invocation's answer has no runId: $(cat "$result")"
  curl -fsS -o "$run" "$runtime/v1/agents/$agent/runs/$id" -H "X-Tenant-ID: $ns" \
    || die "reading run $id failed"
  python3 - "$result" "$run" <<'PY' || die "the Agent did not answer through a tool; see $result and $logs/runtime.log"
import json, sys

result, run = (json.load(open(p)) for p in sys.argv[1:3])
print(f"run {run['id']}: {run['status']}, {run['iterations']} model calls")
for s in run["steps"]:
    if s["kind"] == "model":
        print(f"  {s['seq']}. model: {s.get('output') or '(calls a tool)'}")
    else:
        print(f"  {s['seq']}. tool {s['tool']}({s.get('arguments') or ''}): {s.get('error') or s.get('output')}")
print(f"answer: {result.get('output')}")
tools = [s for s in run["steps"] if s["kind"] == "tool" and not s.get("error") and s.get("output")]
answer = result.get("output") or ""
if result.get("status") != "succeeded" or run.get("status") != "succeeded":
    sys.exit(f"the run did not succeed: {result.get('error')}")
if not tools:
    sys.exit("no tool was called")
if not any(t["output"] in answer for t in tools):
    sys.exit("the answer does not come from what the tool gave")
PY

  log "asking the prompt generator for an Agent: $wish"
  local generation="$state/generation.json" yaml="$state/generated-agent.yaml"
  code="$(curl -sS -o "$generation" -w '%{http_code}' --max-time 150 -X POST "$runtime/v1/generations" \
    -H "X-Tenant-ID: $ns" -H 'Content-Type: application/json' \
    -d "{\"description\": \"$wish\", \"model\": \"openai/gpt-4o-mini\", \"service\": \"agents\"}")" \
    || die "the generation failed"
  [[ "$code" == 201 ]] || die "the generation answered $code: $(cat "$generation")"
  id="$(python3 -c 'import json, sys; g = json.load(open(sys.argv[1])); print(g["id"]) if g["status"] == "succeeded" else sys.exit("rejected: %s" % g["problems"])' "$generation")" \
    || die "the generation was rejected: $(cat "$generation")"
  curl -fsS -o "$yaml" "$runtime/v1/generations/$id/yaml" -H "X-Tenant-ID: $ns" \
    || die "reading generation $id as YAML failed"
  sed 's/^/  /' "$yaml"
  cluster_env
  "$KUBECTL" -n "$ns" apply --server-side --dry-run=server -f "$yaml" >/dev/null \
    || die "the API server refused the generated Agent ($yaml)"
  log "the generated Agent passes the API server's checks (kubectl apply --server-side --dry-run=server)"
}

status() {
  cluster_env
  "$KUBECTL" get faas -A
  echo
  "$KUBECTL" -n "$ns" get deployments,services,hpa,ingresses,configmaps,serviceaccounts,pdb -l app.kubernetes.io/managed-by=faas-operator
  echo
  "$KUBECTL" -n "$ns" get faasservices -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.conditions[?(@.type=="Ready")].message'
  echo
  "$KUBECTL" -n "$ns" get prompttemplates,agents
  echo
  for p in dev-llm runtime operator; do
    if [[ -f "$state/$p.pid" ]] && kill -0 "$(cat "$state/$p.pid")" 2>/dev/null; then
      echo "$p: running (pid $(cat "$state/$p.pid"), log $logs/$p.log)"
    else
      echo "$p: not running"
    fi
  done
}

down() {
  stop_pid "$state/operator.pid"
  stop_pid "$state/runtime.pid"
  stop_pid "$state/dev-llm.pid"
  "$repo/scripts/services.sh" down >/dev/null 2>&1 || true
  "$repo/tests/e2e/cluster.sh" --name "$cluster" down >/dev/null 2>&1 || true
  rm -rf "$state"
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  demo) demo ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/local.sh up|demo|down|status" >&2; exit 2 ;;
esac
