/* gateway/api/connect.c — an employee connects a connector to their own
 * account at its upstream: GET /t/{t}/connect/{connector} and the
 * authorization server's redirect back, GET /t/{t}/connect/{connector}/callback
 * (vault/connect.h has the protocol's pure parts, vault/grant.h the grants).
 *
 * Rules this file keeps, and why:
 *  - Only a signed-in employee connects, and only a connector the tenant's
 *    policy shows them: the start redirects to the sign-in (and back) when
 *    there is no browser session; the callback requires the same session's
 *    user as the sealed connect cookie's — a callback URL someone else
 *    sends (login CSRF: "connect the victim's gateway account to the
 *    attacker's upstream account") is refused before any fetch.
 *  - The connect cookie (vault_connect_seal) carries state, PKCE verifier,
 *    user and connector; nothing is written for a visitor who only starts.
 *    Only the callback that matches it (state and connector) spends it:
 *    another site can send a browser to the callback (the cookie is
 *    SameSite=Lax) but cannot end the connect it has under way.
 *  - The code exchange goes through pages__fetch, with timeouts, a body
 *    cap and a body deadline; the reply is wiped. The token endpoint is
 *    fetched at the admin egress level when the admin set it or vouched
 *    for its host, else (a discovered upstream named it elsewhere) at the
 *    untrusted level (vault_connector_url_admin_set).
 *  - The connect cookie also carries a digest of the connector as the
 *    flow began (vault_connect_bind: its binding — URL, credential
 *    settings, epoch — authorization server and client). The callback
 *    refuses, before any code exchange, a connector an admin moved or
 *    rekeyed since (409, "start again"): the code came from the old
 *    authorization server, for the old upstream.
 *  - The grant is written in a writer job that checks again that the user
 *    is usable, the connector still exists as the flow began and with the
 *    same URL, token endpoint and client, and still shows to the user — a
 *    deactivation or policy change committed meanwhile wins. The tokens of
 *    a grant refused there are live at the authorization server and held
 *    by nobody: the same job queues them for revocation (late_connect) at
 *    the connector as the code was exchanged (its revocation endpoint and
 *    client then), never at one an admin's move named meanwhile. The
 *    tenant must still be the incarnation the code was exchanged in: one
 *    deleted meanwhile (and maybe made again with the same id: another
 *    tenant) gets nothing written under its id — the tokens are revoked
 *    all the same, and only the operator's log says so. A grant
 *    replaced by a reconnect has its old tokens queued for revocation, and
 *    the person's upstream sessions opened with the old grant end
 *    (revoke.c: ST_EVENT_GRANT_CHANGED, superseded).
 *  - After the commit the user's open MCP streams hear
 *    notifications/tools/list_changed (ST_EVENT_GRANT_CHANGED, revoke.c):
 *    the connect tool gives way to the connector's tools.
 *  - RFC 9207: an authorization response that names its issuer (iss) is
 *    refused, before the code exchange, when the connector knows its
 *    authorization server's issuer (a discovered connector) and it is
 *    another one (the mix-up attack). Distinct redirect URIs per connector
 *    and the cookie's connector already keep one connector's response
 *    from completing another's connect.
 *  - No code, token, verifier or secret is logged or shown.
 * Lifetime: a connect_flow owns its request until it responds; the fetch
 * callback and the job's done are the only callbacks that touch it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/browser.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/http/query.h"
#include "gateway/out/outbound.h"
#include "policy/policy.h"
#include "store/dir.h"
#include "store/seal.h"
#include "store/tenant.h"
#include "vault/connect.h"
#include "vault/discover.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "vault/vault.h"

#define CONNECT_TOKEN_REPLY_MAX (64 * 1024)

void pages__connect_redirect_uri(const gw_server *srv, const char *tenant, const char *connector, char *out,
                                 size_t cap) {
  const char *pub = srv->cfg.public_url ? srv->cfg.public_url : "";
  size_t n = strlen(pub);
  while (n && pub[n - 1] == '/') n--;
  snprintf(out, cap, "%.*s/t/%s/connect/%s/callback", (int)n, pub, tenant, connector);
}

/* ---- GET /t/{t}/oauth/upstream-client/{connector}.json ----------------------- */

void pages__upstream_client(gw_req *req, const char *tenant, const char *file) {
  gw_server *srv = req->lp->srv;
  char name[40];
  size_t n = strlen(file);
  json_t *rec = NULL;
  st_txn *txn;
  bool found = false;
  if (n > 5 && n - 5 < sizeof name && !strcmp(file + n - 5, ".json")) {
    memcpy(name, file, n - 5);
    name[n - 5] = 0;
    if (vault_connector_name_valid(name) && st_read_begin(srv->store, &txn) == 0) {
      found = vault_connector_get(txn, tenant, name, &rec) == 0;
      st_txn_end(txn);
    }
  }
  json_t *auth = json_object_get(rec, "auth");
  const char *reg = json_string_value(json_object_get(json_object_get(auth, "discovered"), "registration"));
  if (!found || !vault_connector_is_oauth(rec) || !reg || strcmp(reg, "cimd")) {
    json_decref(rec);
    gw_respond_error(req, 404, "not_found", "no such client metadata document");
    return;
  }
  char redirect[1200];
  pages__connect_redirect_uri(srv, tenant, name, redirect, sizeof redirect);
  json_t *doc = vault_cimd_document(json_string_value(json_object_get(auth, "client_id")) ?: "", tenant, redirect);
  json_decref(rec);
  /* authorization servers cache it (the CIMD draft lets them honour
   * Cache-Control); a changed connector is re-read within minutes */
  gw_resp_header(req, "Cache-Control", "max-age=300");
  gw_respond_json(req, 200, doc);
}

typedef struct connect_flow {
  gw_req *req;
  gw_loop *lp;
  char tenant[64], connector[40], user[40];
  char url[VAULT_URL_SHOWN_MAX + 1]; /* the connector's, as shown, when the flow began */
  char token_url[2100], client_id[520];
  char uid[ST_TENANT_UID_LEN + 1]; /* the tenant incarnation the code was exchanged in ("": none) */
  char bind[VAULT_URL_SHOWN_MAX + 1]; /* its vault_connector_bind then: the url shows a query masked, and a
                                         new key there moves the binding, not the url */
  vault_connect vc;
  vault_tokens tokens;
  int status;
  bool discovered; /* auth.discover: an invalid_client makes the gateway register anew */
  /* the browser session that finishes the connect: the grant is written
   * only while it lives (a cut during the code exchange deletes it) */
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
  int64_t idle_s, now; /* now: read on the loop, the job stays pure */
  /* the connector as the code was exchanged, and the client secret sent
   * (wiped): where tokens nobody may hold are revoked */
  json_t *sent_to;
  char *secret;
  int refused; /* job_grant: why the grant was not stored (its tokens queued for revocation), or 0 */
  vault_late late; /* job_grant: the tenant was another incarnation by then (nothing written under its id) */
} connect_flow;

static void flow_free(connect_flow *f) {
  json_decref(f->sent_to);
  st_secret_str_free(f->secret);
  OPENSSL_cleanse(f->cookie, sizeof f->cookie);
  OPENSSL_cleanse(&f->vc, sizeof f->vc);
  vault_tokens_free(&f->tokens);
  free(f);
}

static void fail(gw_req *req, const char *tenant, const char *connector, int status, const char *title,
                 const char *msg, bool again) {
  char href[160];
  snprintf(href, sizeof href, "/t/%s/connect/%s", tenant, connector);
  pages__message(req, status, tenant, title, msg, again ? href : NULL, again ? "Start again" : NULL);
}

/* The connector, when it is an oauth connector the user may see: 0 and
 * *rec, or an HTTP status with the page answered. */
static int usable_connector(gw_req *req, st_txn *txn, const char *tenant, const char *connector, const char *user,
                            json_t **rec) {
  *rec = NULL;
  if (!vault_connector_name_valid(connector) || vault_connector_get(txn, tenant, connector, rec) != 0) {
    pages__message(req, 404, tenant, "No such connector", "There is no connector by that name here.", NULL, NULL);
    return 404;
  }
  pol_user *pu = NULL;
  bool visible = pol_user_load(txn, tenant, user, &pu) == 0 && pol_connector_visible(pu, connector);
  pol_user_free(pu);
  if (!visible) {
    json_decref(*rec);
    *rec = NULL;
    pages__message(req, 404, tenant, "No such connector", "There is no connector by that name here.", NULL, NULL);
    return 404;
  }
  if (!strcmp(json_string_value(json_object_get(json_object_get(*rec, "auth"), "type")) ?: "", "user_header")) {
    /* an API key of the person's own: entered on their page */
    json_decref(*rec);
    *rec = NULL;
    char loc[120];
    snprintf(loc, sizeof loc, "/t/%s/#services", tenant);
    pages__headers(req, false);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    return 303;
  }
  if (!vault_connector_is_oauth(*rec)) {
    json_decref(*rec);
    *rec = NULL;
    pages__message(req, 400, tenant, "Nothing to connect",
                   "This connector does not use your own account: there is nothing to connect. Your tools work "
                   "already.",
                   NULL, NULL);
    return 400;
  }
  return 0;
}

/* ---- GET /t/{t}/connect/{connector} ------------------------------------------ */

void pages__connect(gw_req *req, const char *tenant, const char *connector) {
  gw_server *srv = req->lp->srv;
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc == ST_ENOTFOUND) {
    /* sign in first, then come back here */
    char loc[200];
    snprintf(loc, sizeof loc, "/t/%s/login?return=/t/%s/connect/%s", tenant, tenant,
             vault_connector_name_valid(connector) ? connector : "");
    pages__headers(req, false);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    return;
  }
  if (rc) {
    pages__message(req, 503, tenant, "Try again", "The gateway is busy. Try again in a moment.", NULL, NULL);
    return;
  }
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    pages__message(req, 503, tenant, "Try again", "The gateway is busy. Try again in a moment.", NULL, NULL);
    return;
  }
  json_t *rec;
  rc = usable_connector(req, txn, tenant, connector, s.user_id, &rec);
  st_txn_end(txn);
  if (rc) return;
  char redirect[1200];
  pages__connect_redirect_uri(srv, tenant, connector, redirect, sizeof redirect);
  vault_connect vc;
  char *cookie = NULL, *url = NULL;
  rc = vault_connect_new(&vc, s.user_id, connector, pages__now());
  /* the code that comes back is for this connector as it is now: its
   * authorization server, its upstream (the callback checks it) */
  if (!rc) rc = vault_connect_bind(&vc, rec);
  if (!rc) rc = vault_connect_seal(srv->store, tenant, &vc, &cookie);
  if (!rc) rc = vault_connect_authorize_url(json_object_get(rec, "auth"), redirect, &vc, &url);
  OPENSSL_cleanse(&vc, sizeof vc);
  json_decref(rec);
  if (rc) {
    vault_wipe(cookie);
    free(url);
    fail(req, tenant, connector, 500, "Could not start", "The gateway could not start connecting.", true);
    return;
  }
  GW_LOG(GW_LOG_INFO, "vault", &((gw_log_ctx){tenant, req->id}), "user %s starts connecting %s", s.user_id, connector);
  pages__cookie_set(req, tenant, PAGES_COOKIE_CONNECT, cookie, VAULT_CONNECT_TTL_S);
  vault_wipe(cookie);
  pages__headers(req, false);
  gw_resp_header(req, "Location", url);
  free(url);
  gw_respond(req, 302, NULL, NULL, 0);
}

/* ---- the grant, written -------------------------------------------------------- */

/* 0 when the grant may be stored now; VAULT_ENOGRANT, AUTH_ELOGIN,
 * ST_EEXIST or ST_ENOTFOUND when it may not (done_grant says why); another
 * code when the store failed */
static int grant_allowed(st_txn *txn, connect_flow *f) {
  if (st_dir_user_active(txn, f->tenant, f->user) != 1) return VAULT_ENOGRANT;
  /* the session that asked must still be live: a revoke then restore, a
   * deactivation then reactivation or a Universal Logout during the code
   * exchange deleted it, and nothing from before a cut may come back */
  int rc = auth_browser_still(txn, f->tenant, f->cookie, f->now, f->idle_s, f->user);
  if (rc) return rc == ST_ENOTFOUND ? AUTH_ELOGIN : rc;
  json_t *rec = NULL;
  rc = vault_connector_get(txn, f->tenant, f->connector, &rec);
  if (rc) return rc;
  json_t *auth = json_object_get(rec, "auth");
  /* the same upstream too: a grant is never presented to another one (a
   * move cut the grants; these tokens were asked for the old URL) — the
   * one the flow began with, and the one the callback exchanged the code
   * for: the url as shown, and the binding (a move that changed only a
   * sealed query value shows alike, and advanced the binding) */
  bool same = vault_connector_is_oauth(rec) && vault_connect_matches(&f->vc, rec) &&
              !strcmp(json_string_value(json_object_get(rec, "url")) ?: "", f->url) &&
              !strcmp(json_string_value(vault_connector_bind(rec)) ?: "", f->bind) &&
              !strcmp(json_string_value(json_object_get(auth, "token_url")) ?: "", f->token_url) &&
              !strcmp(json_string_value(json_object_get(auth, "client_id")) ?: "", f->client_id);
  json_decref(rec);
  if (!same) return ST_EEXIST;
  pol_user *pu = NULL;
  bool visible = pol_user_load(txn, f->tenant, f->user, &pu) == 0 && pol_connector_visible(pu, f->connector);
  pol_user_free(pu);
  return visible ? 0 : ST_ENOTFOUND;
}

static int job_grant(st_txn *txn, void *arg) {
  connect_flow *f = arg;
  f->refused = 0;
  memset(&f->late, 0, sizeof f->late);
  char now[32];
  vault_rfc3339(0, now);
  vault_token_origin from = {f->sent_to, f->secret, f->uid};
  /* the tenant the code was exchanged in, still active: deleted meanwhile
   * (its purge runs, or its id was made again: another tenant), nothing
   * of this connect is stored or reported under its id */
  char uid[ST_TENANT_UID_LEN + 1];
  int rc = st_tenant_active(txn, f->tenant);
  if (!rc) rc = st_tenant_uid_get(txn, f->tenant, uid);
  if (rc && rc != ST_ENOTFOUND) return rc;
  rc = rc || strcmp(uid, f->uid) ? VAULT_ENOGRANT : grant_allowed(txn, f);
  if (rc == VAULT_ENOGRANT || rc == AUTH_ELOGIN || rc == ST_EEXIST || rc == ST_ENOTFOUND) {
    /* not stored: the tokens the authorization server issued are live
     * there and held by nobody — revoked where they came from (the
     * connector as the code was exchanged), as a late refresh's are; for
     * another incarnation, unreported (vault_tokens_revoke) */
    f->refused = rc;
    return vault_tokens_revoke(txn, f->tenant, f->user, f->connector, &f->tokens, &from, "late_connect", now, &f->late);
  }
  if (rc) return rc;
  return vault_grant_put(txn, f->tenant, f->user, f->connector, &f->tokens, now, VAULT_PUT_CONNECT | VAULT_PUT_REVOKE_OLD);
}

static void done_grant(int status, void *arg) {
  connect_flow *f = arg;
  gw_req *req = f->req;
  gw_log_ctx lc = {f->tenant, req->id};
  if (!status && f->late.elsewhere) {
    /* the operator's log is the only record: the tenant's id is another
     * tenant's now, or being purged (vault/grant.h) */
    if (f->late.id[0])
      GW_LOG(GW_LOG_WARN, "vault", &lc,
             "connecting %s for user %s refused: the tenant was deleted (and maybe created again) during the code "
             "exchange; the tokens issued are queued for revocation at the authorization server (revocation %s), "
             "reported here only",
             f->connector, f->user, f->late.id);
    else
      GW_LOG(GW_LOG_WARN, "vault", &lc,
             "connecting %s for user %s refused: the tenant was deleted (and maybe created again) during the code "
             "exchange; the connector names no revocation endpoint: the tokens issued stay live at the upstream until "
             "they expire or are revoked there by hand",
             f->connector, f->user);
  }
  if (!status) status = f->refused;
  switch (status) {
  case 0: {
    GW_LOG(GW_LOG_INFO, "vault", &lc, "user %s connected %s", f->user, f->connector);
    char title[120], msg[400];
    snprintf(title, sizeof title, "%s is connected", f->connector);
    snprintf(msg, sizeof msg,
             "Your agent can now use %s's tools as you. You can close this window. To disconnect, use your page "
             "on this gateway.",
             f->connector);
    char href[96];
    snprintf(href, sizeof href, "/t/%s/", f->tenant);
    pages__message(req, 200, f->tenant, title, msg, href, "Your page");
    break;
  }
  case VAULT_ENOGRANT:
    fail(req, f->tenant, f->connector, 403, "Access revoked", "Your account is not active on this gateway.", false);
    break;
  case AUTH_ELOGIN:
    GW_LOG(GW_LOG_INFO, "vault", &lc, "connecting %s for user %s refused: their session ended while connecting",
           f->connector, f->user);
    fail(req, f->tenant, f->connector, 403, "Not connected",
         "You were signed out while connecting, so nothing was stored. Sign in and start again.", true);
    break;
  case ST_ENOTFOUND:
  case ST_EEXIST:
    GW_LOG(GW_LOG_INFO, "vault", &lc, "connecting %s for user %s refused: the connector changed or is not visible",
           f->connector, f->user);
    fail(req, f->tenant, f->connector, 409, "The connector changed",
         "The connector was changed or removed while you were connecting. Start again.", true);
    break;
  default:
    GW_LOG(GW_LOG_ERROR, "vault", &lc, "storing %s's grant for user %s failed: %s", f->connector, f->user,
           st_strerror(status));
    fail(req, f->tenant, f->connector, 503, "Could not finish", "The gateway could not store the connection. Try again.",
         true);
    break;
  }
  flow_free(f);
}

/* The token endpoint rejected the gateway's client (invalid_client): a
 * discovered connector registers anew (vault/rediscover.h); nobody waits
 * for this job. */
typedef struct rejected_job {
  char tenant[64], connector[40];
  gw_loop *lp;
} rejected_job;
static int job_rejected(st_txn *txn, void *arg) {
  rejected_job *j = arg;
  return vault_rediscover_rejected(txn, j->tenant, j->connector, gw_wall_ms());
}
static void done_rejected(int status, void *arg) {
  rejected_job *j = arg;
  if (status)
    GW_LOG(GW_LOG_ERROR, "vault", &((gw_log_ctx){j->tenant, NULL}),
           "connector %s: scheduling its registration anew failed: %s", j->connector, st_strerror(status));
  free(j);
}
static void client_rejected(connect_flow *f) {
  rejected_job *j = calloc(1, sizeof *j);
  if (!j) return;
  snprintf(j->tenant, sizeof j->tenant, "%s", f->tenant);
  snprintf(j->connector, sizeof j->connector, "%s", f->connector);
  j->lp = f->lp;
  if (gw_loop_submit(f->lp, job_rejected, done_rejected, j) != 0) free(j);
}

static void got_token(void *ud, int err, int status, const char *body, size_t len) {
  connect_flow *f = ud;
  gw_log_ctx lc = {f->tenant, f->req->id};
  char why[200] = "";
  if (err) {
    GW_LOG(GW_LOG_WARN, "vault", &lc, "connecting %s: the token endpoint failed: %s", f->connector,
           err == GW_OUT_EEGRESS ? "its address is not allowed by the egress policy" : gw_out_strerror(err));
    fail(f->req, f->tenant, f->connector, 502, "Could not connect",
         "The service's authorization server could not be reached. Try again; if it keeps failing, tell IT.", true);
    flow_free(f);
    return;
  }
  if (status != 200) {
    json_t *j = gw_json_loadb(body ? body : "", len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    GW_LOG(GW_LOG_WARN, "vault", &lc, "connecting %s: the token endpoint answered %d %.40s", f->connector, status,
           e && strlen(e) < 40 ? e : "");
    bool rejected = e && !strcmp(e, "invalid_client");
    json_decref(j);
    if (rejected && f->discovered) {
      client_rejected(f);
      fail(f->req, f->tenant, f->connector, 502, "Could not connect",
           "The service no longer accepts this gateway's registration. The gateway is registering again: start "
           "again in a minute or two.",
           true);
      flow_free(f);
      return;
    }
    fail(f->req, f->tenant, f->connector, 502, "Could not connect",
         "The service refused to complete the connection. Start again; if it keeps failing, tell IT (the connector's "
         "client settings may be wrong).",
         true);
    flow_free(f);
    return;
  }
  if (vault_tokens_from_reply(body ? body : "", len, pages__now(), &f->tokens, why, sizeof why) != 0) {
    GW_LOG(GW_LOG_WARN, "vault", &lc, "connecting %s: %s", f->connector, why);
    fail(f->req, f->tenant, f->connector, 502, "Could not connect",
         "The service's answer could not be used. Tell IT (the connector may need other settings).", true);
    flow_free(f);
    return;
  }
  f->now = pages__now();
  if (gw_loop_submit(f->lp, job_grant, done_grant, f) != 0) done_grant(ST_EBUSY, f);
}

/* ---- GET /t/{t}/connect/{connector}/callback ------------------------------------ */

static bool code_ok(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 2048) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

void pages__connect_callback(gw_req *req, const char *tenant, const char *connector) {
  gw_server *srv = req->lp->srv;
  gw_log_ctx lc = {tenant, req->id};
  char state[VAULT_CONNECT_RAND_LEN + 2] = "", code[2100] = "", error[64] = "";
  char cname[96], cookie[VAULT_CONNECT_COOKIE_MAX + 1];
  char iss[VAULT_DISCOVER_URL_BUF + 1] = ""; /* RFC 9207 (one byte more than any issuer: a longer one differs) */
  bool has_iss = false;
  if (req->query) {
    if (gw_query_get(req->query, "state", state, sizeof state) != 1) state[0] = 0;
    if (gw_query_get(req->query, "code", code, sizeof code) != 1) code[0] = 0;
    if (gw_query_get(req->query, "error", error, sizeof error) != 1) error[0] = 0;
    has_iss = gw_query_get(req->query, "iss", iss, sizeof iss) == 1;
  }
  pages__cookie_name(srv, tenant, PAGES_COOKIE_CONNECT, cname, sizeof cname);
  const char *ck = pages__cookie_get(req, cname, cookie, sizeof cookie);
  vault_connect vc;
  int rc = vault_connect_open(srv->store, tenant, ck, state, pages__now(), &vc);
  OPENSSL_cleanse(cookie, sizeof cookie);
  if (rc || strcmp(vc.connector, connector)) {
    /* no answer to the connect this browser has under way, if any: that
     * one is left as it is (another site can send a browser here) */
    GW_LOG(GW_LOG_INFO, "vault", &lc, "connect callback for %s refused: no matching connect in progress in this browser",
           vault_connector_name_valid(connector) ? connector : "?");
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    fail(req, tenant, vault_connector_name_valid(connector) ? connector : "x", 400, "This link is not valid here",
         "Connecting did not start in this browser, or took too long. Start again from the connect link.", true);
    return;
  }
  pages__cookie_set(req, tenant, PAGES_COOKIE_CONNECT, NULL, 0); /* its answer: one use */
  if (error[0] || !code_ok(code)) {
    GW_LOG(GW_LOG_INFO, "vault", &lc, "connecting %s for user %s ended at the service: %s", connector, vc.user,
           error[0] ? "the authorization was declined or failed" : "no code");
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    fail(req, tenant, connector, 400, "Not connected",
         "The service did not grant access (you declined, or it failed). You can start again.", true);
    return;
  }
  /* the same person who started it, still signed in (login CSRF) */
  auth_browser s;
  rc = pages__session(req, tenant, &s);
  if (rc || strcmp(s.user_id, vc.user)) {
    GW_LOG(GW_LOG_WARN, "vault", &lc, "connect callback for %s refused: %s", connector,
           rc ? "not signed in" : "signed in as another user than the one who started");
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    fail(req, tenant, connector, 403, "Not connected", "Sign in as the person who started connecting, then start again.",
         true);
    return;
  }
  st_txn *txn;
  json_t *rec = NULL;
  char *secret = NULL;
  if (st_read_begin(srv->store, &txn) != 0) {
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    pages__message(req, 503, tenant, "Try again", "The gateway is busy. Try again in a moment.", NULL, NULL);
    return;
  }
  rc = usable_connector(req, txn, tenant, connector, vc.user, &rec);
  char uid[ST_TENANT_UID_LEN + 1]; /* the incarnation the code is exchanged in (job_grant checks it) */
  if (rc || st_tenant_uid_get(txn, tenant, uid) != 0) uid[0] = 0;
  /* the connector the flow began with: an admin's move or rekey while the
   * person signed in at the service means the code came from the old
   * authorization server, for the old upstream — never exchanged, never
   * stored for the new one */
  bool moved = !rc && !vault_connect_matches(&vc, rec);
  /* RFC 9207 §2.4: a response that names its issuer must name the one
   * this connect was sent to — known for a discovered connector (its
   * metadata's issuer, checked at discovery). Another one's response,
   * brought back by the browser (the mix-up attack: a compromised
   * authorization server sends the person on to another), is never
   * exchanged. */
  const char *want =
      rc || moved ? NULL
                  : json_string_value(json_object_get(
                        json_object_get(json_object_get(rec, "auth"), "discovered"), "issuer"));
  bool mixed = has_iss && want && strcmp(iss, want) != 0;
  if (!rc && !moved && !mixed &&
      st_secret_get_str(txn, &(st_aad){tenant, VAULT_CLIENT_KIND, connector}, &secret) != 0)
    secret = NULL;
  st_txn_end(txn);
  if (mixed) {
    GW_LOG(GW_LOG_WARN, "vault", &lc,
           "connect callback for %s refused: the authorization response names another issuer than the connector's "
           "(RFC 9207)",
           connector);
    json_decref(rec);
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    fail(req, tenant, connector, 400, "Not connected",
         "The answer did not come from this service's authorization server, so nothing was stored. Start again.",
         true);
    return;
  }
  if (moved) {
    GW_LOG(GW_LOG_INFO, "vault", &lc,
           "connecting %s for user %s refused: the connector changed while they were signing in at the service",
           connector, vc.user);
    json_decref(rec);
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    fail(req, tenant, connector, 409, "The connector changed",
         "The connector was changed while you were signing in at the service, so nothing was stored. Start again.",
         true);
    return;
  }
  if (rc) {
    OPENSSL_cleanse(&vc, sizeof vc);
    OPENSSL_cleanse(code, sizeof code);
    return;
  }
  json_t *auth = json_object_get(rec, "auth");
  char redirect[1200];
  pages__connect_redirect_uri(srv, tenant, connector, redirect, sizeof redirect);
  char *body = NULL, *authz = NULL;
  rc = vault_connect_token_request(auth, secret, code, redirect, vc.verifier, &body, &authz);
  OPENSSL_cleanse(code, sizeof code);
  connect_flow *f = rc ? NULL : calloc(1, sizeof *f);
  char *authz_line = NULL;
  if (f && authz) {
    size_t n = strlen(authz) + 16;
    authz_line = malloc(n);
    if (authz_line) snprintf(authz_line, n, "Authorization: %s", authz);
  }
  if (!f || (authz && !authz_line)) {
    vault_wipe(body);
    vault_wipe(authz);
    st_secret_str_free(secret);
    free(f);
    json_decref(rec);
    OPENSSL_cleanse(&vc, sizeof vc);
    fail(req, tenant, connector, 500, "Could not connect", "The gateway could not complete connecting.", true);
    return;
  }
  f->req = req;
  f->lp = req->lp;
  gw_strlcpy(f->tenant, tenant, sizeof f->tenant);
  gw_strlcpy(f->connector, connector, sizeof f->connector);
  gw_strlcpy(f->user, vc.user, sizeof f->user);
  memcpy(f->vc.bind, vc.bind, sizeof f->vc.bind); /* job_grant checks it again */
  gw_strlcpy(f->url, json_string_value(json_object_get(rec, "url")) ?: "", sizeof f->url);
  gw_strlcpy(f->bind, json_string_value(vault_connector_bind(rec)) ?: "", sizeof f->bind);
  const char *tu = json_string_value(json_object_get(auth, "token_url"));
  gw_strlcpy(f->token_url, tu ? tu : "", sizeof f->token_url);
  gw_strlcpy(f->client_id, json_string_value(json_object_get(auth, "client_id")) ?: "", sizeof f->client_id);
  memcpy(f->uid, uid, sizeof f->uid);
  f->discovered = json_is_true(json_object_get(auth, "discover"));
  f->sent_to = json_incref(rec);
  f->secret = secret;
  pages__cookie_name(srv, tenant, PAGES_COOKIE_SESSION, cname, sizeof cname);
  pages__cookie_get(req, cname, f->cookie, sizeof f->cookie);
  f->idle_s = srv->cfg.browser_session_idle_ms / 1000;
  OPENSSL_cleanse(&vc, sizeof vc);
  const char *lines[4] = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", authz_line,
                          NULL};
  pages_fetch_req fr = {.method = "POST",
                        .url = f->token_url,
                        .headers = lines,
                        .body = body,
                        .cap = CONNECT_TOKEN_REPLY_MAX,
                        /* the admin level only for a token endpoint the admin set or
                         * vouched for (vault/discover.h): one a discovered upstream
                         * named elsewhere is untrusted */
                        .trust = vault_connector_url_admin_set(rec, f->token_url) ? f->token_url : NULL,
                        .tenant = tenant,
                        .req_id = req->id,
                        .module = "vault",
                        .ca_file = json_string_value(json_object_get(rec, "ca_file"))};
  rc = pages__fetch(f->lp, &fr, got_token, f);
  vault_wipe(body);
  vault_wipe(authz);
  vault_wipe(authz_line);
  json_decref(rec);
  if (rc) {
    GW_LOG(GW_LOG_WARN, "vault", &lc, "connecting %s: the token request could not start: %s", connector,
           gw_out_strerror(rc));
    fail(req, tenant, connector, 502, "Could not connect", "The service's authorization server could not be reached.",
         true);
    flow_free(f);
  }
}
