/* gateway/mcp/memo.c — the per-loop memo of a request's store reads (see
 * memo.h for why it is safe).
 *
 * Rules this file keeps: a key matches only when every part matches in
 * full (the token hash compared in constant time); an entry is returned
 * only for the snapshot it was read in; nothing here reads the store or
 * the clock — the callers do both, so the memo cannot decide anything on
 * its own. */
#include "gateway/mcp/memo.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct ident_ent {
  uint64_t snapshot; /* 0: empty */
  uint8_t tok_hash[ST_TOKEN_HASH_LEN];
  char tenant[64], connector[40], sid[128];
  bool has_sid;
  gw_memo_ident v;
} ident_ent;

typedef struct upstream_ent {
  uint64_t snapshot;
  char sid[128], connector[40], upstream[GW_MEMO_UPSTREAM_MAX];
} upstream_ent;

typedef struct conn_ent {
  uint64_t snapshot;
  char tenant[64], connector[40];
  json_t *rec;
  vault_conn_facts facts; /* of rec */
} conn_ent;

typedef struct tenant_ent {
  uint64_t snapshot;
  char tenant[64];
  json_t *settings;
} tenant_ent;

struct gw_memo {
  ident_ent *ident[GW_MEMO_IDENT_SLOTS];
  upstream_ent *upstream[GW_MEMO_UPSTREAM_SLOTS];
  conn_ent conn[GW_MEMO_CONN_SLOTS];
  tenant_ent tenant[GW_MEMO_TENANT_SLOTS];
  struct { /* gw_memo_stats', written by the loop, read by /metrics anywhere */
    _Atomic uint64_t ident_hits, ident_misses, conn_hits, conn_misses, settings_hits, settings_misses,
        upstream_hits, upstream_misses;
  } st;
};

gw_memo *gw_memo_new(void) { return calloc(1, sizeof(gw_memo)); }

void gw_memo_free(gw_memo *m) {
  if (!m) return;
  for (size_t i = 0; i < GW_MEMO_IDENT_SLOTS; i++) free(m->ident[i]);
  for (size_t i = 0; i < GW_MEMO_UPSTREAM_SLOTS; i++) free(m->upstream[i]);
  for (size_t i = 0; i < GW_MEMO_CONN_SLOTS; i++) json_decref(m->conn[i].rec);
  for (size_t i = 0; i < GW_MEMO_TENANT_SLOTS; i++) json_decref(m->tenant[i].settings);
  free(m);
}

/* The strings mixed eight bytes at a time, seeded with the token hash
 * (already uniform). It only picks a slot: a collision costs a miss, never
 * a wrong answer, since a hit compares every key part in full. */
static uint64_t mix(uint64_t h, const char *s) {
  size_t n = s ? strlen(s) : 0;
  uint64_t w;
  for (; n >= 8; n -= 8, s += 8) {
    memcpy(&w, s, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 32;
  }
  w = 0;
  if (n) memcpy(&w, s, n);
  h = (h ^ w ^ (uint64_t)n << 56) * 0x9e3779b97f4a7c15ULL;
  return h ^ (h >> 29);
}

static size_t ident_slot(const gw_memo_key *k) {
  uint64_t h;
  memcpy(&h, k->tok_hash, sizeof h);
  h = mix(mix(mix(h, k->tenant), k->connector), k->sid);
  return (size_t)(h & (GW_MEMO_IDENT_SLOTS - 1));
}

static bool fits(const gw_memo_key *k) {
  return strlen(k->tenant) < sizeof(((ident_ent *)0)->tenant) &&
         strlen(k->connector) < sizeof(((ident_ent *)0)->connector) &&
         (!k->sid || strlen(k->sid) < sizeof(((ident_ent *)0)->sid));
}

static bool ident_matches(const ident_ent *e, const gw_memo_key *k) {
  if (CRYPTO_memcmp(e->tok_hash, k->tok_hash, ST_TOKEN_HASH_LEN) != 0) return false;
  if (strcmp(e->tenant, k->tenant) || strcmp(e->connector, k->connector)) return false;
  if (e->has_sid != (k->sid != NULL)) return false;
  return !k->sid || !strcmp(e->sid, k->sid);
}

const gw_memo_ident *gw_memo_ident_get(gw_memo *m, uint64_t snapshot, const gw_memo_key *k) {
  if (!m || !snapshot || !fits(k)) return NULL;
  ident_ent *e = m->ident[ident_slot(k)];
  if (e && e->snapshot == snapshot && ident_matches(e, k)) {
    atomic_store_explicit(&m->st.ident_hits, atomic_load_explicit(&m->st.ident_hits, memory_order_relaxed) + 1, memory_order_relaxed);
    return &e->v;
  }
  atomic_store_explicit(&m->st.ident_misses, atomic_load_explicit(&m->st.ident_misses, memory_order_relaxed) + 1, memory_order_relaxed);
  return NULL;
}

bool gw_memo_ident_live(const gw_memo_ident *v, int64_t now_s) { return !v->expires || v->expires > now_s; }

void gw_memo_ident_put(gw_memo *m, uint64_t snapshot, const gw_memo_key *k, const gw_memo_ident *v) {
  if (!m || !snapshot || !fits(k)) return;
  ident_ent **slot = &m->ident[ident_slot(k)];
  if (!*slot && !(*slot = malloc(sizeof **slot))) return;
  ident_ent *e = *slot;
  e->snapshot = snapshot;
  memcpy(e->tok_hash, k->tok_hash, ST_TOKEN_HASH_LEN);
  strcpy(e->tenant, k->tenant);
  strcpy(e->connector, k->connector);
  e->has_sid = k->sid != NULL;
  strcpy(e->sid, k->sid ? k->sid : "");
  e->v = *v;
}

static void count(_Atomic uint64_t *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static upstream_ent **upstream_slot(gw_memo *m, const char *sid, const char *connector) {
  return &m->upstream[mix(mix(0xcbf29ce484222325ULL, sid), connector) & (GW_MEMO_UPSTREAM_SLOTS - 1)];
}

bool gw_memo_upstream_get(gw_memo *m, uint64_t snapshot, const char *sid, const char *connector,
                          char out[GW_MEMO_UPSTREAM_MAX]) {
  if (!m || !snapshot || !sid || !connector) return false;
  upstream_ent *e = *upstream_slot(m, sid, connector);
  if (e && e->snapshot == snapshot && !strcmp(e->sid, sid) && !strcmp(e->connector, connector)) {
    memcpy(out, e->upstream, strlen(e->upstream) + 1);
    count(&m->st.upstream_hits);
    return true;
  }
  count(&m->st.upstream_misses);
  return false;
}

void gw_memo_upstream_put(gw_memo *m, uint64_t snapshot, const char *sid, const char *connector,
                          const char *upstream) {
  if (!m || !snapshot || !sid || !connector || !upstream || strlen(sid) >= sizeof m->upstream[0]->sid ||
      strlen(connector) >= sizeof m->upstream[0]->connector || strlen(upstream) >= GW_MEMO_UPSTREAM_MAX)
    return;
  upstream_ent **slot = upstream_slot(m, sid, connector);
  if (!*slot && !(*slot = malloc(sizeof **slot))) return;
  upstream_ent *e = *slot;
  e->snapshot = snapshot;
  strcpy(e->sid, sid);
  strcpy(e->connector, connector);
  strcpy(e->upstream, upstream);
}

static conn_ent *conn_slot(gw_memo *m, const char *tenant, const char *connector) {
  return &m->conn[mix(mix(0xcbf29ce484222325ULL, tenant), connector) & (GW_MEMO_CONN_SLOTS - 1)];
}

json_t *gw_memo_conn_get(gw_memo *m, uint64_t snapshot, const char *tenant, const char *connector,
                         vault_conn_facts *facts) {
  if (!m || !snapshot) return NULL;
  conn_ent *e = conn_slot(m, tenant, connector);
  if (e->rec && e->snapshot == snapshot && !strcmp(e->tenant, tenant) && !strcmp(e->connector, connector)) {
    atomic_store_explicit(&m->st.conn_hits, atomic_load_explicit(&m->st.conn_hits, memory_order_relaxed) + 1, memory_order_relaxed);
    if (facts) *facts = e->facts;
    return json_incref(e->rec);
  }
  atomic_store_explicit(&m->st.conn_misses, atomic_load_explicit(&m->st.conn_misses, memory_order_relaxed) + 1, memory_order_relaxed);
  return NULL;
}

void gw_memo_conn_put(gw_memo *m, uint64_t snapshot, const char *tenant, const char *connector, json_t *rec) {
  if (!m || !snapshot || !rec || strlen(tenant) >= sizeof m->conn[0].tenant ||
      strlen(connector) >= sizeof m->conn[0].connector)
    return;
  conn_ent *e = conn_slot(m, tenant, connector);
  json_decref(e->rec);
  e->rec = json_incref(rec);
  vault_conn_facts_of(rec, &e->facts);
  e->snapshot = snapshot;
  strcpy(e->tenant, tenant);
  strcpy(e->connector, connector);
}

static tenant_ent *tenant_slot(gw_memo *m, const char *tenant) {
  return &m->tenant[mix(0xcbf29ce484222325ULL, tenant) & (GW_MEMO_TENANT_SLOTS - 1)];
}

const json_t *gw_memo_settings_get(gw_memo *m, uint64_t snapshot, const char *tenant) {
  if (!m || !snapshot) return NULL;
  tenant_ent *e = tenant_slot(m, tenant);
  if (e->settings && e->snapshot == snapshot && !strcmp(e->tenant, tenant)) {
    count(&m->st.settings_hits);
    return e->settings;
  }
  count(&m->st.settings_misses);
  return NULL;
}

void gw_memo_settings_put(gw_memo *m, uint64_t snapshot, const char *tenant, json_t *settings) {
  if (!m || !snapshot || !json_is_object(settings) || strlen(tenant) >= sizeof m->tenant[0].tenant) return;
  tenant_ent *e = tenant_slot(m, tenant);
  json_decref(e->settings);
  e->settings = json_incref(settings);
  e->snapshot = snapshot;
  strcpy(e->tenant, tenant);
}

void gw_memo_stats_get(const gw_memo *m, gw_memo_stats *out) {
  memset(out, 0, sizeof *out);
  if (!m) return;
  gw_memo *w = (gw_memo *)m;
  out->ident_hits = atomic_load_explicit(&w->st.ident_hits, memory_order_relaxed);
  out->ident_misses = atomic_load_explicit(&w->st.ident_misses, memory_order_relaxed);
  out->conn_hits = atomic_load_explicit(&w->st.conn_hits, memory_order_relaxed);
  out->conn_misses = atomic_load_explicit(&w->st.conn_misses, memory_order_relaxed);
  out->settings_hits = atomic_load_explicit(&w->st.settings_hits, memory_order_relaxed);
  out->settings_misses = atomic_load_explicit(&w->st.settings_misses, memory_order_relaxed);
  out->upstream_hits = atomic_load_explicit(&w->st.upstream_hits, memory_order_relaxed);
  out->upstream_misses = atomic_load_explicit(&w->st.upstream_misses, memory_order_relaxed);
}
