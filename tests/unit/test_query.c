/* tests/unit/test_query.c — gateway/http/query: finding a parameter,
 * form decoding ('+', %XX, %00 and malformed escapes kept), exact names,
 * the first occurrence, truncation at cap. */
#include "gateway/http/query.h"
#include "tests/unit/unit.h"

TEST(query_get) {
  char out[64];
  CHECK_INT(gw_query_get("user=alice%40acme.com&connector=gh&tool=a+b", "user", out, sizeof out), 1);
  CHECK_STR(out, "alice@acme.com");
  CHECK_INT(gw_query_get("user=alice%40acme.com&connector=gh&tool=a+b", "tool", out, sizeof out), 1);
  CHECK_STR(out, "a b");
  CHECK_INT(gw_query_get("user=x", "use", out, sizeof out), 0);
  CHECK_INT(gw_query_get("User=x", "user", out, sizeof out), 0);
  CHECK_INT(gw_query_get(NULL, "user", out, sizeof out), 0);
  CHECK_INT(gw_query_get("", "user", out, sizeof out), 0);
  CHECK_INT(gw_query_get("a=1&a=2", "a", out, sizeof out), 1);
  CHECK_STR(out, "1");
  CHECK_INT(gw_query_get("a=&b=2", "a", out, sizeof out), 1);
  CHECK_STR(out, "");
  CHECK_INT(gw_query_get("a=%00%zz%4", "a", out, sizeof out), 1);
  CHECK_STR(out, "%00%zz%4");
  CHECK_INT(gw_query_get("a=%41%42&b=%4", "a", out, sizeof out), 1);
  CHECK_STR(out, "AB");
  char small[4];
  CHECK_INT(gw_query_get("a=abcdef", "a", small, sizeof small), 1);
  CHECK_STR(small, "abc");
}

int main(void) {
  RUN(query_get);
  return UNIT_DONE();
}
