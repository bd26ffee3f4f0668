#!/usr/bin/env bash
# Builds the binaries of the local Kubernetes control plane from Go modules:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (kubernetes/)
#   etcd                                                                (etcd/)
#   kwok                                                                (kwok/)
#   helm                                                                (helm/)
# and assembles the kwok stage configuration (stages copied from the kwok module
# plus our own stages/*.yaml).
#
# Output goes to <cache>/bin-<hash>/, where <hash> covers the Go version, the
# build recipe below and every go.mod/go.sum/tools.go/stage file. A run with
# nothing changed builds nothing. Go's own build cache (go env GOCACHE) makes a
# rebuild after a change fast on the same machine.
#
# Usage:
#   build.sh                 build if needed; the last line of stdout is the bin dir
#   build.sh --print-bin-dir print the bin dir without building
#                            (exit 0 when it is complete, 3 when not built yet)
#
# Environment:
#   CONTROLPLANE_CACHE_DIR   cache root (default: <repo>/.cache/controlplane)
#   GO                       go command (default: go)
#
# Progress goes to stderr; stdout carries only the bin dir.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${CONTROLPLANE_CACHE_DIR:-$repo/.cache/controlplane}"
GO="${GO:-go}"

# The build recipe. Changing anything here changes the bin dir.
k8s_version="v1.37.2"
k8s_minor="37"
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=${k8s_version} \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=${k8s_minor} \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
-X k8s.io/client-go/pkg/version.gitMajor=1 \
-X k8s.io/client-go/pkg/version.gitMinor=${k8s_minor}"
helm_version="v3.22.0"
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=${helm_version}"
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
kwok_stages=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml
  pod/fast/pod-complete.yaml
  pod/fast/pod-delete.yaml
)
recipe="k8s=${k8s_version} ldflags=${k8s_ldflags} helm=${helm_ldflags} cmds=${k8s_cmds[*]} stages=${kwok_stages[*]} layout=1"

compute_hash() {
  {
    "$GO" version
    printf '%s\n' "$recipe"
    (cd "$here" && for f in */go.mod */go.sum */tools.go stages/*.yaml; do
      printf '== %s\n' "$f"
      cat "$f"
    done)
  } | sha256sum | cut -c1-12
}

bin_dir="$cache/bin-$(compute_hash)"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  printf '%s\n' "$bin_dir"
  [[ -f "$bin_dir/.complete" ]] || exit 3
  exit 0
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--print-bin-dir]" >&2
  exit 2
fi

if [[ -f "$bin_dir/.complete" ]]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

mkdir -p "$cache"
# One build at a time per cache; a second caller waits and then finds the result.
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  echo "[controlplane] another build is running; waiting for it" >&2
  flock 9
fi
if [[ -f "$bin_dir/.complete" ]]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
log_dir="$bin_dir/build-logs"
mkdir -p "$log_dir"
start_all=$SECONDS
step=0
total_steps=5

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# run_step NAME LOGFILE CMD... : runs CMD with a progress line every 30 s.
run_step() {
  local name=$1 log=$2
  shift 2
  step=$((step + 1))
  local t0=$SECONDS
  echo "[controlplane] ($step/$total_steps) $name: building (log: $log)" >&2
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local n=0
    while ((n < 30)) && kill -0 "$pid" 2>/dev/null; do
      sleep 1
      n=$((n + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[controlplane] ($step/$total_steps) $name: still building, $(fmt_secs $((SECONDS - t0))) so far (total $(fmt_secs $((SECONDS - start_all))))" >&2
    fi
  done
  if ! wait "$pid"; then
    echo "[controlplane] ($step/$total_steps) $name: FAILED after $(fmt_secs $((SECONDS - t0))); last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "[controlplane] ($step/$total_steps) $name: done in $(fmt_secs $((SECONDS - t0)))" >&2
}

# Binaries are built into a staging dir and moved into place only once their
# step succeeded, so an interrupted build never leaves a truncated binary behind.
staging="$bin_dir/.staging"
rm -rf "$staging"
mkdir -p "$staging"
publish() {
  local f
  for f in "$@"; do mv -f "$staging/$f" "$bin_dir/$f"; done
}

have_all() {
  local f
  for f in "$@"; do [[ -x "$bin_dir/$f" ]] || return 1; done
}

echo "[controlplane] building into $bin_dir (a cold build takes 10+ minutes; Go's build cache makes later ones fast)" >&2

if have_all "${k8s_cmds[@]}"; then
  step=$((step + 1))
else
  pkgs=()
  for c in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  run_step "kubernetes ${k8s_version} (${k8s_cmds[*]})" "$log_dir/kubernetes.log" \
    "$GO" -C "$here/kubernetes" build -ldflags "$k8s_ldflags" -o "$staging/" "${pkgs[@]}"
  publish "${k8s_cmds[@]}"
fi

if have_all etcd; then
  step=$((step + 1))
else
  run_step "etcd" "$log_dir/etcd.log" \
    "$GO" -C "$here/etcd" build -o "$staging/etcd" go.etcd.io/etcd/server/v3
  publish etcd
fi

if have_all kwok; then
  step=$((step + 1))
else
  run_step "kwok" "$log_dir/kwok.log" \
    "$GO" -C "$here/kwok" build -o "$staging/kwok" sigs.k8s.io/kwok/cmd/kwok
  publish kwok
fi

if have_all helm; then
  step=$((step + 1))
else
  run_step "helm" "$log_dir/helm.log" \
    "$GO" -C "$here/helm" build -ldflags "$helm_ldflags" -o "$staging/helm" helm.sh/helm/v3/cmd/helm
  publish helm
fi

# kwok stages: the ones the kwok module ships, then ours.
step=$((step + 1))
echo "[controlplane] ($step/$total_steps) kwok stages" >&2
kwok_dir="$("$GO" -C "$here/kwok" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
stages_out="$bin_dir/kwok-stages.yaml.tmp"
: >"$stages_out"
for s in "${kwok_stages[@]}"; do
  src="$kwok_dir/kustomize/stage/$s"
  [[ -f "$src" ]] || { echo "[controlplane] missing kwok stage $src" >&2; exit 1; }
  printf -- '---\n# from sigs.k8s.io/kwok kustomize/stage/%s\n' "$s" >>"$stages_out"
  cat "$src" >>"$stages_out"
done
for s in "$here"/stages/*.yaml; do
  printf -- '---\n# from tests/e2e/controlplane/stages/%s\n' "$(basename "$s")" >>"$stages_out"
  cat "$s" >>"$stages_out"
done
mv "$stages_out" "$bin_dir/kwok-stages.yaml"

"$bin_dir/kubectl" version --client >"$log_dir/versions.txt" 2>&1
"$bin_dir/etcd" --version >>"$log_dir/versions.txt" 2>&1
"$bin_dir/kwok" --version >>"$log_dir/versions.txt" 2>&1 || true
"$bin_dir/helm" version --short >>"$log_dir/versions.txt" 2>&1
rmdir "$staging"
touch "$bin_dir/.complete"
ln -sfn "$(basename "$bin_dir")" "$cache/current"
echo "[controlplane] all built in $(fmt_secs $((SECONDS - start_all))): $bin_dir" >&2
printf '%s\n' "$bin_dir"
