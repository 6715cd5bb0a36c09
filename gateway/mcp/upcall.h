/* gateway/mcp/upcall.h — the upstream half of an exchange (private to
 * gateway/mcp/): one HTTP call to a connector's upstream in two phases,
 * the credential (asked of the vault for the exchange's identity), then
 * the transfer with the connector's URL, timeouts and CA. The client's
 * headers are never copied: only what is named here is sent. */
#ifndef MCPGATE_GATEWAY_MCP_UPCALL_H
#define MCPGATE_GATEWAY_MCP_UPCALL_H
#include <stdbool.h>
#include <stddef.h>

#include "gateway/mcp/exchange.h"

typedef struct gw_upcall {
  const char *method;
  const void *body;
  size_t len;
  const char *accept;
  const char *protocol_version; /* MCP-Protocol-Version, or NULL */
  const char *upstream_sid;     /* Mcp-Session-Id, or NULL */
  const char *last_event_id;    /* Last-Event-ID, or NULL */
  bool stream;                  /* a long-lived GET stream: HTTP/1.1 (see gw_out_opts.http1) */
  bool keep_opener;             /* without upstream_sid: keep what a session this opens goes with
                                   (x->opening, usess_end.h), to end it if it is not kept */
} gw_upcall;

/* Starts u toward x->connector for x's identity: x->flow's up_headers,
 * up_data and up_done receive the answer, and the exchange is referenced
 * until up_done has run. Who the call is for (x->user; empty for the
 * gateway's own calls) is re-checked in the same read transaction that
 * loads the connector and its credential — token still valid, user and
 * tenant active, policy still shows the connector — so no asynchronous
 * step before it can carry a revoked identity or a hidden connector
 * upstream. An upstream session id (u->upstream_sid) goes only to the
 * server and with the credential it belongs to (x->sess_bind, when known):
 * the connector moved or rekeyed since, or the user's own key or account
 * replaced (vault_upstream_bind), is GW_MCP_ESTALE. Returns 0, GW_UP_EREVOKED (also when x was revoked
 * before), GW_UP_EHIDDEN, GW_MCP_ESTALE, ST_ENOTFOUND (no such connector)
 * or a GW_OUT_E* / ST_E* error; on error no callback runs. */
int gw__x_upcall(gw_exchange *x, const gw_upcall *u);
/* A failed upcall: answers the client (revoked, hidden, or unreachable)
 * unless it is gone. */
void gw__x_start_failed(gw_exchange *x, int rc);

/* The upstream refused the user's own grant (401/403 with x->grant_used):
 * JSON-RPC GW_RPC_CONNECT "connect again" with the link. */
void gw__x_reconnect_error(gw_exchange *x, int status);

#endif
