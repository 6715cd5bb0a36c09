/* gateway/core/metrics.c — HTTP metrics in Prometheus text format 0.0.4.
 * Fixed-size arrays of relaxed atomics: no allocation or locking on the
 * request path; rendering walks them. The store's stats (below core) are
 * rendered here; every module above core adds a renderer (see metrics.h),
 * so /metrics has one entry point and knows no module. */
#include "gateway/core/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "gateway/core/limits.h"
#include "gateway/core/server.h"
#include "store/dir.h"
#include "store/store.h"

#define NBUCKETS 12
static const double buckets[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

struct gw_metrics {
  _Atomic uint64_t req[GW_RC_COUNT][600];
  _Atomic uint64_t hist[GW_RC_COUNT][NBUCKETS + 1];
  _Atomic uint64_t sum_us[GW_RC_COUNT];
  _Atomic int64_t conns_open;
  _Atomic uint64_t conns_total, conns_rejected;
  gw_metrics_render_fn render[GW_METRICS_MAX_RENDER];
  int nrender;
};

int gw_metrics_add_render(gw_metrics *m, gw_metrics_render_fn fn) {
  if (m->nrender >= GW_METRICS_MAX_RENDER) return -ENOMEM;
  m->render[m->nrender++] = fn;
  return 0;
}

gw_metrics *gw_metrics_new(void) { return calloc(1, sizeof(gw_metrics)); }
void gw_metrics_free(gw_metrics *m) { free(m); }

void gw_metrics_request(gw_metrics *m, int rc, int status, double secs) {
  if (rc < 0 || rc >= GW_RC_COUNT) rc = GW_RC_OTHER;
  if (status < 100 || status > 599) status = 599;
  atomic_fetch_add_explicit(&m->req[rc][status], 1, memory_order_relaxed);
  int b = 0;
  while (b < NBUCKETS && secs > buckets[b]) b++;
  atomic_fetch_add_explicit(&m->hist[rc][b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->sum_us[rc], (uint64_t)(secs * 1e6), memory_order_relaxed);
}

void gw_metrics_conn(gw_metrics *m, int delta) {
  atomic_fetch_add_explicit(&m->conns_open, delta, memory_order_relaxed);
  if (delta > 0) atomic_fetch_add_explicit(&m->conns_total, 1, memory_order_relaxed);
}

void gw_metrics_conn_rejected(gw_metrics *m) {
  atomic_fetch_add_explicit(&m->conns_rejected, 1, memory_order_relaxed);
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void render_store(gw_server *srv, gw_buf *o) {
  if (!srv->store) return;
  st_stats s;
  st_stats_get(srv->store, &s);
  gw_buf_printf(o,
                "# HELP mcpgate_store_queue_depth Write jobs waiting for the writer thread.\n"
                "# TYPE mcpgate_store_queue_depth gauge\nmcpgate_store_queue_depth %llu\n",
                (unsigned long long)s.queue_depth);
  gw_buf_printf(o,
                "# HELP mcpgate_store_jobs_total Write jobs run by the writer thread.\n"
                "# TYPE mcpgate_store_jobs_total counter\nmcpgate_store_jobs_total %llu\n",
                (unsigned long long)s.jobs_committed);
  gw_buf_printf(o,
                "# HELP mcpgate_store_jobs_failed_total Write jobs that ended with an error (a refusal such as not "
                "found or a conflict, or a storage error): nothing of theirs was written.\n"
                "# TYPE mcpgate_store_jobs_failed_total counter\nmcpgate_store_jobs_failed_total %llu\n"
                "# HELP mcpgate_store_commit_errors_total Batch commits that failed (every write of the batch lost; "
                "alert on any increase).\n"
                "# TYPE mcpgate_store_commit_errors_total counter\nmcpgate_store_commit_errors_total %llu\n",
                (unsigned long long)s.jobs_failed, (unsigned long long)s.commit_errors);
  gw_buf_printf(o,
                "# HELP mcpgate_store_commits_total Write transactions committed (one fsync each).\n"
                "# TYPE mcpgate_store_commits_total counter\nmcpgate_store_commits_total %llu\n",
                (unsigned long long)s.commits);
  gw_buf_printf(o, "# HELP mcpgate_store_commit_seconds Commit latency (including fsync).\n"
                   "# TYPE mcpgate_store_commit_seconds histogram\n");
  for (int i = 0; i < ST_STATS_NBUCKETS - 1; i++)
    gw_buf_printf(o, "mcpgate_store_commit_seconds_bucket{le=\"%g\"} %llu\n", st_stats_bucket_le[i],
                  (unsigned long long)s.commit_seconds_bucket[i]);
  gw_buf_printf(o, "mcpgate_store_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)s.commit_seconds_count);
  gw_buf_printf(o, "mcpgate_store_commit_seconds_sum %.6f\nmcpgate_store_commit_seconds_count %llu\n",
                s.commit_seconds_sum, (unsigned long long)s.commit_seconds_count);
  gw_buf_printf(o,
                "# HELP mcpgate_store_map_size_bytes LMDB map size.\n"
                "# TYPE mcpgate_store_map_size_bytes gauge\nmcpgate_store_map_size_bytes %llu\n"
                "# HELP mcpgate_store_map_used_bytes Bytes of the map in use.\n"
                "# TYPE mcpgate_store_map_used_bytes gauge\nmcpgate_store_map_used_bytes %llu\n"
                "# HELP mcpgate_store_map_live_bytes Bytes of the map holding data (pages LMDB will reuse excluded).\n"
                "# TYPE mcpgate_store_map_live_bytes gauge\nmcpgate_store_map_live_bytes %llu\n"
                "# HELP mcpgate_store_map_reserve_bytes Bytes at the map's end kept for writes that take access away.\n"
                "# TYPE mcpgate_store_map_reserve_bytes gauge\nmcpgate_store_map_reserve_bytes %llu\n",
                (unsigned long long)s.map_size, (unsigned long long)s.map_used,
                (unsigned long long)s.map_live, (unsigned long long)s.map_reserve);
  gw_buf_printf(o,
                "# HELP mcpgate_store_users_cut_in_memory Users whose deactivation could not be written, cut in "
                "memory until the IdP's next word on their active commits (alert on > 0).\n"
                "# TYPE mcpgate_store_users_cut_in_memory gauge\nmcpgate_store_users_cut_in_memory %zu\n"
                "# HELP mcpgate_store_memberships_cut_in_memory Group memberships (or whole groups) whose removal "
                "could not be written, cut in memory until a write of them commits (alert on > 0).\n"
                "# TYPE mcpgate_store_memberships_cut_in_memory gauge\nmcpgate_store_memberships_cut_in_memory %zu\n",
                st_dir_users_cut_count(srv->store), st_dir_memberships_cut_count(srv->store));
}

int gw_metrics_render(gw_server *srv, gw_buf *o) {
  gw_metrics *m = srv->metrics;
  gw_buf_appends(o, "# HELP mcpgate_http_requests_total HTTP requests by route class and status.\n"
                    "# TYPE mcpgate_http_requests_total counter\n");
  for (int rc = 0; rc < GW_RC_COUNT; rc++)
    for (int s = 100; s < 600; s++) {
      uint64_t v = LD(m->req[rc][s]);
      if (v)
        gw_buf_printf(o, "mcpgate_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                      gw_route_class_name(rc), s, (unsigned long long)v);
    }
  gw_buf_appends(o, "# HELP mcpgate_http_request_duration_seconds Time from first byte to response queued.\n"
                    "# TYPE mcpgate_http_request_duration_seconds histogram\n");
  for (int rc = 0; rc < GW_RC_COUNT; rc++) {
    uint64_t cum = 0, h[NBUCKETS + 1];
    for (int b = 0; b <= NBUCKETS; b++) h[b] = LD(m->hist[rc][b]);
    uint64_t total = 0;
    for (int b = 0; b <= NBUCKETS; b++) total += h[b];
    if (!total) continue;
    const char *name = gw_route_class_name(rc);
    for (int b = 0; b < NBUCKETS; b++) {
      cum += h[b];
      gw_buf_printf(o, "mcpgate_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    name, buckets[b], (unsigned long long)cum);
    }
    gw_buf_printf(o, "mcpgate_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                  name, (unsigned long long)total);
    gw_buf_printf(o, "mcpgate_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
                  (double)LD(m->sum_us[rc]) / 1e6);
    gw_buf_printf(o, "mcpgate_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
                  (unsigned long long)total);
  }
  gw_buf_printf(o,
                "# HELP mcpgate_http_connections_open Client connections open now.\n"
                "# TYPE mcpgate_http_connections_open gauge\nmcpgate_http_connections_open %lld\n"
                "# HELP mcpgate_http_connections_total Client connections accepted.\n"
                "# TYPE mcpgate_http_connections_total counter\nmcpgate_http_connections_total %llu\n"
                "# HELP mcpgate_http_connections_rejected_total Connections refused over max_connections.\n"
                "# TYPE mcpgate_http_connections_rejected_total counter\n"
                "mcpgate_http_connections_rejected_total %llu\n",
                (long long)LD(m->conns_open), (unsigned long long)LD(m->conns_total),
                (unsigned long long)LD(m->conns_rejected));
  render_store(srv, o);
  gw_limits_metrics(srv, o);
  for (int i = 0; i < m->nrender; i++) m->render[i](srv, o);
  return o->len < o->max ? 0 : -1;
}
