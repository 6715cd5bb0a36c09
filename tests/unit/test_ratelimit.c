/* tests/unit/test_ratelimit.c — gateway/base/ratelimit.c: bursts, refill
 * over time, the Retry-After seconds, keys independent, disabled limiters,
 * and the bounded table (eviction of the idlest keeps every live key
 * findable: a key taken again after evictions of others still has its
 * own count; the evicted one is exactly the least recently used, against
 * a model, also while the table grows from 64 slots to its bound; and a
 * new key on a full table costs O(1), not a table scan). */
#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gateway/base/ratelimit.h"

/* Per-address buckets: an IPv6 client is its /64 (else it cycles through
 * 2^64 addresses, a bucket each); IPv4-mapped is the IPv4 address. */
TEST(addr_keys_group_ipv6_by_64) {
  char a[GW_RATELIMIT_KEY_MAX + 1], b[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key("203.0.113.7", a);
  CHECK_STR(a, "203.0.113.7");
  gw_ratelimit_addr_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", a);
  gw_ratelimit_addr_key("2001:db8:1:2::1", b);
  CHECK_STR(a, "2001:db8:1:2::/64");
  CHECK_STR(a, b);
  gw_ratelimit_addr_key("2001:db8:1:3::1", b);
  CHECK(strcmp(a, b) != 0); /* another /64 */
  gw_ratelimit_addr_key("::ffff:198.51.100.9", a);
  CHECK_STR(a, "198.51.100.9");
  gw_ratelimit_addr_key("::1", a);
  CHECK_STR(a, "::/64");
  gw_ratelimit_addr_key("not an address", a);
  CHECK_STR(a, "not an address");
  gw_ratelimit_addr_key(NULL, a);
  CHECK_STR(a, "");
  /* one bucket for the whole /64 */
  gw_ratelimit *rl = gw_ratelimit_new(60, 2, 16);
  gw_ratelimit_addr_key("2001:db8::1", a);
  CHECK_INT(gw_ratelimit_take(rl, a, 0), 0);
  gw_ratelimit_addr_key("2001:db8::2", a);
  CHECK_INT(gw_ratelimit_take(rl, a, 0), 0);
  gw_ratelimit_addr_key("2001:db8::3", a);
  CHECK(gw_ratelimit_take(rl, a, 0) > 0);
  gw_ratelimit_free(rl);
}

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

/* A weighted take (a body's MiB of JSON tree): n tokens or none, the wait
 * until n are back; more than the burst takes the whole (full) bucket. */
TEST(weighted_takes) {
  gw_ratelimit *rl = gw_ratelimit_new(60, 10, 16); /* one a second, burst 10 */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 6, 0), 0);
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 6, 0), 2); /* 4 left: 2 s until 6 */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 4, 0), 0); /* nothing was taken by the refusal */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 1, 0), 1);
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 0, 0), 0); /* nothing to pay */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 50, 10000), 0); /* full again: past the burst, the whole bucket */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 1, 10000), 1);
  CHECK_INT(gw_ratelimit_take_n(rl, "v", 10, 10000), 0); /* another key */
  gw_ratelimit_free(rl);
}

TEST(given_back_tokens) {
  gw_ratelimit *rl = gw_ratelimit_new(60, 10, 16);
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 8, 0), 0);
  gw_ratelimit_give_n(rl, "u", 5); /* 2 + 5 */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 7, 0), 0);
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 1, 0), 1);
  gw_ratelimit_give_n(rl, "u", 50); /* never past the burst */
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 10, 0), 0);
  CHECK_INT(gw_ratelimit_take_n(rl, "u", 1, 0), 1);
  gw_ratelimit_give_n(rl, "absent", 3); /* no bucket: nothing made */
  CHECK_INT((int64_t)gw_ratelimit_slots(rl) >= 1, 1);
  CHECK_INT(gw_ratelimit_take_n(rl, "absent", 10, 0), 0); /* a new key starts full, not fuller */
  CHECK_INT(gw_ratelimit_take_n(rl, "absent", 1, 0), 1);
  gw_ratelimit_give_n(NULL, "u", 1);
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

/* A model of the table: at most maxk keys, least recently used evicted,
 * buckets of 2 that practically never refill (1 a minute, 1 ms steps). A
 * pool larger than the table makes evictions; a large maxk makes the table
 * grow (from 64 slots) while keys arrive, the use order kept across. */
static void lru_against_a_model(int maxk, int pool, int64_t steps, int64_t reset_every) {
  gw_ratelimit *rl = gw_ratelimit_new(1, 2, (size_t)maxk);
  int *tokens = calloc((size_t)pool, sizeof *tokens);
  int64_t *last = calloc((size_t)pool, sizeof *last); /* last use; -1: not in the table */
  for (int i = 0; i < pool; i++) last[i] = -1;
  uint32_t seed = 12345;
  char k[16];
  for (int64_t step = 0; step < steps; step++) {
    seed = seed * 1103515245u + 12345u;
    int key = (int)((seed >> 8) % (uint32_t)pool);
    if (last[key] < 0) { /* a new key: the model evicts the least recently used when full */
      int n = 0, lru = -1;
      for (int i = 0; i < pool; i++)
        if (last[i] >= 0) {
          n++;
          if (lru < 0 || last[i] < last[lru]) lru = i;
        }
      if (n == maxk) last[lru] = -1;
      tokens[key] = 2;
    }
    last[key] = step;
    snprintf(k, sizeof k, "key-%d", key);
    int64_t want = tokens[key] > 0 ? 0 : 1;
    int64_t got = gw_ratelimit_take(rl, k, step); /* < 1 token refilled in 20 s */
    CHECK_INT(got > 0, want > 0);
    if (tokens[key] > 0) tokens[key]--;
    /* tokens back to full now and then, so keys are not all empty */
    if (step % reset_every == reset_every - 1) {
      for (int i = 0; i < pool; i++) last[i] = -1;
      gw_ratelimit_free(rl);
      rl = gw_ratelimit_new(1, 2, (size_t)maxk);
    }
  }
  gw_ratelimit_free(rl);
  free(tokens);
  free(last);
}

TEST(eviction_is_lru_against_a_model) { lru_against_a_model(8, 24, 20000, 997); }

TEST(growing_table_keeps_buckets_and_use_order) { lru_against_a_model(300, 700, 20000, 6000); }

/* A limiter sized for 65,536 addresses takes memory as keys arrive, at most
 * half full, up to its bound. */
TEST(table_grows_with_its_keys) {
  gw_ratelimit *rl = gw_ratelimit_new(60, 60, 65536);
  CHECK_INT(gw_ratelimit_slots(rl), 64);
  char k[64];
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "198.51.%d.%d", i / 256, i % 256);
    CHECK_INT(gw_ratelimit_take(rl, k, 0), 0);
  }
  CHECK_INT(gw_ratelimit_slots(rl), 2048);
  /* every key kept its bucket through the doublings: one token taken */
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "198.51.%d.%d", i / 256, i % 256);
    for (int t = 0; t < 59; t++) CHECK_INT(gw_ratelimit_take(rl, k, 0), 0);
    CHECK(gw_ratelimit_take(rl, k, 0) > 0);
  }
  gw_ratelimit_free(rl);
  rl = gw_ratelimit_new(60, 60, 100); /* bound: 256 slots */
  for (int i = 0; i < 5000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK_INT(gw_ratelimit_take(rl, k, 0), 0);
  }
  CHECK_INT(gw_ratelimit_slots(rl), 256);
  gw_ratelimit_free(rl);
  CHECK_INT(gw_ratelimit_slots(NULL), 0);
}

static double mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* An attacker with an IPv6 prefix brings a new address per request: on a
 * full table each costs an eviction. 4000 of them on a table of 65536 keys
 * (the per-address limiter's size) take milliseconds; a scan of the table
 * per eviction took over 2 s (over 5 s under ASan). */
TEST(eviction_on_a_full_table_is_cheap) {
  gw_ratelimit *rl = gw_ratelimit_new(60, 60, 65536);
  char k[64];
  for (int i = 0; i < 65536; i++) {
    snprintf(k, sizeof k, "2001:db8::%x", i);
    CHECK_INT(gw_ratelimit_take(rl, k, i), 0);
  }
  double t0 = mono_ms();
  for (int i = 0; i < 4000; i++) {
    snprintf(k, sizeof k, "2001:db8:1::%x", i);
    CHECK_INT(gw_ratelimit_take(rl, k, 100000 + i), 0);
  }
  double took = mono_ms() - t0;
  fprintf(stderr, "  4000 new keys on a full table: %.1f ms\n", took);
  CHECK(took < 500);
  /* the newest key is still there with its one token taken (an evicted
   * key would start full again: 60) */
  snprintf(k, sizeof k, "2001:db8:1::%x", 3999);
  for (int t = 0; t < 59; t++) CHECK_INT(gw_ratelimit_take(rl, k, 100000 + 3999), 0);
  CHECK(gw_ratelimit_take(rl, k, 100000 + 3999) > 0);
  gw_ratelimit_free(rl);
}

int main(void) {
  RUN(addr_keys_group_ipv6_by_64);
  RUN(burst_then_refused_with_wait);
  RUN(slow_rate_waits_longer);
  RUN(weighted_takes);
  RUN(given_back_tokens);
  RUN(disabled_and_null);
  RUN(bounded_table_evicts_idlest);
  RUN(eviction_is_lru_against_a_model);
  RUN(growing_table_keeps_buckets_and_use_order);
  RUN(table_grows_with_its_keys);
  RUN(eviction_on_a_full_table_is_cheap);
  return UNIT_DONE();
}
