/* gateway/api/admin_tokens.c — bearer tokens over the admin API: SCIM
 * (mgs_) and tenant admin (mga_) tokens (records, index, lookup, last use,
 * /scim-tokens and /admin-tokens), employee tokens (/tokens, through
 * auth/), and the token database's consistency check for `store check`.
 * Tokens are found by the hash of their text, never by comparing it. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "gateway/mcp/mcp_proxy.h"

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
  json_t *j = admin__load_json(&v);
  if (!j) return ST_ECORRUPT;
  const char *jk = json_string_value(json_object_get(j, "kind"));
  const char *jt = json_string_value(json_object_get(j, "tenant"));
  json_t *tr = NULL;
  if (!jk || !jt || strcmp(jk, kind) != 0 || (tenant && strcmp(jt, tenant) != 0) ||
      st_tenant_get(txn, jt, &tr) != 0) {
    json_decref(j);
    return ST_ENOTFOUND;
  }
  json_decref(tr);
  *rec = j;
  return 0;
}

int admin__write_token(st_txn *txn, admin_job *j, const char *name) {
  char hk[40], ik[200];
  json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", j->tokid, "kind", j->kind, "tenant",
                          j->tenant, "name", name, "created", j->created);
  if (!rec) return ST_ENOMEM;
  int rc = admin__put_json(txn, ST_DB_TOKENS, hk, hash_key(j->hash, hk), rec);
  json_decref(rec);
  if (rc) return rc;
  return st_put(txn, ST_DB_TOKENS, ik, index_key(j->tenant, j->kind, j->tokid, ik), j->hash, 32, 0);
}

int admin__delete_tokens(st_txn *txn, const char *tenant, int limit) {
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

static int job_token_create(st_txn *txn, void *arg) {
  admin_job *j = arg;
  json_t *rec;
  int rc = st_tenant_get(txn, j->tenant, &rec);
  if (rc) return rc;
  json_decref(rec);
  return admin__write_token(txn, j, j->name[0] ? j->name : j->kind);
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
  json_t *rec = admin__load_json(&v);
  if (!rec) return 0;
  json_object_set_new(rec, "last_used", json_string(t->when));
  rc = admin__put_json(txn, ST_DB_TOKENS, hk, kl, rec);
  json_decref(rec);
  return rc;
}

static void touch_done(int status, void *arg) { free(arg); }

/* Records last use at most once a minute per token, without waiting. */
void gw_token_touch(gw_loop *lp, const char *token, json_t *rec) {
  const char *last = json_string_value(json_object_get(rec, "last_used"));
  char now[32];
  admin__now_rfc3339(now);
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

static void tokens_list(gw_req *req, const char *tenant, const char *kind) {
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
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
      json_t *r = admin__load_json(&rv);
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
    j->op = 4;
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
    admin__submit(req, j, job_token_create);
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
  admin__submit(req, j, job_token_revoke);
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
  int rc = st_tenant_get(txn, j->t.tenant, &t);
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
  else if (!admin__job_error(req, status, "token")) {
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

void admin__employee_tokens(gw_req *req, const admin_caller *who, const char *tenant, const char *tokid) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!tokid && !strcmp(req->method, "GET")) {
    st_txn *txn;
    if (admin__read_tenant(req, tenant, &txn) != 0) return;
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
  if (st_submit(srv->store, req->lp->port, job_etoken, done_etoken, j) != 0) {
    OPENSSL_cleanse(j->token, sizeof j->token);
    free(j);
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
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
      json_t *r = admin__load_json(&v);
      const char *id = r ? json_string_value(json_object_get(r, "id")) : NULL;
      const char *kind = r ? json_string_value(json_object_get(r, "kind")) : NULL;
      const char *ten = r ? json_string_value(json_object_get(r, "tenant")) : NULL;
      if (!id || !kind || !ten || !st_tenant_id_valid(ten)) {
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
        char state[16];
        if (st_tenant_state(txn, ten, state) != 0) {
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
