#!/bin/sh
# tests/bench/run.sh — `make bench [BENCH=name,…]`: runs the benchmarks one
# by one. Each prints its numbers against a baseline measured in the same
# invocation; none asserts anything. Names:
#   policy  build/bench/bench_policy   policy decisions, tools/list filtering (C)
#   sweep   build/bench/bench_agg_sweep the aggregated maps' sweep and a tenant's revocation: how long
#                                      they hold maps_mu against another thread taking it (C)
#   scim    scim_import.mjs            SCIM import vs nginx, group commit
#   call    tools_call.mjs             tools/call, SSE, tools/list vs direct and nginx (wrk, C upstream);
#                                      tools/call open loop at half the gateway's maximum (rate.c)
#   audit   tools_call.mjs --audit-cost tools/call with audit on and off (the same binary, audit = false
#                                      as @noaudit), 15 rounds x 2 s: the cost per round, on and off
#                                      seconds apart, and its median (issue 22: within 5 %)
#   idle    idle.mjs                   idle Claude Code-like clients: RSS, descriptors, throughput
#   cold    cold_user.mjs              a cold user's first session in a 100k-user directory
#   proxy   proxy.mjs                  the SDK client against server-everything (regression guard)
#   offboard offboard.mjs              1,000 users with open streams deactivated one at a time under
#                                      tools/call load: stream closed and SCIM reply p50/p99, requests
#                                      served after the reply (issue 18)
# Extra arguments for one bench: BENCH_ARGS="--secs 10" (passed to each).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
want=${1:-all}
[ "$want" = all ] && want=policy,sweep,scim,call,audit,idle,cold,proxy,offboard
for b in $(echo "$want" | tr ',' ' '); do
  case "$b" in
    policy) "$BUILD/bench/bench_policy" ;;
    sweep) "$BUILD/bench/bench_agg_sweep" ;;
    scim) node tests/bench/scim_import.mjs ${BENCH_ARGS:-} ;;
    call) node tests/bench/tools_call.mjs ${BENCH_ARGS:-} ;;
    audit) node tests/bench/tools_call.mjs ${BENCH_ARGS:-} --scenario call --audit-cost --no-half --rounds 15 --secs 2 ;; # BENCH_ARGS first: the first occurrence of an option wins
    idle) node tests/bench/idle.mjs ${BENCH_ARGS:-} ;;
    cold) node tests/bench/cold_user.mjs ${BENCH_ARGS:-} ;;
    proxy) node tests/bench/proxy.mjs ${BENCH_ARGS:-} ;;
    offboard) node tests/bench/offboard.mjs ${BENCH_ARGS:-} ;;
    *) echo "bench: unknown '$b' (policy sweep scim call audit idle cold proxy offboard)" >&2; exit 2 ;;
  esac
done
