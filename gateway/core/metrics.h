/* gateway/core/metrics.h — Prometheus metrics. Counters are relaxed atomics
 * so any loop or thread may bump them; /metrics renders a consistent-enough
 * snapshot. Owned by gw_server. */
#ifndef MCPGATE_GATEWAY_METRICS_H
#define MCPGATE_GATEWAY_METRICS_H
#include "gateway/base/buf.h"
#include "gateway/http/router.h"

typedef struct gw_metrics gw_metrics;
typedef struct gw_server gw_server;

gw_metrics *gw_metrics_new(void);
void gw_metrics_free(gw_metrics *m);
void gw_metrics_request(gw_metrics *m, int rclass, int status, double seconds);
void gw_metrics_conn(gw_metrics *m, int delta);
void gw_metrics_conn_rejected(gw_metrics *m);
/* Renders every metric of the process (HTTP, store) into out. */
int gw_metrics_render(gw_server *srv, gw_buf *out);

#endif
