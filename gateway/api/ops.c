/* gateway/api/ops.c — liveness (the loop answers), readiness (the store is
 * open, writable and its writer alive; the audit log records, when
 * audit_on_failure = deny) and Prometheus metrics.
 *
 * /metrics names every tenant and connector (labels): on the main
 * listener it needs the operator token (Prometheus scrapes with
 * `authorization: {type: Bearer}`); with admin_listen set it is routed only
 * there — a listener the operator keeps private — and needs none. */
#include "gateway/api/ops.h"

#include <jansson.h>
#include <string.h>

#include "audit/audit.h"
#include "gateway/base/buf.h"
#include "gateway/core/metrics.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "gateway/http/router.h"
#include "store/store.h"

void gw_ops_healthz(gw_req *req) {
  gw_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

void gw_ops_readyz(gw_req *req) {
  gw_server *srv = req->lp->srv;
  const char *reason = NULL;
  if (srv->shutting_down) reason = "shutting down";
  else if (!srv->store) reason = "store not open";
  else if (st_ready(srv->store) != 0) reason = st_ready_reason(srv->store);
  /* with audit_on_failure = deny every tool call is refused while the
   * audit log cannot record: not ready, so a balancer sends calls elsewhere
   * (found by review: /readyz said ready) */
  else if (srv->audit_log && !audit_ok(srv->audit_log) && srv->cfg.audit_on_failure &&
           !strcmp(srv->cfg.audit_on_failure, "deny"))
    reason = "the audit log cannot record (audit_on_failure = deny: tool calls are refused)";
  if (reason) {
    gw_resp_header(req, "Retry-After", "5");
    gw_respond_json(req, 503, json_pack("{s:s,s:s}", "status", "not_ready", "reason", reason));
    return;
  }
  gw_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

void gw_ops_metrics(gw_req *req) {
  if (req->listener_kind != GW_LISTENER_ADMIN &&
      !gw_server_is_operator(req->lp->srv, gw_req_header(req, "authorization"))) {
    gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-metrics\"");
    gw_respond_error(req, 401, "unauthorized",
                     "/metrics needs Authorization: Bearer <operator token> on this listener (or set admin_listen)");
    return;
  }
  gw_buf b;
  gw_buf_init(&b, 16 * 1024 * 1024);
  if (gw_metrics_render(req->lp->srv, &b) != 0) {
    gw_buf_free(&b);
    gw_respond_error(req, 500, "internal", "could not render metrics");
    return;
  }
  gw_resp_header(req, "Cache-Control", "no-store");
  gw_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
  gw_buf_free(&b);
}

/* ---------- module table entry (gateway/core/module.h) ---------- */

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  static const gw_route healthz = {GW_RC_HEALTH, gw_ops_healthz, "GET, HEAD", GW_ROUTE_NO_BODY, NULL, NULL};
  static const gw_route readyz = {GW_RC_HEALTH, gw_ops_readyz, "GET, HEAD", GW_ROUTE_NO_BODY, NULL, NULL};
  static const gw_route metrics = {GW_RC_METRICS, gw_ops_metrics, "GET, HEAD", GW_ROUTE_NO_BODY, NULL, NULL};
  int rc = gw_router_add(rt, "/healthz", &healthz, 0);
  if (!rc) rc = gw_router_add(rt, "/readyz", &readyz, 0);
  if (!rc) rc = gw_router_add(rt, "/metrics", &metrics, GW_ROUTE_PRIVATE);
  return rc;
}

const gw_module gw_mod_ops = {.name = "ops", .routes = mod_routes};
