/* gateway/mcp/mcp_session.c — see mcp_session.h (record layout, expiry, the
 * purge and the per-user cap are described there). */
#include "gateway/mcp/mcp_session.h"
#include "gateway/base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "policy/approval.h"
#include "store/tenant.h"
#include "scim/scim.h"

#define TOUCH_INTERVAL_MS 60000 /* at most one used_ms write a minute per session */
#define PURGE_SCAN 1000         /* "s" records one purge job reads */
#define PURGE_BATCH 100         /* sessions one purge job deletes */

const gw_setting gw_session_settings[] = {
    {"session_idle_timeout_ms", GW_SETTING_INT, 0, 365LL * 86400000, 0,
     "an MCP session of this tenant unused this long is gone; tightens the operator's "
     "session_idle_timeout_ms (0: the operator's value; otherwise at least 100, the operator's floor)",
     100, NULL, false, false},
    {"sessions_per_user_max", GW_SETTING_INT, 0, 100000, 0,
     "a user of this tenant keeps at most this many MCP sessions (the oldest go); tightens the "
     "operator's sessions_per_user_max (0: the operator's value)",
     0, NULL, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

/* min(tenant, operator); a tenant value of 0 (unset) is the operator's. */
static int64_t tighter(int64_t tenant, int64_t op) { return tenant > 0 && tenant < op ? tenant : op; }

/* "2025-01-02T03:04:05Z" → unix ms at the END of that second (a stamp read
 * from whole seconds must never make a session look older than it is);
 * 0 when it does not parse. */
static int64_t rfc3339_end_ms(const char *t) {
  struct tm tm = {0};
  const char *e = t ? strptime(t, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
  if (!e) return 0;
  return (int64_t)timegm(&tm) * 1000 + 999;
}

static void hash_hex(const char *id, char hex[65], uint8_t raw[32]) {
  static const char digits[] = "0123456789abcdef";
  if (st_sha256(id, strlen(id), raw) != 0) memset(raw, 0, 32); /* no key matches: "not found" */
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[raw[i] >> 4];
    hex[2 * i + 1] = digits[raw[i] & 15];
  }
  hex[64] = '\0';
}

void gw_session_hex(const char *id, char hex[65]) {
  uint8_t raw[32];
  hash_hex(id, hex, raw);
}

static void hex_raw(const char *hex, uint8_t raw[32]);

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
  int64_t created = s->created_ms ? s->created_ms : rfc3339_end_ms(now);
  /* the cap this creation evicts by (on_session_created), kept with the
   * record: the maps bound a user's entries by their newest session's */
  int64_t tenant_max = 0;
  gw_settings_get_int(txn, s->tenant, "sessions_per_user_max", &tenant_max);
  json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "tenant", s->tenant, "user", s->user,
                        "connector", s->connector, "version", s->version, "upstream", s->upstream, "client",
                        s->client, "created", now, "created_ms", (json_int_t)created, "used_ms",
                        (json_int_t)created);
  if (r && tenant_max > 0 && json_object_set_new(r, "user_max", json_integer((json_int_t)tenant_max))) {
    json_decref(r);
    r = NULL;
  }
  char *js = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  if (!js) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_SESSIONS, k, skey(raw, k), js, strlen(js), 0);
  free(js);
  if (rc) return rc;
  /* the user's index entry carries the creation time (8 bytes, big
   * endian): the cap's eviction orders a user's sessions by it without
   * loading each record (on_session_created; entries of earlier releases
   * are empty, and their records are loaded) */
  uint8_t cms[8];
  for (int i = 0; i < 8; i++) cms[i] = (uint8_t)((uint64_t)created >> (56 - 8 * i));
  if ((rc = st_put(txn, ST_DB_SESSIONS, k, ikey('u', s->tenant, s->user, hex, k), cms, sizeof cms, 0))) return rc;
  if (s->connector[0] && (rc = st_put(txn, ST_DB_SESSIONS, k, ikey('c', s->tenant, s->connector, hex, k), "", 0, 0)))
    return rc;
  gw_session_event ev = {s->tenant, s->user, hex, tenant_max};
  rc = st_emit(txn, GW_EV_SESSION_CREATED, &ev);
  return rc < 0 ? rc : 0;
}

static int load_raw(st_txn *txn, const uint8_t raw[32], gw_session *out) {
  char k[40];
  st_val v;
  int rc = st_get(txn, ST_DB_SESSIONS, k, skey(raw, k), &v);
  if (rc) return rc;
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  if (!r) return ST_ECORRUPT;
  memset(out, 0, sizeof *out);
  gw_strlcpy(out->tenant, json_string_value(json_object_get(r, "tenant")) ?: "", sizeof out->tenant);
  gw_strlcpy(out->user, json_string_value(json_object_get(r, "user")) ?: "", sizeof out->user);
  gw_strlcpy(out->connector, json_string_value(json_object_get(r, "connector")) ?: "", sizeof out->connector);
  gw_strlcpy(out->version, json_string_value(json_object_get(r, "version")) ?: "", sizeof out->version);
  gw_strlcpy(out->upstream, json_string_value(json_object_get(r, "upstream")) ?: "", sizeof out->upstream);
  gw_strlcpy(out->client, json_string_value(json_object_get(r, "client")) ?: "", sizeof out->client);
  /* records of the previous release have only "created" */
  json_t *cm = json_object_get(r, "created_ms"), *um = json_object_get(r, "used_ms");
  out->created_ms = json_is_integer(cm) ? (int64_t)json_integer_value(cm)
                                        : rfc3339_end_ms(json_string_value(json_object_get(r, "created")));
  out->used_ms = json_is_integer(um) ? (int64_t)json_integer_value(um) : out->created_ms;
  json_t *ux = json_object_get(r, "user_max");
  out->user_max = json_is_integer(ux) && json_integer_value(ux) > 0 ? (int64_t)json_integer_value(ux) : 0;
  json_decref(r);
  gw_settings_get_int(txn, out->tenant, "session_idle_timeout_ms", &out->tenant_idle_ms);
  return 0;
}

bool gw_session_expired(const gw_session *s, int64_t now_ms, const gw_session_limits *lim) {
  /* a record without any readable stamp is as old as can be: refused */
  return now_ms - s->used_ms > tighter(s->tenant_idle_ms, lim->idle_ms) || now_ms - s->created_ms > lim->max_age_ms;
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

static json_t *upstreams_raw(st_txn *txn, const uint8_t raw[32]);

json_t *gw_session_upstreams(st_txn *txn, const char *id) {
  char hex[65];
  uint8_t raw[32];
  hash_hex(id, hex, raw);
  return upstreams_raw(txn, raw);
}

static json_t *upstreams_raw(st_txn *txn, const uint8_t raw[32]) {
  char k[100];
  json_t *out = json_object();
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

static bool told(const gw_session_obs *obs) { return obs && obs->fn; }

static int delete_loaded(st_txn *txn, const uint8_t raw[32], const char *hex, const gw_session_obs *obs,
                         const gw_session *sp);

static int delete_raw(st_txn *txn, const uint8_t raw[32], const char *hex, const gw_session_obs *obs) {
  gw_session s;
  int rc = load_raw(txn, raw, &s);
  if (rc) return rc;
  return delete_loaded(txn, raw, hex, obs, &s);
}

/* delete_raw, and the approval requests made in the session that are
 * still pending are cancelled (policy/approval.h), naming why it ended:
 * an expiry or an eviction ends a session as its client's DELETE does
 * (endpoint.c), so no reviewer approves a call of a session that is gone
 * and a call held in it is told why, on every loop (the cancel's
 * AP_EV_DECIDED, held.c). */
static int delete_ending(st_txn *txn, const uint8_t raw[32], const char *hex, const gw_session_obs *obs,
                         ap_session_end why, int64_t now_ms) {
  gw_session s;
  int rc = load_raw(txn, raw, &s);
  if (!rc) rc = delete_loaded(txn, raw, hex, obs, &s);
  if (!rc) rc = ap_session_gone(txn, s.tenant, s.user, hex, why, now_ms);
  return rc < 0 ? rc : 0;
}

static int delete_loaded(st_txn *txn, const uint8_t raw[32], const char *hex, const gw_session_obs *obs,
                         const gw_session *sp) {
  const gw_session s = *sp;
  int rc;
  char k[300];
  if ((rc = st_del(txn, ST_DB_SESSIONS, k, skey(raw, k)))) return rc;
  /* a single-connector session's upstream session goes with it */
  if (told(obs) && s.connector[0] && s.upstream[0])
    obs->fn(obs->ctx, txn, s.tenant, s.user, s.connector, s.upstream, s.version);
  /* the aggregated session's upstream session ids */
  size_t pl = akey(raw, NULL, k);
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_SESSIONS, &c))) return rc;
    st_cursor_seek(c, k, pl, NULL, 0);
    st_val ak, av;
    rc = st_cursor_next(c, &ak, told(obs) ? &av : NULL);
    char key[200], up[256] = "";
    size_t kl = rc == 0 && ak.len < sizeof key ? ak.len : 0;
    if (kl) memcpy(key, ak.data, kl);
    if (kl && told(obs)) {
      size_t ul = av.len < sizeof up - 1 ? av.len : sizeof up - 1;
      memcpy(up, av.data, ul);
      up[ul] = 0;
    }
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) break;
    if (rc) return rc;
    if (!kl) return ST_ECORRUPT;
    if ((rc = st_del(txn, ST_DB_SESSIONS, key, kl))) return rc;
    if (up[0] && kl > pl && kl - pl < 64) { /* told once it went (no cursor open) */
      char conn[64];
      memcpy(conn, key + pl, kl - pl);
      conn[kl - pl] = 0;
      obs->fn(obs->ctx, txn, s.tenant, s.user, conn, up, s.version);
    }
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
  return delete_raw(txn, raw, hex, NULL);
}

/* Deletes the sessions listed under an index prefix. */
static int delete_under(st_txn *txn, const char *prefix, size_t pl, int limit, const gw_session_obs *obs) {
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
    hex_raw(hex, raw);
    rc = delete_raw(txn, raw, hex, obs);
    if (rc == ST_ENOTFOUND) rc = kl ? st_del(txn, ST_DB_SESSIONS, key, kl) : ST_ECORRUPT;
    if (rc) return rc;
    n++;
  }
  return n;
}

int gw_sessions_delete_user(st_txn *txn, const char *tenant, const char *user, const gw_session_obs *obs) {
  char p[200];
  return delete_under(txn, p, ikey('u', tenant, user, NULL, p), 0, obs);
}

/* (what goes upstream was collected before the change: usess_end.c's
 * ST_EVENT_CREDENTIAL_ENDING hook) */
int gw_sessions_delete_connector(st_txn *txn, const char *tenant, const char *connector) {
  char p[200];
  return delete_under(txn, p, ikey('c', tenant, connector, NULL, p), 0, NULL);
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

int gw_sessions_upstreams_of(st_txn *txn, const char *tenant, const char *user, const char *connector,
                             gw_session_upstream_fn fn, void *ctx) {
  char p[GW_SESSION_UKEY_MAX];
  size_t tl = strlen(tenant), ul = user ? strlen(user) : 0;
  if (tl + ul + 3 > sizeof p || strlen(connector) > 64) return ST_EINVAL;
  size_t pl = user ? ikey('u', tenant, user, NULL, p) : (p[0] = 'u', memcpy(p + 1, tenant, tl + 1), tl + 2);
  st_cursor *cur;
  int rc = st_cursor_open(txn, ST_DB_SESSIONS, &cur);
  if (rc) return rc;
  st_cursor_seek(cur, p, pl, NULL, 0);
  st_val k;
  bool go = true;
  /* only reads below: the cursor stays valid */
  while (go && (rc = st_cursor_next(cur, &k, NULL)) == 0) {
    /* "u" tenant \0 user \0 hex64 */
    const char *key = k.data, *who = key + tl + 2;
    const char *nul = k.len > tl + 2 ? memchr(who, 0, k.len - (tl + 2)) : NULL;
    if (!nul || (size_t)(key + k.len - (nul + 1)) != 64 || (size_t)(nul - who) >= 40) continue;
    char u[40], hex[65], ck[300];
    memcpy(u, who, (size_t)(nul - who));
    u[nul - who] = 0;
    memcpy(hex, nul + 1, 64);
    hex[64] = 0;
    uint8_t raw[32];
    hex_raw(hex, raw);
    st_val v;
    char up[256] = "";
    /* an aggregated session's id for the connector, or a single-connector
     * session of it (its "c" index entry) */
    int g = st_get(txn, ST_DB_SESSIONS, ck, akey(raw, connector, ck), &v);
    if (g == 0) {
      size_t n = v.len < sizeof up - 1 ? v.len : sizeof up - 1;
      memcpy(up, v.data, n);
      up[n] = 0;
    } else if (g == ST_ENOTFOUND) {
      g = st_get(txn, ST_DB_SESSIONS, ck, ikey('c', tenant, connector, hex, ck), &v);
    }
    if (g == ST_ENOTFOUND) continue;
    if (g) {
      rc = g;
      break;
    }
    gw_session s;
    g = load_raw(txn, raw, &s);
    if (g == ST_ENOTFOUND || g == ST_ECORRUPT) continue; /* not ours to mend here */
    if (g) {
      rc = g;
      break;
    }
    if (!up[0] && !strcmp(s.connector, connector)) memcpy(up, s.upstream, sizeof up);
    if (up[0]) go = fn(ctx, u, up, s.version);
  }
  st_cursor_close(cur);
  return rc == 0 || rc == ST_ENOTFOUND ? 0 : rc;
}

/* ---------- the per-connector cut (store half) ---------- */

typedef struct cut_entry {
  char user[40];
  char hex[65];
} cut_entry;

int gw_sessions_cut_step(st_txn *txn, gw_session_cut *c) {
  c->nlen = 0;
  c->more = false;
  c->read = c->cut = 0;
  char p[GW_SESSION_UKEY_MAX];
  size_t tl = strlen(c->tenant), ul = c->user ? strlen(c->user) : 0;
  if (c->budget < 1 || tl + ul + 3 > sizeof p || c->flen + 1 > GW_SESSION_UKEY_MAX) return ST_EINVAL;
  size_t pl = c->user ? ikey('u', c->tenant, c->user, NULL, p) : (p[0] = 'u', memcpy(p + 1, c->tenant, tl + 1), tl + 2);
  cut_entry *e = malloc((size_t)c->budget * sizeof *e);
  if (!e) return ST_ENOMEM;
  /* first the keys (the deletes below must not run under the cursor) */
  st_cursor *cur;
  int rc = st_cursor_open(txn, ST_DB_SESSIONS, &cur);
  if (rc) {
    free(e);
    return rc;
  }
  /* strictly after `from`: from + "\0" is the smallest key greater than it */
  uint8_t after[GW_SESSION_UKEY_MAX];
  if (c->flen) {
    memcpy(after, c->from, c->flen);
    after[c->flen] = 0;
  }
  st_cursor_seek(cur, p, pl, c->flen ? after : NULL, c->flen ? c->flen + 1 : 0);
  int n = 0;
  st_val k;
  while (c->read < c->budget && (rc = st_cursor_next(cur, &k, NULL)) == 0) {
    c->read++;
    if (k.len <= sizeof c->next) {
      memcpy(c->next, k.data, k.len);
      c->nlen = k.len;
    }
    /* "u" tenant \0 user \0 hex64 */
    const char *key = k.data, *user = key + tl + 2;
    size_t rest = k.len - (tl + 2);
    const char *nul = k.len > tl + 2 ? memchr(user, 0, rest) : NULL;
    if (!nul || (size_t)(key + k.len - (nul + 1)) != 64 || (size_t)(nul - user) >= sizeof e[n].user) continue;
    memcpy(e[n].user, user, (size_t)(nul - user) + 1);
    memcpy(e[n].hex, nul + 1, 64);
    e[n].hex[64] = 0;
    n++;
  }
  st_cursor_close(cur);
  if (rc != 0 && rc != ST_ENOTFOUND) {
    free(e);
    return rc;
  }
  c->more = rc == 0; /* stopped at the budget */
  rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    uint8_t raw[32];
    hex_raw(e[i].hex, raw);
    gw_session s;
    rc = load_raw(txn, raw, &s);
    /* an index entry without its record, or a record that does not parse
     * (unusable: gw_session_get refuses it): not ours to mend here */
    if (rc == ST_ENOTFOUND || rc == ST_ECORRUPT) {
      rc = 0;
      continue;
    }
    if (rc) break;
    if (s.connector[0]) {
      if (c->hidden(c->ctx, txn, e[i].user, s.connector)) {
        if ((rc = delete_raw(txn, raw, e[i].hex, c->obs)) == 0) c->cut++;
      }
      continue;
    }
    json_t *ups = upstreams_raw(txn, raw);
    const char *conn;
    json_t *up;
    json_object_foreach(ups, conn, up) {
      if (!c->hidden(c->ctx, txn, e[i].user, conn)) continue;
      char ak[100];
      int d = st_del(txn, ST_DB_SESSIONS, ak, akey(raw, conn, ak));
      if (d == 0 && told(c->obs)) c->obs->fn(c->obs->ctx, txn, s.tenant, e[i].user, conn, json_string_value(up), s.version);
      if (d == 0) c->cut++;
      else if (d != ST_ENOTFOUND) {
        rc = d;
        break;
      }
    }
    json_decref(ups);
  }
  free(e);
  return rc;
}

int gw_sessions_purge_tenant_obs(st_txn *txn, const char *tenant, int limit, const gw_session_obs *obs) {
  char p[80];
  size_t tl = strlen(tenant);
  p[0] = 'u';
  memcpy(p + 1, tenant, tl + 1);
  return delete_under(txn, p, tl + 2, limit, obs);
}

int gw_sessions_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  return gw_sessions_purge_tenant_obs(txn, tenant, limit, NULL);
}

static int hex_nibble(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0;
}

/* 64 hex digits to their 32 bytes (not a digit: 0, as sscanf's %2x
 * left it; a hot path of the cap's eviction, where sscanf cost a tenth of
 * the writer's time under an initialize flood). */
static void hex_raw(const char *hex, uint8_t raw[32]) {
  for (int i = 0; i < 32; i++) raw[i] = (uint8_t)(hex_nibble(hex[2 * i]) << 4 | hex_nibble(hex[2 * i + 1]));
}

/* ---------- per-user cap ---------- */

typedef struct owned {
  char hex[65];
  int64_t created_ms;
  bool stamped; /* created_ms came with the index entry */
} owned;

static int cmp_owned(const void *a, const void *b) {
  const owned *x = a, *y = b;
  if (x->created_ms != y->created_ms) return x->created_ms < y->created_ms ? -1 : 1;
  return strcmp(x->hex, y->hex);
}

/* GW_EV_SESSION_CREATED: past the cap, the user's oldest sessions (by
 * creation) go in the creating transaction. Reads the user's index once
 * (normally cap + 1 entries; more only right after the cap was lowered,
 * and then all the excess goes at once). */
static int on_session_created(st_txn *txn, int kind, const void *event, void *ctx) {
  const gw_session_event *ev = event;
  gw_server *srv = ctx;
  const gw_session_limits *lim = gw_sessions_limits(srv);
  (void)kind;
  char p[200];
  size_t pl = ikey('u', ev->tenant, ev->user, NULL, p);
  owned *v = NULL;
  size_t n = 0, cap = 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_SESSIONS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, val;
  while ((rc = st_cursor_next(c, &k, &val)) == 0) {
    if (k.len != pl + 64) continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 80;
      owned *nv = realloc(v, ncap * sizeof *nv);
      if (!nv) {
        rc = ST_ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    memcpy(v[n].hex, (const char *)k.data + pl, 64);
    v[n].hex[64] = 0;
    v[n].stamped = val.len == 8;
    if (v[n].stamped) {
      uint64_t cms = 0;
      for (int i = 0; i < 8; i++) cms = cms << 8 | ((const uint8_t *)val.data)[i];
      v[n].created_ms = (int64_t)cms;
    }
    n++;
  }
  st_cursor_close(c);
  if (rc != ST_ENOTFOUND) {
    free(v);
    return rc;
  }
  rc = 0;
  const size_t max = (size_t)tighter(ev->tenant_max, lim->per_user_max); /* read by gw_session_put */
  if (n > max) {
    /* what the evicted sessions hold upstream is ended there */
    gw_usess_col *col = gw__usess_col_new(srv);
    gw_session_obs obs = {col ? gw__usess_col_add : NULL, col};
    /* stamps are read after the scan: the cursor's pointers are gone */
    for (size_t i = 0; i < n; i++) {
      if (!v[i].stamped) { /* an entry of an earlier release: its record says */
        gw_session s;
        uint8_t raw[32];
        hex_raw(v[i].hex, raw);
        /* an index entry without a record sorts first: it goes */
        v[i].created_ms = load_raw(txn, raw, &s) == 0 ? s.created_ms : INT64_MIN;
      }
      if (!strcmp(v[i].hex, ev->hex)) v[i].created_ms = INT64_MAX; /* the new one stays */
    }
    qsort(v, n, sizeof *v, cmp_owned);
    for (size_t i = 0; i + max < n && !rc; i++) {
      uint8_t raw[32];
      hex_raw(v[i].hex, raw);
      rc = delete_ending(txn, raw, v[i].hex, &obs, AP_SESSION_EVICTED, gw_wall_ms());
      if (rc == ST_ENOTFOUND) {
        char ik[300];
        rc = st_del(txn, ST_DB_SESSIONS, ik, ikey('u', ev->tenant, ev->user, v[i].hex, ik));
      }
    }
    gw__usess_col_done(col, txn); /* a failed creation rolls back: discarded */
  }
  free(v);
  return rc;
}

int gw_sessions_register_limits(st_store *st, gw_server *srv) {
  return st_hook_add(st, GW_EV_SESSION_CREATED, on_session_created, srv);
}

/* ---------- expiry purge (writer side) ---------- */

int gw_sessions_purge_expired(st_txn *txn, const void *from, size_t flen, int64_t now_ms,
                              const gw_session_limits *lim, int scan, int batch, uint8_t next[33], bool *more,
                              const gw_session_obs *obs) {
  uint8_t (*gone)[32] = malloc((size_t)batch * sizeof *gone);
  if (!gone) return ST_ENOMEM;
  int ngone = 0, nscan = 0, rc;
  char last_tenant[64] = "";
  int64_t last_idle = 0;
  *more = false;
  st_cursor *c;
  if ((rc = st_cursor_open(txn, ST_DB_SESSIONS, &c))) {
    free(gone);
    return rc;
  }
  /* strictly after `from`: every "s" key is 33 bytes, so from + "\0" is the
   * smallest key greater than it */
  uint8_t after[34];
  if (flen == 33) {
    memcpy(after, from, 33);
    after[33] = 0;
  }
  st_cursor_seek(c, "s", 1, flen == 33 ? after : NULL, flen == 33 ? 34 : 0);
  st_val k, v;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    if (k.len != 33) continue;
    memcpy(next, k.data, 33);
    nscan++;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    gw_session s = {0};
    json_t *cm = json_object_get(r, "created_ms"), *um = json_object_get(r, "used_ms");
    s.created_ms = json_is_integer(cm) ? (int64_t)json_integer_value(cm)
                                       : rfc3339_end_ms(json_string_value(json_object_get(r, "created")));
    s.used_ms = json_is_integer(um) ? (int64_t)json_integer_value(um) : s.created_ms;
    /* the tenant's idle timeout, looked up once per run of one tenant's records */
    const char *ten = json_string_value(json_object_get(r, "tenant"));
    if (ten && strcmp(ten, last_tenant)) {
      gw_strlcpy(last_tenant, ten, sizeof last_tenant);
      last_idle = 0;
      gw_settings_get_int(txn, last_tenant, "session_idle_timeout_ms", &last_idle);
    }
    s.tenant_idle_ms = ten ? last_idle : 0;
    json_decref(r);
    if (r && gw_session_expired(&s, now_ms, lim)) memcpy(gone[ngone++], (const uint8_t *)k.data + 1, 32);
    if (ngone >= batch || nscan >= scan) {
      *more = true;
      break;
    }
  }
  st_cursor_close(c);
  if (rc != 0 && rc != ST_ENOTFOUND) {
    free(gone);
    return rc;
  }
  rc = 0;
  for (int i = 0; i < ngone && !rc; i++) {
    char hex[65];
    for (int b = 0; b < 32; b++) snprintf(hex + 2 * b, 3, "%02x", gone[i][b]);
    rc = delete_ending(txn, gone[i], hex, obs, AP_SESSION_EXPIRED, now_ms);
    if (rc == ST_ENOTFOUND) rc = 0;
  }
  free(gone);
  return rc ? rc : ngone;
}

/* A user cut: their sessions go, and what those hold upstream is ended
 * there after the commit (usess_end.c rule 7) — collected here, before
 * vault's hook (registered after this one: gateway/modules.c) cuts the
 * person's own grants, so a session opened with one is ended with it.
 * The collection never fails the cut. */
static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  (void)kind;
  gw_usess_col *col = gw__usess_col_new(ctx);
  gw_session_obs obs = {col ? gw__usess_col_add : NULL, col};
  int n = gw_sessions_delete_user(txn, ev->tenant, ev->id, &obs);
  gw__usess_col_done(col, txn); /* a failed cut rolls back: discarded */
  return n < 0 ? n : 0;
}

int gw_sessions_register_hooks(st_store *st, gw_server *srv) { return st_dir_hook_user_cut(st, on_user_gone, srv); }

/* ---------- loop side: last use, and the purge driver ---------- */

int64_t gw_session_now_ms(void) { return gw_wall_ms(); }

/* Never more than once a minute; with a short idle timeout (tests, strict
 * operators) a quarter of it, so a session in use is never judged idle. */
static int64_t touch_interval_ms(int64_t idle_ms) {
  int64_t q = idle_ms / 4;
  return q < TOUCH_INTERVAL_MS ? q : TOUCH_INTERVAL_MS;
}

typedef struct touch_job {
  uint8_t raw[32];
  int64_t used_ms, interval_ms;
} touch_job;

static int job_session_touch(st_txn *txn, void *arg) {
  touch_job *t = arg;
  char k[40];
  st_val v;
  size_t kl = skey(t->raw, k);
  int rc = st_get(txn, ST_DB_SESSIONS, k, kl, &v);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc; /* deleted meanwhile: never revived */
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  if (!json_is_object(r)) {
    json_decref(r);
    return 0;
  }
  /* several requests may have seen the same old stamp: one write */
  json_t *um = json_object_get(r, "used_ms");
  if (json_is_integer(um) && (int64_t)json_integer_value(um) > t->used_ms - t->interval_ms) {
    json_decref(r);
    return 0;
  }
  json_object_set_new(r, "used_ms", json_integer((json_int_t)t->used_ms));
  char *js = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(r);
  if (!js) return ST_ENOMEM;
  rc = st_put(txn, ST_DB_SESSIONS, k, kl, js, strlen(js), 0);
  free(js);
  return rc;
}

static void touch_done(int status, void *arg) {
  if (status < 0) GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "session last-use not recorded: %s", st_strerror(status));
  free(arg);
}

void gw_session_touch(gw_loop *lp, const char *id, const gw_session *s, int64_t now_ms) {
  const gw_session_limits *lim = gw_sessions_limits(lp->srv);
  int64_t iv = touch_interval_ms(tighter(s->tenant_idle_ms, lim->idle_ms));
  if (now_ms - s->used_ms < iv) return;
  touch_job *t = calloc(1, sizeof *t);
  if (!t) return;
  char hex[65];
  hash_hex(id, hex, t->raw);
  t->used_ms = now_ms;
  t->interval_ms = iv;
  /* a lost touch only makes the session look idle earlier: best effort */
  if (gw_loop_submit_bulk(lp, job_session_touch, touch_done, t) != 0) free(t);
}

struct gw_session_purge {
  gw_loop *lp;
  uv_timer_t timer;
  bool running;  /* a purge job is with the writer */
  bool orphaned; /* stopped while running: the done callback frees */
  /* the job's arg: inputs (from, now) and outputs (next, more, purged) */
  uint8_t from[33], next[33];
  size_t flen;
  int64_t now_ms;
  bool more;
  int purged;
  int total; /* this pass */
};

/* One step; what the expired sessions hold upstream is ended there after
 * its commit (usess_end.c rule 7). */
static int job_purge(st_txn *txn, void *arg) {
  struct gw_session_purge *p = arg;
  gw_usess_col *col = gw__usess_col_new(p->lp->srv);
  gw_session_obs obs = {col ? gw__usess_col_add : NULL, col};
  int n = gw_sessions_purge_expired(txn, p->from, p->flen, p->now_ms, gw_sessions_limits(p->lp->srv), PURGE_SCAN,
                                    PURGE_BATCH, p->next, &p->more, &obs);
  gw__usess_col_done(col, txn);
  p->purged = n > 0 ? n : 0;
  return n < 0 ? n : 0;
}

static void purge_done(int status, void *arg) {
  struct gw_session_purge *p = arg;
  p->running = false;
  if (p->orphaned) {
    free(p);
    return;
  }
  if (status < 0) {
    GW_LOG(GW_LOG_ERROR, "mcp", NULL, "session purge step failed: %s (retried next interval)", st_strerror(status));
    return;
  }
  p->total += p->purged;
  if (p->more && !p->lp->draining) {
    /* the next bounded step, from where this one stopped */
    memcpy(p->from, p->next, 33);
    p->flen = 33;
    if (gw_loop_submit(p->lp, job_purge, purge_done, p) == 0) {
      p->running = true;
      return;
    }
  }
  if (p->total) GW_LOG(GW_LOG_INFO, "mcp", NULL, "purged %d expired session(s)", p->total);
}

static void on_purge_timer(uv_timer_t *t) {
  struct gw_session_purge *p = t->data;
  if (p->lp->draining) return;
  /* streams of sessions gone since the last tick end now */
  gw_proxy_end_lost_sessions(p->lp);
  /* the store's purge is the process's: the primary runs it */
  if (p->running || p->lp->index != 0) return;
  p->flen = 0;
  p->total = 0;
  p->now_ms = gw_session_now_ms();
  if (gw_loop_submit(p->lp, job_purge, purge_done, p) == 0) p->running = true;
}

int gw_sessions_loop_start(gw_loop *lp) {
  struct gw_session_purge *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->lp = lp;
  uv_timer_init(&lp->loop, &p->timer);
  p->timer.data = p;
  uint64_t iv = (uint64_t)gw_sessions_limits(lp->srv)->purge_interval_ms;
  uv_timer_start(&p->timer, on_purge_timer, iv, iv);
  lp->sess_purge = p;
  return 0;
}

static void on_purge_timer_closed(uv_handle_t *h) {
  struct gw_session_purge *p = h->data;
  /* a job still with the writer writes into p: its done callback frees it
   * (or, if the port closed first, p stays: a small leak, never a write
   * into freed memory) */
  if (p->running) p->orphaned = true;
  else free(p);
}

void gw_sessions_loop_stop(gw_loop *lp) {
  struct gw_session_purge *p = lp->sess_purge;
  if (!p) return;
  lp->sess_purge = NULL;
  uv_close((uv_handle_t *)&p->timer, on_purge_timer_closed);
}

/* ---------- store check ---------- */

static int check_sessions(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_SESSIONS, &c) != 0) return -1;
  st_val k, v;
  char uid[ST_TENANT_UID_LEN + 1], msg[300], hex[65];
  while (st_cursor_next(c, &k, &v) == 0) {
    if (k.len != 33 || ((const char *)k.data)[0] != 's') continue;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", ((const uint8_t *)k.data)[1 + i]);
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *tenant = json_string_value(json_object_get(r, "tenant"));
    const char *user = json_string_value(json_object_get(r, "user"));
    json_t *u = NULL;
    if (!tenant || !user) {
      snprintf(msg, sizeof msg, "session %.16s… does not parse or lacks tenant/user", hex);
      if (report) report(rctx, "sessions", msg);
      problems++;
    } else if (st_tenant_purging(txn, tenant)) {
      /* its purge removes users before sessions: nothing to report */
    } else if (st_tenant_uid_get(txn, tenant, uid) == ST_ENOTFOUND) {
      snprintf(msg, sizeof msg, "session %.16s… belongs to unknown tenant %s", hex, tenant);
      if (report) report(rctx, "sessions", msg);
      problems++;
    } else if (scim_user_lookup(txn, tenant, user, &u) == ST_ENOTFOUND) {
      snprintf(msg, sizeof msg, "session %.16s… of tenant %s belongs to unknown user %s", hex, tenant, user);
      if (report) report(rctx, "sessions", msg);
      problems++;
    }
    json_decref(u);
    json_decref(r);
  }
  st_cursor_close(c);
  return problems;
}

int gw_sessions_register_checks(st_store *st) { return st_check_add(st, check_sessions, NULL); }

/* ---------- module table entry (gateway/core/module.h) ---------- */

struct gw_sessions {
  gw_session_limits lim; /* from cfg; the per-user cap hook borrows it */
};

const gw_session_limits *gw_sessions_limits(const gw_server *srv) { return &srv->sessions->lim; }

static int mod_init(gw_server *srv) {
  if (!(srv->sessions = calloc(1, sizeof *srv->sessions))) return -1;
  srv->sessions->lim = (gw_session_limits){srv->cfg.session_idle_timeout_ms, srv->cfg.session_max_age_ms,
                                           srv->cfg.sessions_per_user_max, srv->cfg.session_purge_interval_ms};
  return 0;
}

static void mod_fini(gw_server *srv) {
  free(srv->sessions);
  srv->sessions = NULL;
}

/* A deleted tenant's purge step (serving): what its sessions hold upstream
 * is ended there after the step's commit (usess_end.c rule 7). It runs
 * before vault's purges (gateway/modules.c), so the connectors and the
 * credentials are still there to read; bounded by the step's limit. */
static int purge_tenant_ending(st_txn *txn, const char *tenant, int limit, void *ctx) {
  gw_usess_col *col = gw__usess_col_new(ctx);
  gw_session_obs obs = {col ? gw__usess_col_add : NULL, col};
  int n = gw_sessions_purge_tenant_obs(txn, tenant, limit, &obs);
  gw__usess_col_done(col, txn);
  return n;
}

/* Hooks in both modes; the per-user cap only when serving (the CLI has no
 * limits, as before). */
static int mod_store_init(st_store *st, gw_server *srv) {
  int rc = gw_sessions_register_hooks(st, srv);
  if (!rc) rc = gw_sessions_register_checks(st);
  if (!rc) rc = srv ? st_purge_add_ctx(st, "sessions", purge_tenant_ending, srv)
                    : st_purge_add(st, "sessions", gw_sessions_purge_tenant, NULL);
  if (!rc && srv) rc = gw_sessions_register_limits(st, srv);
  return rc;
}

const gw_module gw_mod_sessions = {
    .name = "sessions",
    .store_init = mod_store_init,
    .settings = gw_session_settings,
    .init = mod_init,
    .fini = mod_fini,
    .loop_start = gw_sessions_loop_start,
    .loop_stop = gw_sessions_loop_stop,
};
