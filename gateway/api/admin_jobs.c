/* gateway/api/admin_jobs.c — the writer-job plumbing of the admin API:
 * submitting a tenant/token job, the done callback that answers it once its
 * batch committed, the store errors every job answers alike, and the driver
 * of tenant purges.
 *
 * Tenant deletion: one job marks the tenant "deleting" and deletes every
 * token of it in the same transaction (so nothing of the tenant
 * authenticates after the 202), then bounded purge jobs (PURGE_BATCH keys
 * each) remove the rest until the tenant record itself goes. Purges resume
 * at the next start (gw_admin_loop_start) if the process stops half-way.
 * What a purge deletes is not known here: each module registers its purge
 * with the store (st_purge_add) and a step runs them (st_purge_tenant_step). */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "gateway/base/log.h"
#include "vault/vault.h"
#include "auth/auth.h"
#include "auth/token_store.h"
#include "store/tenant.h"

/* ---------- responses from jobs ---------- */

const char *gw_api_strerror(int err) {
  switch (err) {
  case GW_API_EEXISTS: return "already exists";
  case GW_API_EDELETING: return "being deleted";
  case GW_API_ENOTENANT: return "no such tenant";
  case GW_API_EFULL: return "the tenant's cap is reached";
  case GW_API_EMOVED: return "the stored secret is not sent to another origin";
  case GW_API_ECAFILE: return "that ca_file is not a tenant admin's to set";
  case GW_API_EREVOKED: return "the admin token was revoked while the request waited";
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
  json_decref(j->before);
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
  case GW_API_EREVOKED:
    gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-admin\", error=\"invalid_token\"");
    gw_respond_error(req, 401, "unauthorized",
                     "invalid admin token (revoked, or its tenant deleted, while the request waited); nothing was "
                     "written");
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

/* Answers a job once its batch committed: the shared store errors, else
 * the resource's own reply. */
static void done_generic(int status, void *arg) {
  admin_job *j = arg;
  if (!admin__job_error(j->req, status, j->what)) j->reply(j);
  admin__job_free(j);
}

int admin__actor_still(st_txn *txn, const char *tenant, const char *actor) {
  static const char pfx[] = "admin-token:";
  if (!actor || strncmp(actor, pfx, sizeof pfx - 1)) return 0; /* the operator (or no request: a schedule) */
  json_t *rec = NULL;
  int rc = st_tenant_active(txn, tenant);
  if (rc == 0) rc = auth_token_get_by_id(txn, tenant, AUTH_KIND_ADMIN, actor + sizeof pfx - 1, &rec);
  json_decref(rec);
  if (rc == ST_ENOTFOUND || rc == ST_ECORRUPT) return GW_API_EREVOKED;
  return rc;
}

static int job_checked(st_txn *txn, void *arg) {
  admin_job *j = arg;
  int rc = admin__actor_still(txn, j->tenant, j->actor);
  return rc ? rc : j->inner(txn, j);
}

void admin__submit(gw_req *req, admin_job *j, st_job_fn fn, const char *what, admin_reply_fn reply) {
  j->req = req;
  j->lp = req->lp;
  j->what = what;
  j->reply = reply;
  j->inner = fn;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  int rc = gw_loop_submit(req->lp, job_checked, done_generic, j);
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
    if (gw_loop_submit(j->lp, admin__job_tenant_purge, purge_done, j) == 0) return;
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
  if (gw_loop_submit(lp, admin__job_tenant_purge, purge_done, j) != 0) admin__job_free(j);
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
  /* Resume purges of tenants a previous run left half-deleted: once per
   * process, on the primary loop. */
  if (lp->index != 0) return 0;
  st_txn *txn;
  if (st_read_begin(lp->srv->store, &txn) != 0) return -1;
  deleting_ids d = {.n = 0};
  st_tenant_foreach(txn, note_deleting, &d);
  st_txn_end(txn);
  for (int i = 0; i < d.n; i++) admin__start_purge(lp, d.ids[i]);
  return admin__rediscover_start(lp);
}

void gw_admin_loop_stop(gw_loop *lp) { admin__rediscover_stop(lp); }

