/* tests/unit/test_oidc.c — auth/oidc.c: issuer normalisation and the
 * validation of an admin PUT body (defaults, every field named in its
 * error, the secret never in a message). The store half is covered by
 * tests/integration/oidc-settings.test.mjs. */
#include "unit.h"

#include "auth/auth.h"
#include "auth/oidc.h"

static int norm(const char *in, char *out) {
  char why[300];
  return auth_oidc_issuer_normalise(in, out, AUTH_OIDC_ISSUER_MAX + 1, why, sizeof why);
}

TEST(issuer_normalised) {
  char out[AUTH_OIDC_ISSUER_MAX + 1];
  CHECK_INT(norm("https://acme.okta.com", out), 0);
  CHECK_STR(out, "https://acme.okta.com");
  CHECK_INT(norm("https://ACME.Okta.com/", out), 0);
  CHECK_STR(out, "https://acme.okta.com");
  CHECK_INT(norm("HTTPS://acme.okta.com/oauth2/Default//", out), 0);
  CHECK_STR(out, "https://acme.okta.com/oauth2/Default");
  CHECK_INT(norm("https://acme.okta.com:8443/x", out), 0);
  CHECK_STR(out, "https://acme.okta.com:8443/x");
  CHECK_INT(norm("http://127.0.0.1:3000/", out), 0);
  CHECK_STR(out, "http://127.0.0.1:3000");
  CHECK_INT(norm("http://127.5.6.7", out), 0);
  CHECK_INT(norm("http://[::1]:9000/oidc", out), 0);
  CHECK_STR(out, "http://[::1]:9000/oidc");
  CHECK_INT(norm("https://[2001:db8::1]/", out), 0);
}

TEST(issuer_refused) {
  char out[AUTH_OIDC_ISSUER_MAX + 1];
  static const char *const bad[] = {
      "", "acme.okta.com", "ftp://acme.okta.com", "https://", "https:///x", "https://acme.okta.com?x=1",
      "https://acme.okta.com/#f", "https://u:p@acme.okta.com", "https://acme okta.com", "https://acme.okta.com:0",
      "https://acme.okta.com:65536", "https://acme.okta.com:x", "http://acme.okta.com", "http://10.0.0.1",
      "http://128.0.0.1", "http://127.0.0", "http://127.0.0.1.5", "http://127.0.0.256", "http://localhost",
      "http://[::2]", "https://[]/", "https://acme.okta.com/\xc3\xa9", NULL};
  for (const char *const *p = bad; *p; p++) {
    if (norm(*p, out) == 0) fprintf(stderr, "  accepted: %s\n", *p);
    CHECK(norm(*p, out) != 0);
  }
  char long_url[AUTH_OIDC_ISSUER_MAX + 20];
  memcpy(long_url, "https://a.example/", 18);
  memset(long_url + 18, 'x', sizeof long_url - 19);
  long_url[sizeof long_url - 1] = 0;
  CHECK(norm(long_url, out) != 0);
}

static int parse(const char *js, json_t **cfg, const char **secret, char *err, size_t errlen) {
  json_t *b = json_loads(js, JSON_REJECT_DUPLICATES, NULL);
  if (!b) return 99;
  int rc = auth_oidc_parse(b, cfg, secret, err, errlen);
  /* secret borrows from b: copy the check before releasing it */
  static char sec[64];
  if (*secret) snprintf(sec, sizeof sec, "%s", *secret), *secret = sec;
  json_decref(b);
  return rc;
}

TEST(parse_defaults) {
  json_t *c;
  const char *s;
  char err[1024];
  CHECK_INT(parse("{\"issuer\":\"https://acme.okta.com/\",\"client_id\":\"abc\",\"client_secret\":\"shh\"}", &c, &s,
                  err, sizeof err),
            0);
  CHECK_STR(s, "shh");
  CHECK_STR(json_string_value(json_object_get(c, "issuer")), "https://acme.okta.com");
  CHECK_STR(json_string_value(json_object_get(c, "subject_claim")), "sub");
  CHECK_STR(json_string_value(json_object_get(c, "link_claim")), "sub");
  CHECK_STR(json_string_value(json_object_get(c, "link_attribute")), "externalId");
  CHECK_INT(json_array_size(json_object_get(c, "scopes")), 3);
  CHECK(json_object_get(c, "client_secret") == NULL);
  json_decref(c);
  /* no secret: valid here (the store decides), scopes deduplicated */
  CHECK_INT(parse("{\"issuer\":\"https://a.example\",\"client_id\":\"abc\",\"scopes\":[\"openid\",\"openid\",\"groups\"],"
                  "\"subject_claim\":\"oid\",\"link_claim\":\"oid\",\"link_attribute\":\"userName\"}",
                  &c, &s, err, sizeof err),
            0);
  CHECK(s == NULL);
  CHECK_INT(json_array_size(json_object_get(c, "scopes")), 2);
  CHECK_STR(json_string_value(json_object_get(c, "link_attribute")), "userName");
  json_decref(c);
}

TEST(parse_errors_name_fields) {
  static const struct {
    const char *body, *field;
  } cases[] = {
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"x\":1}", "unknown field \"x\""},
      {"{\"client_id\":\"a\"}", "\"issuer\""},
      {"{\"issuer\":1,\"client_id\":\"a\"}", "\"issuer\""},
      {"{\"issuer\":\"https://a.example\"}", "\"client_id\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"\"}", "\"client_id\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"client_secret\":\"\"}", "\"client_secret\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"client_secret\":[]}", "\"client_secret\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"scopes\":[\"email\"]}", "\"scopes\" must include"},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"scopes\":{}}", "\"scopes\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"subject_claim\":\"a.b\"}", "\"subject_claim\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"link_claim\":\"\"}", "\"link_claim\""},
      {"{\"issuer\":\"https://a.example\",\"client_id\":\"a\",\"link_attribute\":\"emails\"}", "\"link_attribute\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *c = NULL;
    const char *s;
    char err[1024];
    CHECK_INT(parse(cases[i].body, &c, &s, err, sizeof err), AUTH_EINVALID);
    CHECK(c == NULL && s == NULL);
    if (!strstr(err, cases[i].field)) fprintf(stderr, "  %s -> %s\n", cases[i].body, err);
    CHECK(strstr(err, cases[i].field) != NULL);
  }
  /* the secret is never quoted, even when the rest is wrong */
  json_t *c;
  const char *s;
  char err[1024];
  CHECK_INT(parse("{\"issuer\":\"http://a.example\",\"client_id\":\"\",\"client_secret\":\"TOPSECRET\",\"scopes\":[]}",
                  &c, &s, err, sizeof err),
            AUTH_EINVALID);
  CHECK(strstr(err, "TOPSECRET") == NULL);
  CHECK(strstr(err, "\"issuer\"") && strstr(err, "\"client_id\"") && strstr(err, "\"scopes\""));
  json_t *arr = json_array();
  CHECK_INT(auth_oidc_parse(arr, &c, &s, err, sizeof err), AUTH_EINVALID);
  json_decref(arr);
}

int main(void) {
  RUN(issuer_normalised);
  RUN(issuer_refused);
  RUN(parse_defaults);
  RUN(parse_errors_name_fields);
  return UNIT_DONE();
}
