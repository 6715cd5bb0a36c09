/* tests/unit/test_pages.c — gateway/api/pages.c's pure helpers: the
 * tenants' cookie names. With an https public_url every cookie is
 * "__Host-" prefixed with Path=/, so the names alone must keep tenants
 * and kinds apart: no tenant's session cookie may be another tenant's
 * sign-in cookie (tenant "login-acme" and tenant "acme" once shared
 * "__Host-mcpgate-login-acme"). */
#include "unit.h"

#include "gateway/api/pages_int.h"
#include "gateway/core/server.h"

static const char *const tenants[] = {"acme", "login-acme", "login", "a", "login-a", "login-login-a", "l", NULL};

static void all_distinct(const char *public_url) {
  static gw_server srv; /* only cfg.public_url is read */
  srv.cfg.public_url = (char *)public_url;
  char names[32][96];
  int n = 0;
  for (const char *const *t = tenants; *t; t++)
    for (int w = 0; w < 2; w++)
      pages__cookie_name(&srv, *t, w ? PAGES_COOKIE_LOGIN : PAGES_COOKIE_SESSION, names[n++], sizeof names[0]);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (!strcmp(names[i], names[j])) {
        fprintf(stderr, "  %s: cookie name %s used twice (#%d, #%d)\n", public_url, names[i], i, j);
        unit__failed_now = 1;
      }
}

TEST(cookie_names_never_collide_across_tenants) {
  all_distinct("https://gw.example.com");
  all_distinct("http://127.0.0.1:8080");
}

TEST(cookie_names_are_host_prefixed_over_https) {
  static gw_server srv;
  char n[96];
  srv.cfg.public_url = "https://gw.example.com";
  pages__cookie_name(&srv, "acme", PAGES_COOKIE_SESSION, n, sizeof n);
  CHECK_STR(n, "__Host-mcpgate-acme");
  pages__cookie_name(&srv, "acme", PAGES_COOKIE_LOGIN, n, sizeof n);
  CHECK(!strncmp(n, "__Host-mcpgate-", 15));
  srv.cfg.public_url = "http://127.0.0.1:8080";
  pages__cookie_name(&srv, "acme", PAGES_COOKIE_SESSION, n, sizeof n);
  CHECK_STR(n, "mcpgate-acme");
}

int main(void) {
  RUN(cookie_names_never_collide_across_tenants);
  RUN(cookie_names_are_host_prefixed_over_https);
  return UNIT_DONE();
}
