/* gateway/api/admin_policy.c — /admin/v1/tenants/{t}/policy (GET the view,
 * PUT a new version: validated on the loop, compiled and stored in one
 * writer job that also notifies open streams; one PUT per tenant at a time
 * on the writer, gw_limits_write_enter) and /explain (why a user may or
 * may not call a tool).
 *
 * The view and an explanation read the whole policy record (up to 1 MiB of
 * rules, with its compiled form and warnings) and name every group it
 * binds: ~0.5 s and a 16 MB answer for 90,000 group names. They run on
 * libuv's thread pool with their own read snapshot, answer encoded there
 * too, holding a heavy-read slot of the tenant (gateway/core/limits.h):
 * a tenant admin's reads must not stall the loop every tenant shares. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/limits.h"
#include "policy/approval.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "vault/vault.h"
#include "gateway/http/query.h"

/* ---------- reads on the pool: the view and explain ---------- */

typedef struct pol_read {
  st_store *store;
  char tenant[64];
  bool explain;
  char user[1026], connector[64], tool[1026];
  int status;        /* out: 200, or the error's */
  const char *code;  /* out: the error's */
  char msg[200];     /* out: the error's */
  char *body;        /* out: the encoded answer */
} pol_read;

static void read_fail(pol_read *j, int status, const char *code, const char *msg) {
  j->status = status;
  j->code = code;
  snprintf(j->msg, sizeof j->msg, "%s", msg);
}

static json_t *read_view(st_txn *txn, pol_read *j) {
  json_t *rec;
  if (pol_get(txn, j->tenant, &rec) != 0) {
    read_fail(j, 404, "not_found", "no policy yet: every connector is hidden until one is PUT");
    return NULL;
  }
  json_t *view = pol_view(txn, j->tenant, rec);
  json_decref(rec);
  return view;
}

static json_t *read_explain(st_txn *txn, pol_read *j) {
  json_t *u;
  if (scim_user_lookup(txn, j->tenant, j->user, &u) != 0) {
    read_fail(j, 404, "not_found", "no such user in this tenant");
    return NULL;
  }
  char uid[64];
  snprintf(uid, sizeof uid, "%s", json_string_value(json_object_get(u, "id")) ?: "");
  json_decref(u);
  json_t *ex = pol_explain(txn, j->tenant, uid, j->connector, j->tool);
  /* an approve decision with live grants: the user's next call with one
   * of those argument sets passes without asking (a grant is per argument
   * hash, so: how many sets, and the latest expiry) */
  ap_grant_summary gs;
  if (ex && !strcmp(json_string_value(json_object_get(ex, "decision")) ?: "", "approve") &&
      ap_grants_live(txn, j->tenant, uid, j->connector, j->tool, gw_wall_ms(), &gs) == 0 && gs.count) {
    char t[32];
    gw_rfc3339_ms(gs.expires_max, t);
    json_object_set_new(ex, "grant", json_pack("{s:I, s:s, s:s}", "count", (json_int_t)gs.count, "expires_max", t,
                                               "request", gs.request));
  }
  return ex;
}

static void read_work(void *ctx) {
  pol_read *j = ctx;
  st_txn *txn;
  json_t *t;
  if (st_read_begin(j->store, &txn) != 0) {
    read_fail(j, 503, "store_unavailable", "the store cannot be read right now");
    return;
  }
  if (st_tenant_get(txn, j->tenant, &t) != 0) {
    st_txn_end(txn);
    read_fail(j, 404, "not_found", "no such tenant");
    return;
  }
  json_decref(t);
  json_t *out = j->explain ? read_explain(txn, j) : read_view(txn, j);
  st_txn_end(txn);
  if (!out) {
    if (!j->status) read_fail(j, 500, "internal", "out of memory");
    return;
  }
  j->body = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(out);
  if (!j->body) read_fail(j, 500, "internal", "out of memory");
  else j->status = 200;
}

static void read_done(gw_req *req, void *ctx) {
  pol_read *j = ctx;
  if (!req)
    ; /* nothing to answer (admin__pool_read) */
  else if (j->status != 200)
    gw_respond_error(req, j->status, j->code, "%s", j->msg);
  else {
    gw_resp_header(req, "Cache-Control", "no-store");
    gw_respond(req, 200, "application/json", j->body, strlen(j->body));
  }
  free(j->body);
  free(j);
}

/* Takes the tenant's heavy-read slot and queues j (answering req when it
 * cannot). */
static void read_start(gw_req *req, pol_read *j) {
  j->store = req->lp->srv->store;
  if (admin__pool_read(req, j->tenant, GW_HEAVY_POLICY, "policy views or explanations", read_work, read_done, j))
    free(j);
}



typedef struct pol_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  gw_loop *lp;
  char tenant[64];
  json_t *doc;       /* read-only in the job */
  char now[32];
  int version;       /* out */
  json_t *before;    /* out: the policy in force before ({version, document}), or NULL */
  json_t *warnings;  /* out */
  char err[4096];    /* out */
} pol_job;

static int job_policy(st_txn *txn, void *arg) {
  pol_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_decref(j->warnings);
  j->warnings = NULL;
  json_decref(j->before);
  j->before = NULL;
  j->err[0] = 0;
  json_t *t;
  int rc = st_tenant_get(txn, j->tenant, &t);
  if (rc) return rc;
  json_decref(t);
  /* the record before and the rules stored come back from the put: a
   * 1 MiB document is parsed once here, not three times (the writer is
   * every tenant's, and their deactivations wait behind this job) */
  json_t *old = NULL, *compiled = NULL;
  rc = pol_put_ex(txn, j->tenant, j->doc, j->now, &j->version, &j->warnings, &old, &compiled, j->err, sizeof j->err);
  if (old)
    j->before = json_pack("{s:O?, s:O?}", "version", json_object_get(old, "version"), "document",
                          json_object_get(old, "document"));
  json_decref(old);
  /* connectors this document hides from everyone: still accepted
   * (fail closed), but said in the reply */
  json_t *conns = NULL;
  if (!rc && (rc = vault_connector_list(txn, j->tenant, &conns)) == 0)
    rc = pol_visibility_warnings_of(txn, j->tenant, compiled, conns, j->warnings);
  json_decref(conns);
  json_decref(compiled);
  /* every open stream of the tenant learns its tool list may have changed:
   * pol_put emitted ST_EVENT_POLICY_PUT (gateway/mcp/revoke.c) */
  return rc;
}

static void done_policy(int status, void *arg) {
  pol_job *j = arg;
  gw_req *req = j->req;
  if (status == POL_EINVALID || status == POL_EAMBIGUOUS)
    gw_respond_error(req, 400, "invalid_policy", "%s", j->err);
  else if (status == ST_ENOTFOUND)
    gw_respond_error(req, 404, "not_found", "no such tenant");
  else if (!admin__job_error(req, status, "policy")) {
    GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){j->tenant, req->id}), "policy version %d in force", j->version);
    admin__audit_change(req, j->before, json_pack("{s:i, s:O}", "version", j->version, "document", j->doc));
    gw_respond_json(req, 200, json_pack("{s:i,s:O}", "version", j->version, "warnings",
                                        j->warnings ? j->warnings : json_array()));
  }
  json_decref(j->doc);
  json_decref(j->warnings);
  json_decref(j->before);
  free(j);
}

void admin__policy(gw_req *req, const admin_caller *who, const char *tenant) {
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!strcmp(req->method, "GET")) {
    pol_read *j = calloc(1, sizeof *j);
    if (!j) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    read_start(req, j);
    return;
  }
  if (strcmp(req->method, "PUT")) {
    gw_resp_header(req, "Allow", "GET, PUT");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  /* one of the tenant's PUTs at a time (gateway/core/limits.h), taken
   * before the body is parsed: a large document's job holds the writer
   * every tenant's deactivations wait for, and its parse the loop; the
   * slot goes back when this request ends */
  int busy = gw_limits_write_enter(req, tenant);
  if (busy) {
    if (busy == 503)
      gw_respond_error(req, 503, "busy", "other tenants' policy changes are being applied; retry after Retry-After seconds");
    else
      gw_respond_error(req, 429, "policy_change_in_progress",
                       "this tenant's previous policy PUT is still being applied; retry after Retry-After seconds");
    return;
  }
  json_t *doc = admin__parse_body(req);
  if (!doc) return;
  char err[4096];
  if (pol_validate(doc, err, sizeof err) != 0) {
    json_decref(doc);
    gw_respond_error(req, 400, "invalid_policy", "%s", err);
    return;
  }
  pol_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(doc);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  j->lp = req->lp;
  j->doc = doc;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  admin__now_rfc3339(j->now);
  if (gw_loop_submit(req->lp, job_policy, done_policy, j) != 0) {
    json_decref(doc);
    free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

void admin__explain(gw_req *req, const admin_caller *who, const char *tenant) {
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  /* one byte more than any value may hold: a value that fills it was cut
   * (gw_query_get), and a cut userName could name another user */
  char user[1026], connector[64], tool[1026];
  if (!gw_query_get(req->query, "user", user, sizeof user) || !gw_query_get(req->query, "connector", connector, sizeof connector) ||
      !gw_query_get(req->query, "tool", tool, sizeof tool) || !*user || !*connector || !*tool) {
    gw_respond_error(req, 400, "invalid_request", "explain needs ?user=<userName or id>&connector=<name>&tool=<name>");
    return;
  }
  if (strlen(user) >= sizeof user - 1 || strlen(connector) >= sizeof connector - 1 || strlen(tool) >= sizeof tool - 1) {
    gw_respond_error(req, 400, "invalid_request", "explain: user and tool are at most 1024 bytes, connector 62");
    return;
  }
  pol_read *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->explain = true;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  memcpy(j->user, user, sizeof user);
  memcpy(j->connector, connector, sizeof connector);
  memcpy(j->tool, tool, sizeof tool);
  read_start(req, j);
}
