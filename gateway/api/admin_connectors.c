/* gateway/api/admin_connectors.c — /admin/v1/tenants/{t}/connectors[/{name}]:
 * list, read, put (validated by vault/, egress-checked) and delete
 * connectors. A delete, or a PUT that moves a connector to a new URL or
 * gives it another credential (another shared key value, another auth
 * type or header), ends its upstream sessions and live exchanges in the
 * same transaction: vault/ emits ST_EVENT_CONNECTOR_PUT/_DELETE and
 * gateway/mcp/revoke.c acts on them (and probes the connector's
 * capabilities after a PUT). The URL's query values are secret (vault.h):
 * every view here shows them as "…", a PUT sending them back so keeps the
 * stored ones (or is 400 when it cannot: VAULT_EMASKED), and a new value
 * is a move.
 *
 * "ca_file" names a file on the gateway's host, which the TLS library
 * reads: the host's files are the operator's business. The operator token
 * may name any file; a tenant admin only a file in the tenant's folder of
 * the operator's tenant_ca_dir (gw_config_tenant_ca_path: the path's text;
 * gw_out_ca_file_usable: where it leads, a regular file), or the value the
 * connector already stores, sent back unchanged (a GET then PUT of the
 * whole object; re-checked in the writer job, so a value the operator
 * changed meanwhile is not written back). Anything else is 403, one
 * message for every reason — a tenant admin learns nothing of files
 * outside its folder, not even whether they exist (a path outside the
 * folder is refused without touching the file system). At use, the
 * outbound engine holds a path in the folder to it again (ca_root).
 *
 * A tenant holds at most connectors_per_tenant_max connectors: a new one
 * past it is 409 too_many_connectors, counted in the writer job (keys
 * only, no further than the cap) and, for a discovering PUT, on the loop
 * before anything is fetched or registered. A tenant over a cap lowered
 * since keeps, uses and may change or delete every connector; its list
 * (built on the loop) holds the first cap of them and says it is cut. */
#include "gateway/api/admin_int.h"
#include "gateway/base/clock.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "vault/discover.h"
#include "vault/rediscover.h"
#include "vault/vault.h"

/* ---------- connectors (async jobs with their own done) ---------- */

typedef struct conn_job {
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  gw_req *req;
  gw_loop *lp;
  char tenant[64], name[40];
  char uid[ST_TENANT_UID_LEN + 1]; /* the incarnation the request began in, or "" (no check) */
  json_t *config;      /* from vault_connector_parse; read-only in the job */
  bool ca_stored;      /* a tenant admin's ca_file outside its folder: written only if it is the stored one */
  char *secret;        /* wiped and freed */
  char now[32];
  char epoch[ST_TOKEN_ID_BUFSZ]; /* the connector's epoch if this PUT makes, moves or rekeys it (random: drawn
                                  * here, jobs are pure) */
  vault_put_out put;   /* out: created, moved (another URL), rekeyed (another credential) */
  bool del;
  json_t *before;      /* out: the admin view before the write, or NULL (new) */
  int64_t next_due;    /* a discovered connector: its next reading (0: none) */
  const char *next_reason;
  int64_t max;         /* connectors_per_tenant_max: a new one past it is GW_API_EFULL */
} conn_job;

static void conn_job_free(conn_job *j) {
  json_decref(j->before);
  json_decref(j->config);
  if (j->secret) {
    OPENSSL_cleanse(j->secret, strlen(j->secret));
    free(j->secret);
  }
  free(j);
}

static void connectors_full(gw_req *req, int64_t max);

static int job_connector(st_txn *txn, void *arg) {
  conn_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_t *t;
  memset(&j->put, 0, sizeof j->put);
  json_decref(j->before);
  j->before = NULL;
  int rc = st_tenant_get(txn, j->tenant, &t);
  if (rc) return rc;
  json_decref(t);
  /* a request that outlived its tenant (a discovery takes minutes): never
   * written into a tenant made again with the same id meanwhile */
  char uid[ST_TENANT_UID_LEN + 1];
  if (j->uid[0] && ((rc = st_tenant_uid_get(txn, j->tenant, uid)) != 0 || strcmp(uid, j->uid) != 0))
    return rc && rc != ST_ENOTFOUND ? rc : ST_ENOTFOUND;
  json_t *old = NULL;
  rc = vault_connector_get(txn, j->tenant, j->name, &old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (old) j->before = vault_connector_view(old); /* what the audit log shows: never the sealed secret */
  if (j->del) {
    json_decref(old);
    return vault_connector_delete(txn, j->tenant, j->name);
  }
  if (j->ca_stored) {
    /* the value the admin sent back must still be the stored one */
    const char *was = json_string_value(json_object_get(old, "ca_file"));
    const char *now = json_string_value(json_object_get(j->config, "ca_file"));
    if (!was || !now || strcmp(was, now)) {
      json_decref(old);
      return GW_API_ECAFILE;
    }
  }
  /* a new connector within the operator's cap (counted here, in the
   * write: two PUTs at once cannot both pass it); one that exists may
   * always be written, also in a tenant over a cap lowered since */
  int64_t n = 0;
  if (!old && (rc = vault_connector_count(txn, j->tenant, j->max, &n)) == 0 && n >= j->max) rc = GW_API_EFULL;
  json_decref(old);
  if (rc) return rc;
  rc = vault_connector_put(txn, j->tenant, j->name, j->config, j->secret, j->now, j->epoch, &j->put);
  if (rc || !json_is_true(json_object_get(json_object_get(j->config, "auth"), "discover"))) return rc;
  /* a discovered connector is read again later (vault/rediscover.h) */
  if (!j->next_due) return vault_rediscover_cancel(txn, j->tenant, j->name);
  return vault_rediscover_schedule(txn, j->tenant, j->name, j->next_due, j->next_reason, false);
}

/* The admin's view: for an oauth connector also the redirect URI to
 * register at its authorization server. */
json_t *admin__connector_view(const gw_server *srv, st_txn *txn, const char *tenant, const json_t *rec) {
  json_t *v = vault_connector_view(rec);
  if (json_is_true(json_object_get(json_object_get(rec, "auth"), "discover"))) {
    /* when its authorization is read again, and how the last reading went */
    json_t *st = txn ? vault_rediscover_status(txn, tenant, json_string_value(json_object_get(rec, "name")) ?: "")
                     : NULL;
    json_object_set_new(v, "rediscovery", st ? st : json_object());
  }
  if (vault_connector_is_oauth(rec)) {
    char ru[1200];
    const char *pub = srv->cfg.public_url ? srv->cfg.public_url : "";
    size_t n = strlen(pub);
    while (n && pub[n - 1] == '/') n--;
    snprintf(ru, sizeof ru, "%.*s/t/%s/connect/%s/callback", (int)n, pub, tenant,
             json_string_value(json_object_get(rec, "name")) ?: "");
    json_object_set_new(json_object_get(v, "auth"), "redirect_uri", json_string(ru));
  }
  return v;
}

static void done_connector(int status, void *arg) {
  conn_job *j = arg;
  gw_req *req = j->req;
  if (status == ST_ENOTFOUND) {
    gw_respond_error(req, 404, "not_found", j->del ? "no such connector" : "no such tenant");
  } else if (status == GW_API_ECAFILE) {
    admin__ca_file_refused(req, j->tenant);
  } else if (status == GW_API_EFULL) {
    connectors_full(req, j->max);
  } else if (status == VAULT_EMASKED) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"url\" sends a query value back masked (…), which keeps the stored value of that parameter "
                     "only at the stored URL's scheme, host and path, and only one that is stored (the URL with "
                     "what is kept at most 2048 bytes): give the value itself");
  } else if (!admin__job_error(req, status, "connector")) {
    if (j->del) {
      GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, req->id}), "connector %s deleted", j->name);
      admin__audit_change(req, j->before, NULL);
      gw_respond(req, 204, NULL, NULL, 0);
    } else {
      st_txn *txn;
      json_t *rec = NULL, *v = NULL;
      if (st_read_begin(j->lp->srv->store, &txn) == 0) {
        vault_connector_get(txn, j->tenant, j->name, &rec);
        if (rec) v = admin__connector_view(j->lp->srv, txn, j->tenant, rec);
        st_txn_end(txn);
      }
      if (j->put.moved || j->put.rekeyed)
        GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, req->id}),
               "connector %s has %s: its upstream sessions and live exchanges ended", j->name,
               j->put.moved ? "a new URL" : "another credential");
      if (rec) admin__audit_change(req, j->before, vault_connector_view(rec));
      if (!rec) gw_respond_error(req, 500, "internal", "the connector was written but cannot be read back");
      else gw_respond_json(req, j->put.created ? 201 : 200, v);
      json_decref(rec);
    }
  }
  conn_job_free(j);
}

static void connectors_full(gw_req *req, int64_t max) {
  gw_respond_error(req, 409, "too_many_connectors",
                   "this tenant holds as many connectors as the gateway allows one tenant "
                   "(connectors_per_tenant_max: %lld): delete one before adding another, or ask the operator",
                   (long long)max);
}

/* Room for connector name in tenant (on the loop, before a discovery
 * registers the gateway anywhere): 0 when it exists or the tenant is under
 * its cap; else answered (409, or the tenant's 404/503) and -1. */
static int connector_room(gw_req *req, const char *tenant, const char *name) {
  int64_t max = req->lp->srv->cfg.connectors_per_tenant_max, n = 0;
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return -1;
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, tenant, name, &rec);
  json_decref(rec);
  if (rc == ST_ENOTFOUND) rc = vault_connector_count(txn, tenant, max, &n);
  st_txn_end(txn);
  if (rc) {
    gw_respond_error(req, 503, "store_busy", "the store cannot be read right now");
    return -1;
  }
  if (n >= max) {
    connectors_full(req, max);
    return -1;
  }
  return 0;
}

void admin__ca_file_refused(gw_req *req, const char *tenant) {
  const char *d = req->lp->srv->cfg.tenant_ca_dir;
  size_t dl = d ? strlen(d) : 0;
  while (dl && d[dl - 1] == '/') dl--;
  if (!d || !*d)
    gw_respond_error(req, 403, "forbidden",
                     "\"ca_file\" names a file on the gateway's host: a tenant admin may name only a file in the "
                     "tenant's folder of the operator's tenant_ca_dir, which this gateway does not set. Leave "
                     "\"ca_file\" out, send the stored value back unchanged, or ask the operator");
  else
    gw_respond_error(req, 403, "forbidden",
                     "\"ca_file\" must name a regular file of at most 4 MiB in %.*s/%s/ (this tenant's folder of the "
                     "operator's tenant_ca_dir; symbolic links must stay inside it), or be the stored value sent back "
                     "unchanged: ask the operator to place the CA file there",
                     (int)dl, d, tenant);
}

int admin__ca_file_allowed(gw_req *req, const admin_caller *who, const char *tenant, const char *name,
                           const json_t *body) {
  const char *ca = json_string_value(json_object_get(body, "ca_file"));
  if (who->op || !ca || ca[0] != '/') return 0; /* not a path: the parse says what is wrong */
  char root[PATH_MAX];
  if (gw_config_tenant_ca_path(&req->lp->srv->cfg, tenant, ca, root, sizeof root) &&
      gw_out_ca_file_usable(ca, root) == 0)
    return 0;
  /* only as the stored value */
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return -1;
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, tenant, name, &rec);
  st_txn_end(txn);
  const char *was = rc ? NULL : json_string_value(json_object_get(rec, "ca_file"));
  bool same = was && !strcmp(was, ca);
  json_decref(rec);
  if (rc && rc != ST_ENOTFOUND) {
    gw_respond_error(req, 503, "store_busy", "the store cannot be read right now");
    return -1;
  }
  if (same) return 1;
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){tenant, req->id}),
         "connector %s: a tenant admin's ca_file %.200s is refused (not in %s's folder of tenant_ca_dir, not a "
         "regular file of at most 4 MiB there, or leading out of it)",
         name, ca, tenant);
  admin__ca_file_refused(req, tenant);
  return -1;
}

void admin__connectors(gw_req *req, const admin_caller *who, const char *tenant, const char *name) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (name && !vault_connector_name_valid(name)) {
    gw_respond_error(req, 400, "invalid_request",
                     "invalid connector name \"%.40s\": use 1 to 32 of a-z, 0-9 and - (no '_')", name);
    return;
  }
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (admin__read_tenant(req, tenant, &txn) != 0) return;
    if (!name) {
      /* built here, on the loop: at most the operator's cap of them (a
       * tenant over a cap lowered since is told its list is cut) */
      json_t *arr;
      bool more = false;
      int64_t max = srv->cfg.connectors_per_tenant_max;
      int rc = vault_connector_list_max(txn, tenant, max, &arr, &more);
      st_txn_end(txn);
      if (rc) {
        json_decref(arr);
        gw_respond_error(req, 503, "store_busy", "the store cannot be read right now");
        return;
      }
      json_t *out = json_pack("{s:o}", "connectors", arr);
      if (more) {
        json_object_set_new(out, "truncated", json_true());
        json_object_set_new(out, "limit", json_integer(max));
      }
      gw_respond_json(req, 200, out);
      return;
    }
    json_t *rec;
    int rc = vault_connector_get(txn, tenant, name, &rec);
    json_t *v = rc ? NULL : admin__connector_view(srv, txn, tenant, rec);
    st_txn_end(txn);
    if (rc) {
      gw_respond_error(req, 404, "not_found", "no such connector");
      return;
    }
    gw_respond_json(req, 200, v);
    json_decref(rec);
    return;
  }
  if (!name || (strcmp(req->method, "PUT") && strcmp(req->method, "DELETE"))) {
    gw_resp_header(req, "Allow", name ? "GET, PUT, DELETE" : "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  conn_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  j->lp = req->lp;
  j->max = req->lp->srv->cfg.connectors_per_tenant_max;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->name, sizeof j->name, "%s", name);
  admin__now_rfc3339(j->now);
  if (!strcmp(req->method, "DELETE")) {
    j->del = true;
  } else if (st_token_id_new(j->epoch) != 0) {
    conn_job_free(j);
    gw_respond_error(req, 500, "internal", "no random bytes for the connector's epoch");
    return;
  } else {
    json_t *b = admin__parse_secret_body(req); /* it carries the upstream credential */
    if (!b) {
      conn_job_free(j);
      return;
    }
    char err[1024];
    const char *secret;
    /* a file on the host: before anything is fetched with it */
    int ca = admin__ca_file_allowed(req, who, tenant, name, b);
    if (ca < 0) {
      json_decref(b);
      conn_job_free(j);
      return;
    }
    j->ca_stored = ca == 1;
    int want = vault_discover_wanted(b, err, sizeof err);
    if (want == 1) {
      /* the endpoints and the client come from the upstream: discovery
       * first (admin_discover.c), then the same writer job. A new
       * connector past the cap is refused before the gateway registers
       * itself anywhere (the writer job checks again) */
      conn_job_free(j);
      if (admin__discover_slot(req, tenant, name) || connector_room(req, tenant, name)) {
        json_decref(b);
        return;
      }
      admin__connector_discover(req, tenant, name, b, ca == 1);
      return;
    }
    if (want == 0 && vault_connector_parse(b, &j->config, &secret, err, sizeof err) != 0) want = VAULT_EINVALID;
    if (want) {
      json_decref(b);
      conn_job_free(j);
      gw_respond_error(req, 400, "invalid_request", "%s", err);
      return;
    }
    /* a literal address the egress policy refuses is refused now, naming
     * the operator's key; host names are judged at connect time */
    static const char *const fetched[] = {"url", "auth.token_url", "auth.revocation_url", NULL};
    for (const char *const *f = fetched; *f; f++) {
      /* the gateway fetches these (the authorize URL is the browser's) */
      json_t *holder = strncmp(*f, "auth.", 5) ? j->config : json_object_get(j->config, "auth");
      const char *u = json_string_value(json_object_get(holder, strncmp(*f, "auth.", 5) ? *f : *f + 5));
      if (u && gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], u, err, sizeof err) != 0) {
        json_decref(b);
        conn_job_free(j);
        gw_respond_error(req, 400, "egress_refused", "\"%s\": %s", *f, err);
        return;
      }
    }
    j->secret = secret ? strdup(secret) : NULL;
    /* the request body holds the secret too: wipe it now it is copied */
    OPENSSL_cleanse(req->body, req->body_len);
    json_decref(b);
  }
  int rc = gw_loop_submit(req->lp, job_connector, done_connector, j);
  if (rc) {
    conn_job_free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

void admin__connector_write(gw_req *req, const char *tenant, const char *name, const char *uid, json_t *config,
                            char *secret, bool ca_stored) {
  conn_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(config);
    if (secret) {
      OPENSSL_cleanse(secret, strlen(secret));
      free(secret);
    }
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  j->lp = req->lp;
  j->max = req->lp->srv->cfg.connectors_per_tenant_max;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->name, sizeof j->name, "%s", name);
  snprintf(j->uid, sizeof j->uid, "%s", uid ? uid : "");
  admin__now_rfc3339(j->now);
  j->config = config;
  j->secret = secret;
  j->ca_stored = ca_stored;
  j->next_due = admin__discover_next_due(req->lp->srv, config, gw_wall_ms(), &j->next_reason);
  if (st_token_id_new(j->epoch) != 0) {
    conn_job_free(j);
    gw_respond_error(req, 500, "internal", "no random bytes for the connector's epoch");
    return;
  }
  if (gw_loop_submit(req->lp, job_connector, done_connector, j)) {
    conn_job_free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

