/* gateway/api/oauth.h — the gateway as OAuth authorization server for MCP
 * clients (issue 17): the module table's entry. What it serves:
 *   /.well-known/oauth-protected-resource/t/{t}/mcp[/{c}]   RFC 9728
 *   /.well-known/oauth-authorization-server/t/{t}            RFC 8414
 *   /t/{t}/oauth/register                                    RFC 7591
 * and, for the authorization endpoint, the client lookup (CIMD, DCR,
 * pinned documents; oauth_int.h). The 401 of the MCP endpoints that points
 * clients here is gateway/mcp's (endpoint.c). */
#ifndef MCPGATE_GATEWAY_API_OAUTH_H
#define MCPGATE_GATEWAY_API_OAUTH_H

struct gw_module;

extern const struct gw_module gw_mod_oauth;

#endif
