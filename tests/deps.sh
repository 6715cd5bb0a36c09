#!/bin/sh
# tests/deps.sh — install whatever the build and the tests need and is missing.
#
# Idempotent and quiet: when everything is present it runs two dpkg-query
# calls and a stat and prints nothing. Called by `make deps` / `make test`;
# `make run` calls it with --build (the build's packages only).
#
#  1. Debian packages (dpkg-query); missing ones are installed with apt-get
#     (chromium: the browser the web tests drive through playwright-core).
#     nodejs/npm are satisfied by any `node`/`npm` on PATH (the machine ships
#     Node 20 from NodeSource, which bundles npm; Debian's npm package would
#     conflict with it).
#  2. The npm test tools pinned in tests/package-lock.json: `npm ci` when
#     tests/node_modules is missing or older than the lockfile (stamp file).
set -eu

here=$(cd "$(dirname "$0")" && pwd)

die() { echo "deps.sh: error: $*" >&2; exit 1; }

BUILD_PKGS="build-essential pkg-config libuv1-dev node-llhttp libssl-dev liblmdb-dev
libcurl4-openssl-dev libjansson-dev openssl"
PKGS="$BUILD_PKGS lmdb-utils clang nodejs npm nginx-light wrk nghttp2-client chromium"
# --build: only what building and running the gateway needs (`make run`):
# no test tools, no npm registry
build_only=false
[ "${1:-}" = "--build" ] && { PKGS=$BUILD_PKGS; build_only=true; }

missing=""
for p in $PKGS; do
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm)    command -v npm  >/dev/null 2>&1 && continue ;;
  esac
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in
    *" installed") ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -n "$missing" ]; then
  echo "deps.sh: installing Debian packages:$missing" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""
  elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"
  else die "not root and no sudo: install$missing by hand"
  fi
  log=$(mktemp)
  if ! $SUDO apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "apt-get update failed"
  fi
  # shellcheck disable=SC2086
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $missing >"$log" 2>&1; then
    tail -n 40 "$log" >&2; rm -f "$log"; die "apt-get install failed for:$missing"
  fi
  rm -f "$log"
fi

$build_only && exit 0

command -v node >/dev/null 2>&1 || die "node not found after install"
command -v npm >/dev/null 2>&1 || die "npm not found after install"

# npm test tools
stamp="$here/node_modules/.mcpgate-deps-stamp"
lock="$here/package-lock.json"
[ -f "$lock" ] || die "missing $lock"
# A symlinked tests/node_modules (a git worktree sharing another checkout's
# tools) is left alone: npm ci would replace the link with a directory and
# empty the checkout it points to.
if [ -L "$here/node_modules" ]; then
  [ -f "$stamp" ] || echo "deps.sh: tests/node_modules is a symlink without installed tools: run make deps where it points" >&2
elif [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ "$here/package.json" -nt "$stamp" ]; then
  echo "deps.sh: npm ci in tests/" >&2
  log=$(mktemp)
  if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    tail -n 40 "$log" >&2; rm -f "$log"; die "npm ci failed in tests/"
  fi
  rm -f "$log"
  touch "$stamp"
fi
exit 0
