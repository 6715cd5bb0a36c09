/* gateway/api/oidc_fetch.c — fetching from a tenant's OpenID provider for
 * the sign-in (login.c) and the Universal Logout receiver
 * (global_logout.c): one capped outbound fetch, and the provider (its
 * discovery document and keys, auth/oidc_provider.h) cached in an
 * auth_oidc_cache, fetched when missing or stale, its keys fetched again
 * after an unknown kid.
 *
 * Rules this file keeps, and why:
 *  - Every fetch goes through the loop's outbound engine: the URL of the
 *    issuer an admin set gets the admin trust level (egress_allow); any
 *    other origin (a jwks_uri or token endpoint the discovery document
 *    chose elsewhere) is fetched as a URL an outsider chose (public
 *    addresses only, plus egress_allow_untrusted), so a compromised
 *    provider cannot aim the gateway at internal addresses the operator
 *    opened for admin-set URLs.
 *  - Each fetch has connect/first-byte/idle timeouts, a body cap, and a
 *    deadline for the whole body (FETCH_BODY_MS after the head; the test
 *    hook MCPGATE_TEST_FETCH_BODY_MS may only lower it): a provider that
 *    trickles bytes cannot hold a request, a transfer and its memory open
 *    for long.
 *  - Fetches of a cold or failing provider are admitted through the cache
 *    (a few in flight per tenant, a short hold after a failure), and keys
 *    are fetched again after an unknown kid at most once a minute per
 *    tenant: a flood of requests with forged kids cannot turn the gateway
 *    into a fetch amplifier.
 *  - Bodies are wiped before they are freed: a token endpoint's reply holds
 *    tokens.
 *
 * Lifetimes: a fetch owns itself from pages__fetch until its callback
 * returns; a provider lookup likewise until its callback returns. Neither
 * ever calls back from inside the call that started it, except
 * pages__provider on a cache hit or an immediate refusal (documented at
 * the declaration, pages_int.h). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/jose.h"
#include "auth/oidc.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/out/outbound.h"

#define FETCH_CONNECT_MS 5000
#define FETCH_FIRST_BYTE_MS 10000
#define FETCH_IDLE_MS 10000
/* The whole body within this of its head: the idle timeout alone let a
 * provider send a byte every few seconds and hold a request (its client
 * connection, its transfer, its memory) for days, as many as it liked. */
#define FETCH_BODY_MS 10000

/* ---- one fetch */

typedef struct fetch {
  pages_fetch_cb cb;
  void *ud;
  gw_buf body;
  int status;         /* -1: over the cap; -2: too slow (FETCH_BODY_MS) */
  int64_t body_ms;    /* the body's deadline after the head (srv->pages->fetch_body_ms) */
  int64_t body_until; /* mono ms by which the body must be complete */
  char tenant[64], req_id[17], module[16];
  char hdr_name[64], *hdr_out; /* pages_fetch_req.hdr_* */
  size_t hdr_cap;
  bool head_only, headed; /* pages_fetch_req.head_only; the head is in */
} fetch;

static void fetch_free(fetch *f) {
  if (f->body.data) OPENSSL_cleanse(f->body.data, f->body.len);
  gw_buf_free(&f->body);
  free(f);
}

static int on_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  fetch *f = ud;
  if (f->status < 0) return 0; /* aborted already */
  if (pages__mono_ms() > f->body_until) {
    gw_out_abort(r);
    f->status = -2; /* trickled */
  } else if (gw_buf_append(&f->body, p, n)) {
    gw_out_abort(r);
    f->status = -1; /* over the cap */
  }
  return 0;
}

static void on_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  fetch *f = ud;
  (void)r;
  if (f->status >= 0) f->status = status;
  if (f->hdr_out && f->hdr_cap) {
    size_t used = 0;
    bool fits = true;
    f->hdr_out[0] = 0;
    for (size_t i = 0; i < n && fits; i++) {
      if (strcasecmp(h[i].name, f->hdr_name)) continue;
      int w = snprintf(f->hdr_out + used, f->hdr_cap - used, "%s%s", used ? ", " : "", h[i].value);
      if (w < 0 || (size_t)w >= f->hdr_cap - used) fits = false;
      else used += (size_t)w;
    }
    if (!fits) f->hdr_out[0] = 0;
  }
  if (f->head_only && f->status >= 0) {
    f->headed = true;
    gw_out_abort(r);
  }
  f->body_until = pages__mono_ms() + f->body_ms;
}

static void on_done(gw_out_req *r, int err, void *ud) {
  fetch *f = ud;
  gw_log_ctx lc = {f->tenant, f->req_id};
  if (f->headed) {
    f->cb(f->ud, 0, f->status, NULL, 0);
  } else if (f->status == -1) {
    f->cb(f->ud, GW_OUT_EHEADERS, -1, NULL, 0);
  } else if (f->status == -2) {
    GW_LOG(GW_LOG_WARN, f->module, &lc, "the identity provider's reply was not complete %.3g s after its head",
           (double)f->body_ms / 1000);
    f->cb(f->ud, GW_OUT_EIDLE, -1, NULL, 0);
  } else {
    if (err) {
      const char *detail = gw_out_detail(r);
      GW_LOG(GW_LOG_WARN, f->module, &lc, "fetch from the identity provider failed: %s%s%s", gw_out_strerror(err),
             detail[0] ? ": " : "", detail);
    }
    f->cb(f->ud, err, f->status, f->body.data, f->body.len);
  }
  fetch_free(f);
}

int64_t pages__fetch_body_ms(void) {
  uint64_t ms = FETCH_BODY_MS;
  gw_test_hook_ms("MCPGATE_TEST_FETCH_BODY_MS", FETCH_BODY_MS, "a fetched reply must be complete after its head within", &ms);
  return (int64_t)ms;
}

/* The trust level of url: the admin's when it is on trust's origin. */
static int egress_level(const char *trust, const char *url) {
  if (!trust) return GW_OUT_EGRESS_UNTRUSTED;
  const char *a = strstr(trust, "://");
  size_t olen = a ? (size_t)(a + 3 - trust) + strcspn(a + 3, "/") : strlen(trust);
  return !strncmp(url, trust, olen) && (url[olen] == '/' || url[olen] == 0 || url[olen] == '?')
             ? GW_OUT_EGRESS_ADMIN
             : GW_OUT_EGRESS_UNTRUSTED;
}

int pages__fetch(gw_loop *lp, const pages_fetch_req *rq, pages_fetch_cb cb, void *ud) {
  fetch *f = calloc(1, sizeof *f);
  if (!f) return GW_OUT_ENOMEM;
  gw_buf_init(&f->body, rq->cap);
  f->cb = cb;
  f->ud = ud;
  f->body_until = INT64_MAX; /* set from the head */
  f->body_ms = lp->srv->pages ? lp->srv->pages->fetch_body_ms : FETCH_BODY_MS;
  snprintf(f->tenant, sizeof f->tenant, "%s", rq->tenant ? rq->tenant : "");
  snprintf(f->req_id, sizeof f->req_id, "%s", rq->req_id ? rq->req_id : "");
  snprintf(f->module, sizeof f->module, "%s", rq->module ? rq->module : "oidc");
  if (rq->hdr_name && rq->hdr_out && rq->hdr_cap) {
    snprintf(f->hdr_name, sizeof f->hdr_name, "%s", rq->hdr_name);
    f->hdr_out = rq->hdr_out;
    f->hdr_cap = rq->hdr_cap;
    f->hdr_out[0] = 0;
  }
  f->head_only = rq->head_only;
  gw_out_opts o = {0};
  o.method = rq->method;
  o.url = rq->url;
  o.headers = rq->headers;
  o.body = rq->body;
  o.body_len = rq->body ? strlen(rq->body) : 0;
  o.connect_timeout_ms = FETCH_CONNECT_MS;
  o.first_byte_timeout_ms = FETCH_FIRST_BYTE_MS;
  o.idle_timeout_ms = FETCH_IDLE_MS;
  o.max_header_bytes = 32 * 1024;
  o.egress = egress_level(rq->trust, rq->url);
  o.fair_key = f->tenant;
  /* sign-in: never behind the tenant's calls, and (anyone may start one)
   * never in front of its revocations */
  o.budget_class = GW_OUT_BUDGET_SIGNIN;
  o.ca_file = rq->ca_file;
  /* a ca_file in the tenant's folder of tenant_ca_dir stays inside it */
  char ca_root[PATH_MAX];
  if (rq->ca_file && gw_config_tenant_ca_path(&lp->srv->cfg, f->tenant, rq->ca_file, ca_root, sizeof ca_root))
    o.ca_root = ca_root;
  o.on_headers = on_headers;
  o.on_data = on_data;
  o.on_done = on_done;
  o.ud = f;
  int rc = gw_out_start(lp->out, &o, NULL);
  if (rc) fetch_free(f);
  return rc;
}

/* ---- the provider */

typedef struct lookup {
  gw_loop *lp;
  auth_oidc_cache *cache;
  pages_provider_cb cb;
  void *ud;
  char tenant[64], req_id[17], module[16];
  char issuer[AUTH_OIDC_ISSUER_MAX + 1], client_id[AUTH_OIDC_CLIENT_ID_MAX + 1];
  auth_oidc_provider *base; /* discovery parsed (or the provider whose keys are refetched) */
  bool admitted;            /* holds a fetch admission (auth_oidc_cache_fetch_begin) */
} lookup;

static void lookup_end(lookup *l, auth_oidc_provider *p, int status, const char *why) {
  if (l->admitted) auth_oidc_cache_fetch_end(l->cache, l->tenant, pages__mono_ms(), status ? why : NULL);
  l->cb(l->ud, p, status, why);
  auth_oidc_provider_free(l->base);
  free(l);
}

static void got_jwks(void *ud, int err, int status, const char *body, size_t len) {
  lookup *l = ud;
  char why[300];
  if (err || status != 200) {
    if (err == GW_OUT_EEGRESS)
      snprintf(why, sizeof why, "the jwks_uri's address is not allowed by the operator's egress policy");
    else if (err) snprintf(why, sizeof why, "key set (jwks_uri): %s", gw_out_strerror(err));
    else snprintf(why, sizeof why, "key set (jwks_uri): HTTP %d", status);
    lookup_end(l, NULL, 502, why);
    return;
  }
  auth_jwks *ks;
  int rc = auth_jwks_parse(body, len, &ks);
  if (rc) {
    snprintf(why, sizeof why, "key set (jwks_uri): %s", auth_jose_strerror(rc));
    lookup_end(l, NULL, 502, why);
    return;
  }
  /* a refetch (unknown kid) keeps the discovery document it had */
  auth_oidc_provider *p = auth_oidc_provider_with_keys(l->base, ks, pages__mono_ms());
  auth_jwks_free(ks);
  if (!p) {
    lookup_end(l, NULL, 502, "out of memory");
    return;
  }
  auth_oidc_cache_put(l->cache, p);
  lookup_end(l, p, 0, NULL);
}

static int fetch_jwks(lookup *l) {
  static const char *const hdr[] = {"Accept: application/json", NULL};
  pages_fetch_req rq = {"GET", l->base->jwks_uri, hdr, NULL, AUTH_JOSE_JWKS_MAX, l->issuer, l->tenant, l->req_id,
                        l->module, NULL, NULL, 0, false, NULL};
  return pages__fetch(l->lp, &rq, got_jwks, l);
}

static void got_discovery(void *ud, int err, int status, const char *body, size_t len) {
  lookup *l = ud;
  char why[300] = "";
  if (err || status != 200) {
    if (err == GW_OUT_EEGRESS)
      snprintf(why, sizeof why, "the issuer's address is not allowed by the operator's egress policy (egress_allow)");
    else if (err) snprintf(why, sizeof why, "discovery document: %s", gw_out_strerror(err));
    else snprintf(why, sizeof why, "discovery document: HTTP %d", status);
    lookup_end(l, NULL, 502, why);
    return;
  }
  int rc = auth_oidc_discovery_parse(body, len, l->tenant, l->issuer, l->client_id, pages__mono_ms(), &l->base, why,
                                     sizeof why);
  if (rc) {
    if (!why[0]) snprintf(why, sizeof why, "discovery document: %s", auth_strerror(rc));
    lookup_end(l, NULL, 502, why);
    return;
  }
  if (fetch_jwks(l)) lookup_end(l, NULL, 502, "the jwks_uri cannot be fetched");
}

static lookup *lookup_new(gw_loop *lp, auth_oidc_cache *cache, const char *tenant, const char *issuer,
                          const char *client_id, const char *req_id, const char *module, pages_provider_cb cb,
                          void *ud) {
  lookup *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->lp = lp;
  l->cache = cache;
  l->cb = cb;
  l->ud = ud;
  snprintf(l->tenant, sizeof l->tenant, "%s", tenant);
  snprintf(l->req_id, sizeof l->req_id, "%s", req_id ? req_id : "");
  snprintf(l->module, sizeof l->module, "%s", module ? module : "oidc");
  snprintf(l->issuer, sizeof l->issuer, "%s", issuer);
  snprintf(l->client_id, sizeof l->client_id, "%s", client_id);
  return l;
}

void pages__provider(gw_loop *lp, auth_oidc_cache *cache, const pages_provider_req *r, pages_provider_cb cb,
                     void *ud) {
  auth_oidc_provider *p = NULL;
  int64_t now = pages__mono_ms();
  if (auth_oidc_cache_get(cache, r->tenant, r->issuer, r->client_id, now, &p) == 0) {
    cb(ud, p, 0, NULL);
    return;
  }
  char why[200] = "";
  int adm = auth_oidc_cache_fetch_begin(cache, r->tenant, now, why, sizeof why);
  if (adm == AUTH_OIDC_FETCH_FAILED) {
    cb(ud, NULL, 502, why);
    return;
  }
  if (adm == AUTH_OIDC_FETCH_BUSY) {
    cb(ud, NULL, 503, "the identity provider's metadata is being fetched already");
    return;
  }
  lookup *l = lookup_new(lp, cache, r->tenant, r->issuer, r->client_id, r->req_id, r->module, cb, ud);
  if (!l) {
    auth_oidc_cache_fetch_end(cache, r->tenant, now, "out of memory");
    cb(ud, NULL, 502, "out of memory");
    return;
  }
  l->admitted = true;
  char url[AUTH_OIDC_ISSUER_MAX + 64];
  snprintf(url, sizeof url, "%s/.well-known/openid-configuration", r->issuer);
  static const char *const hdr[] = {"Accept: application/json", NULL};
  pages_fetch_req rq = {"GET", url, hdr, NULL, AUTH_OIDC_DISCOVERY_MAX, r->issuer, r->tenant, r->req_id, r->module, NULL, NULL, 0, false, NULL};
  if (pages__fetch(lp, &rq, got_discovery, l)) lookup_end(l, NULL, 502, "the discovery document cannot be fetched");
}

bool pages__provider_refetch(gw_loop *lp, auth_oidc_cache *cache, auth_oidc_provider *p, const char *req_id,
                             const char *module, pages_provider_cb cb, void *ud) {
  if (!auth_oidc_cache_claim_refetch(cache, p->tenant, pages__mono_ms())) return false;
  lookup *l = lookup_new(lp, cache, p->tenant, p->issuer, p->client_id, req_id, module, cb, ud);
  if (!l) return false;
  l->base = auth_oidc_provider_ref(p);
  if (fetch_jwks(l)) {
    auth_oidc_provider_free(l->base);
    free(l);
    return false;
  }
  return true;
}
