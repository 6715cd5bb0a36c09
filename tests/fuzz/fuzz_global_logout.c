/* tests/fuzz/fuzz_global_logout.c — libFuzzer driver for what Okta's
 * Universal Logout request brings (auth/gtr.h): the body
 * (auth_gtr_parse_body) and the JWT's header and claims (auth_gtr_check;
 * the signature itself is fuzz_jose.c's). Input shaped as
 * `<body>\n<header JSON>\n<claims JSON>`: the body is the part before the
 * first newline (the whole input when there is none, tried as a body and
 * as claims too). The seed corpus (tests/fuzz/corpus/global_logout/) holds
 * Okta's shapes — both member names, both subject formats, the JWT as
 * Okta's guide documents it — made for the expectations below, so good
 * seeds pass every check, and refusals of each kind.
 *
 * The API is held to its word: a body is accepted exactly with one of the
 * two formats, its values non-empty, within their caps and free of control
 * characters (an e-mail with an '@'), and a refusal says why, zeroes the
 * output and never quotes a value; a token is accepted exactly when iss,
 * aud, sub, typ and the dates hold, then its jti hash is a pure function of
 * tenant, iss and jti and it is kept exactly until exp + skew. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/gtr.h"
#include "auth/jose.h"

/* the expectations the seeds are made for */
#define ISSUER "https://acme.okta.com"
#define AUD "https://gw.example.com/t/acme/oauth/global-logout"
#define CLIENT "0oa-client"
#define NOW INT64_C(1767225600)

static void fail(const char *what, int rc) {
  fprintf(stderr, "fuzz_global_logout: %s (%d: %s)\n", what, rc, auth_strerror(rc));
  abort();
}

static bool plain(const char *s, size_t max, bool need) {
  size_t n = strlen(s);
  if (need ? (n == 0 || n > max) : n != 0) return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
  return true;
}

static void body(const char *d, size_t n) {
  auth_gtr_subject s;
  char why[300];
  memset(why, 'x', sizeof why);
  int rc = auth_gtr_parse_body(d, n, &s, why, sizeof why);
  if (rc == 0) {
    bool email = s.format == AUTH_GTR_EMAIL, iss_sub = s.format == AUTH_GTR_ISS_SUB;
    if (!email && !iss_sub) fail("accepted without a format", rc);
    if (!plain(s.email, AUTH_GTR_EMAIL_MAX, email) || !plain(s.iss, AUTH_OIDC_ISSUER_MAX, iss_sub) ||
        !plain(s.sub, AUTH_SUBJECT_MAX, iss_sub))
      fail("accepted a value outside the rules", rc);
    if (email && !strchr(s.email, '@')) fail("accepted an e-mail without @", rc);
    if (n > AUTH_GTR_BODY_MAX) fail("accepted an oversized body", rc);
    return;
  }
  if (rc != AUTH_EGTR_BODY && rc != AUTH_EGTR_FORMAT && rc != ST_ENOMEM) fail("unexpected body code", rc);
  if (rc != ST_ENOMEM && (!memchr(why, 0, sizeof why) || !why[0])) fail("refused without a reason", rc);
  static const auth_gtr_subject zero;
  if (memcmp(&s, &zero, sizeof s)) fail("refused with a subject", rc);
}

static void token(const char *h, size_t hn, const char *c, size_t cn) {
  json_t *hdr = json_loadb(h, hn, JSON_REJECT_DUPLICATES, NULL);
  json_t *claims = json_loadb(c, cn, JSON_REJECT_DUPLICATES, NULL);
  if (!hdr) hdr = json_pack("{s:s,s:s}", "alg", "RS256", "typ", AUTH_GTR_TYP);
  const char *tenants[] = {"acme", "beta"};
  auth_gtr_token t[2];
  int rc[2];
  for (int i = 0; i < 2; i++) {
    auth_gtr_expect w = {tenants[i], ISSUER, AUD, CLIENT, NOW, AUTH_GTR_SKEW_S};
    rc[i] = auth_gtr_check(hdr, claims, &w, &t[i]);
  }
  if (rc[0] != rc[1]) fail("the tenant changed the verdict", rc[0]);
  if (rc[0] == 0) {
    if (!memcmp(t[0].jti_hash, t[1].jti_hash, 32)) fail("one jti hash for two tenants", 0);
    int64_t exp;
    if (auth_jose_numeric_date(json_object_get(claims, "exp"), false, &exp) || t[0].keep_until != exp + AUTH_GTR_SKEW_S)
      fail("kept for another time than exp + skew", 0);
    if (exp <= NOW - AUTH_GTR_SKEW_S || exp > NOW + AUTH_GTR_LIFETIME_MAX + AUTH_GTR_SKEW_S) fail("bad exp accepted", 0);
    if (strcmp(json_string_value(json_object_get(claims, "iss")) ?: "", ISSUER) ||
        strcmp(json_string_value(json_object_get(claims, "sub")) ?: "", CLIENT))
      fail("another issuer or client accepted", 0);
    auth_gtr_expect w = {"acme", ISSUER, AUD, CLIENT, NOW, AUTH_GTR_SKEW_S};
    auth_gtr_token again;
    if (auth_gtr_check(hdr, claims, &w, &again) || memcmp(again.jti_hash, t[0].jti_hash, 32))
      fail("the jti hash is not a function of its input", 0);
  } else if (rc[0] != AUTH_JOSE_EINVAL && rc[0] != ST_ENOMEM &&
             (rc[0] > AUTH_EGTR_ERR_FIRST || rc[0] < AUTH_EGTR_ERR_LAST || !auth_gtr_strerror(rc[0]))) {
    fail("unexpected token code", rc[0]);
  } else if (rc[0] == AUTH_JOSE_EINVAL && json_is_object(claims) && json_is_object(hdr)) {
    fail("claims object refused as a bad argument", rc[0]);
  }
  json_decref(hdr);
  json_decref(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *d = (const char *)data;
  const char *nl = memchr(d, '\n', size);
  if (!nl) {
    body(d, size);
    token("", 0, d, size);
    return 0;
  }
  body(d, (size_t)(nl - d));
  const char *h = nl + 1, *end = d + size;
  const char *nl2 = memchr(h, '\n', (size_t)(end - h));
  if (!nl2) token(h, (size_t)(end - h), "", 0);
  else token(h, (size_t)(nl2 - h), nl2 + 1, (size_t)(end - nl2 - 1));
  return 0;
}
