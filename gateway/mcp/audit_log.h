/* gateway/mcp/audit_log.h — the process's audit log: audit/ (its own
 * LMDB environment at <data>/audit, the hash chains, query and export)
 * opened by `serve` (the module table: gateway/modules.c), used by the MCP
 * proxy (its calls), the admin API and SCIM (their writes, through the
 * request_done hook) and read by gateway/api/admin_audit.c (srv->audit_log).
 *
 * What the gateway records (records are JSON objects, audit/audit.h):
 *   kind "call"   a tools/call: user, session, client (the employee token's
 *                 id), connector, tool, arguments (audit_args, masked by
 *                 audit_redact and the tenant's audit_redact), decision (allow|block|approve|hidden|
 *                 unaudited), policy version, upstream status, duration_ms,
 *                 bytes_in/out, is_error;
 *   kind "admin"  a write of the admin API (method, path, status, actor);
 *   kind "scim"   a write of SCIM (method, path, status, actor).
 * Gateway-held secrets never go into a record: arguments are the client's
 * own, masked by key; admin and SCIM records carry no bodies.
 *
 * Failure stance (audit_on_failure): "deny" refuses tools/call while the
 * log cannot record (gw_audit_refuses), "serve" lets calls through;
 * either way metrics count drops and the log says why. SCIM and admin
 * writes are never refused for it (a deactivation must always go through).
 *
 * Threading: gw_audit_open/close on the main thread (module init/fini);
 * everything else from any loop (audit_submit is thread-safe). */
#ifndef MCPGATE_GATEWAY_MCP_AUDIT_LOG_H
#define MCPGATE_GATEWAY_MCP_AUDIT_LOG_H
#include <jansson.h>
#include <stdbool.h>

#include "gateway/base/buf.h"
#include "gateway/core/settings.h"

typedef struct gw_server gw_server;
typedef struct audit_log audit_log;
typedef struct gw_audit gw_audit;

/* Opens <data>/audit when cfg.audit is on (srv->audit; NULL when off). 0 or -1 (logged). */
int gw_audit_open(gw_server *srv);
/* Commits what is queued and closes (after the loops stopped). */
void gw_audit_close(gw_server *srv);
/* The audit log, or NULL when off. */
audit_log *gw_audit_log(const gw_server *srv);

/* true when a tools/call must be refused now: audit on, audit_on_failure
 * deny, and the log cannot record (its last commit failed or its queue is
 * full). */
bool gw_audit_refuses(const gw_server *srv);

/* Queues rec (taken in every case) for tenant, incarnation tenant_uid
 * (ST_TENANT_UID_LEN chars; "" or NULL: the record is dropped and counted —
 * a caller without the uid has nothing to chain it to). */
void gw_audit_submit(gw_server *srv, const char *tenant, const char *tenant_uid, json_t *rec);

/* Queues a record the caller built in place (audit_submit_block: block is
 * malloc'd, cap bytes, audit_text_headroom() bytes then len bytes of
 * members and a NUL); takes block in every case. */
void gw_audit_submit_block(gw_server *srv, const char *tenant, const char *tenant_uid, char *block, size_t len,
                           size_t cap);
/* A block to build a record in (audit_block_get: AUDIT_BLOCK_BYTES, often
 * one the log recycled); NULL when out of memory. */
char *gw_audit_block_get(gw_server *srv);

/* The tenant setting audit_redact (the tenant's additions to the
 * patterns; audit/audit.h: audit_redact_check), registered by the module
 * table. */
extern const gw_setting gw_audit_settings[];

/* true when call records carry arguments (audit on, audit_args not none):
 * only then does a call need its tenant's audit_redact. */
bool gw_audit_records_args(const gw_server *srv);

/* Appends `,"arguments":<value>` for a call's arguments under audit_args /
 * audit_redact / audit_args_max — from args (borrowed) or, without it, the
 * raw JSON text raw/n the request's strict scan accepted — or nothing
 * (audit_args none, no arguments). The patterns are the defaults, the
 * operator's and tenant_redact (the tenant's setting, comma-separated; NULL
 * or "": none). At most the smaller of audit_args_max and room bytes are
 * kept (the record's own cap), past that the digest form. Raw text that
 * holds no backslash, no line break and none of those patterns
 * (case-insensitive) and fits is appended as sent: no parse; anything else
 * is parsed, masked and written compactly. -1 when out is full or memory
 * is short. */
int gw_audit_args_append(const gw_server *srv, gw_buf *out, const json_t *args, const char *raw, size_t n,
                         const char *tenant_redact, size_t room);
/* args (borrowed) as a record would keep them in full mode, masked by the
 * same patterns — the defaults, the operator's audit_redact (whether or
 * not the audit log is on) and tenant_redact — and capped at cap_bytes
 * (audit_args). For what people see of a call outside the log (an
 * approval request). New reference, or NULL (out of memory). */
json_t *gw_audit_args_masked(const gw_server *srv, const json_t *args, const char *tenant_redact, size_t cap_bytes);

/* The record of an admin or SCIM write that ended with status (kind
 * "admin" | "scim"): method, path (no query), status, actor, client
 * address, request id. Its tenant is req->tenant (nothing is recorded for
 * a tenant that does not exist). */
struct gw_req;
void gw_audit_request(gw_server *srv, const struct gw_req *req, const char *kind, int status);

/* Retention on the primary loop: every hour (the first a minute after the
 * start) records older than audit_retention_days are pruned on libuv's
 * pool (audit_prune keeps the chains verifiable). Nothing when the
 * setting is 0 or the log is off. */
typedef struct gw_loop gw_loop;
int gw_audit_loop_start(gw_loop *lp);
void gw_audit_loop_stop(gw_loop *lp);

/* Prometheus text: records written, dropped, queue depth, commits, commit
 * latency, failing. */
void gw_audit_metrics(gw_server *srv, gw_buf *out);

#endif
