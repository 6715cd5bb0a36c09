/* gateway/http/router.h — maps a request path to a route: its handler, its route
 * class (for metrics and the access log), allowed methods and body cap.
 * Routing happens when the headers are complete, so the body cap, the
 * credential (preauth) and `Expect: 100-continue` can be decided before
 * any body byte is read.
 *
 * Generic: the router knows no module. Each module adds its routes at start
 * (the module table's `routes`, gateway/core/module.h) as patterns:
 *   "/healthz"          the exact path
 *   "/t/{}/mcp"         "{}" is one non-empty path segment (a tenant id, …)
 *   "/admin/v1/..."      a trailing "/...": the path itself or anything below it
 * The first pattern that matches wins (patterns of different modules do not
 * overlap). Listener scoping: a route added with GW_ROUTE_PRIVATE matches
 * only on the private (admin) listener when the process has one
 * (admin_listen: /admin and /metrics), everywhere otherwise.
 *
 * Threading: built once before the loops run, then read-only (any loop). */
#ifndef MCPGATE_GATEWAY_ROUTER_H
#define MCPGATE_GATEWAY_ROUTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/http/http.h"

/* The classes /metrics and the access log count requests by (a closed list:
 * the metric labels are a contract with dashboards). */
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
  int64_t max_body;     /* 0: max_body_bytes from the host's limits (1 MiB by default: a route
                           without preauth sets what its requests need); GW_ROUTE_NO_BODY */
  /* Optional: formats errors raised before the handler runs (413, 408 …)
   * in the route's own error format (SCIM's Error schema). */
  void (*early_error)(gw_req *req, int status, const char *msg);
  /* Optional: checks the credential when the headers are complete and a
   * body is announced, before one body byte is read (an unauthenticated
   * client must not make the gateway buffer up to max_body). Cheap, no
   * body: returns 0 to go on reading, or nonzero once it has answered the
   * request (a 401 in the route's own format, with WWW-Authenticate); the
   * connection then closes without reading the body. The handler still
   * runs its full checks on the requests it lets through. */
  int (*preauth)(gw_req *req);
};

/* max_body of a route whose requests carry no content (a GET-only
 * document, health): a body sent anyway is read within max_body_bytes
 * and thrown away, never held; the handler sees none. */
#define GW_ROUTE_NO_BODY (-1)

typedef struct gw_router gw_router;

#define GW_ROUTE_PRIVATE 1u /* only on the private listener, when there is one */

/* A router; private_split: the process has a private (admin) listener.
 * Returns 0 and *out (free with gw_router_free), or -ENOMEM. */
int gw_router_new(bool private_split, gw_router **out);
void gw_router_free(gw_router *r);
/* Adds pattern → route (both copied). Returns 0, -EINVAL for a malformed
 * pattern (not starting with '/', "/..." not last), -ENOMEM. */
int gw_router_add(gw_router *r, const char *pattern, const gw_route *route, unsigned flags);
/* Returns the route for path (not including the query) on a listener of
 * kind (GW_LISTENER_*), or NULL (404). The route lives as long as r. */
const gw_route *gw_router_find(const gw_router *r, int listener_kind, const char *path, size_t len);

const char *gw_route_class_name(int rclass);
/* True when method (e.g. "GET") appears in the route's allow list. */
int gw_route_allows(const gw_route *r, const char *method);

#endif
