#!/usr/bin/env bash
# Runs schemathesis (every check, every phase) against the gateway routes of a freshly
# started `faas-runtime serve --service gateway`, with a loopback upstream behind a platform
# credential. Extra arguments go to `st run` (e.g. -n 200 --seed 42).
#
#   python3.12 -m venv .cache/st && .cache/st/bin/pip install schemathesis msgpack   (3.11.7 trips hypothesis)
#   cargo build -p faas-runtime --bin faas-runtime
#   scripts/services.sh up && . "$(scripts/services.sh env)"
#   service-runtime/tests/schemathesis/run.sh -n 200
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
st="${ST:-$root/.cache/st/bin/st}"
bin="${FAAS_RUNTIME:-${CARGO_TARGET_DIR:-$root/target}/debug/faas-runtime}"
: "${DATABASE_URL:?source the env file of scripts/services.sh}" "${REDIS_URL:?}" "${NATS_URL:?}"
logs="$(mktemp -d)"
free() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
upstream_port=$(free)
port=$(free)
secret=schemathesis-secret-of-length

python3 "$here/upstream.py" "$upstream_port" &
upstream=$!
# The upstream is reached by name: loopback addresses stay refused, so registrations the
# run generates cannot point the gateway at other local services.
FAAS_JWT_HS256_SECRET=$secret FAAS_LISTEN=127.0.0.1:$port \
  FAAS_REDIS_PREFIX="st$RANDOM" FAAS_NATS_PREFIX="st$RANDOM" LLM_API_KEY_ST=sk-st-key-123456 \
  FAAS_GATEWAY_CREDENTIALS='[{"name":"mock","tenants":"*","base_url":"http://localhost:'"$upstream_port"'/v1","key_env":"LLM_API_KEY_ST"}]' \
  FAAS_EGRESS_ALLOW=localhost FAAS_EGRESS_PUBLIC=false RUST_LOG=warn \
  "$bin" serve --service gateway >"$logs/runtime.log" 2>&1 &
runtime=$!
trap 'kill $runtime $upstream 2>/dev/null; echo "runtime log: $logs/runtime.log" >&2' EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

token=$(python3 "$here/mint_jwt.py" "$secret" "st$RANDOM" admin,platform-admin)
# Models the generated requests name most often, so calls reach the upstream.
curl -sf -X POST "http://127.0.0.1:$port/v1/gateway/providers" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"name":"mock","kind":"openai","credential":"mock","models":["gpt-4o","string","0"]}' >/dev/null
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" "$st" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" --checks all \
  --include-path-regex '^/v1/(gateway|models|chat|embeddings)' "$@"
