/* gateway/api/oauth_flow.c — the gateway's OAuth authorization server for
 * MCP clients (issue 17): /t/{t}/oauth/authorize (with the Okta sign-in of
 * login.c and the gateway's consent page), /oauth/consent, /oauth/token and
 * /oauth/revoke. Clients are auth/oauth_client.h's, codes and grants
 * auth/oauth_token.h's, the requests' parameters (parsed and checked,
 * strictly) auth/oauth_params.h's: this file acts on their verdict.
 *
 * Rules this file keeps, and why:
 *  - Nothing is redirected to an unverified place: an unknown client or a
 *    redirect URI it did not register gets an error page; only after both
 *    are known do errors go back to the client (RFC 6749 §4.1.2.1), always
 *    with state and iss (RFC 9207, against mix-up) — and before the person
 *    signed in and agreed, only to a loopback redirect: anyone can register
 *    an https one, and the gateway is no open redirector (RFC 9700
 *    §4.11.2).
 *  - PKCE S256 and the resource (RFC 8707: one of this tenant's MCP
 *    endpoints) are required; the code is bound to both, to the client,
 *    the exact redirect URI and the person.
 *  - Consent is the gateway's own page, shown for every client the person
 *    has not allowed before for the resource asked (a connector's consent
 *    is not the aggregated endpoint's) and always when the redirect is not loopback:
 *    anyone can register a client, and Okta will not ask again (the
 *    confused deputy of the MCP security best practices). The pending
 *    request travels sealed (AES-256-GCM, bound to tenant and person) in the
 *    consent form, with the session's CSRF token.
 *  - The sign-in must be younger than the tenant's signin_max_age_ms, or
 *    the person signs in with Okta again first.
 *  - Anyone can send authorize, token and revocation requests, from as
 *    many addresses as they have: the tenant's bucket of the sign-in (auth_rate_per_tenant)
 *    is not spent on what a flood cannot fake. A token request whose grant
 *    works (checked first: a hash and a store read) never takes from it,
 *    nor does an authorize request from a browser signed in to the tenant
 *    (pages.c); junk does, and is refused 429 once it is empty. Every
 *    request takes from its address's bucket; one that skips the tenant's
 *    takes from its own grant's (a code or refresh token) or person's at
 *    the address's rate, so a token or cookie sent from many addresses is
 *    bounded all the same. A revocation that revokes a token takes only
 *    from that token's bucket (no flood keeps a client from revoking its
 *    own token); junk revocations take from the address's and the
 *    tenant's.
 *  - Token texts are drawn on the loop before the writer job (jobs are
 *    pure); replies carry Cache-Control: no-store; no code, token or
 *    verifier is ever logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/jose.h"
#include "auth/oauth_client.h"
#include "auth/oauth_params.h"
#include "auth/oauth_token.h"
#include "gateway/api/oauth_int.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/settings.h"
#include "gateway/http/query.h"
#include "store/dir.h"
#include "store/seal.h"
#include "store/tenant.h"
#include "store/text.h"
#include "store/token.h"
#include "vault/vault.h"
#include "web/web.h"

#define CONSENT_SEAL_KIND "oauth.consent"
#define CONSENT_TTL_S 600

/* ---- small helpers */

/* public_url has no path and no trailing slash (the config refuses both) */
static void pub_base(const gw_server *srv, char *out, size_t cap) { snprintf(out, cap, "%s", srv->cfg.public_url); }

/* gw_respond_json adds Cache-Control: no-store (RFC 6749 §5.1) */
static void json_err(gw_req *req, int status, const char *code, const char *why) {
  gw_resp_header(req, "Pragma", "no-cache");
  gw_respond_json(req, status, json_pack("{s:s,s:s}", "error", code, "error_description", why));
}

/* appends "&k=v" (or "?k=v" first) with v percent-encoded */
static void add_param(gw_buf *b, const char *k, const char *v) {
  static const char hex[] = "0123456789ABCDEF";
  gw_buf_appends(b, memchr(b->data, '?', b->len) ? "&" : "?");
  gw_buf_appends(b, k);
  gw_buf_appends(b, "=");
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
        *p == '.' || *p == '_' || *p == '~') {
      gw_buf_append(b, (const char *)p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      gw_buf_append(b, e, 3);
    }
  }
}

/* 302 back to the client's (verified) redirect URI with params k,v,... */
static void redirect_back(gw_req *req, const char *tenant, const char *redirect_uri, const char *state,
                          const char *const *kv) {
  char iss[1200];
  pub_base(req->lp->srv, iss, sizeof iss);
  snprintf(iss + strlen(iss), sizeof iss - strlen(iss), "/t/%s", tenant);
  gw_buf b;
  gw_buf_init(&b, 16384);
  gw_buf_appends(&b, redirect_uri);
  for (const char *const *p = kv; p && p[0]; p += 2) add_param(&b, p[0], p[1]);
  if (state && state[0]) add_param(&b, "state", state);
  add_param(&b, "iss", iss);
  gw_buf_append(&b, "", 1);
  pages__headers(req, false);
  gw_resp_header(req, "Location", b.data ? b.data : redirect_uri);
  gw_respond(req, 302, NULL, NULL, 0);
  if (b.data) OPENSSL_cleanse(b.data, b.len);
  gw_buf_free(&b);
}

static void redirect_error(gw_req *req, const char *tenant, const char *redirect_uri, const char *state,
                           const char *code, const char *why) {
  const char *kv[] = {"error", code, "error_description", why, NULL};
  redirect_back(req, tenant, redirect_uri, state, kv);
}

/* An error before the person took part (a malformed request, a resource
 * that is none of this tenant's): sent back to a loopback redirect (the
 * application on this computer shows it), but shown here for any other.
 * Anyone may register a client with any https redirect, and redirecting
 * without sign-in or consent would make this gateway's address a link to
 * wherever they like (RFC 9700 §4.11.2). */
static void early_error(gw_req *req, const char *tenant, const char *redirect_uri, const char *state,
                        const char *code, const char *why) {
  if (auth_oauth_redirect_is_loopback(redirect_uri)) {
    redirect_error(req, tenant, redirect_uri, state, code, why);
    return;
  }
  char msg[600];
  snprintf(msg, sizeof msg,
           "The application's request was refused (%s: %.400s). mcpgate does not send you back to an address off "
           "this computer before you have signed in and agreed. Start again from the application.",
           code, why ? why : "");
  pages__message(req, 400, tenant, "Request refused", msg, NULL, NULL);
}

/* The resource (RFC 8707) → "" (the tenant's aggregated endpoint: every
 * connector) or a connector name; -1 when it is none of this tenant's. */
static int resource_connector(gw_req *req, const char *tenant, const char *resource, char conn[33]) {
  char base[1300];
  pub_base(req->lp->srv, base, sizeof base);
  snprintf(base + strlen(base), sizeof base - strlen(base), "/t/%s/mcp", tenant);
  size_t bl = strlen(base);
  conn[0] = 0;
  if (!resource || strncmp(resource, base, bl)) return -1;
  const char *rest = resource + bl;
  if (rest[0] == 0) return 0;
  if (rest[0] != '/' || !vault_connector_name_valid(rest + 1) || strlen(rest + 1) > 32) return -1;
  st_txn *txn;
  if (st_read_begin(req->lp->srv->store, &txn)) return -1;
  json_t *c = NULL;
  int rc = vault_connector_get(txn, tenant, rest + 1, &c);
  st_txn_end(txn);
  json_decref(c);
  if (rc) return -1;
  snprintf(conn, 33, "%s", rest + 1);
  return 0;
}

static void redirect_host(const char *uri, char *out, size_t cap) {
  const char *a = strstr(uri, "://");
  a = a ? a + 3 : uri;
  size_t n = strcspn(a, "/?");
  if (n >= cap) n = cap - 1;
  memcpy(out, a, n);
  out[n] = 0;
}

/* ---- the code: a writer job, then the redirect */

typedef struct code_job {
  gw_req *req;
  char tenant[64];
  auth_oauth_code c;
  uint8_t hash[32];
  char code[ST_TOKEN_BUFSZ];
  char state[AUTH_OAUTH_STATE_MAX + 1];
  bool consent;      /* record the consent too */
  bool ru_ok;        /* out: the client's record still allows c.redirect_uri (read in the job) */
  int64_t now, idle_s;
  /* the browser session the person agreed in: the code is written only
   * while it lives (a Universal Logout, a sign-out everywhere, a revoke
   * then restore committed since the loop read it deleted it) */
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
} code_job;

static int job_code(st_txn *txn, void *arg) {
  code_job *j = arg;
  /* the client first, and the redirect URI against its record as it is
   * now: an admin's delete since the request was checked swept its codes
   * and consents, and nothing may be issued to it after that; a document
   * fetched again or pinned anew while the consent page was open may no
   * longer list the redirect URI — nothing, not even an error, goes there
   * then (done_code redirects only when ru_ok) */
  j->ru_ok = false;
  int rc = auth_oauth_client_redirect_still(txn, j->tenant, j->c.client_id, j->c.redirect_uri);
  if (rc) return rc;
  j->ru_ok = true;
  rc = st_tenant_active(txn, j->tenant);
  if (!rc && st_dir_user_active(txn, j->tenant, j->c.user_id) != 1) rc = AUTH_EINACTIVE;
  if (!rc && (rc = auth_browser_still(txn, j->tenant, j->cookie, j->now, j->idle_s, j->c.user_id)) == ST_ENOTFOUND)
    rc = AUTH_ELOGIN;
  /* a consent given (in the same write: the person's least recently used
   * past the cap go), or one relied on (its use orders that cap) — read
   * again here: a disconnect committed since the loop read it withdrew it,
   * and nothing is issued without asking then */
  if (!rc && j->consent) {
    rc = auth_oauth_consent_put(txn, j->tenant, j->c.user_id, j->c.client_id, j->c.connector, j->now);
  } else if (!rc) {
    rc = auth_oauth_consent_get(txn, j->tenant, j->c.user_id, j->c.client_id, j->c.connector);
    if (rc == ST_ENOTFOUND) rc = AUTH_EOAUTH_CONSENT_GONE;
    if (!rc) rc = auth_oauth_consent_use(txn, j->tenant, j->c.user_id, j->c.client_id, j->now);
  }
  if (!rc) rc = auth_oauth_code_put(txn, j->hash, &j->c, j->now);
  if (!rc) rc = auth_oauth_client_touch(txn, j->tenant, j->c.client_id, j->now);
  return rc;
}

/* The client was removed while the person decided: no longer a client of
 * this tenant, its redirect URI is nobody's to send the person to (Allow
 * or Deny alike). */
static void client_removed(gw_req *req, const char *tenant) {
  pages__message(req, 400, tenant, "Application removed",
                 "Your organisation's administrator removed this application from mcpgate while you were "
                 "deciding, so it is no longer allowed to connect. Nothing was granted.",
                 NULL, NULL);
}

/* The client's record no longer lists the redirect URI the person was
 * asked about (its document changed while they decided): the address is
 * no longer the client's to be sent to. */
static void redirect_removed(gw_req *req, const char *tenant) {
  pages__message(req, 400, tenant, "Application changed",
                 "This application's description changed while you were deciding, and it no longer lists the "
                 "address you were to be sent back to. Nothing was granted. Start again from the application.",
                 NULL, NULL);
}

static void done_code(int status, void *arg) {
  code_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == AUTH_EOAUTH_CLIENT_GONE) {
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "authorization code not issued: client %s was deleted meanwhile",
           j->c.client_id);
    client_removed(req, j->tenant);
  } else if (status == AUTH_EOAUTH_REDIRECT) {
    GW_LOG(GW_LOG_INFO, "oauth", &lc,
           "authorization code not issued: client %s no longer lists the redirect URI the person was asked about",
           j->c.client_id);
    redirect_removed(req, j->tenant);
  } else if (status && !j->ru_ok) {
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "authorization code not issued: %s", auth_strerror(status));
    pages__message(req, 503, j->tenant, "Try again",
                   "mcpgate could not check this application right now. Nothing was granted. Start again from the "
                   "application.",
                   NULL, NULL);
  } else if (status) {
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "authorization code not issued: %s", auth_strerror(status));
    bool denied = status == AUTH_EINACTIVE || status == AUTH_ELOGIN || status == AUTH_EOAUTH_CONSENT_GONE;
    redirect_error(req, j->tenant, j->c.redirect_uri, j->state, denied ? "access_denied" : "server_error",
                   status == AUTH_EINACTIVE  ? "your account is not active"
                   : status == AUTH_ELOGIN   ? "you were signed out meanwhile: sign in and try again"
                   : status == AUTH_EOAUTH_CONSENT_GONE ? "this application was disconnected meanwhile: try again to be asked"
                   : status == ST_EMAPFULL   ? "the gateway's store is full: the grant could not be recorded"
                                             : "the gateway could not record the grant");
  } else {
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "authorization code issued to client %s for user %s (resource %s)",
           j->c.client_id, j->c.user_id, j->c.connector[0] ? j->c.connector : "all");
    const char *kv[] = {"code", j->code, NULL};
    redirect_back(req, j->tenant, j->c.redirect_uri, j->state, kv);
  }
  OPENSSL_cleanse(j, sizeof *j);
  free(j);
}

/* A code that could not even be submitted: back to the client when its
 * redirect URI was checked against its record just now (authorize), but a
 * page after a consent page (the record may have changed since: only the
 * job re-reads it). */
static void issue_failed(gw_req *req, const char *tenant, const auth_oauth_code *c, const char *state, bool consent,
                         const char *code, const char *why) {
  if (!consent) redirect_error(req, tenant, c->redirect_uri, state, code, why);
  else pages__message(req, 503, tenant, "Try again", "mcpgate could not record your decision right now. Start again "
                      "from the application.", NULL, NULL);
}

static void issue_code(gw_req *req, const char *tenant, const auth_oauth_code *c, const char *state, bool consent) {
  gw_server *srv = req->lp->srv;
  code_job *j = calloc(1, sizeof *j);
  if (!j || st_token_new(AUTH_OAUTH_CODE_PREFIX, j->code, sizeof j->code) ||
      st_token_hash(j->code, strlen(j->code), j->hash)) {
    free(j);
    issue_failed(req, tenant, c, state, consent, "server_error", "the gateway could not draw a code");
    return;
  }
  j->req = req;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  j->c = *c;
  j->now = pages__now();
  j->c.expires = j->now + srv->cfg.oauth_code_ttl_ms / 1000;
  if (j->c.expires <= j->now) j->c.expires = j->now + 1;
  snprintf(j->state, sizeof j->state, "%s", state ? state : "");
  j->consent = consent;
  char cname[96];
  pages__cookie_name(srv, tenant, PAGES_COOKIE_SESSION, cname, sizeof cname);
  pages__cookie_get(req, cname, j->cookie, sizeof j->cookie);
  j->idle_s = srv->cfg.browser_session_idle_ms / 1000;
  if (gw_loop_submit(req->lp, job_code, done_code, j)) {
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
    issue_failed(req, tenant, c, state, consent, "temporarily_unavailable", "the gateway's store is busy");
  }
}

/* ---- consent: the sealed pending request */

static char *seal_request(gw_server *srv, const char *tenant, const auth_oauth_code *c, const char *state,
                          int64_t now) {
  json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "c", c->client_id, "n", c->client_name, "r",
                        c->redirect_uri, "ch", c->challenge, "k", c->connector, "s", state ? state : "", "si",
                        (json_int_t)c->signin_at, "e", (json_int_t)(now + CONSENT_TTL_S));
  char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!txt) return NULL;
  st_aad aad = {tenant, CONSENT_SEAL_KIND, c->user_id};
  uint8_t *blob = NULL;
  size_t bl = 0;
  int rc = st_seal(srv->store, &aad, txt, strlen(txt), &blob, &bl);
  free(txt);
  if (rc) return NULL;
  size_t cap = AUTH_B64URL_ENCODED_LEN(bl) + 1;
  char *out = malloc(cap);
  if (out) auth_b64url_encode(blob, bl, out, cap);
  free(blob);
  return out;
}

static int open_request(gw_server *srv, const char *tenant, const char *user, const char *text, int64_t now,
                        auth_oauth_code *c, char *state, size_t statecap) {
  size_t n = text ? strlen(text) : 0;
  if (n == 0 || n > 8192) return -1;
  uint8_t *blob = malloc(AUTH_B64URL_DECODED_LEN(n) + 1);
  size_t bl = 0;
  if (!blob || auth_b64url_decode(text, n, blob, AUTH_B64URL_DECODED_LEN(n) + 1, &bl)) {
    free(blob);
    return -1;
  }
  st_aad aad = {tenant, CONSENT_SEAL_KIND, user};
  uint8_t *pt = NULL;
  size_t pn = 0;
  int rc = st_unseal(srv->store, &aad, blob, bl, &pt, &pn);
  free(blob);
  if (rc) return -1;
  json_t *j = json_loadb((const char *)pt, pn, JSON_REJECT_DUPLICATES, NULL);
  st_secret_free(pt, pn);
  const char *cid = json_string_value(json_object_get(j, "c")), *nm = json_string_value(json_object_get(j, "n"));
  const char *ru = json_string_value(json_object_get(j, "r")), *ch = json_string_value(json_object_get(j, "ch"));
  const char *k = json_string_value(json_object_get(j, "k")), *st = json_string_value(json_object_get(j, "s"));
  int64_t e = (int64_t)json_integer_value(json_object_get(j, "e"));
  rc = -1;
  if (cid && nm && ru && ch && k && st && now < e && strlen(cid) < sizeof c->client_id &&
      strlen(nm) < sizeof c->client_name && strlen(ru) < sizeof c->redirect_uri && strlen(ch) < sizeof c->challenge &&
      strlen(k) < sizeof c->connector && strlen(st) < statecap) {
    memset(c, 0, sizeof *c);
    snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
    snprintf(c->client_id, sizeof c->client_id, "%s", cid);
    snprintf(c->client_name, sizeof c->client_name, "%s", nm);
    snprintf(c->redirect_uri, sizeof c->redirect_uri, "%s", ru);
    snprintf(c->challenge, sizeof c->challenge, "%s", ch);
    snprintf(c->connector, sizeof c->connector, "%s", k);
    snprintf(c->user_id, sizeof c->user_id, "%s", user);
    c->signin_at = (int64_t)json_integer_value(json_object_get(j, "si"));
    snprintf(state, statecap, "%s", st);
    rc = 0;
  }
  json_decref(j);
  return rc;
}

static void consent_page(gw_req *req, const char *tenant, const auth_oauth_code *c, const char *state,
                         const auth_browser *s) {
  gw_server *srv = req->lp->srv;
  char *sealed = seal_request(srv, tenant, c, state, pages__now());
  if (!sealed) {
    pages__message(req, 500, tenant, "Authorization failed", "The gateway could not prepare the consent page.", NULL,
                   NULL);
    return;
  }
  char host[300], resource[1400], user[300] = "";
  redirect_host(c->redirect_uri, host, sizeof host);
  pub_base(srv, resource, sizeof resource);
  snprintf(resource + strlen(resource), sizeof resource - strlen(resource), "/t/%s/mcp%s%s", tenant,
           c->connector[0] ? "/" : "", c->connector);
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) == 0) {
    json_t *u = NULL;
    if (st_dir_user_get(txn, tenant, s->user_id, &u) == 0)
      snprintf(user, sizeof user, "%s", json_string_value(json_object_get(u, "userName")) ?: "");
    json_decref(u);
    st_txn_end(txn);
  }
  /* the name as shown: a code point that hides or reorders text is
   * written as its escape (store/text.h) — a registration refuses the
   * reordering ones, but a name stored before that rule, or one that only
   * hides, must not disguise itself or turn the page's warning backwards */
  char *name = st_text_shown(c->client_name[0] ? c->client_name : "an unnamed application");
  const char *kv[] = {"tenant", tenant, "client_name", name ? name : "an unnamed application",
                      "client_id", c->client_id, "user", user, "resource", resource, "redirect_host", host,
                      "request", sealed, "csrf", s->csrf, NULL};
  char *out = NULL;
  size_t len = 0;
  /* Allow and Deny are answered with a redirect to the client */
  pages__headers_form_to(req, c->redirect_uri);
  if (name && web_render("consent.html", kv, &out, &len) == 0) gw_respond(req, 200, "text/html; charset=utf-8", out, len);
  else gw_respond_error(req, 500, "internal", "the consent page cannot be rendered");
  free(out);
  free(name);
  free(sealed);
}

/* ---- GET /t/{t}/oauth/authorize */

/* The request's parameters (auth/oauth_params.h), kept while the client is
 * looked up (a Client ID Metadata Document may be fetched). */
typedef struct authz {
  char tenant[64];
  int rc; /* auth_oauth_authorize_parse's */
  auth_oauth_authz_params p;
} authz;

static void authorize_client(gw_req *req, json_t *client, int status, const char *error, const char *why, void *arg);

void pages__authorize(gw_req *req, const char *tenant) {
  const char *q = req->query ? req->query : "";
  authz *a = calloc(1, sizeof *a);
  if (!a) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
  a->rc = auth_oauth_authorize_parse(q, strlen(q), &a->p);
  if (a->rc == AUTH_EOAUTH_CLIENT_ID) {
    gw_log_ctx lc = {tenant, req->id};
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "authorization refused: %s", a->p.why);
    char msg[400];
    snprintf(msg, sizeof msg,
             "The application that sent you here made a request mcpgate cannot use (%s). Start again from the "
             "application.",
             a->p.why);
    pages__message(req, 400, tenant, "Invalid request", msg, NULL, NULL);
    free(a);
    return;
  }
  /* 1. the client: a registration, a pinned document, or its Client ID
   * Metadata Document (oauth_cimd.c); the callback always runs later */
  gw_oauth_client_lookup(req, tenant, a->p.client_id, authorize_client, a);
}

static void authorize_client(gw_req *req, json_t *client, int status, const char *error, const char *why, void *arg) {
  authz *a = arg;
  gw_server *srv = req->lp->srv;
  const char *tenant = a->tenant, *ru = a->p.redirect_uri, *state = a->p.state;
  st_txn *txn;
  (void)error;
  if (!client) {
    gw_log_ctx lc = {tenant, req->id};
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "authorization refused: client %s: %s", a->p.client_id,
           why ? why : "unknown");
    if (status == 403) pages__message(req, 403, tenant, "Application blocked",
                                      "Your organisation's administrator blocked this application in mcpgate. "
                                      "Nothing was granted.",
                                      NULL, NULL);
    else if (status >= 500) pages__message(req, status == 503 ? 503 : 502, tenant, "Try again",
                                      "mcpgate could not read this application's description right now. Try again "
                                      "from the application in a minute.",
                                      NULL, NULL);
    else pages__message(req, 400, tenant, "Unknown application",
                        "The application that sent you here is not registered with this mcpgate, or its description "
                        "was refused (client_id). Start again from the application.",
                        NULL, NULL);
    free(a);
    return;
  }
  /* the redirect URI must be one the client registered: refused here,
   * never redirected ("" when the parser refused it) */
  bool ru_ok = a->rc != AUTH_EOAUTH_REDIRECT && ru[0] &&
               auth_oauth_redirect_match(json_object_get(client, "redirect_uris"), ru);
  if (!ru_ok) {
    json_decref(client);
    pages__message(req, 400, tenant, "Invalid redirect",
                   "The application asked to be sent back to an address it did not register (redirect_uri). "
                   "mcpgate will not send you there.",
                   NULL, NULL);
    free(a);
    return;
  }
  auth_oauth_code c;
  memset(&c, 0, sizeof c);
  snprintf(c.tenant, sizeof c.tenant, "%s", tenant);
  _Static_assert(sizeof c.client_id == sizeof a->p.client_id && sizeof c.redirect_uri == sizeof a->p.redirect_uri &&
                     sizeof c.challenge == sizeof a->p.challenge,
                 "the code's fields hold what the parser keeps");
  memcpy(c.client_id, a->p.client_id, sizeof c.client_id);
  const char *nm = json_string_value(json_object_get(client, "client_name"));
  snprintf(c.client_name, sizeof c.client_name, "%s", nm ? nm : "");
  memcpy(c.redirect_uri, ru, sizeof c.redirect_uri);
  json_decref(client);
  /* 2. errors from here go back to the client (the parser's first) when
   * it is on this computer (early_error) */
  if (a->rc) {
    early_error(req, tenant, ru, state, a->p.error, a->p.why);
    goto done;
  }
  memcpy(c.challenge, a->p.challenge, sizeof c.challenge);
  if (resource_connector(req, tenant, a->p.resource, c.connector)) {
    early_error(req, tenant, ru, state, "invalid_target",
                   "resource must be this tenant's MCP endpoint (<public_url>/t/{tenant}/mcp or .../mcp/{connector})");
    goto done;
  }
  /* 3. the person: a browser session whose Okta sign-in is recent enough */
  auth_browser s;
  int64_t max_age = 0;
  bool fresh = false;
  if (pages__session(req, tenant, &s) == 0 && st_read_begin(srv->store, &txn) == 0) {
    gw_settings_get_int(txn, tenant, "signin_max_age_ms", &max_age);
    st_txn_end(txn);
    fresh = s.signin_at + max_age / 1000 > pages__now();
  }
  if (!fresh) {
    gw_buf b;
    gw_buf_init(&b, 8192);
    gw_buf_printf(&b, "/t/%s/login", tenant);
    char back[AUTH_LOGIN_RETURN_MAX + 1];
    const char *q = req->query ? req->query : "";
    int n = snprintf(back, sizeof back, "/t/%s/oauth/authorize?%s", tenant, q);
    if (n < 0 || (size_t)n >= sizeof back) {
      gw_buf_free(&b);
      early_error(req, tenant, ru, state, "invalid_request", "the authorization request is too long");
      goto done;
    }
    add_param(&b, "return", back);
    gw_buf_append(&b, "", 1);
    pages__headers(req, false);
    gw_resp_header(req, "Location", b.data);
    gw_respond(req, 302, NULL, NULL, 0);
    gw_buf_free(&b);
    goto done;
  }
  snprintf(c.user_id, sizeof c.user_id, "%s", s.user_id);
  c.signin_at = s.signin_at;
  /* 4. consent: asked for every client not allowed before for this
   * resource (one connector's consent is not every connector's), and always for
   * a redirect off this computer */
  bool known = false;
  if (st_read_begin(srv->store, &txn) == 0) {
    known = auth_oauth_consent_get(txn, tenant, s.user_id, a->p.client_id, c.connector) == 0;
    st_txn_end(txn);
  }
  if (known && auth_oauth_redirect_is_loopback(ru)) issue_code(req, tenant, &c, state, false);
  else consent_page(req, tenant, &c, state, &s);
done:
  free(a);
}

/* ---- POST /t/{t}/oauth/consent */

void pages__consent(gw_req *req, const char *tenant) {
  if (strcmp(req->method, "POST")) {
    gw_resp_header(req, "Allow", "POST");
    pages__message(req, 405, tenant, "Wrong method", "Use the consent page's buttons.", NULL, NULL);
    return;
  }
  auth_browser s;
  if (pages__session(req, tenant, &s)) {
    pages__message(req, 401, tenant, "Signed out", "Your session ended before you decided. Start again from the application.",
                   NULL, NULL);
    return;
  }
  const char *body = req->body ? req->body : "";
  char csrf[64] = "", decision[16] = "";
  char *request = malloc(8200);
  if (!request) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  request[0] = 0;
  gw_query_get(body, "csrf", csrf, sizeof csrf);
  gw_query_get(body, "decision", decision, sizeof decision);
  gw_query_get(body, "request", request, 8200);
  auth_oauth_code c;
  char state[AUTH_OAUTH_STATE_MAX + 1];
  if (!pages__csrf_ok(req, &s, csrf[0] ? csrf : NULL) ||
      open_request(req->lp->srv, tenant, s.user_id, request, pages__now(), &c, state, sizeof state)) {
    free(request);
    pages__message(req, 403, tenant, "Request refused",
                   "This decision did not come from your consent page, or it expired. Start again from the "
                   "application.",
                   NULL, NULL);
    return;
  }
  free(request);
  gw_log_ctx lc = {tenant, req->id};
  if (strcmp(decision, "allow")) {
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "user %s denied client %s", s.user_id, c.client_id);
    /* a client removed meanwhile, or whose record no longer lists this
     * redirect URI, is sent nothing (Allow's job finds out the same); a
     * store that cannot be read sends nobody anywhere either */
    st_txn *txn;
    int still = st_read_begin(req->lp->srv->store, &txn);
    if (!still) {
      still = auth_oauth_client_redirect_still(txn, tenant, c.client_id, c.redirect_uri);
      st_txn_end(txn);
    }
    if (still == AUTH_EOAUTH_CLIENT_GONE) client_removed(req, tenant);
    else if (still == AUTH_EOAUTH_REDIRECT) redirect_removed(req, tenant);
    else if (still)
      pages__message(req, 503, tenant, "Try again", "mcpgate could not record your decision right now. Start again "
                     "from the application.", NULL, NULL);
    else redirect_error(req, tenant, c.redirect_uri, state, "access_denied", "the person denied the request");
    return;
  }
  c.signin_at = s.signin_at;
  issue_code(req, tenant, &c, state, true);
}

/* ---- POST /t/{t}/oauth/token */

typedef struct token_job {
  gw_req *req;
  char tenant[64];
  auth_oauth_token_params p; /* the request (auth/oauth_params.h): client, redirect, verifier, code/token hash */
  auth_oauth_issue x;
} token_job;

static int job_token(st_txn *txn, void *arg) {
  token_job *j = arg;
  int64_t max_ms = 0;
  gw_settings_get_int(txn, j->tenant, "signin_max_age_ms", &max_ms);
  j->x.max_signin_age = max_ms / 1000;
  j->x.replayed = j->x.reused = false;
  return j->p.refresh ? auth_oauth_refresh(txn, j->p.hash, j->p.client_id, &j->x)
                      : auth_oauth_exchange_code(txn, j->p.hash, j->p.client_id, j->p.redirect_uri, j->p.verifier,
                                                 &j->x);
}

static void done_token(int status, void *arg) {
  token_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == 0 && j->x.reused) {
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "a %s came back after use: its grant was revoked (client %s)",
           j->p.refresh ? "rotated refresh token" : "used authorization code", j->p.client_id);
    json_err(req, 400, "invalid_grant", "this grant was already used; every token it issued is revoked");
  } else if (status == AUTH_EOAUTH_SIGNIN) {
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "%s refused for client %s: the sign-in is older than signin_max_age_ms",
           j->p.refresh ? "refresh" : "code exchange", j->p.client_id);
    json_err(req, 400, "invalid_grant",
             "the Okta sign-in behind this grant is older than this tenant allows (signin_max_age_ms): sign in again");
  } else if (status == AUTH_EOAUTH_GRANT || status == ST_ENOTFOUND) {
    json_err(req, 400, "invalid_grant",
             j->p.refresh ? "the refresh token is invalid, expired or revoked: sign in again"
                          : "the code is invalid, expired or used, or the redirect_uri, client_id or code_verifier "
                            "does not match");
  } else if (status == ST_EMAPFULL) {
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "token request refused: the store is full");
    json_err(req, 507, "server_error",
             "the gateway's store is full: no tokens can be issued until an operator makes room");
  } else if (status) {
    GW_LOG(GW_LOG_ERROR, "oauth", &lc, "token request failed: %s", auth_strerror(status));
    json_err(req, 503, "temporarily_unavailable", "the gateway's store could not record the grant; try again");
  } else {
    int64_t now = pages__now();
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "%s for client %s, user %s, grant %s%s",
           j->p.refresh ? "tokens refreshed" : "tokens issued", j->x.client_id, j->x.user_id, j->x.family_out,
           j->x.replayed ? " (the same pair again, within the grace window)" : "");
    gw_resp_header(req, "Pragma", "no-cache");
    gw_respond_json(req, 200,
                    json_pack("{s:s,s:s,s:I,s:s}", "access_token", j->x.access, "token_type", "Bearer", "expires_in",
                              (json_int_t)(j->x.access_expires > now ? j->x.access_expires - now : 0),
                              "refresh_token", j->x.refresh));
  }
  OPENSSL_cleanse(j, sizeof *j);
  free(j);
}

/* A token request that does not work (malformed, or a grant the job would
 * refuse) takes a token of the tenant's bucket (auth_rate_per_tenant):
 * true when there was none, and the request has been answered 429. */
static bool failure_limited(gw_req *req, const char *tenant) {
  if (!pages__rate_wait_tenant(req, tenant)) return false;
  json_err(req, 429, "rate_limited", "too many requests; retry after the Retry-After seconds");
  return true;
}

/* A token request that works takes a token of its code's or refresh
 * token's own bucket (the address's rate, auth_rate_per_address): its
 * holder may send it from any address, and a rotated refresh token works
 * again and again within refresh_reuse_grace_ms (each a writer job) —
 * their addresses must not multiply that. A client uses each only once or
 * twice. True when there was none: answered 429. */
static bool grant_limited(gw_req *req, const uint8_t hash[32]) {
  char key[40] = "grant:";
  for (int i = 0; i < 16; i++) snprintf(key + 6 + 2 * i, 3, "%02x", hash[i]);
  if (!pages__rate_wait_key(req, key)) return false;
  json_err(req, 429, "rate_limited", "too many requests; retry after the Retry-After seconds");
  return true;
}

/* A revocation request that revokes nothing (malformed, or a token this
 * client could not revoke: junk) takes a token of its address's bucket and
 * then of the tenant's (auth_rate_per_address, auth_rate_per_tenant): true
 * when there was none, and the request has been answered 429. */
static bool junk_limited(gw_req *req, const char *tenant) {
  if (!pages__rate_wait_address(req) && !pages__rate_wait_tenant(req, tenant)) return false;
  json_err(req, 429, "rate_limited", "too many requests; retry after the Retry-After seconds");
  return true;
}

/* The token and revocation endpoints take a form POST: true when this is
 * one, else the request has been answered (its refusal first spends what
 * limited(req, tenant) takes, and may be a 429). */
static bool form_post(gw_req *req, const char *tenant, bool (*limited)(gw_req *, const char *)) {
  const char *ct = gw_req_header(req, "Content-Type");
  bool post = !strcmp(req->method, "POST");
  if (post && ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) return true;
  if (limited(req, tenant)) return false;
  if (!post) {
    gw_resp_header(req, "Allow", "POST");
    json_err(req, 405, "invalid_request", "use POST");
  } else {
    json_err(req, 400, "invalid_request", "the body must be application/x-www-form-urlencoded");
  }
  return false;
}

/* Whether the grant of j's request works (auth_oauth_*_check: it issues,
 * or revokes a grant that is still there): a read of the store, no write.
 * j->x's moment and sign-in age are set. A store that cannot be read: no
 * (counted as a failure; the job decides). */
static bool grant_works(gw_server *srv, token_job *j) {
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) return false;
  int64_t max_ms = 0;
  gw_settings_get_int(txn, j->tenant, "signin_max_age_ms", &max_ms);
  j->x.max_signin_age = max_ms / 1000;
  int rc = j->p.refresh ? auth_oauth_refresh_check(txn, j->p.hash, j->p.client_id, &j->x)
                        : auth_oauth_exchange_check(txn, j->p.hash, j->p.client_id, j->p.redirect_uri,
                                                    j->p.verifier, &j->x);
  st_txn_end(txn);
  return rc == 0;
}

/* The tenant's bucket of the sign-in (auth_rate_per_tenant) holds only
 * token requests that do not work: anyone can send junk (codes and
 * refresh tokens that are none) from as many addresses as they have, and
 * when that spent the bucket shared by every request, each MCP client's
 * refresh of the tenant was answered 429 and every agent was cut off once
 * its access token expired. A grant that works is checked first (a hash and
 * a store read) and never refused by it; junk and guesses still take from
 * it, and are refused 429 once it is empty. The address's bucket holds all
 * (the router took from it). */
void pages__token(gw_req *req, const char *tenant) {
  gw_server *srv = req->lp->srv;
  if (!form_post(req, tenant, failure_limited)) return;
  token_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_err(req, 500, "server_error", "out of memory");
    return;
  }
  if (auth_oauth_token_parse(req->body ? req->body : "", req->body ? req->body_len : 0, &j->p)) {
    if (!failure_limited(req, tenant)) json_err(req, 400, j->p.error, j->p.why);
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
    return;
  }
  j->req = req;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->x.tenant, sizeof j->x.tenant, "%s", tenant);
  j->x.now_ms = gw_wall_ms(); /* one reading: the second and the millisecond agree */
  j->x.now = j->x.now_ms / 1000;
  if (grant_works(srv, j) ? grant_limited(req, j->p.hash) : failure_limited(req, tenant)) {
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
    return;
  }
  j->x.access_ttl = srv->cfg.access_token_ttl_ms / 1000;
  j->x.refresh_ttl = srv->cfg.refresh_token_ttl_ms / 1000;
  j->x.grace = srv->cfg.refresh_reuse_grace_ms / 1000;
  j->x.grace_ms = srv->cfg.refresh_reuse_grace_ms; /* the window to the millisecond */
  if (st_token_new(AUTH_OAUTH_ACCESS_PREFIX, j->x.access, sizeof j->x.access) ||
      st_token_new(AUTH_OAUTH_REFRESH_PREFIX, j->x.refresh, sizeof j->x.refresh) ||
      st_token_hash(j->x.access, strlen(j->x.access), j->x.access_hash) ||
      st_token_hash(j->x.refresh, strlen(j->x.refresh), j->x.refresh_hash) || st_token_id_new(j->x.family)) {
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
    json_err(req, 500, "server_error", "the gateway could not draw tokens");
    return;
  }
  if (gw_loop_submit(req->lp, job_token, done_token, j)) {
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
    json_err(req, 503, "temporarily_unavailable", "the gateway's store cannot take writes right now");
  }
}

/* ---- POST /t/{t}/oauth/revoke (RFC 7009) */

typedef struct revoke_job {
  gw_req *req;
  char tenant[64];
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  uint8_t hash[32];
} revoke_job;

static int job_revoke(st_txn *txn, void *arg) {
  revoke_job *j = arg;
  return auth_oauth_revoke_token(txn, j->tenant, j->hash, j->client_id);
}

static void done_revoke(int status, void *arg) {
  revoke_job *j = arg;
  if (status) json_err(j->req, 503, "temporarily_unavailable", "the gateway's store could not revoke it; try again");
  else {
    gw_resp_header(j->req, "Cache-Control", "no-store");
    gw_respond(j->req, 200, NULL, NULL, 0);
  }
  free(j);
}

/* Anyone may send revocation requests, from as many addresses as they
 * have, and each costs a hash and a store read (one that revokes, a job on
 * the writer). Junk — malformed, or a token this client could not revoke —
 * takes from its address's bucket and the tenant's (as the token
 * endpoint's junk does) and is refused 429 once either is empty. A request
 * that revokes a token takes neither: only from the bucket of the token it
 * names (the address's rate), so that no flood, from any address, the
 * client's own included, keeps a client from revoking its own token — and
 * once revoked the token is junk. */
void pages__revoke(gw_req *req, const char *tenant) {
  if (!form_post(req, tenant, junk_limited)) return;
  revoke_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_err(req, 500, "server_error", "out of memory");
    return;
  }
  auth_oauth_revoke_params p;
  if (auth_oauth_revoke_parse(req->body ? req->body : "", req->body ? req->body_len : 0, &p)) {
    free(j);
    if (!junk_limited(req, tenant)) json_err(req, 400, p.error, p.why);
    return;
  }
  /* not one of ours, or none this client could revoke: nothing to do (RFC
   * 7009 §2.2), and no job on the writer every tenant's deactivations
   * share — anyone may send these, with no credential */
  st_txn *txn;
  if (p.ours && st_read_begin(req->lp->srv->store, &txn) == 0) {
    p.ours = auth_oauth_token_revocable(txn, tenant, p.hash, p.client_id);
    st_txn_end(txn);
  }
  if (!p.ours ? junk_limited(req, tenant) : grant_limited(req, p.hash)) {
    free(j);
    return;
  }
  if (!p.ours) {
    free(j);
    gw_resp_header(req, "Cache-Control", "no-store");
    gw_respond(req, 200, NULL, NULL, 0);
    return;
  }
  memcpy(j->client_id, p.client_id, sizeof j->client_id);
  memcpy(j->hash, p.hash, sizeof j->hash);
  j->req = req;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  if (gw_loop_submit(req->lp, job_revoke, done_revoke, j)) {
    free(j);
    json_err(req, 503, "temporarily_unavailable", "the gateway's store cannot take writes right now");
  }
}
