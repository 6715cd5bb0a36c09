#!/bin/sh
# tests/run.sh — runs every test tier and prints one total.
#
#   1. unit binaries: build/tests/test_* and build-asan/tests/test_*; each
#      ends with "# unit FILE: N passed, N failed". A binary that crashes,
#      times out, exits non-zero or prints no summary counts as a failure, and
#      so does a sanitizer report in its output.
#   2. integration: node's test runner over tests/integration/*.test.mjs,
#      against build/mcpgate (one event loop; TEST_WORKERS="1 2" adds a pass
#      with two: --workers, through GW_TEST_WORKERS, lib/gateway.mjs) and
#      build-asan/mcpgate (two loops; the harness fails a file whose gateway
#      printed a sanitizer report). A file may limit itself to some of these runs with a line
#      "// ci-variants: build-w1 build-asan-w2" in its header. A pass starts
#      its files longest first (tests/integration/durations.txt).
#
# `sh tests/run.sh --unit-start VARIANT` starts a variant's unit binaries in
# the background and returns; `sh tests/run.sh --unit-started` then reads
# them instead of running them again (make test: see run_unit).
# `--unit-started --behind PREFIX` (make test): the ASan and fuzz builds
# run in the background (PREFIX.log; PREFIX.asan.rc, then PREFIX.rc) while
# the plain tiers run; the ASan tiers wait for the ASan build, the fuzzers
# for the fuzz build, beside the ASan pass (see behind_wait).
#
# Full logs go to build/test-logs/ (with, for each integration pass,
# <tap>.times: each file's seconds, slowest first); only failures are echoed. The last line
# is exactly "N passed, N failed"; the exit status is non-zero on any failure.
# Knobs: TEST_ONLY=unit|fuzz|integration, FUZZ_SECONDS (6), TEST_VARIANTS="build build-asan",
#        TEST_FILES="tests/integration/http.test.mjs ...", TEST_WORKERS (loops: "1" for
#        the plain build by default, "1 2" adds a plain two-loop pass; every
#        variant), UNIT_JOBS (unit binaries at a time, 4), TEST_ASAN_WORKERS="2" (the sanitizer variant's default),
#        TEST_ALL_VARIANTS=1 (ignore the files' ci-variants lines),
#        TEST_NODE_FLAGS (node's flags for the integration files; see below),
#        TEST_CONCURRENCY (integration files at a time; default four, three
#        for a plain two-loop pass: see below), GW_TEST_JOB_RERUN=0|1 (store
#        write jobs run twice; default on for the sanitizer pass: see below).
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
LOGDIR="$ROOT/build/test-logs"
mkdir -p "$LOGDIR"

VARIANTS=${TEST_VARIANTS:-"build build-asan"}
ONLY=${TEST_ONLY:-all}
UNIT_STARTED=0
BEHIND=""
usage() { echo "usage: sh tests/run.sh [--unit-start VARIANT | --unit-started [--behind PREFIX]]" >&2; exit 2; }
case "${1:-}" in
  --unit-start) [ -n "${2:-}" ] || usage ;;
  --unit-started)
    UNIT_STARTED=1
    case "${2:-}" in
      --behind) [ -n "${3:-}" ] || usage; BEHIND=$3 ;;
      "") ;;
      *) usage ;;
    esac ;;
  "") ;;
  *) usage ;;
esac
SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer'

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-print_suppressions=0}"

total_pass=0
total_fail=0
summary=""

add_summary() { summary="${summary}$1
"; }

# ------------------------------------------------------------------ unit
# The binaries run four at a time, the ones that wait longest first: most of
# their time is timers (test_h1 waits out idle timeouts, test_oauth_token
# and test_vault wait out expiries: ~12 s each, under a second of CPU), so
# two at a time kept a pass at ~48 s of which ~16 s were CPU; four at a time
# it takes about as long as its slowest binary (six at a time starved
# test_http's steady reader on a loaded machine). Then the logs are read.
#
# `make test` starts the plain binaries as soon as they are built (sh
# tests/run.sh --unit-start build: in the background, beside the plain
# pass and the ASan build; they wait on timers), and the ASan ones beside
# the ASan pass (started during the fuzz build they stretched it from 49 to
# 109 s); its last step, sh tests/run.sh --unit-started, reads what they
# wrote (waiting for them when they are still running).
# Without --unit-started a run starts its own; a start whose process died
# is run again.
UNIT_SLOW="test_h1 test_oauth_token test_vault test_scim test_store test_audit"
unit_launch() {
  variant=$1
  { for s in $UNIT_SLOW; do [ -x "$variant/tests/$s" ] && echo "$variant/tests/$s"; done
    for bin in "$variant"/tests/test_*; do
      case " $UNIT_SLOW " in *" $(basename "$bin") "*) continue ;; esac
      echo "$bin"
    done; } | while read -r bin; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    log="$LOGDIR/unit-$(basename "$variant")-$(basename "$bin").log"
    rm -f "$log.rc"
    printf '%s\n%s\n' "$bin" "$log"
  done | xargs -n 2 -P "${UNIT_JOBS:-4}" sh -c 'timeout 120 "$0" >"$1" 2>&1; echo $? >"$1.rc"'
}

# the markers of a variant's background start: .began (its start time),
# .pid (the process running it), .done (its end time)
unit_mark() { echo "$LOGDIR/unit-$(basename "$1")"; }

unit_start_bg() {
  m=$(unit_mark "$1")
  rm -f "$m.began" "$m.done" "$m.pid"
  date +%s > "$m.began"
  ( unit_launch "$1"; date +%s > "$m.done" ) </dev/null >/dev/null 2>&1 &
  echo $! > "$m.pid"
}

run_unit() {
  variant=$1
  sec_pass=0; sec_fail=0; found=0
  m=$(unit_mark "$variant")
  ustart=$(date +%s)
  uend=""
  if [ "$UNIT_STARTED" = 1 ] && [ -f "$m.began" ] && [ -f "$m.pid" ]; then
    # started in the background by --unit-start: wait for it (10 minutes
    # at most) unless its process is gone without finishing
    ustart=$(cat "$m.began")
    n=0
    while [ ! -f "$m.done" ] && kill -0 "$(cat "$m.pid")" 2>/dev/null && [ $n -lt 600 ]; do
      sleep 1; n=$((n + 1))
    done
    [ -f "$m.done" ] && uend=$(cat "$m.done")
  fi
  if [ -z "$uend" ]; then
    ustart=$(date +%s)
    unit_launch "$variant"
    uend=$(date +%s)
  fi
  rm -f "$m.began" "$m.done" "$m.pid"
  for bin in "$variant"/tests/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    found=1
    name=$(basename "$bin")
    log="$LOGDIR/unit-$(basename "$variant")-$name.log"
    rc=$(cat "$log.rc" 2>/dev/null || echo 125)
    line=$(grep -E '^# unit .*: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
      p=0; f=1
      echo "FAIL unit $bin: no summary line (exit $rc$( [ $rc -eq 124 ] && echo ', timed out'))"
      tail -n 30 "$log" | sed 's/^/    /'
    else
      p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1/')
      f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\2/')
      if [ "$f" -gt 0 ]; then
        echo "FAIL unit $bin: $f failed"
        grep -E '^not ok|^  ' "$log" | head -n 40 | sed 's/^/    /'
      fi
      if grep -Eq "$SAN_RE" "$log"; then
        f=$((f + 1))
        echo "FAIL unit $bin: sanitizer report"
        grep -E -A 20 "$SAN_RE" "$log" | head -n 40 | sed 's/^/    /'
      elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL unit $bin: exit status $rc with no failed test"
        tail -n 20 "$log" | sed 's/^/    /'
      fi
    fi
    sec_pass=$((sec_pass + p)); sec_fail=$((sec_fail + f))
  done
  if [ $found -eq 0 ]; then
    echo "note: no unit test binaries in $variant/tests"
  fi
  add_summary "unit ($variant): $sec_pass passed, $sec_fail failed ($((uend - ustart))s)"
  total_pass=$((total_pass + sec_pass)); total_fail=$((total_fail + sec_fail))
}

# ------------------------------------------------------------------ integration
run_integration() {
  variant=$1
  workers=$2
  bin="$variant/mcpgate"
  tap="$LOGDIR/integration-$(basename "$variant")-w$workers.tap"
  label="$variant, workers $workers"
  if [ ! -x "$bin" ]; then
    echo "FAIL integration ($label): $bin not built"
    add_summary "integration ($label): 0 passed, 1 failed"
    total_fail=$((total_fail + 1))
    return
  fi
  if [ -n "${TEST_FILES:-}" ]; then files=$TEST_FILES
  else files=$(ls tests/integration/*.test.mjs 2>/dev/null)
  fi
  # A file may name the runs it needs in its first lines, e.g.
  # "// ci-variants: build-w1 build-asan-w2" (a fixture's self-test that
  # never starts the gateway, a test that starts its own loops): the other
  # runs skip it, which keeps CI inside its budget. Files without the line
  # run everywhere. TEST_ALL_VARIANTS=1 ignores the line (make tsan: its
  # own build, which no line names).
  kept=""
  [ "${TEST_ALL_VARIANTS:-0}" = 1 ] && kept=$files && files=""
  for fl in $files; do
    want=$(head -n 40 "$fl" | sed -n 's|^// ci-variants: *||p' | head -n 1 | cut -d'(' -f1)
    if [ -z "$want" ] || echo " $want " | grep -q " $(basename "$variant")-w$workers "; then kept="$kept $fl"; fi
  done
  files=$kept
  # Longest first (tests/integration/durations.txt: each file's seconds in
  # this pass, last measured; tests/tools/durations.sh updates it), files it
  # does not list before those: a long file starting last kept a slot busy
  # after the others ran dry (the plain pass ended with two 25-second browser
  # files alone). tests/tools/run-integration.mjs keeps this order (node
  # --test sorts its arguments).
  durations=tests/integration/durations.txt
  [ -f "$durations" ] || durations=/dev/null # (then in the order given)
  # shellcheck disable=SC2086
  files=$(printf '%s\n' $files | awk -v p="$(basename "$variant")-w$workers" -v d="$durations" '
    FILENAME == d { if ($2 == p) secs[$3] = $1; next }
    NF { print (($1 in secs) ? secs[$1] : 1e9), $1 }' "$durations" - | sort -s -k1,1 -g -r | cut -d' ' -f2)
  if [ -z "$files" ]; then
    add_summary "integration ($label): nothing to run (ci-variants)"
    return
  fi
  if [ -z "$files" ]; then
    echo "FAIL integration: no tests/integration/*.test.mjs"
    add_summary "integration ($label): 0 passed, 1 failed"
    total_fail=$((total_fail + 1))
    return
  fi
  start=$(date +%s)
  # Files at a time: four for the plain one-loop pass, whose files mostly
  # wait (404 s at three, 371 s at four on a slow two-core machine; 309 s at
  # four and 325 s at five once the passes shared server-everything and the
  # RSA keys), four for the sanitizer pass (331 s at three, 304 s at four
  # since then; before, four was slower: 378 -> 429 s), three for a plain
  # two-loop pass (at four: 90 -> 149 s). TEST_CONCURRENCY: every pass.
  case "$variant-$workers" in *asan*) conc=${TEST_CONCURRENCY:-4} ;; *-2) conc=${TEST_CONCURRENCY:-3} ;; *) conc=${TEST_CONCURRENCY:-4} ;; esac
  # The sanitizer pass runs every store write job twice, the first run
  # aborted (MCPGATE_TEST_JOB_RERUN, through GW_TEST_JOB_RERUN): the writer
  # runs a job again whenever one before or beside it in its batch fails
  # (store/store.h), and a job that is not re-run safe then answers wrong
  # or leaks — LeakSanitizer sees the leak here. (~10 s of the pass.) The
  # plain pass keeps the writer's usual path (but for the files that start
  # their gateway with it). GW_TEST_JOB_RERUN=0|1: every pass.
  case "$variant" in *asan*) rerun=${GW_TEST_JOB_RERUN:-1} ;; *) rerun=${GW_TEST_JOB_RERUN:-0} ;; esac
  # Node's optimising compilers are left out (TEST_NODE_FLAGS, passed on
  # to every file's process): a file lives a few seconds, too short for
  # TurboFan's background compiles (or those of node's own fetch, whose
  # HTTP parser is WebAssembly) to pay back. A typical file took 1.27
  # CPU-seconds instead of 1.58, the slowest JS-heavy ones as long as before;
  # the plain pass is bound by CPU (~90 % of two cores).
  # (node --test with the tap reporter, but in this order: see the tool).
  # A file has 90 s: the slowest take ~20 s alone, and a browser file ran
  # past 30 s with four files at a time on a slow two-core machine.
  # shellcheck disable=SC2086
  RUN_INTEGRATION_TIMES="$tap.times" GW_TEST_WORKERS="$workers" GW_TEST_JOB_RERUN="$rerun" MCPGATE_BIN="$bin" timeout 600 node ${TEST_NODE_FLAGS---no-opt --liftoff-only} tests/tools/run-integration.mjs \
    "$conc" 90000 $files >"$tap" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  p=$(grep -E '^# pass [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
  c=$(grep -E '^# cancelled [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
  s=$(grep -E '^# skipped [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
  t=$(grep -E '^# todo [0-9]+$' "$tap" | tail -n 1 | awk '{print $3}')
  if [ -z "$p" ] || [ -z "$f" ]; then
    echo "FAIL integration ($label): node test runner printed no totals (exit $rc)"
    tail -n 40 "$tap" | sed 's/^/    /'
    p=${p:-0}; f=$(( ${f:-0} + 1 ))
  fi
  f=$((f + ${c:-0}))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL integration ($label): node exited $rc with no failed test"
    f=1
  fi
  if [ "$f" -gt 0 ]; then
    echo "---- failing integration tests ($variant), full log: $tap"
    # every "not ok" with its YAML block (up to the closing "...")
    # (stack traces left out; they are in the log)
    awk '
      function ind(s) { match(s, /^ */); return RLENGTH }
      /^ *not ok / { show = 1; n = 0; skip = -1 }
      show && skip >= 0 && ind($0) > skip { next }
      show { skip = -1 }
      show && /^ *stack: \|-$/ { skip = ind($0); next }
      show && /^ *(duration_ms|location|failureType|code|name|operator): / { next }
      show { print "    " $0; n++ }
      show && /^ *\.\.\.$/ { show = 0 }
      show && n > 40 { print "    [...]"; show = 0 }
    ' "$tap"
  fi
  extra=""
  [ "${s:-0}" -gt 0 ] && extra="$extra, $s skipped"
  [ "${t:-0}" -gt 0 ] && extra="$extra, $t todo"
  add_summary "integration ($label): $p passed, $f failed$extra (${took}s)"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

# Fuzz: each libFuzzer driver replays its committed corpus (regressions:
# every input once) and then fuzzes for FUZZ_SECONDS on a scratch copy, so
# new inputs never land in the repo. A crash, leak or UB report fails it;
# the reproducer is kept in build/test-logs/. A target's dictionary
# (tests/fuzz/dict/NAME.dict: the tokens its parser knows) is passed when
# there is one, by absolute path since the fuzzer runs in build/test-logs.
# The wrapper's timeout is the fuzzing time plus a margin for the replay
# and the final leak check, so long runs (make fuzz FUZZ_SECONDS=300) are
# not cut short, while a hung target still ends. One input counts as a
# hang after 25 s, not 5: on a loaded machine ASan's allocator, returning
# memory to the OS, once held a 0.2 s input of fuzz_json_check past 5 s.
fuzz_one() {
  bin=$1
  name=$(basename "$bin" | sed 's/^fuzz_//')
  corpus=tests/fuzz/corpus/$name
  dict="$ROOT/tests/fuzz/dict/$name.dict"
  scratch=$(mktemp -d)
  [ -d "$corpus" ] && cp "$corpus"/* "$scratch"/ 2>/dev/null
  log=build/test-logs/fuzz-$name.log
  set --
  [ -f "$dict" ] && set -- -dict="$dict"
  (cd build/test-logs && nice -n "${fuzz_nice:-0}" timeout $((fuzz_secs + 120)) "../../$bin" "$@" -max_total_time="$fuzz_secs" -timeout=25 \
      -rss_limit_mb=2048 -print_final_stats=1 "$scratch") > "$log" 2>&1
  echo $? > "$log.rc"
  rm -rf "$scratch"
}

# Two targets at a time (each fuzzes on one thread; two cores): the tier
# takes half the time in CI's budget. fuzz_start runs them all (in the
# background when everything runs: the unit binaries beside it mostly wait
# on timers, so the two tiers take ~55 s together instead of ~93 s one after
# the other); fuzz_collect reads their results.
fuzz_start() {
  fuzz_secs=${FUZZ_SECONDS:-6}
  running=0
  for bin in build-fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    fuzz_one "$bin" &
    running=$((running + 1))
    if [ $running -ge 2 ]; then wait; running=0; fi
  done
  wait
}

fuzz_collect() {
  sec_pass=0; sec_fail=0
  for bin in build-fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    log=build/test-logs/fuzz-$name.log
    rc=$(cat "$log.rc" 2>/dev/null || echo 125)
    if [ "$rc" -eq 0 ]; then
      sec_pass=$((sec_pass + 1))
    else
      sec_fail=$((sec_fail + 1))
      echo "FAIL fuzz $name (exit $rc): $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$log")"
      echo "     reproducer and log in build/test-logs/ ($log)"
    fi
  done
  if [ $((sec_pass + sec_fail)) -eq 0 ]; then
    echo "note: no fuzzers in build-fuzz/fuzz (make fuzz)"
  fi
  add_summary "fuzz: $sec_pass passed, $sec_fail failed ($(( $(date +%s) - fstart ))s${1:-})"
  total_pass=$((total_pass + sec_pass)); total_fail=$((total_fail + sec_fail))
}

# ------------------------------------------------------------------ builds behind
# `make test` starts the ASan and fuzz builds in the background, niced,
# once the plain build is done, and names their log and exit statuses with
# --behind PREFIX: PREFIX.log, PREFIX.asan.rc once the ASan build is done,
# PREFIX.rc once the fuzz build after it is. The plain pass mostly waits on
# timers and sockets, so the compilers take what it leaves (nice 19: the
# tests' processes come first) instead of running ~125 s before any test.
# The ASan tiers wait for the ASan build only; the fuzz build may still run
# beside them (behind_wait PREFIX.asan.rc, then PREFIX.rc).
# waits (30 minutes at most) until the file exists
wait_file() {
  n=0
  while [ ! -f "$1" ] && [ $n -lt 1800 ]; do sleep 1; n=$((n + 1)); done
}

behind_wait() {
  rcfile=$1; what=$2
  bstart=$(date +%s)
  wait_file "$rcfile"
  rc=$(cat "$rcfile" 2>/dev/null || echo 124)
  if [ "$rc" -ne 0 ]; then
    grep '^== ' "$BEHIND.log" 2>/dev/null # when each build started and ended
    echo "FAIL the $what build behind the plain pass (exit $rc$( [ ! -f "$rcfile" ] && echo ', not done in 30 minutes')): $BEHIND.log"
    tail -n 40 "$BEHIND.log" 2>/dev/null | sed 's/^/    /'
    add_summary "$what build: 0 passed, 1 failed"
    total_fail=$((total_fail + 1))
    return 1
  fi
  add_summary "$what build: behind the tests (waited $(( $(date +%s) - bstart ))s for it)"
  return 0
}

if [ "${1:-}" = --unit-start ]; then
  unit_start_bg "$2"
  echo "unit ($2): started in the background (sh tests/run.sh --unit-started reads it)"
  exit 0
fi

mkdir -p build/test-logs
rm -f build/test-logs/fuzz-*.log.rc build/test-logs/fuzz.began
# the plain build with one loop; the sanitizer build with two (the
# multi-loop paths, where memory errors would hide). A plain two-loop pass
# (TEST_WORKERS="1 2") only repeated the sanitizer's files without it: 105 s
# of CI's 15 minutes on two cores, so it is not run by default.
run_integration_variant() {
  case "$1" in *asan*) ws=${TEST_WORKERS:-${TEST_ASAN_WORKERS:-2}} ;; *) ws=${TEST_WORKERS:-1} ;; esac
  for w in $ws; do run_integration "$1" "$w"; done
}
case "$ONLY" in all|integration)
  [ -d tests/node_modules ] || echo "note: tests/node_modules missing; run 'make deps' (sh tests/deps.sh)" ;;
esac

if [ -n "$BEHIND" ]; then
  # make test: the plain tiers while the ASan and fuzz builds run behind
  # them (the plain unit binaries beside the plain pass); then the ASan pass, with the ASan unit binaries and (once the
  # fuzz build is done) the fuzzers beside it. The ASan pass leaves about a
  # quarter of two cores idle (its files wait on timers: 344 CPU-seconds
  # in 246 s), which the unit binaries (mostly timers themselves) and the
  # fuzzers, niced, take: one after the other they added ~85 s to CI (the
  # wait for the fuzz build, then ~50 s of fuzzers beside the unit tests).
  # The fuzzers replay their whole corpus however long that takes, then
  # fuzz for what remains of FUZZ_SECONDS of wall-clock time.
  # (the plain unit binaries, started when their build was done, are read
  # after the plain pass: waiting for them first held it ~25 s)
  run_integration_variant build
  run_unit build
  if behind_wait "$BEHIND.asan.rc" "ASan"; then
    unit_start_bg build-asan
    ( wait_file "$BEHIND.rc"
      if [ "$(cat "$BEHIND.rc" 2>/dev/null)" = 0 ]; then
        date +%s > build/test-logs/fuzz.began
        fuzz_nice=19; fuzz_start
      fi ) >/dev/null 2>&1 &
    fuzz_pid=$!
    run_integration_variant build-asan
    run_unit build-asan
    wait "$fuzz_pid"
    if behind_wait "$BEHIND.rc" "fuzz"; then
      fstart=$(cat build/test-logs/fuzz.began 2>/dev/null || date +%s)
      fuzz_collect ", beside the ASan pass"
    fi
  fi
else
  fstart=$(date +%s)
  fuzz_pid=""
  if [ "$ONLY" = all ]; then
    fuzz_start >/dev/null 2>&1 &
    fuzz_pid=$!
  fi
  if [ "$ONLY" = all ] || [ "$ONLY" = unit ]; then
    for v in $VARIANTS; do run_unit "$v"; done
  fi
  if [ -n "$fuzz_pid" ]; then
    wait "$fuzz_pid"
    fuzz_collect ", beside the unit tests"
  elif [ "$ONLY" = fuzz ]; then
    fuzz_start
    fuzz_collect
  fi
  if [ "$ONLY" = all ] || [ "$ONLY" = integration ]; then
    for v in $VARIANTS; do run_integration_variant "$v"; done
  fi
fi

echo "==== summary"
printf '%s' "$summary"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
