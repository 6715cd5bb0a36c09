/* gateway/mcp_session.h — MCP sessions as store records, so any loop can
 * serve any request of a session (and a restart keeps them).
 *
 * The gateway issues its own Mcp-Session-Id (random, 256 bits, "mcps_…"),
 * bound to tenant + user (+ connector for the single-connector endpoint);
 * the upstream's session id stays inside the record and never reaches the
 * client. Keys hold the SHA-256 of the id, like tokens.
 *
 * ST_DB_SESSIONS:  "s" sha256(id)               → {tenant,user,connector,version,upstream,created}
 *                  "u" tenant \0 user \0 hexhash → ""     (a user's sessions)
 *                  "c" tenant \0 conn \0 hexhash → ""     (a connector's sessions)
 *                  "a" sha256(id) connector      → upstream session id (aggregated
 *                                                  endpoint: one per connector, opened lazily)
 * Deleted on DELETE, on user deactivation/deletion (hook, same txn), and
 * on connector deletion. */
#ifndef MCPGATE_GATEWAY_MCP_SESSION_H
#define MCPGATE_GATEWAY_MCP_SESSION_H
#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

#define GW_SESSION_PREFIX "mcps_"

typedef struct gw_session {
  char tenant[64];
  char user[40];
  char connector[40];   /* "" for the aggregated endpoint */
  char version[32];     /* negotiated protocol version */
  char upstream[256];   /* upstream Mcp-Session-Id, "" if none */
  char client[1024];    /* aggregated endpoint: the client's initialize params
                           (capabilities, clientInfo) as compact JSON, replayed
                           to each upstream; "" otherwise */
} gw_session;

/* Writer job body: stores a new session under `id`. */
int gw_session_put(st_txn *txn, const char *id, const gw_session *s, const char *now);
/* Loads a session; ST_ENOTFOUND when absent. Any txn. */
int gw_session_get(st_txn *txn, const char *id, gw_session *out);
int gw_session_delete(st_txn *txn, const char *id);
/* Aggregated sessions: the upstream session id opened for a connector. */
int gw_session_upstream_get(st_txn *txn, const char *id, const char *connector, char out[256]);
int gw_session_upstream_put(st_txn *txn, const char *id, const char *connector, const char *upstream);
/* Every upstream session of an aggregated session: {connector: upstream id}. */
json_t *gw_session_upstreams(st_txn *txn, const char *id);
/* Deletes every session of a user / of a connector; returns the count. */
int gw_sessions_delete_user(st_txn *txn, const char *tenant, const char *user);
int gw_sessions_delete_connector(st_txn *txn, const char *tenant, const char *connector);
/* Forgets the upstream session id every aggregated session of the tenant
 * holds for `connector` (its "a" keys; the sessions stay): the next call
 * opens a fresh upstream session. For a connector whose URL changed (or
 * that is deleted): an upstream session id must never reach another
 * server. Scans the tenant's sessions; returns how many ids went. */
int gw_sessions_drop_upstream_connector(st_txn *txn, const char *tenant, const char *connector);
int gw_sessions_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers the user deactivation/deletion hooks. */
int gw_sessions_register_hooks(st_store *st);

#endif
