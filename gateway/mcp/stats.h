/* gateway/mcp/stats.h — the MCP proxy's metrics, per (tenant, connector)
 * and per loop (private to gateway/mcp/). Entries never move once made:
 * exchanges keep pointers to them (gw_exchange.m) until the loop stops.
 * Only the loop writes its table; /metrics, on any loop, reads every
 * loop's and sums them: counters are relaxed atomics written with
 * GW_STAT_ADD (a plain load and store: one writer), and the table's
 * array is grown and copied under its mutex. */
#ifndef MCPGATE_GATEWAY_MCP_STATS_H
#define MCPGATE_GATEWAY_MCP_STATS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/base/buf.h"

#define GW_MCP_STATS_MAX 4096 /* entries per loop; past it, exchanges are not counted */
/* Entries one tenant may hold per loop: a tenant's admin names connectors
 * freely, and must not fill the table (every other tenant then uncounted)
 * nor grow /metrics without bound. Past it, that tenant's further
 * connectors share one entry, connector GW_MCP_STATS_OTHER. */
#define GW_MCP_STATS_TENANT_MAX 128
#define GW_MCP_STATS_OTHER "(other)"
#define GW_MCP_NBUCKETS 10

typedef struct gw_mcp_stats {
  char tenant[64], connector[40];
  _Atomic uint64_t requests, errors, auth_failures, overflows, expired;
  _Atomic uint64_t hist[GW_MCP_NBUCKETS + 1];
  _Atomic double sum;
  _Atomic int64_t streams;
} gw_mcp_stats;

/* The owning loop's increment of one counter (it is the only writer). */
#define GW_STAT_ADD(f, d) \
  atomic_store_explicit(&(f), atomic_load_explicit(&(f), memory_order_relaxed) + (d), memory_order_relaxed)

/* The table of one loop. */
typedef struct gw_mcp_stats_table {
  gw_mcp_stats **m;
  size_t n;
  uv_mutex_t mu; /* the owner writes m and n under it; readers copy under it */
} gw_mcp_stats_table;

/* The entry of (tenant, connector), made on first use (the tenant's
 * GW_MCP_STATS_OTHER once it holds GW_MCP_STATS_TENANT_MAX); NULL when the
 * table is full or memory is short. Owned by the table. */
gw_mcp_stats *gw__mcp_stats_for(gw_mcp_stats_table *t, const char *tenant, const char *connector);
/* Counts one upstream response head that took `secs`. */
void gw__mcp_stats_observe(gw_mcp_stats *m, double secs);
/* One (tenant, connector)'s numbers, copied out of a table. */
typedef struct gw_mcp_stat_row {
  char tenant[64], connector[40];
  uint64_t requests, errors, overflows, expired, hist[GW_MCP_NBUCKETS + 1];
  double sum;
  int64_t streams;
} gw_mcp_stat_row;

/* Appends a copy of table t's rows to *rows (grown; *n used, *cap
 * allocated). Any thread (t's loop keeps running). 0, or -1 when out of
 * memory (what was copied stays). */
int gw__mcp_stats_copy(gw_mcp_stats_table *t, gw_mcp_stat_row **rows, size_t *n, size_t *cap);
/* Prometheus text of rows (every loop's copies: rows of the same tenant
 * and connector are summed; rows is reordered) and agg_uri_maps (sessions
 * with a resource map in memory), appended to out. */
void gw__mcp_stats_render(gw_mcp_stat_row *rows, size_t n, size_t agg_uri_maps, gw_buf *out);
void gw__mcp_stats_free(gw_mcp_stats_table *t);

#endif
