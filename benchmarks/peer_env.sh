#!/usr/bin/env bash
# Sets up the peer implementations that benchmarks/peers/*.py time against seqrec.
#
#   bash benchmarks/peer_env.sh [PMIXER_SOURCE]
#
# Creates (idempotently, under the ignored folder bench-env/):
#   bench-env/venv/                  a separate virtual environment with RecTools and its torch
#                                    extra (torch pinned by constraints.txt); seqrec's own
#                                    environment is never touched
#   bench-env/peers/SASRec.pytorch/  pmixer/SASRec.pytorch at a pinned commit (source is fetched
#                                    here at benchmark time, never committed to this repository)
#
# PMIXER_SOURCE (argument, or the environment variable of that name) may be
#   * a local git directory (bare or not) holding the repository, e.g. an offline snapshot,
#   * a plain directory with the repository's files (python/model.py, python/utils.py),
#   * a git URL; the default clones from GitHub.
# PMIXER_REF (environment) picks the commit; default: the commit the runners were written against.
# A snapshot without that commit is used at its HEAD, with a warning.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="$ROOT/bench-env"
VENV="$ENV_DIR/venv"
PEERS="$ENV_DIR/peers"
PMIXER_DIR="$PEERS/SASRec.pytorch"
PMIXER_SOURCE="${1:-${PMIXER_SOURCE:-https://github.com/pmixer/SASRec.pytorch.git}}"
PMIXER_REF="${PMIXER_REF:-fde8a9c08febc2c898dc269b1d98ab762c50d2be}"
TORCH_PIN="$(sed -n 's/^torch==//p' "$ROOT/constraints.txt")"
PYTHON="${PYTHON:-python3}"
PMIXER_FILES="LICENSE python/main.py python/model.py python/utils.py"

log() { echo "peer_env: $*" >&2; }
# Half-finished downloads never stay behind.
trap 'rm -rf "$PEERS"/.fetch.* "$PEERS"/.clone.* 2>/dev/null || true' EXIT

# ---------------------------------------------------------------- RecTools venv
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

venv_ok() {
  "$VENV/bin/python" - "$TORCH_PIN" <<'PY' 2>/dev/null
import sys
import rectools, pytorch_lightning, torch  # noqa: F401
from rectools.models import SASRecModel  # noqa: F401
pin = sys.argv[1]
sys.exit(0 if torch.__version__.split("+")[0] == pin else 1)
PY
}

if venv_ok; then
  log "RecTools venv ready"
else
  log "installing rectools[torch] into $VENV (torch pinned to $TORCH_PIN)"
  "$VENV/bin/pip" install -q -c "$ROOT/constraints.txt" 'rectools[torch]'
  if ! venv_ok; then
    log "ERROR: after install, rectools/pytorch-lightning do not import or torch is not $TORCH_PIN"
    "$VENV/bin/pip" list 2>/dev/null | grep -iE '^(torch|pytorch-lightning|rectools) ' >&2 || true
    exit 1
  fi
fi

# ---------------------------------------------------------------- pmixer/SASRec.pytorch
have_pmixer() {
  [ -f "$PMIXER_DIR/python/model.py" ] && [ -f "$PMIXER_DIR/python/utils.py" ] \
    && [ -f "$PMIXER_DIR/COMMIT" ]
}

export_from_git() {  # $1: git dir
  local gitdir="$1" ref="$PMIXER_REF" tmp f
  if ! git --git-dir="$gitdir" cat-file -e "$ref^{commit}" 2>/dev/null; then
    log "WARNING: $PMIXER_REF not in $PMIXER_SOURCE; using its HEAD"
    ref=HEAD
  fi
  tmp="$(mktemp -d "$PEERS/.fetch.XXXXXX")"
  # Only the code the runners import (and its licence): the repository's data files are large
  # and may be absent from a partial snapshot.
  for f in $PMIXER_FILES; do
    mkdir -p "$tmp/$(dirname "$f")"
    if [ "$f" = LICENSE ] && ! git --git-dir="$gitdir" cat-file -e "$ref:$f" 2>/dev/null; then
      continue
    fi
    if ! git --git-dir="$gitdir" show "$ref:$f" > "$tmp/$f"; then
      rm -rf "$tmp"
      log "ERROR: could not read $f at $ref from $gitdir"
      exit 1
    fi
  done
  git --git-dir="$gitdir" rev-parse "$ref^{commit}" > "$tmp/COMMIT"
  rm -rf "$PMIXER_DIR"
  mv "$tmp" "$PMIXER_DIR"
}

if have_pmixer && { [ "$(cat "$PMIXER_DIR/COMMIT")" = "$PMIXER_REF" ] || [ -n "${PMIXER_KEEP:-}" ]; }; then
  log "pmixer/SASRec.pytorch ready at $(cat "$PMIXER_DIR/COMMIT") in $PMIXER_DIR"
else
  mkdir -p "$PEERS"
  if [ -d "$PMIXER_SOURCE" ]; then
    src="$(cd "$PMIXER_SOURCE" && pwd)"
    if [ -d "$src/.git" ]; then
      export_from_git "$src/.git"
    elif git --git-dir="$src" rev-parse --git-dir >/dev/null 2>&1 && [ -d "$src/objects" ]; then
      export_from_git "$src"
    elif [ -f "$src/python/model.py" ]; then
      log "copying plain directory $src (commit unknown)"
      tmp="$(mktemp -d "$PEERS/.fetch.XXXXXX")"
      cp -R "$src/." "$tmp/"
      [ -f "$tmp/COMMIT" ] || echo "unknown" > "$tmp/COMMIT"
      rm -rf "$PMIXER_DIR"
      mv "$tmp" "$PMIXER_DIR"
    else
      log "ERROR: $src is neither a git directory nor a copy of SASRec.pytorch"
      exit 1
    fi
  else
    log "cloning $PMIXER_SOURCE"
    tmpclone="$(mktemp -d "$PEERS/.clone.XXXXXX")"
    git clone -q --no-checkout "$PMIXER_SOURCE" "$tmpclone"
    export_from_git "$tmpclone/.git"
    rm -rf "$tmpclone"
  fi
  log "pmixer/SASRec.pytorch $(cat "$PMIXER_DIR/COMMIT") in $PMIXER_DIR"
fi

log "done: run the peers with $VENV/bin/python benchmarks/peers/{pmixer,rectools}_epoch.py"
