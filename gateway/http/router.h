/* gateway/http/router.h — maps a request path to a route: its handler, its route
 * class (for metrics and the access log), allowed methods and body cap.
 * Routing happens when the headers are complete, so the body cap, the
 * credential (preauth) and `Expect: 100-continue` can be decided before
 * any body byte is read.
 * Listener scoping: with admin_listen set, /admin and /metrics only match on
 * the admin listener. */
#ifndef MCPGATE_GATEWAY_ROUTER_H
#define MCPGATE_GATEWAY_ROUTER_H
#include <stddef.h>
#include <stdint.h>

#include "gateway/http/http.h"

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
  /* Optional: checks the credential when the headers are complete and a
   * body is announced, before one body byte is read (an unauthenticated
   * client must not make the gateway buffer up to max_body). Cheap, no
   * body: returns 0 to go on reading, or nonzero once it has answered the
   * request (a 401 in the route's own format, with WWW-Authenticate); the
   * connection then closes without reading the body. The handler still
   * runs its full checks on the requests it lets through. */
  int (*preauth)(gw_req *req);
};

const char *gw_route_class_name(int rclass);
/* Returns the route for path (not including the query) or NULL (404). */
const gw_route *gw_route_find(gw_loop *lp, int listener_kind, const char *path, size_t len);
/* True when method (e.g. "GET") appears in the route's allow list. */
int gw_route_allows(const gw_route *r, const char *method);

#endif
