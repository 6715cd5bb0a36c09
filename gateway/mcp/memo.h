/* gateway/mcp/memo.h — what every MCP request reads from the store before
 * it goes upstream (the token → its user, tenant and user still active,
 * the connector exists, the session record; the connector record the
 * transfer needs), remembered per loop for exactly as long as the store
 * has not changed.
 *
 * Why it is safe: an entry is tagged with the store snapshot it was read
 * in (st_txn_snapshot, LMDB's transaction id) and used only by a request
 * whose own fresh read transaction shows the same snapshot — no write of
 * any kind committed in between, so reading again would find the very
 * same records. Every revocation (user deactivated or deleted, token
 * revoked, tenant disabled, connector removed, session deleted) is a
 * write, so the first request after it misses and reads afresh; nothing
 * can be served from before a revocation. The one input that is not in the
 * store, the clock, is kept beside the entry: the token's expiry is
 * compared with now on every hit. Only successful token checks are
 * remembered (a bad token is looked up every time, and cannot evict good
 * entries it does not match).
 *
 * Footprint: four direct-mapped tables per loop, GW_MEMO_IDENT_SLOTS
 * identity entries (about 1.8 kB each, allocated on first use),
 * GW_MEMO_UPSTREAM_SLOTS upstream session ids of the aggregated endpoint
 * (about 430 bytes each, allocated on first use), GW_MEMO_CONN_SLOTS
 * connector records and GW_MEMO_TENANT_SLOTS tenant settings documents; a
 * collision replaces the older entry. Threads: one memo per loop, used only on that loop's thread. */
#ifndef MCPGATE_GATEWAY_MCP_MEMO_H
#define MCPGATE_GATEWAY_MCP_MEMO_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/mcp/mcp_session.h"
#include "store/token.h"
#include "vault/vault.h"

#define GW_MEMO_IDENT_SLOTS 1024
#define GW_MEMO_UPSTREAM_SLOTS 1024
#define GW_MEMO_CONN_SLOTS 256
#define GW_MEMO_TENANT_SLOTS 64

typedef struct gw_memo gw_memo;

/* The key of a request's identity reads. */
typedef struct gw_memo_key {
  const uint8_t *tok_hash; /* ST_TOKEN_HASH_LEN bytes */
  const char *tenant, *connector, *sid; /* sid may be NULL */
} gw_memo_key;

/* What those reads found (every field filled by gw__mcp_begin). */
typedef struct gw_memo_ident {
  char user[40];
  char tokid[ST_TOKEN_ID_BUFSZ];
  int64_t expires; /* the token's expiry, unix seconds; 0: none */
  char tenant_uid[ST_TENANT_UID_LEN + 1]; /* the tenant's incarnation (its audit chain) */
  int conn_rc;     /* the connector lookup: 0 or ST_ENOTFOUND */
  int sess_rc;     /* the session lookup: 0, ST_ENOTFOUND (or no sid) */
  gw_session sess; /* when sess_rc == 0 */
} gw_memo_ident;

gw_memo *gw_memo_new(void);
void gw_memo_free(gw_memo *m);

/* The entry for k read in `snapshot`, or NULL. A hit still has its
 * expiry to check against the clock. */
const gw_memo_ident *gw_memo_ident_get(gw_memo *m, uint64_t snapshot, const gw_memo_key *k);
/* A hit still grants only while the token has not expired (now: unix s). */
bool gw_memo_ident_live(const gw_memo_ident *v, int64_t now_s);
/* Remembers v for k as read in snapshot (ignored when a key part does not
 * fit or memory is short: the memo is only ever an optimisation). */
void gw_memo_ident_put(gw_memo *m, uint64_t snapshot, const gw_memo_key *k, const gw_memo_ident *v);

/* The upstream Mcp-Session-Id the client session sid has with connector
 * (the aggregated endpoint reads it on every call), as read in snapshot:
 * copied into out (GW_MEMO_UPSTREAM_MAX bytes with its NUL), true on a
 * hit. Only found ids are remembered: a session without one gets one by a
 * write, which changes the snapshot. */
#define GW_MEMO_UPSTREAM_MAX 256
bool gw_memo_upstream_get(gw_memo *m, uint64_t snapshot, const char *sid, const char *connector,
                          char out[GW_MEMO_UPSTREAM_MAX]);
void gw_memo_upstream_put(gw_memo *m, uint64_t snapshot, const char *sid, const char *connector,
                          const char *upstream);

/* The connector record of (tenant, connector) read in snapshot, with a
 * new reference, or NULL. The caller must not modify it. facts (may be
 * NULL): its vault_conn_facts, taken apart when it was remembered (the
 * pointers in it are the record's: valid while the reference is held). */
json_t *gw_memo_conn_get(gw_memo *m, uint64_t snapshot, const char *tenant, const char *connector,
                         vault_conn_facts *facts);
/* Remembers rec (a reference is taken). */
void gw_memo_conn_put(gw_memo *m, uint64_t snapshot, const char *tenant, const char *connector, json_t *rec);

/* The tenant's stored settings document (its record's "settings": an
 * object, possibly empty) read in snapshot, or NULL. Borrowed: valid
 * until the next gw_memo_settings_put on m (the loop's thread only; use
 * it before anything that may run another request). */
const json_t *gw_memo_settings_get(gw_memo *m, uint64_t snapshot, const char *tenant);
/* Remembers settings (an object; a reference is taken) for tenant as read
 * in snapshot. */
void gw_memo_settings_put(gw_memo *m, uint64_t snapshot, const char *tenant, json_t *settings);

/* Counters for /metrics: hits and misses of the four tables. */
typedef struct gw_memo_stats {
  uint64_t ident_hits, ident_misses, conn_hits, conn_misses, settings_hits, settings_misses, upstream_hits,
      upstream_misses;
} gw_memo_stats;
void gw_memo_stats_get(const gw_memo *m, gw_memo_stats *out);
#endif
