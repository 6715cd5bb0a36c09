/* gateway/core/metrics.h — Prometheus metrics: the process's own (HTTP
 * requests and connections, the store) plus a registry of render callbacks
 * that modules add (the module table's `metrics`, gateway/core/module.h).
 * metrics.c knows no module.
 *
 * Counters are relaxed atomics so any loop or thread may bump them; /metrics
 * renders a consistent-enough snapshot. Owned by gw_server; renderers are
 * added on the main thread before the loops run, then only read. */
#ifndef MCPGATE_GATEWAY_METRICS_H
#define MCPGATE_GATEWAY_METRICS_H
#include "gateway/base/buf.h"
#include "gateway/http/router.h"

typedef struct gw_metrics gw_metrics;
typedef struct gw_server gw_server;

/* Appends a module's metrics (Prometheus text) to out. */
typedef void (*gw_metrics_render_fn)(gw_server *srv, gw_buf *out);

gw_metrics *gw_metrics_new(void);
void gw_metrics_free(gw_metrics *m);
void gw_metrics_request(gw_metrics *m, int rclass, int status, double seconds);
void gw_metrics_conn(gw_metrics *m, int delta);
void gw_metrics_conn_rejected(gw_metrics *m);
/* Adds a renderer, run after the process's own metrics in the order added.
 * Returns 0 or -ENOMEM (at most GW_METRICS_MAX_RENDER). */
#define GW_METRICS_MAX_RENDER 32
int gw_metrics_add_render(gw_metrics *m, gw_metrics_render_fn fn);
/* Renders every metric of the process (HTTP, store, then each renderer)
 * into out. Returns 0, or -1 when out's cap was reached. */
int gw_metrics_render(gw_server *srv, gw_buf *out);

#endif
