/* gateway/api/admin.c — the admin REST API (see admin.h for the store layout).
 *
 * Flow of a write: the handler authenticates and validates on the loop
 * (strict JSON, no duplicate keys, unknown keys refused), prepares
 * everything random (tokens, ids, timestamps) so the writer job is a pure
 * function of (store, arg), submits the job, and answers from its done
 * callback once the batch has committed.
 *
 * Tenant deletion: one job marks the tenant "deleting" and deletes every
 * token of it in the same transaction (so nothing of the tenant
 * authenticates after the 202), then bounded purge jobs (PURGE_BATCH keys
 * each) remove the rest until the tenant record itself goes. Purges resume
 * at the next start if the process stops half-way. */
#include "gateway/api/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "gateway/out/egress.h"
#include "gateway/base/log.h"
#include "gateway/out/outbound.h"
#include "auth/auth.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/mcp_session.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "vault/vault.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "store/seal.h"
#include "store/store.h"
#include "store/token.h"

#define PURGE_BATCH 500
#define NAME_MAX_LEN 200
#define TOUCH_INTERVAL_S 60

/* Job results beyond ST_E*: negative errno values. */
#define E_EXISTS (-EEXIST)
#define E_DELETING (-EBUSY)

/* ---------- helpers shared by handlers ---------- */

int gw_tenant_id_valid(const char *id) {
  size_t n = strlen(id);
  if (n < 1 || n > 63) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-')) return 0;
  return 1;
}

static void now_rfc3339(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *load_json(const st_val *v) {
  return json_loadb(v->data, v->len, JSON_REJECT_DUPLICATES, NULL);
}

static int put_json(st_txn *txn, st_db db, const void *k, size_t kl, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, db, k, kl, s, strlen(s), 0);
  free(s);
  return rc;
}

static size_t tenant_key(const char *id, char *k) {
  size_t n = strlen(id);
  k[0] = 't';
  memcpy(k + 1, id, n);
  return n + 1;
}

int gw_tenant_get(st_txn *txn, const char *id, json_t **rec) {
  char k[80];
  st_val v;
  *rec = NULL;
  if (!gw_tenant_id_valid(id)) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TENANTS, k, tenant_key(id, k), &v);
  if (rc) return rc;
  json_t *j = load_json(&v);
  if (!j) return ST_ECORRUPT;
  if (strcmp(json_string_value(json_object_get(j, "state")) ?: "", "active") != 0) {
    json_decref(j);
    return ST_ENOTFOUND;
  }
  *rec = j;
  return 0;
}

static size_t hash_key(const uint8_t hash[32], char *k) {
  k[0] = 'h';
  memcpy(k + 1, hash, 32);
  return 33;
}

/* "i" tenant \0 kind \0 [tokid] */
static size_t index_key(const char *tenant, const char *kind, const char *tokid, char *k) {
  size_t n = 0;
  k[n++] = 'i';
  memcpy(k + n, tenant, strlen(tenant) + 1);
  n += strlen(tenant) + 1;
  memcpy(k + n, kind, strlen(kind) + 1);
  n += strlen(kind) + 1;
  if (tokid) {
    memcpy(k + n, tokid, strlen(tokid));
    n += strlen(tokid);
  }
  return n;
}

int gw_token_lookup(st_txn *txn, const char *token, const char *kind, const char *tenant,
                    json_t **rec) {
  uint8_t h[32];
  char k[40];
  st_val v;
  *rec = NULL;
  size_t tl = strlen(token);
  if (tl < 16 || tl > 512) return ST_ENOTFOUND;
  if (st_token_hash(token, tl, h) != 0) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TOKENS, k, hash_key(h, k), &v);
  if (rc) return rc;
  json_t *j = load_json(&v);
  if (!j) return ST_ECORRUPT;
  const char *jk = json_string_value(json_object_get(j, "kind"));
  const char *jt = json_string_value(json_object_get(j, "tenant"));
  json_t *tr = NULL;
  if (!jk || !jt || strcmp(jk, kind) != 0 || (tenant && strcmp(jt, tenant) != 0) ||
      gw_tenant_get(txn, jt, &tr) != 0) {
    json_decref(j);
    return ST_ENOTFOUND;
  }
  json_decref(tr);
  *rec = j;
  return 0;
}

/* ---------- request helpers ---------- */

typedef struct caller {
  bool op;            /* operator token */
  char tenant[64];    /* tenant of a tenant admin token */
  char token_id[17];
} caller;

static void unauthorized(gw_req *req, const char *msg) {
  gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-admin\"");
  gw_respond_error(req, 401, "unauthorized", "%s", msg);
}

/* Returns 0 with *who filled, or responds 401/500 and returns -1. */
static int authenticate(gw_req *req, caller *who) {
  gw_server *srv = req->lp->srv;
  memset(who, 0, sizeof *who);
  const char *auth = gw_req_header(req, "authorization");
  if (!auth || !*auth) {
    unauthorized(req, "missing Authorization: Bearer <admin token>");
    return -1;
  }
  if (strncasecmp(auth, "Bearer ", 7) != 0) {
    unauthorized(req, "the admin API takes a Bearer token");
    return -1;
  }
  const char *tok = auth + 7;
  while (*tok == ' ') tok++;
  size_t tl = strlen(tok);
  uint8_t h[32];
  if (tl >= 16 && tl <= 512 && st_token_hash(tok, tl, h) == 0 && srv->have_admin_token &&
      st_ct_equal(h, srv->admin_token_hash, 32)) {
    who->op = true;
    return 0;
  }
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  json_t *rec = NULL;
  int rc = gw_token_lookup(txn, tok, "admin", NULL, &rec);
  st_txn_end(txn);
  if (rc != 0) {
    unauthorized(req, "invalid admin token");
    return -1;
  }
  snprintf(who->tenant, sizeof who->tenant, "%s", json_string_value(json_object_get(rec, "tenant")));
  snprintf(who->token_id, sizeof who->token_id, "%s", json_string_value(json_object_get(rec, "id")) ?: "");
  json_decref(rec);
  return 0;
}

/* Tenant reach: the operator reaches every tenant; a tenant token only its
 * own. The answer is the same whether the other tenant exists or not. */
static int reach(gw_req *req, const caller *who, const char *tenant) {
  if (who->op || strcmp(who->tenant, tenant) == 0) return 0;
  gw_respond_error(req, 403, "forbidden", "this admin token is scoped to another tenant");
  return -1;
}

static int need_operator(gw_req *req, const caller *who) {
  if (who->op) return 0;
  gw_respond_error(req, 403, "forbidden", "this action needs the operator token");
  return -1;
}

/* Strict JSON object body. Responds and returns NULL on any problem. */
static json_t *parse_body(gw_req *req) {
  const char *ct = gw_req_header(req, "content-type");
  if (!ct || (strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';' && ct[16] != ' '))) {
    gw_respond_error(req, 415, "unsupported_media_type", "send the body as application/json");
    return NULL;
  }
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
  if (!j) {
    gw_respond_error(req, 400, "invalid_json", "invalid JSON at line %d column %d: %s", e.line,
                     e.column, e.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    gw_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
    return NULL;
  }
  return j;
}

/* Refuses keys outside `allowed` (NULL-terminated), naming them all. */
static int only_keys(gw_req *req, json_t *j, const char *const *allowed) {
  char bad[512] = "";
  const char *key;
  json_t *v;
  json_object_foreach(j, key, v) {
    int ok = 0;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, key) == 0) ok = 1;
    if (!ok) {
      size_t l = strlen(bad);
      snprintf(bad + l, sizeof bad - l, "%s\"%.60s\"", l ? ", " : "", key);
    }
  }
  if (!*bad) return 0;
  gw_respond_error(req, 400, "invalid_request", "unknown field(s): %s", bad);
  return -1;
}

/* Optional string field with length bounds. Returns 0 (absent: *out NULL). */
static int opt_string(gw_req *req, json_t *j, const char *key, size_t maxlen, const char **out) {
  json_t *v = json_object_get(j, key);
  *out = NULL;
  if (!v) return 0;
  if (!json_is_string(v)) {
    gw_respond_error(req, 400, "invalid_request", "\"%s\" must be a string", key);
    return -1;
  }
  size_t n = json_string_length(v);
  const unsigned char *sv = (const unsigned char *)json_string_value(v);
  bool ctl = false;
  for (size_t i = 0; i < n; i++)
    if (sv[i] < 0x20 || sv[i] == 0x7f) ctl = true;
  if (n < 1 || n > maxlen || ctl) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"%s\" must be 1 to %zu characters, without control characters", key, maxlen);
    return -1;
  }
  *out = json_string_value(v);
  return 0;
}

/* Opens a read transaction for an existing, active tenant; otherwise
 * answers 503 (store unreadable) or 404 and returns -1. */
static int read_tenant(gw_req *req, const char *tenant, st_txn **txn) {
  if (st_read_begin(req->lp->srv->store, txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  json_t *t;
  if (gw_tenant_get(*txn, tenant, &t) != 0) {
    st_txn_end(*txn);
    gw_respond_error(req, 404, "not_found", "no such tenant");
    return -1;
  }
  json_decref(t);
  return 0;
}

static char *scim_base_url(gw_server *srv, const char *tenant) {
  size_t n = strlen(srv->cfg.public_url) + strlen(tenant) + 32;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/t/%s/scim/v2", srv->cfg.public_url, tenant);
  return s;
}

/* ---------- jobs ---------- */

typedef struct admin_job {
  gw_req *req;
  gw_loop *lp;
  int op;
  char tenant[64];
  char name[NAME_MAX_LEN + 1];
  char created[32];
  char kind[8];
  char tokid[ST_TOKEN_ID_BUFSZ];
  char uid[ST_TOKEN_ID_BUFSZ]; /* tenant create: the new incarnation's uid */
  uint8_t hash[32];
  char token[ST_TOKEN_BUFSZ]; /* shown once in the reply, wiped after */
  int more;                   /* purge: keys remain */
} admin_job;

static int write_token(st_txn *txn, admin_job *j, const char *name) {
  char hk[40], ik[200];
  json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", j->tokid, "kind", j->kind, "tenant",
                          j->tenant, "name", name, "created", j->created);
  if (!rec) return ST_ENOMEM;
  int rc = put_json(txn, ST_DB_TOKENS, hk, hash_key(j->hash, hk), rec);
  json_decref(rec);
  if (rc) return rc;
  return st_put(txn, ST_DB_TOKENS, ik, index_key(j->tenant, j->kind, j->tokid, ik), j->hash, 32, 0);
}

static int job_tenant_create(st_txn *txn, void *arg) {
  admin_job *j = arg;
  char k[80];
  st_val v;
  size_t kl = tenant_key(j->tenant, k);
  int rc = st_get(txn, ST_DB_TENANTS, k, kl, &v);
  if (rc == 0) {
    json_t *old = load_json(&v);
    const char *state = old ? json_string_value(json_object_get(old, "state")) : NULL;
    rc = state && strcmp(state, "deleting") == 0 ? E_DELETING : E_EXISTS;
    json_decref(old);
    return rc;
  }
  if (rc != ST_ENOTFOUND) return rc;
  json_t *rec = json_pack("{s:s,s:s,s:s,s:s}", "id", j->tenant, "name", j->name, "created",
                          j->created, "state", "active");
  if (!rec) return ST_ENOMEM;
  rc = put_json(txn, ST_DB_TENANTS, k, kl, rec);
  json_decref(rec);
  if (rc) return rc;
  if ((rc = st_tenant_uid_put(txn, j->tenant, j->uid)) != 0) return rc;
  return write_token(txn, j, "initial");
}

static int job_tenant_rename(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec;
  int rc = gw_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  json_object_set_new(rec, "name", json_string(j->name));
  char k[80];
  rc = put_json(txn, ST_DB_TENANTS, k, tenant_key(j->tenant, k), rec);
  json_decref(rec);
  return rc;
}

/* Deletes every token of a tenant (both kinds), at most `limit` (0: all).
 * Returns the number deleted or a negative error. */
static int delete_tokens(st_txn *txn, const char *tenant, int limit) {
  char pk[80];
  size_t pl = 0;
  pk[pl++] = 'i';
  memcpy(pk + pl, tenant, strlen(tenant) + 1);
  pl += strlen(tenant) + 1;
  int n = 0, rc;
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_TOKENS, &c)) != 0) return rc;
    st_cursor_seek(c, pk, pl, NULL, 0);
    st_val k, v;
    rc = st_cursor_next(c, &k, &v);
    if (rc != 0) {
      st_cursor_close(c);
      return rc == ST_ENOTFOUND ? n : rc;
    }
    char ik[200], hk[40];
    size_t ikl = k.len < sizeof ik ? k.len : sizeof ik;
    memcpy(ik, k.data, ikl);
    int have_hash = v.len == 32;
    if (have_hash) hash_key(v.data, hk);
    st_cursor_close(c);
    if (have_hash && (rc = st_del(txn, ST_DB_TOKENS, hk, 33)) != 0 && rc != ST_ENOTFOUND) return rc;
    if ((rc = st_del(txn, ST_DB_TOKENS, ik, ikl)) != 0) return rc;
    n++;
    if (limit && n >= limit) return n;
  }
}

static int job_tenant_delete(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec;
  int rc = gw_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  json_object_set_new(rec, "state", json_string("deleting"));
  char k[80];
  rc = put_json(txn, ST_DB_TENANTS, k, tenant_key(j->tenant, k), rec);
  json_decref(rec);
  if (rc) return rc;
  rc = delete_tokens(txn, j->tenant, 0);
  if (rc < 0) return rc;
  /* live streams and in-flight calls of the tenant end before the 202 */
  return gw_proxy_revoke_tenant_after_commit(txn, j->lp->srv, j->tenant);
}

/* One bounded purge step: tokens, then secrets, then the record itself. */
static int job_tenant_purge(st_txn *txn, void *arg) {
  admin_job *j = arg;
  j->more = 0;
  int n = delete_tokens(txn, j->tenant, PURGE_BATCH);
  if (n < 0) return n;
  uint8_t pk[128];
  int pl = st_secret_tenant_prefix(j->tenant, pk, sizeof pk);
  if (pl < 0) return pl;
  int rc;
  while (n < PURGE_BATCH) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_SECRETS, &c)) != 0) return rc;
    st_cursor_seek(c, pk, (size_t)pl, NULL, 0);
    st_val k;
    rc = st_cursor_next(c, &k, NULL);
    char kb[600];
    size_t kl = k.len < sizeof kb ? k.len : sizeof kb;
    if (rc == 0) memcpy(kb, k.data, kl);
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) break;
    if (rc) return rc;
    if ((rc = st_del(txn, ST_DB_SECRETS, kb, kl)) != 0) return rc;
    n++;
  }
  int (*const purgers[])(st_txn *, const char *, int) = {scim_purge_tenant, vault_purge_tenant,
                                                        auth_purge_tenant, gw_sessions_purge_tenant,
                                                        pol_purge_tenant};
  for (size_t i = 0; i < sizeof purgers / sizeof purgers[0] && n < PURGE_BATCH; i++) {
    int m = purgers[i](txn, j->tenant, PURGE_BATCH - n);
    if (m < 0) return m;
    n += m;
  }
  if (n >= PURGE_BATCH) {
    j->more = 1;
    return 0;
  }
  char k[80];
  rc = st_del(txn, ST_DB_TENANTS, k, tenant_key(j->tenant, k));
  if (rc && rc != ST_ENOTFOUND) return rc;
  return st_tenant_uid_del(txn, j->tenant);
}

static int job_token_create(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec;
  int rc = gw_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  json_decref(rec);
  return write_token(txn, j, j->name[0] ? j->name : j->kind);
}

static int job_token_revoke(st_txn *txn, void *arg) {
  admin_job *j = arg;
  char ik[200], hk[40];
  size_t ikl = index_key(j->tenant, j->kind, j->tokid, ik);
  st_val v;
  int rc = st_get(txn, ST_DB_TOKENS, ik, ikl, &v);
  if (rc) return rc;
  if (v.len == 32) {
    hash_key(v.data, hk);
    if ((rc = st_del(txn, ST_DB_TOKENS, hk, 33)) != 0 && rc != ST_ENOTFOUND) return rc;
  }
  return st_del(txn, ST_DB_TOKENS, ik, ikl);
}

typedef struct touch_job {
  uint8_t hash[32];
  char when[32];
} touch_job;

static int job_token_touch(st_txn *txn, void *arg) {
  touch_job *t = arg;
  char hk[40];
  st_val v;
  size_t kl = hash_key(t->hash, hk);
  int rc = st_get(txn, ST_DB_TOKENS, hk, kl, &v);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *rec = load_json(&v);
  if (!rec) return 0;
  json_object_set_new(rec, "last_used", json_string(t->when));
  rc = put_json(txn, ST_DB_TOKENS, hk, kl, rec);
  json_decref(rec);
  return rc;
}

static void touch_done(int status, void *arg) { free(arg); }

/* Records last use at most once a minute per token, without waiting. */
void gw_token_touch(gw_loop *lp, const char *token, json_t *rec) {
  const char *last = json_string_value(json_object_get(rec, "last_used"));
  char now[32];
  now_rfc3339(now);
  if (last) {
    struct tm tm = {0};
    if (strptime(last, "%Y-%m-%dT%H:%M:%SZ", &tm) && time(NULL) - timegm(&tm) < TOUCH_INTERVAL_S)
      return;
  }
  touch_job *t = calloc(1, sizeof *t);
  if (!t) return;
  st_token_hash(token, strlen(token), t->hash);
  memcpy(t->when, now, sizeof now);
  if (st_submit(lp->srv->store, lp->port, job_token_touch, touch_done, t) != 0) free(t);
}

/* ---------- responses from jobs ---------- */

static void job_free(admin_job *j) {
  OPENSSL_cleanse(j->token, sizeof j->token);
  free(j);
}

static int job_error(gw_req *req, int status, const char *what) {
  switch (status) {
  case ST_ENOTFOUND: gw_respond_error(req, 404, "not_found", "no such %s", what); return 1;
  case E_EXISTS: gw_respond_error(req, 409, "conflict", "%s already exists", what); return 1;
  case E_DELETING:
    gw_respond_error(req, 409, "conflict", "%s is being deleted; try again shortly", what);
    return 1;
  case ST_EMAPFULL:
    gw_respond_error(req, 507, "store_full", "the store is full (raise store_map_size); nothing was written");
    return 1;
  default:
    if (status < 0) {
      GW_LOG(GW_LOG_ERROR, "admin", NULL, "write failed: %s", st_strerror(status));
      gw_respond_error(req, 500, "store_error", "the write failed: %s", st_strerror(status));
      return 1;
    }
    return 0;
  }
}

static void start_purge(gw_loop *lp, const char *tenant);

static void done_generic(int status, void *arg) {
  admin_job *j = arg;
  gw_req *req = j->req;
  gw_server *srv = j->lp->srv;
  gw_log_ctx lctx = {j->tenant, req->id};
  /* ST_ENOTFOUND of a token create means its tenant is gone */
  const char *what = j->op != 5 ? "tenant" : j->kind[0] == 's' ? "SCIM token" : "admin token";
  if (job_error(req, status, what)) goto out;
  switch (j->op) {
  case 0: { /* tenant create */
    char *base = scim_base_url(srv, j->tenant);
    json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s}}", "id", j->tenant, "name", j->name,
                          "created", j->created, "scim", "base_url", base ? base : "", "token",
                          j->token, "token_id", j->tokid);
    free(base);
    GW_LOG(GW_LOG_INFO, "admin", &lctx, "tenant created");
    gw_respond_json(req, 201, o);
    break;
  }
  case 2: { /* rename */
    json_t *o = json_pack("{s:s,s:s}", "id", j->tenant, "name", j->name);
    gw_respond_json(req, 200, o);
    break;
  }
  case 3: /* delete */
    GW_LOG(GW_LOG_INFO, "admin", &lctx,
           "tenant marked deleted; purging its data");
    gw_respond_json(req, 202, json_pack("{s:s,s:s}", "id", j->tenant, "state", "deleting"));
    start_purge(j->lp, j->tenant);
    break;
  case 4: { /* token create */
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", j->tokid, "kind", j->kind, "name",
                          j->name[0] ? j->name : j->kind, "created", j->created, "token", j->token);
    if (j->kind[0] == 's') {
      char *base = scim_base_url(srv, j->tenant);
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
  job_free(j);
}

static void submit(gw_req *req, admin_job *j, st_job_fn fn) {
  j->req = req;
  j->lp = req->lp;
  int rc = st_submit(req->lp->srv->store, req->lp->port, fn, done_generic, j);
  if (rc != 0) {
    job_free(j);
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
           st_strerror(status));
  } else if (j->more && !j->lp->draining) {
    if (st_submit(j->lp->srv->store, j->lp->port, job_tenant_purge, purge_done, j) == 0) return;
  } else if (!j->more) {
    GW_LOG(GW_LOG_INFO, "admin", &lctx, "tenant purged");
  }
  job_free(j);
}

static void start_purge(gw_loop *lp, const char *tenant) {
  admin_job *j = calloc(1, sizeof *j);
  if (!j) return;
  j->lp = lp;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  if (st_submit(lp->srv->store, lp->port, job_tenant_purge, purge_done, j) != 0) job_free(j);
}

int gw_admin_loop_start(gw_loop *lp) {
  /* Resume purges of tenants a previous run left half-deleted. */
  st_txn *txn;
  if (st_read_begin(lp->srv->store, &txn) != 0) return -1;
  st_cursor *c;
  char ids[64][64];
  int n = 0;
  if (st_cursor_open(txn, ST_DB_TENANTS, &c) == 0) {
    st_cursor_seek(c, "t", 1, NULL, 0);
    st_val k, v;
    while (n < 64 && st_cursor_next(c, &k, &v) == 0) {
      json_t *r = load_json(&v);
      const char *st = r ? json_string_value(json_object_get(r, "state")) : NULL;
      if (st && strcmp(st, "deleting") == 0 && k.len - 1 < sizeof ids[0]) {
        memcpy(ids[n], (const char *)k.data + 1, k.len - 1);
        ids[n][k.len - 1] = 0;
        n++;
      }
      json_decref(r);
    }
    st_cursor_close(c);
  }
  st_txn_end(txn);
  for (int i = 0; i < n; i++) start_purge(lp, ids[i]);
  return 0;
}

void gw_admin_loop_stop(gw_loop *lp) { (void)lp; }

/* ---------- handlers ---------- */

static json_t *tenant_view(gw_server *srv, json_t *rec) {
  const char *id = json_string_value(json_object_get(rec, "id"));
  char *base = scim_base_url(srv, id ? id : "");
  json_t *o = json_pack("{s:O,s:O,s:O,s:{s:s}}", "id", json_object_get(rec, "id"), "name",
                        json_object_get(rec, "name"), "created", json_object_get(rec, "created"),
                        "scim", "base_url", base ? base : "");
  free(base);
  return o;
}

static void tenants_list(gw_req *req, const caller *who) {
  gw_server *srv = req->lp->srv;
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return;
  }
  json_t *arr = json_array();
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_TENANTS, &c) == 0) {
    st_cursor_seek(c, "t", 1, NULL, 0);
    st_val k, v;
    while (st_cursor_next(c, &k, &v) == 0) {
      json_t *r = load_json(&v);
      if (!r) continue;
      const char *st = json_string_value(json_object_get(r, "state"));
      const char *id = json_string_value(json_object_get(r, "id"));
      if (st && strcmp(st, "active") == 0 && id && (who->op || strcmp(id, who->tenant) == 0))
        json_array_append_new(arr, tenant_view(srv, r));
      json_decref(r);
    }
    st_cursor_close(c);
  }
  st_txn_end(txn);
  gw_respond_json(req, 200, json_pack("{s:o}", "tenants", arr));
}

static void tenants_create(gw_req *req, const caller *who) {
  if (need_operator(req, who)) return;
  json_t *b = parse_body(req);
  if (!b) return;
  static const char *const allowed[] = {"id", "name", NULL};
  const char *id, *name;
  if (only_keys(req, b, allowed) || opt_string(req, b, "id", 63, &id) ||
      opt_string(req, b, "name", NAME_MAX_LEN, &name))
    goto out;
  if (!id) {
    gw_respond_error(req, 400, "invalid_request", "\"id\" is required ([a-z0-9-]{1,63})");
    goto out;
  }
  if (!gw_tenant_id_valid(id)) {
    gw_respond_error(req, 400, "invalid_request",
                     "invalid tenant id \"%.64s\": use 1 to 63 of a-z, 0-9 and -", id);
    goto out;
  }
  admin_job *j = calloc(1, sizeof *j);
  if (!j) goto oom;
  j->op = 0;
  snprintf(j->tenant, sizeof j->tenant, "%s", id);
  snprintf(j->name, sizeof j->name, "%s", name ? name : id);
  snprintf(j->kind, sizeof j->kind, "scim");
  now_rfc3339(j->created);
  if (st_token_new("mgs_", j->token, sizeof j->token) != 0 || st_token_id_new(j->tokid) != 0 ||
      st_token_id_new(j->uid) != 0 || st_token_hash(j->token, strlen(j->token), j->hash) != 0) {
    job_free(j);
    goto oom;
  }
  snprintf(req->tenant, sizeof req->tenant, "%s", id);
  submit(req, j, job_tenant_create);
  json_decref(b);
  return;
oom:
  gw_respond_error(req, 500, "internal", "could not prepare the tenant");
out:
  json_decref(b);
}

static void tenant_one(gw_req *req, const caller *who, const char *id) {
  gw_server *srv = req->lp->srv;
  if (reach(req, who, id)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", id);
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (st_read_begin(srv->store, &txn) != 0) {
      gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
      return;
    }
    json_t *rec;
    int rc = gw_tenant_get(txn, id, &rec);
    st_txn_end(txn);
    if (rc) {
      gw_respond_error(req, 404, "not_found", "no such tenant");
      return;
    }
    gw_respond_json(req, 200, tenant_view(srv, rec));
    json_decref(rec);
    return;
  }
  if (!strcmp(req->method, "PATCH")) {
    json_t *b = parse_body(req);
    if (!b) return;
    static const char *const allowed[] = {"name", NULL};
    const char *name;
    if (only_keys(req, b, allowed) || opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
      json_decref(b);
      return;
    }
    if (!name) {
      json_decref(b);
      gw_respond_error(req, 400, "invalid_request", "nothing to change: send {\"name\": \"…\"}");
      return;
    }
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
      json_decref(b);
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    j->op = 2;
    snprintf(j->tenant, sizeof j->tenant, "%s", id);
    snprintf(j->name, sizeof j->name, "%s", name);
    json_decref(b);
    submit(req, j, job_tenant_rename);
    return;
  }
  if (!strcmp(req->method, "DELETE")) {
    if (need_operator(req, who)) return;
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    j->op = 3;
    snprintf(j->tenant, sizeof j->tenant, "%s", id);
    submit(req, j, job_tenant_delete);
    return;
  }
  gw_resp_header(req, "Allow", "GET, PATCH, DELETE");
  gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
}

static void tokens_list(gw_req *req, const char *tenant, const char *kind) {
  st_txn *txn;
  if (read_tenant(req, tenant, &txn) != 0) return;
  json_t *arr = json_array();
  char pk[200];
  size_t pl = index_key(tenant, kind, NULL, pk);
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_TOKENS, &c) == 0) {
    st_cursor_seek(c, pk, pl, NULL, 0);
    st_val k, v;
    while (st_cursor_next(c, &k, &v) == 0) {
      if (v.len != 32) continue;
      char hk[40];
      st_val rv;
      if (st_get(txn, ST_DB_TOKENS, hk, hash_key(v.data, hk), &rv) != 0) continue;
      json_t *r = load_json(&rv);
      if (!r) continue;
      json_t *o = json_pack("{s:O,s:O,s:O}", "id", json_object_get(r, "id"), "name",
                            json_object_get(r, "name"), "created", json_object_get(r, "created"));
      json_t *lu = json_object_get(r, "last_used");
      json_object_set(o, "last_used", lu ? lu : json_null());
      json_array_append_new(arr, o);
      json_decref(r);
    }
    st_cursor_close(c);
  }
  st_txn_end(txn);
  gw_respond_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

static void tokens(gw_req *req, const caller *who, const char *tenant, const char *kind,
                   const char *tokid) {
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  /* Tenant admin tokens are minted and revoked by the operator only. */
  if (kind[0] == 'a' && strcmp(req->method, "GET") != 0 && need_operator(req, who)) return;
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
      if (!(b = parse_body(req))) return;
      static const char *const allowed[] = {"name", NULL};
      if (only_keys(req, b, allowed) || opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
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
    j->op = 4;
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    snprintf(j->kind, sizeof j->kind, "%s", kind);
    snprintf(j->name, sizeof j->name, "%s", name ? name : "");
    json_decref(b);
    now_rfc3339(j->created);
    if (st_token_new(kind[0] == 's' ? "mgs_" : "mga_", j->token, sizeof j->token) != 0 ||
        st_token_id_new(j->tokid) != 0 || st_token_hash(j->token, strlen(j->token), j->hash) != 0) {
      job_free(j);
      gw_respond_error(req, 500, "internal", "could not generate a token");
      return;
    }
    submit(req, j, job_token_create);
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
  j->op = 5;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->kind, sizeof j->kind, "%s", kind);
  snprintf(j->tokid, sizeof j->tokid, "%s", tokid);
  submit(req, j, job_token_revoke);
}

/* GET /admin/v1/tenants/{t}/users[/{id}] and /groups[/{id}]: what SCIM
 * provisioned, as SCIM renders it (users with their groups; lists paged
 * with startIndex/count and filtered with a SCIM filter). */
static void directory_view(gw_req *req, const caller *who, const char *tenant, const char *what,
                           const char *id) {
  gw_server *srv = req->lp->srv;
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  st_txn *txn;
  if (read_tenant(req, tenant, &txn) != 0) return;
  char path[128], *base = scim_base_url(srv, tenant);
  snprintf(path, sizeof path, "/%s%s%.64s", what[0] == 'u' ? "Users" : "Groups", id ? "/" : "", id ? id : "");
  scim_req rq = {0};
  rq.tenant = tenant;
  rq.method = "GET";
  rq.path = path;
  rq.query = req->query;
  rq.base_url = base ? base : "";
  rq.max_count = (size_t)srv->cfg.scim_max_count;
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  st_txn_end(txn);
  free(base);
  if (rs.status >= 400) {
    const char *detail = json_string_value(json_object_get(rs.body, "detail"));
    const char *type = json_string_value(json_object_get(rs.body, "scimType"));
    gw_respond_error(req, rs.status, rs.status == 404 ? "not_found" : type ? type : "invalid_request", "%s",
                     detail ? detail : "request failed");
  } else {
    gw_respond_json(req, rs.status, json_incref(rs.body));
  }
  scim_resp_clear(&rs);
}

/* ---------- connectors and employee tokens (async jobs with own done) ---------- */

typedef struct conn_job {
  gw_req *req;
  gw_loop *lp;
  char tenant[64], name[40];
  json_t *config;      /* from vault_connector_parse; read-only in the job */
  char *secret;        /* wiped and freed */
  char now[32];
  int created;         /* out */
  bool moved;          /* out: a PUT changed the URL */
  bool del;
} conn_job;

static void conn_job_free(conn_job *j) {
  json_decref(j->config);
  if (j->secret) {
    OPENSSL_cleanse(j->secret, strlen(j->secret));
    free(j->secret);
  }
  free(j);
}

/* The connector's upstream sessions end with it (DELETE) or with its old
 * server (a PUT to a new URL): an upstream session id must never reach
 * another server. Its sessions on the single-connector endpoint go (the
 * client gets 404 and starts over), aggregated sessions forget their
 * upstream id for it, and live exchanges end after the commit. */
static int end_connector_sessions(st_txn *txn, conn_job *j) {
  int rc = gw_sessions_delete_connector(txn, j->tenant, j->name);
  if (rc >= 0) rc = gw_sessions_drop_upstream_connector(txn, j->tenant, j->name);
  if (rc < 0) return rc;
  return gw_proxy_revoke_connector_after_commit(txn, j->lp->srv, j->tenant, j->name);
}

static int job_connector(st_txn *txn, void *arg) {
  conn_job *j = arg;
  json_t *t;
  j->moved = false;
  int rc = gw_tenant_get(txn, j->tenant, &t);
  if (rc) return rc;
  json_decref(t);
  if (j->del) {
    if ((rc = vault_connector_delete(txn, j->tenant, j->name))) return rc;
    return end_connector_sessions(txn, j);
  }
  json_t *old = NULL;
  rc = vault_connector_get(txn, j->tenant, j->name, &old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  j->moved = old && strcmp(json_string_value(json_object_get(old, "url")) ?: "",
                           json_string_value(json_object_get(j->config, "url")) ?: "") != 0;
  json_decref(old);
  if ((rc = vault_connector_put(txn, j->tenant, j->name, j->config, j->secret, j->now, &j->created))) return rc;
  return j->moved ? end_connector_sessions(txn, j) : 0;
}

static void done_connector(int status, void *arg) {
  conn_job *j = arg;
  gw_req *req = j->req;
  if (status == ST_ENOTFOUND) {
    gw_respond_error(req, 404, "not_found", j->del ? "no such connector" : "no such tenant");
  } else if (!job_error(req, status, "connector")) {
    if (j->del) {
      GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, req->id}), "connector %s deleted", j->name);
      gw_respond(req, 204, NULL, NULL, 0);
    } else {
      st_txn *txn;
      json_t *rec = NULL;
      if (st_read_begin(j->lp->srv->store, &txn) == 0) {
        vault_connector_get(txn, j->tenant, j->name, &rec);
        st_txn_end(txn);
      }
      if (j->moved)
        GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){j->tenant, req->id}),
               "connector %s has a new URL: its upstream sessions and live exchanges ended", j->name);
      if (!rec) gw_respond_error(req, 500, "internal", "the connector was written but cannot be read back");
      else {
        gw_respond_json(req, j->created ? 201 : 200, vault_connector_view(rec));
        json_decref(rec);
        gw_agg_probe_connector(j->lp, j->tenant, j->name); /* learn its capabilities */
      }
    }
  }
  conn_job_free(j);
}

static void connectors(gw_req *req, const caller *who, const char *tenant, const char *name) {
  gw_server *srv = req->lp->srv;
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (name && !vault_connector_name_valid(name)) {
    gw_respond_error(req, 400, "invalid_request",
                     "invalid connector name \"%.40s\": use 1 to 32 of a-z, 0-9 and - (no '_')", name);
    return;
  }
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (read_tenant(req, tenant, &txn) != 0) return;
    if (!name) {
      json_t *arr;
      vault_connector_list(txn, tenant, &arr);
      st_txn_end(txn);
      gw_respond_json(req, 200, json_pack("{s:o}", "connectors", arr));
      return;
    }
    json_t *rec;
    int rc = vault_connector_get(txn, tenant, name, &rec);
    st_txn_end(txn);
    if (rc) {
      gw_respond_error(req, 404, "not_found", "no such connector");
      return;
    }
    gw_respond_json(req, 200, vault_connector_view(rec));
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
  j->lp = req->lp;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  snprintf(j->name, sizeof j->name, "%s", name);
  now_rfc3339(j->now);
  if (!strcmp(req->method, "DELETE")) {
    j->del = true;
  } else {
    json_t *b = parse_body(req);
    if (!b) {
      conn_job_free(j);
      return;
    }
    char err[1024];
    const char *secret;
    if (vault_connector_parse(b, &j->config, &secret, err, sizeof err) != 0) {
      json_decref(b);
      conn_job_free(j);
      gw_respond_error(req, 400, "invalid_request", "%s", err);
      return;
    }
    /* a literal address the egress policy refuses is refused now, naming
     * the operator's key; host names are judged at connect time */
    if (gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], json_string_value(json_object_get(j->config, "url")),
                            err, sizeof err) != 0) {
      json_decref(b);
      conn_job_free(j);
      gw_respond_error(req, 400, "egress_refused", "\"url\": %s", err);
      return;
    }
    j->secret = secret ? strdup(secret) : NULL;
    /* the request body holds the secret too: wipe it now it is copied */
    OPENSSL_cleanse(req->body, req->body_len);
    json_decref(b);
  }
  int rc = st_submit(srv->store, req->lp->port, job_connector, done_connector, j);
  if (rc) {
    conn_job_free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

typedef struct etok_job {
  gw_req *req;
  gw_loop *lp;
  auth_token_new t;
  char token[ST_TOKEN_BUFSZ];
  bool revoke;
} etok_job;

static int job_etoken(st_txn *txn, void *arg) {
  etok_job *j = arg;
  json_t *t;
  int rc = gw_tenant_get(txn, j->t.tenant, &t);
  if (rc) return rc == ST_ENOTFOUND ? -ENOENT : rc;
  json_decref(t);
  if (j->revoke) {
    /* what was opened with the token (streams, calls in flight) ends
     * after the commit, before the 204 */
    if ((rc = auth_token_revoke(txn, j->t.tenant, j->t.tokid)) != 0) return rc;
    return gw_proxy_revoke_token_after_commit(txn, j->lp->srv, j->t.tenant, j->t.tokid);
  }
  return auth_token_create(txn, &j->t);
}

static void done_etoken(int status, void *arg) {
  etok_job *j = arg;
  gw_req *req = j->req;
  if (status == -ENOENT) gw_respond_error(req, 404, "not_found", "no such tenant");
  else if (status == ST_ENOTFOUND)
    gw_respond_error(req, 404, "not_found", j->revoke ? "no such token" : "no such user in this tenant");
  else if (status == AUTH_EINACTIVE)
    gw_respond_error(req, 409, "user_inactive", "user %s is not active (deactivated in the identity provider)",
                     j->t.user_name);
  else if (!job_error(req, status, "token")) {
    if (j->revoke) gw_respond(req, 204, NULL, NULL, 0);
    else {
      json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:s}", "id", j->t.tokid, "token", j->token, "name",
                            j->t.name[0] ? j->t.name : "token", "user", "id", j->t.user_id, "userName",
                            j->t.user_name, "created", j->t.now);
      json_object_set_new(o, "expires", j->t.expires[0] ? json_string(j->t.expires) : json_null());
      gw_respond_json(req, 201, o);
    }
  }
  OPENSSL_cleanse(j->token, sizeof j->token);
  free(j);
}

static void employee_tokens(gw_req *req, const caller *who, const char *tenant, const char *tokid) {
  gw_server *srv = req->lp->srv;
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!tokid && !strcmp(req->method, "GET")) {
    st_txn *txn;
    if (read_tenant(req, tenant, &txn) != 0) return;
    json_t *arr;
    auth_token_list(txn, tenant, &arr);
    st_txn_end(txn);
    gw_respond_json(req, 200, json_pack("{s:o}", "tokens", arr));
    return;
  }
  bool create = !tokid && !strcmp(req->method, "POST");
  bool revoke = tokid && !strcmp(req->method, "DELETE");
  if (!create && !revoke) {
    gw_resp_header(req, "Allow", tokid ? "DELETE" : "GET, POST");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  etok_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  j->lp = req->lp;
  j->revoke = revoke;
  snprintf(j->t.tenant, sizeof j->t.tenant, "%s", tenant);
  if (revoke) {
    snprintf(j->t.tokid, sizeof j->t.tokid, "%s", tokid);
  } else {
    json_t *b = parse_body(req);
    if (!b) {
      free(j);
      return;
    }
    static const char *const allowed[] = {"user", "name", "expires_in_days", NULL};
    const char *user, *name;
    if (only_keys(req, b, allowed) || opt_string(req, b, "user", 256, &user) ||
        opt_string(req, b, "name", NAME_MAX_LEN, &name)) {
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
    now_rfc3339(j->t.now);
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
  if (st_submit(srv->store, req->lp->port, job_etoken, done_etoken, j) != 0) {
    OPENSSL_cleanse(j->token, sizeof j->token);
    free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

/* ---------- policy ---------- */

typedef struct pol_job {
  gw_req *req;
  gw_loop *lp;
  char tenant[64];
  json_t *doc;       /* read-only in the job */
  char now[32];
  int version;       /* out */
  json_t *warnings;  /* out */
  char err[4096];    /* out */
} pol_job;

static int job_policy(st_txn *txn, void *arg) {
  pol_job *j = arg;
  json_decref(j->warnings);
  j->warnings = NULL;
  j->err[0] = 0;
  json_t *t;
  int rc = gw_tenant_get(txn, j->tenant, &t);
  if (rc) return rc;
  json_decref(t);
  rc = pol_put(txn, j->tenant, j->doc, j->now, &j->version, &j->warnings, j->err, sizeof j->err);
  if (rc) return rc;
  /* connectors this document hides from everyone: still accepted
   * (fail closed), but said in the reply */
  json_t *conns = NULL;
  if ((rc = vault_connector_list(txn, j->tenant, &conns)) == 0)
    rc = pol_visibility_warnings(txn, j->tenant, conns, j->warnings);
  json_decref(conns);
  if (rc) return rc;
  /* every open stream of the tenant learns its tool list may have changed */
  return gw_proxy_notify_after_commit(txn, j->lp->srv, j->tenant, NULL);
}

static void done_policy(int status, void *arg) {
  pol_job *j = arg;
  gw_req *req = j->req;
  if (status == POL_EINVALID || status == POL_EAMBIGUOUS)
    gw_respond_error(req, 400, "invalid_policy", "%s", j->err);
  else if (status == ST_ENOTFOUND)
    gw_respond_error(req, 404, "not_found", "no such tenant");
  else if (!job_error(req, status, "policy")) {
    GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){j->tenant, req->id}), "policy version %d in force", j->version);
    gw_respond_json(req, 200, json_pack("{s:i,s:O}", "version", j->version, "warnings",
                                        j->warnings ? j->warnings : json_array()));
  }
  json_decref(j->doc);
  json_decref(j->warnings);
  free(j);
}

static void policy_endpoint(gw_req *req, const caller *who, const char *tenant) {
  gw_server *srv = req->lp->srv;
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!strcmp(req->method, "GET")) {
    st_txn *txn;
    if (read_tenant(req, tenant, &txn) != 0) return;
    json_t *rec;
    if (pol_get(txn, tenant, &rec) != 0) {
      st_txn_end(txn);
      gw_respond_error(req, 404, "not_found", "no policy yet: every connector is hidden until one is PUT");
      return;
    }
    json_t *view = pol_view(txn, tenant, rec);
    st_txn_end(txn);
    json_decref(rec);
    gw_respond_json(req, 200, view);
    return;
  }
  if (strcmp(req->method, "PUT")) {
    gw_resp_header(req, "Allow", "GET, PUT");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  json_t *doc = parse_body(req);
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
  j->lp = req->lp;
  j->doc = doc;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  now_rfc3339(j->now);
  if (st_submit(srv->store, req->lp->port, job_policy, done_policy, j) != 0) {
    json_decref(doc);
    free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

static bool query_get(const char *q, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = q; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > nl && p[nl] == '=' && !strncmp(p, name, nl)) {
      size_t o = 0;
      for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
        char c = p[i];
        if (c == '+') c = ' ';
        else if (c == '%' && i + 2 < len + 1) {
          char h[3] = {p[i + 1], p[i + 2], 0};
          char *e;
          long v = strtol(h, &e, 16);
          if (!*e && v > 0) {
            c = (char)v;
            i += 2;
          }
        }
        out[o++] = c;
      }
      out[o] = 0;
      return true;
    }
    p = amp ? amp + 1 : NULL;
  }
  return false;
}

static void explain_endpoint(gw_req *req, const caller *who, const char *tenant) {
  if (reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  char user[300], connector[64], tool[300];
  if (!query_get(req->query, "user", user, sizeof user) || !query_get(req->query, "connector", connector, sizeof connector) ||
      !query_get(req->query, "tool", tool, sizeof tool) || !*user || !*connector || !*tool) {
    gw_respond_error(req, 400, "invalid_request", "explain needs ?user=<userName or id>&connector=<name>&tool=<name>");
    return;
  }
  st_txn *txn;
  if (read_tenant(req, tenant, &txn) != 0) return;
  json_t *u;
  if (scim_user_lookup(txn, tenant, user, &u) != 0) {
    st_txn_end(txn);
    gw_respond_error(req, 404, "not_found", "no such user in this tenant");
    return;
  }
  char uid[64];
  snprintf(uid, sizeof uid, "%s", json_string_value(json_object_get(u, "id")) ?: "");
  json_decref(u);
  json_t *ex = pol_explain(txn, tenant, uid, connector, tool);
  st_txn_end(txn);
  gw_respond_json(req, 200, ex);
}

int gw_admin_preauth(gw_req *req) {
  if (!req->lp->srv->store) return 0; /* the handler answers 503 */
  caller who;
  return authenticate(req, &who) ? -1 : 0;
}

void gw_admin_dispatch(gw_req *req) {
  if (!req->lp->srv->store) {
    gw_respond_error(req, 503, "store_unavailable", "the store is not open");
    return;
  }
  caller who;
  if (authenticate(req, &who)) return;
  if (!who.op) {
    /* a tenant token proves itself: note its use */
    const char *auth = gw_req_header(req, "authorization") + 7;
    while (*auth == ' ') auth++;
    st_txn *txn;
    if (st_read_begin(req->lp->srv->store, &txn) == 0) {
      json_t *rec;
      if (gw_token_lookup(txn, auth, "admin", NULL, &rec) == 0) {
        st_txn_end(txn);
        gw_token_touch(req->lp, auth, rec);
        json_decref(rec);
      } else {
        st_txn_end(txn);
      }
    }
  }
  /* /admin/v1/tenants[/{id}[/{scim-tokens|admin-tokens}[/{tokid}]]] */
  char path[512];
  if (strlen(req->path) >= sizeof path) {
    gw_respond_error(req, 404, "not_found", "no such admin endpoint");
    return;
  }
  snprintf(path, sizeof path, "%s", req->path + strlen("/admin/v1"));
  char *seg[6] = {0};
  int n = 0;
  for (char *save = NULL, *s = strtok_r(path, "/", &save); s && n < 6; s = strtok_r(NULL, "/", &save))
    seg[n++] = s;
  if (n >= 1 && !strcmp(seg[0], "tenants")) {
    if (n == 1) {
      if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) tenants_list(req, &who);
      else if (!strcmp(req->method, "POST")) tenants_create(req, &who);
      else {
        gw_resp_header(req, "Allow", "GET, POST");
        gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      }
      return;
    }
    if (!gw_tenant_id_valid(seg[1])) {
      if (who.op) gw_respond_error(req, 404, "not_found", "no such tenant");
      else gw_respond_error(req, 403, "forbidden", "this admin token is scoped to another tenant");
      return;
    }
    if (n == 2) {
      tenant_one(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "policy")) {
      policy_endpoint(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "explain")) {
      explain_endpoint(req, &who, seg[1]);
      return;
    }
    if ((n == 3 || n == 4) && !strcmp(seg[2], "connectors")) {
      connectors(req, &who, seg[1], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && !strcmp(seg[2], "tokens")) {
      employee_tokens(req, &who, seg[1], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && (!strcmp(seg[2], "users") || !strcmp(seg[2], "groups"))) {
      directory_view(req, &who, seg[1], seg[2], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && (!strcmp(seg[2], "scim-tokens") || !strcmp(seg[2], "admin-tokens"))) {
      tokens(req, &who, seg[1], seg[2][0] == 's' ? "scim" : "admin", n == 4 ? seg[3] : NULL);
      return;
    }
  }
  gw_respond_error(req, 404, "not_found", "no such admin endpoint: %s", req->path);
}

/* ---------- consistency check (mcpgate store check) ---------- */

static int check_admin(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
  st_cursor *c;
  char msg[256];
  if (st_cursor_open(txn, ST_DB_TOKENS, &c) != 0) return -1;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *kp = k.data;
    if (k.len == 33 && kp[0] == 'h') {
      json_t *r = load_json(&v);
      const char *id = r ? json_string_value(json_object_get(r, "id")) : NULL;
      const char *kind = r ? json_string_value(json_object_get(r, "kind")) : NULL;
      const char *ten = r ? json_string_value(json_object_get(r, "tenant")) : NULL;
      if (!id || !kind || !ten || !gw_tenant_id_valid(ten)) {
        if (report) report(rctx, "tokens", "token record is not valid JSON or lacks id/kind/tenant");
        problems++;
      } else {
        char ik[200];
        st_val iv;
        if (st_get(txn, ST_DB_TOKENS, ik, index_key(ten, kind, id, ik), &iv) != 0 || iv.len != 32 ||
            memcmp(iv.data, kp + 1, 32) != 0) {
          snprintf(msg, sizeof msg, "token %s of tenant %s has no matching index entry", id, ten);
          if (report) report(rctx, "tokens", msg);
          problems++;
        }
        char tk[80];
        if (st_get(txn, ST_DB_TENANTS, tk, tenant_key(ten, tk), &iv) != 0) {
          snprintf(msg, sizeof msg, "token %s belongs to unknown tenant %s", id, ten);
          if (report) report(rctx, "tokens", msg);
          problems++;
        }
      }
      json_decref(r);
    } else if (k.len > 1 && kp[0] == 'i') {
      char hk[40];
      st_val hv;
      if (v.len != 32 || st_get(txn, ST_DB_TOKENS, hk, hash_key(v.data, hk), &hv) != 0) {
        if (report) report(rctx, "tokens", "token index entry points to no token record");
        problems++;
      }
    } else if (k.len > 1 && kp[0] == 'u') {
      char hk[40];
      st_val hv;
      if (v.len != 32 || st_get(txn, ST_DB_TOKENS, hk, hash_key(v.data, hk), &hv) != 0) {
        if (report) report(rctx, "tokens", "employee token user index entry points to no token record");
        problems++;
      }
    } else {
      if (report) report(rctx, "tokens", "unexpected key in the tokens database");
      problems++;
    }
  }
  st_cursor_close(c);
  return problems;
}

void gw_admin_register_checks(st_store *st) { st_check_add(st, check_admin, NULL); }

/* ---------- module table entry (gateway/core/module.h) ---------- */

static int mod_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  gw_admin_register_checks(st);
  return 0;
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  gw_route r = {GW_RC_ADMIN, gw_admin_dispatch, NULL, 0, NULL, gw_admin_preauth};
  return gw_router_add(rt, "/admin/v1/...", &r, GW_ROUTE_PRIVATE);
}

const gw_module gw_mod_admin = {
    .name = "admin",
    .store_init = mod_store_init,
    .loop_start = gw_admin_loop_start,
    .loop_stop = gw_admin_loop_stop,
    .routes = mod_routes,
};
