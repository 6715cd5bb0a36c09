/* tests/unit/test_pages.c — gateway/api/pages.c's pure helpers: the
 * tenants' cookie names. With an https public_url every cookie is
 * "__Host-" prefixed with Path=/, so the names alone must keep tenants
 * and kinds apart: no tenant's session cookie may be another tenant's
 * sign-in cookie (tenant "login-acme" and tenant "acme" once shared
 * "__Host-mcpgate-login-acme"). And the CSP source the consent page adds
 * to form-action for the client's redirect (browsers check form-action on
 * the redirect after Allow/Deny): an origin a browser parses, or the
 * scheme alone, never anything that could end the directive. */
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

TEST(csp_form_source_is_the_redirect_origin_or_its_scheme) {
  static const char *const cases[][2] = {
      {"http://127.0.0.1:45123/callback", "http://127.0.0.1:45123"},
      {"http://127.0.0.1/callback", "http://127.0.0.1"},
      {"http://localhost:8080/cb?x=1", "http://localhost:8080"},
      {"https://app.example.com/oauth/cb", "https://app.example.com"},
      {"https://app.example.com:8443", "https://app.example.com:8443"},
      {"HTTPS://App.Example.com/cb", "https://App.Example.com"},
      /* CSP has no syntax for IPv6 literals: a browser ignores such a source */
      {"http://[::1]:45123/callback", "http:"},
      {"https://[2001:db8::1]/cb", "https:"},
      /* nothing that could end the directive or the header */
      {"https://a.example;script-src *:1/cb", "https:"},
      {"https://a.example b.example/cb", "https:"},
      {"https://a.example,b/cb", "https:"},
      {"https://user@a.example/cb", "https:"},
      {"http://127.0.0.1:/cb", "http:"},
      {"http://127.0.0.1:123456/cb", "http:"},
      {"http:///cb", "http:"},
      {"myapp://cb", ""},
      {"javascript:alert(1)", ""},
      {"", ""},
  };
  char out[640];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pages__csp_form_source(cases[i][0], out, sizeof out);
    CHECK_STR(out, cases[i][1]);
  }
  /* an origin longer than the room: the scheme */
  char small[16];
  pages__csp_form_source("https://a-rather-long-host.example.com/cb", small, sizeof small);
  CHECK_STR(small, "https:");
}

int main(void) {
  RUN(cookie_names_never_collide_across_tenants);
  RUN(cookie_names_are_host_prefixed_over_https);
  RUN(csp_form_source_is_the_redirect_origin_or_its_scheme);
  return UNIT_DONE();
}
