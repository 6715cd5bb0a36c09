/* gateway/mcp/mcp_origin.h — Origin and Host checks on the MCP endpoints
 * (DNS-rebinding protection; the MCP transport spec: servers MUST validate
 * Origin).
 *
 * The attack: a web page on evil.example makes its name resolve to
 * 127.0.0.1, and the browser — believing it talks to evil.example — sends
 * requests to a gateway listening on loopback. The browser tells us two
 * things it cannot fake: Origin (the page's origin) and Host (the name it
 * connected to).
 *
 * Rules (`public_url` from the config; when unset it is http://<listen>):
 *  - Origin, when present, must be public_url's origin, be listed in
 *    allowed_origins ("*" = any), or — when public_url's host is loopback
 *    (localhost, 127.0.0.0/8, [::1]) — be a loopback origin on any port
 *    (local tools such as the MCP inspector run on their own port). Else 403
 *    forbidden_origin.
 *  - When public_url's host is loopback, Host must be a loopback name or
 *    address (any port): a rebound name never is. Else 403 forbidden_host.
 *    (A gateway with a public public_url sits behind its own name and TLS;
 *    Host is not checked there, so reverse proxies may rewrite it.)
 * Requests without Origin (non-browser clients) pass the Origin rule. */
#ifndef MCPGATE_GATEWAY_MCP_ORIGIN_H
#define MCPGATE_GATEWAY_MCP_ORIGIN_H
#include <stdbool.h>
#include <stddef.h>

#include "gateway/http/http.h"

/* 0 when the request may go on; else the HTTP status to answer (403) with
 * *code (static) and a sentence for the client in msg. */
int gw_mcp_origin_check(const gw_req *req, const char **code, char *msg, size_t msglen);

/* Is `host` (a host name or address, IPv6 with or without brackets, no
 * port) loopback: localhost, 127.0.0.0/8, ::1? */
bool gw_host_is_loopback(const char *host, size_t n);

#endif
