/* gateway/api/ops.h — operational endpoints: /healthz, /readyz, /metrics. */
#ifndef MCPGATE_GATEWAY_OPS_H
#define MCPGATE_GATEWAY_OPS_H
#include "gateway/http/http.h"

void gw_ops_healthz(gw_req *req);
void gw_ops_readyz(gw_req *req);
void gw_ops_metrics(gw_req *req);

/* The module table's entry (gateway/core/module.h): the three routes;
 * /metrics only on the private listener when there is one. */
extern const struct gw_module gw_mod_ops;

#endif
