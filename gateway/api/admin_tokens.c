/* gateway/api/admin_tokens.c — bearer tokens over the admin API: SCIM
 * (mgs_) and tenant admin (mga_) tokens (/scim-tokens and /admin-tokens),
 * employee tokens (/tokens), the fire-and-forget job that records a token's
 * last use, and the registration of the token consistency check. Records,
 * keys, lookups and the check itself are auth/token_store.h's: this file
 * mints (randomness on the loop), submits and answers. A list reads every
 * token of its kind: on libuv's thread pool (list_work).
 *
 * Every tenant shares one store, so what a tenant's admins mint is capped
 * (operator config): scim_tokens_per_tenant_max and
 * admin_tokens_per_tenant_max per tenant, employee_tokens_per_user_max per
 * person (of every origin; a mint first deletes the person's expired
 * tokens: auth_token_create_max). Counted in the writer
 * job on keys, no further than the cap; one more is 409 too_many_tokens
 * naming the key. Tokens held over a cap lowered since keep working. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"

int admin__write_token(st_txn *txn, admin_job *j, const char *name) {
  auth_token_rec r = {.kind = j->kind, .tenant = j->tenant, .id = j->tokid, .name = name,
                      .created = j->created, .hash = j->hash};
  return auth_token_put(txn, &r);
}

/* A SCIM or admin token minted over the admin API, within the operator's
 * cap of its kind (counted here, in the write: two POSTs at once cannot
 * both pass it; keys only, no further than the cap). */
static int job_token_create(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec;
  int rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (rc == 0) rc = st_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  json_decref(rec);
  int64_t n = 0;
  if ((rc = auth_token_count(txn, j->tenant, j->kind, j->max, &n))) return rc;
  if (n >= j->max) return GW_API_EFULL;
  return admin__write_token(txn, j, j->name[0] ? j->name : j->kind);
}

static bool is_scim(const admin_job *j) { return !strcmp(j->kind, AUTH_KIND_SCIM); }

static void done_token_create(int status, void *arg) {
  admin_job *j = arg;
  if (status == GW_API_EFULL) {
    gw_respond_error(j->req, 409, "too_many_tokens",
                     "this tenant holds as many %s tokens as the gateway allows one tenant (%s: %lld): revoke one "
                     "before minting another, or ask the operator",
                     is_scim(j) ? "SCIM" : "admin", is_scim(j) ? "scim_tokens_per_tenant_max" : "admin_tokens_per_tenant_max",
                     (long long)j->max);
  } else if (!admin__job_error(j->req, status, "tenant")) {
    j->reply(j);
  }
  admin__job_free(j);
}

static int job_token_revoke(st_txn *txn, void *arg) {
  admin_job *j = arg;
  return auth_token_revoke(txn, j->tenant, j->kind, j->tokid);
}

typedef struct touch_job {
  uint8_t hash[32];
  char when[32];
} touch_job;

static int job_token_touch(st_txn *txn, void *arg) {
  touch_job *t = arg;
  return auth_token_touch(txn, t->hash, t->when);
}

static void touch_done(int status, void *arg) { free(arg); }

/* Records last use at most once a minute per token, without waiting. */
void gw_token_touch(gw_loop *lp, const char *token, json_t *rec) {
  char now[32];
  admin__now_rfc3339(now);
  if (!auth_token_touch_due(rec, (int64_t)time(NULL))) return;
  touch_job *t = calloc(1, sizeof *t);
  if (!t) return;
  st_token_hash(token, strlen(token), t->hash);
  memcpy(t->when, now, sizeof now);
  if (gw_loop_submit(lp, job_token_touch, touch_done, t) != 0) free(t);
}

static void reply_token_created(admin_job *j) {
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", j->tokid, "kind", j->kind, "name",
                        j->name[0] ? j->name : j->kind, "created", j->created, "token", j->token);
  if (j->kind[0] == 's') {
    char *base = admin__scim_base_url(j->lp->srv, j->tenant);
    json_object_set_new(o, "base_url", json_string(base ? base : ""));
    free(base);
  }
  gw_respond_json(j->req, 201, o);
}

static void reply_token_revoked(admin_job *j) { gw_respond(j->req, 204, NULL, NULL, 0); }

/* A list of a tenant's tokens of one kind reads every one of them (an
 * employee token per person and device: hundreds of thousands in a large
 * tenant): on libuv's thread pool under a heavy-read slot of the
 * tenant's (admin lists, gateway/core/limits.h), never on the loop every
 * tenant shares. */
typedef struct list_job {
  st_store *store;
  char tenant[64], kind[16];
  bool unreadable, gone; /* out: the store could not be read; no such tenant any more */
  json_t *arr;           /* out */
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
  if (!j->gone) auth_token_list(txn, j->tenant, j->kind, &j->arr);
  st_txn_end(txn);
}

static void list_done(gw_req *req, void *ctx) {
  list_job *j = ctx;
  if (!req) {
    /* nothing to answer (admin__pool_read) */
  } else if (j->unreadable) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
  } else if (j->gone) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else {
    gw_respond_json(req, 200, json_pack("{s:o}", "tokens", j->arr));
    j->arr = NULL;
  }
  json_decref(j->arr);
  free(j);
}

static void tokens_list(gw_req *req, const char *tenant, const char *kind) {
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  st_txn_end(txn);
  list_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->store = req->lp->srv->store;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->kind, sizeof j->kind, "%s", kind);
  if (admin__pool_read(req, tenant, GW_HEAVY_LISTS, "admin lists", list_work, list_done, j)) free(j);
}

void admin__tokens(gw_req *req, const admin_caller *who, const char *tenant, const char *kind,
                   const char *tokid) {
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  /* Tenant admin tokens are minted and revoked by the operator only. */
  if (kind[0] == 'a' && strcmp(req->method, "GET") != 0 && admin__need_operator(req, who)) return;
  if (!tokid) {
    if (!strcmp(req->method, "GET")) {
      tokens_list(req, tenant, kind);
      return;
    }
    if (strcmp(req->method, "POST") != 0) {
      gw_resp_header(req, "Allow", "GET, POST");
      gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      return;
    }
    const char *name = NULL;
    json_t *b = NULL;
    if (req->body_len) {
      if (!(b = admin__parse_body(req))) return;
      static const char *const allowed[] = {"name", NULL};
      if (admin__only_keys(req, b, allowed) || admin__opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
        json_decref(b);
        return;
      }
    }
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
      json_decref(b);
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    snprintf(j->kind, sizeof j->kind, "%s", kind);
    snprintf(j->name, sizeof j->name, "%s", name ? name : "");
    json_decref(b);
    admin__now_rfc3339(j->created);
    if (st_token_new(kind[0] == 's' ? "mgs_" : "mga_", j->token, sizeof j->token) != 0 ||
        st_token_id_new(j->tokid) != 0 || st_token_hash(j->token, strlen(j->token), j->hash) != 0) {
      admin__job_free(j);
      gw_respond_error(req, 500, "internal", "could not generate a token");
      return;
    }
    const gw_config *cfg = &req->lp->srv->cfg;
    j->max = is_scim(j) ? cfg->scim_tokens_per_tenant_max : cfg->admin_tokens_per_tenant_max;
    /* ST_ENOTFOUND of a token create means its tenant is gone */
    j->req = req;
    snprintf(j->actor, sizeof j->actor, "%s", req->actor);
    j->lp = req->lp;
    j->what = "tenant";
    j->reply = reply_token_created;
    if (gw_loop_submit(req->lp, job_token_create, done_token_create, j) != 0) {
      admin__job_free(j);
      gw_resp_header(req, "Retry-After", "1");
      gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
    }
    return;
  }
  if (strcmp(req->method, "DELETE") != 0) {
    gw_resp_header(req, "Allow", "DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  if (strlen(tokid) != ST_TOKEN_ID_LEN) {
    gw_respond_error(req, 404, "not_found", "no such token");
    return;
  }
  admin_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->kind, sizeof j->kind, "%s", kind);
  snprintf(j->tokid, sizeof j->tokid, "%s", tokid);
  admin__submit(req, j, job_token_revoke, kind[0] == 's' ? "SCIM token" : "admin token", reply_token_revoked);
}

typedef struct etok_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  gw_loop *lp;
  auth_token_new t;
  char token[ST_TOKEN_BUFSZ];
  bool revoke;
  int64_t max; /* employee_tokens_per_user_max: a token past it is GW_API_EFULL */
} etok_job;

static int job_etoken(st_txn *txn, void *arg) {
  etok_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->t.tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_t *t;
  int rc = st_tenant_get(txn, j->t.tenant, &t);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  json_decref(t);
  if (j->revoke) {
    /* what was opened with the token (streams, calls in flight) ends
     * after the commit, before the 204: auth_token_revoke emits
     * ST_EVENT_TOKEN_REVOKED (gateway/mcp/revoke.c) */
    return auth_token_revoke(txn, j->t.tenant, AUTH_KIND_EMPLOYEE, j->t.tokid);
  }
  /* within the operator's cap of the person's tokens (counted in the
   * write, keys only, no further than the cap) */
  if ((rc = auth_token_create_max(txn, &j->t, j->max))) return rc == AUTH_EFULL ? GW_API_EFULL : rc;
  return 0;
}

static void done_etoken(int status, void *arg) {
  etok_job *j = arg;
  gw_req *req = j->req;
  if (status == GW_API_ENOTENANT) gw_respond_error(req, 404, "not_found", "no such tenant");
  else if (status == ST_ENOTFOUND)
    gw_respond_error(req, 404, "not_found", j->revoke ? "no such token" : "no such user in this tenant");
  else if (status == GW_API_EFULL)
    gw_respond_error(req, 409, "too_many_tokens",
                     "user %s holds as many access tokens as the gateway allows one person "
                     "(employee_tokens_per_user_max: %lld): revoke one first, or ask the operator",
                     j->t.user_name, (long long)j->max);
  else if (status == AUTH_EINACTIVE)
    gw_respond_error(req, 409, "user_inactive", "user %s is not active (deactivated in the identity provider)",
                     j->t.user_name);
  else if (!admin__job_error(req, status, "token")) {
    if (j->revoke) gw_respond(req, 204, NULL, NULL, 0);
    else {
      json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:s}", "id", j->t.tokid, "token", j->token, "name",
                            j->t.name[0] ? j->t.name : "token", "user", "id", j->t.user_id, "userName",
                            j->t.user_name, "created", j->t.now);
      json_object_set_new(o, "expires", j->t.expires[0] ? json_string(j->t.expires) : json_null());
      /* the one URL the employee pastes (the aggregated endpoint) */
      char url[700];
      snprintf(url, sizeof url, "%s/t/%s/mcp", req->lp->srv->cfg.public_url, j->t.tenant);
      json_object_set_new(o, "mcp_url", json_string(url));
      gw_respond_json(req, 201, o);
    }
  }
  OPENSSL_cleanse(j->token, sizeof j->token);
  free(j);
}

void admin__employee_tokens(gw_req *req, const admin_caller *who, const char *tenant, const char *tokid) {
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!tokid && !strcmp(req->method, "GET")) {
    tokens_list(req, tenant, AUTH_KIND_EMPLOYEE);
    return;
  }
  bool create = !tokid && !strcmp(req->method, "POST");
  bool revoke = tokid && !strcmp(req->method, "DELETE");
  if (!create && !revoke) {
    gw_resp_header(req, "Allow", tokid ? "DELETE" : "GET, POST");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  if (revoke && strlen(tokid) != ST_TOKEN_ID_LEN) { /* never cut to one that exists */
    gw_respond_error(req, 404, "not_found", "no such token");
    return;
  }
  etok_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  j->lp = req->lp;
  j->revoke = revoke;
  j->max = req->lp->srv->cfg.employee_tokens_per_user_max;
  snprintf(j->t.tenant, sizeof j->t.tenant, "%s", tenant);
  if (revoke) {
    snprintf(j->t.tokid, sizeof j->t.tokid, "%s", tokid);
  } else {
    json_t *b = admin__parse_body(req);
    if (!b) {
      free(j);
      return;
    }
    static const char *const allowed[] = {"user", "name", "expires_in_days", NULL};
    const char *user, *name;
    if (admin__only_keys(req, b, allowed) || admin__opt_string(req, b, "user", 256, &user) ||
        admin__opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
      json_decref(b);
      free(j);
      return;
    }
    json_t *days = json_object_get(b, "expires_in_days");
    if (!user || (days && (!json_is_integer(days) || json_integer_value(days) < 1 ||
                           json_integer_value(days) > 3650))) {
      json_decref(b);
      free(j);
      gw_respond_error(req, 400, "invalid_request",
                       !user ? "\"user\" is required (userName or SCIM id)"
                             : "\"expires_in_days\" must be an integer from 1 to 3650");
      return;
    }
    snprintf(j->t.user_ref, sizeof j->t.user_ref, "%s", user);
    snprintf(j->t.name, sizeof j->t.name, "%s", name ? name : "");
    admin__now_rfc3339(j->t.now);
    if (days) {
      time_t e = time(NULL) + (time_t)json_integer_value(days) * 86400;
      struct tm tm;
      gmtime_r(&e, &tm);
      strftime(j->t.expires, sizeof j->t.expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    json_decref(b);
    if (st_token_new(AUTH_TOKEN_PREFIX, j->token, sizeof j->token) != 0 || st_token_id_new(j->t.tokid) != 0 ||
        st_token_hash(j->token, strlen(j->token), j->t.hash) != 0) {
      free(j);
      gw_respond_error(req, 500, "internal", "could not generate a token");
      return;
    }
  }
  if (gw_loop_submit(req->lp, job_etoken, done_etoken, j) != 0) {
    OPENSSL_cleanse(j->token, sizeof j->token);
    free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

/* ---------- consistency check (mcpgate store check) ---------- */
