/* gateway/mcp/stats.c — the MCP proxy's metrics and their Prometheus text
 * (see stats.h). One table per loop, touched only on its loop; the render
 * runs on the loop that serves /metrics. */
#include "gateway/mcp/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[GW_MCP_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

gw_mcp_stats *gw__mcp_stats_for(gw_mcp_stats_table *t, const char *tenant, const char *connector) {
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->m[i]->tenant, tenant) && !strcmp(t->m[i]->connector, connector)) return t->m[i];
  if (t->n >= GW_MCP_STATS_MAX) return NULL;
  gw_mcp_stats **nm = realloc(t->m, (t->n + 1) * sizeof *nm);
  if (!nm) return NULL;
  t->m = nm;
  gw_mcp_stats *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  t->m[t->n++] = e;
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  snprintf(e->connector, sizeof e->connector, "%s", connector);
  return e;
}

void gw__mcp_stats_observe(gw_mcp_stats *m, double secs) {
  if (!m) return;
  int b = 0;
  while (b < GW_MCP_NBUCKETS && secs > buckets[b]) b++;
  m->hist[b]++;
  m->sum += secs;
}

void gw__mcp_stats_free(gw_mcp_stats_table *t) {
  for (size_t i = 0; i < t->n; i++) free(t->m[i]);
  free(t->m);
  t->m = NULL;
  t->n = 0;
}

void gw__mcp_stats_render(const gw_mcp_stats_table *t, size_t agg_uri_maps, gw_buf *o) {
  gw_mcp_stats *const *m = t->m;
  size_t nm = t->n;
  gw_buf_appends(o, "# HELP mcpgate_mcp_requests_total Client requests relayed per connector.\n"
                    "# TYPE mcpgate_mcp_requests_total counter\n");
  for (size_t i = 0; i < nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_requests_total{tenant=\"%s\",connector=\"%s\"} %llu\n", m[i]->tenant,
                  m[i]->connector, (unsigned long long)m[i]->requests);
  gw_buf_appends(o, "# HELP mcpgate_mcp_upstream_errors_total Relayed requests that failed upstream "
                    "(unreachable, timeout, reset, garbage, refused credential).\n"
                    "# TYPE mcpgate_mcp_upstream_errors_total counter\n");
  for (size_t i = 0; i < nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_upstream_errors_total{tenant=\"%s\",connector=\"%s\"} %llu\n", m[i]->tenant,
                  m[i]->connector, (unsigned long long)m[i]->errors);
  gw_buf_appends(o, "# HELP mcpgate_mcp_upstream_seconds Time to the upstream's response head.\n"
                    "# TYPE mcpgate_mcp_upstream_seconds histogram\n");
  for (size_t i = 0; i < nm; i++) {
    uint64_t cum = 0, total = 0;
    for (int b = 0; b <= GW_MCP_NBUCKETS; b++) total += m[i]->hist[b];
    for (int b = 0; b < GW_MCP_NBUCKETS; b++) {
      cum += m[i]->hist[b];
      gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"%g\"} %llu\n",
                    m[i]->tenant, m[i]->connector, buckets[b], (unsigned long long)cum);
    }
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"+Inf\"} %llu\n",
                  m[i]->tenant, m[i]->connector, (unsigned long long)total);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_sum{tenant=\"%s\",connector=\"%s\"} %.6f\n", m[i]->tenant,
                  m[i]->connector, m[i]->sum);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_count{tenant=\"%s\",connector=\"%s\"} %llu\n", m[i]->tenant,
                  m[i]->connector, (unsigned long long)total);
  }
  gw_buf_appends(o, "# HELP mcpgate_mcp_client_streams_overflowed_total Client streams ended because the client "
                    "did not read (stream_buffer_max).\n"
                    "# TYPE mcpgate_mcp_client_streams_overflowed_total counter\n");
  for (size_t i = 0; i < nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_client_streams_overflowed_total{tenant=\"%s\",connector=\"%s\"} %llu\n",
                  m[i]->tenant, m[i]->connector, (unsigned long long)m[i]->overflows);
  gw_buf_printf(o, "# HELP mcpgate_mcp_agg_uri_maps Aggregated client sessions with a resource-URI map in memory.\n"
                   "# TYPE mcpgate_mcp_agg_uri_maps gauge\nmcpgate_mcp_agg_uri_maps %zu\n",
                agg_uri_maps);
  gw_buf_appends(o, "# HELP mcpgate_mcp_client_streams_open SSE streams open to clients.\n"
                    "# TYPE mcpgate_mcp_client_streams_open gauge\n");
  for (size_t i = 0; i < nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_client_streams_open{tenant=\"%s\",connector=\"%s\"} %lld\n", m[i]->tenant,
                  m[i]->connector, (long long)m[i]->streams);
}
