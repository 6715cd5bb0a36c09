/* tests/unit/test_json_pick.c — gw_json_pick (gateway/base/json_check.h):
 * the request scan that stands in for a jansson parse on the hot path,
 * and the stdio-free string helpers of gateway/base/buf.h. The scan is
 * also held to jansson by the differential fuzzer fuzz_json_check.c. */
#include <jansson.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "unit.h"

static const char *const RPC[] = {"jsonrpc", "id", "method", "params", "params.name"};
#define NRPC (sizeof RPC / sizeof *RPC)

static int pick(const char *s, gw_json_span *got) { return gw_json_pick(s, strlen(s), RPC, NRPC, got); }

static int span_eq(gw_json_span g, const char *want) {
  return want ? g.p && g.n == strlen(want) && !memcmp(g.p, want, g.n) : g.p == NULL;
}

TEST(pick_finds_members_and_nested_name) {
  gw_json_span g[NRPC];
  const char *s = " {\"jsonrpc\": \"2.0\", \"id\":17,\"method\":\"tools/call\",\"params\":{\"arguments\":{\"name\":\"inner\"},"
                  "\"name\" : \"echo\"}} ";
  CHECK_INT(pick(s, g), 1);
  CHECK(span_eq(g[0], "\"2.0\""));
  CHECK(span_eq(g[1], "17"));
  CHECK(span_eq(g[2], "\"tools/call\""));
  CHECK(g[3].p && g[3].p[0] == '{' && g[3].p[g[3].n - 1] == '}');
  CHECK(span_eq(g[4], "\"echo\"")); /* not arguments.name, one level deeper */
}

TEST(pick_absent_members_are_null) {
  gw_json_span g[NRPC];
  CHECK_INT(pick("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", g), 1);
  CHECK(span_eq(g[1], NULL));
  CHECK(span_eq(g[3], NULL));
  CHECK(span_eq(g[4], NULL));
  /* params an array: no params.name */
  CHECK_INT(pick("{\"params\":[{\"name\":\"x\"}],\"id\":\"a\"}", g), 1);
  CHECK(span_eq(g[1], "\"a\""));
  CHECK(span_eq(g[4], NULL));
  /* values that are containers span whole */
  CHECK_INT(pick("{\"id\":[1,[2]],\"method\":{\"a\":{}}}", g), 1);
  CHECK(span_eq(g[1], "[1,[2]]"));
  CHECK(span_eq(g[2], "{\"a\":{}}"));
}

TEST(pick_refuses_duplicates_at_any_depth) {
  gw_json_span g[NRPC];
  CHECK_INT(pick("{\"method\":\"a\",\"method\":\"b\"}", g), 0);
  CHECK_INT(pick("{\"params\":{\"name\":\"ok\",\"name\":\"blocked\"}}", g), 0);
  CHECK_INT(pick("{\"params\":{\"arguments\":{\"q\":1,\"x\":2,\"q\":3}}}", g), 0);
  /* the same key in sibling objects is no duplicate */
  CHECK_INT(pick("{\"a\":{\"q\":1},\"b\":{\"q\":1},\"c\":[{\"q\":1},{\"q\":2}]}", g), 1);
  /* every one of them agrees with jansson */
  const char *dups[] = {"{\"method\":\"a\",\"method\":\"b\"}", "{\"params\":{\"name\":\"ok\",\"name\":\"blocked\"}}"};
  for (size_t i = 0; i < 2; i++) {
    json_error_t e;
    json_t *j = json_loadb(dups[i], strlen(dups[i]), JSON_REJECT_DUPLICATES, &e);
    CHECK(j == NULL);
  }
}

TEST(pick_leaves_escaped_keys_and_big_objects_to_jansson) {
  gw_json_span g[NRPC];
  /* "name" and "n\u0061me" are the same key once decoded */
  CHECK_INT(pick("{\"params\":{\"name\":\"ok\",\"n\\u0061me\":\"blocked\"}}", g), -1);
  CHECK_INT(pick("{\"p\\u0061rams\":{}}", g), -1);
  /* a batch */
  CHECK_INT(pick("[{\"jsonrpc\":\"2.0\",\"method\":\"a\"}]", g), -1);
  /* 40 keys in one object: past what the scan compares */
  char big[1024] = "{";
  for (int i = 0; i < 40; i++) snprintf(big + strlen(big), sizeof big - strlen(big), "%s\"k%d\":%d", i ? "," : "", i, i);
  strcat(big, "}");
  CHECK_INT(pick(big, g), -1);
}

TEST(pick_invalid_json_is_refused) {
  gw_json_span g[NRPC];
  const char *bad[] = {"", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"\\u0000\"}", "{} x", "\"str\"", "{\"a\":1}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_INT(pick(bad[i], g), 0);
}

TEST(strlcpy_join_utoa) {
  char b[8];
  CHECK_INT(gw_strlcpy(b, "abc", sizeof b), 3);
  CHECK_STR(b, "abc");
  CHECK_INT(gw_strlcpy(b, "abcdefghij", sizeof b), 7);
  CHECK_STR(b, "abcdefg");
  CHECK_INT(gw_strjoin(b, sizeof b, "ab", ":", "cdefgh", NULL), 7);
  CHECK_STR(b, "ab:cdef");
  CHECK_INT(gw_strjoin(b, sizeof b, "abcdefgh", "x", NULL), 7);
  CHECK_STR(b, "abcdefg");
  CHECK_INT(gw_strjoin(b, sizeof b, NULL), 0);
  CHECK_STR(b, "");
  char n[24];
  CHECK_INT(gw_utoa(0, n), 1);
  CHECK_STR(n, "0");
  CHECK_INT(gw_utoa(18446744073709551615ULL, n), 20);
  CHECK_STR(n, "18446744073709551615");
  CHECK_INT(gw_itoa(-9223372036854775807LL - 1, n), 20);
  CHECK_STR(n, "-9223372036854775808");
  CHECK_INT(gw_itoa(42, n), 2);
  CHECK_STR(n, "42");
  for (unsigned long long v = 1, i = 0; i < 20; i++, v *= 10) { /* every length, both sides of each power */
    char want[24];
    snprintf(want, sizeof want, "%llu", v);
    CHECK_INT(gw_utoa(v, n), strlen(want));
    CHECK_STR(n, want);
    snprintf(want, sizeof want, "%llu", v - 1);
    CHECK_INT(gw_utoa(v - 1, n), strlen(want));
    CHECK_STR(n, want);
  }
  CHECK_INT(gw_itoa(-7, n), 2);
  CHECK_STR(n, "-7");
}

/* gw_memmem answers what memmem answers: every needle length and position
 * around the 16-byte blocks, from a small alphabet so matches, near misses
 * (first and last bytes equal, middle not) and overlaps are common. */
TEST(memmem_matches_libc) {
  static const char abc[] = "\"ab\\u";
  char h[80], nd[12];
  unsigned seed = 12345;
  for (int round = 0; round < 20000; round++) {
    size_t n = (seed = seed * 1103515245u + 12345u) >> 16 & 63;
    size_t k = (seed = seed * 1103515245u + 12345u) >> 16 & 7;
    for (size_t i = 0; i < n; i++) h[i] = abc[((seed = seed * 1103515245u + 12345u) >> 16) % 5];
    for (size_t i = 0; i < k; i++) nd[i] = abc[((seed = seed * 1103515245u + 12345u) >> 16) % 5];
    const char *want = memmem(h, n, nd, k), *got = gw_memmem(h, n, nd, k);
    if (want != got) {
      fprintf(stderr, "n=%zu k=%zu: memmem %td, gw_memmem %td\n", n, k, want ? want - h : -1, got ? got - h : -1);
      CHECK(want == got);
      return;
    }
  }
  /* a match in the last bytes, after a full block; and none at all */
  const char *s = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"isError\":true}}";
  CHECK(gw_memmem(s, strlen(s), "\"isError\":", 10) == strstr(s, "\"isError\":"));
  CHECK(gw_memmem(s, strlen(s), "true}}", 6) == s + strlen(s) - 6);
  CHECK(gw_memmem(s, strlen(s), "\"tools\"", 7) == NULL);
  CHECK(gw_memmem(s, 0, "", 0) == s);
}

int main(void) {
  RUN(pick_finds_members_and_nested_name);
  RUN(pick_absent_members_are_null);
  RUN(pick_refuses_duplicates_at_any_depth);
  RUN(pick_leaves_escaped_keys_and_big_objects_to_jansson);
  RUN(pick_invalid_json_is_refused);
  RUN(strlcpy_join_utoa);
  RUN(memmem_matches_libc);
  return UNIT_DONE();
}
