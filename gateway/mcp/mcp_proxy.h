/* gateway/mcp/mcp_proxy.h — the single-connector MCP endpoint
 * /t/{tenant}/mcp/{connector}: a Streamable HTTP intermediary between an
 * employee's MCP client and one upstream MCP server, with the upstream's
 * credential held by the gateway.
 *
 * Per loop it keeps the live exchanges (requests waiting on an upstream,
 * SSE streams) so revocation can end them: when SCIM deactivates a user or
 * an admin deletes a connector, the writer's post-commit action queues a
 * revocation for every loop (gw_proxy_revoke_*), and the loop ends every
 * matching exchange before the originating reply is sent (the loop's store
 * port calls gw_proxy_before_done before every writer done callback). */
#ifndef MCPGATE_GATEWAY_MCP_PROXY_H
#define MCPGATE_GATEWAY_MCP_PROXY_H
#include "gateway/base/buf.h"
#include "gateway/http/http.h"

typedef struct gw_loop gw_loop;
typedef struct gw_server gw_server;
typedef struct gw_proxy gw_proxy;
typedef struct st_store st_store;

/* JSON-RPC error codes the gateway itself returns (documented in README). */
#define GW_RPC_UPSTREAM_AUTH (-32001)     /* the upstream refused the gateway's credential */
#define GW_RPC_UPSTREAM_DOWN (-32002)     /* unreachable, timed out, reset, or garbage */
#define GW_RPC_NOT_SUPPORTED (-32601)     /* method the gateway does not relay (tasks, server/discover) */

/* One HTTP call to a connector's upstream, with the connector's URL,
 * timeouts, CA and sealed credential (unsealed for the call, wiped after).
 * The client's headers are never copied: only what is named here is sent. */
#include <stddef.h>
typedef struct gw_out_req gw_out_req;
typedef struct gw_out_header gw_out_header;
typedef struct gw_upstream_opts {
  const char *tenant, *connector, *method;
  const void *body;
  size_t len;
  const char *accept;
  const char *protocol_version; /* MCP-Protocol-Version, or NULL */
  const char *upstream_sid;     /* Mcp-Session-Id, or NULL */
  const char *last_event_id;    /* Last-Event-ID, or NULL */
  /* Who the call is for (NULL for the gateway's own calls, e.g. capability
   * probes): re-checked in the same read transaction that loads the
   * connector — token still valid, user and tenant active, policy still
   * shows the connector — so no asynchronous step before it can carry a
   * revoked identity or a hidden connector upstream. */
  const char *user, *tokid;
  bool stream; /* a long-lived GET stream: HTTP/1.1 (see gw_out_opts.http1) */
  void (*on_headers)(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud);
  int (*on_data)(gw_out_req *r, const char *p, size_t n, void *ud);
  void (*on_done)(gw_out_req *r, int err, void *ud);
  void *ud;
} gw_upstream_opts;
#define GW_UP_EREVOKED (-30301) /* the identity no longer holds (token, user or tenant gone) */
#define GW_UP_EHIDDEN (-30302)  /* policy does not show the connector to the user (now) */
/* 0, ST_ENOTFOUND (no such connector), GW_UP_E*, or a GW_OUT_E* / ST_E* error. */
int gw_upstream_start(gw_loop *lp, const gw_upstream_opts *o, gw_out_req **out);

/* Checks shared by the MCP endpoints (gateway-private). */
#include <stdbool.h>
bool gw__accept_has(const char *accept, const char *type);
bool gw__mcp_version_supported(const char *v);
struct json_t;
const char *gw__check_message(const struct json_t *m, struct json_t *ids, const char **method_out);

int gw_proxy_loop_start(gw_loop *lp);
/* Ends every exchange (shutdown); frees the per-loop state once they are gone. */
void gw_proxy_loop_stop(gw_loop *lp);
void gw_proxy_dispatch(gw_req *req);
/* Route preauth (gateway/http/router.h) of /t/{tenant}/mcp/{connector} and of
 * /t/{tenant}/mcp: what every MCP request passes first (path, method,
 * Origin/Host, employee token and user state), before the body is read. */
int gw_proxy_preauth(gw_req *req);
int gw_agg_preauth(gw_req *req);
/* /t/{tenant}/mcp — the aggregated endpoint (gateway/mcp/mcp_agg.c). */
void gw_agg_dispatch(gw_req *req);
/* Learns a connector's capabilities (after an admin PUT). */
void gw_agg_probe_connector(gw_loop *lp, const char *tenant, const char *connector);
/* Shutdown started: ends open streams now (cleanly), lets requests finish. */
void gw_proxy_drain(gw_loop *lp);
/* Hooks (user deactivated/deleted, connector deleted → revocation fan-out).
 * Call after st_open, before the first write job. */
int gw_proxy_register_hooks(gw_server *srv);
/* Applies queued revocations on this loop now. */
void gw_proxy_revocations_drain(gw_loop *lp);
/* Ends the live exchanges (streams above all) whose session no longer
 * exists or has expired — evicted by sessions_per_user_max, past
 * session_max_age_ms or idle — so a stream does not outlive its session.
 * Called by the session purge timer. */
void gw_proxy_end_lost_sessions(gw_loop *lp);
/* st_port_before_done callback (arg: the gw_loop). */
void gw_proxy_before_done(void *lp);
void gw_proxy_metrics(gw_server *srv, gw_buf *out);

/* The module table's entry (gateway/core/module.h): revocation hooks, the
 * per-loop proxy (with the revocation drain before every writer reply and
 * the operator's egress policy), the two /t/{tenant}/mcp routes, metrics,
 * the SIGTERM drain of streams. */
extern const struct gw_module gw_mod_mcp;
/* Queues notifications/tools/list_changed on the open GET streams of a
 * user (user NULL: of the whole tenant). Any thread. */
void gw_proxy_notify_tools_changed(gw_server *srv, const char *tenant, const char *user);
/* From a writer job deleting a connector: after the commit, its live
 * exchanges end. */
typedef struct st_txn st_txn;
int gw_proxy_revoke_connector_after_commit(st_txn *txn, gw_server *srv, const char *tenant,
                                           const char *connector);
/* From the tenant-delete job: after the commit, every live exchange of the
 * tenant ends and every loop drops the tenant's cached policy. */
int gw_proxy_revoke_tenant_after_commit(st_txn *txn, gw_server *srv, const char *tenant);
/* From the employee-token revoke job: after the commit, what was opened
 * with that token (streams, calls in flight) ends. */
int gw_proxy_revoke_token_after_commit(st_txn *txn, gw_server *srv, const char *tenant, const char *tokid);
/* From a writer job: after the commit, list_changed to `users` (a JSON
 * array of user ids, stolen) or, with NULL, to the whole tenant. */
#include <jansson.h>
int gw_proxy_notify_after_commit(st_txn *txn, gw_server *srv, const char *tenant, json_t *users);

#endif
