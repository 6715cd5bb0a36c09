/* tests/unit/test_ratelimit.c — gateway/base/ratelimit.c: bursts, refill
 * over time, the Retry-After seconds, keys independent, disabled limiters,
 * and the bounded table (eviction of the idlest keeps every live key
 * findable: a key taken again after evictions of others still has its
 * own count). */
#include "unit.h"

#include <stdio.h>

#include "gateway/base/ratelimit.h"

TEST(burst_then_refused_with_wait) {
  gw_ratelimit *rl = gw_ratelimit_new(60, 3, 16); /* one a second, burst 3 */
  CHECK(rl != NULL);
  for (int i = 0; i < 3; i++) CHECK_INT(gw_ratelimit_take(rl, "a", 1000), 0);
  CHECK_INT(gw_ratelimit_take(rl, "a", 1000), 1);
  CHECK_INT(gw_ratelimit_take(rl, "b", 1000), 0); /* another key */
  CHECK_INT(gw_ratelimit_take(rl, "a", 1999), 1);  /* not quite a token yet */
  CHECK_INT(gw_ratelimit_take(rl, "a", 2000), 0);  /* one second: one token */
  CHECK_INT(gw_ratelimit_take(rl, "a", 2000), 1);
  CHECK_INT(gw_ratelimit_take(rl, "a", 100000), 0); /* refilled, capped at the burst */
  CHECK_INT(gw_ratelimit_take(rl, "a", 100000), 0);
  CHECK_INT(gw_ratelimit_take(rl, "a", 100000), 0);
  CHECK_INT(gw_ratelimit_take(rl, "a", 100000), 1);
  gw_ratelimit_free(rl);
}

TEST(slow_rate_waits_longer) {
  gw_ratelimit *rl = gw_ratelimit_new(2, 1, 4); /* one every 30 s */
  CHECK_INT(gw_ratelimit_take(rl, "x", 0), 0);
  CHECK_INT(gw_ratelimit_take(rl, "x", 0), 30);
  CHECK_INT(gw_ratelimit_take(rl, "x", 20000), 10);
  CHECK_INT(gw_ratelimit_take(rl, "x", 30000), 0);
  gw_ratelimit_free(rl);
}

TEST(disabled_and_null) {
  gw_ratelimit *rl = gw_ratelimit_new(0, 1, 4);
  for (int i = 0; i < 100; i++) CHECK_INT(gw_ratelimit_take(rl, "a", 0), 0);
  gw_ratelimit_free(rl);
  CHECK_INT(gw_ratelimit_take(NULL, "a", 0), 0);
}

TEST(bounded_table_evicts_idlest) {
  gw_ratelimit *rl = gw_ratelimit_new(1, 2, 8);
  char k[32];
  /* "keep" is used often; 200 other keys cycle through the table */
  CHECK_INT(gw_ratelimit_take(rl, "keep", 0), 0);
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK_INT(gw_ratelimit_take(rl, k, 1 + i), 0);
    if (i % 3 == 0) gw_ratelimit_take(rl, "keep", 1 + i); /* recently used: never the idlest */
  }
  /* "keep" took 1 + 67 tokens at a rate far below that: empty, still tracked */
  CHECK(gw_ratelimit_take(rl, "keep", 300) > 0);
  /* an early key was evicted: it starts full again */
  CHECK_INT(gw_ratelimit_take(rl, "k0", 300), 0);
  /* a long key is cut, not refused */
  char longk[300];
  memset(longk, 'z', sizeof longk - 1);
  longk[sizeof longk - 1] = 0;
  CHECK_INT(gw_ratelimit_take(rl, longk, 400), 0);
  gw_ratelimit_free(rl);
}

int main(void) {
  RUN(burst_then_refused_with_wait);
  RUN(slow_rate_waits_longer);
  RUN(disabled_and_null);
  RUN(bounded_table_evicts_idlest);
  return UNIT_DONE();
}
