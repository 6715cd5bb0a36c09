#!/bin/sh
# tests/tools/durations.sh — updates tests/integration/durations.txt from the
# last integration passes' build/test-logs/integration-<pass>.tap.times:
# one line per file and pass, "<seconds> <pass> <file>" (pass: build-w1,
# build-asan-w2, ...). tests/run.sh starts a pass's files longest first by
# it (a file it does not list first of all: it may be long), so the pass
# does not end with one long file running alone while the others are done.
# A file and pass the logs do not mention keep their line; files that no
# longer exist lose theirs. Run it after a full `make test` on a quiet
# machine and commit the result; a stale line only makes the order worse.
set -eu
cd "$(dirname "$0")/../.."
out=tests/integration/durations.txt
new=$(mktemp)
for t in build/test-logs/integration-*.tap.times; do
  [ -f "$t" ] || continue
  pass=$(basename "$t" .tap.times | sed 's/^integration-//')
  awk -v p="$pass" '{print $1, p, $NF}' "$t" >> "$new"
done
old=/dev/null
[ -f "$out" ] && old=$out
tmp=$(mktemp)
awk 'FNR == NR { seen[$2 " " $3] = 1; print; next }
     /^#/ { next }
     !(($2 " " $3) in seen)' "$new" "$old" | while read -r s p f; do
  [ -f "$f" ] && echo "$s $p $f"
done | sort -k2,2 -k3,3 > "$tmp"
{ echo "# seconds pass file — written by tests/tools/durations.sh (tests/run.sh orders each pass by it)"
  cat "$tmp"; } > "$out"
rm -f "$new" "$tmp"
echo "durations: $(grep -vc '^#' "$out") lines in $out"
