/* gateway/api/admin_directory.c — /admin/v1/tenants/{t}/users[/{id}] and
 * /groups[/{id}]: read-only views of what SCIM provisioned, rendered by
 * scim/ exactly as its own endpoint would.
 *
 * Rules this file keeps, and why:
 *  - A read no index answers (a filter evaluated on every resource of the
 *    tenant) runs on libuv's thread pool with its own read snapshot,
 *    holding a heavy-read slot (gateway/core/limits.h, the SCIM scans'
 *    kind), as the SCIM endpoint's scans do: a tenant admin's filter over
 *    100,000 users must not stall the loop every tenant's requests share.
 *    Past the slots: 429 / 503 with Retry-After. So does a read an index
 *    answers that would pass SCIM_LOOP_BUDGET on the loop (scim.h: a
 *    group of thousands of members, many candidates): it is tried on the
 *    loop within the budget and, past it, run again on the pool. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway/core/limits.h"
#include "scim/scim.h"
#include "store/dir.h"

typedef struct dir_job {
  gw_req *req;
  st_store *store;
  char tenant[64], path[128];
  char *query, *base;
  bool user_one; /* one user: an admin's block shows beside it */
  size_t max_count;
  scim_budget *budget; /* on the loop: SCIM_LOOP_BUDGET's (scim.h); NULL on the pool */
  scim_resp rs;
  json_t *block;
} dir_job;

static void dir_job_free(dir_job *j) {
  scim_resp_clear(&j->rs);
  json_decref(j->block);
  free(j->query);
  free(j->base);
  free(j);
}

/* The read itself, in txn: on the loop or a pool thread. */
static void dir_read(st_txn *txn, dir_job *j) {
  scim_req rq = {0};
  rq.tenant = j->tenant;
  rq.method = "GET";
  rq.path = j->path;
  rq.query = j->query;
  rq.base_url = j->base ? j->base : "";
  rq.max_count = j->max_count;
  rq.budget = j->budget;
  scim_handle(txn, &rq, &j->rs);
  if (j->budget && j->budget->over) return; /* incomplete: the caller reads again on the pool */
  if (j->user_one && j->rs.status == 200)
    st_dir_user_block_get(txn, j->tenant, json_string_value(json_object_get(j->rs.body, "id")), &j->block);
}

static void dir_answer(dir_job *j) {
  gw_req *req = j->req;
  scim_resp *rs = &j->rs;
  if (rs->status >= 400) {
    const char *detail = json_string_value(json_object_get(rs->body, "detail"));
    const char *type = json_string_value(json_object_get(rs->body, "scimType"));
    gw_respond_error(req, rs->status, rs->status == 404 ? "not_found" : type ? type : "invalid_request", "%s",
                     detail ? detail : "request failed");
  } else {
    json_t *out = json_incref(rs->body);
    if (j->user_one) {
      json_object_set_new(out, "blocked", j->block ? j->block : json_null());
      j->block = NULL;
    }
    gw_respond_json(req, rs->status, out);
  }
  dir_job_free(j);
}

static void dir_work(void *ctx) {
  dir_job *j = ctx;
  st_txn *txn;
  if (st_read_begin(j->store, &txn) != 0) {
    scim_error(&j->rs, 503, NULL, "the store cannot be read right now");
    return;
  }
  dir_read(txn, j);
  st_txn_end(txn);
}

static void dir_done(gw_req *req, void *ctx) {
  dir_job *j = ctx;
  if (req) dir_answer(j);
  else dir_job_free(j);
}

/* GET /admin/v1/tenants/{t}/users[/{id}] and /groups[/{id}]: what SCIM
 * provisioned, as SCIM renders it (users with their groups; lists paged
 * with startIndex/count and filtered with a SCIM filter). One user also
 * carries "blocked": the admin's revoke in force ({at, by, reason}) or
 * null (admin_users.c). */
void admin__directory(gw_req *req, const admin_caller *who, const char *tenant, const char *what,
                           const char *id) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  dir_job *j = calloc(1, sizeof *j);
  if (!j) {
    st_txn_end(txn);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  j->store = srv->store;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->path, sizeof j->path, "/%s%s%.64s", what[0] == 'u' ? "Users" : "Groups", id ? "/" : "", id ? id : "");
  j->query = req->query ? strdup(req->query) : NULL;
  j->base = admin__scim_base_url(srv, tenant);
  j->user_one = id && what[0] == 'u';
  j->max_count = (size_t)srv->cfg.scim_max_count;
  if (req->query && !j->query) {
    st_txn_end(txn);
    dir_job_free(j);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  scim_req probe = {.tenant = j->tenant, .method = "GET", .path = j->path, .query = j->query};
  if (scim_read_is_cheap(&probe)) { /* an index answers it: on the loop, within its budget */
    scim_budget budget = {SCIM_LOOP_BUDGET, false};
    j->budget = &budget;
    dir_read(txn, j);
    j->budget = NULL;
    if (!budget.over) {
      st_txn_end(txn);
      dir_answer(j);
      return;
    }
    scim_resp_clear(&j->rs); /* past it: incomplete, read again on the pool */
  }
  st_txn_end(txn);
  if (admin__pool_read(req, tenant, GW_HEAVY_SCIM, "scans of the directory", dir_work, dir_done, j)) dir_job_free(j);
}
