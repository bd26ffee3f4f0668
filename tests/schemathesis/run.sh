#!/usr/bin/env bash
# Property-based checks of the runtime's HTTP API against its own OpenAPI document:
# schemathesis generates valid and invalid requests for every operation of
# `faas-runtime serve --service all` (JWT on, an admin token of a fresh tenant, a
# loopback OpenAI/Anthropic upstream behind a platform credential) and fails on any
# 5xx, any status or content type the document does not list, any response that
# breaks its schema, any schema-valid request refused, and any invalid one accepted.
# Extra arguments go to `st run` (e.g. --include-path-regex '^/v1/prompts').
#
#   tests/schemathesis/run.sh            needs the backing services' env (DATABASE_URL,
#                                        REDIS_URL, NATS_URL), the model's folder
#                                        (FAAS_EMBEDDING_MODEL_DIR) and a built faas-runtime
#   ST_MAX_EXAMPLES=200 tests/schemathesis/run.sh     a longer run
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/tests/schemathesis"
venv="$repo/.cache/st-venv"
bin="${FAAS_RUNTIME_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/faas-runtime}"
SCHEMATHESIS_VERSION=4.32.5
PYJWT_VERSION=2.10.1
MSGPACK_VERSION=1.1.0
# hypothesis as schemathesis uses it fails on CPython 3.11.7; take 3.12 where there is one.
python=python3
for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if "$candidate" -c '' 2>/dev/null; then python="$candidate"; break; fi
done

log() { printf '[schemathesis] %s\n' "$*" >&2; }

for v in DATABASE_URL REDIS_URL NATS_URL FAAS_EMBEDDING_MODEL_DIR; do
  [[ -n "${!v:-}" ]] || { log "$v is not set: . \"\$(scripts/services.sh env)\" and . \"\$(scripts/models.sh env)\" first"; exit 1; }
done
[[ -x "$bin" ]] || { log "no runtime binary at $bin: cargo build -p faas-runtime first"; exit 1; }

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" \
   || ! "$venv/bin/python" -c 'import jwt, msgpack' 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION with $python"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
    "pyjwt==$PYJWT_VERSION" "msgpack==$MSGPACK_VERSION"
fi

secret="$(head -c 24 /dev/urandom | base64)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
upstream_port="$(free_port)"
run_id="st$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
logfile="$(mktemp -t faas-schemathesis.XXXXXX.log)"

python3 "$here/upstream.py" "$upstream_port" &
upstream=$!
# The upstream is reached by name and only names on the allowlist are reachable, so
# providers the run registers cannot point the gateway at other local services.
FAAS_JWT_HS256_SECRET="$secret" FAAS_LISTEN="127.0.0.1:$port" \
  FAAS_REDIS_PREFIX="$run_id" FAAS_NATS_PREFIX="$run_id" FAAS_TENANT_RATE_LIMIT=0 \
  LLM_API_KEY_ST=sk-st-key-123456 \
  FAAS_GATEWAY_CREDENTIALS='[{"name":"mock","tenants":"*","base_url":"http://localhost:'"$upstream_port"'/v1","key_env":"LLM_API_KEY_ST"}]' \
  FAAS_EGRESS_ALLOW=localhost FAAS_EGRESS_PUBLIC=false \
  FAAS_GATEWAY_URL="http://127.0.0.1:$port" FAAS_RAG_ANSWER_MODEL=gpt-4o FAAS_PROMPTGEN_MODEL=gpt-4o \
  FAAS_RAG_URL="http://127.0.0.1:$port" FAAS_PROMPT_URL="http://127.0.0.1:$port" \
  RUST_LOG=warn "$bin" serve --service all >"$logfile" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" "$upstream" 2>/dev/null || true
  wait "$pid" "$upstream" 2>/dev/null || true
  rm -f "$logfile"
}
trap cleanup EXIT

for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { log "the runtime did not start:"; cat "$logfile" >&2; exit 1; }
  sleep 0.1
done

token="$(SECRET="$secret" TENANT="$run_id" "$venv/bin/python" - <<'PY'
import os, time, jwt
print(jwt.encode({"sub": "schemathesis", "tenant_id": os.environ["TENANT"],
                  "roles": ["admin", "platform-admin"], "exp": int(time.time()) + 3600},
                 os.environ["SECRET"], algorithm="HS256"))
PY
)"

# Models the generated requests name most often, so that calls reach the upstream.
curl -fsS -X POST "http://127.0.0.1:$port/v1/gateway/providers" \
  -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"mock","kind":"openai","credential":"mock","models":["gpt-4o","string","0"]}' >/dev/null

cd "$here"
status=0
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" "$venv/bin/st" --config-file "$here/schemathesis.toml" \
  run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --seed "${ST_SEED:-20261201}" \
  --generation-database none \
  --no-color \
  --report-dir "$repo/.cache/schemathesis-report" "$@" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  log "the runtime died during the run:"; tail -20 "$logfile" >&2; exit 1
fi
if grep -q panicked "$logfile"; then
  log "a request panicked:"; grep panicked "$logfile" >&2; exit 1
fi
exit "$status"
