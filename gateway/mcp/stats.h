/* gateway/mcp/stats.h — the MCP proxy's metrics, per (tenant, connector)
 * and per loop (private to gateway/mcp/). Entries never move once made:
 * exchanges keep pointers to them (gw_exchange.m) until the loop stops. */
#ifndef MCPGATE_GATEWAY_MCP_STATS_H
#define MCPGATE_GATEWAY_MCP_STATS_H
#include <stddef.h>
#include <stdint.h>

#include "gateway/base/buf.h"

#define GW_MCP_STATS_MAX 4096 /* entries per loop; past it, exchanges are not counted */
#define GW_MCP_NBUCKETS 10

typedef struct gw_mcp_stats {
  char tenant[64], connector[40];
  uint64_t requests, errors, auth_failures, overflows;
  uint64_t hist[GW_MCP_NBUCKETS + 1];
  double sum;
  int64_t streams;
} gw_mcp_stats;

/* The table of one loop. */
typedef struct gw_mcp_stats_table {
  gw_mcp_stats **m;
  size_t n;
} gw_mcp_stats_table;

/* The entry of (tenant, connector), made on first use; NULL when the table
 * is full or memory is short. Owned by the table. */
gw_mcp_stats *gw__mcp_stats_for(gw_mcp_stats_table *t, const char *tenant, const char *connector);
/* Counts one upstream response head that took `secs`. */
void gw__mcp_stats_observe(gw_mcp_stats *m, double secs);
/* Prometheus text of the table (and agg_uri_maps, the sessions with a
 * resource map in memory) appended to out. */
void gw__mcp_stats_render(const gw_mcp_stats_table *t, size_t agg_uri_maps, gw_buf *out);
void gw__mcp_stats_free(gw_mcp_stats_table *t);

#endif
