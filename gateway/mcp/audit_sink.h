/* gateway/mcp/audit_sink.h — the audit log streamed to a SIEM (config
 * audit_sink_url, audit_sink_format ndjson|splunk_hec,
 * audit_sink_token_file, audit_sink_batch, audit_sink_ca_file): every
 * tenant's records POSTed in order, chain by chain, at least once, with a
 * durable per-chain cursor in the audit environment (audit/audit.h:
 * audit_cursor_*). Owned by the audit wiring (audit_log.c): created at
 * open, run on the primary loop, its metrics in /metrics.
 *
 * Threads: gw_audit_sink_new and _free on the main thread; start, stop
 * and everything they cause on the primary loop; metrics from any loop
 * (atomics). */
#ifndef MCPGATE_GATEWAY_MCP_AUDIT_SINK_H
#define MCPGATE_GATEWAY_MCP_AUDIT_SINK_H
#include "gateway/base/buf.h"

typedef struct gw_server gw_server;
typedef struct gw_loop gw_loop;
typedef struct audit_log audit_log;
typedef struct gw_audit_sink gw_audit_sink;

/* *out = the sink of srv's config (NULL, 0 when audit_sink_url is empty).
 * Reads audit_sink_token_file now (a missing or malformed file: logged,
 * -1: the gateway does not start with a sink it cannot authenticate to). */
int gw_audit_sink_new(gw_server *srv, audit_log *log, gw_audit_sink **out);
/* Frees the sink: never started, or stopped and its loop ended. */
void gw_audit_sink_free(gw_audit_sink *s);
/* Starts delivering on lp (the primary loop). 0 or -1. */
int gw_audit_sink_start(gw_audit_sink *s, gw_loop *lp);
/* Stops (the POST in flight is aborted, the timer closed). Its
 * acknowledged cursors are queued to the audit log, which commits them at
 * close. */
void gw_audit_sink_stop(gw_audit_sink *s);
/* The mcpgate_audit_sink_* metrics, one series per sink (label sink:
 * "operator" or "tenant:<id>"), from the states the driver published in
 * the audit log (any loop). */
void gw_audit_sink_metrics(audit_log *log, gw_buf *out);

#endif
