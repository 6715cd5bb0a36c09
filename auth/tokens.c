/* auth/tokens.c — employee access tokens (see auth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "scim/scim.h"

static size_t hkey(const uint8_t h[32], char *k) {
  k[0] = 'h';
  memcpy(k + 1, h, 32);
  return 33;
}

static size_t ikey(const char *tenant, const char *tokid, char *k) {
  size_t n = 0, tl = strlen(tenant);
  k[n++] = 'i';
  memcpy(k + n, tenant, tl + 1);
  n += tl + 1;
  memcpy(k + n, "mgw", 4);
  n += 4;
  if (tokid) {
    memcpy(k + n, tokid, strlen(tokid));
    n += strlen(tokid);
  }
  return n;
}

static size_t ukey(const char *tenant, const char *uid, const char *tokid, char *k) {
  size_t n = 0, tl = strlen(tenant), ul = strlen(uid);
  k[n++] = 'u';
  memcpy(k + n, tenant, tl + 1);
  n += tl + 1;
  memcpy(k + n, uid, ul + 1);
  n += ul + 1;
  if (tokid) {
    memcpy(k + n, tokid, strlen(tokid));
    n += strlen(tokid);
  }
  return n;
}

static bool user_active(const json_t *u) {
  json_t *a = json_object_get(u, "active");
  return !a || json_is_true(a);
}

static bool tenant_active(st_txn *txn, const char *tenant) {
  char k[80];
  size_t tl = strlen(tenant);
  if (tl > 63) return false;
  k[0] = 't';
  memcpy(k + 1, tenant, tl);
  st_val v;
  if (st_get(txn, ST_DB_TENANTS, k, tl + 1, &v) != 0) return false;
  json_t *j = json_loadb(v.data, v.len, 0, NULL);
  bool ok = j && !strcmp(json_string_value(json_object_get(j, "state")) ?: "", "active");
  json_decref(j);
  return ok;
}

int auth_token_create(st_txn *txn, auth_token_new *t) {
  json_t *u;
  int rc = scim_user_lookup(txn, t->tenant, t->user_ref, &u);
  if (rc) return rc;
  const char *uid = json_string_value(json_object_get(u, "id"));
  const char *un = json_string_value(json_object_get(u, "userName"));
  snprintf(t->user_id, sizeof t->user_id, "%s", uid ? uid : "");
  snprintf(t->user_name, sizeof t->user_name, "%s", un ? un : "");
  bool active = user_active(u);
  json_decref(u);
  if (!active) return AUTH_EINACTIVE;
  json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", t->tokid, "kind", "mgw", "tenant", t->tenant,
                          "user", t->user_id, "name", t->name[0] ? t->name : "token", "created", t->now);
  if (t->expires[0]) json_object_set_new(rec, "expires", json_string(t->expires));
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(rec);
  if (!s) return ST_ENOMEM;
  char k[400];
  rc = st_put(txn, ST_DB_TOKENS, k, hkey(t->hash, k), s, strlen(s), 0);
  free(s);
  if (rc) return rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, k, ikey(t->tenant, t->tokid, k), t->hash, 32, 0))) return rc;
  return st_put(txn, ST_DB_TOKENS, k, ukey(t->tenant, t->user_id, t->tokid, k), t->hash, 32, 0);
}

/* A token record r (of hash or id lookup) still grants tenant's user:
 * kind, tenant, expiry, tenant active, user present and active. Fills
 * user_id and tokid (either may be NULL). */
static int record_grants(st_txn *txn, json_t *r, const char *tenant, int64_t now, char user_id[40],
                         char tokid[ST_TOKEN_ID_BUFSZ]) {
  const char *kind = json_string_value(json_object_get(r, "kind"));
  const char *t = json_string_value(json_object_get(r, "tenant"));
  const char *uid = json_string_value(json_object_get(r, "user"));
  const char *id = json_string_value(json_object_get(r, "id"));
  const char *exp = json_string_value(json_object_get(r, "expires"));
  if (!kind || strcmp(kind, "mgw") || !t || strcmp(t, tenant) || !uid || !id) return ST_ENOTFOUND;
  if (exp && *exp) {
    struct tm tm = {0};
    if (!strptime(exp, "%Y-%m-%dT%H:%M:%SZ", &tm) || (int64_t)timegm(&tm) <= now) return ST_ENOTFOUND;
  }
  if (!tenant_active(txn, tenant)) return ST_ENOTFOUND;
  json_t *u;
  if (scim_user_lookup(txn, tenant, uid, &u) != 0) return ST_ENOTFOUND;
  bool active = user_active(u) && !strcmp(json_string_value(json_object_get(u, "id")) ?: "", uid);
  json_decref(u);
  if (!active) return ST_ENOTFOUND;
  if (user_id) snprintf(user_id, 40, "%s", uid);
  if (tokid) snprintf(tokid, ST_TOKEN_ID_BUFSZ, "%s", id);
  return 0;
}

int auth_token_verify(st_txn *txn, const char *tenant, const char *token, int64_t now, char user_id[40],
                      char tokid[ST_TOKEN_ID_BUFSZ]) {
  uint8_t h[32];
  char k[40];
  st_val v;
  size_t tl = strlen(token);
  if (st_token_check(token, tl, AUTH_TOKEN_PREFIX) != 0) return ST_ENOTFOUND;
  if (st_token_hash(token, tl, h) != 0) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TOKENS, k, hkey(h, k), &v);
  if (rc) return rc;
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  if (!r) return ST_ECORRUPT;
  rc = record_grants(txn, r, tenant, now, user_id, tokid);
  json_decref(r);
  return rc;
}

int auth_identity_check(st_txn *txn, const char *tenant, const char *user_id, const char *tokid, int64_t now) {
  char k[128], hk[40];
  st_val v;
  if (strlen(tokid) != ST_TOKEN_ID_LEN || strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TOKENS, k, ikey(tenant, tokid, k), &v);
  if (rc) return rc;
  if (v.len != 32) return ST_ECORRUPT;
  if ((rc = st_get(txn, ST_DB_TOKENS, hk, hkey(v.data, hk), &v)) != 0) return rc;
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  if (!r) return ST_ECORRUPT;
  char uid[40];
  rc = record_grants(txn, r, tenant, now, uid, NULL);
  json_decref(r);
  return rc ? rc : strcmp(uid, user_id) ? ST_ENOTFOUND : 0;
}

int auth_token_list(st_txn *txn, const char *tenant, json_t **arr) {
  char p[128];
  size_t pl = ikey(tenant, NULL, p);
  *arr = json_array();
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TOKENS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    if (v.len != 32) continue;
    char hk[40];
    st_val rv;
    if (st_get(txn, ST_DB_TOKENS, hk, hkey(v.data, hk), &rv) != 0) continue;
    json_t *r = json_loadb(rv.data, rv.len, 0, NULL);
    if (!r) continue;
    json_t *o = json_pack("{s:O,s:O,s:O,s:O}", "id", json_object_get(r, "id"), "user",
                          json_object_get(r, "user"), "name", json_object_get(r, "name"), "created",
                          json_object_get(r, "created"));
    json_t *e = json_object_get(r, "expires");
    json_object_set(o, "expires", e ? e : json_null());
    json_t *lu = json_object_get(r, "last_used");
    json_object_set(o, "last_used", lu ? lu : json_null());
    json_array_append_new(*arr, o);
    json_decref(r);
  }
  st_cursor_close(c);
  return 0;
}

static int delete_one(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *tokid) {
  char k[400];
  st_val v;
  int rc = st_get(txn, ST_DB_TOKENS, k, hkey(hash, k), &v);
  char uid[40] = "";
  if (rc == 0) {
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    snprintf(uid, sizeof uid, "%s", r ? json_string_value(json_object_get(r, "user")) ?: "" : "");
    json_decref(r);
    if ((rc = st_del(txn, ST_DB_TOKENS, k, 33))) return rc;
  }
  rc = st_del(txn, ST_DB_TOKENS, k, ikey(tenant, tokid, k));
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (uid[0]) {
    rc = st_del(txn, ST_DB_TOKENS, k, ukey(tenant, uid, tokid, k));
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

int auth_token_revoke(st_txn *txn, const char *tenant, const char *tokid) {
  char k[128];
  st_val v;
  if (strlen(tokid) != ST_TOKEN_ID_LEN) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TOKENS, k, ikey(tenant, tokid, k), &v);
  if (rc) return rc;
  uint8_t h[32];
  if (v.len != 32) return ST_ECORRUPT;
  memcpy(h, v.data, 32);
  return delete_one(txn, tenant, h, tokid);
}

int auth_tokens_delete_user(st_txn *txn, const char *tenant, const char *uid) {
  char p[128];
  size_t pl = ukey(tenant, uid, NULL, p);
  int n = 0, rc;
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_TOKENS, &c))) return rc;
    st_cursor_seek(c, p, pl, NULL, 0);
    st_val k, v;
    rc = st_cursor_next(c, &k, &v);
    char tokid[ST_TOKEN_ID_BUFSZ] = "";
    uint8_t h[32];
    bool ok = rc == 0 && v.len == 32 && k.len - pl == ST_TOKEN_ID_LEN;
    if (ok) {
      memcpy(tokid, (const char *)k.data + pl, ST_TOKEN_ID_LEN);
      memcpy(h, v.data, 32);
    }
    char key[200];
    size_t kl = rc == 0 && k.len < sizeof key ? k.len : 0;
    if (kl) memcpy(key, k.data, kl);
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) return n;
    if (rc) return rc;
    if (ok) {
      if ((rc = delete_one(txn, tenant, h, tokid))) return rc;
    } else if (kl && (rc = st_del(txn, ST_DB_TOKENS, key, kl))) {
      return rc;
    }
    n++;
  }
}

int auth_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char p[80];
  size_t tl = strlen(tenant);
  p[0] = 'u';
  memcpy(p + 1, tenant, tl + 1);
  return st_del_prefix(txn, ST_DB_TOKENS, p, tl + 2, limit);
}

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  (void)kind;
  (void)ctx;
  int n = auth_tokens_delete_user(txn, ev->tenant, ev->id);
  return n < 0 ? n : 0;
}

int auth_register_hooks(st_store *st) {
  int rc = st_hook_add(st, SCIM_EV_USER_DEACTIVATED, on_user_gone, NULL);
  return rc ? rc : st_hook_add(st, SCIM_EV_USER_DELETED, on_user_gone, NULL);
}

/* st_check: employee tokens of users that no longer exist. */
static int check_tokens(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_TOKENS, &c) != 0) return -1;
  st_val k, v;
  char uidbuf[ST_TENANT_UID_LEN + 1], msg[300];
  while (st_cursor_next(c, &k, &v) == 0) {
    if (k.len != 33 || ((const char *)k.data)[0] != 'h') continue;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *kind = json_string_value(json_object_get(r, "kind"));
    const char *tenant = json_string_value(json_object_get(r, "tenant"));
    const char *user = json_string_value(json_object_get(r, "user"));
    const char *id = json_string_value(json_object_get(r, "id"));
    /* a token of a gone tenant is reported once, by the tenant check */
    if (kind && !strcmp(kind, "mgw") && tenant && st_tenant_uid_get(txn, tenant, uidbuf) == 0) {
      json_t *u = NULL;
      if (!user || scim_user_lookup(txn, tenant, user, &u) == ST_ENOTFOUND) {
        snprintf(msg, sizeof msg, "employee token %s of tenant %s belongs to unknown user %s", id ? id : "?", tenant,
                 user ? user : "(none)");
        if (report) report(rctx, "tokens", msg);
        problems++;
      }
      json_decref(u);
    }
    json_decref(r);
  }
  st_cursor_close(c);
  return problems;
}

int auth_register_checks(st_store *st) { return st_check_add(st, check_tokens, NULL); }
