/* gateway/mcp/decide.c — the tools/call decision (see decide.h).
 *
 * Rules this file keeps: the decision uses the tool name from the strictly
 * parsed message that is forwarded, nothing else; a call without a name is
 * blocked; an unreadable policy never gets here (callers deny first: fail
 * closed). */
#include "gateway/mcp/decide.h"

#include "gateway/base/log.h"
#include "gateway/http/http.h"
#include "gateway/mcp/mcp_proxy.h"

pol_decision gw__decide_call(const pol_user *pu, const char *connector, const char *tool) {
  return tool ? pol_decide(pu, connector, tool) : POL_BLOCK;
}

pol_decision gw__decide_worse(pol_decision a, pol_decision b) {
  if (b == POL_ALLOW) return a;
  return a == POL_ALLOW || b < a ? b : a;
}

void gw__decide_refuse(gw_exchange *x, const pol_user *pu, pol_decision d, const char *tool, const char *connector) {
  const char *rid = x->req ? x->req->id : NULL;
  if (connector)
    GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){x->tenant, rid}), "tools/call %s on %s refused: %s (policy v%d)",
           tool, connector, pol_decision_name(d), pol_user_version(pu));
  else
    GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){x->tenant, rid}), "tools/call %s refused: %s (policy v%d)", tool,
           pol_decision_name(d), pol_user_version(pu));
  /* an approve tool the gateway could not hold: inside a batch (the held
   * answer is a stream of its own) */
  if (d == POL_APPROVE && connector)
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" on \"%s\" requires approval under your organisation's policy, which cannot be "
                    "asked for inside a JSON-RPC batch: call it on its own (the call was not made)",
                    tool, connector);
  else if (d == POL_APPROVE)
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" requires approval under your organisation's policy, which cannot be asked for "
                    "inside a JSON-RPC batch: call it on its own (the call was not made)",
                    tool);
  else if (connector)
    gw__x_rpc_error(x, 200, GW_RPC_BLOCKED, "tool \"%s\" on \"%s\" is blocked by your organisation's policy", tool,
                    connector);
  else
    gw__x_rpc_error(x, 200, GW_RPC_BLOCKED, "tool \"%s\" is blocked by your organisation's policy", tool);
}
