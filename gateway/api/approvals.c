/* gateway/api/approvals.c — see approvals.h.
 *
 * Rules this file keeps, and why:
 *  - Deciding is done as oneself: the caller is the holder of an employee
 *    token (mgw_) of the tenant, checked again inside the deciding job (a
 *    token revoked meanwhile decides nothing), and policy/approval.c checks
 *    that this user is active, an approver of the request and not its
 *    requester. No admin credential is accepted here.
 *  - An unknown id and a request the caller may not see answer the same
 *    404: ids do not leak across users.
 *  - The held call learns the decision from the store event the decision
 *    emits (gateway/mcp/held.c), not from this file. */
#include "gateway/api/approvals.h"
#include "gateway/core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/core/settings.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"
#include "policy/approval.h"
#include "store/dir.h"
#include "store/tenant.h"

json_t *gw_approval_view(const json_t *rec) {
  json_t *v = json_deep_copy(rec);
  if (!v) return NULL;
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

typedef struct decide_job {
  gw_req *req;
  char tenant[64], id[AP_ID_LEN + 1], user[40], tokid[ST_TOKEN_ID_BUFSZ];
  char reason[AP_REASON_MAX + 1];
  ap_action what;
  int64_t now_ms;
  json_t *out;
} decide_job;

static int job_decide(st_txn *txn, void *arg) {
  decide_job *j = arg;
  int rc = auth_identity_check(txn, j->tenant, j->user, j->tokid, j->now_ms / 1000);
  if (rc) return rc == ST_ENOTFOUND ? AP_EREVIEWER : rc;
  return ap_decide(txn, j->tenant, j->id, j->what, j->user, NULL, j->reason, j->now_ms, &j->out);
}

static void done_decide(int status, void *arg) {
  decide_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  switch (status) {
  case 0:
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s %s by user %s", j->id,
           j->what == AP_APPROVE ? "approved" : "denied", j->user);
    gw_respond_json(req, 200, gw_approval_view(j->out));
    break;
  case ST_ENOTFOUND: gw_respond_error(req, 404, "not_found", "no such approval request"); break;
  case AP_EDECIDED:
    gw_respond_error(req, 409, "not_pending", "the request is no longer pending (decided, cancelled or expired)");
    break;
  case AP_ESELF: gw_respond_error(req, 403, "self_approval", "nobody decides their own request"); break;
  case AP_ENOTAPPROVER:
    gw_respond_error(req, 403, "not_an_approver", "you are not in any of this request's approver groups");
    break;
  case AP_EREVIEWER:
    gw_respond_error(req, 401, "invalid_token", "your token or your account is no longer valid");
    break;
  case ST_EMAPFULL:
    gw_respond_error(req, 507, "store_full", "the store is full (raise store_map_size); nothing was written");
    break;
  default: gw_respond_error(req, 500, "store_error", "the decision could not be written: %s", st_strerror(status));
  }
  json_decref(j->out);
  free(j);
}

/* The caller's employee token: 0 with user and tokid, or answers 401. */
static int who(gw_req *req, const char *tenant, char user[40], char tokid[ST_TOKEN_ID_BUFSZ]) {
  const char *auth = gw_req_header(req, "authorization");
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
    st_txn_end(txn);
  }
  if (rc && tok && *tok && gw_limits_auth_failed(req)) {
    gw_respond_error(req, 429, "too_many_failures",
                     "too many failed authentications from your address; retry after Retry-After seconds");
    return -1;
  }
  if (rc) {
    gw_resp_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    gw_respond_error(req, 401, "invalid_token",
                     tok && *tok ? "invalid, expired or revoked token" : "missing Authorization: Bearer <mgw_ token>");
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
  char user[40], tokid[ST_TOKEN_ID_BUFSZ];
  if (who(req, tenant, user, tokid)) return;
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
    if (ok) gw_respond_json(req, 200, gw_approval_view(rec));
    else if (rc && rc != ST_ENOTFOUND) gw_respond_error(req, 500, "store_error", "%s", st_strerror(rc));
    else gw_respond_error(req, 404, "not_found", "no such approval request");
    json_decref(rec);
    return;
  }
  decide_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  if (req->body_len) {
    json_error_t e;
    json_t *b = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    json_t *r = json_object_get(b, "reason");
    const char *bad = !json_is_object(b) ? "the body must be a JSON object"
                      : json_object_size(b) > (r ? 1u : 0u) ? "the only member allowed is \"reason\""
                      : r && !json_is_string(r) ? "\"reason\" must be a string"
                      : r && json_string_length(r) > AP_REASON_MAX ? "\"reason\" is longer than 500 bytes"
                      : NULL;
    if (bad) {
      json_decref(b);
      free(j);
      gw_respond_error(req, 400, "invalid_request", "%s", bad);
      return;
    }
    snprintf(j->reason, sizeof j->reason, "%s", r ? json_string_value(r) : "");
    json_decref(b);
  }
  j->req = req;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->id, sizeof j->id, "%s", id);
  memcpy(j->user, user, sizeof j->user);
  memcpy(j->tokid, tokid, sizeof j->tokid);
  j->what = !strcmp(action, "approve") ? AP_APPROVE : AP_DENY;
  j->now_ms = gw_wall_ms();
  if (st_submit(req->lp->srv->store, req->lp->port, job_decide, done_decide, j)) {
    free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  static const gw_route r = {GW_RC_WEB, dispatch, NULL, 8 * 1024, NULL, NULL};
  int rc = gw_router_add(rt, "/t/{}/approvals/{}", &r, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/approvals/{}/{}", &r, 0);
  return rc;
}

/* approval_webhook_url: an absolute http(s) URL with a host, no spaces
 * or fragment (the admin API also checks a literal address against the
 * egress policy: gw_setting.egress_url). */
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
    if (*p == ' ' || *p == '#' || (unsigned char)*p >= 0x7f) {
      snprintf(err, errlen, "the URL may not contain spaces, a fragment or non-ASCII characters");
      return -1;
    }
  return 0;
}

/* The tenant's default approvers: groups by name (case-insensitive; a
 * name matching several groups or none adds nobody) or id:<scim id>. */
static const gw_setting settings[] = {
    {"approver_groups", GW_SETTING_STRING, 0, 1024, 0,
     "comma-separated group names (or id:<scim id>) whose members may decide approval requests of policy rules that "
     "name no \"approvers\" of their own; a name matching no group or several adds nobody (fail closed)",
     0, NULL, false},
    {"approval_webhook_url", GW_SETTING_STRING, 0, 2048, 0,
     "Slack-compatible incoming-webhook URL (http or https) POSTed {\"text\": …} when a call is held for approval "
     "(requester, tool, connector, a short argument summary, the reviewers' page); fetched at the admin egress "
     "level; a secret: logs show only its scheme and host",
     0, check_webhook_url, true},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false}};

const gw_module gw_mod_approvals = {.name = "approvals", .routes = mod_routes, .settings = settings};
