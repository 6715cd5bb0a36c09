/* gateway/mcp/mcp_proxy.h — the MCP proxy, as the rest of the gateway sees
 * it: the single-connector endpoint /t/{tenant}/mcp/{connector} (direct.c)
 * and the aggregated endpoint /t/{tenant}/mcp (agg*.c), Streamable HTTP
 * intermediaries between an employee's MCP client and upstream MCP
 * servers, with the upstreams' credentials held by the gateway.
 *
 * Per loop it keeps the live exchanges (requests waiting on an upstream,
 * SSE streams) so revocation can end them: when SCIM deactivates a user
 * (or an admin blocks them, or Okta's Universal Logout signs them out) or
 * an admin deletes a connector, the writer's post-commit action queues a
 * revocation for every loop (revoke.c), every loop ends its matching
 * exchanges, and the originating reply waits at its loop's store-port gate
 * until every loop has (revocation_fanout_timeout_ms at most). What a
 * request's token opened — a GET stream, an SSE answer, a call held for
 * approval — also ends when that token expires (exchange.h: one timer per
 * loop over a heap of deadlines), so no stream outlives its credential. */
#ifndef MCPGATE_GATEWAY_MCP_PROXY_H
#define MCPGATE_GATEWAY_MCP_PROXY_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/base/buf.h"
#include "gateway/http/http.h"

typedef struct gw_loop gw_loop;
typedef struct gw_server gw_server;
typedef struct gw_proxy gw_proxy;
typedef struct st_store st_store;
typedef struct st_txn st_txn;

/* JSON-RPC error codes the gateway itself returns (documented in README). */
#define GW_RPC_UPSTREAM_AUTH (-32006)     /* the upstream refused the gateway's credential */
/* -32001 is the MCP SDK's "Session not found" only (the gateway answers it
 * for unknown and expired sessions); a refused credential has its own code
 * so clients can tell "start a new session" from "ask your admin". */
#define GW_RPC_UPSTREAM_DOWN (-32002)     /* unreachable, timed out, reset, or garbage */
#define GW_RPC_BLOCKED (-32003)           /* policy blocks the tool */
#define GW_RPC_REVOKED (-32004)           /* the caller's access was revoked */
#define GW_RPC_APPROVAL (-32005)          /* the tool needs approval */
#define GW_RPC_CONNECT (-32007)           /* the user must connect the connector first (link in data.url) */
#define GW_RPC_APPROVAL_DENIED (-32008)   /* a reviewer denied the held call (who and why in the message) */
#define GW_RPC_APPROVAL_TIMEOUT (-32009)  /* nobody decided before the request expired */
#define GW_RPC_APPROVAL_CANCELLED (-32010) /* an admin cancelled the request, or the requester's access ended */
#define GW_RPC_TOKEN_EXPIRED (-32011)     /* the caller's token expired while its request was open */
#define GW_RPC_NOT_SUPPORTED (-32601)     /* method the gateway does not relay (tasks, server/discover) */

/* Error codes of gateway/mcp (its range: -30300..-30399). */
#define GW_UP_EREVOKED (-30301)  /* the identity no longer holds (token, user or tenant gone) */
#define GW_UP_EHIDDEN (-30302)   /* policy does not show the connector to the user (now) */
#define GW_MCP_EAUTH (-30303)    /* the upstream refused the gateway's credential (401/403) */
#define GW_MCP_EHTTP (-30304)    /* the upstream answered with a failure status (3xx and up) */
#define GW_MCP_EREPLY (-30305)   /* the upstream's answer held no valid reply */
#define GW_MCP_ENOTSENT (-30306) /* the upstream call could not be started */
#define GW_MCP_ESTALE (-30307)   /* the upstream does not know our session id (404/400) */
#define GW_MCP_ECONNECT (-30308) /* an oauth connector the user has not connected (vault/grant.h) */
#define GW_MCP_EREFRESH (-30309) /* the user's grant could not be refreshed now (the AS failed) */
/* A static description of a GW_UP_E* / GW_MCP_E* code (other codes: a
 * generic text). */
const char *gw_mcp_strerror(int code);

int gw_proxy_loop_start(gw_loop *lp);
/* Ends every exchange (shutdown); frees the per-loop state once they are gone. */
void gw_proxy_loop_stop(gw_loop *lp);
void gw_proxy_dispatch(gw_req *req);
/* Route preauth (gateway/http/router.h) of /t/{tenant}/mcp/{connector} and of
 * /t/{tenant}/mcp: what every MCP request passes first (path, method,
 * Origin/Host, employee token and user state), before the body is read. */
int gw_proxy_preauth(gw_req *req);
int gw_agg_preauth(gw_req *req);
/* /t/{tenant}/mcp — the aggregated endpoint (gateway/mcp/agg.c). */
void gw_agg_dispatch(gw_req *req);
/* Learns a connector's capabilities (after an admin PUT). */
void gw_agg_probe_connector(gw_loop *lp, const char *tenant, const char *connector);
/* Shutdown started: ends open streams now (cleanly), lets requests finish. */
void gw_proxy_drain(gw_loop *lp);
/* Hooks on the store events that end or notify live exchanges: SCIM's
 * (user deactivated/deleted/signed out, membership, group created), vault's (connector
 * put/deleted: sessions ended, exchanges revoked, capabilities probed) and
 * policy's (put), the tenant's (deleting) and auth's (an employee token
 * revoked). Membership changes and policy PUTs recheck visibility: what a
 * user holds toward a connector they lost ends, sessions included
 * (revoke.c, rules 6 and 7), the rest is told list_changed. Call after
 * st_open, before the first write job. */
int gw_proxy_register_hooks(gw_server *srv);
/* Applies queued revocations on this loop now. */
void gw_proxy_revocations_drain(gw_loop *lp);
/* Ends the live exchanges (streams above all) whose session no longer
 * exists or has expired — evicted by sessions_per_user_max, past
 * session_max_age_ms or idle — so a stream does not outlive its session.
 * Called by the session purge timer. */
void gw_proxy_end_lost_sessions(gw_loop *lp);
void gw_proxy_metrics(gw_server *srv, gw_buf *out);

/* The module table's entry (gateway/core/module.h): revocation hooks, the
 * per-loop proxy (with the revocation drain before every writer reply and
 * the operator's egress policy), the two /t/{tenant}/mcp routes, metrics,
 * the SIGTERM drain of streams. */
extern const struct gw_module gw_mod_mcp;
/* Queues notifications/tools/list_changed on the open GET streams of a
 * user (user NULL: of the whole tenant). Any thread. */
void gw_proxy_notify_tools_changed(gw_server *srv, const char *tenant, const char *user);

#endif
