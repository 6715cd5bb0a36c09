#!/bin/sh
# tests/tools/fuzz-coverage.sh BUILD — runs every fuzz target of BUILD/fuzz
# (built with source-based coverage: make fuzz-coverage) once over its
# committed corpus and prints, per target, the line coverage of the module
# code it reaches (tests/ and llhttp excluded), and the files it covers best
# — the numbers the README's security section quotes. No -dict here:
# a replay (-runs=0) mutates nothing, so tests/fuzz/dict/ cannot change it.
set -eu
build=${1:-build-fuzzcov}
profdata=$(command -v llvm-profdata || command -v llvm-profdata-14)
cov=$(command -v llvm-cov || command -v llvm-cov-14)
out=$build/coverage
rm -rf "$out" && mkdir -p "$out"
printf '%-16s %8s %8s  %s\n' target lines covered "files over 50 %"
for bin in "$build"/fuzz/fuzz_*; do
  name=$(basename "$bin" | sed 's/^fuzz_//')
  corpus=tests/fuzz/corpus/$name
  [ -d "$corpus" ] || continue
  LLVM_PROFILE_FILE="$out/$name.profraw" "$bin" -runs=0 "$corpus" >"$out/$name.log" 2>&1 || true
  "$profdata" merge -sparse "$out/$name.profraw" -o "$out/$name.profdata"
  # the files of the modules the target touched (executed at least one line)
  "$cov" report "$bin" -instr-profile="$out/$name.profdata" -ignore-filename-regex='(tests/|llhttp|/usr/)' \
    >"$out/$name.report" 2>/dev/null || true
  awk -v name="$name" '
    $1 ~ /\.c$/ && $8 != "" {
      lines = $8; missed = $9; if (lines > 0 && lines - missed > 0) { tl += lines; tc += lines - missed;
        if ((lines - missed) / lines > 0.5) { n = split($1, p, "/"); good = good (good ? ", " : "") p[n] } }
    }
    END { printf "%-16s %8d %7.1f%%  %s\n", name, tl, tl ? 100 * tc / tl : 0, good }' "$out/$name.report"
done
