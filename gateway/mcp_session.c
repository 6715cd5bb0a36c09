/* gateway/mcp_session.c — see mcp_session.h. */
#include "gateway/mcp_session.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scim/scim.h"

static void hash_hex(const char *id, char hex[65], uint8_t raw[32]) {
  SHA256((const unsigned char *)id, strlen(id), raw);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
}

static size_t skey(const uint8_t raw[32], char *k) {
  k[0] = 's';
  memcpy(k + 1, raw, 32);
  return 33;
}

static size_t ikey(char kind, const char *tenant, const char *who, const char *hex, char *k) {
  size_t n = 0, tl = strlen(tenant), wl = strlen(who);
  k[n++] = kind;
  memcpy(k + n, tenant, tl + 1);
  n += tl + 1;
  memcpy(k + n, who, wl + 1);
  n += wl + 1;
  if (hex) {
    memcpy(k + n, hex, 64);
    n += 64;
  }
  return n;
}

int gw_session_put(st_txn *txn, const char *id, const gw_session *s, const char *now) {
  char hex[65], k[300];
  uint8_t raw[32];
  hash_hex(id, hex, raw);
  json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "tenant", s->tenant, "user", s->user, "connector",
                        s->connector, "version", s->version, "upstream", s->upstream, "client", s->client,
                        "created", now);
  char *js = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  if (!js) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_SESSIONS, k, skey(raw, k), js, strlen(js), 0);
  free(js);
  if (rc) return rc;
  if ((rc = st_put(txn, ST_DB_SESSIONS, k, ikey('u', s->tenant, s->user, hex, k), "", 0, 0))) return rc;
  if (s->connector[0]) rc = st_put(txn, ST_DB_SESSIONS, k, ikey('c', s->tenant, s->connector, hex, k), "", 0, 0);
  return rc;
}

static int load_raw(st_txn *txn, const uint8_t raw[32], gw_session *out) {
  char k[40];
  st_val v;
  int rc = st_get(txn, ST_DB_SESSIONS, k, skey(raw, k), &v);
  if (rc) return rc;
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  if (!r) return ST_ECORRUPT;
  memset(out, 0, sizeof *out);
  snprintf(out->tenant, sizeof out->tenant, "%s", json_string_value(json_object_get(r, "tenant")) ?: "");
  snprintf(out->user, sizeof out->user, "%s", json_string_value(json_object_get(r, "user")) ?: "");
  snprintf(out->connector, sizeof out->connector, "%s", json_string_value(json_object_get(r, "connector")) ?: "");
  snprintf(out->version, sizeof out->version, "%s", json_string_value(json_object_get(r, "version")) ?: "");
  snprintf(out->upstream, sizeof out->upstream, "%s", json_string_value(json_object_get(r, "upstream")) ?: "");
  snprintf(out->client, sizeof out->client, "%s", json_string_value(json_object_get(r, "client")) ?: "");
  json_decref(r);
  return 0;
}

int gw_session_get(st_txn *txn, const char *id, gw_session *out) {
  char hex[65];
  uint8_t raw[32];
  if (strncmp(id, GW_SESSION_PREFIX, strlen(GW_SESSION_PREFIX)) || strlen(id) > 128) return ST_ENOTFOUND;
  hash_hex(id, hex, raw);
  return load_raw(txn, raw, out);
}

static size_t akey(const uint8_t raw[32], const char *connector, char *k) {
  size_t cl = connector ? strlen(connector) : 0;
  k[0] = 'a';
  memcpy(k + 1, raw, 32);
  if (cl) memcpy(k + 33, connector, cl);
  return 33 + cl;
}

int gw_session_upstream_get(st_txn *txn, const char *id, const char *connector, char out[256]) {
  char hex[65], k[100];
  uint8_t raw[32];
  st_val v;
  out[0] = 0;
  hash_hex(id, hex, raw);
  int rc = st_get(txn, ST_DB_SESSIONS, k, akey(raw, connector, k), &v);
  if (rc) return rc;
  size_t n = v.len < 255 ? v.len : 255;
  memcpy(out, v.data, n);
  out[n] = 0;
  return 0;
}

int gw_session_upstream_put(st_txn *txn, const char *id, const char *connector, const char *upstream) {
  char hex[65], k[100];
  uint8_t raw[32];
  gw_session s;
  hash_hex(id, hex, raw);
  int rc = load_raw(txn, raw, &s); /* the session must still exist */
  if (rc) return rc;
  return st_put(txn, ST_DB_SESSIONS, k, akey(raw, connector, k), upstream, strlen(upstream), 0);
}

json_t *gw_session_upstreams(st_txn *txn, const char *id) {
  char hex[65], k[100];
  uint8_t raw[32];
  json_t *out = json_object();
  hash_hex(id, hex, raw);
  size_t pl = akey(raw, NULL, k);
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_SESSIONS, &c) != 0) return out;
  st_cursor_seek(c, k, pl, NULL, 0);
  st_val ak, av;
  while (st_cursor_next(c, &ak, &av) == 0) {
    char conn[64], up[256];
    size_t cl = ak.len - pl < sizeof conn - 1 ? ak.len - pl : sizeof conn - 1;
    memcpy(conn, (const char *)ak.data + pl, cl);
    conn[cl] = 0;
    size_t ul = av.len < sizeof up - 1 ? av.len : sizeof up - 1;
    memcpy(up, av.data, ul);
    up[ul] = 0;
    json_object_set_new(out, conn, json_string(up));
  }
  st_cursor_close(c);
  return out;
}

static int delete_raw(st_txn *txn, const uint8_t raw[32], const char *hex) {
  gw_session s;
  int rc = load_raw(txn, raw, &s);
  if (rc) return rc;
  char k[300];
  if ((rc = st_del(txn, ST_DB_SESSIONS, k, skey(raw, k)))) return rc;
  /* the aggregated session's upstream session ids */
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_SESSIONS, &c))) return rc;
    st_cursor_seek(c, k, akey(raw, NULL, k), NULL, 0);
    st_val ak;
    rc = st_cursor_next(c, &ak, NULL);
    char key[200];
    size_t kl = rc == 0 && ak.len < sizeof key ? ak.len : 0;
    if (kl) memcpy(key, ak.data, kl);
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) break;
    if (rc) return rc;
    if (!kl || (rc = st_del(txn, ST_DB_SESSIONS, key, kl))) return rc ? rc : ST_ECORRUPT;
  }
  rc = st_del(txn, ST_DB_SESSIONS, k, ikey('u', s.tenant, s.user, hex, k));
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (s.connector[0]) {
    rc = st_del(txn, ST_DB_SESSIONS, k, ikey('c', s.tenant, s.connector, hex, k));
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

int gw_session_delete(st_txn *txn, const char *id) {
  char hex[65];
  uint8_t raw[32];
  hash_hex(id, hex, raw);
  return delete_raw(txn, raw, hex);
}

/* Deletes the sessions listed under an index prefix. */
static int delete_under(st_txn *txn, const char *prefix, size_t pl, int limit) {
  int n = 0, rc;
  while (!limit || n < limit) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_SESSIONS, &c))) return rc;
    st_cursor_seek(c, prefix, pl, NULL, 0);
    st_val k;
    rc = st_cursor_next(c, &k, NULL);
    char hex[65] = "", key[300];
    size_t kl = 0;
    if (rc == 0 && k.len >= 64 && k.len < sizeof key) {
      memcpy(hex, (const char *)k.data + k.len - 64, 64);
      kl = k.len;
      memcpy(key, k.data, kl);
    }
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) return n;
    if (rc) return rc;
    uint8_t raw[32];
    for (int i = 0; i < 32; i++) {
      unsigned int b = 0;
      sscanf(hex + 2 * i, "%2x", &b);
      raw[i] = (uint8_t)b;
    }
    rc = delete_raw(txn, raw, hex);
    if (rc == ST_ENOTFOUND) rc = kl ? st_del(txn, ST_DB_SESSIONS, key, kl) : ST_ECORRUPT;
    if (rc) return rc;
    n++;
  }
  return n;
}

int gw_sessions_delete_user(st_txn *txn, const char *tenant, const char *user) {
  char p[200];
  return delete_under(txn, p, ikey('u', tenant, user, NULL, p), 0);
}

int gw_sessions_delete_connector(st_txn *txn, const char *tenant, const char *connector) {
  char p[200];
  return delete_under(txn, p, ikey('c', tenant, connector, NULL, p), 0);
}

int gw_sessions_drop_upstream_connector(st_txn *txn, const char *tenant, const char *connector) {
  /* every session of the tenant is under "u" tenant \0 user \0 hexhash */
  char p[80];
  size_t tl = strlen(tenant);
  if (tl + 2 > sizeof p) return ST_EINVAL;
  p[0] = 'u';
  memcpy(p + 1, tenant, tl + 1);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_SESSIONS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, tl + 2, NULL, 0);
  int n = 0;
  st_val k;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len < tl + 2 + 64) continue;
    uint8_t raw[32];
    const char *hex = (const char *)k.data + k.len - 64;
    for (int i = 0; i < 32; i++) {
      unsigned int b = 0;
      sscanf(hex + 2 * i, "%2x", &b);
      raw[i] = (uint8_t)b;
    }
    /* k is not used past this point: the delete may move pages */
    char ak[100];
    int d = st_del(txn, ST_DB_SESSIONS, ak, akey(raw, connector, ak));
    if (d == 0) n++;
    else if (d != ST_ENOTFOUND) {
      rc = d;
      break;
    }
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? n : rc;
}

int gw_sessions_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char p[80];
  size_t tl = strlen(tenant);
  p[0] = 'u';
  memcpy(p + 1, tenant, tl + 1);
  return delete_under(txn, p, tl + 2, limit);
}

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  (void)kind;
  (void)ctx;
  int n = gw_sessions_delete_user(txn, ev->tenant, ev->id);
  return n < 0 ? n : 0;
}

int gw_sessions_register_hooks(st_store *st) {
  int rc = st_hook_add(st, SCIM_EV_USER_DEACTIVATED, on_user_gone, NULL);
  return rc ? rc : st_hook_add(st, SCIM_EV_USER_DELETED, on_user_gone, NULL);
}
