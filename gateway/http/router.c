/* gateway/http/router.c — the URL contract of DESIGN.md, as a lookup. Exact
 * paths first, then prefixes owned by one module each (/admin/v1 → admin
 * API, /t/{tenant}/… → tenant routes as they land). */
#include "gateway/http/router.h"

#include <string.h>
#include <strings.h>

#include "gateway/api/admin.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/api/ops.h"
#include "gateway/core/server.h"

static const char *const class_names[GW_RC_COUNT] = {"health", "metrics", "admin", "scim",
                                                    "mcp",    "oauth",   "web",   "other"};

const char *gw_route_class_name(int rclass) {
  return rclass >= 0 && rclass < GW_RC_COUNT ? class_names[rclass] : "other";
}

static const gw_route r_healthz = {GW_RC_HEALTH, gw_ops_healthz, "GET, HEAD", 0, NULL, NULL};
static const gw_route r_readyz = {GW_RC_HEALTH, gw_ops_readyz, "GET, HEAD", 0, NULL, NULL};
static const gw_route r_metrics = {GW_RC_METRICS, gw_ops_metrics, "GET, HEAD", 0, NULL, NULL};
static const gw_route r_admin = {GW_RC_ADMIN, gw_admin_dispatch, NULL, 0, NULL, gw_admin_preauth};

static int eq(const char *p, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

const gw_route *gw_route_find(gw_loop *lp, int kind, const char *path, size_t n) {
  bool admin_split = lp->srv->cfg.admin_listen && *lp->srv->cfg.admin_listen;
  bool ops_here = !admin_split || kind == GW_LISTENER_ADMIN;
  if (eq(path, n, "/healthz")) return &r_healthz;
  if (eq(path, n, "/readyz")) return &r_readyz;
  if (eq(path, n, "/metrics")) return ops_here ? &r_metrics : NULL;
  if (n >= 9 && memcmp(path, "/admin/v1", 9) == 0 && (n == 9 || path[9] == '/'))
    return ops_here ? &r_admin : NULL;
  /* /t/{tenant}/scim/v2[/…] */
  if (n > 3 && memcmp(path, "/t/", 3) == 0) {
    const char *t = path + 3, *end = path + n;
    const char *slash = memchr(t, '/', (size_t)(end - t));
    if (slash && slash > t) {
      size_t rest = (size_t)(end - slash);
      if (rest >= 8 && memcmp(slash, "/scim/v2", 8) == 0 && (rest == 8 || slash[8] == '/'))
        return &lp->srv->scim_route;
      /* /t/{tenant}/mcp — the aggregated endpoint */
      if (rest == 4 && memcmp(slash, "/mcp", 4) == 0) return &lp->srv->agg_route;
      /* /t/{tenant}/mcp/{connector} (one segment) */
      if (rest > 5 && memcmp(slash, "/mcp/", 5) == 0 && !memchr(slash + 5, '/', rest - 5))
        return &lp->srv->mcp_route;
    }
  }
  return NULL;
}

int gw_route_allows(const gw_route *r, const char *method) {
  if (!r->allow) return 1;
  size_t ml = strlen(method);
  const char *p = r->allow;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ", ");
    if (n == ml && strncmp(p, method, n) == 0) return 1;
    p += n;
  }
  return 0;
}
