/* gateway/api/login.c — "Sign in with Okta": /t/{t}/login and its callback
 * /t/{t}/oauth/callback, the relying-party half of OpenID Connect toward
 * the tenant's provider (auth/login.h has the protocol's pure parts,
 * auth/oidc_provider.h the metadata and keys, auth/browser.h the session).
 *
 * Rules this file keeps, and why:
 *  - Every fetch (discovery, JWKS, token endpoint) goes through
 *    oidc_fetch.c: the loop's outbound engine, the operator's egress policy
 *    (the issuer set by a tenant admin at the admin trust level), timeouts,
 *    a body cap and a deadline for the whole body, so a provider that
 *    trickles cannot hold sign-ins open.
 *  - An unauthenticated visitor costs no store write: /login only seals a
 *    cookie. Fetches of a cold or failing provider are admitted through the
 *    cache (a few in flight, a short hold after a failure).
 *  - The callback refuses anything without this browser's sealed login
 *    cookie for this tenant and the same state, before any fetch — the
 *    provider's error answers too — and leaves the sign-in under way, if
 *    any, as it was: another site can send a browser here (its cookie is
 *    SameSite=Lax) but cannot end or fake the end of its sign-in. The code
 *    is exchanged once (the provider enforces it) and the state is
 *    consumed in the session's write job (a replay fails there too).
 *  - The ID token is verified against the provider's keys (RS256/ES256
 *    only); an unknown kid refetches the keys at most once a minute per
 *    tenant. Claims: iss, aud, azp, exp/nbf/iat with 120 s of skew, nonce.
 *  - Linking runs inside the write job that creates the session, so a
 *    deactivation committed before it wins; so does any cut (a Universal
 *    Logout, a revoke then restore) committed after the sign-in began: the
 *    login cookie carries its start, and the job refuses a sign-in that
 *    began before the user's last cut (auth/browser.h).
 *  - No code, token, secret or claim value is logged or shown; errors say
 *    what failed in words an employee or the tenant's admin can act on.
 *
 * Flow lifetime: a login_flow owns its request until it responds; its
 * outbound transfer's on_done and its writer job's done are the only
 * callbacks that touch it, one at a time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/auth.h"
#include "auth/browser.h"
#include "auth/jose.h"
#include "auth/login.h"
#include "auth/oidc.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/http/query.h"
#include "gateway/out/outbound.h"
#include "store/store.h"
#include "store/tenant.h"

#define CLAIM_SKEW_S 120

typedef struct login_flow login_flow;
typedef void (*next_fn)(login_flow *f);

struct login_flow {
  gw_req *req;
  gw_loop *lp;
  char tenant[64];
  bool callback;
  json_t *settings;            /* the tenant's OIDC record */
  char *secret;                /* callback: the client secret (wiped) */
  auth_oidc_provider *prov;    /* a reference */
  next_fn next;                /* what to do once prov is ready */
  /* callback */
  auth_login login;
  char *code;
  json_t *claims;
  bool refetched;
  auth_browser_new bn;
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
};

static gw_pages *pages_of(login_flow *f) { return f->lp->srv->pages; }

static void flow_free(login_flow *f) {
  json_decref(f->settings);
  if (f->secret) auth_oidc_secret_free(f->secret);
  auth_oidc_provider_free(f->prov);
  auth_login_wipe(f->code);
  json_decref(f->claims);
  OPENSSL_cleanse(&f->login, sizeof f->login);
  OPENSSL_cleanse(f->cookie, sizeof f->cookie);
  OPENSSL_cleanse(f->bn.csrf, sizeof f->bn.csrf);
  free(f);
}

/* Ends the flow with a message page. */
static void flow_fail(login_flow *f, int status, const char *title, const char *msg) {
  if (f->callback)
    pages__count(f->lp->srv, status == 403   ? PAGES_SIGNIN_REFUSED
                             : status == 401 ? PAGES_SIGNIN_INVALID
                             : status == 400 ? PAGES_SIGNIN_STALE
                                             : PAGES_SIGNIN_PROVIDER);
  char href[96];
  snprintf(href, sizeof href, "/t/%s/login", f->tenant);
  pages__message(f->req, status, f->tenant, title, msg, status >= 500 || status == 400 ? href : NULL,
                 status >= 500 || status == 400 ? "Try again" : NULL);
  flow_free(f);
}

static void provider_down(login_flow *f, const char *why) {
  gw_log_ctx lc = {f->tenant, f->req->id};
  GW_LOG(GW_LOG_WARN, "login", &lc, "the tenant's OpenID provider is unusable: %s", why);
  flow_fail(f, 502, "Sign-in is unavailable",
            "mcpgate cannot reach this organisation's identity provider right now. Try again in a minute; "
            "if it keeps failing, tell IT (the gateway's log says why).");
}

/* ---- the provider: cached, else discovery then keys (oidc_fetch.c) */

static void got_provider(void *ud, auth_oidc_provider *p, int status, const char *why) {
  login_flow *f = ud;
  if (status == 503) {
    gw_resp_header(f->req, "Retry-After", "2");
    flow_fail(f, 503, "Sign-in is starting up", "mcpgate is contacting your identity provider. Try again in a moment.");
  } else if (status) {
    provider_down(f, why);
  } else {
    auth_oidc_provider_free(f->prov);
    f->prov = p;
    f->next(f);
  }
}

/* Runs next once f->prov is ready (cached, or fetched now). */
static void with_provider(login_flow *f, next_fn next) {
  pages_provider_req r = {f->tenant, json_string_value(json_object_get(f->settings, "issuer")),
                          json_string_value(json_object_get(f->settings, "client_id")), f->req->id, "login"};
  f->next = next;
  pages__provider(f->lp, pages_of(f)->oidc, &r, got_provider, f);
}

/* ---- common start: the tenant's settings */

static login_flow *flow_new(gw_req *req, const char *tenant, bool callback) {
  gw_server *srv = req->lp->srv;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) {
    pages__message(req, 503, tenant, "Try again", "The gateway's store is busy. Try again in a moment.", NULL, NULL);
    return NULL;
  }
  json_t *settings = NULL;
  int rc = st_tenant_active(txn, tenant);
  if (rc == 0) rc = auth_oidc_get(txn, tenant, &settings);
  char *secret = NULL;
  if (rc == 0 && callback) rc = auth_oidc_secret(txn, tenant, &secret);
  st_txn_end(txn);
  if (rc) {
    json_decref(settings);
    if (secret) auth_oidc_secret_free(secret);
    if (rc == ST_ENOTFOUND && !settings)
      pages__message(req, 404, tenant, "Sign-in is not set up",
                     "This organisation has not connected mcpgate to its identity provider yet. Ask IT.", NULL, NULL);
    else
      pages__message(req, 500, tenant, "Sign-in failed", "The gateway cannot read this organisation's sign-in settings.",
                     NULL, NULL);
    return NULL;
  }
  login_flow *f = calloc(1, sizeof *f);
  if (!f) {
    json_decref(settings);
    if (secret) auth_oidc_secret_free(secret);
    gw_respond_error(req, 500, "internal", "out of memory");
    return NULL;
  }
  f->req = req;
  f->lp = req->lp;
  f->callback = callback;
  f->settings = settings;
  f->secret = secret;
  snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
  return f;
}

/* public_url has no path and no trailing slash (the config refuses both) */
static void redirect_uri(const gw_server *srv, const char *tenant, char *out, size_t cap) {
  snprintf(out, cap, "%s/t/%s/oauth/callback", srv->cfg.public_url, tenant);
}

/* ---- /t/{t}/login */

static void login_go(login_flow *f) {
  gw_server *srv = f->lp->srv;
  char ret[AUTH_LOGIN_RETURN_MAX + 1] = "", cb[1200];
  if (f->req->query && gw_query_get(f->req->query, "return", ret, sizeof ret) == 1) {
    char pre[80];
    snprintf(pre, sizeof pre, "/t/%s/", f->tenant);
    if (strncmp(ret, pre, strlen(pre))) ret[0] = 0; /* only back into this tenant's pages */
  }
  auth_login l;
  char *cookie = NULL, *url = NULL;
  redirect_uri(srv, f->tenant, cb, sizeof cb);
  const char *issuer = json_string_value(json_object_get(f->settings, "issuer"));
  int rc = auth_login_new(&l, issuer, ret, pages__now());
  if (rc == ST_EINVAL) rc = auth_login_new(&l, issuer, "", pages__now());
  l.started_ms = gw_wall_ms();
  if (!rc) rc = auth_login_seal(srv->store, f->tenant, &l, &cookie);
  if (!rc) rc = auth_login_authorize_url(f->prov, f->settings, cb, &l, &url);
  OPENSSL_cleanse(&l, sizeof l);
  if (rc) {
    free(cookie);
    free(url);
    flow_fail(f, 500, "Sign-in failed", "The gateway could not start the sign-in.");
    return;
  }
  pages__cookie_set(f->req, f->tenant, PAGES_COOKIE_LOGIN, cookie, AUTH_LOGIN_TTL_S);
  auth_login_wipe(cookie);
  pages__headers(f->req, false);
  gw_resp_header(f->req, "Location", url);
  free(url);
  gw_respond(f->req, 302, NULL, NULL, 0);
  flow_free(f);
}

void pages__login(gw_req *req, const char *tenant) {
  login_flow *f = flow_new(req, tenant, false);
  if (f) with_provider(f, login_go);
}

/* ---- /t/{t}/oauth/callback */

static void verify_token(login_flow *f, const char *id_token);
static void session_job_submit(login_flow *f);

/* the keys were fetched again after an unknown kid: one more try with the
 * ID token kept in f->code */
static void refetched(login_flow *f) { verify_token(f, NULL); }

static void got_token(void *ud, int err, int status, const char *body, size_t len) {
  login_flow *f = ud;
  char why[200];
  if (err) {
    provider_down(f, err == GW_OUT_EEGRESS ? "the token endpoint's address is not allowed by the egress policy"
                                           : gw_out_strerror(err));
    return;
  }
  char *id_token = NULL;
  int rc = auth_login_token_response(status, body, len, &id_token, why, sizeof why);
  if (rc) {
    gw_log_ctx lc = {f->tenant, f->req->id};
    GW_LOG(GW_LOG_WARN, "login", &lc, "sign-in refused: %s", why);
    flow_fail(f, 502, "Sign-in failed",
              "Your identity provider did not complete the sign-in. Start again; if it keeps failing, tell IT.");
    return;
  }
  /* the code is spent: keep the ID token in its place until verified */
  auth_login_wipe(f->code);
  f->code = id_token;
  verify_token(f, id_token);
}

static void verify_token(login_flow *f, const char *id_token) {
  gw_log_ctx lc = {f->tenant, f->req->id};
  if (!id_token) id_token = f->code;
  json_t *claims = NULL;
  int rc = auth_jws_verify(f->prov->jwks, id_token, strlen(id_token), &claims);
  if (rc == AUTH_JOSE_ENOKEY && !f->refetched) {
    /* the provider may have rotated its keys: fetch them once more */
    f->refetched = true;
    f->next = refetched;
    if (pages__provider_refetch(f->lp, pages_of(f)->oidc, f->prov, f->req->id, "login", got_provider, f)) return;
  }
  if (!rc) {
    auth_idtoken_expect want = {.issuer = f->prov->doc_issuer,
                                .client_id = f->prov->client_id,
                                .nonce = f->login.nonce,
                                .now = pages__now(),
                                .skew = CLAIM_SKEW_S};
    rc = auth_idtoken_check(claims, &want);
  }
  if (rc) {
    json_decref(claims);
    GW_LOG(GW_LOG_WARN, "login", &lc, "ID token refused: %s", auth_jose_strerror(rc));
    snprintf(f->req->audit_note, sizeof f->req->audit_note, "ID token refused: %s", auth_jose_strerror(rc));
    flow_fail(f, 401, "Sign-in could not be verified",
              "The identity provider's answer did not pass the gateway's checks, so you are not signed in. "
              "Start again; if it keeps failing, tell IT (the gateway's log says which check failed).");
    return;
  }
  f->claims = claims;
  auth_login_wipe(f->code);
  f->code = NULL;
  session_job_submit(f);
}

static void callback_go(login_flow *f) {
  gw_server *srv = f->lp->srv;
  char cb[1200];
  redirect_uri(srv, f->tenant, cb, sizeof cb);
  char *body = NULL, *authz = NULL;
  int rc = auth_login_token_request(f->prov, f->secret, f->code, cb, f->login.verifier, &body, &authz);
  if (rc) {
    flow_fail(f, 500, "Sign-in failed", "The gateway could not complete the sign-in.");
    return;
  }
  char *authz_line = NULL;
  if (authz) {
    size_t n = strlen(authz) + 32;
    authz_line = malloc(n);
    if (authz_line) snprintf(authz_line, n, "Authorization: %s", authz);
    auth_login_wipe(authz);
  }
  const char *hdr[] = {"Accept: application/json", "Content-Type: application/x-www-form-urlencoded", authz_line,
                       NULL};
  pages_fetch_req rq = {"POST", f->prov->token_endpoint, hdr, body, AUTH_LOGIN_TOKEN_RESPONSE_MAX,
                        json_string_value(json_object_get(f->settings, "issuer")), f->tenant, f->req->id, "login", NULL, NULL, 0, false, NULL};
  rc = (authz && !authz_line) ? GW_OUT_ENOMEM : pages__fetch(f->lp, &rq, got_token, f);
  auth_login_wipe(body);
  auth_login_wipe(authz_line);
  if (rc) provider_down(f, "the token endpoint cannot be called");
}

/* An OAuth error code from the provider, made safe to show. */
static void safe_code(const char *in, char *out, size_t cap) {
  size_t o = 0;
  for (; *in && o + 1 < cap && o < 40; in++)
    if ((*in >= 'a' && *in <= 'z') || *in == '_') out[o++] = *in;
  out[o] = 0;
}

/* Whether the callback's state is the one of this browser's sign-in under
 * way (its sealed login cookie, unexpired): only then is an error or a code
 * the provider's answer to it. */
static bool answers_this_browser(gw_req *req, const char *tenant, const char *cookie, const char *state) {
  if (!cookie || !state || !state[0]) return false;
  auth_login l;
  bool ok = auth_login_open(req->lp->srv->store, tenant, cookie, state, pages__now(), &l) == 0;
  OPENSSL_cleanse(&l, sizeof l);
  return ok;
}

void pages__callback(gw_req *req, const char *tenant) {
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    pages__message(req, 405, tenant, "Wrong method", "Open this address in your browser.", NULL, NULL);
    return;
  }
  char err[64] = "", state[AUTH_LOGIN_RAND_LEN + 2] = "", cname[96], cookie[AUTH_LOGIN_COOKIE_MAX + 1];
  char *code = malloc(2048);
  if (!code) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  code[0] = 0;
  const char *q = req->query ? req->query : "";
  bool have_err = gw_query_get(q, "error", err, sizeof err) == 1;
  bool have_code = gw_query_get(q, "code", code, 2048) == 1 && code[0] && strlen(code) < 2047;
  bool have_state = gw_query_get(q, "state", state, sizeof state) == 1;
  pages__cookie_name(req->lp->srv, tenant, PAGES_COOKIE_LOGIN, cname, sizeof cname);
  const char *lc = pages__cookie_get(req, cname, cookie, sizeof cookie);
  login_flow *f = NULL;
  if ((have_err || have_code) && !answers_this_browser(req, tenant, lc, have_state ? state : NULL)) {
    /* no answer to a sign-in of this browser: another site's navigation
     * (the cookie is SameSite=Lax, so a cross-site navigation's answer
     * could clear it), a stale tab, a link sent by someone else. Refused
     * without touching the sign-in under way, if any */
    gw_log_ctx c = {tenant, req->id};
    GW_LOG(GW_LOG_INFO, "login", &c, "sign-in callback refused: %s",
           lc ? "the login cookie does not match this sign-in (expired, replaced or forged)"
              : "no login cookie (started in another browser, or cookies blocked)");
    pages__count(req->lp->srv, PAGES_SIGNIN_STALE);
    char href[96];
    snprintf(href, sizeof href, "/t/%s/login", tenant);
    pages__message(req, 400, tenant, "This sign-in link is not valid any more",
                   "It expired, was already used, or was started in another browser. Start again.", href, "Try again");
    goto done;
  }
  if (have_err) {
    char shown[64], msg[300];
    safe_code(err, shown, sizeof shown);
    snprintf(msg, sizeof msg,
             "Your identity provider ended the sign-in (%s). If you think you should have access, ask IT to "
             "assign mcpgate to you.",
             shown[0] ? shown : "error");
    pages__cookie_set(req, tenant, PAGES_COOKIE_LOGIN, NULL, 0);
    pages__count(req->lp->srv, PAGES_SIGNIN_REFUSED);
    pages__message(req, 403, tenant, "Sign-in was not completed", msg, NULL, NULL);
    goto done;
  }
  if (!have_code || !have_state) {
    pages__message(req, 400, tenant, "Not a sign-in answer",
                   "This address is where your identity provider sends you back after signing in; it was opened "
                   "without a sign-in answer.",
                   NULL, NULL);
    goto done;
  }
  f = flow_new(req, tenant, true);
  if (!f) goto done;
  if (auth_login_open(req->lp->srv->store, tenant, lc, state, pages__now(), &f->login) ||
      strcmp(f->login.issuer, json_string_value(json_object_get(f->settings, "issuer")))) {
    /* this browser's sign-in, but begun with another provider (the
     * tenant's settings changed since) or expired a moment ago: spent */
    gw_log_ctx c = {tenant, req->id};
    GW_LOG(GW_LOG_INFO, "login", &c,
           "sign-in callback refused: the sign-in began with another identity provider, or just expired");
    pages__cookie_set(req, tenant, PAGES_COOKIE_LOGIN, NULL, 0);
    flow_fail(f, 400, "This sign-in link is not valid any more",
              "It expired, was already used, or was started in another browser. Start again.");
    goto done;
  }
  /* a replayed callback (the state was consumed by a sign-in already) is
   * refused before the code is exchanged; the session's job consumes the
   * state atomically, so two racing callbacks cannot both get through */
  st_txn *txn;
  int used = st_read_begin(req->lp->srv->store, &txn);
  if (used == 0) {
    used = auth_login_state_used(txn, f->login.state, f->login.expires);
    st_txn_end(txn);
  }
  if (used) {
    gw_log_ctx c = {tenant, req->id};
    GW_LOG(GW_LOG_WARN, "login", &c, "sign-in callback refused: its state was used already (replayed callback)");
    pages__cookie_set(req, tenant, PAGES_COOKIE_LOGIN, NULL, 0);
    flow_fail(f, 400, "This sign-in link is not valid any more", "It was already used. Start again.");
    goto done;
  }
  f->code = code;
  code = NULL;
  with_provider(f, callback_go);
done:
  if (code) auth_login_wipe(code);
  OPENSSL_cleanse(cookie, sizeof cookie);
}

/* ---- the session: a writer job */

static int job_session(st_txn *txn, void *arg) {
  login_flow *f = arg;
  int rc = st_tenant_active(txn, f->tenant);
  return rc ? rc : auth_browser_create(txn, &f->bn);
}

static void done_session(int status, void *arg) {
  login_flow *f = arg;
  gw_req *req = f->req;
  gw_log_ctx lc = {f->tenant, req->id};
  pages__cookie_set(req, f->tenant, PAGES_COOKIE_LOGIN, NULL, 0);
  switch (status) {
  case 0: {
    pages__count(f->lp->srv, PAGES_SIGNIN_OK);
    snprintf(req->actor, sizeof req->actor, "user:%.38s", f->bn.link.user_id);
    GW_LOG(GW_LOG_INFO, "login", &lc, "signed in: user %s (%s)%s", f->bn.link.user_id, f->bn.link.user_name,
           f->bn.link.bind ? "; subject bound by verified e-mail" : "");
    pages__cookie_set(req, f->tenant, PAGES_COOKIE_SESSION, f->cookie, f->bn.expires - f->bn.now);
    pages__headers(req, false);
    char loc[AUTH_LOGIN_RETURN_MAX + 80];
    if (f->login.return_to[0]) snprintf(loc, sizeof loc, "%s", f->login.return_to);
    else snprintf(loc, sizeof loc, "/t/%s/", f->tenant);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    flow_free(f);
    return;
  }
  case AUTH_ENOTLINKED:
  case AUTH_EINACTIVE:
  case ST_ENOTFOUND:
    GW_LOG(GW_LOG_INFO, "login", &lc, "sign-in refused: %s", auth_strerror(status));
    snprintf(req->audit_note, sizeof req->audit_note, "%s", auth_strerror(status));
    flow_fail(f, 403, "mcpgate isn't assigned to you",
              status == AUTH_EINACTIVE
                  ? "Your account is deactivated for mcpgate in Okta. Ask IT if you need access."
                  : "You signed in, but mcpgate isn't assigned to you in Okta (or your account has not been "
                    "provisioned yet) — ask IT.");
    return;
  case AUTH_EUNVERIFIED:
  case AUTH_EAMBIGUOUS:
  case AUTH_EBOUND:
  case AUTH_ESTALE:
  case AUTH_ECLAIM:
    GW_LOG(GW_LOG_WARN, "login", &lc, "sign-in refused: %s", auth_strerror(status));
    snprintf(req->audit_note, sizeof req->audit_note, "%s", auth_strerror(status));
    flow_fail(f, 403, "Your sign-in cannot be matched to an account",
              "Your identity provider's answer cannot be linked to exactly one mcpgate account. Ask IT to check "
              "the account's externalId in Okta.");
    return;
  case AUTH_ECUT:
    GW_LOG(GW_LOG_INFO, "login", &lc, "sign-in refused: %s", auth_strerror(status));
    snprintf(req->audit_note, sizeof req->audit_note, "%s", auth_strerror(status));
    flow_fail(f, 400, "This sign-in is not valid any more",
              "Your access was ended while this sign-in was under way. Start again.");
    return;
  case AUTH_EREPLAY:
    GW_LOG(GW_LOG_WARN, "login", &lc, "sign-in refused: the state was used already (replayed callback)");
    flow_fail(f, 400, "This sign-in link is not valid any more", "It was already used. Start again.");
    return;
  case ST_EMAPFULL:
    GW_LOG(GW_LOG_WARN, "login", &lc, "sign-in not recorded: the store is full");
    flow_fail(f, 507, "Sign-in failed",
              "The gateway's storage is full, so your sign-in could not be recorded. Tell IT: an operator must "
              "make room.");
    return;
  default:
    GW_LOG(GW_LOG_ERROR, "login", &lc, "sign-in failed: %s", auth_strerror(status));
    flow_fail(f, 503, "Sign-in failed", "The gateway could not record your sign-in. Try again in a moment.");
    return;
  }
}

static void session_job_submit(login_flow *f) {
  gw_server *srv = f->lp->srv;
  uint8_t r[64];
  if (RAND_bytes(r, sizeof r) != 1) {
    flow_fail(f, 500, "Sign-in failed", "The gateway could not create your session.");
    return;
  }
  auth_b64url_encode(r, 32, f->cookie, sizeof f->cookie);
  auth_b64url_encode(r + 32, 32, f->bn.csrf, sizeof f->bn.csrf);
  OPENSSL_cleanse(r, sizeof r);
  st_sha256(f->cookie, strlen(f->cookie), f->bn.hash);
  snprintf(f->bn.tenant, sizeof f->bn.tenant, "%s", f->tenant);
  snprintf(f->bn.iss, sizeof f->bn.iss, "%s", f->prov->doc_issuer);
  memcpy(f->bn.state, f->login.state, sizeof f->bn.state);
  f->bn.state_expires = f->login.expires;
  f->bn.started_ms = f->login.started_ms;
  f->bn.now = pages__now();
  f->bn.max_s = srv->cfg.browser_session_max_ms / 1000;
  f->bn.settings = f->settings;
  f->bn.claims = f->claims;
  if (gw_loop_submit(f->lp, job_session, done_session, f))
    flow_fail(f, 503, "Sign-in failed", "The gateway's store cannot take writes right now. Try again in a moment.");
}
