/* gateway/api/admin_jobs.c — the writer-job plumbing of the admin API:
 * submitting a tenant/token job, the done callback that answers it once its
 * batch committed, the store errors every job answers alike, and the driver
 * of tenant purges.
 *
 * Tenant deletion: one job marks the tenant "deleting" and deletes every
 * token of it in the same transaction (so nothing of the tenant
 * authenticates after the 202), then bounded purge jobs (PURGE_BATCH keys
 * each) remove the rest until the tenant record itself goes. Purges resume
 * at the next start (gw_admin_loop_start) if the process stops half-way. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "gateway/base/log.h"
#include "store/tenant.h"
#include "vault/vault.h"

/* ---------- responses from jobs ---------- */

const char *gw_api_strerror(int err) {
  switch (err) {
  case GW_API_EEXISTS: return "already exists";
  case GW_API_EDELETING: return "being deleted";
  case GW_API_ENOTENANT: return "no such tenant";
  default: break;
  }
  if (err <= GW_API_ERR_FIRST && err >= GW_API_ERR_LAST) return "unknown admin API error";
  if (err <= VAULT_ERR_FIRST && err >= VAULT_ERR_LAST) return vault_strerror(err);
  return auth_strerror(err); /* auth's range, else the store's */
}

void admin__job_free(admin_job *j) {
  OPENSSL_cleanse(j->token, sizeof j->token);
  json_decref(j->settings);
  json_decref(j->view);
  free(j);
}

int admin__job_error(gw_req *req, int status, const char *what) {
  switch (status) {
  case ST_ENOTFOUND: gw_respond_error(req, 404, "not_found", "no such %s", what); return 1;
  case GW_API_EEXISTS: gw_respond_error(req, 409, "conflict", "%s already exists", what); return 1;
  case GW_API_EDELETING:
    gw_respond_error(req, 409, "conflict", "%s is being deleted; try again shortly", what);
    return 1;
  case ST_EMAPFULL:
    gw_respond_error(req, 507, "store_full", "the store is full (raise store_map_size); nothing was written");
    return 1;
  default:
    if (status < 0) {
      GW_LOG(GW_LOG_ERROR, "admin", NULL, "write failed: %s", gw_api_strerror(status));
      gw_respond_error(req, 500, "store_error", "the write failed: %s", gw_api_strerror(status));
      return 1;
    }
    return 0;
  }
}

static void done_generic(int status, void *arg) {
  admin_job *j = arg;
  gw_req *req = j->req;
  gw_server *srv = j->lp->srv;
  gw_log_ctx lctx = {j->tenant, req->id};
  /* ST_ENOTFOUND of a token create means its tenant is gone */
  const char *what = j->op != 5 ? "tenant" : j->kind[0] == 's' ? "SCIM token" : "admin token";
  if (admin__job_error(req, status, what)) goto out;
  switch (j->op) {
  case 0: { /* tenant create */
    char *base = admin__scim_base_url(srv, j->tenant);
    json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s}}", "id", j->tenant, "name", j->name,
                          "created", j->created, "scim", "base_url", base ? base : "", "token",
                          j->token, "token_id", j->tokid);
    free(base);
    GW_LOG(GW_LOG_INFO, "admin", &lctx, "tenant created");
    gw_respond_json(req, 201, o);
    break;
  }
  case 2: { /* patch: name and/or settings */
    json_t *o = json_pack("{s:s,s:s,s:O}", "id", j->tenant, "name", j->name, "settings",
                          j->view ? j->view : json_object());
    gw_respond_json(req, 200, o);
    break;
  }
  case 3: /* delete */
    GW_LOG(GW_LOG_INFO, "admin", &lctx,
           "tenant marked deleted; purging its data");
    gw_respond_json(req, 202, json_pack("{s:s,s:s}", "id", j->tenant, "state", "deleting"));
    admin__start_purge(j->lp, j->tenant);
    break;
  case 4: { /* token create */
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", j->tokid, "kind", j->kind, "name",
                          j->name[0] ? j->name : j->kind, "created", j->created, "token", j->token);
    if (j->kind[0] == 's') {
      char *base = admin__scim_base_url(srv, j->tenant);
      json_object_set_new(o, "base_url", json_string(base ? base : ""));
      free(base);
    }
    gw_respond_json(req, 201, o);
    break;
  }
  case 5: /* revoke */
    gw_respond(req, 204, NULL, NULL, 0);
    break;
  }
out:
  admin__job_free(j);
}

void admin__submit(gw_req *req, admin_job *j, st_job_fn fn) {
  j->req = req;
  j->lp = req->lp;
  int rc = st_submit(req->lp->srv->store, req->lp->port, fn, done_generic, j);
  if (rc != 0) {
    admin__job_free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now: %s", st_strerror(rc));
  }
}

/* ---------- purge driver ---------- */

static void purge_done(int status, void *arg) {
  admin_job *j = arg;
  gw_log_ctx lctx = {j->tenant, NULL};
  if (status < 0) {
    GW_LOG(GW_LOG_ERROR, "admin", &lctx, "tenant purge step failed: %s",
           gw_api_strerror(status));
  } else if (j->more && !j->lp->draining) {
    if (st_submit(j->lp->srv->store, j->lp->port, admin__job_tenant_purge, purge_done, j) == 0) return;
  } else if (!j->more) {
    GW_LOG(GW_LOG_INFO, "admin", &lctx, "tenant purged");
  }
  admin__job_free(j);
}

void admin__start_purge(gw_loop *lp, const char *tenant) {
  admin_job *j = calloc(1, sizeof *j);
  if (!j) return;
  j->lp = lp;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  if (st_submit(lp->srv->store, lp->port, admin__job_tenant_purge, purge_done, j) != 0) admin__job_free(j);
}

typedef struct deleting_ids {
  char ids[64][64];
  int n;
} deleting_ids;

static int note_deleting(void *ctx, const char *id, const char *state, json_t *rec) {
  deleting_ids *d = ctx;
  (void)rec;
  if (strcmp(state, "deleting") == 0) snprintf(d->ids[d->n++], sizeof d->ids[0], "%s", id);
  return d->n >= 64;
}

int gw_admin_loop_start(gw_loop *lp) {
  /* Resume purges of tenants a previous run left half-deleted. */
  st_txn *txn;
  if (st_read_begin(lp->srv->store, &txn) != 0) return -1;
  deleting_ids d = {.n = 0};
  st_tenant_foreach(txn, note_deleting, &d);
  st_txn_end(txn);
  for (int i = 0; i < d.n; i++) admin__start_purge(lp, d.ids[i]);
  return 0;
}

void gw_admin_loop_stop(gw_loop *lp) { (void)lp; }

