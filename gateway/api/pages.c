/* gateway/api/pages.c — the employee page and its API under /t/{tenant}/:
 * the page and its assets (embedded from web/), /api/me (who you are, your
 * groups, what your groups allow, your tokens, the command to paste),
 * self-service access tokens, sign-out and "sign out everywhere"; the
 * module entry (routes, tenant settings, the providers' cache). Sign-in
 * itself is login.c's.
 *
 * Rules this file keeps, and why:
 *  - Every answer carries a strict Content-Security-Policy (no inline
 *    script or style), no framing, no referrer (the callback's URL has a
 *    code in it), nosniff, and no caching of anything personal. Pages with
 *    a form relax the referrer to same-origin in their markup (under
 *    no-referrer Chromium posts forms with "Origin: null", which the CSRF
 *    check refuses); the consent page's form-action also names the
 *    client's redirect origin (browsers check it on the redirect that
 *    answers the form).
 *  - State-changing requests need the session's CSRF token (X-CSRF-Token
 *    or a "csrf" form field, compared in constant time) AND must not come
 *    from another site (Origin, when sent, is public_url's; Sec-Fetch-Site,
 *    when sent, is same-origin). SameSite=Lax cookies are the third fence.
 *  - Every write job checks the session again inside its transaction, so a
 *    session deleted by a deactivation cannot act after it.
 *  - A person's own key (user_header) is saved only for the connector as
 *    their page showed it: api/me hands each key form a sealed state
 *    (vault/connect.h), the PUT sends it back, and the job refuses the key
 *    (409) when an admin moved the connector or changed its header since:
 *    a key typed for the old upstream is never stored for the new one.
 *  - A sign-out whose session cannot be read (the store failed) answers
 *    503, never the 303 of a done one: "sign out everywhere" is what a
 *    person presses after losing a laptop, and must not fail open.
 *  - Tokens made here are bound to the sign-in: they expire no later than
 *    signin_max_age_ms after it (default 7 days), so a broken SCIM feed
 *    cannot keep a leaver working with one; they are off unless the tenant
 *    allows them (self_service_tokens). */
#include "gateway/api/pages.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/browser.h"
#include "auth/oauth_token.h"
#include "auth/token_store.h"
#include "gateway/api/oauth_int.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/base/ratelimit.h"
#include "gateway/core/module.h"
#include "gateway/core/settings.h"
#include "gateway/http/query.h"
#include "gateway/http/router.h"
#include "policy/policy.h"
#include "store/dir.h"
#include "store/tenant.h"
#include "store/token.h"
#include "vault/connect.h"
#include "vault/grant.h"
#include "vault/vault.h"
#include "web/web.h"

#define CSP_HEAD                                                                                              \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "              \
  "form-action 'self'"
#define CSP_TAIL "; frame-ancestors 'none'; base-uri 'none'"
#define CSP CSP_HEAD CSP_TAIL
#define FORM_SOURCE_MAX 640 /* a longer origin is named by its scheme */
#define TOKEN_NAME_MAX 200
/* Live (unexpired) tokens one employee may hold: each is a store record,
 * and a page with no cap let one employee mint them without end. */
#define PAGES_TOKENS_MAX 50

const gw_setting gw_pages_settings[] = {
    {"self_service_tokens", GW_SETTING_BOOL, 0, 1, 0,
     "employees may create their own mgw_ access tokens on their page, for headless use; each expires no later "
     "than signin_max_age_ms after the sign-in it was made in",
     0, NULL, false, false},
    {"signin_max_age_ms", GW_SETTING_INT, 1000, 90LL * 86400000, 7LL * 86400000,
     "the longest an employee's sign-in with the identity provider counts: tokens made on the page and OAuth grants "
     "of MCP clients end no later than this after it (a refresh past it is refused: sign in again), and the "
     "authorization endpoint asks for a sign-in younger than this; lowering it applies at the next refresh",
     0, NULL, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

/* ---- small helpers */

int64_t pages__now(void) { return (int64_t)time(NULL); }
int64_t pages__mono_ms(void) { return (int64_t)(uv_hrtime() / 1000000); }

static bool https_public(const gw_server *srv) { return !strncasecmp(srv->cfg.public_url, "https://", 8); }

/* "mcpgate-{t}" and "mcpgate-login.{t}": a tenant id has no '.', so no
 * tenant's session cookie is another's sign-in cookie (with "login-{t}",
 * tenant "login-acme"'s session and tenant "acme"'s sign-in shared a name,
 * and over https, Path=/: one overwrote the other). */
void pages__cookie_name(const gw_server *srv, const char *tenant, pages_cookie which, char *out, size_t cap) {
  snprintf(out, cap, "%smcpgate-%s%s", https_public(srv) ? "__Host-" : "",
           which == PAGES_COOKIE_LOGIN ? "login." : which == PAGES_COOKIE_CONNECT ? "connect." : "", tenant);
}

const char *pages__cookie_get(const gw_req *req, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (int i = 0; i < req->nheaders; i++) {
    if (strcasecmp(req->headers[i].name, "Cookie")) continue;
    const char *p = req->headers[i].value;
    while (*p) {
      while (*p == ' ' || *p == ';') p++;
      const char *eq = strchr(p, '=');
      const char *end = strchr(p, ';');
      if (!end) end = p + strlen(p);
      if (eq && eq < end && (size_t)(eq - p) == nl && !memcmp(p, name, nl)) {
        size_t vl = (size_t)(end - eq - 1);
        if (vl >= cap) return NULL;
        memcpy(out, eq + 1, vl);
        out[vl] = 0;
        return out;
      }
      p = end;
    }
  }
  return NULL;
}

void pages__cookie_set(gw_req *req, const char *tenant, pages_cookie which, const char *value, int64_t max_age_s) {
  const gw_server *srv = req->lp->srv;
  char name[96], path[96];
  pages__cookie_name(srv, tenant, which, name, sizeof name);
  bool https = https_public(srv);
  if (https) snprintf(path, sizeof path, "/");
  else snprintf(path, sizeof path, "/t/%s/", tenant);
  size_t n = strlen(name) + (value ? strlen(value) : 0) + 160;
  char *c = malloc(n);
  if (!c) return;
  snprintf(c, n, "%s=%s; Path=%s; Max-Age=%lld; HttpOnly; SameSite=Lax%s", name, value ? value : "", path,
           value ? (long long)max_age_s : 0LL, https ? "; Secure" : "");
  gw_resp_header(req, "Set-Cookie", c);
  OPENSSL_cleanse(c, n);
  free(c);
}

/* The CSP source for where a form of ours may end up after redirects (the
 * origin of url): "http://host[:port]" or "https://host[:port]" when the
 * host is a name or an IPv4 address; the scheme alone ("http:") when it is
 * anything CSP cannot name (an IPv6 literal such as [::1]: browsers ignore
 * a host-source with brackets); "" when url is neither http nor https. */
void pages__csp_form_source(const char *url, char *out, size_t cap) {
  if (!cap) return;
  out[0] = 0;
  const char *scheme = !strncasecmp(url, "http://", 7) ? "http" : !strncasecmp(url, "https://", 8) ? "https" : NULL;
  if (!scheme || cap < 8) return;
  const char *a = url + strlen(scheme) + 3;
  size_t n = strcspn(a, "/?#");
  size_t host = strcspn(a, ":");
  if (host > n) host = n;
  bool ok = host > 0;
  for (size_t i = 0; ok && i < host; i++) {
    char ch = a[i];
    ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
  }
  if (ok && host < n) { /* ":port": 1 to 5 digits */
    size_t pl = n - host - 1;
    ok = pl >= 1 && pl <= 5;
    for (size_t i = host + 1; ok && i < n; i++) ok = a[i] >= '0' && a[i] <= '9';
  }
  if (!ok || strlen(scheme) + 3 + n >= cap) snprintf(out, cap, "%s:", scheme);
  else snprintf(out, cap, "%s://%.*s", scheme, (int)n, a);
}

/* CSP, no framing, no referrer, no sniffing: every page and page API answer.
 * form_to: a URL a form of the page is redirected to (its origin joins
 * form-action: browsers check that directive on every redirect after a
 * form is submitted), or NULL. */
static void security_headers_to(gw_req *req, const char *form_to) {
  char src[FORM_SOURCE_MAX] = "";
  if (form_to) pages__csp_form_source(form_to, src, sizeof src);
  if (src[0]) {
    char csp[sizeof CSP + sizeof src + 2];
    snprintf(csp, sizeof csp, "%s %s%s", CSP_HEAD, src, CSP_TAIL);
    gw_resp_header(req, "Content-Security-Policy", csp);
  } else {
    gw_resp_header(req, "Content-Security-Policy", CSP);
  }
  gw_resp_header(req, "X-Frame-Options", "DENY");
  gw_resp_header(req, "Referrer-Policy", "no-referrer");
  gw_resp_header(req, "X-Content-Type-Options", "nosniff");
  /* a window that opened a page keeps no handle on it (tabnabbing, leaks
   * across sites) */
  gw_resp_header(req, "Cross-Origin-Opener-Policy", "same-origin");
  /* public_url says the pages are served over https (by the gateway or a
   * proxy in front): the browser keeps to it for this host */
  const char *pub = req->lp->srv->cfg.public_url;
  if (pub && !strncmp(pub, "https://", 8)) gw_resp_header(req, "Strict-Transport-Security", "max-age=31536000");
}

static void security_headers(gw_req *req) { security_headers_to(req, NULL); }

void pages__headers(gw_req *req, bool cacheable) {
  security_headers(req);
  gw_resp_header(req, "Cache-Control", cacheable ? "no-cache" : "no-store");
}

void pages__headers_form_to(gw_req *req, const char *form_to) {
  security_headers_to(req, form_to);
  gw_resp_header(req, "Cache-Control", "no-store");
}

void pages__message(gw_req *req, int status, const char *tenant, const char *title, const char *message,
                    const char *href, const char *action) {
  const char *kv[] = {"title", title, "message", message, "action_href", href ? href : "",
                      "action_text", action ? action : "", "tenant", tenant, NULL};
  char *out = NULL;
  size_t len = 0;
  pages__headers(req, false);
  if (web_render("message.html", kv, &out, &len) == 0) {
    gw_respond(req, status, "text/html; charset=utf-8", out, len);
    free(out);
  } else {
    gw_respond(req, status, "text/plain; charset=utf-8", message, strlen(message));
  }
}

static void json_reply(gw_req *req, int status, json_t *j) {
  security_headers(req); /* gw_respond_json adds Cache-Control: no-store */
  gw_respond_json(req, status, j);
}

void pages__json(gw_req *req, int status, json_t *j) { json_reply(req, status, j); }

static void json_error(gw_req *req, int status, const char *code, const char *msg) {
  json_reply(req, status, json_pack("{s:s,s:s}", "error", code, "message", msg));
}

static void rfc3339(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- sessions */

typedef struct touch_job {
  uint8_t hash[32];
  int64_t now;
} touch_job;

static int job_touch(st_txn *txn, void *arg) {
  touch_job *t = arg;
  return auth_browser_touch(txn, t->hash, t->now);
}
static void done_touch(int status, void *arg) {
  (void)status;
  free(arg);
}

/* pages__session; touch false: the use is not recorded (a look that does
 * not serve the person yet: the rate limiter's) */
static int session_read(gw_req *req, const char *tenant, auth_browser *out, bool touch) {
  gw_server *srv = req->lp->srv;
  char name[96], cookie[64];
  pages__cookie_name(srv, tenant, PAGES_COOKIE_SESSION, name, sizeof name);
  const char *c = pages__cookie_get(req, name, cookie, sizeof cookie);
  if (!c) return ST_ENOTFOUND;
  st_txn *txn;
  int rc = st_read_begin(srv->store, &txn);
  if (!rc) {
    rc = auth_browser_get(txn, tenant, c, pages__now(), srv->cfg.browser_session_idle_ms / 1000, out);
    st_txn_end(txn);
  }
  OPENSSL_cleanse(cookie, sizeof cookie);
  if (rc == 0) snprintf(req->actor, sizeof req->actor, "user:%.38s", out->user_id);
  if (rc == 0 && touch && out->touch_due) {
    touch_job *t = malloc(sizeof *t);
    if (t) {
      memcpy(t->hash, out->hash, 32);
      t->now = pages__now();
      if (gw_loop_submit(req->lp, job_touch, done_touch, t)) free(t);
    }
  }
  return rc;
}

int pages__session(gw_req *req, const char *tenant, auth_browser *out) { return session_read(req, tenant, out, true); }

/* The request may change state: same site, and the session's CSRF token. */
bool pages__csrf_ok(gw_req *req, const auth_browser *s, const char *form_token) {
  const char *origin = gw_req_header(req, "Origin");
  if (origin && strcmp(origin, "null")) {
    const char *pub = req->lp->srv->cfg.public_url;
    const char *host = strstr(pub, "://");
    size_t olen = host ? (size_t)(host + 3 - pub) + strcspn(host + 3, "/") : strlen(pub);
    if (strlen(origin) != olen || strncasecmp(origin, pub, olen)) return false;
  } else if (origin) {
    return false;
  }
  const char *site = gw_req_header(req, "Sec-Fetch-Site");
  if (site && strcmp(site, "same-origin") && strcmp(site, "none")) return false;
  const char *tok = gw_req_header(req, "X-CSRF-Token");
  if (!tok) tok = form_token;
  size_t n = strlen(s->csrf);
  return tok && n && strlen(tok) == n && CRYPTO_memcmp(tok, s->csrf, n) == 0;
}

/* ---- the page and assets */

static void serve_asset(gw_req *req, const web_asset *a, bool cacheable) {
  pages__headers(req, cacheable);
  gw_resp_header(req, "ETag", a->etag);
  const char *inm = gw_req_header(req, "If-None-Match");
  if (inm && !strcmp(inm, a->etag)) {
    gw_respond(req, 304, NULL, NULL, 0);
    return;
  }
  gw_respond(req, 200, a->type, a->data, a->len);
}

static bool tenant_live(gw_server *srv, const char *tenant) {
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) return false;
  bool ok = st_tenant_active(txn, tenant) == 0;
  st_txn_end(txn);
  return ok;
}

/* ---- /api/me */

static json_t *user_view(const json_t *u) {
  const char *email = NULL;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(u, "emails"), i, e) {
    const char *v = json_string_value(json_object_get(e, "value"));
    if (v && (!email || json_is_true(json_object_get(e, "primary")))) email = v;
  }
  return json_pack("{s:O,s:O,s:O?,s:s?}", "id", json_object_get(u, "id"), "userName", json_object_get(u, "userName"),
                   "displayName", json_object_get(u, "displayName"), "email", email);
}

/* The oauth and user_header connectors the person may use, connected or
 * not: the page offers "Connect" or "Disconnect" (never a token), or the
 * key form, with the key state it sends back (vault/connect.h: the key is
 * stored only for the connector as the page showed it). */
static json_t *connections_view(st_txn *txn, const gw_server *srv, const char *tenant, const char *user,
                                const json_t *conns) {
  json_t *out = json_array(), *grants = NULL;
  vault_grants_of_user(txn, tenant, user, &grants);
  pol_user *pu = NULL;
  if (pol_user_load(txn, tenant, user, &pu) != 0) pu = NULL;
  size_t i, k;
  json_t *c, *g;
  json_array_foreach(conns, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    if (!name || !vault_connector_is_per_user(c) || !pu || !pol_connector_visible(pu, name)) continue;
    json_t *mine = NULL;
    json_array_foreach(grants, k, g) if (!strcmp(json_string_value(json_object_get(g, "connector")) ?: "", name)) mine = g;
    char link[1200];
    const char *pub = srv->cfg.public_url ? srv->cfg.public_url : "";
    size_t n = strlen(pub);
    while (n && pub[n - 1] == '/') n--;
    snprintf(link, sizeof link, "%.*s/t/%s/connect/%s", (int)n, pub, tenant, name);
    bool key = !vault_connector_is_oauth(c);
    json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s}", "connector", name, "kind", key ? "key" : "oauth", "description",
                          json_string_value(json_object_get(c, "description")) ?: "", "connected", mine != NULL,
                          "connect_url", link);
    if (key) {
      json_object_set(o, "header", json_object_get(json_object_get(c, "auth"), "name"));
      /* from the record (conns are admin views, without its epoch); without
       * a state (sealing failed) the form's PUT is refused: reload */
      json_t *rec = NULL;
      char *state = NULL;
      if (vault_connector_get(txn, tenant, name, &rec) == 0 &&
          vault_key_state_seal(srv->store, tenant, user, name, rec, &state) == 0)
        json_object_set_new(o, "key_state", json_string(state));
      free(state);
      json_decref(rec);
    }
    if (mine) {
      json_object_set(o, "connected_at", json_object_get(mine, "created"));
      json_object_set(o, "updated", json_object_get(mine, "updated"));
    }
    json_array_append_new(out, o);
  }
  pol_user_free(pu);
  json_decref(grants);
  return out;
}

static void api_me(gw_req *req, const char *tenant, const auth_browser *s) {
  gw_server *srv = req->lp->srv;
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) {
    json_error(req, 503, "store_busy", "the gateway's store is busy; try again");
    return;
  }
  json_t *u = NULL, *gids = NULL, *conns = NULL;
  int64_t max_age = 0;
  bool allowed = false;
  st_dir_user_get(txn, tenant, s->user_id, &u);
  st_dir_user_groups(txn, tenant, s->user_id, &gids);
  json_t *groups = json_array();
  size_t i;
  json_t *g;
  json_array_foreach(gids, i, g) {
    json_t *grp = NULL;
    if (st_dir_group_get(txn, tenant, json_string_value(g), &grp) == 0) {
      json_t *dn = json_object_get(grp, "displayName");
      if (json_is_string(dn)) json_array_append(groups, dn);
    }
    json_decref(grp);
  }
  json_t *names = json_array();
  if (vault_connector_list(txn, tenant, &conns) == 0)
    json_array_foreach(conns, i, g) json_array_append(names, json_object_get(g, "name"));
  json_t *summary = pol_user_summary(txn, tenant, s->user_id, names);
  json_decref(names);
  json_t *connections = connections_view(txn, srv, tenant, s->user_id, conns);
  json_decref(conns);
  gw_settings_get_bool(txn, tenant, "self_service_tokens", &allowed);
  gw_settings_get_int(txn, tenant, "signin_max_age_ms", &max_age);
  /* the user's own, by the user index: never a walk over the tenant's */
  json_t *items = NULL;
  if (auth_token_list_user(txn, tenant, s->user_id, &items)) {
    json_decref(items);
    items = json_array();
  }
  /* the applications connected as this person (OAuth grants) */
  json_t *gv = oauth__grants_view(txn, tenant, s->user_id);
  if (!gv) gv = json_array();
  st_txn_end(txn);
  if (!u) {
    json_decref(gv);
    json_decref(gids);
    json_decref(groups);
    json_decref(summary);
    json_decref(items);
    json_decref(connections);
    json_error(req, 401, "signed_out", "you are signed out");
    return;
  }
  int64_t bound = s->signin_at + max_age / 1000, now = pages__now();
  int64_t max_days = bound > now ? (bound - now + 86399) / 86400 : 0;
  char signed_at[32], exp_at[32];
  char oauth[1300], header[1400];
  snprintf(oauth, sizeof oauth, "claude mcp add --transport http %s %s/t/%s/mcp", tenant, srv->cfg.public_url,
           tenant);
  snprintf(header, sizeof header, "%s --header \"Authorization: Bearer <your token>\"", oauth);
  int64_t idle_end = s->last_seen + srv->cfg.browser_session_idle_ms / 1000;
  rfc3339(s->signin_at, signed_at);
  rfc3339(s->expires < idle_end ? s->expires : idle_end, exp_at);
  json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:{s:b,s:I,s:o},s:{s:s,s:s},s:{s:s,s:s},s:s}", "tenant", tenant, "user",
                        user_view(u), "groups", groups, "connectors", summary ? summary : json_array(), "tokens",
                        "allowed", allowed, "max_days", (json_int_t)max_days, "items", items, "commands", "oauth",
                        oauth, "header", header, "session", "signed_in_at", signed_at, "expires_at", exp_at, "csrf",
                        s->csrf);
  json_object_set_new(o, "grants", gv);
  json_object_set_new(o, "connections", connections);
  json_decref(u);
  json_decref(gids);
  json_reply(req, 200, o);
}

/* ---- writes: tokens, sign-out */

enum { OP_TOKEN_CREATE, OP_TOKEN_REVOKE, OP_GRANT_REVOKE, OP_CONN_DROP, OP_KEY_PUT, OP_LOGOUT, OP_LOGOUT_ALL };

typedef struct page_job {
  gw_req *req;
  gw_loop *lp;
  int op;
  char tenant[64];
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
  int64_t now, idle_s;
  auth_browser s;
  auth_token_new t;
  char token[ST_TOKEN_BUFSZ];
  int64_t max_days, signin_max_ms;
  bool disabled; /* out: self-service tokens are off */
  bool too_many; /* out: PAGES_TOKENS_MAX live tokens already */
  char *key;     /* OP_KEY_PUT: the person's API key (wiped with the job) */
  vault_key_state key_state; /* OP_KEY_PUT: the connector as the page showed it */
  char connector[40]; /* OP_CONN_DROP, OP_KEY_PUT: its name (up to 32 bytes: never in t.tokid) */
  int count;     /* out */
} page_job;

static void job_free(page_job *j) {
  if (j->key) {
    OPENSSL_cleanse(j->key, strlen(j->key));
    free(j->key);
  }
  OPENSSL_cleanse(j, sizeof *j);
  free(j);
}

/* How many of the user's employee tokens have not expired at now (one
 * without an expiry, or with one that does not parse, counts). */
static int live_tokens(st_txn *txn, const char *tenant, const char *user_id, int64_t now) {
  json_t *toks;
  int rc = auth_token_list_user(txn, tenant, user_id, &toks);
  size_t i;
  json_t *t;
  int n = 0;
  if (rc == 0)
    json_array_foreach(toks, i, t) {
      if (!auth_token_expired_at(t, now)) n++;
    }
  json_decref(toks);
  return rc ? rc : n;
}

static int job_page(st_txn *txn, void *arg) {
  page_job *j = arg;
  /* outputs set afresh by every run (store.h: a job may run again) */
  j->disabled = j->too_many = false;
  j->count = 0;
  /* the session must still be live inside this transaction */
  int rc = auth_browser_get(txn, j->tenant, j->cookie, j->now, j->idle_s, &j->s);
  if (rc) return rc == ST_ENOTFOUND ? AUTH_ELOGIN : rc;
  switch (j->op) {
  case OP_TOKEN_CREATE: {
    bool allowed = false;
    int64_t max_ms = 0;
    if ((rc = gw_settings_get_bool(txn, j->tenant, "self_service_tokens", &allowed))) return rc;
    if (!allowed) {
      j->disabled = true;
      return 0;
    }
    if ((rc = gw_settings_get_int(txn, j->tenant, "signin_max_age_ms", &max_ms))) return rc;
    int64_t exp = j->now + j->max_days * 86400, bound = j->s.signin_at + max_ms / 1000;
    if (exp > bound) exp = bound;
    if (exp <= j->now) {
      j->disabled = true; /* the sign-in is too old to mint anything: sign in again */
      return 0;
    }
    if ((rc = live_tokens(txn, j->tenant, j->s.user_id, j->now)) < 0) return rc;
    if (rc >= PAGES_TOKENS_MAX) {
      j->too_many = true;
      return 0;
    }
    rfc3339(exp, j->t.expires);
    snprintf(j->t.user_ref, sizeof j->t.user_ref, "%s", j->s.user_id);
    j->t.self = true;
    return auth_token_create(txn, &j->t);
  }
  case OP_TOKEN_REVOKE: {
    json_t *rec;
    if ((rc = auth_token_get_by_id(txn, j->tenant, AUTH_KIND_EMPLOYEE, j->t.tokid, &rec))) return rc;
    const char *owner = json_string_value(json_object_get(rec, "user"));
    bool mine = owner && !strcmp(owner, j->s.user_id);
    json_decref(rec);
    if (!mine) return ST_ENOTFOUND; /* someone else's token is no token of yours */
    return auth_token_revoke(txn, j->tenant, AUTH_KIND_EMPLOYEE, j->t.tokid);
  }
  case OP_GRANT_REVOKE: {
    /* only a grant of this person: another's is no grant of theirs */
    json_t *gs = NULL, *g;
    size_t i;
    bool mine = false;
    if ((rc = auth_oauth_grants(txn, j->tenant, j->s.user_id, &gs))) {
      json_decref(gs);
      return rc;
    }
    json_array_foreach(gs, i, g) mine = mine || !strcmp(json_string_value(json_object_get(g, "id")) ?: "", j->t.tokid);
    json_decref(gs);
    /* and the consent given to its client: it asks again before it is
     * connected again */
    return mine ? auth_oauth_disconnect(txn, j->tenant, j->s.user_id, j->t.tokid) : ST_ENOTFOUND;
  }
  case OP_CONN_DROP: {
    /* the person's own upstream grant: out now, revoked at the upstream by
     * the queue (vault/grant.h); the connector name is all they give */
    char now[32];
    rfc3339(j->now, now);
    return vault_grant_drop(txn, j->tenant, j->s.user_id, j->connector, "disconnect", now);
  }
  case OP_KEY_PUT: {
    /* the person's own key for a user_header connector their policy shows */
    json_t *rec = NULL;
    if ((rc = vault_connector_get(txn, j->tenant, j->connector, &rec))) return rc;
    bool kind = !strcmp(json_string_value(json_object_get(json_object_get(rec, "auth"), "type")) ?: "", "user_header");
    /* ... as the page showed it: a key typed for the old upstream is never
     * stored for the one the connector was moved to meanwhile (a move or
     * another header cut the keys; this one comes after the cut) */
    bool same = kind && vault_key_state_matches(&j->key_state, rec);
    json_decref(rec);
    pol_user *pu = NULL;
    bool vis = kind && pol_user_load(txn, j->tenant, j->s.user_id, &pu) == 0 && pol_connector_visible(pu, j->connector);
    pol_user_free(pu);
    if (!vis) return ST_ENOTFOUND;
    if (!same) return ST_EEXIST;
    char now[32];
    rfc3339(j->now, now);
    vault_tokens t = {.access = j->key};
    return vault_grant_put(txn, j->tenant, j->s.user_id, j->connector, &t, now, VAULT_PUT_CONNECT);
  }
  case OP_LOGOUT: return auth_browser_delete(txn, j->s.hash);
  default:
    /* every browser session, every application connected as them, and
     * every access token of theirs (the ones pasted into an agent on the
     * laptop they lost): each revoked with its event, so a session or
     * stream open with it is closed (gateway/mcp/revoke.c) */
    rc = auth_browser_delete_user(txn, j->tenant, j->s.user_id);
    if (rc < 0) return rc;
    j->count = rc;
    rc = auth_oauth_disconnect_user(txn, j->tenant, j->s.user_id);
    if (rc < 0) return rc;
    rc = auth_tokens_revoke_user(txn, j->tenant, j->s.user_id);
    return rc < 0 ? rc : 0;
  }
}

static void done_page(int status, void *arg) {
  page_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (j->op == OP_LOGOUT || j->op == OP_LOGOUT_ALL) {
    /* signed out either way: the session was gone, or is now */
    pages__cookie_set(req, j->tenant, PAGES_COOKIE_SESSION, NULL, 0);
    if (status && status != AUTH_ELOGIN && status != ST_ENOTFOUND) {
      pages__message(req, 503, j->tenant, "Sign-out failed", "The gateway could not sign you out. Try again.", NULL,
                     NULL);
    } else {
      if (!status) GW_LOG(GW_LOG_INFO, "login", &lc, "user %s signed out%s", j->s.user_id,
                          j->op == OP_LOGOUT_ALL ? " everywhere" : "");
      char loc[96];
      snprintf(loc, sizeof loc, "/t/%s/", j->tenant);
      pages__headers(req, false);
      gw_resp_header(req, "Location", loc);
      gw_respond(req, 303, NULL, NULL, 0);
    }
    job_free(j);
    return;
  }
  if (status == AUTH_ELOGIN) {
    json_error(req, 401, "signed_out", "you are signed out; sign in again");
  } else if (status == ST_EEXIST && j->op == OP_KEY_PUT) {
    GW_LOG(GW_LOG_INFO, "login", &lc, "user %s's key for %s not saved: the connector changed since their page showed it",
           j->s.user_id, j->connector);
    json_error(req, 409, "connector_changed",
               "your key was not saved: an administrator changed this connector (its service or how the key is sent) "
               "after your page showed it. Check that your key is for the service as it is now, and enter it again");
  } else if (status == ST_ENOTFOUND)
    json_error(req, 404, "not_found",
               j->op == OP_CONN_DROP ? "you have not connected that connector"
               : j->op == OP_KEY_PUT ? "no connector by that name takes your own key here"
                                     : "no such token of yours");
  else if (status == AUTH_EINACTIVE) json_error(req, 403, "inactive", "your account is not active");
  else if (status) json_error(req, 503, "store_error", "the gateway could not do that; try again");
  else if (j->too_many)
    json_error(req, 409, "too_many_tokens",
               "you have as many access tokens as one person may hold here; revoke one you no longer use first");
  else if (j->disabled)
    json_error(req, 403, "tokens_disabled",
               "this organisation does not let employees create access tokens here (or your sign-in is too old: "
               "sign in again)");
  else if (j->op == OP_KEY_PUT) {
    GW_LOG(GW_LOG_INFO, "login", &lc, "user %s saved their key for %s", j->s.user_id, j->connector);
    pages__headers(req, false);
    gw_respond(req, 204, NULL, NULL, 0);
  } else if (j->op == OP_TOKEN_REVOKE || j->op == OP_GRANT_REVOKE || j->op == OP_CONN_DROP) {
    GW_LOG(GW_LOG_INFO, "login", &lc, "user %s revoked their %s %s", j->s.user_id,
           j->op == OP_GRANT_REVOKE ? "application grant" : j->op == OP_CONN_DROP ? "connection to" : "token",
           j->op == OP_CONN_DROP ? j->connector : j->t.tokid);
    pages__headers(req, false);
    gw_respond(req, 204, NULL, NULL, 0);
  } else {
    GW_LOG(GW_LOG_INFO, "login", &lc, "user %s created token %s (expires %s)", j->s.user_id, j->t.tokid,
           j->t.expires);
    json_reply(req, 201, json_pack("{s:s,s:s,s:s,s:s}", "id", j->t.tokid, "token", j->token, "name",
                                   j->t.name[0] ? j->t.name : "token", "expires", j->t.expires));
  }
  job_free(j);
}

static void submit(gw_req *req, page_job *j, bool page) {
  if (gw_loop_submit(req->lp, job_page, done_page, j)) {
    job_free(j);
    if (page) pages__message(req, 503, req->tenant, "Try again", "The gateway's store is busy.", NULL, NULL);
    else json_error(req, 503, "store_busy", "the gateway's store cannot take writes right now");
  }
}

static page_job *job_new(gw_req *req, const char *tenant, int op, const auth_browser *s) {
  gw_server *srv = req->lp->srv;
  page_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->req = req;
  j->lp = req->lp;
  j->op = op;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  char name[96];
  pages__cookie_name(srv, tenant, PAGES_COOKIE_SESSION, name, sizeof name);
  pages__cookie_get(req, name, j->cookie, sizeof j->cookie);
  j->now = pages__now();
  j->idle_s = srv->cfg.browser_session_idle_ms / 1000;
  j->s = *s;
  return j;
}

/* DELETE api/grants/{id}: disconnects one application (its OAuth grant). */
static void api_grant_revoke(gw_req *req, const char *tenant, const auth_browser *s, const char *id) {
  if (strcmp(req->method, "DELETE")) {
    gw_resp_header(req, "Allow", "DELETE");
    json_error(req, 405, "method_not_allowed", "that method is not allowed here");
    return;
  }
  if (!pages__csrf_ok(req, s, NULL)) {
    json_error(req, 403, "csrf", "this request did not come from your mcpgate page (missing or wrong CSRF token)");
    return;
  }
  if (strlen(id) != ST_TOKEN_ID_LEN) {
    json_error(req, 404, "not_found", "no such application of yours");
    return;
  }
  page_job *j = job_new(req, tenant, OP_GRANT_REVOKE, s);
  if (!j) {
    json_error(req, 500, "internal", "out of memory");
    return;
  }
  snprintf(j->t.tokid, sizeof j->t.tokid, "%s", id);
  submit(req, j, false);
}

#define KEY_MAX 4096

/* PUT api/connections/{connector} {"key": "…", "state": "…"}: the
 * person's own API key for a user_header connector (sealed; never shown
 * again), for the connector as their page showed it (state: api/me's
 * key_state; vault/connect.h). */
static void api_key_put(gw_req *req, const char *tenant, const auth_browser *s, const char *conn) {
  json_t *b = gw_json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, NULL);
  json_t *kv = json_object_get(b, "key");
  const char *key = json_string_value(kv);
  const char *state = json_string_value(json_object_get(b, "state"));
  bool ok = json_is_object(b) && json_object_size(b) == 2 && key && state &&
            json_string_length(kv) == strlen(key) && *key && strlen(key) <= KEY_MAX;
  for (const char *p = key; ok && *p; p++) ok = (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
  vault_key_state ks;
  bool stale = ok && vault_key_state_open(req->lp->srv->store, tenant, state, s->user_id, conn, &ks) != 0;
  page_job *j = ok && !stale ? job_new(req, tenant, OP_KEY_PUT, s) : NULL;
  if (j && !(j->key = strdup(key))) {
    job_free(j);
    j = NULL;
  }
  if (j) j->key_state = ks;
  if (b) {
    /* the body and its parse hold the key: wiped now */
    if (key) OPENSSL_cleanse((char *)key, strlen(key));
    json_decref(b);
  }
  OPENSSL_cleanse(req->body, req->body_len);
  if (!ok) {
    json_error(req, 400, "invalid_request",
               "the body must be {\"key\": \"…\", \"state\": \"…\"}: your key, 1 to 4096 printable characters on one "
               "line, and the key_state your page was given for this connector");
    return;
  }
  if (stale) {
    json_error(req, 400, "stale_form",
               "your key was not saved: this form is not one your page was given for this connector (or it is out of "
               "date). Reload the page and enter your key again");
    return;
  }
  if (!j) {
    json_error(req, 500, "internal", "out of memory");
    return;
  }
  snprintf(j->connector, sizeof j->connector, "%s", conn);
  submit(req, j, false);
}

/* DELETE api/connections/{connector}: disconnects the person's own grant
 * at that connector's upstream (or deletes their key); PUT saves a key. */
static void api_connection_drop(gw_req *req, const char *tenant, const auth_browser *s, const char *conn) {
  bool put = !strcmp(req->method, "PUT");
  if (strcmp(req->method, "DELETE") && !put) {
    gw_resp_header(req, "Allow", "PUT, DELETE");
    json_error(req, 405, "method_not_allowed", "that method is not allowed here");
    return;
  }
  if (!pages__csrf_ok(req, s, NULL)) {
    json_error(req, 403, "csrf", "this request did not come from your mcpgate page (missing or wrong CSRF token)");
    return;
  }
  if (!vault_connector_name_valid(conn)) {
    json_error(req, 404, "not_found", "you have not connected that connector");
    return;
  }
  if (put) {
    api_key_put(req, tenant, s, conn);
    return;
  }
  page_job *j = job_new(req, tenant, OP_CONN_DROP, s);
  if (!j) {
    json_error(req, 500, "internal", "out of memory");
    return;
  }
  snprintf(j->connector, sizeof j->connector, "%s", conn);
  submit(req, j, false);
}

static void api_tokens(gw_req *req, const char *tenant, const auth_browser *s, const char *tokid) {
  bool create = !tokid && !strcmp(req->method, "POST");
  bool revoke = tokid && !strcmp(req->method, "DELETE");
  if (!create && !revoke) {
    gw_resp_header(req, "Allow", tokid ? "DELETE" : "POST");
    json_error(req, 405, "method_not_allowed", "that method is not allowed here");
    return;
  }
  if (!pages__csrf_ok(req, s, NULL)) {
    json_error(req, 403, "csrf", "this request did not come from your mcpgate page (missing or wrong CSRF token)");
    return;
  }
  page_job *j = job_new(req, tenant, create ? OP_TOKEN_CREATE : OP_TOKEN_REVOKE, s);
  if (!j) {
    json_error(req, 500, "internal", "out of memory");
    return;
  }
  if (revoke) {
    if (strlen(tokid) != ST_TOKEN_ID_LEN) {
      job_free(j);
      json_error(req, 404, "not_found", "no such token of yours");
      return;
    }
    snprintf(j->t.tokid, sizeof j->t.tokid, "%s", tokid);
    snprintf(j->t.tenant, sizeof j->t.tenant, "%s", tenant);
    submit(req, j, false);
    return;
  }
  json_error_t je;
  json_t *b = gw_json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &je);
  const char *msg = NULL;
  json_t *nv = json_object_get(b, "name"), *dv = json_object_get(b, "expires_days");
  if (!json_is_object(b)) msg = "the body must be a JSON object {\"name\": …, \"expires_days\": …}";
  else if (json_object_size(b) > (size_t)(!!nv + !!dv)) msg = "only \"name\" and \"expires_days\" may be given";
  else if (!json_is_string(nv) || json_string_length(nv) < 1 || json_string_length(nv) > TOKEN_NAME_MAX ||
           strlen(json_string_value(nv)) != json_string_length(nv))
    msg = "\"name\" must be a string of 1 to 200 characters";
  else if (!json_is_integer(dv) || json_integer_value(dv) < 1 || json_integer_value(dv) > 3650)
    msg = "\"expires_days\" must be a whole number of days (at least 1)";
  if (msg) {
    json_decref(b);
    job_free(j);
    json_error(req, 400, "invalid_request", msg);
    return;
  }
  for (const char *p = json_string_value(nv); *p; p++)
    if ((unsigned char)*p < 0x20) msg = "\"name\" must not contain control characters";
  if (msg) {
    json_decref(b);
    job_free(j);
    json_error(req, 400, "invalid_request", msg);
    return;
  }
  snprintf(j->t.tenant, sizeof j->t.tenant, "%s", tenant);
  snprintf(j->t.name, sizeof j->t.name, "%s", json_string_value(nv));
  j->max_days = json_integer_value(dv);
  json_decref(b);
  char now[32];
  rfc3339(j->now, now);
  snprintf(j->t.now, sizeof j->t.now, "%s", now);
  if (st_token_new(AUTH_TOKEN_PREFIX, j->token, sizeof j->token) != 0 || st_token_id_new(j->t.tokid) != 0 ||
      st_token_hash(j->token, strlen(j->token), j->t.hash) != 0) {
    job_free(j);
    json_error(req, 500, "internal", "could not generate a token");
    return;
  }
  submit(req, j, false);
}

/* POST logout / signout-everywhere: a form (csrf field) or a script
 * (X-CSRF-Token). Without a live session there is nothing to end. */
static void sign_out(gw_req *req, const char *tenant, bool everywhere) {
  char loc[96];
  snprintf(loc, sizeof loc, "/t/%s/", tenant);
  if (strcmp(req->method, "POST")) {
    pages__headers(req, false);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    return;
  }
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc && rc != ST_ENOTFOUND) {
    /* the session could not be read (a store failure, a damaged record):
     * it may well be alive, and so may every other one — never answered
     * as a done sign-out (least of all "everywhere"), and no cookie is
     * touched: nothing here checked that the request is the person's */
    pages__message(req, 503, tenant, "Sign-out failed",
                   "The gateway could not sign you out: it cannot read your session right now. Try again in a "
                   "moment.",
                   loc, "Back to your page");
    return;
  }
  if (rc) {
    /* a stale cookie is cleared; with none sent (a cross-site form: the
     * cookie is SameSite=Lax) nothing is said about cookies, so another
     * site cannot sign anyone out */
    char cname[96], cval[512];
    pages__cookie_name(req->lp->srv, tenant, PAGES_COOKIE_SESSION, cname, sizeof cname);
    if (pages__cookie_get(req, cname, cval, sizeof cval)) pages__cookie_set(req, tenant, PAGES_COOKIE_SESSION, NULL, 0);
    OPENSSL_cleanse(cval, sizeof cval);
    pages__headers(req, false);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    return;
  }
  char form[AUTH_LOGIN_RAND_LEN + 2] = "";
  const char *ct = gw_req_header(req, "Content-Type");
  if (ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33) && req->body)
    gw_query_get(req->body, "csrf", form, sizeof form);
  if (!pages__csrf_ok(req, &s, form[0] ? form : NULL)) {
    pages__message(req, 403, tenant, "Sign-out refused",
                   "This request did not come from your mcpgate page. Use the Sign out button on the page.", loc,
                   "Back to your page");
    return;
  }
  page_job *j = job_new(req, tenant, everywhere ? OP_LOGOUT_ALL : OP_LOGOUT, &s);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  submit(req, j, true);
}

/* ---- dispatch */

/* "/t/{tenant}/rest": copies the tenant, returns rest (after the slash;
 * "" for "/t/{tenant}/"), or NULL when the tenant id is malformed. */
static const char *split(const gw_req *req, char tenant[64]) {
  const char *p = req->path + 3;
  size_t n = strcspn(p, "/");
  if (n == 0 || n > 63) return NULL;
  memcpy(tenant, p, n);
  tenant[n] = 0;
  if (!st_tenant_id_valid(tenant)) return NULL;
  return p[n] == '/' ? p + n + 1 : p + n;
}

static void pages_dispatch(gw_req *req) {
  gw_server *srv = req->lp->srv;
  char tenant[64];
  const char *rest = split(req, tenant);
  if (!rest) {
    gw_respond_error(req, 404, "not_found", "no such page");
    return;
  }
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!tenant_live(srv, tenant)) {
    pages__message(req, 404, tenant, "No such organisation",
                   "There is no mcpgate organisation at this address. Check the link IT gave you.", NULL, NULL);
    return;
  }
  bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (req->path[strlen(req->path) - 1] != '/' && rest[0] == 0) { /* /t/{t} */
    char loc[96];
    snprintf(loc, sizeof loc, "/t/%s/", tenant);
    security_headers(req);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 308, NULL, NULL, 0);
    return;
  }
  if (rest[0] == 0 || !strncmp(rest, "assets/", 7)) {
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    const web_asset *a = web_asset_get(rest[0] ? rest : "index.html");
    if (!a || (rest[0] && strncmp(a->path, "assets/", 7))) {
      pages__message(req, 404, tenant, "Not found", "There is no such page.", NULL, NULL);
      return;
    }
    serve_asset(req, a, rest[0] != 0);
    return;
  }
  if (!strcmp(rest, "login")) {
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    if (pages__rate_ok(req, tenant)) pages__login(req, tenant);
    return;
  }
  if (!strncmp(rest, "connect/", 8)) {
    char conn[40];
    const char *c = rest + 8, *slash = strchr(c, '/');
    size_t cl = slash ? (size_t)(slash - c) : strlen(c);
    if (cl >= sizeof conn || (slash && strcmp(slash, "/callback"))) {
      pages__message(req, 404, tenant, "Not found", "There is no such page.", NULL, NULL);
      return;
    }
    memcpy(conn, c, cl);
    conn[cl] = 0;
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    /* a signed-in employee's page: junk from many addresses that spent
     * the tenant's budget does not hold it off (as at authorize) */
    if (!pages__rate_ok_signed_in(req, tenant)) return;
    if (slash) pages__connect_callback(req, tenant, conn);
    else pages__connect(req, tenant, conn);
    return;
  }
  if (!strncmp(rest, "oauth/upstream-client/", 22)) {
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    pages__upstream_client(req, tenant, rest + 22);
    return;
  }
  if (!strcmp(rest, "oauth/callback")) {
    if (pages__rate_ok(req, tenant)) pages__callback(req, tenant);
    return;
  }
  if (!strcmp(rest, "oauth/authorize")) {
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    if (pages__rate_ok_signed_in(req, tenant)) pages__authorize(req, tenant);
    return;
  }
  if (!strcmp(rest, "oauth/consent")) {
    pages__consent(req, tenant);
    return;
  }
  if (!strcmp(rest, "oauth/token")) {
    /* per address here; the tenant's bucket only for a request whose
     * grant does not work (pages__token) */
    if (pages__rate_wait_address(req))
      gw_respond_json(req, 429, json_pack("{s:s,s:s}", "error", "rate_limited", "error_description",
                                          "too many requests; retry after the Retry-After seconds"));
    else pages__token(req, tenant);
    return;
  }
  if (!strcmp(rest, "oauth/revoke")) {
    pages__revoke(req, tenant);
    return;
  }
  if (!strcmp(rest, "logout") || !strcmp(rest, "signout-everywhere")) {
    sign_out(req, tenant, rest[0] == 's');
    return;
  }
  /* the page's API: a session first */
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc) {
    json_error(req, rc == ST_ENOTFOUND ? 401 : 503, rc == ST_ENOTFOUND ? "signed_out" : "store_busy",
               rc == ST_ENOTFOUND ? "you are signed out: sign in at login" : "the gateway's store is busy");
    return;
  }
  if (!strcmp(rest, "api/me")) {
    if (!get) {
      gw_resp_header(req, "Allow", "GET, HEAD");
      json_error(req, 405, "method_not_allowed", "only GET is allowed here");
      return;
    }
    api_me(req, tenant, &s);
  } else if (!strcmp(rest, "api/tokens")) {
    api_tokens(req, tenant, &s, NULL);
  } else if (!strncmp(rest, "api/tokens/", 11) && rest[11] && !strchr(rest + 11, '/')) {
    api_tokens(req, tenant, &s, rest + 11);
  } else if (!strncmp(rest, "api/grants/", 11) && rest[11] && !strchr(rest + 11, '/')) {
    api_grant_revoke(req, tenant, &s, rest + 11);
  } else if (!strncmp(rest, "api/connections/", 16) && rest[16] && !strchr(rest + 16, '/')) {
    api_connection_drop(req, tenant, &s, rest + 16);
  } else {
    json_error(req, 404, "not_found", "no such page API");
  }
}

/* ---- the module */

/* A token of rl's bucket for key: 0, or the seconds until there is one,
 * with Retry-After set and the refusal counted. */
static int64_t rate_take(gw_req *req, gw_pages *p, gw_ratelimit *rl, const char *key) {
  int64_t wait = gw_ratelimit_take(rl, key, pages__mono_ms());
  if (!wait) return 0;
  char ra[24];
  snprintf(ra, sizeof ra, "%lld", (long long)wait);
  gw_resp_header(req, "Retry-After", ra);
  atomic_fetch_add_explicit(&p->rate_limited, 1, memory_order_relaxed);
  return wait;
}

int64_t pages__rate_wait_address(gw_req *req) {
  gw_pages *p = req->lp->srv->pages;
  if (!p) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key(req->client, key); /* IPv6 by its /64 */
  return rate_take(req, p, p->rate_addr, key);
}

int64_t pages__rate_wait_key(gw_req *req, const char *key) {
  gw_pages *p = req->lp->srv->pages;
  return p ? rate_take(req, p, p->rate_addr, key) : 0;
}

int64_t pages__rate_wait_tenant(gw_req *req, const char *tenant) {
  gw_pages *p = req->lp->srv->pages;
  return p ? rate_take(req, p, p->rate_tenant, tenant) : 0;
}

int64_t pages__rate_wait(gw_req *req, const char *tenant) {
  int64_t wait = pages__rate_wait_address(req);
  return wait ? wait : pages__rate_wait_tenant(req, tenant);
}

int64_t pages__rate_wait_register(gw_req *req, const char *tenant) {
  gw_pages *p = req->lp->srv->pages;
  int64_t wait = pages__rate_wait_address(req);
  return wait || !p ? wait : rate_take(req, p, p->rate_dcr_tenant, tenant);
}

static bool rate_refused_page(gw_req *req, const char *tenant) {
  pages__message(req, 429, tenant, "Too many sign-in attempts",
                 "Too many sign-in attempts from here. Wait a minute and try again.", NULL, NULL);
  return false;
}

bool pages__rate_ok(gw_req *req, const char *tenant) {
  return !pages__rate_wait(req, tenant) || rate_refused_page(req, tenant);
}

/* The person's own bucket (the address's rate, in the address limiter):
 * a session cookie works from any address, and each request it passes may
 * cost a write (a code) — its holder's addresses must not multiply it. The
 * key is a digest of tenant and user: no address key looks like it, and
 * long names are not cut into one another's. */
static int64_t rate_wait_person(gw_req *req, const char *tenant, const char *user) {
  gw_pages *p = req->lp->srv->pages;
  if (!p) return 0;
  char who[64 + 1 + 40], key[GW_RATELIMIT_KEY_MAX + 1];
  uint8_t h[32];
  int n = snprintf(who, sizeof who, "%s\n%s", tenant, user);
  if (n < 0 || st_token_hash(who, strlen(who), h)) return rate_take(req, p, p->rate_tenant, tenant); /* fail closed */
  int o = snprintf(key, sizeof key, "person:");
  for (int i = 0; i < 16; i++) o += snprintf(key + o, sizeof key - (size_t)o, "%02x", h[i]);
  return pages__rate_wait_key(req, key);
}

bool pages__rate_ok_signed_in(gw_req *req, const char *tenant) {
  if (pages__rate_wait_address(req)) return rate_refused_page(req, tenant);
  auth_browser s;
  if (session_read(req, tenant, &s, false) == 0)
    return !rate_wait_person(req, tenant, s.user_id) || rate_refused_page(req, tenant);
  return !pages__rate_wait_tenant(req, tenant) || rate_refused_page(req, tenant);
}

static int mod_init(gw_server *srv) {
  gw_pages *p = calloc(1, sizeof *p);
  const gw_config *c = &srv->cfg;
  if (!p || !(p->oidc = auth_oidc_cache_new()) || !(p->oidc_logout = auth_oidc_cache_new()) ||
      !(p->rate_addr = gw_ratelimit_new(c->auth_rate_per_address, c->auth_rate_per_address, 65536)) ||
      !(p->rate_tenant = gw_ratelimit_new(c->auth_rate_per_tenant, c->auth_rate_per_tenant, 4096)) ||
      !(p->rate_dcr_tenant = gw_ratelimit_new(c->dcr_rate_per_tenant, c->dcr_rate_per_tenant, 4096)) ||
      !(p->rate_logout_addr = gw_ratelimit_new(c->logout_rate_per_address, c->logout_rate_per_address, 65536)) ||
      !(p->rate_logout_tenant = gw_ratelimit_new(c->logout_rate_per_tenant, c->logout_rate_per_tenant, 4096))) {
    if (p) {
      auth_oidc_cache_free(p->oidc);
      auth_oidc_cache_free(p->oidc_logout);
      gw_ratelimit_free(p->rate_addr);
      gw_ratelimit_free(p->rate_tenant);
      gw_ratelimit_free(p->rate_dcr_tenant);
      gw_ratelimit_free(p->rate_logout_addr);
    }
    free(p);
    return ST_ENOMEM;
  }
  p->fetch_body_ms = pages__fetch_body_ms();
  srv->pages = p;
  return 0;
}

void pages__count(gw_server *srv, int result) {
  if (srv->pages && result >= 0 && result < PAGES_SIGNIN_N)
    atomic_fetch_add_explicit(&srv->pages->signins[result], 1, memory_order_relaxed);
}

static void mod_metrics(gw_server *srv, gw_buf *o) {
  static const char *const names[PAGES_SIGNIN_N] = {"ok", "refused", "invalid_token", "stale", "provider_error"};
  if (!srv->pages) return;
  gw_buf_appends(o, "# HELP mcpgate_signins_total Employee sign-ins with the tenant's identity provider, by "
                    "result (refused: not provisioned or not active; invalid_token: the ID token failed a check; "
                    "stale: expired, replayed or foreign callback; provider_error: the provider was unusable).\n"
                    "# TYPE mcpgate_signins_total counter\n");
  for (int i = 0; i < PAGES_SIGNIN_N; i++)
    gw_buf_printf(o, "mcpgate_signins_total{result=\"%s\"} %llu\n", names[i],
                  (unsigned long long)atomic_load_explicit(&srv->pages->signins[i], memory_order_relaxed));
  gw_buf_printf(o, "# HELP mcpgate_auth_rate_limited_total Sign-in and OAuth requests refused with 429 "
                   "(auth_rate_per_address, auth_rate_per_tenant, dcr_rate_per_tenant).\n# TYPE mcpgate_auth_rate_limited_total counter\n"
                   "mcpgate_auth_rate_limited_total %llu\n",
                (unsigned long long)atomic_load_explicit(&srv->pages->rate_limited, memory_order_relaxed));
  static const char *const gtr[PAGES_GTR_N] = {"done",         "malformed",    "unauthorized", "unknown_subject",
                                               "failed",       "rate_limited", "unavailable"};
  gw_buf_appends(o, "# HELP mcpgate_universal_logouts_total Okta Universal Logout requests "
                    "(POST /t/{tenant}/oauth/global-logout), by result (done: 204, the user signed out everywhere; "
                    "malformed: 400/413/415; unauthorized: 401, no, a bad or a replayed token; unknown_subject: 404; "
                    "failed: 422; rate_limited: 429; unavailable: 503, the keys or the store could not be read).\n"
                    "# TYPE mcpgate_universal_logouts_total counter\n");
  for (int i = 0; i < PAGES_GTR_N; i++)
    gw_buf_printf(o, "mcpgate_universal_logouts_total{result=\"%s\"} %llu\n", gtr[i],
                  (unsigned long long)atomic_load_explicit(&srv->pages->logouts[i], memory_order_relaxed));
}

static void mod_fini(gw_server *srv) {
  gw_pages *p = srv->pages;
  if (!p) return;
  auth_oidc_cache_free(p->oidc);
  auth_oidc_cache_free(p->oidc_logout);
  gw_ratelimit_free(p->rate_addr);
  gw_ratelimit_free(p->rate_tenant);
  gw_ratelimit_free(p->rate_dcr_tenant);
  gw_ratelimit_free(p->rate_logout_addr);
  gw_ratelimit_free(p->rate_logout_tenant);
  free(p);
  srv->pages = NULL;
}

static int mod_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  return auth_browser_register(st);
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  static const gw_route web = {GW_RC_WEB, pages_dispatch, NULL, 16 * 1024, NULL, NULL};
  static const gw_route oauth = {GW_RC_OAUTH, pages_dispatch, "GET, HEAD", 16 * 1024, NULL, NULL};
  static const char *const pats[] = {"/t/{}",           "/t/{}/",          "/t/{}/assets/{}",
                                     "/t/{}/login",     "/t/{}/logout",    "/t/{}/signout-everywhere",
                                     "/t/{}/api/me",    "/t/{}/api/tokens", "/t/{}/api/tokens/{}", "/t/{}/api/grants/{}",
                                     "/t/{}/connect/{}", "/t/{}/connect/{}/callback", "/t/{}/api/connections/{}",
                                     NULL};
  int rc = 0;
  for (const char *const *p = pats; *p && !rc; p++) rc = gw_router_add(rt, *p, &web, 0);
  static const gw_route oauth_post = {GW_RC_OAUTH, pages_dispatch, "POST", 16 * 1024, NULL, NULL};
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/authorize", &oauth, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/upstream-client/{}", &oauth, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/consent", &web, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/token", &oauth_post, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/revoke", &oauth_post, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/global-logout", &pages__global_logout_route, 0);
  return rc ? rc : gw_router_add(rt, "/t/{}/oauth/callback", &oauth, 0);
}

const gw_module gw_mod_pages = {
    .name = "pages",
    .store_init = mod_store_init,
    .init = mod_init,
    .fini = mod_fini,
    .settings = gw_pages_settings,
    .routes = mod_routes,
    .metrics = mod_metrics,
};
