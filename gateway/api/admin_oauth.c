/* gateway/api/admin_oauth.c — /admin/v1/tenants/{t}/oauth-clients: the
 * OAuth clients of a tenant's authorization server (auth/oauth_client.h):
 *   GET    …/oauth-clients[?kind=dcr|cimd|pinned&after=&limit=]  the records
 *   PUT    …/oauth-clients {"client_id":"https://…","document":{…}}
 *          pins a client metadata document (checked as if fetched from
 *          client_id; wins over fetching it); at most pinned_clients_max
 *          of a tenant (409 too_many_clients past it)
 *   GET    …/oauth-clients/{client_id, URL-encoded}               one record
 *   DELETE …/oauth-clients/{client_id, URL-encoded}               any kind,
 *          with every grant, consent and code of the client; a client
 *          metadata document URL (cached, or never cached) stays blocked
 *          (a "blocked" record): a delete alone lasted until the next
 *          fetch of the document. A pinned document is unpinned (fetched
 *          from then on), not blocked. Past blocked_clients_max (below) a
 *          delete is still carried out, without the block: 200 with
 *          "blocked": false and a warning (409 when there was nothing to
 *          delete: it would only have blocked).
 *   PUT    …/oauth-clients/{client_id}/block   blocks a document URL
 *          (its DELETE, and a block even if pinned or never seen); at most
 *          blocked_clients_max blocked URLs of a tenant (409
 *          too_many_clients for a new one past it; blocking a blocked URL
 *          again is always allowed): each is a record in the store every
 *          tenant shares, and one admin could otherwise write them without
 *          end. Counted in the writer job's transaction, from the tenant's
 *          counts record (auth/oauth_client.h), as pins are.
 *   DELETE …/oauth-clients/{client_id}/block   lifts the block (404 when
 *          none); a PUT of a pinned document replaces it too
 *   GET    …/oauth-clients/resolve?client_id=…  what the authorization
 *          endpoint would see for this client now (oauth_cimd.c's lookup:
 *          it may fetch and cache the document) — an operator's diagnostic
 *          for "why is this client refused?".
 * Records are shown with last_used and fetched as RFC 3339 times. The
 * list is read on libuv's thread pool (a heavy read: list_job says why). */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_client.h"
#include "auth/oauth_token.h"
#include "gateway/api/oauth_int.h"
#include "gateway/base/log.h"
#include "gateway/http/query.h"

#define LIST_MAX 1000
#define LIST_DEFAULT 500

/* The admin view of a record (a new object). */
static json_t *view(const json_t *rec) {
  json_t *v = json_deep_copy(rec);
  if (!v) return NULL;
  static const char *const stamps[] = {"last_used", "fetched", NULL};
  for (const char *const *s = stamps; *s; s++) {
    json_t *t = json_object_get(v, *s);
    if (!json_is_integer(t)) continue;
    char when[32];
    oauth__rfc3339(json_integer_value(t), when);
    json_object_set_new(v, *s, json_string(when));
  }
  return v;
}

/* ---- the list and one record */

/* A list reads up to every client record of the tenant — with ?kind= all
 * of them when few are of that kind: 10,000 registrations anyone may make
 * (dcr_clients_max) and as many cached documents — so it runs on libuv's
 * thread pool under a heavy-read slot of the tenant's (admin lists,
 * gateway/core/limits.h), as SCIM's scans do, never on the loop every
 * tenant shares. */
typedef struct list_job {
  st_store *store;
  char tenant[64], kind[16], after[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  int limit;
  int rc;                /* out: the store's error, if any */
  bool unreadable, gone; /* out: the store could not be read; no such tenant any more */
  json_t *out;           /* out: the answer */
} list_job;

static void list_work(void *ctx) {
  list_job *j = ctx;
  st_txn *txn;
  if (st_read_begin(j->store, &txn) != 0) {
    j->unreadable = true;
    return;
  }
  json_t *t = NULL;
  j->gone = st_tenant_get(txn, j->tenant, &t) != 0;
  json_decref(t);
  json_t *recs = NULL;
  bool more = false;
  if (!j->gone) j->rc = auth_oauth_clients_list(txn, j->tenant, j->kind[0] ? j->kind : NULL, j->after, j->limit, &recs, &more);
  st_txn_end(txn);
  if (j->gone || j->rc) return;
  json_t *items = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(recs, i, r) json_array_append_new(items, view(r));
  j->out = json_pack("{s:o}", "clients", items);
  if (more && json_array_size(recs))
    json_object_set(j->out, "next", json_object_get(json_array_get(recs, json_array_size(recs) - 1), "client_id"));
  json_decref(recs);
}

static void list_done(gw_req *req, void *ctx) {
  list_job *j = ctx;
  if (!req) {
    /* nothing to answer (admin__pool_read) */
  } else if (j->unreadable) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
  } else if (j->gone) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else if (j->rc || !j->out) {
    gw_respond_error(req, 500, "store_error", "the clients cannot be read: %s",
                     auth_strerror(j->rc ? j->rc : ST_ENOMEM));
  } else {
    gw_respond_json(req, 200, j->out);
    j->out = NULL;
  }
  json_decref(j->out);
  free(j);
}

static void list(gw_req *req, const char *tenant) {
  const char *q = req->query;
  char kind[16] = "", after[AUTH_OAUTH_CLIENT_ID_MAX + 1] = "", lim[16] = "";
  gw_query_get(q, "kind", kind, sizeof kind);
  gw_query_get(q, "after", after, sizeof after);
  long limit = LIST_DEFAULT;
  if (gw_query_get(q, "limit", lim, sizeof lim)) {
    char *end;
    limit = strtol(lim, &end, 10);
    if (*end || limit < 1 || limit > LIST_MAX) {
      gw_respond_error(req, 400, "invalid_request", "\"limit\" must be 1 to %d", LIST_MAX);
      return;
    }
  }
  if (kind[0] && strcmp(kind, AUTH_OAUTH_KIND_DCR) && strcmp(kind, AUTH_OAUTH_KIND_CIMD) &&
      strcmp(kind, AUTH_OAUTH_KIND_PINNED) && strcmp(kind, AUTH_OAUTH_KIND_BLOCKED)) {
    gw_respond_error(req, 400, "invalid_request", "\"kind\" must be dcr, cimd, pinned or blocked");
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  st_txn_end(txn);
  list_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->store = req->lp->srv->store;
  j->limit = (int)limit;
  gw_strlcpy(j->tenant, tenant, sizeof j->tenant);
  gw_strlcpy(j->kind, kind, sizeof j->kind);
  gw_strlcpy(j->after, after, sizeof j->after);
  if (admin__pool_read(req, tenant, GW_HEAVY_LISTS, "admin lists", list_work, list_done, j)) free(j);
}

static void get_one(gw_req *req, const char *tenant, const char *client_id) {
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  json_t *rec = NULL;
  int rc = auth_oauth_client_get(txn, tenant, client_id, &rec);
  st_txn_end(txn);
  if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "no such OAuth client in this tenant");
  else if (rc) gw_respond_error(req, 500, "store_error", "the client cannot be read: %s", auth_strerror(rc));
  else gw_respond_json(req, 200, view(rec));
  json_decref(rec);
}

/* ---- resolve */

static void resolved(gw_req *req, json_t *client, int status, const char *error, const char *why, void *arg) {
  (void)arg;
  if (!client) {
    gw_respond_error(req, status, error ? error : "invalid_client", "%s", why ? why : "unknown client");
    return;
  }
  gw_respond_json(req, 200, json_pack("{s:s,s:o}", "source", why, "client", view(client)));
  json_decref(client);
}

static void resolve(gw_req *req, const char *tenant) {
  char id[AUTH_OAUTH_CLIENT_ID_MAX + 2] = "";
  if (gw_query_get(req->query, "client_id", id, sizeof id) != 1 || !id[0] || strlen(id) > AUTH_OAUTH_CLIENT_ID_MAX) {
    gw_respond_error(req, 400, "invalid_request", "give the client_id to resolve: ?client_id=… (at most 255 characters)");
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  st_txn_end(txn);
  gw_oauth_client_lookup(req, tenant, id, resolved, NULL);
}

/* ---- pin and delete: writer jobs */

typedef struct pin_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  char tenant[64];
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  json_t *clean; /* read-only in the job */
  char now[32];
  int64_t now_s;
  bool del;
  int64_t max;  /* pinned_clients_max: a new pin past it is GW_API_EFULL */
  int64_t block_max; /* del: blocked_clients_max: a new block past it is GW_API_EFULL (block 2), or left
                        out of the delete (block 1: capped) */
  int block;    /* del: 1 block a document URL too (unless pinned), 2 block it whatever it was; -1 lift a
                   block only */
  bool blocked; /* out: a block was written */
  bool capped;  /* out: a delete (block 1) carried out without its block: past block_max */
  bool created; /* out */
  int revoked;  /* out: a delete's grants revoked */
  json_t *out;  /* out: the record written */
} pin_job;

static void pin_free(pin_job *j) {
  json_decref(j->clean);
  json_decref(j->out);
  free(j);
}

static int job_pin(st_txn *txn, void *arg) {
  pin_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_decref(j->out);
  j->out = NULL;
  j->created = false;
  int rc = st_tenant_active(txn, j->tenant);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  if (j->del && j->block < 0) {
    /* lift a block: the record goes, and only a block */
    json_t *have = NULL;
    rc = auth_oauth_client_get(txn, j->tenant, j->client_id, &have);
    bool blocked = rc == 0 && auth_oauth_client_blocked(have);
    json_decref(have);
    if (rc) return rc;
    return blocked ? auth_oauth_client_delete(txn, j->tenant, j->client_id) : ST_ENOTFOUND;
  }
  if (j->del) {
    /* what the client holds goes with it: its grants (their live
     * exchanges end), the consents given to it, its codes — also when its
     * record was swept already (idle) while grants of it live on */
    /* a pinned document is unpinned (fetched again from then on): the
     * admin chose it, and a block is one PUT …/block away */
    json_t *have = NULL;
    rc = auth_oauth_client_get(txn, j->tenant, j->client_id, &have);
    const char *kind = json_string_value(json_object_get(have, "kind"));
    bool unpin = rc == 0 && kind && !strcmp(kind, AUTH_OAUTH_KIND_PINNED);
    bool was_blocked = rc == 0 && auth_oauth_client_blocked(have);
    json_decref(have);
    if (rc && rc != ST_ENOTFOUND && rc != ST_ECORRUPT) return rc;
    j->blocked = j->block > 1 || (j->block == 1 && !unpin);
    /* a new block: within the operator's cap, from the tenant's counts
     * record in this transaction (no scan). Past it a PUT …/block is
     * refused whole; a DELETE is not — the grants it revokes must go — and
     * goes on without leaving the block (reported to the admin) */
    j->capped = false;
    if (j->blocked && !was_blocked) {
      int64_t n = auth_oauth_clients_count(txn, j->tenant, AUTH_OAUTH_KIND_BLOCKED);
      if (n < 0) return (int)n;
      if (n >= j->block_max) {
        if (j->block > 1) return GW_API_EFULL;
        j->blocked = false;
        j->capped = true;
      }
    }
    int removed = 0, n = auth_oauth_client_revoke_all(txn, j->tenant, j->client_id, &removed);
    if (n < 0) return n;
    j->revoked = n;
    rc = auth_oauth_client_delete(txn, j->tenant, j->client_id);
    /* a document URL stays refused: anyone may serve the document again,
     * and the next authorization request would fetch it back — the block
     * record is what the lookup and the code job read (an admin lifts it) */
    if (j->blocked && (rc == 0 || rc == ST_ENOTFOUND)) {
      json_t *none = json_object();
      rc = none ? auth_oauth_client_put(txn, j->tenant, j->client_id, AUTH_OAUTH_KIND_BLOCKED, none, j->now, j->now_s)
                : ST_ENOMEM;
      json_decref(none);
      return rc;
    }
    /* a record swept already: the delete is done if anything of the
     * client went (grants, consents or codes); a 404 would roll it back.
     * Past the cap with nothing to delete, the DELETE was a block only */
    if (rc == ST_ENOTFOUND && removed == 0 && j->capped) return GW_API_EFULL;
    return rc == ST_ENOTFOUND && removed > 0 ? 0 : rc;
  }
  json_t *have = NULL;
  rc = auth_oauth_client_get(txn, j->tenant, j->client_id, &have);
  bool was_pinned = !rc && !strcmp(json_string_value(json_object_get(have, "kind")) ?: "", AUTH_OAUTH_KIND_PINNED);
  bool blocked = rc == 0 && auth_oauth_client_blocked(have);
  json_decref(have);
  if (rc && rc != ST_ENOTFOUND) return rc;
  j->created = rc == ST_ENOTFOUND || blocked; /* a pin over a block lifts it: the client is new */
  /* one more pinned document (a new one, or over a cached, registered or
   * blocked record): within the operator's cap, from the tenant's counts
   * record */
  if (!was_pinned) {
    int64_t n = auth_oauth_clients_count(txn, j->tenant, AUTH_OAUTH_KIND_PINNED);
    if (n < 0) return (int)n;
    if (n >= j->max) return GW_API_EFULL;
  }
  rc = auth_oauth_client_put(txn, j->tenant, j->client_id, AUTH_OAUTH_KIND_PINNED, j->clean, j->now, j->now_s);
  return rc ? rc : auth_oauth_client_get(txn, j->tenant, j->client_id, &j->out);
}

static void done_pin(int status, void *arg) {
  pin_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == GW_API_ENOTENANT) gw_respond_error(req, 404, "not_found", "no such tenant");
  else if (status == GW_API_EFULL && j->del)
    gw_respond_error(req, 409, "too_many_clients",
                     "this tenant has as many blocked client metadata document URLs as the gateway allows one tenant "
                     "(blocked_clients_max: %lld): lift a block (DELETE …/oauth-clients/{client_id}/block) before "
                     "blocking another URL, or ask the operator",
                     (long long)j->block_max);
  else if (status == GW_API_EFULL)
    gw_respond_error(req, 409, "too_many_clients",
                     "this tenant has as many pinned client metadata documents as the gateway allows one tenant "
                     "(pinned_clients_max: %lld): delete one before pinning another, or ask the operator",
                     (long long)j->max);
  else if (!admin__job_error(req, status, "OAuth client")) {
    if (j->del && j->block < 0) {
      GW_LOG(GW_LOG_INFO, "admin", &lc, "OAuth client %s unblocked", j->client_id);
      gw_respond(req, 204, NULL, NULL, 0);
    } else if (j->del && j->capped) {
      GW_LOG(GW_LOG_WARN, "admin", &lc,
             "OAuth client %s deleted but not blocked (blocked_clients_max %lld reached); %d grant(s) of it revoked",
             j->client_id, (long long)j->block_max, j->revoked);
      char w[512];
      snprintf(w, sizeof w,
               "deleted, but not blocked: this tenant has as many blocked client metadata document URLs as the "
               "gateway allows one tenant (blocked_clients_max: %lld), so the document may be fetched again at the "
               "next authorization request; lift a block (DELETE …/oauth-clients/{client_id}/block) and block this "
               "URL (PUT …/block), or ask the operator",
               (long long)j->block_max);
      gw_respond_json(req, 200,
                      json_pack("{s:s,s:b,s:i,s:[s]}", "client_id", j->client_id, "blocked", 0, "revoked", j->revoked,
                                "warnings", w));
    } else if (j->del) {
      GW_LOG(GW_LOG_INFO, "admin", &lc, "OAuth client %s deleted%s; %d grant(s) of it revoked", j->client_id,
             j->blocked ? " and blocked" : "", j->revoked);
      gw_respond(req, 204, NULL, NULL, 0);
    } else {
      GW_LOG(GW_LOG_INFO, "admin", &lc, "client metadata document %s pinned", j->client_id);
      gw_respond_json(req, j->created ? 201 : 200, view(j->out));
    }
  }
  pin_free(j);
}

static void submit(gw_req *req, pin_job *j) {
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  if (gw_loop_submit(req->lp, job_pin, done_pin, j)) {
    pin_free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

static void pin(gw_req *req, const char *tenant) {
  json_t *b = admin__parse_body(req);
  if (!b) return;
  static const char *const keys[] = {"client_id", "document", NULL};
  if (admin__only_keys(req, b, keys)) {
    json_decref(b);
    return;
  }
  const char *id = json_string_value(json_object_get(b, "client_id"));
  json_t *doc = json_object_get(b, "document");
  if (!id || strlen(id) != json_string_length(json_object_get(b, "client_id")) || !auth_oauth_cimd_url_ok(id)) {
    json_decref(b);
    gw_respond_error(req, 400, "invalid_request",
                     "\"client_id\" must be the URL of a client metadata document: https, with a path, without query, "
                     "fragment, user info or dot segments, at most 255 characters");
    return;
  }
  if (!json_is_object(doc)) {
    json_decref(b);
    gw_respond_error(req, 400, "invalid_request", "\"document\" must be the client metadata document (a JSON object)");
    return;
  }
  char err[300];
  json_t *clean = NULL;
  int rc = auth_oauth_client_validate(doc, id, &clean, err, sizeof err);
  if (rc) {
    json_decref(b);
    if (rc == AUTH_EOAUTH_REDIRECT || rc == AUTH_EOAUTH_METADATA)
      gw_respond_error(req, 400, rc == AUTH_EOAUTH_REDIRECT ? "invalid_redirect_uri" : "invalid_client_metadata",
                       "\"document\": %s", err);
    else gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  pin_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(b);
    json_decref(clean);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  gw_strlcpy(j->tenant, tenant, sizeof j->tenant);
  gw_strlcpy(j->client_id, id, sizeof j->client_id);
  json_decref(b);
  j->clean = clean;
  j->max = req->lp->srv->cfg.pinned_clients_max;
  j->now_s = oauth__now();
  oauth__rfc3339(j->now_s, j->now);
  submit(req, j);
}

/* ---- dispatch */

/* The delete job of client_id: block 1 to block a document URL as well
 * (unless it was pinned: then unpinned), 2 to block it whatever it was, -1
 * to lift a block only, 0 neither. */
static void delete_client(gw_req *req, const char *tenant, const char *id, int block) {
  /* its job scans the tenant's grants, consents and codes on the writer
   * every tenant's deactivations share: one such write of the tenant at
   * a time (gateway/core/limits.h, as a policy PUT) */
  int busy = block < 0 ? 0 : gw_limits_write_enter(req, tenant);
  if (busy) {
    gw_respond_error(req, busy, busy == 503 ? "busy" : "change_in_progress",
                     busy == 503 ? "other tenants' large changes are being applied; retry after Retry-After seconds"
                                 : "this tenant's previous large change is still being applied; retry after "
                                   "Retry-After seconds");
    return;
  }
  pin_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  gw_strlcpy(j->tenant, tenant, sizeof j->tenant);
  gw_strlcpy(j->client_id, id, sizeof j->client_id);
  j->del = true;
  j->block = block;
  j->block_max = req->lp->srv->cfg.blocked_clients_max;
  j->now_s = oauth__now();
  oauth__rfc3339(j->now_s, j->now);
  submit(req, j);
}

/* …/oauth-clients/{client_id}/block: PUT blocks a document URL (as its
 * DELETE does, and a pinned one too), DELETE lifts the block. */
static void block(gw_req *req, const char *tenant, const char *id) {
  if (!auth_oauth_cimd_url_ok(id)) {
    gw_respond_error(req, 400, "invalid_request",
                     "only a client metadata document URL can be blocked (a registered client is deleted instead)");
    return;
  }
  if (!strcmp(req->method, "PUT")) delete_client(req, tenant, id, 2);
  else if (!strcmp(req->method, "DELETE")) delete_client(req, tenant, id, -1);
  else {
    gw_resp_header(req, "Allow", "PUT, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
  }
}

void admin__oauth_clients(gw_req *req, const admin_caller *who, const char *tenant, const char *seg, bool block_seg) {
  if (admin__reach(req, who, tenant)) return;
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (!seg) {
    if (get) list(req, tenant);
    else if (!strcmp(req->method, "PUT")) pin(req, tenant);
    else {
      gw_resp_header(req, "Allow", "GET, PUT");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    }
    return;
  }
  if (!strcmp(seg, "resolve")) {
    if (get) resolve(req, tenant);
    else {
      gw_resp_header(req, "Allow", "GET");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    }
    return;
  }
  char id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  if (!admin__seg_decode(seg, id, sizeof id)) {
    gw_respond_error(req, 404, "not_found", "no such OAuth client in this tenant");
    return;
  }
  if (block_seg) {
    block(req, tenant, id);
    return;
  }
  if (get) {
    get_one(req, tenant, id);
  } else if (!strcmp(req->method, "DELETE")) {
    delete_client(req, tenant, id, auth_oauth_cimd_url_ok(id) ? 1 : 0);
  } else {
    gw_resp_header(req, "Allow", "GET, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
  }
}
