/* gateway/mcp/relay.h — relaying one upstream answer to the client
 * (private to gateway/mcp/; implemented in direct.c, used by the direct
 * flow and by aggregated calls). The flow's rewrite and event_id apply to
 * every relayed message. */
#ifndef MCPGATE_GATEWAY_MCP_RELAY_H
#define MCPGATE_GATEWAY_MCP_RELAY_H
#include <stdbool.h>
#include <stddef.h>

#include "gateway/mcp/exchange.h"

/* Starts method toward x->connector, relaying the answer; the client's
 * MCP-Protocol-Version and Last-Event-ID (if any) go along. 0 or an
 * upcall error (the caller answers with gw__x_start_failed). */
int gw__relay_start(gw_exchange *x, const char *method, const void *body, size_t len, const char *accept);
/* The relay's halves of up_headers/up_data/up_done, for a flow's ops.
 * stream: an SSE answer is streamed to the client (else buffered), and
 * ends when the request's token expires (gw__x_expiry_watch);
 * stale(x, status): true when the status means the upstream forgot the
 * session (the transfer is aborted; the flow retries in its up_done).
 * initialized: what answers a successful buffered reply instead of
 * relaying it (NULL: relayed). */
void gw__relay_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n, bool stream,
                       bool (*stale)(gw_exchange *x, int status));
int gw__relay_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n);
void gw__relay_done(gw_exchange *x, gw_out_req *r, int err, void (*initialized)(gw_exchange *x));

#endif
