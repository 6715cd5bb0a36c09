/* gateway/mcp/stats.c — the MCP proxy's metrics and their Prometheus text
 * (see stats.h). One table per loop, written only by its loop; the render
 * runs on the loop that serves /metrics and sums every loop's. */
#include "gateway/mcp/stats.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[GW_MCP_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

gw_mcp_stats *gw__mcp_stats_for(gw_mcp_stats_table *t, const char *tenant, const char *connector) {
  size_t mine = 0;
  gw_mcp_stats *other = NULL;
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->m[i]->tenant, tenant)) continue;
    if (!strcmp(t->m[i]->connector, connector)) return t->m[i];
    if (!strcmp(t->m[i]->connector, GW_MCP_STATS_OTHER)) other = t->m[i];
    mine++;
  }
  if (mine >= GW_MCP_STATS_TENANT_MAX) { /* this tenant's share is used: its overflow entry */
    if (other) return other;
    connector = GW_MCP_STATS_OTHER;
  }
  if (t->n >= GW_MCP_STATS_MAX) return NULL;
  gw_mcp_stats *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  snprintf(e->connector, sizeof e->connector, "%s", connector);
  uv_mutex_lock(&t->mu);
  gw_mcp_stats **nm = realloc(t->m, (t->n + 1) * sizeof *nm);
  if (nm) {
    t->m = nm;
    t->m[t->n++] = e;
  }
  uv_mutex_unlock(&t->mu);
  if (!nm) {
    free(e);
    return NULL;
  }
  return e;
}

void gw__mcp_stats_observe(gw_mcp_stats *m, double secs) {
  if (!m) return;
  int b = 0;
  while (b < GW_MCP_NBUCKETS && secs > buckets[b]) b++;
  GW_STAT_ADD(m->hist[b], 1);
  GW_STAT_ADD(m->sum, secs);
}

void gw__mcp_stats_free(gw_mcp_stats_table *t) {
  for (size_t i = 0; i < t->n; i++) free(t->m[i]);
  free(t->m);
  t->m = NULL;
  t->n = 0;
}

static int row_cmp(const void *a, const void *b) {
  const gw_mcp_stat_row *x = a, *y = b;
  int c = strcmp(x->tenant, y->tenant);
  return c ? c : strcmp(x->connector, y->connector);
}

#define LD(f) atomic_load_explicit(&(f), memory_order_relaxed)

int gw__mcp_stats_copy(gw_mcp_stats_table *t, gw_mcp_stat_row **rows, size_t *n, size_t *cap) {
  int rc = 0;
  uv_mutex_lock(&t->mu);
  if (*n + t->n > *cap) {
    size_t nc = (*n + t->n) * 2;
    gw_mcp_stat_row *nr = realloc(*rows, nc * sizeof *nr);
    if (!nr) rc = -1;
    else {
      *rows = nr;
      *cap = nc;
    }
  }
  for (size_t k = 0; rc == 0 && k < t->n; k++) {
    const gw_mcp_stats *e = t->m[k];
    gw_mcp_stat_row *r = &(*rows)[(*n)++];
    memcpy(r->tenant, e->tenant, sizeof r->tenant);
    memcpy(r->connector, e->connector, sizeof r->connector);
    r->requests = LD(e->requests);
    r->errors = LD(e->errors);
    r->overflows = LD(e->overflows);
    r->expired = LD(e->expired);
    for (int b = 0; b <= GW_MCP_NBUCKETS; b++) r->hist[b] = LD(e->hist[b]);
    r->sum = LD(e->sum);
    r->streams = LD(e->streams);
  }
  uv_mutex_unlock(&t->mu);
  return rc;
}

/* One counter per (tenant, connector): its HELP and TYPE lines, then a
 * sample per row, the row's uint64_t member at offset `at`. */
static void counter_rows(gw_buf *o, const char *name, const char *help, const gw_mcp_stat_row *m, size_t nm,
                         size_t at) {
  gw_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  for (size_t i = 0; i < nm; i++) {
    uint64_t v;
    memcpy(&v, (const char *)&m[i] + at, sizeof v);
    gw_buf_printf(o, "%s{tenant=\"%s\",connector=\"%s\"} %llu\n", name, m[i].tenant, m[i].connector,
                  (unsigned long long)v);
  }
}

void gw__mcp_stats_render(gw_mcp_stat_row *m, size_t nm, size_t agg_uri_maps, gw_buf *o) {
  /* one line per (tenant, connector): the loops' rows summed */
  if (nm) qsort(m, nm, sizeof *m, row_cmp);
  size_t w = 0;
  for (size_t r = 0; r < nm; r++) {
    if (w && !row_cmp(&m[w - 1], &m[r])) {
      gw_mcp_stat_row *d = &m[w - 1];
      d->requests += m[r].requests;
      d->errors += m[r].errors;
      d->overflows += m[r].overflows;
      d->expired += m[r].expired;
      for (int b = 0; b <= GW_MCP_NBUCKETS; b++) d->hist[b] += m[r].hist[b];
      d->sum += m[r].sum;
      d->streams += m[r].streams;
    } else {
      m[w++] = m[r];
    }
  }
  nm = w;
  counter_rows(o, "mcpgate_mcp_requests_total", "Client requests relayed per connector.", m, nm,
               offsetof(gw_mcp_stat_row, requests));
  counter_rows(o, "mcpgate_mcp_upstream_errors_total",
               "Relayed requests that failed upstream (unreachable, timeout, reset, garbage, refused credential), and "
               "notifications naming another connector's progress token, question, URL elicitation or resource "
               "(dropped).",
               m, nm, offsetof(gw_mcp_stat_row, errors));
  gw_buf_appends(o, "# HELP mcpgate_mcp_upstream_seconds Time to the upstream's response head.\n"
                    "# TYPE mcpgate_mcp_upstream_seconds histogram\n");
  for (size_t i = 0; i < nm; i++) {
    uint64_t cum = 0, total = 0;
    for (int b = 0; b <= GW_MCP_NBUCKETS; b++) total += m[i].hist[b];
    for (int b = 0; b < GW_MCP_NBUCKETS; b++) {
      cum += m[i].hist[b];
      gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"%g\"} %llu\n",
                    m[i].tenant, m[i].connector, buckets[b], (unsigned long long)cum);
    }
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"+Inf\"} %llu\n",
                  m[i].tenant, m[i].connector, (unsigned long long)total);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_sum{tenant=\"%s\",connector=\"%s\"} %.6f\n", m[i].tenant,
                  m[i].connector, m[i].sum);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_count{tenant=\"%s\",connector=\"%s\"} %llu\n", m[i].tenant,
                  m[i].connector, (unsigned long long)total);
  }
  counter_rows(o, "mcpgate_mcp_client_streams_overflowed_total",
               "Client streams ended because the client did not read (stream_buffer_max).", m, nm,
               offsetof(gw_mcp_stat_row, overflows));
  counter_rows(o, "mcpgate_mcp_client_streams_expired_total",
               "Client streams, streamed answers and calls held for approval ended because the token that opened "
               "them expired.",
               m, nm, offsetof(gw_mcp_stat_row, expired));
  gw_buf_printf(o, "# HELP mcpgate_mcp_agg_uri_maps Aggregated client sessions with a resource-URI map in memory.\n"
                   "# TYPE mcpgate_mcp_agg_uri_maps gauge\nmcpgate_mcp_agg_uri_maps %zu\n",
                agg_uri_maps);
  gw_buf_appends(o, "# HELP mcpgate_mcp_client_streams_open SSE streams open to clients.\n"
                    "# TYPE mcpgate_mcp_client_streams_open gauge\n");
  for (size_t i = 0; i < nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_client_streams_open{tenant=\"%s\",connector=\"%s\"} %lld\n", m[i].tenant,
                  m[i].connector, (long long)m[i].streams);
}
