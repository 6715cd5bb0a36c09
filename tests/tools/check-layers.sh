#!/bin/sh
# tests/tools/check-layers.sh — `make check-layers`: reads every `#include "…"`
# of our C sources and fails on any include against DESIGN.md's dependency
# order (issue 13):
#
#   store                       nothing of ours (it logs through a callback)
#   scim policy auth vault audit  store; never each other, except that
#                               vault may read auth's identity checks
#                               (none today) — policy and auth read users and
#                               membership through store/dir, never scim;
#                               audit never includes policy
#   gateway/base                nothing of ours
#   gateway/http gateway/out    gateway/base
#   gateway/core                base, http, out, store
#   web                         nothing of ours (the embedded pages and
#                               the template renderer)
#   gateway/mcp gateway/api     core and below, and the domain modules;
#                               not each other; gateway/api also web
#   gateway/modules.c cli.c main.c   anything
#
# A file may always include headers of its own layer folder. Prints every
# violation as `file: includes header (layer → layer)` and exits 1 if any.
set -eu
cd "$(dirname "$0")/../.."

layer_of() {
  case "$1" in
    store/*) echo store ;;
    scim/*) echo scim ;; policy/*) echo policy ;; auth/*) echo auth ;;
    vault/*) echo vault ;; audit/*) echo audit ;;
    web/*) echo web ;;
    gateway/base/*) echo gw-base ;;
    gateway/http/*) echo gw-http ;;
    gateway/out/*) echo gw-out ;;
    gateway/core/*) echo gw-core ;;
    gateway/mcp/*) echo gw-mcp ;;
    gateway/api/*) echo gw-api ;;
    gateway/modules.c|gateway/modules.h|gateway/cli.c|gateway/cli.h|gateway/main.c) echo gw-top ;;
    gateway/*) echo gw-stray ;;
    *) echo other ;;
  esac
}

# allowed FROM TO → 0 if FROM may include TO
allowed() {
  [ "$1" = "$2" ] && return 0
  case "$1" in
    store|gw-base|web) return 1 ;;
    scim|policy|auth|vault|audit)
      [ "$2" = store ] && return 0
      [ "$1" = vault ] && [ "$2" = auth ] && return 0
      return 1 ;;
    gw-http|gw-out) [ "$2" = gw-base ] && return 0; return 1 ;;
    gw-core)
      case "$2" in gw-base|gw-http|gw-out|store) return 0 ;; esac; return 1 ;;
    gw-mcp|gw-api)
      case "$2" in gw-base|gw-http|gw-out|gw-core|store|scim|policy|auth|vault|audit) return 0 ;; esac
      [ "$1" = gw-api ] && [ "$2" = web ] && return 0
      return 1 ;;
    gw-top) return 0 ;;
  esac
  return 1
}

bad=0
files=$(find store scim policy auth vault audit gateway web -name '*.[ch]' 2>/dev/null | sort)
for f in $files; do
  from=$(layer_of "$f")
  if [ "$from" = gw-stray ]; then
    echo "$f: a gateway file outside the layer folders (base http out core mcp api) or modules.c/cli.c/main.c"
    bad=$((bad + 1)); continue
  fi
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
    to=$(layer_of "$inc")
    [ "$to" = other ] && continue
    if ! allowed "$from" "$to"; then
      echo "$f: includes $inc ($from must not depend on $to)"
      bad=$((bad + 1))
    fi
  done
  # no #include in the middle of a header: every include comes before the
  # first declaration (anything that is not a comment, a blank line or a
  # preprocessor line)
  case "$f" in *.h)
    if awk '
      /^[[:space:]]*\/\*/ { incomment = 1 }
      incomment { if ($0 ~ /\*\//) incomment = 0; next }
      /^[[:space:]]*(\/\/|$)/ { next }
      /^[[:space:]]*#[[:space:]]*include/ { if (seen) { print FILENAME ":" NR ": #include after a declaration"; found = 1 } next }
      /^[[:space:]]*#/ { next }
      { seen = 1 }
      END { exit found ? 0 : 1 }' "$f"; then bad=$((bad + 1)); fi ;;
  esac
done
if [ "$bad" -gt 0 ]; then
  echo "check-layers: $bad violation(s) of the dependency order (DESIGN.md, tests/tools/check-layers.sh)"
  exit 1
fi
echo "check-layers: ok ($(echo "$files" | wc -w) files)"
