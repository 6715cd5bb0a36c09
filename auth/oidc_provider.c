/* auth/oidc_provider.c — discovery documents checked, and the per-tenant
 * cache of providers with their keys (see oidc_provider.h). */
#include "auth/oidc_provider.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "auth/auth.h"
#include "auth/oidc.h"
#include "store/store.h"

/* An endpoint URL: the issuer's scheme, a valid authority (loopback only
 * for http, by the issuer rule), no fragment, printable ASCII. */
static int endpoint_ok(const char *url, bool issuer_http, const char *name, char *why, size_t whylen) {
  size_t n = strlen(url);
  const char *scheme = issuer_http ? "http://" : "https://";
  if (n > AUTH_OIDC_URL_MAX || strncmp(url, scheme, strlen(scheme))) { /* lower-case scheme: what every provider sends */
    snprintf(why, whylen, "the provider's \"%s\" is not an %s URL of at most %d bytes", name,
             issuer_http ? "http://" : "https://", AUTH_OIDC_URL_MAX);
    return -1;
  }
  for (const char *p = url; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch <= 0x20 || ch >= 0x7f || ch == '#' || ch == '\\') {
      snprintf(why, whylen, "the provider's \"%s\" has spaces, control characters or a fragment", name);
      return -1;
    }
  }
  /* the authority goes through the issuer rules (host, port, loopback) */
  const char *auth = url + strlen(scheme);
  size_t alen = strcspn(auth, "/?");
  char origin[300], norm[300], w[200];
  if ((size_t)(auth - url) + alen >= sizeof origin) {
    snprintf(why, whylen, "the provider's \"%s\" has an overlong host", name);
    return -1;
  }
  memcpy(origin, url, (size_t)(auth - url) + alen);
  origin[(auth - url) + alen] = 0;
  if (auth_oidc_issuer_normalise(origin, norm, sizeof norm, w, sizeof w)) {
    snprintf(why, whylen, "the provider's \"%s\" has an invalid or non-loopback host", name);
    return -1;
  }
  return 0;
}

static bool array_has(const json_t *doc, const char *member, const char *want) {
  json_t *a = json_object_get(doc, member), *v;
  size_t i;
  json_array_foreach(a, i, v) {
    if (json_is_string(v) && !strcmp(json_string_value(v), want)) return true;
  }
  return false;
}

static int copy_url(const json_t *doc, const char *member, bool required, bool http, char *out, char *why,
                    size_t whylen) {
  json_t *v = json_object_get(doc, member);
  out[0] = 0;
  if (!v && !required) return 0;
  const char *s = json_string_value(v);
  if (!s || strlen(s) != json_string_length(v)) {
    snprintf(why, whylen, "the provider's discovery document has no string \"%s\"", member);
    return -1;
  }
  if (endpoint_ok(s, http, member, why, whylen)) return -1;
  memcpy(out, s, strlen(s) + 1);
  return 0;
}

int auth_oidc_discovery_parse(const char *doc, size_t len, const char *tenant, const char *issuer,
                              const char *client_id, int64_t now_ms, auth_oidc_provider **out, char *why,
                              size_t whylen) {
  *out = NULL;
  why[0] = 0;
  if (len > AUTH_OIDC_DISCOVERY_MAX) {
    snprintf(why, whylen, "the provider's discovery document is larger than %d bytes", AUTH_OIDC_DISCOVERY_MAX);
    return AUTH_EINVALID;
  }
  if (strlen(tenant) >= 64 || strlen(issuer) > 1024 || strlen(client_id) > 255) return ST_EINVAL;
  json_t *d = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(d)) {
    json_decref(d);
    snprintf(why, whylen, "the provider's discovery document is not a JSON object");
    return AUTH_EINVALID;
  }
  auth_oidc_provider *p = calloc(1, sizeof *p);
  if (!p) {
    json_decref(d);
    return ST_ENOMEM;
  }
  p->refs = 1;
  p->fetched_ms = now_ms;
  snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
  snprintf(p->issuer, sizeof p->issuer, "%s", issuer);
  snprintf(p->client_id, sizeof p->client_id, "%s", client_id);
  bool http = !strncmp(issuer, "http://", 7);
  int rc = AUTH_EINVALID;
  json_t *iv = json_object_get(d, "issuer");
  const char *is = json_string_value(iv);
  char norm[1025], w[200];
  if (!is || strlen(is) != json_string_length(iv) || strlen(is) > 1024) {
    snprintf(why, whylen, "the provider's discovery document has no string \"issuer\"");
    goto fail;
  }
  if (auth_oidc_issuer_normalise(is, norm, sizeof norm, w, sizeof w) || strcmp(norm, issuer)) {
    snprintf(why, whylen,
             "the provider's discovery document names another issuer than the configured one "
             "(check \"issuer\" in the tenant's OIDC settings)");
    goto fail;
  }
  memcpy(p->doc_issuer, is, strlen(is) + 1);
  if (copy_url(d, "authorization_endpoint", true, http, p->authorization_endpoint, why, whylen) ||
      copy_url(d, "token_endpoint", true, http, p->token_endpoint, why, whylen) ||
      copy_url(d, "jwks_uri", true, http, p->jwks_uri, why, whylen) ||
      copy_url(d, "end_session_endpoint", false, http, p->end_session_endpoint, why, whylen))
    goto fail;
  if (json_object_get(d, "response_types_supported") && !array_has(d, "response_types_supported", "code")) {
    snprintf(why, whylen, "the provider does not support the authorization code flow (response_types_supported)");
    goto fail;
  }
  if (json_object_get(d, "id_token_signing_alg_values_supported") &&
      !array_has(d, "id_token_signing_alg_values_supported", "RS256") &&
      !array_has(d, "id_token_signing_alg_values_supported", "ES256")) {
    snprintf(why, whylen, "the provider signs ID tokens with neither RS256 nor ES256");
    goto fail;
  }
  if (json_object_get(d, "code_challenge_methods_supported") &&
      !array_has(d, "code_challenge_methods_supported", "S256")) {
    snprintf(why, whylen, "the provider does not support PKCE with S256 (code_challenge_methods_supported)");
    goto fail;
  }
  if (json_object_get(d, "token_endpoint_auth_methods_supported") &&
      !array_has(d, "token_endpoint_auth_methods_supported", "client_secret_basic")) {
    if (!array_has(d, "token_endpoint_auth_methods_supported", "client_secret_post")) {
      snprintf(why, whylen,
               "the provider accepts neither client_secret_basic nor client_secret_post at its token endpoint");
      goto fail;
    }
    p->token_auth_post = true;
  }
  json_decref(d);
  *out = p;
  return 0;
fail:
  json_decref(d);
  free(p);
  return rc;
}

/* Reference counts move under the cache's mutex or on a provider no other
 * thread can see yet; the atomic builtins keep them safe for holders on
 * other loops that drop theirs outside the mutex. */
auth_oidc_provider *auth_oidc_provider_ref(auth_oidc_provider *p) {
  if (p) __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
  return p;
}

void auth_oidc_provider_free(auth_oidc_provider *p) {
  if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  auth_jwks_free(p->jwks);
  free(p);
}

auth_oidc_provider *auth_oidc_provider_with_keys(const auth_oidc_provider *p, auth_jwks *ks, int64_t now_ms) {
  auth_oidc_provider *n = malloc(sizeof *n);
  if (!n) return NULL;
  memcpy(n, p, sizeof *n);
  n->refs = 1;
  n->jwks = auth_jwks_ref(ks);
  n->jwks_fetched_ms = now_ms;
  return n;
}

/* ---- the cache: a small array, one entry per tenant that signed in. */
typedef struct entry {
  char tenant[64];
  auth_oidc_provider *p; /* NULL: only the refetch slot is remembered */
  int64_t refetch_until;
  int inflight;
  int64_t fail_until;
  char fail_why[200];
} entry;

struct auth_oidc_cache {
  uv_mutex_t mu;
  entry *v;
  size_t n, cap;
};

auth_oidc_cache *auth_oidc_cache_new(void) {
  auth_oidc_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (uv_mutex_init(&c->mu)) {
    free(c);
    return NULL;
  }
  return c;
}

void auth_oidc_cache_free(auth_oidc_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) auth_oidc_provider_free(c->v[i].p);
  free(c->v);
  uv_mutex_destroy(&c->mu);
  free(c);
}

/* Under mu: the tenant's entry, created when `make`. */
static entry *find(auth_oidc_cache *c, const char *tenant, bool make) {
  for (size_t i = 0; i < c->n; i++)
    if (!strcmp(c->v[i].tenant, tenant)) return &c->v[i];
  if (!make || strlen(tenant) >= sizeof c->v[0].tenant) return NULL;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    entry *v = realloc(c->v, cap * sizeof *v);
    if (!v) return NULL;
    c->v = v;
    c->cap = cap;
  }
  entry *e = &c->v[c->n++];
  memset(e, 0, sizeof *e);
  memcpy(e->tenant, tenant, strlen(tenant) + 1);
  return e;
}

int auth_oidc_cache_get(auth_oidc_cache *c, const char *tenant, const char *issuer, const char *client_id,
                        int64_t now_ms, auth_oidc_provider **out) {
  *out = NULL;
  uv_mutex_lock(&c->mu);
  entry *e = find(c, tenant, false);
  if (e && e->p && e->p->jwks && !strcmp(e->p->issuer, issuer) && !strcmp(e->p->client_id, client_id) &&
      now_ms >= e->p->fetched_ms && now_ms - e->p->fetched_ms < AUTH_OIDC_META_TTL_MS)
    *out = auth_oidc_provider_ref(e->p);
  uv_mutex_unlock(&c->mu);
  return *out ? 0 : -1;
}

int auth_oidc_cache_put(auth_oidc_cache *c, auth_oidc_provider *p) {
  if (!p || !p->jwks) return ST_EINVAL;
  uv_mutex_lock(&c->mu);
  entry *e = find(c, p->tenant, true);
  auth_oidc_provider *old = NULL;
  if (e) {
    old = e->p;
    e->p = auth_oidc_provider_ref(p);
  }
  uv_mutex_unlock(&c->mu);
  auth_oidc_provider_free(old);
  return e ? 0 : ST_ENOMEM;
}

bool auth_oidc_cache_claim_refetch(auth_oidc_cache *c, const char *tenant, int64_t now_ms) {
  bool ok = false;
  uv_mutex_lock(&c->mu);
  entry *e = find(c, tenant, true);
  if (e && now_ms >= e->refetch_until) {
    e->refetch_until = now_ms + AUTH_OIDC_JWKS_REFETCH_MS;
    ok = true;
  }
  uv_mutex_unlock(&c->mu);
  return ok;
}

int auth_oidc_cache_fetch_begin(auth_oidc_cache *c, const char *tenant, int64_t now_ms, char *why, size_t whylen) {
  int r = AUTH_OIDC_FETCH_BUSY;
  uv_mutex_lock(&c->mu);
  entry *e = find(c, tenant, true);
  if (e && now_ms < e->fail_until) {
    snprintf(why, whylen, "%s", e->fail_why);
    r = AUTH_OIDC_FETCH_FAILED;
  } else if (e && e->inflight < AUTH_OIDC_FETCH_MAX) {
    e->inflight++;
    r = AUTH_OIDC_FETCH_GO;
  }
  uv_mutex_unlock(&c->mu);
  return r;
}

void auth_oidc_cache_fetch_end(auth_oidc_cache *c, const char *tenant, int64_t now_ms, const char *fail_why) {
  uv_mutex_lock(&c->mu);
  entry *e = find(c, tenant, false);
  if (e) {
    if (e->inflight > 0) e->inflight--;
    if (fail_why) {
      e->fail_until = now_ms + AUTH_OIDC_FAIL_HOLD_MS;
      snprintf(e->fail_why, sizeof e->fail_why, "%s", fail_why);
    } else {
      e->fail_until = 0;
    }
  }
  uv_mutex_unlock(&c->mu);
}

void auth_oidc_cache_forget(auth_oidc_cache *c, const char *tenant) {
  auth_oidc_provider *old = NULL;
  uv_mutex_lock(&c->mu);
  entry *e = find(c, tenant, false);
  if (e) {
    old = e->p;
    e->p = NULL;
    e->fail_until = 0;
    e->refetch_until = 0;
  }
  uv_mutex_unlock(&c->mu);
  auth_oidc_provider_free(old);
}
