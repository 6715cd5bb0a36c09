/* gateway/mcp/mcp_session.h — MCP sessions as store records, so any loop can
 * serve any request of a session (and a restart keeps them).
 *
 * The gateway issues its own Mcp-Session-Id (random, 256 bits, "mcps_…"),
 * bound to tenant + user (+ connector for the single-connector endpoint);
 * the upstream's session id stays inside the record and never reaches the
 * client. Keys hold the SHA-256 of the id, like tokens.
 *
 * ST_DB_SESSIONS:  "s" sha256(id)               → {tenant,user,connector,version,upstream,client,
 *                                                   created, created_ms, used_ms[, user_max]}
 *                  "u" tenant \0 user \0 hexhash → ""     (a user's sessions)
 *                  "c" tenant \0 conn \0 hexhash → ""     (a connector's sessions)
 *                  "a" sha256(id) connector      → upstream session id (aggregated
 *                                                  endpoint: one per connector, opened lazily)
 * Deleted on DELETE, on user deactivation/deletion/sign-out everywhere (hook, same txn), on
 * connector deletion or a PUT that moves or rekeys it, and — a single-connector session, or an aggregated
 * session's upstream id for one connector — when the user loses that
 * connector or replaces or removes their own credential for it
 * (gw_sessions_cut_step, driven by revoke.c). An upstream session id that
 * goes because the connector moved within its origin, was rekeyed or
 * deleted, or because its user's own credential changed is first read by
 * gw_sessions_upstreams_of, and the session ended at the upstream
 * (usess_end.c). One that goes with a user cut, a connector hidden from its
 * user, the per-user cap, the expiry purge or a tenant's purge is told to
 * the deleting write's gw_session_obs as it goes, and ended there too
 * (usess_end.c rule 7).
 *
 * Bounded (issue 12 item 4):
 *  - Expiry. A session unused for session_idle_timeout_ms, or older than
 *    session_max_age_ms, is refused exactly like an unknown one: the
 *    request path checks the stored stamps (gw_session_expired), so expiry
 *    holds before any purge ran. Stamps are unix milliseconds, optional
 *    fields: a record written before they existed has only "created"
 *    (RFC 3339, whole seconds), read as created_ms = the end of that second
 *    (never early) and used_ms = created_ms. No migration.
 *  - "Used" without a write per request: gw_session_touch rewrites used_ms
 *    only when the stored stamp is older than the touch interval, min(60 s,
 *    idle timeout / 4) — like admin tokens' last_used — so a session may be
 *    judged idle up to one interval early, never late.
 *  - Purge: a timer per loop (session_purge_interval_ms) walks the "s"
 *    records in writer jobs that each scan at most PURGE_SCAN records and
 *    delete at most PURGE_BATCH expired sessions, continuing from where the
 *    previous job stopped until the pass is over: never one unbounded txn.
 *  - Per-user cap: gw_session_put emits GW_EV_SESSION_CREATED; the hook
 *    registered by gw_sessions_register_limits evicts, in the same
 *    transaction, the user's oldest sessions BY CREATION (created_ms, ties
 *    by hash) until sessions_per_user_max remain. Found through the user's
 *    "u" index (at most cap + 1 records read; no extra index to keep).
 *  - Tenant settings (gw_session_settings, gateway/core/settings.h): a
 *    tenant may only tighten the operator's session_idle_timeout_ms and
 *    sessions_per_user_max (effective = min(tenant, operator); 0 or unset =
 *    the operator's). Both are read from the tenant record in the same txn
 *    as the session (load for the idle timeout, the creating txn for the
 *    cap). A lowered cap is applied at the user's next new session, not at
 *    once: until then they may hold more live sessions than it allows.
 *    The record keeps the tenant's cap it was created under ("user_max",
 *    when set): the aggregated endpoint's maps (agg_maps.c) bound a user's
 *    entries by the cap their newest session was created under, the one
 *    the store's last eviction for that user applied. */
#ifndef MCPGATE_GATEWAY_MCP_SESSION_H
#define MCPGATE_GATEWAY_MCP_SESSION_H
#include <jansson.h>
#include <stdint.h>

#include <stdbool.h>

#include "gateway/core/settings.h"
#include "store/store.h"

#define GW_SESSION_PREFIX "mcps_"

/* Emitted by gw_session_put inside its transaction (event: gw_session_event). */
#define GW_EV_SESSION_CREATED (ST_EVENT_BASE_GATEWAY + 10)
typedef struct gw_session_event {
  const char *tenant, *user;
  const char *hex; /* sha256(id) in hex: the new session, never evicted by its own creation */
  int64_t tenant_max; /* the tenant's sessions_per_user_max in this txn (0: the operator's) */
} gw_session_event;

/* The operator's bounds (config: session_idle_timeout_ms, session_max_age_ms,
 * sessions_per_user_max, session_purge_interval_ms). */
typedef struct gw_session_limits {
  int64_t idle_ms, max_age_ms, per_user_max, purge_interval_ms;
} gw_session_limits;

typedef struct gw_session {
  char tenant[64];
  char user[40];
  char connector[40];   /* "" for the aggregated endpoint */
  char version[32];     /* negotiated protocol version */
  char upstream[256];   /* upstream Mcp-Session-Id, "" if none */
  char client[1024];    /* aggregated endpoint: the client's initialize params
                           (capabilities, clientInfo) as compact JSON, replayed
                           to each upstream; "" otherwise */
  int64_t created_ms;   /* unix ms; 0 given to gw_session_put: from `now` */
  int64_t used_ms;      /* last recorded use, unix ms (coarse: see above) */
  int64_t tenant_idle_ms; /* the tenant's session_idle_timeout_ms (0: the operator's),
                             read with the record; not stored in it */
  int64_t user_max;     /* the tenant's sessions_per_user_max when the session was created
                           (0: the operator's, or a record from before it was kept), as
                           stored; gw_session_put ignores it (it reads the tenant's) */
} gw_session;

/* Told of each upstream session a delete takes away, inside the deleting
 * txn before its keys go: the session's tenant and user, the connector,
 * the upstream's Mcp-Session-Id and the session's protocol version (the
 * strings borrowed for the call). fn may read through txn; it must not
 * write to ST_DB_SESSIONS. usess_end.c's collector is one
 * (gw__usess_col_add): the deletes that pass one end what they take away
 * at the upstream. NULL (or fn NULL): nobody is told. */
typedef void (*gw_session_gone_fn)(void *ctx, st_txn *txn, const char *tenant, const char *user,
                                   const char *connector, const char *upstream, const char *version);
typedef struct gw_session_obs {
  gw_session_gone_fn fn;
  void *ctx;
} gw_session_obs;

/* The sessions module's tenant settings (NULL-name-terminated). */
extern const gw_setting gw_session_settings[];

/* Writer job body: stores a new session under `id`, created at
 * s->created_ms, or (0) at `now` (RFC 3339, read as the end of its second),
 * with the tenant's sessions_per_user_max in txn (user_max), then emits
 * GW_EV_SESSION_CREATED (the per-user cap evicts there). */
int gw_session_put(st_txn *txn, const char *id, const gw_session *s, const char *now);
/* sha256(id) in hex: a session's key in the user's "u" index, the order of
 * the per-user cap's eviction between sessions created in the same
 * millisecond (created_ms, then this). Any thread. */
void gw_session_hex(const char *id, char hex[65]);
/* Loads a session; ST_ENOTFOUND when absent. Any txn. */
int gw_session_get(st_txn *txn, const char *id, gw_session *out);
int gw_session_delete(st_txn *txn, const char *id);
/* Aggregated sessions: the upstream session id opened for a connector. */
int gw_session_upstream_get(st_txn *txn, const char *id, const char *connector, char out[256]);
int gw_session_upstream_put(st_txn *txn, const char *id, const char *connector, const char *upstream);
/* Every upstream session of an aggregated session: {connector: upstream id}. */
json_t *gw_session_upstreams(st_txn *txn, const char *id);
/* Deletes every session of a user / of a connector; returns the count.
 * obs (may be NULL) is told what of the user's goes upstream. */
int gw_sessions_delete_user(st_txn *txn, const char *tenant, const char *user, const gw_session_obs *obs);
int gw_sessions_delete_connector(st_txn *txn, const char *tenant, const char *connector);
/* Forgets the upstream session id every aggregated session of the tenant
 * holds for `connector` (its "a" keys; the sessions stay): the next call
 * opens a fresh upstream session. For a connector whose URL or credential
 * changed (or that is deleted): an upstream session id must never reach
 * another server, nor go on under another credential. Scans the tenant's
 * sessions; returns how many ids went. */
int gw_sessions_drop_upstream_connector(st_txn *txn, const char *tenant, const char *connector);
/* A tenant purge step (st_purge_fn): at most `limit` of the tenant's
 * sessions; _obs tells obs (may be NULL) what goes upstream with them. */
int gw_sessions_purge_tenant(st_txn *txn, const char *tenant, int limit);
int gw_sessions_purge_tenant_obs(st_txn *txn, const char *tenant, int limit, const gw_session_obs *obs);
/* The upstream sessions that the sessions of a tenant (user NULL) or of
 * one user hold with `connector` — a single-connector session's id, and
 * each aggregated session's id for it: what gw_sessions_delete_connector
 * and gw_sessions_drop_upstream_connector (or a cut of that user's
 * sessions of the connector) take away. Each goes to fn(ctx, user,
 * upstream, version) — the session's user and protocol version —, in the
 * "u" index's order; fn returning false stops the walk. Reads the index
 * and, for each session, one or two keys; a record only when it holds
 * such an id. Any txn; 0 or ST_E*. */
typedef bool (*gw_session_upstream_fn)(void *ctx, const char *user, const char *upstream, const char *version);
int gw_sessions_upstreams_of(st_txn *txn, const char *tenant, const char *user, const char *connector,
                             gw_session_upstream_fn fn, void *ctx);

/* The per-connector cut's store half (revoke.c): one bounded step over the
 * "u" index of a tenant (user NULL) or of one user. Each session read
 * there is judged by hidden(ctx, txn, user, connector) — true: the user
 * may no longer see that connector — and
 *   - a single-connector session whose connector is hidden is deleted
 *     (its upstream session id with it: the client's next request gets
 *     404 and starts over, if it may);
 *   - an aggregated session forgets its upstream session id for each
 *     hidden connector (the session stays: the next call there, once
 *     allowed again, opens a fresh upstream session).
 * It reads at most `budget` index records after `from` (flen 0: from the
 * start), and reports where it stopped: pure in (txn, inputs), outputs
 * overwritten on every run (a writer job may run twice). */
#define GW_SESSION_UKEY_MAX 256 /* "u" tenant \0 user \0 hex64 */
typedef bool (*gw_session_hidden_fn)(void *ctx, st_txn *txn, const char *user, const char *connector);
typedef struct gw_session_cut {
  /* in */
  const char *tenant, *user;  /* user NULL: every user of the tenant */
  gw_session_hidden_fn hidden;
  void *ctx;
  const gw_session_obs *obs;  /* told of each upstream session id that goes (NULL: nobody) */
  int budget;                 /* index records read at most (>= 1) */
  uint8_t from[GW_SESSION_UKEY_MAX];
  size_t flen;                /* 0: from the start */
  /* out */
  uint8_t next[GW_SESSION_UKEY_MAX];
  size_t nlen;                /* the last key read (resume after it), 0: none */
  bool more;                  /* it stopped at the budget, not at the end */
  int read;                   /* index records read */
  int cut;                    /* sessions deleted + upstream session ids dropped */
} gw_session_cut;
/* 0 or ST_E* (the step's outputs are then meaningless). */
int gw_sessions_cut_step(st_txn *txn, gw_session_cut *c);
/* Registers the user hooks (deactivated, deleted, signed out everywhere).
 * With srv (serving), the upstream sessions a cut deletes are ended there
 * (usess_end.c); NULL (the CLI): they are only deleted. */
typedef struct gw_server gw_server;
int gw_sessions_register_hooks(st_store *st, gw_server *srv);
/* Registers the per-user cap (srv's limits, gw_sessions_limits) and the
 * sessions' tenant settings; the upstream sessions it evicts are ended
 * there. Without it (CLI, unit tests) there is no cap. Startup, before the
 * first submit and before any loop runs. */
int gw_sessions_register_limits(st_store *st, gw_server *srv);
/* Registers the sessions' check with st_check: a session whose tenant or
 * user is gone (both deletions delete the sessions). */
int gw_sessions_register_checks(st_store *st);

/* True when s is past its idle timeout or its max age at now_ms. */
bool gw_session_expired(const gw_session *s, int64_t now_ms, const gw_session_limits *lim);
/* Writer job body for tests and the purge: deletes at most `batch` expired
 * sessions among at most `scan` "s" records after key `from` (flen 0: from
 * the start). Writes the last key scanned into next (33 bytes) and sets
 * *more when the walk stopped before the end. Returns how many went. obs
 * (may be NULL) is told what goes upstream with them. */
int gw_sessions_purge_expired(st_txn *txn, const void *from, size_t flen, int64_t now_ms,
                              const gw_session_limits *lim, int scan, int batch, uint8_t next[33], bool *more,
                              const gw_session_obs *obs);

/* Loop side (gateway/core/server.h's gw_loop). Unix milliseconds now. */
typedef struct gw_loop gw_loop;
int64_t gw_session_now_ms(void);
/* Records that session `id` (loaded as s) was used at now_ms, without
 * waiting: a fire-and-forget writer job, submitted only when s->used_ms is
 * older than the touch interval. */
void gw_session_touch(gw_loop *lp, const char *id, const gw_session *s, int64_t now_ms);
/* Starts / stops the periodic purge of expired sessions on this loop. Stop
 * only once the loop's port has no job pending (server.c's finish). */
int gw_sessions_loop_start(gw_loop *lp);
void gw_sessions_loop_stop(gw_loop *lp);

/* The operator's bounds, from the sessions module's state (created by its
 * init from srv->cfg; lives until its fini, after the store closed). */
const gw_session_limits *gw_sessions_limits(const gw_server *srv);
/* The module table's entry (gateway/core/module.h): hooks (and, serving,
 * the per-user cap), limits, the per-loop purge. */
extern const struct gw_module gw_mod_sessions;

#endif
