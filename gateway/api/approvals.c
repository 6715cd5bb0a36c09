/* gateway/api/approvals.c — see approvals.h.
 *
 * Rules this file keeps, and why:
 *  - Deciding is done as oneself: the caller is the holder of an employee
 *    token (mgw_) of the tenant, or the browser session of the reviewers'
 *    page — with the employee page's CSRF fences (pages__csrf_ok: the
 *    session's X-CSRF-Token, a same-site Origin and Sec-Fetch-Site), exactly
 *    as its own writes. Either is checked again inside the deciding job (a
 *    token revoked, a session ended or a user deactivated meanwhile decides
 *    nothing), and policy/approval.c checks that this user is active, an
 *    approver of the request and not its requester. No admin credential is
 *    accepted here, nor an employee token an admin created for the user
 *    (created_by "admin": its text went through the admin's hands — a
 *    tenant admin would approve their own call "as" a reviewer): such a
 *    token reads a request, and only a token the user made on their own
 *    page, or their browser session, decides.
 *  - An Authorization header, when sent, is the credential: a cookie beside
 *    it is not looked at, so a bot's request never rides a browser session
 *    and a failed token never falls back to one.
 *  - An unknown id and a request the caller may not see answer the same
 *    404: ids do not leak across users. A reviewer's view of one request
 *    (GET, the decision's answer) leaves out the requester's MCP session
 *    id, as the page's list does.
 *  - The page (/t/{t}/approvals) and its list (/t/{t}/api/approvals) are a
 *    browser session's only, and only an approver's: a member of a group
 *    the policy's approve rules name (or of the tenant's approver_groups
 *    where a rule defers to them), or of a group of a pending request they
 *    may still decide (reviewer_lists). Anyone else gets a 403 page, not
 *    an empty list, after a few reads. The list is filtered in C
 *    (ap_request_list_reviewer): the requests this reviewer may decide now
 *    and those they could have, never their own, and
 *    never the requester's MCP session id. It is read on libuv's thread
 *    pool, not the loop (list_work): a large tenant's scan takes ~1 s.
 *  - The held call learns the decision from the store event the decision
 *    emits (gateway/mcp/held.c), not from this file. */
#include "gateway/api/approvals.h"
#include "gateway/base/json_check.h"
#include "gateway/core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/browser.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/core/settings.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"
#include "policy/approval.h"
#include "policy/policy.h"
#include "store/dir.h"
#include "store/tenant.h"
#include "store/url_query.h"
#include "web/web.h"

/* requests a page lists at most, pending and ended each */
#define PAGE_LIST_MAX 100

json_t *gw_approval_view(const json_t *rec) {
  json_t *v = json_deep_copy(rec);
  if (!v) return NULL;
  /* the grant's key is the hash of the arguments as sent, before masking:
   * shown, it would let a reader test guesses of a redacted value */
  json_object_del(v, "args_sha256");
  static const char *const times[] = {"created", "expires", "decided_at"};
  char t[32];
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    json_t *x = json_object_get(v, times[i]);
    if (!json_is_integer(x)) continue;
    gw_rfc3339_ms(json_integer_value(x), t);
    json_object_set_new(v, times[i], json_string(t));
  }
  if (!strcmp(json_string_value(json_object_get(v, "state")) ?: "", "pending")) {
    int64_t left = (json_integer_value(json_object_get(rec, "expires")) - gw_wall_ms()) / 1000;
    json_object_set_new(v, "seconds_left", json_integer(left > 0 ? left : 0));
  }
  return v;
}

/* gw_approval_view for a caller of this file: a reviewer (anyone but the
 * requester) never gets the requester's MCP session id. */
static json_t *caller_view(const json_t *rec, const char *user) {
  json_t *v = gw_approval_view(rec);
  if (v && strcmp(json_string_value(json_object_get(rec, "user")) ?: "", user ? user : ""))
    json_object_del(v, "session");
  return v;
}

typedef struct decide_job {
  gw_req *req;
  char tenant[64], id[AP_ID_LEN + 1], user[40], tokid[ST_TOKEN_ID_BUFSZ];
  bool browser;                         /* a page's session, not a token */
  char cookie[AUTH_LOGIN_RAND_LEN + 1]; /* its cookie text (wiped) */
  int64_t idle_s;
  char reason[AP_REASON_MAX + 1];
  ap_action what;
  int64_t now_ms;
  json_t *out;
} decide_job;

static void job_free(decide_job *j) {
  json_decref(j->out);
  OPENSSL_cleanse(j->cookie, sizeof j->cookie);
  free(j);
}

/* The caller, again, inside the transaction: the token still valid, or
 * the session still live (its user present and active) and still theirs. */
static int job_decide(st_txn *txn, void *arg) {
  decide_job *j = arg;
  int rc;
  if (j->browser) {
    rc = auth_browser_still(txn, j->tenant, j->cookie, j->now_ms / 1000, j->idle_s, j->user);
  } else {
    rc = auth_identity_check(txn, j->tenant, j->user, j->tokid, j->now_ms / 1000);
  }
  if (rc) return rc == ST_ENOTFOUND ? AP_EREVIEWER : rc;
  json_decref(j->out); /* a run before (store.h: a job may run again) */
  j->out = NULL;
  return ap_decide(txn, j->tenant, j->id, j->what, j->user, NULL, j->reason, j->now_ms, &j->out);
}

/* A JSON error: with the pages' security headers for a browser. */
static void fail(gw_req *req, bool browser, int status, const char *code, const char *msg) {
  if (browser) pages__json(req, status, json_pack("{s:s,s:s}", "error", code, "message", msg));
  else gw_respond_error(req, status, code, "%s", msg);
}

static void done_decide(int status, void *arg) {
  decide_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  bool b = j->browser;
  switch (status) {
  case 0:
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s %s by user %s%s", j->id,
           j->what == AP_APPROVE ? "approved" : "denied", j->user, b ? " on the reviewers' page" : "");
    if (b) pages__json(req, 200, caller_view(j->out, j->user));
    else gw_respond_json(req, 200, caller_view(j->out, j->user));
    break;
  case ST_ENOTFOUND: fail(req, b, 404, "not_found", "no such approval request"); break;
  case AP_EDECIDED:
    fail(req, b, 409, "not_pending", "the request is no longer pending (decided, cancelled or expired)");
    break;
  case AP_ESELF: fail(req, b, 403, "self_approval", "nobody decides their own request"); break;
  case AP_ENOTAPPROVER: fail(req, b, 403, "not_an_approver", "you are not in any of this request's approver groups"); break;
  case AP_EREVIEWER:
    if (b) fail(req, b, 401, "signed_out", "your session has ended or your account is no longer active; sign in again");
    else fail(req, b, 401, "invalid_token", "your token or your account is no longer valid");
    break;
  case ST_EMAPFULL:
    fail(req, b, 507, "store_full", "the store is full (raise store_map_size); nothing was written");
    break;
  default: {
    char m[200];
    snprintf(m, sizeof m, "the decision could not be written: %s", st_strerror(status));
    fail(req, b, 500, "store_error", m);
  }
  }
  job_free(j);
}

/* Who calls, and how. */
typedef struct caller {
  char user[40];
  char tokid[ST_TOKEN_ID_BUFSZ];        /* an employee token's id */
  bool browser;                         /* else: the reviewers' page's session */
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
} caller;

/* The page's browser session (no Authorization header, the tenant's
 * session cookie sent): 1 with c filled (a write also passed the CSRF
 * check), 0 when there is no session cookie, -1 once answered (401, 403,
 * 503). */
static int who_browser(gw_req *req, const char *tenant, bool write, caller *c) {
  char name[96];
  pages__cookie_name(req->lp->srv, tenant, PAGES_COOKIE_SESSION, name, sizeof name);
  if (!pages__cookie_get(req, name, c->cookie, sizeof c->cookie)) return 0;
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc) {
    fail(req, true, rc == ST_ENOTFOUND ? 401 : 503, rc == ST_ENOTFOUND ? "signed_out" : "store_busy",
         rc == ST_ENOTFOUND ? "you are signed out: sign in again" : "the gateway's store is busy; try again");
    return -1;
  }
  bool ok = !write || pages__csrf_ok(req, &s, NULL);
  snprintf(c->user, sizeof c->user, "%s", s.user_id);
  OPENSSL_cleanse(&s, sizeof s);
  if (!ok) {
    fail(req, true, 403, "csrf", "this request did not come from your mcpgate page (missing or wrong CSRF token)");
    return -1;
  }
  c->browser = true;
  return 1;
}

/* The caller: an employee token (Authorization: Bearer), else the page's
 * browser session; 0 with c filled, or -1 once answered (401, 403, 503). */
static int who(gw_req *req, const char *tenant, bool write, caller *c) {
  const char *auth = gw_req_header(req, "authorization");
  if (!auth) {
    int b = who_browser(req, tenant, write, c);
    if (b) return b > 0 ? 0 : -1;
  }
  char *user = c->user, *tokid = c->tokid;
  const char *tok = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
  while (tok && *tok == ' ') tok++;
  uint8_t th[ST_TOKEN_HASH_LEN];
  int rc = tok && *tok ? auth_token_hash(tok, th) : ST_ENOTFOUND;
  if (!rc) {
    st_txn *txn;
    if (st_read_begin(req->lp->srv->store, &txn) != 0) {
      gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
      return -1;
    }
    rc = auth_token_verify_hash(txn, tenant, th, (int64_t)time(NULL), user, tokid, NULL);
    /* a decision is made as oneself: a token an admin created for the user
     * (its text went through the admin's hands) may read, not decide */
    bool not_own = false;
    if (!rc && write) {
      json_t *rec = NULL;
      rc = auth_token_get_by_id(txn, tenant, AUTH_KIND_EMPLOYEE, tokid, &rec);
      not_own = !rc && strcmp(json_string_value(json_object_get(rec, "created_by")) ?: "", "self");
      json_decref(rec);
    }
    st_txn_end(txn);
    if (not_own) {
      gw_respond_error(req, 403, "own_credential_required",
                       "decide on the reviewers' page (/t/%s/approvals) or with a token you created on your own "
                       "page: a token an admin created for you cannot decide approval requests",
                       tenant);
      return -1;
    }
  }
  if (rc && tok && *tok && gw_limits_auth_failed(req)) {
    gw_respond_error(req, 429, "too_many_failures",
                     "too many failed authentications from your address; retry after Retry-After seconds");
    return -1;
  }
  if (rc) {
    gw_resp_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    gw_respond_error(req, 401, "invalid_token",
                     tok && *tok ? "invalid, expired or revoked token"
                                 : "missing Authorization: Bearer <mgw_ token> (or the reviewers' page's session)");
    return -1;
  }
  return 0;
}

/* Whether user may see rec: its requester or one of its approvers. */
static bool may_see(st_txn *txn, const char *tenant, const json_t *rec, const char *user) {
  if (!strcmp(json_string_value(json_object_get(rec, "user")) ?: "", user)) return true;
  json_t *gids = NULL;
  if (st_dir_user_groups(txn, tenant, user, &gids) < 0) return false;
  bool in = false;
  size_t i, k;
  json_t *a, *g;
  json_array_foreach(json_object_get(rec, "approvers"), i, a) {
    json_array_foreach(gids, k, g) in = in || json_equal(a, g);
  }
  json_decref(gids);
  return in;
}

/* /t/{t}/approvals/{id}[/approve|/deny] */
static void dispatch(gw_req *req) {
  char path[256];
  snprintf(path, sizeof path, "%s", req->path ? req->path : "");
  char *seg[6] = {0};
  int n = 0;
  for (char *save = NULL, *s = strtok_r(path, "/", &save); s && n < 6; s = strtok_r(NULL, "/", &save)) seg[n++] = s;
  if (n < 4 || n > 5 || strcmp(seg[0], "t") || strcmp(seg[2], "approvals") || !st_tenant_id_valid(seg[1])) {
    gw_respond_error(req, 404, "not_found", "no such route");
    return;
  }
  const char *tenant = seg[1], *id = seg[3], *action = n == 5 ? seg[4] : NULL;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strlen(id) > AP_ID_LEN) { /* never cut to one that exists */
    gw_respond_error(req, 404, "not_found", "no such approval request");
    return;
  }
  if (action && strcmp(action, "approve") && strcmp(action, "deny")) {
    gw_respond_error(req, 404, "not_found", "no such route (…/approve or …/deny)");
    return;
  }
  const char *want = action ? "POST" : "GET";
  if (strcmp(req->method, want) && !(!action && !strcmp(req->method, "HEAD"))) {
    gw_resp_header(req, "Allow", want);
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  caller c = {0};
  if (who(req, tenant, action != NULL, &c)) return;
  const char *user = c.user;
  if (!action) {
    st_txn *txn;
    if (st_read_begin(req->lp->srv->store, &txn) != 0) {
      gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
      return;
    }
    json_t *rec = NULL;
    int rc = ap_request_get(txn, tenant, id, gw_wall_ms(), &rec);
    bool ok = rc == 0 && may_see(txn, tenant, rec, user);
    st_txn_end(txn);
    if (ok && c.browser) pages__json(req, 200, caller_view(rec, user));
    else if (ok) gw_respond_json(req, 200, caller_view(rec, user));
    else if (rc && rc != ST_ENOTFOUND) fail(req, c.browser, 500, "store_error", st_strerror(rc));
    else fail(req, c.browser, 404, "not_found", "no such approval request");
    json_decref(rec);
    OPENSSL_cleanse(&c, sizeof c);
    return;
  }
  decide_job *j = calloc(1, sizeof *j);
  if (!j) {
    OPENSSL_cleanse(&c, sizeof c);
    fail(req, c.browser, 500, "internal", "out of memory");
    return;
  }
  if (req->body_len) {
    json_error_t e;
    json_t *b = gw_json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    json_t *r = json_object_get(b, "reason");
    const char *bad = !json_is_object(b) ? "the body must be a JSON object"
                      : json_object_size(b) > (r ? 1u : 0u) ? "the only member allowed is \"reason\""
                      : r && !json_is_string(r) ? "\"reason\" must be a string"
                      : r && json_string_length(r) > AP_REASON_MAX ? "\"reason\" is longer than 500 bytes"
                      : NULL;
    if (bad) {
      json_decref(b);
      job_free(j);
      OPENSSL_cleanse(c.cookie, sizeof c.cookie);
      fail(req, c.browser, 400, "invalid_request", bad);
      return;
    }
    snprintf(j->reason, sizeof j->reason, "%s", r ? json_string_value(r) : "");
    json_decref(b);
  }
  j->req = req;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->id, sizeof j->id, "%s", id);
  memcpy(j->user, c.user, sizeof j->user);
  memcpy(j->tokid, c.tokid, sizeof j->tokid);
  j->browser = c.browser;
  memcpy(j->cookie, c.cookie, sizeof j->cookie);
  OPENSSL_cleanse(&c, sizeof c);
  j->idle_s = req->lp->srv->cfg.browser_session_idle_ms / 1000;
  j->what = !strcmp(action, "approve") ? AP_APPROVE : AP_DENY;
  j->now_ms = gw_wall_ms();
  if (gw_loop_submit(req->lp, job_decide, done_decide, j)) {
    bool b = j->browser;
    job_free(j);
    gw_resp_header(req, "Retry-After", "1");
    fail(req, b, 503, "store_busy", "the store cannot take writes right now");
  }
}

/* ---- the reviewers' page and its list */

/* "/t/{tenant}/…": copies a valid tenant id into tenant, else false. */
static bool tenant_of(gw_req *req, char tenant[64]) {
  const char *p = req->path ? req->path : "";
  if (strncmp(p, "/t/", 3)) return false;
  size_t n = strcspn(p + 3, "/");
  if (n == 0 || n > 63) return false;
  memcpy(tenant, p + 3, n);
  tenant[n] = 0;
  if (!st_tenant_id_valid(tenant)) return false;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  return true;
}

/* Whether some id of a is in b (arrays of group ids). */
static bool meet(const json_t *a, const json_t *b) {
  size_t i, k;
  json_t *x, *y;
  json_array_foreach(a, i, x) json_array_foreach(b, k, y) if (json_equal(x, y)) return true;
  return false;
}

/* Whether the user is a reviewer, and what they may see (*pending,
 * *history: ap_request_list_reviewer): a group of theirs is one the
 * policy's approve rules name (the tenant's approver_groups too where a
 * rule names none), or they may still decide a pending request (one whose
 * rule no longer asks approval: its own approver groups decide it). For
 * anyone else only the pending index is read — never the history window,
 * the costly scan — so an employee who is no approver costs a few reads. */
static int reviewer_lists(st_txn *txn, const char *tenant, const char *user, json_t **pending, json_t **history,
                          bool *approver) {
  json_t *gids = NULL, *ids = json_array();
  bool td = false;
  *pending = *history = NULL;
  *approver = false;
  int rc = ids ? st_dir_user_groups(txn, tenant, user, &gids) : ST_ENOMEM;
  if (!rc) rc = pol_approver_groups(txn, tenant, ids, &td);
  if (!rc && td) {
    json_t *t = NULL;
    rc = st_tenant_get(txn, tenant, &t);
    if (!rc) rc = ap_groups_resolve(txn, tenant, gw_settings_string(json_object_get(t, "settings"), "approver_groups"), ids);
    json_decref(t);
  }
  if (!rc) {
    *approver = meet(gids, ids);
    rc = ap_request_list_reviewer(txn, tenant, user, gids, gw_wall_ms(), PAGE_LIST_MAX, pending,
                                  *approver ? history : NULL);
  }
  if (!rc && !*approver && json_array_size(*pending)) { /* a pending request is still theirs to decide */
    json_t *again = NULL;
    *approver = true;
    rc = ap_request_list_reviewer(txn, tenant, user, gids, gw_wall_ms(), PAGE_LIST_MAX, &again, history);
    json_decref(again);
  }
  json_decref(ids);
  json_decref(gids);
  if (rc) {
    json_decref(*pending);
    json_decref(*history);
    *pending = *history = NULL;
    *approver = false;
  }
  return rc < 0 ? rc : 0;
}

/* {id, userName, displayName} of a user (userName null once deleted). */
static json_t *person(st_txn *txn, const char *tenant, const char *id) {
  json_t *u = NULL;
  st_dir_user_get(txn, tenant, id, &u);
  json_t *o = json_pack("{s:s,s:O?,s:O?}", "id", id, "userName", json_object_get(u, "userName"), "displayName",
                        json_object_get(u, "displayName"));
  json_decref(u);
  return o;
}

/* A request as the page shows it: an allowlist of gw_approval_view's
 * members (no session id, no argument digest), the requester by name and
 * the approver groups by displayName. */
static json_t *review_view(st_txn *txn, const char *tenant, const json_t *rec) {
  json_t *v = gw_approval_view(rec), *o = json_object(), *names = json_array();
  if (!v || !o || !names) {
    json_decref(v), json_decref(o), json_decref(names);
    return NULL;
  }
  static const char *const keep[] = {"id",         "state",      "connector",  "tool",   "arguments",
                                     "created",    "expires",    "seconds_left", "decided_by", "decided_at",
                                     "reason"};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    json_t *x = json_object_get(v, keep[i]);
    if (x) json_object_set(o, keep[i], x);
  }
  json_object_set_new(o, "requester", person(txn, tenant, json_string_value(json_object_get(rec, "user")) ?: ""));
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(rec, "approvers"), i, g) {
    json_t *grp = NULL;
    if (json_is_string(g) && st_dir_group_get(txn, tenant, json_string_value(g), &grp) == 0 &&
        json_is_string(json_object_get(grp, "displayName")))
      json_array_append(names, json_object_get(grp, "displayName"));
    json_decref(grp);
  }
  json_object_set_new(o, "approvers", names);
  json_decref(v);
  return o;
}

static json_t *views(st_txn *txn, const char *tenant, const json_t *recs) {
  json_t *out = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(recs, i, r) {
    json_t *v = review_view(txn, tenant, r);
    if (v) json_array_append_new(out, v);
  }
  return out;
}

/* The reviewer's lists are read on libuv's thread pool, never on the
 * loop: the pending index and the newest AP_LIST_SCAN_MAX ended requests
 * of a large tenant take a scan of ~1 s (review: 50,000 requests, 1.6 s),
 * and a reviewer's tab asks every few seconds. The request stays valid
 * until it is answered (gateway/http/http.h), even if its client left. */
typedef struct list_job {
  uv_work_t work;
  gw_req *req;
  st_store *store;
  bool api;                             /* GET …/api/approvals (JSON), else the page */
  char tenant[64], user[40];
  char csrf[AUTH_LOGIN_RAND_LEN + 1];   /* the session's (api only; wiped) */
  int rc;                               /* out: 0, ST_ENOTFOUND (no tenant) or a store error */
  bool approver;                        /* out */
  json_t *out;                          /* out (api): the page's data */
} list_job;

static void list_work(uv_work_t *w) {
  list_job *j = w->data;
  st_txn *txn;
  json_t *pending = NULL, *history = NULL;
  if ((j->rc = st_read_begin(j->store, &txn)) != 0) return;
  j->rc = st_tenant_active(txn, j->tenant) ? ST_ENOTFOUND
                                          : reviewer_lists(txn, j->tenant, j->user, &pending, &history, &j->approver);
  if (!j->rc && j->approver && j->api)
    j->out = json_pack("{s:s,s:o,s:s,s:o,s:o}", "tenant", j->tenant, "user", person(txn, j->tenant, j->user), "csrf",
                       j->csrf, "pending", views(txn, j->tenant, pending), "history", views(txn, j->tenant, history));
  st_txn_end(txn);
  json_decref(pending);
  json_decref(history);
}

static void list_done(uv_work_t *w, int status) {
  list_job *j = w->data;
  gw_req *req = j->req;
  if (status != 0 && !j->rc) j->rc = ST_EBUSY; /* cancelled */
  if (j->api) {
    if (j->rc == ST_ENOTFOUND) fail(req, true, 404, "not_found", "no such organisation");
    else if (j->rc) fail(req, true, 503, "store_busy", "the gateway could not read the approval requests; try again");
    else if (!j->approver) fail(req, true, 403, "not_an_approver", "none of your groups reviews approval requests here");
    else if (!j->out) fail(req, true, 500, "internal", "out of memory");
    else pages__json(req, 200, j->out);
  } else {
    char back[96];
    snprintf(back, sizeof back, "/t/%s/", j->tenant);
    const web_asset *a = web_asset_get("approvals.html");
    if (j->rc || !a) {
      pages__message(req, 503, j->tenant, "Try again", "The gateway could not read the approval requests.", NULL, NULL);
    } else if (!j->approver) {
      pages__message(req, 403, j->tenant, "You are not an approver",
                     "You are signed in, but none of your groups reviews approval requests here, so there is nothing "
                     "for you to approve. If you should, ask IT to add you to an approver group.",
                     back, "Back to your page");
    } else {
      pages__headers(req, false);
      gw_respond(req, 200, a->type, a->data, a->len);
    }
  }
  OPENSSL_cleanse(j->csrf, sizeof j->csrf);
  free(j);
}

/* Queues the lists of s's user (s is wiped); answers 503 itself when it
 * cannot. */
static void list_start(gw_req *req, const char *tenant, auth_browser *s, bool api) {
  /* on the thread pool the outbound DNS lookups share: a few per tenant
   * and process at once (limits.h) */
  int busy = gw_limits_heavy_enter(req, tenant, GW_HEAVY_REVIEWERS);
  if (busy) {
    OPENSSL_cleanse(s, sizeof *s);
    if (api) fail(req, true, busy, busy == 429 ? "too_many_reads" : "busy", "the list is being read for other reviewers: retry in a second");
    else pages__message(req, busy, tenant, "Try again", "The list is being read for other reviewers: try again in a second.", NULL, NULL);
    return;
  }
  list_job *j = calloc(1, sizeof *j);
  if (j) {
    j->req = req;
    j->store = req->lp->srv->store;
    j->api = api;
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    snprintf(j->user, sizeof j->user, "%s", s->user_id);
    if (api) snprintf(j->csrf, sizeof j->csrf, "%s", s->csrf);
    j->work.data = j;
  }
  OPENSSL_cleanse(s, sizeof *s);
  if (j && uv_queue_work(&req->lp->loop, &j->work, list_work, list_done) == 0) return;
  free(j);
  if (api) fail(req, true, 503, "store_busy", "the gateway's store is busy");
  else pages__message(req, 503, tenant, "Try again", "The gateway's store is busy.", NULL, NULL);
}

/* GET /t/{t}/approvals: the page for an approver; to the sign-in (and back)
 * without a session; a 403 page for someone who can approve nothing. */
static void page(gw_req *req) {
  char tenant[64];
  if (!tenant_of(req, tenant)) {
    gw_respond_error(req, 404, "not_found", "no such page");
    return;
  }
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET, HEAD");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  gw_server *srv = req->lp->srv;
  st_txn *txn;
  if (st_read_begin(srv->store, &txn)) {
    pages__message(req, 503, tenant, "Try again", "The gateway's store is busy.", NULL, NULL);
    return;
  }
  bool live = st_tenant_active(txn, tenant) == 0;
  st_txn_end(txn);
  if (!live) {
    pages__message(req, 404, tenant, "No such organisation",
                   "There is no mcpgate organisation at this address. Check the link you were given.", NULL, NULL);
    return;
  }
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc == ST_ENOTFOUND) { /* sign in with Okta, then back here */
    char loc[200];
    snprintf(loc, sizeof loc, "/t/%s/login?return=/t/%s/approvals", tenant, tenant);
    pages__headers(req, false);
    gw_resp_header(req, "Location", loc);
    gw_respond(req, 303, NULL, NULL, 0);
    return;
  }
  if (rc) {
    pages__message(req, 503, tenant, "Try again", "The gateway's store is busy.", NULL, NULL);
    return;
  }
  list_start(req, tenant, &s, false);
}

/* GET /t/{t}/api/approvals: the page's data, for an approver's session:
 * {tenant, user, csrf, pending: [...], history: [...]}. */
static void api_list(gw_req *req) {
  char tenant[64];
  if (!tenant_of(req, tenant)) {
    gw_respond_error(req, 404, "not_found", "no such page API");
    return;
  }
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET, HEAD");
    fail(req, true, 405, "method_not_allowed", "only GET is allowed here");
    return;
  }
  auth_browser s;
  int rc = pages__session(req, tenant, &s);
  if (rc) {
    fail(req, true, rc == ST_ENOTFOUND ? 401 : 503, rc == ST_ENOTFOUND ? "signed_out" : "store_busy",
         rc == ST_ENOTFOUND ? "you are signed out: sign in at login" : "the gateway's store is busy");
    return;
  }
  list_start(req, tenant, &s, true);
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  static const gw_route r = {GW_RC_WEB, dispatch, NULL, 8 * 1024, NULL, NULL};
  static const gw_route pg = {GW_RC_WEB, page, NULL, 1024, NULL, NULL};
  static const gw_route list = {GW_RC_WEB, api_list, NULL, 1024, NULL, NULL};
  int rc = gw_router_add(rt, "/t/{}/approvals/{}", &r, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/approvals/{}/{}", &r, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/approvals", &pg, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/api/approvals", &list, 0);
  return rc;
}

/* approval_webhook_url: an absolute http(s) URL with a host, no spaces,
 * fragment or user information (store/url_query.h's rule: the log and the
 * audit name the webhook by its origin, which must hold no part of a
 * password), a numeric port (the admin API also checks a literal address
 * against the egress policy: gw_setting.egress_url). */
static int check_webhook_url(const char *v, char *err, size_t errlen) {
  if (!*v) return 0; /* unset: no notifications */
  const char *host = !strncasecmp(v, "https://", 8) ? v + 8 : !strncasecmp(v, "http://", 7) ? v + 7 : NULL;
  if (!host) {
    snprintf(err, errlen, "an http:// or https:// URL is needed");
    return -1;
  }
  size_t hl = strcspn(host, "/?#");
  if (!hl || host[0] == ':' || host[0] == '@') {
    snprintf(err, errlen, "the URL has no host");
    return -1;
  }
  for (const char *p = v; *p; p++)
    if (*p == ' ' || *p == '#' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
      /* a backslash: a mistyped path would be taken for the host, and a
       * failure's log names the origin (the rest is the secret) */
      snprintf(err, errlen, "the URL may not contain spaces, a fragment, backslashes, control or non-ASCII characters");
      return -1;
    }
  return st_url_authority_check(v, err, errlen);
}

/* The tenant's default approvers: groups by name (case-insensitive; a
 * name matching several groups or none adds nobody) or id:<scim id>. */
static const gw_setting settings[] = {
    {"approver_groups", GW_SETTING_STRING, 0, 1024, 0,
     "comma-separated group names (or id:<scim id>) whose members may decide approval requests of policy rules that "
     "name no \"approvers\" of their own; a name matching no group or several adds nobody (fail closed)",
     0, NULL, false, false},
    {"approval_webhook_url", GW_SETTING_STRING, 0, 2048, 0,
     "Slack-compatible incoming-webhook URL (http or https) POSTed {\"text\": …} when a call is held for approval "
     "(requester, tool, connector, a short argument summary, the reviewers' page); fetched at the admin egress "
     "level; no user information (no '@' before the first '/'); a secret: sealed in the store, shown as \"[set]\", "
     "logs show only its scheme and host",
     0, check_webhook_url, true, true},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

const gw_module gw_mod_approvals = {.name = "approvals", .routes = mod_routes, .settings = settings};
