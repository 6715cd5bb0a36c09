/* gateway/mcp/audit_call.c — the audit record of a tools/call (private to
 * gateway/mcp/; the log itself is gateway/mcp/audit_log.h).
 *
 * A call's record is begun where its decision is made (decide.c's callers:
 * direct.c for /mcp/{connector}, agg_call.c for /mcp), kept on the
 * exchange while the call runs, and submitted when the exchange ends
 * (gw__x_unref), with what the upstream answered: its HTTP status, the
 * duration, the bytes each way, and whether the tool reported an error.
 * A refused call (block, approve, unknown tool) is recorded with its
 * decision and no upstream part.
 *
 * Rules this file keeps, and why:
 *  - Nothing here waits: the record is a small JSON object, submitted to
 *    the audit queue (a mutex and an append).
 *  - Arguments are the client's, masked by key (audit_redact) or reduced to
 *    a digest (audit_args) before they are queued; a body the strict scan
 *    already accepted is only parsed for its "arguments" member.
 *  - When the log cannot record and audit_on_failure is deny, the call is
 *    refused before it goes upstream (gw__audit_refuse): fail closed.
 *  - "is_error" is read from the relayed bytes ("isError":true in a
 *    result): a tool error split across two reads of a streamed answer may
 *    be missed (best effort, never a false positive on another member). */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "gateway/mcp/audit_log.h"
#include "gateway/core/server.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_loop.h"

bool gw__audit_refuse(gw_exchange *x) {
  if (!gw_audit_refuses(x->lp->srv)) return false;
  gw__x_rpc_error(x, 503, -32603,
                  "the gateway cannot record this call in its audit log right now, so it is refused "
                  "(audit_on_failure = deny); try again shortly");
  return true;
}

void gw__audit_call_begin(gw_exchange *x, const char *connector, const char *tool, const char *decision,
                          int policy_version, const json_t *args, const char *args_raw, size_t args_len) {
  gw_server *srv = x->lp->srv;
  if (!gw_audit_log(srv)) return;
  if (x->audit) gw__audit_call_end(x); /* a batch: each call its own record */
  json_t *r = json_object();
  if (!r) return;
  json_object_set_new(r, "kind", json_string("call"));
  json_object_set_new(r, "user", json_string(x->user));
  if (x->sid[0]) json_object_set_new(r, "session", json_string(x->sid));
  if (x->tokid[0]) json_object_set_new(r, "client", json_string(x->tokid));
  json_object_set_new(r, "connector", json_string(connector ? connector : ""));
  json_object_set_new(r, "tool", json_stringn(tool ? tool : "", tool ? strnlen(tool, 256) : 0));
  json_object_set_new(r, "decision", json_string(decision));
  if (policy_version >= 0) json_object_set_new(r, "policy_version", json_integer(policy_version));
  json_t *parsed = NULL;
  if (!args && args_raw && args_len) args = parsed = json_loadb(args_raw, args_len, JSON_DECODE_ANY, NULL);
  json_t *a = gw_audit_args(srv, args);
  json_decref(parsed);
  if (a) json_object_set_new(r, "arguments", a);
  json_object_set_new(r, "bytes_in", json_integer(x->req ? (json_int_t)x->req->body_len : 0));
  x->audit = r;
  x->audit_start_ns = uv_hrtime();
  x->audit_bytes_out = 0;
  x->audit_is_error = false;
}

void gw__audit_call_seen(gw_exchange *x, const char *p, size_t n) {
  if (!x->audit) return;
  x->audit_bytes_out += n;
  static const char a[] = "\"isError\":true", b[] = "\"isError\": true";
  if (!x->audit_is_error && (memmem(p, n, a, sizeof a - 1) || memmem(p, n, b, sizeof b - 1)))
    x->audit_is_error = true;
}

void gw__audit_call_end(gw_exchange *x) {
  json_t *r = x->audit;
  if (!r) return;
  x->audit = NULL;
  if (x->status) json_object_set_new(r, "upstream_status", json_integer(x->status));
  json_object_set_new(r, "duration_ms", json_real((double)(uv_hrtime() - x->audit_start_ns) / 1e6));
  json_object_set_new(r, "bytes_out", json_integer((json_int_t)x->audit_bytes_out));
  json_object_set_new(r, "is_error", json_boolean(x->audit_is_error));
  gw_audit_submit(x->lp->srv, x->tenant, x->tenant_uid, r);
}
