/* auth/token_store.c — the token records of every kind and their key
 * encoding (see token_store.h for the layout). The only file that builds a
 * key of ST_DB_TOKENS: the admin API (SCIM and admin tokens), the employee
 * tokens (auth/tokens.c) and the consistency check all come through here.
 *
 * Rules kept: record and index entries change in the same transaction;
 * deletions go by the index (the hash is never derived from anything but
 * the stored index value or the presented text); lookups never compare
 * token text. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/token_store.h"
#include "store/tenant.h"

#define KEY_CAP 400

static size_t hkey(const uint8_t h[ST_TOKEN_HASH_LEN], char *k) {
  k[0] = 'h';
  memcpy(k + 1, h, ST_TOKEN_HASH_LEN);
  return 1 + ST_TOKEN_HASH_LEN;
}

/* Appends s and its NUL (with_nul) at k + n; returns the new length. */
static size_t put_part(char *k, size_t n, const char *s, int with_nul) {
  size_t l = strlen(s);
  memcpy(k + n, s, l + (with_nul ? 1 : 0));
  return n + l + (with_nul ? 1 : 0);
}

/* "i" tenant \0 kind \0 [tokid]; kind NULL: the tenant's prefix only. */
static size_t ikey(const char *tenant, const char *kind, const char *tokid, char *k) {
  size_t n = 1;
  k[0] = 'i';
  n = put_part(k, n, tenant, 1);
  if (!kind) return n;
  n = put_part(k, n, kind, 1);
  return tokid ? put_part(k, n, tokid, 0) : n;
}

/* "u" tenant \0 user \0 [tokid]; uid NULL: the tenant's prefix only. */
static size_t ukey(const char *tenant, const char *uid, const char *tokid, char *k) {
  size_t n = 1;
  k[0] = 'u';
  n = put_part(k, n, tenant, 1);
  if (!uid) return n;
  n = put_part(k, n, uid, 1);
  return tokid ? put_part(k, n, tokid, 0) : n;
}

/* Parts of a key must fit KEY_CAP with their NULs. */
static int fits(const char *a, const char *b, const char *c) {
  return strlen(a) + (b ? strlen(b) : 0) + (c ? strlen(c) : 0) + 4 < KEY_CAP;
}

static json_t *load(const st_val *v) { return json_loadb(v->data, v->len, JSON_REJECT_DUPLICATES, NULL); }

static int put_json(st_txn *txn, const void *k, size_t kl, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_TOKENS, k, kl, s, strlen(s), 0);
  free(s);
  return rc;
}

int auth_token_put(st_txn *txn, const auth_token_rec *r) {
  char k[KEY_CAP];
  if (!fits(r->tenant, r->kind, r->id) || (r->user && !fits(r->tenant, r->user, r->id))) return ST_EINVAL;
  json_t *rec = json_pack("{s:s,s:s,s:s}", "id", r->id, "kind", r->kind, "tenant", r->tenant);
  if (!rec) return ST_ENOMEM;
  if (r->user) json_object_set_new(rec, "user", json_string(r->user));
  json_object_set_new(rec, "name", json_string(r->name));
  json_object_set_new(rec, "created", json_string(r->created));
  if (r->expires && r->expires[0]) json_object_set_new(rec, "expires", json_string(r->expires));
  if (r->created_by) json_object_set_new(rec, "created_by", json_string(r->created_by));
  int rc = put_json(txn, k, hkey(r->hash, k), rec);
  json_decref(rec);
  if (rc) return rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, k, ikey(r->tenant, r->kind, r->id, k), r->hash, ST_TOKEN_HASH_LEN, 0)))
    return rc;
  if (!r->user) return 0;
  return st_put(txn, ST_DB_TOKENS, k, ukey(r->tenant, r->user, r->id, k), r->hash, ST_TOKEN_HASH_LEN, 0);
}

int auth_token_get_by_hash(st_txn *txn, const uint8_t hash[ST_TOKEN_HASH_LEN], json_t **rec) {
  char k[40];
  st_val v;
  *rec = NULL;
  int rc = st_get(txn, ST_DB_TOKENS, k, hkey(hash, k), &v);
  if (rc) return rc;
  if (!(*rec = load(&v))) return ST_ECORRUPT;
  return 0;
}

int auth_token_get_by_id(st_txn *txn, const char *tenant, const char *kind, const char *tokid,
                         json_t **rec) {
  char k[KEY_CAP];
  st_val v;
  *rec = NULL;
  if (strlen(tokid) != ST_TOKEN_ID_LEN || !fits(tenant, kind, tokid)) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TOKENS, k, ikey(tenant, kind, tokid, k), &v);
  if (rc) return rc;
  if (v.len != ST_TOKEN_HASH_LEN) return ST_ECORRUPT;
  uint8_t h[ST_TOKEN_HASH_LEN];
  memcpy(h, v.data, sizeof h);
  return auth_token_get_by_hash(txn, h, rec);
}

int auth_token_lookup(st_txn *txn, const char *token, const char *kind, const char *tenant,
                      json_t **rec) {
  uint8_t h[ST_TOKEN_HASH_LEN];
  *rec = NULL;
  size_t tl = strlen(token);
  if (tl < 16 || tl > 512) return ST_ENOTFOUND;
  if (st_token_hash(token, tl, h) != 0) return ST_ENOTFOUND;
  json_t *j;
  int rc = auth_token_get_by_hash(txn, h, &j);
  if (rc) return rc;
  const char *jk = json_string_value(json_object_get(j, "kind"));
  const char *jt = json_string_value(json_object_get(j, "tenant"));
  if (!jk || !jt || strcmp(jk, kind) != 0 || (tenant && strcmp(jt, tenant) != 0) ||
      st_tenant_active(txn, jt) != 0) {
    json_decref(j);
    return ST_ENOTFOUND;
  }
  *rec = j;
  return 0;
}

/* Deletes the record of hash (if any) and its "u" entry, then the index
 * entry ik. tenant/tokid name the "u" entry. */
static int delete_record(st_txn *txn, const char *tenant, const uint8_t hash[ST_TOKEN_HASH_LEN],
                         const char *tokid, const char *ik, size_t ikl) {
  char k[KEY_CAP];
  st_val v;
  char uid[64] = "";
  size_t kl = hkey(hash, k);
  int rc = st_get(txn, ST_DB_TOKENS, k, kl, &v);
  if (rc == 0) {
    json_t *r = load(&v);
    snprintf(uid, sizeof uid, "%s", r ? json_string_value(json_object_get(r, "user")) ?: "" : "");
    json_decref(r);
    if ((rc = st_del(txn, ST_DB_TOKENS, k, kl))) return rc;
  } else if (rc != ST_ENOTFOUND) {
    return rc;
  }
  if (ikl && (rc = st_del(txn, ST_DB_TOKENS, ik, ikl)) && rc != ST_ENOTFOUND) return rc;
  if (uid[0] && tokid && fits(tenant, uid, tokid)) {
    rc = st_del(txn, ST_DB_TOKENS, k, ukey(tenant, uid, tokid, k));
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

int auth_token_revoke(st_txn *txn, const char *tenant, const char *kind, const char *tokid) {
  char ik[KEY_CAP];
  st_val v;
  if (strlen(tokid) != ST_TOKEN_ID_LEN || !fits(tenant, kind, tokid)) return ST_ENOTFOUND;
  size_t ikl = ikey(tenant, kind, tokid, ik);
  int rc = st_get(txn, ST_DB_TOKENS, ik, ikl, &v);
  if (rc) return rc;
  if (v.len != ST_TOKEN_HASH_LEN) {
    rc = st_del(txn, ST_DB_TOKENS, ik, ikl);
  } else {
    uint8_t h[ST_TOKEN_HASH_LEN];
    memcpy(h, v.data, sizeof h);
    rc = delete_record(txn, tenant, h, tokid, ik, ikl);
  }
  if (rc) return rc;
  auth_token_event ev = {tenant, kind, tokid};
  return st_emit(txn, ST_EVENT_TOKEN_REVOKED, &ev);
}

/* The listing's view of a record: never the token, nor its hash. */
static json_t *list_view(const json_t *r, bool employee, bool with_user) {
  json_t *o = json_pack("{s:O}", "id", json_object_get(r, "id"));
  if (!o) return NULL;
  if (employee && with_user) json_object_set(o, "user", json_object_get(r, "user"));
  json_object_set(o, "name", json_object_get(r, "name"));
  json_object_set(o, "created", json_object_get(r, "created"));
  if (employee) {
    json_t *e = json_object_get(r, "expires");
    json_object_set(o, "expires", e ? e : json_null());
  }
  json_t *lu = json_object_get(r, "last_used");
  json_object_set(o, "last_used", lu ? lu : json_null());
  return o;
}

int auth_token_list(st_txn *txn, const char *tenant, const char *kind, json_t **arr) {
  char p[KEY_CAP];
  *arr = json_array();
  if (!fits(tenant, kind, NULL)) return 0;
  size_t pl = ikey(tenant, kind, NULL, p);
  bool employee = strcmp(kind, AUTH_KIND_EMPLOYEE) == 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TOKENS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    if (v.len != ST_TOKEN_HASH_LEN) continue;
    json_t *r;
    if (auth_token_get_by_hash(txn, v.data, &r) != 0) continue;
    json_array_append_new(*arr, list_view(r, employee, true));
    json_decref(r);
  }
  st_cursor_close(c);
  return 0;
}

bool auth_token_expired_at(const json_t *tok, int64_t now_s) {
  const char *e = json_string_value(json_object_get(tok, "expires"));
  struct tm tm = {0};
  return e && *e && strptime(e, "%Y-%m-%dT%H:%M:%SZ", &tm) && (int64_t)timegm(&tm) <= now_s;
}

int auth_token_list_user(st_txn *txn, const char *tenant, const char *user_id, json_t **arr) {
  char p[KEY_CAP];
  *arr = json_array();
  if (!*arr) return ST_ENOMEM;
  if (!fits(tenant, user_id, NULL)) return 0;
  size_t pl = ukey(tenant, user_id, NULL, p);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TOKENS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    if (v.len != ST_TOKEN_HASH_LEN || k.len != pl + ST_TOKEN_ID_LEN) continue;
    json_t *r;
    if (auth_token_get_by_hash(txn, v.data, &r) != 0) continue;
    const char *kind = json_string_value(json_object_get(r, "kind"));
    const char *owner = json_string_value(json_object_get(r, "user"));
    const char *t = json_string_value(json_object_get(r, "tenant"));
    if (kind && !strcmp(kind, AUTH_KIND_EMPLOYEE) && owner && !strcmp(owner, user_id) && t && !strcmp(t, tenant))
      json_array_append_new(*arr, list_view(r, true, false));
    json_decref(r);
  }
  st_cursor_close(c);
  return 0;
}

/* Counts keys under prefix p (keys only, nothing parsed), no further than
 * stop_at: a cap check does bounded work however many are stored. */
static int count_prefix(st_txn *txn, const char *p, size_t pl, int64_t stop_at, int64_t *n) {
  *n = 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TOKENS, &c);
  if (rc) return rc;
  if ((rc = st_cursor_seek(c, p, pl, NULL, 0)) == 0) {
    st_val k;
    while (*n < stop_at && (rc = st_cursor_next(c, &k, NULL)) == 0) (*n)++;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || *n >= stop_at ? 0 : rc;
}

int auth_token_count(st_txn *txn, const char *tenant, const char *kind, int64_t stop_at, int64_t *n) {
  char p[KEY_CAP];
  *n = 0;
  if (!fits(tenant, kind, NULL)) return 0;
  return count_prefix(txn, p, ikey(tenant, kind, NULL, p), stop_at, n);
}

int auth_token_count_user(st_txn *txn, const char *tenant, const char *user_id, int64_t stop_at, int64_t *n) {
  char p[KEY_CAP];
  *n = 0;
  if (!fits(tenant, user_id, NULL)) return 0;
  return count_prefix(txn, p, ukey(tenant, user_id, NULL, p), stop_at, n);
}

int auth_tokens_delete_tenant(st_txn *txn, const char *tenant, int limit) {
  char pk[KEY_CAP];
  if (!fits(tenant, NULL, NULL)) return 0;
  size_t pl = ikey(tenant, NULL, NULL, pk);
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
    char ik[KEY_CAP], hk[40];
    size_t ikl = k.len < sizeof ik ? k.len : sizeof ik;
    memcpy(ik, k.data, ikl);
    int have_hash = v.len == ST_TOKEN_HASH_LEN;
    if (have_hash) hkey(v.data, hk);
    st_cursor_close(c);
    if (have_hash && (rc = st_del(txn, ST_DB_TOKENS, hk, 1 + ST_TOKEN_HASH_LEN)) != 0 && rc != ST_ENOTFOUND)
      return rc;
    if ((rc = st_del(txn, ST_DB_TOKENS, ik, ikl)) != 0) return rc;
    n++;
    if (limit && n >= limit) return n;
  }
}

int auth_tokens_revoke_user(st_txn *txn, const char *tenant, const char *user_id) {
  json_t *toks = NULL;
  int rc = auth_token_list_user(txn, tenant, user_id, &toks);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  int n = 0;
  size_t i;
  json_t *t;
  json_array_foreach(toks, i, t) {
    const char *id = json_string_value(json_object_get(t, "id"));
    if (!id) continue;
    rc = auth_token_revoke(txn, tenant, AUTH_KIND_EMPLOYEE, id);
    if (rc && rc != ST_ENOTFOUND) break;
    if (!rc) n++;
    rc = 0;
  }
  json_decref(toks);
  return rc < 0 ? rc : n;
}

int auth_tokens_delete_user(st_txn *txn, const char *tenant, const char *uid) {
  char p[KEY_CAP];
  if (!fits(tenant, uid, NULL)) return 0;
  size_t pl = ukey(tenant, uid, NULL, p);
  int n = 0, rc;
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_TOKENS, &c))) return rc;
    st_cursor_seek(c, p, pl, NULL, 0);
    st_val k, v;
    rc = st_cursor_next(c, &k, &v);
    char tokid[ST_TOKEN_ID_BUFSZ] = "";
    uint8_t h[ST_TOKEN_HASH_LEN];
    bool ok = rc == 0 && v.len == ST_TOKEN_HASH_LEN && k.len - pl == ST_TOKEN_ID_LEN;
    if (ok) {
      memcpy(tokid, (const char *)k.data + pl, ST_TOKEN_ID_LEN);
      memcpy(h, v.data, sizeof h);
    }
    char key[KEY_CAP];
    size_t kl = rc == 0 && k.len < sizeof key ? k.len : 0;
    if (kl) memcpy(key, k.data, kl);
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) return n;
    if (rc) return rc;
    if (ok) {
      char ik[KEY_CAP];
      if ((rc = delete_record(txn, tenant, h, tokid, ik, ikey(tenant, AUTH_KIND_EMPLOYEE, tokid, ik)))) return rc;
      /* a record without its user (corrupt) leaves the "u" entry behind */
      if ((rc = st_del(txn, ST_DB_TOKENS, key, kl)) && rc != ST_ENOTFOUND) return rc;
    } else if (kl && (rc = st_del(txn, ST_DB_TOKENS, key, kl))) {
      return rc;
    }
    n++;
  }
}

int auth_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char p[KEY_CAP];
  if (!fits(tenant, NULL, NULL)) return 0;
  int n = auth_tokens_delete_tenant(txn, tenant, limit);
  if (n < 0 || n >= limit) return n;
  int m = st_del_prefix(txn, ST_DB_TOKENS, p, ukey(tenant, NULL, NULL, p), limit - n);
  return m < 0 ? m : n + m;
}

int auth_register_purge(st_store *st) { return st_purge_add(st, "auth", auth_purge_tenant, NULL); }

int auth_token_touch_due(const json_t *rec, int64_t now) {
  const char *last = json_string_value(json_object_get(rec, "last_used"));
  if (!last) return 1;
  struct tm tm = {0};
  return !(strptime(last, "%Y-%m-%dT%H:%M:%SZ", &tm) && now - (int64_t)timegm(&tm) < AUTH_TOUCH_INTERVAL_S);
}

int auth_token_touch(st_txn *txn, const uint8_t hash[ST_TOKEN_HASH_LEN], const char *when) {
  char hk[40];
  st_val v;
  size_t kl = hkey(hash, hk);
  int rc = st_get(txn, ST_DB_TOKENS, hk, kl, &v);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *rec = load(&v);
  if (!rec) return 0;
  json_object_set_new(rec, "last_used", json_string(when));
  rc = put_json(txn, hk, kl, rec);
  json_decref(rec);
  return rc;
}

int auth_tokens_foreach(st_txn *txn, int (*fn)(void *ctx, json_t *rec), void *ctx) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TOKENS, &c);
  if (rc) return rc;
  st_cursor_seek(c, "h", 1, NULL, 0);
  st_val k, v;
  int stop = 0;
  while (!stop && st_cursor_next(c, &k, &v) == 0) {
    if (k.len != 1 + ST_TOKEN_HASH_LEN || ((const char *)k.data)[0] != 'h') break;
    json_t *r = load(&v);
    if (!r) continue;
    stop = fn(ctx, r);
    json_decref(r);
  }
  st_cursor_close(c);
  return stop;
}

int auth_tokens_check(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
  st_cursor *c;
  char msg[256];
  if (st_cursor_open(txn, ST_DB_TOKENS, &c) != 0) return -1;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *kp = k.data;
    if (k.len == 1 + ST_TOKEN_HASH_LEN && kp[0] == 'h') {
      json_t *r = load(&v);
      const char *id = r ? json_string_value(json_object_get(r, "id")) : NULL;
      const char *kind = r ? json_string_value(json_object_get(r, "kind")) : NULL;
      const char *ten = r ? json_string_value(json_object_get(r, "tenant")) : NULL;
      if (!id || !kind || !ten || !st_tenant_id_valid(ten) || !fits(ten, kind, id)) {
        if (report) report(rctx, "tokens", "token record is not valid JSON or lacks id/kind/tenant");
        problems++;
      } else {
        char ik[KEY_CAP], state[16];
        st_val iv;
        if (st_get(txn, ST_DB_TOKENS, ik, ikey(ten, kind, id, ik), &iv) != 0 || iv.len != ST_TOKEN_HASH_LEN ||
            memcmp(iv.data, kp + 1, ST_TOKEN_HASH_LEN) != 0) {
          snprintf(msg, sizeof msg, "token %s of tenant %s has no matching index entry", id, ten);
          if (report) report(rctx, "tokens", msg);
          problems++;
        }
        if (st_tenant_state(txn, ten, state) == ST_ENOTFOUND) {
          snprintf(msg, sizeof msg, "token %s belongs to unknown tenant %s", id, ten);
          if (report) report(rctx, "tokens", msg);
          problems++;
        }
      }
      json_decref(r);
    } else if (k.len > 1 && (kp[0] == 'i' || kp[0] == 'u')) {
      char hk[40];
      st_val hv;
      if (v.len != ST_TOKEN_HASH_LEN || st_get(txn, ST_DB_TOKENS, hk, hkey(v.data, hk), &hv) != 0) {
        if (report)
          report(rctx, "tokens", kp[0] == 'i' ? "token index entry points to no token record"
                                              : "employee token user index entry points to no token record");
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
