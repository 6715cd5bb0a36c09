#!/bin/sh
# tests/deps.sh — install whatever the build and the tests need and is missing.
#
# Idempotent and quiet: when everything is present it runs two dpkg-query
# calls and a stat and prints nothing. Called by `make deps` / `make test`;
# `make run` calls it with --build (the build's packages only).
#
#  1. Debian packages (dpkg-query); missing ones are installed with apt-get
#     --no-install-recommends, so whatever a package only Recommends is
#     listed here itself (libclang-rt-dev: clang's libFuzzer and ASan
#     runtimes, for make fuzz; llvm: llvm-cov and llvm-profdata, for make
#     fuzz-coverage). chromium: the browser the web tests drive through
#     playwright-core.
#  2. Node.js 20 or later with npm (tests/package.json "engines"): any
#     `node` of 20+ on PATH (e.g. NodeSource's, which bundles npm; Debian's
#     npm package would conflict with it). Else nodejs and npm come from apt
#     when apt offers 20 or later; Debian 12's own is 18, which the test
#     tools do not run on: then this stops, after installing the rest, and
#     says what to do.
#  3. The npm test tools pinned in tests/package-lock.json: `npm ci` when
#     tests/node_modules is missing or older than the lockfile (stamp file).
set -eu

here=$(cd "$(dirname "$0")" && pwd)

die() { echo "deps.sh: error: $*" >&2; exit 1; }

BUILD_PKGS="build-essential pkg-config libuv1-dev node-llhttp libssl-dev liblmdb-dev
libcurl4-openssl-dev libjansson-dev openssl unicode-data"
PKGS="$BUILD_PKGS lmdb-utils clang libclang-rt-dev llvm nodejs npm nginx-light wrk nghttp2-client chromium"
NODE_MIN=20
# --build: only what building and running the gateway needs (`make run`):
# no test tools, no npm registry
build_only=false
[ "${1:-}" = "--build" ] && { PKGS=$BUILD_PKGS; build_only=true; }
# --list: the packages, one a line (tests/integration/deps.test.mjs)
[ "${1:-}" = "--list" ] && { printf '%s\n' $PKGS; exit 0; }

# the major version of the node on PATH (0: none)
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && [ "$(node_major)" -ge "$NODE_MIN" ]
}

missing=""
want_node=false
for p in $PKGS; do
  case "$p" in
    nodejs) node_ok || want_node=true; continue ;;
    npm) continue ;;
  esac
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in
    *" installed") ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -n "$missing" ] || $want_node; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""
  elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"
  else
    [ -n "$missing" ] && die "not root and no sudo: install$missing by hand"
    SUDO="-"
  fi
  log=$(mktemp)
  if [ "$SUDO" != "-" ] && ! $SUDO apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "apt-get update failed"
  fi
  # nodejs from apt only when it is new enough (Debian 12's is not)
  if $want_node && [ "$SUDO" != "-" ]; then
    cand=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9][0-9]*\).*/\2/p' | head -n 1)
    [ "${cand:-0}" -ge "$NODE_MIN" ] && missing="$missing nodejs npm"
  fi
  if [ -n "$missing" ]; then
    echo "deps.sh: installing Debian packages:$missing" >&2
    # shellcheck disable=SC2086
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          --no-install-recommends $missing >"$log" 2>&1; then
      tail -n 40 "$log" >&2; rm -f "$log"; die "apt-get install failed for:$missing"
    fi
  fi
  rm -f "$log"
fi

$build_only && exit 0

if ! node_ok; then
  found=none
  command -v node >/dev/null 2>&1 && found="$(node --version 2>/dev/null || echo '?')"
  command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1 && found="$found without npm"
  die "the tests need Node.js $NODE_MIN or later with npm on PATH (tests/package.json), found $found; \
Debian 12's own nodejs is 18: install Node.js $NODE_MIN or later (e.g. NodeSource's Debian packages, \
https://github.com/nodesource/distributions, or https://nodejs.org), then run this again"
fi

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
