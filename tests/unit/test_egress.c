/* tests/unit/test_egress.c — the egress policy (gateway/out/egress.h): which
 * addresses are public, what the operator's lists add, and the early check
 * of literal addresses in URLs. The connect-time enforcement is tested with
 * the engine (test_outbound.c) and end to end (tests/integration/egress). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include "gateway/out/egress.h"
#include "tests/unit/unit.h"

static bool ip_allowed(const gw_egress *e, const char *ip) { return gw_egress_allows_ip_text(e, ip); }

TEST(not_public_addresses) {
  static const char *const refused[] = {
      "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "127.0.0.1",
      "127.255.255.254", "169.254.169.254", "169.254.0.1", "172.16.0.1", "172.31.255.255", "192.0.0.192",
      "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
      "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
      /* IPv6 */
      "::", "::1", "fc00::1", "fd00:ec2::254", "fe80::1", "fec0::1", "ff02::1", "100::1", "2001::1",
      "2001:db8::1", "3fff::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",
      "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a00:1::", "::127.0.0.1", "::a00:1",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    if (ip_allowed(NULL, refused[i])) fprintf(stderr, "  %s judged public\n", refused[i]);
    CHECK(!ip_allowed(NULL, refused[i]));
  }
}

TEST(public_addresses) {
  static const char *const ok[] = {
      "1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.1", "100.63.255.255", "100.128.0.1", "172.15.255.255",
      "172.32.0.1", "192.169.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.254", "169.253.255.255",
      "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    if (!ip_allowed(NULL, ok[i])) fprintf(stderr, "  %s judged not public\n", ok[i]);
    CHECK(ip_allowed(NULL, ok[i]));
  }
  CHECK(!ip_allowed(NULL, "not-an-ip"));
  CHECK(!ip_allowed(NULL, "[::1]"));
}

TEST(operator_lists) {
  gw_egress *e = NULL;
  char err[300];
  CHECK_INT(gw_egress_parse("egress_allow", "127.0.0.0/8, ::1 10.1.0.0/16,mcp.internal.example,*.corp.example", &e,
                            err, sizeof err),
            0);
  CHECK_STR(gw_egress_key(e), "egress_allow");
  CHECK(ip_allowed(e, "127.0.0.1"));
  CHECK(ip_allowed(e, "::1"));
  CHECK(ip_allowed(e, "::ffff:127.0.0.1")); /* an IPv4 entry covers the mapped form */
  CHECK(ip_allowed(e, "10.1.200.3"));
  CHECK(!ip_allowed(e, "10.2.0.1"));
  CHECK(!ip_allowed(e, "169.254.169.254"));
  CHECK(!ip_allowed(e, "fe80::1"));
  CHECK(gw_egress_allows_host(e, "mcp.internal.example"));
  CHECK(gw_egress_allows_host(e, "MCP.Internal.Example."));
  CHECK(!gw_egress_allows_host(e, "x.mcp.internal.example"));
  CHECK(gw_egress_allows_host(e, "a.corp.example"));
  CHECK(gw_egress_allows_host(e, "b.a.corp.example"));
  CHECK(!gw_egress_allows_host(e, "corp.example"));
  CHECK(!gw_egress_allows_host(e, "evilcorp.example"));
  CHECK(!gw_egress_allows_host(e, "localhost"));
  CHECK(!gw_egress_allows_host(NULL, "localhost"));
  gw_egress_free(e);

  CHECK_INT(gw_egress_parse("egress_allow", "", &e, err, sizeof err), 0);
  CHECK(!ip_allowed(e, "127.0.0.1"));
  CHECK(ip_allowed(e, "1.1.1.1"));
  gw_egress_free(e);

  static const char *const bad[] = {"10.0.0.0/33", "::1/129", "exa/mple", "-", "*.", "a..b", "999.1.1.1",
                                    "http://x", "x_y.example", "1.2.3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    e = NULL;
    int rc = gw_egress_parse("egress_allow", bad[i], &e, err, sizeof err);
    if (rc != -EINVAL) fprintf(stderr, "  \"%s\" accepted\n", bad[i]);
    CHECK_INT(rc, -EINVAL);
    CHECK(e == NULL);
    CHECK(strstr(err, "bad entry") != NULL);
  }
}

TEST(literal_urls) {
  gw_egress *none = NULL, *lo = NULL;
  char err[300], why[400];
  CHECK_INT(gw_egress_parse("egress_allow", "", &none, err, sizeof err), 0);
  CHECK_INT(gw_egress_parse("egress_allow", "127.0.0.0/8", &lo, err, sizeof err), 0);
  static const char *const refused[] = {
      "http://127.0.0.1:8080/mcp", "http://127.1/mcp", "http://2130706433/mcp", "http://0x7f.0.0.1/mcp",
      "https://10.0.0.5/mcp", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/mcp",
      "http://[::ffff:127.0.0.1]:9/mcp", "http://[fd00:ec2::254]/", "http://[fe80::1%25eth0]/",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    why[0] = 0;
    int rc = gw_egress_check_url(none, refused[i], why, sizeof why);
    if (rc != -1) fprintf(stderr, "  %s not refused\n", refused[i]);
    CHECK_INT(rc, -1);
    CHECK(strstr(why, "egress_allow") != NULL);
  }
  CHECK_INT(gw_egress_check_url(lo, "http://127.0.0.1:8080/mcp", why, sizeof why), 0);
  CHECK_INT(gw_egress_check_url(lo, "http://127.1/mcp", why, sizeof why), 0);
  CHECK_INT(gw_egress_check_url(lo, "http://[::ffff:127.0.0.1]/mcp", why, sizeof why), 0);
  CHECK_INT(gw_egress_check_url(lo, "http://10.0.0.1/mcp", why, sizeof why), -1);
  /* names are judged at connect time, on the resolved address */
  CHECK_INT(gw_egress_check_url(none, "http://localhost:1/mcp", why, sizeof why), 0);
  CHECK_INT(gw_egress_check_url(none, "https://mcp.example.com/mcp", why, sizeof why), 0);
  CHECK_INT(gw_egress_check_url(none, "https://8.8.8.8/mcp", why, sizeof why), 0);
  gw_egress_free(none);
  gw_egress_free(lo);
}

int main(void) {
  RUN(not_public_addresses);
  RUN(public_addresses);
  RUN(operator_lists);
  RUN(literal_urls);
  return UNIT_DONE();
}
