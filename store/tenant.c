/* store/tenant.c — tenant records and ids (see store/tenant.h) and the
 * tenant incarnation uids (see store.h). The record is "t" + id → JSON; the
 * uid sits beside it under "u" + id so the store can create and read it
 * without parsing JSON, and so a read costs one lookup. Every write of a
 * tenant record goes through this file (the admin API's jobs call it),
 * including its settings document (validated by gateway/core/settings). */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "store/tenant.h"

int st_tenant_id_valid(const char *id) {
  size_t n = strlen(id);
  if (n < 1 || n > ST_TENANT_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-')) return 0;
  return 1;
}

/* "t" + id; k holds 80 bytes. Callers checked the id (or it came from a
 * key); a longer id is cut so the key stays in bounds. */
static size_t rec_key(const char *id, char k[80]) {
  size_t n = strlen(id);
  if (n > ST_TENANT_ID_MAX) n = ST_TENANT_ID_MAX;
  k[0] = 't';
  memcpy(k + 1, id, n);
  return n + 1;
}

/* Loads the record in any state (caller json_decref). */
static int load(st_txn *txn, const char *id, json_t **rec) {
  char k[80];
  st_val v;
  *rec = NULL;
  if (!st_tenant_id_valid(id)) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_TENANTS, k, rec_key(id, k), &v);
  if (rc) return rc;
  json_t *j = json_loadb(v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
  if (!j) return ST_ECORRUPT;
  *rec = j;
  return 0;
}

static int is_active(json_t *rec) {
  const char *s = json_string_value(json_object_get(rec, "state"));
  return s && strcmp(s, "active") == 0;
}

static int store(st_txn *txn, const char *id, json_t *rec) {
  char k[80];
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_TENANTS, k, rec_key(id, k), s, strlen(s), 0);
  free(s);
  return rc;
}

int st_tenant_get(st_txn *txn, const char *id, json_t **rec) {
  json_t *j;
  int rc = load(txn, id, &j);
  *rec = NULL;
  if (rc) return rc;
  if (!is_active(j)) {
    json_decref(j);
    return ST_ENOTFOUND;
  }
  *rec = j;
  return 0;
}

int st_tenant_active(st_txn *txn, const char *id) {
  json_t *j;
  int rc = st_tenant_get(txn, id, &j);
  json_decref(j);
  return rc == ST_ECORRUPT ? ST_ENOTFOUND : rc;
}

int st_tenant_state(st_txn *txn, const char *id, char state[16]) {
  json_t *j;
  state[0] = 0;
  int rc = load(txn, id, &j);
  if (rc) return rc;
  const char *s = json_string_value(json_object_get(j, "state"));
  size_t n = s ? strlen(s) : 0;
  if (n > 15) n = 15;
  memcpy(state, s ? s : "", n);
  state[n] = 0;
  json_decref(j);
  return 0;
}

int st_tenant_foreach(st_txn *txn, st_tenant_fn fn, void *ctx) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_TENANTS, &c);
  if (rc) return rc;
  st_cursor_seek(c, "t", 1, NULL, 0);
  st_val k, v;
  int stop = 0;
  while (!stop && st_cursor_next(c, &k, &v) == 0) {
    const char *kp = k.data;
    if (k.len < 2 || kp[0] != 't') break;
    char id[ST_TENANT_ID_MAX + 1];
    if (k.len - 1 > ST_TENANT_ID_MAX) continue;
    memcpy(id, kp + 1, k.len - 1);
    id[k.len - 1] = 0;
    json_t *r = json_loadb(v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
    if (!r) continue;
    stop = fn(ctx, id, json_string_value(json_object_get(r, "state")) ?: "", r);
    json_decref(r);
  }
  st_cursor_close(c);
  return stop;
}

int st_tenant_create(st_txn *txn, const char *id, const char *name, const char *created,
                     const char *uid) {
  char k[80];
  st_val v;
  if (!st_tenant_id_valid(id)) return ST_EINVAL;
  int rc = st_get(txn, ST_DB_TENANTS, k, rec_key(id, k), &v);
  if (rc == 0) return ST_EEXIST;
  if (rc != ST_ENOTFOUND) return rc;
  json_t *rec = json_pack("{s:s,s:s,s:s,s:s}", "id", id, "name", name, "created", created, "state", "active");
  if (!rec) return ST_ENOMEM;
  rc = store(txn, id, rec);
  json_decref(rec);
  return rc ? rc : st_tenant_uid_put(txn, id, uid);
}

/* Loads the active record, applies key=val (val stolen; NULL deletes key),
 * stores it. */
static int update(st_txn *txn, const char *id, const char *key, json_t *val) {
  json_t *rec;
  int rc = st_tenant_get(txn, id, &rec);
  if (rc) {
    json_decref(val);
    return rc;
  }
  if (val) json_object_set_new(rec, key, val);
  else json_object_del(rec, key);
  rc = store(txn, id, rec);
  json_decref(rec);
  return rc;
}

int st_tenant_rename(st_txn *txn, const char *id, const char *name) {
  return update(txn, id, "name", json_string(name));
}

int st_tenant_set_settings(st_txn *txn, const char *id, json_t *settings) {
  return update(txn, id, "settings", settings && json_object_size(settings) ? json_deep_copy(settings) : NULL);
}

int st_tenant_mark_deleting(st_txn *txn, const char *id) {
  int rc = update(txn, id, "state", json_string("deleting"));
  if (rc) return rc;
  st_tenant_event ev = {id};
  return st_emit(txn, ST_EVENT_TENANT_DELETING, &ev);
}

int st_tenant_remove(st_txn *txn, const char *id) {
  char k[80];
  int rc = st_del(txn, ST_DB_TENANTS, k, rec_key(id, k));
  if (rc && rc != ST_ENOTFOUND) return rc;
  return st_tenant_uid_del(txn, id);
}

static size_t uid_key(const char *tenant, char k[80]) {
  size_t n = strlen(tenant);
  if (n > 63) n = 63;
  k[0] = 'u';
  memcpy(k + 1, tenant, n);
  return n + 1;
}

int st_tenant_uid_get(st_txn *txn, const char *tenant, char uid[ST_TENANT_UID_LEN + 1]) {
  char k[80];
  st_val v;
  uid[0] = 0;
  int rc = st_get(txn, ST_DB_TENANTS, k, uid_key(tenant, k), &v);
  if (rc) return rc;
  if (v.len != ST_TENANT_UID_LEN) return ST_ECORRUPT;
  memcpy(uid, v.data, ST_TENANT_UID_LEN);
  uid[ST_TENANT_UID_LEN] = 0;
  return 0;
}

int st_tenant_uid_put(st_txn *txn, const char *tenant, const char *uid) {
  char k[80];
  if (strlen(uid) != ST_TENANT_UID_LEN) return ST_EINVAL;
  return st_put(txn, ST_DB_TENANTS, k, uid_key(tenant, k), uid, ST_TENANT_UID_LEN, 0);
}

int st_tenant_uid_del(st_txn *txn, const char *tenant) {
  char k[80];
  int rc = st_del(txn, ST_DB_TENANTS, k, uid_key(tenant, k));
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* store check: every tenant record has a well-formed uid, and every uid a
 * tenant record. Returns the number of problems (or a negative error). */
int st__check_tenant_uids(st_txn *txn, st_check_report_fn report, void *ctx) {
  st_cursor *c;
  st_val k, v;
  char msg[160], id[64], other[80];
  int problems = 0, rc = st_cursor_open(txn, ST_DB_TENANTS, &c);
  if (rc < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *kp = k.data;
    if (k.len < 2 || k.len > 64 || (kp[0] != 't' && kp[0] != 'u')) continue;
    memcpy(id, kp + 1, k.len - 1);
    id[k.len - 1] = 0;
    if (strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != k.len - 1) continue; /* not a tenant key */
    st_val o;
    other[0] = kp[0] == 't' ? 'u' : 't';
    memcpy(other + 1, id, k.len - 1);
    if (kp[0] == 'u' && v.len != ST_TENANT_UID_LEN) {
      snprintf(msg, sizeof msg, "tenant %.63s has a malformed incarnation uid", id);
    } else if (st_get(txn, ST_DB_TENANTS, other, k.len, &o) != 0) {
      snprintf(msg, sizeof msg, kp[0] == 't' ? "tenant %.63s has no incarnation uid"
                                             : "incarnation uid of %.63s has no tenant record", id);
    } else {
      continue;
    }
    if (report) report(ctx, "tenants", msg);
    problems++;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? problems : rc;
}

bool st_tenant_purging(st_txn *txn, const char *id) {
  char state[16];
  return st_tenant_state(txn, id, state) == 0 && !strcmp(state, "deleting");
}
