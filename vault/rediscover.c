/* vault/rediscover.c — the durable schedule of discovered connectors'
 * re-reading (see rediscover.h for the layout and the reasons). */
#include "vault/rediscover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/tenant.h"
#include "vault/vault.h"

#define KEY_MAX 128

/* "e" tenant \0 connector */
static size_t ekey(char *k, const char *tenant, const char *connector) {
  size_t tl = strlen(tenant), cl = strlen(connector);
  k[0] = 'e';
  memcpy(k + 1, tenant, tl + 1);
  memcpy(k + 2 + tl, connector, cl);
  return 2 + tl + cl;
}

/* "d" due(8, BE) tenant \0 connector */
static size_t dkey(char *k, int64_t due, const char *tenant, const char *connector) {
  k[0] = 'd';
  uint64_t u = due < 0 ? 0 : (uint64_t)due;
  for (int i = 0; i < 8; i++) k[1 + i] = (char)(u >> (56 - 8 * i));
  size_t tl = strlen(tenant), cl = strlen(connector);
  memcpy(k + 9, tenant, tl + 1);
  memcpy(k + 10 + tl, connector, cl);
  return 10 + tl + cl;
}

static bool ids_ok(const char *tenant, const char *connector) {
  return strlen(tenant) && strlen(tenant) <= 63 && vault_connector_name_valid(connector);
}

static json_t *entry_get(st_txn *txn, const char *tenant, const char *connector, int *rc) {
  char k[KEY_MAX];
  st_val v;
  *rc = st_get(txn, ST_DB_VAULT, k, ekey(k, tenant, connector), &v);
  if (*rc) return NULL;
  json_t *e = json_loadb(v.data, v.len, 0, NULL);
  if (!json_is_object(e)) {
    json_decref(e);
    *rc = ST_ECORRUPT;
    return NULL;
  }
  return e;
}

/* writes e (borrowed) as the entry, moving its due index from old_due (< 0: none) */
static int entry_put(st_txn *txn, const char *tenant, const char *connector, json_t *e, int64_t old_due) {
  char k[KEY_MAX];
  int rc;
  int64_t due = json_integer_value(json_object_get(e, "due"));
  if (old_due >= 0 && old_due != due) {
    rc = st_del(txn, ST_DB_VAULT, k, dkey(k, old_due, tenant, connector));
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  char *s = json_dumps(e, JSON_COMPACT);
  if (!s) return ST_ENOMEM;
  rc = st_put(txn, ST_DB_VAULT, k, ekey(k, tenant, connector), s, strlen(s), 0);
  free(s);
  if (rc) return rc;
  return st_put(txn, ST_DB_VAULT, k, dkey(k, due, tenant, connector), "", 0, 0);
}

int vault_rediscover_schedule(st_txn *txn, const char *tenant, const char *connector, int64_t due_ms,
                              const char *reason, bool sooner_only) {
  if (!ids_ok(tenant, connector)) return ST_EINVAL;
  int rc;
  json_t *e = entry_get(txn, tenant, connector, &rc);
  if (rc && rc != ST_ENOTFOUND) return rc;
  int64_t old = e ? json_integer_value(json_object_get(e, "due")) : -1;
  if (e && sooner_only && old <= due_ms) {
    json_decref(e);
    return 0;
  }
  if (!e) e = json_pack("{s:i}", "attempts", 0);
  json_object_set_new(e, "due", json_integer(due_ms));
  json_object_set_new(e, "reason", json_string(reason));
  rc = entry_put(txn, tenant, connector, e, old);
  json_decref(e);
  return rc;
}

int vault_rediscover_rejected(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms) {
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, tenant, connector, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *a = json_object_get(rec, "auth");
  bool dcr = json_is_true(json_object_get(a, "discover")) &&
             !strcmp(json_string_value(json_object_get(json_object_get(a, "discovered"), "registration")) ?: "", "dcr");
  json_decref(rec);
  if (!dcr) return 0;
  json_t *e = entry_get(txn, tenant, connector, &rc);
  if (rc && rc != ST_ENOTFOUND) return rc;
  int64_t due = now_ms;
  json_t *last = json_object_get(e, "last_rejected_at");
  if (json_is_integer(last) && json_integer_value(last) + VAULT_REDISCOVER_REJECTED_MIN_MS > now_ms)
    due = json_integer_value(last) + VAULT_REDISCOVER_REJECTED_MIN_MS;
  bool already = e && !strcmp(json_string_value(json_object_get(e, "reason")) ?: "", "rejected") &&
                 json_integer_value(json_object_get(e, "due")) <= due;
  json_decref(e);
  if (already) return 0;
  return vault_rediscover_schedule(txn, tenant, connector, due, "rejected", false);
}

int vault_rediscover_done(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms,
                          const char *result, const char *error, int64_t next_due_ms, const char *next_reason,
                          bool fresh) {
  if (!ids_ok(tenant, connector)) return ST_EINVAL;
  int rc;
  json_t *e = entry_get(txn, tenant, connector, &rc);
  if (rc) return rc;
  int64_t old = json_integer_value(json_object_get(e, "due"));
  bool failed = !strcmp(result, "failed");
  json_int_t attempts = json_integer_value(json_object_get(e, "attempts"));
  json_object_set_new(e, "attempts", json_integer(failed ? attempts + 1 : 0));
  json_object_set_new(e, "last_at", json_integer(now_ms));
  json_object_set_new(e, "last_result", json_string(result));
  bool owed = !strcmp(json_string_value(json_object_get(e, "reason")) ?: "", "rejected");
  if (owed && fresh) json_object_set_new(e, "last_rejected_at", json_integer(now_ms));
  if (failed && error) {
    char m[VAULT_REDISCOVER_ERROR_MAX + 1];
    snprintf(m, sizeof m, "%s", error);
    json_object_set_new(e, "last_error", json_string(m));
  } else {
    json_object_del(e, "last_error");
  }
  if (!owed || fresh) {
    json_object_set_new(e, "due", json_integer(next_due_ms > 0 ? next_due_ms : VAULT_REDISCOVER_NEVER));
    json_object_set_new(e, "reason", json_string(next_reason));
  }
  rc = entry_put(txn, tenant, connector, e, old);
  json_decref(e);
  return rc;
}

int vault_rediscover_cancel(st_txn *txn, const char *tenant, const char *connector) {
  if (!ids_ok(tenant, connector)) return 0;
  int rc;
  json_t *e = entry_get(txn, tenant, connector, &rc);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  char k[KEY_MAX];
  rc = st_del(txn, ST_DB_VAULT, k, dkey(k, json_integer_value(json_object_get(e, "due")), tenant, connector));
  json_decref(e);
  if (rc && rc != ST_ENOTFOUND) return rc;
  rc = st_del(txn, ST_DB_VAULT, k, ekey(k, tenant, connector));
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* splits a "d" key: its due and the ids; false when malformed */
static bool dkey_parse(const st_val *k, int64_t *due, char tenant[64], char connector[40]) {
  const unsigned char *p = k->data;
  if (k->len < 12 || p[0] != 'd') return false;
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = u << 8 | p[1 + i];
  *due = (int64_t)u;
  const char *t = (const char *)p + 9;
  size_t rest = k->len - 9;
  const char *nul = memchr(t, 0, rest);
  if (!nul || nul == t || (size_t)(nul - t) > 63) return false;
  size_t cl = rest - (size_t)(nul - t) - 1;
  if (!cl || cl > 32) return false;
  memcpy(tenant, t, (size_t)(nul - t));
  tenant[nul - t] = 0;
  memcpy(connector, nul + 1, cl);
  connector[cl] = 0;
  return true;
}

int vault_rediscover_next(st_txn *txn, int64_t now_ms, char tenant[64], char connector[40], char reason[16],
                          int *attempts) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, "d", 1, NULL, 0);
  st_val k;
  rc = ST_ENOTFOUND;
  while (st_cursor_next(c, &k, NULL) == 0) {
    int64_t due;
    if (!dkey_parse(&k, &due, tenant, connector)) continue; /* st_check reports it */
    if (due > now_ms) break;
    json_t *e = entry_get(txn, tenant, connector, &rc);
    if (!e) continue;
    snprintf(reason, 16, "%s", json_string_value(json_object_get(e, "reason")) ?: "scheduled");
    *attempts = (int)json_integer_value(json_object_get(e, "attempts"));
    json_decref(e);
    rc = 0;
    break;
  }
  st_cursor_close(c);
  return rc == 0 ? 0 : ST_ENOTFOUND;
}

json_t *vault_rediscover_status(st_txn *txn, const char *tenant, const char *connector) {
  int rc;
  json_t *e = entry_get(txn, tenant, connector, &rc);
  if (!e) return NULL;
  char t[32];
  json_t *out = json_object();
  int64_t due = json_integer_value(json_object_get(e, "due"));
  if (due < VAULT_REDISCOVER_NEVER) {
    vault_rfc3339(due / 1000, t);
    json_object_set_new(out, "next_check_at", json_string(t));
  }
  json_object_set(out, "reason", json_object_get(e, "reason"));
  json_object_set(out, "attempts", json_object_get(e, "attempts"));
  json_t *last = json_object_get(e, "last_at");
  if (json_is_integer(last)) {
    vault_rfc3339(json_integer_value(last) / 1000, t);
    json_object_set_new(out, "last_checked_at", json_string(t));
  }
  if (json_object_get(e, "last_result")) json_object_set(out, "last_result", json_object_get(e, "last_result"));
  if (json_object_get(e, "last_error")) json_object_set(out, "last_error", json_object_get(e, "last_error"));
  json_decref(e);
  return out;
}

int64_t vault_rediscover_backoff_ms(int attempts, int64_t cap_ms) {
  int64_t b = 60 * 1000;
  for (int i = 1; i < attempts && b < cap_ms; i++) b *= 2;
  return b < cap_ms ? b : cap_ms;
}

int vault_rediscover_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char p[KEY_MAX];
  size_t tl = strlen(tenant);
  if (!tl || tl > 63) return 0;
  p[0] = 'e';
  memcpy(p + 1, tenant, tl + 1);
  int n = 0;
  while (n < limit) {
    /* the tenant's first entry: its index key, then itself (one key at a
     * time, so any limit is kept) */
    st_cursor *c;
    int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
    if (rc) return rc;
    st_cursor_seek(c, p, tl + 2, NULL, 0);
    st_val k;
    char conn[40] = "";
    char key[KEY_MAX];
    size_t kl = 0;
    if (st_cursor_next(c, &k, NULL) == 0 && k.len <= sizeof key) {
      memcpy(key, k.data, k.len);
      kl = k.len;
      size_t cl = k.len - (tl + 2);
      if (cl <= 32) {
        memcpy(conn, (const char *)k.data + tl + 2, cl);
        conn[cl] = 0;
      }
    }
    st_cursor_close(c);
    if (!kl) break;
    json_t *e = conn[0] ? entry_get(txn, tenant, conn, &rc) : NULL;
    if (e) {
      char dk[KEY_MAX];
      rc = st_del(txn, ST_DB_VAULT, dk, dkey(dk, json_integer_value(json_object_get(e, "due")), tenant, conn));
      json_decref(e);
      if (!rc) {
        n++;
        if (n >= limit) break;
      } else if (rc != ST_ENOTFOUND) {
        return rc;
      }
    }
    if ((rc = st_del(txn, ST_DB_VAULT, key, kl))) return rc;
    n++;
  }
  return n;
}

/* st_check: every entry has its due index entry and every index entry its
 * entry, of a live tenant and an existing discovered connector. */
static int check_schedule(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  int problems = 0;
  char msg[300];
#define PROBLEM(...)                                  \
  do {                                                \
    snprintf(msg, sizeof msg, __VA_ARGS__);           \
    if (report) report(rctx, "vault", msg);           \
    problems++;                                       \
  } while (0)
  st_val k;
  st_cursor_seek(c, "d", 1, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) {
    int64_t due;
    char tenant[64], conn[40];
    if (!dkey_parse(&k, &due, tenant, conn)) {
      PROBLEM("malformed rediscovery index key");
      continue;
    }
    json_t *e = entry_get(txn, tenant, conn, &rc);
    if (!e) PROBLEM("rediscovery index of tenant %s, connector %s has no entry", tenant, conn);
    else if (json_integer_value(json_object_get(e, "due")) != due)
      PROBLEM("rediscovery index of tenant %s, connector %s is not at its entry's due time", tenant, conn);
    json_decref(e);
  }
  st_cursor_seek(c, "e", 1, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *t = (const char *)k.data + 1;
    size_t rest = k.len - 1;
    const char *nul = k.len > 2 ? memchr(t, 0, rest) : NULL;
    if (!nul || nul == t || (size_t)(nul - t) > 63 || rest - (size_t)(nul - t) - 1 > 32 ||
        rest - (size_t)(nul - t) - 1 == 0) {
      PROBLEM("malformed rediscovery entry key");
      continue;
    }
    char tenant[64], conn[40];
    memcpy(tenant, t, (size_t)(nul - t));
    tenant[nul - t] = 0;
    size_t cl = rest - (size_t)(nul - t) - 1;
    memcpy(conn, nul + 1, cl);
    conn[cl] = 0;
    json_t *e = entry_get(txn, tenant, conn, &rc);
    if (!e) {
      PROBLEM("rediscovery entry of tenant %s, connector %s is not a JSON object", tenant, conn);
      continue;
    }
    char dk[KEY_MAX];
    st_val v;
    if (st_get(txn, ST_DB_VAULT, dk, dkey(dk, json_integer_value(json_object_get(e, "due")), tenant, conn), &v))
      PROBLEM("rediscovery entry of tenant %s, connector %s has no due index entry", tenant, conn);
    json_decref(e);
    json_t *rec = NULL;
    char uid[ST_TENANT_UID_LEN + 1];
    if (st_tenant_uid_get(txn, tenant, uid) != 0)
      PROBLEM("rediscovery entry of unknown tenant %s (connector %s)", tenant, conn);
    else if (vault_connector_get(txn, tenant, conn, &rec) != 0 ||
             !json_is_true(json_object_get(json_object_get(rec, "auth"), "discover")))
      PROBLEM("rediscovery entry of tenant %s names connector %s, which is not a discovered connector", tenant, conn);
    json_decref(rec);
  }
#undef PROBLEM
  st_cursor_close(c);
  return problems;
}

int vault_rediscover_register(st_store *st) {
  int rc = st_check_add(st, check_schedule, NULL);
  if (!rc || rc == ST_EEXIST) rc = st_purge_add(st, "vault.rediscover", vault_rediscover_purge_tenant, NULL);
  return rc == ST_EEXIST ? 0 : rc;
}
