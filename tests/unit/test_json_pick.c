/* tests/unit/test_json_pick.c — gw_json_pick (gateway/base/json_check.h):
 * the request scan that stands in for a jansson parse on the hot path,
 * and the stdio-free string helpers of gateway/base/buf.h. The scan is
 * also held to jansson by the differential fuzzer fuzz_json_check.c. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Review (rvI): a member of the top object or of an object in it whose
 * name a case-insensitive reader (Go's encoding/json) may take for another
 * — an upper-case ASCII letter, or a non-ASCII character (ſ folds to s, K
 * to k) — is left to the parse path, which judges it (endpoint.c). Deeper
 * members (a tool's arguments) stay the scan's. */
static int pick_req(const char *s, gw_json_span *got) { return gw_json_pick_request(s, strlen(s), RPC, NRPC, got); }

TEST(pick_leaves_case_variant_names_to_jansson) {
  gw_json_span g[NRPC];
  CHECK_INT(pick_req("{\"method\":\"ping\",\"Method\":\"tools/call\"}", g), -1);
  CHECK_INT(pick_req("{\"params\":{\"name\":\"ok\",\"NAME\":\"blocked\"}}", g), -1);
  CHECK_INT(pick_req("{\"params\":{\"name\":\"ok\",\"argument\xc5\xbf\":{}}}", g), -1);
  CHECK_INT(pick_req("{\"params\":{\"_meta\":{\"progressToken\":1}}}", g), 1);
  CHECK_INT(pick_req("{\"params\":{\"arguments\":{\"Message\":\"a\",\"message\":\"b\"}}}", g), 1);
  /* a reply is not judged so: its result's "isError" is the protocol's */
  CHECK_INT(pick("{\"id\":1,\"result\":{\"content\":[],\"isError\":true}}", g), 1);
}

TEST(pick_invalid_json_is_refused) {
  gw_json_span g[NRPC];
  const char *bad[] = {"", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"\\u0000\"}", "{} x", "\"str\"", "{\"a\":1}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_INT(pick(bad[i], g), 0);
}

/* What a tree would take is bounded, not only the text: a reply of empty
 * objects built ~80 times its bytes in jansson (a 16 MiB upstream reply,
 * 1.1 GiB). The estimate is above what jansson takes (measured here with
 * mallinfo2 on real parses) and the bounded load refuses past the budget
 * while long strings, whose tree is about their text, pass. */
#include <malloc.h>
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
static size_t heap_in_use(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}
#endif
static char *repeat(const char *pre, const char *unit, size_t n, const char *post, size_t *len) {
  size_t pl = strlen(pre), ul = strlen(unit), ql = strlen(post);
  char *b = malloc(pl + ul * n + ql + 1);
  memcpy(b, pre, pl);
  for (size_t i = 0; i < n; i++) memcpy(b + pl + i * ul, unit, ul);
  memcpy(b + pl + ul * n, post, ql + 1);
  *len = pl + ul * n + ql;
  return b;
}

TEST(tree_cost_bounds_what_a_parse_takes) {
  const char *units[] = {"{},", "[],", "1,", "\"ab\",", "{\"k\":-1.5},", "[true,null],", "\"a\\\"b\","};
  for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
    size_t n;
    char *b = repeat("[", units[u], 20000, "0]", &n);
    size_t before = heap_in_use();
    json_t *j = json_loadb(b, n, 0, NULL);
    size_t took = heap_in_use() - before;
    CHECK(j != NULL);
    size_t est = gw_json_tree_cost(b, n);
    if (est < took) fprintf(stderr, "  %s: estimated %zu, took %zu\n", units[u], est, took);
    CHECK(est >= took);
    CHECK(est <= 4 * took + n); /* and not wildly above it */
    json_decref(j);
    free(b);
  }
  /* past the budget: refused without a parse, with a reason */
  size_t n;
  char *b = repeat("[", "{},", (GW_JSON_TREE_MAX / 240) + 1000, "{}]", &n);
  CHECK(n < (size_t)2 << 20); /* under 2 MiB of text */
  json_error_t e;
  CHECK(gw_json_loadb(b, n, 0, &e) == NULL);
  CHECK(strstr(e.text, "too complex") != NULL);
  /* a cost the caller estimated before is the one that decides (no scan
   * again): this text's own, refused; a cost within the budget, parsed */
  CHECK(gw_json_loadb_costed(b, n, 0, &e, gw_json_tree_cost(b, n)) == NULL);
  CHECK(strstr(e.text, "too complex") != NULL);
  json_t *parsed = gw_json_loadb_costed(b, n, 0, &e, GW_JSON_TREE_MAX);
  CHECK(parsed && json_array_size(parsed) == (GW_JSON_TREE_MAX / 240) + 1001);
  json_decref(parsed);
  CHECK(gw_json_loadb_costed("[1]", 3, 0, &e, GW_JSON_TREE_MAX + 1) == NULL);
  free(b);
  /* 8 MiB of one string: the tree is its text */
  char *s = repeat("[\"", "abcdefgh", (size_t)1 << 20, "\"]", &n);
  json_t *j = gw_json_loadb(s, n, 0, &e);
  CHECK(j && json_array_size(j) == 1);
  json_decref(j);
  free(s);
  /* a SCIM full push of a 150,000-member group: ~11 times its text, past
   * the fixed budget but within 16 times the body; empty objects are not */
  char *m = repeat("{\"members\":[", "{\"value\":\"2819c223-7f76-453a-919d-413861904646\"},", 150000, "{}]}", &n);
  CHECK(gw_json_loadb(m, n, 0, &e) == NULL);
  j = gw_json_loadb_within(m, n, 0, &e, 16 * n);
  CHECK(j && json_array_size(json_object_get(j, "members")) == 150001);
  json_decref(j);
  free(m);
  b = repeat("[", "{},", ((size_t)4 << 20) / 3, "{}]", &n);
  CHECK(gw_json_loadb_within(b, n, 0, &e, 16 * n) == NULL);
  free(b);
  /* invalid JSON is still json_loadb's to refuse */
  CHECK(gw_json_loadb("[1,", 3, 0, &e) == NULL);
  CHECK(e.text[0] && !strstr(e.text, "too complex"));
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


static bool exact(const char *s) { return gw_json_numbers_exact(s, strlen(s)); }

TEST(numbers_exact_names_what_a_double_tells_apart) {
  /* integers fit 64 bits: always exact — but -0, which jansson decodes as
   * 0 (JavaScript reads -0, a double reader -0.0) */
  CHECK(exact("{\"a\":9223372036854775807,\"b\":-9223372036854775808,\"c\":0,\"d\":-10}"));
  CHECK(!exact("{\"c\":-0}"));
  CHECK(!exact("[1,[{\"x\":-0}],2]"));
  CHECK(exact("[\"-0\", -0.0, -0e0, -0E+5, 0, -1, -100]"));
  CHECK(exact("[1.0, 0.1, -2.5e10, 1E2, 123456789012345, 0.000000000000001234, 0.0, -0.0, 0e-999, 1.50000]"));
  CHECK(exact("[999999999999999e-321, 1e308, 1e-307, 1.79e308, 100000000000000000000000.0]"));
  /* 16 or more significant digits */
  CHECK(!exact("{\"n\":1.0000000000000001}"));
  CHECK(!exact("[1234567890123456.0]"));
  CHECK(!exact("[0.1234567890123456]"));
  CHECK(!exact("[1.000000000000001e5]"));
  /* outside the normal range (1e-400 decodes as 0.0) */
  CHECK(!exact("[1e-400]"));
  CHECK(!exact("[2.2e-308]"));
  CHECK(!exact("[1e309]"));
  CHECK(!exact("[0.0001e-304]"));
  /* strings are text, whatever they hold; escapes do not end them */
  CHECK(exact("{\"n\":\"1.0000000000000001\",\"m\":\"a\\\"1e-400\\\\\",\"k\":[1.5]}"));
  CHECK(!exact("{\"n\":\"x\\\\\",\"m\":1e-400}"));
  /* nested anywhere */
  CHECK(!exact("{\"a\":[{\"b\":{\"c\":[1, 2, 3.00000000000000000001]}}]}"));
}

/* the premise: every decimal the scan calls exact survives a round trip
 * through a double, so two of them never share one */
TEST(numbers_exact_holds_the_round_trip) {
  int nexact = 0;
  srand(7);
  for (int i = 0; i < 200000; i++) {
    int digits = 1 + rand() % 17, e = rand() % 640 - 320;
    char mant[32], text[64], again[64];
    mant[0] = (char)('1' + rand() % 9);
    for (int d = 1; d < digits; d++) mant[d] = (char)('0' + rand() % 10);
    mant[digits] = 0;
    snprintf(text, sizeof text, "[%c.%se%d]", mant[0], mant + 1, e);
    if (digits == 1) snprintf(text, sizeof text, "[%ce%d]", mant[0], e);
    if (!gw_json_check(text, strlen(text))) continue; /* overflow: jansson refuses it anyway */
    int sig = digits;
    while (sig > 1 && mant[sig - 1] == '0') mant[--sig] = 0;
    CHECK(exact(text) == (sig <= 15 && e >= -307 && e <= 308));
    if (!exact(text)) continue;
    nexact++;
    /* the significant digits, printed back from the double, are the
     * same: the double named this decimal and no other */
    double v = strtod(text + 1, NULL);
    snprintf(again, sizeof again, "%.*e", sig - 1, v);
    char dig[32];
    size_t k = 0;
    for (const char *q = again; *q && *q != 'e'; q++)
      if (*q != '.') dig[k++] = *q;
    dig[k] = 0;
    CHECK(strcmp(dig, mant) == 0);
  }
  CHECK(nexact > 100000);
}

/* Found by review (rv2): the exponent was read saturated at about 1e5, so
 * a real whose digits outweigh that lost the rest of its exponent:
 * 1 followed by 100000 zeros, e-1000000 (1e-900000, decoded as 0.0) was
 * called exact, and hashed as {"x":0.0} does (the upstream gets the bytes
 * as sent); so did 2000…e-1000000, another decimal. */
TEST(numbers_exact_reads_the_whole_exponent) {
  size_t z = 100000;
  char *t = malloc(z + 64);
  CHECK(t != NULL);
  for (int lead = 1; lead <= 2; lead++) {
    memcpy(t, "{\"x\":", 5);
    t[5] = (char)('0' + lead);
    memset(t + 6, '0', z);
    strcpy(t + 6 + z, "e-1000000}");
    CHECK(gw_json_check(t, strlen(t))); /* jansson takes it (an underflow is 0.0) */
    CHECK(!gw_json_numbers_exact(t, strlen(t)));
  }
  /* and the same digits with an exponent that brings them back in range */
  memcpy(t, "{\"x\":1", 6);
  memset(t + 6, '0', z);
  strcpy(t + 6 + z, "e-100000}");
  CHECK(gw_json_numbers_exact(t, strlen(t))); /* 1.0 */
  strcpy(t + 6 + z, "e-99000}");
  CHECK(!gw_json_numbers_exact(t, strlen(t))); /* 1e1000: jansson refuses it anyway */
  free(t);
}

int main(void) {
  RUN(pick_finds_members_and_nested_name);
  RUN(pick_absent_members_are_null);
  RUN(pick_refuses_duplicates_at_any_depth);
  RUN(pick_leaves_escaped_keys_and_big_objects_to_jansson);
  RUN(pick_leaves_case_variant_names_to_jansson);
  RUN(pick_invalid_json_is_refused);
  RUN(tree_cost_bounds_what_a_parse_takes);
  RUN(strlcpy_join_utoa);
  RUN(memmem_matches_libc);
  RUN(numbers_exact_names_what_a_double_tells_apart);
  RUN(numbers_exact_holds_the_round_trip);
  RUN(numbers_exact_reads_the_whole_exponent);
  return UNIT_DONE();
}
