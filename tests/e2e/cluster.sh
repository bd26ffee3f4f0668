#!/usr/bin/env bash
# A local Kubernetes control plane made of plain processes (no containers):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, which
# plays the kubelet for a few fake nodes so that pods become Running and Ready.
#
# Usage: tests/e2e/cluster.sh [--name NAME] COMMAND
#   up          build the binaries if needed, start the cluster, wait until the
#               API server is ready and the nodes are Ready; prints the admin
#               kubeconfig path as the last line of stdout. If the cluster is
#               already up it is reused.
#   down        stop every process the cluster started and remove its state.
#   kubeconfig  print the admin kubeconfig path.
#   status      show each process and the API server's readiness
#               (exit 0 when everything is up).
#   env         print shell assignments: KUBECONFIG, CONTROLPLANE_BIN_DIR,
#               KUBECTL, HELM (use with: eval "$(tests/e2e/cluster.sh env)").
#   stop etcd|apiserver|controller-manager [--kill]
#               stop one process of a running cluster (SIGTERM, then SIGKILL
#               after 15s; with --kill, SIGKILL at once, as a crash); its
#               data, ports and certificates are kept.
#   start etcd|apiserver|controller-manager
#               start it again with the flags, ports, certificates and data
#               directory `up` gave it; waits until it is healthy again.
#
# Environment:
#   CLUSTER_NAME         cluster name when --name is not given (default: local)
#   CLUSTER_STATE_ROOT   where clusters keep their state (default: <repo>/.cache/clusters)
#   CLUSTER_NODES        number of fake nodes (default: 3)
#   CLUSTER_UP_TIMEOUT   seconds to wait for each readiness step (default: 120)
#   CONTROLPLANE_CACHE_DIR, GO   passed on to controlplane/build.sh
#
# Pods labelled faas.motadata.io/simulate=fail are reported as crash-looping
# and never become Ready (see controlplane/stages/).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build_sh="$here/controlplane/build.sh"

name="${CLUSTER_NAME:-local}"
cmd=""
component=""
kill_now=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --name=*) name="${1#--name=}"; shift ;;
    --kill) kill_now=1; shift ;;
    up | down | kubeconfig | status | env) cmd="$1"; shift ;;
    stop | start)
      cmd="$1"
      [[ $# -ge 2 ]] || { echo "cluster.sh: $1 needs a component: etcd, apiserver or controller-manager" >&2; exit 2; }
      case "$2" in
        etcd) component=etcd ;;
        apiserver | kube-apiserver) component=kube-apiserver ;;
        controller-manager | kube-controller-manager) component=kube-controller-manager ;;
        *) echo "cluster.sh: $1: unknown component '$2' (etcd, apiserver or controller-manager)" >&2; exit 2 ;;
      esac
      shift 2 ;;
    -h | --help) sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$cmd" ]] || { echo "usage: cluster.sh [--name NAME] up|down|kubeconfig|status|env|stop C|start C" >&2; exit 2; }
[[ "$name" =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] || { echo "cluster.sh: invalid cluster name '$name'" >&2; exit 2; }

state_root="${CLUSTER_STATE_ROOT:-$repo/.cache/clusters}"
state="$state_root/$name"
logs="$state/logs"
pki="$state/pki"
run="$state/run"
nodes="${CLUSTER_NODES:-3}"
timeout="${CLUSTER_UP_TIMEOUT:-120}"
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "cluster.sh: CLUSTER_NODES must be 1..99, got '$nodes'" >&2; exit 2; }
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || { echo "cluster.sh: CLUSTER_UP_TIMEOUT must be a number of seconds, got '$timeout'" >&2; exit 2; }
admin_kubeconfig="$state/admin.kubeconfig"
# Start order; `down` stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

say() { echo "[cluster $name] $*" >&2; }
die() {
  say "ERROR: $*"
  say "logs of every process: $logs/"
  exit 1
}

# ---------------------------------------------------------------- processes

pid_of() { cat "$run/$1.pid" 2>/dev/null || true; }

# Alive and not a zombie: stopped processes are reparented to PID 1, which may
# reap them only after a while.
alive() {
  local st
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "${st:0:1}" != Z && "${st:0:1}" != X ]]
}

# A recorded pid counts only while it is still our process: alive and
# started with this cluster's state directory on its command line.
is_ours() {
  local pid=$1
  [[ -n "$pid" ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$state/"
}

running_count() {
  local c n=0
  for c in "${components[@]}"; do
    if is_ours "$(pid_of "$c")"; then n=$((n + 1)); fi
  done
  echo "$n"
}

# stop_one NAME [KILL]: SIGTERM, SIGKILL after 15s (at once when KILL is 1); forgets its pid.
stop_one() {
  local c=$1 now=${2:-0} pid
  pid="$(pid_of "$c")"
  if is_ours "$pid"; then
    if ((now)); then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    local waited=0
    while alive "$pid" && ((waited < 150)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      say "$c (pid $pid) ignored SIGTERM for 15s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
    fi
    say "stopped $c (pid $pid)"
  fi
  rm -f "$run/$c.pid"
}

stop_all() {
  local i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    stop_one "${components[i]}"
  done
}

# start NAME BINARY ARGS... : runs detached in its own session, log in $logs/NAME.log.
start() {
  local c=$1 bin=$2
  shift 2
  (
    # Close every descriptor inherited from the caller (pipes of a test runner,
    # a make jobserver) so that the long-lived process holds none of them open.
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    # Appended: a process started again by `start` keeps the log of its first run.
    exec setsid "$bin" "$@" >>"$logs/$c.log" 2>&1 </dev/null
  ) &
  local pid=$!
  echo "$pid" >"$run/$c.pid"
  say "started $c (pid $pid, log $logs/$c.log)"
}

# Only whether the process lives: right after `start` its pid may still be the subshell that
# has not yet exec'd the binary, whose command line does not name the state directory.
check_alive() {
  local c=$1
  alive "$(pid_of "$c")" || {
    tail -n 20 "$logs/$c.log" >&2 2>/dev/null || true
    die "$c exited during start-up (see $logs/$c.log)"
  }
}

# wait_for WHAT CHECK-COMMAND... : polls until the command succeeds, failing
# early if any started process died.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + timeout)) c
  until "$@" >/dev/null 2>&1; do
    for c in "${components[@]}"; do
      [[ -f "$run/$c.pid" ]] && check_alive "$c"
    done
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.25
  done
}

# ---------------------------------------------------------------- ports, certs, kubeconfigs

pick_ports() {
  local used taken=" " p n
  used=" $(ss -Htan 2>/dev/null | awk '{n=split($4,a,":"); print a[n]}' | sort -un | tr '\n' ' ') "
  for n in "$@"; do
    while :; do
      p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
      [[ "$used" != *" $p "* && "$taken" != *" $p "* ]] && break
    done
    taken+="$p "
    printf '%s=%s\n' "$n" "$p"
  done
}

# client_cert NAME CN [ORG]
client_cert() {
  local f=$1 cn=$2 org=${3:-}
  local subj="/CN=$cn"
  [[ -n "$org" ]] && subj="/O=$org/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$f.key" -subj "$subj" -out "$pki/$f.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$f.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -out "$pki/$f.crt" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null
  rm -f "$pki/$f.csr"
}

make_pki() {
  mkdir -p "$pki"
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 -sha256 \
      -subj "/CN=faas-local-ca-$name" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/apiserver.key" -subj "/CN=kube-apiserver" -out "$pki/apiserver.csr" 2>/dev/null
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 30 -sha256 -out "$pki/apiserver.crt" -extfile <(
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n'
        printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:%s\n' "$service_ip"
      ) 2>/dev/null
    rm -f "$pki/apiserver.csr"
    client_cert admin admin system:masters
    # Front-proxy (request-header) CA and the API server's client certificate for
    # the aggregation layer; the controller manager and scheduler also read this
    # CA from the extension-apiserver-authentication ConfigMap.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt" \
      -days 30 -sha256 -subj "/CN=faas-local-front-proxy-ca-$name" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/front-proxy-client.key" -subj "/CN=front-proxy-client" \
      -out "$pki/front-proxy-client.csr" 2>/dev/null
    openssl x509 -req -in "$pki/front-proxy-client.csr" -CA "$pki/front-proxy-ca.crt" -CAkey "$pki/front-proxy-ca.key" \
      -CAcreateserial -days 30 -sha256 -out "$pki/front-proxy-client.crt" \
      -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null
    rm -f "$pki/front-proxy-client.csr"
    client_cert controller-manager system:kube-controller-manager
    client_cert scheduler system:kube-scheduler
    # kwok acts for every fake node's kubelet; it gets a cluster-admin binding below.
    client_cert kwok faas-local-kwok
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  ) || die "generating certificates with openssl failed"
}

# kubeconfig FILE CERT-NAME
write_kubeconfig() {
  local file=$1 cert=$2
  (
    umask 077
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$cert.crt")
    client-key-data: $(base64 -w0 <"$pki/$cert.key")
contexts:
- name: $name
  context:
    cluster: $name
    user: $cert
current-context: $name
EOF
  )
}

fake_nodes_yaml() {
  local i
  for ((i = 1; i <= nodes; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: fake-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: fake-node-$i
    kubernetes.io/os: linux
    type: kwok
spec:
  podCIDR: 10.244.$(((i - 1) * 4)).0/22
  podCIDRs:
  - 10.244.$(((i - 1) * 4)).0/22
status:
  allocatable:
    cpu: "64"
    memory: 256Gi
    pods: "1000"
    ephemeral-storage: 1Ti
  capacity:
    cpu: "64"
    memory: 256Gi
    pods: "1000"
    ephemeral-storage: 1Ti
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
EOF
  done
}

# ---------------------------------------------------------------- commands

# The processes `start` can bring back, with the flags `up` gives them; they read the
# ports and binaries from cluster.env.
start_etcd() {
  start etcd "$BIN_DIR/etcd" \
    --name=default \
    --data-dir="$state/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=8589934592 \
    --log-level=warn
}

start_apiserver() {
  local sa_issuer="https://kubernetes.default.svc.cluster.local"
  # The API server listens on loopback only, and the endpoint reconciler refuses
  # to publish a loopback address for the "kubernetes" Service; nothing in this
  # cluster reaches the API server through that Service, so it is turned off.
  start kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$API_PORT" \
    --cert-dir="$pki/apiserver-generated" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$sa_issuer" \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=false \
    --profiling=false \
    --endpoint-reconciler-type=none \
    --v=1
}

start_controller_manager() {
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$CM_PORT" \
    --cert-dir="$pki/controller-manager-generated" \
    --controllers='*,-nodeipam' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --leader-elect=false \
    --kube-api-qps=200 \
    --kube-api-burst=400 \
    --profiling=false \
    --v=1
}

load_env() {
  [[ -f "$state/cluster.env" ]] || return 1
  # shellcheck disable=SC1091
  source "$state/cluster.env"
}

cm_healthy() {
  curl -fsSk --max-time 2 "https://127.0.0.1:$CM_PORT/healthz"
}

etcd_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"
}

api_ready() {
  curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz"
}

cmd_up() {
  if [[ -d "$state" ]]; then
    local n
    n="$(running_count)"
    if ((n == ${#components[@]})) && load_env && api_ready >/dev/null 2>&1; then
      say "already up; reusing it"
      printf '%s\n' "$admin_kubeconfig"
      return 0
    elif ((n > 0)); then
      die "cluster is partly running ($n of ${#components[@]} processes); run: $0 --name $name down"
    fi
    rm -rf "$state"
  fi

  local bin t0
  bin="$("$build_sh" | tail -n 1)" || die "building the control plane failed"
  [[ -x "$bin/kube-apiserver" ]] || die "build did not produce binaries in '$bin'"

  t0=$SECONDS
  mkdir -p "$logs" "$run" "$state/etcd"
  service_ip=10.96.0.1
  pick_ports ETCD_PORT ETCD_PEER_PORT API_PORT CM_PORT SCHED_PORT >"$state/ports.env"
  # shellcheck disable=SC1091
  source "$state/ports.env"
  {
    cat "$state/ports.env"
    printf 'BIN_DIR=%q\n' "$bin"
  } >"$state/cluster.env"
  BIN_DIR="$bin"

  # If anything below fails, stop what was started; the logs stay for reading.
  trap 'rc=$?; if ((rc != 0)); then stop_all; say "start-up failed; logs kept in $logs/ (run down to remove)"; fi' EXIT

  make_pki
  write_kubeconfig "$admin_kubeconfig" admin
  write_kubeconfig "$state/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$state/scheduler.kubeconfig" scheduler
  write_kubeconfig "$state/kwok.kubeconfig" kwok

  start_etcd
  wait_for "etcd health" etcd_healthy

  local t_api=$SECONDS
  start_apiserver
  wait_for "kube-apiserver /readyz" api_ready
  say "kube-apiserver ready $((SECONDS - t_api))s after its start (https://127.0.0.1:$API_PORT)"

  local kubectl=("$bin/kubectl" --kubeconfig="$admin_kubeconfig")
  "${kubectl[@]}" create clusterrolebinding faas-local-kwok --clusterrole=cluster-admin --user=faas-local-kwok \
    >>"$logs/setup.log" 2>&1 || die "binding kwok's identity failed (see $logs/setup.log)"

  start_controller_manager

  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$state/scheduler.kubeconfig" \
    --authentication-kubeconfig="$state/scheduler.kubeconfig" \
    --authorization-kubeconfig="$state/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHED_PORT" \
    --cert-dir="$pki/scheduler-generated" \
    --leader-elect=false \
    --profiling=false \
    --v=1

  start kwok "$bin/kwok" \
    --kubeconfig="$state/kwok.kubeconfig" \
    --config="$bin/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr=10.244.0.0/16 \
    --node-ip=10.243.0.1

  fake_nodes_yaml | "${kubectl[@]}" apply -f - >>"$logs/setup.log" 2>&1 ||
    die "creating the fake nodes failed (see $logs/setup.log)"
  wait_for "$nodes nodes Ready" node_ready_count_is "$nodes" "${kubectl[@]}"
  # Pods need the namespace's default ServiceAccount, made by the controller manager.
  wait_for "ServiceAccount default/default" "${kubectl[@]}" -n default get serviceaccount default
  trap - EXIT
  say "up in $((SECONDS - t0))s: $nodes nodes Ready; kubectl: $bin/kubectl"
  say "KUBECONFIG=$admin_kubeconfig"
  printf '%s\n' "$admin_kubeconfig"
}

node_ready_count_is() {
  local want=$1
  shift
  local got
  got="$("$@" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')"
  ((got == want))
}

cmd_down() {
  if [[ ! -d "$state" ]]; then
    say "not running (no state in $state)"
    return 0
  fi
  stop_all
  rm -rf "$state"
  say "down; state removed"
}

cmd_status() {
  [[ -d "$state" ]] || { say "not created"; return 1; }
  load_env || true
  local c pid ok=0
  for c in "${components[@]}"; do
    pid="$(pid_of "$c")"
    if is_ours "$pid"; then
      printf '%-24s running  pid %-7s rss %s kB\n' "$c" "$pid" "$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
    else
      printf '%-24s stopped\n' "$c"
      ok=1
    fi
  done
  if [[ -n "${API_PORT:-}" ]] && api_ready >/dev/null 2>&1; then
    printf '%-24s ready at https://127.0.0.1:%s\n' "api" "$API_PORT"
  else
    printf '%-24s not ready\n' "api"
    ok=1
  fi
  printf '%-24s %s\n' "kubeconfig" "$admin_kubeconfig" "logs" "$logs/"
  return "$ok"
}

# The cluster must exist and have been up: `stop` and `start` reuse its state.
need_state() {
  [[ -d "$state" ]] && load_env || die "no cluster state in $state (run: $0 --name $name up)"
}

cmd_stop() {
  need_state
  is_ours "$(pid_of "$component")" || say "$component is not running"
  stop_one "$component" "$kill_now"
}

cmd_start() {
  need_state
  if is_ours "$(pid_of "$component")"; then
    say "$component is already running (pid $(pid_of "$component"))"
    return 0
  fi
  local t0=$SECONDS
  case "$component" in
    etcd)
      start_etcd
      wait_for "etcd health" etcd_healthy
      ;;
    kube-apiserver)
      start_apiserver
      wait_for "kube-apiserver /readyz" api_ready
      ;;
    kube-controller-manager)
      start_controller_manager
      wait_for "kube-controller-manager /healthz" cm_healthy
      ;;
  esac
  say "$component healthy $((SECONDS - t0))s after its start"
}

cmd_env() {
  local bin
  if load_env; then bin="$BIN_DIR"; else bin="$("$build_sh" --print-bin-dir || true)"; fi
  printf 'export KUBECONFIG=%q\n' "$admin_kubeconfig"
  printf 'export CONTROLPLANE_BIN_DIR=%q\n' "$bin"
  printf 'export KUBECTL=%q\n' "$bin/kubectl"
  printf 'export HELM=%q\n' "$bin/helm"
}

# up and down of one cluster never run at the same time; a second caller waits.
lock() {
  mkdir -p "$state_root"
  exec 8>"$state_root/.$name.lock"
  flock 8
}

case "$cmd" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  kubeconfig) printf '%s\n' "$admin_kubeconfig"; [[ -f "$admin_kubeconfig" ]] ;;
  stop) lock; cmd_stop ;;
  start) lock; cmd_start ;;
  status) cmd_status ;;
  env) cmd_env ;;
esac
