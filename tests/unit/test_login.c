/* tests/unit/test_login.c — the OIDC relying party's pure parts that need
 * no directory: auth_b64url_encode (round trip, RFC 4648 vectors, cap),
 * discovery documents checked against the configured issuer
 * (auth/oidc_provider.h), the per-tenant provider cache (TTL, references
 * outliving a replacement, refetch slot, fetch admission and failure hold)
 * with a real key set made here with OpenSSL, and the sign-in state of
 * auth/login.h: auth_login_new's values and return paths, the sealed login
 * cookie against a real store and its master key (every tampering refused),
 * the authorization URL (percent-encoding, PKCE S256 computed here), the
 * code exchange (client_secret_basic / _post) and the token endpoint's
 * reply. Linking and browser sessions: test_browser.c. */
#include <ctype.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/jose.h"
#include "auth/login.h"
#include "auth/oidc_provider.h"
#include "gateway/base/log.h"
#include "store/store.h"
#include "tests/unit/unit.h"

#define ISSUER "https://acme.okta.com"
#define NOW_MS INT64_C(1767225600000)
#define NOW INT64_C(1767225600)

/* ---- helpers -------------------------------------------------------------- */

/* The test's own base64url (not the code under test): standard base64 from
 * OpenSSL, then the URL alphabet and no padding. Caller frees. */
static char *b64url_ref(const uint8_t *p, size_t n) {
  char *o = malloc(4 * ((n + 2) / 3) + 1);
  int len = EVP_EncodeBlock((unsigned char *)o, p, (int)n);
  while (len > 0 && o[len - 1] == '=') len--;
  o[len] = 0;
  for (char *q = o; *q; q++) *q = *q == '+' ? '-' : *q == '/' ? '_' : *q;
  return o;
}

static bool b64url_alphabet(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
      return false;
  return true;
}

/* application/x-www-form-urlencoded decoding ('+' is a space). Caller frees;
 * NULL on a malformed escape. */
static char *form_decode(const char *s, size_t n) {
  char *o = malloc(n + 1), *q = o;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') {
      *q++ = ' ';
    } else if (s[i] == '%') {
      unsigned v;
      if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]) ||
          sscanf(s + i + 1, "%2x", &v) != 1)
        goto bad;
      *q++ = (char)v;
      i += 2;
    } else {
      *q++ = s[i];
    }
  }
  *q = 0;
  return o;
bad:
  free(o);
  return NULL;
}

/* The raw (still encoded) value of key in a query string or form body
 * (after the first '?' when there is one); NULL when absent. *count gets
 * how many times the key occurs. Caller frees. */
static char *param_raw(const char *s, const char *key, int *count) {
  const char *q = strchr(s, '?');
  q = q ? q + 1 : s;
  char *found = NULL;
  int c = 0;
  size_t kl = strlen(key);
  while (*q) {
    size_t seg = strcspn(q, "&");
    if (seg > kl && q[kl] == '=' && !strncmp(q, key, kl)) {
      c++;
      if (!found) found = strndup(q + kl + 1, seg - kl - 1);
    }
    q += seg;
    if (*q == '&') q++;
  }
  if (count) *count = c;
  return found;
}

/* The decoded value of key, which must occur exactly once; NULL otherwise. */
static char *param(const char *s, const char *key) {
  int c;
  char *raw = param_raw(s, key, &c);
  if (c != 1) {
    free(raw);
    return NULL;
  }
  char *v = form_decode(raw, strlen(raw));
  free(raw);
  return v;
}

/* 1 when key occurs once in s and decodes to want (raw: compared encoded). */
static int param_is(const char *s, const char *key, const char *want, bool raw) {
  int c = 0;
  char *r = param_raw(s, key, &c);
  char *v = r && !raw ? form_decode(r, strlen(r)) : r ? strdup(r) : NULL;
  int ok = c == 1 && v && !strcmp(v, want);
  if (!ok) fprintf(stderr, "  %s: %d times, \"%s\", expected \"%s\"\n", key, c, v ? v : "(null)", want);
  free(r);
  free(v);
  return ok;
}

/* Every character of a form body is unreserved, '%' (an escape), '&' or '='. */
static bool form_encoded(const char *q) {
  for (; *q; q++) {
    char ch = *q;
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr("-._~%&=", ch)))
      return false;
  }
  return true;
}
/* The same for the query of a URL. */
static bool query_encoded(const char *url) {
  const char *q = strchr(url, '?');
  return q && form_encoded(q + 1);
}

/* ---- a discovery document ------------------------------------------------- */

static json_t *okta_doc(void) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:[s,s,s], s:[s], s:[s], s:[s,s], s:[s,s,s]}", "issuer", ISSUER,
      "authorization_endpoint", ISSUER "/oauth2/v1/authorize", "token_endpoint", ISSUER "/oauth2/v1/token",
      "jwks_uri", ISSUER "/oauth2/v1/keys", "end_session_endpoint", ISSUER "/oauth2/v1/logout",
      "userinfo_endpoint", ISSUER "/oauth2/v1/userinfo", "response_types_supported", "code", "id_token",
      "code id_token", "id_token_signing_alg_values_supported", "RS256", "code_challenge_methods_supported",
      "S256", "token_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post",
      "scopes_supported", "openid", "email", "profile");
}

/* Parses d (not consumed) for ISSUER / "acme" / "0oa1client". */
static int parse_doc_for(const json_t *d, const char *issuer, auth_oidc_provider **p, char *why, size_t wl) {
  char *s = json_dumps(d, JSON_COMPACT);
  int rc = auth_oidc_discovery_parse(s, strlen(s), "acme", issuer, "0oa1client", NOW_MS, p, why, wl);
  free(s);
  return rc;
}

/* The good document with member k set to v (stolen; NULL: deleted): 1 when
 * it is refused with AUTH_EINVALID, no provider, and a reason naming want. */
static int refused_with(const char *k, json_t *v, const char *want) {
  json_t *d = okta_doc();
  if (v) json_object_set_new(d, k, v);
  else json_object_del(d, k);
  auth_oidc_provider *p = (auth_oidc_provider *)1;
  char why[300] = "";
  int rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  json_decref(d);
  if (rc != AUTH_EINVALID || p) {
    fprintf(stderr, "  %s: rc %d, provider %p\n", k, rc, (void *)p);
    auth_oidc_provider_free(p);
    return 0;
  }
  if (!strstr(why, want)) {
    fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", k, why, want);
    return 0;
  }
  return 1;
}

/* ---- base64url encoding --------------------------------------------------- */

TEST(b64url_encode_round_trip) {
  uint8_t in[70], back[80];
  char out[100];
  for (size_t n = 0; n <= 70; n++) {
    CHECK_INT(RAND_bytes(in, sizeof in), 1);
    size_t w = auth_b64url_encode(in, n, out, sizeof out);
    CHECK_INT(w, AUTH_B64URL_ENCODED_LEN(n));
    CHECK_INT(strlen(out), w);
    CHECK(b64url_alphabet(out));
    char *ref = b64url_ref(in, n);
    CHECK_STR(out, ref);
    free(ref);
    size_t bl = 99;
    CHECK_INT(auth_b64url_decode(out, w, back, sizeof back, &bl), 0);
    CHECK_INT(bl, n);
    CHECK(memcmp(back, in, n) == 0);
  }
}

TEST(b64url_encode_rfc4648_vectors) {
  static const char *const v[][2] = {{"", ""},          {"f", "Zg"},         {"fo", "Zm8"},       {"foo", "Zm9v"},
                                     {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  char out[16];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    memset(out, 'X', sizeof out);
    CHECK_INT(auth_b64url_encode((const uint8_t *)v[i][0], strlen(v[i][0]), out, sizeof out), strlen(v[i][1]));
    CHECK_STR(out, v[i][1]);
  }
  /* the URL alphabet: 0xfb 0xff → "-_8" (standard base64: "+/8=") */
  const uint8_t hi[] = {0xfb, 0xff};
  CHECK_INT(auth_b64url_encode(hi, 2, out, sizeof out), 3);
  CHECK_STR(out, "-_8");
}

TEST(b64url_encode_cap_too_small) {
  char out[16];
  /* "foobar" needs 8 characters and the NUL */
  CHECK_INT(auth_b64url_encode((const uint8_t *)"foobar", 6, out, 8), 0);
  CHECK_INT(auth_b64url_encode((const uint8_t *)"foobar", 6, out, 9), 8);
  CHECK_INT(auth_b64url_encode((const uint8_t *)"f", 1, out, 2), 0);
  CHECK_INT(auth_b64url_encode((const uint8_t *)"", 0, out, 0), 0);
  CHECK_INT(auth_b64url_encode((const uint8_t *)"", 0, out, 1), 0);
  CHECK_STR(out, "");
}

/* ---- discovery -------------------------------------------------------------- */

TEST(discovery_okta_document) {
  json_t *d = okta_doc();
  json_object_set_new(d, "token_endpoint_auth_methods_supported",
                      json_pack("[s,s,s]", "client_secret_basic", "client_secret_post", "private_key_jwt"));
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  json_decref(d);
  CHECK_INT(rc, 0);
  CHECK(p);
  CHECK_STR(p->tenant, "acme");
  CHECK_STR(p->issuer, ISSUER);
  CHECK_STR(p->client_id, "0oa1client");
  CHECK_STR(p->doc_issuer, ISSUER);
  CHECK_STR(p->authorization_endpoint, ISSUER "/oauth2/v1/authorize");
  CHECK_STR(p->token_endpoint, ISSUER "/oauth2/v1/token");
  CHECK_STR(p->jwks_uri, ISSUER "/oauth2/v1/keys");
  CHECK_STR(p->end_session_endpoint, ISSUER "/oauth2/v1/logout");
  CHECK(!p->token_auth_post);
  CHECK(p->jwks == NULL);
  CHECK_INT(p->fetched_ms, NOW_MS);
  auth_oidc_provider_free(p);
}

TEST(discovery_optional_members) {
  /* no end_session_endpoint, no *_supported lists: accepted, defaults */
  json_t *d = json_pack("{s:s, s:s, s:s, s:s}", "issuer", ISSUER, "authorization_endpoint", ISSUER "/a",
                        "token_endpoint", ISSUER "/t", "jwks_uri", ISSUER "/k");
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  json_decref(d);
  CHECK_INT(rc, 0);
  CHECK_STR(p->end_session_endpoint, "");
  CHECK(!p->token_auth_post);
  auth_oidc_provider_free(p);
}

TEST(discovery_issuer_spelling) {
  /* the document says "https://acme.okta.com/": it matches the normalised
   * configured issuer, and doc_issuer keeps the document's spelling */
  json_t *d = okta_doc();
  json_object_set_new(d, "issuer", json_string(ISSUER "/"));
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  CHECK_INT(rc, 0);
  CHECK_STR(p->issuer, ISSUER);
  CHECK_STR(p->doc_issuer, ISSUER "/");
  auth_oidc_provider_free(p);
  /* a custom authorization server path must match too */
  json_object_set_new(d, "issuer", json_string(ISSUER "/oauth2/default"));
  p = NULL;
  rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  json_decref(d);
  CHECK_INT(rc, AUTH_EINVALID);
  CHECK(!p);
}

TEST(discovery_refusals) {
  CHECK(refused_with("issuer", json_string("https://evil.okta.com"), "issuer"));
  CHECK(refused_with("issuer", NULL, "issuer"));
  CHECK(refused_with("issuer", json_integer(1), "issuer"));
  CHECK(refused_with("jwks_uri", NULL, "jwks_uri"));
  CHECK(refused_with("authorization_endpoint", NULL, "authorization_endpoint"));
  CHECK(refused_with("token_endpoint", json_true(), "token_endpoint"));
  CHECK(refused_with("token_endpoint", json_string("http://acme.okta.com/oauth2/v1/token"), "token_endpoint"));
  CHECK(refused_with("jwks_uri", json_string("/oauth2/v1/keys"), "jwks_uri"));
  CHECK(refused_with("authorization_endpoint", json_string(ISSUER "/oauth2/v1/authorize#frag"),
                     "authorization_endpoint"));
  CHECK(refused_with("token_endpoint", json_string("https://user:pw@acme.okta.com/oauth2/v1/token"),
                     "token_endpoint"));
  CHECK(refused_with("token_endpoint", json_string("https://user@acme.okta.com/t"), "token_endpoint"));
  CHECK(refused_with("jwks_uri", json_string("https://acme.okta.com:99999/keys"), "jwks_uri"));
  CHECK(refused_with("jwks_uri", json_string("https://acme.okta.com:0/keys"), "jwks_uri"));
  CHECK(refused_with("jwks_uri", json_string("https://acme.okta.com:x/keys"), "jwks_uri"));
  CHECK(refused_with("jwks_uri", json_string("https://acme.okta.com/ke ys"), "jwks_uri"));
  CHECK(refused_with("end_session_endpoint", json_string("http://acme.okta.com/logout"), "end_session_endpoint"));
  char long_url[AUTH_OIDC_URL_MAX + 40];
  snprintf(long_url, sizeof long_url, "%s/", ISSUER);
  memset(long_url + strlen(long_url), 'k', AUTH_OIDC_URL_MAX);
  long_url[AUTH_OIDC_URL_MAX + 1] = 0;
  CHECK(refused_with("jwks_uri", json_string(long_url), "jwks_uri"));
  CHECK(refused_with("response_types_supported", json_pack("[s,s]", "id_token", "token"),
                     "response_types_supported"));
  CHECK(refused_with("id_token_signing_alg_values_supported", json_pack("[s]", "HS256"), "RS256"));
  CHECK(refused_with("code_challenge_methods_supported", json_pack("[s]", "plain"),
                     "code_challenge_methods_supported"));
  CHECK(refused_with("token_endpoint_auth_methods_supported", json_pack("[s]", "private_key_jwt"),
                     "client_secret_basic"));
}

TEST(discovery_es256_and_post_only) {
  json_t *d = okta_doc();
  json_object_set_new(d, "id_token_signing_alg_values_supported", json_pack("[s,s]", "HS256", "ES256"));
  json_object_set_new(d, "token_endpoint_auth_methods_supported", json_pack("[s,s]", "private_key_jwt", "client_secret_post"));
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = parse_doc_for(d, ISSUER, &p, why, sizeof why);
  json_decref(d);
  CHECK_INT(rc, 0);
  CHECK(p->token_auth_post);
  auth_oidc_provider_free(p);
}

TEST(discovery_not_a_document) {
  auth_oidc_provider *p = (auth_oidc_provider *)1;
  char why[300];
  static const char *const bad[] = {"", "not json", "[1,2]", "\"x\"",
                                    "{\"issuer\":\"" ISSUER "\",\"issuer\":\"" ISSUER "\"}", NULL};
  for (const char *const *b = bad; *b; b++) {
    p = (auth_oidc_provider *)1;
    CHECK_INT(auth_oidc_discovery_parse(*b, strlen(*b), "acme", ISSUER, "c", NOW_MS, &p, why, sizeof why),
              AUTH_EINVALID);
    CHECK(!p);
    CHECK(why[0]);
  }
  /* duplicate keys in an otherwise good document */
  json_t *d = okta_doc();
  char *s = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  size_t n = strlen(s);
  char *dup = malloc(n + 64);
  snprintf(dup, n + 64, "{\"jwks_uri\":\"%s/x\",%s", ISSUER, s + 1);
  CHECK_INT(auth_oidc_discovery_parse(dup, strlen(dup), "acme", ISSUER, "c", NOW_MS, &p, why, sizeof why),
            AUTH_EINVALID);
  free(dup);
  /* over AUTH_OIDC_DISCOVERY_MAX: the good document padded with spaces */
  char *big = malloc(AUTH_OIDC_DISCOVERY_MAX + 2);
  memset(big, ' ', AUTH_OIDC_DISCOVERY_MAX + 1);
  memcpy(big, s, n);
  big[AUTH_OIDC_DISCOVERY_MAX + 1] = 0;
  p = (auth_oidc_provider *)1;
  CHECK_INT(auth_oidc_discovery_parse(big, AUTH_OIDC_DISCOVERY_MAX + 1, "acme", ISSUER, "c", NOW_MS, &p, why,
                                      sizeof why),
            AUTH_EINVALID);
  CHECK(!p);
  CHECK(strstr(why, "larger"));
  /* exactly at the limit: accepted */
  CHECK_INT(auth_oidc_discovery_parse(big, AUTH_OIDC_DISCOVERY_MAX, "acme", ISSUER, "c", NOW_MS, &p, why, sizeof why),
            0);
  auth_oidc_provider_free(p);
  free(big);
  free(s);
}

TEST(discovery_http_loopback) {
  const char *iss = "http://127.0.0.1:8123";
  json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s}", "issuer", "http://127.0.0.1:8123/", "authorization_endpoint",
                        "http://127.0.0.1:8123/auth", "token_endpoint", "http://127.0.0.1:8123/token", "jwks_uri",
                        "http://127.0.0.1:8123/jwks", "end_session_endpoint", "http://[::1]:8123/logout");
  auth_oidc_provider *p = NULL;
  char why[300];
  CHECK_INT(parse_doc_for(d, iss, &p, why, sizeof why), 0);
  CHECK_STR(p->token_endpoint, "http://127.0.0.1:8123/token");
  auth_oidc_provider_free(p);
  p = NULL;
  /* an http endpoint on a non-loopback host */
  json_object_set_new(d, "token_endpoint", json_string("http://idp.example.com/token"));
  CHECK_INT(parse_doc_for(d, iss, &p, why, sizeof why), AUTH_EINVALID);
  CHECK(!p);
  CHECK(strstr(why, "token_endpoint"));
  /* https endpoints for an http issuer: not the issuer's scheme */
  json_object_set_new(d, "token_endpoint", json_string("https://127.0.0.1:8123/token"));
  CHECK_INT(parse_doc_for(d, iss, &p, why, sizeof why), AUTH_EINVALID);
  CHECK(strstr(why, "token_endpoint"));
  json_decref(d);
}

/* ---- the cache ---------------------------------------------------------------- */

static auth_jwks *make_keys(void) {
  EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (!pk) return NULL;
  uint8_t pt[65];
  size_t pl = 0;
  EVP_PKEY_get_octet_string_param(pk, "pub", pt, sizeof pt, &pl);
  EVP_PKEY_free(pk);
  if (pl != 65) return NULL;
  char *x = b64url_ref(pt + 1, 32), *y = b64url_ref(pt + 33, 32);
  char doc[512];
  snprintf(doc, sizeof doc,
           "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"use\":\"sig\",\"alg\":\"ES256\","
           "\"x\":\"%s\",\"y\":\"%s\"}]}",
           x, y);
  free(x);
  free(y);
  auth_jwks *ks = NULL;
  return auth_jwks_parse(doc, strlen(doc), &ks) == 0 ? ks : NULL;
}

/* A provider with keys for (tenant, issuer, client) fetched at t. */
static auth_oidc_provider *provider(const char *tenant, const char *client, int64_t t, auth_jwks *ks) {
  json_t *d = okta_doc();
  char *s = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  auth_oidc_provider *p = NULL, *k;
  char why[300];
  if (auth_oidc_discovery_parse(s, strlen(s), tenant, ISSUER, client, t, &p, why, sizeof why) == 0 && ks) {
    k = auth_oidc_provider_with_keys(p, ks, t);
    auth_oidc_provider_free(p);
    p = k;
  }
  free(s);
  return p;
}

static bool hit(auth_oidc_cache *c, const char *tenant, const char *client, int64_t now) {
  auth_oidc_provider *p = (auth_oidc_provider *)1;
  int rc = auth_oidc_cache_get(c, tenant, ISSUER, client, now, &p);
  if (rc == 0 && p) {
    auth_oidc_provider_free(p);
    return true;
  }
  return rc == 0 || p != NULL ? (fprintf(stderr, "  get: rc %d with out %p\n", rc, (void *)p), true) : false;
}

TEST(cache_get_misses) {
  auth_jwks *ks = make_keys();
  CHECK(ks);
  auth_oidc_cache *c = auth_oidc_cache_new();
  CHECK(c);
  CHECK(!hit(c, "acme", "cl", NOW_MS));
  /* a provider without keys cannot be cached */
  auth_oidc_provider *bare = provider("acme", "cl", NOW_MS, NULL);
  CHECK(bare && !bare->jwks);
  CHECK_INT(auth_oidc_cache_put(c, bare), ST_EINVAL);
  CHECK(!hit(c, "acme", "cl", NOW_MS));
  auth_oidc_provider *p = auth_oidc_provider_with_keys(bare, ks, NOW_MS + 5);
  auth_oidc_provider_free(bare);
  CHECK(p && p->jwks);
  CHECK_INT(p->jwks_fetched_ms, NOW_MS + 5);
  CHECK_INT(auth_oidc_cache_put(c, p), 0);
  auth_oidc_provider_free(p); /* the cache keeps its own reference */
  CHECK(hit(c, "acme", "cl", NOW_MS));
  CHECK(!hit(c, "beta", "cl", NOW_MS));
  CHECK(!hit(c, "acme", "other-client", NOW_MS));
  auth_oidc_provider *o = (auth_oidc_provider *)1;
  CHECK_INT(auth_oidc_cache_get(c, "acme", "https://other.okta.com", "cl", NOW_MS, &o), -1);
  CHECK(!o);
  CHECK(hit(c, "acme", "cl", NOW_MS + AUTH_OIDC_META_TTL_MS - 1));
  CHECK(!hit(c, "acme", "cl", NOW_MS + AUTH_OIDC_META_TTL_MS));
  CHECK(!hit(c, "acme", "cl", NOW_MS + AUTH_OIDC_META_TTL_MS + 1));
  auth_oidc_cache_forget(c, "acme");
  CHECK(!hit(c, "acme", "cl", NOW_MS));
  auth_oidc_cache_free(c);
  auth_jwks_free(ks);
}

TEST(cache_reference_outlives_replacement) {
  auth_jwks *k1 = make_keys(), *k2 = make_keys();
  CHECK(k1 && k2);
  auth_oidc_cache *c = auth_oidc_cache_new();
  auth_oidc_provider *p1 = provider("acme", "cl", NOW_MS, k1);
  auth_oidc_provider *p2 = provider("acme", "cl", NOW_MS + 10, k2);
  auth_jwks_free(k1); /* the providers hold their own references */
  auth_jwks_free(k2);
  CHECK(p1 && p2);
  CHECK_INT(auth_oidc_cache_put(c, p1), 0);
  auth_oidc_provider_free(p1);
  auth_oidc_provider *held = NULL;
  CHECK_INT(auth_oidc_cache_get(c, "acme", ISSUER, "cl", NOW_MS + 1, &held), 0);
  CHECK(held);
  CHECK_INT(auth_oidc_cache_put(c, p2), 0); /* replaces the entry held above */
  auth_oidc_provider_free(p2);
  auth_oidc_provider *now = NULL;
  CHECK_INT(auth_oidc_cache_get(c, "acme", ISSUER, "cl", NOW_MS + 11, &now), 0);
  CHECK(now != held);
  CHECK_INT(now->fetched_ms, NOW_MS + 10);
  auth_oidc_provider_free(now);
  auth_oidc_cache_forget(c, "acme");
  CHECK(!hit(c, "acme", "cl", NOW_MS + 11));
  auth_oidc_cache_free(c);
  /* the reference taken before the replacement, the forget and the cache's
   * end is still whole (ASan reports a use after free otherwise) */
  CHECK_STR(held->issuer, ISSUER);
  CHECK_INT(held->fetched_ms, NOW_MS);
  CHECK_INT(auth_jwks_count(held->jwks), 1);
  auth_jwk_info ki;
  CHECK_INT(auth_jwks_key(held->jwks, 0, &ki), 0);
  CHECK_STR(ki.kid, "k1");
  auth_oidc_provider *again = auth_oidc_provider_ref(held);
  CHECK(again == held);
  auth_oidc_provider_free(held);
  CHECK_STR(again->client_id, "cl");
  auth_oidc_provider_free(again);
  auth_oidc_provider_free(NULL);
}

TEST(cache_refetch_slot) {
  auth_oidc_cache *c = auth_oidc_cache_new();
  CHECK(auth_oidc_cache_claim_refetch(c, "acme", NOW_MS));
  CHECK(!auth_oidc_cache_claim_refetch(c, "acme", NOW_MS));
  CHECK(auth_oidc_cache_claim_refetch(c, "beta", NOW_MS)); /* per tenant */
  CHECK(!auth_oidc_cache_claim_refetch(c, "acme", NOW_MS + AUTH_OIDC_JWKS_REFETCH_MS - 1));
  CHECK(auth_oidc_cache_claim_refetch(c, "acme", NOW_MS + AUTH_OIDC_JWKS_REFETCH_MS));
  CHECK(!auth_oidc_cache_claim_refetch(c, "acme", NOW_MS + AUTH_OIDC_JWKS_REFETCH_MS + 1));
  CHECK(auth_oidc_cache_claim_refetch(c, "acme", NOW_MS + 3 * AUTH_OIDC_JWKS_REFETCH_MS));
  auth_oidc_cache_free(c);
}

TEST(cache_fetch_admission) {
  auth_oidc_cache *c = auth_oidc_cache_new();
  char why[200];
  int64_t t = NOW_MS;
  for (int i = 0; i < AUTH_OIDC_FETCH_MAX; i++) CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t, why, sizeof why), AUTH_OIDC_FETCH_GO);
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t, why, sizeof why), AUTH_OIDC_FETCH_BUSY);
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "beta", t, why, sizeof why), AUTH_OIDC_FETCH_GO); /* per tenant */
  auth_oidc_cache_fetch_end(c, "beta", t, NULL);
  auth_oidc_cache_fetch_end(c, "acme", t, NULL); /* one slot free again */
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t, why, sizeof why), AUTH_OIDC_FETCH_GO);
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t, why, sizeof why), AUTH_OIDC_FETCH_BUSY);
  for (int i = 0; i < AUTH_OIDC_FETCH_MAX - 1; i++) auth_oidc_cache_fetch_end(c, "acme", t, NULL);
  auth_oidc_cache_fetch_end(c, "acme", t, "the provider's discovery document is not a JSON object");
  why[0] = 0;
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t, why, sizeof why), AUTH_OIDC_FETCH_FAILED);
  CHECK_STR(why, "the provider's discovery document is not a JSON object");
  why[0] = 0;
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS - 1, why, sizeof why),
            AUTH_OIDC_FETCH_FAILED);
  CHECK_STR(why, "the provider's discovery document is not a JSON object");
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "beta", t + 1, why, sizeof why), AUTH_OIDC_FETCH_GO);
  auth_oidc_cache_fetch_end(c, "beta", t + 1, NULL);
  /* the hold is over: every slot is free (the failed fetches ended) */
  for (int i = 0; i < AUTH_OIDC_FETCH_MAX; i++)
    CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, why, sizeof why), AUTH_OIDC_FETCH_GO);
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, why, sizeof why), AUTH_OIDC_FETCH_BUSY);
  /* a success ends the hold of an earlier failure at once */
  auth_oidc_cache_fetch_end(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, "timeout");
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, why, sizeof why), AUTH_OIDC_FETCH_FAILED);
  CHECK_STR(why, "timeout");
  auth_oidc_cache_fetch_end(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, NULL);
  CHECK_INT(auth_oidc_cache_fetch_begin(c, "acme", t + AUTH_OIDC_FAIL_HOLD_MS, why, sizeof why), AUTH_OIDC_FETCH_GO);
  auth_oidc_cache_free(c);
}

/* ---- sign-in state and the login cookie ----------------------------------------- */

static char g_tmp[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
static st_store *open_store(void) {
  tmp_cleanup();
  strcpy(g_tmp, "/tmp/mcpgate-test-login-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128], key[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 16u << 20;
  o.master_key_file = key;
  o.log = gw_store_log;
  st_store *st = NULL;
  return st_open(&st, &o) == 0 ? st : NULL;
}

static bool rand_value_ok(const char *s) {
  uint8_t b[40];
  size_t n = 0;
  return strlen(s) == AUTH_LOGIN_RAND_LEN && b64url_alphabet(s) &&
         auth_b64url_decode(s, strlen(s), b, sizeof b, &n) == 0 && n == 32;
}

TEST(login_new_values) {
  auth_login a, b;
  CHECK_INT(auth_login_new(&a, ISSUER, "/t/acme/me", NOW), 0);
  CHECK_INT(auth_login_new(&b, ISSUER, "", NOW), 0);
  CHECK(rand_value_ok(a.state) && rand_value_ok(a.nonce) && rand_value_ok(a.verifier));
  CHECK(rand_value_ok(b.state) && rand_value_ok(b.nonce) && rand_value_ok(b.verifier));
  CHECK(strcmp(a.state, a.nonce) && strcmp(a.state, a.verifier) && strcmp(a.nonce, a.verifier));
  CHECK(strcmp(a.state, b.state) && strcmp(a.nonce, b.nonce) && strcmp(a.verifier, b.verifier));
  CHECK_STR(a.issuer, ISSUER);
  CHECK_STR(a.return_to, "/t/acme/me");
  CHECK_STR(b.return_to, "");
  CHECK_INT(a.expires, NOW + AUTH_LOGIN_TTL_S);
}

TEST(login_return_to_rules) {
  auth_login l;
  char path[AUTH_LOGIN_RETURN_MAX + 2];
  CHECK_INT(auth_login_new(&l, ISSUER, "", NOW), 0);
  CHECK_INT(auth_login_new(&l, ISSUER, "/", NOW), 0);
  CHECK_INT(auth_login_new(&l, ISSUER, "/t/acme/x", NOW), 0);
  CHECK_INT(auth_login_new(&l, ISSUER, "/t/acme/x?tab=tools&a=%20", NOW), 0);
  path[0] = '/';
  memset(path + 1, 'a', AUTH_LOGIN_RETURN_MAX - 1);
  path[AUTH_LOGIN_RETURN_MAX] = 0;
  CHECK_INT(auth_login_new(&l, ISSUER, path, NOW), 0); /* exactly the maximum */
  CHECK_STR(l.return_to, path);
  path[AUTH_LOGIN_RETURN_MAX] = 'a';
  path[AUTH_LOGIN_RETURN_MAX + 1] = 0;
  static const char *const bad[] = {"//evil.example/x", "https://x", "t/acme", "/a\\b",  "\\/evil",
                                    "/a\x01z",          "/a\nb",      "/a b",   "/a\x7f", "/caf\xc3\xa9", NULL};
  for (const char *const *b = bad; *b; b++) {
    memset(&l, 'Z', sizeof l);
    CHECK_INT(auth_login_new(&l, ISSUER, *b, NOW), ST_EINVAL);
  }
  CHECK_INT(auth_login_new(&l, ISSUER, path, NOW), ST_EINVAL);
}

static int open_cookie(st_store *st, const char *tenant, const char *cookie, const char *state, int64_t now,
                       auth_login *out) {
  return auth_login_open(st, tenant, cookie, state, now, out);
}

TEST(login_seal_open) {
  st_store *st = open_store();
  CHECK(st);
  auth_login l, o;
  CHECK_INT(auth_login_new(&l, ISSUER, "/t/acme/me", NOW), 0);
  char *cookie = NULL, *cookie2 = NULL;
  CHECK_INT(auth_login_seal(st, "acme", &l, &cookie), 0);
  CHECK(cookie && b64url_alphabet(cookie) && strlen(cookie) <= AUTH_LOGIN_COOKIE_MAX);
  /* the cookie does not carry the values in the clear */
  CHECK(!strstr(cookie, l.state) && !strstr(cookie, l.verifier));
  CHECK_INT(auth_login_seal(st, "acme", &l, &cookie2), 0);
  CHECK(strcmp(cookie, cookie2) != 0); /* fresh nonce per seal */
  free(cookie2);

  CHECK_INT(open_cookie(st, "acme", cookie, l.state, NOW, &o), 0);
  CHECK_STR(o.state, l.state);
  CHECK_STR(o.nonce, l.nonce);
  CHECK_STR(o.verifier, l.verifier);
  CHECK_STR(o.issuer, ISSUER);
  CHECK_STR(o.return_to, "/t/acme/me");
  CHECK_INT(o.expires, NOW + AUTH_LOGIN_TTL_S);
  CHECK_INT(open_cookie(st, "acme", cookie, l.state, NOW + AUTH_LOGIN_TTL_S - 1, &o), 0);

  /* refusals: *out zeroed */
  CHECK_INT(open_cookie(st, "acme", cookie, l.state, NOW + AUTH_LOGIN_TTL_S, &o), AUTH_ELOGIN);
  CHECK_STR(o.state, "");
  CHECK_STR(o.verifier, "");
  CHECK_INT(open_cookie(st, "acme", cookie, l.state, NOW + AUTH_LOGIN_TTL_S + 1000, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "beta", cookie, l.state, NOW, &o), AUTH_ELOGIN);
  char other[AUTH_LOGIN_RAND_LEN + 1];
  memcpy(other, l.state, sizeof other);
  other[AUTH_LOGIN_RAND_LEN / 2] = other[AUTH_LOGIN_RAND_LEN / 2] == 'A' ? 'B' : 'A';
  CHECK_INT(open_cookie(st, "acme", cookie, other, NOW, &o), AUTH_ELOGIN);
  auth_login l2;
  CHECK_INT(auth_login_new(&l2, ISSUER, "", NOW), 0);
  CHECK_INT(open_cookie(st, "acme", cookie, l2.state, NOW, &o), AUTH_ELOGIN);
  char longer[AUTH_LOGIN_RAND_LEN + 2];
  snprintf(longer, sizeof longer, "%sA", l.state); /* the right state and more */
  CHECK_INT(open_cookie(st, "acme", cookie, longer, NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", cookie, "", NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", cookie, NULL, NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", NULL, l.state, NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", "", l.state, NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", "not a cookie!", l.state, NOW, &o), AUTH_ELOGIN);
  CHECK_INT(open_cookie(st, "acme", l.state, l.state, NOW, &o), AUTH_ELOGIN);
  uint8_t junk[300];
  RAND_bytes(junk, sizeof junk);
  char *g = b64url_ref(junk, sizeof junk);
  CHECK_INT(open_cookie(st, "acme", g, l.state, NOW, &o), AUTH_ELOGIN);
  free(g);
  char big[AUTH_LOGIN_COOKIE_MAX + 2];
  memset(big, 'A', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK_INT(open_cookie(st, "acme", big, l.state, NOW, &o), AUTH_ELOGIN);

  /* truncated */
  size_t cn = strlen(cookie);
  char *t = strdup(cookie);
  for (size_t len = 1; len < cn; len += (len < 8 || len > cn - 8) ? 1 : 7) {
    memcpy(t, cookie, len);
    t[len] = 0;
    CHECK_INT(open_cookie(st, "acme", t, l.state, NOW, &o), AUTH_ELOGIN);
  }
  /* one character changed, anywhere (to another base64url character) */
  for (size_t i = 0; i < cn; i++) {
    memcpy(t, cookie, cn + 1);
    t[i] = t[i] == 'A' ? 'g' : 'A';
    CHECK_INT(open_cookie(st, "acme", t, l.state, NOW, &o), AUTH_ELOGIN);
  }
  free(t);
  /* one bit flipped in any byte of the sealed blob, re-encoded canonically */
  uint8_t blob[AUTH_LOGIN_COOKIE_MAX];
  size_t bl = 0;
  CHECK_INT(auth_b64url_decode(cookie, cn, blob, sizeof blob, &bl), 0);
  for (size_t i = 0; i < bl; i++) {
    for (int bit = 0; bit < 8; bit += 7) {
      blob[i] ^= (uint8_t)(1u << bit);
      char *f = b64url_ref(blob, bl);
      int rc = open_cookie(st, "acme", f, l.state, NOW, &o);
      free(f);
      blob[i] ^= (uint8_t)(1u << bit);
      if (rc != AUTH_ELOGIN) fprintf(stderr, "  byte %zu bit %d accepted\n", i, bit);
      CHECK_INT(rc, AUTH_ELOGIN);
    }
  }
  /* the untouched blob still opens */
  char *same = b64url_ref(blob, bl);
  CHECK_STR(same, cookie);
  free(same);
  CHECK_INT(open_cookie(st, "acme", cookie, l.state, NOW, &o), 0);
  free(cookie);

  /* another store (another master key) cannot open it */
  CHECK_INT(auth_login_seal(st, "acme", &l, &cookie), 0);
  st_close(st);
  st_store *st2 = open_store();
  CHECK(st2);
  CHECK_INT(open_cookie(st2, "acme", cookie, l.state, NOW, &o), AUTH_ELOGIN);
  free(cookie);
  st_close(st2);
  tmp_cleanup();
}

/* ---- the authorization request -------------------------------------------------- */

static auth_oidc_provider *okta_provider(const char *client_id, bool post, const char *authz_ep) {
  json_t *d = okta_doc();
  if (post) json_object_set_new(d, "token_endpoint_auth_methods_supported", json_pack("[s]", "client_secret_post"));
  if (authz_ep) json_object_set_new(d, "authorization_endpoint", json_string(authz_ep));
  char *s = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = auth_oidc_discovery_parse(s, strlen(s), "acme", ISSUER, client_id, NOW_MS, &p, why, sizeof why);
  free(s);
  if (rc) fprintf(stderr, "  provider: %s\n", why);
  return p;
}

TEST(authorize_url) {
  auth_oidc_provider *p = okta_provider("0oa+client id", false, NULL);
  CHECK(p);
  auth_login l;
  CHECK_INT(auth_login_new(&l, ISSUER, "", NOW), 0);
  json_t *settings = json_pack("{s:[s,s,s]}", "scopes", "openid", "email", "profile");
  const char *redirect = "https://gw.example/t/acme/oauth/callback?a=b&c";
  char *url = NULL;
  CHECK_INT(auth_login_authorize_url(p, settings, redirect, &l, &url), 0);
  json_decref(settings);
  CHECK(url);
  CHECK(!strncmp(url, ISSUER "/oauth2/v1/authorize?", strlen(ISSUER "/oauth2/v1/authorize?")));
  CHECK(query_encoded(url));
  char *v;
  CHECK(param_is(url, "response_type", "code", false));
  CHECK(param_is(url, "client_id", "0oa+client id", false));
  CHECK(param_is(url, "client_id", "0oa%2Bclient%20id", true));
  CHECK(param_is(url, "redirect_uri", redirect, false));
  CHECK(param_is(url, "redirect_uri", "https%3A%2F%2Fgw.example%2Ft%2Facme%2Foauth%2Fcallback%3Fa%3Db%26c", true));
  CHECK(param_is(url, "scope", "openid%20email%20profile", true));
  CHECK(param_is(url, "state", l.state, false));
  CHECK(param_is(url, "nonce", l.nonce, false));
  CHECK(param_is(url, "code_challenge_method", "S256", false));
  uint8_t h[32];
  SHA256((const unsigned char *)l.verifier, strlen(l.verifier), h);
  char *want = b64url_ref(h, 32);
  v = param(url, "code_challenge");
  int same = v && !strcmp(v, want);
  free(v);
  free(want);
  CHECK(same);
  /* the verifier itself is never sent */
  CHECK(!strstr(url, l.verifier));
  free(url);
  auth_oidc_provider_free(p);

  /* an endpoint with a query already: "&"; no scopes: "openid" */
  p = okta_provider("c1", false, ISSUER "/oauth2/v1/authorize?idp=0oa9");
  CHECK(p);
  CHECK_INT(auth_login_authorize_url(p, NULL, "https://gw.example/cb", &l, &url), 0);
  CHECK(!strncmp(url, ISSUER "/oauth2/v1/authorize?idp=0oa9&response_type=code&",
                 strlen(ISSUER "/oauth2/v1/authorize?idp=0oa9&response_type=code&")));
  CHECK(strchr(url, '?') == strrchr(url, '?'));
  CHECK(param_is(url, "scope", "openid", false));
  CHECK(param_is(url, "idp", "0oa9", false));
  free(url);
  auth_oidc_provider_free(p);
}

/* ---- the code exchange ------------------------------------------------------------ */

TEST(token_request_basic) {
  const char *id = "0oa:cl+i d%", *secret = "s3:cr+t %25x";
  auth_oidc_provider *p = okta_provider(id, false, NULL);
  CHECK(p);
  char *body = NULL, *authz = NULL, *v;
  CHECK_INT(auth_login_token_request(p, secret, "c0de/+=", "https://gw.example/cb?x=1", "verif-ier_1", &body, &authz), 0);
  CHECK(body && authz);
  CHECK(form_encoded(body));
  CHECK(param_is(body, "grant_type", "authorization_code", false));
  CHECK(param_is(body, "code", "c0de/+=", false));
  CHECK(param_is(body, "redirect_uri", "https://gw.example/cb?x=1", false));
  CHECK(param_is(body, "code_verifier", "verif-ier_1", false));
  CHECK(param_is(body, "client_id", id, false));
  int n = -1;
  v = param_raw(body, "client_secret", &n);
  CHECK(!v && n == 0);
  CHECK(!strstr(body, "s3") && !strstr(body, "cr"));
  /* Authorization: Basic base64(formenc(id) ":" formenc(secret)) */
  CHECK(!strncmp(authz, "Basic ", 6));
  size_t al = strlen(authz + 6);
  CHECK(al % 4 == 0);
  unsigned char dec[256];
  int dl = EVP_DecodeBlock(dec, (const unsigned char *)authz + 6, (int)al);
  CHECK(dl > 0);
  while (al && authz[6 + al - 1] == '=') al--, dl--; /* EVP_DecodeBlock counts the padding */
  dec[dl] = 0;
  const char *colon = strchr((char *)dec, ':');
  CHECK(colon);
  CHECK(strchr(colon + 1, ':') == NULL); /* the secret's ':' is encoded */
  CHECK(!strchr((char *)dec, ' '));      /* so are the spaces */
  char *did = form_decode((char *)dec, (size_t)(colon - (char *)dec));
  char *dsec = form_decode(colon + 1, strlen(colon + 1));
  int ok = did && dsec && !strcmp(did, id) && !strcmp(dsec, secret);
  if (!ok) fprintf(stderr, "  credentials decode to \"%s\" / \"%s\" (from %s)\n", did, dsec, dec);
  free(did);
  free(dsec);
  CHECK(ok);
  auth_login_wipe(body);
  auth_login_wipe(authz);
  auth_oidc_provider_free(p);
}

TEST(token_request_post) {
  const char *secret = "s3:cr+t %25x";
  auth_oidc_provider *p = okta_provider("0oa1client", true, NULL);
  CHECK(p && p->token_auth_post);
  char *body = NULL, *authz = (char *)1;
  CHECK_INT(auth_login_token_request(p, secret, "code1", "https://gw.example/cb", "ver", &body, &authz), 0);
  CHECK(body);
  CHECK(authz == NULL);
  CHECK(param_is(body, "client_secret", secret, false));
  CHECK(param_is(body, "client_id", "0oa1client", false));
  CHECK(param_is(body, "grant_type", "authorization_code", false));
  CHECK(param_is(body, "code", "code1", false));
  CHECK(param_is(body, "code_verifier", "ver", false));
  auth_login_wipe(body);
  auth_login_wipe(NULL);
  auth_oidc_provider_free(p);
}

/* ---- the token endpoint's reply ----------------------------------------------------- */

static int token_resp(int status, const char *body, char **tok, char *why, size_t wl) {
  return auth_login_token_response(status, body, strlen(body), tok, why, wl);
}

TEST(token_response) {
  char why[300], *tok = NULL;
  CHECK_INT(token_resp(200, "{\"access_token\":\"at\",\"token_type\":\"Bearer\",\"id_token\":\"h.p.s\"}", &tok, why, sizeof why), 0);
  CHECK_STR(tok, "h.p.s");
  free(tok);
  tok = (char *)1;
  CHECK_INT(token_resp(400, "{\"error\":\"invalid_grant\",\"error_description\":\"code c0de-SECRET expired\"}", &tok, why,
                       sizeof why),
            AUTH_ELOGIN);
  CHECK(!tok);
  CHECK(strstr(why, "invalid_grant"));
  CHECK(!strstr(why, "SECRET") && !strstr(why, "expired"));
  CHECK_INT(token_resp(400, "{\"error\":\"bad<script>alert(1)</script>\"}", &tok, why, sizeof why), AUTH_ELOGIN);
  CHECK(!strstr(why, "script") && !strstr(why, "<"));
  CHECK(strstr(why, "400"));
  CHECK_INT(token_resp(400, "{\"error\":\"invalid grant\"}", &tok, why, sizeof why), AUTH_ELOGIN);
  CHECK(!strstr(why, "invalid grant"));
  /* an error in a 200 reply, even beside an id_token */
  CHECK_INT(token_resp(200, "{\"error\":\"access_denied\",\"id_token\":\"h.p.s\"}", &tok, why, sizeof why), AUTH_ELOGIN);
  CHECK(!tok);
  CHECK(strstr(why, "access_denied"));
  /* not 200, no error member */
  CHECK_INT(token_resp(500, "{\"id_token\":\"h.p.s\"}", &tok, why, sizeof why), AUTH_ELOGIN);
  CHECK(!tok);
  CHECK(strstr(why, "500"));
  static const char *const bad200[] = {"{\"access_token\":\"at\"}", "{\"id_token\":5}", "{\"id_token\":null}",
                                       "{\"id_token\":\"\"}", "{\"id_token\":[\"h.p.s\"]}", "not json", "[\"h.p.s\"]",
                                       "", "{\"id_token\":\"a\",\"id_token\":\"b\"}", NULL};
  for (const char *const *b = bad200; *b; b++) {
    tok = (char *)1;
    why[0] = 0;
    CHECK_INT(token_resp(200, *b, &tok, why, sizeof why), AUTH_ELOGIN);
    CHECK(!tok);
    CHECK(why[0]);
  }
  /* an id_token with a NUL inside */
  const char nul[] = "{\"id_token\":\"h.p\\u0000.s\"}";
  CHECK_INT(auth_login_token_response(200, nul, sizeof nul - 1, &tok, why, sizeof why), AUTH_ELOGIN);
  /* size: over the cap refused, at the cap accepted */
  char *big = malloc(AUTH_LOGIN_TOKEN_RESPONSE_MAX + 2);
  const char *head = "{\"id_token\":\"h.p.s\",\"pad\":\"";
  size_t hl = strlen(head);
  memcpy(big, head, hl);
  memset(big + hl, 'x', AUTH_LOGIN_TOKEN_RESPONSE_MAX + 1 - hl - 2);
  memcpy(big + AUTH_LOGIN_TOKEN_RESPONSE_MAX + 1 - 2, "\"}", 3);
  CHECK_INT(strlen(big), AUTH_LOGIN_TOKEN_RESPONSE_MAX + 1);
  tok = (char *)1;
  CHECK_INT(auth_login_token_response(200, big, AUTH_LOGIN_TOKEN_RESPONSE_MAX + 1, &tok, why, sizeof why), AUTH_ELOGIN);
  CHECK(!tok);
  memcpy(big + AUTH_LOGIN_TOKEN_RESPONSE_MAX - 2, "\"}", 3);
  CHECK_INT(auth_login_token_response(200, big, AUTH_LOGIN_TOKEN_RESPONSE_MAX, &tok, why, sizeof why), 0);
  CHECK_STR(tok, "h.p.s");
  free(tok);
  free(big);
}

TEST(error_names) {
  static const int codes[] = {AUTH_ELOGIN,   AUTH_ENOTLINKED, AUTH_EUNVERIFIED, AUTH_EAMBIGUOUS,
                              AUTH_EBOUND,   AUTH_ECLAIM,     AUTH_EREPLAY,     AUTH_EINACTIVE};
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    CHECK(codes[i] <= AUTH_ERR_FIRST && codes[i] >= AUTH_ERR_LAST);
    CHECK(!(codes[i] <= AUTH_JOSE_ERR_FIRST && codes[i] >= AUTH_JOSE_ERR_LAST));
    for (size_t j = i + 1; j < n; j++) {
      CHECK(codes[i] != codes[j]);
      CHECK(strcmp(auth_strerror(codes[i]), auth_strerror(codes[j])) != 0);
    }
  }
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(b64url_encode_round_trip);
  RUN(b64url_encode_rfc4648_vectors);
  RUN(b64url_encode_cap_too_small);
  RUN(discovery_okta_document);
  RUN(discovery_optional_members);
  RUN(discovery_issuer_spelling);
  RUN(discovery_refusals);
  RUN(discovery_es256_and_post_only);
  RUN(discovery_not_a_document);
  RUN(discovery_http_loopback);
  RUN(cache_get_misses);
  RUN(cache_reference_outlives_replacement);
  RUN(cache_refetch_slot);
  RUN(cache_fetch_admission);
  RUN(login_new_values);
  RUN(login_return_to_rules);
  RUN(login_seal_open);
  RUN(authorize_url);
  RUN(token_request_basic);
  RUN(token_request_post);
  RUN(token_response);
  RUN(error_names);
  tmp_cleanup();
  return UNIT_DONE();
}
