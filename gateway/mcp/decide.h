/* gateway/mcp/decide.h — the one tools/call decision of the MCP proxy
 * (private to gateway/mcp/): both endpoints ask here whether a call may go
 * upstream, and a refused call is answered here. The approval workflow
 * adds its held flow at POL_APPROVE. */
#ifndef MCPGATE_GATEWAY_MCP_DECIDE_H
#define MCPGATE_GATEWAY_MCP_DECIDE_H
#include "gateway/mcp/exchange.h"
#include "policy/policy.h"

/* The decision for tool (NULL: a call without a name, blocked) of
 * connector under pu. */
pol_decision gw__decide_call(const pol_user *pu, const char *connector, const char *tool);
/* Of two decisions, the one that refuses more (POL_ALLOW < ... by
 * pol_decision's order of precedence). */
pol_decision gw__decide_worse(pol_decision a, pol_decision b);
/* Answers x for a refused call (POL_BLOCK or POL_APPROVE) and logs it:
 * `tool` as the client named it; `connector` NULL when that name already
 * says it (the aggregated endpoint's connector__tool). */
void gw__decide_refuse(gw_exchange *x, const pol_user *pu, pol_decision d, const char *tool, const char *connector);

#endif
