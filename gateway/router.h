/* gateway/router.h — maps a request path to a route: its handler, its route
 * class (for metrics and the access log), allowed methods and body cap.
 * Routing happens when the headers are complete, so the body cap and
 * `Expect: 100-continue` can be decided before any body byte is read.
 * Listener scoping: with admin_listen set, /admin and /metrics only match on
 * the admin listener. */
#ifndef MCPGATE_GATEWAY_ROUTER_H
#define MCPGATE_GATEWAY_ROUTER_H
#include <stddef.h>
#include <stdint.h>

#include "gateway/http.h"

typedef struct gw_loop gw_loop;

enum gw_route_class {
  GW_RC_HEALTH,
  GW_RC_METRICS,
  GW_RC_ADMIN,
  GW_RC_SCIM,
  GW_RC_MCP,
  GW_RC_OAUTH,
  GW_RC_WEB,
  GW_RC_OTHER,
  GW_RC_COUNT
};

typedef void (*gw_handler_fn)(gw_req *req);

struct gw_route {
  int rclass;           /* enum gw_route_class */
  gw_handler_fn handler;
  const char *allow;    /* "GET, HEAD"; NULL: the handler checks methods */
  int64_t max_body;     /* 0: max_body_bytes from config */
  /* Optional: formats errors raised before the handler runs (413, 408 …)
   * in the route's own error format (SCIM's Error schema). */
  void (*early_error)(gw_req *req, int status, const char *msg);
};

const char *gw_route_class_name(int rclass);
/* Returns the route for path (not including the query) or NULL (404). */
const gw_route *gw_route_find(gw_loop *lp, int listener_kind, const char *path, size_t len);
/* True when method (e.g. "GET") appears in the route's allow list. */
int gw_route_allows(const gw_route *r, const char *method);

#endif
