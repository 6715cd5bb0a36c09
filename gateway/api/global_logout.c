/* gateway/api/global_logout.c — POST /t/{t}/oauth/global-logout, the
 * receiver of Okta's Universal Logout (Global Token Revocation,
 * draft-parecki-oauth-global-token-revocation): Okta names a user, and
 * every credential the gateway issued them goes — employee tokens, OAuth
 * grants and codes, browser sessions, MCP sessions, live streams and calls
 * on every loop — exactly as an admin's revoke cuts, except that the user
 * is neither blocked nor deactivated: the SCIM record stays, and the person
 * may sign in again afterwards (store/dir.h: st_dir_user_sign_out).
 *
 * The request, in order (auth/gtr.h has the rules of each part):
 *   1. rate limit per client address (logout_rate_per_address) → 429
 *   2. the tenant exists → 404; it has OIDC settings (the keys to verify
 *      with) and a Bearer token is present → else 401, nothing done
 *   3. the logout issuer's keys (cached; discovery + JWKS fetched through
 *      oidc_fetch.c, in a cache of their own) → 503 when they cannot be had
 *   4. the JWT's signature (RS256/ES256; an unknown kid refetches the keys
 *      once a minute at most), typ, iss, aud, sub, exp, nbf, iat, jti → 401
 *   5. rate limit per tenant (logout_rate_per_tenant), counting only
 *      requests whose token verified → 429
 *   6. the body: application/json → else 415; its shape → 400
 *   7. the writer job: the jti consumed (a replay → 401), the subject's
 *      user (unknown → 404; several → 422), the sign-out and its hooks; the
 *      reply waits for every loop to have ended the user's streams and
 *      calls (the fan-out gate, gateway/mcp/revoke.c) → 204, or 422 when
 *      the store could not do it — then the user is cut in memory all the
 *      same (store/dir.h, "logout": until a sign-out of them commits).
 * Okta's guide asks for authentication before anything else: a malformed
 * body with a bad token is a 401. The jti is consumed by any verified
 * request that reaches the store, unknown subjects included.
 *
 * A 404 tells a caller holding a valid Okta-signed token whether a user
 * exists: the draft accepts that, as only the tenant's Okta can sign one.
 *
 * Rules this file keeps, and why:
 *  - Nothing is done unless every check passed: the store is written only
 *    in step 7, after authentication.
 *  - No token, claim value or subject (an e-mail address) is logged or put
 *    into an answer; answers name the check that failed, which is what an
 *    admin setting Universal Logout up needs. Users are logged by id.
 *  - Answers are OAuth-style JSON ({error, error_description}, no-store);
 *    Okta reads only the status.
 *
 * Flow lifetime: a gtr_flow owns its request until it responds; the
 * provider lookup's callback and the writer job's done are the only
 * callbacks that touch it, one at a time. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/gtr.h"
#include "auth/jose.h"
#include "auth/oidc.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/log.h"
#include "gateway/base/ratelimit.h"
#include "store/dir.h"
#include "store/tenant.h"

#define PATH_SUFFIX "/oauth/global-logout"

typedef struct gtr_flow {
  gw_req *req;
  gw_loop *lp;
  char tenant[64];
  json_t *settings;          /* the tenant's OIDC record */
  char *token;               /* the bearer JWT (wiped) */
  auth_oidc_provider *prov;  /* the logout issuer's, a reference */
  bool refetched;
  /* the body, parsed before the token is checked, judged after */
  bool json_type;
  int body_rc;
  char body_why[300];
  auth_gtr_subject subj;
  auth_gtr_token tok;
  int64_t now;               /* read on the loop: the job stays pure */
  /* the job's */
  int outcome;               /* 0 signed out; ST_ENOTFOUND, AUTH_EGTR_SUBJECT_ISS, AUTH_EAMBIGUOUS */
  char uid[ST_DIR_ID_LEN + 1];
  const char *why;           /* a static string: why the sign-out could not be written */
} gtr_flow;

static gw_pages *pages_of(gw_req *req) { return req->lp->srv->pages; }

static void count(gw_server *srv, int result) {
  if (srv->pages && result >= 0 && result < PAGES_GTR_N)
    atomic_fetch_add_explicit(&srv->pages->logouts[result], 1, memory_order_relaxed);
}

/* {"error": code, "error_description": …} (gw_respond_json: no-store) */
static void answer(gw_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void answer(gw_req *req, int status, const char *code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (status == 401) {
    /* RFC 6750 §3: no error code when no credential was sent */
    char wa[80];
    snprintf(wa, sizeof wa, "Bearer%s", strcmp(code, "invalid_token") ? "" : " error=\"invalid_token\"");
    gw_resp_header(req, "WWW-Authenticate", wa);
  }
  gw_respond_json(req, status, json_pack("{s:s,s:s}", "error", code, "error_description", msg));
}

static void flow_free(gtr_flow *f) {
  json_decref(f->settings);
  if (f->token) {
    OPENSSL_cleanse(f->token, strlen(f->token));
    free(f->token);
  }
  auth_oidc_provider_free(f->prov);
  OPENSSL_cleanse(&f->subj, sizeof f->subj);
  free(f);
}

static void unauthorized(gtr_flow *f, const char *why) {
  gw_log_ctx lc = {f->tenant, f->req->id};
  GW_LOG(GW_LOG_WARN, "logout", &lc, "Universal Logout refused, nothing done: %s", why);
  count(f->lp->srv, PAGES_GTR_UNAUTHORIZED);
  answer(f->req, 401, "invalid_token", "the logout token was refused (%s); nothing was done", why);
  flow_free(f);
}

/* ---- the token: "Bearer <compact JWS>" */

/* The token of an Authorization header, or NULL (absent, another scheme,
 * not three base64url parts, over AUTH_JOSE_TOKEN_MAX). Points into h. */
static const char *bearer(const char *h, size_t *len) {
  if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
  const char *t = h + 7;
  while (*t == ' ') t++;
  size_t n = strlen(t);
  while (n && t[n - 1] == ' ') n--;
  int dots = 0;
  if (n == 0 || n > AUTH_JOSE_TOKEN_MAX) return NULL;
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    if (c == '.') dots++;
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return NULL;
  }
  if (dots != 2) return NULL;
  *len = n;
  return t;
}

/* Before the body is read: a request without a plausible Bearer token is
 * answered at once (the body is never buffered for it). */
static int gtr_preauth(gw_req *req) {
  size_t n;
  if (bearer(gw_req_header(req, "authorization"), &n)) return 0;
  count(req->lp->srv, PAGES_GTR_UNAUTHORIZED);
  answer(req, 401, "invalid_request", "a Bearer token (the JWT Okta signs) is required; nothing was done");
  return -1;
}

static void gtr_early_error(gw_req *req, int status, const char *msg) {
  if (status == 413) count(req->lp->srv, PAGES_GTR_MALFORMED);
  answer(req, status, status == 413 ? "invalid_request" : "bad_request", "%s", msg);
}

/* ---- the writer job */

static int job_sign_out(st_txn *txn, void *arg) {
  gtr_flow *f = arg;
  f->outcome = 0;
  f->uid[0] = 0;
  int rc = st_tenant_active(txn, f->tenant);
  if (rc) return rc;
  if ((rc = auth_gtr_jti_consume(txn, &f->tok, f->now))) return rc;
  rc = auth_gtr_resolve(txn, f->tenant, f->settings, &f->subj, f->uid);
  if (rc == ST_ENOTFOUND || rc == AUTH_EGTR_SUBJECT_ISS || rc == AUTH_EAMBIGUOUS) {
    f->outcome = rc; /* nothing to sign out; the jti stays used */
    return 0;
  }
  if (rc) return rc;
  return st_dir_user_sign_out(txn, f->tenant, f->uid, "universal_logout");
}

/* The job could not be written (a full store, a failing disk): the user
 * the token names is still taken out, in memory (store/dir.h, "logout":
 * until a sign-out of them commits), as a deactivation would be. The
 * token was verified; its jti was not consumed (nothing was written), so
 * Okta's retry does the sign-out. Whether a user was cut. */
static bool cut_in_memory(gtr_flow *f) {
  st_store *st = f->lp->srv->store;
  st_txn *txn;
  if (!st || st_read_begin(st, &txn) != 0) return false;
  char uid[ST_DIR_ID_LEN + 1] = "";
  int rc = auth_gtr_resolve(txn, f->tenant, f->settings, &f->subj, uid);
  st_txn_end(txn);
  if (rc || !uid[0]) return false;
  snprintf(f->uid, sizeof f->uid, "%s", uid);
  return st_dir_user_cut_unwritten(st, f->tenant, uid, "logout") == 0;
}

/* the 422 once every loop ended what the cut in memory took away
 * (gw_loop_after_fanout), as a committed sign-out's answer (found by
 * review: it left first) */
static void cut_settled(int ignored, void *arg) {
  (void)ignored;
  gtr_flow *f = arg;
  answer(f->req, 422, "unable_to_logout",
         "the gateway could not write the sign-out (%s); the user is cut in memory until it is written", f->why);
  flow_free(f);
}

static void done_sign_out(int status, void *arg) {
  gtr_flow *f = arg;
  gw_req *req = f->req;
  gw_server *srv = f->lp->srv;
  gw_log_ctx lc = {f->tenant, req->id};
  const char *fmt = auth_gtr_format_name(f->subj.format);
  if (status == AUTH_EGTR_REPLAY) {
    unauthorized(f, "this token (its jti) was used already");
    return;
  }
  if (status == ST_ENOTFOUND) { /* the tenant went away meanwhile */
    count(srv, PAGES_GTR_UNKNOWN_SUBJECT);
    answer(req, 404, "not_found", "no such tenant");
  } else if (status) {
    count(srv, PAGES_GTR_FAILED);
    const char *why = status == ST_EBUSY ? "the store is busy" : status == ST_EMAPFULL ? "the store is full" : "store error";
    if (cut_in_memory(f)) {
      GW_LOG(GW_LOG_ERROR, "logout", &lc,
             "Universal Logout could not be written (%s): user %s is cut in memory instead — every credential "
             "refused, live streams ended — until a sign-out of them is written (Okta's retry, or an admin's "
             "restore once the store has room)",
             auth_strerror(status), f->uid);
      f->why = why;
      if (gw_loop_after_fanout(f->lp, cut_settled, f) == 0) return;
      answer(req, 422, "unable_to_logout",
             "the gateway could not write the sign-out (%s); the user is cut in memory until it is written", why);
    } else {
      GW_LOG(GW_LOG_ERROR, "logout", &lc, "Universal Logout failed, nothing done: %s", auth_strerror(status));
      answer(req, 422, "unable_to_logout", "the gateway could not sign the user out (%s); nothing was done", why);
    }
  } else if (f->outcome == AUTH_EAMBIGUOUS) {
    GW_LOG(GW_LOG_WARN, "logout", &lc,
           "Universal Logout could not be done: several users have this Okta subject as externalId (fix the "
           "duplicates, or revoke each through the admin API)");
    count(srv, PAGES_GTR_FAILED);
    answer(req, 422, "unable_to_logout",
           "several users of this tenant have this subject as externalId: none was signed out");
  } else if (f->outcome) {
    GW_LOG(GW_LOG_INFO, "logout", &lc, "Universal Logout for an unknown subject (%s format): nothing done", fmt);
    count(srv, PAGES_GTR_UNKNOWN_SUBJECT);
    answer(req, 404, "user_not_found", "%s",
           f->outcome == AUTH_EGTR_SUBJECT_ISS
               ? "the subject's iss is not this tenant's Okta (its sign-in or logout issuer): no such user"
               : "no user of this tenant matches the subject");
  } else {
    GW_LOG(GW_LOG_WARN, "logout", &lc,
           "Universal Logout: user %s signed out everywhere (%s subject); their tokens, grants and sessions are "
           "gone, their account stays",
           f->uid, fmt);
    count(srv, PAGES_GTR_DONE);
    gw_respond(req, 204, NULL, NULL, 0);
  }
  flow_free(f);
}

/* ---- the token's checks, then the body, then the job */

static void got_provider(void *ud, auth_oidc_provider *p, int status, const char *why);

static void verify(gtr_flow *f) {
  gw_server *srv = f->lp->srv;
  gw_req *req = f->req;
  json_t *hdr = NULL, *claims = NULL;
  int rc = auth_jws_verify_header(f->prov->jwks, f->token, strlen(f->token), &hdr, &claims);
  if (rc == AUTH_JOSE_ENOKEY && !f->refetched) {
    /* Okta may have rotated its keys: fetch them once more */
    f->refetched = true;
    if (pages__provider_refetch(f->lp, pages_of(req)->oidc_logout, f->prov, req->id, "logout", got_provider, f))
      return;
  }
  if (!rc) {
    char aud[1200];
    snprintf(aud, sizeof aud, "%s/t/%s" PATH_SUFFIX, srv->cfg.public_url, f->tenant);
    auth_gtr_expect want = {f->tenant, f->prov->doc_issuer, aud,
                            json_string_value(json_object_get(f->settings, "client_id")), pages__now(),
                            AUTH_GTR_SKEW_S};
    rc = auth_gtr_check(hdr, claims, &want, &f->tok);
  }
  json_decref(hdr);
  json_decref(claims);
  if (rc) {
    unauthorized(f, auth_strerror(rc));
    return;
  }
  /* only Okta-signed requests count against the tenant (and cost a write) */
  int64_t wait = gw_ratelimit_take(pages_of(req)->rate_logout_tenant, f->tenant, pages__mono_ms());
  if (wait) {
    char ra[24];
    snprintf(ra, sizeof ra, "%lld", (long long)wait);
    gw_resp_header(req, "Retry-After", ra);
    count(srv, PAGES_GTR_RATE_LIMITED);
    answer(req, 429, "rate_limited", "too many logout requests for this tenant; retry after the Retry-After seconds");
    flow_free(f);
    return;
  }
  if (!f->json_type || f->body_rc) {
    gw_log_ctx lc = {f->tenant, req->id};
    GW_LOG(GW_LOG_INFO, "logout", &lc, "Universal Logout refused, nothing done: %s",
           f->json_type ? f->body_why : "the body is not application/json");
    count(srv, PAGES_GTR_MALFORMED);
    if (!f->json_type) answer(req, 415, "invalid_request", "the body must be application/json; nothing was done");
    else answer(req, 400, "invalid_request", "%s; nothing was done", f->body_why);
    flow_free(f);
    return;
  }
  f->now = pages__now();
  if (gw_loop_submit(f->lp, job_sign_out, done_sign_out, f)) {
    count(srv, PAGES_GTR_FAILED);
    answer(req, 422, "unable_to_logout", "the gateway's store cannot take writes right now; nothing was done");
    flow_free(f);
  }
}

static void got_provider(void *ud, auth_oidc_provider *p, int status, const char *why) {
  gtr_flow *f = ud;
  if (status) {
    gw_log_ctx lc = {f->tenant, f->req->id};
    GW_LOG(GW_LOG_WARN, "logout", &lc, "Universal Logout cannot be verified, nothing done: the logout issuer's keys: %s",
           why ? why : "unavailable");
    count(f->lp->srv, PAGES_GTR_UNAVAILABLE);
    gw_resp_header(f->req, "Retry-After", status == 503 ? "2" : "30");
    answer(f->req, 503, "temporarily_unavailable",
           "the tenant's Okta keys cannot be fetched right now, so the token cannot be verified (the gateway's log "
           "says why); nothing was done");
    flow_free(f);
    return;
  }
  auth_oidc_provider_free(f->prov);
  f->prov = p;
  verify(f);
}

static bool json_content_type(const gw_req *req) {
  const char *ct = gw_req_header(req, "content-type");
  if (!ct) return false;
  size_t n = strcspn(ct, "; ");
  return n == 16 && !strncasecmp(ct, "application/json", 16);
}

void pages__global_logout(gw_req *req) {
  gw_server *srv = req->lp->srv;
  char tenant[64];
  /* /t/{tenant}/oauth/global-logout: the router guarantees the shape */
  const char *p = req->path + 3;
  size_t tl = strcspn(p, "/");
  if (tl == 0 || tl >= sizeof tenant) {
    answer(req, 404, "not_found", "no such tenant");
    return;
  }
  memcpy(tenant, p, tl);
  tenant[tl] = 0;
  if (!st_tenant_id_valid(tenant)) {
    answer(req, 404, "not_found", "no such tenant");
    return;
  }
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  char key[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key(req->client, key); /* IPv6 by its /64, as the sign-in's */
  int64_t wait = gw_ratelimit_take(pages_of(req)->rate_logout_addr, key, pages__mono_ms());
  if (wait) {
    char ra[24];
    snprintf(ra, sizeof ra, "%lld", (long long)wait);
    gw_resp_header(req, "Retry-After", ra);
    count(srv, PAGES_GTR_RATE_LIMITED);
    answer(req, 429, "rate_limited", "too many requests from this address; retry after the Retry-After seconds");
    return;
  }
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) {
    count(srv, PAGES_GTR_UNAVAILABLE);
    gw_resp_header(req, "Retry-After", "1");
    answer(req, 503, "temporarily_unavailable", "the gateway's store cannot be read right now; nothing was done");
    return;
  }
  json_t *settings = NULL;
  int rc = st_tenant_active(txn, tenant);
  int orc = rc ? rc : auth_oidc_get(txn, tenant, &settings);
  st_txn_end(txn);
  if (rc == ST_ENOTFOUND) {
    answer(req, 404, "not_found", "no such tenant");
    return;
  }
  if (rc || (orc && orc != ST_ENOTFOUND)) {
    json_decref(settings);
    count(srv, PAGES_GTR_UNAVAILABLE);
    gw_resp_header(req, "Retry-After", "1");
    answer(req, 503, "temporarily_unavailable", "the tenant's settings cannot be read right now; nothing was done");
    return;
  }
  gw_log_ctx lc = {tenant, req->id};
  char logout_iss[AUTH_OIDC_ISSUER_MAX + 1];
  if (orc == ST_ENOTFOUND || auth_oidc_logout_issuer(settings, logout_iss, sizeof logout_iss)) {
    json_decref(settings);
    GW_LOG(GW_LOG_WARN, "logout", &lc, "Universal Logout refused: the tenant has no OIDC settings to verify it with");
    count(srv, PAGES_GTR_UNAUTHORIZED);
    answer(req, 401, "invalid_token",
           "this tenant has no Okta (OIDC) settings, so no logout token can be verified; nothing was done");
    return;
  }
  size_t tn;
  const char *tok = bearer(gw_req_header(req, "authorization"), &tn);
  if (!tok) {
    json_decref(settings);
    count(srv, PAGES_GTR_UNAUTHORIZED);
    answer(req, 401, "invalid_request", "a Bearer token (the JWT Okta signs) is required; nothing was done");
    return;
  }
  gtr_flow *f = calloc(1, sizeof *f);
  if (!f || !(f->token = strndup(tok, tn))) {
    free(f);
    json_decref(settings);
    answer(req, 500, "server_error", "out of memory");
    return;
  }
  f->req = req;
  f->lp = req->lp;
  f->settings = settings;
  snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
  f->json_type = json_content_type(req);
  if (f->json_type)
    f->body_rc = auth_gtr_parse_body(req->body, req->body_len, &f->subj, f->body_why, sizeof f->body_why);
  pages_provider_req pr = {tenant, logout_iss, json_string_value(json_object_get(settings, "client_id")), req->id,
                           "logout"};
  pages__provider(f->lp, pages_of(req)->oidc_logout, &pr, got_provider, f);
}

const gw_route pages__global_logout_route = {GW_RC_OAUTH, pages__global_logout, "POST", AUTH_GTR_BODY_MAX,
                                             gtr_early_error, gtr_preauth};
