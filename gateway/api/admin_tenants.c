/* gateway/api/admin_tenants.c — /admin/v1/tenants[/{id}]: tenant ids, the
 * tenant record ("t" + id in ST_DB_TENANTS) and its writer jobs (create with
 * the first SCIM token and the incarnation uid, rename, delete, bounded
 * purge step), and the list/create/get/patch/delete handlers. A tenant's
 * settings (gateway/core/settings.h) are shown by GET and changed by PATCH
 * {"settings": {…}} with the name, validated whole before anything is
 * written. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/token_store.h"
#include "gateway/base/log.h"
#include "gateway/core/settings.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/tenant.h"

static int job_tenant_create(st_txn *txn, void *arg) {
  admin_job *j = arg;
  char state[16];
  int rc = st_tenant_create(txn, j->tenant, j->name, j->created, j->uid);
  if (rc == ST_EEXIST)
    return st_tenant_state(txn, j->tenant, state) == 0 && strcmp(state, "deleting") == 0 ? GW_API_EDELETING : GW_API_EEXISTS;
  if (rc) return rc;
  return admin__write_token(txn, j, "initial");
}

/* PATCH: the name and the settings change together or not at all (one
 * job, one nested transaction); the settings patch was validated on the
 * loop and is merged here into the stored document. Fills the reply's name
 * and settings view from what is stored afterwards. */
static int job_tenant_patch(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec = NULL, *doc = NULL;
  json_decref(j->view);
  j->view = NULL;
  json_decref(j->before);
  j->before = NULL;
  /* what it was, for the audit record's change (views: no secret) */
  if (st_tenant_get(txn, j->tenant, &rec) == 0) {
    j->before = json_pack("{s:O,s:o}", "name", json_object_get(rec, "name"), "settings",
                          gw_settings_view(json_object_get(rec, "settings")));
    json_decref(rec);
    rec = NULL;
  }
  int rc = j->name[0] ? st_tenant_rename(txn, j->tenant, j->name) : 0;
  if (!rc && j->settings) {
    if ((rc = st_tenant_get(txn, j->tenant, &rec)) != 0) return rc;
    rc = gw_settings_merge(json_object_get(rec, "settings"), j->settings, &doc);
    json_decref(rec);
    rec = NULL;
    if (!rc) rc = gw_settings_seal(txn, j->tenant, j->settings, doc); /* credentials sealed, never in the document */
    if (!rc) rc = st_tenant_set_settings(txn, j->tenant, doc);
    json_decref(doc);
  }
  if (!rc) rc = st_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  /* an output of its own: j->name is the rename asked for, read again by
   * a run again of this job (store.h) */
  snprintf(j->name_out, sizeof j->name_out, "%s", json_string_value(json_object_get(rec, "name")) ?: "");
  j->view = gw_settings_view(json_object_get(rec, "settings"));
  json_decref(rec);
  return 0;
}

/* Marks the tenant deleting and deletes its tokens in the same
 * transaction: nothing of it authenticates after the 202. */
static int job_tenant_delete(st_txn *txn, void *arg) {
  admin_job *j = arg;
  int rc = st_tenant_mark_deleting(txn, j->tenant);
  if (rc) return rc;
  rc = auth_tokens_delete_tenant(txn, j->tenant, 0);
  /* live streams and in-flight calls of the tenant end before the 202:
   * st_tenant_mark_deleting emitted ST_EVENT_TENANT_DELETING
   * (gateway/mcp/revoke.c) */
  return rc < 0 ? rc : 0;
}

/* One bounded purge step: the registered purges (st_purge_tenant_step)
 * delete up to PURGE_BATCH keys; once they report less, nothing of the
 * tenant is left and the record itself goes in the same transaction. */
int admin__job_tenant_purge(st_txn *txn, void *arg) {
  admin_job *j = arg;
  j->more = 0;
  int n = st_purge_tenant_step(txn, j->tenant, PURGE_BATCH);
  if (n < 0) return n;
  if (n >= PURGE_BATCH) {
    j->more = 1;
    return 0;
  }
  return st_tenant_remove(txn, j->tenant);
}

/* ---------- replies (after the commit) ---------- */

static void reply_created(admin_job *j) {
  char *base = admin__scim_base_url(j->lp->srv, j->tenant);
  json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s}}", "id", j->tenant, "name", j->name, "created",
                        j->created, "scim", "base_url", base ? base : "", "token", j->token, "token_id", j->tokid);
  free(base);
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, j->req->id}), "tenant created");
  gw_respond_json(j->req, 201, o);
}

static void reply_patched(admin_job *j) {
  admin__audit_change(j->req, j->before,
                      json_pack("{s:s,s:O}", "name", j->name_out, "settings", j->view ? j->view : json_null()));
  gw_respond_json(j->req, 200, json_pack("{s:s,s:s,s:o}", "id", j->tenant, "name", j->name_out, "settings",
                                         j->view ? json_incref(j->view) : json_object()));
}

static void reply_deleting(admin_job *j) {
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, j->req->id}), "tenant marked deleted; purging its data");
  gw_respond_json(j->req, 202, json_pack("{s:s,s:s}", "id", j->tenant, "state", "deleting"));
  admin__start_purge(j->lp, j->tenant);
}

static json_t *tenant_view(gw_server *srv, json_t *rec) {
  const char *id = json_string_value(json_object_get(rec, "id"));
  char *base = admin__scim_base_url(srv, id ? id : "");
  json_t *o = json_pack("{s:O,s:O,s:O,s:{s:s}}", "id", json_object_get(rec, "id"), "name",
                        json_object_get(rec, "name"), "created", json_object_get(rec, "created"),
                        "scim", "base_url", base ? base : "");
  free(base);
  return o;
}

typedef struct list_ctx {
  gw_server *srv;
  const admin_caller *who;
  json_t *arr;
} list_ctx;

static int list_one(void *ctx, const char *key_id, const char *state, json_t *r) {
  list_ctx *l = ctx;
  const char *id = json_string_value(json_object_get(r, "id"));
  (void)key_id;
  if (strcmp(state, "active") == 0 && id && (l->who->op || strcmp(id, l->who->tenant) == 0))
    json_array_append_new(l->arr, tenant_view(l->srv, r));
  return 0;
}

void admin__tenants_list(gw_req *req, const admin_caller *who) {
  gw_server *srv = req->lp->srv;
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return;
  }
  list_ctx l = {srv, who, json_array()};
  st_tenant_foreach(txn, list_one, &l);
  st_txn_end(txn);
  gw_respond_json(req, 200, json_pack("{s:o}", "tenants", l.arr));
}

void admin__tenants_create(gw_req *req, const admin_caller *who) {
  if (admin__need_operator(req, who)) return;
  json_t *b = admin__parse_body(req);
  if (!b) return;
  static const char *const allowed[] = {"id", "name", NULL};
  const char *id, *name;
  if (admin__only_keys(req, b, allowed) || admin__opt_string(req, b, "id", 63, &id) ||
      admin__opt_string(req, b, "name", NAME_MAX_LEN, &name))
    goto out;
  if (!id) {
    gw_respond_error(req, 400, "invalid_request", "\"id\" is required ([a-z0-9-]{1,63})");
    goto out;
  }
  if (!st_tenant_id_valid(id)) {
    gw_respond_error(req, 400, "invalid_request",
                     "invalid tenant id \"%.64s\": use 1 to 63 of a-z, 0-9 and -", id);
    goto out;
  }
  admin_job *j = calloc(1, sizeof *j);
  if (!j) goto oom;
  snprintf(j->tenant, sizeof j->tenant, "%s", id);
  snprintf(j->name, sizeof j->name, "%s", name ? name : id);
  snprintf(j->kind, sizeof j->kind, "scim");
  admin__now_rfc3339(j->created);
  if (st_token_new("mgs_", j->token, sizeof j->token) != 0 || st_token_id_new(j->tokid) != 0 ||
      st_token_id_new(j->uid) != 0 || st_token_hash(j->token, strlen(j->token), j->hash) != 0) {
    admin__job_free(j);
    goto oom;
  }
  snprintf(req->tenant, sizeof req->tenant, "%s", id);
  admin__submit(req, j, job_tenant_create, "tenant", reply_created);
  json_decref(b);
  return;
oom:
  gw_respond_error(req, 500, "internal", "could not prepare the tenant");
out:
  json_decref(b);
}

void admin__tenant_one(gw_req *req, const admin_caller *who, const char *id) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, id)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", id);
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (st_read_begin(srv->store, &txn) != 0) {
      gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
      return;
    }
    json_t *rec;
    int rc = st_tenant_get(txn, id, &rec);
    st_txn_end(txn);
    if (rc) {
      gw_respond_error(req, 404, "not_found", "no such tenant");
      return;
    }
    json_t *view = tenant_view(srv, rec);
    json_object_set_new(view, "settings", gw_settings_view(json_object_get(rec, "settings")));
    gw_respond_json(req, 200, view);
    json_decref(rec);
    return;
  }
  if (!strcmp(req->method, "PATCH")) {
    json_t *b = admin__parse_body(req);
    if (!b) return;
    static const char *const allowed[] = {"name", "settings", NULL};
    const char *name;
    json_t *settings = json_object_get(b, "settings");
    char err[1024];
    if (admin__only_keys(req, b, allowed) || admin__opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
      json_decref(b);
      return;
    }
    if (settings && gw_settings_validate(settings, err, sizeof err) != 0) {
      json_decref(b);
      gw_respond_error(req, 400, "invalid_request", "%s", err);
      return;
    }
    /* a URL setting's literal address, refused now when the egress policy
     * refuses it (host names are checked at connect, like every URL) */
    const char *k;
    json_t *v;
    json_object_foreach(settings, k, v) {
      const gw_setting *st = gw_setting_find(k);
      char why[400];
      if (!st || !st->egress_url || !json_is_string(v) || !json_string_length(v) ||
          gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], json_string_value(v), why, sizeof why) == 0)
        continue;
      gw_respond_error(req, 400, "egress_refused", "setting \"%s\": %s", k, why);
      json_decref(b); /* after the answer: k is a key of b */
      return;
    }
    if (!name && !settings) {
      json_decref(b);
      gw_respond_error(req, 400, "invalid_request",
                       "nothing to change: send {\"name\": \"…\"} and/or {\"settings\": {…}}");
      return;
    }
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
      json_decref(b);
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", id);
    snprintf(j->name, sizeof j->name, "%s", name ? name : "");
    j->settings = json_incref(settings);
    json_decref(b);
    admin__submit(req, j, job_tenant_patch, "tenant", reply_patched);
    return;
  }
  if (!strcmp(req->method, "DELETE")) {
    if (admin__need_operator(req, who)) return;
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", id);
    admin__submit(req, j, job_tenant_delete, "tenant", reply_deleting);
    return;
  }
  gw_resp_header(req, "Allow", "GET, PATCH, DELETE");
  gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
}

