/* gateway/core/limits.c — see limits.h. */
#include "gateway/core/limits.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "gateway/base/ratelimit.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"

typedef struct gw_limits gw_limits;
struct gw_limits {
  gw_ratelimit *auth_fail, *mcp_user, *mcp_tenant;
  _Atomic uint64_t auth_limited, mcp_user_limited, mcp_tenant_limited;
};

int gw_limits_init(gw_server *srv) {
  gw_limits *l = calloc(1, sizeof *l);
  if (!l) return -1;
  const gw_config *c = &srv->cfg;
  l->auth_fail = gw_ratelimit_new(c->auth_failures_per_address, c->auth_failures_per_address, 65536);
  l->mcp_user = gw_ratelimit_new(c->mcp_rate_per_user, c->mcp_rate_per_user, 65536);
  l->mcp_tenant = gw_ratelimit_new(c->mcp_rate_per_tenant, c->mcp_rate_per_tenant, 4096);
  srv->limits = l;
  if (!l->auth_fail || !l->mcp_user || !l->mcp_tenant) return -1;
  return 0;
}

void gw_limits_free(gw_server *srv) {
  gw_limits *l = srv->limits;
  if (!l) return;
  gw_ratelimit_free(l->auth_fail);
  gw_ratelimit_free(l->mcp_user);
  gw_ratelimit_free(l->mcp_tenant);
  free(l);
  srv->limits = NULL;
}

static int64_t now_ms(void) { return (int64_t)(uv_hrtime() / 1000000); }

static void retry_after(gw_req *req, int64_t s) {
  char ra[24];
  snprintf(ra, sizeof ra, "%lld", (long long)s);
  gw_resp_header(req, "Retry-After", ra);
}

int64_t gw_limits_auth_failed(gw_req *req) {
  gw_limits *l = req->lp->srv->limits;
  if (!l || !l->auth_fail) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key(req->client, key);
  int64_t wait = gw_ratelimit_take(l->auth_fail, key, now_ms());
  if (wait) {
    retry_after(req, wait);
    atomic_fetch_add_explicit(&l->auth_limited, 1, memory_order_relaxed);
  }
  return wait;
}

int64_t gw_limits_mcp(gw_req *req, const char *tenant, const char *user) {
  gw_limits *l = req->lp->srv->limits;
  if (!l || (!req->lp->srv->cfg.mcp_rate_per_user && !req->lp->srv->cfg.mcp_rate_per_tenant)) return 0;
  int64_t now = now_ms(), wait = 0;
  if (req->lp->srv->cfg.mcp_rate_per_user) {
    char key[GW_RATELIMIT_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s/%s", tenant, user);
    if ((wait = gw_ratelimit_take(l->mcp_user, key, now)))
      atomic_fetch_add_explicit(&l->mcp_user_limited, 1, memory_order_relaxed);
  }
  if (!wait && req->lp->srv->cfg.mcp_rate_per_tenant &&
      (wait = gw_ratelimit_take(l->mcp_tenant, tenant, now)))
    atomic_fetch_add_explicit(&l->mcp_tenant_limited, 1, memory_order_relaxed);
  if (wait) retry_after(req, wait);
  return wait;
}

void gw_limits_metrics(gw_server *srv, gw_buf *out) {
  gw_limits *l = srv->limits;
  if (!l) return;
  gw_buf_printf(out,
                "# HELP mcpgate_auth_failures_limited_total Requests with a credential that did not verify, answered "
                "429 because their address passed auth_failures_per_address.\n"
                "# TYPE mcpgate_auth_failures_limited_total counter\nmcpgate_auth_failures_limited_total %llu\n"
                "# HELP mcpgate_mcp_rate_limited_total MCP requests refused (429) by mcp_rate_per_user or "
                "mcp_rate_per_tenant.\n# TYPE mcpgate_mcp_rate_limited_total counter\n"
                "mcpgate_mcp_rate_limited_total{limit=\"user\"} %llu\nmcpgate_mcp_rate_limited_total{limit=\"tenant\"} %llu\n",
                (unsigned long long)atomic_load(&l->auth_limited), (unsigned long long)atomic_load(&l->mcp_user_limited),
                (unsigned long long)atomic_load(&l->mcp_tenant_limited));
}
