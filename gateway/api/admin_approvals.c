/* gateway/api/admin_approvals.c — /admin/v1/tenants/{t}/approvals: what
 * the tenant's held calls wait for (policy/approval.h).
 *
 *   GET  …/approvals[?state=pending|approved|denied|cancelled|expired&limit=N]
 *        newest first (limit 1..1000, default 100); read on libuv's
 *        thread pool holding a heavy-read slot (list_work: a state few
 *        requests are in reads the newest AP_LIST_SCAN_MAX), so past the
 *        tenant's or the process's slots it is 429 / 503 with Retry-After
 *   GET  …/approvals/{id}
 *   POST …/approvals/{id}/cancel   {"reason"?}: stops a pending request (the
 *        held call answers "cancelled"). An admin may always stop a request,
 *        never approve one: approving is done as oneself by a reviewer
 *        (gateway/api/approvals.c), or it would be self-approval by proxy. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/api/approvals.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/http/query.h"
#include "policy/approval.h"

typedef struct cancel_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  char tenant[64], id[AP_ID_LEN + 1], by[80];
  char reason[AP_REASON_MAX + 1];
  int64_t now_ms;
  json_t *out;
} cancel_job;

static int job_cancel(st_txn *txn, void *arg) {
  cancel_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_decref(j->out); /* a run before (store.h: a job may run again) */
  j->out = NULL;
  return ap_decide(txn, j->tenant, j->id, AP_CANCEL, NULL, j->by, j->reason, j->now_ms, &j->out);
}

static void done_cancel(int status, void *arg) {
  cancel_job *j = arg;
  gw_req *req = j->req;
  if (status == AP_EDECIDED) {
    gw_respond_error(req, 409, "not_pending", "the request is no longer pending (decided, cancelled or expired)");
  } else if (!admin__job_error(req, status, "approval request")) {
    GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, req->id}), "approval request %s cancelled by %s", j->id,
           j->by);
    gw_respond_json(req, 200, gw_approval_view(j->out));
  }
  json_decref(j->out);
  free(j);
}

/* The list reads up to AP_LIST_SCAN_MAX requests (a state few of them
 * are in reads them all: ~1.6 s at 50,000), on libuv's thread pool under
 * a heavy-read slot of the tenant's, as the reviewers' list does
 * (gateway/api/approvals.c), never on the loop every tenant shares. */
typedef struct list_job {
  st_store *store;
  char tenant[64], state[16];
  size_t limit;
  int64_t now_ms;
  bool unreadable; /* out: the store could not be read */
  int rc;       /* out: 0, ST_ENOTFOUND (no such tenant any more) or a store error */
  json_t *out;  /* out: the views */
} list_job;

static void list_work(void *ctx) {
  list_job *j = ctx;
  st_txn *txn;
  json_t *list = NULL;
  if (st_read_begin(j->store, &txn) != 0) {
    j->unreadable = true;
    return;
  }
  json_t *t = NULL;
  j->rc = st_tenant_get(txn, j->tenant, &t) ? ST_ENOTFOUND
                                            : ap_request_list(txn, j->tenant, j->state[0] ? j->state : NULL, j->now_ms,
                                                              j->limit, &list);
  json_decref(t);
  st_txn_end(txn);
  if (!j->rc) {
    j->out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(list, i, r) json_array_append_new(j->out, gw_approval_view(r));
  }
  json_decref(list);
}

static void list_done(gw_req *req, void *ctx) {
  list_job *j = ctx;
  if (!req) {
    /* nothing to answer (admin__pool_read) */
  } else if (j->unreadable) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
  } else if (j->rc == ST_ENOTFOUND) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else if (j->rc) {
    gw_respond_error(req, 500, "store_error", "the requests cannot be read: %s", st_strerror(j->rc));
  } else {
    gw_respond_json(req, 200, json_pack("{s:o}", "approvals", j->out));
    j->out = NULL;
  }
  json_decref(j->out);
  free(j);
}

void admin__approvals(gw_req *req, const admin_caller *who, const char *tenant, const char *id, const char *action) {
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (id && strlen(id) > AP_ID_LEN) { /* never cut to one that exists */
    gw_respond_error(req, 404, "not_found", "no such approval request");
    return;
  }
  if (action) {
    if (strcmp(action, "cancel")) {
      gw_respond_error(req, 404, "not_found", "no such route (POST …/approvals/{id}/cancel)");
      return;
    }
    if (strcmp(req->method, "POST")) {
      gw_resp_header(req, "Allow", "POST");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    cancel_job *j = calloc(1, sizeof *j);
    if (!j) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    if (req->body_len) {
      json_t *b = admin__parse_body(req);
      const char *reason = NULL;
      static const char *const keys[] = {"reason", NULL};
      if (!b || admin__only_keys(req, b, keys) || admin__opt_string(req, b, "reason", AP_REASON_MAX, &reason)) {
        json_decref(b);
        free(j);
        return;
      }
      snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : "");
      json_decref(b);
    }
    j->req = req;
    snprintf(j->actor, sizeof j->actor, "%s", req->actor);
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    snprintf(j->id, sizeof j->id, "%s", id);
    if (who->op) snprintf(j->by, sizeof j->by, "operator");
    else snprintf(j->by, sizeof j->by, "admin token %s", who->token_id);
    j->now_ms = gw_wall_ms();
    if (gw_loop_submit(req->lp, job_cancel, done_cancel, j)) {
      free(j);
      gw_resp_header(req, "Retry-After", "1");
      gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
    }
    return;
  }
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  int64_t now = gw_wall_ms();
  if (id) {
    json_t *rec;
    int rc = ap_request_get(txn, tenant, id, now, &rec);
    st_txn_end(txn);
    if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "no such approval request");
    else if (rc) gw_respond_error(req, 500, "store_error", "the request cannot be read: %s", st_strerror(rc));
    else gw_respond_json(req, 200, gw_approval_view(rec));
    json_decref(rec);
    return;
  }
  st_txn_end(txn);
  char state[16] = "", lim[16] = "";
  static const char *const states[] = {"pending", "approved", "denied", "cancelled", "expired", NULL};
  if (req->query && gw_query_get(req->query, "state", state, sizeof state) == 1) {
    bool ok = false;
    for (const char *const *s = states; *s; s++) ok = ok || !strcmp(*s, state);
    if (!ok) {
      gw_respond_error(req, 400, "invalid_request",
                       "state must be one of pending, approved, denied, cancelled, expired");
      return;
    }
  }
  long limit = 100;
  if (req->query && gw_query_get(req->query, "limit", lim, sizeof lim) == 1) {
    char *end;
    limit = strtol(lim, &end, 10);
    if (*end || limit < 1 || limit > 1000) {
      gw_respond_error(req, 400, "invalid_request", "limit must be an integer from 1 to 1000");
      return;
    }
  }
  list_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->store = req->lp->srv->store;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->state, sizeof j->state, "%s", state);
  j->limit = (size_t)limit;
  j->now_ms = now;
  if (admin__pool_read(req, tenant, GW_HEAVY_LISTS, "admin lists", list_work, list_done, j)) free(j);
}
